//! The admin dashboard at `/admin`: the server's numbers live, its rooms, and actions on
//! them, through the server API (`API.md`) with the API key.
//!
//! It reads `/api/v1/stats` every second (as Centrifugo's admin page polls its API): the
//! server keeps one sample a second for the last five minutes, so the charts are full as
//! soon as the page opens, and a dashboard costs the server one small request a second
//! rather than a share of every room's traffic.

mod chart;
mod client;
mod room;

use gloo_storage::{SessionStorage, Storage};
use serde_json::Value;
use yew::prelude::*;

use chart::{Chart, Line};
pub use client::{ApiClient, CallError};
use room::RoomPanel;

/// What a polled call last gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Polled {
    /// The latest answer.
    pub value: Option<Value>,
    /// The latest failure, cleared by the next answer.
    pub error: Option<CallError>,
}

impl Reducible for Polled {
    type Action = Result<Value, CallError>;

    /// An answer replaces the value; a failure keeps the last value and says why.
    fn reduce(self: std::rc::Rc<Self>, answer: Self::Action) -> std::rc::Rc<Self> {
        std::rc::Rc::new(match answer {
            Ok(value) => Polled { value: Some(value), error: None },
            Err(error) => Polled { value: self.value.clone(), error: Some(error) },
        })
    }
}

/// `GET /api/v1/<path>` now and every `every_ms`, while the component lives.
#[hook]
pub fn use_polling(client: ApiClient, path: String, every_ms: u32) -> Polled {
    let polled = use_reducer(Polled::default);
    {
        let polled = polled.clone();
        use_effect_with((client, path), move |(client, path)| {
            let fetch = {
                let (client, path) = (client.clone(), path.clone());
                move || {
                    let (client, path, polled) = (client.clone(), path.clone(), polled.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        polled.dispatch(client.get(&path).await);
                    });
                }
            };
            fetch();
            let interval = gloo_timers::callback::Interval::new(every_ms, fetch);
            move || drop(interval)
        });
    }
    (*polled).clone()
}

/// The dashboard page: a sign-in with the key, then the numbers.
#[component]
pub fn Dashboard() -> Html {
    let key = use_state(|| SessionStorage::get::<String>(client::KEY_STORAGE).ok());
    let refusal = use_state(|| None::<String>);
    let on_key = {
        let (key, refusal) = (key.clone(), refusal.clone());
        Callback::from(move |change: KeyChange| match change {
            KeyChange::SignIn(value) => {
                let _ = SessionStorage::set(client::KEY_STORAGE, &value);
                refusal.set(None);
                key.set(Some(value));
            }
            KeyChange::SignOut(why) => {
                SessionStorage::delete(client::KEY_STORAGE);
                refusal.set(why);
                key.set(None);
            }
        })
    };
    html! {
        <main class="app dashboard">
            <header class="app-header"><h1>{ "Tether dashboard" }</h1></header>
            { match (*key).clone() {
                None => html! { <SignIn on_key={on_key.clone()} refusal={(*refusal).clone()} /> },
                Some(value) => html! { <Overview client={ApiClient::new(value)} {on_key} /> },
            } }
        </main>
    }
}

/// A key given, or the session ended (by the person, or by a refusal, with why).
enum KeyChange {
    SignIn(String),
    SignOut(Option<String>),
}

#[derive(Properties, PartialEq)]
struct SignInProps {
    on_key: Callback<KeyChange>,
    refusal: Option<String>,
}

#[component]
fn SignIn(props: &SignInProps) -> Html {
    let field = use_node_ref();
    let onsubmit = {
        let (field, on_key) = (field.clone(), props.on_key.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if let Some(input) = field.cast::<web_sys::HtmlInputElement>() {
                let value = input.value().trim().to_owned();
                if !value.is_empty() {
                    on_key.emit(KeyChange::SignIn(value));
                }
            }
        })
    };
    html! {
        <form class="sign-in" {onsubmit}>
            <label for="api-key">{ "API key (the server's --api-key)" }</label>
            <input id="api-key" type="password" ref={field} autocomplete="off" autofocus=true />
            <button type="submit">{ "Open the dashboard" }</button>
            if let Some(refusal) = props.refusal.clone() { <p class="refusal" role="alert">{ refusal }</p> }
        </form>
    }
}

#[derive(Properties, PartialEq)]
struct OverviewProps {
    client: ApiClient,
    on_key: Callback<KeyChange>,
}

#[component]
fn Overview(props: &OverviewProps) -> Html {
    let stats = use_polling(props.client.clone(), "stats".into(), 1_000);
    let rooms = use_polling(props.client.clone(), "rooms".into(), 1_000);
    let selected = use_state(|| None::<String>);
    // A refused key ends the session: back to the sign-in, saying why.
    {
        let on_key = props.on_key.clone();
        use_effect_with(stats.error.clone(), move |error| {
            if let Some(CallError::SignIn(why)) = error {
                on_key.emit(KeyChange::SignOut(Some(why.clone())));
            }
        });
    }
    let Some(stats) = stats.value.clone() else {
        let waiting = stats.error.map_or("Loading…".to_owned(), |error| error.to_string());
        return html! { <p class="loading">{ waiting }</p> };
    };
    let series = stats["series"].as_array().cloned().unwrap_or_default();
    let line = |label: &'static str, field: &str| Line {
        label,
        values: series.iter().map(|sample| sample[field].as_f64()).collect(),
    };
    let tile = |label: &'static str, value: &Value| {
        html! { <div class="tile" data-tile={label}><span class="value">{ value.to_string() }</span><span class="label">{ label }</span></div> }
    };
    let rejections = stats["totals"]["rejections"].as_object().cloned().unwrap_or_default();
    let room_rows = rooms.value.as_ref().and_then(|r| r["rooms"].as_array().cloned()).unwrap_or_default();
    let sign_out = {
        let on_key = props.on_key.clone();
        Callback::from(move |_| on_key.emit(KeyChange::SignOut(None)))
    };
    html! {
        <>
            <section class="tiles">
                { tile("connections", &stats["connections"]) }
                { tile("users", &stats["users"]) }
                { tile("rooms", &stats["rooms"]) }
                { tile("acks", &stats["totals"]["acks"]) }
                { tile("resumes", &stats["totals"]["resumes"]) }
                { tile("slow-consumer drops", &stats["totals"]["slow_consumer_drops"]) }
                <button class="sign-out" onclick={sign_out}>{ "Sign out" }</button>
            </section>
            <section class="charts">
                <Chart title="Connections and rooms" unit="" lines={vec![line("connections", "connections"), line("rooms", "rooms")]} />
                <Chart title="Frames per second" unit="/s" lines={vec![line("in", "frames_in"), line("out", "frames_out")]} />
                <Chart title="Acks per second" unit="/s" lines={vec![line("acks", "acks")]} />
                <Chart title="Rejections, resumes and drops per second" unit="/s"
                    lines={vec![line("rejections", "rejections"), line("resumes", "resumes"), line("slow drops", "slow_consumer_drops")]} />
                <Chart title="Commit latency" unit="ms" lines={vec![line("p50", "commit_p50_ms"), line("p99", "commit_p99_ms")]} />
            </section>
            if let Some(nodes) = stats["nodes"].as_array().filter(|nodes| !nodes.is_empty()) {
                <section class="nodes-table">
                    <h2>{ "Nodes" }</h2>
                    <table>
                        <thead><tr>
                            <th>{ "node" }</th><th>{ "connections" }</th><th>{ "users" }</th><th>{ "rooms" }</th>
                            <th>{ "frames in/s" }</th><th>{ "frames out/s" }</th><th>{ "acks/s" }</th><th>{ "commit p99" }</th>
                        </tr></thead>
                        <tbody>
                            { for nodes.iter().map(|node| {
                                let sample = &node["sample"];
                                let this = node["node"] == stats["node"];
                                let rate = |field: &str| format!("{:.1}", sample[field].as_f64().unwrap_or(0.0));
                                let p99 = sample["commit_p99_ms"].as_f64().map_or("–".to_owned(), |ms| format!("{ms:.2} ms"));
                                html! {
                                    <tr class={classes!("node-row", this.then_some("current"))} data-node={node["node"].as_str().unwrap_or_default().to_owned()}>
                                        <td>{ node["node"].as_str().unwrap_or_default() }{ if this { " (this one)" } else { "" } }</td>
                                        <td>{ sample["connections"].to_string() }</td><td>{ sample["users"].to_string() }</td>
                                        <td>{ sample["rooms"].to_string() }</td><td>{ rate("frames_in") }</td>
                                        <td>{ rate("frames_out") }</td><td>{ rate("acks") }</td><td>{ p99 }</td>
                                    </tr>
                                }
                            }) }
                        </tbody>
                    </table>
                </section>
            }
            <section class="rejections">
                <h2>{ "Rejections by code, since start" }</h2>
                <ul>{ for rejections.iter().map(|(code, count)| html! { <li data-code={code.clone()}>{ format!("{code}: {count}") }</li> }) }</ul>
            </section>
            <section class="rooms-table">
                <h2>{ "Rooms" }</h2>
                <table>
                    <thead><tr><th>{ "room" }</th><th>{ "members" }</th></tr></thead>
                    <tbody>
                        { for room_rows.iter().map(|row| {
                            let name = row["room"].as_str().unwrap_or_default().to_owned();
                            let current = selected.as_deref() == Some(name.as_str());
                            let onclick = {
                                let (selected, name) = (selected.clone(), name.clone());
                                Callback::from(move |_| selected.set(Some(name.clone())))
                            };
                            html! {
                                <tr class={classes!("room-row", current.then_some("current"))} data-room={name.clone()} {onclick}>
                                    <td>{ name.clone() }</td><td class="members">{ row["members"].to_string() }</td>
                                </tr>
                            }
                        }) }
                    </tbody>
                </table>
                if room_rows.is_empty() { <p class="empty">{ "No room has members right now." }</p> }
            </section>
            if let Some(room) = (*selected).clone() {
                <RoomPanel key={room.clone()} client={props.client.clone()} room={AttrValue::from(room.clone())} />
            }
        </>
    }
}
