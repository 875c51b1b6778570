//! Discovery responses written straight from the shared encodings.
//!
//! Envoy's generated `DeltaDiscoveryResponse` owns its resources: building
//! one copies every resource's bytes into a fresh `Any` for each proxy,
//! and encoding it copies them once more into the stream's buffer. At
//! 10,000 proxies that see 1,000 services, those per-proxy copies (and the
//! fresh pages the kernel zeroes for them) were most of a push. The types
//! here hold references to the [`XdsResource`]s a snapshot shares and
//! write the same protobuf bytes as Envoy's types would, so each resource
//! is copied once, into the outgoing buffer.
//!
//! They are only ever sent: decoding one (which the server never does)
//! skips every field. A test decodes what they write with Envoy's own
//! types and checks it byte for byte against them.

use crate::xds::generator::XdsResource;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len, skip_field,
};

/// `DeltaDiscoveryResponse`, with its resources by reference.
#[derive(Debug, Default, Clone)]
pub struct DeltaResponse {
    pub system_version_info: String,
    pub resources: Vec<XdsResource>,
    pub type_url: &'static str,
    pub nonce: String,
    pub removed_resources: Vec<String>,
}

/// `DiscoveryResponse` (state of the world), with its resources by
/// reference.
#[derive(Debug, Default, Clone)]
pub struct SotwResponse {
    pub version_info: String,
    pub resources: Vec<XdsResource>,
    pub type_url: &'static str,
    pub nonce: String,
}

/// A resource's version as the proxy sees it: 16 hex digits of its hash
/// (`cache::hex`), written without allocating.
fn version_digits(version: u64) -> [u8; 16] {
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        let nibble = (version >> (60 - 4 * i)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize];
    }
    digits
}

/// A length-delimited field: key, length, then `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn delimited_header(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// A proto3 string or bytes field: absent when empty.
fn bytes_field_len(tag: u32, bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        0
    } else {
        delimited_len(tag, bytes.len())
    }
}

fn bytes_field(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    if !bytes.is_empty() {
        delimited_header(tag, bytes.len(), buf);
        buf.put_slice(bytes);
    }
}

/// `google.protobuf.Any { type_url = 1, value = 2 }`.
fn any_len(r: &XdsResource) -> usize {
    bytes_field_len(1, r.body.type_url.as_bytes()) + bytes_field_len(2, &r.body.value)
}

fn any(r: &XdsResource, buf: &mut impl BufMut) {
    bytes_field(1, r.body.type_url.as_bytes(), buf);
    bytes_field(2, &r.body.value, buf);
}

/// `Resource { version = 1, resource = 2, name = 3 }`.
fn resource_len(r: &XdsResource) -> usize {
    delimited_len(1, 16) + delimited_len(2, any_len(r)) + bytes_field_len(3, r.name.as_bytes())
}

fn resource(r: &XdsResource, buf: &mut impl BufMut) {
    bytes_field(1, &version_digits(r.version), buf);
    delimited_header(2, any_len(r), buf);
    any(r, buf);
    bytes_field(3, r.name.as_bytes(), buf);
}

impl prost::Message for DeltaResponse {
    /// Fields in tag order, as prost writes them: 1 system_version_info,
    /// 2 resources, 4 type_url, 5 nonce, 6 removed_resources.
    fn encode_raw(&self, buf: &mut impl BufMut) {
        bytes_field(1, self.system_version_info.as_bytes(), buf);
        for r in &self.resources {
            delimited_header(2, resource_len(r), buf);
            resource(r, buf);
        }
        bytes_field(4, self.type_url.as_bytes(), buf);
        bytes_field(5, self.nonce.as_bytes(), buf);
        for name in &self.removed_resources {
            // Repeated strings are written even when empty.
            delimited_header(6, name.len(), buf);
            buf.put_slice(name.as_bytes());
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        bytes_field_len(1, self.system_version_info.as_bytes())
            + self
                .resources
                .iter()
                .map(|r| delimited_len(2, resource_len(r)))
                .sum::<usize>()
            + bytes_field_len(4, self.type_url.as_bytes())
            + bytes_field_len(5, self.nonce.as_bytes())
            + self
                .removed_resources
                .iter()
                .map(|name| delimited_len(6, name.len()))
                .sum::<usize>()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl prost::Message for SotwResponse {
    /// Fields in tag order: 1 version_info, 2 resources (each an `Any`),
    /// 4 type_url, 5 nonce.
    fn encode_raw(&self, buf: &mut impl BufMut) {
        bytes_field(1, self.version_info.as_bytes(), buf);
        for r in &self.resources {
            delimited_header(2, any_len(r), buf);
            any(r, buf);
        }
        bytes_field(4, self.type_url.as_bytes(), buf);
        bytes_field(5, self.nonce.as_bytes(), buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        bytes_field_len(1, self.version_info.as_bytes())
            + self
                .resources
                .iter()
                .map(|r| delimited_len(2, any_len(r)))
                .sum::<usize>()
            + bytes_field_len(4, self.type_url.as_bytes())
            + bytes_field_len(5, self.nonce.as_bytes())
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::cache::hex;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn resources() -> Vec<XdsResource> {
        vec![
            XdsResource::from_any(
                "outbound:redis".into(),
                Any {
                    type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                    // Longer than 127 bytes: lengths take two varint bytes.
                    value: (0..300u32).map(|i| i as u8).collect(),
                },
            ),
            XdsResource::from_any(
                "empty".into(),
                Any {
                    type_url: String::new(),
                    value: Vec::new(),
                },
            ),
        ]
    }

    #[test]
    fn a_delta_response_is_byte_for_byte_envoys_own() {
        let ours = DeltaResponse {
            system_version_info: "abc".into(),
            resources: resources(),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            nonce: "7".into(),
            removed_resources: vec!["gone".into(), String::new()],
        };
        let envoys = DeltaDiscoveryResponse {
            system_version_info: "abc".into(),
            resources: resources()
                .iter()
                .map(|r| Resource {
                    name: r.name.clone(),
                    version: hex(r.version),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: ours.type_url.into(),
            nonce: "7".into(),
            removed_resources: ours.removed_resources.clone(),
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), envoys.encode_to_vec());
        assert_eq!(ours.encoded_len(), envoys.encoded_len());
        let empty = DeltaResponse::default();
        assert_eq!(
            empty.encode_to_vec(),
            DeltaDiscoveryResponse::default().encode_to_vec()
        );
    }

    #[test]
    fn a_sotw_response_is_byte_for_byte_envoys_own() {
        let ours = SotwResponse {
            version_info: "v1".into(),
            resources: resources(),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            nonce: "3".into(),
        };
        let envoys = DiscoveryResponse {
            version_info: "v1".into(),
            resources: resources().iter().map(|r| r.body.clone()).collect(),
            type_url: ours.type_url.into(),
            nonce: "3".into(),
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), envoys.encode_to_vec());
        assert_eq!(ours.encoded_len(), envoys.encoded_len());
    }

    #[test]
    fn versions_are_the_hex_the_proxy_reports_back() {
        for version in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(version_digits(version), hex(version).as_bytes());
        }
    }
}
