//! The demo chat: rooms, messages with delivery ticks, presence and typing.

use std::rc::Rc;

use serde_json::json;
use tether_shared::PresenceMode;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use tether_yew::room::{ChatMessage, Delivery, use_room, use_typing};
use tether_yew::use_shared_state;

/// Messages rendered at once; older ones stay in memory up to the room's cap.
const RENDERED: usize = 200;

/// Properties of [`ChatRoom`].
#[derive(Properties, PartialEq)]
pub struct ChatRoomProps {
    /// Room name.
    pub room: AttrValue,
}

fn text_of(message: &ChatMessage) -> String {
    match message.body.get("text").and_then(|t| t.as_str()) {
        Some(text) => text.to_owned(),
        None => message.body.to_string(),
    }
}

fn ticks(delivery: &Delivery) -> (&'static str, &'static str) {
    match delivery {
        Delivery::Sending => ("tick sending", "○ sending"),
        Delivery::Sent => ("tick sent", "✓ sent"),
        Delivery::Delivered => ("tick delivered", "✓✓ delivered"),
        Delivery::Read => ("tick read", "✓✓ read"),
        Delivery::Failed(_) => ("tick failed", "! failed"),
    }
}

/// One room: presence, messages, typing, composer.
#[component]
pub fn ChatRoom(props: &ChatRoomProps) -> Html {
    let room = use_room(props.room.clone());
    let input = use_node_ref();
    let view = room.view.clone();

    // Everything shown while the page is visible counts as read.
    {
        let room = room.clone();
        use_effect_with(view.last_seq, move |last| {
            let visible = web_sys::window()
                .and_then(|w| w.document())
                .is_some_and(|d| d.visibility_state() == web_sys::VisibilityState::Visible);
            if *last > 0 && visible {
                room.mark_read(*last);
            }
        });
    }

    let onsubmit = {
        let room = room.clone();
        let input = input.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(field) = input.cast::<HtmlInputElement>() else { return };
            let text = field.value();
            if !text.trim().is_empty() {
                room.send(json!({ "text": text }));
                field.set_value("");
            }
        })
    };
    let oninput = {
        let room = room.clone();
        Callback::from(move |_: InputEvent| room.typing())
    };
    // One callback for every message, kept across renders so that unchanged messages
    // compare equal and are not rendered again.
    let on_retry = {
        let room = room.clone();
        use_callback(props.room.clone(), move |body: serde_json::Value, _| {
            room.send(body);
        })
    };
    let typing: Vec<String> = use_typing(&room).into_iter().map(|user| user.name).collect();
    // Live cursors over the conversation: where each member's pointer is, as fractions
    // of the area, sent at most 20 times a second.
    let cursors = use_shared_state(&room, "cursor", 20);
    // Measured on the area itself: Yew delegates events, so their current target is the
    // app's root, not this element.
    let area = use_node_ref();
    let onpointermove = {
        let (set, area) = (cursors.set.clone(), area.clone());
        Callback::from(move |event: PointerEvent| {
            let Some(area) = area.cast::<web_sys::Element>() else { return };
            let bounds = area.get_bounding_client_rect();
            if bounds.width() > 0.0 && bounds.height() > 0.0 {
                let x = (f64::from(event.client_x()) - bounds.left()) / bounds.width();
                let y = (f64::from(event.client_y()) - bounds.top()) / bounds.height();
                set.emit(json!({ "x": (x * 1000.0).round() / 1000.0, "y": (y * 1000.0).round() / 1000.0 }));
            }
        })
    };
    let onpointerleave = {
        let set = cursors.set.clone();
        Callback::from(move |_: PointerEvent| set.emit(serde_json::Value::Null))
    };
    let presence = room.presence();
    let start = view.messages.len().saturating_sub(RENDERED);

    html! {
        <div class="room">
            <aside class="presence" aria-label="People here">
                <h3>{ format!("Here ({})", presence.count.max(presence.members.len())) }</h3>
                <ul>
                    { for presence.members.iter().map(|m| html! {
                        <li class="member" key={m.id.clone()}><span class="avatar" style={format!("background:{}", m.color)}></span>{ &m.name }</li>
                    }) }
                </ul>
                if presence.mode == PresenceMode::Count && presence.count > presence.members.len() {
                    <p class="more-members">{ format!("and {} more", presence.count - presence.members.len()) }</p>
                }
            </aside>
            <section class="conversation" ref={area} {onpointermove} {onpointerleave}>
                { for cursors.others.iter().filter_map(|(id, (user, at))| {
                    let (x, y) = (at["x"].as_f64()?, at["y"].as_f64()?);
                    let style = format!("left:{:.1}%;top:{:.1}%;color:{}", x * 100.0, y * 100.0, user.color);
                    Some(html! {
                        <div class="cursor" key={id.clone()} data-user={user.name.clone()} {style} aria-hidden="true">
                            <span class="cursor-pointer"></span><span class="cursor-name">{ &user.name }</span>
                        </div>
                    })
                }) }
                if view.replay_complete == Some(false) {
                    <p class="gap" role="alert">{ "Some older messages are no longer available." }</p>
                }
                <ol class="messages" aria-live="polite">
                    { for view.messages[start..].iter().map(|m| html! {
                        <MessageItem key={m.id.as_str()} message={m.clone()} on_retry={on_retry.clone()} />
                    }) }
                </ol>
                <p class="typing" aria-live="polite">
                    { match typing.len() {
                        0 => String::new(),
                        1 => format!("{} is typing…", typing[0]),
                        _ => format!("{} are typing…", typing.join(", ")),
                    } }
                </p>
                <form class="composer" {onsubmit}>
                    <input ref={input} {oninput} class="composer-input" placeholder={format!("Message #{}", props.room)} aria-label="Message" />
                    <button type="submit">{ "Send" }</button>
                </form>
            </section>
        </div>
    }
}

/// Properties of [`MessageItem`].
#[derive(Properties)]
pub struct MessageItemProps {
    /// The message; the same `Rc` until the message changes.
    pub message: Rc<ChatMessage>,
    /// Sends a failed message's body again.
    pub on_retry: Callback<serde_json::Value>,
}

impl PartialEq for MessageItemProps {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.message, &other.message) && self.on_retry == other.on_retry
    }
}

/// One message with its sender and, for ours, the delivery ticks. A component of its
/// own so that a new message renders one item, not the whole list.
#[component]
pub fn MessageItem(props: &MessageItemProps) -> Html {
    let m = &props.message;
    let (class, label) = ticks(&m.delivery);
    let failed = if let Delivery::Failed(why) = &m.delivery { Some(why.clone()) } else { None };
    let retry = {
        let (on_retry, body) = (props.on_retry.clone(), m.body.clone());
        Callback::from(move |_| on_retry.emit(body.clone()))
    };
    html! {
        <li class={classes!("message", m.mine.then_some("mine"))} data-id={m.id.clone()}>
            <span class="from" style={format!("color:{}", m.from.color)}>{ &m.from.name }</span>
            <span class="text">{ text_of(m) }</span>
            if m.mine { <span class={class}>{ label }</span> }
            if let Some(why) = failed {
                <span class="why">{ why }</span>
                <button class="retry" onclick={retry}>{ "Retry" }</button>
            }
        </li>
    }
}

/// Properties of [`RoomPicker`].
#[derive(Properties, PartialEq)]
pub struct RoomPickerProps {
    /// Rooms the person has open.
    pub rooms: Vec<AttrValue>,
    /// The one shown.
    pub current: AttrValue,
    /// Switch to (or create) a room.
    pub on_select: Callback<AttrValue>,
}

/// Room tabs plus a field to join or create a room.
#[component]
pub fn RoomPicker(props: &RoomPickerProps) -> Html {
    let input = use_node_ref();
    let onsubmit = {
        let input = input.clone();
        let on_select = props.on_select.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(field) = input.cast::<HtmlInputElement>() else { return };
            let name = field.value().trim().to_owned();
            if tether_shared::frame::valid_room_name(&name) {
                on_select.emit(AttrValue::from(name));
                field.set_value("");
            }
        })
    };
    html! {
        <nav class="rooms" aria-label="Rooms">
            { for props.rooms.iter().map(|room| {
                let on_select = props.on_select.clone();
                let name = room.clone();
                let current = *room == props.current;
                html! {
                    <button class={classes!("room-tab", current.then_some("current"))} aria-current={current.then_some("page")}
                        onclick={Callback::from(move |_| on_select.emit(name.clone()))}>{ format!("#{room}") }</button>
                }
            }) }
            <form class="join" {onsubmit}>
                <input ref={input} placeholder="join or create a room" aria-label="Room name" />
            </form>
        </nav>
    }
}
