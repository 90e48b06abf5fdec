//! The HTTP fallback transports: a session opened with `POST /rt/open`, frames up with
//! `POST /rt/send`, down as Server-Sent Events or long-polls, with the same answers as
//! a WebSocket.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{Value, json};
use tether_shared::{ClientFrame, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Opens a session as `name`: its id and the welcome.
async fn open(addr: SocketAddr, name: &str) -> (String, ServerFrame) {
    let hello = json!({"type": "hello", "v": 1, "name": name}).to_string();
    let (status, _, body) = http_with(addr, "POST", "/rt/open", &[], &hello).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["event"], 1);
    let welcome = ServerFrame::decode(&answer["frame"].to_string()).unwrap();
    (answer["session"].as_str().unwrap().to_owned(), welcome)
}

async fn send_frames(addr: SocketAddr, session: &str, frames: &[ClientFrame]) -> u16 {
    let body = format!("[{}]", frames.iter().map(ClientFrame::encode).collect::<Vec<_>>().join(","));
    http_with(addr, "POST", &format!("/rt/send?session={session}"), &[], &body).await.0
}

/// One long-poll: the frames after event `after`, with their event ids.
async fn poll(addr: SocketAddr, session: &str, after: u64) -> (Vec<(u64, ServerFrame)>, Value) {
    let (status, _, body) = http_get(addr, &format!("/rt/poll?session={session}&after={after}")).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let frames = answer["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["event"].as_u64().unwrap(), ServerFrame::decode(&f["frame"].to_string()).unwrap()))
        .collect();
    (frames, answer["closed"].clone())
}

/// Long-polls until `wanted` matches a frame; returns it and the last event id seen.
async fn poll_until<T>(
    addr: SocketAddr,
    session: &str,
    mut after: u64,
    mut wanted: impl FnMut(&ServerFrame) -> Option<T>,
) -> (T, u64) {
    within("the frame awaited by long-polling", async {
        loop {
            let (frames, closed) = poll(addr, session, after).await;
            assert!(closed.is_null() || !frames.is_empty(), "the session ended: {closed}");
            for (event, frame) in frames {
                after = event;
                if let Some(found) = wanted(&frame) {
                    return (found, after);
                }
            }
        }
    })
    .await
}

fn server_config() -> tether_server::Config {
    unthrottled()
}

async fn start() -> Running {
    server_with(server_config()).await
}

#[tokio::test]
async fn a_long_polling_session_joins_publishes_and_receives() {
    let server = start().await;
    let addr = server.addr();
    let (session, welcome) = open(addr, "Ada").await;
    assert!(matches!(welcome, ServerFrame::Welcome { .. }), "{welcome:?}");
    let mut bob = member(addr, "Bob", "r").await;

    let join = ClientFrame::Join { room: "r".into(), since: None, history: None };
    let publish =
        ClientFrame::Publish { id: "m1".into(), room: "r".into(), body: json!("over HTTP"), priority: 0 };
    assert_eq!(send_frames(addr, &session, &[join, publish]).await, 204);
    let ((), after) =
        poll_until(addr, &session, 1, |f| matches!(f, ServerFrame::Joined { .. }).then_some(())).await;
    let (seq, after) = poll_until(addr, &session, after, |f| {
        if let ServerFrame::Ack { seq, .. } = f { Some(*seq) } else { None }
    })
    .await;
    assert_eq!(seq, 1);
    assert_eq!(next_message_in(&mut bob, "r").await.2, json!("over HTTP"), "a WebSocket member hears it");

    publish_frame(&mut bob, "m2").await;
    let (id, _) = poll_until(addr, &session, after, |f| match f {
        ServerFrame::Message { id, .. } => Some(id.clone()),
        _ => None,
    })
    .await;
    assert_eq!(id, "m2", "and the session hears the WebSocket member");
    server.stop().await;
}

async fn publish_frame(client: &mut Client, id: &str) {
    publish(client, "r", id, json!("from the socket")).await;
}

#[tokio::test]
async fn a_poll_answers_at_once_when_frames_wait() {
    let server = start().await;
    let addr = server.addr();
    let (session, _) = open(addr, "Ada").await;
    send_frames(addr, &session, &[ClientFrame::Ping { nonce: 7 }]).await;
    // The pong is already waiting: the poll returns it without the 25 s wait.
    let (nonce, _) =
        poll_until(
            addr,
            &session,
            1,
            |f| if let ServerFrame::Pong { nonce } = f { Some(*nonce) } else { None },
        )
        .await;
    assert_eq!(nonce, 7);
    server.stop().await;
}

/// A raw SSE stream: events as (id, event name, data).
struct Sse {
    stream: tokio::net::TcpStream,
    buffer: String,
}

impl Sse {
    async fn open(addr: SocketAddr, session: &str, last_event_id: Option<u64>) -> Sse {
        let mut stream = within("connecting", tokio::net::TcpStream::connect(addr)).await.unwrap();
        let mut request = format!("GET /rt/sse?session={session} HTTP/1.1\r\nHost: {addr}\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        within("writing the request", stream.write_all(request.as_bytes())).await.unwrap();
        let mut sse = Sse { stream, buffer: String::new() };
        while !sse.buffer.contains("\r\n\r\n") {
            sse.read_more().await;
        }
        let (head, rest) = sse.buffer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("text/event-stream"), "{head}");
        sse.buffer = rest.to_owned();
        sse
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n =
            tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk)).await.expect("sse in time").unwrap();
        assert!(n > 0, "the stream ended");
        self.buffer.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }

    /// The next event that carries data (comments are skipped).
    async fn next(&mut self) -> (Option<u64>, String, String) {
        // Heartbeat comments would keep a wait for data that never comes alive.
        within("an event with data", self.next_unbounded()).await
    }

    async fn next_unbounded(&mut self) -> (Option<u64>, String, String) {
        loop {
            // Chunk sizes sit on lines of their own between events; they never start
            // with a field name, so dropping unknown lines is enough.
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer[..end].to_owned();
                self.buffer = self.buffer[end + 2..].to_owned();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return (id, event, data);
                }
                continue;
            }
            self.read_more().await;
        }
    }

    /// The seqs of the next `count` messages, skipping other frames.
    async fn message_seqs(&mut self, count: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.len() < count {
            let (seq, _) = self
                .until(|f| if let ServerFrame::Message { seq, .. } = f { Some(*seq) } else { None })
                .await;
            seqs.push(seq);
        }
        seqs
    }

    /// Events until a frame matches `wanted`; returns it and its event id.
    async fn until<T>(&mut self, mut wanted: impl FnMut(&ServerFrame) -> Option<T>) -> (T, u64) {
        // The stream's heartbeats would keep a wait for an event that never comes alive.
        within("the event awaited", async {
            loop {
                let (id, event, data) = self.next().await;
                assert_eq!(event, "message", "{data}");
                let frame = ServerFrame::decode(&data).unwrap();
                if let Some(found) = wanted(&frame) {
                    return (found, id.unwrap());
                }
            }
        })
        .await
    }
}

#[tokio::test]
async fn a_dropped_event_stream_resumes_from_its_last_event_id() {
    let server = start().await;
    let addr = server.addr();
    let (session, _) = open(addr, "Ada").await;
    let mut stream = Sse::open(addr, &session, Some(1)).await;
    send_frames(addr, &session, &[ClientFrame::Join { room: "r".into(), since: None, history: None }]).await;
    stream.until(|f| matches!(f, ServerFrame::Joined { .. }).then_some(())).await;
    let mut writer = member(addr, "Writer", "r").await;
    publish(&mut writer, "r", "m1", json!(1)).await;
    let (seq, last) =
        stream.until(|f| if let ServerFrame::Message { seq, .. } = f { Some(*seq) } else { None }).await;
    assert_eq!(seq, 1);
    drop(stream);

    // While no stream is open, more is published; the next stream starts after `last`.
    for n in 2..=4 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }
    let mut stream = Sse::open(addr, &session, Some(last)).await;
    let seqs = stream.message_seqs(3).await;
    assert_eq!(seqs, vec![2, 3, 4], "nothing missed, nothing twice");
    server.stop().await;
}

#[tokio::test]
async fn frames_a_dead_stream_wrote_but_the_client_never_got_are_sent_again() {
    let server = start().await;
    let addr = server.addr();
    let (session, _) = open(addr, "Ada").await;
    let mut stream = Sse::open(addr, &session, Some(1)).await;
    send_frames(addr, &session, &[ClientFrame::Join { room: "r".into(), since: None, history: None }]).await;
    let (_, joined) = stream.until(|f| matches!(f, ServerFrame::Joined { .. }).then_some(())).await;
    let mut writer = member(addr, "Writer", "r").await;
    for n in 1..=3 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }
    // The stream wrote all three and went on past them (a pong after them arrived)...
    send_frames(addr, &session, &[ClientFrame::Ping { nonce: 5 }]).await;
    stream.until(|f| matches!(f, ServerFrame::Pong { nonce: 5 }).then_some(())).await;
    drop(stream);
    // ...but the connection died with them in its buffers: the client saw `joined` last.
    let mut stream = Sse::open(addr, &session, Some(joined)).await;
    let seqs = stream.message_seqs(3).await;
    assert_eq!(seqs, vec![1, 2, 3], "what the dead stream wrote comes again");
    server.stop().await;
}

#[tokio::test]
async fn reopening_a_stream_from_before_what_the_session_kept_ends_it_with_4001() {
    let server = start().await;
    let addr = server.addr();
    let (session, _) = open(addr, "Ada").await;
    let mut stream = Sse::open(addr, &session, Some(1)).await;
    // More frames than a stream keeps once written (1,024), all read.
    for batch in 0..20u64 {
        let pings: Vec<ClientFrame> = (1..=64).map(|n| ClientFrame::Ping { nonce: batch * 64 + n }).collect();
        assert_eq!(send_frames(addr, &session, &pings).await, 204);
    }
    stream.until(|f| matches!(f, ServerFrame::Pong { nonce: 1280 }).then_some(())).await;
    drop(stream);
    // A reopening from the start asks for frames let go: no frame past the hole, the end.
    let mut stream = Sse::open(addr, &session, Some(1)).await;
    let (_, event, data) = stream.next().await;
    assert_eq!(event, "close", "{data}");
    let ended: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(ended["code"], tether_shared::close::SLOW_CONSUMER);
    // And the session is over for every request.
    let (frames, closed) = poll(addr, &session, 1279).await;
    assert!(frames.is_empty() && closed["code"] == tether_shared::close::SLOW_CONSUMER, "{closed}");
    server.stop().await;
}

#[tokio::test]
async fn a_replay_bigger_than_the_session_buffer_goes_out_as_the_client_polls() {
    let server = start().await;
    let addr = server.addr();
    // 5,000 messages: more than a session holds waiting to be handed out (4,096).
    let mut writer = member(addr, "Writer", "big").await;
    let burst: Vec<ClientFrame> = (1..=5_000)
        .map(|n| ClientFrame::Publish {
            id: format!("m{n}"),
            room: "big".into(),
            body: json!(n),
            priority: 0,
        })
        .collect();
    for frame in &burst[..4_999] {
        send(&mut writer, frame).await;
    }
    publish(&mut writer, "big", "m5000", json!(5_000)).await;
    let (session, _) = open(addr, "Ada").await;
    send_frames(addr, &session, &[ClientFrame::Join { room: "big".into(), since: Some(0), history: None }])
        .await;
    let mut seqs = Vec::new();
    let (replayed, _) = poll_until(addr, &session, 1, |frame| match frame {
        ServerFrame::Message { seq, .. } => {
            seqs.push(*seq);
            None
        }
        ServerFrame::Replayed { to, complete, .. } => Some((*to, *complete)),
        _ => None,
    })
    .await;
    assert_eq!(replayed, (5_000, true));
    assert_eq!(seqs, (1..=5_000).collect::<Vec<u64>>(), "every message once, in order");
    server.stop().await;
}

#[tokio::test]
async fn unknown_and_foreign_session_ids_are_refused_with_typed_errors() {
    let server = start().await;
    let addr = server.addr();
    let (status, _, body) = http_get(addr, "/rt/poll?session=forged&after=0").await;
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "unknown_session");
    let (status, _, _) = http_with(addr, "POST", "/rt/send?session=forged", &[], "{}").await;
    assert_eq!(status, 404);

    // Bad input inside a session gets the answer a WebSocket would get.
    let (session, _) = open(addr, "Ada").await;
    let (status, _, _) = http_with(addr, "POST", &format!("/rt/send?session={session}"), &[], "{nope").await;
    assert_eq!(status, 204);
    let (code, _) = poll_until(addr, &session, 1, |f| match f {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, tether_shared::ErrorCode::MalformedJson);

    let (status, _, body) = http_with(addr, "POST", "/rt/open", &[], r#"{"type":"hello","v":99}"#).await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn every_refusal_under_rt_is_json_with_an_error_code() {
    let server = start().await;
    let addr = server.addr();
    let (session, _) = open(addr, "Ada").await;
    let sse = format!("/rt/sse?session={session}");
    // (method, path, Last-Event-ID, status, error)
    let cases = [
        // Not text (hyper takes it; it is not a header string) and not a number.
        ("GET", sse.clone(), Some("é"), 400, "invalid_request"),
        ("GET", sse.clone(), Some("seven"), 400, "invalid_request"),
        // The session is looked up first: an unknown one is that, whatever the header.
        ("GET", "/rt/sse?session=forged".into(), Some("é"), 404, "unknown_session"),
        ("GET", format!("/rt/poll?session={session}&after=-1"), None, 400, "invalid_request"),
        ("GET", "/rt/open".into(), None, 405, "method_not_allowed"),
        ("POST", "/rt/nope".into(), None, 404, "not_found"),
        ("GET", "/rt".into(), None, 404, "not_found"),
    ];
    // With no --allowed-origin, any page may open, even one whose Origin is not text.
    let hello = json!({"type": "hello", "v": 1, "name": "Bob"}).to_string();
    let (got, head, body) = http_with(addr, "POST", "/rt/open", &[("Origin", "é")], &hello).await;
    assert_eq!(got, 200, "{body}");
    assert!(head.to_ascii_lowercase().contains("access-control-allow-origin: *"), "{head}");
    for (method, path, last_event_id, status, code) in cases {
        let headers: Vec<(&str, &str)> = last_event_id.map(|id| ("Last-Event-ID", id)).into_iter().collect();
        let (got, head, body) = http_with(addr, method, &path, &headers, "").await;
        assert_eq!(got, status, "{method} {path} {last_event_id:?}: {body}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{path}: {head}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], code, "{method} {path}");
    }
    server.stop().await;
}

/// `POST /rt/close` is a deliberate end: whatever still reads the session (a poll held
/// meanwhile, an event stream) is told 1000, which a client obeys by staying closed,
/// not 1006, which tells it to reconnect and resume.
#[tokio::test]
async fn a_session_closed_by_its_client_ends_with_1000_on_its_poll_and_its_stream() {
    let server = start().await;
    let addr = server.addr();

    let (session, _) = open(addr, "Ada").await;
    let held = {
        let session = session.clone();
        tokio::spawn(async move { poll(addr, &session, 1).await })
    };
    let (status, _, body) = http_with(addr, "POST", &format!("/rt/close?session={session}"), &[], "").await;
    assert_eq!(status, 204, "{body}");
    let (frames, closed) = tokio::time::timeout(PATIENCE, held).await.expect("the poll ends").unwrap();
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(closed["code"], 1000, "{closed}");

    let (session, _) = open(addr, "Bob").await;
    let mut stream = Sse::open(addr, &session, Some(1)).await;
    let (status, _, body) = http_with(addr, "POST", &format!("/rt/close?session={session}"), &[], "").await;
    assert_eq!(status, 204, "{body}");
    let (_, event, data) = stream.next().await;
    assert_eq!(event, "close", "{data}");
    let ended: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(ended["code"], 1000, "{ended}");
    server.stop().await;
}

/// A session that ended is forgotten an idle timeout later; a request naming it after
/// that is still told it ended (410 `session_closed`), not that it never existed.
#[tokio::test]
async fn an_ended_session_still_answers_410_once_it_is_forgotten() {
    let mut config = server_config();
    config.idle_timeout = std::time::Duration::from_secs(1);
    let server = server_with(config).await;
    let addr = server.addr();
    let (session, _) = open(addr, "Ada").await;
    let poll_path = format!("/rt/poll?session={session}&after=1");
    let forgotten = closed_and_let_go(addr, &session).await;
    assert_eq!(forgotten.0, 410, "{}", forgotten.1);
    for (method, path) in [
        ("GET", poll_path.clone()),
        ("GET", format!("/rt/sse?session={session}")),
        ("POST", format!("/rt/send?session={session}")),
        ("POST", format!("/rt/close?session={session}")),
    ] {
        let (status, _, body) = http_with(addr, method, &path, &[], "").await;
        assert_eq!(status, 410, "{method} {path}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "session_closed", "{path}");
    }
    // An id that never was is still unknown.
    let (status, _, _) = http_get(addr, "/rt/poll?session=never&after=0").await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// Closes `session` and polls it until it is let go (an idle timeout after its end,
/// which polls read until then): the first answer that is not its end.
async fn closed_and_let_go(addr: SocketAddr, session: &str) -> (u16, String) {
    let (status, _, _) = http_with(addr, "POST", &format!("/rt/close?session={session}"), &[], "").await;
    assert_eq!(status, 204);
    let poll_path = format!("/rt/poll?session={session}&after=1");
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (status, _, body) = http_get(addr, &poll_path).await;
            if status != 200 {
                return (status, body);
            }
            let answer: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(answer["closed"]["code"], 1000, "{answer}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the ended session is let go after the idle timeout")
}

/// The server remembers the newest 10,000 ended sessions. A hello it refuses hands out
/// no session, so it leaves no record there: more refused hellos than that do not push
/// a real ended session out (it would then answer 404 where 410 is due).
#[tokio::test]
async fn refused_hellos_do_not_push_an_ended_session_out() {
    use futures::StreamExt;
    /// One more than the server remembers.
    const FLOOD: usize = 10_001;
    let mut config = server_config();
    config.idle_timeout = std::time::Duration::from_secs(1);
    let server = server_with(config).await;
    let addr = server.addr();
    let (session, _) = open(addr, "Ada").await;
    assert_eq!(closed_and_let_go(addr, &session).await.0, 410);
    let refused = futures::stream::iter(0..FLOOD)
        .map(|_| async move {
            let (status, _, body) = http_with(addr, "POST", "/rt/open", &[], r#"["hello",1]"#).await;
            let answer: Value = serde_json::from_str(&body).unwrap();
            assert_eq!((status, answer["error"].as_str()), (400, Some("hello_refused")), "{body}");
        })
        .buffer_unordered(16)
        .count();
    tokio::time::timeout(std::time::Duration::from_secs(120), refused).await.expect("the flood is answered");
    let (status, _, body) = http_get(addr, &format!("/rt/poll?session={session}&after=1")).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "session_closed");
    server.stop().await;
}

#[tokio::test]
async fn a_session_nobody_reads_leaves_presence_like_a_silent_socket() {
    let mut config = server_config();
    config.idle_timeout = std::time::Duration::from_secs(1);
    let server = server_with(config).await;
    let addr = server.addr();
    let (mut bob, _, _) = hello(addr, "Bob").await;
    join(&mut bob, "r", None).await;
    let (session, _) = open(addr, "Ada").await;
    send_frames(addr, &session, &[ClientFrame::Join { room: "r".into(), since: None, history: None }]).await;
    until(&mut bob, |frame| match frame {
        ServerFrame::Presence { joined, .. } if joined.iter().any(|u| u.name == "Ada") => Some(()),
        _ => None,
    })
    .await;
    // Nobody polls or streams: after the idle timeout the session is gone. Bob keeps
    // his own socket alive meanwhile, as every client does.
    // The heartbeat keeps this loop alive as well as Bob's socket: the wait is bounded whole.
    let mut heartbeat = tokio::time::interval(std::time::Duration::from_millis(300));
    within("the unread session leaving presence", async {
        loop {
            tokio::select! {
                frame = next_frame(&mut bob) => {
                    if let ServerFrame::Presence { left, .. } = frame && !left.is_empty() {
                        break;
                    }
                }
                _ = heartbeat.tick() => send(&mut bob, &ClientFrame::Ping { nonce: 0 }).await,
            }
        }
    })
    .await;
    server.stop().await;
}

/// The `json rt-open` and `json rt-poll` examples of `PROTOCOL.md`: their shape is the
/// server's, and every frame in them decodes.
#[tokio::test]
async fn the_protocol_documents_the_answers_the_server_gives() {
    let doc = include_str!("../../PROTOCOL.md");
    let example = |tag: &str| -> Value {
        let start =
            doc.find(&format!("```{tag}\n")).unwrap_or_else(|| panic!("no {tag} example")) + tag.len() + 4;
        let end = start + doc[start..].find("```").unwrap();
        serde_json::from_str(&doc[start..end]).unwrap_or_else(|e| panic!("{tag}: {e}"))
    };
    let keys = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();

    let server = start().await;
    let addr = server.addr();
    let documented = example("json rt-open");
    let (status, _, body) =
        http_with(addr, "POST", "/rt/open", &[], r#"{"type":"hello","v":1,"name":"Ada"}"#).await;
    assert_eq!(status, 200);
    let live: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys(&documented), keys(&live));
    assert!(matches!(
        ServerFrame::decode(&documented["frame"].to_string()).unwrap(),
        ServerFrame::Welcome { .. }
    ));

    let documented = example("json rt-poll");
    let session = live["session"].as_str().unwrap();
    send_frames(addr, session, &[ClientFrame::Ping { nonce: 7 }]).await;
    let (_, _, body) = http_get(addr, &format!("/rt/poll?session={session}&after=1")).await;
    let live: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys(&documented), keys(&live));
    for entry in documented["frames"].as_array().unwrap() {
        assert_eq!(keys(entry), keys(&live["frames"][0]));
        ServerFrame::decode(&entry["frame"].to_string()).unwrap();
    }
    server.stop().await;
}

/// A request from another loopback address (127.0.0.2): another machine, as far as the
/// server can tell.
async fn get_from_elsewhere(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = tcp_from("127.0.0.2", addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    within("writing the request", stream.write_all(request.as_bytes())).await.unwrap();
    let mut raw = Vec::new();
    within("the answer", stream.read_to_end(&mut raw)).await.unwrap();
    String::from_utf8_lossy(&raw).split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn sessions_obey_the_origin_list_the_address_cap_and_their_owner() {
    let mut config = server_config();
    config.allowed_origins = vec!["http://good.example".into()];
    config.max_connections_per_ip = 1;
    let server = server_with(config).await;
    let addr = server.addr();
    let hello = r#"{"type":"hello","v":1,"name":"Ada"}"#;
    let (status, _, body) =
        http_with(addr, "POST", "/rt/open", &[("Origin", "http://evil.example")], hello).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["error"].clone()),
        (403, json!("origin_forbidden"))
    );

    // An Origin that is not text is no allowed origin either, and refused the same way.
    let (status, _, body) =
        http_with(addr, "POST", "/rt/open", &[("Origin", "http://é.example")], hello).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["error"].clone()),
        (403, json!("origin_forbidden"))
    );

    let good = [("Origin", "http://good.example")];
    let (status, head, body) = http_with(addr, "POST", "/rt/open", &good, hello).await;
    assert_eq!(status, 200, "{body}");
    assert!(head.to_ascii_lowercase().contains("access-control-allow-origin: http://good.example"), "{head}");
    let session = serde_json::from_str::<Value>(&body).unwrap()["session"].as_str().unwrap().to_owned();
    let (status, _, body) = http_with(addr, "POST", "/rt/open", &good, hello).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["error"].clone()),
        (429, json!("too_many_connections"))
    );

    // The session's id alone does not make another machine its owner.
    assert_eq!(get_from_elsewhere(addr, &format!("/rt/poll?session={session}&after=1")).await, 403);
    server.stop().await;
}
