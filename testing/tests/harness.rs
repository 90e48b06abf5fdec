//! The harness against a real Tether with a channel and its handlers: what an app's own
//! tests look like with it.

use serde::{Deserialize, Serialize};
use tether_server::{Config, Handlers, Server};
use tether_shared::channel::{Channel, Reason, Requests};
use tether_shared::typed::{Failure, RequestError};
use tether_testing::TestServer;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Card {
    title: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Seat {
    first: bool,
}

struct Board;

impl Channel for Board {
    const ROOMS: &'static str = "board:*";
    type Message = Card;
    type State = ();
    type Meta = Seat;
    type Error = Reason;
}

impl Requests for Board {
    type Request = String;
    type Reply = usize;
}

async fn board_server() -> TestServer {
    let board = Handlers::<Board>::new()
        .on_join(|call| async move {
            if call.room == "board:locked" {
                return Err(Reason::new("locked", "this board is locked"));
            }
            let present = call.api.presence(&call.room, None, Some(1)).await;
            Ok(Seat { first: present.map_or(true, |page| page.count == 0) })
        })
        .on_publish(|_call, card: Card| async move {
            match card.title.trim().is_empty() {
                true => Err(Reason::new("untitled", "a card needs a title")),
                false => Ok(Card { title: card.title.trim().to_owned() }),
            }
        })
        .on_request(|_call, question: String| async move {
            match question.is_empty() {
                true => Err(Reason::new("empty", "ask something")),
                false => Ok(question.len()),
            }
        });
    TestServer::start(Server::new(Config::for_tests()).channel(board)).await
}

#[tokio::test]
async fn an_apps_handlers_driven_through_real_members() {
    let server = board_server().await;
    let mut ada = server.join::<Board>("Ada", "board:1").await.expect("Ada joins");
    let mut bob = server.join::<Board>("Bob", "board:1").await.expect("Bob joins");
    // Metadata from the join handler, as presence shows it.
    let ada_seat = bob.members_at_join().iter().find(|m| m.user.id == ada.user().id).map(|m| m.meta.clone());
    assert_eq!(ada_seat, Some(Ok(Seat { first: true })));

    // A publish, as the handler rewrote it, reaches both; a refused one reaches nobody.
    assert_eq!(ada.publish(&Card { title: "  ship it ".into() }).await, Ok(1));
    assert_eq!(bob.next_message().await.body, Ok(Card { title: "ship it".into() }));
    assert_eq!(ada.next_message().await.body, Ok(Card { title: "ship it".into() }), "her own echo");
    let refused = ada.publish(&Card { title: " ".into() }).await;
    assert_eq!(refused, Err(Failure::Refused(Reason::new("untitled", "a card needs a title"))));
    bob.nothing_more().await;

    // Requests.
    assert_eq!(bob.request(&"how long?".to_owned()).await, Ok(9));
    assert_eq!(
        bob.request(&String::new()).await,
        Err(RequestError::Refused(Reason::new("empty", "ask something")))
    );

    // A refused join.
    let locked = server.join::<Board>("Eve", "board:locked").await.err();
    assert_eq!(locked, Some(Failure::Refused(Reason::new("locked", "this board is locked"))));
    server.stop().await;
}
