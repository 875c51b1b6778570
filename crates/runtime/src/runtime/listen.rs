//! Binding the servers' ports and serving on them until shutdown. Port 0
//! picks a free port; the port chosen is logged (`server`, `address`
//! fields), which is how tests and scripts that run many control planes at
//! once find it.

use super::env_var_name;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A port that cannot be listened on, with the setting that chooses it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {host}:{port} for the {server} server: {source} (set {variable} to another port)"
)]
pub struct ListenError {
    pub server: &'static str,
    pub host: String,
    pub port: u16,
    /// The `KUMA_*` variable that sets this port.
    pub variable: String,
    #[source]
    pub source: std::io::Error,
}

/// A listening socket and the server it is for.
pub struct Bound {
    pub name: &'static str,
    pub listener: TcpListener,
    pub address: SocketAddr,
}

/// Binds `0.0.0.0:port`, naming the setting in the error when it fails.
pub async fn bind(name: &'static str, setting: &str, port: u16) -> Result<Bound, ListenError> {
    bind_on(name, setting, "0.0.0.0", port).await
}

pub async fn bind_on(
    name: &'static str,
    setting: &str,
    host: &str,
    port: u16,
) -> Result<Bound, ListenError> {
    let error = |source| ListenError {
        server: name,
        host: host.to_string(),
        port,
        variable: env_var_name(setting),
        source,
    };
    let listener = listen(host, port).await.map_err(error)?;
    let address = listener.local_addr().map_err(error)?;
    tracing::info!(server = name, %address, "listening");
    Ok(Bound {
        name,
        listener,
        address,
    })
}

/// Connections the kernel holds for a listener before it accepts them.
/// Thousands of proxies reconnect at once after a restart, while the
/// runtime is busy configuring the first ones: a short queue overflows and
/// the kernel drops their handshakes (the default is 1,024; the kernel caps
/// it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(address).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            "no address to listen on",
        )
    }))
}

impl Bound {
    /// Serves gRPC until shutdown, over `transport`, with the server of
    /// [`super::http2`]: a connected proxy's connection keeps no buffer
    /// and wakes nothing while idle. No HTTP/2 pings either: the kernel's
    /// TCP keep-alive ([`keep_alive`]) finds a dead peer without waking
    /// kuma-cp. On shutdown each connection says GOAWAY and ends once its
    /// streams have (up to [`DRAIN_TIMEOUT`]).
    pub async fn serve_grpc<S>(self, service: S, transport: Transport, shutdown: CancellationToken)
    where
        S: super::http2::StreamService,
    {
        let name = self.name;
        let connections = tokio_util::task::TaskTracker::new();
        accept_loop(name, self.listener, shutdown.clone(), |socket, peer| {
            keep_alive(&socket);
            let (transport, service) = (transport.clone(), service.clone());
            let shutdown = shutdown.clone();
            // Each phase boxed: a task keeps room for its future's largest
            // state while it lives, and the handshake's (a TLS connection
            // being accepted, inline) is larger than a served connection's.
            connections.track_future(async move {
                let secured = Box::pin(secure(name, socket, peer, &transport)).await;
                if let Some((io, _)) = secured {
                    Box::pin(super::http2::serve_connection(
                        io,
                        service,
                        shutdown,
                        HEADER_READ_TIMEOUT,
                    ))
                    .await;
                }
            })
        })
        .await;
        connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(server = name, "streams still open at shutdown were cut");
        }
    }

    /// Serves HTTP until shutdown, finishing requests in flight.
    pub async fn serve(self, router: Router, shutdown: CancellationToken) {
        serve_http(self.name, self.listener, Transport::Plain, router, shutdown).await
    }

    /// Serves HTTP over `transport` until shutdown.
    pub async fn serve_over(
        self,
        transport: Transport,
        router: Router,
        shutdown: CancellationToken,
    ) {
        serve_http(self.name, self.listener, transport, router, shutdown).await
    }

    /// Serves HTTPS until shutdown; see [`serve_tls`].
    pub async fn serve_tls(
        self,
        tls: rustls::ServerConfig,
        router: Router,
        shutdown: CancellationToken,
    ) {
        serve_tls(self.name, self.listener, tls, router, shutdown).await
    }
}

/// TCP keep-alive on a connection that may stay idle for hours (a proxy's
/// stream): the kernel probes after [`keepalive_idle`] of silence, every
/// [`KEEPALIVE_INTERVAL`], and closes it after [`KEEPALIVE_PROBES`]
/// unanswered, so a dead peer is found within 2 minutes while kuma-cp
/// itself never wakes for an idle connection.
fn keep_alive(socket: &tokio::net::TcpStream) {
    static ACCEPTED: AtomicU32 = AtomicU32::new(0);
    let settings = socket2::TcpKeepalive::new()
        .with_time(keepalive_idle(ACCEPTED.fetch_add(1, Ordering::Relaxed)))
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    if let Err(e) = socket2::SockRef::from(socket).set_tcp_keepalive(&settings) {
        tracing::debug!(error = %e, "TCP keep-alive not set");
    }
}

/// The silence before the first probe of the `k`th accepted connection:
/// from [`KEEPALIVE_IDLE`] to a minute more, each second of it taken by
/// every 60th connection. A push to every proxy leaves all their
/// connections silent from the same moment; probed all at once, 10,000
/// connections' probes and answers overflowed the kernel's queue (1,000
/// packets by default), three rounds running, and live connections were
/// closed as dead. Spread, a second's probes are a sixtieth of them.
fn keepalive_idle(k: u32) -> Duration {
    // 7 and 60 have no common divisor: 60 connections in a row take all
    // 60 seconds, and neighbours are 7 s apart.
    KEEPALIVE_IDLE + Duration::from_secs(u64::from(k.wrapping_mul(7) % KEEPALIVE_SPREAD_SECONDS))
}

const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_SPREAD_SECONDS: u32 = 60;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// How long a client may take to send a request's headers, from when the
/// connection opens (on the gRPC ports: to open HTTP/2): a client that is
/// silent, or sends its headers a byte at a time (slowloris), is
/// disconnected then, rather than holding a connection and a task forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over HTTPS (HTTP/1.1 and HTTP/2) until shutdown. A
/// client that fails the handshake (for instance without a trusted client
/// certificate, when `tls` asks for one) is dropped and logged.
pub async fn serve_tls(
    name: &'static str,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    shutdown: CancellationToken,
) {
    serve_http(name, listener, Transport::tls(tls), router, shutdown).await
}

/// How a server's connections are secured.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
    /// TLS when the client opens with a handshake, plain text otherwise:
    /// for a port bound to the loopback interface only, whose documented
    /// use is a plain `curl http://localhost:...` on the same machine.
    TlsOrPlain(tokio_rustls::TlsAcceptor),
}

impl Transport {
    pub fn tls(config: rustls::ServerConfig) -> Transport {
        Transport::Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The connection `socket` becomes over `transport`, with the client's
/// certificate; none when the client is silent, or its handshake fails or
/// takes too long (logged).
async fn secure(
    name: &'static str,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    transport: &Transport,
) -> Option<(Box<dyn Io>, Option<Arc<Vec<u8>>>)> {
    let acceptor = match transport {
        Transport::Tls(acceptor) => acceptor,
        // The first bytes tell HTTP/1 from HTTP/2 (and a TLS handshake from
        // plain text), and no timer runs before they come: a silent client
        // is let go here.
        Transport::Plain | Transport::TlsOrPlain(_) => {
            let mut first = [0];
            match tokio::time::timeout(HEADER_READ_TIMEOUT, socket.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
            match transport {
                Transport::TlsOrPlain(acceptor) if first[0] == TLS_HANDSHAKE => acceptor,
                _ => return Some((Box::new(socket), None)),
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(s)) => {
            let certificate = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.to_vec()));
            Some((Box::new(s), certificate))
        }
        Ok(Err(e)) => {
            tracing::warn!(server = name, %peer, error = %e, "TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::warn!(server = name, %peer, "TLS handshake timed out");
            None
        }
    }
}

/// Accepts connections until shutdown, handing each to `handle` on a task
/// of its own. Out of file descriptors, it keeps serving the connections
/// it has and refuses new ones (see [`Ceiling`]); any other accept error
/// waits a little rather than spin.
async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    shutdown: CancellationToken,
    handle: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut ceiling = Ceiling::new(name);
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if Ceiling::reached(&e) => {
                    ceiling.refuse_one(&listener).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        ceiling.accepted();
        tokio::spawn(handle(socket, peer));
    }
}

/// The file-descriptor ceiling of a listener. At the limit a connection
/// cannot even be accepted to be closed, and would wait in the backlog
/// while `accept` fails at once, again and again. So one descriptor is
/// kept in reserve: at the limit it is given up, the waiting connection
/// accepted and closed (the client sees a refusal, not a hang), and the
/// reserve taken back. The limit is logged once, with how to raise it,
/// and again when connections are accepted anew.
struct Ceiling {
    server: &'static str,
    reserve: Option<std::fs::File>,
    reached_at: Option<std::time::Instant>,
    refused: u64,
}

impl Ceiling {
    fn new(server: &'static str) -> Ceiling {
        Ceiling {
            server,
            reserve: std::fs::File::open("/dev/null").ok(),
            reached_at: None,
            refused: 0,
        }
    }

    fn reached(error: &std::io::Error) -> bool {
        matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }

    async fn refuse_one(&mut self, listener: &TcpListener) {
        if self.reached_at.is_none() {
            self.reached_at = Some(std::time::Instant::now());
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit(2) writes the struct we pass and nothing else.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
            tracing::error!(
                server = self.server,
                limit = limit.rlim_cur,
                hard_limit = limit.rlim_max,
                "out of file descriptors: the connections open are served, new ones are refused until some close; raise the limit (ulimit -n, LimitNOFILE= in a systemd unit, the container runtime's nofile) to hold more"
            );
        }
        match self.reserve.take() {
            Some(reserve) => {
                drop(reserve);
                if let Ok((refused, _)) = listener.accept().await {
                    drop(refused);
                    self.refused += 1;
                }
                self.reserve = std::fs::File::open("/dev/null").ok();
            }
            // The reserve went to someone else: wait for a descriptor.
            None => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.reserve = std::fs::File::open("/dev/null").ok();
            }
        }
    }

    fn accepted(&mut self) {
        if let Some(since) = self.reached_at.take() {
            tracing::info!(
                server = self.server,
                refused = self.refused,
                after = ?since.elapsed(),
                "file descriptors free again: accepting connections"
            );
            self.refused = 0;
        }
    }
}

/// The one accept loop of every HTTP server, plain or TLS: HTTP/1.1 and
/// HTTP/2, [`HEADER_READ_TIMEOUT`] on every connection, and on shutdown
/// no new connections while requests in flight finish (up to
/// [`DRAIN_TIMEOUT`]).
async fn serve_http(
    name: &'static str,
    listener: TcpListener,
    transport: Transport,
    router: Router,
    shutdown: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    accept_loop(name, listener, shutdown, |socket, peer| {
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let transport = transport.clone();
        async move {
            let Some((io, certificate)) = secure(name, socket, peer, &transport).await else {
                return;
            };
            let peer = Peer {
                address: peer,
                certificate,
            };
            let router = tower::ServiceExt::map_request(
                router,
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer.clone());
                    request
                },
            );
            let service = hyper_util::service::TowerToHyperService::new(router);
            let io = hyper_util::rt::TokioIo::new(io);
            let connection = builder.serve_connection_with_upgrades(io, service);
            let _ = watcher.watch(connection.into_owned()).await;
        }
    })
    .await;
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            server = name,
            "requests still in flight at shutdown were cut"
        );
    }
}

/// Who is at the other end of a request's connection: its address, and
/// the client certificate it presented in the TLS handshake (verified by
/// the server's configuration). Every request carries one as an extension.
#[derive(Debug, Clone)]
pub struct Peer {
    pub address: SocketAddr,
    /// DER of the client's own certificate.
    pub certificate: Option<Arc<Vec<u8>>>,
}

/// A connection, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn connections_accepted_together_are_probed_at_different_seconds() {
        let idle: Vec<Duration> = (0..120).map(keepalive_idle).collect();
        let first_minute: BTreeSet<Duration> = idle[..60].iter().copied().collect();
        assert_eq!(first_minute.len(), 60, "60 in a row, 60 different seconds");
        assert_eq!(first_minute.first(), Some(&KEEPALIVE_IDLE));
        assert_eq!(
            first_minute.last(),
            Some(&(KEEPALIVE_IDLE + Duration::from_secs(59)))
        );
        assert_eq!(idle[..60], idle[60..], "and so on, a minute at a time");
        let dead_found_within =
            *first_minute.last().unwrap_or(&Duration::ZERO) + KEEPALIVE_INTERVAL * KEEPALIVE_PROBES;
        assert!(dead_found_within <= Duration::from_secs(120));
    }
}
