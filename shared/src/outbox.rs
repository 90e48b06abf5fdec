//! The outbox: messages the user sent that the server has not acknowledged yet.
//!
//! A message leaves the outbox when its ack arrives, not when it is written to a socket:
//! a socket can die with the message in a kernel buffer, and only the ack proves the
//! server stored it. Everything unacked is sent again, in order, after a reconnect, and
//! the server's dedupe by message id makes the second copy harmless.
//!
//! The outbox is bounded by message count and by bytes. When full, the configured
//! [`Overflow`] policy decides what gives way, and whatever is dropped is returned to
//! the caller as [`Dropped`]: no message ever vanishes silently.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frame::ClientFrame;
use crate::time::Millis;

/// What gives way when a new message would exceed the outbox's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Evict the oldest message of the lowest priority that was never sent, as long as
    /// it is not more important than the new one; otherwise the new one is dropped. A
    /// message already written is never evicted: the server may have stored it.
    DropOldest,
    /// Drop the new message.
    DropNewest,
    /// Refuse the new message with [`OutboxError::Full`]; nothing is dropped.
    Reject,
}

/// Outbox settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxConfig {
    /// Most messages held at once, sent or not.
    pub max_messages: usize,
    /// Most bytes held at once, counted as the encoded `publish` frames.
    pub max_bytes: usize,
    /// What gives way when full.
    pub overflow: Overflow,
    /// Lifetime of a message that has not been sent yet; `None` keeps it until sent.
    /// Once written, a message is kept until the server answers for it, TTL or not.
    pub default_ttl: Option<Duration>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_messages: 1_000,
            max_bytes: 1 << 20,
            overflow: Overflow::DropOldest,
            default_ttl: None,
        }
    }
}

/// A message waiting for its ack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Client message id; the dedupe key here and on the server.
    pub id: String,
    /// Target room.
    pub room: String,
    /// The message itself, any JSON value; its encoded size counts towards the outbox bounds.
    pub body: Value,
    /// Higher goes first.
    pub priority: u8,
    /// When it was queued.
    pub created: Millis,
    /// When it stops being worth sending, if ever.
    pub expires: Option<Millis>,
}

impl Envelope {
    /// The `publish` frame that carries this message.
    pub fn frame(&self) -> ClientFrame {
        ClientFrame::Publish {
            id: self.id.clone(),
            room: self.room.clone(),
            body: self.body.clone(),
            priority: self.priority,
        }
    }

    fn size(&self) -> usize {
        self.frame().encode().len()
    }
}

/// Why the outbox let go of a message without an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Evicted, or not admitted, because the outbox was full. Only a message never sent
    /// is evicted, so the server never had it.
    Overflow,
    /// Its TTL ran out before it was ever sent, so the server never had it. A message
    /// that was written once is never expired: the server may have stored it (its ack
    /// lost with the connection, or a `reject` `unconfirmed`), so it stays until its ack
    /// or a refusal says what became of it.
    Expired,
}

/// A message the outbox dropped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// The message let go, so the UI can mark it failed.
    pub envelope: Envelope,
    /// Whether the queue was full or the message outlived its TTL.
    pub reason: DropReason,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// Full, and the policy is [`Overflow::Reject`].
    #[error("the outbox is full ({messages} messages, {bytes} bytes)")]
    Full {
        /// Messages held.
        messages: usize,
        /// Bytes held.
        bytes: usize,
    },
    /// The message alone is larger than the outbox may hold.
    #[error("the message is {bytes} bytes, more than the outbox's {max}")]
    TooLarge {
        /// The message's size.
        bytes: usize,
        /// The outbox's byte bound.
        max: usize,
    },
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pushed {
    /// `false` when a message with the same id was already queued (nothing changed).
    pub queued: bool,
    /// Messages that gave way, possibly the new one itself.
    pub dropped: Vec<Dropped>,
}

/// Higher priority first, then first-come.
type Key = (Reverse<u8>, u64);

#[derive(Debug, Clone)]
struct Entry {
    envelope: Envelope,
    bytes: usize,
    sent_at: Option<Millis>,
    /// Times it was handed out to be written.
    sends: u32,
}

/// Unacknowledged messages in send order.
#[derive(Debug, Clone)]
pub struct Outbox {
    config: OutboxConfig,
    entries: BTreeMap<Key, Entry>,
    by_id: HashMap<String, Key>,
    next_order: u64,
    bytes: usize,
    /// Messages handed out to be written again (after a reconnect or an ack timeout).
    resent: u64,
}

/// The snapshot format's version. Bump it when the snapshot's shape changes.
pub const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    messages: Vec<Envelope>,
    /// The ids of those written at least once: the server may have them, so their TTL
    /// no longer applies after the reload either. Absent in older snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    written: Vec<String>,
}

/// Why a stored snapshot could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Written by another version of Tether.
    #[error("the saved queue has format version {found}, this version reads {SNAPSHOT_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// Not a snapshot at all: damaged, truncated, or written by something else.
    #[error("the saved queue is damaged: {0}")]
    Corrupt(String),
}

impl Outbox {
    /// An empty outbox.
    pub fn new(config: OutboxConfig) -> Self {
        Outbox { config, entries: BTreeMap::new(), by_id: HashMap::new(), next_order: 0, bytes: 0, resent: 0 }
    }

    /// The bounds and overflow policy it enforces.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// Messages held (sent or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages written to the current socket and awaiting their ack.
    pub fn in_flight(&self) -> usize {
        self.entries.values().filter(|e| e.sent_at.is_some()).count()
    }

    /// Whether a message with `id` is held.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// All held messages in send order.
    pub fn iter(&self) -> impl Iterator<Item = &Envelope> {
        self.entries.values().map(|e| &e.envelope)
    }

    /// Queues `envelope`, applying TTL defaults, dedupe and the overflow policy.
    pub fn push(&mut self, envelope: Envelope) -> Result<Pushed, OutboxError> {
        self.insert(envelope, 0)
    }

    /// Queues `envelope` as handed out `sends` times before. One written before
    /// (`sends > 0`, restored from a snapshot) may be stored already, so it is never the
    /// one that gives way: it is kept, past the bounds if they are smaller than those
    /// it was sent under.
    fn insert(&mut self, mut envelope: Envelope, sends: u32) -> Result<Pushed, OutboxError> {
        if self.by_id.contains_key(&envelope.id) {
            return Ok(Pushed { queued: false, dropped: Vec::new() });
        }
        if envelope.expires.is_none() {
            envelope.expires = self.config.default_ttl.map(|ttl| envelope.created.after(ttl));
        }
        let bytes = envelope.size();
        if sends == 0 && (bytes > self.config.max_bytes || self.config.max_messages == 0) {
            return Err(OutboxError::TooLarge { bytes, max: self.config.max_bytes });
        }
        let key = (Reverse(envelope.priority), self.next_order);
        let mut dropped = Vec::new();
        while self.entries.len() + 1 > self.config.max_messages || self.bytes + bytes > self.config.max_bytes
        {
            if sends > 0 {
                break;
            }
            match self.config.overflow {
                Overflow::Reject => {
                    return Err(OutboxError::Full { messages: self.entries.len(), bytes: self.bytes });
                }
                Overflow::DropNewest => {
                    dropped.push(Dropped { envelope, reason: DropReason::Overflow });
                    return Ok(Pushed { queued: false, dropped });
                }
                Overflow::DropOldest => {
                    // The least important is the lowest priority; among equals, the oldest.
                    let victim = self.least_important_unsent();
                    let Some(victim) = victim.filter(|victim| victim.0 >= key.0) else {
                        // Everything that may go is more important than the newcomer.
                        dropped.push(Dropped { envelope, reason: DropReason::Overflow });
                        return Ok(Pushed { queued: false, dropped });
                    };
                    let gone = self.remove_key(victim);
                    dropped.push(Dropped { envelope: gone, reason: DropReason::Overflow });
                }
            }
        }
        self.next_order += 1;
        self.bytes += bytes;
        self.by_id.insert(envelope.id.clone(), key);
        self.entries.insert(key, Entry { envelope, bytes, sent_at: None, sends });
        Ok(Pushed { queued: true, dropped })
    }

    /// The message that gives way first: of those never sent (one written may be stored
    /// already), the lowest priority, and among equals the oldest.
    fn least_important_unsent(&self) -> Option<Key> {
        let unsent = || self.entries.iter().filter(|(_, e)| e.sends == 0).map(|(k, _)| *k);
        unsent().map(|k| k.0).max().and_then(|lowest| unsent().find(|k| k.0 == lowest))
    }

    fn remove_key(&mut self, key: Key) -> Envelope {
        let entry = self.entries.remove(&key).expect("keys in by_id are in entries");
        self.by_id.remove(&entry.envelope.id);
        self.bytes -= entry.bytes;
        entry.envelope
    }

    /// Marks unsent messages as sent, in order, until `max_in_flight` are awaiting acks,
    /// and returns them for the driver to write.
    pub fn take_sendable(&mut self, now: Millis, max_in_flight: usize) -> Vec<Envelope> {
        let room = max_in_flight.saturating_sub(self.in_flight());
        let resent = &mut self.resent;
        self.entries
            .values_mut()
            .filter(|entry| entry.sent_at.is_none())
            .take(room)
            .map(|entry| {
                entry.sent_at = Some(now);
                *resent += u64::from(entry.sends > 0);
                entry.sends += 1;
                entry.envelope.clone()
            })
            .collect()
    }

    /// How many times a message was handed out to be written again, after a reconnect
    /// or an ack timeout: what the server's dedupe is there for.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Removes the message the server acknowledged. A late or repeated ack finds nothing
    /// and returns `None`.
    pub fn ack(&mut self, id: &str) -> Option<Envelope> {
        let key = *self.by_id.get(id)?;
        Some(self.remove_key(key))
    }

    /// Removes a message for good (the server refused it for a reason retrying won't fix).
    pub fn remove(&mut self, id: &str) -> Option<Envelope> {
        self.ack(id)
    }

    /// The clock went back by `by`: every time the outbox keeps (when each message was
    /// queued, sent, and when it expires) moves back as far, so that ack timeouts and
    /// TTLs keep their length instead of growing by the jump.
    pub fn shift_back(&mut self, by: Duration) {
        let back = |at: Millis| Millis(at.0.saturating_sub(by.as_millis().min(u64::MAX as u128) as u64));
        for entry in self.entries.values_mut() {
            entry.sent_at = entry.sent_at.map(back);
            entry.envelope.created = back(entry.envelope.created);
            entry.envelope.expires = entry.envelope.expires.map(back);
        }
    }

    /// After a disconnect: every unacked message is to be sent again, in order.
    pub fn requeue_all(&mut self) {
        for entry in self.entries.values_mut() {
            entry.sent_at = None;
        }
    }

    /// Every unacked message to `room` is to be sent again, in order (the room was
    /// joined again after the server refused them `not_joined`).
    pub fn requeue_room(&mut self, room: &str) {
        for entry in self.entries.values_mut().filter(|entry| entry.envelope.room == room) {
            entry.sent_at = None;
        }
    }

    /// Sent messages whose ack is overdue by `ack_timeout`: stamped as sent again now
    /// and returned, in order, for the driver to re-send.
    pub fn overdue(&mut self, now: Millis, ack_timeout: Duration) -> Vec<Envelope> {
        let resent = &mut self.resent;
        self.entries
            .values_mut()
            .filter(|entry| entry.sent_at.is_some_and(|at| at.after(ack_timeout) <= now))
            .map(|entry| {
                entry.sent_at = Some(now);
                entry.sends += 1;
                *resent += 1;
                entry.envelope.clone()
            })
            .collect()
    }

    /// When the oldest in-flight message's ack becomes overdue.
    pub fn next_ack_deadline(&self, ack_timeout: Duration) -> Option<Millis> {
        self.entries.values().filter_map(|entry| entry.sent_at).min().map(|at| at.after(ack_timeout))
    }

    /// Drops messages never sent whose TTL has run out. One sent before a reconnect is
    /// waiting to be sent again, not unsent: the server may have it.
    pub fn expire(&mut self, now: Millis) -> Vec<Dropped> {
        let expired: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.sends == 0 && e.envelope.expires.is_some_and(|at| at <= now))
            .map(|(key, _)| *key)
            .collect();
        expired
            .into_iter()
            .map(|key| Dropped { envelope: self.remove_key(key), reason: DropReason::Expired })
            .collect()
    }

    /// When the next never-sent message expires.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.entries.values().filter(|e| e.sends == 0).filter_map(|e| e.envelope.expires).min()
    }

    /// A versioned JSON snapshot of every unacked message, in send order, for storage
    /// across a page reload.
    pub fn snapshot(&self) -> String {
        let written = self.entries.values().filter(|e| e.sends > 0).map(|e| e.envelope.id.clone()).collect();
        let snapshot =
            Snapshot { version: SNAPSHOT_VERSION, messages: self.iter().cloned().collect(), written };
        serde_json::to_string(&snapshot).expect("envelopes always serialise")
    }

    /// Rebuilds an outbox from [`Outbox::snapshot`]'s output. Every restored message is
    /// to be sent (again); those written before keep that mark from the moment they are
    /// queued, which exempts them from their TTL and from eviction. Bounds and policy of
    /// `config` apply, and anything they drop is returned; never a message written
    /// before, which is kept past bounds smaller than those it was sent under.
    pub fn restore(config: OutboxConfig, text: &str) -> Result<(Outbox, Vec<Dropped>), SnapshotError> {
        let value: Value = serde_json::from_str(text).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        let version = value
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| SnapshotError::Corrupt("no version field".into()))?;
        if version != u64::from(SNAPSHOT_VERSION) {
            return Err(SnapshotError::UnsupportedVersion { found: version.min(u64::from(u32::MAX)) as u32 });
        }
        let snapshot: Snapshot =
            serde_json::from_value(value).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        let mut outbox = Outbox::new(config);
        let mut dropped = Vec::new();
        // Those written before go in first, marked as such, so that the bounds and the
        // policy only ever make the others give way. Within a priority the written
        // ones come first in the snapshot anyway (messages are sent in order), so the
        // send order stays as it was.
        let written: HashSet<String> = snapshot.written.into_iter().collect();
        let (written, unsent): (Vec<_>, Vec<_>) =
            snapshot.messages.into_iter().partition(|envelope| written.contains(&envelope.id));
        let marked =
            written.into_iter().map(|envelope| (envelope, 1)).chain(unsent.into_iter().map(|e| (e, 0)));
        for (envelope, sends) in marked {
            match outbox.insert(envelope.clone(), sends) {
                Ok(pushed) => dropped.extend(pushed.dropped),
                Err(_) => dropped.push(Dropped { envelope, reason: DropReason::Overflow }),
            }
        }
        Ok((outbox, dropped))
    }
}

impl Outbox {
    /// [`Outbox::restore`] for drivers: a snapshot that cannot be read (corrupt, or from
    /// another format version) yields an empty outbox plus the error to show the person,
    /// so a damaged store never stops the app.
    pub fn restore_or_empty(
        config: OutboxConfig,
        text: &str,
    ) -> (Outbox, Vec<Dropped>, Option<SnapshotError>) {
        match Outbox::restore(config.clone(), text) {
            Ok((outbox, dropped)) => (outbox, dropped, None),
            Err(error) => (Outbox::new(config), Vec::new(), Some(error)),
        }
    }
}

/// Client message ids: 16 random hex digits from a seeded generator. Ids only need to
/// be unique per user (they are the server's dedupe key), so a seed that differs per
/// page load or process is enough; the seed keeps tests deterministic.
#[derive(Debug, Clone)]
pub struct MessageIds(fastrand::Rng);

impl MessageIds {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        MessageIds(fastrand::Rng::with_seed(seed))
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        format!("{:016x}", self.0.u64(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(id: &str, priority: u8) -> Envelope {
        Envelope {
            id: id.into(),
            room: "r".into(),
            body: json!("x"),
            priority,
            created: Millis(0),
            expires: None,
        }
    }

    fn ids(outbox: &Outbox) -> Vec<String> {
        outbox.iter().map(|e| e.id.clone()).collect()
    }

    fn config(max_messages: usize, overflow: Overflow) -> OutboxConfig {
        OutboxConfig { max_messages, max_bytes: 1 << 20, overflow, default_ttl: None }
    }

    #[test]
    fn priority_first_then_fifo() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        for (id, p) in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", 9)] {
            outbox.push(envelope(id, p)).unwrap();
        }
        assert_eq!(ids(&outbox), ["e", "b", "d", "a", "c"]);
        let sent: Vec<String> = outbox.take_sendable(Millis(1), 3).into_iter().map(|e| e.id).collect();
        assert_eq!(sent, ["e", "b", "d"]);
        assert_eq!(outbox.in_flight(), 3);
    }

    #[test]
    fn leaves_on_ack_not_on_send_and_late_acks_are_harmless() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        outbox.push(envelope("a", 0)).unwrap();
        outbox.take_sendable(Millis(1), 10);
        assert_eq!(outbox.len(), 1, "sent but not acked: still held");
        assert_eq!(outbox.ack("a").map(|e| e.id), Some("a".into()));
        assert_eq!(outbox.ack("a"), None);
        assert_eq!(outbox.ack("never-sent"), None);
        assert!(outbox.is_empty());
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn requeue_resends_in_the_original_order() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        for id in ["a", "b", "c"] {
            outbox.push(envelope(id, 0)).unwrap();
        }
        outbox.take_sendable(Millis(1), 10);
        outbox.ack("b");
        outbox.requeue_all();
        let again: Vec<String> = outbox.take_sendable(Millis(2), 10).into_iter().map(|e| e.id).collect();
        assert_eq!(again, ["a", "c"]);
    }

    #[test]
    fn dedupe_by_id() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        assert!(outbox.push(envelope("a", 0)).unwrap().queued);
        assert!(!outbox.push(envelope("a", 3)).unwrap().queued);
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn drop_oldest_evicts_the_least_important_oldest() {
        let mut outbox = Outbox::new(config(3, Overflow::DropOldest));
        for (id, p) in [("hi", 9), ("a", 0), ("b", 0)] {
            outbox.push(envelope(id, p)).unwrap();
        }
        let pushed = outbox.push(envelope("c", 0)).unwrap();
        assert_eq!(pushed.dropped.len(), 1);
        assert_eq!(pushed.dropped[0].envelope.id, "a");
        assert_eq!(pushed.dropped[0].reason, DropReason::Overflow);
        assert_eq!(ids(&outbox), ["hi", "b", "c"]);
    }

    #[test]
    fn drop_oldest_never_evicts_more_important_messages() {
        let mut outbox = Outbox::new(config(2, Overflow::DropOldest));
        outbox.push(envelope("x", 5)).unwrap();
        outbox.push(envelope("y", 5)).unwrap();
        let pushed = outbox.push(envelope("low", 1)).unwrap();
        assert!(!pushed.queued);
        assert_eq!(pushed.dropped[0].envelope.id, "low");
        assert_eq!(ids(&outbox), ["x", "y"]);
    }

    #[test]
    fn drop_oldest_never_evicts_a_message_already_written() {
        let mut outbox = Outbox::new(config(2, Overflow::DropOldest));
        outbox.push(envelope("written", 0)).unwrap();
        outbox.push(envelope("waiting", 0)).unwrap();
        outbox.take_sendable(Millis(0), 1);
        outbox.requeue_all();
        let pushed = outbox.push(envelope("new", 0)).unwrap();
        assert_eq!(pushed.dropped.iter().map(|d| d.envelope.id.as_str()).collect::<Vec<_>>(), ["waiting"]);
        assert_eq!(ids(&outbox), ["written", "new"]);
        outbox.take_sendable(Millis(1), 2);
        // Everything held was written: the newcomer gives way.
        let pushed = outbox.push(envelope("newer", 9)).unwrap();
        assert!(!pushed.queued);
        assert_eq!(pushed.dropped.iter().map(|d| d.envelope.id.as_str()).collect::<Vec<_>>(), ["newer"]);
        assert_eq!(ids(&outbox), ["written", "new"]);
    }

    #[test]
    fn drop_newest_and_reject() {
        let mut newest = Outbox::new(config(1, Overflow::DropNewest));
        newest.push(envelope("a", 0)).unwrap();
        let pushed = newest.push(envelope("b", 0)).unwrap();
        assert_eq!((pushed.queued, pushed.dropped[0].envelope.id.as_str()), (false, "b"));
        assert_eq!(ids(&newest), ["a"]);

        let mut reject = Outbox::new(config(1, Overflow::Reject));
        reject.push(envelope("a", 0)).unwrap();
        assert!(matches!(reject.push(envelope("b", 0)), Err(OutboxError::Full { messages: 1, .. })));
        assert_eq!(ids(&reject), ["a"]);
    }

    #[test]
    fn byte_bound_holds_and_oversize_is_refused() {
        let one = envelope("a", 0).size();
        let mut outbox =
            Outbox::new(OutboxConfig { max_bytes: one * 2, ..config(100, Overflow::DropOldest) });
        for id in ["a", "b", "c"] {
            outbox.push(envelope(id, 0)).unwrap();
        }
        assert_eq!(ids(&outbox), ["b", "c"]);
        assert!(outbox.bytes() <= one * 2);
        let big = Envelope { body: json!("y".repeat(one * 3)), ..envelope("big", 0) };
        assert!(matches!(outbox.push(big), Err(OutboxError::TooLarge { .. })));
    }

    #[test]
    fn ttl_expires_unsent_messages_only() {
        let mut outbox = Outbox::new(OutboxConfig {
            default_ttl: Some(Duration::from_secs(5)),
            ..OutboxConfig::default()
        });
        outbox.push(envelope("sent", 0)).unwrap();
        outbox.take_sendable(Millis(0), 1);
        outbox.push(envelope("waiting", 0)).unwrap();
        assert_eq!(outbox.next_expiry(), Some(Millis(5_000)));
        assert!(outbox.expire(Millis(4_999)).is_empty());
        let expired = outbox.expire(Millis(5_000));
        assert_eq!(expired.len(), 1);
        assert_eq!((expired[0].envelope.id.as_str(), expired[0].reason), ("waiting", DropReason::Expired));
        assert_eq!(ids(&outbox), ["sent"]);
    }

    #[test]
    fn a_message_once_written_outlives_its_ttl_across_reconnects_and_reloads() {
        let config = OutboxConfig { default_ttl: Some(Duration::from_secs(5)), ..OutboxConfig::default() };
        let mut outbox = Outbox::new(config.clone());
        outbox.push(envelope("written", 0)).unwrap();
        outbox.push(envelope("never", 0)).unwrap();
        outbox.take_sendable(Millis(0), 1);
        // The connection dropped: both wait to be sent, but the server may hold the first.
        outbox.requeue_all();
        assert_eq!(outbox.next_expiry(), Some(Millis(5_000)));
        let expired = outbox.expire(Millis(60_000));
        assert_eq!(expired.iter().map(|d| d.envelope.id.as_str()).collect::<Vec<_>>(), ["never"]);
        assert_eq!(ids(&outbox), ["written"]);
        assert_eq!(outbox.next_expiry(), None);
        // So across a reload.
        let (mut restored, dropped) = Outbox::restore(config, &outbox.snapshot()).unwrap();
        assert!(dropped.is_empty());
        assert!(restored.expire(Millis(60_000)).is_empty());
        assert_eq!(ids(&restored), ["written"]);
    }

    /// Restored under smaller bounds than it was saved with, an outbox keeps every
    /// message written before (the server may have stored it), past the bounds if need
    /// be, and only messages never sent give way.
    #[test]
    fn a_restore_under_smaller_bounds_drops_nothing_written() {
        let mut outbox = Outbox::new(config(4, Overflow::DropOldest));
        for (id, priority) in [("w1", 0), ("w2", 0), ("w3", 0), ("unsent", 5)] {
            outbox.push(envelope(id, priority)).unwrap();
        }
        // The unsent one is more important, so it comes first; the rest were written.
        assert_eq!(outbox.take_sendable(Millis(0), 4).len(), 4);
        outbox.ack("unsent");
        outbox.push(envelope("unsent", 5)).unwrap();
        outbox.requeue_all();
        let snapshot = outbox.snapshot();
        for overflow in [Overflow::DropOldest, Overflow::DropNewest, Overflow::Reject] {
            let (mut restored, dropped) = Outbox::restore(config(2, overflow), &snapshot).unwrap();
            let dropped: Vec<&str> = dropped.iter().map(|d| d.envelope.id.as_str()).collect();
            assert_eq!(dropped, ["unsent"], "{overflow:?}");
            assert_eq!(ids(&restored), ["w1", "w2", "w3"], "{overflow:?}");
            // Still marked written: a newcomer gives way rather than one of them.
            let pushed = restored.push(envelope("new", 9));
            assert!(!pushed.is_ok_and(|pushed| pushed.queued), "{overflow:?}");
            assert_eq!(ids(&restored), ["w1", "w2", "w3"], "{overflow:?}");
        }
        // A written message larger than the new byte bound is kept too.
        let small = OutboxConfig { max_bytes: 1, ..config(2, Overflow::DropOldest) };
        let (restored, dropped) = Outbox::restore(small, &snapshot).unwrap();
        assert_eq!((ids(&restored).len(), dropped.len()), (3, 1));
    }

    #[test]
    fn messages_written_again_are_counted_as_resent() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        for id in ["a", "b"] {
            outbox.push(envelope(id, 0)).unwrap();
        }
        assert_eq!(outbox.take_sendable(Millis(0), 10).len(), 2);
        assert_eq!(outbox.resent(), 0, "first sends are not resends");
        outbox.requeue_all();
        assert_eq!(outbox.take_sendable(Millis(1), 10).len(), 2);
        assert_eq!(outbox.overdue(Millis(100_000), Duration::from_secs(10)).len(), 2);
        assert_eq!(outbox.resent(), 4);
    }

    #[test]
    fn overdue_acks_are_resent() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        outbox.push(envelope("a", 0)).unwrap();
        outbox.take_sendable(Millis(1_000), 1);
        let timeout = Duration::from_secs(5);
        assert_eq!(outbox.next_ack_deadline(timeout), Some(Millis(6_000)));
        assert!(outbox.overdue(Millis(5_999), timeout).is_empty());
        assert_eq!(outbox.overdue(Millis(6_000), timeout).len(), 1);
        assert_eq!(outbox.next_ack_deadline(timeout), Some(Millis(11_000)));
    }

    #[test]
    fn snapshot_round_trip_keeps_order_and_unsends() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        for (id, p) in [("a", 0), ("b", 2), ("c", 0)] {
            outbox.push(envelope(id, p)).unwrap();
        }
        outbox.take_sendable(Millis(1), 1);
        let (restored, dropped) = Outbox::restore(OutboxConfig::default(), &outbox.snapshot()).unwrap();
        assert!(dropped.is_empty());
        assert_eq!(ids(&restored), ["b", "a", "c"]);
        assert_eq!(restored.in_flight(), 0);
        assert_eq!(restored.bytes(), outbox.bytes());
    }

    #[test]
    fn a_bad_snapshot_leaves_an_empty_outbox_and_says_why() {
        let (outbox, dropped, error) = Outbox::restore_or_empty(OutboxConfig::default(), "garbage");
        assert!(outbox.is_empty() && dropped.is_empty());
        let error = error.expect("an error to show");
        assert!(error.to_string().starts_with("the saved queue is damaged"), "{error}");
        let (_, _, error) =
            Outbox::restore_or_empty(OutboxConfig::default(), r#"{"version":99,"messages":[]}"#);
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("the saved queue has format version 99, this version reads 1")
        );
    }

    #[test]
    fn bad_snapshots_give_clear_errors() {
        let config = OutboxConfig::default();
        assert!(matches!(Outbox::restore(config.clone(), "{{{"), Err(SnapshotError::Corrupt(_))));
        assert!(matches!(Outbox::restore(config.clone(), "[]"), Err(SnapshotError::Corrupt(_))));
        assert_eq!(
            Outbox::restore(config.clone(), r#"{"version":0,"messages":[]}"#).err(),
            Some(SnapshotError::UnsupportedVersion { found: 0 })
        );
        let wrong_shape = r#"{"version":1,"messages":[{"id":3}]}"#;
        assert!(matches!(Outbox::restore(config, wrong_shape), Err(SnapshotError::Corrupt(_))));
    }
}
