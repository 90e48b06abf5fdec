//! `server-ws`: a connection to the server's `/ws`, in JSON or MessagePack (by
//! subprotocol), in dev mode or with signed tokens, fed a hello (or not), joins, and
//! then generated, loosened and raw frames, binary where text is expected, text that
//! is not UTF-8, messages over the size limit, protocol pings.
//!
//! Why it matters: this is the server's front door, open to anyone who can reach it,
//! and one process serves every connection. Nothing sent on one connection may crash a
//! task, stall the server or reach another user; every frame must get exactly the
//! answer `PROTOCOL.md` gives it (the model in [`super::model`] works it out: the
//! error code, the close code, the ack), in order; and a well-behaved client must
//! still get its publish acked after each case.

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use futures::{SinkExt, StreamExt};
use tether_server::Claims;
use tether_shared::{ClientFrame, Encoding, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::model::{self, Model, Sent};
use super::{GOOD_ROOM, Live, PATIENCE};
use crate::engine::{Outcome, Target};
use crate::generate::{self, Loose};
use crate::targets::frames::code_name;

/// The target: a server and its well-behaved client.
pub struct Sockets {
    live: Live,
    case: u64,
}

impl Sockets {
    /// Starts the servers.
    pub fn start() -> Sockets {
        Sockets { live: Live::start(), case: 0 }
    }
}

impl Target for Sockets {
    fn name(&self) -> &'static str {
        "server-ws"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        vec![vec![0; 16], vec![0; 200], vec![1; 200]]
    }

    fn max_len(&self) -> usize {
        4096
    }

    fn shrink_runs(&self) -> usize {
        300
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        self.case += 1;
        let now = tether_shared::Millis::now().0 / 1000;
        let case = Case::new(&mut Unstructured::new(input), now).map_err(|e| format!("generator: {e}"))?;
        let addr = if case.auth { self.live.auth.addr() } else { self.live.dev.addr() };
        let sentinel = 0xF0_0000_0000 + self.case;
        let mut outcome = self.live.runtime.block_on(case.run(addr, now, sentinel))?;
        self.live.check_good()?;
        outcome.detail("good client ok");
        Ok(outcome)
    }
}

/// One connection's worth of messages.
#[derive(Debug)]
struct Case {
    auth: bool,
    offer: Option<&'static str>,
    sends: Vec<Sent>,
}

/// A signed token for the auth server: mostly valid for an hour, sometimes expired,
/// sometimes never expiring, sometimes damaged.
pub fn token(u: &mut Unstructured, now: u64) -> arbitrary::Result<String> {
    let rooms = if u.ratio(2, 3)? {
        vec!["*".into()]
    } else {
        vec![(*u.choose(&["fuzz", "team-*", "*-7", "general"])?).into()]
    };
    let claims = Claims {
        sub: if u.arbitrary()? { "u_fuzz".into() } else { generate::string(u)? },
        name: generate::string(u)?,
        rooms,
        exp: match u.int_in_range(0..=19)? {
            0..=1 => now.saturating_sub(60),
            2 => u64::MAX,
            3 => u64::MAX / 2,
            _ => now + 3_600,
        },
    };
    let mut token = tether_server::sign_token(super::AUTH_SECRET.as_bytes(), &claims);
    if u.ratio(1, 8)? {
        let at = u.int_in_range(0..=token.len() - 1)?;
        token.replace_range(at..=at, if token.as_bytes()[at] == b'A' { "B" } else { "A" });
    }
    Ok(token)
}

impl Case {
    fn new(u: &mut Unstructured, now: u64) -> arbitrary::Result<Case> {
        let auth = u.ratio(1, 5)?;
        let offers =
            [None, Some("tether.v1.json"), Some("tether.v1.msgpack"), Some("chat, tether.v1.msgpack")];
        let offer = *u.choose(&offers)?;
        let encoding = Encoding::from_offer(offer);
        let mut sends = Vec::new();
        if u.ratio(9, 10)? {
            let token = if auth { Some(token(u, now)?) } else { None };
            let hello =
                ClientFrame::Hello { v: 1, token, name: Some(generate::string(u)?), resume_token: None };
            sends.push(framed(&hello, encoding));
        }
        if u.ratio(1, 2)? {
            sends.push(framed(
                &ClientFrame::Join { room: GOOD_ROOM.into(), since: None, history: None },
                encoding,
            ));
        }
        for _ in 0..u.int_in_range(0..=12)? {
            sends.push(message(u, auth, encoding, now)?);
        }
        Ok(Case { auth, offer, sends })
    }

    async fn run(&self, addr: std::net::SocketAddr, now: u64, sentinel: u64) -> Result<Outcome, String> {
        let mut request = format!("ws://{addr}/ws").into_client_request().map_err(|e| e.to_string())?;
        if let Some(offer) = self.offer {
            request.headers_mut().insert("sec-websocket-protocol", offer.parse().map_err(|_| "header")?);
        }
        let encoding = Encoding::from_offer(self.offer);
        let started = std::time::Instant::now();
        let (mut client, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| "the upgrade took too long".to_string())?
            .map_err(|e| format!("the upgrade failed: {e}"))?;
        let mut model = Model::new(self.auth, encoding, now);
        let mut too_big = false;
        for sent in &self.sends {
            model.feed(sent);
            too_big |= matches!(sent, Sent::TooBig);
            if client.send(sent.message()).await.is_err() {
                break;
            }
        }
        let sentinel = (!model.closed()).then_some(sentinel);
        if let Some(nonce) = sentinel {
            let _ = client.send(framed(&ClientFrame::Ping { nonce }, encoding).message()).await;
        }
        let read = read(&mut client, encoding, sentinel, &model.acks).await;
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), client.close(None)).await;
        let read = read?;
        let mut outcome = Outcome::default();
        for frame in &read.answers {
            match frame {
                ServerFrame::Error { code, .. } => outcome.label(format!("error {}", code_name(*code))),
                ServerFrame::Reject { code, .. } => outcome.label(format!("reject {code:?}")),
                other => outcome.detail(other.kind()),
            }
        }
        let context = || format!("\n  sent: {:?}", abbreviated(&self.sends));
        match (model.close, read.close) {
            (Some(expected), Some(Ended::Close(code))) if expected == code => {
                outcome.label(format!("close {code}"))
            }
            // No allowance for a reset: the server reads away what follows the end of a
            // connection until the client closes, so the close frame always arrives.
            (None, None) => outcome.label("stayed open"),
            (expected, got) => {
                return Err(format!(
                    "the connection should end with {expected:?}, it ended with {got:?} after {:?}{}\n  the server's last connection lines:{}",
                    started.elapsed(),
                    context(),
                    super::endings()
                ));
            }
        }
        model::compare(&model, &read.answers, sentinel, too_big).map_err(|e| format!("{e}{}", context()))?;
        check_acks(&model.acks, &read.acks, model.close.is_some())
            .map_err(|e| format!("{e}{}", context()))?;
        Ok(outcome)
    }
}

/// Everything but the hello and the join, at random.
fn message(u: &mut Unstructured, auth: bool, encoding: Encoding, now: u64) -> arbitrary::Result<Sent> {
    Ok(match u.int_in_range(0..=19)? {
        0..=11 => {
            let mut frame = generate::client_frame(u)?;
            if let ClientFrame::Refresh { token: t } | ClientFrame::Hello { token: Some(t), .. } = &mut frame
                && auth
                && u.arbitrary()?
            {
                *t = token(u, now)?;
            }
            let mut tree = Loose::of(&frame);
            if u.ratio(1, 3)? {
                generate::loosen(u, &mut tree)?;
            }
            if encoding == Encoding::MessagePack && u.ratio(2, 3)? {
                Sent::Binary(tree.to_msgpack(u)?)
            } else {
                Sent::Text(tree.to_json())
            }
        }
        12 | 13 => {
            let frame = ClientFrame::Publish {
                id: generate::id(u)?,
                room: GOOD_ROOM.into(),
                body: generate::json(u, 2)?,
                priority: 0,
            };
            if encoding == Encoding::MessagePack && u.arbitrary()? {
                Sent::Binary(frame.encode_msgpack())
            } else {
                Sent::Text(frame.encode())
            }
        }
        14 => Sent::Text(u.arbitrary()?),
        15 => Sent::Binary(u.arbitrary()?),
        16 => Sent::Ping,
        17 if u.ratio(1, 3)? => Sent::BadUtf8,
        18 if u.ratio(1, 3)? => Sent::TooBig,
        _ => framed(&ClientFrame::Ping { nonce: generate::number(u)? }, encoding),
    })
}

impl Sent {
    /// The WebSocket message that sends it.
    fn message(&self) -> Message {
        match self {
            Sent::Text(text) => Message::text(text.clone()),
            Sent::Binary(bytes) => Message::binary(bytes.clone()),
            Sent::BadUtf8 => Message::Frame(Frame::message(
                &b"{\"type\":\"ping\",\"nonce\":\xff}"[..],
                OpCode::Data(Data::Text),
                true,
            )),
            Sent::TooBig => Message::text("x".repeat(70_000)),
            Sent::Ping => Message::Ping(b"fuzz".to_vec().into()),
        }
    }
}

/// A frame as the connection's encoding carries it: text for JSON, binary for
/// MessagePack (where a text message is refused, `text_not_supported`).
fn framed(frame: &ClientFrame, encoding: Encoding) -> Sent {
    match encoding {
        Encoding::Json => Sent::Text(frame.encode()),
        Encoding::MessagePack => Sent::Binary(frame.encode_msgpack()),
    }
}

fn abbreviated(sends: &[Sent]) -> Vec<String> {
    sends
        .iter()
        .map(|sent| {
            let text = match sent {
                Sent::Text(text) => text.clone(),
                Sent::Binary(bytes) => format!("binary {bytes:02x?}"),
                other => format!("{other:?}"),
            };
            if text.chars().count() > 200 {
                format!("{}…", text.chars().take(200).collect::<String>())
            } else {
                text
            }
        })
        .collect()
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// With a close frame and this code (1005 for none).
    Close(u16),
    /// Without a close frame.
    Dropped(String),
}

/// What came back on a connection.
pub struct Read {
    /// The answers, in order.
    pub answers: Vec<ServerFrame>,
    /// Acks by id.
    pub acks: BTreeMap<String, usize>,
    /// How it ended, if it did.
    pub close: Option<Ended>,
}

/// Reads until the sentinel's pong and every expected ack arrived, or the connection
/// ended; every frame must decode in the connection's encoding.
async fn read(
    client: &mut super::Client,
    encoding: Encoding,
    sentinel: Option<u64>,
    acks: &BTreeMap<String, usize>,
) -> Result<Read, String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut read = Read { answers: Vec::new(), acks: BTreeMap::new(), close: None };
    let mut pong = false;
    loop {
        let acked = acks.iter().all(|(id, n)| read.acks.get(id).copied().unwrap_or(0) >= *n);
        if pong && acked {
            return Ok(read);
        }
        let message = match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => {
                return Err(format!(
                    "no answer in time: pong {pong}, acks {:?} of {acks:?}, answers so far {:?}",
                    read.acks,
                    read.answers.iter().map(ServerFrame::kind).collect::<Vec<_>>()
                ));
            }
            Ok(None) => {
                read.close = Some(Ended::Dropped("the stream ended".into()));
                return Ok(read);
            }
            Ok(Some(Err(error))) => {
                read.close = Some(Ended::Dropped(error.to_string()));
                return Ok(read);
            }
            Ok(Some(Ok(message))) => message,
        };
        let frame = match (message, encoding) {
            (Message::Text(text), Encoding::Json) => ServerFrame::decode(&text)
                .map_err(|e| format!("the server wrote a frame that does not decode ({e}): {text}"))?,
            (Message::Binary(bytes), Encoding::MessagePack) => {
                ServerFrame::decode_msgpack(&bytes).map_err(|e| {
                    format!("the server wrote MessagePack that does not decode ({e}): {bytes:02x?}")
                })?
            }
            (Message::Close(frame), _) => {
                read.close = Some(Ended::Close(frame.map_or(1005, |f| u16::from(f.code))));
                return Ok(read);
            }
            (Message::Ping(_) | Message::Pong(_), _) => continue,
            (other, encoding) => return Err(format!("a {other:?} on a {encoding:?} connection")),
        };
        match &frame {
            ServerFrame::Ack { id, .. } => *read.acks.entry(id.clone()).or_default() += 1,
            ServerFrame::Pong { nonce } if Some(*nonce) == sentinel => pong = true,
            _ => {}
        }
        if model::answered(&frame) {
            read.answers.push(frame);
        }
    }
}

/// Every accepted publish acked, as often as it was sent, and no other ack.
pub fn check_acks(
    expected: &BTreeMap<String, usize>,
    got: &BTreeMap<String, usize>,
    closed: bool,
) -> Result<(), String> {
    for (id, n) in got {
        if !expected.contains_key(id) {
            return Err(format!("an ack for {id:?}, a publish that should have been refused"));
        }
        if n > &expected[id] {
            return Err(format!("{n} acks for {id:?}, sent {} times", expected[id]));
        }
    }
    if !closed {
        for (id, n) in expected {
            if got.get(id).copied().unwrap_or(0) < *n {
                return Err(format!("publish {id:?} was never acked"));
            }
        }
    }
    Ok(())
}
