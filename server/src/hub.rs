//! Rooms: who is in each, and delivering to them.
//!
//! The map of rooms sits behind a read-write lock that is only written when a room is
//! created or emptied; each room has its own mutex. Delivering to one room therefore
//! never blocks another, and the hot path (deliver, broadcast) takes a read lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tether_shared::{ErrorCode, ServerFrame, User};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::outbound::{ConnId, Outbound};
use crate::store::{Store, StoreError, StoredMessage};

/// Where committed messages go to reach subscribers. The in-process [`RoomHub`] is the
/// one implementation today; a backplane that relays to other server nodes (Redis
/// pub/sub, say) implements the same call and forwards to each node's hub.
pub trait FanOut: Send + Sync + 'static {
    /// Delivers a committed message, already encoded as `text`, to its room's members.
    /// Called in seq order per room. Returns how many local connections it reached.
    fn deliver(&self, message: &StoredMessage, text: &Utf8Bytes) -> usize;
}

/// A join's outcome: where the room stands and who is in it.
pub struct Joined {
    /// The room's latest delivered seq.
    pub head: u64,
    /// Present members, one entry per user.
    pub members: Vec<User>,
}

/// Why a join failed.
pub enum JoinError {
    /// The room is full.
    Full,
    /// The store could not tell the room's head.
    Store(StoreError),
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

struct Room {
    /// Seqs up to here have been delivered live (or were history at join time).
    head: u64,
    members: HashMap<ConnId, (User, Outbound)>,
    /// Connections per user: several tabs of one user are one member.
    users: HashMap<String, (User, usize)>,
}

/// Every room with at least one member.
pub struct RoomHub {
    rooms: RwLock<HashMap<String, Arc<Mutex<Room>>>>,
    store: Arc<dyn Store>,
    max_members: usize,
}

impl RoomHub {
    /// An empty hub over `store`.
    pub fn new(store: Arc<dyn Store>, max_members: usize) -> Self {
        RoomHub { rooms: RwLock::new(HashMap::new()), store, max_members }
    }

    /// Rooms with members.
    pub fn room_count(&self) -> usize {
        self.rooms.read().expect("rooms lock").len()
    }

    fn existing(&self, name: &str) -> Option<Arc<Mutex<Room>>> {
        self.rooms.read().expect("rooms lock").get(name).cloned()
    }

    /// Adds `out` (as `user`) to `name`. The first connection of a user announces them
    /// to the others. Joining twice is harmless.
    pub fn join(&self, name: &str, user: &User, out: &Outbound) -> Result<Joined, JoinError> {
        let room = match self.existing(name) {
            Some(room) => room,
            None => {
                let mut rooms = self.rooms.write().expect("rooms lock");
                match rooms.get(name) {
                    Some(room) => room.clone(),
                    None => {
                        // Everything the store holds counts as delivered: a message committed
                        // but not yet handed to `deliver` is history to this joiner, not live.
                        let head = self.store.head(name).map_err(JoinError::Store)?;
                        let room = Room { head, members: HashMap::new(), users: HashMap::new() };
                        let room = Arc::new(Mutex::new(room));
                        rooms.insert(name.to_owned(), room.clone());
                        room
                    }
                }
            }
        };
        let mut room = room.lock().expect("room lock");
        if !room.members.contains_key(&out.conn) {
            if room.members.len() >= self.max_members {
                drop(room);
                self.remove_if_empty(name);
                return Err(JoinError::Full);
            }
            room.members.insert(out.conn, (user.clone(), out.clone()));
            let count = &mut room.users.entry(user.id.clone()).or_insert_with(|| (user.clone(), 0)).1;
            *count += 1;
            if *count == 1 {
                let text =
                    ServerFrame::Presence { room: name.into(), joined: vec![user.clone()], left: vec![] };
                send_all(&room, Utf8Bytes::from(text.encode()), Some(out.conn));
            }
        }
        Ok(Joined { head: room.head, members: room.users.values().map(|(u, _)| u.clone()).collect() })
    }

    /// Removes a connection from a room; its user's last connection announces them gone.
    pub fn leave(&self, name: &str, conn: ConnId) {
        let Some(room) = self.existing(name) else { return };
        let empty = {
            let mut room = room.lock().expect("room lock");
            if let Some((user, _)) = room.members.remove(&conn) {
                let gone = match room.users.get_mut(&user.id) {
                    Some((_, count)) => {
                        *count -= 1;
                        *count == 0
                    }
                    None => false,
                };
                if gone {
                    room.users.remove(&user.id);
                    let text =
                        ServerFrame::Presence { room: name.into(), joined: vec![], left: vec![user.id] };
                    send_all(&room, Utf8Bytes::from(text.encode()), None);
                }
            }
            room.members.is_empty()
        };
        if empty {
            self.remove_if_empty(name);
        }
    }

    fn remove_if_empty(&self, name: &str) {
        let mut rooms = self.rooms.write().expect("rooms lock");
        if rooms.get(name).is_some_and(|room| room.lock().expect("room lock").members.is_empty()) {
            rooms.remove(name);
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
    fn deliver(&self, message: &StoredMessage, text: &Utf8Bytes) -> usize {
        let Some(room) = self.existing(&message.room) else { return 0 };
        let mut room = room.lock().expect("room lock");
        if message.seq <= room.head {
            return 0;
        }
        room.head = message.seq;
        send_all(&room, text.clone(), None)
    }
}

fn send_all(room: &Room, text: Utf8Bytes, except: Option<ConnId>) -> usize {
    let mut sent = 0;
    for (conn, (_, out)) in &room.members {
        if Some(*conn) != except {
            out.push(text.clone());
            sent += 1;
        }
    }
    sent
}
