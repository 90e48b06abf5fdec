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
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use tether_shared::{ErrorCode, ServerFrame, User};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::outbound::{ConnId, Outbound};
use crate::presence::{Due, Presence, PresenceConfig, Snapshot};
use crate::store::{Store, StoreError, StoredMessage};

/// Where committed messages go to reach subscribers. The in-process [`RoomHub`] is the
/// one implementation today; a backplane that relays to other server nodes (Redis
/// pub/sub, say) implements the same call and forwards to each node's hub.
pub trait FanOut: Send + Sync + 'static {
    /// Delivers a committed message, already encoded as `text`, to its room's members.
    /// `sender` is the publishing connection, if it is local: its copy is the echo of
    /// its own message. Called in seq order per room. Returns how many local
    /// connections it reached.
    fn deliver(&self, message: &StoredMessage, text: &Utf8Bytes, sender: Option<ConnId>) -> usize;
}

/// A join's outcome: where the room stands and who is in it.
pub struct Joined {
    /// The room's latest delivered seq.
    pub head: u64,
    /// Who is there, as far as this joiner is told.
    pub presence: Snapshot,
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
    presence: Presence,
}

/// A room whose presence announcement is due at an instant.
type Wake = (Instant, String);

/// Every room with at least one member.
pub struct RoomHub {
    rooms: RwLock<HashMap<String, Arc<Mutex<Room>>>>,
    store: Arc<dyn Store>,
    max_members: usize,
    presence: PresenceConfig,
    wakes: mpsc::UnboundedSender<Wake>,
}

impl RoomHub {
    /// An empty hub over `store`, with the task that wakes rooms for their presence
    /// ticks. The task ends when the hub is dropped.
    pub fn start(store: Arc<dyn Store>, max_members: usize, presence: PresenceConfig) -> Arc<RoomHub> {
        let (wakes, receiver) = mpsc::unbounded_channel();
        let hub =
            Arc::new(RoomHub { rooms: RwLock::new(HashMap::new()), store, max_members, presence, wakes });
        tokio::spawn(presence_ticks(Arc::downgrade(&hub), receiver));
        hub
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
        let room = match self.existing(name) {
            Some(room) => room,
            None => {
                let mut rooms = self.rooms.write().expect("rooms lock");
                let room = rooms.entry(name.to_owned()).or_insert_with(|| {
                    let room =
                        Room { head: None, members: HashMap::new(), presence: Presence::new(self.presence) };
                    Arc::new(Mutex::new(room))
                });
                room.clone()
            }
        };
        let mut room = room.lock().expect("room lock");
        let head = match room.head {
            Some(head) => head,
            None => {
                // Read under this room's lock only, never the map's: other rooms go on, and
                // this room's deliveries wait for the head. Everything the store holds
                // counts as delivered: a message committed but not yet handed to `deliver`
                // is history to this joiner (its replay), not live.
                match self.store.head(name) {
                    Ok(head) => *room.head.insert(head),
                    Err(error) => {
                        drop(room);
                        self.remove_if_empty(name);
                        return Err(JoinError::Store(error));
                    }
                }
            }
        };
        if !room.members.contains_key(&out.conn()) {
            if room.members.len() >= self.max_members {
                drop(room);
                self.remove_if_empty(name);
                return Err(JoinError::Full);
            }
            room.members.insert(out.conn(), Member { user: user.clone(), out: out.clone() });
            if room.presence.add(user) {
                // The joiner learns of itself from its snapshot.
                self.presence_changed(name, &mut room, Some(out.conn()));
            }
        }
        Ok(Joined { head, presence: room.presence.snapshot() })
    }

    /// Removes a connection from a room; its user's last connection makes them gone.
    pub fn leave(&self, name: &str, conn: ConnId) {
        let Some(room) = self.existing(name) else { return };
        let empty = {
            let mut room = room.lock().expect("room lock");
            if let Some(member) = room.members.remove(&conn)
                && room.presence.remove(&member.user.id)
            {
                self.presence_changed(name, &mut room, None);
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
        if rooms.get(name).is_some_and(|room| room.lock().expect("room lock").members.is_empty()) {
            rooms.remove(name);
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
            let room = room.lock().expect("room lock");
            send_all(&room, Utf8Bytes::from(frame.encode()), except);
        }
    }
}

impl FanOut for RoomHub {
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
