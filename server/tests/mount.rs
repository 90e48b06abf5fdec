//! Tether inside an app's own server: mounted under a prefix beside the app's own
//! routes, as a warp filter and as a tower service in axum, with the app publishing
//! through its handle. Real servers on free ports, real WebSocket clients.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tether_shared::{ClientFrame, PROTOCOL_VERSION, ServerFrame};
use warp::Filter;

/// A WebSocket client of a Tether mounted at `/live`, said hello and joined `room`.
async fn live_member(addr: SocketAddr, name: &str, room: &str) -> Client {
    let (mut client, _) =
        within("the websocket handshake", tokio_tungstenite::connect_async(format!("ws://{addr}/live/ws")))
            .await
            .expect("the mounted /ws upgrades");
    let hello =
        ClientFrame::Hello { v: PROTOCOL_VERSION, token: None, name: Some(name.into()), resume_token: None };
    send(&mut client, &hello).await;
    assert!(matches!(next_frame(&mut client).await, ServerFrame::Welcome { .. }));
    join(&mut client, room, None).await;
    client
}

/// What a mounted Tether must do wherever it is: its own routes under the prefix, the
/// app's beside them, a chat, and the app's own publish through the handle.
async fn a_mounted_tether_serves(addr: SocketAddr, tether: &tether_server::Tether) {
    let (status, _, body) = http_get(addr, "/hello").await;
    assert_eq!((status, body.as_str()), (200, "from the app"));
    let (status, _, body) = http_get(addr, "/live/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let mut ada = live_member(addr, "Ada", "lobby").await;
    let mut bob = live_member(addr, "Bob", "lobby").await;
    publish(&mut ada, "lobby", "a1", json!({"text": "hi"})).await;
    assert_eq!(next_message_in(&mut bob, "lobby").await.2, json!({"text": "hi"}));

    // The app's own code publishes through the handle.
    let request = serde_json::from_value(json!({"room": "lobby", "body": {"text": "from the app"}})).unwrap();
    let published = within("the app's publish", tether.api().publish(request)).await.expect("published");
    assert_eq!(published.seq, 2);
    assert_eq!(next_message_in(&mut bob, "lobby").await.2, json!({"text": "from the app"}));

    // The HTTP fallback, with a body, under the prefix too.
    let hello = json!({"type": "hello", "v": 1, "name": "Poll"}).to_string();
    let (status, _, opened) = http_with(addr, "POST", "/live/rt/open", &[], &hello).await;
    assert_eq!(status, 200, "{opened}");
    drop((ada, bob));
}

#[tokio::test]
async fn mounted_as_a_warp_filter_beside_the_apps_routes() {
    let tether = within("building", tether_server::Server::new(unthrottled()).build()).await.expect("built");
    let app = warp::path!("hello").map(|| "from the app");
    let routes = app.or(warp::path("live").and(tether.filter()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(warp::serve(routes).incoming(listener).run());
    a_mounted_tether_serves(addr, &tether).await;
    server.abort();
    within("stopping", tether.stop()).await;
}

#[tokio::test]
async fn mounted_as_a_tower_service_in_axum() {
    let tether = within("building", tether_server::Server::new(unthrottled()).build()).await.expect("built");
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "from the app" }))
        .nest_service("/live", tether.service());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    a_mounted_tether_serves(addr, &tether).await;
    server.abort();
    within("stopping", tether.stop()).await;
}
