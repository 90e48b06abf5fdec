//! The native client's typed layer against a real server with a channel registered:
//! what it sends is the channel's type, the app's refusal comes back typed, and a body
//! of another shape (from a room the server does not check) arrives as `Undecodable`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_client::{Client, Room};
use tether_server::{Handlers, Server};
use tether_shared::channel::{Channel, Reason};
use tether_shared::typed::{ChannelEvent, Failure, RequestError};
use tether_shared::{ConnectionConfig, Input};

#[path = "../../server/tests/common/deadline.rs"]
mod deadline;

use deadline::{PATIENCE, within};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Note {
    text: String,
}

/// The server checks `notes:*` rooms; the client reads any room it names with these types.
struct Notes;

impl Channel for Notes {
    const ROOMS: &'static str = "notes:*";
    type Message = Note;
    type State = Note;
    type Meta = ();
    type Error = Reason;
}

async fn client(url: &str, name: &str) -> Client {
    let config = ConnectionConfig { name: Some(name.into()), ..ConnectionConfig::default() };
    let client = Client::spawn(url, config);
    client.input(Input::Connect);
    client
}

async fn next<T>(
    client: &mut Client,
    room: &Room<Notes>,
    wanted: impl Fn(ChannelEvent<Notes>) -> Option<T>,
) -> T {
    client
        .wait_for(PATIENCE, |event| room.read(event).and_then(&wanted))
        .await
        .expect("the event arrived in time")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Question {
    Length(String),
    Nothing,
}

impl tether_shared::Requests for Notes {
    type Request = Question;
    type Reply = usize;
}

#[tokio::test]
async fn a_typed_request_resolves_to_the_reply_or_the_apps_refusal() {
    let answering = Handlers::<Notes>::new().on_request(|_call, question: Question| async move {
        match question {
            Question::Length(text) => Ok(text.chars().count()),
            Question::Nothing => Err(Reason::new("empty", "ask something")),
        }
    });
    let server = within(
        "the server starting",
        Server::new(tether_server::Config::for_tests()).channel(answering).start(),
    )
    .await
    .unwrap();
    let url = format!("ws://{}/ws", server.addr());
    let notes = Room::<Notes>::new("notes:a");
    let mut ada = client(&url, "Ada").await;
    ada.input(notes.join());
    let length = within("the reply", ada.request(&notes, &Question::Length("héllo".into()))).await;
    assert_eq!(length, Ok(5));
    let refused = within("the refusal", ada.request_idempotent(&notes, &Question::Nothing)).await;
    assert_eq!(refused, Err(RequestError::Refused(Reason::new("empty", "ask something"))));
    // A room whose channel answers nothing.
    let plain = Room::<Notes>::new("plain");
    ada.input(plain.join());
    let unanswered = within("the plain room's answer", ada.request(&plain, &Question::Nothing)).await;
    assert!(
        matches!(unanswered, Err(RequestError::Failed { ref code, .. }) if code == "not_handled"),
        "{unanswered:?}"
    );
    drop(ada);
    within("the server stopping", server.stop()).await;
}

#[tokio::test]
async fn a_typed_client_sends_its_channels_type_and_reads_refusals_and_strange_bodies_typed() {
    let refusing = Handlers::<Notes>::new().on_publish(|_call, note: Note| async move {
        match note.text.is_empty() {
            true => Err(Reason::new("empty", "a note needs some text")),
            false => Ok(note),
        }
    });
    let mut config = tether_server::Config::for_tests();
    config.publish_rate = 1_000;
    config.publish_burst = 1_000;
    let server = within("the server starting", Server::new(config).channel(refusing).start()).await.unwrap();
    let url = format!("ws://{}/ws", server.addr());

    let notes = Room::<Notes>::new("notes:a");
    let mut ada = client(&url, "Ada").await;
    ada.input(notes.join());
    next(&mut ada, &notes, |event| matches!(event, ChannelEvent::Joined { .. }).then_some(())).await;
    let kept = ada.send(&notes, &Note { text: "kept".into() });
    let empty = ada.send(&notes, &Note { text: String::new() });
    let (seen, failure) = within("the echo and the refusal", async {
        let (mut seen, mut failure) = (None, None);
        while seen.is_none() || failure.is_none() {
            match next(&mut ada, &notes, Some).await {
                ChannelEvent::Message { id, body, .. } if id == kept => seen = Some(body),
                ChannelEvent::Failed { id, failure: f } if id == empty => failure = Some(f),
                _ => {}
            }
        }
        (seen.unwrap(), failure.unwrap())
    })
    .await;
    assert_eq!(seen, Ok(Note { text: "kept".into() }));
    assert_eq!(failure, Failure::Refused(Reason::new("empty", "a note needs some text")));

    // A room the server does not check: an untyped sender's body reaches the typed
    // reader as Undecodable, with its raw value.
    let loose = Room::<Notes>::new("loose");
    ada.input(loose.join());
    next(&mut ada, &loose, |event| matches!(event, ChannelEvent::Joined { .. }).then_some(())).await;
    let mut bob = client(&url, "Bob").await;
    bob.input(Input::Join("loose".into()));
    bob.publish("loose", json!({"note": 42}));
    let body = next(&mut ada, &loose, |event| match event {
        ChannelEvent::Message { body, .. } => Some(body),
        _ => None,
    })
    .await;
    let undecodable = body.expect_err("not a Note");
    assert_eq!(undecodable.raw, json!({"note": 42}));
    assert!(undecodable.error.contains("missing field `text`"), "{}", undecodable.error);
    drop((ada, bob));
    within("the server stopping", server.stop()).await;
}
