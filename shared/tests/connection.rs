//! The connection state machine, scenario by scenario, with time under the test's control.

use std::time::Duration;

use serde_json::json;
use tether_shared::close;
use tether_shared::connection::RoomState;
use tether_shared::{
    Action, BackoffConfig, ClientFrame, Connection, ConnectionConfig, Event, Input, Jitter, Limits, Millis,
    RejectCode, ServerFrame, SocketId, State, Timer, TokenError, User,
};

/// Plays the driver: carries out actions, remembers which socket is current, and moves
/// time forward to the core's own deadlines.
struct Harness {
    core: Connection,
    now: Millis,
    socket: Option<SocketId>,
    sent: Vec<ClientFrame>,
    closed: Vec<(SocketId, u16)>,
    opened: u32,
    /// The endpoint of every socket opened, in order.
    endpoints: Vec<String>,
    /// Times the core asked for a token.
    fetches: u32,
    events: Vec<Event>,
}

fn config() -> ConnectionConfig {
    ConnectionConfig {
        backoff: BackoffConfig {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(8),
            max_attempts: Some(3),
            jitter: Jitter::None,
        },
        ..ConnectionConfig::default()
    }
}

fn user() -> User {
    User::new("u1", "Ada", "#123456")
}

fn welcome() -> String {
    ServerFrame::Welcome {
        v: 1,
        session: "s".into(),
        resume_token: "rt-1".into(),
        heartbeat_ms: 5_000,
        limits: Limits {
            max_body_bytes: 1024,
            publish_per_sec: 10,
            publish_burst: 20,
            max_rooms: 8,
            ..Limits::default()
        },
        user: user(),
    }
    .encode()
}

impl Harness {
    fn new(config: ConnectionConfig) -> Self {
        Harness {
            core: Connection::new(config, 1),
            now: Millis(1_000_000),
            socket: None,
            sent: Vec::new(),
            closed: Vec::new(),
            opened: 0,
            endpoints: Vec::new(),
            fetches: 0,
            events: Vec::new(),
        }
    }

    fn input(&mut self, input: Input) {
        self.core.handle(input, self.now);
        self.carry_out();
    }

    /// What a driver does after every call into the core.
    fn carry_out(&mut self) {
        for action in self.core.drain_actions() {
            match action {
                Action::Open { socket, endpoint } => {
                    assert!(self.socket.is_none(), "a second socket while {:?} is open", self.socket);
                    self.socket = Some(socket);
                    self.opened += 1;
                    self.endpoints.push(endpoint);
                }
                Action::FetchToken => self.fetches += 1,
                Action::Send(socket, text) => {
                    assert_eq!(Some(socket), self.socket, "send on a socket that is not current");
                    self.sent.push(ClientFrame::decode(&text).unwrap());
                }
                Action::SendBinary(socket, bytes) => {
                    assert_eq!(Some(socket), self.socket, "send on a socket that is not current");
                    self.sent.push(ClientFrame::decode_msgpack(&bytes).unwrap());
                }
                Action::Close { socket, code, .. } => {
                    assert_eq!(Some(socket), self.socket);
                    self.socket = None;
                    self.closed.push((socket, code));
                }
            }
        }
        self.events.extend(self.core.drain_events());
    }

    fn socket(&self) -> SocketId {
        self.socket.expect("a socket is open")
    }

    fn open(&mut self) {
        let socket = self.socket();
        self.input(Input::SocketOpened(socket));
        assert!(matches!(self.sent.last(), Some(ClientFrame::Hello { .. })));
        self.receive(&welcome());
        assert_eq!(self.core.state(), &State::Open);
    }

    fn receive(&mut self, text: &str) {
        let socket = self.socket();
        self.input(Input::Received(socket, text.into()));
    }

    /// The server side drops the socket.
    fn drop_socket(&mut self, code: u16) {
        let socket = self.socket.take().expect("open socket");
        self.input(Input::SocketClosed { socket, code, reason: String::new() });
    }

    /// Moves time to `timer`'s deadline and wakes the core, as a driver's one timer would.
    fn advance_to_timer(&mut self, timer: Timer) {
        let due = self.due(timer).unwrap_or_else(|| panic!("{timer:?} is not armed"));
        assert!(
            self.core.poll_timeout().is_some_and(|next| next <= due),
            "poll_timeout is the earliest deadline"
        );
        self.now = due;
        self.wake();
    }

    /// The driver's timer fires at `now`.
    fn wake(&mut self) {
        self.core.handle_timeout(self.now);
        self.carry_out();
    }

    fn due(&self, timer: Timer) -> Option<Millis> {
        self.core.deadline(timer)
    }

    fn states(&self) -> Vec<State> {
        self.events
            .iter()
            .filter_map(|e| if let Event::State(s) = e { Some(s.clone()) } else { None })
            .collect()
    }

    fn publish(&mut self, id: &str, room: &str, priority: u8) {
        self.input(Input::Publish { id: id.into(), room: room.into(), body: json!(id), priority });
    }

    fn ack(&mut self, id: &str, room: &str, seq: u64) {
        self.receive(&ServerFrame::Ack { id: id.into(), room: room.into(), seq, ts: Millis(1) }.encode());
    }

    fn take_sent(&mut self) -> Vec<ClientFrame> {
        std::mem::take(&mut self.sent)
    }
}

fn publish_ids(frames: &[ClientFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| if let ClientFrame::Publish { id, .. } = f { Some(id.clone()) } else { None })
        .collect()
}

/// The `joined` answer for `room`, with this client its only member.
fn joined(room: &str, seq: u64, epoch: &str) -> String {
    let presence = tether_shared::PresenceMode::Full;
    ServerFrame::Joined {
        room: room.into(),
        seq,
        epoch: epoch.into(),
        members: vec![user()],
        count: 1,
        presence,
    }
    .encode()
}

fn message(room: &str, seq: u64) -> String {
    ServerFrame::Message {
        room: room.into(),
        seq,
        id: format!("m{seq}"),
        from: user(),
        body: json!(seq),
        ts: Millis(seq),
    }
    .encode()
}

#[test]
fn connect_sends_hello_and_opens_on_welcome() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    assert_eq!(h.core.state(), &State::Connecting { attempt: 0 });
    assert!(h.due(Timer::Connect).is_some());
    h.open();
    assert_eq!(h.due(Timer::Connect), None, "the connect timeout is disarmed once welcomed");
    assert_eq!(h.due(Timer::Heartbeat), Some(h.now.after(Duration::from_secs(5))));
    assert!(h.events.contains(&Event::Welcome { user: user() }));
    assert_eq!(h.core.user(), Some(&user()));
}

#[test]
fn nothing_but_hello_is_sent_before_welcome() {
    let mut h = Harness::new(config());
    h.publish("early", "r", 0);
    h.input(Input::Join("r".into()));
    h.input(Input::Connect);
    let socket = h.socket();
    h.input(Input::SocketOpened(socket));
    assert!(matches!(h.take_sent().as_slice(), [ClientFrame::Hello { v: 1, .. }]));
    h.receive(&welcome());
    let sent = h.take_sent();
    assert!(matches!(&sent[0], ClientFrame::Resume { rooms } if rooms.len() == 1 && rooms[0].room == "r"));
    assert_eq!(publish_ids(&sent), ["early"]);
}

#[test]
fn messages_leave_the_outbox_on_ack_and_duplicates_are_harmless() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.publish("a", "r", 0);
    assert_eq!(publish_ids(&h.take_sent()), ["a"]);
    assert_eq!(h.core.outbox().len(), 1);
    h.ack("a", "r", 7);
    assert!(h.core.outbox().is_empty());
    assert!(
        h.events.iter().any(|e| matches!(e, Event::Acked { envelope, seq: 7, .. } if envelope.id == "a"))
    );
    let acked_events = h.events.len();
    h.ack("a", "r", 7);
    assert_eq!(h.events.len(), acked_events, "a second ack changes nothing");
}

#[test]
fn drop_then_backoff_then_reconnect_resends_unacked_in_order_after_resume() {
    let mut h = Harness::new(config());
    h.input(Input::Join("r".into()));
    h.input(Input::Connect);
    h.open();
    h.receive(&message("r", 3));
    h.publish("a", "r", 0);
    h.publish("b", "r", 0);
    h.ack("a", "r", 4);
    h.take_sent();

    let dropped_at = h.now;
    h.drop_socket(close::ABNORMAL);
    let retry_at = dropped_at.after(Duration::from_secs(1));
    assert_eq!(h.core.state(), &State::Reconnecting { attempt: 1, retry_at });
    assert_eq!(h.core.last_error(), Some("The connection was lost (1006)"));
    h.advance_to_timer(Timer::Reconnect);
    assert_eq!(h.core.state(), &State::Connecting { attempt: 1 });
    h.open();
    let sent = h.take_sent();
    assert!(matches!(&sent[1], ClientFrame::Resume { rooms } if rooms[0].since == Some(3)), "{sent:?}");
    assert_eq!(publish_ids(&sent), ["b"]);
    assert_eq!(h.opened, 2);
}

#[test]
fn backoff_grows_and_gives_up_after_max_attempts() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    let mut delays = Vec::new();
    for _ in 0..3 {
        let before = h.now;
        h.drop_socket(close::ABNORMAL);
        let State::Reconnecting { retry_at, .. } = h.core.state().clone() else { panic!("reconnecting") };
        delays.push(retry_at.0 - before.0);
        h.advance_to_timer(Timer::Reconnect);
    }
    assert_eq!(delays, [1_000, 2_000, 4_000]);
    h.drop_socket(close::ABNORMAL);
    assert!(
        matches!(h.core.state(), State::Failed { reason } if reason.starts_with("Gave up after 3 attempts"))
    );
    assert_eq!(h.due(Timer::Reconnect), None);
}

#[test]
fn a_missed_pong_closes_the_dead_socket_and_reconnects() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.take_sent();
    h.advance_to_timer(Timer::Heartbeat);
    assert!(matches!(h.take_sent().as_slice(), [ClientFrame::Ping { .. }]));
    let deadline = h.due(Timer::PongDeadline).expect("pong deadline armed");
    assert_eq!(deadline, h.now.after(Duration::from_secs(5)));
    let socket = h.socket();
    h.advance_to_timer(Timer::PongDeadline);
    assert_eq!(h.closed, [(socket, close::HEARTBEAT_TIMEOUT)]);
    assert!(matches!(h.core.state(), State::Reconnecting { attempt: 1, .. }));
}

#[test]
fn any_frame_counts_as_a_pong() {
    let mut h = Harness::new(config());
    h.input(Input::Join("r".into()));
    h.input(Input::Connect);
    h.open();
    h.advance_to_timer(Timer::Heartbeat);
    assert!(h.due(Timer::PongDeadline).is_some());
    h.receive(&ServerFrame::Pong { nonce: 1 }.encode());
    assert_eq!(h.due(Timer::PongDeadline), None);
    h.advance_to_timer(Timer::Heartbeat);
    h.receive(&message("r", 1));
    assert_eq!(h.due(Timer::PongDeadline), None);
    assert_eq!(h.core.state(), &State::Open);
}

#[test]
fn a_stalled_handshake_times_out() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    let socket = h.socket();
    h.advance_to_timer(Timer::Connect);
    assert_eq!(h.closed, [(socket, close::CONNECT_TIMEOUT)]);
    assert!(matches!(h.core.state(), State::Reconnecting { attempt: 1, .. }));
}

#[test]
fn an_overdue_ack_resends_the_same_id() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.publish("a", "r", 0);
    h.take_sent();
    h.advance_to_timer(Timer::AckTimeout);
    assert_eq!(publish_ids(&h.take_sent()), ["a"]);
    assert!(h.due(Timer::AckTimeout).is_some(), "re-armed for the resent copy");
}

#[test]
fn offline_waits_quietly_and_online_reconnects_at_once() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.drop_socket(close::ABNORMAL);
    h.advance_to_timer(Timer::Reconnect);
    h.drop_socket(close::ABNORMAL);
    assert!(matches!(h.core.state(), State::Reconnecting { attempt: 2, .. }));

    h.input(Input::NetworkOffline);
    assert_eq!(h.core.state(), &State::Offline);
    assert_eq!(h.due(Timer::Reconnect), None, "nothing is retried while offline");
    h.publish("queued", "r", 0);
    assert!(publish_ids(&h.take_sent()).is_empty());

    let opened = h.opened;
    h.input(Input::NetworkOnline);
    assert_eq!(h.opened, opened + 1, "back online: connects immediately");
    assert_eq!(h.core.state(), &State::Connecting { attempt: 0 }, "backoff was reset");
    h.open();
    assert_eq!(publish_ids(&h.take_sent()), ["queued"]);
}

#[test]
fn going_offline_while_open_closes_the_socket() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    let socket = h.socket();
    h.input(Input::NetworkOffline);
    assert_eq!(h.closed, [(socket, close::NORMAL)]);
    assert_eq!(h.core.state(), &State::Offline);
}

#[test]
fn a_visible_page_skips_the_wait_and_pings_an_open_socket() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.take_sent();
    h.input(Input::PageVisible);
    assert!(matches!(h.take_sent().as_slice(), [ClientFrame::Ping { .. }]));
    h.drop_socket(close::ABNORMAL);
    let opened = h.opened;
    h.input(Input::PageVisible);
    assert_eq!(h.opened, opened + 1);
}

#[test]
fn disconnect_is_final_until_connect() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    let socket = h.socket();
    h.input(Input::Disconnect);
    assert_eq!(h.closed, [(socket, close::NORMAL)]);
    assert_eq!(h.core.state(), &State::Closed);
    assert_eq!(h.core.poll_timeout(), None, "every deadline disarmed");
    // Late events from the old socket, and stray timers, change nothing.
    h.input(Input::SocketClosed { socket, code: close::ABNORMAL, reason: String::new() });
    h.now = h.now.after(Duration::from_secs(60));
    h.wake();
    h.input(Input::NetworkOnline);
    assert_eq!((h.core.state(), h.opened), (&State::Closed, 1));
    h.input(Input::Connect);
    assert_eq!(h.opened, 2);
}

#[test]
fn auth_failures_and_impossible_addresses_stop_retrying() {
    for code in [close::UNAUTHORIZED, close::TOKEN_EXPIRED, close::BAD_HELLO, close::INVALID_ADDRESS] {
        let mut h = Harness::new(config());
        h.input(Input::Connect);
        h.drop_socket(code);
        assert!(matches!(h.core.state(), State::Failed { .. }), "{code}");
        assert_eq!(h.due(Timer::Reconnect), None);
    }
}

#[test]
fn events_from_an_old_socket_are_ignored() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    let old = h.socket();
    h.advance_to_timer(Timer::Connect);
    h.advance_to_timer(Timer::Reconnect);
    assert_ne!(h.socket(), old);
    h.input(Input::SocketOpened(old));
    h.input(Input::Received(old, welcome()));
    assert_eq!(h.core.state(), &State::Connecting { attempt: 1 });
    assert!(h.take_sent().is_empty());
}

#[test]
fn rejections_remove_or_retry_by_code() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.publish("big", "r", 0);
    h.publish("fast", "r", 0);
    h.take_sent();
    let reject = |id: &str, code| {
        ServerFrame::Reject { id: id.into(), code, message: "no".into(), refusal: None }.encode()
    };
    h.receive(&reject("big", RejectCode::TooLarge));
    h.receive(&reject("fast", RejectCode::RateLimited));
    let outcomes: Vec<(String, bool)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { envelope, will_retry, .. } => Some((envelope.id.clone(), *will_retry)),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, [("big".to_owned(), false), ("fast".to_owned(), true)]);
    assert_eq!(h.core.outbox().iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["fast"]);
    h.advance_to_timer(Timer::AckTimeout);
    assert_eq!(publish_ids(&h.take_sent()), ["fast"]);
}

/// `unconfirmed` says the message may have been stored. The core keeps it, re-sends it
/// under the same id (never a new one), and never gives it up as lost: not when its ack
/// is overdue, nor when a reconnect comes after its TTL.
#[test]
fn an_unconfirmed_publish_is_sent_again_with_its_id_and_never_given_up() {
    let mut config = config();
    config.outbox.default_ttl = Some(Duration::from_secs(5));
    let mut h = Harness::new(config);
    h.input(Input::Connect);
    h.open();
    h.publish("maybe", "r", 0);
    assert_eq!(publish_ids(&h.take_sent()), ["maybe"]);
    let unconfirmed = ServerFrame::Reject {
        id: "maybe".into(),
        code: RejectCode::Unconfirmed,
        message: "the store did not confirm it".into(),
        refusal: None,
    };
    h.receive(&unconfirmed.encode());
    assert!(
        matches!(h.events.last(), Some(Event::Rejected { will_retry: true, .. })),
        "{:?}",
        h.events.last()
    );
    h.advance_to_timer(Timer::AckTimeout);
    assert_eq!(publish_ids(&h.take_sent()), ["maybe"]);

    // The connection drops and comes back long after the TTL.
    h.drop_socket(close::GOING_AWAY);
    h.now = Millis(h.now.0 + 60_000);
    h.wake();
    h.input(Input::Connect);
    h.open();
    assert_eq!(publish_ids(&h.take_sent()), ["maybe"], "sent again, with the same id");
    let dropped: Vec<_> = h.events.iter().filter(|e| matches!(e, Event::Dropped(_))).collect();
    assert!(dropped.is_empty(), "a message the server may hold was given up: {dropped:?}");
    h.ack("maybe", "r", 7);
    assert!(h.core.outbox().is_empty());
}

#[test]
fn cursors_follow_messages_and_reset_with_the_epoch() {
    let mut h = Harness::new(config());
    h.input(Input::Join("r".into()));
    h.input(Input::Connect);
    h.open();
    h.receive(&joined("r", 10, "e1"));
    assert_eq!(h.core.rooms()["r"].last_seq, None, "the cursor waits for the history asked for");
    h.receive(&message("r", 10));
    assert_eq!(h.core.rooms()["r"], RoomState { last_seq: Some(10), epoch: Some("e1".into()), joined: true });
    h.receive(&message("r", 11));
    h.receive(&message("r", 12));
    assert_eq!(h.core.rooms()["r"].last_seq, Some(12));
    h.drop_socket(close::GOING_AWAY);
    assert!(!h.core.rooms()["r"].joined);
    h.advance_to_timer(Timer::Reconnect);
    h.open();
    h.receive(&joined("r", 2, "e2"));
    h.receive(&message("r", 2));
    assert_eq!(h.core.rooms()["r"].last_seq, Some(2), "a new epoch starts a new cursor");
    // A cursor the server says is beyond its head is dropped; the replay sets it anew.
    h.receive(&message("r", 40));
    let ahead = ServerFrame::Error {
        code: tether_shared::ErrorCode::CursorAhead,
        message: "since 40 is beyond the room's latest seq 3".into(),
        about: Some("r".into()),
        refusal: None,
    };
    h.receive(&ahead.encode());
    assert_eq!(h.core.rooms()["r"].last_seq, None);
    h.receive(&message("r", 1));
    assert_eq!(h.core.rooms()["r"].last_seq, Some(1));
}

#[test]
fn the_state_walks_through_connect_drop_reconnect() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.drop_socket(close::GOING_AWAY);
    h.advance_to_timer(Timer::Reconnect);
    h.open();
    let states = h.states();
    assert!(
        matches!(
            states.as_slice(),
            [
                State::Connecting { attempt: 0 },
                State::Open,
                State::Reconnecting { attempt: 1, .. },
                State::Connecting { attempt: 1 },
                State::Open,
            ]
        ),
        "{states:?}"
    );
}

#[test]
fn queue_events_report_size_changes() {
    let mut h = Harness::new(config());
    h.publish("a", "r", 0);
    let queue: Vec<usize> = h
        .events
        .iter()
        .filter_map(|e| if let Event::Queue { messages, .. } = e { Some(*messages) } else { None })
        .collect();
    assert_eq!(queue, [1]);
}

#[test]
fn a_room_without_a_cursor_asks_for_recent_history_and_one_with_a_cursor_resumes() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.take_sent();
    h.input(Input::Join("fresh".into()));
    assert_eq!(
        h.take_sent(),
        [ClientFrame::Join { room: "fresh".into(), since: None, history: Some(50) }],
        "the default join history is 50"
    );
    h.receive(&message("fresh", 9));
    h.drop_socket(close::GOING_AWAY);
    h.advance_to_timer(Timer::Reconnect);
    h.open();
    let sent = h.take_sent();
    assert!(
        matches!(&sent[1], ClientFrame::Resume { rooms } if rooms[0].since == Some(9) && rooms[0].history.is_none()),
        "{sent:?}"
    );
}

#[test]
fn a_join_lost_before_its_replay_asks_for_the_history_again() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.input(Input::Join("fresh".into()));
    h.receive(&joined("fresh", 9, "e1"));
    // The server could not read the history to replay: it closes with 1011.
    h.drop_socket(close::INTERNAL);
    h.advance_to_timer(Timer::Reconnect);
    h.take_sent();
    h.open();
    let sent = h.take_sent();
    assert!(
        matches!(&sent[1], ClientFrame::Resume { rooms }
            if rooms[0].since.is_none() && rooms[0].history == Some(50)),
        "the recent history is asked for again, not resumed past: {sent:?}"
    );
}

#[test]
fn a_new_token_is_sent_as_a_refresh_when_open_and_used_by_the_next_hello() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.input(Input::RefreshToken("fresh".into()));
    assert!(matches!(h.sent.last(), Some(ClientFrame::Refresh { token }) if token == "fresh"));
    h.drop_socket(close::ABNORMAL);
    h.advance_to_timer(Timer::Reconnect);
    let socket = h.socket();
    h.input(Input::SocketOpened(socket));
    assert!(
        matches!(h.sent.last(), Some(ClientFrame::Hello { token: Some(t), .. }) if t == "fresh"),
        "the next hello carries the new token: {:?}",
        h.sent.last()
    );
}

fn three_endpoints() -> Vec<String> {
    vec!["ws://a/ws".into(), "ws://b/ws".into(), "ws://c/ws".into()]
}

#[test]
fn a_failed_attempt_moves_to_the_next_endpoint_and_a_lost_connection_tries_its_own_first() {
    let mut h = Harness::new(config());
    h.core.set_endpoints(three_endpoints());
    h.input(Input::Connect);
    let first = h.endpoints[0].clone();
    assert_eq!(h.core.endpoint(), first);
    // The attempt fails before any welcome: the retry goes to the next address.
    h.drop_socket(close::ABNORMAL);
    h.advance_to_timer(Timer::Reconnect);
    let second = h.endpoints[1].clone();
    assert_ne!(first, second);
    h.open();
    // Welcomed there, then lost: its own address once more, then the next.
    h.drop_socket(close::SERVICE_RESTART);
    h.advance_to_timer(Timer::Reconnect);
    assert_eq!(h.endpoints[2], second);
    h.drop_socket(close::ABNORMAL);
    h.advance_to_timer(Timer::Reconnect);
    let third = h.endpoints[3].clone();
    assert!(![first.as_str(), second.as_str()].contains(&third.as_str()), "{:?}", h.endpoints);
    assert_eq!(h.core.endpoint(), third);
}

#[test]
fn an_impossible_endpoint_among_several_is_skipped_at_once() {
    let mut h = Harness::new(config());
    h.core.set_endpoints(vec!["http://nope".into(), "ws://good/ws".into()]);
    h.input(Input::Connect);
    while h.endpoints.last().is_some_and(|e| e != "http://nope") {
        // Started on the good one: make it fail once to reach the bad one.
        h.drop_socket(close::ABNORMAL);
        h.advance_to_timer(Timer::Reconnect);
    }
    h.drop_socket(close::INVALID_ADDRESS);
    assert_eq!(
        h.endpoints.last().map(String::as_str),
        Some("ws://good/ws"),
        "the next is tried with no wait"
    );
    assert!(matches!(h.core.state(), State::Connecting { .. }));
    // Never again the bad one.
    for _ in 0..3 {
        h.drop_socket(close::ABNORMAL);
        h.advance_to_timer(Timer::Reconnect);
        assert_eq!(h.endpoints.last().map(String::as_str), Some("ws://good/ws"));
    }
    // With only an impossible address, the core gives up in words.
    let mut alone = Harness::new(config());
    alone.core.set_endpoints(vec!["http://nope".into()]);
    alone.input(Input::Connect);
    alone.drop_socket(close::INVALID_ADDRESS);
    assert!(
        matches!(alone.core.state(), State::Failed { reason } if reason.starts_with("Invalid server address"))
    );
}

#[test]
fn with_a_token_provider_the_core_asks_before_connecting_and_retries_a_failing_one() {
    let mut h = Harness::new(config());
    h.core.set_fetch_tokens(true);
    h.input(Input::Connect);
    assert_eq!((h.fetches, h.opened), (1, 0), "a token first, then a socket");
    assert_eq!(h.core.state(), &State::Connecting { attempt: 0 });
    h.input(Input::TokenFailed("backend down".into()));
    assert!(h.core.last_error().is_some_and(|e| e.contains("backend down")));
    let asked_at = h.now;
    h.advance_to_timer(Timer::TokenRetry);
    assert_eq!((h.fetches, h.now.since(asked_at)), (2, Duration::from_secs(1)));
    h.input(Input::TokenFailed("backend down".into()));
    let asked_at = h.now;
    h.advance_to_timer(Timer::TokenRetry);
    assert_eq!((h.fetches, h.now.since(asked_at)), (3, Duration::from_secs(2)), "the wait doubles");
    h.input(Input::RefreshToken("t1".into()));
    assert_eq!(h.opened, 1);
    let socket = h.socket();
    h.input(Input::SocketOpened(socket));
    assert!(matches!(h.sent.last(), Some(ClientFrame::Hello { token: Some(t), .. }) if t == "t1"));
    h.receive(&welcome());
    assert_eq!(h.core.state(), &State::Open);
    assert_eq!(h.due(Timer::TokenRetry), None);
}

#[test]
fn a_provider_that_says_signed_out_stops_the_connect_in_words() {
    let mut h = Harness::new(config());
    h.core.set_fetch_tokens(true);
    h.input(Input::Connect);
    h.input(Input::TokenFailed(TokenError::SignedOut("no session".into())));
    assert_eq!(h.core.state(), &State::Failed { reason: "Sign-in failed: no session".into() });
    assert_eq!((h.opened, h.due(Timer::TokenRetry)), (0, None), "nothing more is tried");
    // Until the app connects again (after the person signed in).
    h.input(Input::Connect);
    assert_eq!(h.fetches, 2);
}

#[test]
fn with_a_token_provider_a_warning_renews_in_place_and_a_refusal_reconnects_with_a_new_token() {
    let mut h = Harness::new(config());
    h.core.set_fetch_tokens(true);
    h.input(Input::Connect);
    h.input(Input::RefreshToken("t1".into()));
    h.open();
    h.receive(&ServerFrame::TokenExpiring { expires_at: 99 }.encode());
    assert_eq!(h.fetches, 2);
    h.input(Input::RefreshToken("t2".into()));
    assert!(matches!(h.sent.last(), Some(ClientFrame::Refresh { token }) if token == "t2"));
    assert_eq!(h.opened, 1, "renewed on the same socket");
    // The server refuses the token anyway: not "Sign-in refused" but a retry, with a new token.
    h.drop_socket(close::TOKEN_EXPIRED);
    assert!(matches!(h.core.state(), State::Reconnecting { attempt: 1, .. }), "{:?}", h.core.state());
    h.advance_to_timer(Timer::Reconnect);
    assert_eq!((h.fetches, h.opened), (3, 1), "a new token before the new socket");
    h.input(Input::RefreshToken("t3".into()));
    let socket = h.socket();
    h.input(Input::SocketOpened(socket));
    assert!(matches!(h.sent.last(), Some(ClientFrame::Hello { token: Some(t), .. }) if t == "t3"));
    // Without a provider, the same close is final.
    let mut plain = Harness::new(config());
    plain.input(Input::Connect);
    plain.open();
    plain.drop_socket(close::TOKEN_EXPIRED);
    assert!(matches!(plain.core.state(), State::Failed { .. }));
}

#[test]
fn waking_from_sleep_reconnects_at_once_instead_of_waiting_out_an_old_backoff() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    for _ in 0..2 {
        h.drop_socket(close::ABNORMAL);
        h.advance_to_timer(Timer::Reconnect);
    }
    h.drop_socket(close::ABNORMAL);
    assert!(matches!(h.core.state(), State::Reconnecting { attempt: 3, .. }));
    let opened = h.opened;
    // The laptop sleeps for an hour; the driver's timer fires late.
    h.now = h.now.after(Duration::from_secs(3_600));
    h.wake();
    assert_eq!(h.opened, opened + 1, "one new attempt, at once");
    assert_eq!(h.core.state(), &State::Connecting { attempt: 0 }, "with a fresh backoff");
}

#[test]
fn a_heartbeat_deadline_that_passed_in_sleep_is_checked_again_not_counted_as_a_failure() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.advance_to_timer(Timer::Heartbeat);
    assert!(matches!(h.sent.last(), Some(ClientFrame::Ping { .. })));
    let sleep_began = h.now;
    // Asleep past the pong deadline and many heartbeats.
    h.now = h.now.after(Duration::from_secs(600));
    h.take_sent();
    h.wake();
    assert_eq!(h.core.state(), &State::Open, "the socket is not given up on unchecked");
    assert!(h.closed.is_empty());
    assert!(matches!(h.take_sent().as_slice(), [ClientFrame::Ping { .. }]), "checked with one ping");
    assert_eq!(h.due(Timer::PongDeadline), Some(h.now.after(Duration::from_secs(5))));
    assert!(h.now.since(sleep_began) > Duration::from_secs(60));
    // The socket did die in the sleep: one failure, then a retry after the first delay.
    h.advance_to_timer(Timer::PongDeadline);
    assert_eq!(h.closed.len(), 1);
    assert!(matches!(h.core.state(), State::Reconnecting { attempt: 1, .. }), "{:?}", h.core.state());
}

#[test]
fn a_clock_set_back_moves_every_deadline_back_with_it() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.publish("m1", "r", 0);
    let heartbeat_in = h.now.until(h.due(Timer::Heartbeat).unwrap());
    let ack_in = h.now.until(h.due(Timer::AckTimeout).unwrap());
    // Someone sets the clock back ten minutes.
    h.now = Millis(h.now.0 - 600_000);
    h.wake();
    assert_eq!(h.now.until(h.due(Timer::Heartbeat).unwrap()), heartbeat_in);
    assert_eq!(h.now.until(h.due(Timer::AckTimeout).unwrap()), ack_in);
    h.advance_to_timer(Timer::Heartbeat);
    assert!(matches!(h.sent.last(), Some(ClientFrame::Ping { .. })), "the heartbeat still beats");
    // And forward again by less than the sleep gap: the timers just fire.
    h.now = h.now.after(Duration::from_secs(7));
    h.wake();
    assert_eq!(h.closed.len(), 1, "the pong deadline passed: the connection is dead");
}

#[test]
fn stats_count_round_trips_frames_bytes_and_reconnects() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    let stats = h.core.stats().clone();
    assert_eq!((stats.frames_sent, stats.frames_received, stats.reconnects), (1, 1, 0), "hello and welcome");
    assert_eq!(stats.bytes_received, welcome().len() as u64);
    assert_eq!(stats.connected_since, Some(h.now));
    assert_eq!(stats.rtt, None);
    // A heartbeat answered 40 ms later, then one 120 ms later.
    for (delay, smoothed) in [(40, 40), (120, 50)] {
        h.advance_to_timer(Timer::Heartbeat);
        let Some(ClientFrame::Ping { nonce }) = h.sent.last().cloned() else { panic!("a ping") };
        h.now = h.now.after(Duration::from_millis(delay));
        h.receive(&ServerFrame::Pong { nonce }.encode());
        assert_eq!(h.core.stats().rtt, Some(Duration::from_millis(delay)));
        assert_eq!(h.core.stats().smoothed_rtt, Some(Duration::from_millis(smoothed)));
        assert!(h.events.contains(&Event::RoundTrip { rtt: Duration::from_millis(delay) }));
    }
    assert_eq!(h.core.stats().frames_sent, 3);
    h.drop_socket(close::ABNORMAL);
    assert_eq!(h.core.stats().connected_since, None);
    h.advance_to_timer(Timer::Reconnect);
    h.open();
    assert_eq!(h.core.stats().reconnects, 1);
}

#[test]
fn in_msgpack_the_core_writes_and_reads_binary_frames() {
    let mut h = Harness::new(config());
    h.core.set_encoding(tether_shared::Encoding::MessagePack);
    h.input(Input::Connect);
    let socket = h.socket();
    h.input(Input::SocketOpened(socket));
    assert!(matches!(h.sent.last(), Some(ClientFrame::Hello { .. })), "the hello went as MessagePack");
    let welcome = ServerFrame::decode(&welcome()).unwrap().encode_msgpack();
    h.input(Input::ReceivedBinary(socket, welcome.clone()));
    assert_eq!(h.core.state(), &State::Open);
    assert_eq!(h.core.stats().bytes_received, welcome.len() as u64);
    h.publish("m1", "r", 0);
    assert_eq!(publish_ids(&h.take_sent()), ["m1"]);
    h.input(Input::ReceivedBinary(socket, vec![0xc1]));
    assert!(
        h.events.iter().any(|e| matches!(
            e,
            Event::Frame(ServerFrame::Error { code: tether_shared::ErrorCode::InvalidFrame, .. })
        )),
        "an unreadable binary frame is reported, not fatal"
    );
}

#[test]
fn a_join_the_server_failed_is_asked_again_with_backoff_until_it_goes_through() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.input(Input::Join("r".into()));
    h.take_sent();
    let failed = ServerFrame::Error {
        code: tether_shared::ErrorCode::Internal,
        message: "could not join the room".into(),
        about: Some("r".into()),
        refusal: None,
    }
    .encode();
    h.receive(&failed);
    let first = h.due(Timer::Rejoin).expect("a rejoin is armed");
    assert_eq!(first, h.now.after(Duration::from_secs(1)));
    h.advance_to_timer(Timer::Rejoin);
    assert!(matches!(h.take_sent().as_slice(), [ClientFrame::Join { room, .. }] if room == "r"));
    // It fails again: the next wait is twice as long.
    h.receive(&failed);
    assert_eq!(h.due(Timer::Rejoin), Some(h.now.after(Duration::from_secs(2))));
    h.advance_to_timer(Timer::Rejoin);
    assert!(matches!(h.take_sent().as_slice(), [ClientFrame::Join { room, .. }] if room == "r"));
    h.receive(
        &ServerFrame::Joined {
            room: "r".into(),
            seq: 0,
            epoch: "e".into(),
            members: vec![],
            count: 1,
            presence: Default::default(),
        }
        .encode(),
    );
    assert_eq!(h.due(Timer::Rejoin), None);
    // An error about a room it is in asks nothing again.
    h.receive(&failed);
    assert_eq!(h.due(Timer::Rejoin), None, "r is joined");
}

#[test]
fn a_publish_refused_not_joined_while_its_rooms_join_is_asked_again_waits_for_the_join() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.input(Input::Join("r".into()));
    h.receive(&joined("r", 0, "e"));
    h.publish("m1", "r", 0);
    assert_eq!(publish_ids(&h.take_sent()), ["m1"]);
    // The socket drops with m1's ack lost (it may be stored), and the resume's join of
    // `r` meets a failure of the server's own; the re-sent m1 is then refused
    // `not_joined`.
    h.drop_socket(1006);
    h.advance_to_timer(Timer::Reconnect);
    h.open();
    assert_eq!(publish_ids(&h.take_sent()), ["m1"], "re-sent after the resume");
    let failed = ServerFrame::Error {
        code: tether_shared::ErrorCode::Internal,
        message: "could not join the room".into(),
        about: Some("r".into()),
        refusal: None,
    };
    h.receive(&failed.encode());
    let not_joined = ServerFrame::Reject {
        id: "m1".into(),
        code: RejectCode::NotJoined,
        message: "join the room before publishing to it".into(),
        refusal: None,
    };
    h.receive(&not_joined.encode());
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Rejected { envelope, will_retry: true, .. } if envelope.id == "m1")),
        "it waits for the join: {:?}",
        h.events
    );
    assert!(!h.events.iter().any(|e| matches!(e, Event::Rejected { will_retry: false, .. })));
    assert_eq!(h.core.outbox().len(), 1, "never given up: it may be stored");
    // The join is asked again and goes through: m1 goes at once, under its id.
    h.advance_to_timer(Timer::Rejoin);
    assert!(matches!(h.take_sent().as_slice(), [ClientFrame::Join { room, .. }] if room == "r"));
    h.receive(&joined("r", 1, "e"));
    assert_eq!(publish_ids(&h.take_sent()), ["m1"]);
    h.ack("m1", "r", 1);
    assert!(h.core.outbox().is_empty());

    // A room the client never asked for stays a refusal for good.
    h.publish("m2", "elsewhere", 0);
    h.take_sent();
    let stray = ServerFrame::Reject {
        id: "m2".into(),
        code: RejectCode::NotJoined,
        message: "join the room before publishing to it".into(),
        refusal: None,
    };
    h.receive(&stray.encode());
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::Rejected { envelope, will_retry: false, .. } if envelope.id == "m2"))
    );
}

fn request(h: &mut Harness, id: &str, idempotent: bool) {
    h.input(Input::Request {
        id: id.into(),
        room: "r".into(),
        body: json!({"q": id}),
        idempotent,
        timeout: None,
    });
}

fn request_ids(frames: &[ClientFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| if let ClientFrame::Request { id, .. } = f { Some(id.clone()) } else { None })
        .collect()
}

/// The answers the app heard: (id, Ok(reply) or Err(failure)).
fn answers(h: &Harness) -> Vec<(String, Result<serde_json::Value, tether_shared::RequestFailure>)> {
    h.events
        .iter()
        .filter_map(|event| match event {
            Event::Replied { id, body, .. } => Some((id.clone(), Ok(body.clone()))),
            Event::RequestFailed { id, failure, .. } => Some((id.clone(), Err(failure.clone()))),
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_waits_for_the_connection_goes_after_the_resume_and_is_answered_once() {
    let mut h = Harness::new(config());
    h.input(Input::Join("r".into()));
    request(&mut h, "q1", false);
    assert!(h.take_sent().is_empty(), "nothing before a connection");
    h.input(Input::Connect);
    h.open();
    let sent = h.take_sent();
    let resume = sent.iter().position(|f| matches!(f, ClientFrame::Resume { .. })).expect("a resume");
    let asked = sent.iter().position(|f| matches!(f, ClientFrame::Request { .. })).expect("the request");
    assert!(resume < asked, "the room is joined again before the question: {sent:?}");
    let reply = ServerFrame::Reply { id: "q1".into(), room: "r".into(), body: json!(42) }.encode();
    h.receive(&reply);
    h.receive(&reply);
    assert_eq!(answers(&h), [("q1".to_owned(), Ok(json!(42)))], "one answer, the repeat ignored");
    assert_eq!(h.due(Timer::RequestDeadline), None);
}

#[test]
fn a_dropped_socket_fails_a_request_on_the_wire_unless_it_is_idempotent_which_is_sent_again() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    request(&mut h, "once", false);
    request(&mut h, "safe", true);
    assert_eq!(request_ids(&h.take_sent()), ["once", "safe"]);
    h.drop_socket(1006);
    assert_eq!(answers(&h), [("once".to_owned(), Err(tether_shared::RequestFailure::Disconnected))]);
    h.advance_to_timer(Timer::Reconnect);
    h.open();
    let sent = h.take_sent();
    assert_eq!(request_ids(&sent), ["safe"], "the same id, sent again");
    assert!(matches!(
        &sent.iter().find(|f| matches!(f, ClientFrame::Request { .. })),
        Some(ClientFrame::Request { idempotent: true, .. })
    ));
    let rejected = ServerFrame::Reject {
        id: "safe".into(),
        code: RejectCode::NotHandled,
        message: "no".into(),
        refusal: None,
    };
    h.receive(&rejected.encode());
    let failed = answers(&h).pop().unwrap();
    assert!(
        matches!(failed, (id, Err(tether_shared::RequestFailure::Rejected { code: RejectCode::NotHandled, .. })) if id == "safe")
    );
    assert!(h.core.outbox().is_empty(), "a request is never a message");
}

#[test]
fn a_request_past_its_deadline_fails_and_a_late_answer_is_ignored_as_is_one_after_a_disconnect() {
    let mut h = Harness::new(config());
    h.input(Input::Connect);
    h.open();
    h.input(Input::Request {
        id: "slow".into(),
        room: "r".into(),
        body: json!(null),
        idempotent: true,
        timeout: Some(Duration::from_secs(2)),
    });
    assert_eq!(h.due(Timer::RequestDeadline), Some(h.now.after(Duration::from_secs(2))));
    h.advance_to_timer(Timer::RequestDeadline);
    assert_eq!(answers(&h), [("slow".to_owned(), Err(tether_shared::RequestFailure::TimedOut))]);
    h.receive(&ServerFrame::Reply { id: "slow".into(), room: "r".into(), body: json!(1) }.encode());
    assert_eq!(answers(&h).len(), 1, "the late answer is not told");

    request(&mut h, "pending", true);
    h.input(Input::Disconnect);
    assert_eq!(
        answers(&h).last(),
        Some(&("pending".to_owned(), Err(tether_shared::RequestFailure::Disconnected)))
    );
}
