//! Which transport a link's connection travels on, and when to change it.
//!
//! The order of attempts is WebSocket, then Server-Sent Events, then long-polling. The
//! WebSocket is given up after [`FALLBACK_AFTER`] attempts in a row that failed before
//! the server's `welcome` while plain HTTP to the server worked (a proxy that strips
//! `Upgrade`); a server that is down, or a close with a code of the server's (a refused
//! token, say), changes nothing. SSE is given up when its event stream is refused. While on a fallback,
//! the link probes the WebSocket now and then, and moves back when a probe opens: the
//! move is a reconnect, and the core's resume and outbox make it lose and repeat
//! nothing.

use crate::http_socket::{Downstream, HttpSocket};
use crate::socket::BrowserSocket;

/// Failed attempts in a row before the next transport is tried.
pub const FALLBACK_AFTER: u32 = 2;
/// First wait before probing the WebSocket again from a fallback, by default
/// (`LinkOptions::probe_after`); it doubles up to [`MAX_PROBE_MS`].
pub const FIRST_PROBE_MS: u32 = 10_000;
/// Longest wait between two probes.
pub const MAX_PROBE_MS: u32 = 300_000;

/// A way to carry frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One WebSocket (`/ws`).
    WebSocket,
    /// Server-Sent Events down, `POST` up (`/rt/…`).
    Sse,
    /// Long-polls down, `POST` up (`/rt/…`).
    LongPoll,
}

impl Transport {
    /// The name a person reads ("SSE", "long-polling").
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "WebSocket",
            Transport::Sse => "SSE",
            Transport::LongPoll => "long-polling",
        }
    }
}

/// The socket of the current attempt, whichever transport it is on.
pub enum AnySocket {
    /// A browser WebSocket.
    WebSocket(BrowserSocket),
    /// An HTTP session.
    Http(HttpSocket),
}

impl AnySocket {
    /// Sends a text frame.
    pub fn send(&self, text: &str) -> Result<(), String> {
        match self {
            AnySocket::WebSocket(socket) => socket.send(text),
            AnySocket::Http(socket) => socket.send(text),
        }
    }

    /// Sends a binary (MessagePack) frame: WebSockets only, since the HTTP transports
    /// carry JSON text.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        match self {
            AnySocket::WebSocket(socket) => socket.send_bytes(bytes),
            AnySocket::Http(_) => Err("the HTTP transports carry JSON text".into()),
        }
    }

    /// Closes with a code and reason.
    pub fn close(&self, code: u16, reason: &str) {
        match self {
            AnySocket::WebSocket(socket) => socket.close(code, reason),
            AnySocket::Http(socket) => socket.close(code, reason),
        }
    }
}

/// The link's choice of transport.
pub struct Choice {
    /// Set when the app forced one transport: no fallback, no probe.
    forced: Option<Transport>,
    current: Transport,
    /// Attempts on `current` that failed before a `welcome`, in a row.
    failures: u32,
    /// Whether the current attempt has been welcomed.
    welcomed: bool,
    /// The next wait before probing the WebSocket.
    probe_ms: u32,
    /// The first wait, to which a working WebSocket resets it.
    first_probe_ms: u32,
}

impl Choice {
    /// Starts on `forced`, or on the WebSocket with fallback, probing back after
    /// `first_probe_ms`.
    pub fn new(forced: Option<Transport>, first_probe_ms: u32) -> Choice {
        Choice {
            forced,
            current: forced.unwrap_or(Transport::WebSocket),
            failures: 0,
            welcomed: false,
            probe_ms: first_probe_ms,
            first_probe_ms,
        }
    }

    /// The transport of the attempt being made.
    pub fn current(&self) -> Transport {
        self.current
    }

    /// A new attempt starts.
    pub fn attempt(&mut self) {
        self.welcomed = false;
    }

    /// The server welcomed the attempt: the transport works. Returns how long to wait
    /// before probing the WebSocket, when on a fallback.
    pub fn welcomed(&mut self) -> Option<u32> {
        self.welcomed = true;
        self.failures = 0;
        (self.forced.is_none() && self.current != Transport::WebSocket).then_some(self.probe_ms)
    }

    /// Whether the current attempt was welcomed.
    pub fn was_welcomed(&self) -> bool {
        self.welcomed
    }

    /// A WebSocket attempt failed before it was welcomed while plain HTTP to the same
    /// server works: the WebSocket is blocked on the way. After [`FALLBACK_AFTER`] of
    /// these in a row the next attempt uses SSE. (A server that is down fails plain
    /// HTTP too, and is not a reason to change transports.)
    pub fn websocket_blocked(&mut self) {
        if self.forced.is_some() || self.current != Transport::WebSocket {
            return;
        }
        self.failures += 1;
        if self.failures >= FALLBACK_AFTER {
            self.current = Transport::Sse;
            self.failures = 0;
        }
    }

    /// The event stream of an SSE session was refused (a proxy that mangles or blocks
    /// `text/event-stream`): the next attempt long-polls.
    pub fn stream_refused(&mut self) {
        if self.forced.is_none() && self.current == Transport::Sse {
            self.current = Transport::LongPoll;
        }
    }

    /// A probe found the WebSocket working: the next attempt uses it.
    pub fn probe_opened(&mut self) {
        self.current = Transport::WebSocket;
        self.failures = 0;
        self.probe_ms = self.first_probe_ms;
    }

    /// A probe failed: the next one waits longer.
    pub fn probe_failed(&mut self) -> u32 {
        self.probe_ms = self.probe_ms.saturating_mul(2).min(MAX_PROBE_MS);
        self.probe_ms
    }

    /// Opens a socket of the current transport towards `url`.
    pub fn open(
        &self,
        url: &str,
        subprotocol: Option<&str>,
    ) -> Result<(AnySocket, futures::channel::mpsc::UnboundedReceiver<crate::socket::SocketEvent>), String>
    {
        match self.current {
            Transport::WebSocket => BrowserSocket::open_with(url, subprotocol)
                .map(|(socket, events)| (AnySocket::WebSocket(socket), events)),
            Transport::Sse => {
                let (socket, events) = HttpSocket::open(url, Downstream::Sse);
                Ok((AnySocket::Http(socket), events))
            }
            Transport::LongPoll => {
                let (socket, events) = HttpSocket::open(url, Downstream::LongPoll);
                Ok((AnySocket::Http(socket), events))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    use super::*;

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn falls_back_step_by_step_and_probes_its_way_back() {
        let mut choice = Choice::new(None, FIRST_PROBE_MS);
        choice.attempt();
        choice.websocket_blocked();
        assert_eq!(choice.current(), Transport::WebSocket, "one failure is not a pattern");
        choice.attempt();
        choice.websocket_blocked();
        assert_eq!(choice.current(), Transport::Sse);
        choice.attempt();
        assert_eq!(choice.welcomed(), Some(FIRST_PROBE_MS), "a fallback that works probes the WebSocket");
        assert_eq!(choice.probe_failed(), 2 * FIRST_PROBE_MS);
        choice.stream_refused();
        assert_eq!(choice.current(), Transport::LongPoll);
        choice.probe_opened();
        assert_eq!(choice.current(), Transport::WebSocket);
        choice.attempt();
        assert_eq!(choice.welcomed(), None, "on the WebSocket, nothing to probe");
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn a_forced_transport_never_changes() {
        let mut choice = Choice::new(Some(Transport::LongPoll), FIRST_PROBE_MS);
        for _ in 0..5 {
            choice.attempt();
            choice.websocket_blocked();
            choice.stream_refused();
        }
        assert_eq!(choice.current(), Transport::LongPoll);
        assert_eq!(choice.welcomed(), None);
    }
}
