//! What people see, in real browsers, while things break. Run through `cargo xtask test`
//! (it builds the release server and bundle first, and runs these one at a time).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tether_e2e::{Browser, Fault, FaultProxy, Page, Server};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(20);

/// Alice and Bob, each in their own browser behind their own proxy, in #general.
struct Chat {
    server: Server,
    alice_proxy: FaultProxy,
    bob_proxy: FaultProxy,
    alice: Page,
    bob: Page,
    _browser: Browser,
}

async fn chat(extra: &[&str]) -> Chat {
    let server = Server::start(extra);
    let alice_proxy = FaultProxy::start(server.addr).await;
    let bob_proxy = FaultProxy::start(server.addr).await;
    let browser = Browser::start().await;
    let alice = browser.page("Alice").await;
    let bob = browser.page("Bob").await;
    alice.open(&alice_proxy.url()).await;
    bob.open(&bob_proxy.url()).await;
    for (page, other) in [(&alice, "Bob"), (&bob, "Alice")] {
        page.until("connected", PATIENCE, "document.querySelector('.indicator.connected')").await;
        let sees = format!(
            "Array.from(document.querySelectorAll('.presence .member')).some(e => e.textContent.includes('{other}'))"
        );
        page.until(&format!("{other} in presence"), PATIENCE, &sees).await;
    }
    Chat { server, alice_proxy, bob_proxy, alice, bob, _browser: browser }
}

fn report(scenario: &str, started: Instant) {
    println!("scenario {scenario}: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_chat_presence_typing_order_and_ticks() {
    let started = Instant::now();
    let c = chat(&[]).await;
    c.alice.screenshot("chat-presence").await;

    c.alice.type_only("typing…").await;
    c.bob
        .until(
            "Alice typing",
            PATIENCE,
            "document.querySelector('.typing').textContent.includes('Alice is typing')",
        )
        .await;
    c.bob.screenshot("chat-typing").await;
    c.alice.js("const i = document.querySelector('.composer-input'); i.value = ''; return 0;").await;

    c.alice.say("one").await;
    c.bob
        .until("Alice's typing cleared", PATIENCE, "document.querySelector('.typing').textContent === ''")
        .await;
    c.bob.until("one", PATIENCE, "document.querySelectorAll('.message').length >= 1").await;
    c.bob.say("two").await;
    c.alice.until("two", PATIENCE, "document.querySelectorAll('.message').length >= 2").await;
    c.alice.say("three").await;
    for page in [&c.alice, &c.bob] {
        page.until("three messages", PATIENCE, "document.querySelectorAll('.message').length >= 3").await;
    }
    let (seen_by_alice, seen_by_bob) = (c.alice.messages().await, c.bob.messages().await);
    assert_eq!(seen_by_alice, ["one", "two", "three"]);
    assert_eq!(seen_by_alice, seen_by_bob, "the same order for both");

    // Bob has the room open, so Alice's messages go sent → delivered → read.
    c.alice
        .until(
            "read ticks",
            PATIENCE,
            "Array.from(document.querySelectorAll('.message.mine')).length === 2 && \
             Array.from(document.querySelectorAll('.message.mine')).every(m => m.querySelector('.tick.read'))",
        )
        .await;
    c.alice.screenshot("chat-read").await;
    report("1 (chat)", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_a_bad_actor_is_shut_out_and_the_conversation_goes_on() {
    let started = Instant::now();
    let c = chat(&[]).await;
    let (mut mallory, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", c.server.addr)).await.unwrap();
    let mut closed_with = None;
    for i in 0..500 {
        let message = match i % 3 {
            0 => Message::text("}{ not json"),
            1 => Message::binary(vec![0xde; 64]),
            _ => Message::text("x".repeat(200_000)),
        };
        if mallory.send(message).await.is_err() {
            break;
        }
    }
    while let Some(Ok(message)) = tokio::time::timeout(PATIENCE, mallory.next()).await.unwrap() {
        if let Message::Close(frame) = message {
            closed_with = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert!(matches!(closed_with, Some(1008 | 1009)), "closed with {closed_with:?}");

    c.alice.say("are you still there?").await;
    c.bob.until("Alice's message", PATIENCE, "document.querySelectorAll('.message').length >= 1").await;
    c.bob.say("yes, all good").await;
    c.alice.until("Bob's answer", PATIENCE, "document.querySelectorAll('.message').length >= 2").await;
    assert_eq!(c.alice.messages().await, c.bob.messages().await);
    assert!(c.alice.js("return !!document.querySelector('.indicator.connected')").await.as_bool().unwrap());
    report("6 (bad actor)", started);
}
