//! Structure-aware generators: strings, JSON values and frames shaped like what Tether
//! reads, built from the fuzzer's bytes with [`arbitrary::Unstructured`].
//!
//! A frame is made typed (so it starts out meaningful), then loosened into a [`Loose`]
//! tree, where edits that no typed value can express happen: a field dropped or named
//! twice, a number too big for its type, a string with a lone surrogate, nesting past
//! any parser's limit. The tree is written out as JSON text or as MessagePack, the
//! latter with the encoding's own freedoms (wider integers than needed, binary for
//! strings, integer keys, extension types).

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};
use tether_shared::frame::{CLIENT_KINDS, SERVER_KINDS};
use tether_shared::{
    ClientFrame, ErrorCode, Limits, Millis, PresenceMode, ReceiptKind, RejectCode, RoomCursor, ServerFrame,
    User,
};

/// Valid room names: most generated frames use one, so that joins succeed and what
/// follows a join gets exercised.
pub const ROOMS: &[&str] = &["general", "fuzz", "r1", "team-7", "org:42.chat_main", "a"];

/// Strings with a meaning somewhere in Tether, or a history of trouble in parsers.
const WORDS: &[&str] = &[
    "",
    "general",
    "fuzz",
    "m1",
    "u_ada",
    "Ada",
    "*",
    "team-*",
    "*-support",
    "has space",
    "emoji😀",
    "slash/room",
    "\u{0}",
    "\"",
    "\\",
    "é",
    "tether.v1.msgpack",
    "x.y",
    "..",
    "null",
    "\u{feff}",
    "\u{202e}",
];

/// Field names of every frame, client and server.
pub const FIELDS: &[&str] = &[
    "type",
    "v",
    "token",
    "name",
    "resume_token",
    "room",
    "since",
    "history",
    "rooms",
    "id",
    "body",
    "priority",
    "active",
    "kind",
    "seq",
    "key",
    "value",
    "after",
    "limit",
    "nonce",
    "session",
    "heartbeat_ms",
    "limits",
    "user",
    "members",
    "count",
    "presence",
    "ts",
    "from",
    "code",
    "message",
    "about",
    "to",
    "complete",
    "oldest",
    "joined",
    "left",
    "snapshot",
    "next",
    "expires_at",
    "epoch",
    "color",
    "max_body_bytes",
    "publish_per_sec",
];

/// JSON text that no typed value produces.
const RAW: &[&str] = &[
    "1e999",
    "-1",
    "18446744073709551616",
    "18446744073709551615",
    "-9223372036854775809",
    "4294967296",
    "256",
    "1.5",
    "-0",
    "1e-400",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\u0000\"",
    "\"\\/\"",
    "[]",
    "{}",
    "null",
    "true",
    "0",
    "\"x\"",
    "[1,2,3]",
    "{\"a\":1,\"a\":2}",
    "\"delivered\"",
    "\"read\"",
    "\"full\"",
    "\"count\"",
    "\"rate_limited\"",
];

/// A string: a meaningful word, arbitrary text, or a run of one character around a
/// length limit (64 for rooms and ids, 32 for names).
pub fn string(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=12)? {
        0..=3 => (*u.choose(WORDS)?).to_owned(),
        4..=6 => u.arbitrary::<String>()?,
        7 => {
            let c = *u.choose(&['x', 'é', '😀', '\0', '"', '\\', '\n'])?;
            std::iter::repeat_n(c, u.int_in_range(0..=80)?).collect()
        }
        8 => format!("{}{}", u.choose(WORDS)?, u.int_in_range(0..=999u32)?),
        9 => "x".repeat(u.int_in_range(60..=70)?),
        10 => format!("m{}", u.int_in_range(0..=20u32)?),
        _ => (*u.choose(ROOMS)?).to_owned(),
    })
}

/// A room name: mostly valid, sometimes not.
pub fn room(u: &mut Unstructured) -> Result<String> {
    if u.ratio(4, 5)? { Ok((*u.choose(ROOMS)?).to_owned()) } else { string(u) }
}

/// A message id: mostly short ones from a small set (so that ids repeat and dedupe is
/// exercised), sometimes any string.
pub fn id(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3, 4)? { Ok(format!("m{}", u.int_in_range(0..=9u32)?)) } else { string(u) }
}

/// A number of the widths frames use, often at an edge.
pub fn number(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=5)? {
        0 => 0,
        1 => u64::MAX,
        2 => u64::from(u32::MAX),
        3 => u.int_in_range(0..=100)?,
        4 => u.int_in_range(0..=2_000_000)?,
        _ => u.arbitrary()?,
    })
}

/// Any JSON value, nested up to `depth`.
pub fn json(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let last = if depth == 0 { 5 } else { 7 };
    Ok(match u.int_in_range(0..=last)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => match u.int_in_range(0..=2)? {
            0 => Value::from(u.arbitrary::<i64>()?),
            1 => Value::from(u.arbitrary::<u64>()?),
            _ => Value::from(u.int_in_range(-3..=3i64)?),
        },
        3 => {
            let special = [0.1, -0.0, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308];
            let float =
                if u.ratio(1, 2)? { *u.choose(&special)? } else { f64::from_bits(u.arbitrary::<u64>()?) };
            Number::from_f64(float).map_or(Value::Null, Value::Number)
        }
        4 | 5 => Value::String(string(u)?),
        6 => {
            let len = u.int_in_range(0..=4)?;
            Value::Array((0..len).map(|_| json(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=4)? {
                let key = if u.ratio(1, 2)? { (*u.choose(FIELDS)?).to_owned() } else { string(u)? };
                map.insert(key, json(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// A user as servers describe them.
pub fn user(u: &mut Unstructured) -> Result<User> {
    Ok(User::new(string(u)?, string(u)?, string(u)?))
}

fn option<T>(u: &mut Unstructured, make: impl FnOnce(&mut Unstructured) -> Result<T>) -> Result<Option<T>> {
    if u.arbitrary()? { Ok(Some(make(u)?)) } else { Ok(None) }
}

/// A list of up to `max` items.
fn list<T>(
    u: &mut Unstructured,
    max: usize,
    mut make: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    (0..u.int_in_range(0..=max)?).map(|_| make(u)).collect()
}

/// The announced limits, any numbers.
pub fn limits(u: &mut Unstructured) -> Result<Limits> {
    Ok(Limits {
        max_body_bytes: u.arbitrary()?,
        publish_per_sec: u.arbitrary()?,
        publish_burst: u.arbitrary()?,
        max_rooms: u.arbitrary()?,
        max_message_bytes: u.arbitrary()?,
        frames_per_sec: u.arbitrary()?,
        max_strikes: u.arbitrary()?,
        max_members: u.arbitrary()?,
        send_queue: u.arbitrary()?,
        connections_per_address: u.arbitrary()?,
        dedupe_window_ms: u.arbitrary()?,
        state_per_sec: u.arbitrary()?,
        max_state_bytes: u.arbitrary()?,
    })
}

fn receipt_kind(u: &mut Unstructured) -> Result<ReceiptKind> {
    Ok(*u.choose(&[ReceiptKind::Delivered, ReceiptKind::Read])?)
}

/// Every error code.
pub const ERROR_CODES: &[ErrorCode] = ErrorCode::ALL;

/// Every rejection code.
pub const REJECT_CODES: &[RejectCode] = RejectCode::ALL;

/// Any client frame.
pub fn client_frame(u: &mut Unstructured) -> Result<ClientFrame> {
    Ok(match u.int_in_range(0..=11)? {
        0 => ClientFrame::Hello {
            v: if u.ratio(7, 8)? { 1 } else { u.arbitrary()? },
            token: option(u, string)?,
            name: option(u, string)?,
            resume_token: option(u, string)?,
        },
        1 => ClientFrame::Join {
            room: room(u)?,
            since: option(u, number)?,
            history: option(u, |u| Ok(number(u)? as u32))?,
        },
        2 => ClientFrame::Resume {
            rooms: list(u, 4, |u| {
                Ok(RoomCursor {
                    room: room(u)?,
                    since: option(u, number)?,
                    history: option(u, |u| Ok(number(u)? as u32))?,
                })
            })?,
        },
        3 => ClientFrame::Leave { room: room(u)? },
        4 => ClientFrame::Publish {
            id: id(u)?,
            room: room(u)?,
            body: json(u, 3)?,
            priority: if u.arbitrary()? { 0 } else { u.arbitrary()? },
        },
        5 => ClientFrame::Typing { room: room(u)?, active: u.arbitrary()? },
        6 => ClientFrame::Receipt { room: room(u)?, kind: receipt_kind(u)?, seq: number(u)? },
        7 => ClientFrame::State { room: room(u)?, key: string(u)?, value: json(u, 3)? },
        8 => ClientFrame::Members {
            room: room(u)?,
            after: option(u, string)?,
            limit: option(u, |u| Ok(number(u)? as u32))?,
        },
        9 => ClientFrame::Ping { nonce: number(u)? },
        10 => ClientFrame::Refresh { token: string(u)? },
        11 => ClientFrame::Echo { body: json(u, 3)? },
        _ => {
            ClientFrame::Request { id: id(u)?, room: room(u)?, body: json(u, 3)?, idempotent: u.arbitrary()? }
        }
    })
}

/// Any server frame.
pub fn server_frame(u: &mut Unstructured) -> Result<ServerFrame> {
    Ok(match u.int_in_range(0..=18)? {
        0 => ServerFrame::Welcome {
            v: u.arbitrary()?,
            session: string(u)?,
            resume_token: string(u)?,
            heartbeat_ms: number(u)?,
            limits: limits(u)?,
            user: user(u)?,
        },
        1 => ServerFrame::Joined {
            room: room(u)?,
            seq: number(u)?,
            epoch: string(u)?,
            members: list(u, 3, user)?,
            count: u.arbitrary()?,
            presence: *u.choose(&[PresenceMode::Full, PresenceMode::Count])?,
        },
        2 => ServerFrame::Left { room: room(u)? },
        3 => ServerFrame::Ack { id: id(u)?, room: room(u)?, seq: number(u)?, ts: Millis(number(u)?) },
        4 => ServerFrame::Reject {
            id: id(u)?,
            code: *u.choose(REJECT_CODES)?,
            message: string(u)?,
            refusal: None,
        },
        5 => ServerFrame::Message {
            room: room(u)?,
            seq: number(u)?,
            id: id(u)?,
            from: user(u)?,
            body: json(u, 3)?,
            ts: Millis(number(u)?),
        },
        6 => ServerFrame::Replayed {
            room: room(u)?,
            to: number(u)?,
            complete: u.arbitrary()?,
            oldest: number(u)?,
        },
        7 => ServerFrame::Presence {
            room: room(u)?,
            joined: list(u, 3, user)?,
            left: list(u, 3, string)?,
            count: u.arbitrary()?,
            snapshot: u.arbitrary()?,
        },
        8 => ServerFrame::PresenceCount { room: room(u)?, count: u.arbitrary()? },
        9 => ServerFrame::Members {
            room: room(u)?,
            members: list(u, 3, user)?,
            next: option(u, string)?,
            count: u.arbitrary()?,
        },
        10 => ServerFrame::Typing { room: room(u)?, user: user(u)?, active: u.arbitrary()? },
        11 => ServerFrame::State { room: room(u)?, from: user(u)?, key: string(u)?, value: json(u, 3)? },
        12 => {
            ServerFrame::Receipt { room: room(u)?, user: string(u)?, kind: receipt_kind(u)?, seq: number(u)? }
        }
        13 => ServerFrame::TokenExpiring { expires_at: number(u)? },
        14 => ServerFrame::Refreshed { expires_at: number(u)? },
        15 => ServerFrame::Pong { nonce: number(u)? },
        16 => ServerFrame::Echo { body: json(u, 3)? },
        17 => ServerFrame::Reply { id: id(u)?, room: room(u)?, body: json(u, 3)? },
        _ => ServerFrame::Error {
            code: *u.choose(ERROR_CODES)?,
            message: string(u)?,
            about: option(u, string)?,
            refusal: None,
        },
    })
}

/// An object with a `type` (any frame's, or none known) and fields named like frame
/// fields, holding anything.
pub fn frame_like(u: &mut Unstructured) -> Result<Loose> {
    let mut entries = Vec::new();
    if u.ratio(7, 8)? {
        let kind = match u.int_in_range(0..=2)? {
            0 => *u.choose(CLIENT_KINDS)?,
            1 => *u.choose(SERVER_KINDS)?,
            _ => "launch",
        };
        entries.push(("type".to_owned(), Loose::Str(kind.to_owned())));
    }
    for _ in 0..u.int_in_range(0..=6)? {
        let key = (*u.choose(FIELDS)?).to_owned();
        let value = if u.ratio(1, 3)? {
            Loose::Raw((*u.choose(RAW)?).to_owned())
        } else {
            Loose::from_value(&json(u, 2)?)
        };
        entries.push((key, value));
    }
    Ok(Loose::Obj(entries))
}

/// A JSON-like tree in which anything can be written: objects keep their entries as a
/// list (so a key may appear twice), and `Raw` holds text written verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum Loose {
    /// Written as it is: a number, `null`, a literal, or something that is not JSON.
    Raw(String),
    /// A string, escaped when written.
    Str(String),
    /// An array.
    Arr(Vec<Loose>),
    /// An object, entries in order, duplicates allowed.
    Obj(Vec<(String, Loose)>),
    /// `[[[…1…]]]`, arrays nested this deep: written flat, without recursion, because
    /// the depth is the point.
    Deep(usize),
}

impl Loose {
    /// The tree of a JSON value.
    pub fn from_value(value: &Value) -> Loose {
        match value {
            Value::String(text) => Loose::Str(text.clone()),
            Value::Array(items) => Loose::Arr(items.iter().map(Loose::from_value).collect()),
            Value::Object(map) => {
                Loose::Obj(map.iter().map(|(k, v)| (k.clone(), Loose::from_value(v))).collect())
            }
            other => Loose::Raw(other.to_string()),
        }
    }

    /// The tree of anything serde can serialise (a frame).
    pub fn of(value: &impl serde::Serialize) -> Loose {
        Loose::from_value(&serde_json::to_value(value).expect("frames serialise"))
    }

    /// JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Loose::Raw(text) => out.push_str(text),
            Loose::Deep(depth) => {
                out.push_str(&"[".repeat(*depth));
                out.push('1');
                out.push_str(&"]".repeat(*depth));
            }
            Loose::Str(text) => out.push_str(&Value::String(text.clone()).to_string()),
            Loose::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Loose::Obj(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// MessagePack, with some of the encoding's freedoms taken at random.
    pub fn to_msgpack(&self, u: &mut Unstructured) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_msgpack(u, &mut out)?;
        Ok(out)
    }

    fn write_msgpack(&self, u: &mut Unstructured, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Loose::Raw(text) => match serde_json::from_str::<Value>(text) {
                Ok(value) => msgpack_value(u, &value, out)?,
                Err(_) if u.ratio(1, 2)? => out.extend_from_slice(u.choose(MSGPACK_ODDITIES)?),
                Err(_) => msgpack_str(u, text, out)?,
            },
            Loose::Str(text) => msgpack_str(u, text, out)?,
            Loose::Deep(depth) => {
                // Fixed-size arrays of one, or (now and then) maps of one.
                let map = u.ratio(1, 8)?;
                for _ in 0..*depth {
                    if map {
                        out.extend_from_slice(&[0x81, 0xa1, b'a']);
                    } else {
                        out.push(0x91);
                    }
                }
                out.push(0x01);
            }
            Loose::Arr(items) => {
                msgpack_len(u, items.len(), [0x90, 0xdc, 0xdd], 16, out)?;
                for item in items {
                    item.write_msgpack(u, out)?;
                }
            }
            Loose::Obj(entries) => {
                msgpack_len(u, entries.len(), [0x80, 0xde, 0xdf], 16, out)?;
                for (key, value) in entries {
                    if u.ratio(1, 40)? {
                        msgpack_int(u, key.len() as i128, out)?;
                    } else {
                        msgpack_str(u, key, out)?;
                    }
                    value.write_msgpack(u, out)?;
                }
            }
        }
        Ok(())
    }
}

/// MessagePack that no JSON value becomes: the byte never used, extension types,
/// lengths far past the end, a float cut short.
const MSGPACK_ODDITIES: &[&[u8]] = &[
    &[0xc1],
    &[0xd4, 0x01, 0x00],
    &[0xd6, 0xff, 0, 0, 0, 0],
    &[0xc7, 0x00, 0x05],
    &[0xdd, 0xff, 0xff, 0xff, 0xff],
    &[0xdf, 0xff, 0xff, 0xff, 0xff],
    &[0xdb, 0xff, 0xff, 0xff, 0xff],
    &[0xc6, 0x00, 0x00, 0x00, 0x02, 0xff, 0xfe],
    &[0xcb, 0x7f],
    &[0xca, 0x7f, 0xc0, 0x00, 0x00],
    &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1],
];

fn msgpack_value(u: &mut Unstructured, value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                msgpack_int(u, i128::from(i), out)?;
            } else if let Some(i) = n.as_u64() {
                msgpack_int(u, i128::from(i), out)?;
            } else {
                let float = n.as_f64().unwrap_or_default();
                if u.ratio(1, 4)? {
                    out.push(0xca);
                    out.extend_from_slice(&(float as f32).to_be_bytes());
                } else {
                    out.push(0xcb);
                    out.extend_from_slice(&float.to_be_bytes());
                }
            }
        }
        Value::String(text) => msgpack_str(u, text, out)?,
        other => Loose::from_value(other).write_msgpack(u, out)?,
    }
    Ok(())
}

/// An integer, in its smallest encoding or (sometimes) a wider one.
fn msgpack_int(u: &mut Unstructured, value: i128, out: &mut Vec<u8>) -> Result<()> {
    let wide = u.ratio(1, 8)?;
    if value >= 0 {
        let value = value as u64;
        if wide {
            out.push(0xcf);
            out.extend_from_slice(&value.to_be_bytes());
        } else if value < 128 {
            out.push(value as u8);
        } else if value <= 0xff {
            out.extend_from_slice(&[0xcc, value as u8]);
        } else if value <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        } else if value <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&value.to_be_bytes());
        }
    } else {
        let value = value as i64;
        if wide {
            out.push(0xd3);
            out.extend_from_slice(&value.to_be_bytes());
        } else if value >= -32 {
            out.push(value as u8);
        } else if value >= i64::from(i8::MIN) {
            out.extend_from_slice(&[0xd0, value as u8]);
        } else if value >= i64::from(i16::MIN) {
            out.push(0xd1);
            out.extend_from_slice(&(value as i16).to_be_bytes());
        } else if value >= i64::from(i32::MIN) {
            out.push(0xd2);
            out.extend_from_slice(&(value as i32).to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
    Ok(())
}

/// A length header: the fix form below `fix_max`, else 16 or 32 bits (sometimes wider
/// than needed).
fn msgpack_len(
    u: &mut Unstructured,
    len: usize,
    [fix, l16, l32]: [u8; 3],
    fix_max: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let wide = u.ratio(1, 10)?;
    if len < fix_max && !wide {
        out.push(fix | len as u8);
    } else if len <= 0xffff && !(wide && u.arbitrary()?) {
        out.push(l16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(l32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    Ok(())
}

/// A string as `str` (or, now and then, as `bin`).
fn msgpack_str(u: &mut Unstructured, text: &str, out: &mut Vec<u8>) -> Result<()> {
    let bytes = text.as_bytes();
    if u.ratio(1, 30)? {
        out.push(0xc4);
        out.push(bytes.len().min(255) as u8);
        out.extend_from_slice(&bytes[..bytes.len().min(255)]);
        return Ok(());
    }
    if bytes.len() < 32 && u.ratio(7, 8)? {
        out.push(0xa0 | bytes.len() as u8);
    } else if bytes.len() <= 0xff {
        out.extend_from_slice(&[0xd9, bytes.len() as u8]);
    } else if bytes.len() <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
    Ok(())
}

/// Up to three edits anywhere in the tree: a field dropped, named twice, added or
/// renamed; a value replaced by raw text or another value; a value wrapped, or nested
/// deeper than parsers allow.
pub fn loosen(u: &mut Unstructured, tree: &mut Loose) -> Result<()> {
    for _ in 0..u.int_in_range(0..=3)? {
        edit(u, tree)?;
    }
    Ok(())
}

fn edit(u: &mut Unstructured, node: &mut Loose) -> Result<()> {
    match node {
        Loose::Obj(entries) if !entries.is_empty() && u.ratio(1, 2)? => {
            let at = u.int_in_range(0..=entries.len() - 1)?;
            return edit(u, &mut entries[at].1);
        }
        Loose::Arr(items) if !items.is_empty() && u.ratio(1, 2)? => {
            let at = u.int_in_range(0..=items.len() - 1)?;
            return edit(u, &mut items[at]);
        }
        _ => {}
    }
    match (u.int_in_range(0..=7)?, &mut *node) {
        (0, Loose::Obj(entries)) if !entries.is_empty() => {
            let at = u.int_in_range(0..=entries.len() - 1)?;
            entries.remove(at);
        }
        (1, Loose::Obj(entries)) if !entries.is_empty() => {
            let at = u.int_in_range(0..=entries.len() - 1)?;
            let mut twice = entries[at].clone();
            if u.arbitrary()? {
                twice.1 = Loose::from_value(&json(u, 1)?);
            }
            let to = u.int_in_range(0..=entries.len())?;
            entries.insert(to, twice);
        }
        (2, Loose::Obj(entries)) => {
            let key = if u.ratio(3, 4)? { (*u.choose(FIELDS)?).to_owned() } else { string(u)? };
            let value = Loose::from_value(&json(u, 2)?);
            let to = u.int_in_range(0..=entries.len())?;
            entries.insert(to, (key, value));
        }
        (3, Loose::Obj(entries)) if !entries.is_empty() => {
            let at = u.int_in_range(0..=entries.len() - 1)?;
            entries[at].0 = (*u.choose(FIELDS)?).to_owned();
        }
        (4, _) => *node = Loose::Raw((*u.choose(RAW)?).to_owned()),
        (5, _) => *node = Loose::from_value(&json(u, 2)?),
        (6, _) if u.ratio(1, 4)? => {
            // Nested past the JSON parser's limit of 128 (or MessagePack's of 1024).
            let depth =
                *u.choose(&[100, 126, 127, 128, 129, 200, 1_000, 1_022, 1_023, 1_024, 1_025, 5_000])?;
            *node = Loose::Deep(depth);
        }
        (6, _) => *node = Loose::Arr(vec![node.clone()]),
        (_, Loose::Str(text)) => *text = string(u)?,
        _ => *node = Loose::Str(string(u)?),
    }
    Ok(())
}
