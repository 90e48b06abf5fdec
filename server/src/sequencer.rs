//! The sequencer: one thread that turns publishes into stored, numbered, delivered
//! messages.
//!
//! Because a single owner assigns seqs, commits and then delivers, every member of a
//! room sees messages in seq order and an ack is sent only after its message is
//! durable. Publishes that arrive while a commit is running are taken together into the
//! next transaction (group commit): under load, one fsync covers many messages.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;
use tether_shared::{Millis, RejectCode, ServerFrame, User};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::hub::FanOut;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::store::{Store, StoredMessage};

/// Most publishes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Prune a room's history once per this many appends to it.
const PRUNE_EVERY: u64 = 64;

/// History bounds and the dedupe window.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Messages kept per room.
    pub max_messages: u64,
    /// Age after which messages are dropped.
    pub max_age: Duration,
    /// How long a (user, message id) pair is remembered for dedupe.
    pub dedupe_window: Duration,
}

/// One publish on its way to being stored.
pub struct Publish {
    /// Room.
    pub room: String,
    /// Client message id.
    pub id: String,
    /// Sender.
    pub user: User,
    /// Body as JSON text.
    pub body: Arc<RawValue>,
    /// Where the ack or rejection goes; the publish was counted in flight there
    /// ([`Outbound::begin_publish`]), and exactly one answer ends it.
    pub reply: Outbound,
}

enum Request {
    Publish(Publish),
    /// Answered once everything queued before it has been committed and acked.
    Barrier(oneshot::Sender<()>),
}

/// The handle connections use to publish. Cloning is cheap.
#[derive(Clone)]
pub struct Sequencer {
    requests: std_mpsc::Sender<Request>,
}

fn now() -> Millis {
    Millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

impl Sequencer {
    /// Starts the sequencer thread. It ends by itself once every handle is dropped, after
    /// finishing what was queued; [`Sequencer::barrier`] waits for that work.
    pub fn start(
        store: Arc<dyn Store>,
        hub: Arc<dyn FanOut>,
        retention: Retention,
        metrics: Arc<Metrics>,
    ) -> Sequencer {
        let (requests, receiver) = std_mpsc::channel();
        let worker = Worker {
            store,
            hub,
            retention,
            metrics,
            heads: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            appended: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("tether-sequencer".into())
            .spawn(move || worker.run(receiver))
            .expect("spawn the sequencer thread");
        Sequencer { requests }
    }

    /// Queues a publish; its ack or rejection arrives on `publish.reply`.
    pub fn publish(&self, publish: Publish) {
        if let Err(std_mpsc::SendError(Request::Publish(publish))) =
            self.requests.send(Request::Publish(publish))
        {
            reject(&publish, RejectCode::Unavailable, "the server is shutting down");
        }
    }

    /// Resolves once everything published before this call is committed and acked.
    pub async fn barrier(&self) {
        let (done, wait) = oneshot::channel();
        if self.requests.send(Request::Barrier(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

fn reject(publish: &Publish, code: RejectCode, message: &str) {
    let frame = ServerFrame::Reject { id: publish.id.clone(), code, message: message.into() };
    publish.reply.push_reply(Utf8Bytes::from(frame.encode()));
}

fn ack_frame(message: &StoredMessage) -> Utf8Bytes {
    let frame = ServerFrame::Ack {
        id: message.id.clone(),
        room: message.room.clone(),
        seq: message.seq,
        ts: message.ts,
    };
    Utf8Bytes::from(frame.encode())
}

struct Worker {
    store: Arc<dyn Store>,
    hub: Arc<dyn FanOut>,
    retention: Retention,
    metrics: Arc<Metrics>,
    heads: HashMap<String, u64>,
    /// Recently stored messages by (user id, client id), for dedupe without a lookup.
    recent: HashMap<(String, String), StoredMessage>,
    recent_order: VecDeque<(Millis, (String, String))>,
    appended: HashMap<String, u64>,
}

impl Worker {
    fn run(mut self, requests: std_mpsc::Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let now = now();
        self.forget_before(Millis(now.0.saturating_sub(self.retention.dedupe_window.as_millis() as u64)));
        let mut barriers = Vec::new();
        let mut fresh: Vec<(StoredMessage, Outbound)> = Vec::new();
        // Duplicates of messages in this same batch are answered after the commit.
        let mut pending_dupes: Vec<(usize, Outbound)> = Vec::new();
        for request in batch {
            let publish = match request {
                Request::Publish(publish) => publish,
                Request::Barrier(done) => {
                    barriers.push(done);
                    continue;
                }
            };
            let key = (publish.user.id.clone(), publish.id.clone());
            if let Some(index) = fresh.iter().position(|(m, _)| m.user.id == key.0 && m.id == key.1) {
                pending_dupes.push((index, publish.reply));
                continue;
            }
            match self.original(&key, now) {
                Ok(Some(original)) => {
                    self.metrics.duplicates.inc();
                    publish.reply.push_reply(ack_frame(&original));
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "dedupe lookup failed");
                    reject(&publish, RejectCode::Unavailable, "storage is unavailable; retry later");
                    continue;
                }
            }
            let head = match self.head(&publish.room) {
                Ok(head) => head,
                Err(error) => {
                    tracing::error!(%error, "reading a room head failed");
                    reject(&publish, RejectCode::Unavailable, "storage is unavailable; retry later");
                    continue;
                }
            };
            let seq = head + 1;
            self.heads.insert(publish.room.clone(), seq);
            let message = StoredMessage {
                room: publish.room,
                seq,
                id: publish.id,
                user: publish.user,
                body: publish.body,
                ts: now,
            };
            fresh.push((message, publish.reply));
        }

        if !fresh.is_empty() {
            let messages: Vec<StoredMessage> = fresh.iter().map(|(m, _)| m.clone()).collect();
            let started = Instant::now();
            let stored = self.store.append(&messages);
            self.metrics.store_seconds.observe(started.elapsed().as_secs_f64());
            match stored {
                Ok(()) => {
                    for (message, reply) in &fresh {
                        let text = Utf8Bytes::from(message.frame_text());
                        self.hub.deliver(message, &text, Some(reply.conn()));
                        reply.push_reply(ack_frame(message));
                        self.metrics.acks.inc();
                        self.remember(message.clone());
                    }
                    for (index, reply) in pending_dupes {
                        self.metrics.duplicates.inc();
                        reply.push_reply(ack_frame(&fresh[index].0));
                    }
                    let rooms: Vec<String> = fresh.iter().map(|(m, _)| m.room.clone()).collect();
                    for room in rooms {
                        self.maybe_prune(&room, now);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "storing a batch failed");
                    for (message, reply) in fresh.iter() {
                        // Forget the optimistic head so it is read again from the store.
                        self.heads.remove(&message.room);
                        let frame = ServerFrame::Reject {
                            id: message.id.clone(),
                            code: RejectCode::Unavailable,
                            message: "storage is unavailable; retry later".into(),
                        };
                        reply.push_reply(Utf8Bytes::from(frame.encode()));
                    }
                }
            }
        }
        for done in barriers {
            let _ = done.send(());
        }
    }

    /// The first stored copy of a (user, id) within the dedupe window.
    fn original(
        &self,
        key: &(String, String),
        now: Millis,
    ) -> Result<Option<StoredMessage>, crate::store::StoreError> {
        if let Some(found) = self.recent.get(key) {
            return Ok(Some(found.clone()));
        }
        if self.store.durable() {
            let since = Millis(now.0.saturating_sub(self.retention.dedupe_window.as_millis() as u64));
            return self.store.find(&key.0, &key.1, since);
        }
        Ok(None)
    }

    fn head(&mut self, room: &str) -> Result<u64, crate::store::StoreError> {
        if let Some(head) = self.heads.get(room) {
            return Ok(*head);
        }
        let head = self.store.head(room)?;
        self.heads.insert(room.to_owned(), head);
        Ok(head)
    }

    fn remember(&mut self, message: StoredMessage) {
        let key = (message.user.id.clone(), message.id.clone());
        self.recent_order.push_back((message.ts, key.clone()));
        self.recent.insert(key, message);
    }

    fn forget_before(&mut self, cutoff: Millis) {
        while self.recent_order.front().is_some_and(|(ts, _)| *ts < cutoff) {
            if let Some((_, key)) = self.recent_order.pop_front() {
                self.recent.remove(&key);
            }
        }
    }

    fn maybe_prune(&mut self, room: &str, now: Millis) {
        let count = self.appended.entry(room.to_owned()).or_default();
        *count += 1;
        if *count % PRUNE_EVERY == 0 {
            let before = Millis(now.0.saturating_sub(self.retention.max_age.as_millis() as u64));
            if let Err(error) = self.store.prune(room, self.retention.max_messages, before) {
                tracing::warn!(%error, room, "pruning history failed");
            }
        }
    }
}
