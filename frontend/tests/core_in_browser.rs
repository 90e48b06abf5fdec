//! The shared sans-IO core, unchanged, driving a real browser socket to the real server.
#![cfg(target_arch = "wasm32")]

mod support;

use futures::StreamExt;
use support::*;
use tether_shared::{Action, Connection, ConnectionConfig, Event, Input, Millis, State};
use tether_yew::socket::{BrowserSocket, SocketEvent};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn the_core_reaches_open_through_a_browser_socket() {
    let config = ConnectionConfig { name: Some("chromium".into()), ..ConnectionConfig::default() };
    let mut core = Connection::new(config, js_sys::Math::random().to_bits());
    core.set_endpoints(vec![server_url().to_owned()]);
    core.handle(Input::Connect, Millis::monotonic());

    let mut socket = None;
    let mut events = None;
    let mut welcomed = None;
    while welcomed.is_none() {
        for action in core.drain_actions() {
            match action {
                Action::Open { socket: id, endpoint } => {
                    let (opened, stream) = BrowserSocket::open(&endpoint).unwrap();
                    socket = Some((id, opened));
                    events = Some(stream);
                }
                Action::Send(_, text) => socket.as_ref().unwrap().1.send(&text).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
        for event in core.drain_events() {
            if let Event::Welcome { user } = event {
                welcomed = Some(user);
            }
        }
        if welcomed.is_some() {
            break;
        }
        let id = socket.as_ref().expect("the core asked for a socket").0;
        match events.as_mut().unwrap().next().await {
            Some(SocketEvent::Opened) => core.handle(Input::SocketOpened(id), Millis::monotonic()),
            Some(SocketEvent::Text(text)) => core.handle(Input::Received(id, text), Millis::monotonic()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(core.state(), &State::Open);
    assert_eq!(welcomed.unwrap().name, "chromium");
}
