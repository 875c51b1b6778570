//! Any stream of resources (JSON documents, one per line) through today's
//! policies: those that validate are indexed, and every dataplane's proxy
//! is generated twice, with mTLS, in its mesh. Nothing panics, the same
//! input encodes to the same bytes, and the MeshTrafficPermission rules of
//! every inbound cut the peers into regions that do not overlap.
#![no_main]

use kuma::resources::tags::Tags;
use kuma::resources::{Identity, Resource};
use kuma::xds::generator::{self, MtlsPhase, ProxyTls, permissions, tls};
use kuma::xds::index::{IndexEvent, ResourceIndex, Section};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut index = ResourceIndex::default();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Ok(resource) = Resource::from_json(value, Identity::FromDocument) {
            index.apply(IndexEvent::Apply(resource));
        }
    }
    let identity = tls::identity_secret("CERT", "KEY");
    let mesh_ca = tls::validation_secret(tls::MESH_CA_SECRET, "CA");
    for mesh in index.meshes() {
        for phase in [MtlsPhase::Accepting, MtlsPhase::Strict] {
            let tls = Some(ProxyTls {
                phase,
                identity: &identity,
                mesh_ca: &mesh_ca,
                peer_cas: &[],
            });
            for dataplane in mesh.dataplanes.values() {
                let once = generator::generate(dataplane, mesh, tls);
                let twice = generator::generate(dataplane, mesh, tls);
                assert_eq!(once, twice, "the same input, the same configuration");
            }
        }
        let peers: Vec<Tags> = mesh
            .dataplanes
            .values()
            .flat_map(|d| d.networking.inbound.iter().map(|i| i.tags.clone()))
            .chain([Tags::new()])
            .collect();
        for dataplane in mesh.dataplanes.values() {
            for inbound in &dataplane.networking.inbound {
                let section = Section {
                    port: inbound.endpoint().map_or(0, |e| e.dataplane_port),
                    name: inbound.name.as_deref(),
                };
                let access = permissions::inbound_access(mesh, &inbound.tags, section);
                let permissions::InboundAccess::Groups(rules) = access else {
                    continue;
                };
                for peer in &peers {
                    let holding = rules.iter().filter(|r| r.subset.contains(peer)).count();
                    assert!(holding <= 1, "{peer:?} is in {holding} regions");
                }
            }
        }
    }
});
