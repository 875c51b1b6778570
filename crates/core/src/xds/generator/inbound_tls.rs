//! MeshTLS: how one inbound of an mTLS mesh takes connections, from the
//! MeshTLS policies whose top-level `targetRef` selects it (merged in
//! `xds::rules` order), and the mesh's phase in switching mTLS.

use super::tls::MtlsPhase;
use crate::resources::tags::Tags;
use crate::resources::{MeshTlsConf, TlsMode, TlsVersion};
use crate::xds::index::{MeshView, Section, selecting_inbound};
use crate::xds::rules;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    TlsParameters, tls_parameters,
};

/// How an inbound takes connections.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundTls {
    /// Plain text is taken beside mTLS, on the same port.
    pub permissive: bool,
    /// TLS versions and ciphers, when a MeshTLS sets them.
    pub params: Option<TlsParameters>,
}

/// The merged MeshTLS conf for an inbound with `tags` at `section`.
pub fn conf(mesh: &MeshView, tags: &Tags, section: Section) -> MeshTlsConf {
    let confs: Vec<serde_json::Value> = selecting_inbound(mesh.mesh_tlses(), tags, section)
        .into_iter()
        .flat_map(|(_, spec)| MeshTlsConf::of(spec))
        .filter_map(|conf| serde_json::to_value(conf).ok())
        .collect();
    if confs.is_empty() {
        return MeshTlsConf::default();
    }
    let merged = rules::merge(&confs.iter().collect::<Vec<_>>(), &[]);
    serde_json::from_value(merged).unwrap_or_default()
}

/// How an inbound with `tags` at `section` takes connections in `phase`:
/// permissive while the mesh switches, and at rest when a MeshTLS says so.
pub fn of_inbound(mesh: &MeshView, tags: &Tags, section: Section, phase: MtlsPhase) -> InboundTls {
    let conf = conf(mesh, tags, section);
    InboundTls {
        permissive: phase != MtlsPhase::Strict || conf.mode == Some(TlsMode::Permissive),
        params: params(&conf),
    }
}

fn params(conf: &MeshTlsConf) -> Option<TlsParameters> {
    let version = |v: Option<TlsVersion>| match v {
        None | Some(TlsVersion::Auto) => tls_parameters::TlsProtocol::TlsAuto,
        Some(TlsVersion::Tls10) => tls_parameters::TlsProtocol::TlSv10,
        Some(TlsVersion::Tls11) => tls_parameters::TlsProtocol::TlSv11,
        Some(TlsVersion::Tls12) => tls_parameters::TlsProtocol::TlSv12,
        Some(TlsVersion::Tls13) => tls_parameters::TlsProtocol::TlSv13,
    } as i32;
    let ciphers: Vec<String> = conf
        .tls_ciphers
        .iter()
        .flatten()
        .map(|c| c.name().to_string())
        .collect();
    let range = conf.tls_version.as_ref();
    (range.is_some() || !ciphers.is_empty()).then(|| TlsParameters {
        tls_minimum_protocol_version: version(range.and_then(|r| r.min)),
        tls_maximum_protocol_version: version(range.and_then(|r| r.max)),
        cipher_suites: ciphers,
        ..Default::default()
    })
}
