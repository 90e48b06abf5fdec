//! A test harness for apps built on Tether, like Phoenix's `ChannelTest`: the app's real
//! handlers, in a real Tether on a free loopback port, driven by typed members that join,
//! publish and ask, and see what the others receive. No browser, no mocks.
//!
//! ```no_run
//! # use tether_shared::channel::{Channel, Reason};
//! # #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)] pub struct Post { text: String }
//! # pub struct Chat;
//! # impl Channel for Chat { const ROOMS: &'static str = "*"; type Message = Post; type State = (); type Meta = (); type Error = Reason; }
//! # async fn test() {
//! use tether_server::{Config, Handlers, Server};
//! use tether_testing::TestServer;
//!
//! let refusing = Handlers::<Chat>::new().on_publish(|_call, post: Post| async move {
//!     if post.text.is_empty() { Err(Reason::new("empty", "write something")) } else { Ok(post) }
//! });
//! let server = TestServer::start(Server::new(Config::for_tests()).channel(refusing)).await;
//! let mut ada = server.join::<Chat>("Ada", "lobby").await.expect("joined");
//! let mut bob = server.join::<Chat>("Bob", "lobby").await.expect("joined");
//! ada.publish(&Post { text: "hi".into() }).await.expect("stored");
//! assert_eq!(bob.next_message().await.body, Ok(Post { text: "hi".into() }));
//! assert!(ada.publish(&Post { text: String::new() }).await.is_err());
//! bob.nothing_more().await;
//! server.stop().await;
//! # }
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use tether_client::{Client, Room};
use tether_server::{Api, Running, Server};
use tether_shared::channel::{Channel, Requests, Undecodable};
use tether_shared::typed::{Answer, ChannelEvent, Failure, Member as Present};
use tether_shared::{ConnectionConfig, Event, Input, ServerFrame, User};

/// How long any wait of the harness lasts before it fails the test: long enough for a
/// loaded CI machine, short enough that a hang is told as a failure, not a timeout of
/// the whole suite.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A real Tether for a test, on a free loopback port.
pub struct TestServer {
    running: Running,
}

impl TestServer {
    /// Starts `server` (build it on `Config::for_tests()`: a free port, the memory store).
    pub async fn start(server: Server) -> TestServer {
        let running = tokio::time::timeout(PATIENCE, server.start())
            .await
            .expect("the server started in time")
            .expect("the server starts");
        TestServer { running }
    }

    /// The server API, as the app's backend uses it.
    pub fn api(&self) -> Api {
        self.running.api()
    }

    /// A member called `name` (dev mode sign-in), in `room` of channel `C`: once the
    /// join is confirmed, or the join's refusal.
    pub async fn join<C: Channel>(&self, name: &str, room: &str) -> Result<Member<C>, Failure<C::Error>> {
        let config = ConnectionConfig { name: Some(name.into()), ..ConnectionConfig::default() };
        let mut client = Client::spawn(format!("ws://{}/ws", self.running.addr()), config);
        client.input(Input::Connect);
        let room = Room::<C>::new(room);
        client.input(room.join());
        let mut me = None;
        let joined = client
            .wait_for(PATIENCE, |event| {
                if let Event::Welcome { user } = event {
                    me = Some(user.clone());
                }
                match room.read(event)? {
                    ChannelEvent::Joined { members, .. } => Some(Ok(members)),
                    ChannelEvent::JoinFailed(failure) => Some(Err(failure)),
                    _ => None,
                }
            })
            .await
            .expect("the join was answered in time")?;
        let me = me.expect("welcomed before joined");
        Ok(Member { client, room, me, members: joined, messages: VecDeque::new() })
    }

    /// Stops the server.
    pub async fn stop(self) {
        tokio::time::timeout(PATIENCE, self.running.stop()).await.expect("the server stopped in time");
    }
}

/// A message a member received (`M`: the channel's message type).
#[derive(Debug, Clone, PartialEq)]
pub struct Received<M> {
    /// Its seq in the room.
    pub seq: u64,
    /// Who sent it.
    pub from: User,
    /// The message, or why it is not the channel's type.
    pub body: Result<M, Undecodable>,
}

/// One member of a room, connected through the real protocol.
pub struct Member<C: Channel> {
    client: Client,
    room: Room<C>,
    me: User,
    members: Vec<Present<C>>,
    /// Messages seen while waiting for something else, in order.
    messages: VecDeque<Received<C::Message>>,
}

impl<C: Channel> Member<C> {
    /// Who the server says this member is.
    pub fn user(&self) -> &User {
        &self.me
    }

    /// Who was in the room when this member's join was confirmed, with their metadata.
    pub fn members_at_join(&self) -> &[Present<C>] {
        &self.members
    }

    /// Sets this member's volatile state under `key` (`None` clears it).
    pub fn set_state(&self, key: &str, value: Option<&C::State>) {
        self.client.input(self.room.state(key, value));
    }

    /// Publishes `message` and waits for its answer: its seq, or why it was not stored.
    pub async fn publish(&mut self, message: &C::Message) -> Result<u64, Failure<C::Error>> {
        let id = self.client.send(&self.room, message);
        let (room, messages) = (&self.room, &mut self.messages);
        self.client
            .wait_for(PATIENCE, |event| match room.read(event)? {
                ChannelEvent::Acked { id: acked, seq, .. } if acked == id => Some(Ok(seq)),
                ChannelEvent::Failed { id: failed, failure } if failed == id => Some(Err(failure)),
                other => {
                    keep(messages, other);
                    None
                }
            })
            .await
            .expect("the publish was answered in time")
    }

    /// The next message in the room (its own ones too), live or replayed.
    pub async fn next_message(&mut self) -> Received<C::Message> {
        if let Some(message) = self.messages.pop_front() {
            return message;
        }
        let room = &self.room;
        self.client
            .wait_for(PATIENCE, |event| match room.read(event)? {
                ChannelEvent::Message { seq, from, body, .. } => Some(Received { seq, from, body }),
                _ => None,
            })
            .await
            .expect("a message arrived in time")
    }

    /// Asserts that no message is waiting for this member: everything the server sent
    /// it before answering an echo is read, and none of it is a message.
    pub async fn nothing_more(&mut self) {
        let marker = serde_json::Value::String(format!("nothing-more-{}", self.me.id));
        self.client.input(Input::Echo(marker.clone()));
        let (room, messages) = (&self.room, &mut self.messages);
        self.client
            .wait_for(PATIENCE, |event| {
                if matches!(event, Event::Frame(ServerFrame::Echo { body }) if *body == marker) {
                    return Some(());
                }
                if let Some(other) = room.read(event) {
                    keep(messages, other);
                }
                None
            })
            .await
            .expect("the echo came back in time");
        assert!(self.messages.is_empty(), "{} received more: {:?}", self.me.name, self.messages);
    }
}

impl<C: Requests> Member<C> {
    /// Asks the room's channel and waits for the typed answer.
    pub async fn request(&mut self, request: &C::Request) -> Answer<C> {
        let answer = self.client.request(&self.room, request);
        tokio::time::timeout(PATIENCE, answer).await.expect("the request was answered in time")
    }
}

/// Keeps a message seen while waiting for something else.
fn keep<C: Channel>(messages: &mut VecDeque<Received<C::Message>>, event: ChannelEvent<C>) {
    if let ChannelEvent::Message { seq, from, body, .. } = event {
        messages.push_back(Received { seq, from, body });
    }
}
