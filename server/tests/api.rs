//! The server API over HTTP, against a real server and real WebSocket clients: every
//! call, the key, and bad input, which gets a typed 4xx and never a 500.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{Value, json};
use tether_shared::{ClientFrame, ServerFrame, close};

const KEY: &str = "api-test-key-0123456789";

async fn with_api() -> Running {
    let mut config = unthrottled();
    config.api_key = Some(KEY.into());
    server_with(config).await
}

/// Calls the API with the key: (status, JSON body).
async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {KEY}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let (status, _, body) = http_with(addr, method, path, &headers, body).await;
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    (status, json)
}

#[tokio::test]
async fn without_a_key_the_api_is_not_there_and_with_one_it_wants_it() {
    let plain = server().await;
    let (status, _, body) = http_get(plain.addr(), "/api/v1/stats").await;
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "not_found");

    let server = with_api().await;
    let (status, head, body) = http_get(server.addr(), "/api/v1/stats").await;
    assert_eq!(status, 401);
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "unauthorized");
    // A key that is not text is a wrong key too, not a route that does not exist.
    for wrong in ["Bearer not-the-key", "Bearer clé"] {
        let (status, _, body) =
            http_with(server.addr(), "GET", "/api/v1/stats", &[("Authorization", wrong)], "").await;
        assert_eq!(
            (status, serde_json::from_str::<Value>(&body).unwrap()["message"].clone()),
            (401, json!("wrong API key")),
            "{wrong}"
        );
    }
    let (status, stats) = call(server.addr(), "GET", "/api/v1/stats", "").await;
    assert_eq!(status, 200);
    assert!(stats["totals"]["acks"].is_u64());
}

#[tokio::test]
async fn a_backend_publish_is_numbered_stored_delivered_and_deduplicated_like_a_clients() {
    let server = with_api().await;
    let mut alice = member(server.addr(), "Alice", "orders").await;
    let (seq, _) = publish(&mut alice, "orders", "a1", json!("from Alice")).await;
    assert_eq!(seq, 1);

    let request =
        json!({"room": "orders", "id": "ship-42", "body": {"text": "Order 42 shipped"}}).to_string();
    let (status, published) = call(server.addr(), "POST", "/api/v1/publish", &request).await;
    assert_eq!(status, 200, "{published}");
    assert_eq!((published["seq"].as_u64(), published["id"].as_str()), (Some(2), Some("ship-42")));
    // Delivered live, from the server's user.
    let delivered = until(&mut alice, |frame| match frame {
        ServerFrame::Message { room, seq, from, body, .. } if room == "orders" => Some((seq, from, body)),
        _ => None,
    })
    .await;
    assert_eq!(delivered.0, 2);
    assert_eq!((delivered.1.id.as_str(), delivered.1.name.as_str()), ("server", "Server"));
    assert_eq!(delivered.2, json!({"text": "Order 42 shipped"}));
    // A retry is answered with the original seq and not stored again.
    let (status, again) = call(server.addr(), "POST", "/api/v1/publish", &request).await;
    assert_eq!((status, again["seq"].as_u64()), (200, Some(2)));
    // Replayable: a client resuming from seq 1 gets it.
    let (mut bob, _, _) = hello(server.addr(), "Bob").await;
    send(&mut bob, &ClientFrame::Join { room: "orders".into(), since: Some(1), history: None }).await;
    let (seq, id, _) = next_message_in(&mut bob, "orders").await;
    assert_eq!((seq, id.as_str()), (2, "ship-42"));
    // Named senders, and the history call.
    let from =
        json!({"room": "orders", "body": "hi", "from": {"id": "bot", "name": "Order bot"}}).to_string();
    let (status, third) = call(server.addr(), "POST", "/api/v1/publish", &from).await;
    assert_eq!((status, third["seq"].as_u64()), (200, Some(3)));
    assert!(third["id"].as_str().is_some_and(|id| id.starts_with("api_")), "an id is made: {third}");
    let (status, page) = call(server.addr(), "GET", "/api/v1/history?room=orders&after=1&limit=10", "").await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(page["messages"][1]["from"]["name"], "Order bot");
    assert_eq!((page["head"].as_u64(), page["next"].clone()), (Some(3), Value::Null));
    let (_, latest) = call(server.addr(), "GET", "/api/v1/history?room=orders&limit=1", "").await;
    assert_eq!(latest["messages"][0]["seq"], 3, "without after: the latest page");
    let (_, first) = call(server.addr(), "GET", "/api/v1/history?room=orders&after=0&limit=1", "").await;
    assert_eq!((first["messages"][0]["seq"].as_u64(), first["next"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn a_broadcast_reaches_every_room_with_a_seq_of_its_own() {
    let server = with_api().await;
    let mut north = member(server.addr(), "North", "north").await;
    let mut south = member(server.addr(), "South", "south").await;
    publish(&mut south, "south", "s1", json!(1)).await;
    let request =
        json!({"rooms": ["north", "south", "no room!"], "id": "tick-1", "body": {"price": 42}}).to_string();
    let (status, answer) = call(server.addr(), "POST", "/api/v1/broadcast", &request).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!((results[0]["room"].as_str(), results[0]["seq"].as_u64()), (Some("north"), Some(1)));
    assert_eq!((results[1]["room"].as_str(), results[1]["seq"].as_u64()), (Some("south"), Some(2)));
    assert_eq!(results[2]["error"], "invalid_room", "one bad room fails alone");
    assert_eq!(next_message_in(&mut north, "north").await.0, 1);
    assert_eq!(next_message_in(&mut south, "south").await.0, 2);
}

#[tokio::test]
async fn presence_and_rooms_show_who_is_where() {
    let server = with_api().await;
    let _ada = member(server.addr(), "Ada", "lobby").await;
    let _bob = member(server.addr(), "Bob", "lobby").await;
    let _cy = member(server.addr(), "Cy", "kitchen").await;
    let (status, presence) = call(server.addr(), "GET", "/api/v1/presence?room=lobby&limit=1", "").await;
    assert_eq!(status, 200, "{presence}");
    assert_eq!(presence["count"], 2);
    assert_eq!(presence["members"].as_array().unwrap().len(), 1);
    let after = presence["next"].as_str().expect("a second page").to_owned();
    let (_, second) =
        call(server.addr(), "GET", &format!("/api/v1/presence?room=lobby&after={after}"), "").await;
    let names: Vec<&str> =
        [&presence, &second].iter().map(|p| p["members"][0]["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["Ada", "Bob"]);
    let (_, rooms) = call(server.addr(), "GET", "/api/v1/rooms", "").await;
    assert_eq!(rooms["rooms"], json!([{"room": "kitchen", "members": 1}, {"room": "lobby", "members": 2}]));
    let (_, stats) = call(server.addr(), "GET", "/api/v1/stats", "").await;
    assert_eq!(
        (stats["connections"].as_i64(), stats["users"].as_u64(), stats["rooms"].as_u64()),
        (Some(3), Some(3), Some(2))
    );
}

/// Another connection of the user whose resume token this is.
async fn same_user(addr: SocketAddr, resume_token: &str) -> Client {
    let mut client = connect(addr).await;
    let hello = ClientFrame::Hello { v: 1, token: None, name: None, resume_token: Some(resume_token.into()) };
    send(&mut client, &hello).await;
    assert!(matches!(next_frame(&mut client).await, ServerFrame::Welcome { .. }));
    client
}

#[tokio::test]
async fn disconnect_closes_a_users_connections_with_a_code_that_says_whether_to_come_back() {
    let server = with_api().await;
    let addr = server.addr();
    let (mut ada_one, ada, resume) = hello(addr, "Ada").await;
    let mut ada_two = same_user(addr, &resume).await;
    let mut bob = member(addr, "Bob", "r").await;

    let request = json!({"user": ada.id, "reconnect": true}).to_string();
    let (status, answer) = call(addr, "POST", "/api/v1/disconnect", &request).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["connections"].as_u64(), answer["code"].as_u64()),
        (Some(2), Some(u64::from(close::DISCONNECTED)))
    );
    for client in [&mut ada_one, &mut ada_two] {
        assert_eq!(expect_close(client).await.0, close::DISCONNECTED);
    }
    let mut ada_back = same_user(addr, &resume).await;
    let (_, removed) =
        call(addr, "POST", "/api/v1/disconnect", &json!({"user": ada.id, "reconnect": false}).to_string())
            .await;
    assert_eq!(removed["code"].as_u64(), Some(u64::from(close::REMOVED)));
    assert_eq!(expect_close(&mut ada_back).await.0, close::REMOVED);
    // Bob is untouched.
    send(&mut bob, &ClientFrame::Ping { nonce: 7 }).await;
    until(&mut bob, |f| matches!(f, ServerFrame::Pong { nonce: 7 }).then_some(())).await;
    let (_, nobody) =
        call(addr, "POST", "/api/v1/disconnect", &json!({"user": "u_nobody"}).to_string()).await;
    assert_eq!(nobody["connections"], 0);
}

#[tokio::test]
async fn bad_input_gets_a_typed_4xx_never_a_500() {
    let server = with_api().await;
    let addr = server.addr();
    let big = json!({"room": "r", "body": "x".repeat(20 * 1024)}).to_string();
    let huge = "x".repeat(200 * 1024);
    let deep = (0..=tether_shared::frame::MAX_BODY_DEPTH).fold(json!(1), |inner, _| json!([inner]));
    let deep = json!({"room": "r", "body": deep}).to_string();
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/api/v1/publish", "{not json".into(), 400, "invalid_json"),
        ("POST", "/api/v1/publish", json!({"room": "r"}).to_string(), 400, "invalid_request"),
        (
            "POST",
            "/api/v1/publish",
            json!({"room": "r", "body": 1, "extra": 2}).to_string(),
            400,
            "invalid_request",
        ),
        ("POST", "/api/v1/publish", json!({"room": "no room!", "body": 1}).to_string(), 400, "invalid_room"),
        (
            "POST",
            "/api/v1/publish",
            json!({"room": "r", "body": 1, "id": ""}).to_string(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/publish",
            json!({"room": "r", "body": 1, "from": {"id": "", "name": "x"}}).to_string(),
            400,
            "invalid_request",
        ),
        ("POST", "/api/v1/publish", big, 413, "too_large"),
        ("POST", "/api/v1/publish", huge, 413, "too_large"),
        ("POST", "/api/v1/publish", deep, 413, "too_large"),
        ("GET", "/api/v1/publish", String::new(), 405, "method_not_allowed"),
        ("POST", "/api/v1/stats", "{}".into(), 405, "method_not_allowed"),
        ("DELETE", "/api/v1/rooms", String::new(), 405, "method_not_allowed"),
        ("GET", "/api/v1/nothing", String::new(), 404, "not_found"),
        ("GET", "/api/v1/rooms/extra", String::new(), 404, "not_found"),
        ("GET", "/api/v1/history?room=never-used", String::new(), 404, "room_not_found"),
        ("GET", "/api/v1/presence?room=never-used", String::new(), 404, "room_not_found"),
        ("GET", "/api/v1/history", String::new(), 400, "invalid_request"),
        ("GET", "/api/v1/history?room=r&after=minus-one", String::new(), 400, "invalid_request"),
        ("GET", "/api/v1/presence?room=%7Bbraces%7D", String::new(), 400, "invalid_room"),
        ("POST", "/api/v1/disconnect", json!({"reconnect": true}).to_string(), 400, "invalid_request"),
        ("POST", "/api/v1/broadcast", json!({"rooms": "r", "body": 1}).to_string(), 400, "invalid_request"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = call(addr, method, path, &body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{method} {path} {:.60}: {answer}",
            body
        );
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The server is still fine.
    let (status, _) = call(addr, "GET", "/api/v1/rooms", "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_embedding_app_calls_the_same_api_in_rust() {
    let server = server().await;
    let api = server.api();
    let mut alice = member(server.addr(), "Alice", "feed").await;
    let request = tether_server::api::calls::PublishRequest {
        room: "feed".into(),
        body: json!({"tick": 1}),
        id: Some("t1".into()),
        from: None,
    };
    let published = api.publish(request).await.expect("stored");
    assert_eq!(published.seq, 1);
    assert_eq!(next_message_in(&mut alice, "feed").await.2, json!({"tick": 1}));
    let presence = api.presence("feed", None, None).await.unwrap();
    assert_eq!(presence.members.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["Alice"]);
    assert_eq!(api.history("feed", None, None).await.unwrap().messages.len(), 1);
    assert_eq!(api.rooms().await.unwrap().len(), 1);
    let user = presence.members[0].id.clone();
    assert_eq!(api.disconnect(&user, false).connections, 1);
    assert_eq!(expect_close(&mut alice).await.0, close::REMOVED);
}
