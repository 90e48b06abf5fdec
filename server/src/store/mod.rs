//! Where acknowledged messages live.
//!
//! The [`Store`] trait is small on purpose: append a batch durably, read a room's
//! history, list what was published recently (to refill dedupe after a restart), prune. Two implementations ship: SQLite (the
//! durable default) and memory (tests and demos). A Redis-backed or replicated store
//! slots in behind the same trait; sequencing and fan-out live in
//! the local engine's sequencer (`engine/local/`), not here.

mod memory;
mod sqlite;

use std::sync::Arc;

use serde_json::value::RawValue;
use tether_shared::{Millis, User};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A message as stored: everything needed to replay it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Room name.
    pub room: String,
    /// Seq within the room.
    pub seq: u64,
    /// The sender's client message id.
    pub id: String,
    /// Who published it, as the handshake established.
    pub user: User,
    /// The body as JSON text, stored and replayed without re-parsing.
    pub body: Arc<RawValue>,
    /// When it was first stored.
    pub ts: Millis,
}

impl StoredMessage {
    /// What the message counts for against `--history-bytes`: its text fields and a
    /// fixed overhead for the row. The SQLite store sums the same expression.
    pub fn stored_bytes(&self) -> u64 {
        let text = self.room.len() + self.id.len() + self.user.id.len() + self.user.name.len();
        (text + self.user.color.len() + self.body.get().len()) as u64 + ROW_OVERHEAD
    }
}

/// Bytes a stored message counts for beyond its text: its seq, time and keys.
pub const ROW_OVERHEAD: u64 = 32;

/// Who published what where: the part of a stored message that dedupe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The sender's user id.
    pub user: String,
    /// The sender's client message id.
    pub id: String,
    /// Room name.
    pub room: String,
    /// Seq within the room.
    pub seq: u64,
    /// When it was stored.
    pub ts: Millis,
}

/// A store failure; a publish it stops is rejected as `unavailable` and may be retried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Redis refused, failed or could not be reached (cluster mode).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// What the store holds could not be read back.
    #[error("unreadable history: {0}")]
    Corrupt(String),
    /// The database's folder could not be made.
    #[error("creating {path}: {source}")]
    Folder {
        /// The folder the database should live in.
        path: std::path::PathBuf,
        /// The operating system's refusal.
        source: std::io::Error,
    },
}

/// Reading room history: what joins, replays and health checks need. In cluster mode
/// it is read from Redis, where the cluster's publish script writes it.
pub trait History: Send + Sync + 'static {
    /// The latest seq of `room` (0 if it has none).
    fn head(&self, room: &str) -> Result<u64, StoreError>;
    /// The oldest seq still held for `room` (0 if none).
    fn oldest(&self, room: &str) -> Result<u64, StoreError>;
    /// Messages of `room` with `after < seq <= upto`, in order.
    fn read(&self, room: &str, after: u64, upto: u64) -> Result<Vec<StoredMessage>, StoreError>;
    /// Identifies this store's history; changes only when history is wiped.
    fn epoch(&self) -> String;
    /// A secret for signing dev-mode and resume tokens, stable as long as the history is.
    fn secret(&self) -> Vec<u8>;
}

/// Durable storage that the single node's sequencer writes: history, plus appending.
pub trait Store: History {
    /// Stores a batch atomically. When this returns `Ok`, every message survives a crash.
    fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError>;
    /// Every publish stored at or after `since`, oldest first: read once at startup,
    /// so that a retry of a message acked before a restart is still recognised.
    fn published_since(&self, since: Millis) -> Result<Vec<Published>, StoreError>;
    /// Drops history beyond `keep` messages per room, and messages older than `before`
    /// (the oldest first, possibly a bounded batch per call), always keeping each room's
    /// latest message so its seq is never reused.
    fn prune(&self, room: &str, keep: u64, before: Millis) -> Result<(), StoreError>;
    /// The history's size, as [`StoredMessage::stored_bytes`] counts it.
    fn history_bytes(&self) -> Result<u64, StoreError>;
    /// Drops the oldest messages of the whole store (by time, a prefix of each room's
    /// history, never a room's latest) until it holds at most `target` bytes or only
    /// rooms' latest messages are left; returns the size after.
    fn shrink(&self, target: u64) -> Result<u64, StoreError>;
}
