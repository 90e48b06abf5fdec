//! The backplane: what a node hears from the others, and tells them.
//!
//! Each node subscribes to the channel of every room it has members in, and only
//! those, so a node hears nothing of rooms it does not serve. A channel carries three
//! kinds of event, one per pub/sub message, each a line-separated text:
//!
//! - `m` a stored message: seq, ts, origin (`<node>:<conn>`), id, sender, body. It is
//!   published by the publish script itself, so channel order is seq order.
//! - `p` a presence diff of one node in one room, at most one per presence tick.
//! - `e` an ephemeral frame (typing, receipt), relayed as is.
//!
//! **No silent gap.** A node delivers a room's messages strictly in seq order: a
//! message past the next expected seq (pub/sub lost some while the connection was
//! down, or the room was just joined) makes it read the missing ones from the history
//! stream first. After every (re)subscription it also compares each room's head with
//! what it delivered and fills the difference.
//!
//! **No ghosts.** Each node refreshes a heartbeat key with a TTL; a node that finds the
//! heartbeat of a node it has members from gone removes those members from its rooms
//! and cleans the dead node's presence out of Redis.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tether_shared::{Millis, User};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::history::{RedisHistory, entries};
use super::{NodeId, keys};
use crate::hub::{FanOut, RoomHub};
use crate::metrics::Metrics;
use crate::outbound::ConnId;
use crate::store::StoredMessage;
use crate::wire;

/// How often a node refreshes its heartbeat and checks the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a heartbeat lives: a node silent for this long counts as dead, so its
/// members leave everyone's presence within this plus one [`HEARTBEAT`].
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(6);
/// Longest wait between two attempts to reach Redis again.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// What the hub tells the backplane. Sent on an unbounded channel, so that the hub
/// never waits for Redis while it holds a room's lock.
pub(crate) enum Command {
    /// The room has its first member on this node.
    Watch(String),
    /// The room's last member on this node left.
    Unwatch(String),
    /// A user's first connection in the room on this node arrived, or its last left;
    /// `done` is told once the other nodes can see it (or telling them failed).
    Presence { room: String, user: Arc<User>, present: bool, done: Option<oneshot::Sender<()>> },
    /// An ephemeral frame for the room's members on the other nodes.
    Ephemeral { room: String, frame: String },
    /// The node is stopping and its members have left: tell the others now instead of
    /// letting them wait for the heartbeat to expire, then answer.
    Leave(oneshot::Sender<()>),
}

/// A presence diff as it travels between nodes.
#[derive(Serialize, Deserialize, Default)]
struct Diff {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    join: Vec<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    leave: Vec<String>,
}

/// The hub's handle on the backplane.
pub struct Backplane {
    node: NodeId,
    commands: mpsc::UnboundedSender<Command>,
    history: Arc<RedisHistory>,
}

impl Backplane {
    /// Who is present in `room` through the other live nodes (a blocking read).
    pub fn present_elsewhere(&self, room: &str) -> Result<Vec<(NodeId, User)>, crate::store::StoreError> {
        self.history.present_elsewhere(room, &self.node)
    }

    /// Leaves the cluster cleanly: pending presence told, this node's presence and
    /// heartbeat removed from Redis. Call once every connection has closed.
    pub async fn leave(&self) {
        let (done, left) = oneshot::channel();
        self.send(Command::Leave(done));
        let _ = tokio::time::timeout(HEARTBEAT_TTL, left).await;
    }

    pub(crate) fn send(&self, command: Command) {
        // Fails only while the server shuts down, when nobody is left to tell.
        let _ = self.commands.send(command);
    }
}

/// The task that keeps this node's side of the backplane.
struct Relay {
    /// Its connections and neighbours.
    parts: RelayParts,
    /// Rooms with members here.
    watched: HashSet<String>,
    /// Local presence changes not yet told, per room: user id → present (with the user)
    /// or gone.
    pending: HashMap<String, HashMap<String, Option<Arc<User>>>>,
    /// Joins waiting for their presence to be told.
    waiting: Vec<oneshot::Sender<()>>,
    /// When presence was last told: the next diff goes at once after a quiet tick, or
    /// waits for the tick's end, so that a node sends at most one diff per room per tick.
    last_flush: Option<Instant>,
}

/// Starts the backplane's task and returns the hub's handle on it.
pub(super) fn start(parts: RelayParts) -> Arc<Backplane> {
    let (commands, receiver) = mpsc::unbounded_channel();
    let (node, history) = (parts.node.clone(), parts.history.clone());
    let relay = Relay {
        parts,
        watched: HashSet::new(),
        pending: HashMap::new(),
        waiting: Vec::new(),
        last_flush: None,
    };
    tokio::spawn(relay.run(receiver));
    Arc::new(Backplane { node, commands, history })
}

/// What [`start`] needs: Redis (a client for the pub/sub connection, a managed
/// connection for everything else), this node, its hub and the presence tick.
pub(super) struct RelayParts {
    pub(super) client: redis::Client,
    pub(super) redis: ConnectionManager,
    pub(super) node: NodeId,
    pub(super) hub: Weak<RoomHub>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tick: Duration,
    pub(super) history: Arc<RedisHistory>,
}

impl Relay {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut retry = Duration::from_millis(50);
        let mut first = true;
        loop {
            let pubsub = match self.parts.client.get_async_pubsub().await {
                Ok(pubsub) => pubsub,
                Err(error) => {
                    tracing::warn!(%error, "the backplane cannot reach Redis; retrying");
                    if !self.wait(&mut commands, retry).await {
                        return;
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            };
            if !first {
                self.parts.metrics.backplane_reconnects.inc();
            }
            first = false;
            retry = Duration::from_millis(50);
            let (mut sink, mut stream) = pubsub.split();
            let rooms: Vec<String> = self.watched.iter().cloned().collect();
            if !rooms.is_empty() {
                let channels: Vec<String> = rooms.iter().map(|room| keys::channel(room)).collect();
                if let Err(error) = sink.subscribe(channels).await {
                    tracing::warn!(%error, "resubscribing failed");
                    continue;
                }
            }
            for room in &rooms {
                self.catch_up(room).await;
            }
            let mut heartbeats = tokio::time::interval(HEARTBEAT);
            loop {
                tokio::select! {
                    command = commands.recv() => {
                        let Some(command) = command else { return };
                        match command {
                            Command::Watch(room) => {
                                if self.watched.insert(room.clone()) {
                                    if let Err(error) = sink.subscribe(keys::channel(&room)).await {
                                        tracing::warn!(%error, room, "subscribing failed");
                                        break;
                                    }
                                    self.catch_up(&room).await;
                                }
                            }
                            Command::Unwatch(room) => {
                                if self.watched.remove(&room) {
                                    let _ = sink.unsubscribe(keys::channel(&room)).await;
                                }
                            }
                            Command::Presence { room, user, present, done } => {
                                self.note_presence(room, user, present, done);
                            }
                            Command::Leave(done) => {
                                self.leave().await;
                                let _ = done.send(());
                            }
                            Command::Ephemeral { room, frame } => {
                                let payload = format!("e\n{}\n{frame}", self.parts.node);
                                let mut redis = self.parts.redis.clone();
                                tokio::spawn(async move {
                                    let _: redis::RedisResult<()> = redis::cmd("PUBLISH")
                                        .arg(keys::channel(&room)).arg(payload).query_async(&mut redis).await;
                                });
                            }
                        }
                    }
                    message = stream.next() => {
                        let Some(message) = message else { break };
                        self.parts.metrics.backplane_messages.inc();
                        let channel = message.get_channel_name().to_owned();
                        let Some(room) = keys::room_of_channel(&channel) else { continue };
                        let Ok(payload) = message.get_payload::<String>() else { continue };
                        self.event(room, &payload).await;
                    }
                    () = flush_at(self.flush_due()) => self.flush_presence().await,
                    _ = heartbeats.tick() => {
                        let alive = tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>()).await;
                        if !matches!(alive, Ok(Ok(_))) {
                            tracing::warn!("the backplane's Redis connection stopped answering");
                            break;
                        }
                        self.heartbeat().await;
                    }
                }
            }
            tracing::warn!("the backplane lost Redis; reconnecting");
        }
    }

    /// Applies commands (without Redis) for `delay`; false once the hub is gone.
    async fn wait(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>, delay: Duration) -> bool {
        let until = tokio::time::sleep(delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return true,
                command = commands.recv() => match command {
                    None => return false,
                    Some(Command::Watch(room)) => { self.watched.insert(room); }
                    Some(Command::Unwatch(room)) => { self.watched.remove(&room); }
                    Some(Command::Presence { room, user, present, done }) => {
                        self.note_presence(room, user, present, done);
                    }
                    // Typing and receipts are ephemeral: while Redis is away they go nowhere.
                    Some(Command::Ephemeral { .. }) => {}
                    // Without Redis there is nobody to tell; the heartbeat expires by itself.
                    Some(Command::Leave(done)) => { let _ = done.send(()); }
                },
            }
        }
    }

    fn note_presence(
        &mut self,
        room: String,
        user: Arc<User>,
        present: bool,
        done: Option<oneshot::Sender<()>>,
    ) {
        self.pending.entry(room).or_default().insert(user.id.clone(), present.then_some(user));
        self.waiting.extend(done);
    }

    /// When the pending presence changes should be told, if there are any.
    fn flush_due(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.last_flush.map_or_else(Instant::now, |last| last + self.parts.tick))
    }

    /// One event from a room's channel.
    async fn event(&mut self, room: &str, payload: &str) {
        let Some(hub) = self.parts.hub.upgrade() else { return };
        let Some((kind, rest)) = payload.split_once('\n') else { return };
        match kind {
            "m" => {
                let Some((message, origin)) = parse_message(room, rest) else {
                    tracing::warn!(room, "a message on the backplane could not be read");
                    return;
                };
                if let Some(live) = hub.live_head(room)
                    && message.seq > live + 1
                {
                    self.fill(&hub, room, live, message.seq - 1).await;
                }
                let sender = origin.and_then(|(node, conn)| (node == *self.parts.node).then_some(conn));
                hub.deliver(&message, &wire::message(&message), sender);
            }
            "p" => {
                let Some((node, diff)) = rest.split_once('\n') else { return };
                if node == &*self.parts.node {
                    return;
                }
                let Ok(diff) = serde_json::from_str::<Diff>(diff) else { return };
                hub.remote_presence(room, &NodeId::from(node), diff.join, &diff.leave);
            }
            "e" => {
                let Some((node, frame)) = rest.split_once('\n') else { return };
                if node != &*self.parts.node {
                    hub.relay(room, frame);
                }
            }
            _ => {}
        }
    }

    /// Delivers `after < seq <= upto` of `room` from history.
    async fn fill(&mut self, hub: &RoomHub, room: &str, after: u64, upto: u64) {
        self.parts.metrics.backplane_gap_fills.inc();
        let reply: redis::RedisResult<redis::Value> = redis::cmd("XRANGE")
            .arg(keys::log(room))
            .arg(format!("{}-0", after + 1))
            .arg(format!("{upto}-0"))
            .query_async(&mut self.parts.redis)
            .await;
        match reply.map_err(crate::store::StoreError::from).and_then(|reply| entries(room, reply)) {
            Ok(messages) => {
                for message in messages {
                    hub.deliver(&message, &wire::message(&message), None);
                }
            }
            Err(error) => tracing::warn!(%error, room, "filling a gap from history failed"),
        }
    }

    /// After (re)subscribing to `room`: deliver what was published before the
    /// subscription took hold, and bring presence from other nodes up to date.
    async fn catch_up(&mut self, room: &str) {
        let Some(hub) = self.parts.hub.upgrade() else { return };
        let head: redis::RedisResult<Option<u64>> =
            redis::cmd("GET").arg(keys::seq(room)).query_async(&mut self.parts.redis).await;
        if let (Ok(Some(head)), Some(live)) = (head, hub.live_head(room))
            && head > live
        {
            self.fill(&hub, room, live, head).await;
        }
        match present(&mut self.parts.redis, room).await {
            Ok(present) => {
                let mut elsewhere: HashMap<NodeId, Vec<User>> = HashMap::new();
                let mut mine = HashSet::new();
                for (node, user) in present {
                    if node == self.parts.node {
                        mine.insert(user.id);
                    } else {
                        elsewhere.entry(node).or_default().push(user);
                    }
                }
                hub.remote_snapshot(room, elsewhere);
                // What Redis says of us must be what we have: announce every local user
                // again (a ghost cleaner may have removed us while Redis was away), and
                // take back the ones that left meanwhile.
                let changes = self.pending.entry(room.to_owned()).or_default();
                for user in hub.local_users(room) {
                    changes.entry(user.id.clone()).or_insert(Some(user));
                }
                for id in mine {
                    changes.entry(id).or_insert(None);
                }
            }
            Err(error) => tracing::warn!(%error, room, "reading presence failed"),
        }
    }

    /// Tells the other nodes this node's presence changes, one diff per room.
    async fn flush_presence(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.last_flush = Some(Instant::now());
        let pending = std::mem::take(&mut self.pending);
        let waiting = std::mem::take(&mut self.waiting);
        let mut pipe = redis::pipe();
        for (room, changes) in &pending {
            let mut diff = Diff::default();
            for (id, user) in changes {
                let field = format!("{}/{id}", self.parts.node);
                match user {
                    Some(user) => {
                        let json = serde_json::to_string(&**user).expect("users serialise");
                        pipe.hset(keys::present(room), field, json).ignore();
                        diff.join.push((**user).clone());
                    }
                    None => {
                        pipe.hdel(keys::present(room), field).ignore();
                        diff.leave.push(id.clone());
                    }
                }
            }
            pipe.sadd(keys::node_rooms(&self.parts.node), room).ignore();
            let payload =
                format!("p\n{}\n{}", self.parts.node, serde_json::to_string(&diff).expect("diffs serialise"));
            pipe.publish(keys::channel(room), payload).ignore();
        }
        let told = pipe.query_async::<()>(&mut self.parts.redis).await;
        // A join waits for its announcement only as long as Redis answers; a failure
        // is retried at the next tick without holding the join back.
        for done in waiting {
            let _ = done.send(());
        }
        if let Err(error) = told {
            tracing::warn!(%error, "telling presence to Redis failed; retrying at the next tick");
            for (room, changes) in pending {
                let newer = self.pending.entry(room).or_default();
                for (id, user) in changes {
                    newer.entry(id).or_insert(user);
                }
            }
        }
    }

    /// Tells what is pending, then removes this node from Redis: its presence fields and
    /// its heartbeat, so that the other nodes drop its members at once.
    async fn leave(&mut self) {
        self.flush_presence().await;
        if let Err(error) = clean_up_after(&mut self.parts.redis, &self.parts.node).await {
            tracing::warn!(%error, "removing this node's presence from Redis failed");
        }
        let _: redis::RedisResult<()> =
            redis::cmd("DEL").arg(keys::node(&self.parts.node)).query_async(&mut self.parts.redis).await;
    }

    /// Refreshes this node's heartbeat and removes the members of nodes whose
    /// heartbeat is gone.
    async fn heartbeat(&mut self) {
        let Some(hub) = self.parts.hub.upgrade() else { return };
        let ttl = HEARTBEAT_TTL.as_millis() as u64;
        let beat: redis::RedisResult<()> = redis::cmd("SET")
            .arg(keys::node(&self.parts.node))
            .arg(Millis::now().0)
            .arg("PX")
            .arg(ttl)
            .query_async(&mut self.parts.redis)
            .await;
        if beat.is_err() {
            return;
        }
        for node in hub.remote_nodes() {
            let alive: redis::RedisResult<bool> =
                redis::cmd("EXISTS").arg(keys::node(&node)).query_async(&mut self.parts.redis).await;
            if let Ok(false) = alive {
                tracing::info!(node = %node, "a node's heartbeat is gone; removing its members");
                hub.node_gone(&node);
                if let Err(error) = clean_up_after(&mut self.parts.redis, &node).await {
                    tracing::warn!(%error, node = %node, "cleaning up after a dead node failed");
                }
            }
        }
    }
}

/// Who Redis says is present in `room`, through which node, leaving out nodes whose
/// heartbeat is gone.
async fn present(redis: &mut ConnectionManager, room: &str) -> redis::RedisResult<Vec<(NodeId, User)>> {
    let fields: Vec<(String, String)> =
        redis::cmd("HGETALL").arg(keys::present(room)).query_async(redis).await?;
    let mut alive: HashMap<String, bool> = HashMap::new();
    let mut present = Vec::with_capacity(fields.len());
    for (field, user) in fields {
        let Some((node, _)) = field.split_once('/') else { continue };
        let Ok(user) = serde_json::from_str::<User>(&user) else { continue };
        if !alive.contains_key(node) {
            let exists: bool = redis::cmd("EXISTS").arg(keys::node(node)).query_async(redis).await?;
            alive.insert(node.to_owned(), exists);
        }
        if alive[node] {
            present.push((NodeId::from(node), user));
        }
    }
    Ok(present)
}

/// Removes a dead node's presence from every room it announced itself in.
async fn clean_up_after(redis: &mut ConnectionManager, node: &str) -> redis::RedisResult<()> {
    let rooms: Vec<String> = redis::cmd("SMEMBERS").arg(keys::node_rooms(node)).query_async(redis).await?;
    let prefix = format!("{node}/");
    for room in rooms {
        let fields: Vec<String> = redis::cmd("HKEYS").arg(keys::present(&room)).query_async(redis).await?;
        let theirs: Vec<&String> = fields.iter().filter(|field| field.starts_with(&prefix)).collect();
        if !theirs.is_empty() {
            let _: () = redis::cmd("HDEL").arg(keys::present(&room)).arg(theirs).query_async(redis).await?;
        }
    }
    redis::cmd("DEL").arg(keys::node_rooms(node)).query_async(redis).await
}

/// Sleeps until `due`, or forever without one.
async fn flush_at(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Reads an `m` event: the message, and who published it (node and connection).
fn parse_message(room: &str, text: &str) -> Option<(StoredMessage, Option<(String, ConnId)>)> {
    let mut parts = text.splitn(6, '\n');
    let seq = parts.next()?.parse().ok()?;
    let ts = Millis(parts.next()?.parse().ok()?);
    let origin = parts.next()?;
    let id = parts.next()?.to_owned();
    let user: User = serde_json::from_str(parts.next()?).ok()?;
    let body = RawValue::from_string(parts.next()?.to_owned()).ok()?;
    let origin =
        origin.split_once(':').and_then(|(node, conn)| Some((node.to_owned(), conn.parse::<ConnId>().ok()?)));
    Some((StoredMessage { room: room.to_owned(), seq, id, user, body: Arc::from(body), ts }, origin))
}
