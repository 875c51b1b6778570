//! mTLS for a mesh with it enabled: the proxy's certificate and the mesh
//! CA as secrets, TLS on inbound listeners (client certificate required)
//! and outbound clusters (destination's SPIFFE id verified), and an RBAC
//! filter that lets in only what a `TrafficPermission` allows.

use super::encode::any;
use super::envoy::{XdsResource, ads_source};
use crate::resources::{Selector, TrafficPermissionSpec, tags::Tags};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, TypedExtensionConfig, data_source, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::rbac::principals::mtls_authenticated::v3::Config as MtlsAuthenticated;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, TlsParameters, UpstreamTlsContext, common_tls_context,
    downstream_tls_context, secret, subject_alt_name_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use prost::{Message, Name};
use std::collections::{BTreeMap, HashMap};

/// The proxy's own certificate and key.
pub const IDENTITY_SECRET: &str = "identity_cert";
/// The mesh's root certificate, to verify peers.
pub const MESH_CA_SECRET: &str = "mesh_ca";

/// What a proxy of an mTLS mesh needs beyond its dataplane: its identity
/// and its mesh's CA as secrets, encoded where they are kept (see
/// `xds::identity`), so every proxy of a mesh shares one CA secret and a
/// proxy's certificate is held once, in the form it is sent.
#[derive(Debug, Clone, Copy)]
pub struct ProxyTls<'a> {
    /// Where the mesh is in switching mTLS on or off.
    pub phase: MtlsPhase,
    /// [`identity_secret`] of the proxy's certificate and key.
    pub identity: &'a XdsResource,
    /// [`validation_secret`] of the mesh CA, named [`MESH_CA_SECRET`].
    pub mesh_ca: &'a XdsResource,
    /// The CAs of the meshes this one is linked with by cross-mesh
    /// gateways (`CrossMeshView::linked`): (mesh, PEM).
    pub peer_cas: &'a [(String, String)],
}

/// Where a mesh is in switching mTLS on (up this list) or off (down it),
/// one step at a time once every proxy has applied the one before (see
/// `xds::mtls_rollout`), so that no client ever speaks what its server
/// does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MtlsPhase {
    /// Inbounds take mTLS and plain text; outbounds speak plain text.
    Accepting,
    /// Inbounds take both; outbounds speak mTLS.
    Speaking,
    /// Inbounds take mTLS only (unless a MeshTLS says Permissive);
    /// outbounds speak mTLS. What "mTLS on" means at rest.
    Strict,
}

impl MtlsPhase {
    pub fn outbound_tls(self) -> bool {
        self != MtlsPhase::Accepting
    }
}

/// The validation context of another mesh's CA, for its gateways only.
pub fn peer_ca_secret(mesh: &str) -> String {
    format!("{MESH_CA_SECRET}:{mesh}")
}

/// What a gateway checks other meshes' proxies against: the CAs of the
/// meshes that trust its mesh.
pub const CROSS_MESH_CA_SECRET: &str = "cross_mesh_ca";

fn inline(pem: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineString(pem.to_string())),
        ..Default::default()
    })
}

/// The secret of a proxy's own certificate and key (PEM).
pub fn identity_secret(cert_pem: &str, key_pem: &str) -> XdsResource {
    let identity = Secret {
        name: IDENTITY_SECRET.into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(cert_pem),
            private_key: inline(key_pem),
            ..Default::default()
        })),
    };
    XdsResource::new(IDENTITY_SECRET, &identity)
}

pub fn secrets(tls: &ProxyTls<'_>) -> Vec<XdsResource> {
    let mut out = vec![tls.identity.clone(), tls.mesh_ca.clone()];
    for (mesh, pem) in tls.peer_cas {
        out.push(validation_secret(&peer_ca_secret(mesh), pem));
    }
    out
}

/// A secret holding the CAs (PEM, one or several) a peer is checked against.
pub fn validation_secret(name: &str, pem: &str) -> XdsResource {
    let secret = Secret {
        name: name.into(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: inline(pem),
                ..Default::default()
            },
        )),
    };
    XdsResource::new(name, &secret)
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ads_source()),
    }
}

fn socket(config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

pub(super) fn exact(value: String) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(value)),
        ..Default::default()
    }
}

pub(super) fn prefix(value: String) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Prefix(value)),
        ..Default::default()
    }
}

/// Inbound: present the proxy's certificate, require one from the mesh CA,
/// with the TLS versions and ciphers of `params` (MeshTLS) when given.
pub fn downstream(params: Option<TlsParameters>) -> TransportSocket {
    downstream_context(MESH_CA_SECRET, params)
}

/// [`downstream`], checking clients against the CAs of secret `ca_secret`.
pub fn downstream_verified_by(ca_secret: &str) -> TransportSocket {
    downstream_context(ca_secret, None)
}

fn downstream_context(ca_secret: &str, tls_params: Option<TlsParameters>) -> TransportSocket {
    socket(any(&DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(IDENTITY_SECRET)],
            validation_context_type: Some(
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds(
                    ca_secret,
                )),
            ),
            tls_params,
            ..Default::default()
        }),
        require_client_certificate: Some(BoolValue { value: true }),
        // A resumed session carries no peer certificate for the RBAC
        // filter to check: every connection does a full handshake.
        disable_stateful_session_resumption: true,
        session_ticket_keys_type: Some(
            downstream_tls_context::SessionTicketKeysType::DisableStatelessSessionResumption(true),
        ),
        ..Default::default()
    }))
}

/// Outbound to `service`: present the proxy's certificate; the peer's must
/// come from the mesh CA and carry `spiffe://<mesh>/<service>`.
pub fn upstream(mesh: &str, service: &str) -> TransportSocket {
    upstream_verified_by(mesh, service, MESH_CA_SECRET)
}

/// [`upstream`], checking the peer against the CA of secret `ca_secret`.
pub fn upstream_verified_by(mesh: &str, service: &str, ca_secret: &str) -> TransportSocket {
    let san = SubjectAltNameMatcher {
        san_type: subject_alt_name_matcher::SanType::Uri as i32,
        matcher: Some(exact(format!("spiffe://{mesh}/{service}"))),
        ..Default::default()
    };
    socket(any(&UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(IDENTITY_SECRET)],
            validation_context_type: Some(
                common_tls_context::ValidationContextType::CombinedValidationContext(
                    common_tls_context::CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext {
                            match_typed_subject_alt_names: vec![san],
                            ..Default::default()
                        }),
                        validation_context_sds_secret_config: Some(sds(ca_secret)),
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// A principal whose certificate carries a URI SAN matching `matcher`.
pub(super) fn san_principal(matcher: StringMatcher) -> Principal {
    let config = MtlsAuthenticated {
        san_matcher: Some(SubjectAltNameMatcher {
            san_type: subject_alt_name_matcher::SanType::Uri as i32,
            matcher: Some(matcher),
            ..Default::default()
        }),
        ..Default::default()
    };
    Principal {
        identifier: Some(principal::Identifier::Custom(TypedExtensionConfig {
            name: "envoy.rbac.principals.mtls_authenticated".into(),
            typed_config: Some(any(&config)),
        })),
    }
}

/// The sources a selector names: `service` by its SPIFFE id, other tags by
/// their `kuma://` SAN, all of them required; `*` matches any value. The
/// tag `kuma.io/mesh` names the mesh of the SPIFFE id (another mesh's
/// proxies reach a cross-mesh gateway).
fn selector_principal(mesh: &str, selector: &Selector) -> Principal {
    let mesh = selector
        .match_tags
        .get(crate::resources::MESH_TAG)
        .map_or(mesh, String::as_str);
    all_of(
        selector
            .match_tags
            .iter()
            .filter(|(tag, _)| *tag != crate::resources::MESH_TAG)
            .map(|(tag, value)| tag_principal(mesh, tag, (value != "*").then_some(value)))
            .collect(),
    )
}

/// A peer whose certificate says it has `tag` (with `value`, or any value
/// when `None`): `service` is the SPIFFE id `spiffe://<mesh>/<service>`,
/// any other tag a `kuma://<tag>/<value>` SAN, as the mesh CA issues them.
pub(super) fn tag_principal(mesh: &str, tag: &str, value: Option<&str>) -> Principal {
    let base = if tag == crate::resources::tags::SERVICE_TAG {
        format!("spiffe://{mesh}/")
    } else {
        format!("kuma://{tag}/")
    };
    san_principal(match value {
        Some(value) => exact(format!("{base}{value}")),
        None => prefix(base),
    })
}

/// A peer that every one of `ids` matches; any peer of the mesh when
/// there are none.
pub(super) fn all_of(mut ids: Vec<Principal>) -> Principal {
    match ids.len() {
        0 => Principal {
            identifier: Some(principal::Identifier::Any(true)),
        },
        1 => ids.remove(0),
        _ => Principal {
            identifier: Some(principal::Identifier::AndIds(principal::Set { ids })),
        },
    }
}

/// A peer that `id` does not match.
pub(super) fn not(id: Principal) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::NotId(Box::new(id))),
    }
}

/// The network RBAC filter with `rules` enforced and `shadow_rules` only
/// counted (Envoy's `rbac.shadow_allowed` / `rbac.shadow_denied`). Each
/// holds at most one policy, so its map encodes the same bytes every time.
pub(super) fn rbac_network_filter(
    stat_prefix: &str,
    rules: Rbac,
    shadow_rules: Option<Rbac>,
) -> Filter {
    let config = RbacFilter {
        stat_prefix: stat_prefix.to_string(),
        rules: Some(rules),
        shadow_rules,
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.rbac".into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&config))),
    }
}

/// The RBAC network filter of an inbound with `tags`: one policy per
/// permission rule whose destinations select it. No policy denies all.
pub fn rbac_filter<'a>(
    stat_prefix: &str,
    mesh: &str,
    tags: &Tags,
    permissions: impl Iterator<Item = (&'a str, &'a TrafficPermissionSpec)>,
) -> Filter {
    let mut policies = BTreeMap::new();
    for (name, permission) in permissions {
        for (i, rule) in permission.rules.iter().enumerate() {
            if !rule.destinations.iter().any(|d| d.matches(tags)) {
                continue;
            }
            policies.insert(
                format!("{name}/rule-{i}"),
                Policy {
                    permissions: vec![Permission {
                        rule: Some(permission::Rule::Any(true)),
                    }],
                    principals: rule
                        .sources
                        .iter()
                        .map(|s| selector_principal(mesh, s))
                        .collect(),
                    ..Default::default()
                },
            );
        }
    }
    Filter {
        name: "envoy.filters.network.rbac".into(),
        config_type: Some(filter::ConfigType::TypedConfig(encode_rbac_filter(
            stat_prefix,
            policies,
        ))),
    }
}

/// The filter's configuration, encoded with its policies in name order.
/// prost encodes a map in its iteration order and envoy-types' maps are
/// `HashMap`s, so the same policies would encode differently on every
/// rebuild: a new version, and a needless push to Envoy. Protobuf lets a
/// map's entries come as separate records, so each policy is encoded on its
/// own, in order, and the filter's `rules` message is put together from
/// them.
fn encode_rbac_filter(stat_prefix: &str, policies: BTreeMap<String, Policy>) -> Any {
    /// `rules` of `envoy.extensions.filters.network.rbac.v3.RBAC`.
    const RULES_FIELD: u32 = 1;
    // The action, ALLOW, is protobuf's default: nothing to encode for it.
    let mut rules = Vec::new();
    for (name, policy) in policies {
        let entry = Rbac {
            action: rbac::Action::Allow as i32,
            policies: HashMap::from([(name, policy)]),
            ..Default::default()
        };
        rules.extend(entry.encode_to_vec());
    }
    let mut value = RbacFilter {
        stat_prefix: stat_prefix.to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    // Present even when empty: an RBAC filter whose rules hold no policy
    // denies every connection, which is what no permission means.
    prost::encoding::bytes::encode(RULES_FIELD, &rules, &mut value);
    Any {
        type_url: <RbacFilter as Name>::type_url(),
        value,
    }
}
