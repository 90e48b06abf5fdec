//! WebSocket close codes the server sends, and what each means to a client.
//!
//! A client needs one decision from a close: reconnect (with backoff) or stop and tell
//! the person. The 4xxx codes mirror HTTP statuses so they read at a glance.

/// The client closed the socket itself (the person disconnected).
pub const NORMAL: u16 = 1000;
/// The server is shutting down or restarting. Reconnect with backoff, then resume.
pub const GOING_AWAY: u16 = 1001;
/// Browsers report this when the connection died without a close frame.
pub const ABNORMAL: u16 = 1006;
/// A text message was not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Repeated invalid frames or flooding. Reconnect with backoff.
pub const POLICY: u16 = 1008;
/// A message exceeded the size limit.
pub const TOO_BIG: u16 = 1009;
/// The server hit an unexpected error.
pub const INTERNAL: u16 = 1011;
/// The server is restarting this connection on purpose (its test endpoint). Reconnect.
pub const SERVICE_RESTART: u16 = 1012;
/// Overloaded, or too many connections from this address. Reconnect later.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Sent by clients that detect a dead connection through a missed pong.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// The client could not keep up with its messages; its queue overflowed. Reconnect and
/// resume: what it missed is replayed from history.
pub const SLOW_CONSUMER: u16 = 4001;
/// The server saw no traffic from the client within the idle timeout.
pub const IDLE_TIMEOUT: u16 = 4002;
/// The connection attempt did not complete within the client's connect timeout.
pub const CONNECT_TIMEOUT: u16 = 4008;
/// Reported by clients for a server address that can never work (not a `ws:`/`wss:`
/// URL, or one that cannot be parsed): retrying it would fail the same way forever.
pub const INVALID_ADDRESS: u16 = 4009;
/// The app's backend ended this connection through the server API and lets it come
/// back: reconnect with backoff (a new token may change what it may do).
pub const DISCONNECTED: u16 = 4010;
/// The `hello` was missing, malformed, or asked for an unsupported protocol version.
/// Reconnecting with the same client will not help.
pub const BAD_HELLO: u16 = 4400;
/// The token was missing, forged or malformed. Do not retry without a new token.
pub const UNAUTHORIZED: u16 = 4401;
/// The token expired. Fetch a new one, then connect again.
pub const TOKEN_EXPIRED: u16 = 4403;
/// The page's origin is not on the server's allow-list.
pub const ORIGIN_FORBIDDEN: u16 = 4408;
/// The app's backend removed this user through the server API: do not come back until
/// the person or the app acts.
pub const REMOVED: u16 = 4410;

/// Every close code above, for checks that must cover them all (PROTOCOL.md's table).
/// A test reads this file's own constants, so a code left out of this list fails it.
pub const ALL: &[u16] = &[
    NORMAL,
    GOING_AWAY,
    ABNORMAL,
    INVALID_PAYLOAD,
    POLICY,
    TOO_BIG,
    INTERNAL,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    HEARTBEAT_TIMEOUT,
    SLOW_CONSUMER,
    IDLE_TIMEOUT,
    CONNECT_TIMEOUT,
    INVALID_ADDRESS,
    DISCONNECTED,
    BAD_HELLO,
    UNAUTHORIZED,
    TOKEN_EXPIRED,
    ORIGIN_FORBIDDEN,
    REMOVED,
];

/// Whether a client should reconnect on its own after the server closed with `code`.
/// The codes that say "the same attempt will fail again" stop the client and ask the
/// person or the app to act.
pub fn retry_allowed(code: u16) -> bool {
    !matches!(code, INVALID_ADDRESS | BAD_HELLO | UNAUTHORIZED | TOKEN_EXPIRED | ORIGIN_FORBIDDEN | REMOVED)
}

/// Why `url` can never be connected to, if it can't: the scheme must be `ws` or `wss`
/// and a host must follow. Drivers check before dialing and report a problem as a close
/// with [`INVALID_ADDRESS`], which the core does not retry.
pub fn address_problem(url: &str) -> Option<String> {
    let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://"));
    match rest {
        None => Some(format!("{url:?} is not a ws:// or wss:// URL")),
        Some(rest) if rest.split(['/', '?', '#']).next().is_none_or(str::is_empty) => {
            Some(format!("{url:?} names no host"))
        }
        Some(_) => None,
    }
}

/// A sentence for a person, describing why a connection closed.
pub fn describe(code: u16, reason: &str) -> String {
    let what = match code {
        NORMAL => "Disconnected",
        GOING_AWAY => "The server is restarting",
        ABNORMAL => "The connection was lost",
        INVALID_PAYLOAD | POLICY | TOO_BIG => "The server refused a message",
        INTERNAL => "The server had a problem",
        TRY_AGAIN_LATER => "The server is busy",
        SERVICE_RESTART => "The server restarted the connection",
        HEARTBEAT_TIMEOUT => "The server stopped answering",
        SLOW_CONSUMER => "Messages arrived faster than this device could take them",
        IDLE_TIMEOUT => "The connection went quiet and was closed",
        CONNECT_TIMEOUT => "The server did not answer in time",
        INVALID_ADDRESS => "Invalid server address",
        BAD_HELLO => "This app version is not compatible with the server",
        UNAUTHORIZED => "Sign-in failed",
        TOKEN_EXPIRED => "Your session expired; sign in again",
        ORIGIN_FORBIDDEN => "This site is not allowed to connect to the server",
        DISCONNECTED => "The server ended the connection",
        REMOVED => "You were removed from the server",
        _ => "The connection closed",
    };
    if reason.is_empty() { format!("{what} ({code})") } else { format!("{what}: {reason} ({code})") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_can_never_work_are_named() {
        assert_eq!(address_problem("ws://127.0.0.1:8080/ws"), None);
        assert_eq!(address_problem("wss://chat.example.com/ws?x=1"), None);
        assert!(address_problem("http://chat.example.com/ws").unwrap().contains("not a ws://"));
        assert!(address_problem("chat.example.com").is_some());
        assert!(address_problem("ws:///ws").unwrap().contains("no host"));
        assert!(!retry_allowed(INVALID_ADDRESS));
        assert!(describe(INVALID_ADDRESS, "x").starts_with("Invalid server address"));
    }

    #[test]
    fn auth_and_compatibility_failures_stop_retries() {
        for code in [BAD_HELLO, UNAUTHORIZED, TOKEN_EXPIRED, ORIGIN_FORBIDDEN, REMOVED] {
            assert!(!retry_allowed(code), "{code}");
        }
        for code in
            [GOING_AWAY, ABNORMAL, POLICY, TOO_BIG, INTERNAL, TRY_AGAIN_LATER, SLOW_CONSUMER, DISCONNECTED]
        {
            assert!(retry_allowed(code), "{code}");
        }
    }

    #[test]
    fn all_lists_every_code_in_this_file() {
        let defined: Vec<u16> = include_str!("close.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("pub const ")?.split_once(": u16 = "))
            .map(|(_, value)| value.trim_end_matches(';').parse().expect("a number"))
            .collect();
        assert!(defined.len() >= 20, "the codes defined here are read: {defined:?}");
        let mut listed = ALL.to_vec();
        listed.sort_unstable();
        let mut defined = defined;
        defined.sort_unstable();
        assert_eq!(listed, defined, "ALL holds every code defined in close.rs, once");
    }

    #[test]
    fn descriptions_read_as_sentences() {
        assert_eq!(
            describe(GOING_AWAY, "server restarting"),
            "The server is restarting: server restarting (1001)"
        );
        assert_eq!(describe(ABNORMAL, ""), "The connection was lost (1006)");
    }
}
