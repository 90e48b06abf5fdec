//! `msgpack`: the MessagePack decoders (`ClientFrame::decode_msgpack`,
//! `ServerFrame::decode_msgpack`).
//!
//! Why it matters: a connection that asked for `tether.v1.msgpack` hands every binary
//! message straight to these decoders, on the server and in every client, and binary
//! input is where length prefixes can claim gigabytes and nesting can run deep. They
//! must never panic; what decodes must survive a MessagePack round trip; and a frame
//! must mean the same in both encodings: whatever decodes from MessagePack means the
//! same written as JSON, and every valid JSON frame comes back unchanged through
//! MessagePack, while a MessagePack frame cut short is refused, never half-read.

use arbitrary::Unstructured;
use tether_shared::{ClientFrame, ErrorCode, ServerFrame};

use crate::engine::{Outcome, Target};
use crate::generate::{self, Loose};
use crate::targets::frames;

/// The target.
pub struct MessagePack;

impl Target for MessagePack {
    fn name(&self) -> &'static str {
        "msgpack"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for text in frames::examples() {
            if let Ok(frame) = ClientFrame::decode(&text) {
                seeds.push([&[0u8][..], &frame.encode_msgpack()].concat());
            }
            if let Ok(frame) = ServerFrame::decode(&text) {
                seeds.push([&[0u8][..], &frame.encode_msgpack()].concat());
            }
            seeds.push([&[4u8][..], &[0u8][..], text.as_bytes()].concat());
        }
        seeds
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        let (mode, rest) = super::mode(input, 5);
        let mut outcome = Outcome::default();
        if mode == 4 {
            return json_through_msgpack(&frames::text_of(rest), &mut outcome).map(|()| outcome);
        }
        let mut u = Unstructured::new(rest);
        let tree = match mode {
            0 => None,
            1 => generate::client_frame(&mut u).ok().map(|frame| Loose::of(&frame)),
            2 => generate::server_frame(&mut u).ok().map(|frame| Loose::of(&frame)),
            _ => generate::frame_like(&mut u).ok(),
        };
        let bytes = match tree {
            None => rest.to_vec(),
            Some(mut tree) => {
                let _ = generate::loosen(&mut u, &mut tree);
                tree.to_msgpack(&mut u).unwrap_or_default()
            }
        };
        check_bytes(&bytes, &mut outcome)?;
        Ok(outcome)
    }
}

/// Both decoders on `bytes`.
pub fn check_bytes(bytes: &[u8], outcome: &mut Outcome) -> Result<(), String> {
    match ClientFrame::decode_msgpack(bytes) {
        Ok(frame) => {
            outcome.label(format!("client {}", frame.kind()));
            let packed = frame.encode_msgpack();
            match ClientFrame::decode_msgpack(&packed) {
                Ok(again) if again == frame => {}
                other => {
                    return Err(format!(
                        "a client frame changed through MessagePack: {frame:?} became {other:?}\n  bytes: {bytes:02x?}"
                    ));
                }
            }
            match ClientFrame::decode(&frame.encode()) {
                Ok(again) => {
                    let what = format!(
                        "a client frame from MessagePack means something else as JSON: {}",
                        frame.encode()
                    );
                    frames::compare(&frame, &again, &what, outcome)?;
                }
                Err(error) => {
                    return Err(format!("a client frame from MessagePack is not JSON ({error}): {frame:?}"));
                }
            }
        }
        Err(error) => {
            outcome.label(format!("client {}", frames::code_name(error.code)));
            outcome.detail(&error.to_string());
            if !matches!(error.code, ErrorCode::MalformedJson | ErrorCode::InvalidFrame) {
                return Err(format!("decode_msgpack answered {:?}", error.code));
            }
        }
    }
    match ServerFrame::decode_msgpack(bytes) {
        Ok(frame) => {
            outcome.label(format!("server {}", frame.kind()));
            match ServerFrame::decode_msgpack(&frame.encode_msgpack()) {
                Ok(again) if again == frame => {}
                other => {
                    return Err(format!(
                        "a server frame changed through MessagePack: {frame:?} became {other:?}"
                    ));
                }
            }
            match ServerFrame::decode(&frame.encode()) {
                Ok(again) => {
                    let what = format!(
                        "a server frame from MessagePack means something else as JSON: {}",
                        frame.encode()
                    );
                    frames::compare(&frame, &again, &what, outcome)?;
                }
                Err(error) => {
                    return Err(format!("a server frame from MessagePack is not JSON ({error}): {frame:?}"));
                }
            }
        }
        Err(error) => {
            outcome.label("server refused");
            outcome.detail(&error.to_string());
        }
    }
    Ok(())
}

/// A JSON frame through MessagePack and back: the same frame, and every truncation of
/// its MessagePack refused.
pub fn json_through_msgpack(text: &str, outcome: &mut Outcome) -> Result<(), String> {
    if let Ok(frame) = ClientFrame::decode(text) {
        outcome.label(format!("json client {} through msgpack", frame.kind()));
        let packed = frame.encode_msgpack();
        match ClientFrame::decode_msgpack(&packed) {
            Ok(again) if again == frame => {}
            other => {
                return Err(format!(
                    "a JSON client frame changed through MessagePack: {frame:?} became {other:?}"
                ));
            }
        }
        for cut in cuts(packed.len()) {
            if let Ok(half) = ClientFrame::decode_msgpack(&packed[..cut]) {
                return Err(format!("{cut} of {} bytes of a client frame decoded as {half:?}", packed.len()));
            }
        }
    }
    if let Ok(frame) = ServerFrame::decode(text) {
        outcome.label(format!("json server {} through msgpack", frame.kind()));
        let packed = frame.encode_msgpack();
        match ServerFrame::decode_msgpack(&packed) {
            Ok(again) if again == frame => {}
            other => {
                return Err(format!(
                    "a JSON server frame changed through MessagePack: {frame:?} became {other:?}"
                ));
            }
        }
        for cut in cuts(packed.len()) {
            if let Ok(half) = ServerFrame::decode_msgpack(&packed[..cut]) {
                return Err(format!("{cut} of {} bytes of a server frame decoded as {half:?}", packed.len()));
            }
        }
    }
    Ok(())
}

/// Where to cut a frame of `len` bytes: everywhere when it is short, else 64 places
/// spread over it and the last few bytes.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let step = (len / 64).max(1);
    (0..len).step_by(step).chain(len.saturating_sub(4)..len)
}
