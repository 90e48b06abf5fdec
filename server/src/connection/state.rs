//! Volatile state (`state` frames): checked, then fanned out to the room's other
//! members, coalesced in each member's queue. Never stored, numbered or acked.

use std::hash::{Hash, Hasher};

use serde_json::Value;
use tether_shared::frame::valid_id;
use tether_shared::{ErrorCode, ServerFrame, User};

use super::Conn;
use crate::limits::MAX_STATE_BYTES;

impl Conn {
    /// Sends `value` for `key` to the room's other members; `Some` is an error answer.
    pub(super) fn state(&mut self, room: String, key: String, value: Value) -> Option<ServerFrame> {
        if !self.rooms.contains(&room) {
            return Some(self.error(ErrorCode::NotJoined, "join the room first", Some(&room)));
        }
        if !valid_id(&key) {
            return Some(self.error(ErrorCode::InvalidFrame, "state keys are 1-64 characters", Some(&room)));
        }
        if serde_json::to_string(&value).map_or(usize::MAX, |text| text.len()) > MAX_STATE_BYTES {
            let message = format!("state values are at most {MAX_STATE_BYTES} bytes");
            return Some(self.error(ErrorCode::InvalidFrame, &message, Some(&room)));
        }
        if let Some(route) = self.context.channels.route(&room)
            && !value.is_null()
            && let Err(why) = route.check_state(&value)
        {
            let message = format!("the value is not this room's state type: {why}");
            return Some(self.error(ErrorCode::InvalidBody, &message, Some(&room)));
        }
        if self.states.check().is_err() {
            self.context.metrics.rate_limited.inc();
            let message = format!("at most {} state frames per second", self.context.config.state_rate);
            return Some(self.error(ErrorCode::RateLimited, &message, Some(&room)));
        }
        let from = User::clone(&self.identity.as_ref().expect("after hello").user);
        let slot = coalescing_key(&room, &from.id, &key);
        let frame = ServerFrame::State { room: room.clone(), from, key, value };
        self.context.hub.broadcast_state(&room, &frame, slot, Some(self.out.conn()));
        None
    }
}

/// The slot a value takes in each member's queue: one per (room, user, key). The same
/// on every node of a cluster (no random seed), so the relayed key means the same.
fn coalescing_key(room: &str, user: &str, key: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    (room, user, key).hash(&mut hasher);
    hasher.finish()
}
