//! The demo chat: rooms, messages with delivery ticks, presence and typing, on the
//! [`Chat`] channel of the demo's contract crate (`tether-demo-chat`), which the demo's
//! server enforces: posts, pointers and badges are Rust types on both ends.

use std::rc::Rc;

use tether_demo_chat::{Badge, Chat, ChatError, Pointer, Post};
use tether_shared::PresenceMode;
use tether_shared::channel::ChannelError;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use tether_yew::room::{Delivery, Message, use_channel, use_typing};
use tether_yew::use_shared_state;

/// Messages rendered at once; older ones stay in memory up to the room's cap.
const RENDERED: usize = 200;

/// Properties of [`ChatRoom`].
#[derive(Properties, PartialEq)]
pub struct ChatRoomProps {
    /// Room name.
    pub room: AttrValue,
}

fn ticks(delivery: &Delivery<ChatError>) -> (&'static str, &'static str) {
    match delivery {
        Delivery::Sending => ("tick sending", "○ sending"),
        Delivery::Sent => ("tick sent", "✓ sent"),
        Delivery::Delivered => ("tick delivered", "✓✓ delivered"),
        Delivery::Read => ("tick read", "✓✓ read"),
        Delivery::Refused(_) => ("tick failed", "! refused"),
        Delivery::Failed(_) => ("tick failed", "! failed"),
    }
}

/// A pointer position as a fraction, to a thousandth: finer than a pixel on any
/// screen, and short on the wire.
fn fraction(at: f64) -> f32 {
    ((at * 1000.0).round() / 1000.0) as f32
}

/// A fraction as a CSS percentage to a tenth (`0.123` is `12.3%`), written with
/// integers: formatting a float with a precision would bring the float formatter's
/// exact mode (5 KB) into the bundle for this alone.
fn percent(fraction: f32) -> String {
    let tenths = (f64::from(fraction) * 1000.0).round() as i64;
    let sign = if tenths < 0 { "-" } else { "" };
    let tenths = tenths.unsigned_abs();
    format!("{sign}{}.{}%", tenths / 10, tenths % 10)
}

/// One room: presence, messages, typing, composer.
#[component]
pub fn ChatRoom(props: &ChatRoomProps) -> Html {
    let room = use_channel::<Chat>(props.room.clone());
    let input = use_node_ref();
    let view = room.view.clone();

    // Everything shown while the page is visible counts as read.
    {
        let room = room.clone();
        use_effect_with(view.info.last_seq, move |last| {
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
            // Nothing to send in an empty field; everything else is the server's to
            // judge (a post too long comes back refused, with the reason on it).
            if !text.trim().is_empty() {
                room.send(Post { text });
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
        use_callback(props.room.clone(), move |post: Post, _| {
            room.send(post);
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
                set.emit(Some(Pointer { x: fraction(x), y: fraction(y) }));
            }
        })
    };
    let onpointerleave = {
        let set = cursors.set.clone();
        Callback::from(move |_: PointerEvent| set.emit(None))
    };
    let presence = room.presence();
    let start = view.messages.len().saturating_sub(RENDERED);

    html! {
        <div class="room">
            <aside class="presence" aria-label="People here">
                <h3>{ format!("Here ({})", presence.count.max(presence.members.len())) }</h3>
                <ul>
                    { for presence.members.iter().map(|m| html! {
                        <li class="member" key={m.user.id.clone()}>
                            <span class="avatar" style={format!("background:{}", m.user.color)}></span>{ &m.user.name }
                            if matches!(m.meta, Ok(Badge { host: true })) { <span class="badge" title="first here">{ "host" }</span> }
                        </li>
                    }) }
                </ul>
                if presence.mode == PresenceMode::Count && presence.count > presence.members.len() {
                    <p class="more-members">{ format!("and {} more", presence.count - presence.members.len()) }</p>
                }
            </aside>
            <section class="conversation" ref={area} {onpointermove} {onpointerleave}>
                { for cursors.others.iter().filter_map(|(id, (user, at))| {
                    // A pointer that does not read (another version of the contract) is not shown.
                    let at = at.as_ref().ok()?;
                    let style = format!("left:{};top:{};color:{}", percent(at.x), percent(at.y), user.color);
                    Some(html! {
                        <div class="cursor" key={id.clone()} data-user={user.name.clone()} {style} aria-hidden="true">
                            <span class="cursor-pointer"></span><span class="cursor-name">{ &user.name }</span>
                        </div>
                    })
                }) }
                if view.info.replay_complete == Some(false) {
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
    pub message: Rc<Message<Chat>>,
    /// Sends a failed message's post again.
    pub on_retry: Callback<Post>,
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
    // The server's refusal says what is wrong with the post itself, so sending it again
    // as it is would be refused again: only a failure on the way offers a retry.
    let (why, retry) = match (&m.delivery, &m.body) {
        (Delivery::Refused(error), _) => (Some(error.message()), None),
        (Delivery::Failed(why), Ok(post)) => {
            let (on_retry, post) = (props.on_retry.clone(), post.clone());
            (Some(why.clone()), Some(Callback::from(move |_| on_retry.emit(post.clone()))))
        }
        (Delivery::Failed(why), Err(_)) => (Some(why.clone()), None),
        _ => (None, None),
    };
    html! {
        <li class={classes!("message", m.mine.then_some("mine"))} data-id={m.id.clone()}>
            <span class="from" style={format!("color:{}", m.from.color)}>{ &m.from.name }</span>
            { match &m.body {
                Ok(post) => html! { <span class="text">{ &post.text }</span> },
                // Written by a client built with another version of the contract: shown,
                // not dropped, with serde's reason for whoever looks closer.
                Err(unreadable) => html! {
                    <span class="text unreadable" title={unreadable.to_string()}>{ "can't read this message" }</span>
                },
            } }
            if m.mine { <span class={class}>{ label }</span> }
            if let Some(why) = why { <span class="why">{ why }</span> }
            if let Some(retry) = retry { <button class="retry" onclick={retry}>{ "Retry" }</button> }
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
