//! How the server ends a WebSocket on purpose: a close code (`tether_shared::close`)
//! with a reason a person can read, in one type wherever a connection is refused or
//! closed.

use tether_shared::close;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A close code and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// The code; clients decide from it whether to retry (`tether_shared::close`).
    pub code: u16,
    /// Shown to people and written to logs.
    pub reason: &'static str,
}

impl Close {
    /// A close with `code` and `reason`.
    pub const fn new(code: u16, reason: &'static str) -> Close {
        Close { code, reason }
    }

    /// The frame that says it.
    pub fn frame(self) -> CloseFrame {
        CloseFrame { code: CloseCode::from(self.code), reason: self.reason.into() }
    }
}

/// The close the server API's `disconnect` sends: 4010 (come back) or 4410 (stay away),
/// or `None` for any other code (a control message is checked, not trusted).
pub fn for_api_disconnect(code: u16) -> Option<Close> {
    match code {
        close::DISCONNECTED => Some(Close::new(close::DISCONNECTED, "disconnected by the server")),
        close::REMOVED => Some(Close::new(close::REMOVED, "removed by the server")),
        _ => None,
    }
}

/// Sent to every client when the server shuts down. Clients treat 1001 as "come back
/// soon" and reconnect with backoff.
pub const SHUTDOWN: Close = Close::new(close::GOING_AWAY, "server restarting");
