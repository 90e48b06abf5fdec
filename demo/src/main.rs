//! The Tether demo app, bundled from `index.html` (by `cargo xtask dist`, or `trunk
//! serve` while working on it) and served by `tether-server`: the chat and the echo
//! page. The poker table is a bundle of its own at `/poker` (`poker_app.rs`), which the
//! Poker tab links to, so the chat does not load its code.

use tether_demo::EchoPage;
use tether_demo::chat::{ChatRoom, RoomPicker};
use tether_demo::shell::{Shell, page_link, query, tab_link};
use yew::prelude::*;

#[derive(Clone, Copy, PartialEq)]
enum Page {
    Chat,
    Echo,
}

impl Page {
    /// The page `?page=` names; the chat when it names none.
    fn named(name: Option<&str>) -> Page {
        match name {
            Some("echo") => Page::Echo,
            _ => Page::Chat,
        }
    }
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
    // `?page=echo` opens on the echo page rather than the chat.
    let page = use_state(|| Page::named(query("page").as_deref()));
    let tab = |target: Page, label: &'static str| {
        let page = page.clone();
        let current = *page == target;
        html! {
            <button class={classes!("tab", current.then_some("current"))} aria-current={current.then_some("page")}
                onclick={Callback::from(move |_| page.set(target))}>{ label }</button>
        }
    };
    let tabs = html! {
        <>
            { tab(Page::Chat, "Chat") }
            { tab(Page::Echo, "Echo") }
            { tab_link("Poker", page_link("/poker", None), false) }
        </>
    };
    let shown = *page;
    let content = Callback::from(move |url: AttrValue| match shown {
        Page::Chat => html! { <Chat /> },
        Page::Echo => html! { <EchoPage {url} /> },
    });
    html! { <Shell {tabs} page={content} /> }
}

fn main() {
    // The poker table was once a page of this app (`/?page=poker`): such links go on to
    // its own bundle.
    if query("page").as_deref() == Some("poker") {
        if let Some(window) = web_sys::window() {
            let _ = window.location().replace(&page_link("/poker", None));
        }
        return;
    }
    yew::Renderer::<App>::new().render();
}
