//! A stream's requests, read from its HTTP/2 body as gRPC messages.
//!
//! tonic's `Streaming` keeps a read buffer per stream for as long as the
//! stream lives, at least 1 KiB and as large as the largest request it
//! read (a proxy's first request carries its node, kilobytes with Envoy's
//! extension list). A connected proxy sends a small ACK now and then, and
//! most of the time nothing is half-read: here a message that arrives in
//! one DATA frame is decoded from that frame, only a message split across
//! frames is gathered in a buffer, and the buffer is freed once a message
//! is complete. Between requests a stream holds no buffer at all.

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use prost::bytes::{Buf, Bytes, BytesMut};
use std::marker::PhantomData;
use std::pin::Pin;
use tonic::Status;
use tonic::body::Body;

/// The largest request read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The gRPC message prefix: a compression flag and a 4-byte length.
const PREFIX: usize = 5;

/// A discovery request, and where its node is.
pub trait Request: prost::Message + Default {
    /// The field number of its `node`.
    const NODE_FIELD: u64;
}

impl Request for DeltaDiscoveryRequest {
    const NODE_FIELD: u64 = 1;
}

impl Request for DiscoveryRequest {
    const NODE_FIELD: u64 = 2;
}

pub struct Requests<M> {
    body: Body,
    /// The part of a message that arrived so far; empty (no allocation)
    /// between messages.
    partial: BytesMut,
    /// What of the last DATA frame is not read yet.
    rest: Bytes,
    message: PhantomData<fn() -> M>,
}

impl<M: Request> Requests<M> {
    pub fn new(body: Body) -> Self {
        Requests {
            body,
            partial: BytesMut::new(),
            rest: Bytes::new(),
            message: PhantomData,
        }
    }

    /// The next request; `None` when the proxy closed its side. Boxed: a
    /// request is hundreds of bytes (a delta request 624), and a stream's
    /// task would keep room for each copy the await points see, for as
    /// long as the stream lives.
    pub async fn message(&mut self) -> Result<Option<Box<M>>, Status> {
        loop {
            if let Some(message) = next_message(&mut self.partial, &mut self.rest)? {
                return Ok(Some(message));
            }
            let frame = std::future::poll_fn(|cx| {
                http_body::Body::poll_frame(Pin::new(&mut self.body), cx)
            })
            .await;
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.rest = data;
                    }
                }
                Some(Err(status)) => return Err(status),
                None if self.partial.is_empty() => return Ok(None),
                None => {
                    return Err(Status::invalid_argument(format!(
                        "the request stream ended inside a message ({} bytes of it arrived)",
                        self.partial.len()
                    )));
                }
            }
        }
    }
}

/// Takes the next message from `data`, or gathers what there is of it
/// into `partial`. `data` is left with what follows the message.
fn next_message<M: Request>(
    partial: &mut BytesMut,
    data: &mut Bytes,
) -> Result<Option<Box<M>>, Status> {
    if partial.is_empty()
        && let Some(len) = whole_message(data)?
    {
        data.advance(PREFIX);
        return decode(data.split_to(len)).map(Some);
    }
    // Split across frames: gather the prefix, then the message.
    loop {
        let wanted = match partial.len() {
            n if n < PREFIX => PREFIX - n,
            n => PREFIX + message_len(partial)? - n,
        };
        if wanted == 0 {
            let mut message = std::mem::take(partial).freeze();
            message.advance(PREFIX);
            return decode(message).map(Some);
        }
        if data.is_empty() {
            return Ok(None);
        }
        let take = wanted.min(data.len());
        partial.extend_from_slice(&data.split_to(take));
    }
}

/// The length of a message whose prefix starts `bytes`, refused when it
/// is compressed or too large.
fn message_len(bytes: &[u8]) -> Result<usize, Status> {
    if bytes[0] != 0 {
        return Err(Status::unimplemented(
            "compressed requests are not supported: send them uncompressed",
        ));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if len > MAX_REQUEST_BYTES {
        return Err(Status::out_of_range(format!(
            "a request of {len} bytes exceeds the {MAX_REQUEST_BYTES} bytes a request may have"
        )));
    }
    Ok(len)
}

/// The length of the message at the start of `data`, if all of it is there.
fn whole_message(data: &[u8]) -> Result<Option<usize>, Status> {
    if data.len() < PREFIX {
        return Ok(None);
    }
    let len = message_len(data)?;
    Ok((data.len() >= PREFIX + len).then_some(len))
}

fn decode<M: Request>(bytes: Bytes) -> Result<Box<M>, Status> {
    let mut message = Box::<M>::default();
    message
        .merge(without_node_extensions(bytes, M::NODE_FIELD))
        .map_err(|e| Status::invalid_argument(format!("request is not valid: {e}")))?;
    Ok(message)
}

/// The field of Envoy's `Node` that lists the extensions it was built with.
const NODE_EXTENSIONS: u64 = 9;

/// A request's bytes without the `extensions` of its node. Envoy lists
/// every extension it was built with (Envoy 1.40: 516 of them, about 60 KB)
/// in the first request of each stream; the control plane reads none of
/// them, and decoding them cost more CPU than the rest of a proxy's
/// handshake (10,000 proxies connecting: tens of millions of small
/// allocations, freed at once). Skipping a field is a jump over its
/// length. Bytes that are not a well-formed message are left as they are,
/// for the decoder to refuse.
fn without_node_extensions(message: Bytes, node_field: u64) -> Bytes {
    let Some(node) = fields(&message).find(|f| f.number == node_field && f.wire_type == 2) else {
        return message;
    };
    let contents = &message[node.contents.clone()];
    // Where the node's other fields are: a few spans, copied once below.
    let mut kept: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut skipped, mut end) = (false, 0);
    for field in fields(contents) {
        if field.number == NODE_EXTENSIONS {
            skipped = true;
        } else {
            kept.push(field.start..field.contents.end);
        }
        end = field.contents.end;
    }
    if !skipped || end != contents.len() {
        return message;
    }
    let kept_len: usize = kept.iter().map(|span| span.len()).sum();
    let mut lean = Vec::with_capacity(message.len() - contents.len() + kept_len);
    lean.extend_from_slice(&message[..node.start]);
    prost::encoding::encode_varint((node_field << 3) | 2, &mut lean);
    prost::encoding::encode_varint(kept_len as u64, &mut lean);
    for span in kept {
        lean.extend_from_slice(&contents[span]);
    }
    lean.extend_from_slice(&message[node.contents.end..]);
    Bytes::from(lean)
}

/// A field of a protobuf message: its number, wire type, where it starts
/// (its key) and where its value is.
struct Field {
    number: u64,
    wire_type: u64,
    start: usize,
    contents: std::ops::Range<usize>,
}

/// The fields of `message`, up to the first that is not well formed.
fn fields(message: &[u8]) -> impl Iterator<Item = Field> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let field = field_at(message, at)?;
        at = field.contents.end;
        Some(field)
    })
}

fn field_at(message: &[u8], start: usize) -> Option<Field> {
    let mut rest = message.get(start..)?;
    let varint = |rest: &mut &[u8]| prost::encoding::decode_varint(rest).ok();
    let key = varint(&mut rest)?;
    let (number, wire_type) = (key >> 3, key & 7);
    let len = match wire_type {
        // A varint: its last byte is the first without the high bit.
        0 => rest.iter().position(|b| b & 0x80 == 0)? + 1,
        1 => 8,
        2 => usize::try_from(varint(&mut rest)?).ok()?,
        5 => 4,
        _ => return None,
    };
    let from = message.len() - rest.len();
    let to = from.checked_add(len).filter(|to| *to <= message.len())?;
    Some(Field {
        number,
        wire_type,
        start,
        contents: from..to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{Extension, Node};
    use http_body::Frame;

    fn request(nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            response_nonce: nonce.to_string(),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".to_string(),
            ..Default::default()
        }
    }

    fn framed(message: &DeltaDiscoveryRequest) -> Vec<u8> {
        let encoded = prost::Message::encode_to_vec(message);
        let mut out = vec![0];
        out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        out.extend_from_slice(&encoded);
        out
    }

    /// A request body that arrives as these DATA frames.
    fn body(frames: Vec<Vec<u8>>) -> Body {
        let frames = frames
            .into_iter()
            .map(|f| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(f))));
        Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
    }

    #[tokio::test]
    async fn messages_are_read_however_frames_cut_them() {
        let messages: Vec<_> = (0..3).map(|i| request(&i.to_string())).collect();
        let bytes: Vec<u8> = messages.iter().flat_map(framed).collect();
        // One frame for all, a frame per byte, and every cut in between.
        for cut in 1..=bytes.len() {
            let mut requests = Requests::<DeltaDiscoveryRequest>::new(body(
                bytes.chunks(cut).map(<[u8]>::to_vec).collect(),
            ));
            for expected in &messages {
                let got = requests.message().await.expect("valid");
                assert_eq!(got.as_deref(), Some(expected), "frames of {cut} bytes");
            }
            assert_eq!(requests.message().await.expect("ended"), None);
            assert_eq!(requests.partial.capacity(), 0, "no buffer is kept");
        }
    }

    #[tokio::test]
    async fn a_body_ending_inside_a_message_is_an_error() {
        let whole = framed(&request("1"));
        let mut requests =
            Requests::<DeltaDiscoveryRequest>::new(body(vec![whole[..whole.len() - 1].to_vec()]));
        let error = requests.message().await.expect_err("truncated");
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            error.message().contains("ended inside a message"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn compressed_oversized_and_undecodable_requests_are_refused() {
        let mut compressed = framed(&request("1"));
        compressed[0] = 1;
        let huge = [0, 0xff, 0xff, 0xff, 0xff].to_vec();
        let garbage = [0, 0, 0, 0, 2, 0xff, 0xff].to_vec();
        for (bytes, code) in [
            (compressed, tonic::Code::Unimplemented),
            (huge, tonic::Code::OutOfRange),
            (garbage, tonic::Code::InvalidArgument),
        ] {
            let mut requests = Requests::<DeltaDiscoveryRequest>::new(body(vec![bytes]));
            let error = requests.message().await.expect_err("refused");
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn a_nodes_extensions_are_not_read_and_everything_else_is() {
        let node = Node {
            id: "default.web-1".into(),
            user_agent_name: "envoy".into(),
            extensions: (0..500)
                .map(|i| Extension {
                    name: format!("envoy.filters.network.extension_{i}"),
                    category: "envoy.filters.network".into(),
                    ..Default::default()
                })
                .collect(),
            client_features: vec!["envoy.lb.does_not_support_overprovisioning".into()],
            ..Default::default()
        };
        for sotw in [false, true] {
            let (bytes, field) = if sotw {
                let request = DiscoveryRequest {
                    version_info: "1".into(),
                    node: Some(node.clone()),
                    type_url: "t".into(),
                    ..Default::default()
                };
                (
                    prost::Message::encode_to_vec(&request),
                    DiscoveryRequest::NODE_FIELD,
                )
            } else {
                let request = DeltaDiscoveryRequest {
                    node: Some(node.clone()),
                    type_url: "t".into(),
                    response_nonce: "7".into(),
                    ..Default::default()
                };
                (
                    prost::Message::encode_to_vec(&request),
                    DeltaDiscoveryRequest::NODE_FIELD,
                )
            };
            let lean = without_node_extensions(Bytes::from(bytes.clone()), field);
            assert!(
                lean.len() < bytes.len() / 10,
                "{} of {}",
                lean.len(),
                bytes.len()
            );
            let expected = Node {
                extensions: Vec::new(),
                ..node.clone()
            };
            if sotw {
                let got: DiscoveryRequest = prost::Message::decode(lean).expect("valid");
                assert_eq!(
                    (got.node, got.version_info, got.type_url.as_str()),
                    (Some(expected), "1".into(), "t")
                );
            } else {
                let got: DeltaDiscoveryRequest = prost::Message::decode(lean).expect("valid");
                assert_eq!(
                    (got.node, got.response_nonce, got.type_url.as_str()),
                    (Some(expected), "7".into(), "t")
                );
            }
        }
    }

    #[test]
    fn bytes_that_are_not_a_message_are_left_for_the_decoder() {
        for garbage in [&[0x0a, 0xff][..], &[0x0a, 0x02, 0x4a], &[0x0b, 0x01], &[]] {
            let kept = without_node_extensions(Bytes::copy_from_slice(garbage), 1);
            assert_eq!(&kept[..], garbage);
        }
    }
}
