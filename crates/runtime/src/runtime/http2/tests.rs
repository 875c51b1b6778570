//! The server against h2's client (the HTTP/2 of tonic's and hyper's
//! clients) over real TCP, with a service that echoes each stream.

use super::serve_connection;
use axum::http;
use bytes::Bytes;
use http_body::Frame;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;

/// How each echo stream ended: `Ok` when the client ended its side,
/// `Err` with the body's error when the stream was reset.
type Ended = mpsc::UnboundedSender<Result<(), String>>;

/// A service that sends back every DATA of a stream, then trailers once
/// the client ends its side.
fn echo(
    ended: Ended,
) -> impl tower::Service<
    http::Request<Body>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |request: http::Request<Body>| {
        let ended = ended.clone();
        async move {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, tonic::Status>>(4);
            tokio::spawn(async move {
                let mut body = request.into_body();
                loop {
                    match http_body_util::BodyExt::frame(&mut body).await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data()
                                && tx.send(Ok(Frame::data(data))).await.is_err()
                            {
                                return;
                            }
                        }
                        Some(Err(status)) => {
                            let _ = ended.send(Err(status.message().to_string()));
                            return;
                        }
                        None => break,
                    }
                }
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let _ = tx.send(Ok(Frame::trailers(trailers))).await;
                let _ = ended.send(Ok(()));
            });
            let body =
                http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            Ok::<_, Infallible>(http::Response::new(Body::new(body)))
        }
    })
}

struct Server {
    address: SocketAddr,
    shutdown: CancellationToken,
    ended: mpsc::UnboundedReceiver<Result<(), String>>,
}

async fn server(preface_within: Duration) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let token = shutdown.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = echo(ended_tx.clone());
            tokio::spawn(serve_connection(
                socket,
                service,
                token.clone(),
                preface_within,
            ));
        }
    });
    Server {
        address,
        shutdown,
        ended,
    }
}

/// An h2 client connection, driven on its own task; the task's handle
/// ends when the server closes the connection.
async fn client(
    address: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    (send, tokio::spawn(connection))
}

fn post() -> http::Request<()> {
    http::Request::post("http://kuma/envoy.Echo/Stream")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

/// Everything the response body holds, then its trailers.
async fn read_all(body: &mut h2::RecvStream) -> (Vec<u8>, Option<http::HeaderMap>) {
    let mut all = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        all.extend_from_slice(&chunk);
    }
    (all, body.trailers().await.unwrap())
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn megabytes_cross_each_way_within_the_flow_control_windows() {
    let mut server = server(WAIT).await;
    let (mut send, _connection) = client(server.address).await;
    let (response, mut stream) = send.send_request(post(), false).unwrap();
    // 4 MiB is four times the server's connection window and sixty-four
    // times the client's: it gets through only if both sides give their
    // windows back as they read.
    let sent: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    stream.send_data(Bytes::from(sent.clone()), true).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (echoed, trailers) = tokio::time::timeout(WAIT, read_all(&mut body))
        .await
        .expect("the whole echo within the wait");
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "the echo differs from what was sent");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    assert_eq!(server.ended.recv().await, Some(Ok(())));
}

#[tokio::test]
async fn a_hundred_streams_share_one_connection() {
    let server = server(WAIT).await;
    let (send, _connection) = client(server.address).await;
    let streams = (0..100u32).map(|i| {
        let send = send.clone();
        async move {
            let mut send = send.ready().await.unwrap();
            let (response, mut stream) = send.send_request(post(), false).unwrap();
            stream
                .send_data(Bytes::from(i.to_be_bytes().to_vec()), true)
                .unwrap();
            let mut body = response.await.unwrap().into_body();
            read_all(&mut body).await.0
        }
    });
    let echoed = tokio::time::timeout(WAIT, futures::future::join_all(streams))
        .await
        .expect("every stream answered");
    for (i, echo) in echoed.into_iter().enumerate() {
        assert_eq!(echo, (i as u32).to_be_bytes());
    }
    drop(server);
}

#[tokio::test]
async fn on_shutdown_no_new_stream_is_taken_and_the_open_one_finishes() {
    let server = server(WAIT).await;
    let (mut send, connection) = client(server.address).await;
    let (response, mut stream) = send.send_request(post(), false).unwrap();
    stream
        .send_data(Bytes::from_static(b"before"), false)
        .unwrap();
    let mut body = response.await.unwrap().into_body();
    assert_eq!(body.data().await.unwrap().unwrap(), "before");
    server.shutdown.cancel();
    // GOAWAY arrived: the client refuses to open another stream.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match send.clone().ready().await {
                Err(e) => return e,
                Ok(mut ready) => match ready.send_request(post(), true) {
                    Err(e) => return e,
                    Ok((response, _)) => {
                        if let Err(e) = response.await {
                            return e;
                        }
                    }
                },
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no new stream after shutdown");
    assert!(refused.is_go_away() || refused.is_remote(), "{refused}");
    // The open stream still echoes, and ends as usual.
    stream
        .send_data(Bytes::from_static(b"after"), true)
        .unwrap();
    let (rest, trailers) = read_all(&mut body).await;
    assert_eq!(rest, b"after");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    // Then the server closes the connection.
    let closed = tokio::time::timeout(WAIT, connection).await;
    assert!(
        closed.is_ok(),
        "the connection is closed once its stream ended"
    );
}

#[tokio::test]
async fn a_reset_stream_ends_its_request_body_with_an_error() {
    let mut server = server(WAIT).await;
    let (mut send, _connection) = client(server.address).await;
    let (response, mut stream) = send.send_request(post(), false).unwrap();
    stream
        .send_data(Bytes::from_static(b"hello"), false)
        .unwrap();
    let _ = response.await.unwrap();
    stream.send_reset(h2::Reason::CANCEL);
    let ended = tokio::time::timeout(WAIT, server.ended.recv())
        .await
        .unwrap();
    assert!(
        matches!(&ended, Some(Err(why)) if why.contains("reset")),
        "{ended:?}"
    );
}

/// What the server sends a raw TCP client that sends `bytes`, until the
/// server closes the connection (which it must, within the wait).
async fn until_closed(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
        .await
        .expect("closed, not left hanging")
        .unwrap();
    got
}

#[tokio::test]
async fn a_client_that_does_not_speak_http2_is_disconnected() {
    let server = server(WAIT).await;
    let got = until_closed(server.address, b"GET / HTTP/1.1\r\nhost: kuma\r\n\r\n").await;
    // The server's opening (SETTINGS, WINDOW_UPDATE), then a GOAWAY
    // saying PROTOCOL_ERROR.
    let frames = frames(&got);
    let kinds: Vec<u8> = frames.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, [4, 8, 7], "{got:?}");
    assert_eq!(frames[2].1[4..], [0, 0, 0, 1]);
}

/// The frames in `bytes`: each one's type and payload.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        frames.push((bytes[3], bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    frames
}

#[tokio::test]
async fn a_client_that_says_nothing_is_let_go() {
    let server = server(Duration::from_millis(200)).await;
    let got = until_closed(server.address, b"").await;
    // Its opening (SETTINGS, WINDOW_UPDATE), and nothing else: no GOAWAY
    // for a client that never spoke.
    let kinds: Vec<u8> = frames(&got).iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, [4, 8], "{got:?}");
}

/// A small deterministic generator (xorshift), so a failing case is the
/// same on every run.
pub(super) struct Random(pub(super) u64);

impl Random {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A frame of a random type, flags, stream and payload; a third of the
/// HEADERS carry a valid request, so streams get opened and answered.
fn random_frame(random: &mut Random) -> Vec<u8> {
    let kind = random.below(11) as u8;
    let flags = random.next() as u8;
    let stream = random.below(8) as u32;
    let payload: Vec<u8> = if kind == 1 && random.below(3) == 0 {
        loona_hpack::Encoder::new().encode([
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/envoy.Echo/Stream"),
            (b":scheme", b"http"),
        ])
    } else {
        (0..random.below(40)).map(|_| random.next() as u8).collect()
    };
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

#[tokio::test]
async fn any_frames_after_the_preface_end_in_an_answer_or_a_goaway_never_a_panic() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for case in 0..500 {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut input = frame_bytes_preface();
        for _ in 0..random.below(12) {
            input.extend(random_frame(&mut random));
        }
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        let (ended, _) = mpsc::unbounded_channel();
        let served = serve_connection(
            server,
            echo(ended),
            CancellationToken::new(),
            Duration::from_secs(1),
        );
        // The connection ends: the client's side is closed, so whatever
        // the frames did, the server stops reading and lets go.
        tokio::time::timeout(WAIT, served)
            .await
            .unwrap_or_else(|_| panic!("case {case} did not end: {input:?}"));
    }
}

/// The client's preface and an empty SETTINGS frame.
fn frame_bytes_preface() -> Vec<u8> {
    let mut bytes = super::frame::PREFACE.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    bytes
}
