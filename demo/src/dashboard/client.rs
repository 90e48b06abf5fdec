//! The dashboard's side of the server API (`API.md`): requests with the key, and the
//! answers as JSON or an error in words.

use serde_json::Value;

/// Where the key is kept for this tab: gone when the tab closes.
pub const KEY_STORAGE: &str = "tether.api-key";

/// The API on the server that served this page, with a key.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiClient {
    key: String,
}

/// Why a call gave nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum CallError {
    /// The key is not (or no longer) accepted, or the API is off: sign in again.
    SignIn(String),
    /// Anything else, in words.
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::SignIn(message) | CallError::Failed(message) => f.write_str(message),
        }
    }
}

impl ApiClient {
    /// A client that sends `key`.
    pub fn new(key: String) -> ApiClient {
        ApiClient { key }
    }

    /// `GET /api/v1/<path>`.
    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        let request = gloo_net::http::Request::get(&format!("/api/v1/{path}"))
            .header("Authorization", &format!("Bearer {}", self.key));
        answer(request.send().await).await
    }

    /// `POST /api/v1/<call>` with a JSON body.
    pub async fn post(&self, call: &str, body: &Value) -> Result<Value, CallError> {
        let request = gloo_net::http::Request::post(&format!("/api/v1/{call}"))
            .header("Authorization", &format!("Bearer {}", self.key))
            .json(body)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        answer(request.send().await).await
    }
}

async fn answer(sent: Result<gloo_net::http::Response, gloo_net::Error>) -> Result<Value, CallError> {
    let response = sent.map_err(|e| CallError::Failed(format!("the server did not answer: {e}")))?;
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = || body["message"].as_str().unwrap_or("no explanation").to_owned();
    match response.status() {
        200 => Ok(body),
        401 => Err(CallError::SignIn(format!("The key was refused: {}", message()))),
        404 if body["error"] == "not_found"
            && body["message"].as_str().is_some_and(|m| m.contains("--api-key")) =>
        {
            Err(CallError::SignIn("This server's API is off: start it with --api-key".into()))
        }
        status => Err(CallError::Failed(format!("{status}: {}", message()))),
    }
}
