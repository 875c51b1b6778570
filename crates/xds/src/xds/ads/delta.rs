//! Incremental (delta) ADS: each response carries only the resources whose
//! version the proxy lacks, and the names of those it should drop.

use super::outgoing::DeltaResponse;
use super::{Protocol, StreamContext};
use crate::xds::cache::{Snapshot, hex};
use crate::xds::generator::{TypeUrl, XdsResource};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use itertools::{EitherOrBoth, Itertools};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use tonic::Status;

/// What the stream knows the proxy has of one type. Rather than a map of
/// every name and version (a proxy that sees 1,000 services would carry
/// 3,000 entries per stream), it keeps the list it last sent, which the
/// snapshot it came from shares, and the few exceptions to it. Its sets
/// are B-trees: empty, they cost no allocation and a third of a hash
/// set's room, and most are empty for most of a stream's life.
#[derive(Default)]
struct TypeState {
    subscribed: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    /// The list last sent: the proxy has its wanted part.
    sent: Option<Arc<[XdsResource]>>,
    /// Before the first response: the versions the proxy said it has.
    initial: BTreeMap<String, String>,
    /// Names to send whatever the proxy has: asked for again, newly
    /// subscribed, or the endpoints of a replaced cluster.
    resend: BTreeSet<String>,
    /// Responses not answered yet: nonce, and when it was sent. Freed
    /// once all are answered, as they are for most of a stream's life.
    pending: Vec<(u64, Instant)>,
    /// The type's version in the snapshot `sent` came from.
    sent_version: Option<u64>,
    /// Whether one of the responses for `sent_version` was refused.
    refused: bool,
    /// The version the proxy has in force: every response for it ACKed,
    /// or none needed.
    confirmed: Option<u64>,
}

/// Resources a response carries at most, in encoded bytes (one larger
/// resource goes alone). The gRPC layer keeps, for each stream, a buffer
/// as large as the largest message it ever sent: a proxy seeing 1,000
/// services would otherwise hold one of 300 KiB for each type's first
/// response, for as long as it is connected. Delta xDS takes a type's
/// resources over several responses, each answered on its own. Smaller
/// chunks hold less but cost a response and an ACK each: 10,000 proxies
/// that see 1,000 services were all configured in 53 s at 64 KiB, in 77 s
/// at 16 KiB (and their RSS was higher, the transient copies dominating).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Unanswered responses a stream remembers per type; a proxy answers
/// each, so more means answers were lost and the oldest are let go.
const MAX_PENDING: usize = 64;

impl TypeState {
    fn wanted(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// What of `current` the proxy lacks, and the names it has that are
    /// gone from `current`.
    fn diff<'a>(&self, current: &'a Arc<[XdsResource]>) -> (Vec<&'a XdsResource>, Vec<String>) {
        let Some(sent) = &self.sent else {
            let changed = current
                .iter()
                .filter(|r| self.wanted(&r.name))
                .filter(|r| {
                    self.resend.contains(&r.name)
                        || self
                            .initial
                            .get(&r.name)
                            .is_none_or(|has| *has != hex(r.version))
                })
                .collect();
            let removed = self
                .initial
                .keys()
                .filter(|name| {
                    current
                        .binary_search_by(|r| r.name.as_str().cmp(name))
                        .is_err()
                })
                .cloned()
                .collect();
            return (changed, removed);
        };
        if Arc::ptr_eq(sent, current) && self.resend.is_empty() {
            return (Vec::new(), Vec::new());
        }
        // Both lists are sorted by name: one walk through each.
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        for pair in sent
            .iter()
            .merge_join_by(current.iter(), |o, n| o.name.cmp(&n.name))
        {
            match pair {
                EitherOrBoth::Left(gone) if self.wanted(&gone.name) => {
                    removed.push(gone.name.clone());
                }
                EitherOrBoth::Right(new) if self.wanted(&new.name) => changed.push(new),
                EitherOrBoth::Both(old, new)
                    if self.wanted(&new.name)
                        && (old.version != new.version || self.resend.contains(&new.name)) =>
                {
                    changed.push(new);
                }
                _ => {}
            }
        }
        (changed, removed)
    }
}

/// What a stream knows of each type, by [`TypeUrl`]'s discriminant.
#[derive(Default)]
pub(super) struct Delta([TypeState; TypeUrl::ALL.len()]);

impl Delta {
    fn state(&mut self, type_url: TypeUrl) -> &mut TypeState {
        &mut self.0[type_url as usize]
    }
}

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaResponse;
    const KIND: &'static str = "delta";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn handle(&mut self, ctx: &StreamContext, req: DeltaDiscoveryRequest) -> Result<(), Status> {
        let Some(type_url) = TypeUrl::parse(&req.type_url) else {
            return Ok(());
        };
        let t = self.state(type_url);
        let first = !t.subscribed;
        if first {
            t.subscribed = true;
            // Wildcard unless the first request names resources (or names "*").
            t.wildcard = req.resource_names_subscribe.is_empty()
                || req.resource_names_subscribe.iter().any(|n| n == "*");
            t.initial = req.initial_resource_versions.into_iter().collect();
        }
        for name in req.resource_names_subscribe {
            if name == "*" {
                t.wildcard = true;
            } else {
                // A name subscribed to later is sent whatever went
                // before: it is new, or asked for again (Envoy does so for
                // the endpoints of a cluster it replaced).
                if !first {
                    t.resend.insert(name.clone());
                }
                t.names.insert(name);
            }
        }
        for name in req.resource_names_unsubscribe {
            if name == "*" {
                t.wildcard = false;
            } else {
                t.resend.remove(&name);
                t.names.remove(&name);
            }
        }
        // Nonces are this stream's counter; anything else answers nothing.
        let nonce = req.response_nonce.parse::<u64>().ok();
        if let Some(i) = t.pending.iter().position(|(n, _)| Some(*n) == nonce) {
            let (_, sent_at) = t.pending.remove(i);
            t.refused |= req.error_detail.is_some();
            if t.pending.is_empty() {
                t.pending = Vec::new();
                if !t.refused {
                    t.confirmed = t.sent_version;
                }
            }
            ctx.answered(type_url, req.error_detail.as_ref(), Some(sent_at));
        }
        Ok(())
    }

    fn confirmed(&self, type_url: TypeUrl) -> Option<u64> {
        self.0[type_url as usize].confirmed
    }

    fn responses(
        &mut self,
        snapshot: &Snapshot,
        type_url: TypeUrl,
        nonce: &mut u64,
    ) -> Vec<DeltaResponse> {
        let t = self.state(type_url);
        if !t.subscribed {
            return Vec::new();
        }
        let current = snapshot.of_type(type_url);
        let (changed, mut removed) = t.diff(&current.resources);
        let replaced: Vec<String> = match type_url {
            TypeUrl::Cluster => changed.iter().map(|r| r.name.clone()).collect(),
            _ => Vec::new(),
        };
        let mut responses = Vec::new();
        let mut chunk: Vec<XdsResource> = Vec::new();
        let mut bytes = 0;
        let mut close = |chunk: Vec<XdsResource>, removed: Vec<String>, t: &mut TypeState| {
            *nonce += 1;
            if t.pending.len() == MAX_PENDING {
                t.pending.remove(0);
            }
            t.pending.push((*nonce, Instant::now()));
            responses.push(DeltaResponse {
                system_version_info: hex(current.version),
                resources: chunk,
                type_url: type_url.as_str(),
                removed_resources: removed,
                nonce: nonce.to_string(),
            });
        };
        for r in changed {
            let size = r.name.len() + r.body.value.len() + 32;
            if !chunk.is_empty() && bytes + size > MAX_RESPONSE_BYTES {
                close(std::mem::take(&mut chunk), std::mem::take(&mut removed), t);
                bytes = 0;
            }
            bytes += size;
            // A reference: the bytes are copied once, when it is written.
            chunk.push(r.clone());
        }
        if !chunk.is_empty() || !removed.is_empty() {
            close(chunk, removed, t);
        }
        if responses.is_empty() {
            // Nothing the proxy lacks: once it has answered what went
            // before, this version is in force.
            if t.pending.is_empty() && !t.refused {
                t.confirmed = Some(current.version);
            }
        } else {
            t.refused = false;
        }
        t.sent_version = Some(current.version);
        // The proxy now has the wanted part of the current list, whether
        // that took a response or not.
        t.sent = Some(current.resources.clone());
        t.initial.clear();
        t.resend.clear();
        // A replaced cluster warms until it gets endpoints again, even
        // unchanged ones: send them after it.
        self.state(TypeUrl::ClusterLoadAssignment)
            .resend
            .extend(replaced);
        responses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Any;

    fn resource(name: &str, content: u8) -> XdsResource {
        XdsResource::of_byte(name, content)
    }

    fn list(resources: &[XdsResource]) -> Arc<[XdsResource]> {
        Arc::from(resources.to_vec())
    }

    fn names(changed: &[&XdsResource]) -> Vec<String> {
        changed.iter().map(|r| r.name.clone()).collect()
    }

    fn wildcard(sent: Option<Arc<[XdsResource]>>) -> TypeState {
        TypeState {
            subscribed: true,
            wildcard: true,
            sent,
            ..Default::default()
        }
    }

    #[test]
    fn the_list_already_sent_sends_nothing() {
        let current = list(&[resource("a", 1), resource("b", 1)]);
        let (changed, removed) = wildcard(Some(current.clone())).diff(&current);
        assert!(changed.is_empty() && removed.is_empty());
    }

    #[test]
    fn a_new_list_sends_what_changed_or_came_and_names_what_went() {
        let (a, b, c) = (resource("a", 1), resource("b", 1), resource("c", 1));
        let sent = list(&[a.clone(), b.clone()]);
        // Equal content encoded anew is not sent again.
        let current = list(&[resource("a", 1), resource("b", 2), c]);
        let (changed, removed) = wildcard(Some(sent.clone())).diff(&current);
        assert_eq!(names(&changed), ["b", "c"]);
        assert!(removed.is_empty());
        let only_a = list(&[a]);
        let (changed, removed) = wildcard(Some(current)).diff(&only_a);
        assert!(changed.is_empty());
        assert_eq!(removed, ["b", "c"]);
    }

    #[test]
    fn a_named_subscription_gets_only_its_names_and_what_it_asks_again() {
        let sent = list(&[resource("a", 1), resource("b", 1)]);
        let mut state = TypeState {
            subscribed: true,
            names: ["a".to_string()].into(),
            sent: Some(sent.clone()),
            ..Default::default()
        };
        let current = list(&[resource("a", 1), resource("b", 2)]);
        assert!(state.diff(&current).0.is_empty(), "b is not wanted");
        state.resend.insert("a".into());
        assert_eq!(names(&state.diff(&current).0), ["a"]);
        assert_eq!(names(&state.diff(&sent).0), ["a"], "even the same list");
    }

    #[test]
    fn a_large_type_goes_in_responses_of_at_most_64_kib_each_awaiting_its_own_answer() {
        let body = |i: usize| Any {
            type_url: "t".into(),
            value: vec![i as u8; 1000],
        };
        let clusters = (0..150)
            .map(|i| XdsResource::from_any(format!("c{i:03}"), body(i)))
            .collect();
        let config = crate::xds::generator::ProxyConfig {
            clusters,
            ..Default::default()
        };
        let snapshot = Snapshot::new(config, None, &mut Default::default());
        let mut delta = Delta::default();
        *delta.state(TypeUrl::Cluster) = wildcard(None);
        let mut nonce = 0;
        let responses = delta.responses(&snapshot, TypeUrl::Cluster, &mut nonce);
        assert_eq!(responses.len(), 3, "150 KB in 64 KiB responses");
        let names: Vec<&str> = responses
            .iter()
            .flat_map(|r| r.resources.iter().map(|r| r.name.as_str()))
            .collect();
        let expected: Vec<String> = (0..150).map(|i| format!("c{i:03}")).collect();
        assert_eq!(names, expected, "each once, in order");
        let nonces: Vec<&str> = responses.iter().map(|r| r.nonce.as_str()).collect();
        assert_eq!(nonces, ["1", "2", "3"]);
        assert_eq!(delta.state(TypeUrl::Cluster).pending.len(), 3);
        assert!(
            delta
                .responses(&snapshot, TypeUrl::Cluster, &mut nonce)
                .is_empty(),
            "nothing more to send"
        );
    }

    #[test]
    fn a_reconnecting_proxy_is_sent_only_what_it_lacks() {
        let current = list(&[resource("a", 1), resource("b", 1)]);
        let mut state = wildcard(None);
        state.initial = [
            ("a".to_string(), hex(current[0].version)),
            ("b".to_string(), "stale".to_string()),
            ("gone".to_string(), "1".to_string()),
        ]
        .into();
        let (changed, removed) = state.diff(&current);
        assert_eq!(names(&changed), ["b"]);
        assert_eq!(removed, ["gone"]);
    }
}
