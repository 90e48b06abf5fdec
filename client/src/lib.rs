//! A native Tether client: the shared [`Connection`](tether_shared::Connection) core driven by tokio.
//!
//! The core decides everything (when to reconnect, what to resend, when a socket is
//! dead); this crate only opens sockets, moves text, and runs the timers the core asks
//! for. The server's tests, command-line tools and the load generator use it, and it
//! behaves exactly like the browser client because it runs the same core.
//!
//! ```no_run
//! # async fn demo() {
//! use tether_client::Client;
//! use tether_shared::{ConnectionConfig, Event, Input};
//!
//! let mut client = Client::spawn("ws://127.0.0.1:8080/ws", ConnectionConfig::default());
//! client.input(Input::Connect);
//! client.input(Input::Join("general".into()));
//! let id = client.publish("general", serde_json::json!({"text": "hi"}));
//! while let Some(event) = client.next_event().await {
//!     if let Event::Acked { envelope, seq, .. } = event {
//!         if envelope.id == id {
//!             println!("stored as #{seq}");
//!             break;
//!         }
//!     }
//! }
//! # }
//! ```

mod driver;

use std::time::Duration;

use serde_json::Value;
use tether_shared::{ConnectionConfig, Event, Input, MessageIds};
use tokio::sync::mpsc;

pub use tether_shared;

/// A handle to a client running in its own task. Dropping it disconnects and stops
/// the task.
pub struct Client {
    inputs: mpsc::UnboundedSender<Input>,
    events: mpsc::UnboundedReceiver<Event>,
    ids: MessageIds,
}

impl Client {
    /// Starts a client for `url` (idle until [`Input::Connect`]). Must be called within
    /// a tokio runtime.
    pub fn spawn(url: impl Into<String>, config: ConnectionConfig) -> Client {
        let (inputs, input_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let seed = fastrand::u64(..);
        tokio::spawn(driver::run(url.into(), config, seed, input_rx, event_tx));
        Client { inputs, events, ids: MessageIds::new(seed.rotate_left(17)) }
    }

    /// Feeds an input to the core (connect, join, publish, network changes, …).
    pub fn input(&self, input: Input) {
        // The task only ends when this handle is dropped, so sending cannot fail here.
        let _ = self.inputs.send(input);
    }

    /// Queues a message for `room` and returns its client message id.
    pub fn publish(&mut self, room: &str, body: Value) -> String {
        let id = self.ids.next_id();
        self.input(Input::Publish { id: id.clone(), room: room.into(), body, priority: 0 });
        id
    }

    /// The next event from the core, in order.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Skips events until `wanted` returns `Some`, and returns that; `None` if `patience`
    /// runs out first or the client stopped.
    pub async fn wait_for<T>(
        &mut self,
        patience: Duration,
        mut wanted: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        let search = async {
            while let Some(event) = self.events.recv().await {
                if let Some(found) = wanted(&event) {
                    return Some(found);
                }
            }
            None
        };
        tokio::time::timeout(patience, search).await.ok().flatten()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Disconnect);
    }
}
