//! The echo round trip in a real browser against the real server.
#![cfg(target_arch = "wasm32")]

// The browser-test helpers of the library, shared rather than copied.
#[path = "../../frontend/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use futures::StreamExt;
use support::*;
use tether_demo::EchoPage;
use tether_shared::{ClientFrame, ServerFrame};
use tether_yew::socket::{BrowserSocket, SocketEvent};
use wasm_bindgen_test::*;
use yew::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Only a guard against hanging: every wait below ends on an event long before this.
const PATIENCE: Duration = Duration::from_secs(30);

#[wasm_bindgen_test]
async fn a_browser_socket_echoes_through_the_server() {
    let agent = web_sys::window().unwrap().navigator().user_agent().unwrap();
    console_log!("browser: {agent}");
    assert!(agent.contains("Chrome"), "expected Chromium, got {agent}");

    let (socket, mut events) = BrowserSocket::open(server_url()).expect("socket opens");
    assert_eq!(events.next().await, Some(SocketEvent::Opened));
    let body = serde_json::json!({"text": "round trip", "from": "chromium"});
    socket.send(&ClientFrame::Echo { body: body.clone() }.encode()).unwrap();
    match events.next().await {
        Some(SocketEvent::Text(text)) => {
            assert_eq!(ServerFrame::decode(&text).unwrap(), ServerFrame::Echo { body })
        }
        other => panic!("expected the echo, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn the_echo_page_shows_connected_and_echoes_typed_text() {
    let root = mount_point();
    let props = yew::props!(tether_demo::echo::EchoPageProps { url: AttrValue::from(server_url()) });
    let app = yew::Renderer::<EchoPage>::with_root_and_props(root.clone(), props).render();

    until("the page to say Connected", PATIENCE, || {
        text_of(&root, ".status").as_deref() == Some("Connected")
    })
    .await;
    type_into(&root, ".echo-input", "hello from the page");
    click(&root, "button[type=submit]");
    until("the echoed text", PATIENCE, || {
        text_of(&root, ".echo-replies").as_deref() == Some("hello from the page")
    })
    .await;

    app.destroy();
    root.remove();
}

#[wasm_bindgen_test]
async fn the_echo_page_reports_a_refused_connection() {
    let root = mount_point();
    // Port 9 (discard) is closed on loopback: the browser reports 1006.
    let props = yew::props!(tether_demo::echo::EchoPageProps { url: AttrValue::from("ws://127.0.0.1:9/ws") });
    let app = yew::Renderer::<EchoPage>::with_root_and_props(root.clone(), props).render();
    until("the page to say Disconnected", PATIENCE, || {
        text_of(&root, ".status").is_some_and(|text| text.starts_with("Disconnected"))
    })
    .await;
    app.destroy();
    root.remove();
}
