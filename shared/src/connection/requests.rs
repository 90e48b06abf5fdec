//! Requests in flight: what the core still owes the app an answer for.
//!
//! A request waits for the connection like a message does, and is sent once the
//! server's `welcome` has come (after the rooms' `resume`, so its room is joined again
//! by the time the server reads it). What happens to one that was on the wire when the
//! socket dropped depends on whether asking twice is safe:
//! - an **idempotent** request is sent again after the reconnect, under the same id,
//!   and the server answers the repeat from its memory of recent answers;
//! - any other fails with [`RequestFailure::Disconnected`]: it may or may not have run,
//!   and only the app can say whether to ask again.
//!
//! Every request has a deadline; past it, it fails with
//! [`RequestFailure::TimedOut`], and a late answer is ignored.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::frame::{ClientFrame, RejectCode};
use crate::time::Millis;

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestFailure {
    /// The server answered with a `reject` (the app's refusal among them: code
    /// `refused`, with the app's error in `refusal`).
    Rejected {
        /// The server's code.
        code: RejectCode,
        /// For people.
        message: String,
        /// The app's error, with `refused`.
        refusal: Option<crate::channel::Refusal>,
    },
    /// No answer before the request's deadline.
    TimedOut,
    /// The connection dropped while the request was on the wire (and it was not
    /// idempotent), or the app disconnected.
    Disconnected,
}

struct InFlight {
    room: String,
    body: Value,
    idempotent: bool,
    deadline: Millis,
    /// On the wire of the current socket.
    sent: bool,
}

/// Every request not yet answered, by id.
#[derive(Default)]
pub(super) struct Requests {
    in_flight: BTreeMap<String, InFlight>,
}

impl Requests {
    /// Takes a new request; it is sent by [`Requests::sendable`].
    pub(super) fn add(&mut self, id: String, room: String, body: Value, idempotent: bool, deadline: Millis) {
        self.in_flight.insert(id, InFlight { room, body, idempotent, deadline, sent: false });
    }

    /// The frames of every request not on the wire yet, now marked sent.
    pub(super) fn sendable(&mut self) -> Vec<ClientFrame> {
        self.in_flight
            .iter_mut()
            .filter(|(_, request)| !request.sent)
            .map(|(id, request)| {
                request.sent = true;
                ClientFrame::Request {
                    id: id.clone(),
                    room: request.room.clone(),
                    body: request.body.clone(),
                    idempotent: request.idempotent,
                }
            })
            .collect()
    }

    /// The socket is gone: idempotent requests wait to be sent again; the others that
    /// were on the wire are returned (id, room), failed.
    pub(super) fn socket_lost(&mut self) -> Vec<(String, String)> {
        let mut lost = Vec::new();
        self.in_flight.retain(|id, request| {
            if !request.sent {
                return true;
            }
            if request.idempotent {
                request.sent = false;
                return true;
            }
            lost.push((id.clone(), request.room.clone()));
            false
        });
        lost
    }

    /// Every request, failed: the app disconnected.
    pub(super) fn abandon_all(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.in_flight).into_iter().map(|(id, request)| (id, request.room)).collect()
    }

    /// The request `id`, answered: its room, if it was still awaited.
    pub(super) fn answered(&mut self, id: &str) -> Option<String> {
        self.in_flight.remove(id).map(|request| request.room)
    }

    /// Requests past their deadline at `now`, removed: (id, room).
    pub(super) fn expired(&mut self, now: Millis) -> Vec<(String, String)> {
        let mut expired = Vec::new();
        self.in_flight.retain(|id, request| {
            let alive = request.deadline > now;
            if !alive {
                expired.push((id.clone(), request.room.clone()));
            }
            alive
        });
        expired
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Millis> {
        self.in_flight.values().map(|request| request.deadline).min()
    }
}
