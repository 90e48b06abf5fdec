//! The server API's calls, as a Rust handle: what `/api/v1/…` answers, and what an app
//! that embeds Tether in its own binary calls directly.
//!
//! Nothing here has a path of its own. A publish is handed to the same sequencer as a
//! client's, under a connection id of its own whose queue only ever receives the
//! answer, so it is numbered, stored, delivered, deduplicated and acknowledged exactly
//! like a client's publish, in one node or a cluster. Reads go to the same hub and
//! history that joins use.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_shared::frame::{valid_id, valid_room_name};
use tether_shared::{Millis, RejectCode, ServerFrame, User, close};

use super::stats::{Sample, Totals};
use crate::context::Context;
use crate::engine::Publish;
use crate::identity;
use crate::outbound::{Next, Outbound, QueueLimits};
use crate::store::StoredMessage;

/// Most members one `presence` page holds.
const MAX_PRESENCE_PAGE: usize = 1_000;
/// Most messages one `history` page holds.
const MAX_HISTORY_PAGE: u64 = 1_000;
/// The sender of API publishes that name none.
const SERVER_USER: (&str, &str) = ("server", "Server");

/// The server API of a running server (see `Running::api`). Cheap to clone.
#[derive(Clone)]
pub struct Api {
    context: Arc<Context>,
}

/// Why a call failed: a stable code (the JSON `error` field) and an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The room name is not 1-64 characters from `[A-Za-z0-9._:-]`.
    #[error("room names are 1-64 characters from [A-Za-z0-9._:-]: {0:?}")]
    InvalidRoom(String),
    /// A message id, user id or name is empty or too long.
    #[error("{0}")]
    InvalidField(&'static str),
    /// The room has no members and no history.
    #[error("no room {0:?}: it has no members and no history")]
    RoomNotFound(String),
    /// The body is over the server's `max_body_bytes`, or nested too deep.
    #[error(transparent)]
    TooLarge(#[from] crate::limits::BodyRefused),
    /// The body is not the message type of the room's channel; nothing was stored.
    #[error("the body is not this room's message type: {0}")]
    InvalidBody(String),
    /// The sequencer refused the publish (the store is unavailable, the server stops).
    /// Nothing was stored.
    #[error("{message}")]
    Rejected {
        /// The rejection's code, as a client would have received it.
        code: RejectCode,
        /// Its explanation.
        message: String,
    },
    /// The store (or Redis) could not be read.
    #[error("history is unavailable: {0}")]
    Unavailable(String),
    /// The publish reached the store (Redis) and its answer was lost: it may have been
    /// stored, and delivered. Publish it again with the same `id` (and sender): a stored
    /// one is answered with its original seq, one that was not is stored then.
    #[error(
        "the store did not confirm message {id:?}: it may have been stored; publish it again with the same id"
    )]
    Unconfirmed {
        /// The message id to publish it again under, made by the server if the request
        /// had none.
        id: String,
    },
}

impl ApiError {
    /// The JSON `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRoom(_) => "invalid_room",
            ApiError::InvalidField(_) => "invalid_request",
            ApiError::RoomNotFound(_) => "room_not_found",
            ApiError::TooLarge(_) => "too_large",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::Rejected { .. } | ApiError::Unavailable(_) => "unavailable",
            ApiError::Unconfirmed { .. } => "unconfirmed",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidRoom(_) | ApiError::InvalidField(_) | ApiError::InvalidBody(_) => 400,
            ApiError::RoomNotFound(_) => 404,
            ApiError::TooLarge(_) => 413,
            ApiError::Rejected { .. } | ApiError::Unavailable(_) | ApiError::Unconfirmed { .. } => 503,
        }
    }

    /// The message id a caller must publish again under, when the outcome is unknown.
    pub fn retry_id(&self) -> Option<&str> {
        match self {
            ApiError::Unconfirmed { id } => Some(id),
            _ => None,
        }
    }
}

/// Who an API publish is from; the server's own user when unnamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Sender {
    /// A user id (1-64 characters): with the message id, the dedupe key.
    pub id: String,
    /// The name shown (1-32 characters).
    pub name: String,
}

/// A message to put into a room. Like every request and the objects in it, it decodes
/// from an object only, never an array (see `tether_shared::object`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct PublishRequest {
    /// The room it goes to (created if new).
    pub room: String,
    /// The message, any JSON value without an object that names a key twice.
    #[serde(deserialize_with = "tether_shared::strict_json::value")]
    pub body: Value,
    /// A message id (1-64 characters) for dedupe: the same id from the same sender in
    /// the same room within the dedupe window is stored once and answered with the
    /// original seq. A fresh one is made when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Who it is from; `{"id": "server", "name": "Server"}` when absent.
    #[serde(default)]
    pub from: Option<Sender>,
}

/// One message to several rooms.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct BroadcastRequest {
    /// The rooms, each getting its own copy with its own seq.
    pub rooms: Vec<String>,
    /// The message, as in a publish.
    #[serde(deserialize_with = "tether_shared::strict_json::value")]
    pub body: Value,
    /// A message id for dedupe, the same in every room (dedupe is per room).
    #[serde(default)]
    pub id: Option<String>,
    /// Who it is from.
    #[serde(default)]
    pub from: Option<Sender>,
}

tether_shared::objects_only!(PublishRequest, BroadcastRequest);
tether_shared::objects_only!(serialize: Sender);

/// A stored publish: what its ack said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The room.
    pub room: String,
    /// The message id (given or made).
    pub id: String,
    /// Its seq in the room.
    pub seq: u64,
    /// When it was stored, in ms since the epoch.
    pub ts: Millis,
}

/// One room's outcome in a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum BroadcastResult {
    /// Stored.
    Published(Published),
    /// Refused, with the error's code and message.
    Failed {
        /// The room.
        room: String,
        /// The error code.
        error: &'static str,
        /// Why.
        message: String,
        /// With `unconfirmed`: the message id to publish it again under.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

/// A page of a room's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresencePage {
    /// The room.
    pub room: String,
    /// Users present in all.
    pub count: usize,
    /// This page, in user id order.
    pub members: Vec<User>,
    /// The user id to ask `after` for the next page, if any.
    pub next: Option<String>,
}

/// A message as history holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryMessage {
    /// Its seq.
    pub seq: u64,
    /// Its client message id.
    pub id: String,
    /// Who sent it.
    pub from: User,
    /// The message.
    pub body: Value,
    /// When it was stored.
    pub ts: Millis,
}

/// A page of a room's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPage {
    /// The room.
    pub room: String,
    /// Its latest seq.
    pub head: u64,
    /// The oldest seq still held.
    pub oldest: u64,
    /// Messages with `after < seq`, oldest first.
    pub messages: Vec<HistoryMessage>,
    /// The seq to ask `after` for the next page, if there are more.
    pub next: Option<u64>,
}

/// A room with members, as `rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomSummary {
    /// The room.
    pub room: String,
    /// Users present.
    pub members: usize,
}

/// What `disconnect` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disconnected {
    /// The user.
    pub user: String,
    /// Connections closed on this node.
    pub connections: usize,
    /// The close code they got: 4010 (come back) or 4410 (don't).
    pub code: u16,
    /// In cluster mode: every other node was told to close the user's connections too
    /// (those are not counted in `connections`).
    pub cluster: bool,
}

/// The numbers the dashboard shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// In cluster mode, this node's id.
    pub node: Option<String>,
    /// In cluster mode, every live node's latest sample (its own included), by node.
    pub nodes: Vec<NodeSample>,
    /// Open connections now.
    pub connections: i64,
    /// Users with a connection now.
    pub users: usize,
    /// Rooms with members now.
    pub rooms: usize,
    /// Counters since start.
    pub totals: Totals,
    /// One sample a second over the last minutes, oldest first.
    pub series: Vec<Sample>,
}

/// One node's latest sample, as the cluster's `stats` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSample {
    /// The node.
    pub node: String,
    /// Its sample, as it published it (the fields of [`Sample`], plus `users`).
    pub sample: Value,
}

impl Api {
    pub(crate) fn new(context: Arc<Context>) -> Api {
        Api { context }
    }

    /// Stores `request.body` in the room and delivers it, like a client's publish;
    /// returns once it is durable, with its seq.
    pub async fn publish(&self, request: PublishRequest) -> Result<Published, ApiError> {
        let sender = self.sender(request.from)?;
        let id = message_id(request.id)?;
        self.publish_one(request.room, request.body, id, sender).await
    }

    /// Publishes one message to every room in `request.rooms`, each answered on its own.
    pub async fn broadcast(&self, request: BroadcastRequest) -> Result<Vec<BroadcastResult>, ApiError> {
        let sender = self.sender(request.from)?;
        let id = message_id(request.id)?;
        let publishes = request.rooms.into_iter().map(|room| {
            let (body, id, sender) = (request.body.clone(), id.clone(), sender.clone());
            async move {
                match self.publish_one(room.clone(), body, id, sender).await {
                    Ok(published) => BroadcastResult::Published(published),
                    Err(error) => BroadcastResult::Failed {
                        room,
                        error: error.code(),
                        message: error.to_string(),
                        id: error.retry_id().map(str::to_owned),
                    },
                }
            }
        });
        Ok(futures::future::join_all(publishes).await)
    }

    /// A page of `room`'s members after user id `after`.
    pub async fn presence(
        &self,
        room: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<PresencePage, ApiError> {
        check_room(room)?;
        let limit = limit.unwrap_or(100).clamp(1, MAX_PRESENCE_PAGE);
        if let Some(page) = self.context.hub.members(room, after, limit) {
            return Ok(PresencePage {
                room: room.to_owned(),
                count: page.count,
                members: page.members,
                next: page.next,
            });
        }
        // No member here: in a cluster, the others may have some.
        let engine = self.context.engine.clone();
        let name = room.to_owned();
        let mut members: Vec<User> = blocking(move || engine.present_elsewhere(&name))
            .await?
            .into_iter()
            .map(|(_, user)| user)
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|a, b| a.id == b.id);
        if members.is_empty() && self.head(room).await? == 0 {
            return Err(ApiError::RoomNotFound(room.to_owned()));
        }
        let count = members.len();
        let start = after.map_or(0, |after| members.partition_point(|user| user.id.as_str() <= after));
        let page: Vec<User> = members.into_iter().skip(start).take(limit).collect();
        let next = (start + page.len() < count).then(|| page.last().map(|user| user.id.clone())).flatten();
        Ok(PresencePage { room: room.to_owned(), count, members: page, next })
    }

    /// Up to `limit` messages of `room` after seq `after` (without `after`, the latest
    /// `limit`).
    pub async fn history(
        &self,
        room: &str,
        after: Option<u64>,
        limit: Option<u64>,
    ) -> Result<HistoryPage, ApiError> {
        check_room(room)?;
        let limit = limit.unwrap_or(50).clamp(1, MAX_HISTORY_PAGE);
        let store = self.context.store.clone();
        let name = room.to_owned();
        let (head, oldest, upto, messages) = blocking(move || {
            let head = store.head(&name)?;
            let oldest = store.oldest(&name)?;
            let after = after.unwrap_or(head.saturating_sub(limit)).min(head);
            let upto = after.saturating_add(limit).min(head);
            let messages = store.read(&name, after, upto)?;
            Ok((head, oldest, upto, messages))
        })
        .await?;
        if head == 0 && self.context.hub.members(room, None, 1).is_none() {
            return Err(ApiError::RoomNotFound(room.to_owned()));
        }
        let messages = messages.into_iter().map(history_message).collect();
        Ok(HistoryPage { room: room.to_owned(), head, oldest, messages, next: (upto < head).then_some(upto) })
    }

    /// Rooms with members, by name, with their member counts: on this node, or in
    /// cluster mode on every live node.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, ApiError> {
        let (engine, here) = (self.context.engine.clone(), self.context.hub.room_summaries());
        let summaries = blocking(move || engine.rooms(here)).await?;
        let mut rooms: Vec<RoomSummary> =
            summaries.into_iter().map(|(room, members)| RoomSummary { room, members }).collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        Ok(rooms)
    }

    /// Closes every connection of `user` on this node: with 4010 when `reconnect` (the
    /// client comes back, e.g. to pick up changed permissions with a new token), else
    /// with 4410 (it stays away until the person or the app acts).
    pub fn disconnect(&self, user: &str, reconnect: bool) -> Disconnected {
        let code = if reconnect { close::DISCONNECTED } else { close::REMOVED };
        let close = crate::close::for_api_disconnect(code).expect("an API disconnect code");
        let code = close.code;
        let connections = self.context.hub.connected().close_user(user, close);
        tracing::info!(user, connections, code, "disconnected through the server API");
        let cluster = self.context.engine.disconnect_elsewhere(user, code);
        Disconnected { user: user.to_owned(), connections, code, cluster }
    }

    /// The numbers now, the counters since start, and the last minutes second by second
    /// (in cluster mode, with every live node's latest sample).
    pub async fn stats(&self) -> Stats {
        let metrics = &self.context.metrics;
        let node = self.context.engine.node().map(ToString::to_string);
        let nodes = if node.is_some() {
            // The dashboard shows this node's numbers even when Redis is slow to answer.
            let engine = self.context.engine.clone();
            let samples = blocking(move || engine.node_samples()).await.unwrap_or_default();
            let mut nodes: Vec<NodeSample> = samples
                .into_iter()
                .filter_map(|(node, sample)| {
                    Some(NodeSample { node, sample: serde_json::from_str(&sample).ok()? })
                })
                .collect();
            nodes.sort_by(|a, b| a.node.cmp(&b.node));
            nodes
        } else {
            Vec::new()
        };
        Stats {
            node,
            nodes,
            connections: metrics.connections.get(),
            users: self.context.hub.connected().users(),
            rooms: self.context.hub.room_count(),
            totals: Totals::read(metrics),
            series: self.context.stats.series(),
        }
    }

    fn sender(&self, from: Option<Sender>) -> Result<User, ApiError> {
        let Sender { id, name } =
            from.unwrap_or_else(|| Sender { id: SERVER_USER.0.into(), name: SERVER_USER.1.into() });
        if !valid_id(&id) {
            return Err(ApiError::InvalidField("from.id is 1-64 characters"));
        }
        if name.trim().is_empty() || name.chars().count() > 32 {
            return Err(ApiError::InvalidField("from.name is 1-32 characters"));
        }
        let color = identity::color_for(&id);
        Ok(User::new(id, name, color))
    }

    async fn publish_one(
        &self,
        room: String,
        body: Value,
        id: String,
        user: User,
    ) -> Result<Published, ApiError> {
        check_room(&room)?;
        let context = &self.context;
        // The backend is the app's own authority: its publishes are held to the room's
        // message type, but no publish handler runs for them.
        if let Some(route) = context.channels.route(&room) {
            route.check_message(&body).map_err(ApiError::InvalidBody)?;
        }
        let body = crate::limits::checked_body(&body, context.config.max_body_bytes)?;
        context.metrics.publishes.inc();
        // A connection of its own, in no room: its queue only ever gets this answer.
        let (reply, mut answers) = Outbound::new(
            context.next_conn(),
            QueueLimits { frames: 4, budget: context.send_budget.clone() },
            context.metrics.clone(),
        );
        reply.begin_publish();
        context.engine.publish(Publish {
            room: room.clone(),
            id: id.clone(),
            user,
            body: Arc::from(body),
            reply,
        });
        published(answers.next().await, room, id)
    }

    async fn head(&self, room: &str) -> Result<u64, ApiError> {
        let (store, name) = (self.context.store.clone(), room.to_owned());
        blocking(move || store.head(&name)).await
    }
}

/// What the first thing on a publish's own queue says of it. A queue that ends or
/// overflows before the sequencer answered (the server stopping mid-commit) says
/// nothing about the store: the message may have been stored, so the answer is
/// `unconfirmed` with its id, never `unavailable`, which promises that nothing was.
fn published(next: Next, room: String, id: String) -> Result<Published, ApiError> {
    let answer = match next {
        Next::Frames(frames) => frames.front().and_then(|text| ServerFrame::decode(text).ok()),
        Next::Slow | Next::End(_) => None,
    };
    match answer {
        Some(ServerFrame::Ack { seq, ts, .. }) => Ok(Published { room, id, seq, ts }),
        Some(ServerFrame::Reject { code, message, .. }) if code != RejectCode::Unconfirmed => {
            Err(ApiError::Rejected { code, message })
        }
        // `unconfirmed`, or no answer at all.
        _ => Err(ApiError::Unconfirmed { id }),
    }
}

/// Runs a blocking read (SQLite, or Redis in cluster mode) off the async workers; a
/// failure of either the read or its thread is `unavailable`.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ApiError::Unavailable(error.to_string())),
        Err(error) => Err(ApiError::Unavailable(error.to_string())),
    }
}

fn check_room(room: &str) -> Result<(), ApiError> {
    match valid_room_name(room) {
        true => Ok(()),
        false => Err(ApiError::InvalidRoom(room.chars().take(64).collect())),
    }
}

fn message_id(id: Option<String>) -> Result<String, ApiError> {
    match id {
        Some(id) if !valid_id(&id) => Err(ApiError::InvalidField("id is 1-64 characters")),
        Some(id) => Ok(id),
        None => Ok(identity::random_id("api")),
    }
}

fn history_message(message: StoredMessage) -> HistoryMessage {
    HistoryMessage {
        seq: message.seq,
        id: message.id,
        from: message.user,
        body: serde_json::from_str(message.body.get()).unwrap_or(Value::Null),
        ts: message.ts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publish whose queue ends or overflows before the sequencer answered may have
    /// been stored: it is `unconfirmed` with its id, so the caller sends it again under
    /// that id, and never `unavailable`, which would say that nothing was stored.
    #[test]
    fn no_answer_from_the_sequencer_is_unconfirmed() {
        for next in [Next::End(crate::close::SHUTDOWN), Next::Slow, Next::Frames(Default::default())] {
            let answer = published(next, "r".into(), "m1".into());
            let error = answer.expect_err("no answer is no ack");
            assert_eq!((error.code(), error.status(), error.retry_id()), ("unconfirmed", 503, Some("m1")));
        }
    }

    #[test]
    fn an_answer_is_read_as_it_was_given() {
        let ack = crate::wire::ack("m1", "r", 7, Millis(5));
        let published = published(Next::Frames([ack].into()), "r".into(), "m1".into()).expect("acked");
        assert_eq!((published.seq, published.id.as_str()), (7, "m1"));
        let refused = crate::wire::reject("m1", RejectCode::Unavailable, crate::wire::STORE_UNAVAILABLE);
        let error = super::published(Next::Frames([refused].into()), "r".into(), "m1".into()).unwrap_err();
        assert_eq!((error.code(), error.retry_id()), ("unavailable", None));
    }
}
