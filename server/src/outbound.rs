//! A connection's send queue, as the rest of the server sees it.
//!
//! Every frame for a client goes through one bounded queue that only its connection
//! task drains. Broadcasters never wait on a slow client: if its queue is full, the
//! client is marked slow and its connection closes with 4001 (it will reconnect and
//! resume from history). Memory per client is therefore bounded by the queue length.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Identifies one connection for the lifetime of the process.
pub type ConnId = u64;

/// A handle for sending frames to one connection.
#[derive(Clone)]
pub struct Outbound {
    /// Which connection.
    pub conn: ConnId,
    queue: mpsc::Sender<Utf8Bytes>,
    slow: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Outbound {
    /// A queue of `capacity` frames and its receiving end.
    pub fn new(
        conn: ConnId,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Outbound, mpsc::Receiver<Utf8Bytes>) {
        let (queue, receiver) = mpsc::channel(capacity);
        (Outbound { conn, queue, slow: CancellationToken::new(), metrics }, receiver)
    }

    /// Queues a frame without waiting. A full queue marks the client as a slow consumer.
    /// Frames are shared bytes, so a broadcast encodes once and each push is a refcount.
    pub fn push(&self, frame: Utf8Bytes) {
        match self.queue.try_send(frame) {
            Ok(()) => {
                self.metrics.frames_out.inc();
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.slow.is_cancelled() {
                    self.metrics.slow_consumers.inc();
                    self.slow.cancel();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Queues a frame given as text.
    pub fn push_text(&self, text: String) {
        self.push(Utf8Bytes::from(text));
    }

    /// Resolves when the client has been marked slow.
    pub async fn slow(&self) {
        self.slow.cancelled().await
    }
}
