//! The Tether demo app, bundled from `index.html` (by `cargo xtask dist`, or `trunk
//! serve` while working on it) and served by `tether-server`.

use gloo_storage::{LocalStorage, Storage};
use tether_demo::chat::{ChatRoom, RoomPicker};
use tether_demo::{ConnectionDetails, EchoPage, PokerTable};
use tether_shared::ConnectionConfig;
use tether_yew::{
    ConnectionIndicator, LinkOptions, OfflineBanner, QueueStatus, TokenProvider, WebSocketProvider,
    default_socket_url,
};
use web_sys::HtmlInputElement;
use yew::prelude::*;

const NAME_KEY: &str = "tether.name";

#[derive(Clone, Copy, PartialEq)]
enum Page {
    Chat,
    Echo,
    Poker,
}

impl Page {
    /// The page `?page=` names; the chat when it names none.
    fn named(name: Option<&str>) -> Page {
        match name {
            Some("echo") => Page::Echo,
            Some("poker") => Page::Poker,
            _ => Page::Chat,
        }
    }
}

#[component]
fn NamePicker(props: &NamePickerProps) -> Html {
    let input = use_node_ref();
    let onsubmit = {
        let input = input.clone();
        let on_pick = props.on_pick.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if let Some(field) = input.cast::<HtmlInputElement>() {
                let name = field.value().trim().to_owned();
                if !name.is_empty() {
                    on_pick.emit(name);
                }
            }
        })
    };
    html! {
        <form class="name-picker" {onsubmit}>
            <label for="name">{ "Pick a display name" }</label>
            <input id="name" ref={input} maxlength="32" autofocus=true />
            <button type="submit">{ "Start chatting" }</button>
        </form>
    }
}

#[derive(Properties, PartialEq)]
struct NamePickerProps {
    on_pick: Callback<String>,
}

#[component]
fn Chat() -> Html {
    let rooms = use_state(|| vec![AttrValue::from("general")]);
    let current = use_state(|| AttrValue::from("general"));
    let on_select = {
        let rooms = rooms.clone();
        let current = current.clone();
        Callback::from(move |room: AttrValue| {
            if !rooms.contains(&room) {
                let mut next = (*rooms).clone();
                next.push(room.clone());
                rooms.set(next);
            }
            current.set(room);
        })
    };
    html! {
        <>
            <RoomPicker rooms={(*rooms).clone()} current={(*current).clone()} {on_select} />
            <ChatRoom key={current.to_string()} room={(*current).clone()} />
        </>
    }
}

#[component]
fn App() -> Html {
    // `?name=Ada` picks the name up front (handy for demos and two-window testing).
    let name = use_state(|| query("name").or_else(|| LocalStorage::get::<String>(NAME_KEY).ok()));
    // `?endpoints=ws://a/ws,ws://b/ws`: several servers of one cluster instead of this
    // page's own, each client starting at a random one and failing over to the others.
    let endpoints = use_state(|| {
        let listed = query("endpoints").unwrap_or_default();
        let mut endpoints: Vec<String> =
            listed.split(',').filter(|u| !u.is_empty()).map(str::to_owned).collect();
        if endpoints.is_empty() {
            endpoints.push(default_socket_url());
        }
        endpoints
    });
    let url = AttrValue::from(endpoints[0].clone());
    // `?page=poker` opens on another page than the chat, and `?table=sprint` picks the
    // poker table (`poker:sprint`; `poker:team` when it names none).
    let page = use_state(|| Page::named(query("page").as_deref()));
    let table = use_memo((), |()| {
        let name = query("table").filter(|name| !name.is_empty()).unwrap_or_else(|| "team".into());
        AttrValue::from(format!("poker:{name}"))
    });
    // Short-lived dev tokens (the server's `--dev-token-ttl`), renewed in place before
    // they expire: the path an app with its own token backend takes. Made once per name:
    // a new provider would be new options, and new options a new set of connections.
    let tokens = use_memo((*name).clone(), |name| {
        // Dev tokens come from the server that served the page, valid on every node.
        name.as_deref().map(|name| TokenProvider::dev(&default_socket_url(), name))
    });
    let on_pick = {
        let name = name.clone();
        Callback::from(move |picked: String| {
            let _ = LocalStorage::set(NAME_KEY, &picked);
            name.set(Some(picked));
        })
    };
    let Some(current_name) = (*name).clone() else {
        return html! { <main class="app"><header class="app-header"><h1>{ "Tether" }</h1></header><NamePicker {on_pick} /></main> };
    };
    let options = LinkOptions {
        connection: ConnectionConfig { name: Some(current_name.clone()), ..ConnectionConfig::default() },
        token: (*tokens).clone(),
        endpoints: endpoints[1..].to_vec(),
        ..LinkOptions::default()
    };
    let tab = |target: Page, label: &'static str| {
        let page = page.clone();
        let current = *page == target;
        html! {
            <button class={classes!("tab", current.then_some("current"))} aria-current={current.then_some("page")}
                onclick={Callback::from(move |_| page.set(target))}>{ label }</button>
        }
    };
    html! {
        <WebSocketProvider url={url.clone()} {options}>
            <main class="app">
                <header class="app-header">
                    <h1>{ "Tether" }</h1>
                    <span class="me">{ current_name }</span>
                    { tab(Page::Chat, "Chat") }
                    { tab(Page::Echo, "Echo") }
                    { tab(Page::Poker, "Poker") }
                    <ConnectionIndicator />
                    <QueueStatus />
                </header>
                <OfflineBanner />
                <ConnectionDetails />
                { match *page {
                    Page::Chat => html! { <Chat /> },
                    Page::Echo => html! { <EchoPage url={url.clone()} /> },
                    Page::Poker => html! { <PokerTable room={(*table).clone()} /> },
                } }
            </main>
        </WebSocketProvider>
    }
}

/// A parameter of the page's query string.
fn query(name: &str) -> Option<String> {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|q| web_sys::UrlSearchParams::new_with_str(&q).ok())
        .and_then(|p| p.get(name))
}

fn main() {
    yew::Renderer::<App>::new().render();
}
