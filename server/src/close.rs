//! How the server ends a WebSocket on purpose: a close code (`tether_shared::close`)
//! with a reason a person can read, in one type wherever a connection is refused or
//! closed.

use std::borrow::Cow;

use tether_shared::close;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A close code and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The code; clients decide from it whether to retry (`tether_shared::close`).
    pub code: u16,
    /// Shown to people and written to logs.
    pub reason: Cow<'static, str>,
}

/// Longest close reason a WebSocket close frame carries, in bytes.
const MAX_REASON_BYTES: usize = 123;

impl Close {
    /// A close with `code` and `reason`.
    pub const fn new(code: u16, reason: &'static str) -> Close {
        Close { code, reason: Cow::Borrowed(reason) }
    }

    /// A close whose reason is made at run time (an app's words): cut to what a close
    /// frame carries, at a character boundary.
    pub fn new_owned(code: u16, mut reason: String) -> Close {
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Close { code, reason: Cow::Owned(reason) }
    }

    /// The frame that says it.
    pub fn frame(self) -> CloseFrame {
        CloseFrame { code: CloseCode::from(self.code), reason: self.reason.into_owned().into() }
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
