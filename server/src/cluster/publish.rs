//! Publishing through Redis: the cluster's sequencer.
//!
//! On one node a single thread owns every room's seq. Across nodes Redis is that
//! owner: one Lua script per publish checks the dedupe marker, takes the next seq,
//! appends to the history stream, sets the marker and publishes the message on the
//! room's channel, atomically, because Redis runs a script alone. Its keys all carry the
//! room's hash tag. The ack goes out only once the script's reply is back, so an acked
//! message is in Redis; delivery, also to the publisher's own node, comes through the
//! channel, in seq order ([`super::backplane`]), and the hub holds the ack until the
//! message is delivered, so the publisher sees its message first, as on one node.
//!
//! Publishes queue up while a batch is in flight and go out together as one pipeline:
//! one round trip for many messages, like the single node's group commit.

use std::collections::HashMap;
use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::{Script, Value};
use tether_shared::RejectCode;
use tokio::sync::mpsc;

use super::{NodeId, keys};
use crate::hub::RoomHub;
use crate::metrics::Metrics;
use crate::sequencer::{Publish, Request, reject};
use crate::wire;

/// Most publishes sent in one pipeline.
const MAX_BATCH: usize = 256;
/// Trim a room's history by age once per this many publishes to it from this node.
const PRUNE_EVERY: u64 = 64;
/// Entries looked at per pass of an age trim.
const PRUNE_PAGE: usize = 100;

/// KEYS: seq, log, seen marker. ARGV: id, sender (JSON), body, ts, origin, history
/// length, dedupe window (ms), channel. Returns `{stored, "seq:ts"}`; `stored` is 0 for
/// a duplicate, whose original receipt is returned.
const PUBLISH: &str = r#"
local seen = redis.call('GET', KEYS[3])
if seen then return {0, seen} end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], seq .. '-0',
  'i', ARGV[1], 'u', ARGV[2], 'b', ARGV[3], 't', ARGV[4])
local receipt = seq .. ':' .. ARGV[4]
redis.call('SET', KEYS[3], receipt, 'PX', ARGV[7])
redis.call('PUBLISH', ARGV[8], 'm\n' .. seq .. '\n' .. ARGV[4] .. '\n' .. ARGV[5] .. '\n'
  .. ARGV[1] .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
return {1, receipt}
"#;

/// What the publish task needs besides its queue.
pub struct Publisher {
    pub(super) redis: ConnectionManager,
    pub(super) hub: std::sync::Weak<RoomHub>,
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
        let script = Script::new(PUBLISH);
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
                self.commit(&script, publishes).await;
            }
            for done in barriers {
                let _ = done.send(());
            }
        }
    }

    /// Runs the script for every publish in one pipeline, and answers each.
    async fn commit(&mut self, script: &Script, publishes: Vec<Publish>) {
        let started = Instant::now();
        let mut replies = self.pipeline(script, &publishes).await;
        if replies.as_ref().is_ok_and(|replies| replies.iter().any(is_noscript)) {
            // Redis restarted and forgot the script: load it and send the batch again.
            // Nothing of a batch that met NOSCRIPT ran, so re-sending is safe.
            let loaded: redis::RedisResult<String> =
                script.prepare_invoke().load_async(&mut self.redis).await;
            replies = match loaded {
                Ok(_) => self.pipeline(script, &publishes).await,
                Err(error) => Err(error),
            };
        }
        self.metrics.backplane_seconds.observe(started.elapsed().as_secs_f64());
        let replies = match replies {
            Ok(replies) => replies,
            Err(error) => {
                tracing::warn!(%error, "publishing to Redis failed");
                for publish in publishes {
                    reject(
                        &self.metrics,
                        &publish.reply,
                        &publish.id,
                        RejectCode::Unavailable,
                        wire::STORE_UNAVAILABLE,
                    );
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

    async fn pipeline(&mut self, script: &Script, publishes: &[Publish]) -> redis::RedisResult<Vec<Value>> {
        let mut pipe = redis::pipe();
        for publish in publishes {
            let user = serde_json::to_string(&publish.user).expect("users serialise");
            let origin = format!("{}:{}", self.node, publish.reply.conn());
            let ts = tether_shared::Millis::now().0;
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(3)
                .arg(keys::seq(&publish.room))
                .arg(keys::log(&publish.room))
                .arg(keys::seen(&publish.room, &publish.user.id, &publish.id))
                .arg(&publish.id)
                .arg(user)
                .arg(publish.body.get())
                .arg(ts)
                .arg(origin)
                .arg(self.history_messages)
                .arg(self.dedupe_window_ms)
                .arg(keys::channel(&publish.room));
        }
        pipe.ignore_errors();
        pipe.query_async(&mut self.redis).await
    }
}

impl Publisher {
    /// Every [`PRUNE_EVERY`] publishes to a room, drops its messages older than the
    /// history age, in the background. (Length is bounded by the script's `MAXLEN`.)
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

fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(error) if error.code() == "NOSCRIPT")
}

/// `{stored, "seq:ts"}` → (stored, seq, ts).
fn parse_reply(reply: Value) -> Option<(bool, u64, tether_shared::Millis)> {
    let (stored, receipt): (i64, String) = redis::from_redis_value(reply).ok()?;
    let (seq, ts) = receipt.split_once(':')?;
    Some((stored == 1, seq.parse().ok()?, tether_shared::Millis(ts.parse().ok()?)))
}
