//! Joining a room: checks (the app's join handler among them, for a channel's room), the
//! `joined` snapshot, then (with a cursor or a history
//! request) the replay, all written straight to the socket before the queue is drained
//! again. That order is what puts history strictly before live messages.

use futures::SinkExt;
use std::sync::Arc;
use tether_shared::frame::valid_room_name;

use tether_shared::{ErrorCode, RoomCursor, ServerFrame, User, close};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Conn, Ending, Transport, write};
use crate::Api;
use crate::auth;
use crate::channels::{Leaving, Refused, Route, Who, guarded};
use crate::close::Close;
use crate::creations::Creator;
use crate::metrics::OutcomeLabel;
use crate::wire;

/// Longest a join waits for the other nodes to be told of its user (cluster mode).
const ANNOUNCE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a join that would open one more new room is refused.
const ROOM_QUOTA: &str = "too many new rooms opened in the last minute; join an existing room or wait";

/// How a connection ends when a join's replay could not be read (SQLite or Redis
/// failed for a moment). The client already has `joined`, and live messages may be
/// queued behind it: answering with an error would let them through and leave a hole
/// nobody was told about. Closing instead keeps the client's cursor where the replay
/// should have started, and its reconnect resumes from there. (History that cannot be
/// read back at all gets `replayed` with `complete: false` instead, or every reconnect
/// would end here.)
const HISTORY_UNAVAILABLE: Close = Close::new(close::INTERNAL, "history is unavailable; resume later");

/// Most recent messages a join without a cursor may ask for.
const MAX_JOIN_HISTORY: u32 = 1_000;

impl Conn {
    /// Who a handler call about `room` is from: this connection's user (after hello).
    pub(super) fn who(&self, room: &str) -> Who {
        let user = self.identity.as_ref().expect("after hello").user.clone();
        Who { api: Api::new(self.context.clone()), user, room: room.to_owned() }
    }

    /// Asks the room's channel whether this member may join, and with what metadata:
    /// the member as presence will show them, or the answer that refuses the join.
    async fn admit(&mut self, route: Arc<dyn Route>, room: &str) -> Result<Arc<User>, ServerFrame> {
        let user = self.identity.as_ref().expect("after hello").user.clone();
        let Some(call) = route.join(self.who(room)) else { return Ok(user) };
        match guarded(call, route.patience()).await {
            Ok(Ok(None)) => Ok(user),
            Ok(Ok(Some(meta))) => Ok(Arc::new(User { meta: Some(meta), ..User::clone(&user) })),
            Ok(Err(Refused::Unavailable(why) | Refused::Broken(why))) => {
                tracing::warn!(why, room, "join hook");
                Err(self.error(ErrorCode::Internal, why, Some(room)))
            }
            Ok(Err(Refused::App(refused))) => {
                self.context.metrics.error(ErrorCode::Refused);
                Err(ServerFrame::Error {
                    code: ErrorCode::Refused,
                    message: refused.message,
                    about: Some(room.to_owned()),
                    refusal: Some(refused.refusal),
                })
            }
            Err(fault) => {
                tracing::error!(%fault, room, "join handler");
                Err(self.error(ErrorCode::Internal, fault.to_string(), Some(room)))
            }
        }
    }

    /// Tells the room's channel that this connection left it; nothing waits for the
    /// handler, which runs bounded like every other.
    pub(super) fn left(&self, room: &str, why: Leaving) {
        let Some(route) = self.context.channels.route(room) else { return };
        if self.identity.is_none() {
            return;
        }
        if let Some(call) = route.leave(self.who(room), why) {
            let (patience, room) = (route.patience(), room.to_owned());
            tokio::spawn(async move {
                if let Err(fault) = guarded(call, patience).await {
                    tracing::error!(%fault, room, "leave handler");
                }
            });
        }
    }

    /// Whose quota of new rooms a join counts against: the signed-in user, or in dev
    /// mode (where any name may be claimed) the address.
    fn creator(&self) -> Creator {
        let user = || Creator::User(self.identity.as_ref().map(|i| i.user.id.clone()).unwrap_or_default());
        match self.peer {
            Some(address) if self.context.config.auth_secret.is_none() => Creator::Address(address),
            _ => user(),
        }
    }

    /// Joins each room in turn (one for `join`, several for `resume`). `Some` ending
    /// when a replay could not be read (see [`HISTORY_UNAVAILABLE`]).
    pub(super) async fn join_all(
        &mut self,
        socket: &mut impl Transport,
        rooms: Vec<RoomCursor>,
    ) -> Result<Option<Ending>, WsError> {
        for RoomCursor { room, since, history } in rooms {
            if let Some(ending) = self.join(socket, room, since, history).await? {
                return Ok(Some(ending));
            }
        }
        Ok(None)
    }

    /// Joins a room: snapshot, then (with `since`) the replay, written before any live
    /// frame queued after the join.
    async fn join(
        &mut self,
        socket: &mut impl Transport,
        room: String,
        since: Option<u64>,
        history: Option<u32>,
    ) -> Result<Option<Ending>, WsError> {
        let identity = self.identity.as_ref().expect("after hello");
        let refusal = if !valid_room_name(&room) {
            Some((ErrorCode::InvalidRoom, "room names are 1-64 characters from [A-Za-z0-9._:-]"))
        } else if !auth::room_allowed(&identity.rooms, &room) {
            Some((ErrorCode::Forbidden, "your token does not allow this room"))
        } else if !self.rooms.contains(&room) && self.rooms.len() >= self.context.config.max_rooms {
            Some((ErrorCode::TooManyRooms, "leave a room before joining another"))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            let about: String = room.chars().take(64).collect();
            let frame = self.error(code, message, Some(&about));
            return write(socket, &frame, self.encoding).await.map(|()| None);
        }
        let user = match self.context.channels.route(&room) {
            None => identity.user.clone(),
            Some(route) => match self.admit(route.clone(), &room).await {
                Ok(user) => user,
                Err(frame) => return write(socket, &frame, self.encoding).await.map(|()| None),
            },
        };
        let joined = match self.context.hub.join(&room, &user, &self.out) {
            Ok(joined) => joined,
            Err(error) => {
                if let crate::hub::JoinError::Store(cause) = &error {
                    tracing::error!(%cause, room, "join failed");
                }
                let message = if error.code() == ErrorCode::RoomFull {
                    "the room is full"
                } else {
                    "could not join the room"
                };
                let frame = self.error(error.code(), message, Some(&room));
                return write(socket, &frame, self.encoding).await.map(|()| None);
            }
        };
        let head = joined.head;
        let presence = joined.presence;
        // A room with neither history nor anyone else in it is being opened by this join.
        if head == 0 && presence.count <= 1 && !self.context.room_creations.allow(&self.creator()) {
            self.context.hub.leave(&room, self.out.conn());
            self.context.metrics.room_creations_refused.inc();
            self.context.metrics.rate_limited.inc();
            let frame = self.error(ErrorCode::RateLimited, ROOM_QUOTA, Some(&room));
            return write(socket, &frame, self.encoding).await.map(|()| None);
        }
        self.rooms.insert(room.clone());
        let epoch = self.context.store.epoch();
        if let Some(announced) = joined.announced {
            // Bounded, so that a slow Redis delays a join instead of holding it.
            let _ = tokio::time::timeout(ANNOUNCE_PATIENCE, announced).await;
        }
        let frame = ServerFrame::Joined {
            room: room.clone(),
            seq: head,
            epoch,
            members: presence.members,
            count: presence.count,
            presence: presence.mode,
        };
        write(socket, &frame, self.encoding).await?;
        // Without a cursor, `history` asks for the latest messages: a cursor that far back.
        let since = match (since, history) {
            (Some(since), _) => since,
            (None, Some(count)) if count > 0 => head.saturating_sub(u64::from(count.min(MAX_JOIN_HISTORY))),
            (None, _) => return Ok(None),
        };

        // A cursor past the head comes from a history that no longer exists: say so, then
        // replay all that is held.
        let after = if since > head {
            let message =
                format!("since {since} is beyond the room's latest seq {head}; replaying all history");
            let frame = self.error(ErrorCode::CursorAhead, message, Some(&room));
            write(socket, &frame, self.encoding).await?;
            0
        } else {
            since
        };
        let store = self.context.store.clone();
        let name = room.clone();
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((store.read(&name, after, head)?, store.oldest(&name)?))
        })
        .await
        .expect("history read does not panic");
        let (messages, oldest, unreadable) = match read {
            Ok((messages, oldest)) => (messages, oldest, false),
            // What the store holds cannot be read back, now or later: say the replay is
            // incomplete rather than have every reconnect fail on it.
            Err(error @ crate::store::StoreError::Corrupt(_)) => {
                tracing::error!(%error, room, "history is unreadable");
                (Vec::new(), 0, true)
            }
            Err(error) => {
                tracing::error!(%error, room, "reading history failed");
                return Ok(Some(Ending::Close(HISTORY_UNAVAILABLE)));
            }
        };
        for message in &messages {
            // Replays are one connection's: its MessagePack form is not shared.
            let text = wire::message(message);
            let frame = match self.encoding {
                tether_shared::Encoding::Json => Message::Text(text),
                tether_shared::Encoding::MessagePack => Message::Binary(wire::transcode(&text)),
            };
            socket.feed(frame).await?;
        }
        let complete =
            !unreadable && since <= head && (after == head || (oldest != 0 && oldest <= after + 1));
        let outcome = if complete { "complete" } else { "incomplete" };
        self.context.metrics.resumes.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
        write(socket, &ServerFrame::Replayed { room, to: head, complete, oldest }, self.encoding).await?;
        Ok(None)
    }
}
