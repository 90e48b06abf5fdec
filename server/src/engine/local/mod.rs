//! The sequencer: one thread that turns publishes into stored, numbered, delivered
//! messages.
//!
//! Because a single owner assigns seqs, commits and then delivers, every member of a
//! room sees messages in seq order and an ack is sent only after its message is
//! durable. Publishes that arrive while a commit is running are taken together into the
//! next transaction (group commit): under load, one fsync covers many messages.

pub(crate) mod dedupe;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tether_shared::{Millis, RejectCode};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use futures::future::BoxFuture;

use super::{Engine, Publish, Request, Rooms, refuse_closed, reject};
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::store::{Store, StoreError, StoredMessage};
use crate::wire;
use dedupe::{Dedupe, Fingerprint, Receipt};

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
    /// Bytes of history kept across all rooms; past it the oldest go first.
    pub max_bytes: u64,
}

/// The local engine: the handle on the sequencer thread. Cloning is cheap.
#[derive(Clone)]
pub struct LocalEngine {
    requests: std_mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
}

impl LocalEngine {
    /// Starts the sequencer thread, after reading back the dedupe window from the store
    /// (a retry of a message acked just before a restart must still get its ack). It
    /// ends by itself once every handle is dropped, after finishing what was queued;
    /// [`Engine::barrier`] waits for that work.
    pub fn start(
        store: Arc<dyn Store>,
        hub: Arc<dyn Rooms>,
        retention: Retention,
        metrics: Arc<Metrics>,
    ) -> Result<LocalEngine, StoreError> {
        let (requests, receiver) = std_mpsc::channel();
        let mut worker = Worker {
            store,
            hub,
            retention,
            metrics: metrics.clone(),
            rooms: HashMap::new(),
            dedupe: Dedupe::default(),
            history_bytes: 0,
            recount_above: retention.max_bytes,
        };
        worker.history_bytes = worker.store.history_bytes()?;
        metrics.history_bytes.set(worker.history_bytes as i64);
        for published in worker.store.published_since(worker.window_start(Millis::now()))? {
            let fingerprint = worker.dedupe.fingerprint(&published.room, &published.user, &published.id);
            let room = worker.known_room(&published.room);
            worker.dedupe.remember(fingerprint, Receipt { room, seq: published.seq, ts: published.ts });
        }
        std::thread::Builder::new()
            .name("tether-sequencer".into())
            .spawn(move || worker.run(receiver))
            .expect("spawn the sequencer thread");
        Ok(LocalEngine { requests, metrics })
    }
}

impl Engine for LocalEngine {
    fn publish(&self, publish: Publish) {
        if let Err(std_mpsc::SendError(Request::Publish(publish))) =
            self.requests.send(Request::Publish(publish))
        {
            refuse_closed(&self.metrics, &publish);
        }
    }

    fn barrier(&self) -> BoxFuture<'static, ()> {
        let (done, wait) = oneshot::channel();
        let queued = self.requests.send(Request::Barrier(done)).is_ok();
        Box::pin(async move {
            if queued {
                let _ = wait.await;
            }
        })
    }
}

fn ack(id: &str, receipt: &Receipt) -> Utf8Bytes {
    wire::ack(id, &receipt.room, receipt.seq, receipt.ts)
}

struct Worker {
    store: Arc<dyn Store>,
    hub: Arc<dyn Rooms>,
    retention: Retention,
    metrics: Arc<Metrics>,
    /// Every room published to since startup, by name (shared with the receipts).
    rooms: HashMap<Arc<str>, RoomState>,
    dedupe: Dedupe,
    /// The history's size as of the last count, plus what was appended since. Pruning
    /// by count or age is not subtracted, so this only ever overestimates: passing the
    /// cap makes the store count again before anything is dropped.
    history_bytes: u64,
    /// The estimate past which the history is counted again: the cap, or a tenth of it
    /// above what the last shrink could not drop (rooms' latest messages), so that a
    /// history of nothing but heads is not counted on every commit.
    recount_above: u64,
}

/// What the sequencer knows about one room.
struct RoomState {
    /// The latest seq handed out; `None` until read from the store.
    head: Option<u64>,
    /// Appends since startup, to prune every [`PRUNE_EVERY`].
    appended: u64,
}

/// A publish that got a seq in this batch and waits for the commit.
struct Pending {
    reply: Outbound,
    fingerprint: Fingerprint,
    room: Arc<str>,
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
        let now = Millis::now();
        self.dedupe.forget_before(self.window_start(now));
        let mut barriers = Vec::new();
        let mut messages: Vec<StoredMessage> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        // Fingerprints given a seq in this batch, and the duplicates of them that
        // arrived in the same batch: those are answered once the original commits.
        let mut in_batch: HashMap<Fingerprint, usize> = HashMap::new();
        let mut batch_dupes: Vec<(usize, Outbound)> = Vec::new();
        for request in batch {
            let publish = match request {
                Request::Publish(publish) => publish,
                Request::Barrier(done) => {
                    barriers.push(done);
                    continue;
                }
            };
            let fingerprint = self.dedupe.fingerprint(&publish.room, &publish.user.id, &publish.id);
            if let Some(&index) = in_batch.get(&fingerprint) {
                batch_dupes.push((index, publish.reply));
                continue;
            }
            if let Some(original) = self.dedupe.get(fingerprint) {
                self.metrics.duplicates.inc();
                publish.reply.push_reply(ack(&publish.id, original));
                continue;
            }
            let (room, seq) = match self.room(&publish.room) {
                Ok((room, state)) => {
                    let seq = state.head.unwrap_or(0) + 1;
                    state.head = Some(seq);
                    (room, seq)
                }
                Err(error) => {
                    tracing::error!(%error, "reading a room head failed");
                    let (reply, id) = (&publish.reply, &publish.id);
                    reject(&self.metrics, reply, id, RejectCode::Unavailable, wire::STORE_UNAVAILABLE);
                    continue;
                }
            };
            in_batch.insert(fingerprint, messages.len());
            messages.push(StoredMessage {
                room: publish.room,
                seq,
                id: publish.id,
                user: publish.user,
                body: publish.body,
                ts: now,
            });
            pending.push(Pending { reply: publish.reply, fingerprint, room });
        }

        if !messages.is_empty() {
            let started = Instant::now();
            let stored = self.store.append(&messages);
            self.metrics.commit(started.elapsed().as_secs_f64(), false);
            match stored {
                Ok(()) => {
                    self.deliver(&messages, pending, batch_dupes);
                    self.history_bytes += messages.iter().map(StoredMessage::stored_bytes).sum::<u64>();
                    self.keep_within_budget();
                    self.metrics.history_bytes.set(self.history_bytes as i64);
                }
                Err(error) => {
                    tracing::error!(%error, "storing a batch failed");
                    for (message, waiting) in messages.iter().zip(pending) {
                        // Forget the optimistic head so it is read again from the store.
                        if let Some(state) = self.rooms.get_mut(&waiting.room) {
                            state.head = None;
                        }
                        let code = RejectCode::Unavailable;
                        reject(&self.metrics, &waiting.reply, &message.id, code, wire::STORE_UNAVAILABLE);
                    }
                    for (index, reply) in batch_dupes {
                        let (id, code) = (&messages[index].id, RejectCode::Unavailable);
                        reject(&self.metrics, &reply, id, code, wire::STORE_UNAVAILABLE);
                    }
                }
            }
        }
        self.metrics.dedupe_entries.set(self.dedupe.len() as i64);
        for done in barriers {
            let _ = done.send(());
        }
    }

    /// After a commit: fan each message out, ack it, and remember it for dedupe.
    fn deliver(
        &mut self,
        messages: &[StoredMessage],
        pending: Vec<Pending>,
        batch_dupes: Vec<(usize, Outbound)>,
    ) {
        let mut receipts = Vec::with_capacity(messages.len());
        for (message, waiting) in messages.iter().zip(pending) {
            let text = wire::message(message);
            self.hub.deliver(message, &text, Some(waiting.reply.conn()));
            let receipt = Receipt { room: waiting.room, seq: message.seq, ts: message.ts };
            waiting.reply.push_reply(ack(&message.id, &receipt));
            self.metrics.acks.inc();
            receipts.push((waiting.fingerprint, receipt));
        }
        for (index, reply) in batch_dupes {
            self.metrics.duplicates.inc();
            reply.push_reply(ack(&messages[index].id, &receipts[index].1));
        }
        for (fingerprint, receipt) in receipts {
            self.maybe_prune(&receipt.room, receipt.ts);
            self.dedupe.remember(fingerprint, receipt);
        }
    }

    fn window_start(&self, now: Millis) -> Millis {
        Millis(now.0.saturating_sub(self.retention.dedupe_window.as_millis() as u64))
    }

    /// The shared name of a room seen in the store; its head is read on first publish.
    fn known_room(&mut self, name: &str) -> Arc<str> {
        if let Some((name, _)) = self.rooms.get_key_value(name) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.rooms.insert(name.clone(), RoomState { head: None, appended: 0 });
        name
    }

    /// The room's shared name and its latest seq, read from the store on first use.
    fn room(&mut self, name: &str) -> Result<(Arc<str>, &mut RoomState), StoreError> {
        let name = self.known_room(name);
        let state = self.rooms.get_mut(&name).expect("just interned");
        if state.head.is_none() {
            state.head = Some(self.store.head(&name)?);
        }
        Ok((name, state))
    }

    /// Holds the history to `--history-bytes`: once the estimate passes it, counts
    /// again, and if the history really is over, drops the oldest messages of the whole
    /// store down to nine tenths of it, so the next shrink is a tenth of the cap away.
    fn keep_within_budget(&mut self) {
        if self.history_bytes <= self.recount_above {
            return;
        }
        let shrunk = self.store.history_bytes().and_then(|counted| {
            if counted <= self.retention.max_bytes {
                return Ok(counted);
            }
            let left = self.store.shrink(self.retention.max_bytes / 10 * 9)?;
            self.metrics.history_shrunk_bytes.inc_by(counted.saturating_sub(left));
            tracing::info!(
                before = counted,
                after = left,
                "history over --history-bytes: oldest messages dropped"
            );
            Ok(left)
        });
        match shrunk {
            Ok(left) => {
                self.history_bytes = left;
                self.recount_above = self.retention.max_bytes.max(left + self.retention.max_bytes / 10);
            }
            Err(error) => tracing::warn!(%error, "keeping history within --history-bytes failed"),
        }
    }

    fn maybe_prune(&mut self, room: &str, now: Millis) {
        let Some(state) = self.rooms.get_mut(room) else { return };
        state.appended += 1;
        if state.appended % PRUNE_EVERY == 0 {
            let before = Millis(now.0.saturating_sub(self.retention.max_age.as_millis() as u64));
            if let Err(error) = self.store.prune(room, self.retention.max_messages, before) {
                tracing::warn!(%error, room, "pruning history failed");
            }
        }
    }
}
