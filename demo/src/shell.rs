//! What every page of the demo app has around it, whichever bundle it is in (the chat's
//! at `/`, the poker table's at `/poker`): the name picker, the connection to the
//! server, and the header with the tabs, the connection indicator and the queue.

use gloo_storage::{LocalStorage, Storage};
use tether_shared::ConnectionConfig;
use tether_yew::{
    ConnectionIndicator, LinkOptions, OfflineBanner, QueueStatus, TokenProvider, WebSocketProvider,
    default_socket_url,
};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::ConnectionDetails;

/// Where the picked name is kept: one origin, so every page of the demo shares it.
const NAME_KEY: &str = "tether.name";

/// The query string's parameters that a link to another page of the demo carries over:
/// who the user is (`name`), which servers (`endpoints`), which poker table (`table`).
const CARRIED: [&str; 3] = ["name", "endpoints", "table"];

/// A parameter of the page's query string.
pub fn query(name: &str) -> Option<String> {
    web_sys::window()
        .and_then(|w| w.location().search().ok())
        .and_then(|q| web_sys::UrlSearchParams::new_with_str(&q).ok())
        .and_then(|p| p.get(name))
}

/// The address of another page of the demo (`/`, `/poker`), with `page=` (the chat
/// app's pages) when given and the parameters this page's query string carries over,
/// so that `?name=Ada` stays Ada's on the next page.
pub fn page_link(path: &str, page: Option<&str>) -> String {
    let mut pairs: Vec<(&str, String)> = page.map(|page| ("page", page.to_owned())).into_iter().collect();
    pairs.extend(CARRIED.iter().filter_map(|name| query(name).map(|value| (*name, value))));
    let params = web_sys::UrlSearchParams::new().expect("URLSearchParams");
    for (name, value) in &pairs {
        params.append(name, value);
    }
    let search = String::from(params.to_string());
    if search.is_empty() { path.to_owned() } else { format!("{path}?{search}") }
}

/// A tab of the header that opens another page of the demo, which loads its own bundle:
/// a plain link. `current` marks the page shown.
pub fn tab_link(label: &'static str, href: String, current: bool) -> Html {
    html! {
        <a class={classes!("tab", current.then_some("current"))} aria-current={current.then_some("page")}
            {href}>{ label }</a>
    }
}

#[derive(Properties, PartialEq)]
struct NamePickerProps {
    on_pick: Callback<String>,
    start: AttrValue,
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
            <button type="submit">{ props.start.clone() }</button>
        </form>
    }
}

/// What a page of the demo puts in the [`Shell`].
#[derive(Properties, PartialEq)]
pub struct ShellProps {
    /// The header's tabs, after the user's name.
    pub tabs: Html,
    /// The page under the header, given the URL of the server's socket it talks to.
    pub page: Callback<AttrValue, Html>,
    /// What the name picker's button says.
    #[prop_or(AttrValue::Static("Start chatting"))]
    pub start: AttrValue,
}

/// A page of the demo app: asks for a name until it has one, then connects to the
/// server as that user and shows the header, the connection's state and `page`.
#[component]
pub fn Shell(props: &ShellProps) -> Html {
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
        return html! {
            <main class="app">
                <header class="app-header"><h1>{ "Tether" }</h1></header>
                <NamePicker {on_pick} start={props.start.clone()} />
            </main>
        };
    };
    let options = LinkOptions {
        connection: ConnectionConfig { name: Some(current_name.clone()), ..ConnectionConfig::default() },
        token: (*tokens).clone(),
        endpoints: endpoints[1..].to_vec(),
        ..LinkOptions::default()
    };
    html! {
        <WebSocketProvider url={url.clone()} {options}>
            <main class="app">
                <header class="app-header">
                    <h1>{ "Tether" }</h1>
                    <span class="me">{ current_name }</span>
                    { props.tabs.clone() }
                    <ConnectionIndicator />
                    <QueueStatus />
                </header>
                <OfflineBanner />
                <ConnectionDetails />
                { props.page.emit(url) }
            </main>
        </WebSocketProvider>
    }
}
