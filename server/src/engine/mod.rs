//! Where messages are numbered, stored and shared between nodes: the engine. One node
//! runs the local engine (`local/`: a sequencer thread over SQLite or memory); a cluster
//! runs the Redis engine (`redis/`: numbering in Redis functions, history in streams,
//! fan-out between nodes over pub/sub). `docs/design/engine-seam.md` is where this
//! module is heading: one trait both engines implement, and a hub that knows only it.

pub(crate) mod local;
pub(crate) mod redis;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::value::RawValue;
use tether_shared::{RejectCode, User};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::close::Close;
use crate::metrics::Metrics;
use crate::outbound::{ConnId, Outbound};
use crate::samples::Sample;
use crate::store::{StoreError, StoredMessage};
use crate::wire;

/// A node's id in a cluster: random per start, so a restarted node is a new node and
/// the old one's presence expires with its heartbeat.
pub type NodeId = Arc<str>;

/// One publish on its way to being stored.
pub struct Publish {
    /// The room it goes to (the connection checked it is a member).
    pub room: String,
    /// Client message id.
    pub id: String,
    /// Who published it, as the handshake established.
    pub user: User,
    /// Body as JSON text.
    pub body: Arc<RawValue>,
    /// Where the ack or rejection goes; the publish was counted in flight there
    /// ([`Outbound::begin_publish`]), and exactly one answer ends it.
    pub reply: Outbound,
}

/// What an engine's queue carries.
pub(crate) enum Request {
    /// A publish to number, store, deliver and ack.
    Publish(Publish),
    /// Answered once everything queued before it has been committed and acked.
    Barrier(oneshot::Sender<()>),
}

/// Answers publish `id` with a rejection, counted in the metrics like every other.
pub(crate) fn reject(metrics: &Metrics, reply: &Outbound, id: &str, code: RejectCode, message: &str) {
    metrics.rejection(code);
    reply.push_reply(wire::reject(id, code, message));
}

/// Where a node's publishes go to be numbered, stored, delivered and acked. The local
/// engine and the Redis engine are its two implementations; connections, the API and
/// the mount hold an `Arc<dyn Engine>` and never name either.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Queues a publish. Never blocks and never fails here: exactly one answer (an
    /// `ack`, or a `reject`) later goes to `publish.reply`, and ends the publish in
    /// flight there. Per room, seqs follow the order the engine's one owner takes
    /// publishes (the local thread; the Redis function across nodes), and the ack goes
    /// only once the message is stored as the engine promises and delivered on the
    /// publisher's own node. An engine that has stopped answers `unavailable`.
    fn publish(&self, publish: Publish);
    /// Resolves once every publish queued before the call is answered; at once if the
    /// engine has stopped.
    fn barrier(&self) -> BoxFuture<'static, ()>;

    // What the server API and the dashboard ask across nodes. The defaults are a
    // single node's: there is nobody else.

    /// This node's id, when it is one of several.
    fn node(&self) -> Option<&NodeId> {
        None
    }
    /// Who is present in `room` through the other live nodes (a blocking read).
    fn present_elsewhere(&self, _room: &str) -> Result<Vec<(NodeId, User)>, StoreError> {
        Ok(Vec::new())
    }
    /// Rooms with members on every live node, each user counted once, given this node's
    /// own (`here`) (a blocking read).
    fn rooms(&self, here: Vec<(String, usize)>) -> Result<Vec<(String, usize)>, StoreError> {
        Ok(here)
    }
    /// Asks every other node to close `user`'s connections with `code`; whether there are
    /// other nodes to ask (best effort: while the backend is away, only this node acts).
    fn disconnect_elsewhere(&self, _user: &str, _code: u16) -> bool {
        false
    }
    /// Shares this node's latest dashboard sample (and its connected users) with the
    /// other nodes, once a second.
    fn share_sample(&self, _sample: &Sample, _users: usize) {}
    /// Every live node's latest shared sample (JSON), by node (a blocking read).
    fn node_samples(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(Vec::new())
    }
    /// Leaves the other nodes cleanly once every connection here has closed: they are
    /// told this node's members left.
    fn leave(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The answer to a publish whose engine has stopped (the server is shutting down).
pub(crate) fn refuse_closed(metrics: &Metrics, publish: &Publish) {
    reject(metrics, &publish.reply, &publish.id, RejectCode::Unavailable, "the server is shutting down");
}

/// What an engine calls back: the rooms of this node ([`RoomHub`](crate::hub::RoomHub)).
/// Both engines deliver through it, and the Redis engine tells it what other nodes did,
/// so neither names the hub.
pub(crate) trait Rooms: Send + Sync + 'static {
    /// Delivers a committed message, already encoded as `text`, to its room's members.
    /// `sender` is the publishing connection, if it is local: its copy is the echo of
    /// its own message. Called in seq order per room. Returns how many local
    /// connections it reached.
    fn deliver(&self, message: &StoredMessage, text: &Utf8Bytes, sender: Option<ConnId>) -> usize;
    /// The seq delivered last in `name`, if the room is here and its head is known.
    fn live_head(&self, name: &str) -> Option<u64>;
    /// Sends a publisher its `ack` of `seq` once the message has been delivered here, so
    /// that it gets its own message first and then the ack, as on one node, although the
    /// two travel separately in a cluster.
    fn ack_after(&self, name: &str, seq: u64, out: &Outbound, ack: Utf8Bytes);
    /// Volatile state another node relayed, for every member here.
    fn relay_state(&self, name: &str, key: u64, frame: &str);
    /// An ephemeral frame another node relayed, for every member here.
    fn relay(&self, name: &str, frame: &str);
    /// Users present through this node in `name`.
    fn local_users(&self, name: &str) -> Vec<Arc<User>>;
    /// Another node's presence diff for `name`.
    fn remote_presence(&self, name: &str, node: &NodeId, joined: Vec<User>, left: &[String]);
    /// Everyone present through other nodes in `name`, as the engine tells it after a
    /// (re)subscription: what this node believed of them is replaced.
    fn remote_snapshot(&self, name: &str, elsewhere: HashMap<NodeId, Vec<User>>);
    /// The other nodes this node has members from.
    fn remote_nodes(&self) -> HashSet<NodeId>;
    /// A node died: everyone present through it leaves every room here.
    fn node_gone(&self, node: &NodeId);
    /// Closes every connection of `user` on this node; how many there were.
    fn close_user(&self, user: &str, close: Close) -> usize;
}
