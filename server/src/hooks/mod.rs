//! Hooks over HTTP: the standalone server asks the app's backend, in whatever language
//! it is written, to decide what an app's in-process handlers decide. Each hook is a
//! JSON `POST` to a URL of the backend's:
//!
//! - **connect**: who a connection is (from its cookies, headers or token), or a refusal;
//! - **join**: whether a member may join a room, and with what metadata;
//! - **publish**: whether a message is stored, as sent or rewritten;
//! - **request**: the reply to a request.
//!
//! Answers are read into the same verdicts as a handler's, so a refusal reaches the
//! client as the same typed `refused`, on every transport. A backend that is down, too
//! slow or answering with an error status is `unavailable` (a connection closes with
//! 1013 and the client retries; a publish is rejected `unavailable` and the client's
//! outbox sends it again; a request fails with `unavailable`), and the server goes on.
//! API.md, *Hooks*, is the backend's side of it.
//!
//! - `backend.rs`: the HTTP client, its bound on calls in flight, and each call's deadline.
//! - `route.rs`: the calls and the answers, as a channel's route and a connect handler.

mod backend;
mod route;

use std::sync::Arc;

use crate::channels::Channels;
use crate::channels::connect::ConnectHandler;
use crate::config::HookConfig;

use backend::Backend;
use route::{ConnectHook, HookRoute};

/// Why a hook's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("hook URL `{url}`: {why}")]
pub struct HookError {
    /// The configured URL.
    pub url: String,
    /// What is wrong with it.
    pub why: String,
}

/// Adds the configured hooks to `channels`. A channel the app registered in its own
/// binary for the same rooms, and its own connect handler, come first: the hooks are
/// for the binary that has none.
pub(crate) fn install(
    config: &HookConfig,
    api_key: Option<&str>,
    channels: &mut Channels,
) -> Result<(), HookError> {
    let url = |url: &Option<String>| url.as_deref().map(parse).transpose();
    let (connect, join) = (url(&config.hook_connect)?, url(&config.hook_join)?);
    let (publish, request) = (url(&config.hook_publish)?, url(&config.hook_request)?);
    if connect.is_none() && join.is_none() && publish.is_none() && request.is_none() {
        return Ok(());
    }
    let backend = Arc::new(Backend::new(config.hook_timeout, config.hook_concurrency, api_key));
    if join.is_some() || publish.is_some() || request.is_some() {
        // Configured once per server: the route holds its pattern for the server's life.
        let pattern: &'static str = Box::leak(config.hook_rooms.clone().into_boxed_str());
        if channels.has_pattern(pattern) {
            tracing::warn!(pattern, "the app's own channel decides these rooms; their hooks are not called");
        } else {
            channels.add(Arc::new(HookRoute { pattern, backend: backend.clone(), join, publish, request }));
        }
    }
    if let Some(url) = connect {
        if channels.connect.is_some() {
            tracing::warn!(
                "the app's own connect handler decides connections; the connect hook is not called"
            );
        } else {
            let headers = config
                .hook_headers
                .iter()
                .map(|name| {
                    http::HeaderName::try_from(name.trim().to_ascii_lowercase()).map_err(|error| HookError {
                        url: url.to_string(),
                        why: format!("header `{name}`: {error}"),
                    })
                })
                .collect::<Result<_, _>>()?;
            let patience = backend.timeout() + std::time::Duration::from_secs(1);
            let hook = Arc::new(ConnectHook { backend, url, headers });
            channels.connect =
                Some(ConnectHandler { call: Arc::new(move |connecting| hook.call(connecting)), patience });
        }
    }
    Ok(())
}

/// An `http://` URL with a host. (TLS to the backend is not built in: hooks go to a
/// backend on the same private network, or through a local proxy that speaks TLS.)
fn parse(text: &str) -> Result<http::Uri, HookError> {
    let error = |why: &str| HookError { url: text.to_owned(), why: why.to_owned() };
    let url: http::Uri = text.parse().map_err(|_| error("not a URL"))?;
    match url.scheme_str() {
        Some("http") if url.authority().is_some() => Ok(url),
        Some("https") => {
            Err(error("only http:// is supported; reach an https backend through a local proxy"))
        }
        _ => Err(error("expected http://host[:port]/path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        assert!(parse("http://127.0.0.1:9000/hooks/join").is_ok());
        assert!(parse("https://backend/hooks").unwrap_err().why.contains("only http://"));
        assert!(parse("backend/hooks").is_err());
        assert!(parse("not a url").is_err());
    }
}
