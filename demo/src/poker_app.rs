//! The planning-poker table at `/poker`: a bundle of its own (`poker.html`, built by
//! `cargo xtask dist` into `dist/poker/`), so that the chat app does not load its code.
//! The same shell as the chat's (`tether_demo::shell`): the name picker, the connection,
//! the header, whose Chat and Echo tabs lead back to the app at `/`.

use tether_demo::PokerTable;
use tether_demo::shell::{Shell, page_link, query, tab_link};
use yew::prelude::*;

#[component]
fn App() -> Html {
    // `?table=sprint` picks the table (`poker:sprint`; `poker:team` when it names none).
    let table = use_memo((), |()| {
        let name = query("table").filter(|name| !name.is_empty()).unwrap_or_else(|| "team".into());
        AttrValue::from(format!("poker:{name}"))
    });
    let tabs = html! {
        <>
            { tab_link("Chat", page_link("/", None), false) }
            { tab_link("Echo", page_link("/", Some("echo")), false) }
            { tab_link("Poker", page_link("/poker", None), true) }
        </>
    };
    let room = (*table).clone();
    let content = Callback::from(move |_url: AttrValue| html! { <PokerTable room={room.clone()} /> });
    html! { <Shell {tabs} page={content} start="Sit down" /> }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
