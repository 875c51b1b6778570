//! The gRPC wiring of the discovery streams (ADS, and SDS on its own
//! port), with lean buffers. The generated servers give every stream
//! tonic's default codec and body: an 8 KiB buffer to read requests and
//! another to write responses, each growing to the largest message and
//! kept for as long as the stream lives. Here requests are read by
//! [`Requests`], which keeps no buffer between them, and responses are
//! each framed in a buffer of their own size, freed once written. Tens of
//! thousands of connected proxies cost that much less.

use super::incoming::Requests;
use super::{AdsServer, Protocol, Responses, delta::Delta, sotw::Sotw, spawn_stream};
use crate::xds::generator::TypeUrl;
use http_body::Frame;
use prost::bytes::Bytes;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_stream::Stream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// The largest response written (requests: `incoming::MAX_REQUEST_BYTES`).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A discovery service: its gRPC name, its two stream methods, and the
/// resource types its streams serve.
pub trait Discovery: Send + Sync + 'static {
    const NAME: &'static str;
    const SOTW: &'static str;
    const DELTA: &'static str;
    const SERVED: &'static [TypeUrl];
    /// What any other method of the service is answered.
    const OTHER_METHODS: &'static str;
}

/// ADS: every type on one stream.
pub struct Aggregated;

impl Discovery for Aggregated {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
    const SOTW: &'static str =
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
    const DELTA: &'static str =
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
    const SERVED: &'static [TypeUrl] = &TypeUrl::ALL;
    const OTHER_METHODS: &'static str =
        "ADS is served on StreamAggregatedResources and DeltaAggregatedResources only";
}

/// SDS on its own port: the same streams, serving secrets only.
pub struct Secrets;

impl Discovery for Secrets {
    const NAME: &'static str = "envoy.service.secret.v3.SecretDiscoveryService";
    const SOTW: &'static str = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets";
    const DELTA: &'static str = "/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets";
    const SERVED: &'static [TypeUrl] = &[TypeUrl::Secret];
    const OTHER_METHODS: &'static str =
        "secrets are served on streams: use StreamSecrets or DeltaSecrets";
}

/// The gRPC service of `D`; each stream runs in its own task.
pub struct Streams<D>(Arc<AdsServer>, PhantomData<fn() -> D>);

impl<D> Streams<D> {
    pub(super) fn new(server: Arc<AdsServer>) -> Self {
        Streams(server, PhantomData)
    }
}

impl<D> Clone for Streams<D> {
    fn clone(&self) -> Self {
        Streams(self.0.clone(), PhantomData)
    }
}

impl<D: Discovery> NamedService for Streams<D> {
    const NAME: &'static str = D::NAME;
}

impl<D: Discovery> Service<http::Request<Body>> for Streams<D> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path == D::DELTA {
            Box::pin(serve::<Delta>(self.0.clone(), D::SERVED, request))
        } else if path == D::SOTW {
            Box::pin(serve::<Sotw>(self.0.clone(), D::SERVED, request))
        } else {
            let refusal = Status::unimplemented(D::OTHER_METHODS).into_http();
            Box::pin(std::future::ready(Ok(refusal)))
        }
    }
}

/// One stream: requests read by [`Requests`], responses framed by
/// [`Framed`].
async fn serve<P: Protocol>(
    server: Arc<AdsServer>,
    served: &'static [TypeUrl],
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Infallible> {
    if let Some(encoding) = request
        .headers()
        .get("grpc-encoding")
        .filter(|e| e.as_bytes() != b"identity")
    {
        let refusal = Status::unimplemented(format!(
            "requests compressed with {encoding:?} are not supported: send them uncompressed"
        ));
        return Ok(refusal.into_http());
    }
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let requests = Requests::new(request.into_body());
    let responses = spawn_stream::<P>(&server, served, token, requests);
    let mut response = http::Response::new(Body::new(Framed {
        responses,
        done: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

/// The response body of a stream. Each response is encoded into a buffer
/// of exactly its size, handed to HTTP/2 and freed once written. tonic's
/// own body encodes every response into one buffer per stream, which
/// keeps the capacity of the largest response it ever wrote (64 KiB for a
/// proxy that sees 1,000 services) for as long as the stream lives.
struct Framed<T> {
    responses: Responses<T>,
    done: bool,
}

/// A gRPC message: the uncompressed flag, the length, the message.
fn frame<T: prost::Message>(message: &T) -> Result<Bytes, Status> {
    let len = message.encoded_len();
    if len > MAX_RESPONSE_BYTES {
        return Err(Status::out_of_range(format!(
            "a response of {len} bytes exceeds the {MAX_RESPONSE_BYTES} bytes a response may have"
        )));
    }
    crate::runtime::memory::churned();
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode_raw(&mut buf);
    Ok(Bytes::from(buf))
}

/// The trailers that end a stream with `status`.
fn trailers(status: &Status) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // Only a message that cannot be a header value gets here.
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    headers
}

impl<T: prost::Message> http_body::Body for Framed<T> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let end = match std::task::ready!(Pin::new(&mut this.responses).poll_next(cx)) {
            Some(Ok(message)) => match frame(&message) {
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Err(status) => status,
            },
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        this.done = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&end)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::ads::outgoing::DeltaResponse;
    use http_body::Body as _;

    /// The next frame of `body`.
    async fn next<T: prost::Message>(body: &mut Framed<T>) -> Option<Frame<Bytes>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
            .await
            .map(|frame| frame.expect("frames are never errors"))
    }

    #[tokio::test]
    async fn responses_are_framed_as_grpc_messages_and_the_stream_ends_with_its_status() {
        let (tx, rx) = super::super::slot::slot();
        let response = DeltaResponse {
            nonce: "1".into(),
            ..Default::default()
        };
        let mut body = Framed {
            responses: Responses(rx),
            done: false,
        };
        tx.send(Box::new(Ok(response.clone()))).await.unwrap();
        let first = next(&mut body).await.unwrap().into_data().unwrap();
        let encoded = prost::Message::encode_to_vec(&response);
        assert_eq!(first[0], 0, "not compressed");
        assert_eq!(&first[1..5], (encoded.len() as u32).to_be_bytes());
        assert_eq!(&first[5..], encoded);
        tx.send(Box::new(Err(Status::not_found(
            "dataplane \"web\" is gone",
        ))))
        .await
        .unwrap();
        let end = next(&mut body).await.unwrap().into_trailers().unwrap();
        assert_eq!(end["grpc-status"], "5");
        assert_eq!(end["grpc-message"], "dataplane%20%22web%22%20is%20gone");
        assert!(body.is_end_stream() && next(&mut body).await.is_none());
    }

    #[tokio::test]
    async fn a_stream_the_server_ends_closes_with_status_ok() {
        let (tx, rx) = super::super::slot::slot::<Box<Result<DeltaResponse, Status>>>();
        drop(tx);
        let mut body = Framed {
            responses: Responses(rx),
            done: false,
        };
        let end = next(&mut body).await.unwrap().into_trailers().unwrap();
        assert_eq!(end["grpc-status"], "0");
    }
}
