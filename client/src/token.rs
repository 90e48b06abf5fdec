//! Where a native client gets tokens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use tether_shared::TokenError;

/// What a provider's future resolves to: a token, or why there is none. A plain
/// `String` error converts (with `?`) to [`TokenError::Unavailable`], asked again with
/// backoff; [`TokenError::SignedOut`] stops until the app connects again.
pub type TokenResult = Result<String, TokenError>;

type Fetch = dyn Fn() -> Pin<Box<dyn Future<Output = TokenResult> + Send>> + Send + Sync;

/// An async source of tokens, typically a request to the app's backend. The core says
/// when to ask (before connecting, on `token_expiring`, after a refusal) and paces a
/// failing provider; the client only runs the request.
#[derive(Clone)]
pub struct TokenProvider(Arc<Fetch>);

impl TokenProvider {
    /// Wraps `provide`, called each time a token is needed.
    pub fn new<F, Fut>(provide: F) -> TokenProvider
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TokenResult> + Send + 'static,
    {
        TokenProvider(Arc::new(move || Box::pin(provide())))
    }

    /// Asks for a token.
    pub(crate) fn fetch(&self) -> Pin<Box<dyn Future<Output = TokenResult> + Send>> {
        (self.0)()
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TokenProvider")
    }
}
