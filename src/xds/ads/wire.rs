//! The gRPC wiring of the discovery streams (ADS, and SDS on its own
//! port), with lean buffers. The generated servers give every stream
//! tonic's default codec: an 8 KiB buffer to read requests and another to
//! write responses, each growing to the largest message and kept for as
//! long as the stream lives. A proxy sends small ACKs and is sent responses
//! of at most 64 KiB (see `delta`), so here both start at 1 KiB and the
//! writer hands its bytes on after each response: tens of thousands of
//! connected proxies cost that much less.

use super::{AdsServer, Protocol, Responses, delta::Delta, sotw::Sotw, spawn_stream};
use crate::xds::generator::TypeUrl;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Status, Streaming};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Requests up to this size are read without growing the buffer.
const BUFFER_BYTES: usize = 1024;
/// The writer hands its bytes to HTTP/2 once it holds this much.
const YIELD_BYTES: usize = 1024;

/// The largest request read, and response written.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Protobuf, with [`BUFFER_BYTES`] and [`YIELD_BYTES`].
struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        LeanCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }
}

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
            Box::pin(serve(Method::<Delta>::new(&self.0, D::SERVED), request))
        } else if path == D::SOTW {
            Box::pin(serve(Method::<Sotw>::new(&self.0, D::SERVED), request))
        } else {
            let refusal = Status::unimplemented(D::OTHER_METHODS).into_http();
            Box::pin(std::future::ready(Ok(refusal)))
        }
    }
}

/// One flavour of stream, as tonic calls it.
struct Method<P> {
    server: Arc<AdsServer>,
    served: &'static [TypeUrl],
    protocol: PhantomData<fn() -> P>,
}

impl<P> Method<P> {
    fn new(server: &Arc<AdsServer>, served: &'static [TypeUrl]) -> Self {
        Method {
            server: server.clone(),
            served,
            protocol: PhantomData,
        }
    }
}

impl<P: Protocol> StreamingService<P::Request> for Method<P> {
    type Response = P::Response;
    type ResponseStream = Responses<P::Response>;
    type Future = std::future::Ready<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<P::Request>>) -> Self::Future {
        std::future::ready(Ok(spawn_stream::<P>(&self.server, self.served, request)))
    }
}

/// One stream through [`LeanCodec`], with the message sizes the
/// generated server allowed.
async fn serve<P: Protocol>(
    method: Method<P>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Infallible> {
    let mut grpc = Grpc::new(LeanCodec::<P::Response, P::Request>::default())
        .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), Some(MAX_RESPONSE_BYTES));
    Ok(grpc.streaming(method, request).await)
}
