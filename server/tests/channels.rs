//! Typed channels: an app's contract enforced on the wire, and its handlers deciding
//! joins and publishes. A real server with a channel registered, real WebSocket clients
//! (JSON and MessagePack), the HTTP fallback and the server API.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tether_server::{Handlers, Leaving, Server};
use tether_shared::channel::{Channel, ChannelError};
use tether_shared::{ClientFrame, ErrorCode, PROTOCOL_VERSION, RejectCode, ServerFrame};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Cursor {
    x: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Seat {
    role: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
enum NoteError {
    Empty,
    Closed { room: String },
}

impl ChannelError for NoteError {
    fn code(&self) -> &str {
        match self {
            NoteError::Empty => "empty",
            NoteError::Closed { .. } => "closed",
        }
    }

    fn message(&self) -> String {
        match self {
            NoteError::Empty => "a note needs some text".into(),
            NoteError::Closed { room } => format!("{room} is closed"),
        }
    }
}

struct Notes;

impl Channel for Notes {
    const ROOMS: &'static str = "notes:*";
    type Message = Note;
    type State = Cursor;
    type Meta = Seat;
    type Error = NoteError;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Ask {
    /// How many times the handler ran.
    Runs,
    Refuse,
    Panic,
    /// Answers after this many ms.
    Slow(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Told {
    runs: usize,
}

impl tether_shared::Requests for Notes {
    type Request = Ask;
    type Reply = Told;
}

const KEY: &str = "channels-test-key-0123456789";

/// What the app's handlers report back to the test: who left, and how.
struct App {
    leaves: mpsc::UnboundedSender<(String, String, Leaving)>,
    /// Request handler calls so far.
    runs: std::sync::atomic::AtomicUsize,
}

/// A server with the `Notes` channel: joins to `notes:closed` are refused, `notes:boom`
/// panics; Ada is an editor, everyone else a reader. A note `""` is refused, `shout …`
/// is stored in capitals, `grow` becomes a megabyte, `panic` panics, `hang` never answers, `wait N` answers after
/// N ms.
async fn notes_server() -> (Running, mpsc::UnboundedReceiver<(String, String, Leaving)>) {
    let (leaves, heard) = mpsc::unbounded_channel();
    let app = App { leaves, runs: Default::default() };
    let handlers = Handlers::<Notes, App>::with_state(Arc::new(app))
        .on_request(|call, ask: Ask| async move {
            let runs = call.state.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            match ask {
                Ask::Runs => Ok(Told { runs }),
                Ask::Refuse => Err(NoteError::Empty),
                Ask::Panic => panic!("the request handler broke"),
                Ask::Slow(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(Told { runs })
                }
            }
        })
        .patience(Duration::from_millis(500))
        .on_join(|call| async move {
            match call.room.as_str() {
                "notes:closed" => Err(NoteError::Closed { room: call.room.clone() }),
                "notes:boom" => panic!("the join handler broke"),
                _ => Ok(Seat { role: if call.user.name == "Ada" { "editor" } else { "reader" }.into() }),
            }
        })
        .on_publish(|_call, note: Note| async move {
            let text = note.text.as_str();
            if text.is_empty() {
                return Err(NoteError::Empty);
            }
            if text == "panic" {
                panic!("the publish handler broke");
            }
            if text == "hang" {
                std::future::pending::<()>().await;
            }
            if let Some(ms) = text.strip_prefix("wait ") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            if text == "grow" {
                return Ok(Note { text: "x".repeat(1 << 20) });
            }
            match text.strip_prefix("shout ") {
                Some(loud) => Ok(Note { text: loud.to_uppercase() }),
                None => Ok(note),
            }
        })
        .on_leave(|call, why| async move {
            let _ = call.state.leaves.send((call.user.name.clone(), call.room.clone(), why));
        });
    let mut config = unthrottled();
    config.api_key = Some(KEY.into());
    (started(Server::new(config).channel(handlers)).await, heard)
}

fn publish_frame(id: &str, room: &str, body: Value) -> ClientFrame {
    ClientFrame::Publish { id: id.into(), room: room.into(), body, priority: 0 }
}

/// The answer to publish `id`: `Ok(seq)` or the whole rejection.
async fn answer(client: &mut Client, id: &str) -> Result<u64, ServerFrame> {
    until(client, |frame| match frame {
        ServerFrame::Ack { id: acked, seq, .. } if acked == id => Some(Ok(seq)),
        ServerFrame::Reject { id: ref rejected, .. } if rejected == id => Some(Err(frame)),
        _ => None,
    })
    .await
}

async fn history(server: &Running, room: &str) -> Vec<Value> {
    match server.api().history(room, None, None).await {
        Ok(page) => page.messages.into_iter().map(|m| m.body).collect(),
        Err(_) => Vec::new(),
    }
}

/// Stops the server once every client of the test has gone (a client left open would
/// hold the server's goodbye until its closing handshake times out).
async fn stop(server: Running, clients: impl IntoIterator<Item = Client>) {
    drop(clients.into_iter().collect::<Vec<_>>());
    server.stop().await;
}

/// A MessagePack client that said hello, joined `notes:a`, then sent `frame`.
async fn packed_sending(addr: std::net::SocketAddr, frame: ClientFrame) -> Client {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "tether.v1.msgpack".parse().unwrap());
    let (mut packed, _) =
        within("msgpack handshake", tokio_tungstenite::connect_async(request)).await.unwrap();
    let frames = [
        ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: Some("Bin".into()), resume_token: None },
        ClientFrame::Join { room: "notes:a".into(), since: None, history: None },
        frame,
    ];
    for frame in &frames {
        packed.send(Message::binary(frame.encode_msgpack())).await.unwrap();
    }
    packed
}

/// The first MessagePack frame that `wanted` picks.
async fn packed_until<T>(packed: &mut Client, mut wanted: impl FnMut(ServerFrame) -> Option<T>) -> T {
    within("the msgpack answer", async {
        loop {
            if let Some(Message::Binary(bytes)) = next_message(packed).await
                && let Some(found) = ServerFrame::decode_msgpack(&bytes).ok().and_then(&mut wanted)
            {
                return found;
            }
        }
    })
    .await
}

/// A long-polling session that said hello, joined `notes:a`, then sent `frame`.
async fn polling_sending(addr: std::net::SocketAddr, frame: ClientFrame) -> String {
    let hello = json!({"type": "hello", "v": 1, "name": "Poll"}).to_string();
    let (status, _, opened) = http_with(addr, "POST", "/rt/open", &[], &hello).await;
    assert_eq!(status, 200, "{opened}");
    let session = serde_json::from_str::<Value>(&opened).unwrap()["session"].as_str().unwrap().to_owned();
    let frames = [ClientFrame::Join { room: "notes:a".into(), since: None, history: None }, frame];
    let body = format!("[{}]", frames.iter().map(ClientFrame::encode).collect::<Vec<_>>().join(","));
    let (status, _, _) = http_with(addr, "POST", &format!("/rt/send?session={session}"), &[], &body).await;
    assert_eq!(status, 204);
    session
}

/// Long-polls `session` until `wanted` picks a frame.
async fn polled_until<T>(
    addr: std::net::SocketAddr,
    session: &str,
    mut wanted: impl FnMut(ServerFrame) -> Option<T>,
) -> T {
    within("the long-polled answer", async {
        let mut after = 0;
        loop {
            let (_, _, polled) = http_get(addr, &format!("/rt/poll?session={session}&after={after}")).await;
            let polled: Value = serde_json::from_str(&polled).unwrap();
            for entry in polled["frames"].as_array().unwrap() {
                after = entry["event"].as_u64().unwrap();
                if let Some(found) =
                    ServerFrame::decode(&entry["frame"].to_string()).ok().and_then(&mut wanted)
                {
                    return found;
                }
            }
        }
    })
    .await
}

fn rejected_code(answer: Result<u64, ServerFrame>) -> RejectCode {
    match answer {
        Err(ServerFrame::Reject { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_refused_typed_on_every_transport_and_the_api_and_nothing_is_stored() {
    let (server, _) = notes_server().await;
    let addr = server.addr();
    let wrong = json!({"txt": "a typo in the field name"});

    // WebSocket, JSON.
    let mut ada = member(addr, "Ada", "notes:a").await;
    send(&mut ada, &publish_frame("j1", "notes:a", wrong.clone())).await;
    match answer(&mut ada, "j1").await {
        Err(ServerFrame::Reject { code: RejectCode::InvalidBody, message, refusal: None, .. }) => {
            assert!(message.contains("unknown field `txt`"), "says which field: {message}");
        }
        other => panic!("expected invalid_body, got {other:?}"),
    }

    // WebSocket, MessagePack.
    let mut packed = packed_sending(addr, publish_frame("m1", "notes:a", wrong.clone())).await;
    let code = packed_until(&mut packed, |frame| match frame {
        ServerFrame::Reject { id, code, .. } if id == "m1" => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(code, RejectCode::InvalidBody);

    // The HTTP fallback (long-polling).
    let session = polling_sending(addr, publish_frame("p1", "notes:a", wrong.clone())).await;
    let code = polled_until(addr, &session, |frame| match frame {
        ServerFrame::Reject { id, code, .. } if id == "p1" => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(code, RejectCode::InvalidBody);

    // The server API, over HTTP and in-process.
    let auth = format!("Bearer {KEY}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let request = json!({"room": "notes:a", "body": wrong}).to_string();
    let (status, _, refused) = http_with(addr, "POST", "/api/v1/publish", &headers, &request).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(serde_json::from_str::<Value>(&refused).unwrap()["error"], "invalid_body");

    assert!(history(&server, "notes:a").await.is_empty(), "nothing of the wrong shape was stored");

    // The right shape passes everywhere, and a room no channel covers takes any JSON.
    publish(&mut ada, "notes:a", "ok", json!({"text": "right"})).await;
    let (status, _, _) = http_with(
        addr,
        "POST",
        "/api/v1/publish",
        &headers,
        &json!({"room": "notes:a", "body": {"text": "from the backend"}}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    join(&mut ada, "plain", None).await;
    publish(&mut ada, "plain", "any", wrong.clone()).await;
    assert_eq!(
        history(&server, "notes:a").await,
        [json!({"text": "right"}), json!({"text": "from the backend"})]
    );
    stop(server, [ada, packed]).await;
}

#[tokio::test]
async fn the_publish_handler_stores_what_it_returns_or_refuses_with_the_apps_error_and_stores_nothing() {
    let (server, _) = notes_server().await;
    let mut ada = member(server.addr(), "Ada", "notes:a").await;
    let mut bob = member(server.addr(), "Bob", "notes:a").await;

    publish(&mut ada, "notes:a", "plain", json!({"text": "hello"})).await;
    publish(&mut ada, "notes:a", "loud", json!({"text": "shout hey"})).await;
    send(&mut ada, &publish_frame("empty", "notes:a", json!({"text": ""}))).await;
    match answer(&mut ada, "empty").await {
        Err(ServerFrame::Reject { code: RejectCode::Refused, message, refusal: Some(refusal), .. }) => {
            assert_eq!(message, "a note needs some text", "the app's words");
            assert_eq!(refusal.code, "empty");
            assert_eq!(refusal.decode::<NoteError>(), Some(NoteError::Empty), "the app's error, typed");
        }
        other => panic!("expected the app's refusal, got {other:?}"),
    }

    // What the handler returns is held to the limits of what a client may send.
    send(&mut ada, &publish_frame("grown", "notes:a", json!({"text": "grow"}))).await;
    assert_eq!(rejected_code(answer(&mut ada, "grown").await), RejectCode::TooLarge);

    // Bob gets what the handler returned, and nothing of the refused ones.
    assert_eq!(next_message_in(&mut bob, "notes:a").await.2, json!({"text": "hello"}));
    assert_eq!(next_message_in(&mut bob, "notes:a").await.2, json!({"text": "HEY"}));
    let later = frames_until_pong(&mut bob).await;
    assert!(!later.iter().any(|f| matches!(f, ServerFrame::Message { .. })), "{later:?}");
    assert_eq!(history(&server, "notes:a").await, [json!({"text": "hello"}), json!({"text": "HEY"})]);
    stop(server, [ada, bob]).await;
}

#[tokio::test]
async fn a_handler_that_panics_or_hangs_fails_that_one_call_and_everything_else_goes_on() {
    let (server, _) = notes_server().await;
    let mut ada = member(server.addr(), "Ada", "notes:a").await;
    let mut bob = member(server.addr(), "Bob", "notes:a").await;
    for (id, text) in [("p", "panic"), ("h", "hang"), ("after", "still here")] {
        send(&mut ada, &publish_frame(id, "notes:a", json!({ "text": text }))).await;
    }
    assert_eq!(rejected_code(answer(&mut ada, "p").await), RejectCode::Internal);
    assert_eq!(rejected_code(answer(&mut ada, "h").await), RejectCode::Internal);
    assert!(answer(&mut ada, "after").await.is_ok(), "the next publish on the same connection");
    publish(&mut bob, "notes:a", "bob", json!({"text": "me too"})).await;

    // A join handler that panics fails that join alone.
    send(&mut ada, &ClientFrame::Join { room: "notes:boom".into(), since: None, history: None }).await;
    let failed = until(&mut ada, |frame| match frame {
        ServerFrame::Error { code, about: Some(room), .. } if room == "notes:boom" => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(failed, ErrorCode::Internal);
    publish(&mut ada, "notes:a", "again", json!({"text": "and again"})).await;
    assert_eq!(history(&server, "notes:a").await.len(), 3);
    stop(server, [ada, bob]).await;
}

#[tokio::test]
async fn a_connections_messages_keep_their_order_through_a_slow_handler() {
    let (server, _) = notes_server().await;
    let mut ada = member(server.addr(), "Ada", "notes:a").await;
    // The first takes longest; each is answered, and stored, after the one before.
    for (id, text) in [("1", "wait 300"), ("2", "wait 100"), ("3", "now")] {
        send(&mut ada, &publish_frame(id, "notes:a", json!({ "text": text }))).await;
    }
    let acks = within("three acks", async {
        let mut acks = Vec::new();
        while acks.len() < 3 {
            if let ServerFrame::Ack { id, seq, .. } = next_frame(&mut ada).await {
                acks.push((id, seq));
            }
        }
        acks
    })
    .await;
    assert_eq!(acks, [("1".to_owned(), 1), ("2".to_owned(), 2), ("3".to_owned(), 3)]);
    stop(server, [ada]).await;
}

#[tokio::test]
async fn the_join_handler_refuses_with_the_apps_error_or_admits_with_metadata_that_presence_shows() {
    let (server, _) = notes_server().await;
    let (mut ada, _, _) = hello(server.addr(), "Ada").await;
    send(&mut ada, &ClientFrame::Join { room: "notes:closed".into(), since: None, history: None }).await;
    match until(&mut ada, |frame| matches!(frame, ServerFrame::Error { .. }).then_some(frame)).await {
        ServerFrame::Error { code: ErrorCode::Refused, message, about, refusal: Some(refusal) } => {
            assert_eq!(
                (message.as_str(), about.as_deref()),
                ("notes:closed is closed", Some("notes:closed"))
            );
            assert_eq!(
                refusal.decode::<NoteError>(),
                Some(NoteError::Closed { room: "notes:closed".into() })
            );
        }
        other => panic!("expected the app's refusal, got {other:?}"),
    }
    send(&mut ada, &publish_frame("x", "notes:closed", json!({"text": "let me in"}))).await;
    assert_eq!(
        rejected_code(answer(&mut ada, "x").await),
        RejectCode::NotJoined,
        "the refused join is not in"
    );

    join(&mut ada, "notes:a", None).await;
    let (mut bob, _, _) = hello(server.addr(), "Bob").await;
    let (_, members) = join(&mut bob, "notes:a", None).await;
    let seat = |name: &str, members: &[tether_shared::User]| {
        members.iter().find(|m| m.name == name).and_then(|m| m.meta.clone())
    };
    assert_eq!(seat("Ada", &members), Some(json!({"role": "editor"})));
    assert_eq!(seat("Bob", &members), Some(json!({"role": "reader"})));
    let arrived = until(&mut ada, |frame| match frame {
        ServerFrame::Presence { joined, .. } if !joined.is_empty() => Some(joined),
        _ => None,
    })
    .await;
    assert_eq!(seat("Bob", &arrived), Some(json!({"role": "reader"})));
    // Metadata is presence's: messages name their sender without it.
    publish(&mut bob, "notes:a", "b1", json!({"text": "hi"})).await;
    let from = until(&mut ada, |frame| match frame {
        ServerFrame::Message { from, .. } => Some(from),
        _ => None,
    })
    .await;
    assert_eq!((from.name.as_str(), from.meta), ("Bob", None));
    stop(server, [ada, bob]).await;
}

#[tokio::test]
async fn state_values_must_be_the_channels_state_type() {
    let (server, _) = notes_server().await;
    let mut ada = member(server.addr(), "Ada", "notes:a").await;
    let mut bob = member(server.addr(), "Bob", "notes:a").await;
    let state = |value| ClientFrame::State { room: "notes:a".into(), key: "cursor".into(), value };
    send(&mut ada, &state(json!({"x": "left"}))).await;
    let refused = until(&mut ada, |frame| match frame {
        ServerFrame::Error { code, about: Some(room), .. } if room == "notes:a" => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(refused, ErrorCode::InvalidBody);
    send(&mut ada, &state(json!({"x": 4}))).await;
    send(&mut ada, &state(Value::Null)).await;
    let values: Vec<Value> = within("both values", async {
        let mut values = Vec::new();
        while values.len() < 2 {
            if let ServerFrame::State { value, .. } = next_frame(&mut bob).await {
                values.push(value);
            }
        }
        values
    })
    .await;
    assert_eq!(values, [json!({"x": 4}), Value::Null], "a value of the type, then a clear");
    stop(server, [ada, bob]).await;
}

#[tokio::test]
async fn the_leave_handler_hears_a_leave_and_a_disconnect() {
    let (server, mut heard) = notes_server().await;
    let mut ada = member(server.addr(), "Ada", "notes:a").await;
    join(&mut ada, "notes:b", None).await;
    join(&mut ada, "plain", None).await;
    send(&mut ada, &ClientFrame::Leave { room: "notes:a".into() }).await;
    let first = within("the leave", heard.recv()).await.unwrap();
    assert_eq!(first, ("Ada".into(), "notes:a".into(), Leaving::Left));
    hang_up(&mut ada).await;
    let second = within("the disconnect", heard.recv()).await.unwrap();
    assert_eq!(second, ("Ada".into(), "notes:b".into(), Leaving::Disconnected));
    // The plain room has no channel, so no handler: nothing more is heard.
    let mut bob = member(server.addr(), "Bob", "plain").await;
    frames_until_pong(&mut bob).await;
    assert!(heard.try_recv().is_err());
    stop(server, [bob]).await;
}

fn request_frame(id: &str, room: &str, body: Value, idempotent: bool) -> ClientFrame {
    ClientFrame::Request { id: id.into(), room: room.into(), body, idempotent }
}

/// The answer to request `id`: the reply's body, or the whole rejection.
async fn reply(client: &mut Client, id: &str) -> Result<Value, ServerFrame> {
    until(client, |frame| match frame {
        ServerFrame::Reply { id: answered, body, .. } if answered == id => Some(Ok(body)),
        ServerFrame::Reject { id: ref rejected, .. } if rejected == id => Some(Err(frame)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_request_is_answered_to_the_asker_alone_and_nothing_is_stored() {
    let (server, _) = notes_server().await;
    let mut ada = member(server.addr(), "Ada", "notes:a").await;
    let mut bob = member(server.addr(), "Bob", "notes:a").await;
    send(&mut ada, &request_frame("q1", "notes:a", json!("runs"), false)).await;
    assert_eq!(reply(&mut ada, "q1").await.unwrap(), json!({"runs": 1}));
    let seen = frames_until_pong(&mut bob).await;
    assert!(
        !seen.iter().any(|f| matches!(f, ServerFrame::Reply { .. } | ServerFrame::Message { .. })),
        "{seen:?}"
    );
    assert!(history(&server, "notes:a").await.is_empty());

    // The app's refusal, typed; a question of another shape; the other refusals.
    send(&mut ada, &request_frame("q2", "notes:a", json!("refuse"), false)).await;
    match reply(&mut ada, "q2").await {
        Err(ServerFrame::Reject { code: RejectCode::Refused, refusal: Some(refusal), .. }) => {
            assert_eq!(refusal.decode::<NoteError>(), Some(NoteError::Empty));
        }
        other => panic!("expected the app's refusal, got {other:?}"),
    }
    send(&mut ada, &request_frame("q3", "notes:a", json!({"what": "?"}), false)).await;
    assert_eq!(rejected_code(reply(&mut ada, "q3").await.map(|_| 0)), RejectCode::InvalidBody);
    join(&mut ada, "plain", None).await;
    send(&mut ada, &request_frame("q4", "plain", json!("runs"), false)).await;
    assert_eq!(rejected_code(reply(&mut ada, "q4").await.map(|_| 0)), RejectCode::NotHandled);
    send(&mut ada, &request_frame("q5", "notes:elsewhere", json!("runs"), false)).await;
    assert_eq!(rejected_code(reply(&mut ada, "q5").await.map(|_| 0)), RejectCode::NotJoined);

    // A handler that panics fails that request; the next is answered.
    send(&mut ada, &request_frame("q6", "notes:a", json!("panic"), false)).await;
    assert_eq!(rejected_code(reply(&mut ada, "q6").await.map(|_| 0)), RejectCode::Internal);
    send(&mut ada, &request_frame("q7", "notes:a", json!("runs"), false)).await;
    assert!(reply(&mut ada, "q7").await.is_ok());
    stop(server, [ada, bob]).await;
}

#[tokio::test]
async fn an_idempotent_request_asked_again_is_answered_from_memory_even_while_the_first_is_running() {
    let (server, _) = notes_server().await;
    let (mut ada, _, resume_token) = hello(server.addr(), "Ada").await;
    join(&mut ada, "notes:a", None).await;
    // The repeat arrives while the first answer is still being worked out.
    send(&mut ada, &request_frame("same", "notes:a", json!({"slow": 200}), true)).await;
    send(&mut ada, &request_frame("same", "notes:a", json!({"slow": 200}), true)).await;
    let first = reply(&mut ada, "same").await.unwrap();
    let second = reply(&mut ada, "same").await.unwrap();
    assert_eq!((first.clone(), second), (json!({"runs": 1}), json!({"runs": 1})), "the handler ran once");
    // On a new connection (a reconnect), the same id is still answered from memory.
    drop(ada);
    let mut again = connect(server.addr()).await;
    let resume_token = Some(resume_token);
    send(&mut again, &ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: None, resume_token })
        .await;
    join(&mut again, "notes:a", None).await;
    send(&mut again, &request_frame("same", "notes:a", json!({"slow": 200}), true)).await;
    assert_eq!(reply(&mut again, "same").await.unwrap(), first);
    // Not idempotent: asked twice, run twice.
    send(&mut again, &request_frame("twice", "notes:a", json!("runs"), false)).await;
    assert_eq!(reply(&mut again, "twice").await.unwrap(), json!({"runs": 2}));
    send(&mut again, &request_frame("twice", "notes:a", json!("runs"), false)).await;
    assert_eq!(reply(&mut again, "twice").await.unwrap(), json!({"runs": 3}));
    stop(server, [again]).await;
}

#[tokio::test]
async fn requests_are_answered_over_messagepack_and_long_polling() {
    let (server, _) = notes_server().await;
    let addr = server.addr();
    let mut packed = packed_sending(addr, request_frame("b1", "notes:a", json!("runs"), false)).await;
    let body = packed_until(&mut packed, |frame| match frame {
        ServerFrame::Reply { id, body, .. } if id == "b1" => Some(body),
        _ => None,
    })
    .await;
    assert_eq!(body, json!({"runs": 1}));

    let session = polling_sending(addr, request_frame("p1", "notes:a", json!("runs"), false)).await;
    let body = polled_until(addr, &session, |frame| match frame {
        ServerFrame::Reply { id, body, .. } if id == "p1" => Some(body),
        _ => None,
    })
    .await;
    assert_eq!(body, json!({"runs": 2}));
    stop(server, [packed]).await;
}
