//! Publishing through Redis: the cluster's sequencer.
//!
//! On one node a single thread owns every room's seq. Across nodes Redis is that
//! owner: one Lua function call per publish checks the dedupe marker, takes the next seq,
//! appends to the history stream, sets the marker and publishes the message on the
//! room's channel, atomically, because Redis runs a function alone. Its keys all carry the
//! room's hash tag. The ack goes out only once the function's reply is back, so an acked
//! message is in Redis; delivery, also to the publisher's own node, comes through the
//! channel, in seq order ([`super::backplane`]), and the hub holds the ack until the
//! message is delivered, so the publisher sees its message first, as on one node.
//!
//! Publishes queue up while a batch is in flight and go out together as one pipeline:
//! one round trip for many messages, like the single node's group commit.
//!
//! A rejection says only what is known: `unavailable` when Redis never had the publish
//! (it refused the connection, or its function answered an error), `unconfirmed` when
//! the pipeline may have reached it and the replies were lost ([`unanswered`]).

use std::collections::HashMap;
use std::time::Instant;

use redis::Value;
use redis::aio::ConnectionManager;
use tether_shared::RejectCode;
use tokio::sync::mpsc;

use super::keys;
use crate::engine::NodeId;
use crate::engine::{Publish, Request, Rooms, reject};
use crate::metrics::Metrics;
use crate::wire;

/// Most publishes sent in one pipeline.
const MAX_BATCH: usize = 256;
/// Trim a room's history by age once per this many publishes to it from this node.
const PRUNE_EVERY: u64 = 64;
/// Entries looked at per pass of an age trim.
const PRUNE_PAGE: usize = 100;

/// The publish function. KEYS: seq, log, seen marker. ARGV: id, sender (JSON), body,
/// origin, history length, dedupe window (ms, 0 for none), channel, id as a JSON string.
/// Returns `{stored, "seq:ts"}`; `stored` is 0 for a duplicate, whose original receipt
/// is returned.
///
/// Redis does not roll a function back, so nothing after `INCR` may fail on its inputs:
/// they are numbers and text the node made. The time is Redis's own, so `ts` follows
/// seq order whatever the nodes' clocks say. In the channel event the id travels as
/// JSON, so that no id can add a line to it.
///
/// It is a Redis *function* (a library loaded with `FUNCTION LOAD`), not a cached
/// script: functions are kept in the append-only file, so a Redis restart cannot make a
/// batch fail halfway for a forgotten script and come back reordered.
const LIBRARY: &str = r#"#!lua name=tether
redis.register_function('tether_publish', function(KEYS, ARGV)
local seen = redis.call('GET', KEYS[3])
if seen then return {0, seen} end
local now = redis.call('TIME')
local ts = string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000))
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], seq .. '-0',
  'i', ARGV[1], 'u', ARGV[2], 'b', ARGV[3], 't', ts)
local receipt = seq .. ':' .. ts
if tonumber(ARGV[6]) > 0 then redis.call('SET', KEYS[3], receipt, 'PX', ARGV[6]) end
redis.call('PUBLISH', ARGV[7], 'm\n' .. seq .. '\n' .. ts .. '\n' .. ARGV[4] .. '\n'
  .. ARGV[8] .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
return {1, receipt}
end)
"#;

/// Loads (or replaces) the library: at start, and if Redis lost it with its data.
pub(super) async fn load_library(redis: &mut ConnectionManager) -> redis::RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(LIBRARY)
        .query_async::<String>(redis)
        .await
        .map(drop)
}

/// What the publish task needs besides its queue.
pub struct Publisher {
    pub(super) redis: ConnectionManager,
    pub(super) hub: std::sync::Weak<dyn Rooms>,
    pub(super) node: NodeId,
    pub(super) metrics: std::sync::Arc<Metrics>,
    pub(super) history_messages: u64,
    pub(super) history_age: std::time::Duration,
    pub(super) dedupe_window_ms: u64,
    /// Publishes per room since the last age trim.
    pub(super) since_trim: HashMap<String, u64>,
}

impl Publisher {
    /// Serves publishes until every sender is gone.
    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        while let Some(first) = requests.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            let mut barriers = Vec::new();
            let mut publishes = Vec::new();
            for request in batch {
                match request {
                    Request::Publish(publish) => publishes.push(publish),
                    Request::Barrier(done) => barriers.push(done),
                }
            }
            if !publishes.is_empty() {
                self.commit(publishes).await;
            }
            for done in barriers {
                let _ = done.send(());
            }
        }
    }

    /// Runs the function for every publish in one pipeline, and answers each.
    async fn commit(&mut self, publishes: Vec<Publish>) {
        let started = Instant::now();
        let mut replies = self.pipeline(&publishes).await;
        if replies.as_ref().is_ok_and(|replies| replies.iter().any(is_missing_function)) {
            // Redis lost its data, the library with it (README: restart the nodes then).
            // Load it again and send the batch again: entries that did run are
            // duplicates now, and get their original receipts.
            replies = match load_library(&mut self.redis).await {
                Ok(()) => self.pipeline(&publishes).await,
                Err(error) => Err(error),
            };
        }
        self.metrics.commit(started.elapsed().as_secs_f64(), true);
        let replies = match replies {
            Ok(replies) => replies,
            Err(error) => {
                let (code, words) = unanswered(&error);
                tracing::warn!(%error, ?code, "publishing to Redis failed");
                for publish in publishes {
                    reject(&self.metrics, &publish.reply, &publish.id, code, words);
                }
                return;
            }
        };
        for (publish, reply) in publishes.into_iter().zip(replies) {
            match parse_reply(reply) {
                Some((stored, seq, ts)) => {
                    if stored {
                        self.metrics.acks.inc();
                        self.maybe_trim(&publish.room);
                    } else {
                        self.metrics.duplicates.inc();
                    }
                    let ack = wire::ack(&publish.id, &publish.room, seq, ts);
                    match self.hub.upgrade() {
                        Some(hub) => hub.ack_after(&publish.room, seq, &publish.reply, ack),
                        None => publish.reply.push_reply(ack),
                    }
                }
                None => reject(
                    &self.metrics,
                    &publish.reply,
                    &publish.id,
                    RejectCode::Unavailable,
                    wire::STORE_UNAVAILABLE,
                ),
            }
        }
    }

    /// Sends one `FCALL` per publish, all in one pipeline.
    async fn pipeline(&mut self, publishes: &[Publish]) -> redis::RedisResult<Vec<Value>> {
        let mut pipe = redis::pipe();
        for publish in publishes {
            let user = serde_json::to_string(&publish.user).expect("users serialise");
            let origin = format!("{}:{}", self.node, publish.reply.conn());
            let id_json = serde_json::to_string(&publish.id).expect("strings serialise");
            pipe.cmd("FCALL")
                .arg("tether_publish")
                .arg(3)
                .arg(keys::seq(&publish.room))
                .arg(keys::log(&publish.room))
                .arg(keys::seen(&publish.room, &publish.user.id, &publish.id))
                .arg(&publish.id)
                .arg(user)
                .arg(publish.body.get())
                .arg(origin)
                .arg(self.history_messages)
                .arg(self.dedupe_window_ms)
                .arg(keys::channel(&publish.room))
                .arg(id_json);
        }
        pipe.ignore_errors();
        pipe.query_async(&mut self.redis).await
    }
}

/// What a pipeline that got no replies means for its publishes. Only a connection
/// Redis refused is known to have carried nothing. Any other failure may have come after
/// the pipeline was written, and Redis may have run some of its functions (stored,
/// numbered, announced) before the replies were lost, as when it is killed mid-batch:
/// those publishes are `unconfirmed`, to be sent again with the same id, which the
/// dedupe marker answers with the original receipt if it was stored.
fn unanswered(error: &redis::RedisError) -> (RejectCode, &'static str) {
    if error.is_connection_refusal() {
        (RejectCode::Unavailable, wire::STORE_UNAVAILABLE)
    } else {
        (RejectCode::Unconfirmed, wire::STORE_UNCONFIRMED)
    }
}

/// Whether a reply says the publish function is not loaded.
fn is_missing_function(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(error)
        if error.details().is_some_and(|details| details.contains("Function not found")))
}

impl Publisher {
    /// Every [`PRUNE_EVERY`] publishes to a room, drops its messages older than the
    /// history age, in the background. (Length is bounded by the function's `MAXLEN`.)
    fn maybe_trim(&mut self, room: &str) {
        let count = self.since_trim.entry(room.to_owned()).or_default();
        *count += 1;
        if *count < PRUNE_EVERY {
            return;
        }
        *count = 0;
        let before = tether_shared::Millis::now().0.saturating_sub(self.history_age.as_millis() as u64);
        let (mut redis, room) = (self.redis.clone(), room.to_owned());
        tokio::spawn(async move {
            if let Err(error) = trim_older_than(&mut redis, &room, before).await {
                tracing::warn!(%error, room, "trimming old history failed");
            }
        });
    }
}

/// Drops `room`'s messages stored before `before` (ms), oldest first, a page at a time.
async fn trim_older_than(
    redis: &mut ConnectionManager,
    room: &str,
    before: u64,
) -> Result<(), crate::store::StoreError> {
    loop {
        let page: Value = redis::cmd("XRANGE")
            .arg(keys::log(room))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(PRUNE_PAGE)
            .query_async(redis)
            .await?;
        let page = super::history::entries(room, page)?;
        let old = page.iter().take_while(|message| message.ts.0 < before).count();
        let Some(last_old) = old.checked_sub(1).map(|index| &page[index]) else { return Ok(()) };
        let _: u64 = redis::cmd("XTRIM")
            .arg(keys::log(room))
            .arg("MINID")
            .arg(format!("{}-0", last_old.seq + 1))
            .query_async(redis)
            .await?;
        if old < PRUNE_PAGE {
            return Ok(());
        }
    }
}

/// `{stored, "seq:ts"}` → (stored, seq, ts).
fn parse_reply(reply: Value) -> Option<(bool, u64, tether_shared::Millis)> {
    let (stored, receipt): (i64, String) = redis::from_redis_value(reply).ok()?;
    let (seq, ts) = receipt.split_once(':')?;
    Some((stored == 1, seq.parse().ok()?, tether_shared::Millis(ts.parse().ok()?)))
}
