//! Checking a publish before it goes to the sequencer: the id, the room, the body's
//! size and depth, and the rate limit. Its ack (or rejection) comes back through the queue.

use std::sync::Arc;

use serde_json::Value;
use tether_shared::frame::valid_id;
use tether_shared::{RejectCode, ServerFrame, User};

use super::Conn;
use crate::sequencer::Publish;

impl Conn {
    /// Validates a publish and hands it to the sequencer; `Some` is an immediate answer.
    pub(super) fn publish(&mut self, id: String, room: String, body: Value) -> Option<ServerFrame> {
        self.context.metrics.publishes.inc();
        if !valid_id(&id) {
            return Some(self.reject(&id, RejectCode::InvalidId, "message ids are 1-64 characters"));
        }
        if !self.rooms.contains(&room) {
            return Some(self.reject(&id, RejectCode::NotJoined, "join the room before publishing to it"));
        }
        let body = match crate::limits::checked_body(&body, self.context.config.max_body_bytes) {
            Ok(body) => body,
            Err(refused) => return Some(self.reject(&id, RejectCode::TooLarge, &refused.to_string())),
        };
        if self.publishes.check().is_err() {
            self.context.metrics.rate_limited.inc();
            let message = format!("at most {} publishes per second", self.context.config.publish_rate);
            return Some(self.reject(&id, RejectCode::RateLimited, &message));
        }
        let user = User::clone(&self.identity.as_ref().expect("after hello").user);
        self.out.begin_publish();
        self.context.sequencer.publish(Publish {
            room,
            id,
            user,
            body: Arc::from(body),
            reply: self.out.clone(),
        });
        None
    }
}
