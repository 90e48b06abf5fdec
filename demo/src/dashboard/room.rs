//! One room on the dashboard: who is there, the latest messages, and the actions on it
//! (post a message, disconnect a member).

use serde_json::{Value, json};
use yew::prelude::*;

use super::client::ApiClient;
use super::use_polling;

/// Properties of [`RoomPanel`].
#[derive(Properties, PartialEq)]
pub struct RoomPanelProps {
    /// The API, signed in.
    pub client: ApiClient,
    /// The room shown.
    pub room: AttrValue,
}

/// Presence and the latest messages of a room, refreshed every second.
#[component]
pub fn RoomPanel(props: &RoomPanelProps) -> Html {
    let room = props.room.to_string();
    let encoded = String::from(js_sys::encode_uri_component(&room));
    let presence = use_polling(props.client.clone(), format!("presence?room={encoded}&limit=100"), 1_000);
    let history = use_polling(props.client.clone(), format!("history?room={encoded}&limit=20"), 1_000);
    let notice = use_state(|| None::<String>);
    let draft = use_node_ref();

    let on_publish = {
        let (client, room, notice, draft) =
            (props.client.clone(), room.clone(), notice.clone(), draft.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(field) = draft.cast::<web_sys::HtmlInputElement>() else { return };
            let text = field.value().trim().to_owned();
            if text.is_empty() {
                return;
            }
            field.set_value("");
            let (client, room, notice) = (client.clone(), room.clone(), notice.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let body =
                    json!({"room": room, "body": {"text": text}, "from": {"id": "admin", "name": "Admin"}});
                notice.set(Some(match client.post("publish", &body).await {
                    Ok(published) => format!("Posted as #{}", published["seq"]),
                    Err(error) => format!("Not posted: {error}"),
                }));
            });
        })
    };
    let disconnect = |user: &Value| {
        let (client, notice) = (props.client.clone(), notice.clone());
        let (id, name) = (user["id"].as_str().unwrap_or_default().to_owned(), text(&user["name"]));
        Callback::from(move |_| {
            let question = format!("Disconnect {name} ({id})? Their app will not reconnect by itself.");
            let confirmed =
                web_sys::window().and_then(|w| w.confirm_with_message(&question).ok()).unwrap_or(false);
            if !confirmed {
                return;
            }
            let (client, notice, id, name) = (client.clone(), notice.clone(), id.clone(), name.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let body = json!({"user": id, "reconnect": false});
                notice.set(Some(match client.post("disconnect", &body).await {
                    Ok(done) => format!("Disconnected {name}: {} connection(s) closed", done["connections"]),
                    Err(error) => format!("Not disconnected: {error}"),
                }));
            });
        })
    };

    let (presence, history) = (presence.value, history.value);
    let members = presence.as_ref().and_then(|p| p["members"].as_array().cloned()).unwrap_or_default();
    let messages = history.as_ref().and_then(|h| h["messages"].as_array().cloned()).unwrap_or_default();
    html! {
        <section class="room-panel" data-room={room.clone()}>
            <h2>{ format!("#{room}") }</h2>
            <div class="room-columns">
                <div>
                    <h3>{ format!("Present ({})", presence.as_ref().map_or(0, |p| p["count"].as_u64().unwrap_or(0))) }</h3>
                    <ul class="presence-list">
                        { for members.iter().map(|user| html! {
                            <li class="present" data-user={text(&user["id"])}>
                                <span class="name" style={format!("color:{}", text(&user["color"]))}>{ text(&user["name"]) }</span>
                                <button class="disconnect" onclick={disconnect(user)}>{ "Disconnect" }</button>
                            </li>
                        }) }
                    </ul>
                </div>
                <div>
                    <h3>{ "Latest messages" }</h3>
                    <ol class="latest-messages">
                        { for messages.iter().rev().map(|message| html! {
                            <li class="logged" data-seq={message["seq"].to_string()}>
                                <span class="seq">{ format!("#{}", message["seq"]) }</span>
                                <span class="from">{ text(&message["from"]["name"]) }</span>
                                <span class="body">{ body_text(&message["body"]) }</span>
                            </li>
                        }) }
                    </ol>
                    <form class="post" onsubmit={on_publish}>
                        <input ref={draft} placeholder="Post to this room as Admin" maxlength="500" />
                        <button type="submit">{ "Post" }</button>
                    </form>
                </div>
            </div>
            if let Some(notice) = (*notice).clone() { <p class="notice" role="status">{ notice }</p> }
        </section>
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// A chat message's text, or the body as JSON.
fn body_text(body: &Value) -> String {
    body["text"].as_str().map_or_else(|| body.to_string(), str::to_owned)
}
