//! The app's own sign-in: a connect handler that reads the connection's HTTP request
//! (its session cookie, a header of its own) and the `hello`, and says who the
//! connection is, or refuses it with the app's reason. Signed tokens (`--auth-secret`)
//! stay the built-in way; with a connect handler, the handler decides every `hello`,
//! reconnects' too.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tether_shared::{ChannelError, Refusal};

use super::{AppRefusal, Refused};

/// What a connection brings to the app's connect handler.
#[derive(Debug, Clone)]
pub struct Connecting {
    /// The headers of its HTTP request: the WebSocket upgrade, or the fallback's
    /// `/rt/open`. Cookies are here.
    pub headers: http::HeaderMap,
    /// The `hello`'s `token`, for apps that pass a token of their own.
    pub token: Option<String>,
    /// The `hello`'s `name`.
    pub name: Option<String>,
    /// The peer's address, when the server knows it.
    pub peer: Option<IpAddr>,
}

/// Who the app says a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The user's stable id (1-64 characters).
    pub id: String,
    /// Their display name.
    pub name: String,
    /// Room patterns they may join (`*` for all, `chat:*` for a prefix).
    pub rooms: Vec<String>,
}

impl Admitted {
    /// A user who may join every room (a join handler may still refuse).
    pub fn user(id: impl Into<String>, name: impl Into<String>) -> Self {
        Admitted { id: id.into(), name: name.into(), rooms: vec!["*".into()] }
    }
}

/// Longest an app's in-process connect handler may take.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// A connect call, type-erased.
pub(crate) type ConnectCall =
    Arc<dyn Fn(Connecting) -> BoxFuture<'static, Result<Admitted, Refused>> + Send + Sync>;

/// The app's connect handler and how long it may take.
#[derive(Clone)]
pub(crate) struct ConnectHandler {
    pub call: ConnectCall,
    pub patience: Duration,
}

/// Wraps an app's connect handler.
pub(crate) fn handler<F, Fut, E>(handler: F) -> ConnectHandler
where
    F: Fn(Connecting) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Admitted, E>> + Send + 'static,
    E: ChannelError,
{
    let call: ConnectCall = Arc::new(move |connecting| {
        let answer = handler(connecting);
        async move {
            answer.await.map_err(|error| {
                Refused::App(AppRefusal { refusal: Refusal::of(&error), message: error.message() })
            })
        }
        .boxed()
    });
    ConnectHandler { call, patience: CONNECT_PATIENCE }
}
