//! History in memory: for tests and demos. Lost on restart, which the epoch announces.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use tether_shared::Millis;

use super::{History, Published, Store, StoreError, StoredMessage};

/// All rooms' history in a map, behind one lock (fine for what it is for).
pub struct MemoryStore {
    rooms: RwLock<HashMap<String, Room>>,
    epoch: String,
    secret: Vec<u8>,
}

#[derive(Default)]
struct Room {
    head: u64,
    messages: VecDeque<StoredMessage>,
}

impl MemoryStore {
    /// An empty store with a fresh epoch.
    pub fn new() -> Self {
        MemoryStore {
            rooms: RwLock::new(HashMap::new()),
            epoch: crate::identity::random_id("e"),
            secret: (0..32).map(|_| fastrand::u8(..)).collect(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl History for MemoryStore {
    fn head(&self, room: &str) -> Result<u64, StoreError> {
        Ok(self.rooms.read().expect("store lock").get(room).map_or(0, |r| r.head))
    }

    fn oldest(&self, room: &str) -> Result<u64, StoreError> {
        let rooms = self.rooms.read().expect("store lock");
        Ok(rooms.get(room).and_then(|r| r.messages.front()).map_or(0, |m| m.seq))
    }

    fn read(&self, room: &str, after: u64, upto: u64) -> Result<Vec<StoredMessage>, StoreError> {
        let rooms = self.rooms.read().expect("store lock");
        Ok(rooms
            .get(room)
            .map(|r| r.messages.iter().filter(|m| m.seq > after && m.seq <= upto).cloned().collect())
            .unwrap_or_default())
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn secret(&self) -> Vec<u8> {
        self.secret.clone()
    }
}

impl Store for MemoryStore {
    fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        let mut rooms = self.rooms.write().expect("store lock");
        for message in batch {
            let room = rooms.entry(message.room.clone()).or_default();
            room.head = room.head.max(message.seq);
            room.messages.push_back(message.clone());
        }
        Ok(())
    }

    fn published_since(&self, since: Millis) -> Result<Vec<Published>, StoreError> {
        let rooms = self.rooms.read().expect("store lock");
        let mut found: Vec<Published> = rooms
            .values()
            .flat_map(|r| r.messages.iter())
            .filter(|m| m.ts >= since)
            .map(|m| Published {
                user: m.user.id.clone(),
                id: m.id.clone(),
                room: m.room.clone(),
                seq: m.seq,
                ts: m.ts,
            })
            .collect();
        found.sort_by_key(|p| p.ts);
        Ok(found)
    }

    fn prune(&self, room: &str, keep: u64, before: Millis) -> Result<(), StoreError> {
        let mut rooms = self.rooms.write().expect("store lock");
        if let Some(room) = rooms.get_mut(room) {
            while room.messages.len() > 1
                && (room.messages.len() as u64 > keep || room.messages.front().is_some_and(|m| m.ts < before))
            {
                room.messages.pop_front();
            }
        }
        Ok(())
    }

    fn history_bytes(&self) -> Result<u64, StoreError> {
        let rooms = self.rooms.read().expect("store lock");
        Ok(rooms.values().flat_map(|r| r.messages.iter()).map(StoredMessage::stored_bytes).sum())
    }

    fn shrink(&self, target: u64) -> Result<u64, StoreError> {
        let mut total = self.history_bytes()?;
        let mut rooms = self.rooms.write().expect("store lock");
        while total > target {
            // The room whose oldest message is the oldest of all, among rooms holding more
            // than their latest.
            let oldest = rooms
                .values_mut()
                .filter(|r| r.messages.len() > 1)
                .min_by_key(|r| r.messages.front().map(|m| (m.ts, m.seq)));
            let Some(room) = oldest else { break };
            let dropped = room.messages.pop_front().expect("more than one");
            total -= dropped.stored_bytes();
        }
        Ok(total)
    }
}
