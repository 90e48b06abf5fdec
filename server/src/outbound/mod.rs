//! A connection's send queue, as the rest of the server sees it.
//!
//! Every frame for a client goes through one bounded queue that only its connection
//! task drains. Broadcasters never wait on a slow client: if its queue is full, the
//! client is marked slow and its connection closes with 4001 (it will reconnect and
//! resume from history).
//!
//! The queue is a `VecDeque` behind a mutex rather than a channel so that its memory
//! follows its length: the connection task takes the whole batch at once and keeps at
//! most a small spare buffer, so an idle connection holds no queue memory however big
//! a burst it went through.
//!
//! The queue also carries the connection's **backpressure**. Replies to its own
//! publishes (acks, rejections) and the echo of its own messages never count towards
//! the slow-consumer limit, because they are bounded by the publishes in flight, and
//! the connection stops reading its socket while too many are in flight or while its
//! queue is half full (see [`Queue::may_read`]). An overloaded server therefore slows
//! publishers down instead of cutting them off.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;

/// Identifies one connection for the lifetime of the process.
pub type ConnId = u64;

/// Publishes one connection may have waiting for their ack before it stops reading.
pub const MAX_IN_FLIGHT: usize = 256;
/// A batch buffer bigger than this is let go after use instead of kept as the spare.
const SPARE_CAPACITY: usize = 16;
/// Distinct volatile keys (room, user, key) waiting at once; beyond, new ones are dropped
/// (they are volatile: the next value will come).
const MAX_VOLATILE: usize = 1024;

mod budget;

pub use budget::SendBudget;

/// How much a connection's queue may hold.
#[derive(Clone)]
pub struct QueueLimits {
    /// Room frames queued before the client counts as a slow consumer.
    pub frames: usize,
    /// The server-wide budget of queued bytes this queue counts against.
    pub budget: Arc<SendBudget>,
}

impl QueueLimits {
    /// At most `frames` room frames, outside any server budget: for tests.
    #[cfg(test)]
    pub fn frames_only(frames: usize) -> QueueLimits {
        QueueLimits { frames, budget: SendBudget::new(u64::MAX, Arc::new(Metrics::default())) }
    }
}

/// A handle for sending frames to one connection. Cloning is one reference count.
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

/// The connection task's end of the queue.
pub struct Queue {
    shared: Arc<Shared>,
    spare: VecDeque<Utf8Bytes>,
}

struct Shared {
    conn: ConnId,
    limits: QueueLimits,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Bytes of the room frames in `state.frames`, changed only with the state locked
    /// and read without it by the [`SendBudget`].
    queued: AtomicUsize,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Utf8Bytes>,
    /// The connection task, when it is waiting for frames or for slowness.
    waker: Option<Waker>,
    slow: bool,
    closed: bool,
    in_flight: usize,
    /// Someone outside the connection (the server API) asked it to close with this.
    ending: Option<crate::close::Close>,
    /// Volatile state waiting to be written: the latest frame per key, so a connection
    /// that falls behind gets fresher values instead of a backlog, and is never made
    /// slow by them.
    volatile: Vec<(u64, Utf8Bytes)>,
}

/// Where a queued frame comes from, which decides whether it can make the client slow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Room traffic: counts towards the slow-consumer limit.
    Room,
    /// The echo of the connection's own message: bounded by its publishes in flight.
    OwnEcho,
    /// The answer to one of its publishes: ends that publish's time in flight.
    Reply,
}

/// What the connection task gets from [`Queue::next`].
pub enum Next {
    /// Frames to write, oldest first.
    Frames(VecDeque<Utf8Bytes>),
    /// The queue overflowed: close the connection as a slow consumer.
    Slow,
    /// The connection was asked to close ([`Outbound::end`]).
    End(crate::close::Close),
}

impl Outbound {
    /// A queue within `limits` and the connection task's end of it.
    pub fn new(conn: ConnId, limits: QueueLimits, metrics: Arc<Metrics>) -> (Outbound, Queue) {
        let state = Mutex::new(State::default());
        let shared = Arc::new(Shared { conn, limits, metrics, state, queued: AtomicUsize::new(0) });
        (Outbound { shared: shared.clone() }, Queue { shared, spare: VecDeque::new() })
    }

    /// Which connection this is.
    pub fn conn(&self) -> ConnId {
        self.shared.conn
    }

    /// Queues a frame without waiting. A full queue marks the client as a slow consumer.
    /// Frames are shared bytes, so a broadcast encodes once and each push is a refcount.
    pub fn push(&self, frame: Utf8Bytes) {
        self.shared.push(frame, Origin::Room);
    }

    /// Queues the echo of the connection's own message: never counted as slowness.
    pub fn push_own(&self, frame: Utf8Bytes) {
        self.shared.push(frame, Origin::OwnEcho);
    }

    /// Queues the answer (ack or rejection) to a publish counted by
    /// [`Outbound::begin_publish`], which is then no longer in flight.
    pub fn push_reply(&self, frame: Utf8Bytes) {
        self.shared.push(frame, Origin::Reply);
    }

    /// Queues volatile state under `key` (a hash of room, user and key), replacing any
    /// value of that key not yet written. Never counts towards the slow-consumer limit.
    pub fn push_volatile(&self, key: u64, frame: Utf8Bytes) {
        let mut state = self.shared.state.lock().expect("queue lock");
        if state.closed || state.slow {
            return;
        }
        match state.volatile.iter().position(|(waiting, _)| *waiting == key) {
            Some(slot) => state.volatile[slot].1 = frame,
            None if state.volatile.len() < MAX_VOLATILE => state.volatile.push((key, frame)),
            None => return,
        }
        wake(state);
    }

    /// Asks the connection to close with `close` (once it has written what is queued).
    pub fn end(&self, close: crate::close::Close) {
        let mut state = self.shared.state.lock().expect("queue lock");
        state.ending.get_or_insert(close);
        wake(state);
    }

    /// Counts a publish as in flight until its [`Outbound::push_reply`].
    pub fn begin_publish(&self) {
        self.shared.state.lock().expect("queue lock").in_flight += 1;
    }
}

impl Shared {
    fn push(self: &Arc<Self>, frame: Utf8Bytes, origin: Origin) {
        let mut state = self.state.lock().expect("queue lock");
        if origin == Origin::Reply {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        if state.closed || state.slow {
            return;
        }
        if origin == Origin::Room && state.frames.len() >= self.limits.frames {
            self.mark_slow(&mut state);
            wake(state);
            return;
        }
        if origin == Origin::Room {
            // Only room frames count: replies and own echoes are bounded by the
            // publishes in flight.
            let before = self.queued.load(Ordering::Relaxed);
            self.set_queued(before + frame.len());
        }
        state.frames.push_back(frame);
        wake(state);
        if origin == Origin::Room {
            self.limits.budget.enforce();
        }
    }

    /// Bytes of room frames waiting.
    fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Sets the queued room bytes (with the state locked), telling the budget.
    fn set_queued(self: &Arc<Self>, after: usize) {
        let before = self.queued.swap(after, Ordering::Relaxed);
        self.limits.budget.changed(self, before, after);
    }

    /// Marks the client slow and lets go of its frames, which will never be written: the
    /// connection closes with 4001 before writing anything more.
    fn mark_slow(self: &Arc<Self>, state: &mut State) {
        state.slow = true;
        state.frames = VecDeque::new();
        self.set_queued(0);
        self.metrics.slow_consumers.inc();
    }

    /// The budget's verdict: this queue holds the most while the server holds too much.
    fn cut_off(self: &Arc<Self>) {
        let mut state = self.state.lock().expect("queue lock");
        if state.slow || state.closed {
            // Its bytes are already given back; make sure the budget forgets it.
            self.set_queued(0);
            return;
        }
        self.mark_slow(&mut state);
        wake(state);
    }
}

/// Wakes the connection task if it waits, after letting go of the lock.
fn wake(mut state: std::sync::MutexGuard<'_, State>) {
    if let Some(waker) = state.waker.take() {
        drop(state);
        waker.wake();
    }
}

impl Queue {
    /// Waits for frames to write (all of them, taken at once) or for the connection to
    /// be marked slow.
    pub async fn next(&mut self) -> Next {
        poll_fn(|cx| {
            let mut state = self.shared.state.lock().expect("queue lock");
            if state.slow {
                return Poll::Ready(Next::Slow);
            }
            if state.frames.is_empty() && state.volatile.is_empty() {
                if let Some(close) = state.ending.clone() {
                    return Poll::Ready(Next::End(close));
                }
                state.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let mut batch = std::mem::take(&mut self.spare);
            std::mem::swap(&mut batch, &mut state.frames);
            self.shared.set_queued(0);
            let volatile = std::mem::take(&mut state.volatile);
            drop(state);
            batch.extend(volatile.into_iter().map(|(_, frame)| frame));
            self.shared.metrics.frames_out.inc_by(batch.len() as u64);
            Poll::Ready(Next::Frames(batch))
        })
        .await
    }

    /// Resolves once the connection has been marked slow (while a write is under way).
    pub async fn slow(&self) {
        poll_fn(|cx| {
            let mut state = self.shared.state.lock().expect("queue lock");
            if state.slow {
                Poll::Ready(())
            } else {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Hands back a written batch's buffer, so that a busy connection reuses it.
    pub fn recycle(&mut self, mut batch: VecDeque<Utf8Bytes>) {
        batch.clear();
        if batch.capacity() <= SPARE_CAPACITY {
            self.spare = batch;
        }
    }

    /// Everything queued now, without waiting (for the goodbye at shutdown).
    pub fn take_now(&mut self) -> VecDeque<Utf8Bytes> {
        let mut state = self.shared.state.lock().expect("queue lock");
        self.shared.set_queued(0);
        std::mem::take(&mut state.frames)
    }

    /// Whether the connection may read another frame from its socket: not while
    /// [`MAX_IN_FLIGHT`] publishes wait for their ack, nor while half the queue is used.
    pub fn may_read(&self) -> bool {
        let state = self.shared.state.lock().expect("queue lock");
        state.in_flight < MAX_IN_FLIGHT && state.frames.len() < self.shared.limits.frames.div_ceil(2)
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("queue lock");
        state.closed = true;
        state.frames = VecDeque::new();
        self.shared.set_queued(0);
    }
}

#[cfg(test)]
mod tests {
    use super::budget::FAIR_SHARE_BYTES;
    use super::*;

    fn queue(capacity: usize) -> (Outbound, Queue) {
        Outbound::new(1, QueueLimits::frames_only(capacity), Arc::new(Metrics::default()))
    }

    fn frame(text: &str) -> Utf8Bytes {
        Utf8Bytes::from(text.to_owned())
    }

    #[tokio::test]
    async fn frames_come_out_in_order_as_one_batch() {
        let (out, mut queue) = queue(8);
        out.push(frame("a"));
        out.push(frame("b"));
        let Next::Frames(batch) = queue.next().await else { panic!("not slow") };
        assert_eq!(batch.iter().map(|f| f.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[tokio::test]
    async fn overflowing_marks_the_connection_slow_but_own_replies_never_do() {
        let (out, mut queue) = queue(2);
        out.push(frame("a"));
        out.push(frame("b"));
        out.begin_publish();
        out.push_own(frame("echo"));
        out.push_reply(frame("ack"));
        assert!(matches!(queue.next().await, Next::Frames(batch) if batch.len() == 4));
        out.push(frame("c"));
        out.push(frame("d"));
        out.push(frame("e"));
        assert!(matches!(queue.next().await, Next::Slow));
        queue.slow().await;
    }

    #[tokio::test]
    async fn reading_pauses_while_publishes_are_in_flight_or_the_queue_is_half_full() {
        let (out, mut queue) = queue(4);
        assert!(queue.may_read());
        for _ in 0..MAX_IN_FLIGHT {
            out.begin_publish();
        }
        assert!(!queue.may_read());
        out.push_reply(frame("ack"));
        assert!(queue.may_read());
        out.push(frame("a"));
        assert!(!queue.may_read(), "2 of 4 queued");
        let Next::Frames(batch) = queue.next().await else { panic!() };
        queue.recycle(batch);
        assert!(queue.may_read());
    }

    #[tokio::test]
    async fn volatile_state_keeps_only_the_latest_value_per_key_and_never_makes_a_client_slow() {
        let (out, mut queue) = queue(2);
        for i in 0..10_000 {
            out.push_volatile(7, frame(&format!("cursor {i}")));
            out.push_volatile(8, frame(&format!("other {i}")));
        }
        out.push(frame("a message"));
        let Next::Frames(batch) = queue.next().await else { panic!("not slow") };
        let texts: Vec<&str> = batch.iter().map(|f| f.as_str()).collect();
        assert_eq!(texts, ["a message", "cursor 9999", "other 9999"]);
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_a_push() {
        let (out, mut queue) = queue(4);
        let waiter = tokio::spawn(async move { matches!(queue.next().await, Next::Frames(_)) });
        tokio::task::yield_now().await;
        out.push(frame("a"));
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn past_the_servers_budget_the_heaviest_queue_is_cut_off() {
        let metrics = Arc::new(Metrics::default());
        let limits = QueueLimits {
            frames: 10_000,
            budget: SendBudget::new(4 * FAIR_SHARE_BYTES as u64 + 16 * 1024, metrics.clone()),
        };
        let (stalled, mut stalled_queue) = Outbound::new(1, limits.clone(), metrics.clone());
        let (behind, mut behind_queue) = Outbound::new(2, limits, metrics.clone());
        let chunk = frame(&"x".repeat(16 * 1024));
        // One client stopped reading (3 fair shares queued); another is a little behind
        // (over its fair share, but holding less).
        for _ in 0..(3 * FAIR_SHARE_BYTES / chunk.len()) {
            stalled.push(chunk.clone());
        }
        for _ in 0..(FAIR_SHARE_BYTES / chunk.len() + 1) {
            behind.push(chunk.clone());
        }
        assert_eq!(metrics.queued_bytes.get() as usize, 4 * FAIR_SHARE_BYTES + chunk.len(), "at the limit");
        // The next frame for either of them cuts off the heaviest, whoever it is for.
        behind.push(chunk.clone());
        assert!(matches!(stalled_queue.next().await, Next::Slow));
        assert!(matches!(behind_queue.next().await, Next::Frames(batch) if batch.len() == 6));
        assert_eq!(metrics.queued_bytes.get(), 0, "the cut queue's frames are let go at once");
        assert_eq!(metrics.slow_consumers.get(), 1);
    }

    #[test]
    fn pushes_after_the_connection_ended_are_dropped() {
        let (out, queue) = queue(1);
        drop(queue);
        for _ in 0..10 {
            out.push(frame("late"));
        }
        assert_eq!(out.shared.state.lock().unwrap().frames.len(), 0);
    }
}
