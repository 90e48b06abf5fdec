//! Rooms held by leases: several components can want one room, the link joins it once,
//! and leaves when the last lease is dropped.

use std::cell::RefCell;
use std::rc::Weak;

use tether_shared::Input;

use super::{Inner, Link};

impl Link {
    /// Joins `room` for as long as the returned guard lives. Several holders share one
    /// join; the room is left when the last guard is dropped.
    pub fn join(&self, room: &str) -> RoomLease {
        let first = {
            let mut inner = self.inner.borrow_mut();
            let count = inner.rooms.entry(room.to_owned()).or_default();
            *count += 1;
            *count == 1
        };
        if first {
            self.handle(Input::Join(room.to_owned()));
        }
        RoomLease { link: self.weak(), room: room.to_owned() }
    }

    /// Unsent messages for `room`, in send order (for showing them after a reload).
    pub fn queued_in(&self, room: &str) -> Vec<tether_shared::Envelope> {
        self.inner.borrow().core.outbox().iter().filter(|e| e.room == room).cloned().collect()
    }
}

/// Keeps a room joined; dropping the last one for a room leaves it.
pub struct RoomLease {
    link: Weak<RefCell<Inner>>,
    room: String,
}

impl Drop for RoomLease {
    fn drop(&mut self) {
        let Some(link) = Link::upgrade(&self.link) else { return };
        let last = {
            let Ok(mut inner) = link.inner.try_borrow_mut() else { return };
            match inner.rooms.get_mut(&self.room) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    inner.rooms.remove(&self.room);
                    true
                }
                None => false,
            }
        };
        if last {
            link.handle(Input::Leave(self.room.clone()));
        }
    }
}
