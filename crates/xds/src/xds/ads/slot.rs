//! The hand-over of a stream's responses from its task to its gRPC body,
//! one at a time.
//!
//! A stream holds at most one response that HTTP/2 has not taken yet, for
//! as long as its proxy is connected. tokio's `mpsc::channel(1)` costs 0.8
//! KiB for that (a cache-padded channel and a first block of 32 slots);
//! one slot behind a mutex costs under 100 bytes, which is 10 % of what a
//! connected proxy costs the control plane at 100,000 proxies.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    item: Option<T>,
    /// The receiver waiting for an item, or the sender for room.
    receiver: Option<Waker>,
    sender: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

type Shared<T> = Arc<Mutex<State<T>>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // Every critical section is a few assignments: nothing panics inside.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers the waker of the task to wake, unless it is remembered already.
fn register(waiting: &mut Option<Waker>, cx: &Context<'_>) {
    match waiting {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *waiting = Some(cx.waker().clone()),
    }
}

/// A slot for one item at a time, between one sender and one receiver.
pub fn slot<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(State {
        item: None,
        receiver: None,
        sender: None,
        sender_gone: false,
        receiver_gone: false,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

pub struct Sender<T>(Shared<T>);

/// The receiver is gone: nobody will take the item.
#[derive(Debug)]
pub struct Closed;

impl<T> Sender<T> {
    /// Puts `item` in the slot once the previous one was taken.
    pub async fn send(&self, item: T) -> Result<(), Closed> {
        let mut item = Some(item);
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.0);
            if state.receiver_gone {
                return Poll::Ready(Err(Closed));
            }
            if state.item.is_some() {
                register(&mut state.sender, cx);
                return Poll::Pending;
            }
            state.item = item.take();
            let receiver = state.receiver.take();
            drop(state);
            if let Some(w) = receiver {
                w.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.sender_gone = true;
        let receiver = state.receiver.take();
        drop(state);
        if let Some(w) = receiver {
            w.wake();
        }
    }
}

/// The receiving end: a stream of the items sent, ending once the sender
/// is gone and the slot is empty.
pub struct Receiver<T>(Shared<T>);

impl<T> tokio_stream::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = lock(&self.0);
        if let Some(item) = state.item.take() {
            let sender = state.sender.take();
            drop(state);
            if let Some(w) = sender {
                w.wake();
            }
            return Poll::Ready(Some(item));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        register(&mut state.receiver, cx);
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.receiver_gone = true;
        let item = state.item.take();
        let sender = state.sender.take();
        drop(state);
        drop(item);
        if let Some(w) = sender {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_stream_ends_when_the_sender_goes() {
        let (tx, mut rx) = slot();
        let sending = tokio::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.unwrap();
            }
        });
        let mut got = Vec::new();
        while let Some(i) = rx.next().await {
            got.push(i);
        }
        sending.await.unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_second_item_waits_until_the_first_is_taken() {
        let (tx, mut rx) = slot();
        tx.send(1).await.unwrap();
        let mut second = Box::pin(tx.send(2));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(
            second.as_mut().poll(&mut cx).is_pending(),
            "the slot is full"
        );
        assert_eq!(rx.next().await, Some(1));
        assert!(matches!(second.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(rx.next().await, Some(2));
    }

    #[tokio::test]
    async fn a_sender_learns_that_the_receiver_is_gone() {
        let (tx, rx) = slot();
        tx.send(1).await.unwrap();
        let waiting = tokio::spawn(async move { tx.send(2).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert!(waiting.await.unwrap().is_err());
    }
}
