//! Where a link gets tokens, and when it asks.
//!
//! An app whose backend issues tokens hands the link a [`TokenProvider`]: an async
//! callback, typically a `fetch` to the backend. The shared core decides when it is
//! asked (`Action::FetchToken`): for the first token before connecting, again when the
//! server says the token is about to expire (the new one renews the open connection in
//! place, with a `refresh`), and after the server refused a token (4401, 4403), before
//! connecting again. A provider that fails is asked again with backoff, so a signed-in
//! user never sees "Sign-in refused" because of one slow request to the backend.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

pub use tether_shared::TokenError;

/// What a provider's future resolves to: a token, or why there is none. A plain
/// `String` error converts (with `?`) to [`TokenError::Unavailable`], asked again with
/// backoff; [`TokenError::SignedOut`] stops until the app connects again.
pub type TokenResult = Result<String, TokenError>;

/// An async source of tokens. Cheap to clone; two providers are equal when they are
/// the same callback.
#[derive(Clone)]
pub struct TokenProvider(Rc<dyn Fn() -> Pin<Box<dyn Future<Output = TokenResult>>>>);

impl TokenProvider {
    /// Wraps `provide`, called each time the link needs a token.
    pub fn new<F, Fut>(provide: F) -> TokenProvider
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = TokenResult> + 'static,
    {
        TokenProvider(Rc::new(move || Box::pin(provide())))
    }

    /// Tokens from a Tether server in dev mode (its `/api/token`, which lives
    /// `--dev-token-ttl`), for a person called `name`, always for the same user: the
    /// user id the server gave first is kept in `localStorage` under the name and asked
    /// for again, by this page and by later ones. For demos and local development; in
    /// production, tokens come from the app's own backend.
    pub fn dev(socket_url: &str, name: &str) -> TokenProvider {
        use gloo_storage::{LocalStorage, Storage};
        let base = crate::http_socket::http_base(socket_url);
        let key = format!("tether.dev-user.{name}");
        let name = name.to_owned();
        TokenProvider::new(move || {
            let known: Option<String> = LocalStorage::get(&key).ok();
            let mut url = format!("{base}/api/token?name={}", js_sys::encode_uri_component(&name));
            if let Some(id) = known {
                url.push_str(&format!("&sub={}", js_sys::encode_uri_component(&id)));
            }
            let key = key.clone();
            async move {
                let response = gloo_net::http::Request::get(&url).send().await.map_err(|e| e.to_string())?;
                let answer: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
                let message = || answer["message"].as_str().unwrap_or("the server gave no token").to_owned();
                match response.status() {
                    200 => {}
                    // Not in dev mode: tokens come from the app's backend, never from here.
                    404 => return Err(TokenError::SignedOut(message())),
                    _ => return Err(TokenError::Unavailable(message())),
                }
                if let Some(id) = answer["user"]["id"].as_str() {
                    let _ = LocalStorage::set(&key, id);
                }
                answer["token"].as_str().map(str::to_owned).ok_or_else(|| "the answer held no token".into())
            }
        })
    }

    /// Asks for a token (the link does, when the core says; a provider may also wrap
    /// another and call this).
    pub fn fetch(&self) -> Pin<Box<dyn Future<Output = TokenResult>>> {
        (self.0)()
    }
}

impl PartialEq for TokenProvider {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TokenProvider")
    }
}
