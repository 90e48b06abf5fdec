//! The bytes waiting in every client's send queue together: `--queued-bytes`.
//!
//! Each queue is bounded in frames, but a server with thousands of clients that fall
//! behind at once could still hold thousands of full queues. The budget counts the room
//! frames waiting in all of them, and when the total passes the limit the queue holding
//! the most is cut off (closed as a slow consumer, its frames let go at once), until the
//! total is back under. A client that keeps up holds little, so it is never the one cut
//! while one that stopped reading holds more.
//!
//! Only queues holding more than [`FAIR_SHARE_BYTES`] are candidates, and only those are
//! kept in the budget's list, so finding the heaviest looks at a handful, not at every
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{ConnId, Shared};
use crate::metrics::Metrics;

/// A queue holding more than this may be cut when the server is over its budget.
pub const FAIR_SHARE_BYTES: usize = 64 * 1024;

/// The server-wide count of queued bytes and the queues that hold the most.
pub struct SendBudget {
    limit: u64,
    total: AtomicU64,
    heavy: Mutex<HashMap<ConnId, Weak<Shared>>>,
    metrics: Arc<Metrics>,
}

impl SendBudget {
    /// A budget of `limit` bytes, reported as `tether_queued_bytes`.
    pub fn new(limit: u64, metrics: Arc<Metrics>) -> Arc<SendBudget> {
        Arc::new(SendBudget { limit, total: AtomicU64::new(0), heavy: Mutex::default(), metrics })
    }

    /// A queue's room frames went from `before` to `after` bytes.
    pub(super) fn changed(&self, queue: &Arc<Shared>, before: usize, after: usize) {
        if after >= before {
            self.total.fetch_add((after - before) as u64, Ordering::Relaxed);
            self.metrics.queued_bytes.inc_by((after - before) as i64);
        } else {
            self.total.fetch_sub((before - after) as u64, Ordering::Relaxed);
            self.metrics.queued_bytes.dec_by((before - after) as i64);
        }
        let (was_heavy, is_heavy) = (before > FAIR_SHARE_BYTES, after > FAIR_SHARE_BYTES);
        if was_heavy != is_heavy {
            let mut heavy = self.heavy.lock().expect("budget lock");
            if is_heavy {
                heavy.insert(queue.conn, Arc::downgrade(queue));
            } else {
                heavy.remove(&queue.conn);
            }
        }
    }

    /// While the server is over its limit, cuts off the heaviest queue. Called with no
    /// queue's lock held: cutting one takes its lock.
    pub(super) fn enforce(&self) {
        while self.total.load(Ordering::Relaxed) > self.limit {
            let heaviest = {
                let heavy = self.heavy.lock().expect("budget lock");
                heavy.values().filter_map(Weak::upgrade).max_by_key(|queue| queue.queued_bytes())
            };
            let Some(queue) = heaviest else { return };
            queue.cut_off();
        }
    }
}
