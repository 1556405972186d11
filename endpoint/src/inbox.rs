//! A channel's receive queue: bounded, one producer (the driver), one
//! consumer (the [`crate::Channel`]), and nothing allocated until the
//! first datagram.
//!
//! Why not `tokio::sync::mpsc`: a bounded tokio channel allocates its
//! cache-padded shared state and its first block of 32 slots when it is
//! created, about 0.8 KiB per channel before any datagram, and a responder
//! keeps one channel per SA held (docs/performance.md, memory per SA).
//! Here the shared state is one small `Arc` (a `Mutex<VecDeque>`, a
//! `Notify` and two flags); the `VecDeque` allocates on the first push.
//!
//! Wakeups: the sender pushes, then `notify_one` (which stores a permit
//! when nobody waits); the receiver always looks at the queue before it
//! waits, so neither a datagram nor the end of the channel can be missed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

#[derive(Debug)]
struct Shared<T> {
    queue: Mutex<VecDeque<T>>,
    notify: Notify,
    /// The sender is gone: no more items.
    sender_gone: AtomicBool,
    /// The receiver is gone: pushes fail.
    receiver_gone: AtomicBool,
}

impl<T> Shared<T> {
    fn queue(&self) -> MutexGuard<'_, VecDeque<T>> {
        // No code path panics while holding the lock; a poisoned queue is
        // still a consistent queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first item; the queue's buffer is given back once it is empty
    /// again, so a channel that carried traffic and went quiet holds no
    /// more than one that never did (one allocation per burst).
    fn pop(&self) -> Option<T> {
        let mut q = self.queue();
        let item = q.pop_front();
        if q.is_empty() && q.capacity() > 0 {
            *q = VecDeque::new();
        }
        item
    }
}

/// A bounded queue of at most `cap` items.
pub(crate) fn inbox<T>(cap: usize) -> (InboxSender<T>, Inbox<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        notify: Notify::new(),
        sender_gone: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
    });
    (
        InboxSender {
            shared: shared.clone(),
            cap,
        },
        Inbox { shared },
    )
}

/// The driver's end.
#[derive(Debug)]
pub(crate) struct InboxSender<T> {
    shared: Arc<Shared<T>>,
    cap: usize,
}

/// Why [`InboxSender::try_send`] refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrySendError {
    Full,
    Closed,
}

impl<T> InboxSender<T> {
    /// Queue an item without waiting.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError> {
        if self.shared.receiver_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Closed);
        }
        {
            let mut q = self.shared.queue();
            if q.len() >= self.cap {
                return Err(TrySendError::Full);
            }
            q.push_back(item);
        }
        self.shared.notify.notify_one();
        Ok(())
    }
}

impl<T> Drop for InboxSender<T> {
    fn drop(&mut self) {
        self.shared.sender_gone.store(true, Ordering::Release);
        self.shared.notify.notify_one();
    }
}

/// The channel's end.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Inbox<T> {
    /// The next item; `None` once the sender is gone and the queue is
    /// empty. Cancel-safe: an item is taken only when it is returned.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.shared.pop() {
                return Some(item);
            }
            if self.shared.sender_gone.load(Ordering::Acquire) {
                // Pushed before the sender went: still delivered.
                return self.shared.pop();
            }
            self.shared.notify.notified().await;
        }
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        self.shared.queue().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn items_in_order_then_end() {
        let (tx, mut rx) = inbox(3);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        tx.try_send(3).unwrap();
        assert_eq!(tx.try_send(4), Err(TrySendError::Full));
        assert_eq!(rx.recv().await, Some(1));
        tx.try_send(4).unwrap();
        drop(tx);
        // Queued before the sender went: all delivered, then the end.
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn waiting_receiver_is_woken() {
        let (tx, mut rx) = inbox::<u32>(8);
        let task = tokio::spawn(async move {
            let a = rx.recv().await;
            let b = rx.recv().await;
            (a, b)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(7).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let (a, b) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("receiver woken")
            .unwrap();
        assert_eq!((a, b), (Some(7), None));
    }

    #[tokio::test]
    async fn cancelled_recv_loses_nothing() {
        let (tx, mut rx) = inbox::<u32>(8);
        // A recv that is given up on while waiting.
        assert!(tokio::time::timeout(Duration::from_millis(10), rx.recv())
            .await
            .is_err());
        tx.try_send(5).unwrap();
        assert_eq!(rx.recv().await, Some(5));
    }

    #[tokio::test]
    async fn drained_queue_gives_its_buffer_back() {
        let (tx, mut rx) = inbox(4);
        tx.try_send(1u64).unwrap();
        tx.try_send(2u64).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert!(tx.shared.queue().capacity() > 0);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(tx.shared.queue().capacity(), 0);
    }

    #[test]
    fn dropped_receiver_refuses_and_frees() {
        let (tx, rx) = inbox(4);
        tx.try_send(vec![0u8; 100]).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(vec![1]), Err(TrySendError::Closed));
        assert!(tx.shared.queue().is_empty());
    }
}
