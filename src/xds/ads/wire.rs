//! The gRPC wiring of the two ADS streams, with lean buffers. The
//! generated server gives every stream tonic's default codec: an 8 KiB
//! buffer to read requests and another to write responses, each growing to
//! the largest message and kept for as long as the stream lives. A proxy
//! sends small ACKs and is sent responses of at most 64 KiB (see
//! `delta`), so here both start at 1 KiB and the writer hands its bytes on
//! after each response: tens of thousands of connected proxies cost that
//! much less. Every other method is the generated server's.

use super::{AdsService, Responses};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
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

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

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

/// The ADS service: both streams through [`LeanCodec`].
#[derive(Clone)]
pub struct Ads {
    service: Arc<AdsService>,
    generated: AggregatedDiscoveryServiceServer<AdsService>,
}

impl Ads {
    pub(super) fn new(service: AdsService) -> Ads {
        let service = Arc::new(service);
        Ads {
            generated: AggregatedDiscoveryServiceServer::from_arc(service.clone()),
            service,
        }
    }
}

impl NamedService for Ads {
    const NAME: &'static str = <AggregatedDiscoveryServiceServer<AdsService> as NamedService>::NAME;
}

/// One stream kind of [`AdsService`], as tonic calls it.
struct Method<Req, Res>(Arc<AdsService>, PhantomData<fn(Req) -> Res>);

impl StreamingService<DeltaDiscoveryRequest>
    for Method<DeltaDiscoveryRequest, DeltaDiscoveryResponse>
{
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = Responses<DeltaDiscoveryResponse>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.delta_aggregated_resources(request).await })
    }
}

impl StreamingService<DiscoveryRequest> for Method<DiscoveryRequest, DiscoveryResponse> {
    type Response = DiscoveryResponse;
    type ResponseStream = Responses<DiscoveryResponse>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.stream_aggregated_resources(request).await })
    }
}

impl Service<http::Request<Body>> for Ads {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            DELTA => Box::pin(serve::<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(
                Method(self.service.clone(), PhantomData),
                request,
            )),
            SOTW => Box::pin(serve::<DiscoveryRequest, DiscoveryResponse>(
                Method(self.service.clone(), PhantomData),
                request,
            )),
            _ => self.generated.call(request),
        }
    }
}

/// One stream through [`LeanCodec`], with the message sizes the
/// generated server allowed.
async fn serve<Req, Res>(
    method: Method<Req, Res>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Infallible>
where
    Req: prost::Message + Default + Send + 'static,
    Res: prost::Message + Send + 'static,
    Method<Req, Res>: StreamingService<Req, Response = Res> + Send + 'static,
    <Method<Req, Res> as StreamingService<Req>>::ResponseStream: Send + 'static,
    <Method<Req, Res> as StreamingService<Req>>::Future: Send,
{
    let mut grpc = Grpc::new(LeanCodec::<Res, Req>::default())
        .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), Some(MAX_RESPONSE_BYTES));
    Ok(grpc.streaming(method, request).await)
}
