//! What a client sends is read one way, on every transport and at the server API: an
//! object where the documents say object, strings where they say string, numbers JSON
//! can write and hold exactly, a key named once, ids counted in characters, and the
//! frames of the encoding the connection asked for. Each refusal is typed, and after
//! it the next answer is the one to a good frame: nothing else came in between.

mod common;

use std::net::SocketAddr;

use common::*;
use futures::SinkExt;
use serde_json::{Value, json};
use tether_shared::{ClientFrame, ErrorCode, PROTOCOL_VERSION, RejectCode, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const KEY: &str = "strict-test-key";

async fn with_api() -> Running {
    let mut config = unthrottled();
    config.api_key = Some(KEY.into());
    server_with(config).await
}

/// Calls the API with `authorization`: (status, JSON body).
async fn call_as(
    addr: SocketAddr,
    authorization: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let headers = [("Authorization", authorization), ("Content-Type", "application/json")];
    let (status, _, body) = http_with(addr, method, path, &headers, body).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, json)
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    call_as(addr, &format!("Bearer {KEY}"), method, path, body).await
}

/// A WebSocket that asked for MessagePack and got it.
async fn packed(addr: SocketAddr) -> Client {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "tether.v1.msgpack".parse().unwrap());
    let (client, response) = tokio_tungstenite::connect_async(request).await.expect("connects");
    assert_eq!(response.headers()["sec-websocket-protocol"], "tether.v1.msgpack");
    client
}

/// The next frame on a MessagePack connection, which must be binary.
async fn next_packed(client: &mut Client) -> ServerFrame {
    match next_message(client).await {
        Some(Message::Binary(bytes)) => ServerFrame::decode_msgpack(&bytes).expect("a MessagePack frame"),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

async fn send_packed(client: &mut Client, frame: &ClientFrame) {
    client.send(Message::binary(frame.encode_msgpack())).await.unwrap();
}

fn hello_frame(name: &str) -> ClientFrame {
    ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: Some(name.into()), resume_token: None }
}

/// The next frame is an `error` with `code`.
fn assert_error(frame: ServerFrame, code: ErrorCode, what: &str) {
    match frame {
        ServerFrame::Error { code: got, .. } => assert_eq!(got, code, "{what}"),
        other => panic!("{what}: expected error {code:?}, got {other:?}"),
    }
}

/// MessagePack written by hand, for what serde would never write.
mod pack {
    pub fn str(text: &str) -> Vec<u8> {
        [&[0xa0 | text.len() as u8][..], text.as_bytes()].concat()
    }
    pub fn bin(bytes: &str) -> Vec<u8> {
        [&[0xc4, bytes.len() as u8][..], bytes.as_bytes()].concat()
    }
    pub fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = vec![0x80 | entries.len() as u8];
        for (key, value) in entries {
            bytes.extend(key);
            bytes.extend(value);
        }
        bytes
    }
}

#[tokio::test]
async fn an_array_is_not_a_frame_on_a_websocket_in_either_encoding() {
    let server = server().await;
    let mut text = connect(server.addr()).await;
    for array in [r#"["ping",7]"#, r#"["hello",1]"#] {
        text.send(Message::text(array)).await.unwrap();
        assert_error(next_frame(&mut text).await, ErrorCode::InvalidFrame, array);
    }
    send(&mut text, &ClientFrame::Ping { nonce: 8 }).await;
    assert_eq!(next_frame(&mut text).await, ServerFrame::Pong { nonce: 8 });

    let mut binary = packed(server.addr()).await;
    let array = rmp_serde::to_vec(&json!(["hello", 1])).unwrap();
    binary.send(Message::binary(array)).await.unwrap();
    assert_error(next_packed(&mut binary).await, ErrorCode::InvalidFrame, "a MessagePack array for hello");
    send_packed(&mut binary, &hello_frame("Packed")).await;
    assert!(matches!(next_packed(&mut binary).await, ServerFrame::Welcome { .. }));
    // Nested too: a resume's cursors are objects.
    let cursors = rmp_serde::to_vec_named(&json!({"type": "resume", "rooms": [["general", 0]]})).unwrap();
    binary.send(Message::binary(cursors)).await.unwrap();
    assert_error(next_packed(&mut binary).await, ErrorCode::InvalidFrame, "cursors as arrays");
    send_packed(&mut binary, &ClientFrame::Ping { nonce: 9 }).await;
    assert_eq!(next_packed(&mut binary).await, ServerFrame::Pong { nonce: 9 });
}

#[tokio::test]
async fn an_array_does_not_open_a_fallback_session_nor_pass_for_a_frame_in_one() {
    let server = server().await;
    let addr = server.addr();
    let (status, _, body) = http_with(addr, "POST", "/rt/open", &[], r#"["hello",1]"#).await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, answer["error"].as_str()), (400, Some("hello_refused")), "{body}");
    assert_eq!(answer["frame"]["code"], "invalid_frame", "{body}");

    let (status, _, body) = http_with(addr, "POST", "/rt/open", &[], &hello_frame("Ada").encode()).await;
    assert_eq!(status, 200, "{body}");
    let session = serde_json::from_str::<Value>(&body).unwrap()["session"].as_str().unwrap().to_owned();
    // One frame that is an array, then a ping.
    let sent = format!(r#"[["ping",7],{}]"#, ClientFrame::Ping { nonce: 8 }.encode());
    let (status, _, _) = http_with(addr, "POST", &format!("/rt/send?session={session}"), &[], &sent).await;
    assert_eq!(status, 204);
    let (status, _, body) =
        http_with(addr, "GET", &format!("/rt/poll?session={session}&after=1"), &[], "").await;
    assert_eq!(status, 200);
    let polled: Value = serde_json::from_str(&body).unwrap();
    let frames: Vec<ServerFrame> = polled["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| serde_json::from_value(event["frame"].clone()).unwrap())
        .collect();
    assert_eq!(frames.len(), 2, "{body}");
    assert_error(frames[0].clone(), ErrorCode::InvalidFrame, "an array sent as a frame");
    assert_eq!(frames[1], ServerFrame::Pong { nonce: 8 });
}

#[tokio::test]
async fn the_api_refuses_arrays_duplicate_keys_and_integers_past_64_bits() {
    let server = with_api().await;
    let addr = server.addr();
    let refused = [
        ("publish", r#"["r",{"text":"hi"}]"#),
        ("publish", r#"{"room":"r","body":1,"from":["bot","Bot"]}"#),
        ("publish", r#"{"room":"r","body":1,"from":{"id":"bot","name":"Bot","colour":"red"}}"#),
        ("broadcast", r#"[["r"],{"text":"hi"}]"#),
        ("disconnect", r#"["u_1",true]"#),
        ("publish", r#"{"room":"r","body":{"a":1,"a":2}}"#),
        ("publish", r#"{"room":"r","body":[{"x":{"k":1,"k":2}}]}"#),
        ("publish", r#"{"room":"r","room":"s","body":1}"#),
        ("broadcast", r#"{"rooms":["r"],"body":{"a":1,"a":2}}"#),
        ("publish", r#"{"room":"r","body":{"n":1180591620717411303425}}"#),
        ("publish", r#"{"room":"r","body":[-9223372036854775809]}"#),
    ];
    for (call_name, body) in refused {
        let (status, answer) = call(addr, "POST", &format!("/api/v1/{call_name}"), body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_request")), "{body}: {answer}");
    }
    // Nothing of it was stored.
    let (status, answer) = call(addr, "GET", "/api/v1/history?room=r", "").await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("room_not_found")), "{answer}");

    // What fits 64 bits is kept exactly, as written.
    let exact = r#"{"room":"r","body":{"max":18446744073709551615,"min":-9223372036854775808,"x":0.1}}"#;
    let (status, answer) = call(addr, "POST", "/api/v1/publish", exact).await;
    assert_eq!(status, 200, "{answer}");
    let (_, _, history) =
        http_with(addr, "GET", "/api/v1/history?room=r", &[("Authorization", &format!("Bearer {KEY}"))], "")
            .await;
    assert!(
        history.contains(r#""body":{"max":18446744073709551615,"min":-9223372036854775808,"x":0.1}"#),
        "{history}"
    );
}

#[tokio::test]
async fn a_socket_refuses_integers_past_64_bits_and_stores_nothing() {
    let server = unthrottled_server().await;
    let mut client = member(server.addr(), "Ada", "r").await;
    let wide = r#"{"type":"publish","id":"w","room":"r","body":{"n":1180591620717411303425}}"#;
    client.send(Message::text(wide)).await.unwrap();
    assert_error(next_frame(&mut client).await, ErrorCode::InvalidFrame, wide);
    let (seq, _) = publish(&mut client, "r", "ok", json!({"n": u64::MAX})).await;
    assert_eq!(seq, 1, "the refused publish took no seq");
}

async fn unthrottled_server() -> Running {
    server_with(unthrottled()).await
}

#[tokio::test]
async fn msgpack_that_json_could_not_carry_is_refused_and_reaches_nobody() {
    use pack::{bin, map, str};
    let server = unthrottled_server().await;
    let mut listener = member(server.addr(), "Json", "r").await;
    let mut client = packed(server.addr()).await;
    send_packed(&mut client, &hello_frame("Packed")).await;
    assert!(matches!(next_packed(&mut client).await, ServerFrame::Welcome { .. }));
    send_packed(&mut client, &ClientFrame::Join { room: "r".into(), since: None, history: None }).await;
    assert!(matches!(next_packed(&mut client).await, ServerFrame::Joined { .. }));

    let publish = |body: Vec<u8>| {
        map(&[
            (str("type"), str("publish")),
            (str("id"), str("p")),
            (str("room"), str("r")),
            (str("body"), body),
        ])
    };
    let nan = [&[0xcb][..], &f64::NAN.to_be_bytes()].concat();
    let infinity = [&[0xcb][..], &f64::INFINITY.to_be_bytes()].concat();
    let refused = [
        ("a bin type", map(&[(str("type"), bin("ping")), (str("nonce"), vec![7])])),
        ("a bin key", map(&[(bin("type"), str("ping")), (str("nonce"), vec![7])])),
        ("a bin room", map(&[(str("type"), str("join")), (str("room"), bin("s"))])),
        ("a number for a key", map(&[(str("type"), str("ping")), (vec![0], vec![7])])),
        ("NaN in a body", publish(map(&[(str("x"), nan)]))),
        (
            "an infinity in a state value",
            map(&[
                (str("type"), str("state")),
                (str("room"), str("r")),
                (str("key"), str("k")),
                (str("value"), infinity),
            ]),
        ),
    ];
    for (what, bytes) in refused {
        client.send(Message::binary(bytes)).await.unwrap();
        assert_error(next_packed(&mut client).await, ErrorCode::InvalidFrame, what);
    }
    send_packed(&mut client, &ClientFrame::Ping { nonce: 9 }).await;
    assert_eq!(next_packed(&mut client).await, ServerFrame::Pong { nonce: 9 });
    // The JSON member heard nothing of them: besides the packed client's arrival, the
    // first thing it gets is the next publish.
    send_packed(
        &mut client,
        &ClientFrame::Publish { id: "good".into(), room: "r".into(), body: json!(1.5), priority: 0 },
    )
    .await;
    loop {
        match next_frame(&mut listener).await {
            ServerFrame::Presence { .. } => continue,
            ServerFrame::Message { seq, id, body, .. } => {
                assert_eq!((seq, id.as_str(), body), (1, "good", json!(1.5)));
                break;
            }
            other => panic!("before the good publish: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_text_frame_on_a_msgpack_connection_is_refused() {
    let server = server().await;
    let mut client = packed(server.addr()).await;
    client.send(Message::text(hello_frame("Texting").encode())).await.unwrap();
    assert_error(next_packed(&mut client).await, ErrorCode::TextNotSupported, "a text hello");
    client.send(Message::text(ClientFrame::Ping { nonce: 1 }.encode())).await.unwrap();
    assert_error(next_packed(&mut client).await, ErrorCode::TextNotSupported, "a text ping");
    send_packed(&mut client, &ClientFrame::Ping { nonce: 2 }).await;
    assert_eq!(next_packed(&mut client).await, ServerFrame::Pong { nonce: 2 });
}

#[tokio::test]
async fn ids_and_keys_are_counted_in_characters() {
    let server = with_api().await;
    let addr = server.addr();
    let mut client = member(addr, "Ada", "r").await;
    let sixty_four = "é".repeat(64);
    let (seq, _) = publish(&mut client, "r", &sixty_four, json!(1)).await;
    assert_eq!(seq, 1);
    let sixty_five = "é".repeat(65);
    send(
        &mut client,
        &ClientFrame::Publish { id: sixty_five.clone(), room: "r".into(), body: json!(2), priority: 0 },
    )
    .await;
    match next_frame(&mut client).await {
        ServerFrame::Reject { id, code, .. } => {
            assert_eq!((id, code), (sixty_five.clone(), RejectCode::InvalidId))
        }
        other => panic!("{other:?}"),
    }
    // A state key of 64 is no error: the ping's pong is the next frame.
    send(&mut client, &ClientFrame::State { room: "r".into(), key: sixty_four.clone(), value: json!(1) })
        .await;
    send(&mut client, &ClientFrame::Ping { nonce: 3 }).await;
    assert_eq!(next_frame(&mut client).await, ServerFrame::Pong { nonce: 3 });
    send(&mut client, &ClientFrame::State { room: "r".into(), key: sixty_five.clone(), value: json!(1) })
        .await;
    assert_error(next_frame(&mut client).await, ErrorCode::InvalidFrame, "a state key of 65");

    let request =
        json!({"room": "r", "id": sixty_four, "body": 1, "from": {"id": sixty_four, "name": "Bot"}});
    let (status, answer) = call(addr, "POST", "/api/v1/publish", &request.to_string()).await;
    assert_eq!((status, answer["seq"].as_u64()), (200, Some(2)), "{answer}");
    for request in [
        json!({"room": "r", "id": sixty_five, "body": 1}),
        json!({"room": "r", "body": 1, "from": {"id": sixty_five, "name": "Bot"}}),
    ] {
        let (status, answer) = call(addr, "POST", "/api/v1/publish", &request.to_string()).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_request")), "{answer}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let server = with_api().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, answer) =
            call_as(server.addr(), &format!("{scheme} {KEY}"), "GET", "/api/v1/stats", "").await;
        assert_eq!(status, 200, "{scheme}: {answer}");
    }
    let (status, _) = call_as(server.addr(), &format!("Bearer   {KEY}"), "GET", "/api/v1/stats", "").await;
    assert_eq!(status, 200, "spaces after the scheme (RFC 6750: 1*SP)");
    for wrong in [format!("Basic {KEY}"), format!("Bearer{KEY}"), format!("Bearers {KEY}"), KEY.to_owned()] {
        let (status, answer) = call_as(server.addr(), &wrong, "GET", "/api/v1/stats", "").await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("unauthorized")), "{wrong}");
    }
}
