//! `PROTOCOL.md` is checked here: every example must decode as the frame it claims to
//! be and re-encode to the same JSON, and every frame type must be shown.

use std::collections::BTreeSet;

use serde_json::Value;
use tether_shared::frame::{CLIENT_KINDS, SERVER_KINDS};
use tether_shared::{ClientFrame, ServerFrame};

const DOC: &str = include_str!("../../PROTOCOL.md");

/// `(info string, body)` of every fenced block.
fn blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in DOC.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(current.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block in PROTOCOL.md");
    blocks
}

#[test]
fn every_example_decodes_and_round_trips() {
    let mut client = BTreeSet::new();
    let mut server = BTreeSet::new();
    for (info, body) in blocks() {
        let original: Value = match info.as_str() {
            "json client" | "json server" => {
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("example is not JSON ({e}):\n{body}"))
            }
            _ => continue,
        };
        let reencoded: Value = if info == "json client" {
            let frame = ClientFrame::decode(&body).unwrap_or_else(|e| panic!("{e:?}\n{body}"));
            client.insert(frame.kind());
            serde_json::from_str(&frame.encode()).unwrap()
        } else {
            let frame = ServerFrame::decode(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
            server.insert(frame.kind());
            serde_json::from_str(&frame.encode()).unwrap()
        };
        assert_eq!(reencoded, original, "example does not round-trip:\n{body}");
    }
    let all_client: BTreeSet<&str> = CLIENT_KINDS.iter().copied().collect();
    let all_server: BTreeSet<&str> = SERVER_KINDS.iter().copied().collect();
    assert_eq!(client, all_client, "client frame types without an example in PROTOCOL.md");
    assert_eq!(server, all_server, "server frame types without an example in PROTOCOL.md");
}

#[test]
fn every_error_and_reject_code_is_documented() {
    let codes = |json: &str| -> Vec<String> { serde_json::from_str::<Vec<String>>(json).unwrap() };
    let errors = codes(
        r#"["malformed_json","invalid_frame","binary_not_supported","hello_required",
        "already_hello","invalid_room","forbidden","too_many_rooms","not_joined","room_full","rate_limited","too_large","internal"]"#,
    );
    for code in errors {
        // Each must be a real ErrorCode and appear in the document's table.
        let parsed: tether_shared::ErrorCode = serde_json::from_value(Value::String(code.clone())).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), Value::String(code.clone()));
        assert!(DOC.contains(&format!("| `{code}` |")), "error code {code} is not in PROTOCOL.md");
    }
    let rejects =
        codes(r#"["rate_limited","unavailable","too_large","not_joined","forbidden","invalid_id"]"#);
    for code in rejects {
        let parsed: tether_shared::RejectCode = serde_json::from_value(Value::String(code.clone())).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), Value::String(code.clone()));
        assert!(DOC.contains(&format!("| `{code}` |")), "reject code {code} is not in PROTOCOL.md");
    }
}

#[test]
fn every_close_code_is_documented() {
    use tether_shared::close::*;
    for code in [
        NORMAL,
        GOING_AWAY,
        ABNORMAL,
        INVALID_PAYLOAD,
        POLICY,
        TOO_BIG,
        INTERNAL,
        TRY_AGAIN_LATER,
        HEARTBEAT_TIMEOUT,
        SLOW_CONSUMER,
        IDLE_TIMEOUT,
        CONNECT_TIMEOUT,
        BAD_HELLO,
        UNAUTHORIZED,
        TOKEN_EXPIRED,
        ORIGIN_FORBIDDEN,
    ] {
        assert!(DOC.contains(&format!("| {code} |")), "close code {code} is not in PROTOCOL.md");
        let told = DOC.lines().find(|l| l.starts_with(&format!("| {code} |"))).unwrap();
        assert_eq!(told.contains("do not retry"), !retry_allowed(code), "retry advice for {code}: {told}");
    }
}
