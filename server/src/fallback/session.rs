//! An HTTP session: a connection whose frames travel over plain HTTP requests.
//!
//! The connection task (`crate::connection::serve`) cannot tell it from a WebSocket:
//! it reads what `POST /rt/send` queued upstream and writes into a downstream buffer
//! that `GET /rt/sse` streams and `GET /rt/poll` returns. Every downstream frame gets
//! the next event id of its session, and stays in the buffer until the client has
//! confirmed it (an SSE reconnect's `Last-Event-ID`, a poll's `after`), so a dropped
//! stream resumes without a gap or a repeat.
//!
//! An event stream has no way to confirm while it lives: what it wrote may still be in
//! a kernel buffer when the connection dies. So it keeps the last [`SSE_RESEND`] frames
//! it wrote for a reconnect to ask again, and lets older ones go. A reconnect from
//! before what was let go would skip frames nobody was told of: it ends the session
//! instead, as a WebSocket that fell behind, and the client's new one resumes each room
//! from its cursor.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use futures::{Sink, Stream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::recent::RecentlyEnded;

/// Frames waiting for a downstream request to hand them out. Past this the connection
/// task's writes wait, as a WebSocket's wait on a full TCP window: a replay bigger than
/// this (a resume of many rooms) goes out as the client reads, and a client that stops
/// reading is let go at the idle timeout.
const MAX_WAITING: u64 = 4_096;
/// Frames the buffer may hold at all, waiting and handed out but unconfirmed; more means
/// the sink was written without asking whether it was ready.
const MAX_HELD: usize = 2 * MAX_WAITING as usize + SSE_RESEND;
/// Frames an event stream keeps after writing them, for a reconnect to ask again: more
/// than a dead connection's buffers hold of ordinary frames.
pub const SSE_RESEND: usize = 1_024;
/// Upstream frames queued for the connection task before `POST /rt/send` waits.
const UPSTREAM_QUEUE: usize = 256;

/// How a session's connection ended: the close code and reason a WebSocket would get.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ended {
    /// The close code (`PROTOCOL.md`, *Close codes*).
    pub code: u16,
    /// Why, in words.
    pub reason: String,
}

/// One session, shared by its connection task and its HTTP requests.
pub struct Session {
    /// What the client presents with every request.
    pub id: String,
    /// Where upstream frames go, to the connection task.
    upstream: mpsc::Sender<Message>,
    down: Mutex<Downstream>,
    /// Bumped whenever the downstream changes; requests wait on it.
    changed: watch::Sender<u64>,
    /// The address that opened the session, for the per-address cap.
    pub peer: Option<IpAddr>,
}

/// What the server has sent and the client has not confirmed yet.
struct Downstream {
    /// The event id the next frame gets.
    next_id: u64,
    /// Unconfirmed frames, oldest first.
    frames: VecDeque<(u64, Utf8Bytes)>,
    /// The newest event id let go: a request from before it would skip frames.
    let_go: u64,
    /// The newest event id handed out (to a stream or in a poll's answer).
    handed_out: u64,
    /// The connection task's write, waiting for frames to be handed out.
    writer: Option<Waker>,
    /// The client has left (`/rt/close`, or no request for the idle timeout): writes fail.
    gone: bool,
    /// How the connection ended, once it has.
    closed: Option<Ended>,
    /// Downstream requests open now, and when the last one ended.
    readers: usize,
    last_reader: Instant,
}

/// What a downstream request gets.
pub struct Batch {
    /// Frames after the requested id, with their event ids.
    pub frames: Vec<(u64, Utf8Bytes)>,
    /// Set once the connection has ended and every frame before the end was handed out.
    pub closed: Option<Ended>,
}

impl Session {
    /// A session and the transport its connection task runs on.
    pub fn new(id: String, peer: Option<IpAddr>) -> (Arc<Session>, SessionSocket) {
        let (upstream, receiver) = mpsc::channel(UPSTREAM_QUEUE);
        let down = Downstream {
            next_id: 1,
            frames: VecDeque::new(),
            let_go: 0,
            handed_out: 0,
            writer: None,
            gone: false,
            closed: None,
            readers: 0,
            last_reader: Instant::now(),
        };
        let session =
            Arc::new(Session { id, upstream, down: Mutex::new(down), changed: watch::Sender::new(0), peer });
        let socket = SessionSocket { session: session.clone(), upstream: receiver };
        (session, socket)
    }

    /// Queues frames from the client for the connection task; false if it has ended.
    pub async fn send(&self, frames: Vec<String>) -> bool {
        for frame in frames {
            if self.upstream.send(Message::text(frame)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The client closed the session (`POST /rt/close`): it ends with 1000, as a
    /// WebSocket closed by its client does, so that a request still reading it (a held
    /// poll, a stream) is told of a deliberate end, not of a lost connection to recover.
    pub async fn client_closed(&self) {
        self.close(Ended { code: tether_shared::close::NORMAL, reason: "closed by the client".into() });
        self.client_left().await;
    }

    /// Tells the connection task the client is gone, as a WebSocket's close would; a
    /// write waiting for the client fails at once.
    pub async fn client_left(&self) {
        let writer = {
            let mut down = self.down.lock().expect("session lock");
            down.gone = true;
            down.writer.take()
        };
        if let Some(writer) = writer {
            writer.wake();
        }
        let _ = self.upstream.send(Message::Close(None)).await;
    }

    /// Lets go of the frames up to `id` but the newest `keep` of them (0 when the client
    /// confirmed `id`; [`SSE_RESEND`] when a stream only wrote it), then returns those
    /// after it; waits for one (or the end) until `wait` has passed if none is ready.
    pub async fn after(&self, id: u64, keep: usize, wait: std::time::Duration) -> Batch {
        let mut changes = self.changed.subscribe();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            let batch = self.take_after(id, keep);
            if !batch.frames.is_empty() || batch.closed.is_some() {
                return batch;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = &mut deadline => return batch,
            }
        }
    }

    fn take_after(&self, id: u64, keep: usize) -> Batch {
        let mut down = self.down.lock().expect("session lock");
        if id < down.let_go {
            return self.fell_behind(down);
        }
        let sent = down.frames.iter().take_while(|(event, _)| *event <= id).count();
        for _ in keep..sent {
            if let Some((event, _)) = down.frames.pop_front() {
                down.let_go = event;
            }
        }
        let frames: Vec<(u64, Utf8Bytes)> =
            down.frames.iter().filter(|(event, _)| *event > id).cloned().collect();
        if let Some((last, _)) = frames.last() {
            down.handed_out = down.handed_out.max(*last);
        }
        // Whatever this request handed out or let go, a waiting write may go on.
        if let Some(writer) = down.writer.take() {
            writer.wake();
        }
        let closed = if frames.is_empty() { down.closed.clone() } else { None };
        Batch { frames, closed }
    }

    /// Counts an open downstream request while the returned guard lives.
    pub fn reading(self: &Arc<Self>) -> Reading {
        self.down.lock().expect("session lock").readers += 1;
        Reading(self.clone())
    }

    /// Whether no downstream request has been open for `idle`: the client is gone.
    pub fn abandoned(&self, idle: std::time::Duration) -> bool {
        let down = self.down.lock().expect("session lock");
        down.readers == 0 && down.last_reader.elapsed() > idle
    }

    fn push(&self, frame: Utf8Bytes) -> Result<(), WsError> {
        let mut down = self.down.lock().expect("session lock");
        if down.closed.is_some() {
            return Err(WsError::ConnectionClosed);
        }
        if down.frames.len() >= MAX_HELD {
            return Err(WsError::Io(std::io::Error::other("the client stopped confirming frames")));
        }
        let id = down.next_id;
        down.next_id += 1;
        down.frames.push_back((id, frame));
        Ok(())
    }

    /// A request asked for frames already let go: whatever else it has, it gets no
    /// frames past the hole, only the end. The session ends like a WebSocket that fell
    /// behind (4001), in the same hold of the lock, so that no frame pushed meanwhile
    /// can go out before the end; its connection task is told the client has gone.
    fn fell_behind(&self, mut down: std::sync::MutexGuard<'_, Downstream>) -> Batch {
        let ended = Ended {
            code: tether_shared::close::SLOW_CONSUMER,
            reason: "the stream resumed from before the frames the session kept; resume in a new session"
                .into(),
        };
        let first = down.closed.is_none();
        down.frames.clear();
        down.closed.get_or_insert(ended.clone());
        down.gone = true;
        let writer = down.writer.take();
        drop(down);
        if let Some(writer) = writer {
            writer.wake();
        }
        if first {
            self.changed.send_modify(|version| *version += 1);
            let _ = self.upstream.try_send(Message::Close(None));
        }
        Batch { frames: Vec::new(), closed: Some(ended) }
    }

    fn close(&self, close: Ended) {
        let mut down = self.down.lock().expect("session lock");
        down.closed.get_or_insert(close);
        drop(down);
        self.changed.send_modify(|version| *version += 1);
    }
}

/// A downstream request in progress (see [`Session::reading`]).
pub struct Reading(Arc<Session>);

impl Drop for Reading {
    fn drop(&mut self) {
        let mut down = self.0.down.lock().expect("session lock");
        down.readers -= 1;
        down.last_reader = Instant::now();
    }
}

/// The connection task's side of a session: WebSocket messages in and out.
pub struct SessionSocket {
    session: Arc<Session>,
    upstream: mpsc::Receiver<Message>,
}

impl Stream for SessionSocket {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        // An ended session has nothing more to say, as a closed socket.
        if self.session.down.lock().expect("session lock").closed.is_some() {
            return Poll::Ready(None);
        }
        self.upstream.poll_recv(cx).map(|message| message.map(Ok))
    }
}

impl Sink<Message> for SessionSocket {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), WsError>> {
        let mut down = self.session.down.lock().expect("session lock");
        if down.gone {
            return Poll::Ready(Err(WsError::ConnectionClosed));
        }
        let waiting = (down.next_id - 1).saturating_sub(down.handed_out.max(down.let_go));
        if waiting < MAX_WAITING {
            return Poll::Ready(Ok(()));
        }
        down.writer = Some(cx.waker().clone());
        drop(down);
        // What waits must be seen by the requests that will hand it out.
        self.session.changed.send_modify(|version| *version += 1);
        Poll::Pending
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        match message {
            Message::Text(text) => self.session.push(text),
            Message::Close(frame) => {
                let close = match frame {
                    Some(frame) => Ended { code: u16::from(frame.code), reason: frame.reason.to_string() },
                    None => Ended { code: 1000, reason: String::new() },
                };
                self.session.close(close);
                Ok(())
            }
            // Frames are text; pings are the WebSocket's own business.
            _ => Ok(()),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Result<(), WsError>> {
        self.session.changed.send_modify(|version| *version += 1);
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Result<(), WsError>> {
        self.session.close(Ended { code: 1000, reason: String::new() });
        Poll::Ready(Ok(()))
    }
}

impl Drop for SessionSocket {
    fn drop(&mut self) {
        // However the connection task ended, its session's readers learn of it.
        self.session.close(Ended { code: tether_shared::close::ABNORMAL, reason: "connection lost".into() });
    }
}

/// Every open session, by id, and how many each address holds; and the ids of those
/// that ended lately, to be told apart from ids that never were.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Arc<Session>>>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    ended: Mutex<RecentlyEnded>,
}

impl Sessions {
    /// Registers a session unless its address already holds `cap` of them.
    pub fn insert(&self, session: Arc<Session>, cap: usize) -> bool {
        if let Some(peer) = session.peer {
            let mut counts = self.per_address.lock().expect("sessions lock");
            let count = counts.entry(peer).or_default();
            if *count >= cap {
                return false;
            }
            *count += 1;
        }
        self.open.lock().expect("sessions lock").insert(session.id.clone(), session);
        true
    }

    /// The session with this id, if it is open.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.open.lock().expect("sessions lock").get(id).cloned()
    }

    /// Whether session `id` ended lately (see [`RecentlyEnded`]).
    pub fn ended(&self, id: &str) -> bool {
        self.ended.lock().expect("sessions lock").contains(id, Instant::now())
    }

    /// Forgets a session (its connection has ended and its end was handed out, or it
    /// was abandoned), remembering only that it ended. It is recorded as ended before
    /// it leaves the open ones, both locks held, so that a request naming it in between
    /// finds it in one or the other: never a 404 for a session that was.
    pub fn remove(&self, id: &str) {
        let mut open = self.open.lock().expect("sessions lock");
        let Some(session) = open.remove(id) else { return };
        self.ended.lock().expect("sessions lock").insert(id, Instant::now());
        drop(open);
        self.release(Some(session));
    }

    /// Forgets a session without recording that it ended: one whose hello was refused,
    /// whose id no client was ever given. Recording those would let anyone push real
    /// sessions out of the bounded list of ended ones by sending refused hellos.
    pub fn forget(&self, id: &str) {
        let session = self.open.lock().expect("sessions lock").remove(id);
        self.release(session);
    }

    /// Gives back the place `session` held in its address's count.
    fn release(&self, session: Option<Arc<Session>>) {
        let Some(peer) = session.and_then(|session| session.peer) else { return };
        let mut counts = self.per_address.lock().expect("sessions lock");
        if let Some(count) = counts.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A request naming a session while it is being let go finds it open or ended,
    /// never neither (which would answer 404 `unknown_session` where 410 is due).
    #[test]
    fn a_session_let_go_is_open_or_ended_at_every_moment() {
        const SESSIONS: usize = 20_000;
        let sessions = Arc::new(Sessions::default());
        let ids: Arc<Vec<String>> = Arc::new((0..SESSIONS).map(|n| format!("s{n}")).collect());
        for id in ids.iter() {
            assert!(sessions.insert(Session::new(id.clone(), None).0, usize::MAX));
        }
        // The index being let go now, and one past the end once all are.
        let letting_go = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(std::sync::Barrier::new(2));
        let watcher = std::thread::spawn({
            let (sessions, ids, letting_go) = (sessions.clone(), ids.clone(), letting_go.clone());
            let started = started.clone();
            move || {
                started.wait();
                let mut neither = 0;
                loop {
                    let index = letting_go.load(Ordering::Acquire);
                    let Some(id) = ids.get(index) else { return neither };
                    if sessions.get(id).is_none() && !sessions.ended(id) {
                        neither += 1;
                    }
                }
            }
        });
        started.wait();
        for (index, id) in ids.iter().enumerate() {
            letting_go.store(index, Ordering::Release);
            sessions.remove(id);
        }
        letting_go.store(SESSIONS, Ordering::Release);
        assert_eq!(watcher.join().unwrap(), 0, "times a session was neither open nor ended");
    }

    /// A session forgotten without a record (its hello was refused) leaves the ended
    /// ones as they were, and its address's count too.
    #[test]
    fn a_forgotten_session_is_not_recorded_as_ended() {
        let sessions = Sessions::default();
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        assert!(sessions.insert(Session::new("real".into(), peer).0, 1));
        sessions.remove("real");
        for n in 0..super::super::recent::MOST + 1 {
            let id = format!("refused{n}");
            assert!(sessions.insert(Session::new(id.clone(), peer).0, 1), "the cap is given back");
            sessions.forget(&id);
            assert!(!sessions.ended(&id));
        }
        assert!(sessions.ended("real"));
    }
}
