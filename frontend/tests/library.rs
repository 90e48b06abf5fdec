//! The Yew library in a real browser against the real server: sharing, reconnects,
//! the offline queue, persistence across a reload, cleanup, the connection UI, bursts.
#![cfg(target_arch = "wasm32")]

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use support::*;
use tether_shared::channel::{Reason, Undecodable};
use tether_shared::typed::Failure;
use tether_shared::{BackoffConfig, ConnectionConfig, Event, Input, Jitter, ServerFrame, State};
use tether_yew::link::{TokenProvider, Transport, live_links};
use tether_yew::persist::storage_key;
use tether_yew::socket::live_sockets;
use tether_yew::*;
use wasm_bindgen_test::*;
use yew::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Only a guard against hanging: every wait below ends on an event long before this.
const PATIENCE: Duration = Duration::from_secs(30);

fn fast_options() -> LinkOptions {
    LinkOptions {
        connection: ConnectionConfig {
            backoff: BackoffConfig {
                initial: Duration::from_millis(100),
                multiplier: 2.0,
                max: Duration::from_millis(500),
                max_attempts: None,
                jitter: Jitter::Full,
            },
            name: Some("browser".into()),
            ..ConnectionConfig::default()
        },
        persist: false,
        auto_connect: true,
        transport: None,
        probe_after: Duration::from_millis(200),
        token: None,
        endpoints: Vec::new(),
        encoding: tether_shared::Encoding::Json,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", (js_sys::Math::random() * 1e9) as u64)
}

/// What probes observed, shared with the test.
#[derive(Default)]
struct Seen {
    links: Vec<Link>,
    states: Vec<State>,
    renders: usize,
    messages: usize,
}

#[derive(Clone)]
struct Shared(Rc<RefCell<Seen>>);

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Properties, PartialEq)]
struct ProbeProps {
    seen: Shared,
    #[prop_or_default]
    room: Option<AttrValue>,
}

/// Records the link and every status it renders with.
#[component]
fn LinkProbe(props: &ProbeProps) -> Html {
    let ws = use_websocket(None, UseWebSocketOptions { max_history_size: 10_000, ..Default::default() });
    let mut seen = props.seen.0.borrow_mut();
    seen.renders += 1;
    if seen.states.last() != Some(&ws.status.state) {
        seen.states.push(ws.status.state.clone());
    }
    if !seen.links.contains(&ws.link) {
        seen.links.push(ws.link.clone());
    }
    seen.messages = ws.history.iter().filter(|f| matches!(f, ServerFrame::Message { .. })).count();
    html! {}
}

#[component]
fn RoomProbe(props: &ProbeProps) -> Html {
    let room = use_room(props.room.clone().unwrap_or_else(|| "general".into()));
    props.seen.0.borrow_mut().renders += 1;
    html! { <span class="count">{ room.view.messages.len() }</span> }
}

#[derive(Properties, PartialEq)]
struct HarnessProps {
    options: LinkOptions,
    children: Html,
}

#[component]
fn Harness(props: &HarnessProps) -> Html {
    html! {
        <WebSocketProvider url={AttrValue::from(server_url())} options={props.options.clone()}>
            { props.children.clone() }
        </WebSocketProvider>
    }
}

/// Destroys an app and lets Yew run every cleanup before the next test counts anything.
async fn unmount(app: yew::AppHandle<Harness>, root: web_sys::Element) {
    app.destroy();
    yew::scheduler::flush().await;
    root.remove();
}

async fn drop_all_connections() {
    let url = server_url().replacen("ws://", "http://", 1).replace("/ws", "/api/test/drop");
    let response = gloo_net::http::Request::post(&url).send().await.expect("the drop endpoint answers");
    assert_eq!(response.status(), 200);
}

fn is_open(seen: &Shared) -> bool {
    seen.0.borrow().states.last() == Some(&State::Open)
}

#[wasm_bindgen_test]
async fn the_provider_shares_one_socket_between_components() {
    yew::scheduler::flush().await;
    let sockets_before = live_sockets();
    let root = mount_point();
    let seen = Shared(Rc::default());
    let children = html! { <><LinkProbe seen={seen.clone()} /><LinkProbe seen={seen.clone()} /><LinkProbe seen={seen.clone()} /></> };
    let app = yew::Renderer::<Harness>::with_root_and_props(
        root.clone(),
        yew::props!(HarnessProps { options: fast_options(), children }),
    )
    .render();
    until("connected", PATIENCE, || is_open(&seen)).await;
    assert_eq!(seen.0.borrow().links.len(), 1, "three components, one link");
    assert!(seen.0.borrow().links[0].has_socket());
    assert_eq!(live_sockets(), sockets_before + 1, "one socket");
    unmount(app, root).await;
}

#[wasm_bindgen_test]
async fn hook_state_goes_through_connect_drop_reconnect() {
    let root = mount_point();
    let seen = Shared(Rc::default());
    let children = html! { <LinkProbe seen={seen.clone()} /> };
    let app = yew::Renderer::<Harness>::with_root_and_props(
        root.clone(),
        yew::props!(HarnessProps { options: fast_options(), children }),
    )
    .render();
    until("connected", PATIENCE, || is_open(&seen)).await;
    let rendered_before = seen.0.borrow().states.len();
    // Every transition, from the link's events: a render shows only the latest state,
    // and a fast reconnect can pass through several between two frames.
    let transitions = Rc::new(RefCell::new(Vec::new()));
    let link = seen.0.borrow().links[0].clone();
    let _subscription = {
        let transitions = transitions.clone();
        link.subscribe(move |events, _| {
            for event in events.iter() {
                if let Event::State(state) = event {
                    transitions.borrow_mut().push(state.clone());
                }
            }
        })
    };
    drop_all_connections().await;
    until("reconnected", PATIENCE, || {
        let transitions = transitions.borrow();
        transitions.iter().any(|s| matches!(s, State::Reconnecting { .. }))
            && transitions.last() == Some(&State::Open)
    })
    .await;
    // The batch that told us has reached the hook too; let Yew render it.
    yew::scheduler::flush().await;
    let transitions = transitions.borrow().clone();
    let dropped = transitions.iter().position(|s| matches!(s, State::Reconnecting { .. })).unwrap();
    assert!(dropped < transitions.len() - 1, "reconnecting, then open: {transitions:?}");
    // What the hook rendered after the drop is that same story, maybe with steps skipped.
    let states = seen.0.borrow().states.clone();
    assert!(matches!(states[0], State::Idle | State::Connecting { .. }), "{states:?}");
    let mut story = transitions.iter();
    for shown in &states[rendered_before..] {
        assert!(story.any(|s| s == shown), "the hook showed {shown:?}, which is not next in {transitions:?}");
    }
    assert_eq!(states.last(), Some(&State::Open));
    unmount(app, root).await;
}

/// (message id, seq) of every ack, in arrival order.
type Acks = Rc<RefCell<Vec<(String, u64)>>>;

/// Collects acks from a link.
fn collect_acks(link: &Link) -> (Acks, tether_yew::link::Subscription) {
    let acks = Rc::new(RefCell::new(Vec::new()));
    let sink = acks.clone();
    let subscription = link.subscribe(move |events, _| {
        for event in events.iter() {
            if let Event::Acked { envelope, seq, .. } = event {
                sink.borrow_mut().push((envelope.id.clone(), *seq));
            }
        }
    });
    (acks, subscription)
}

#[wasm_bindgen_test]
async fn messages_sent_while_disconnected_are_replayed_in_order_and_acked_once() {
    let link = Link::new(server_url(), fast_options());
    let room = unique("queue");
    let _lease = link.join(&room);
    until("connected", PATIENCE, || link.status().state == State::Open).await;
    link.handle(Input::Disconnect);
    assert_eq!(link.status().state, State::Closed);
    let ids: Vec<String> = (0..5).map(|i| link.publish(&room, json!({ "n": i }))).collect();
    assert_eq!(link.status().queued, 5, "queued, not sent");
    let (acks, _subscription) = collect_acks(&link);
    link.handle(Input::Connect);
    until("five acks", PATIENCE, || acks.borrow().len() >= 5).await;
    let acks = acks.borrow().clone();
    let acked_ids: Vec<String> = acks.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(acked_ids, ids, "in order, each once");
    let seqs: Vec<u64> = acks.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(link.status().queued, 0);
}

#[wasm_bindgen_test]
async fn queued_messages_survive_a_reload_and_go_out_exactly_once() {
    // A unique URL gives this test its own storage key.
    let url = format!("{}?reload={}", server_url(), unique("t"));
    let room = unique("reload");
    let options = LinkOptions { persist: true, auto_connect: false, ..fast_options() };
    let storage = web_sys::window().unwrap().local_storage().unwrap().unwrap();
    let ids = {
        let before_reload = Link::new(&url, options.clone());
        let _lease = before_reload.join(&room);
        let ids: Vec<String> = (0..3).map(|i| before_reload.publish(&room, json!(i))).collect();
        until("the outbox saved", PATIENCE, || storage.get_item(&storage_key(&url)).unwrap().is_some()).await;
        ids
        // The page "reloads": this link and everything it owned are gone.
    };
    let after_reload = Link::new(&url, LinkOptions { auto_connect: true, ..options });
    assert_eq!(after_reload.queued_ids(), ids, "restored from storage");
    let _lease = after_reload.join(&room);
    let (acks, _subscription) = collect_acks(&after_reload);
    until("three acks", PATIENCE, || acks.borrow().len() >= 3).await;
    let acked: Vec<String> = acks.borrow().iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(acked, ids);
    let seqs: Vec<u64> = acks.borrow().iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3], "stored exactly once");
    until("storage cleared", PATIENCE, || storage.get_item(&storage_key(&url)).unwrap().is_none()).await;
}

#[wasm_bindgen_test]
async fn a_damaged_saved_queue_gives_a_warning_not_a_crash() {
    let url = format!("{}?damaged={}", server_url(), unique("t"));
    let storage = web_sys::window().unwrap().local_storage().unwrap().unwrap();
    storage.set_item(&storage_key(&url), "{not a snapshot").unwrap();
    let link = Link::new(&url, LinkOptions { persist: true, auto_connect: false, ..fast_options() });
    let warning = link.status().warning.expect("a visible warning");
    assert!(matches!(warning, StorageWarning::Unreadable(_)), "{warning:?}");
    assert!(warning.to_string().contains("could not be restored"), "{warning}");
    assert_eq!(link.status().queued, 0);
}

#[wasm_bindgen_test]
async fn mounting_and_unmounting_leaks_nothing() {
    yew::scheduler::flush().await;
    let (sockets, links) = (live_sockets(), live_links());
    for i in 0..100 {
        let root = mount_point();
        let seen = Shared(Rc::default());
        let children = html! { <><LinkProbe seen={seen.clone()} /><RoomProbe seen={seen.clone()} room={AttrValue::from(format!("leak-{i}"))} /></> };
        let app = yew::Renderer::<Harness>::with_root_and_props(
            root.clone(),
            yew::props!(HarnessProps { options: fast_options(), children }),
        )
        .render();
        yew::scheduler::flush().await;
        if i % 10 == 0 {
            until("connected", PATIENCE, || is_open(&seen)).await;
        }
        unmount(app, root).await;
    }
    assert_eq!(live_links(), links, "every link was dropped");
    assert_eq!(live_sockets(), sockets, "every socket was closed");
}

#[wasm_bindgen_test]
fn indicator_words_for_every_state() {
    use tether_shared::Millis;
    use tether_yew::components::describe;
    assert_eq!(describe(&State::Open, None, None), ("connected", "Connected".into()));
    assert_eq!(describe(&State::Connecting { attempt: 0 }, None, None).1, "Connecting…");
    assert_eq!(
        describe(&State::Reconnecting { attempt: 2, retry_at: Millis(0) }, Some(4), Some((2, Some(5)))),
        ("reconnecting", "Reconnecting in 4 s (attempt 2 of 5)".into())
    );
    assert_eq!(describe(&State::Offline, None, None), ("offline", "Offline".into()));
    assert_eq!(
        describe(&State::Failed { reason: "Sign-in failed".into() }, None, None).1,
        "Connection failed: Sign-in failed"
    );
}

#[wasm_bindgen_test]
async fn the_connection_ui_follows_the_network() {
    let root = mount_point();
    let seen = Shared(Rc::default());
    let children = html! { <><ConnectionIndicator /><OfflineBanner /><QueueStatus /><LinkProbe seen={seen.clone()} /></> };
    let app = yew::Renderer::<Harness>::with_root_and_props(
        root.clone(),
        yew::props!(HarnessProps { options: fast_options(), children }),
    )
    .render();
    until("Connected shown", PATIENCE, || text_of(&root, ".indicator-text").as_deref() == Some("Connected"))
        .await;
    assert!(root.query_selector(".indicator.connected").unwrap().is_some());
    assert!(root.query_selector(".offline-banner").unwrap().is_none());
    let link = seen.0.borrow().links[0].clone();
    link.handle(Input::NetworkOffline);
    until("Offline shown", PATIENCE, || text_of(&root, ".indicator-text").as_deref() == Some("Offline"))
        .await;
    assert!(root.query_selector(".offline-banner").unwrap().is_some());
    link.publish("general", json!("while offline"));
    until("queue count", PATIENCE, || text_of(&root, ".queue-count").as_deref() == Some("1 message waiting"))
        .await;
    link.handle(Input::NetworkOnline);
    until("Connected again", PATIENCE, || text_of(&root, ".indicator-text").as_deref() == Some("Connected"))
        .await;
    unmount(app, root).await;
}

#[wasm_bindgen_test]
async fn the_hooks_tell_round_trip_traffic_and_reconnects_and_the_indicator_shows_the_round_trip() {
    let root = mount_point();
    let seen = Shared(Rc::default());
    let children = html! { <><ConnectionIndicator /><LinkProbe seen={seen.clone()} /></> };
    let app = yew::Renderer::<Harness>::with_root_and_props(
        root.clone(),
        yew::props!(HarnessProps { options: fast_options(), children }),
    )
    .render();
    until("connected", PATIENCE, || text_of(&root, ".indicator-text").as_deref() == Some("Connected")).await;
    let link = seen.0.borrow().links[0].clone();
    let before = link.status().stats;
    assert_eq!((before.frames_sent, before.frames_received, before.reconnects), (1, 1, 0), "hello, welcome");
    assert!(before.connected_since.is_some() && before.rtt.is_none());
    // Coming back to the tab checks the socket with a ping: its pong gives a round trip.
    link.handle(Input::PageVisible);
    until("a round trip", PATIENCE, || link.status().stats.rtt.is_some()).await;
    let title = || {
        let indicator = root.query_selector(".indicator").unwrap().expect("the indicator");
        indicator.get_attribute("title").unwrap_or_default()
    };
    until("the round trip on hover", PATIENCE, || title().contains("round trip")).await;
    assert!(title().starts_with(&format!("Server: {}", server_url())), "{}", title());
    let after = link.status().stats;
    assert!(after.frames_sent > before.frames_sent, "the ping counted");
    assert!(after.bytes_sent > before.bytes_sent && after.bytes_received > before.bytes_received);
    // A dropped connection comes back: one reconnect.
    let drop_url = server_url().replacen("ws://", "http://", 1).replace("/ws", "/api/test/drop");
    gloo_net::http::Request::post(&drop_url).send().await.expect("the test endpoint answers");
    until("reconnected", PATIENCE, || {
        link.status().stats.reconnects == 1 && link.status().state == State::Open
    })
    .await;
    unmount(app, root).await;
}

#[wasm_bindgen_test]
async fn a_burst_of_5000_messages_is_all_kept_with_few_renders() {
    let root = mount_point();
    let seen = Shared(Rc::default());
    let children = html! { <LinkProbe seen={seen.clone()} /> };
    let mut options = fast_options();
    options.connection.max_in_flight = 512;
    options.connection.outbox.max_messages = 10_000;
    options.connection.outbox.max_bytes = 10 << 20;
    let app = yew::Renderer::<Harness>::with_root_and_props(
        root.clone(),
        yew::props!(HarnessProps { options, children }),
    )
    .render();
    until("connected", PATIENCE, || is_open(&seen)).await;
    let link = seen.0.borrow().links[0].clone();
    let room = unique("burst");
    let _lease = link.join(&room);
    yew::scheduler::flush().await;
    let (renders_before, frames) = (seen.0.borrow().renders, FrameCounter::start());
    for i in 0..5_000 {
        link.publish(&room, json!(i));
    }
    until("all 5000 in the history", Duration::from_secs(90), || seen.0.borrow().messages >= 5_000).await;
    let (renders, frames) = (seen.0.borrow().renders - renders_before, frames.frames());
    console_log!("5000 messages arrived in {renders} renders over {frames} frames");
    assert_eq!(seen.0.borrow().messages, 5_000);
    // However fast or slow the machine, the batches follow the frames: at most one
    // render per frame, never one per message. The slack of two covers the render under
    // way when counting began and the one the synchronous publishing loop itself causes.
    assert!(renders <= frames + 2, "{renders} renders in {frames} frames");
    unmount(app, root).await;
}

#[derive(Clone, Default)]
struct RoomHandle(Rc<RefCell<Option<UseRoom>>>);

impl PartialEq for RoomHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Properties, PartialEq)]
struct HandleProps {
    room: AttrValue,
    handle: RoomHandle,
}

/// Exposes its `use_room` to the test.
#[component]
fn RoomHandleProbe(props: &HandleProps) -> Html {
    let room = use_room(props.room.clone());
    *props.handle.0.borrow_mut() = Some(room);
    html! {}
}

fn named(name: &str) -> LinkOptions {
    let mut options = fast_options();
    options.connection.name = Some(name.into());
    options
}

fn delivery_of(handle: &RoomHandle, id: &str) -> Option<Delivery<Reason>> {
    let room = handle.0.borrow();
    room.as_ref()?.view.messages.iter().find(|m| m.id == id).map(|m| m.delivery.clone())
}

#[wasm_bindgen_test]
async fn ticks_go_sending_sent_delivered_read() {
    let room = AttrValue::from(unique("ticks"));
    let (alice, bob) = (RoomHandle::default(), RoomHandle::default());
    let mount = |name: &str, handle: &RoomHandle| {
        let root = mount_point();
        let children = html! { <RoomHandleProbe room={room.clone()} handle={handle.clone()} /> };
        let app = yew::Renderer::<Harness>::with_root_and_props(
            root.clone(),
            yew::props!(HarnessProps { options: named(name), children }),
        )
        .render();
        (root, app)
    };
    let (alice_root, alice_app) = mount("Alice", &alice);
    let (bob_root, bob_app) = mount("Bob", &bob);
    let both_here = || {
        let count = |h: &RoomHandle| h.0.borrow().as_ref().map_or(0, |r| r.view.members.len());
        count(&alice) == 2 && count(&bob) == 2
    };
    until("both in the room", PATIENCE, both_here).await;

    let sent = alice.0.borrow().as_ref().unwrap().send(json!({ "text": "hello Bob" }));
    yew::scheduler::flush().await;
    let first = delivery_of(&alice, &sent);
    assert!(
        matches!(first, Some(Delivery::Sending | Delivery::Sent | Delivery::Delivered)),
        "shown at once: {first:?}"
    );
    // Bob's room hook acknowledges delivery by itself.
    until("delivered", PATIENCE, || delivery_of(&alice, &sent) == Some(Delivery::Delivered)).await;
    let seq = {
        let bob_room = bob.0.borrow();
        let bob_room = bob_room.as_ref().unwrap();
        let message = bob_room.view.messages.iter().find(|m| m.id == sent).expect("Bob has it");
        assert!(!message.mine);
        message.seq.unwrap()
    };
    bob.0.borrow().as_ref().unwrap().mark_read(seq);
    until("read", PATIENCE, || delivery_of(&alice, &sent) == Some(Delivery::Read)).await;

    drop((alice, bob));
    unmount(alice_app, alice_root).await;
    unmount(bob_app, bob_root).await;
}

/// Ids of the messages `link` receives, in order.
fn collect_messages(link: &Link) -> (Rc<RefCell<Vec<String>>>, tether_yew::link::Subscription) {
    let ids = Rc::new(RefCell::new(Vec::new()));
    let sink = ids.clone();
    let subscription = link.subscribe(move |events, _| {
        for event in events.iter() {
            if let Event::Frame(ServerFrame::Message { id, .. }) = event {
                sink.borrow_mut().push(id.clone());
            }
        }
    });
    (ids, subscription)
}

/// `link` publishes to a WebSocket peer in `room` and hears the peer back.
async fn chats_with_a_websocket_peer(link: &Link, room: &str) {
    let peer = Link::new(server_url(), fast_options());
    let _peer_lease = peer.join(room);
    until("the peer connected", PATIENCE, || peer.status().state == State::Open).await;
    let (acks, _acks) = collect_acks(link);
    let (peer_heard, _peer_heard) = collect_messages(&peer);
    let (heard, _heard) = collect_messages(link);
    let sent = link.publish(room, json!("over HTTP"));
    until("acked and heard", PATIENCE, || {
        acks.borrow().iter().any(|(id, _)| *id == sent) && peer_heard.borrow().contains(&sent)
    })
    .await;
    let back = peer.publish(room, json!("over a WebSocket"));
    until("heard back", PATIENCE, || heard.borrow().contains(&back)).await;
}

#[wasm_bindgen_test]
async fn where_websockets_fail_the_link_falls_back_to_sse() {
    // A path that never upgrades stands for a proxy that strips `Upgrade`; the HTTP
    // transports live at the same server's `/rt`.
    let blocked = server_url().replace("/ws", "/no-websocket-here");
    let link = Link::new(&blocked, fast_options());
    let room = unique("sse");
    let _lease = link.join(&room);
    until("connected", PATIENCE, || link.status().state == State::Open).await;
    assert_eq!(link.status().transport, Transport::Sse, "after two failed WebSocket attempts");
    chats_with_a_websocket_peer(&link, &room).await;
}

#[wasm_bindgen_test]
async fn a_link_forced_onto_long_polling_chats() {
    let link =
        Link::new(server_url(), LinkOptions { transport: Some(Transport::LongPoll), ..fast_options() });
    let room = unique("poll");
    let _lease = link.join(&room);
    until("connected", PATIENCE, || link.status().state == State::Open).await;
    assert_eq!(link.status().transport, Transport::LongPoll);
    chats_with_a_websocket_peer(&link, &room).await;
}

/// Makes the test server refuse WebSocket upgrades (403), or let them through again.
async fn set_websockets(allowed: bool) {
    let base = server_url().replacen("ws://", "http://", 1).replace("/ws", "/api/test/websockets");
    let url = format!("{base}?allow={allowed}");
    let response = gloo_net::http::Request::post(&url).send().await.expect("the test endpoint answers");
    assert_eq!(response.status(), 200);
}

#[wasm_bindgen_test]
async fn a_link_on_a_fallback_moves_back_to_the_websocket_when_it_works_again() {
    set_websockets(false).await;
    let link = Link::new(server_url(), fast_options());
    let room = unique("upgrade");
    let _lease = link.join(&room);
    until("on SSE", PATIENCE, || {
        link.status().state == State::Open && link.status().transport == Transport::Sse
    })
    .await;
    let (acks, _acks) = collect_acks(&link);
    let before = link.publish(&room, json!("on SSE"));
    until("acked on SSE", PATIENCE, || acks.borrow().iter().any(|(id, _)| *id == before)).await;

    set_websockets(true).await;
    // The probe (200 ms here) finds the WebSocket working, and the link moves.
    until("back on a WebSocket", PATIENCE, || {
        link.status().state == State::Open && link.status().transport == Transport::WebSocket
    })
    .await;
    let after = link.publish(&room, json!("on a WebSocket"));
    until("acked on the WebSocket", PATIENCE, || acks.borrow().iter().any(|(id, _)| *id == after)).await;
    let seqs: Vec<u64> = acks.borrow().iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, [1, 2], "each message stored once, across the move");
}

#[wasm_bindgen_test]
async fn an_address_that_can_never_work_fails_at_once_in_words() {
    let link = Link::new("http://127.0.0.1:1/ws", fast_options());
    until("failed", PATIENCE, || matches!(link.status().state, State::Failed { .. })).await;
    let State::Failed { reason } = link.status().state else { unreachable!() };
    assert!(reason.starts_with("Invalid server address"), "{reason}");
    assert!(!link.has_socket(), "and nothing is retried");
}

/// Dev tokens from the test server for a user called `name`, counting the calls; the
/// calls numbered in `failing` (from 1) fail instead, as a backend that is down would.
fn dev_tokens(name: &str, failing: &'static [u32]) -> (TokenProvider, Rc<std::cell::Cell<u32>>) {
    let calls = Rc::new(std::cell::Cell::new(0u32));
    let dev = TokenProvider::dev(server_url(), &format!("{name}-{}", unique("u")));
    let provider = {
        let calls = calls.clone();
        TokenProvider::new(move || {
            calls.set(calls.get() + 1);
            let fails = failing.contains(&calls.get());
            let token = dev.fetch();
            async move {
                match fails {
                    true => Err("the backend is down".into()),
                    false => token.await,
                }
            }
        })
    };
    (provider, calls)
}

/// Counts welcomes and `refreshed` frames on `link`.
fn count_welcomes_and_renewals(link: &Link) -> (Rc<RefCell<(usize, usize)>>, tether_yew::link::Subscription) {
    let seen = Rc::new(RefCell::new((0usize, 0usize)));
    let subscription = {
        let seen = seen.clone();
        link.subscribe(move |events, _| {
            for event in events.iter() {
                match event {
                    Event::Welcome { .. } => seen.borrow_mut().0 += 1,
                    Event::Frame(ServerFrame::Refreshed { .. }) => seen.borrow_mut().1 += 1,
                    _ => {}
                }
            }
        })
    };
    (seen, subscription)
}

#[wasm_bindgen_test]
async fn a_token_provider_renews_the_connection_in_place() {
    // The test server's dev tokens live 4 s and it warns 2 s ahead (see `cargo xtask test`).
    let (provider, calls) = dev_tokens("Renewer", &[]);
    let link = Link::new(server_url(), LinkOptions { token: Some(provider), ..fast_options() });
    let (seen, _subscription) = count_welcomes_and_renewals(&link);
    until("connected with a token", PATIENCE, || link.status().state == State::Open).await;
    assert!(link.status().user.is_some_and(|u| u.name.starts_with("Renewer")));
    until("renewed twice", PATIENCE, || seen.borrow().1 >= 2).await;
    assert_eq!(seen.borrow().0, 1, "renewed in place: one welcome, no reconnect");
    assert!(calls.get() >= 3, "asked before connecting and before each expiry");
    assert_eq!(link.status().state, State::Open);
}

#[wasm_bindgen_test]
async fn a_failing_token_provider_is_asked_again_with_backoff() {
    let (provider, calls) = dev_tokens("Patient", &[1, 2]);
    let started = js_sys::Date::now();
    let link = Link::new(server_url(), LinkOptions { token: Some(provider), ..fast_options() });
    until("the first failure is shown", PATIENCE, || {
        link.status().last_error.is_some_and(|e| e.contains("the backend is down"))
    })
    .await;
    assert!(!link.has_socket(), "no socket without a token");
    until("connected", PATIENCE, || link.status().state == State::Open).await;
    assert_eq!(calls.get(), 3);
    // Asked again after 1 s, then after 2 s more (less a few ms of clock rounding).
    let waited = js_sys::Date::now() - started;
    assert!(waited >= 2_900.0, "asked again too soon: {waited} ms");
}

#[wasm_bindgen_test]
async fn a_connection_closed_for_an_expired_token_comes_back_with_a_new_one() {
    // The renewal (call 2, on the warning) and its retry (call 3) fail, so the 4 s token
    // expires and the server closes with 4403; the link then asks again and reconnects.
    let (provider, calls) = dev_tokens("Lapsed", &[2, 3]);
    let link = Link::new(server_url(), LinkOptions { token: Some(provider), ..fast_options() });
    let (seen, _subscription) = count_welcomes_and_renewals(&link);
    let states = Rc::new(RefCell::new(Vec::new()));
    let _states = {
        let states = states.clone();
        link.subscribe(move |events, _| {
            let changes =
                events.iter().filter_map(|e| if let Event::State(s) = e { Some(s.clone()) } else { None });
            states.borrow_mut().extend(changes);
        })
    };
    until("connected", PATIENCE, || link.status().state == State::Open).await;
    let user = link.status().user.expect("welcomed").id;
    until("welcomed again", PATIENCE, || seen.borrow().0 == 2).await;
    let states = states.borrow();
    assert!(
        states.iter().any(|s| matches!(s, State::Reconnecting { .. })),
        "closed, then retried: {states:?}"
    );
    assert!(!states.iter().any(|s| matches!(s, State::Failed { .. })), "never gave up: {states:?}");
    assert_eq!(link.status().user.map(|u| u.id), Some(user), "the same user again");
    assert!(calls.get() >= 4);
}

#[wasm_bindgen_test]
async fn with_two_endpoints_a_stopped_server_is_left_for_the_other() {
    let [first, second] = failover_urls();
    let options = LinkOptions {
        endpoints: vec![second.clone()],
        transport: Some(Transport::WebSocket),
        ..fast_options()
    };
    let link = Link::new(&first, options);
    let room = unique("failover");
    let _lease = link.join(&room);
    until("connected", PATIENCE, || link.status().state == State::Open).await;
    let used = link.status().endpoint;
    assert!(used == first || used == second, "{used}");
    let (acks, _acks) = collect_acks(&link);
    let before = link.publish(&room, json!("before the stop"));
    until("acked", PATIENCE, || acks.borrow().iter().any(|(id, _)| *id == before)).await;

    let stop = used.replacen("ws://", "http://", 1).replace("/ws", "/api/test/stop");
    let response = gloo_net::http::Request::post(&stop).send().await.expect("the test endpoint answers");
    assert_eq!(response.status(), 200);
    until("open on the other endpoint", PATIENCE, || {
        let status = link.status();
        status.state == State::Open && status.endpoint != used
    })
    .await;
    let after = link.publish(&room, json!("after the stop"));
    until("acked there", PATIENCE, || acks.borrow().iter().any(|(id, _)| *id == after)).await;
}

/// What a [`CursorProbe`] shares with its test: the setter, the others' values, and
/// the presence it saw.
#[derive(Default)]
struct Cursors {
    set: Option<Callback<Option<serde_json::Value>>>,
    others: Vec<(String, serde_json::Value)>,
    present: usize,
    /// `state` frames this member's link received.
    frames: Rc<std::cell::Cell<usize>>,
}

#[derive(Clone)]
struct SharedCursors(Rc<RefCell<Cursors>>);

impl PartialEq for SharedCursors {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Properties, PartialEq)]
struct CursorProps {
    room: AttrValue,
    seen: SharedCursors,
}

#[component]
fn CursorProbe(props: &CursorProps) -> Html {
    let room = use_room(props.room.clone());
    let cursors = use_shared_state(&room, "cursor", 10);
    {
        let frames = props.seen.0.borrow().frames.clone();
        use_effect_with(room.link.clone(), move |link| {
            let subscription = link.subscribe(move |events, _| {
                let states =
                    events.iter().filter(|e| matches!(e, Event::Frame(ServerFrame::State { .. }))).count();
                frames.set(frames.get() + states);
            });
            move || drop(subscription)
        });
    }
    let mut seen = props.seen.0.borrow_mut();
    seen.set = Some(cursors.set.clone());
    // Any JSON reads as the Json channel's state.
    seen.others = cursors
        .others
        .iter()
        .filter_map(|(id, (_, value))| Some((id.clone(), value.clone().ok()?)))
        .collect();
    seen.present = room.presence().count;
    html! {}
}

#[wasm_bindgen_test]
async fn shared_state_is_throttled_with_the_last_value_always_sent_and_ends_when_its_member_leaves() {
    let room = AttrValue::from(unique("cursors"));
    let render = |seen: &SharedCursors| {
        let root = mount_point();
        let children = html! { <CursorProbe room={room.clone()} seen={seen.clone()} /> };
        let app = yew::Renderer::<Harness>::with_root_and_props(
            root.clone(),
            yew::props!(HarnessProps { options: fast_options(), children }),
        )
        .render();
        (app, root)
    };
    let (ada, bob) = (SharedCursors(Rc::default()), SharedCursors(Rc::default()));
    let (ada_app, ada_root) = render(&ada);
    let (bob_app, bob_root) = render(&bob);
    until("both present", PATIENCE, || ada.0.borrow().present == 2 && bob.0.borrow().present == 2).await;

    // Twenty moves at once: the first goes now, the last when the 100 ms are over.
    let set = ada.0.borrow().set.clone().expect("a setter");
    for x in 0..20 {
        set.emit(Some(json!({"x": x})));
    }
    until("the last position", PATIENCE, || bob.0.borrow().others.iter().any(|(_, v)| v["x"] == 19)).await;
    assert_eq!(bob.0.borrow().others.len(), 1, "one other member");
    assert_eq!(bob.0.borrow().frames.get(), 2, "throttled: the first move and the last");
    assert!(ada.0.borrow().others.is_empty(), "nobody else moved");

    // Ada leaves: her cursor goes with her.
    unmount(ada_app, ada_root).await;
    until("Ada's cursor gone", PATIENCE, || bob.0.borrow().others.is_empty()).await;
    unmount(bob_app, bob_root).await;
}

#[cfg(feature = "msgpack")]
#[wasm_bindgen_test]
async fn a_link_speaking_msgpack_chats_with_a_json_peer() {
    let options = LinkOptions { encoding: tether_shared::Encoding::MessagePack, ..fast_options() };
    let link = Link::new(server_url(), options);
    let room = unique("packed");
    let _lease = link.join(&room);
    // Connected at all means the server named tether.v1.msgpack back (a browser drops a
    // socket whose offered subprotocol is not answered); hearing the peer means the
    // binary frames were read.
    until("connected", PATIENCE, || link.status().state == State::Open).await;
    assert_eq!(link.status().transport, Transport::WebSocket);
    chats_with_a_websocket_peer(&link, &room).await;
    assert!(link.status().stats.bytes_received > 0);
}

/// A channel with a shape of its own. The test server registers no channels, so it
/// stores and relays any JSON: what a typed hook makes of bodies and values written by
/// an untyped sender (a client built with another version of the contract) is what
/// these tests see.
struct Notes;

impl tether_shared::channel::Channel for Notes {
    const ROOMS: &'static str = "*";
    type Message = Note;
    type State = Spot;
    type Meta = ();
    type Error = Reason;
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Note {
    text: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Spot {
    x: i32,
}

/// What a [`NotesProbe`] shares with its test.
#[derive(Default)]
struct NotesSeen {
    room: Option<UseChannel<Notes>>,
    messages: Vec<Message<Notes>>,
    members: Vec<tether_shared::typed::Member<Notes>>,
    spots: Vec<(String, Result<Spot, Undecodable>)>,
    set: Option<Callback<Option<Spot>>>,
}

#[derive(Clone, Default)]
struct SharedNotes(Rc<RefCell<NotesSeen>>);

impl PartialEq for SharedNotes {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Properties, PartialEq)]
struct NotesProps {
    room: AttrValue,
    seen: SharedNotes,
}

/// Follows a room as the [`Notes`] channel's, with its shared state under `spot`.
#[component]
fn NotesProbe(props: &NotesProps) -> Html {
    let room = use_channel::<Notes>(props.room.clone());
    let spots = use_shared_state(&room, "spot", 10);
    let mut seen = props.seen.0.borrow_mut();
    seen.messages = room.view.messages.iter().map(|m| Message::clone(m)).collect();
    seen.members = room.presence().members;
    seen.spots = spots.others.iter().map(|(id, (_, spot))| (id.clone(), spot.clone())).collect();
    seen.set = Some(spots.set.clone());
    seen.room = Some(room);
    html! {}
}

/// A [`NotesProbe`] and an untyped peer in one room.
struct TypedBesideUntyped {
    seen: SharedNotes,
    peer: Link,
    _lease: tether_yew::link::RoomLease,
    app: yew::AppHandle<Harness>,
    root: web_sys::Element,
}

/// Renders a [`NotesProbe`] in `room`, and an untyped peer joined there, once both
/// see each other.
async fn typed_beside_untyped(room: &str) -> TypedBesideUntyped {
    let seen = SharedNotes::default();
    let root = mount_point();
    let children = html! { <NotesProbe room={AttrValue::from(room.to_owned())} seen={seen.clone()} /> };
    let app = yew::Renderer::<Harness>::with_root_and_props(
        root.clone(),
        yew::props!(HarnessProps { options: named("Typed"), children }),
    )
    .render();
    let peer = Link::new(server_url(), named("Untyped"));
    let lease = peer.join(room);
    until("both in the room", PATIENCE, || seen.0.borrow().members.len() == 2).await;
    TypedBesideUntyped { seen, peer, _lease: lease, app, root }
}

#[wasm_bindgen_test]
async fn a_typed_hook_reads_each_body_as_the_channels_message_or_as_undecodable_never_dropping_one() {
    let room = unique("typed");
    let TypedBesideUntyped { seen, peer, _lease, app, root } = typed_beside_untyped(&room).await;
    assert!(
        seen.0.borrow().members.iter().all(|m| m.meta == Ok(())),
        "members without metadata have the default"
    );

    let typo = peer.publish(&room, json!({"txt": "a typo"}));
    let good = peer.publish(&room, json!({"text": "hello"}));
    until("both messages", PATIENCE, || seen.0.borrow().messages.len() == 2).await;
    {
        let seen = seen.0.borrow();
        let (first, second) = (&seen.messages[0], &seen.messages[1]);
        assert_eq!((first.id.as_str(), second.id.as_str()), (typo.as_str(), good.as_str()), "in order");
        let Err(undecodable) = &first.body else { panic!("a body of another shape: {:?}", first.body) };
        assert_eq!(undecodable.raw, json!({"txt": "a typo"}), "with its raw value");
        assert!(undecodable.error.contains("missing field `text`"), "{}", undecodable.error);
        assert_eq!(second.body, Ok(Note { text: "hello".into() }));
        assert!(!first.mine && !second.mine);
    }

    // What the hook sends goes as the channel's type encodes it.
    let (heard, _heard) = collect_bodies(&peer);
    let room_handle = seen.0.borrow().room.clone().expect("rendered");
    let sent = room_handle.send(Note { text: "typed".into() });
    until("the peer hears it", PATIENCE, || heard.borrow().iter().any(|(id, _)| *id == sent)).await;
    let body = heard.borrow().iter().find(|(id, _)| *id == sent).map(|(_, body)| body.clone());
    assert_eq!(body, Some(json!({"text": "typed"})));
    until("ours is stored", PATIENCE, || {
        let seen = seen.0.borrow();
        seen.messages
            .iter()
            .any(|m| m.id == sent && m.mine && m.seq.is_some() && m.delivery != Delivery::Sending)
    })
    .await;
    drop(room_handle);
    unmount(app, root).await;
}

/// Ids and bodies of messages, in the order received.
type Bodies = Rc<RefCell<Vec<(String, serde_json::Value)>>>;

/// Ids and bodies of the messages `link` receives, in order.
fn collect_bodies(link: &Link) -> (Bodies, tether_yew::link::Subscription) {
    let bodies = Rc::new(RefCell::new(Vec::new()));
    let sink = bodies.clone();
    let subscription = link.subscribe(move |events, _| {
        for event in events.iter() {
            if let Event::Frame(ServerFrame::Message { id, body, .. }) = event {
                sink.borrow_mut().push((id.clone(), body.clone()));
            }
        }
    });
    (bodies, subscription)
}

#[wasm_bindgen_test]
async fn typed_shared_state_reads_values_of_another_shape_as_undecodable_and_null_as_cleared() {
    let room = unique("spots");
    let TypedBesideUntyped { seen, peer, _lease, app, root } = typed_beside_untyped(&room).await;
    let peer_id = peer.status().user.expect("welcomed").id;
    let spot_of_peer = |seen: &SharedNotes| {
        seen.0.borrow().spots.iter().find(|(id, _)| *id == peer_id).map(|(_, spot)| spot.clone())
    };
    let state = |value| Input::State { room: room.clone(), key: "spot".into(), value };

    peer.handle(state(json!({"x": "left"})));
    until("a value of another shape", PATIENCE, || matches!(spot_of_peer(&seen), Some(Err(_)))).await;
    let Some(Err(undecodable)) = spot_of_peer(&seen) else { unreachable!() };
    assert_eq!(undecodable.raw, json!({"x": "left"}), "with its raw value");

    peer.handle(state(json!({"x": 3})));
    until("a Spot", PATIENCE, || spot_of_peer(&seen) == Some(Ok(Spot { x: 3 }))).await;
    peer.handle(state(serde_json::Value::Null));
    until("cleared", PATIENCE, || spot_of_peer(&seen).is_none()).await;

    // And the hook's own values go as the channel's type encodes them; None as null.
    let values = Rc::new(RefCell::new(Vec::new()));
    let _values = {
        let values = values.clone();
        peer.subscribe(move |events, _| {
            for event in events.iter() {
                if let Event::Frame(ServerFrame::State { value, .. }) = event {
                    values.borrow_mut().push(value.clone());
                }
            }
        })
    };
    let set = seen.0.borrow().set.clone().expect("a setter");
    set.emit(Some(Spot { x: 7 }));
    until("the peer sees it", PATIENCE, || values.borrow().contains(&json!({"x": 7}))).await;
    set.emit(None);
    until("the peer sees it cleared", PATIENCE, || values.borrow().contains(&serde_json::Value::Null)).await;
    unmount(app, root).await;
}

#[wasm_bindgen_test]
async fn a_refused_join_is_a_typed_failure_on_the_hook() {
    let seen = SharedNotes::default();
    let root = mount_point();
    let children = html! { <NotesProbe room="not a room!" seen={seen.clone()} /> };
    let app = yew::Renderer::<Harness>::with_root_and_props(
        root.clone(),
        yew::props!(HarnessProps { options: fast_options(), children }),
    )
    .render();
    let failure = || seen.0.borrow().room.as_ref().and_then(UseChannel::join_failure);
    until("the refusal", PATIENCE, || failure().is_some()).await;
    let Some(Failure::Failed { code, .. }) = failure() else { panic!("the server's check: {:?}", failure()) };
    assert_eq!(code, "invalid_room");
    unmount(app, root).await;
}
