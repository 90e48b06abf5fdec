//! The app's backend as the hooks reach it: one pooled HTTP client, a bound on calls in
//! flight, and a deadline on each. A backend that is slow or gone costs the server the
//! calls that wait for it, each for at most the deadline, and nothing else: no
//! connection's task waits on it (the calls run beside the connection, as an app's
//! handlers do), and the bound keeps a flood of calls from opening a flood of sockets.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

/// Largest answer read from the backend. A reply or a rewritten body is then held to
/// the server's own limits, as a client's would be.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a hook call has no answer to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallFailed {
    /// Not reached, too slow, too busy, or an error status: it may answer later.
    Unavailable(String),
    /// It answered, with something that is not a hook answer: a bug in the backend.
    Broken(String),
}

/// The backend the hooks call.
pub(crate) struct Backend {
    client: Client<HttpConnector, Full<Bytes>>,
    slots: Semaphore,
    timeout: Duration,
    /// `Bearer` and the server's API key, when it has one: the backend can tell the
    /// server's calls from anyone else's with the key it already calls the server with.
    authorization: Option<http::HeaderValue>,
}

impl Backend {
    pub(crate) fn new(timeout: Duration, concurrency: usize, api_key: Option<&str>) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let authorization = api_key.and_then(|key| http::HeaderValue::try_from(format!("Bearer {key}")).ok());
        Backend { client, slots: Semaphore::new(concurrency.max(1)), timeout, authorization }
    }

    /// The longest a call takes before it fails.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `call` to `url` and reads the JSON object it answers with, within the
    /// timeout (a free slot waited for included).
    pub(crate) async fn call(&self, url: &http::Uri, call: &Value) -> Result<Map<String, Value>, CallFailed> {
        match tokio::time::timeout(self.timeout, self.call_now(url, call)).await {
            Ok(answer) => answer,
            Err(_) => Err(CallFailed::Unavailable(format!(
                "the app's backend did not answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn call_now(&self, url: &http::Uri, call: &Value) -> Result<Map<String, Value>, CallFailed> {
        let unavailable = |why: String| CallFailed::Unavailable(why);
        let _slot = self.slots.acquire().await.map_err(|_| unavailable("the hooks are stopped".into()))?;
        let body = Bytes::from(serde_json::to_vec(call).unwrap_or_default());
        let mut request = http::Request::post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("tether/", env!("CARGO_PKG_VERSION")));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|error| unavailable(format!("the hook's request could not be made: {error}")))?;
        let response = self.client.request(request).await.map_err(|error| {
            unavailable(format!("the app's backend could not be reached: {}", chain(&error)))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("the app's backend answered {status}")));
        }
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| unavailable(format!("the app's backend's answer was cut short: {error}")))?
            .to_bytes();
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(answer)) => Ok(answer),
            Ok(_) => {
                Err(CallFailed::Broken("the app's backend answered with JSON that is not an object".into()))
            }
            Err(error) => {
                Err(CallFailed::Broken(format!("the app's backend answered with no JSON: {error}")))
            }
        }
    }
}

/// An error and its causes, in one line: hyper's "client error (Connect)" says little
/// without the "connection refused" under it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut words = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        words.push_str(": ");
        words.push_str(&cause.to_string());
        source = cause.source();
    }
    words
}
