//! The backplane: what a node hears from the others, and tells them.
//!
//! Each node subscribes to the channel of every room it has members in, and only
//! those, so a node hears nothing of rooms it does not serve. A channel carries three
//! kinds of event, one per pub/sub message, each a line-separated text:
//!
//! - `m` a stored message: seq, ts, origin (`<node>:<conn>`), id (as a JSON string),
//!   sender, body. It is published by the publish script itself, so channel order is
//!   seq order.
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
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::history::{PRESENT, RedisHistory, entries, present_users};
use super::keys;
use crate::engine::NodeId;
use crate::engine::Rooms;
use crate::metrics::Metrics;
use crate::outbound::ConnId;
use crate::store::{StoreError, StoredMessage};
use crate::wire;

/// How often a node refreshes its heartbeat and checks the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a heartbeat lives: a node silent for this long counts as dead, so its
/// members leave everyone's presence within this plus one [`HEARTBEAT`].
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(6);
/// Shortest and longest wait between two attempts to reach Redis again.
const MIN_RETRY: Duration = Duration::from_millis(50);
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
    /// Volatile state for the room's members on the other nodes, coalesced there under
    /// `key` as it is here.
    Volatile { room: String, key: u64, frame: String },
    /// The node is stopping and its members have left: tell the others now instead of
    /// letting them wait for the heartbeat to expire, then answer.
    Leave(oneshot::Sender<()>),
    /// This node's heartbeat had expired: announce every local member again.
    Reannounce,
    /// The API's `disconnect`: tell every node to close the user's connections.
    Disconnect { user: String, code: u16 },
    /// This node's latest dashboard sample, kept in Redis for the API's `stats`.
    Stats(String),
}

/// How a pub/sub session ended.
enum Outcome {
    /// The hub is gone: the server stopped.
    HubGone,
    /// Redis failed; `caught_up` if the session had got through its catch-up, which
    /// resets the retry delay.
    Lost { caught_up: bool },
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

    /// Who this node is.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Every room with members on a live node, with its users counted once (a
    /// blocking read).
    pub fn rooms(&self) -> Result<Vec<(String, usize)>, crate::store::StoreError> {
        self.history.rooms()
    }

    /// The latest dashboard sample of every live node, by node (a blocking read).
    pub fn node_stats(&self) -> Result<Vec<(String, String)>, crate::store::StoreError> {
        self.history.node_stats()
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
    /// Whether a pub/sub session was ever established (the next one is a reconnect).
    connected_before: bool,
    /// Stops the heartbeat task when the node leaves.
    stop_heartbeat: watch::Sender<bool>,
}

/// Starts the backplane's task and returns the hub's handle on it.
pub(super) fn start(parts: RelayParts) -> Arc<Backplane> {
    let (commands, receiver) = mpsc::unbounded_channel();
    let (node, history) = (parts.node.clone(), parts.history.clone());
    let (stop_heartbeat, stopped) = watch::channel(false);
    tokio::spawn(beat(parts.redis.clone(), node.clone(), commands.downgrade(), stopped));
    let relay = Relay {
        parts,
        watched: HashSet::new(),
        pending: HashMap::new(),
        waiting: Vec::new(),
        last_flush: None,
        connected_before: false,
        stop_heartbeat,
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
    pub(super) hub: Weak<dyn Rooms>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tick: Duration,
    pub(super) history: Arc<RedisHistory>,
}

impl Relay {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut retry = MIN_RETRY;
        loop {
            match self.session(&mut commands).await {
                Outcome::HubGone => return,
                Outcome::Lost { caught_up: true } => retry = MIN_RETRY,
                Outcome::Lost { caught_up: false } => {}
            }
            if !self.wait(&mut commands, retry).await {
                return;
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// One pub/sub connection's life: subscribe to every watched room, catch each up,
    /// then serve commands, events, presence flushes and checks until something fails.
    async fn session(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Outcome {
        let lost = |caught_up| Outcome::Lost { caught_up };
        let pubsub = match self.parts.client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::warn!(%error, "the backplane cannot reach Redis; retrying");
                return lost(false);
            }
        };
        if self.connected_before {
            self.parts.metrics.backplane_reconnects.inc();
        }
        self.connected_before = true;
        let (mut sink, mut stream) = pubsub.split();
        if let Err(error) = sink.subscribe(keys::CONTROL).await {
            tracing::warn!(%error, "subscribing to the control channel failed");
            return lost(false);
        }
        let rooms: Vec<String> = self.watched.iter().cloned().collect();
        if !rooms.is_empty() {
            let channels: Vec<String> = rooms.iter().map(|room| keys::channel(room)).collect();
            if let Err(error) = sink.subscribe(channels).await {
                tracing::warn!(%error, "resubscribing failed");
                return lost(false);
            }
        }
        for room in &rooms {
            if let Err(error) = self.catch_up(room).await {
                tracing::warn!(%error, room, "catching up after subscribing failed; reconnecting");
                return lost(false);
            }
        }
        let mut checks = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return Outcome::HubGone };
                    match command {
                        Command::Watch(room) => {
                            if self.watched.insert(room.clone()) {
                                if let Err(error) = sink.subscribe(keys::channel(&room)).await {
                                    tracing::warn!(%error, room, "subscribing failed");
                                    return lost(true);
                                }
                                if let Err(error) = self.catch_up(&room).await {
                                    tracing::warn!(%error, room, "catching up failed; reconnecting");
                                    return lost(true);
                                }
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
                        Command::Reannounce => self.reannounce(),
                        Command::Leave(done) => {
                            self.leave().await;
                            let _ = done.send(());
                        }
                        Command::Ephemeral { room, frame } => {
                            let payload = format!("e\n{}\n{frame}", self.parts.node);
                            self.publish(keys::channel(&room), payload);
                        }
                        Command::Volatile { room, key, frame } => {
                            let payload = format!("v\n{}\n{key}\n{frame}", self.parts.node);
                            self.publish(keys::channel(&room), payload);
                        }
                        Command::Disconnect { user, code } => self.publish(keys::CONTROL.into(), format!("d\n{code}\n{user}")),
                        Command::Stats(sample) => {
                            let mut redis = self.parts.redis.clone();
                            let key = keys::node_stats(&self.parts.node);
                            let ttl = HEARTBEAT_TTL.as_millis() as u64;
                            tokio::spawn(async move {
                                let _: redis::RedisResult<()> =
                                    redis::cmd("SET").arg(key).arg(sample).arg("PX").arg(ttl).query_async(&mut redis).await;
                            });
                        }
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { return lost(true) };
                    self.parts.metrics.backplane_messages.inc();
                    let channel = message.get_channel_name().to_owned();
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    if channel == keys::CONTROL {
                        self.control(&payload);
                        continue;
                    }
                    let Some(room) = keys::room_of_channel(&channel) else { continue };
                    if let Err(error) = self.event(room, &payload).await {
                        // Nothing past the gap is delivered: the next session's catch-up
                        // fills it, then goes on.
                        tracing::warn!(%error, room, "filling a gap failed; reconnecting");
                        return lost(true);
                    }
                }
                () = flush_at(self.flush_due()) => self.flush_presence().await,
                _ = checks.tick() => {
                    let alive = tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>()).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::warn!("the backplane's Redis connection stopped answering");
                        return lost(true);
                    }
                    self.remove_dead_nodes().await;
                }
            }
        }
    }

    /// Publishes `payload` on `channel` without waiting for it.
    fn publish(&self, channel: String, payload: String) {
        let mut redis = self.parts.redis.clone();
        tokio::spawn(async move {
            let _: redis::RedisResult<()> =
                redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut redis).await;
        });
    }

    /// A command on the control channel, from any node (this one included).
    fn control(&self, payload: &str) {
        let Some(hub) = self.parts.hub.upgrade() else { return };
        let mut parts = payload.splitn(3, '\n');
        if let (Some("d"), Some(code), Some(user)) = (parts.next(), parts.next(), parts.next())
            && let Some(close) = code.parse().ok().and_then(crate::close::for_api_disconnect)
        {
            let closed = hub.close_user(user, close);
            tracing::info!(user, closed, "disconnected through another node's API");
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
                    Some(Command::Reannounce) => self.reannounce(),
                    // Typing and receipts are ephemeral: while Redis is away they go nowhere;
                    // so do samples, and a disconnect reaches this node's users only.
                    Some(Command::Ephemeral { .. } | Command::Volatile { .. } | Command::Stats(_)) => {}
                    Some(Command::Disconnect { .. }) => {}
                    // Without Redis there is nobody to tell; the heartbeat expires by itself.
                    Some(Command::Leave(done)) => {
                        let _ = self.stop_heartbeat.send(true);
                        let _ = done.send(());
                    }
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

    /// One event from a room's channel. Fails only if a gap before a message could not
    /// be filled, in which case the message is not delivered either.
    async fn event(&mut self, room: &str, payload: &str) -> Result<(), StoreError> {
        let Some(hub) = self.parts.hub.upgrade() else { return Ok(()) };
        let Some((kind, rest)) = payload.split_once('\n') else { return Ok(()) };
        match kind {
            "m" => {
                let Some((message, origin)) = parse_message(room, rest) else {
                    tracing::warn!(room, "a message on the backplane could not be read");
                    return Ok(());
                };
                if let Some(live) = hub.live_head(room)
                    && message.seq > live + 1
                {
                    self.fill(hub.as_ref(), room, live, message.seq - 1).await?;
                }
                let sender = origin.and_then(|(node, conn)| (node == *self.parts.node).then_some(conn));
                hub.deliver(&message, &wire::message(&message), sender);
            }
            "p" => {
                let Some((node, diff)) = rest.split_once('\n') else { return Ok(()) };
                if node != &*self.parts.node
                    && let Ok(diff) = serde_json::from_str::<Diff>(diff)
                {
                    hub.remote_presence(room, &NodeId::from(node), diff.join, &diff.leave);
                }
            }
            "e" => {
                if let Some((node, frame)) = rest.split_once('\n')
                    && node != &*self.parts.node
                {
                    hub.relay(room, frame);
                }
            }
            "v" => {
                let mut parts = rest.splitn(3, '\n');
                if let (Some(node), Some(key), Some(frame)) = (parts.next(), parts.next(), parts.next())
                    && node != &*self.parts.node
                    && let Ok(key) = key.parse()
                {
                    hub.relay_state(room, key, frame);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Delivers `after < seq <= upto` of `room` from history.
    async fn fill(&mut self, hub: &dyn Rooms, room: &str, after: u64, upto: u64) -> Result<(), StoreError> {
        self.parts.metrics.backplane_gap_fills.inc();
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(keys::log(room))
            .arg(format!("{}-0", after + 1))
            .arg(format!("{upto}-0"))
            .query_async(&mut self.parts.redis)
            .await?;
        let messages = entries(room, reply)?;
        if messages.len() as u64 != upto - after {
            // Trimmed from history before this node could read them: gone for everyone,
            // as for a replay that reaches past what history keeps.
            tracing::warn!(room, after, upto, found = messages.len(), "a gap reached past history");
        }
        for message in messages {
            hub.deliver(&message, &wire::message(&message), None);
        }
        Ok(())
    }

    /// After (re)subscribing to `room`: deliver what was published before the
    /// subscription took hold, and bring presence from other nodes up to date.
    async fn catch_up(&mut self, room: &str) -> Result<(), StoreError> {
        let Some(hub) = self.parts.hub.upgrade() else { return Ok(()) };
        let head: Option<u64> =
            redis::cmd("GET").arg(keys::seq(room)).query_async(&mut self.parts.redis).await?;
        if let (Some(head), Some(live)) = (head, hub.live_head(room))
            && head > live
        {
            self.fill(hub.as_ref(), room, live, head).await?;
        }
        let present = present(&mut self.parts.redis, room).await?;
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
        // What Redis says of us must be what we have: announce every local user again (a
        // ghost cleaner may have removed us while Redis was away), and take back the
        // ones that left meanwhile.
        let changes = self.pending.entry(room.to_owned()).or_default();
        for user in hub.local_users(room) {
            changes.entry(user.id.clone()).or_insert(Some(user));
        }
        for id in mine {
            changes.entry(id).or_insert(None);
        }
        Ok(())
    }

    /// Puts every local user of every watched room back into the next presence diff:
    /// after this node's heartbeat expired, the others may have removed them.
    fn reannounce(&mut self) {
        let Some(hub) = self.parts.hub.upgrade() else { return };
        for room in &self.watched {
            let changes = self.pending.entry(room.clone()).or_default();
            for user in hub.local_users(room) {
                changes.insert(user.id.clone(), Some(user));
            }
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

    /// Tells what is pending, then removes this node from Redis: its heartbeat, then its
    /// presence fields, so that the other nodes drop its members at once.
    async fn leave(&mut self) {
        let _ = self.stop_heartbeat.send(true);
        self.flush_presence().await;
        let gone: redis::RedisResult<()> =
            redis::cmd("DEL").arg(keys::node(&self.parts.node)).query_async(&mut self.parts.redis).await;
        if let Err(error) = gone {
            tracing::warn!(%error, "removing this node's heartbeat failed");
        }
        if let Err(error) = clean_up_after(&mut self.parts.redis, &self.parts.node).await {
            tracing::warn!(%error, "removing this node's presence from Redis failed");
        }
    }

    /// Removes the members of nodes whose heartbeat is gone, here and in Redis.
    async fn remove_dead_nodes(&mut self) {
        let Some(hub) = self.parts.hub.upgrade() else { return };
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

/// Refreshes this node's heartbeat every [`HEARTBEAT`], in a task of its own so that
/// nothing the backplane waits for can delay it. Finding its own key gone (it expired
/// while Redis or this node stalled) means the other nodes may have removed this
/// node's members: it asks the backplane to announce them again.
async fn beat(
    mut redis: ConnectionManager,
    node: NodeId,
    commands: mpsc::WeakUnboundedSender<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let ttl = HEARTBEAT_TTL.as_millis() as u64;
    let mut ticks = tokio::time::interval(HEARTBEAT);
    let mut first = true;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(commands) = commands.upgrade() else { return };
        let previous: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(keys::node(&node))
            .arg(Millis::now().0)
            .arg("PX")
            .arg(ttl)
            .arg("GET")
            .query_async(&mut redis)
            .await;
        match previous {
            Ok(None) if !first => {
                tracing::warn!("this node's heartbeat had expired; announcing its members again");
                let _ = commands.send(Command::Reannounce);
            }
            Ok(_) => first = false,
            Err(error) => tracing::debug!(%error, "refreshing the heartbeat failed"),
        }
    }
}

/// Who Redis says is present in `room`, through which node, leaving out nodes whose
/// heartbeat is gone.
async fn present(redis: &mut ConnectionManager, room: &str) -> redis::RedisResult<Vec<(NodeId, User)>> {
    let fields: Vec<(String, String)> =
        redis::cmd("EVAL").arg(PRESENT).arg(1).arg(keys::present(room)).query_async(redis).await?;
    Ok(present_users(fields))
}

/// Removes a node's presence fields from every room it announced itself in, unless its
/// heartbeat is back: one script, so that a node that returns between the check and the
/// removal keeps what it announced again. It names the room hashes it touches from the
/// node's set, which one Redis allows (a Redis Cluster would need one call per room).
const CLEAN_UP: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for _, room in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local present = 'tether:{' .. room .. '}:present'
  for _, field in ipairs(redis.call('HKEYS', present)) do
    if string.sub(field, 1, #ARGV[1]) == ARGV[1] then redis.call('HDEL', present, field) end
  end
end
redis.call('DEL', KEYS[2])
return 1
"#;

/// Runs [`CLEAN_UP`] for `node`.
async fn clean_up_after(redis: &mut ConnectionManager, node: &str) -> redis::RedisResult<()> {
    redis::cmd("EVAL")
        .arg(CLEAN_UP)
        .arg(2)
        .arg(keys::node(node))
        .arg(keys::node_rooms(node))
        .arg(format!("{node}/"))
        .query_async(redis)
        .await
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
    let id: String = serde_json::from_str(parts.next()?).ok()?;
    let user: User = serde_json::from_str(parts.next()?).ok()?;
    let body = RawValue::from_string(parts.next()?.to_owned()).ok()?;
    let origin =
        origin.split_once(':').and_then(|(node, conn)| Some((node.to_owned(), conn.parse::<ConnId>().ok()?)));
    Some((StoredMessage { room: room.to_owned(), seq, id, user, body: Arc::from(body), ts }, origin))
}
