//! Where a link gets tokens, and when it asks.
//!
//! An app whose backend issues tokens hands the link a [`TokenProvider`]: an async
//! callback, typically a `fetch` to the backend. The link asks it for the first token
//! before connecting, again when the server says the token is about to expire (the new
//! one renews the open connection in place, with a `refresh`), and after the server
//! refused a token (4401, 4403), before connecting again. A provider that fails is asked
//! again with backoff, so a signed-in user never sees "Sign-in refused" because of one
//! slow request to the backend.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// What a provider's future resolves to: a token, or why there is none.
pub type TokenResult = Result<String, String>;

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

    /// Asks for a token.
    pub(crate) fn fetch(&self) -> Pin<Box<dyn Future<Output = TokenResult>>> {
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

/// What the link does with the token it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// Connect with it (first connect, or after a refusal).
    Connect,
    /// Renew the open connection with it.
    Refresh,
}

/// First wait before asking a failing provider again; it doubles up to [`MAX_RETRY_MS`].
pub(crate) const FIRST_RETRY_MS: u32 = 1_000;
/// Longest wait between two asks.
pub(crate) const MAX_RETRY_MS: u32 = 30_000;
