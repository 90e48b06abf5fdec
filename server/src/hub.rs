//! Rooms: who is in each, and delivering to them.
//!
//! The map of rooms sits behind a read-write lock that is only written when a room is
//! created or emptied; each room has its own mutex. Delivering to one room therefore
//! never blocks another, and the hot path (deliver, broadcast) takes a read lock.
//!
//! A member costs the room one entry: its connection's [`Outbound`] handle and a shared
//! reference to its user. Nothing a member holds grows with the room: presence is told
//! as coalesced diffs or counts ([`crate::presence`]), and a join's snapshot is bounded
//! by the presence limit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Instant;

use tether_shared::{ErrorCode, PresenceMode, ServerFrame, User};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::connected::Connected;
use crate::engine::redis::backplane::{Backplane, Command};
use crate::engine::{NodeId, Rooms};
use crate::outbound::{ConnId, Outbound};
use crate::presence::{Due, Presence, PresenceConfig, Snapshot};
use crate::store::{History, StoreError, StoredMessage};

/// A join's outcome: where the room stands and who is in it.
pub struct Joined {
    /// The room's latest delivered seq.
    pub head: u64,
    /// Who is there, as far as this joiner is told.
    pub presence: Snapshot,
    /// Cluster mode: resolves once the other nodes can see this user here. Waiting for
    /// it before confirming the join means that whoever joins next, on any node, finds
    /// this user in their snapshot.
    pub announced: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The room is full.
    #[error("the room is full")]
    Full,
    /// The store could not tell the room's head.
    #[error("reading the room's head")]
    Store(#[source] StoreError),
}

impl JoinError {
    /// The error code a client receives.
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::Full => ErrorCode::RoomFull,
            JoinError::Store(_) => ErrorCode::Internal,
        }
    }
}

/// A page of members, answering a `members` request.
pub struct Page {
    /// Up to the requested number of users, in id order.
    pub members: Vec<User>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
    /// Users present.
    pub count: usize,
}

struct Member {
    user: Arc<User>,
    out: Outbound,
}

struct Room {
    /// Seqs up to here have been delivered live (or were history at join time); `None`
    /// until the first join has read it from the store.
    head: Option<u64>,
    members: HashMap<ConnId, Member>,
    /// Counts local connections and one per other node where a user is present.
    presence: Presence,
    /// Cluster mode: local connections per user, to tell the other nodes when a user
    /// arrives on or leaves this node.
    local: HashMap<String, usize>,
    /// Cluster mode: who is present through each other node.
    remote: HashMap<NodeId, HashMap<String, Arc<User>>>,
    /// Cluster mode: acks held until their message has been delivered here, by seq.
    acks: BTreeMap<u64, Vec<(Outbound, Utf8Bytes)>>,
    /// Taken out of the map (its last member left): a join that locked it too late
    /// must find the room that replaced it.
    removed: bool,
}

/// A room whose presence announcement is due at an instant.
type Wake = (Instant, String);

/// Every room with at least one member.
pub struct RoomHub {
    rooms: RwLock<HashMap<String, Arc<Mutex<Room>>>>,
    store: Arc<dyn History>,
    /// Cluster mode: the other nodes, set once at start-up.
    backplane: OnceLock<Arc<Backplane>>,
    max_members: usize,
    presence: PresenceConfig,
    wakes: mpsc::UnboundedSender<Wake>,
    /// Every welcomed connection of this node by user, in or out of rooms.
    connected: Connected,
}

impl RoomHub {
    /// An empty hub over `store`, with the task that wakes rooms for their presence
    /// ticks. The task ends when the hub is dropped.
    pub fn start(store: Arc<dyn History>, max_members: usize, presence: PresenceConfig) -> Arc<RoomHub> {
        let (wakes, receiver) = mpsc::unbounded_channel();
        let rooms = RwLock::new(HashMap::new());
        let backplane = OnceLock::new();
        let connected = Connected::default();
        let hub = Arc::new(RoomHub { rooms, store, backplane, max_members, presence, wakes, connected });
        tokio::spawn(presence_ticks(Arc::downgrade(&hub), receiver));
        hub
    }

    /// Makes this hub one node of a cluster.
    pub fn set_backplane(&self, backplane: Arc<Backplane>) {
        let _ = self.backplane.set(backplane);
    }

    fn tell(&self, command: Command) {
        if let Some(backplane) = self.backplane.get() {
            backplane.send(command);
        }
    }

    /// Every welcomed connection of this node, by user.
    pub fn connected(&self) -> &Connected {
        &self.connected
    }

    /// Rooms with members here, each with its member count (users present, including
    /// those present through other nodes).
    pub fn room_summaries(&self) -> Vec<(String, usize)> {
        let rooms: Vec<(String, Arc<Mutex<Room>>)> = self
            .rooms
            .read()
            .expect("rooms lock")
            .iter()
            .map(|(name, room)| (name.clone(), room.clone()))
            .collect();
        rooms
            .into_iter()
            .map(|(name, room)| (name, room.lock().expect("room lock").presence.count()))
            .collect()
    }

    /// Rooms with members.
    pub fn room_count(&self) -> usize {
        self.rooms.read().expect("rooms lock").len()
    }

    fn existing(&self, name: &str) -> Option<Arc<Mutex<Room>>> {
        self.rooms.read().expect("rooms lock").get(name).cloned()
    }

    /// Adds `out` (as `user`) to `name`. The first connection of a user makes them
    /// present. Joining twice is harmless.
    pub fn join(&self, name: &str, user: &Arc<User>, out: &Outbound) -> Result<Joined, JoinError> {
        loop {
            let room = self.existing_or_new(name);
            let room = room.lock().expect("room lock");
            // The last member left between finding the room and locking it, and the room
            // went from the map: join the one that replaces it instead.
            if !room.removed {
                return self.join_locked(name, room, user, out);
            }
        }
    }

    /// The room named `name`, created (and watched, in cluster mode) if it is new.
    fn existing_or_new(&self, name: &str) -> Arc<Mutex<Room>> {
        match self.existing(name) {
            Some(room) => room,
            None => {
                let mut rooms = self.rooms.write().expect("rooms lock");
                let room = rooms.entry(name.to_owned()).or_insert_with(|| {
                    // Told under the map's lock, so the other nodes' events for this room
                    // start and stop in the order the room comes and goes here.
                    self.tell(Command::Watch(name.to_owned()));
                    let room = Room {
                        head: None,
                        members: HashMap::new(),
                        presence: Presence::new(self.presence),
                        local: HashMap::new(),
                        remote: HashMap::new(),
                        acks: BTreeMap::new(),
                        removed: false,
                    };
                    Arc::new(Mutex::new(room))
                });
                room.clone()
            }
        }
    }

    fn join_locked(
        &self,
        name: &str,
        mut room: std::sync::MutexGuard<'_, Room>,
        user: &Arc<User>,
        out: &Outbound,
    ) -> Result<Joined, JoinError> {
        let head = match room.head {
            Some(head) => head,
            None => {
                // Read under this room's lock only, never the map's: other rooms go on, and
                // this room's deliveries wait for the head. Everything the store holds
                // counts as delivered: a message committed but not yet handed to `deliver`
                // is history to this joiner (its replay), not live.
                match self.store.head(name) {
                    Ok(head) => {
                        self.load_remote_presence(name, &mut room);
                        *room.head.insert(head)
                    }
                    Err(error) => {
                        drop(room);
                        self.remove_if_empty(name);
                        return Err(JoinError::Store(error));
                    }
                }
            }
        };
        let mut announced = None;
        if !room.members.contains_key(&out.conn()) {
            if room.members.len() >= self.max_members {
                drop(room);
                self.remove_if_empty(name);
                return Err(JoinError::Full);
            }
            room.members.insert(out.conn(), Member { user: user.clone(), out: out.clone() });
            if let Some(backplane) = self.backplane.get() {
                let here = room.local.entry(user.id.clone()).or_default();
                *here += 1;
                if *here == 1 {
                    let (done, told) = tokio::sync::oneshot::channel();
                    announced = Some(told);
                    let (room, user) = (name.to_owned(), user.clone());
                    backplane.send(Command::Presence { room, user, present: true, done: Some(done) });
                }
            }
            if room.presence.add(user) {
                // The joiner learns of itself from its snapshot.
                self.presence_changed(name, &mut room, Some(out.conn()));
            }
        }
        let presence = room.presence.snapshot();
        // A big room's snapshot lists nobody, so its joins have nothing to wait for.
        let announced = announced.filter(|_| presence.mode == PresenceMode::Full);
        Ok(Joined { head, presence, announced })
    }

    /// Removes a connection from a room; its user's last connection makes them gone.
    pub fn leave(&self, name: &str, conn: ConnId) {
        let Some(room) = self.existing(name) else { return };
        let empty = {
            let mut room = room.lock().expect("room lock");
            // A held ack goes now: the connection no longer waits for the message.
            for held in room.acks.values_mut() {
                held.retain(|(out, ack)| {
                    let theirs = out.conn() == conn;
                    if theirs {
                        out.push_reply(ack.clone());
                    }
                    !theirs
                });
            }
            room.acks.retain(|_, held| !held.is_empty());
            if let Some(member) = room.members.remove(&conn) {
                if let Some(here) = room.local.get_mut(&member.user.id) {
                    *here -= 1;
                    if *here == 0 {
                        room.local.remove(&member.user.id);
                        let user = member.user.clone();
                        let room = name.to_owned();
                        self.tell(Command::Presence { room, user, present: false, done: None });
                    }
                }
                if room.presence.remove(&member.user.id) {
                    self.presence_changed(name, &mut room, None);
                }
            }
            room.members.is_empty()
        };
        if empty {
            self.remove_if_empty(name);
        }
    }

    /// A page of `name`'s members after the user id `after`; `None` if the room is gone.
    pub fn members(&self, name: &str, after: Option<&str>, limit: usize) -> Option<Page> {
        let room = self.existing(name)?;
        let room = room.lock().expect("room lock");
        let (members, next) = room.presence.page(after, limit);
        Some(Page { members, next, count: room.presence.count() })
    }

    fn remove_if_empty(&self, name: &str) {
        let mut rooms = self.rooms.write().expect("rooms lock");
        let Some(room) = rooms.get(name) else { return };
        let mut room = room.lock().expect("room lock");
        if room.members.is_empty() {
            room.removed = true;
            drop(room);
            rooms.remove(name);
            self.tell(Command::Unwatch(name.to_owned()));
        }
    }

    /// Tells the room now (not `except`), or arranges the wake-up for its next tick.
    fn presence_changed(&self, name: &str, room: &mut Room, except: Option<ConnId>) {
        let now = Instant::now();
        match room.presence.due(now) {
            Due::Now => {
                if let Some(frame) = room.presence.announce(name, now) {
                    send_all(room, Utf8Bytes::from(frame.encode()), except);
                }
            }
            Due::At(when) => {
                // Fails only once the hub is being dropped, when nobody is left to tell.
                let _ = self.wakes.send((when, name.to_owned()));
            }
            Due::Nothing => {}
        }
    }

    /// A room's presence tick has come.
    fn presence_tick(&self, name: &str) {
        if let Some(room) = self.existing(name) {
            let mut room = room.lock().expect("room lock");
            if let Some(frame) = room.presence.tick(name, Instant::now()) {
                send_all(&room, Utf8Bytes::from(frame.encode()), None);
            }
        }
    }

    /// Sends an ephemeral frame (typing, receipt) to a room, optionally not to its sender.
    pub fn broadcast(&self, name: &str, frame: &ServerFrame, except: Option<ConnId>) {
        if let Some(room) = self.existing(name) {
            let text = frame.encode();
            if let Some(backplane) = self.backplane.get() {
                backplane.send(Command::Ephemeral { room: name.to_owned(), frame: text.clone() });
            }
            let room = room.lock().expect("room lock");
            send_all(&room, Utf8Bytes::from(text), except);
        }
    }
}

impl RoomHub {
    /// Sends volatile state to a room (not to its sender), coalesced in each member's
    /// queue under `key` (see [`Outbound::push_volatile`]).
    pub fn broadcast_state(&self, name: &str, frame: &ServerFrame, key: u64, except: Option<ConnId>) {
        if let Some(room) = self.existing(name) {
            let text = frame.encode();
            if let Some(backplane) = self.backplane.get() {
                backplane.send(Command::Volatile { room: name.to_owned(), key, frame: text.clone() });
            }
            push_state(&room.lock().expect("room lock"), key, Utf8Bytes::from(text), except);
        }
    }

    /// At a room's first local join: who is present through other nodes, so that the
    /// joiner's snapshot lists every node's members. A failure leaves it to the
    /// backplane's catch-up after subscribing.
    fn load_remote_presence(&self, name: &str, room: &mut Room) {
        let Some(backplane) = self.backplane.get() else { return };
        match backplane.present_elsewhere(name) {
            Ok(elsewhere) => {
                for (node, user) in elsewhere {
                    add_remote(room, &node, Arc::new(user));
                }
            }
            Err(error) => tracing::warn!(%error, room = name, "reading presence from Redis failed"),
        }
    }
}

/// Counts `user` as present through `node`; true if that made them present.
fn add_remote(room: &mut Room, node: &NodeId, user: Arc<User>) -> bool {
    let users = room.remote.entry(node.clone()).or_default();
    if users.contains_key(&user.id) {
        return false;
    }
    users.insert(user.id.clone(), user.clone());
    room.presence.add(&user)
}

/// No longer counts user `id` as present through `node`; true if that made them gone.
fn remove_remote(room: &mut Room, node: &NodeId, id: &str) -> bool {
    let Some(users) = room.remote.get_mut(node) else { return false };
    if users.remove(id).is_none() {
        return false;
    }
    if users.is_empty() {
        room.remote.remove(node);
    }
    room.presence.remove(id)
}

impl Rooms for RoomHub {
    /// The seq delivered last in `name`, if the room is here and its head is known.
    fn live_head(&self, name: &str) -> Option<u64> {
        self.existing(name)?.lock().expect("room lock").head
    }

    /// Cluster mode: sends a publisher its `ack` of `seq` once the message has been
    /// delivered here, so that it gets its own message first and then the ack, as on one
    /// node, although the two travel separately (the ack from the publish script's
    /// reply, the message through the room's channel).
    fn ack_after(&self, name: &str, seq: u64, out: &Outbound, ack: Utf8Bytes) {
        if let Some(room) = self.existing(name) {
            let mut room = room.lock().expect("room lock");
            if room.head.is_some_and(|head| head < seq) && room.members.contains_key(&out.conn()) {
                room.acks.entry(seq).or_default().push((out.clone(), ack));
                return;
            }
        }
        out.push_reply(ack);
    }

    /// Volatile state another node relayed, for every member here.
    fn relay_state(&self, name: &str, key: u64, frame: &str) {
        if let Some(room) = self.existing(name) {
            push_state(&room.lock().expect("room lock"), key, Utf8Bytes::from(frame.to_owned()), None);
        }
    }

    /// An ephemeral frame another node relayed, for every member here.
    fn relay(&self, name: &str, frame: &str) {
        if let Some(room) = self.existing(name) {
            send_all(&room.lock().expect("room lock"), Utf8Bytes::from(frame.to_owned()), None);
        }
    }

    /// Users present through this node in `name`.
    fn local_users(&self, name: &str) -> Vec<Arc<User>> {
        let Some(room) = self.existing(name) else { return Vec::new() };
        let room = room.lock().expect("room lock");
        let mut seen = HashSet::new();
        room.members
            .values()
            .filter(|member| seen.insert(&member.user.id))
            .map(|member| member.user.clone())
            .collect()
    }

    /// Another node's presence diff for `name`.
    fn remote_presence(&self, name: &str, node: &NodeId, joined: Vec<User>, left: &[String]) {
        let Some(room) = self.existing(name) else { return };
        let mut room = room.lock().expect("room lock");
        let mut changed = false;
        for user in joined {
            changed |= add_remote(&mut room, node, Arc::new(user));
        }
        for id in left {
            changed |= remove_remote(&mut room, node, id);
        }
        if changed {
            self.presence_changed(name, &mut room, None);
        }
    }

    /// Everyone present through other nodes in `name`, as Redis tells it after a
    /// (re)subscription: what this hub believed of them is replaced.
    fn remote_snapshot(&self, name: &str, mut elsewhere: HashMap<NodeId, Vec<User>>) {
        let Some(room) = self.existing(name) else { return };
        let mut room = room.lock().expect("room lock");
        let mut changed = false;
        let known: Vec<NodeId> = room.remote.keys().cloned().collect();
        for node in known {
            let now: HashSet<String> = elsewhere
                .get(&node)
                .map(|users| users.iter().map(|user| user.id.clone()).collect())
                .unwrap_or_default();
            let before: Vec<String> =
                room.remote[&node].keys().filter(|id| !now.contains(*id)).cloned().collect();
            for id in before {
                changed |= remove_remote(&mut room, &node, &id);
            }
        }
        for (node, users) in elsewhere.drain() {
            for user in users {
                changed |= add_remote(&mut room, &node, Arc::new(user));
            }
        }
        if changed {
            self.presence_changed(name, &mut room, None);
        }
    }

    /// The other nodes this hub has members from.
    fn remote_nodes(&self) -> HashSet<NodeId> {
        let rooms: Vec<_> = self.rooms.read().expect("rooms lock").values().cloned().collect();
        rooms
            .iter()
            .flat_map(|room| room.lock().expect("room lock").remote.keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// A node died: everyone present through it leaves every room here.
    fn node_gone(&self, node: &NodeId) {
        let rooms: Vec<_> =
            self.rooms.read().expect("rooms lock").iter().map(|(n, r)| (n.clone(), r.clone())).collect();
        for (name, room) in rooms {
            let mut room = room.lock().expect("room lock");
            let Some(users) = room.remote.get(node) else { continue };
            let ids: Vec<String> = users.keys().cloned().collect();
            let mut changed = false;
            for id in ids {
                changed |= remove_remote(&mut room, node, &id);
            }
            room.remote.remove(node);
            if changed {
                self.presence_changed(&name, &mut room, None);
            }
        }
    }

    /// Closes every connection of `user` on this node; how many there were.
    fn close_user(&self, user: &str, close: crate::close::Close) -> usize {
        self.connected.close_user(user, close)
    }

    fn deliver(&self, message: &StoredMessage, text: &Utf8Bytes, sender: Option<ConnId>) -> usize {
        let Some(room) = self.existing(&message.room) else { return 0 };
        let mut room = room.lock().expect("room lock");
        // Not yet known (a join is reading it) or already past: history, not live.
        if room.head.is_none_or(|head| message.seq <= head) {
            return 0;
        }
        room.head = Some(message.seq);
        for (conn, member) in &room.members {
            if Some(*conn) == sender {
                member.out.push_own(text.clone());
            } else {
                member.out.push(text.clone());
            }
        }
        while let Some(held) = room.acks.first_entry()
            && *held.key() <= message.seq
        {
            for (out, ack) in held.remove() {
                out.push_reply(ack);
            }
        }
        room.members.len()
    }
}

fn send_all(room: &Room, text: Utf8Bytes, except: Option<ConnId>) -> usize {
    let mut sent = 0;
    for (conn, member) in &room.members {
        if Some(*conn) != except {
            member.out.push(text.clone());
            sent += 1;
        }
    }
    sent
}

fn push_state(room: &Room, key: u64, text: Utf8Bytes, except: Option<ConnId>) {
    for (conn, member) in &room.members {
        if Some(*conn) != except {
            member.out.push_volatile(key, text.clone());
        }
    }
}

/// Wakes each room when its presence tick is due. Every wake is at most one tick
/// ahead, so the heap holds at most one entry per room with pending changes.
async fn presence_ticks(hub: Weak<RoomHub>, mut wakes: mpsc::UnboundedReceiver<Wake>) {
    let mut due: BinaryHeap<Reverse<Wake>> = BinaryHeap::new();
    loop {
        let next = due.peek().map(|Reverse((at, _))| *at);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            wake = wakes.recv() => match wake {
                Some(wake) => due.push(Reverse(wake)),
                None => return,
            },
            () = sleep => {
                let Some(hub) = hub.upgrade() else { return };
                let now = Instant::now();
                while due.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                    let Reverse((_, room)) = due.pop().expect("peeked");
                    hub.presence_tick(&room);
                }
            }
        }
    }
}
