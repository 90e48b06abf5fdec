//! `server-fallback`: the HTTP fallback transports (`/rt/open`, `/rt/send`,
//! `/rt/poll`, `/rt/sse`, `/rt/close`): sessions opened with any body, fed frames one
//! by one or in arrays (some too many, some too large), read back by long-polling and
//! by event streams, and stray requests with unknown sessions, wrong methods and
//! junk queries.
//!
//! Why it matters: these routes exist for the networks where a WebSocket cannot get
//! through, and they turn the same frames into many short HTTP requests, each a new
//! chance to get framing, session lookup or event numbering wrong. A session must
//! behave exactly like a socket (the same answers from the same model as `server-ws`,
//! the same close codes), event ids must count up without a gap, and no request may
//! get a 5xx; the refusals the fallback makes itself are JSON with an `error` code.

use arbitrary::Unstructured;
use serde_json::Value;
use serde_json::value::RawValue;
use tether_shared::{ClientFrame, Encoding, ServerFrame};

use super::http::{self, Request, Response};
use super::model::{self, Model, Sent};
use super::socket;
use super::{GOOD_ROOM, Live, PATIENCE};
use crate::engine::{Outcome, Target};
use crate::generate::{self, Loose};

/// The target.
pub struct Fallback {
    live: Live,
    case: u64,
}

impl Fallback {
    /// Starts the servers.
    pub fn start() -> Fallback {
        Fallback { live: Live::start(), case: 0 }
    }
}

impl Target for Fallback {
    fn name(&self) -> &'static str {
        "server-fallback"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        vec![vec![0; 16], vec![0; 200], vec![1; 200]]
    }

    fn max_len(&self) -> usize {
        4096
    }

    fn shrink_runs(&self) -> usize {
        200
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        self.case += 1;
        let now = tether_shared::Millis::now().0 / 1000;
        let mut u = Unstructured::new(input);
        let case = Case::new(&mut u, now).map_err(|e| format!("generator: {e}"))?;
        let addr = if case.auth { self.live.auth.addr() } else { self.live.dev.addr() };
        let sentinel = 0xF1_0000_0000 + self.case;
        let mut outcome = self.live.runtime.block_on(case.run(addr, now, sentinel))?;
        self.live.check_good()?;
        outcome.detail("good client ok");
        Ok(outcome)
    }
}

#[derive(Debug)]
struct Case {
    auth: bool,
    hello: String,
    /// Bodies of `send`s.
    sends: Vec<String>,
    /// Read the session's event stream too.
    sse: bool,
    /// Requests off the beaten path.
    strays: Vec<Request>,
}

impl Case {
    fn new(u: &mut Unstructured, now: u64) -> arbitrary::Result<Case> {
        let auth = u.ratio(1, 6)?;
        let hello = if u.ratio(5, 6)? {
            let token = if auth { Some(socket::token(u, now)?) } else { None };
            ClientFrame::Hello { v: 1, token, name: Some(generate::string(u)?), resume_token: None }.encode()
        } else {
            let mut tree = Loose::of(&generate::client_frame(u)?);
            generate::loosen(u, &mut tree)?;
            tree.to_json()
        };
        let mut frames = Vec::new();
        if u.ratio(1, 2)? {
            frames.push(ClientFrame::Join { room: GOOD_ROOM.into(), since: None, history: None }.encode());
        }
        for _ in 0..u.int_in_range(0..=10)? {
            frames.push(match u.int_in_range(0..=9)? {
                0..=6 => {
                    let mut tree = Loose::of(&generate::client_frame(u)?);
                    if u.ratio(1, 3)? {
                        generate::loosen(u, &mut tree)?;
                    }
                    tree.to_json()
                }
                7 => ClientFrame::Publish {
                    id: generate::id(u)?,
                    room: GOOD_ROOM.into(),
                    body: generate::json(u, 2)?,
                    priority: 0,
                }
                .encode(),
                8 => u.arbitrary()?,
                _ => "x".repeat(70_000),
            });
        }
        // The frames go in one to three sends, each a single frame or an array.
        let mut sends = Vec::new();
        let mut rest = frames.as_slice();
        while !rest.is_empty() {
            let take = u.int_in_range(1..=rest.len())?;
            let (now, later) = rest.split_at(take);
            rest = later;
            if take == 1 && u.arbitrary()? {
                sends.push(now[0].clone());
            } else {
                sends.push(format!("[{}]", now.join(",")));
            }
        }
        if u.ratio(1, 30)? {
            sends.push(format!("[{}]", vec![r#"{"type":"ping","nonce":1}"#; 65].join(",")));
        }
        let mut strays = Vec::new();
        for _ in 0..u.int_in_range(0..=2)? {
            let method = *u.choose(&["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])?;
            let path = *u.choose(&[
                "/rt/open",
                "/rt/send",
                "/rt/poll",
                "/rt/sse",
                "/rt/close",
                "/rt/nope",
                "/rt",
                "/rt/send/x",
            ])?;
            let query = match u.int_in_range(0..=4)? {
                0 => String::new(),
                1 => format!("?session={}", generate::string(u)?.replace(['&', '#', ' ', '%'], "")),
                2 => "?session=unknown-session&after=3".into(),
                3 => "?session=&after=-1&last_event_id=x".into(),
                _ => "?after=%zz&session=%".into(),
            };
            let body: Vec<u8> = if u.arbitrary()? { u.arbitrary()? } else { Vec::new() };
            let mut request = Request::new(method, &format!("{path}{query}"), body);
            request.length = u.ratio(7, 8)?;
            if u.ratio(1, 4)? {
                request = request.header("Last-Event-ID", &generate::string(u)?.replace(['\r', '\n'], ""));
            }
            strays.push(request);
        }
        Ok(Case { auth, hello, sends, sse: u.ratio(1, 5)?, strays })
    }

    async fn run(&self, addr: std::net::SocketAddr, now: u64, sentinel: u64) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        let mut model = Model::new(self.auth, Encoding::Json, now);
        for stray in &self.strays {
            stray_request(addr, stray, &mut outcome).await?;
        }

        // Open: the hello's answer decides the status.
        let open = http::send(addr, &Request::new("POST", "/rt/open", self.hello.clone()), PATIENCE).await?;
        too_bad(&open, "/rt/open")?;
        model.feed(&Sent::Text(self.hello.clone()));
        let first = model.expected.first().cloned();
        let body: Value = serde_json::from_str(&open.text())
            .map_err(|e| format!("/rt/open answered {} with {e}: {}", open.status, open.text()))?;
        outcome.label(format!("open {}", open.status));
        let session = match (&first, model.close, open.status) {
            (Some(model::Expect::Welcome), _, 200) => {
                body["session"].as_str().ok_or("an open without a session")?.to_owned()
            }
            (Some(_), None, 400) if body["error"] == "hello_refused" => {
                let frame = ServerFrame::decode(&body["frame"].to_string())
                    .map_err(|e| format!("hello_refused with a frame that does not decode: {e}"))?;
                model::compare(&model, &[frame], None, false)
                    .map_err(|e| format!("/rt/open: {e}\n  hello: {}", self.hello))?;
                return Ok(outcome);
            }
            (None, Some(code), status) if body["error"] == "closed" && body["code"] == code => {
                let expected = match code {
                    4401 => 401,
                    4403 => 403,
                    _ => 400,
                };
                return if status == expected {
                    Ok(outcome)
                } else {
                    Err(format!("/rt/open answered {status} for a close with {code}"))
                };
            }
            _ => {
                return Err(format!(
                    "/rt/open answered {} {} where the hello should get {first:?} then close {:?}\n  hello: {}",
                    open.status,
                    open.text(),
                    model.close,
                    self.hello
                ));
            }
        };
        let query = format!("session={session}");
        let mut answers = vec![
            ServerFrame::decode(&body["frame"].to_string()).map_err(|e| format!("the open's frame: {e}"))?,
        ];
        let mut last_event = body["event"].as_u64().ok_or("an open without an event id")?;
        if last_event != 1 {
            return Err(format!("the welcome is event {last_event}, not 1"));
        }

        for send in &self.sends {
            let closed_before = model.closed();
            let response =
                http::send(addr, &Request::new("POST", &format!("/rt/send?{query}"), send.clone()), PATIENCE)
                    .await?;
            too_bad(&response, "/rt/send")?;
            let frames = split(send);
            let expected = if frames.len() > 64 || frames.iter().any(|f| f.len() > 64 * 1024) {
                413
            } else {
                for frame in &frames {
                    model.feed(&Sent::Text(frame.clone()));
                }
                204
            };
            outcome.label(format!("send {}", response.status));
            let fine = response.status == expected
                || (closed_before && response.status == 410)
                || (closed_before && response.status == 204 && expected == 204);
            if !fine {
                return Err(format!(
                    "/rt/send answered {} {}, expected {expected}\n  body: {}",
                    response.status,
                    response.text(),
                    abbreviate(send)
                ));
            }
        }
        let sentinel = (!model.closed()).then_some(sentinel);
        if let Some(nonce) = sentinel {
            let ping = ClientFrame::Ping { nonce }.encode();
            let response =
                http::send(addr, &Request::new("POST", &format!("/rt/send?{query}"), ping), PATIENCE).await?;
            if response.status != 204 {
                return Err(format!("the last ping's send answered {} {}", response.status, response.text()));
            }
        }
        let mut acks = std::collections::BTreeMap::new();
        let mut pong = false;
        let mut lost = false;
        let mut after_stream = false;
        if self.sse {
            // What the stream delivered counts as delivered; polling goes on from there.
            for (event, frame) in read_stream(addr, &query, &mut outcome).await? {
                if event <= last_event {
                    continue;
                }
                if event != last_event + 1 {
                    return Err(format!("event-stream event {event} after event {last_event}"));
                }
                last_event = event;
                note(&frame, &mut acks, &mut pong, sentinel);
                if model::answered(&frame) {
                    answers.push(frame);
                }
            }
            after_stream = true;
        }

        // Long-poll until the sentinel's pong and every ack, or the end.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut closed = None;
        while !(pong && model.acks.iter().all(|(id, n)| acks.get(id).copied().unwrap_or(0) >= *n))
            && closed.is_none()
        {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no pong or ack in time: answers {:?}",
                    answers.iter().map(ServerFrame::kind).collect::<Vec<_>>()
                ));
            }
            let poll = http::send(
                addr,
                &Request::new("GET", &format!("/rt/poll?{query}&after={last_event}"), ""),
                left,
            )
            .await?;
            too_bad(&poll, "/rt/poll")?;
            if poll.status != 200 {
                return Err(format!("/rt/poll of an open session answered {} {}", poll.status, poll.text()));
            }
            if std::env::var_os("TETHER_FUZZ_TRACE").is_some() {
                eprintln!("poll after {last_event}: {}", abbreviate(&poll.text()));
            }
            let batch: Value = serde_json::from_str(&poll.text())
                .map_err(|e| format!("a poll answer that is not JSON ({e}): {}", abbreviate(&poll.text())))?;
            for entry in batch["frames"].as_array().ok_or("a poll answer without frames")? {
                let event = entry["event"].as_u64().ok_or("a polled frame without an event id")?;
                if event != last_event + 1 {
                    if !after_stream {
                        return Err(format!("event {event} after event {last_event}"));
                    }
                    lost = true;
                }
                last_event = event;
                let frame = ServerFrame::decode(&entry["frame"].to_string())
                    .map_err(|e| format!("a polled frame that does not decode: {e}"))?;
                note(&frame, &mut acks, &mut pong, sentinel);
                if model::answered(&frame) {
                    answers.push(frame);
                }
            }
            after_stream = false;
            if !batch["closed"].is_null() {
                closed = Some(batch["closed"]["code"].as_u64().ok_or("a close without a code")? as u16);
            }
        }
        let context = || {
            format!(
                "\n  hello: {}\n  sends: {:?}",
                self.hello,
                self.sends.iter().map(|s| abbreviate(s)).collect::<Vec<_>>()
            )
        };
        if closed != model.close {
            return Err(format!(
                "the session should end with {:?}, it ended with {closed:?}{}",
                model.close,
                context()
            ));
        }
        outcome.label(match closed {
            Some(code) => format!("closed {code}"),
            None => "stayed open".into(),
        });
        if lost {
            // Known (see the README of the reproducers): events an event stream wrote
            // and then forgot while its client had gone are not sent again.
            outcome.label("events lost after a dropped event stream");
            return Ok(outcome);
        }
        model::compare(&model, &answers, sentinel, false).map_err(|e| format!("{e}{}", context()))?;
        socket::check_acks(&model.acks, &acks, closed.is_some()).map_err(|e| format!("{e}{}", context()))?;
        for frame in &answers {
            if let ServerFrame::Error { code, .. } = frame {
                outcome.label(format!("error {}", crate::targets::frames::code_name(*code)));
            }
        }
        let close =
            http::send(addr, &Request::new("POST", &format!("/rt/close?{query}"), ""), PATIENCE).await?;
        too_bad(&close, "/rt/close")?;
        Ok(outcome)
    }
}

/// Counts an ack, or notes the sentinel's pong.
fn note(
    frame: &ServerFrame,
    acks: &mut std::collections::BTreeMap<String, usize>,
    pong: &mut bool,
    sentinel: Option<u64>,
) {
    match frame {
        ServerFrame::Ack { id, .. } => *acks.entry(id.clone()).or_default() += 1,
        ServerFrame::Pong { nonce } if Some(*nonce) == sentinel => *pong = true,
        _ => {}
    }
}

/// A `send` body as the server splits it: an array's elements, or the body whole.
fn split(body: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<Box<RawValue>>>(body) {
        Ok(frames) if body.trim_start().starts_with('[') => {
            frames.into_iter().map(|f| f.get().to_owned()).collect()
        }
        _ => vec![body.to_owned()],
    }
}

/// No 5xx, ever; and the fallback's own refusals (JSON) name an error code.
fn too_bad(response: &Response, what: &str) -> Result<(), String> {
    if response.status >= 500 {
        return Err(format!("{what} answered {}: {}", response.status, response.text()));
    }
    if response.status >= 400 && response.is_json() {
        let body: Value = serde_json::from_str(&response.text())
            .map_err(|e| format!("{what} answered {} with broken JSON ({e})", response.status))?;
        if !body["error"].is_string() {
            return Err(format!(
                "{what} answered {} without an error code: {}",
                response.status,
                response.text()
            ));
        }
    }
    Ok(())
}

/// A request with a made-up session or the wrong method: refused, never a 5xx, always
/// as JSON when hyper could read it, and an unknown session is `unknown_session`.
async fn stray_request(
    addr: std::net::SocketAddr,
    request: &Request,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let streaming = request.target.starts_with("/rt/sse") || request.target.starts_with("/rt/poll");
    let wait = if streaming { std::time::Duration::from_millis(300) } else { PATIENCE };
    let response = match http::send(addr, request, wait).await {
        Ok(response) => response,
        Err(_) if streaming => {
            outcome.label("stray stream still open");
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let what = format!("{} {}", request.method, request.target);
    if request.method == "HEAD" {
        // The answer's head without its body: only the status can be judged.
        if response.status >= 500 {
            return Err(format!("{what} answered {}", response.status));
        }
    } else {
        too_bad(&response, &what)?;
    }
    // hyper refuses a request line or header it cannot parse before any route sees it
    // (a target byte outside the URL's plain characters, a control byte in a header);
    // every other refusal under /rt is the fallback's own, and JSON.
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/?=&-_.~%!$'()*+,;:@".contains(&b);
    let parsed = request.target.bytes().all(plain)
        && request
            .headers
            .iter()
            .all(|(_, value)| value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
    if parsed && request.target.starts_with("/rt") && response.status >= 400 && !response.is_json() {
        return Err(format!("{what} answered {} without a JSON body: {}", response.status, response.text()));
    }
    let kind = if response.is_json() { "json" } else { "text" };
    outcome.label(format!("stray {} {kind}", response.status));
    let unknown = request.target.contains("session=unknown-session")
        && request.target.starts_with("/rt/")
        && !request.target.starts_with("/rt/open");
    let routed = matches!(
        (request.method.as_str(), request.target.split('?').next()),
        ("POST", Some("/rt/send" | "/rt/close")) | ("GET", Some("/rt/poll" | "/rt/sse"))
    );
    if unknown && routed && request.length && response.status != 404 {
        return Err(format!(
            "{} {} of an unknown session answered {} {}",
            request.method,
            request.target,
            response.status,
            response.text()
        ));
    }
    Ok(())
}

/// Reads a session's event stream for a moment: every event an id and a frame that
/// decodes (or the closing `close` event). Returns the frames with their ids.
async fn read_stream(
    addr: std::net::SocketAddr,
    query: &str,
    outcome: &mut Outcome,
) -> Result<Vec<(u64, ServerFrame)>, String> {
    let mut frames = Vec::new();
    let request = Request::new("GET", &format!("/rt/sse?{query}&last_event_id=0"), "");
    let response = http::send(addr, &request, std::time::Duration::from_millis(150)).await?;
    if response.status != 200 || !response.head.contains("text/event-stream") {
        return Err(format!("/rt/sse answered {} {}", response.status, response.text()));
    }
    for event in response.text().split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data: String = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("\n");
        if event.lines().any(|l| l.starts_with("event: close") || l.starts_with("event:close")) {
            serde_json::from_str::<Value>(&data)
                .map_err(|e| format!("a close event that is not JSON ({e}): {data}"))?;
            outcome.label("sse close event");
        } else if !data.is_empty() {
            let frame = ServerFrame::decode(&data)
                .map_err(|e| format!("an event-stream frame that does not decode ({e}): {data}"))?;
            let id = event.lines().find_map(|l| l.strip_prefix("id:")).and_then(|id| id.trim().parse().ok());
            let Some(id) = id else { return Err(format!("an event without an id: {event}")) };
            frames.push((id, frame));
        }
    }
    outcome.detail("sse read");
    Ok(frames)
}

fn abbreviate(text: &str) -> String {
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_owned()
    }
}
