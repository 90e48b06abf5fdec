//! Checking a publish before it goes to the sequencer: the id, the room, the body's
//! size and depth, and the rate limit; in a channel's room, the body's type and the app's
//! publish handler (through the connection's lane). Its ack (or rejection) comes back through the queue.

use std::sync::Arc;

use serde_json::Value;
use tether_shared::frame::valid_id;
use tether_shared::{RejectCode, ServerFrame, User};

use super::Conn;
use crate::channels::lane::{self, HandlerCall, Pending};
use crate::engine::Publish;

impl Conn {
    /// Validates a publish and hands it to the sequencer (or to the room's publish
    /// handler first); `Some` is an immediate answer.
    pub(super) fn publish(&mut self, id: String, room: String, body: Value) -> Option<ServerFrame> {
        self.context.metrics.publishes.inc();
        if !valid_id(&id) {
            return Some(self.reject(&id, RejectCode::InvalidId, "message ids are 1-64 characters"));
        }
        if !self.rooms.contains(&room) {
            return Some(self.reject(&id, RejectCode::NotJoined, "join the room before publishing to it"));
        }
        // Cloned only for a channel's room: a plain room's publish costs nothing here.
        if let Some(route) = self.context.channels.route(&room).cloned() {
            match route.publish(self.who(&room), &body) {
                Err(why) => {
                    let message = format!("the body is not this room's message type: {why}");
                    return Some(self.reject(&id, RejectCode::InvalidBody, &message));
                }
                // The handler's answer is what is stored, and what is held to the limits.
                Ok(Some(call)) => {
                    if let Some(refused) = self.rate_limited(&id) {
                        return Some(refused);
                    }
                    // Decided at once if the handler is ready, else off this task, in order.
                    self.out.begin_publish();
                    let user = User::clone(&self.identity.as_ref().expect("after hello").user);
                    let pending = Pending { id, room, user, reply: self.out.clone() };
                    let call = HandlerCall { call, patience: route.patience() };
                    lane::decide(&mut self.lane, &self.context, pending, call);
                    return None;
                }
                Ok(None) => {}
            }
        }
        let checked = match crate::limits::checked_body(&body, self.context.config.max_body_bytes) {
            Ok(checked) => checked,
            Err(refused) => return Some(self.reject(&id, RejectCode::TooLarge, &refused.to_string())),
        };
        if let Some(refused) = self.rate_limited(&id) {
            return Some(refused);
        }
        let user = User::clone(&self.identity.as_ref().expect("after hello").user);
        self.out.begin_publish();
        self.context.engine.publish(Publish {
            room,
            id,
            user,
            body: Arc::from(checked),
            reply: self.out.clone(),
        });
        None
    }

    /// The rejection of publish `id` when it is over the connection's publish rate.
    fn rate_limited(&self, id: &str) -> Option<ServerFrame> {
        self.publishes.check().is_err().then(|| {
            self.context.metrics.rate_limited.inc();
            let message = format!("at most {} publishes per second", self.context.config.publish_rate);
            self.reject(id, RejectCode::RateLimited, &message)
        })
    }
}
