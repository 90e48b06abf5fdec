//! The demo chat against the demo's own server (`tether-demo-server`), which registers
//! the [`Chat`] channel with a publish handler that refuses with [`Post::check`]: the
//! server's typed refusal reaches the sender's hook, and the chat shows it on the
//! message; its join handler's badge shows beside the room's first member; its request
//! handler answers the hook's typed question.
#![cfg(target_arch = "wasm32")]

// The browser-test helpers of the library, shared rather than copied.
#[path = "../../frontend/tests/support/mod.rs"]
mod support;

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::demo_server_url;
use support::*;
use tether_demo::chat::ChatRoom;
use tether_demo_chat::{Chat, ChatError, MAX_TEXT, Post, Question, RoomStats};
use tether_shared::ConnectionConfig;
use tether_shared::channel::ChannelError;
use tether_yew::{Delivery, LinkOptions, UseChannel, WebSocketProvider, use_channel};
use wasm_bindgen_test::*;
use yew::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Only a guard against hanging: every wait below ends on an event long before this.
const PATIENCE: Duration = Duration::from_secs(30);

fn options() -> LinkOptions {
    LinkOptions {
        connection: ConnectionConfig { name: Some("Refused".into()), ..ConnectionConfig::default() },
        persist: false,
        ..LinkOptions::default()
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", (js_sys::Math::random() * 1e9) as u64)
}

#[derive(Properties, PartialEq)]
struct HarnessProps {
    children: Html,
}

#[component]
fn Harness(props: &HarnessProps) -> Html {
    html! {
        <WebSocketProvider url={AttrValue::from(demo_server_url())} options={options()}>
            { props.children.clone() }
        </WebSocketProvider>
    }
}

/// The hook a [`ChatProbe`] rendered last.
#[derive(Clone, Default)]
struct Handle(Rc<RefCell<Option<UseChannel<Chat>>>>);

impl PartialEq for Handle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Properties, PartialEq)]
struct ProbeProps {
    room: AttrValue,
    handle: Handle,
}

/// Exposes its `use_channel::<Chat>` to the test.
#[component]
fn ChatProbe(props: &ProbeProps) -> Html {
    let room = use_channel::<Chat>(props.room.clone());
    *props.handle.0.borrow_mut() = Some(room);
    html! {}
}

fn delivery_of(handle: &Handle, id: &str) -> Option<Delivery<ChatError>> {
    let room = handle.0.borrow();
    room.as_ref()?.view.messages.iter().find(|m| m.id == id).map(|m| m.delivery.clone())
}

#[wasm_bindgen_test]
async fn the_servers_refusal_reaches_the_senders_hook_as_the_channels_error() {
    let handle = Handle::default();
    let root = mount_point();
    let children = html! { <ChatProbe room={AttrValue::from(unique("refusal"))} handle={handle.clone()} /> };
    let app =
        yew::Renderer::<Harness>::with_root_and_props(root.clone(), yew::props!(HarnessProps { children }))
            .render();
    until("in the room", PATIENCE, || handle.0.borrow().as_ref().is_some_and(|r| r.view.info.joins > 0))
        .await;
    let send = |text: String| handle.0.borrow().as_ref().unwrap().send(Post { text });

    let long = send("x".repeat(MAX_TEXT + 1));
    let empty = send("   ".into());
    let fine = send("just right".into());
    let settled = |id: &str| !matches!(delivery_of(&handle, id), None | Some(Delivery::Sending));
    until("all three answered", PATIENCE, || settled(&long) && settled(&empty) && settled(&fine)).await;
    assert_eq!(
        delivery_of(&handle, &long),
        Some(Delivery::Refused(ChatError::TooLong { max: MAX_TEXT, length: MAX_TEXT + 1 }))
    );
    assert_eq!(delivery_of(&handle, &empty), Some(Delivery::Refused(ChatError::Empty)));
    assert!(
        matches!(delivery_of(&handle, &fine), Some(Delivery::Sent | Delivery::Delivered | Delivery::Read)),
        "a good post is stored: {:?}",
        delivery_of(&handle, &fine)
    );
    drop(handle);
    app.destroy();
    yew::scheduler::flush().await;
    root.remove();
}

#[wasm_bindgen_test]
async fn a_request_from_the_hook_is_answered_by_the_servers_handler_typed() {
    let handle = Handle::default();
    let root = mount_point();
    let children = html! { <ChatProbe room={AttrValue::from(unique("asked"))} handle={handle.clone()} /> };
    let app =
        yew::Renderer::<Harness>::with_root_and_props(root.clone(), yew::props!(HarnessProps { children }))
            .render();
    until("in the room", PATIENCE, || handle.0.borrow().as_ref().is_some_and(|r| r.view.info.joins > 0))
        .await;
    let said = handle.0.borrow().as_ref().unwrap().send(Post { text: "one".into() });
    until("the post stored", PATIENCE, || {
        !matches!(delivery_of(&handle, &said), None | Some(Delivery::Sending))
    })
    .await;
    let asked = handle.0.borrow().as_ref().unwrap().request(Question::Stats);
    assert_eq!(asked.await, Ok(RoomStats { messages: 1, here: 1 }));
    let again = handle.0.borrow().as_ref().unwrap().request_idempotent(Question::Stats);
    assert_eq!(again.await, Ok(RoomStats { messages: 1, here: 1 }));
    drop(handle);
    app.destroy();
    yew::scheduler::flush().await;
    root.remove();
}

#[wasm_bindgen_test]
async fn the_chat_shows_the_hosts_badge_and_the_refusal_on_the_message() {
    let root = mount_point();
    let children = html! { <ChatRoom room={AttrValue::from(unique("refused-ui"))} /> };
    let app =
        yew::Renderer::<Harness>::with_root_and_props(root.clone(), yew::props!(HarnessProps { children }))
            .render();
    // The first one in a room is its host: the join handler's badge, shown by the member.
    until("the host's badge", PATIENCE, || {
        text_of(&root, ".presence .member .badge").as_deref() == Some("host")
    })
    .await;

    // The composer sends what it is given: the server's rule is the one shown.
    type_into(&root, ".composer-input", &"é".repeat(MAX_TEXT + 1));
    click(&root, ".composer button[type=submit]");
    until("the refusal on the message", PATIENCE, || {
        text_of(&root, ".message.mine .why").is_some_and(|why| !why.is_empty())
    })
    .await;
    let error = ChatError::TooLong { max: MAX_TEXT, length: MAX_TEXT + 1 };
    assert_eq!(text_of(&root, ".message.mine .why").as_deref(), Some(error.message().as_str()));
    assert_eq!(text_of(&root, ".message.mine .tick").as_deref(), Some("! refused"));
    app.destroy();
    yew::scheduler::flush().await;
    root.remove();
}
