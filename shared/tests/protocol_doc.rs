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
    let name = |code: Value| code.as_str().expect("codes are strings").to_owned();
    let errors = tether_shared::ErrorCode::ALL.iter().map(|code| name(serde_json::to_value(code).unwrap()));
    let rejects = tether_shared::RejectCode::ALL.iter().map(|code| name(serde_json::to_value(code).unwrap()));
    let (errors, rejects): (Vec<String>, Vec<String>) = (errors.collect(), rejects.collect());
    assert!(errors.len() >= 15 && rejects.len() >= 6, "every code is walked: {errors:?} {rejects:?}");
    for code in errors.iter().chain(&rejects) {
        assert!(DOC.contains(&format!("| `{code}` |")), "code {code} is not in PROTOCOL.md's tables");
    }
}

#[test]
fn every_close_code_is_documented() {
    use tether_shared::close::{ALL, retry_allowed};
    assert!(ALL.len() >= 20, "every close code is walked: {ALL:?}");
    for &code in ALL {
        let told = DOC.lines().find(|l| l.starts_with(&format!("| {code} |")));
        let told = told.unwrap_or_else(|| panic!("close code {code} is not in PROTOCOL.md"));
        let stop = told.contains("do not retry");
        assert_eq!(stop, !retry_allowed(code), "retry advice for {code}: {told}");
    }
}
