//! Tether inside an app's own server. Both apps do the same thing in their framework:
//!
//! - `GET /` is the app's page (`page.html`): sign in, and the `news` room live, over
//!   Tether's protocol from plain JavaScript with the session cookie;
//! - `GET /login?name=Ada` signs in: the app makes a session and sets its cookie;
//! - `GET /me` answers who the session is;
//! - `POST /announce?text=…` publishes into the `news` room from the app's own route,
//!   through Tether's handle;
//! - Tether is mounted under `/live` (`/live/ws`, `/live/rt/…`, `/live/api/v1/…`), and
//!   signs its connections in with the same session cookie ([`Sessions::admit`]).
//!
//! Run them with `cargo run -p tether-examples --bin axum-app` (or `warp-app`), then
//! point a client at `ws://127.0.0.1:3000/live/ws` with the cookie.

pub mod axum_app;
pub mod warp_app;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_server::{Admitted, Connecting};
use tether_shared::channel::Reason;

/// The app's own sessions: cookie value → user name. Shared by the app's routes and
/// Tether's connect handler, which is the point: one sign-in for both.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, String>>>);

/// The cookie the apps set.
pub const COOKIE: &str = "session";

impl Sessions {
    /// Signs `name` in: the new session's id, for the cookie.
    pub fn sign_in(&self, name: &str) -> String {
        let id = format!("{:016x}", fastrand::u64(..));
        self.0.lock().expect("sessions").insert(id.clone(), name.to_owned());
        id
    }

    /// Who holds the session named by `cookie_header` (`session=…; other=…`).
    pub fn who(&self, cookie_header: Option<&str>) -> Option<String> {
        let id = cookie_header?.split(';').find_map(|pair| pair.trim().strip_prefix("session="))?;
        self.0.lock().expect("sessions").get(id).cloned()
    }

    /// Tether's connect handler: a connection is whoever its session cookie says.
    pub async fn admit(self, connecting: Connecting) -> Result<Admitted, Reason> {
        let cookie = connecting.headers.get("cookie").and_then(|value| value.to_str().ok());
        match self.who(cookie) {
            Some(name) => Ok(Admitted::user(format!("u_{}", name.to_lowercase()), name)),
            None => Err(Reason::new("signed_out", "sign in at /login first")),
        }
    }
}

/// Tether for an example app: the memory store, and connections signed in by the
/// app's `sessions`. The app mounts it and keeps its handle.
pub async fn tether(sessions: &Sessions) -> Result<tether_server::Tether, tether_server::StartError> {
    let admit = sessions.clone();
    let config = tether_server::Config::for_tests();
    tether_server::Server::new(config)
        .on_connect(move |connecting| admit.clone().admit(connecting))
        .build()
        .await
}

/// The app's one page, the same in both apps.
pub const PAGE: &str = include_str!("page.html");

/// The body the apps publish into `news`.
pub fn announcement(text: &str) -> serde_json::Value {
    serde_json::json!({ "text": text })
}

/// A `publish` request for the server API's handle.
pub fn news(text: &str) -> tether_server::api::calls::PublishRequest {
    serde_json::from_value(serde_json::json!({ "room": "news", "body": announcement(text) }))
        .expect("a publish request")
}
