//! A request's body: the DATA the connection received for a stream, taken
//! by the service's task. What the service takes is what the connection
//! gives back to the client's flow-control window, so a client can never
//! have more in flight than the window lets it.

use bytes::Bytes;
use http_body::Frame;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// What a stream received and its reader has not taken yet.
pub struct Inbox {
    state: Mutex<State>,
    /// Wakes the stream on its connection when the reader took data (its
    /// window can grow) or went away.
    stream: Waker,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Bytes>,
    end: End,
    /// The reader's task, waiting for data.
    reader: Option<Waker>,
    /// Bytes taken since the connection last asked.
    taken: usize,
    /// The reader dropped the body: what arrives is thrown away.
    dropped: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum End {
    #[default]
    Open,
    /// The client ended its side (END_STREAM).
    Ended,
    /// The stream was reset or the connection lost.
    Reset,
}

impl Inbox {
    pub fn new(stream: Waker) -> Arc<Inbox> {
        Arc::new(Inbox {
            state: Mutex::new(State::default()),
            stream,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still
        // holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// DATA for the reader. Answers how many bytes it counts as taken at
    /// once (all of them when the reader is gone).
    pub fn push(&self, data: Bytes) -> usize {
        let mut state = self.state();
        if state.dropped {
            return data.len();
        }
        if !data.is_empty() {
            state.chunks.push_back(data);
        }
        wake(&mut state.reader);
        0
    }

    pub fn end(&self) {
        self.close(End::Ended);
    }

    pub fn reset(&self) {
        self.close(End::Reset);
    }

    fn close(&self, end: End) {
        let mut state = self.state();
        if state.end == End::Open {
            state.end = end;
        }
        wake(&mut state.reader);
    }

    /// Bytes the reader took since the last call.
    pub fn taken(&self) -> usize {
        std::mem::take(&mut self.state().taken)
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

/// The body a service reads.
pub struct RequestBody(pub Arc<Inbox>);

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let inbox = &self.0;
        let mut state = inbox.state();
        if let Some(chunk) = state.chunks.pop_front() {
            state.taken += chunk.len();
            if state.chunks.is_empty() {
                // A stream is idle far longer than busy: keep no room.
                state.chunks = VecDeque::new();
            }
            drop(state);
            inbox.stream.wake_by_ref();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match state.end {
            End::Open => {
                state.reader = Some(cx.waker().clone());
                Poll::Pending
            }
            End::Ended => Poll::Ready(None),
            End::Reset => Poll::Ready(Some(Err(tonic::Status::cancelled(
                "the client reset the stream or closed the connection",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.0.state();
        state.end == End::Ended && state.chunks.is_empty()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.dropped = true;
        state.taken += state.chunks.iter().map(Bytes::len).sum::<usize>();
        state.chunks = VecDeque::new();
        drop(state);
        self.0.stream.wake_by_ref();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    fn poll(body: &mut RequestBody) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let waker = futures::task::noop_waker();
        Pin::new(body).poll_frame(&mut Context::from_waker(&waker))
    }

    #[test]
    fn data_is_read_in_order_and_counted_as_taken_then_the_end() {
        let inbox = Inbox::new(futures::task::noop_waker());
        let mut body = RequestBody(inbox.clone());
        assert!(poll(&mut body).is_pending());
        inbox.push(Bytes::from_static(b"ab"));
        inbox.push(Bytes::from_static(b"cde"));
        inbox.end();
        let data = |p: Poll<Option<Result<Frame<Bytes>, tonic::Status>>>| match p {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
            _ => None,
        };
        assert_eq!(data(poll(&mut body)).as_deref(), Some(&b"ab"[..]));
        assert_eq!(inbox.taken(), 2);
        assert!(!body.is_end_stream());
        assert_eq!(data(poll(&mut body)).as_deref(), Some(&b"cde"[..]));
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert_eq!(inbox.taken(), 3);
    }

    #[test]
    fn a_reset_is_an_error_and_a_dropped_reader_takes_everything() {
        let inbox = Inbox::new(futures::task::noop_waker());
        let mut body = RequestBody(inbox.clone());
        inbox.push(Bytes::from_static(b"waiting"));
        inbox.reset();
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Err(_)))));
        inbox.taken();
        inbox.push(Bytes::from_static(b"unread"));
        drop(body);
        assert_eq!(inbox.taken(), 6);
        assert_eq!(inbox.push(Bytes::from_static(b"late")), 4);
    }
}
