//! The MessagePack encoding, negotiated with a subprotocol: the same frames as JSON,
//! binary, and JSON and MessagePack clients in one room seeing the same messages.

mod common;

use common::*;
use serde_json::json;
use tether_shared::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client that asked for MessagePack; returns it and the subprotocol the server chose.
async fn packed_client(addr: std::net::SocketAddr) -> (Client, Option<String>) {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "tether.v1.msgpack, tether.v1.json".parse().unwrap());
    let (client, response) =
        within("the websocket handshake", tokio_tungstenite::connect_async(request)).await.expect("connects");
    let chosen =
        response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (client, chosen)
}

async fn send_packed(client: &mut Client, frame: &ClientFrame) {
    send_message(client, Message::binary(frame.encode_msgpack())).await.unwrap();
}

/// The next frame, which must be binary MessagePack.
async fn next_packed(client: &mut Client) -> ServerFrame {
    loop {
        match next_message(client).await.expect("open") {
            Message::Binary(bytes) => return ServerFrame::decode_msgpack(&bytes).expect("MessagePack frame"),
            Message::Text(text) => panic!("a text frame on a MessagePack connection: {text}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_msgpack_client_chats_with_a_json_client_in_one_room() {
    let server = server_with(unthrottled()).await;
    let (mut packed, chosen) = packed_client(server.addr()).await;
    assert_eq!(chosen.as_deref(), Some("tether.v1.msgpack"));
    let hello = ClientFrame::Hello {
        v: PROTOCOL_VERSION,
        token: None,
        name: Some("Packed".into()),
        resume_token: None,
    };
    send_packed(&mut packed, &hello).await;
    assert!(matches!(next_packed(&mut packed).await, ServerFrame::Welcome { .. }));
    send_packed(&mut packed, &ClientFrame::Join { room: "r".into(), since: None, history: None }).await;
    within("joined", async {
        while !matches!(next_packed(&mut packed).await, ServerFrame::Joined { .. }) {}
    })
    .await;
    let mut text = member(server.addr(), "Text", "r").await;
    publish(&mut text, "r", "t1", json!({"text": "from JSON"})).await;
    let publish = ClientFrame::Publish {
        id: "p1".into(),
        room: "r".into(),
        body: json!({"text": "from MessagePack", "n": 1.5}),
        priority: 0,
    };
    send_packed(&mut packed, &publish).await;
    // Each sees both messages, the same seqs and bodies; the MessagePack publisher its
    // ack too, which comes after its own message.
    let mut seen_packed = Vec::new();
    let mut acked = None;
    within("both messages and the ack", async {
        while seen_packed.len() < 2 || acked.is_none() {
            match next_packed(&mut packed).await {
                ServerFrame::Message { seq, body, .. } => seen_packed.push((seq, body)),
                ServerFrame::Ack { id, seq, .. } => acked = Some((id, seq)),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(acked, Some(("p1".to_owned(), 2)));
    assert_eq!(
        seen_packed,
        [(1, json!({"text": "from JSON"})), (2, json!({"text": "from MessagePack", "n": 1.5}))]
    );
    // The JSON client (its own message seen with its ack) gets the MessagePack one as JSON.
    let (seq, id, body) = next_message_in(&mut text, "r").await;
    assert_eq!((seq, id.as_str(), body), (2, "p1", json!({"text": "from MessagePack", "n": 1.5})));
}

#[tokio::test]
async fn bad_binary_gets_the_same_typed_answers_as_bad_json() {
    let server = server().await;
    let (mut packed, _) = packed_client(server.addr()).await;
    send_message(&mut packed, Message::binary(vec![0xc1, 0x00])).await.unwrap();
    match next_packed(&mut packed).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::MalformedJson),
        other => panic!("{other:?}"),
    }
    let wrong = rmp_serde::to_vec_named(&json!({"type": "hello", "v": "one"})).unwrap();
    send_message(&mut packed, Message::binary(wrong)).await.unwrap();
    match next_packed(&mut packed).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::InvalidFrame),
        other => panic!("{other:?}"),
    }
    // A JSON connection still refuses binary, in words.
    let mut plain = connect(server.addr()).await;
    send_message(&mut plain, Message::binary(vec![1, 2, 3])).await.unwrap();
    match next_frame(&mut plain).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::BinaryNotSupported),
        other => panic!("{other:?}"),
    }
}
