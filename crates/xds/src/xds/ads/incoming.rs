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

use prost::bytes::{Buf, Bytes, BytesMut};
use std::marker::PhantomData;
use std::pin::Pin;
use tonic::Status;
use tonic::body::Body;

/// The largest request read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// The gRPC message prefix: a compression flag and a 4-byte length.
const PREFIX: usize = 5;

pub struct Requests<M> {
    body: Body,
    /// The part of a message that arrived so far; empty (no allocation)
    /// between messages.
    partial: BytesMut,
    /// What of the last DATA frame is not read yet.
    rest: Bytes,
    message: PhantomData<fn() -> M>,
}

impl<M: prost::Message + Default> Requests<M> {
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
fn next_message<M: prost::Message + Default>(
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

fn decode<M: prost::Message + Default>(bytes: Bytes) -> Result<Box<M>, Status> {
    let mut message = Box::<M>::default();
    message
        .merge(bytes)
        .map_err(|e| Status::invalid_argument(format!("request is not valid: {e}")))?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
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
}
