//! Answering a request: the room's channel decodes it as its request type and its
//! request handler answers, to this connection alone. Nothing is stored or fanned out.
//!
//! A handler that is ready at once is answered in place; one that waits runs in a
//! task of its own under its deadline, so the connection reads on meanwhile (requests
//! have no order to keep: each has its own answer). An idempotent request goes through
//! the memory of recent answers, so that a repeat gets the first answer.

use serde_json::Value;
use tether_shared::frame::valid_id;
use tether_shared::{RejectCode, ServerFrame};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Conn;
use crate::channels::{Answer, Fault, guarded, poll_once};

impl Conn {
    /// Checks a request and has it answered; `Some` is an immediate refusal.
    pub(super) fn request(
        &mut self,
        id: String,
        room: String,
        body: Value,
        idempotent: bool,
    ) -> Option<ServerFrame> {
        if !valid_id(&id) {
            return Some(self.reject(&id, RejectCode::InvalidId, "request ids are 1-64 characters"));
        }
        if !self.rooms.contains(&room) {
            return Some(self.reject(&id, RejectCode::NotJoined, "join the room before asking in it"));
        }
        let context = self.context.clone();
        let user = self.identity.as_ref().expect("after hello").user.id.clone();
        let Some(route) = context.channels.route(&room) else {
            return Some(self.reject(&id, RejectCode::NotHandled, "this room answers no requests"));
        };
        let call = match route.request(self.who(&room), &body) {
            None => return Some(self.reject(&id, RejectCode::NotHandled, "this room answers no requests")),
            Some(Err(why)) => {
                let message = format!("the body is not this room's request type: {why}");
                return Some(self.reject(&id, RejectCode::InvalidBody, &message));
            }
            Some(Ok(call)) => call,
        };
        let patience = route.patience();
        let out = self.out.clone();
        if idempotent {
            let slot = context.answers.slot(&user, &id);
            tokio::spawn(async move {
                let answer = match slot {
                    Some(slot) => slot
                        .get_or_try_init(|| async {
                            framed(&context, &id, &room, guarded(call, patience).await)
                        })
                        .await
                        .cloned()
                        .unwrap_or_else(|failed| failed),
                    None => framed(&context, &id, &room, guarded(call, patience).await)
                        .unwrap_or_else(|failed| failed),
                };
                out.push_own(answer);
            });
            return None;
        }
        let mut call = call;
        match poll_once(&mut call) {
            Some(answer) => {
                out.push_own(framed(&context, &id, &room, answer).unwrap_or_else(|failed| failed))
            }
            None => {
                tokio::spawn(async move {
                    let answer = framed(&context, &id, &room, guarded(call, patience).await);
                    out.push_own(answer.unwrap_or_else(|failed| failed));
                });
            }
        }
        None
    }
}

/// The frame that answers request `id`: `Ok` for the app's decisions (a reply, a
/// refusal), which a repeat may be given again; `Err` for a handler that failed, which
/// a repeat asks again.
fn framed(
    context: &crate::context::Context,
    id: &str,
    room: &str,
    answer: Result<Answer, Fault>,
) -> Result<Utf8Bytes, Utf8Bytes> {
    let failed = |code: RejectCode, message: String| {
        context.metrics.rejection(code);
        Err(crate::wire::reject(id, code, &message))
    };
    match answer {
        Ok(Answer::Reply(body)) => {
            let frame = ServerFrame::Reply { id: id.to_owned(), room: room.to_owned(), body };
            Ok(Utf8Bytes::from(frame.encode()))
        }
        Ok(Answer::Refuse(refused)) => {
            context.metrics.rejection(RejectCode::Refused);
            Ok(crate::wire::refused(id, refused))
        }
        Ok(Answer::Broken(why)) => {
            tracing::error!(why, room, id, "request handler's answer");
            failed(RejectCode::Internal, why)
        }
        // Not remembered: a repeat asks the backend again.
        Ok(Answer::Unavailable(why)) => {
            tracing::warn!(why, room, id, "request hook");
            failed(RejectCode::Unavailable, why)
        }
        Err(fault) => {
            tracing::error!(%fault, room, id, "request handler");
            failed(RejectCode::Internal, fault.to_string())
        }
    }
}
