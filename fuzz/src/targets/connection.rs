//! `connection`: the sans-IO client core (`tether_shared::Connection`) driven like a
//! driver would, by random inputs, random frames from the server (well-formed,
//! mangled, MessagePack, meant for another socket) and random time: small steps, late
//! timers, a clock set back, a device asleep for a day.
//!
//! Why it matters: the same core runs in every browser tab and native client, and it
//! is fed whatever the network and the clock do. The shared property test
//! (`shared/tests/properties.rs`, `connection_keeps_its_invariants`) checks its
//! promises over a friendly vocabulary of steps; here the frames are anything a server
//! or a proxy could send, and the settings are random too. On top of never panicking,
//! the core must keep the driver contract: one socket at a time, every write on the
//! current socket and in the chosen encoding, nothing but `hello` before the welcome,
//! no reconnect after the person disconnected, the token provider never asked twice at
//! once, close codes a browser accepts, the outbox within its bounds, its statistics
//! adding up, and deadlines a driver can honour: never in the past once
//! `handle_timeout` ran, never further ahead than the longest configured wait, and a
//! driver that keeps re-arming its timer reaches a quiet state instead of spinning.

use std::collections::BTreeSet;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use serde_json::json;
use tether_shared::{
    Action, BackoffConfig, ClientFrame, Connection, ConnectionConfig, Encoding, Event, Input, Jitter, Limits,
    Millis, OutboxConfig, Overflow, ReceiptKind, ServerFrame, SocketId, State, Timer, TokenError, User,
    close,
};

use crate::engine::{Outcome, Target};
use crate::generate::{self, Loose};

/// The target.
pub struct Core;

impl Target for Core {
    fn name(&self) -> &'static str {
        "connection"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        // A connect, an open, a welcome, a publish and its ack, in the step encoding
        // below (mostly zeros: the first choice of everything).
        vec![vec![0; 64], [vec![0; 24], vec![1, 0, 2, 0, 3, 0, 9, 0, 4, 0]].concat()]
    }

    fn max_len(&self) -> usize {
        4096
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        let mut u = Unstructured::new(input);
        let mut run = Run::new(&mut u).map_err(|e| format!("generator: {e}"))?;
        let mut outcome = Outcome::default();
        // TETHER_FUZZ_TRACE=1 prints each step when replaying a reproducer.
        let trace = std::env::var_os("TETHER_FUZZ_TRACE").is_some();
        for _ in 0..300 {
            if u.is_empty() {
                break;
            }
            let step = run.step(&mut u).unwrap_or(Step::Nothing);
            if trace {
                eprintln!("at {} in {:?}: {step:?}", run.now.0, run.core.state());
            }
            run.apply(step, &mut outcome)?;
        }
        outcome.label(format!("ended {}", state_name(run.core.state())));
        Ok(outcome)
    }
}

/// One thing that happens to the core.
#[derive(Debug)]
enum Step {
    Input(Input),
    /// The driver's timer fires at the core's deadline (or now, if that is past).
    Timer,
    /// Time passes (the timer, if due, fires late).
    Advance(u64),
    /// The clock is set back.
    Back(u64),
    Nothing,
}

struct Run {
    core: Connection,
    config: ConnectionConfig,
    endpoints: Vec<String>,
    encoding: Encoding,
    fetch_tokens: bool,
    now: Millis,
    /// The driver's socket and the ones it retired.
    socket: Option<SocketId>,
    retired: Vec<SocketId>,
    /// Whether the person disconnected (and has not connected since).
    user_closed: bool,
    /// An `Action::FetchToken` awaits its answer.
    fetching: bool,
    /// Ids of publishes the app queued, and the ones written to a socket.
    published: BTreeSet<String>,
    sent: Vec<String>,
    /// Rooms the app joined.
    rooms: Vec<String>,
    /// Frames and bytes written, as the driver counted them.
    frames_sent: u64,
    bytes_sent: u64,
    /// The longest wait the settings and the server's welcomes allow.
    longest: Duration,
    /// Publishes written during the current call.
    written_now: Vec<String>,
}

impl Run {
    fn new(u: &mut Unstructured) -> Result<Run> {
        let ms = |u: &mut Unstructured, max: u64| -> Result<Duration> {
            Ok(Duration::from_millis(u.int_in_range(1..=max)?))
        };
        let config = ConnectionConfig {
            connect_timeout: ms(u, 30_000)?,
            heartbeat: ms(u, 30_000)?,
            pong_timeout: ms(u, 30_000)?,
            ack_timeout: ms(u, 30_000)?,
            request_timeout: ms(u, 30_000)?,
            max_in_flight: u.int_in_range(0..=6)?,
            auto_reconnect: u.ratio(7, 8)?,
            backoff: BackoffConfig {
                initial: Duration::from_millis(u.int_in_range(0..=5_000)?),
                multiplier: f64::from(u.int_in_range(10..=40u32)?) / 10.0,
                max: Duration::from_millis(u.int_in_range(0..=60_000)?),
                max_attempts: if u.arbitrary()? { Some(u.int_in_range(0..=6)?) } else { None },
                jitter: match u.int_in_range(0..=2)? {
                    0 => Jitter::None,
                    1 => Jitter::Full,
                    _ => Jitter::Percent(u.int_in_range(0..=100)?),
                },
            },
            outbox: OutboxConfig {
                max_messages: u.int_in_range(0..=8)?,
                max_bytes: u.int_in_range(0..=4_000)?,
                overflow: *u.choose(&[Overflow::DropOldest, Overflow::DropNewest, Overflow::Reject])?,
                default_ttl: if u.ratio(1, 4)? { Some(ms(u, 120_000)?) } else { None },
            },
            token: if u.arbitrary()? { Some(generate::string(u)?) } else { None },
            name: if u.arbitrary()? { Some(generate::string(u)?) } else { None },
            join_history: u.int_in_range(0..=100)?,
            sleep_gap: ms(u, 60_000)?,
        };
        let longest = [
            config.connect_timeout,
            config.heartbeat,
            config.pong_timeout,
            config.ack_timeout,
            config.backoff.max,
            Duration::from_secs(30),
            config.outbox.default_ttl.unwrap_or_default(),
        ]
        .into_iter()
        .max()
        .unwrap_or_default();
        let all = ["ws://a/ws", "wss://b:443/ws", "ws://c/ws?x=1", "http://d/ws", "ws://", ""];
        let endpoints: Vec<String> = (0..u.int_in_range(0..=3)?)
            .map(|_| u.choose(&all).map(|e| (*e).to_owned()))
            .collect::<Result<_>>()?;
        let encoding = if u.arbitrary()? { Encoding::MessagePack } else { Encoding::Json };
        let fetch_tokens = u.ratio(1, 3)?;
        let seed = u.arbitrary()?;
        let mut core = Connection::new(config.clone(), seed);
        if !endpoints.is_empty() {
            core.set_endpoints(endpoints.clone());
        }
        core.set_encoding(encoding);
        core.set_fetch_tokens(fetch_tokens);
        Ok(Run {
            core,
            config,
            endpoints,
            encoding,
            fetch_tokens,
            now: Millis(1_700_000_000_000 + u.int_in_range(0..=1_000_000)?),
            socket: None,
            retired: Vec::new(),
            user_closed: false,
            fetching: false,
            published: BTreeSet::new(),
            sent: Vec::new(),
            rooms: Vec::new(),
            frames_sent: 0,
            bytes_sent: 0,
            longest,
            written_now: Vec::new(),
        })
    }

    /// The socket a received frame arrives on: mostly the current one.
    fn arriving(&self, u: &mut Unstructured) -> Result<Option<SocketId>> {
        Ok(match u.int_in_range(0..=9)? {
            0 => self.retired.last().copied(),
            1 => Some(SocketId(u.arbitrary()?)),
            _ => self.socket,
        })
    }

    fn room(&self, u: &mut Unstructured) -> Result<String> {
        if !self.rooms.is_empty() && u.ratio(3, 4)? {
            Ok(u.choose(&self.rooms)?.clone())
        } else {
            generate::room(u)
        }
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<Step> {
        let input = match u.int_in_range(0..=24)? {
            0 => {
                self.user_closed = false;
                Input::Connect
            }
            1 => match self.socket {
                Some(socket) => Input::SocketOpened(socket),
                None => return Ok(Step::Nothing),
            },
            2 => {
                let Some(socket) = self.arriving(u)? else { return Ok(Step::Nothing) };
                Input::Received(socket, self.welcome(u)?)
            }
            3 | 4 => {
                let Some(socket) = self.arriving(u)? else { return Ok(Step::Nothing) };
                let frame = self.answer(u)?;
                if self.encoding == Encoding::MessagePack && u.ratio(3, 4)? {
                    Input::ReceivedBinary(socket, frame.encode_msgpack())
                } else {
                    Input::Received(socket, frame.encode())
                }
            }
            5 => {
                let Some(socket) = self.arriving(u)? else { return Ok(Step::Nothing) };
                let mut tree = Loose::of(&generate::server_frame(u)?);
                generate::loosen(u, &mut tree)?;
                if u.arbitrary()? {
                    Input::ReceivedBinary(socket, tree.to_msgpack(u)?)
                } else {
                    Input::Received(socket, tree.to_json())
                }
            }
            6 => {
                let Some(socket) = self.arriving(u)? else { return Ok(Step::Nothing) };
                let codes = [
                    close::NORMAL,
                    close::GOING_AWAY,
                    close::ABNORMAL,
                    close::POLICY,
                    close::TOO_BIG,
                    close::INTERNAL,
                    close::SLOW_CONSUMER,
                    close::IDLE_TIMEOUT,
                    close::INVALID_ADDRESS,
                    close::DISCONNECTED,
                    close::BAD_HELLO,
                    close::UNAUTHORIZED,
                    close::TOKEN_EXPIRED,
                    close::ORIGIN_FORBIDDEN,
                    close::REMOVED,
                ];
                let code = if u.ratio(7, 8)? { *u.choose(&codes)? } else { u.arbitrary()? };
                if Some(socket) == self.socket {
                    self.socket = None;
                    self.retired.push(socket);
                }
                Input::SocketClosed { socket, code, reason: generate::string(u)? }
            }
            7 => match self.arriving(u)? {
                Some(socket) => Input::SocketErrored(socket),
                None => return Ok(Step::Nothing),
            },
            8 => u.choose(&[Input::NetworkOnline, Input::NetworkOffline, Input::PageVisible])?.clone(),
            9 | 10 => {
                let id = match u.int_in_range(0..=3)? {
                    0 => generate::id(u)?,
                    _ => self.core.new_message_id(),
                };
                self.published.insert(id.clone());
                let room = self.room(u)?;
                Input::Publish {
                    id,
                    room,
                    body: generate::json(u, 2)?,
                    priority: *u.choose(&[0, 0, 1, 7, 255])?,
                }
            }
            11 => {
                let room = generate::room(u)?;
                self.rooms.push(room.clone());
                Input::Join(room)
            }
            12 => Input::Leave(self.room(u)?),
            13 => match u.int_in_range(0..=4)? {
                0 => Input::Typing { room: self.room(u)?, active: u.arbitrary()? },
                1 => Input::Receipt {
                    room: self.room(u)?,
                    kind: *u.choose(&[ReceiptKind::Delivered, ReceiptKind::Read])?,
                    seq: generate::number(u)?,
                },
                2 => Input::State {
                    room: self.room(u)?,
                    key: generate::string(u)?,
                    value: generate::json(u, 2)?,
                },
                3 => Input::Echo(generate::json(u, 2)?),
                _ => Input::Members { room: self.room(u)?, after: None, limit: Some(u.arbitrary()?) },
            },
            14 => {
                // A token the app hands over unasked answers an outstanding request too.
                self.fetching = false;
                Input::RefreshToken(generate::string(u)?)
            }
            15 if self.fetching => {
                self.fetching = false;
                match u.int_in_range(0..=2)? {
                    0 => Input::RefreshToken(generate::string(u)?),
                    1 => Input::TokenFailed(TokenError::Unavailable("down".into())),
                    _ => Input::TokenFailed(TokenError::SignedOut("signed out".into())),
                }
            }
            16 => {
                self.user_closed = true;
                Input::Disconnect
            }
            17..=19 => return Ok(Step::Timer),
            20 | 21 => return Ok(Step::Advance(*u.choose(&[1, 10, 500, 5_000, 30_000])?)),
            22 => return Ok(Step::Advance(u.int_in_range(20_000..=86_400_000)?)),
            23 => return Ok(Step::Back(*u.choose(&[1, 1_000, 60_000, 7_200_000, u64::MAX])?)),
            _ => return Ok(Step::Nothing),
        };
        Ok(Step::Input(input))
    }

    fn welcome(&self, u: &mut Unstructured) -> Result<String> {
        let frame = ServerFrame::Welcome {
            v: 1,
            session: "s".into(),
            resume_token: generate::string(u)?,
            heartbeat_ms: *u.choose(&[0, 1, 5_000, 30_000, u64::MAX])?,
            limits: Limits::default(),
            user: User::new("u", "U", "#000"),
        };
        Ok(frame.encode())
    }

    /// A frame a server could plausibly send next: an ack or a rejection of something
    /// written, a pong, a joined or a message for a known room, or anything at all.
    fn answer(&self, u: &mut Unstructured) -> Result<ServerFrame> {
        let id = if !self.sent.is_empty() && u.ratio(3, 4)? {
            u.choose(&self.sent)?.clone()
        } else {
            generate::id(u)?
        };
        Ok(match u.int_in_range(0..=6)? {
            0 | 1 => ServerFrame::Ack { id, room: self.room(u)?, seq: generate::number(u)?, ts: self.now },
            2 => ServerFrame::Reject {
                id,
                code: *u.choose(generate::REJECT_CODES)?,
                message: "no".into(),
                refusal: None,
            },
            3 => ServerFrame::Pong { nonce: u.int_in_range(0..=5)? },
            4 => ServerFrame::Joined {
                room: self.room(u)?,
                seq: generate::number(u)?,
                epoch: (*u.choose(&["e1", "e2"])?).into(),
                members: Vec::new(),
                count: 1,
                presence: Default::default(),
            },
            5 => ServerFrame::Message {
                room: self.room(u)?,
                seq: generate::number(u)?,
                id,
                from: User::new("o", "O", "#111"),
                body: json!(null),
                ts: self.now,
            },
            _ => generate::server_frame(u)?,
        })
    }

    /// Applies one step, then checks everything the driver can see.
    fn apply(&mut self, step: Step, outcome: &mut Outcome) -> Result<(), String> {
        let before = self.core.state().clone();
        let opened = matches!(step, Step::Input(Input::SocketOpened(_)));
        let disconnect = matches!(step, Step::Input(Input::Disconnect));
        let described = format!("{step:?}");
        let mut fired = false;
        match step {
            Step::Input(input) => {
                let welcome = match &input {
                    Input::Received(_, text) => ServerFrame::decode(text).ok(),
                    Input::ReceivedBinary(_, bytes) => ServerFrame::decode_msgpack(bytes).ok(),
                    _ => None,
                };
                if let Some(ServerFrame::Welcome { heartbeat_ms, .. }) = welcome {
                    self.longest = self.longest.max(Duration::from_millis(heartbeat_ms));
                }
                self.core.handle(input, self.now);
            }
            Step::Timer => {
                // A deadline further away than a month (a saturated one, say) is never
                // reached by a real driver; jumping the clock to it would only test the
                // end of time.
                if let Some(due) = self.core.poll_timeout()
                    && self.now.until(due) < Duration::from_secs(30 * 86_400)
                {
                    self.now = self.now.max(due);
                }
                fired = true;
            }
            Step::Advance(ms) => {
                self.now = self.now.after(Duration::from_millis(ms));
                fired = true;
            }
            Step::Back(ms) => {
                self.now = Millis(self.now.0.saturating_sub(ms));
                fired = true;
            }
            Step::Nothing => return Ok(()),
        }
        self.drain(&before, opened, outcome).map_err(|e| format!("{e}\n  after {described}"))?;
        if fired {
            // The driver's timer, re-armed at every poll_timeout, until the core is quiet.
            let mut turns = 0;
            loop {
                let before = self.core.state().clone();
                self.core.handle_timeout(self.now);
                self.drain(&before, false, outcome).map_err(|e| format!("{e}\n  after {described}"))?;
                match self.core.poll_timeout() {
                    Some(due) if due < self.now => {
                        return Err(format!(
                            "after handle_timeout({}) the next deadline is {} ms in the past ({:?})",
                            self.now.0,
                            self.now.0 - due.0,
                            Timer::ALL
                                .iter()
                                .filter(|t| self.core.deadline(**t) == Some(due))
                                .collect::<Vec<_>>()
                        ));
                    }
                    Some(due) if due == self.now => {
                        turns += 1;
                        if turns > 50 {
                            return Err(format!(
                                "a driver honouring poll_timeout spins: still due now after 50 turns ({:?})",
                                self.core.state()
                            ));
                        }
                    }
                    _ => break,
                }
            }
        }
        if disconnect {
            let armed: Vec<Timer> = Timer::ALL
                .into_iter()
                .filter(|t| *t != Timer::Expiry && self.core.deadline(*t).is_some())
                .collect();
            if !armed.is_empty() || self.socket.is_some() || *self.core.state() != State::Closed {
                return Err(format!(
                    "after a disconnect: {:?}, socket {:?}, timers {armed:?}",
                    self.core.state(),
                    self.socket
                ));
            }
        }
        self.invariants().map_err(|e| format!("{e}\n  after {described}"))
    }

    /// Carries out every action and reads every event, checking each.
    fn drain(&mut self, before: &State, opened: bool, outcome: &mut Outcome) -> Result<(), String> {
        let state = self.core.state().clone();
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Open { socket, endpoint } => {
                    if self.socket.is_some() {
                        return Err(format!("two sockets: {:?} open, then {socket:?}", self.socket));
                    }
                    if self.user_closed {
                        return Err("reconnected after the person disconnected".into());
                    }
                    if !(self.endpoints.contains(&endpoint)
                        || self.endpoints.is_empty() && endpoint.is_empty())
                    {
                        return Err(format!("opened {endpoint:?}, not one of {:?}", self.endpoints));
                    }
                    self.socket = Some(socket);
                    outcome.detail("open");
                }
                Action::Send(socket, _) | Action::SendBinary(socket, _) if Some(socket) != self.socket => {
                    return Err(format!("a write on {socket:?}, not the current socket {:?}", self.socket));
                }
                Action::Send(_, text) => {
                    if self.encoding != Encoding::Json {
                        return Err("a text frame on a MessagePack connection".into());
                    }
                    self.frames_sent += 1;
                    self.bytes_sent += text.len() as u64;
                    let frame =
                        ClientFrame::decode(&text).map_err(|e| format!("the core wrote {text:?}: {e}"))?;
                    self.written(frame, before, &state, opened, outcome)?;
                }
                Action::SendBinary(_, bytes) => {
                    if self.encoding != Encoding::MessagePack {
                        return Err("a binary frame on a JSON connection".into());
                    }
                    self.frames_sent += 1;
                    self.bytes_sent += bytes.len() as u64;
                    let frame = ClientFrame::decode_msgpack(&bytes)
                        .map_err(|e| format!("the core wrote {bytes:02x?}: {e}"))?;
                    self.written(frame, before, &state, opened, outcome)?;
                }
                Action::Close { socket, code, .. } => {
                    if Some(socket) != self.socket {
                        return Err(format!("closed {socket:?}, not the current socket {:?}", self.socket));
                    }
                    if code != close::NORMAL && !(4000..=4999).contains(&code) {
                        return Err(format!("close code {code}: browsers only send 1000 and 4000-4999"));
                    }
                    self.retired.push(socket);
                    self.socket = None;
                    outcome.detail(&format!("close {code}"));
                }
                Action::FetchToken => {
                    if !self.fetch_tokens {
                        return Err("asked for a token without a provider".into());
                    }
                    if self.fetching {
                        return Err("asked for a token twice before an answer".into());
                    }
                    self.fetching = true;
                }
            }
        }
        let mut queue = None;
        let mut gone = BTreeSet::new();
        while let Some(event) = self.core.poll_event() {
            match &event {
                Event::Acked { envelope, .. } | Event::Rejected { envelope, .. } => {
                    if !self.published.contains(&envelope.id) {
                        return Err(format!("an ack or rejection for {:?}, never published", envelope.id));
                    }
                    gone.insert(envelope.id.clone());
                }
                Event::Dropped(dropped) => drop(gone.insert(dropped.envelope.id.clone())),
                Event::Queue { messages, bytes } => queue = Some((*messages, *bytes)),
                Event::State(state) => outcome.detail(state_name(state)),
                Event::Frame(frame) => outcome.detail(frame.kind()),
                _ => {}
            }
        }
        // A publish written is one the outbox holds (or let go of in the same call: it
        // was written, the socket then died, and its TTL ran out).
        for id in std::mem::take(&mut self.written_now) {
            if !self.core.outbox().contains(&id) && !gone.contains(&id) {
                return Err(format!("wrote publish {id:?}, which the outbox does not hold"));
            }
        }
        if let Some(reported) = queue {
            let actual = (self.core.outbox().len(), self.core.outbox().bytes());
            if reported != actual {
                return Err(format!("the last Queue event says {reported:?}, the outbox holds {actual:?}"));
            }
        }
        Ok(())
    }

    /// A frame the core wrote.
    fn written(
        &mut self,
        frame: ClientFrame,
        before: &State,
        state: &State,
        opened: bool,
        outcome: &mut Outcome,
    ) -> Result<(), String> {
        match &frame {
            ClientFrame::Hello { .. } if !opened => {
                return Err("a hello not right after the socket opened".into());
            }
            ClientFrame::Hello { .. } => {}
            _ if *before != State::Open && *state != State::Open => {
                return Err(format!(
                    "wrote {} before the welcome ({before:?}, then {state:?})",
                    frame.kind()
                ));
            }
            _ => {}
        }
        if let ClientFrame::Publish { id, .. } = &frame {
            self.sent.retain(|known| known != id);
            self.sent.push(id.clone());
            self.written_now.push(id.clone());
        }
        outcome.detail(frame.kind());
        Ok(())
    }

    fn invariants(&mut self) -> Result<(), String> {
        let outbox = self.core.outbox();
        let bounds = &self.config.outbox;
        if outbox.len() > bounds.max_messages || outbox.bytes() > bounds.max_bytes {
            return Err(format!(
                "outbox over its bounds: {} messages, {} bytes",
                outbox.len(),
                outbox.bytes()
            ));
        }
        if outbox.in_flight() > self.config.max_in_flight {
            return Err(format!("{} in flight, at most {}", outbox.in_flight(), self.config.max_in_flight));
        }
        let stats = self.core.stats();
        if (stats.frames_sent, stats.bytes_sent) != (self.frames_sent, self.bytes_sent) {
            return Err(format!(
                "stats count {} frames / {} bytes sent, the driver wrote {} / {}",
                stats.frames_sent, stats.bytes_sent, self.frames_sent, self.bytes_sent
            ));
        }
        for timer in Timer::ALL {
            if let Some(due) = self.core.deadline(timer) {
                let ahead = self.now.until(due);
                if ahead > self.longest + Duration::from_millis(1) {
                    return Err(format!(
                        "{timer:?} is {ahead:?} away; the longest wait is {:?}",
                        self.longest
                    ));
                }
            }
        }
        let state = self.core.state();
        if matches!(state, State::Closed | State::Failed { .. } | State::Offline | State::Idle) {
            if self.socket.is_some() {
                return Err(format!("{state:?} with a socket open"));
            }
            if self.core.deadline(Timer::Reconnect).is_some() {
                return Err(format!("{state:?} with a reconnect armed"));
            }
        }
        let core = &self.core;
        self.sent.retain(|id| core.outbox().contains(id));
        Ok(())
    }
}

fn state_name(state: &State) -> &'static str {
    match state {
        State::Idle => "idle",
        State::Connecting { .. } => "connecting",
        State::Open => "open",
        State::Reconnecting { .. } => "reconnecting",
        State::Offline => "offline",
        State::Closed => "closed",
        State::Failed { .. } => "failed",
    }
}
