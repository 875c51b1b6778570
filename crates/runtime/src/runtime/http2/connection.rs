//! One HTTP/2 connection, as one future: it reads frames, calls the
//! service for each new stream, and writes what the streams answer within
//! the client's flow-control windows.
//!
//! Nothing is kept for an idle connection but its state: bytes are read
//! into a buffer on the stack and only a frame cut in half by the network
//! is kept on the heap, until its rest arrives; output is gathered in a
//! buffer that is freed once written. No timer runs once the client has
//! opened HTTP/2 (the kernel's TCP keep-alive watches the peer), so a
//! connected proxy that says nothing costs no wake-up.

use super::StreamService;
use super::body::{Inbox, RequestBody};
use super::frame::{self, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, HEADER_LEN, Head, Kind, Reason};
use super::headers::{self, Refused};
use super::hpack;
use axum::http;
use bytes::{Buf, Bytes};
use futures::task::AtomicWaker;
use std::convert::Infallible;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::body::Body;

/// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const MAX_STREAMS: usize = 256;
/// Output waiting to be written beyond which the connection neither reads
/// nor answers until the client has read some: a client that does not
/// read cannot make the server buffer without bound.
const OUT_HIGH: usize = 64 * 1024;
/// What one read takes from the connection, at most: a whole frame.
const READ_CHUNK: usize = HEADER_LEN + DEFAULT_MAX_FRAME;
/// A header block (HEADERS and its CONTINUATION frames) beyond this ends
/// the connection.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// What a client may send on a stream, and on the connection, before the
/// server has taken it. HTTP/2's 64 KiB default is one Envoy first
/// request (its node is about 60 KB): a hundred streams on a connection
/// would wait for each other's window updates, long enough under load for
/// their first requests to miss the streams' 10 s. Windows are credit,
/// not buffers: what is held is what a reader has not taken yet.
const RECV_STREAM_WINDOW: usize = 256 * 1024;
const RECV_CONNECTION_WINDOW: usize = 1024 * 1024;
/// Received bytes are given back to a window once half of it is taken.
const STREAM_GIVE_BACK: usize = RECV_STREAM_WINDOW / 2;
const CONNECTION_GIVE_BACK: usize = RECV_CONNECTION_WINDOW / 2;

/// What the service answers for one stream.
type Call = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// GOAWAY sent or received: the streams open finish, no new ones.
    GoingAway,
    /// A connection error: GOAWAY is written, then the connection closed.
    Closing,
}

enum Failure {
    /// The connection broke.
    Io,
    /// The client broke the protocol: GOAWAY with this reason.
    Protocol(Reason),
}

pub struct Connection<IO, S> {
    io: IO,
    service: S,
    decoder: hpack::Decoder,
    /// Bytes of the client's preface not yet read.
    preface_left: usize,
    /// Whether the first frame after the preface (a SETTINGS) came.
    settings_seen: bool,
    /// A frame the network delivered in part; empty between frames.
    partial: Vec<u8>,
    /// HEADERS awaiting CONTINUATION: its stream, END_STREAM, the block.
    continuing: Option<(u32, bool, Vec<u8>)>,
    /// Frames to write, from `written` on; freed once all are written.
    out: Vec<u8>,
    written: usize,
    unflushed: bool,
    streams: Vec<Stream>,
    /// The streams woken since they were last polled; only those are
    /// polled again (a connection may carry hundreds).
    woken: Arc<Woken>,
    /// Streams the connection itself has work for: new, given window, or
    /// waiting for the output to drain.
    due: Vec<u32>,
    /// What the client lets the server send on the connection, and each
    /// new stream's window.
    send_window: i64,
    peer_initial_window: i64,
    peer_max_frame: usize,
    /// What the client may still send on the connection, and what was
    /// received and can be given back.
    recv_window: i64,
    recv_unacked: usize,
    last_stream: u32,
    phase: Phase,
    /// Until the client has opened HTTP/2 (preface and SETTINGS): one that
    /// connects and says nothing is let go.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// The ids of woken streams, and the connection's task to wake.
#[derive(Default)]
struct Woken {
    ids: std::sync::Mutex<Vec<u32>>,
    connection: AtomicWaker,
}

impl Woken {
    fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The waker of one stream's reply and request body.
struct StreamWaker {
    id: u32,
    woken: Arc<Woken>,
}

impl futures::task::ArcWake for StreamWaker {
    fn wake_by_ref(this: &Arc<Self>) {
        this.woken
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(this.id);
        this.woken.connection.wake();
    }
}

struct Stream {
    id: u32,
    waker: std::task::Waker,
    reply: Reply,
    inbox: Arc<Inbox>,
    /// The client ended its side, or the stream was reset.
    recv_closed: bool,
    /// Received bytes its reader has not taken yet, and taken bytes not
    /// yet given back to the stream's window.
    outstanding: usize,
    unacked: usize,
    send_window: i64,
    /// What of the body's last DATA is not yet sent (flow control).
    pending: Bytes,
}

enum Reply {
    Calling(Call),
    Body(Body),
    Done,
}

/// Where a stream writes, and what bounds it.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    written: usize,
    window: &'a mut i64,
    max_frame: usize,
}

impl Writer<'_> {
    fn full(&self) -> bool {
        self.out.len() - self.written >= OUT_HIGH
    }
}

impl<IO, S> Connection<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: StreamService,
{
    pub fn new(
        io: IO,
        service: S,
        shutdown: tokio_util::sync::CancellationToken,
        preface_within: std::time::Duration,
    ) -> Self {
        let mut out = Vec::new();
        frame::write_settings(
            &mut out,
            &[
                // Nothing to remember between a stream's few header
                // blocks: the client's encoder drops its table.
                (frame::HEADER_TABLE_SIZE, 0),
                (frame::MAX_CONCURRENT_STREAMS, MAX_STREAMS as u32),
                (frame::INITIAL_WINDOW_SIZE, RECV_STREAM_WINDOW as u32),
                (frame::MAX_HEADER_LIST_SIZE, headers::MAX_HEADER_LIST as u32),
            ],
        );
        // SETTINGS cannot raise the connection's own window: an update does.
        let raise = RECV_CONNECTION_WINDOW - DEFAULT_WINDOW as usize;
        frame::write_window_update(&mut out, 0, raise as u32);
        Connection {
            io,
            service,
            decoder: hpack::Decoder::default(),
            preface_left: frame::PREFACE.len(),
            settings_seen: false,
            partial: Vec::new(),
            continuing: None,
            out,
            written: 0,
            unflushed: false,
            streams: Vec::new(),
            woken: Arc::default(),
            due: Vec::new(),
            send_window: DEFAULT_WINDOW,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: DEFAULT_MAX_FRAME,
            recv_window: RECV_CONNECTION_WINDOW as i64,
            recv_unacked: 0,
            last_stream: 0,
            phase: Phase::Open,
            deadline: Some(Box::pin(tokio::time::sleep(preface_within))),
            shutdown: Box::pin(shutdown.cancelled_owned()),
        }
    }

    /// Reads what the connection has; `false` at its end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Failure>> {
        let mut storage = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut storage);
        if ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)).is_err() {
            return Poll::Ready(Err(Failure::Io));
        }
        if buf.filled().is_empty() {
            return Poll::Ready(Ok(false));
        }
        self.receive(buf.filled()).map_err(Failure::Protocol)?;
        Poll::Ready(Ok(true))
    }

    /// Handles every whole frame of `bytes` (after what was kept of a
    /// frame before), and keeps what is left of the last.
    fn receive(&mut self, bytes: &[u8]) -> Result<(), Reason> {
        let gathered;
        let mut input = bytes;
        if !self.partial.is_empty() {
            self.partial.extend_from_slice(bytes);
            gathered = std::mem::take(&mut self.partial);
            input = &gathered;
        }
        if self.preface_left > 0 {
            let n = self.preface_left.min(input.len());
            let at = frame::PREFACE.len() - self.preface_left;
            if input[..n] != frame::PREFACE[at..at + n] {
                // Not HTTP/2 (or not this server's client): nothing to
                // answer in a language it would understand.
                return Err(Reason::Protocol);
            }
            self.preface_left -= n;
            input = &input[n..];
        }
        while let Some(head_bytes) = input.first_chunk::<HEADER_LEN>() {
            let head = Head::parse(head_bytes);
            if head.len > DEFAULT_MAX_FRAME {
                return Err(Reason::FrameSize);
            }
            let Some(payload) = input.get(HEADER_LEN..HEADER_LEN + head.len) else {
                break;
            };
            self.on_frame(head, payload)?;
            input = &input[HEADER_LEN + head.len..];
        }
        self.partial = input.to_vec();
        Ok(())
    }

    fn on_frame(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if !self.settings_seen {
            if head.kind != Kind::Settings || head.has(frame::ACK) {
                return Err(Reason::Protocol);
            }
            self.settings_seen = true;
            self.deadline = None;
        }
        if let Some((stream, ..)) = &self.continuing
            && (head.kind != Kind::Continuation || head.stream != *stream)
        {
            return Err(Reason::Protocol);
        }
        match head.kind {
            Kind::Data => self.on_data(head, payload),
            Kind::Headers => {
                if head.stream == 0 {
                    return Err(Reason::Protocol);
                }
                let block = frame::content(&head, payload)?;
                let end_stream = head.has(frame::END_STREAM);
                if head.has(frame::END_HEADERS) {
                    self.on_header_block(head.stream, end_stream, block)
                } else {
                    self.continuing = Some((head.stream, end_stream, block.to_vec()));
                    Ok(())
                }
            }
            Kind::Continuation => {
                let Some((stream, end_stream, mut block)) = self.continuing.take() else {
                    return Err(Reason::Protocol);
                };
                block.extend_from_slice(payload);
                if block.len() > MAX_HEADER_BLOCK {
                    return Err(Reason::EnhanceYourCalm);
                }
                if head.has(frame::END_HEADERS) {
                    self.on_header_block(stream, end_stream, &block)
                } else {
                    self.continuing = Some((stream, end_stream, block));
                    Ok(())
                }
            }
            Kind::Priority if head.stream == 0 => Err(Reason::Protocol),
            Kind::Priority if head.len != 5 => Err(Reason::FrameSize),
            Kind::RstStream => {
                if head.stream == 0 || head.stream > self.last_stream {
                    return Err(Reason::Protocol);
                }
                if head.len != 4 {
                    return Err(Reason::FrameSize);
                }
                if let Some(i) = self.find(head.stream) {
                    self.remove(i);
                }
                Ok(())
            }
            Kind::Settings => self.on_settings(head, payload),
            Kind::PushPromise => Err(Reason::Protocol),
            Kind::Ping => {
                if head.stream != 0 {
                    return Err(Reason::Protocol);
                }
                if head.len != 8 {
                    return Err(Reason::FrameSize);
                }
                if !head.has(frame::ACK) {
                    frame::write_ping_ack(&mut self.out, payload);
                }
                Ok(())
            }
            Kind::GoAway => {
                if head.stream != 0 {
                    return Err(Reason::Protocol);
                }
                if self.phase == Phase::Open {
                    self.phase = Phase::GoingAway;
                }
                Ok(())
            }
            Kind::WindowUpdate => self.on_window_update(head, payload),
            Kind::Priority | Kind::Unknown(_) => Ok(()),
        }
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.stream != 0 {
            return Err(Reason::Protocol);
        }
        if head.has(frame::ACK) {
            if head.len != 0 {
                return Err(Reason::FrameSize);
            }
            // The client's encoder has our table size of 0: its next
            // block starts by saying so, and never refers to an entry
            // of the table before.
            self.decoder.set_allowed(0);
            return Ok(());
        }
        let settings = frame::settings(payload)?;
        if let Some(window) = settings.initial_window {
            let change = window - self.peer_initial_window;
            self.peer_initial_window = window;
            for stream in &mut self.streams {
                stream.send_window += change;
                if stream.send_window > frame::MAX_WINDOW {
                    return Err(Reason::FlowControl);
                }
                self.due.push(stream.id);
            }
        }
        if let Some(max_frame) = settings.max_frame {
            self.peer_max_frame = max_frame;
        }
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.len != 4 {
            return Err(Reason::FrameSize);
        }
        let increment = i64::from(frame::u31(payload).unwrap_or(0));
        if head.stream == 0 {
            if increment == 0 {
                return Err(Reason::Protocol);
            }
            self.send_window += increment;
            if self.send_window > frame::MAX_WINDOW {
                return Err(Reason::FlowControl);
            }
            self.due.extend(self.streams.iter().map(|s| s.id));
            return Ok(());
        }
        let Some(i) = self.find(head.stream) else {
            return Ok(());
        };
        let stream = &mut self.streams[i];
        stream.send_window += increment;
        self.due.push(stream.id);
        if increment == 0 {
            self.reset(i, Reason::Protocol);
        } else if stream.send_window > frame::MAX_WINDOW {
            self.reset(i, Reason::FlowControl);
        }
        Ok(())
    }

    fn on_data(&mut self, head: Head, payload: &[u8]) -> Result<(), Reason> {
        if head.stream == 0 {
            return Err(Reason::Protocol);
        }
        self.recv_window -= head.len as i64;
        if self.recv_window < 0 {
            return Err(Reason::FlowControl);
        }
        let data = frame::content(&head, payload)?;
        // Padding is given back at once.
        self.recv_unacked += head.len - data.len();
        let Some(i) = self.find(head.stream) else {
            if head.stream > self.last_stream {
                return Err(Reason::Protocol);
            }
            // A stream that ended: what was in flight is dropped.
            self.recv_unacked += data.len();
            return Ok(());
        };
        let stream = &mut self.streams[i];
        if stream.recv_closed {
            self.recv_unacked += data.len();
            self.reset(i, Reason::StreamClosed);
            return Ok(());
        }
        stream.unacked += head.len - data.len();
        let in_window = stream.outstanding + stream.unacked + data.len();
        if in_window > RECV_STREAM_WINDOW {
            self.recv_unacked += data.len();
            self.reset(i, Reason::FlowControl);
            return Ok(());
        }
        let taken = stream.inbox.push(Bytes::copy_from_slice(data));
        stream.outstanding += data.len() - taken;
        stream.unacked += taken;
        self.recv_unacked += taken;
        if head.has(frame::END_STREAM) {
            stream.recv_closed = true;
            stream.inbox.end();
        }
        Ok(())
    }

    fn on_header_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), Reason> {
        // Every block is decoded, even one refused, to keep the client's
        // and the server's HPACK tables alike.
        let decoded = headers::request(&mut self.decoder, block);
        if matches!(decoded, Err(Refused::Compression)) {
            return Err(Reason::Compression);
        }
        if let Some(i) = self.find(id) {
            // Trailers: they end the client's side.
            if end_stream && !self.streams[i].recv_closed {
                self.streams[i].recv_closed = true;
                self.streams[i].inbox.end();
            } else {
                self.reset(i, Reason::Protocol);
            }
            return Ok(());
        }
        if id.is_multiple_of(2) || id <= self.last_stream {
            return Err(Reason::Protocol);
        }
        self.last_stream = id;
        if self.phase != Phase::Open {
            // After GOAWAY: the client knows this stream is not served.
            return Ok(());
        }
        let parts = match decoded {
            _ if self.streams.len() >= MAX_STREAMS => {
                frame::write_rst_stream(&mut self.out, id, Reason::RefusedStream);
                return Ok(());
            }
            Ok(parts) => parts,
            Err(refused) => {
                tracing::debug!(stream = id, ?refused, "request refused");
                frame::write_rst_stream(&mut self.out, id, Reason::Protocol);
                return Ok(());
            }
        };
        let waker = futures::task::waker(Arc::new(StreamWaker {
            id,
            woken: self.woken.clone(),
        }));
        let inbox = Inbox::new(waker.clone());
        if end_stream {
            inbox.end();
        }
        let request = http::Request::from_parts(parts, Body::new(RequestBody(inbox.clone())));
        let call = tower::ServiceExt::oneshot(self.service.clone(), request);
        self.due.push(id);
        self.streams.push(Stream {
            id,
            waker,
            reply: Reply::Calling(Box::pin(call)),
            inbox,
            recv_closed: end_stream,
            outstanding: 0,
            unacked: 0,
            send_window: self.peer_initial_window,
            pending: Bytes::new(),
        });
        Ok(())
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    /// Ends stream `i` with RST_STREAM.
    fn reset(&mut self, i: usize, reason: Reason) {
        frame::write_rst_stream(&mut self.out, self.streams[i].id, reason);
        self.remove(i);
    }

    /// Forgets stream `i`: its reader sees a reset, its reply is dropped,
    /// and what it received unread goes back to the connection's window.
    fn remove(&mut self, i: usize) {
        let stream = self.streams.swap_remove(i);
        stream.inbox.reset();
        self.recv_unacked += stream.outstanding;
    }

    /// Answers what the woken and due streams have; `true` if anything
    /// moved.
    fn poll_streams(&mut self) -> bool {
        let mut ids = self.woken.take();
        ids.append(&mut self.due);
        ids.sort_unstable();
        ids.dedup();
        let mut progress = false;
        for id in ids {
            let Some(i) = self.find(id) else {
                continue;
            };
            let stream = &mut self.streams[i];
            let taken = stream.inbox.taken().min(stream.outstanding);
            stream.outstanding -= taken;
            stream.unacked += taken;
            self.recv_unacked += taken;
            if stream.unacked >= STREAM_GIVE_BACK && !stream.recv_closed {
                frame::write_window_update(&mut self.out, stream.id, stream.unacked as u32);
                stream.unacked = 0;
                progress = true;
            }
            let mut writer = Writer {
                out: &mut self.out,
                written: self.written,
                window: &mut self.send_window,
                max_frame: self.peer_max_frame,
            };
            let waker = stream.waker.clone();
            progress |= stream.poll_reply(&mut Context::from_waker(&waker), &mut writer);
            if matches!(stream.reply, Reply::Done) {
                if !stream.recv_closed {
                    // The answer is complete: the client need send no more.
                    frame::write_rst_stream(&mut self.out, stream.id, Reason::NoError);
                }
                self.remove(i);
                progress = true;
            } else if writer.full() {
                // Polled again once the output has drained.
                self.due.push(id);
            }
        }
        if self.recv_unacked >= CONNECTION_GIVE_BACK {
            frame::write_window_update(&mut self.out, 0, self.recv_unacked as u32);
            self.recv_window += self.recv_unacked as i64;
            self.recv_unacked = 0;
            progress = true;
        }
        progress
    }

    /// Writes and flushes what is queued; `true` if anything was written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let mut wrote = false;
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            wrote = true;
            self.unflushed = true;
        }
        if !self.out.is_empty() {
            self.out = Vec::new();
            self.written = 0;
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(wrote))
    }

    fn go_away(&mut self, reason: Reason) {
        frame::write_goaway(&mut self.out, self.last_stream, reason);
        if reason == Reason::NoError {
            self.phase = Phase::GoingAway;
        } else {
            self.phase = Phase::Closing;
            self.drop_streams();
        }
    }

    fn drop_streams(&mut self) {
        for stream in self.streams.drain(..) {
            stream.inbox.reset();
        }
    }

    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut progress = false;
            if self.phase == Phase::Open && self.shutdown.as_mut().poll(cx).is_ready() {
                self.go_away(Reason::NoError);
                progress = true;
            }
            if self.phase != Phase::Closing && self.out.len() - self.written < OUT_HIGH {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(true)) => progress = true,
                    // The client is gone: so are its streams.
                    Poll::Ready(Ok(false) | Err(Failure::Io)) => {
                        self.drop_streams();
                        return Poll::Ready(());
                    }
                    Poll::Ready(Err(Failure::Protocol(reason))) => {
                        tracing::debug!(?reason, "HTTP/2 connection error");
                        self.go_away(reason);
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            // After the read: a preface that arrived is read before the
            // deadline is looked at, however late the task runs.
            if let Some(deadline) = &mut self.deadline
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            if self.phase != Phase::Closing && self.out.len() - self.written < OUT_HIGH {
                progress |= self.poll_streams();
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(wrote)) => progress |= wrote,
                Poll::Ready(Err(_)) => {
                    self.drop_streams();
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            let written = self.out.is_empty() && !self.unflushed;
            let finished = match self.phase {
                Phase::Open => false,
                Phase::GoingAway => self.streams.is_empty(),
                Phase::Closing => true,
            };
            if written && finished {
                // Best effort: a TLS client hears close_notify.
                let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

impl Stream {
    /// Moves the reply on: the service's answer, then its body's frames
    /// as far as the windows and the output bound allow. `true` if
    /// anything moved.
    fn poll_reply(&mut self, cx: &mut Context<'_>, writer: &mut Writer<'_>) -> bool {
        let mut progress = false;
        loop {
            match &mut self.reply {
                Reply::Calling(call) => {
                    let Poll::Ready(Ok(response)) = call.as_mut().poll(cx) else {
                        return progress;
                    };
                    let (parts, body) = response.into_parts();
                    let end = http_body::Body::is_end_stream(&body);
                    let block = headers::response(Some(parts.status), &parts.headers);
                    frame::write_headers(writer.out, self.id, &block, end, writer.max_frame);
                    self.reply = if end { Reply::Done } else { Reply::Body(body) };
                }
                Reply::Body(body) => {
                    if !self.pending.is_empty() {
                        if !self.send_pending(writer) {
                            return progress;
                        }
                    } else {
                        if writer.full() {
                            return progress;
                        }
                        let Poll::Ready(next) = http_body::Body::poll_frame(Pin::new(body), cx)
                        else {
                            return progress;
                        };
                        self.on_body_frame(next, writer);
                    }
                }
                Reply::Done => return progress,
            }
            progress = true;
        }
    }

    fn on_body_frame(
        &mut self,
        next: Option<Result<http_body::Frame<Bytes>, tonic::Status>>,
        writer: &mut Writer<'_>,
    ) {
        let trailers = match next {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    self.pending = data;
                    return;
                }
                Err(frame) => frame.into_trailers().unwrap_or_default(),
            },
            Some(Err(status)) => {
                let mut trailers = http::HeaderMap::new();
                if status.add_header(&mut trailers).is_err() {
                    trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
                }
                trailers
            }
            None => {
                frame::write_data(writer.out, self.id, &[], true);
                self.reply = Reply::Done;
                return;
            }
        };
        let block = headers::response(None, &trailers);
        frame::write_headers(writer.out, self.id, &block, true, writer.max_frame);
        self.reply = Reply::Done;
    }

    /// Sends what the windows allow of `pending`; `true` once all is sent.
    fn send_pending(&mut self, writer: &mut Writer<'_>) -> bool {
        while !self.pending.is_empty() {
            let window = self.send_window.min(*writer.window).max(0) as usize;
            let n = self.pending.len().min(writer.max_frame).min(window);
            if n == 0 || writer.full() {
                return false;
            }
            frame::write_data(writer.out, self.id, &self.pending[..n], false);
            self.pending.advance(n);
            self.send_window -= n as i64;
            *writer.window -= n as i64;
        }
        self.pending = Bytes::new();
        true
    }
}

// Nothing of a connection is pinned in place: its futures are boxed.
impl<IO, S> Unpin for Connection<IO, S> {}

impl<IO, S> Future for Connection<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: StreamService,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.woken.connection.register(cx.waker());
        this.drive(cx)
    }
}
