//! `frames`: the JSON decoders of client and server frames (`ClientFrame::decode`,
//! `ServerFrame::decode`, with the duplicate-refusing bodies of `strict_json`).
//!
//! Why it matters: every byte a client sends reaches `ClientFrame::decode` first, on a
//! server shared by everyone, and every byte a server (or a proxy in between) sends
//! reaches `ServerFrame::decode` in every client. A panic there is a crash for all of
//! them. Whatever decodes must also re-encode and decode to the same frame: a frame
//! that changes on its way through encode and decode is one that a relay, a log or a
//! replay would change too. And a refusal must carry the code `PROTOCOL.md` promises:
//! `malformed_json` exactly when the text is not JSON, `invalid_frame` otherwise.

use arbitrary::Unstructured;
use std::fmt::Debug;

use serde::Serialize;
use serde::de::IgnoredAny;
use tether_shared::{ClientFrame, ErrorCode, ServerFrame};

use crate::engine::{Outcome, Target};
use crate::generate::{self, Loose};

/// The target.
pub struct Frames;

impl Target for Frames {
    fn name(&self) -> &'static str {
        "frames"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        examples().into_iter().map(|text| [&[0u8][..], text.as_bytes()].concat()).collect()
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        let text = text_of(input);
        let mut outcome = Outcome::default();
        check_client(&text, &mut outcome)?;
        check_server(&text, &mut outcome)?;
        Ok(outcome)
    }
}

/// One valid frame of several kinds, as text.
pub fn examples() -> Vec<String> {
    [
        r#"{"type":"hello","v":1,"name":"Ada"}"#,
        r#"{"type":"join","room":"general","since":3}"#,
        r#"{"type":"publish","id":"m1","room":"general","body":{"text":"hi","n":[1,-2,3.5]},"priority":2}"#,
        r#"{"type":"resume","rooms":[{"room":"a","since":1},{"room":"b","history":5}]}"#,
        r#"{"type":"state","room":"board","key":"cursor","value":{"x":120,"y":48}}"#,
        r#"{"type":"echo","body":{"a":{"a":[{"a":1.5,"b":null}]},"b":-2}}"#,
        r##"{"type":"welcome","v":1,"session":"c","resume_token":"rt","heartbeat_ms":5000,"limits":{"max_body_bytes":1,"publish_per_sec":1,"publish_burst":1,"max_rooms":1},"user":{"id":"u","name":"U","color":"#000"}}"##,
        r##"{"type":"message","room":"general","seq":45,"id":"m","from":{"id":"u","name":"U","color":"#1"},"body":{"text":"hi"},"ts":1764650000000}"##,
        r##"{"type":"presence","room":"r","joined":[{"id":"u","name":"U","color":"#1"}],"left":["v"],"count":1}"##,
        r#"{"type":"error","code":"invalid_room","message":"m","about":"no spaces"}"#,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// The text an input stands for. The first byte picks how the rest is read: as the
/// text itself; as a client frame, a server frame or a frame-like object, each built
/// from the bytes and loosened (fields dropped, doubled, mistyped).
pub fn text_of(input: &[u8]) -> String {
    let (mode, rest) = super::mode(input, 4);
    let mut u = Unstructured::new(rest);
    let tree = match mode {
        0 => return String::from_utf8_lossy(rest).into_owned(),
        1 => generate::client_frame(&mut u).map(|frame| Loose::of(&frame)),
        2 => generate::server_frame(&mut u).map(|frame| Loose::of(&frame)),
        _ => generate::frame_like(&mut u),
    };
    let mut tree = tree.unwrap_or(Loose::Obj(Vec::new()));
    let _ = generate::loosen(&mut u, &mut tree);
    tree.to_json()
}

/// `ClientFrame::decode` on `text`: a round trip for what decodes, the right code for
/// what does not.
pub fn check_client(text: &str, outcome: &mut Outcome) -> Result<(), String> {
    match ClientFrame::decode(text) {
        Ok(frame) => {
            outcome.label(format!("client {}", frame.kind()));
            let encoded = frame.encode();
            match ClientFrame::decode(&encoded) {
                Ok(again) => {
                    let trip = format!(
                        "a client frame changed on its way through encode and decode\n  text:  {text}"
                    );
                    if compare(&frame, &again, &trip, outcome)? && again.encode() != encoded {
                        return Err(format!(
                            "a client frame encodes two ways: {encoded} then {}",
                            again.encode()
                        ));
                    }
                    Ok(())
                }
                Err(error) => Err(format!(
                    "a decoded client frame encodes to text that does not decode ({error})\n  text: {text}\n  encoded: {encoded}"
                )),
            }
        }
        Err(error) => {
            outcome.label(format!("client {}", code_name(error.code)));
            outcome.detail(&error.to_string());
            // JSON as RFC 8259 writes it: serde's IgnoredAny reads the grammar without
            // building values, so `1e999` or a lone surrogate escape count as JSON.
            let json = serde_json::from_str::<IgnoredAny>(text).is_ok();
            match error.code {
                ErrorCode::MalformedJson if json => {
                    Err(format!("malformed_json for text that is JSON ({error})\n  text: {text}"))
                }
                ErrorCode::InvalidFrame if !json => {
                    Err(format!("invalid_frame for text that is not JSON ({error})\n  text: {text}"))
                }
                ErrorCode::MalformedJson | ErrorCode::InvalidFrame => Ok(()),
                other => Err(format!("decode answered {other:?}, neither malformed_json nor invalid_frame")),
            }
        }
    }
}

/// `ServerFrame::decode` on `text`: a round trip for what decodes.
pub fn check_server(text: &str, outcome: &mut Outcome) -> Result<(), String> {
    match ServerFrame::decode(text) {
        Ok(frame) => {
            outcome.label(format!("server {}", frame.kind()));
            let encoded = frame.encode();
            match ServerFrame::decode(&encoded) {
                Ok(again) => {
                    let trip = format!(
                        "a server frame changed on its way through encode and decode\n  text:  {text}"
                    );
                    compare(&frame, &again, &trip, outcome).map(drop)
                }
                Err(error) => Err(format!(
                    "a decoded server frame encodes to text that does not decode ({error})\n  text: {text}\n  encoded: {encoded}"
                )),
            }
        }
        Err(error) => {
            outcome.label(format!("server refused ({:?})", error.classify()));
            outcome.detail(&error.to_string());
            Ok(())
        }
    }
}

/// The code as the wire spells it.
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Compares a value with what a trip through JSON (or MessagePack) made of it: they
/// must be the same, floats included to the last bit (the workspace parses JSON with
/// serde_json's `float_roundtrip`), or it fails with `what`. Returns `true`, so
/// callers read as the checks they are.
pub fn compare<T: Serialize + Debug>(
    first: &T,
    then: &T,
    what: &str,
    _outcome: &mut Outcome,
) -> Result<bool, String> {
    match (serde_json::to_value(first), serde_json::to_value(then)) {
        (Ok(a), Ok(b)) if a == b => Ok(true),
        _ => Err(format!("{what}\n  first: {first:?}\n  then:  {then:?}")),
    }
}
