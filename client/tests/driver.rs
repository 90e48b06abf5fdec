//! The native client against real servers: the Tether server, and a WebSocket peer
//! that goes silent, to prove heartbeat detection on a connection that never closes.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tether_client::Client;
use tether_shared::close;
use tether_shared::{
    BackoffConfig, ClientFrame, ConnectionConfig, Event, Input, Jitter, Limits, ServerFrame, State, User,
};
use tokio_tungstenite::tungstenite::Message;

#[path = "../../server/tests/common/deadline.rs"]
mod deadline;

use deadline::{PATIENCE, within, within_for};

/// A real server, started within [`PATIENCE`].
async fn start(config: tether_server::Config) -> tether_server::Running {
    within("the server starting", tether_server::start(config)).await.expect("server starts")
}

/// Stops a server within [`PATIENCE`].
async fn stop(server: tether_server::Running) {
    within("the server stopping", server.stop()).await;
}

fn fast_config() -> ConnectionConfig {
    ConnectionConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_millis(400),
            max_attempts: None,
            jitter: Jitter::Full,
        },
        name: Some("native".into()),
        ..ConnectionConfig::default()
    }
}

async fn server_at(addr: SocketAddr) -> tether_server::Running {
    let mut config = tether_server::Config::for_tests();
    config.listen = addr;
    start(config).await
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

async fn wait_state(client: &mut Client, wanted: impl Fn(&State) -> bool) -> State {
    client
        .wait_for(PATIENCE, |event| match event {
            Event::State(state) if wanted(state) => Some(state.clone()),
            _ => None,
        })
        .await
        .expect("the state arrived in time")
}

#[tokio::test]
async fn connects_is_welcomed_and_echoes() {
    let server = start(tether_server::Config::for_tests()).await;
    let mut client = Client::spawn(url(server.addr()), fast_config());
    client.input(Input::Connect);
    let user = client
        .wait_for(PATIENCE, |e| if let Event::Welcome { user } = e { Some(user.clone()) } else { None })
        .await
        .expect("welcome");
    assert_eq!(user.name, "native");
    client.input(Input::Echo(json!({"n": 1})));
    let echoed = client
        .wait_for(PATIENCE, |e| match e {
            Event::Frame(ServerFrame::Echo { body }) => Some(body.clone()),
            _ => None,
        })
        .await;
    assert_eq!(echoed, Some(json!({"n": 1})));
    stop(server).await;
}

#[tokio::test]
async fn reconnects_after_a_server_restart() {
    let server = start(tether_server::Config::for_tests()).await;
    let addr = server.addr();
    let mut client = Client::spawn(url(addr), fast_config());
    client.input(Input::Connect);
    wait_state(&mut client, |s| *s == State::Open).await;

    stop(server).await;
    let state = wait_state(&mut client, |s| matches!(s, State::Reconnecting { .. })).await;
    assert!(matches!(state, State::Reconnecting { attempt: 1, .. }), "{state:?}");

    let server = server_at(addr).await;
    wait_state(&mut client, |s| *s == State::Open).await;
    stop(server).await;
}

#[tokio::test]
async fn gives_up_after_max_attempts_against_a_dead_port() {
    // Bind and release a port, so nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut config = fast_config();
    config.backoff.max_attempts = Some(2);
    let mut client = Client::spawn(url(addr), config);
    client.input(Input::Connect);
    let state = wait_state(&mut client, |s| matches!(s, State::Failed { .. })).await;
    let State::Failed { reason } = state else { unreachable!() };
    assert!(reason.starts_with("Gave up after 2 attempts"), "{reason}");
}

#[tokio::test]
async fn offline_then_online_reconnects_at_once() {
    let server = start(tether_server::Config::for_tests()).await;
    let mut client = Client::spawn(url(server.addr()), fast_config());
    client.input(Input::Connect);
    wait_state(&mut client, |s| *s == State::Open).await;
    client.input(Input::NetworkOffline);
    wait_state(&mut client, |s| *s == State::Offline).await;
    client.input(Input::NetworkOnline);
    let state = wait_state(&mut client, |s| matches!(s, State::Connecting { .. })).await;
    assert_eq!(state, State::Connecting { attempt: 0 }, "no backoff wait after coming online");
    wait_state(&mut client, |s| *s == State::Open).await;
    stop(server).await;
}

/// A WebSocket peer that welcomes the client and then never says another word (nor
/// closes): what a dead network path looks like from the client.
/// Reports the close code each connection ends with.
async fn silent_server() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u16>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closes, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let closes = closes.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Close(frame) = &message {
                        let _ = closes.send(frame.as_ref().map_or(1005, |f| u16::from(f.code)));
                    }
                    let Message::Text(text) = message else { continue };
                    if let Ok(ClientFrame::Hello { .. }) = ClientFrame::decode(&text) {
                        let welcome = ServerFrame::Welcome {
                            v: 1,
                            session: "silent".into(),
                            resume_token: "t".into(),
                            heartbeat_ms: 200,
                            limits: Limits {
                                max_body_bytes: 1024,
                                publish_per_sec: 1,
                                publish_burst: 1,
                                max_rooms: 1,
                                ..Limits::default()
                            },
                            user: User::new("u", "n", "#000"),
                        };
                        ws.send(Message::text(welcome.encode())).await.unwrap();
                    }
                    // Pings are read and ignored: the path is "dead" from here on.
                }
            });
        }
    });
    (addr, closed)
}

#[tokio::test]
async fn a_silent_connection_is_detected_by_heartbeat() {
    let (addr, mut closed) = silent_server().await;
    let mut config = fast_config();
    config.pong_timeout = Duration::from_millis(300);
    let mut client = Client::spawn(url(addr), config);
    client.input(Input::Connect);
    wait_state(&mut client, |s| *s == State::Open).await;
    let opened = std::time::Instant::now();
    wait_state(&mut client, |s| matches!(s, State::Reconnecting { .. })).await;
    let detected = opened.elapsed();
    // One heartbeat (200 ms) plus the pong timeout (300 ms), give or take scheduling.
    assert!(detected >= Duration::from_millis(450), "detected too early: {detected:?}");
    println!("silent connection detected after {detected:?}");
    let code = tokio::time::timeout(PATIENCE, closed.recv()).await.expect("the client closed the socket");
    assert_eq!(code, Some(close::HEARTBEAT_TIMEOUT));
}

#[tokio::test]
async fn with_two_endpoints_a_stopped_server_is_left_for_the_other() {
    let first = start(tether_server::Config::for_tests()).await;
    let second = start(tether_server::Config::for_tests()).await;
    let options = tether_client::ClientOptions {
        endpoints: vec![url(first.addr()), url(second.addr())],
        connection: fast_config(),
        token: None,
        encoding: tether_shared::Encoding::Json,
    };
    let mut client = Client::start(options);
    client.input(Input::Connect);
    client.input(Input::Join("r".into()));
    wait_state(&mut client, |s| *s == State::Open).await;
    let used = client.endpoint();
    let (stopped, survivor) = match used == url(first.addr()) {
        true => (first, second),
        false => (second, first),
    };
    stop(stopped).await;
    wait_state(&mut client, |s| matches!(s, State::Reconnecting { .. })).await;
    wait_state(&mut client, |s| *s == State::Open).await;
    assert_eq!(client.endpoint(), url(survivor.addr()), "moved to the other endpoint");
    let id = client.publish("r", json!({"text": "still here"}));
    let acked = client
        .wait_for(PATIENCE, |e| match e {
            Event::Acked { envelope, .. } if envelope.id == id => Some(()),
            _ => None,
        })
        .await;
    assert!(acked.is_some(), "a publish after the move is stored");
    stop(survivor).await;
}

#[tokio::test]
async fn a_token_provider_keeps_a_client_signed_in_through_failures_refusals_and_renewals() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tether_server::{Claims, sign_token};

    const SECRET: &str = "native-test-secret-of-some-length";
    let mut config = tether_server::Config::for_tests();
    config.auth_secret = Some(SECRET.into());
    config.token_warning = Duration::from_secs(2);
    let server = start(config).await;
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let calls = Arc::new(AtomicU32::new(0));
    let provider = {
        let calls = calls.clone();
        tether_client::TokenProvider::new(move || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // First the backend is down, then it hands out a stale token, then good ones
                // that live three seconds.
                let exp = match call {
                    0 => return Err("backend down".into()),
                    1 => now() - 10,
                    _ => now() + 3,
                };
                let claims = Claims { sub: "u_ada".into(), name: "Ada".into(), rooms: vec!["*".into()], exp };
                Ok(sign_token(SECRET.as_bytes(), &claims))
            }
        })
    };
    let options = tether_client::ClientOptions {
        token: Some(provider),
        connection: fast_config(),
        ..tether_client::ClientOptions::new(url(server.addr()))
    };
    let mut client = Client::start(options);
    client.input(Input::Connect);
    client.input(Input::Join("r".into()));
    let mut welcomes = 0;
    let mut refreshed = 0;
    // Round trips and other events keep coming: the wait for two renewals is bounded whole.
    within_for(2 * PATIENCE, "two renewals in place", async {
        while refreshed < 2 {
            let event = tokio::time::timeout(PATIENCE, client.next_event())
                .await
                .expect("events keep coming")
                .unwrap();
            match event {
                Event::Welcome { user } => {
                    assert_eq!(user.id, "u_ada");
                    welcomes += 1;
                }
                Event::Frame(ServerFrame::Refreshed { .. }) => refreshed += 1,
                Event::State(State::Failed { reason }) => panic!("gave up: {reason}"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(welcomes, 1, "renewed in place, never reconnected after the first welcome");
    assert!(calls.load(Ordering::SeqCst) >= 4, "failed, stale, then a token per renewal");
    let id = client.publish("r", json!({"text": "on the renewed credential"}));
    let acked = client
        .wait_for(PATIENCE, |e| match e {
            Event::Acked { envelope, .. } if envelope.id == id => Some(()),
            _ => None,
        })
        .await;
    assert!(acked.is_some());
    stop(server).await;
}

#[tokio::test]
async fn a_msgpack_client_and_a_json_client_chat_in_one_room() {
    let server = start(tether_server::Config::for_tests()).await;
    let packed_options = tether_client::ClientOptions {
        connection: fast_config(),
        encoding: tether_shared::Encoding::MessagePack,
        ..tether_client::ClientOptions::new(url(server.addr()))
    };
    let mut packed = Client::start(packed_options);
    let mut text = Client::spawn(url(server.addr()), fast_config());
    for client in [&mut packed, &mut text] {
        client.input(Input::Connect);
        client.input(Input::Join("r".into()));
        client
            .wait_for(PATIENCE, |e| matches!(e, Event::Frame(ServerFrame::Joined { .. })).then_some(()))
            .await
            .expect("joined");
    }
    let id = packed.publish("r", json!({"text": "packed", "n": 2.5}));
    let heard = text
        .wait_for(PATIENCE, |e| match e {
            Event::Frame(ServerFrame::Message { id: got, body, .. }) if *got == id => Some(body.clone()),
            _ => None,
        })
        .await;
    assert_eq!(heard, Some(json!({"text": "packed", "n": 2.5})));
    let back = text.publish("r", json!("json"));
    let heard = packed
        .wait_for(PATIENCE, |e| match e {
            Event::Frame(ServerFrame::Message { id: got, body, .. }) if *got == back => Some(body.clone()),
            _ => None,
        })
        .await;
    assert_eq!(heard, Some(json!("json")));
    stop(server).await;
}
