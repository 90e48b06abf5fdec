//! The server API over HTTP: `/api/v1/<call>`, JSON in and out, for the app's backend
//! and the dashboard. Spec: `API.md`.
//!
//! Off unless `--api-key` is set (then every path answers 404, as if it did not
//! exist). Every request carries `Authorization: Bearer <key>`; everything under
//! `/api/v1/` answers JSON, errors included (`{"error": code, "message": …}`), so a
//! backend never has to parse an HTML error page. The calls themselves live in
//! [`calls`], where embedding apps reach them without HTTP.

pub mod calls;
pub mod stats;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

pub use calls::Api;
use calls::ApiError;
use tether_shared::strict_json::Refused;

use crate::context::Context;

/// Room lists and request envelopes around a body: a request may be this much bigger
/// than the largest body.
const REQUEST_OVERHEAD: u64 = 64 * 1024;

/// A refused request: its status, code and words, answered as JSON. Also a warp
/// rejection, for refusals made before any call ran (the API is off, the key is wrong).
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The message id to publish again under, when a publish's outcome is unknown.
    id: Option<String>,
}

impl warp::reject::Reject for Failure {}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
        Failure { status, code, message: message.into(), id: None }
    }

    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(id) = self.id {
            body["id"] = json!(id);
        }
        let mut response = warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let bearer = warp::http::HeaderValue::from_static("Bearer");
            response.headers_mut().insert(warp::http::header::WWW_AUTHENTICATE, bearer);
        }
        response
    }
}

/// A request that reached a call: a read's query, or a write's body.
enum Incoming {
    Read(HashMap<String, String>),
    Write(bytes::Bytes),
}

/// `disconnect`'s request.
#[derive(Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
struct DisconnectRequest {
    user: String,
    /// Absent or `null`, as any optional field of the API: `true`.
    #[serde(default)]
    reconnect: Option<bool>,
}

tether_shared::objects_only!(DisconnectRequest);

/// Every `/api/v1/` route.
pub fn routes(context: Arc<Context>) -> BoxedFilter<(Response,)> {
    let api = Api::new(context.clone());
    let limit = context.config.max_body_bytes as u64 + REQUEST_OVERHEAD;
    let authorized = {
        let key = context.config.api_key.clone();
        crate::headers::raw("authorization").and_then(move |header: Option<HeaderValue>| {
            let key = key.clone();
            async move {
                authorize(key.as_deref(), header.as_ref().map(HeaderValue::as_bytes))
                    .map_err(warp::reject::custom)
            }
        })
    };
    // The call is matched before the method, so a wrong path is a 404 and a wrong
    // method on a right path a 405.
    let reads = warp::get().and(warp::query::<HashMap<String, String>>()).map(Incoming::Read);
    let writes = warp::post()
        .and(warp::body::content_length_limit(limit))
        .and(crate::body::whole())
        .map(Incoming::Write);
    let calls = authorized
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(reads.or(writes).unify())
        .then(move |(), call: String, incoming: Incoming| {
            let api = api.clone();
            async move {
                let answer = match incoming {
                    Incoming::Read(query) => read(&api, &call, &query).await,
                    Incoming::Write(body) => write(&api, &call, &body).await,
                };
                match answer {
                    Ok(body) => {
                        warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response()
                    }
                    Err(failure) => failure.into_response(),
                }
            }
        })
        .recover(refusal)
        .unify();
    warp::path("api").and(warp::path("v1")).and(calls).boxed()
}

/// Checks the bearer key: 404 with the API off, 401 without the right key. The header
/// is compared as bytes: one that is not text is a wrong key like any other.
fn authorize(key: Option<&str>, header: Option<&[u8]>) -> Result<(), Failure> {
    let Some(key) = key else {
        let message = "the server API is off: start the server with --api-key";
        return Err(Failure::new(StatusCode::NOT_FOUND, "not_found", message));
    };
    let given = header.and_then(bearer).unwrap_or_default();
    if same(given, key.as_bytes()) {
        return Ok(());
    }
    let message = match header {
        None => "send the API key as Authorization: Bearer <key>",
        Some(_) => "wrong API key",
    };
    Err(Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", message))
}

/// The credentials of a `Bearer` authorization: the scheme in any case (`bearer`,
/// `BEARER`: RFC 9110 §11.1 makes it case-insensitive), then one or more spaces.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(b"Bearer".len())?;
    let credentials = rest.strip_prefix(b" ")?;
    let spaces = credentials.iter().take_while(|&&b| b == b' ').count();
    scheme.eq_ignore_ascii_case(b"Bearer").then_some(&credentials[spaces..])
}

/// Compares in time that does not depend on where the first difference is.
fn same(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && given.iter().zip(key).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

async fn read(api: &Api, call: &str, query: &HashMap<String, String>) -> Result<serde_json::Value, Failure> {
    let room = || query.get("room").map(String::as_str).ok_or_else(|| invalid("room is required"));
    let number = |name: &str| match query.get(name) {
        None => Ok(None),
        Some(text) => text.parse::<u64>().map(Some).map_err(|_| invalid(format!("{name} is a whole number"))),
    };
    match call {
        "presence" => {
            let limit = number("limit")?.map(|n| n as usize);
            let page = api.presence(room()?, query.get("after").map(String::as_str), limit).await;
            page.map(|page| json!(page)).map_err(failed)
        }
        "history" => {
            let page = api.history(room()?, number("after")?, number("limit")?).await;
            page.map(|page| json!(page)).map_err(failed)
        }
        "rooms" => Ok(json!({ "rooms": api.rooms().await.map_err(failed)? })),
        "stats" => Ok(json!(api.stats().await)),
        "publish" | "broadcast" | "disconnect" => Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{call} is a POST"),
        )),
        _ => Err(unknown_call(call)),
    }
}

async fn write(api: &Api, call: &str, body: &[u8]) -> Result<serde_json::Value, Failure> {
    match call {
        "publish" => api.publish(parse(body)?).await.map(|published| json!(published)).map_err(failed),
        "broadcast" => {
            let results = api.broadcast(parse(body)?).await.map_err(failed)?;
            Ok(json!({ "results": results }))
        }
        "disconnect" => {
            let request: DisconnectRequest = parse(body)?;
            Ok(json!(api.disconnect(&request.user, request.reconnect.unwrap_or(true))))
        }
        "presence" | "history" | "rooms" | "stats" => Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{call} is a GET"),
        )),
        _ => Err(unknown_call(call)),
    }
}

/// A request body as `T`, read as a client's frames are (`strict_json::from_str`): 400
/// `invalid_json` when it is not JSON, `invalid_request` when it is JSON of the wrong
/// shape (an array for the request, a key named twice, an integer past 64 bits).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    let not_json = |reason: &dyn std::fmt::Display| {
        Failure::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not JSON: {reason}"))
    };
    let text = std::str::from_utf8(body).map_err(|e| not_json(&e))?;
    tether_shared::strict_json::from_str(text).map_err(|refused| match refused {
        Refused::NotJson(syntax) => not_json(&syntax),
        Refused::Invalid(error) => invalid(error.to_string()),
    })
}

/// The answers to requests warp refused before a call ran.
async fn refusal(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let failure = if let Some(refused) = rejection.find::<Failure>() {
        Failure::new(refused.status, refused.code, refused.message.clone())
    } else if let Some((status, code, message)) =
        crate::rejections::typed(&rejection, "reads are GET, writes are POST")
    {
        Failure::new(status, code, message)
    } else {
        Failure::new(StatusCode::NOT_FOUND, "not_found", "no such call; see API.md")
    };
    Ok(failure.into_response())
}

fn failed(error: ApiError) -> Failure {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    Failure {
        id: error.retry_id().map(str::to_owned),
        ..Failure::new(status, error.code(), error.to_string())
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn unknown_call(call: &str) -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "not_found", format!("no call {call:?}; see API.md"))
}
