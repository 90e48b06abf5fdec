//! `server-api`: the server API (`/api/v1/…`, behind `--api-key`): every call with
//! right and wrong keys, right and wrong methods, query strings with junk numbers,
//! and bodies built as the calls expect them and then loosened (fields dropped,
//! doubled, mistyped), or not JSON at all.
//!
//! Why it matters: the app's backend talks to Tether through it, with its own bugs,
//! and the dashboard exposes it to a browser. `API.md` promises that every answer is
//! JSON, errors included (`{"error", "message"}` with a code from its table and the
//! status that goes with it), that `invalid_json` means the body is not JSON, and that
//! the server never answers with a 500. Here each request's answer is worked out from
//! those rules and compared, and a well-behaved client must still publish afterwards.

use arbitrary::Unstructured;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tether_server::api::calls::{BroadcastRequest, PublishRequest, Sender};
use tether_shared::frame::valid_room_name;
use tether_shared::strict_json;

use super::http::{self, Request};
use super::{API_KEY, Live, PATIENCE};
use crate::engine::{Outcome, Target};
use crate::generate::{self, Loose};

/// The target.
pub struct ServerApi {
    live: Live,
}

impl ServerApi {
    /// Starts the servers.
    pub fn start() -> ServerApi {
        ServerApi { live: Live::start() }
    }
}

impl Target for ServerApi {
    fn name(&self) -> &'static str {
        "server-api"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        vec![vec![0; 16], vec![0; 200], vec![1; 200]]
    }

    fn max_len(&self) -> usize {
        4096
    }

    fn shrink_runs(&self) -> usize {
        300
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        let mut u = Unstructured::new(input);
        let mut requests = Vec::new();
        for _ in 0..u.int_in_range(1..=3).unwrap_or(1) {
            match request(&mut u) {
                Ok(request) => requests.push(request),
                Err(_) => break,
            }
        }
        let addr = self.live.dev.addr();
        let mut outcome = Outcome::default();
        self.live.runtime.block_on(async {
            for request in &requests {
                let response = http::send(addr, request, PATIENCE).await?;
                let (status, code) = expected(request);
                let body = response.text();
                let context = || {
                    format!(
                        "\n  request: {} {} {:?}\n  body: {}",
                        request.method,
                        request.target,
                        request.headers,
                        abbreviate(&String::from_utf8_lossy(&request.body))
                    )
                };
                if response.status >= 500 {
                    return Err(format!("the API answered {}: {body}{}", response.status, context()));
                }
                let json: Value = if request.method == "HEAD" {
                    Value::Null
                } else {
                    if !response.is_json() {
                        return Err(format!(
                            "the API answered {} with something other than JSON: {body}{}",
                            response.status,
                            context()
                        ));
                    }
                    serde_json::from_str(&body)
                        .map_err(|e| format!("the API's answer is not JSON ({e}): {body}{}", context()))?
                };
                let got_code = json["error"].as_str().unwrap_or_default().to_owned();
                outcome.label(format!(
                    "{} {}",
                    response.status,
                    if got_code.is_empty() { "ok" } else { &got_code }
                ));
                let fine = match (status, code) {
                    (Expected::Exactly(s), c) => {
                        response.status == s && (request.method == "HEAD" || got_code == c)
                    }
                    (Expected::Found, _) => {
                        (response.status == 200 && got_code.is_empty())
                            || (response.status == 404 && got_code == "room_not_found")
                    }
                };
                if !fine {
                    return Err(format!(
                        "the API answered {} {body}; API.md says {status:?} {code:?}{}",
                        response.status,
                        context()
                    ));
                }
                if response.status >= 400
                    && request.method != "HEAD"
                    && request.target.starts_with("/api/v1/")
                    && !json["message"].is_string()
                {
                    return Err(format!("an error without a message: {body}{}", context()));
                }
            }
            Ok::<_, String>(())
        })?;
        self.live.check_good()?;
        Ok(outcome)
    }
}

/// What a request must get.
#[derive(Debug, Clone, Copy)]
enum Expected {
    /// This status.
    Exactly(u16),
    /// 200, or 404 `room_not_found` (whether a room has history is not known here).
    Found,
}

/// Calls, real and not.
const CALLS: &[&str] =
    &["publish", "broadcast", "disconnect", "presence", "history", "rooms", "stats", "nope", "Publish"];

fn request(u: &mut Unstructured) -> arbitrary::Result<Request> {
    let method = match u.int_in_range(0..=19)? {
        0..=8 => "GET",
        9..=17 => "POST",
        _ => *u.choose(&["PUT", "DELETE", "PATCH", "HEAD"])?,
    };
    let call = *u.choose(CALLS)?;
    let path = match u.int_in_range(0..=15)? {
        0 => format!("/api/v1/{call}/extra"),
        1 => "/api/v1/".to_owned(),
        2 => format!("/api/v2/{call}"),
        _ => format!("/api/v1/{call}"),
    };
    let mut query = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let key = *u.choose(&["room", "after", "limit", "x"])?;
        let value = match u.int_in_range(0..=6)? {
            0 => (*u.choose(generate::ROOMS)?).to_owned(),
            1 => generate::number(u)?.to_string(),
            2 => "-1".into(),
            3 => "18446744073709551616".into(),
            4 => "%zz".into(),
            5 => "has%20space".into(),
            _ => generate::string(u)?.chars().filter(|c| c.is_ascii_alphanumeric()).collect(),
        };
        query.push(format!("{key}={value}"));
    }
    let target = if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) };
    let body = if method == "POST" { body(u, call)? } else { Vec::new() };
    let mut request = Request::new(method, &target, body);
    request.length = method != "POST" || u.ratio(15, 16)?;
    let auth = match u.int_in_range(0..=15)? {
        0 => None,
        1 => Some(format!("Bearer {API_KEY}x")),
        2 => Some(format!("bearer {API_KEY}")),
        3 => Some(API_KEY.to_owned()),
        4 => Some(format!("Bearer {API_KEY}é")),
        _ => Some(format!("Bearer {API_KEY}")),
    };
    if let Some(auth) = auth {
        request = request.header("Authorization", &auth);
    }
    Ok(request)
}

fn body(u: &mut Unstructured, call: &str) -> arbitrary::Result<Vec<u8>> {
    let sender = |u: &mut Unstructured| -> arbitrary::Result<Value> {
        Ok(json!({"id": generate::string(u)?, "name": generate::string(u)?}))
    };
    let value = match call {
        "publish" => {
            let mut v = json!({"room": generate::room(u)?, "body": generate::json(u, 2)?});
            if u.arbitrary()? {
                v["id"] = json!(generate::string(u)?);
            }
            if u.arbitrary()? {
                v["from"] = sender(u)?;
            }
            v
        }
        "broadcast" => {
            let rooms: Vec<String> =
                (0..u.int_in_range(0..=4)?).map(|_| generate::room(u)).collect::<arbitrary::Result<_>>()?;
            let mut v = json!({"rooms": rooms, "body": generate::json(u, 2)?});
            if u.arbitrary()? {
                v["id"] = json!(generate::id(u)?);
            }
            v
        }
        // Users named like nobody the well-behaved client could be.
        "disconnect" => {
            json!({"user": format!("fuzz-{}", generate::string(u)?), "reconnect": u.arbitrary::<bool>()?})
        }
        _ => generate::json(u, 2)?,
    };
    let mut tree = Loose::from_value(&value);
    if u.ratio(1, 2)? {
        generate::loosen(u, &mut tree)?;
    }
    Ok(match u.int_in_range(0..=15)? {
        0 => u.arbitrary::<Vec<u8>>()?,
        1 => {
            // Past the request limit (16 KiB of body plus 64 KiB).
            let mut big = tree.to_json().into_bytes();
            big.resize(90 * 1024, b' ');
            big
        }
        _ => tree.to_json().into_bytes(),
    })
}

/// `disconnect`'s request, as the server reads it: an object only.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
#[allow(dead_code)]
struct DisconnectRequest {
    user: String,
    #[serde(default)]
    reconnect: Option<bool>,
}

tether_shared::objects_only!(DisconnectRequest);

/// The status and error code `API.md` gives a request.
fn expected(request: &Request) -> (Expected, &'static str) {
    let exactly = |status, code| (Expected::Exactly(status), code);
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        // Outside the API: the server's catch-all for /api.
        return exactly(404, "not_found");
    };
    // The scheme in any case (RFC 9110 §11.1), then the key.
    let authorized = request.headers.iter().any(|(n, v)| {
        n == "Authorization"
            && v.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("Bearer "))
            && v.get(7..) == Some(API_KEY)
    });
    if !authorized {
        return exactly(401, "unauthorized");
    }
    if rest.is_empty() || rest.contains('/') {
        return exactly(404, "not_found");
    }
    let call = rest;
    let reads = ["presence", "history", "rooms", "stats"];
    let writes = ["publish", "broadcast", "disconnect"];
    match request.method.as_str() {
        "GET" => {
            if writes.contains(&call) {
                return exactly(405, "method_not_allowed");
            }
            if !reads.contains(&call) {
                return exactly(404, "not_found");
            }
            let Some(pairs) = parse_query(query) else { return exactly(400, "invalid_request") };
            let get = |name: &str| pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let number = |name: &str| get(name).is_none_or(|v| v.parse::<u64>().is_ok());
            match call {
                "presence" if !number("limit") => exactly(400, "invalid_request"),
                // The query is read before the room is checked (`history`'s numbers too).
                "presence" | "history" => match get("room") {
                    None => exactly(400, "invalid_request"),
                    Some(_) if call == "history" && !(number("after") && number("limit")) => {
                        exactly(400, "invalid_request")
                    }
                    Some(room) if !valid_room_name(&room) => exactly(400, "invalid_room"),
                    Some(_) => (Expected::Found, ""),
                },
                _ => exactly(200, ""),
            }
        }
        "POST" => {
            if !request.length {
                return exactly(411, "length_required");
            }
            if request.body.len() > 16 * 1024 + 64 * 1024 {
                return exactly(413, "too_large");
            }
            if reads.contains(&call) {
                return exactly(405, "method_not_allowed");
            }
            if !writes.contains(&call) {
                return exactly(404, "not_found");
            }
            // JSON is UTF-8 text (RFC 8259 §8.1), read as a client's frames are.
            let Ok(text) = std::str::from_utf8(&request.body) else { return exactly(400, "invalid_json") };
            if serde_json::from_str::<IgnoredAny>(text).is_err() {
                return exactly(400, "invalid_json");
            }
            let check_sender = |from: &Option<Sender>, id: &Option<String>| {
                if let Some(Sender { id, name }) = from
                    && (id.is_empty()
                        || id.chars().count() > 64
                        || name.trim().is_empty()
                        || name.chars().count() > 32)
                {
                    return false;
                }
                id.as_ref().is_none_or(|id| !id.is_empty() && id.chars().count() <= 64)
            };
            match call {
                "publish" => match strict_json::from_str::<PublishRequest>(text) {
                    Err(_) => exactly(400, "invalid_request"),
                    Ok(publish) if !check_sender(&publish.from, &publish.id) => {
                        exactly(400, "invalid_request")
                    }
                    Ok(publish) if !valid_room_name(&publish.room) => exactly(400, "invalid_room"),
                    Ok(publish) if super::model::too_large(&publish.body) => exactly(413, "too_large"),
                    Ok(_) => exactly(200, ""),
                },
                "broadcast" => match strict_json::from_str::<BroadcastRequest>(text) {
                    Err(_) => exactly(400, "invalid_request"),
                    Ok(broadcast) if !check_sender(&broadcast.from, &broadcast.id) => {
                        exactly(400, "invalid_request")
                    }
                    Ok(_) => exactly(200, ""),
                },
                _ => match strict_json::from_str::<DisconnectRequest>(text) {
                    Err(_) => exactly(400, "invalid_request"),
                    Ok(_) => exactly(200, ""),
                },
            }
        }
        // A method that is neither a read nor a write.
        _ => exactly(405, "method_not_allowed"),
    }
}

/// The query as warp reads it into a map: `None` when it cannot be read.
fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((decode(key)?, decode(value)?));
    }
    Some(pairs)
}

/// Percent-decoding as `application/x-www-form-urlencoded` does it (`+` is a space,
/// a broken escape stays as it is, bytes that are not UTF-8 become U+FFFD).
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn abbreviate(text: &str) -> String {
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_owned()
    }
}
