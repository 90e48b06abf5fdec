//! The axum app: its routes, with Tether nested under `/live` as a tower service.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::{COOKIE, PAGE, Sessions, news};

/// What the app's handlers share: its sessions and Tether's handle.
#[derive(Clone)]
pub struct App {
    /// The app's sessions.
    pub sessions: Sessions,
    /// Tether's server API.
    pub api: tether_server::Api,
}

/// The app's router with `tether` mounted under `/live`.
pub fn router(app: App, tether: &tether_server::Tether) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Html(PAGE) }))
        .route("/login", get(login))
        .route("/me", get(me))
        .route("/announce", post(announce))
        .with_state(app)
        .nest_service("/live", tether.service())
}

async fn login(State(app): State<App>, Query(query): Query<HashMap<String, String>>) -> impl IntoResponse {
    let name = query.get("name").cloned().unwrap_or_else(|| "guest".into());
    let session = app.sessions.sign_in(&name);
    (
        [(header::SET_COOKIE, format!("{COOKIE}={session}; Path=/; HttpOnly"))],
        format!("signed in as {name}\n"),
    )
}

async fn me(State(app): State<App>, headers: HeaderMap) -> impl IntoResponse {
    let cookie = headers.get(header::COOKIE).and_then(|value| value.to_str().ok());
    match app.sessions.who(cookie) {
        Some(name) => (StatusCode::OK, name),
        None => (StatusCode::UNAUTHORIZED, "not signed in".into()),
    }
}

async fn announce(State(app): State<App>, Query(query): Query<HashMap<String, String>>) -> impl IntoResponse {
    let text = query.get("text").cloned().unwrap_or_default();
    match app.api.publish(news(&text)).await {
        Ok(published) => (StatusCode::OK, format!("announced as #{}\n", published.seq)),
        Err(error) => {
            (StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY), error.to_string())
        }
    }
}
