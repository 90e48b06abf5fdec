//! Property tests: random inputs, invariants that must hold for all of them.
//!
//! Case counts are set per property (see each `ProptestConfig`); proptest shrinks any
//! failure to a minimal sequence before reporting it.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use tether_shared::close;
use tether_shared::{
    Action, Backoff, BackoffConfig, ClientFrame, Connection, ConnectionConfig, Envelope, Input, Jitter,
    Limits, Millis, Outbox, OutboxConfig, Overflow, ServerFrame, SocketId, State, Timer, TokenError, User,
};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Full), (0u8..=100).prop_map(Jitter::Percent)]
}

fn backoff_config() -> impl Strategy<Value = BackoffConfig> {
    (1u64..5_000, 1.0f64..4.0, 1u64..120_000, jitter()).prop_map(|(initial, multiplier, max, jitter)| {
        BackoffConfig {
            initial: Duration::from_millis(initial),
            multiplier,
            max: Duration::from_millis(max),
            max_attempts: None,
            jitter,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Every delay is within [0, max], whatever the jitter; without jitter delays never
    /// shrink as attempts grow; percent jitter stays in its band around the base delay.
    #[test]
    fn backoff_delays_stay_within_bounds(config in backoff_config(), seed: u64, attempts in 1u32..200) {
        let mut backoff = Backoff::new(config.clone(), seed);
        let mut previous_base = 0.0;
        for attempt in 1..=attempts {
            let delay = backoff.next_delay(attempt);
            prop_assert!(delay <= config.max, "attempt {attempt}: {delay:?} > {:?}", config.max);
            let base = backoff.base_delay(attempt);
            prop_assert!(base >= previous_base);
            previous_base = base;
            let secs = delay.as_secs_f64();
            match config.jitter {
                Jitter::None => prop_assert!((secs - base).abs() < 1e-6),
                Jitter::Full => prop_assert!(secs <= base + 1e-6),
                Jitter::Percent(p) => {
                    let spread = f64::from(p) / 100.0;
                    prop_assert!(secs >= base * (1.0 - spread) - 1e-6);
                    prop_assert!(secs <= (base * (1.0 + spread)).min(config.max.as_secs_f64()) + 1e-6);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum OutboxOp {
    Push { id: u8, priority: u8, size: usize },
    Send(usize),
    Ack(u8),
    Requeue,
    Expire(u64),
}

fn outbox_op() -> impl Strategy<Value = OutboxOp> {
    prop_oneof![
        5 => (0u8..40, 0u8..4, 0usize..300).prop_map(|(id, priority, size)| OutboxOp::Push { id, priority, size }),
        2 => (0usize..8).prop_map(OutboxOp::Send),
        3 => (0u8..40).prop_map(OutboxOp::Ack),
        1 => Just(OutboxOp::Requeue),
        1 => (0u64..3_000).prop_map(OutboxOp::Expire),
    ]
}

fn overflow() -> impl Strategy<Value = Overflow> {
    prop_oneof![Just(Overflow::DropOldest), Just(Overflow::DropNewest), Just(Overflow::Reject)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The outbox never exceeds its bounds, and every message that entered it is either
    /// still there, acked, or reported dropped: none vanishes. Its order is always
    /// priority first, then arrival. And a message once handed out to be written is never
    /// dropped (by overflow or TTL): the server may have stored it.
    #[test]
    fn outbox_keeps_bounds_and_loses_nothing_silently(
        max_messages in 1usize..12,
        max_bytes in 200usize..2_000,
        policy in overflow(),
        ttl in proptest::option::of(500u64..2_000),
        ops in proptest::collection::vec(outbox_op(), 1..80),
    ) {
        let config = OutboxConfig {
            max_messages, max_bytes, overflow: policy, default_ttl: ttl.map(Duration::from_millis),
        };
        let mut outbox = Outbox::new(config);
        let mut now = Millis(0);
        // The model: what should be inside, with (priority, arrival).
        let mut live: BTreeMap<String, (u8, u64)> = BTreeMap::new();
        let mut arrivals = 0u64;
        let mut written: BTreeSet<String> = BTreeSet::new();
        for op in ops {
            match op {
                OutboxOp::Push { id, priority, size } => {
                    let id = format!("m{id}");
                    let envelope = Envelope {
                        id: id.clone(), room: "r".into(), body: json!("x".repeat(size)),
                        priority, created: now, expires: None,
                    };
                    // A refusal (Reject policy, too large) changes nothing, as the bounds check shows.
                    if let Ok(pushed) = outbox.push(envelope) {
                        for dropped in &pushed.dropped {
                            prop_assert!(!written.contains(&dropped.envelope.id), "{} was written", dropped.envelope.id);
                            live.remove(&dropped.envelope.id);
                        }
                        if pushed.queued {
                            arrivals += 1;
                            live.insert(id, (priority, arrivals));
                        }
                    }
                }
                OutboxOp::Send(n) => written.extend(outbox.take_sendable(now, n).into_iter().map(|e| e.id)),
                OutboxOp::Ack(id) => {
                    let id = format!("m{id}");
                    prop_assert_eq!(outbox.ack(&id).is_some(), live.remove(&id).is_some());
                    written.remove(&id);
                }
                OutboxOp::Requeue => outbox.requeue_all(),
                OutboxOp::Expire(ms) => {
                    now = Millis(now.0 + ms);
                    for dropped in outbox.expire(now) {
                        prop_assert!(!written.contains(&dropped.envelope.id), "{} was written", dropped.envelope.id);
                        prop_assert!(live.remove(&dropped.envelope.id).is_some());
                    }
                }
            }
            prop_assert!(outbox.len() <= max_messages);
            prop_assert!(outbox.bytes() <= max_bytes);
            let held: BTreeSet<String> = outbox.iter().map(|e| e.id.clone()).collect();
            let expected: BTreeSet<String> = live.keys().cloned().collect();
            prop_assert_eq!(&held, &expected);
            let order: Vec<(std::cmp::Reverse<u8>, u64)> =
                outbox.iter().map(|e| (std::cmp::Reverse(live[&e.id].0), live[&e.id].1)).collect();
            let mut sorted = order.clone();
            sorted.sort();
            prop_assert_eq!(order, sorted);
        }
    }

    /// Sending one at a time and acking each yields priority order, FIFO within a
    /// priority, and a restored snapshot yields the same order.
    #[test]
    fn outbox_delivers_in_priority_then_fifo_order(priorities in proptest::collection::vec(0u8..5, 0..60)) {
        let mut outbox = Outbox::new(OutboxConfig { max_messages: 100, ..OutboxConfig::default() });
        for (i, priority) in priorities.iter().enumerate() {
            let envelope = Envelope {
                id: format!("m{i}"), room: "r".into(), body: json!(i), priority: *priority,
                created: Millis(0), expires: None,
            };
            outbox.push(envelope).unwrap();
        }
        let mut expected: Vec<usize> = (0..priorities.len()).collect();
        expected.sort_by_key(|&i| std::cmp::Reverse(priorities[i]));
        let expected: Vec<String> = expected.into_iter().map(|i| format!("m{i}")).collect();

        let (mut restored, dropped) = Outbox::restore(OutboxConfig::default(), &outbox.snapshot()).unwrap();
        prop_assert!(dropped.is_empty());
        for outbox in [&mut outbox, &mut restored] {
            let mut delivered = Vec::new();
            while let Some(envelope) = outbox.take_sendable(Millis(1), 1).pop() {
                outbox.ack(&envelope.id);
                delivered.push(envelope.id);
            }
            prop_assert_eq!(&delivered, &expected);
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Connect,
    Disconnect,
    Opened,
    Welcome,
    ServerClose(u16),
    FireTimer(usize),
    Advance(u64),
    Publish(u8),
    AckFirst,
    Offline,
    Online,
    Visible,
    Join(u8),
    Message(u8, u64),
    StaleSocketEvent,
    /// The token provider answers the core's request: a token (0), not now (1), or the
    /// person is signed out (2).
    TokenAnswer(u8),
    /// The wall clock is set back by this much.
    ClockBack(u64),
    /// The device sleeps this long; the driver's timer fires late.
    Sleep(u64),
    /// The token in hand expires soon.
    TokenExpiring,
}

fn step() -> impl Strategy<Value = Step> {
    let codes = prop_oneof![
        Just(close::GOING_AWAY),
        Just(close::ABNORMAL),
        Just(close::POLICY),
        Just(close::UNAUTHORIZED),
        Just(close::TOKEN_EXPIRED),
        Just(close::SLOW_CONSUMER),
    ];
    prop_oneof![
        2 => Just(Step::Connect),
        1 => Just(Step::Disconnect),
        4 => Just(Step::Opened),
        4 => Just(Step::Welcome),
        2 => codes.prop_map(Step::ServerClose),
        4 => (0usize..Timer::ALL.len()).prop_map(Step::FireTimer),
        2 => (0u64..20_000).prop_map(Step::Advance),
        3 => (0u8..3).prop_map(Step::Publish),
        2 => Just(Step::AckFirst),
        1 => Just(Step::Offline),
        1 => Just(Step::Online),
        1 => Just(Step::Visible),
        1 => (0u8..3).prop_map(Step::Join),
        1 => ((0u8..3), (1u64..50)).prop_map(|(r, s)| Step::Message(r, s)),
        1 => Just(Step::StaleSocketEvent),
        2 => (0u8..3).prop_map(Step::TokenAnswer),
        1 => (1u64..7_200_000).prop_map(Step::ClockBack),
        1 => (20_000u64..86_400_000).prop_map(Step::Sleep),
        1 => Just(Step::TokenExpiring),
    ]
}

/// The longest any deadline may lie ahead (the messages here have no TTL): the longest of the
/// configured waits (the backoff's default cap, the token retry's cap, the timeouts).
const LONGEST_WAIT: Duration = Duration::from_secs(60);

fn welcome_text() -> String {
    ServerFrame::Welcome {
        v: 1,
        session: "s".into(),
        resume_token: "t".into(),
        heartbeat_ms: 5_000,
        limits: Limits {
            max_body_bytes: 1024,
            publish_per_sec: 10,
            publish_burst: 10,
            max_rooms: 8,
            ..Limits::default()
        },
        user: User::new("u", "U", "#000"),
    }
    .encode()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Whatever happens, in whatever order: never two sockets, never a send before the
    /// welcome, never a reconnect after the person disconnected, and the outbox bounds
    /// hold. With several endpoints, every socket goes to one of them; with a token
    /// provider, it is never asked twice before it answered; a clock set back never
    /// leaves a deadline further ahead than the longest wait; and waking from a sleep
    /// while waiting to reconnect tries at once, with a fresh backoff.
    #[test]
    fn connection_keeps_its_invariants(
        seed: u64,
        endpoint_count in 1usize..4,
        fetch_tokens: bool,
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let config = ConnectionConfig {
            outbox: OutboxConfig { max_messages: 8, ..OutboxConfig::default() },
            max_in_flight: 3,
            backoff: BackoffConfig { max_attempts: Some(4), ..BackoffConfig::default() },
            ..ConnectionConfig::default()
        };
        let mut core = Connection::new(config, seed);
        let endpoints: Vec<String> = (0..endpoint_count).map(|i| format!("ws://node{i}/ws")).collect();
        core.set_endpoints(endpoints.clone());
        core.set_fetch_tokens(fetch_tokens);
        // Half the runs speak MessagePack: the invariants hold in either encoding.
        if seed % 2 == 1 {
            core.set_encoding(tether_shared::Encoding::MessagePack);
        }
        let mut fetching = false;
        let mut now = Millis(1_700_000_000_000);
        // The driver's view.
        let mut socket: Option<SocketId> = None;
        let mut retired: Vec<SocketId> = Vec::new();
        let mut sent_ids: Vec<String> = Vec::new();
        let mut user_closed = false;

        for step in steps {
            // A timer step wakes the core at that deadline, as the driver's one timer would.
            let mut wake = false;
            let input = match step {
                Step::Connect => { user_closed = false; Some(Input::Connect) }
                Step::Disconnect => { user_closed = true; Some(Input::Disconnect) }
                Step::Opened => socket.map(Input::SocketOpened),
                Step::Welcome => socket.map(|s| Input::Received(s, welcome_text())),
                Step::ServerClose(code) => socket.take().map(|s| {
                    retired.push(s);
                    Input::SocketClosed { socket: s, code, reason: String::new() }
                }),
                Step::FireTimer(i) => {
                    if let Some(due) = core.deadline(Timer::ALL[i]) {
                        prop_assert!(core.poll_timeout().is_some_and(|next| next <= due));
                        now = now.max(due);
                        wake = true;
                    }
                    None
                }
                Step::Advance(ms) => { now = Millis(now.0 + ms); None }
                Step::Publish(priority) => {
                    let id = core.new_message_id();
                    Some(Input::Publish { id, room: "r0".into(), body: json!(1), priority })
                }
                Step::AckFirst => match (socket, sent_ids.first()) {
                    (Some(s), Some(id)) => {
                        let ack = ServerFrame::Ack { id: id.clone(), room: "r0".into(), seq: 1, ts: now };
                        Some(Input::Received(s, ack.encode()))
                    }
                    _ => None,
                },
                Step::Offline => Some(Input::NetworkOffline),
                Step::Online => Some(Input::NetworkOnline),
                Step::Visible => Some(Input::PageVisible),
                Step::Join(r) => Some(Input::Join(format!("r{r}"))),
                Step::Message(r, seq) => socket.map(|s| {
                    let frame = ServerFrame::Message {
                        room: format!("r{r}"), seq, id: "x".into(),
                        from: User::new("o", "O", "#111"),
                        body: json!(null), ts: now,
                    };
                    Input::Received(s, frame.encode())
                }),
                Step::StaleSocketEvent => retired.last().map(|&s| Input::Received(s, welcome_text())),
                Step::TokenAnswer(answer) if fetching => {
                    fetching = false;
                    Some(match answer {
                        0 => Input::RefreshToken("t".into()),
                        1 => Input::TokenFailed(TokenError::Unavailable("down".into())),
                        _ => Input::TokenFailed(TokenError::SignedOut("signed out".into())),
                    })
                }
                Step::TokenAnswer(_) => None,
                Step::ClockBack(ms) => { now = Millis(now.0.saturating_sub(ms)); wake = true; None }
                Step::Sleep(ms) => {
                    if let Some(due) = core.poll_timeout() {
                        now = now.max(due);
                    }
                    now = Millis(now.0 + ms);
                    wake = true;
                    None
                }
                Step::TokenExpiring => socket.map(|s| {
                    Input::Received(s, ServerFrame::TokenExpiring { expires_at: 1 }.encode())
                }),
            };
            let slept_while_waiting = matches!(step, Step::Sleep(_))
                && matches!(core.state(), State::Reconnecting { .. });
            let opened_socket = matches!(input, Some(Input::SocketOpened(_)));
            // One wake-up can act on several deadlines (a ping, then a pong deadline that
            // ends the connection), so a send is fine if the core was open before or after.
            let before = core.state().clone();
            match input {
                Some(input) => core.handle(input, now),
                None if wake => core.handle_timeout(now),
                None => continue,
            }
            let state = core.state().clone();
            let mut opened_now = false;
            for action in core.drain_actions() {
                match action {
                    Action::Open { socket: s, endpoint } => {
                        prop_assert!(socket.is_none(), "two sockets: {:?} then {:?}", socket, s);
                        prop_assert!(!user_closed, "reconnected after the person disconnected");
                        prop_assert!(endpoints.contains(&endpoint), "opened {endpoint:?}");
                        socket = Some(s);
                        opened_now = true;
                    }
                    Action::FetchToken => {
                        prop_assert!(fetch_tokens, "asked for a token without a provider");
                        prop_assert!(!fetching, "asked for a token twice before an answer");
                        fetching = true;
                        opened_now = true;
                    }
                    Action::Send(s, _) | Action::SendBinary(s, _) => {
                        prop_assert_eq!(Some(s), socket, "send on a socket that is not current");
                        let frame = match action {
                            Action::Send(_, text) => ClientFrame::decode(&text).unwrap(),
                            Action::SendBinary(_, bytes) => ClientFrame::decode_msgpack(&bytes).unwrap(),
                            _ => unreachable!("matched above"),
                        };
                        if let ClientFrame::Hello { .. } = frame {
                            prop_assert!(opened_socket, "hello only right after the socket opened");
                        } else {
                            prop_assert!(
                                before == State::Open || state == State::Open,
                                "sent {} before welcome ({:?}, then {:?})",
                                frame.kind(),
                                before,
                                state
                            );
                        }
                        if let ClientFrame::Publish { id, .. } = frame {
                            sent_ids.retain(|known| *known != id);
                            sent_ids.push(id);
                        }
                    }
                    Action::Close { socket: s, .. } => {
                        prop_assert_eq!(Some(s), socket);
                        retired.push(s);
                        socket = None;
                    }
                }
            }
            core.drain_events();
            if slept_while_waiting {
                prop_assert!(opened_now || fetching, "woke from sleep and did not try at once");
                prop_assert!(matches!(core.state(), State::Connecting { attempt: 0 }), "{:?}", core.state());
            }
            for timer in Timer::ALL {
                if let Some(due) = core.deadline(timer) {
                    prop_assert!(now.until(due) <= LONGEST_WAIT, "{timer:?} is {:?} away", now.until(due));
                }
            }
            sent_ids.retain(|id| core.outbox().contains(id));
            prop_assert!(core.outbox().len() <= 8);
            prop_assert!(core.outbox().in_flight() <= 3);
            if matches!(state, State::Closed | State::Failed { .. } | State::Offline | State::Idle) {
                prop_assert!(socket.is_none(), "{:?} with a socket open", state);
                prop_assert!(core.deadline(Timer::Reconnect).is_none(), "{:?} with a retry armed", state);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    /// The decoder never panics, whatever arrives: arbitrary text, or JSON shaped like
    /// frames with wrong, missing, extra or extreme fields. Every failure is typed.
    #[test]
    fn the_frame_decoder_never_panics(
        text in prop_oneof![
            ".*",
            r#"\{"type":"(hello|join|resume|leave|publish|typing|receipt|ping|echo|x)"(,"(v|room|since|id|body|priority|nonce|rooms|kind|seq|active|token)":(1|-1|1e999|18446744073709551616|"x"|null|true|\[\]|\{\}|\[\{"room":"r"\}\]))*\}"#,
        ]
    ) {
        match ClientFrame::decode(&text) {
            Ok(frame) => {
                // Whatever decodes re-encodes to something that decodes to the same frame.
                prop_assert_eq!(ClientFrame::decode(&frame.encode()).unwrap(), frame);
            }
            Err(error) => {
                prop_assert!(matches!(error.code, tether_shared::ErrorCode::MalformedJson | tether_shared::ErrorCode::InvalidFrame));
                prop_assert!(!error.to_string().is_empty());
            }
        }
        let _ = ServerFrame::decode(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    /// The MessagePack decoder never panics either: arbitrary bytes, and frames in
    /// MessagePack with wrong or extreme fields. Every failure is typed, and whatever
    /// decodes from JSON means the same once through MessagePack.
    #[test]
    fn the_msgpack_decoder_never_panics_and_agrees_with_json(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        text in r#"\{"type":"(hello|join|publish|state|typing|ping|echo)"(,"(v|room|id|body|key|value|nonce|active|since)":(1|-1|1e300|18446744073709551615|"x"|null|true|\[\]|\{\}|\{"a":\[1,"b"\]\}))*\}"#,
    ) {
        if let Err(error) = ClientFrame::decode_msgpack(&bytes) {
            prop_assert!(matches!(error.code, tether_shared::ErrorCode::MalformedJson | tether_shared::ErrorCode::InvalidFrame));
        }
        let _ = ServerFrame::decode_msgpack(&bytes);
        if let Ok(frame) = ClientFrame::decode(&text) {
            let packed = frame.encode_msgpack();
            prop_assert_eq!(ClientFrame::decode_msgpack(&packed).unwrap(), frame.clone());
            // Truncated MessagePack is refused, never half-read.
            for cut in [1, packed.len() / 2, packed.len() - 1] {
                if cut < packed.len() {
                    prop_assert!(ClientFrame::decode_msgpack(&packed[..cut]).is_err());
                }
            }
        }
    }
}
