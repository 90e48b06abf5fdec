//! The poker table against the demo's own server (`tether-demo-server`), whose poker
//! channel checks every move: the page's moves are requests, its cards, votes and
//! average come from what the server answers and publishes, and a refused move shows
//! the table's typed refusal.
#![cfg(target_arch = "wasm32")]

// The browser-test helpers of the library, shared rather than copied.
#[path = "../../frontend/tests/support/mod.rs"]
mod support;

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::demo_server_url;
use support::*;
use tether_demo::poker::{PokerTable, TableAction, TableView};
use tether_demo_chat::poker::{MAX_TOPIC, PokerError, Seat, Table, Vote, Voter};
use tether_shared::ConnectionConfig;
use tether_shared::channel::ChannelError;
use tether_yew::{LinkOptions, WebSocketProvider};
use wasm_bindgen_test::*;
use yew::prelude::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Only a guard against hanging: every wait below ends on an event long before this.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Properties, PartialEq)]
struct TableProps {
    room: AttrValue,
}

#[component]
fn Harness(props: &TableProps) -> Html {
    let options = LinkOptions {
        connection: ConnectionConfig { name: Some("Dealer".into()), ..ConnectionConfig::default() },
        persist: false,
        ..LinkOptions::default()
    };
    html! {
        <WebSocketProvider url={AttrValue::from(demo_server_url())} {options}>
            <PokerTable room={props.room.clone()} />
        </WebSocketProvider>
    }
}

fn count(root: &web_sys::Element, selector: &str) -> u32 {
    root.query_selector_all(selector).map_or(0, |found| found.length())
}

#[wasm_bindgen_test]
async fn the_page_plays_a_round_and_shows_the_tables_refusals() {
    let root = mount_point();
    let room = format!("poker:page-{}", (js_sys::Math::random() * 1e9) as u64);
    let app = yew::Renderer::<Harness>::with_root_and_props(root.clone(), yew::props!(TableProps { room }))
        .render();
    until("sat down", PATIENCE, || text_of(&root, ".poker-topic").is_some()).await;
    assert_eq!(text_of(&root, ".no-votes").as_deref(), Some("No votes yet"));

    // Revealing an empty table is the server's to refuse, with the table's own words.
    click(&root, ".reveal");
    until("the refusal", PATIENCE, || text_of(&root, ".poker-refusal").is_some()).await;
    assert_eq!(text_of(&root, ".poker-refusal"), Some(PokerError::NoVotes.message()));

    // A vote: our card stands out to us, and the table shows it face down.
    click(&root, ".card[data-card='8']");
    until("the vote on the table", PATIENCE, || count(&root, ".vote .face.down") == 1).await;
    assert_eq!(text_of(&root, ".card.chosen").as_deref(), Some("8"));
    assert_eq!(text_of(&root, ".vote .voter").as_deref(), Some("Dealer"));
    assert_eq!(text_of(&root, ".poker-refusal"), None, "an accepted move clears the refusal");

    click(&root, ".reveal");
    until("face up", PATIENCE, || count(&root, ".vote .face.up") == 1).await;
    assert_eq!(text_of(&root, ".vote .face.up").as_deref(), Some("8"));
    assert_eq!(text_of(&root, ".average").as_deref(), Some("Average: 8"));

    // A topic too long is refused; a good one starts a round with an empty table.
    type_into(&root, ".topic-input", &"x".repeat(MAX_TOPIC + 1));
    click(&root, ".new-round button[type=submit]");
    until("the refusal", PATIENCE, || text_of(&root, ".poker-refusal").is_some()).await;
    assert_eq!(text_of(&root, ".poker-refusal"), Some(PokerError::TopicTooLong { max: MAX_TOPIC }.message()));
    type_into(&root, ".topic-input", "login page");
    click(&root, ".new-round button[type=submit]");
    until("the new round", PATIENCE, || {
        text_of(&root, ".poker-topic").as_deref() == Some("Round 1: login page")
    })
    .await;
    assert_eq!((count(&root, ".vote"), count(&root, ".card.chosen")), (0, 0));
    assert_eq!(text_of(&root, ".average"), None);
    app.destroy();
    yew::scheduler::flush().await;
    root.remove();
}

fn table(version: u64, round: u64, cards: &[Option<&str>]) -> Table {
    let votes = cards
        .iter()
        .enumerate()
        .map(|(i, card)| Vote {
            voter: Voter { id: format!("u{i}"), name: format!("U{i}") },
            card: card.map(str::to_owned),
        })
        .collect();
    Table { version, round, votes, revealed: cards.iter().any(Option::is_some), ..Table::default() }
}

#[wasm_bindgen_test]
fn the_view_keeps_the_newest_table_whatever_order_events_arrive_in() {
    let view = Rc::new(TableView::default());
    let view = view.reduce(TableAction::Heard(table(3, 1, &[Some("5")])));
    let view = view.reduce(TableAction::Heard(table(2, 1, &[None])));
    assert_eq!(view.table.as_ref().map(|t| t.version), Some(3), "an older event is left out");

    // Our answer ties with the event of our own move and tells our card.
    let seat = Seat { table: table(4, 2, &[None]), mine: Some("13".into()) };
    let view = view.reduce(TableAction::Heard(seat.table.clone()));
    let view = view.reduce(TableAction::Answered(seat));
    assert_eq!(view.mine(), Some("13"));
    // A late answer to an older move does not tell our card over a newer one.
    let view =
        view.reduce(TableAction::Answered(Seat { table: table(3, 2, &[None]), mine: Some("1".into()) }));
    assert_eq!((view.mine(), view.table.as_ref().map(|t| t.version)), (Some("13"), Some(4)));
    // Another round: our card was last round's.
    let view = view.reduce(TableAction::Heard(table(5, 3, &[])));
    assert_eq!(view.mine(), None);

    // After a rejoin the next answer is taken whatever its version (a server restarted
    // without history numbers from scratch), and newer events after it.
    let view = view.reduce(TableAction::Rejoined);
    let view = view.reduce(TableAction::Answered(Seat { table: table(1, 1, &[]), mine: None }));
    assert_eq!(view.table.as_ref().map(|t| t.version), Some(1));
    let view = view.reduce(TableAction::Heard(table(2, 1, &[None])));
    assert_eq!(view.table.as_ref().map(|t| t.version), Some(2));
}
