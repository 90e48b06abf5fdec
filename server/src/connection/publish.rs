//! Checking a publish before it goes to the sequencer: the id, the room, the body's
//! size and depth, and the rate limit; in a channel's room, the body's type and the app's
//! publish handler (through the connection's lane). Its ack (or rejection) comes back through the queue.

use std::sync::Arc;

use serde_json::Value;
use tether_shared::frame::valid_id;
use tether_shared::{RejectCode, ServerFrame, User};

use super::Conn;
use crate::Api;
use crate::channels::Who;
use crate::channels::lane::{self, Pending};
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
        let checked = match crate::limits::checked_body(&body, self.context.config.max_body_bytes) {
            Ok(checked) => checked,
            Err(refused) => return Some(self.reject(&id, RejectCode::TooLarge, &refused.to_string())),
        };
        if self.publishes.check().is_err() {
            self.context.metrics.rate_limited.inc();
            let message = format!("at most {} publishes per second", self.context.config.publish_rate);
            return Some(self.reject(&id, RejectCode::RateLimited, &message));
        }
        let identity = self.identity.as_ref().expect("after hello");
        let user = User::clone(&identity.user);
        if let Some(route) = self.context.channels.route(&room) {
            let who =
                Who { api: Api::new(self.context.clone()), user: identity.user.clone(), room: room.clone() };
            match route.publish(who, &body) {
                Err(why) => {
                    let message = format!("the body is not this room's message type: {why}");
                    return Some(self.reject(&id, RejectCode::InvalidBody, &message));
                }
                Ok(Some(call)) => {
                    // Decided at once if the handler is ready, else off this task, in order.
                    self.out.begin_publish();
                    let pending =
                        Pending { id, room, user, reply: self.out.clone(), call, patience: route.patience() };
                    lane::decide(&mut self.lane, &self.context, pending);
                    return None;
                }
                Ok(None) => {}
            }
        }
        self.out.begin_publish();
        self.context.sequencer.publish(Publish {
            room,
            id,
            user,
            body: Arc::from(checked),
            reply: self.out.clone(),
        });
        None
    }
}
