//! The poker table's rules through a real Tether: typed members move by request, and
//! see only what the server publishes after a move it accepted.

use tether_demo_chat::poker::{
    Event, Happened, MAX_TOPIC, Move, Poker, PokerError, Seat, Table, Vote, Voter,
};
use tether_demo_chat::{Chat, Post};
use tether_demo_server::{chat, poker};
use tether_server::api::calls::PublishRequest;
use tether_server::{Config, Server};
use tether_shared::channel::encode;
use tether_shared::typed::{Failure, RequestError};
use tether_testing::{Member, TestServer};

async fn server() -> TestServer {
    TestServer::start(Server::new(Config::for_tests()).channel(chat::handlers()).channel(poker::handlers()))
        .await
}

fn vote(card: &str) -> Move {
    Move::Vote { card: card.into() }
}

fn voter(member: &Member<Poker>) -> Voter {
    Voter { id: member.user().id.clone(), name: member.user().name.clone() }
}

/// The next event at the table, with who it came from.
async fn next_event(member: &mut Member<Poker>) -> (String, Event) {
    let received = member.next_message().await;
    (received.from.name, received.body.expect("an event of the table"))
}

#[tokio::test]
async fn votes_are_face_down_until_one_reveals_them_to_everyone() {
    let server = server().await;
    let mut ada = server.join::<Poker>("Ada", "poker:sprint").await.expect("Ada sits down");
    let mut bob = server.join::<Poker>("Bob", "poker:sprint").await.expect("Bob sits down");

    let seat = ada.request(&Move::NewRound { topic: "login page".into() }).await.expect("a new round");
    assert_eq!((seat.table.round, seat.table.topic.as_str()), (1, "login page"));
    for member in [&mut ada, &mut bob] {
        let (from, event) = next_event(member).await;
        assert_eq!((from.as_str(), event.what), ("Ada", Happened::NewRound));
    }

    // Ada's card is hers alone until the reveal: Bob hears that she voted, not what.
    let seat = ada.request(&vote("5")).await.expect("a card of the deck");
    assert_eq!(seat.mine.as_deref(), Some("5"));
    let (from, event) = next_event(&mut bob).await;
    assert_eq!((from.as_str(), &event.what), ("Ada", &Happened::Voted));
    assert_eq!(event.table.votes, [Vote { voter: voter(&ada), card: None }]);
    assert_eq!(next_event(&mut ada).await.1, event, "Ada hears the same event");

    let seat = bob.request(&vote("8")).await.expect("a card of the deck");
    assert_eq!(seat.mine.as_deref(), Some("8"));
    assert!(seat.table.votes.iter().all(|vote| vote.card.is_none()), "face down: {:?}", seat.table);
    for member in [&mut ada, &mut bob] {
        assert_eq!(next_event(member).await.1.what, Happened::Voted);
    }

    let seat = bob.request(&Move::Reveal).await.expect("there are votes");
    let expected = vec![
        Vote { voter: voter(&ada), card: Some("5".into()) },
        Vote { voter: voter(&bob), card: Some("8".into()) },
    ];
    assert_eq!(seat.table.votes, expected);
    for member in [&mut ada, &mut bob] {
        let (from, event) = next_event(member).await;
        assert_eq!((from.as_str(), event.what), ("Bob", Happened::Revealed));
        assert_eq!(event.table, seat.table, "both see the same table");
        assert_eq!(event.table.average_tenths(), Some(65));
    }
    ada.nothing_more().await;
    bob.nothing_more().await;
    server.stop().await;
}

#[tokio::test]
async fn a_refused_move_is_the_tables_typed_error_and_nobody_hears_of_it() {
    let server = server().await;
    let mut ada = server.join::<Poker>("Ada", "poker:refusals").await.expect("Ada sits down");
    let mut bob = server.join::<Poker>("Bob", "poker:refusals").await.expect("Bob sits down");
    let refused = |error| Err(RequestError::Refused(error));

    assert_eq!(ada.request(&Move::Reveal).await, refused(PokerError::NoVotes));
    assert_eq!(ada.request(&vote("4")).await, refused(PokerError::NotACard { card: "4".into() }));
    let long = "é".repeat(MAX_TOPIC + 1);
    assert_eq!(
        ada.request(&Move::NewRound { topic: long }).await,
        refused(PokerError::TopicTooLong { max: MAX_TOPIC })
    );
    bob.nothing_more().await;

    ada.request(&vote("?")).await.expect("a card of the deck");
    ada.request(&Move::Reveal).await.expect("there is a vote");
    for _ in 0..2 {
        next_event(&mut bob).await;
    }
    assert_eq!(bob.request(&vote("3")).await, refused(PokerError::AlreadyRevealed));
    assert_eq!(bob.request(&Move::Reveal).await, refused(PokerError::AlreadyRevealed));
    bob.nothing_more().await;
    let seat = bob.request(&Move::Look).await.expect("a look is always answered");
    assert_eq!(seat.table.votes, [Vote { voter: voter(&ada), card: Some("?".into()) }], "unchanged");
    assert_eq!(seat.table.average_tenths(), None, "a question mark is no number");
    server.stop().await;
}

#[tokio::test]
async fn members_cannot_publish_to_the_table_the_server_alone_does() {
    let server = server().await;
    let mut ada = server.join::<Poker>("Ada", "poker:forged").await.expect("Ada sits down");
    let mut bob = server.join::<Poker>("Bob", "poker:forged").await.expect("Bob sits down");
    // A forged reveal, cards and all: refused with the table's error, stored nowhere.
    let table = Table {
        version: 99,
        revealed: true,
        votes: vec![Vote { voter: voter(&bob), card: Some("21".into()) }],
        ..Table::default()
    };
    let forged = Event { what: Happened::Revealed, table };
    assert_eq!(ada.publish(&forged).await, Err(Failure::Refused(PokerError::MovesOnly)));
    bob.nothing_more().await;

    // The server's own publishes run no publish handler, so its moves are heard.
    ada.request(&vote("3")).await.expect("a card of the deck");
    assert_eq!(next_event(&mut bob).await.1.what, Happened::Voted);
    server.stop().await;
}

#[tokio::test]
async fn a_late_member_looks_at_the_table_as_it_is() {
    let server = server().await;
    let mut ada = server.join::<Poker>("Ada", "poker:late").await.expect("Ada sits down");
    ada.request(&Move::NewRound { topic: "search".into() }).await.expect("a new round");
    ada.request(&vote("13")).await.expect("a card of the deck");

    let mut cid = server.join::<Poker>("Cid", "poker:late").await.expect("Cid sits down");
    let Seat { table, mine } = cid.request(&Move::Look).await.expect("a look is always answered");
    assert_eq!((table.topic.as_str(), table.version, mine), ("search", 2, None));
    assert_eq!(table.votes, [Vote { voter: voter(&ada), card: None }], "Ada's card face down");
    assert_eq!(ada.request(&Move::Look).await.expect("answered").mine.as_deref(), Some("13"));
    server.stop().await;
}

#[tokio::test]
async fn a_table_resumes_from_its_last_event_after_a_restart() {
    let server = server().await;
    // What a server before a restart published, revealed, as a durable store keeps it.
    let voter = Voter { id: "ada".into(), name: "Ada".into() };
    let table = Table {
        version: 7,
        round: 2,
        topic: "billing".into(),
        votes: vec![Vote { voter, card: Some("8".into()) }],
        revealed: true,
    };
    let event = Event { what: Happened::Revealed, table: table.clone() };
    let request = PublishRequest { room: "poker:resumed".into(), body: encode(&event), id: None, from: None };
    server.api().publish(request).await.expect("the server publishes");

    let mut bob = server.join::<Poker>("Bob", "poker:resumed").await.expect("Bob sits down");
    assert_eq!(bob.request(&Move::Look).await, Ok(Seat { table, mine: None }));
    let seat = bob.request(&Move::NewRound { topic: "next".into() }).await.expect("a new round");
    assert_eq!((seat.table.version, seat.table.round), (8, 3), "numbered on from before");
    server.stop().await;
}

#[tokio::test]
async fn the_tables_rooms_are_the_tables_and_every_other_room_the_chats() {
    let server = server().await;
    let mut lost = server.join::<Chat>("Ada", "poker:chatty").await.expect("joined");
    let refused = lost.publish(&Post { text: "hello".into() }).await;
    assert!(
        matches!(refused, Err(Failure::Failed { ref code, .. }) if code == "invalid_body"),
        "{refused:?}"
    );
    let mut chat = server.join::<Chat>("Ada", "pokerface").await.expect("joined");
    assert_eq!(chat.publish(&Post { text: "hello".into() }).await, Ok(1));
    server.stop().await;
}
