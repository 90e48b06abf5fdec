//! The hooks as a channel's route and a connect handler: each call is the same call an
//! app's in-process handler gets, made as a JSON POST, and each answer is read into the
//! same verdicts. What a backend may answer is in API.md, *Hooks*.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tether_shared::{Refusal, User};

use super::backend::{Backend, CallFailed};
use crate::channels::{Admitted, Answer, AppRefusal, Connecting, Leaving, Refused, Route, Verdict, Who};

/// Time a call gets beyond the backend's timeout before the handler's own deadline
/// fails it as `internal`: the backend's timeout, which says `unavailable`, comes first.
const MARGIN: Duration = Duration::from_secs(1);

/// The join, publish and request hooks of the rooms `pattern` covers.
pub(crate) struct HookRoute {
    pub pattern: &'static str,
    pub backend: Arc<Backend>,
    pub join: Option<http::Uri>,
    pub publish: Option<http::Uri>,
    pub request: Option<http::Uri>,
}

/// What one hook call came to.
enum Outcome {
    /// The answer's fields, for the hook to read.
    Answered(Map<String, Value>),
    /// The app said no.
    Refused(AppRefusal),
    /// No answer to act on.
    Failed(CallFailed),
}

/// Calls the backend and reads a refusal, which every hook may answer with.
async fn ask(backend: &Backend, url: &http::Uri, call: &Value) -> Outcome {
    let mut answer = match backend.call(url, call).await {
        Ok(answer) => answer,
        Err(failed) => return Outcome::Failed(failed),
    };
    match answer.remove("refuse") {
        None | Some(Value::Null) => Outcome::Answered(answer),
        Some(refuse) => match refusal(refuse) {
            Ok(refusal) => Outcome::Refused(refusal),
            Err(why) => Outcome::Failed(CallFailed::Broken(why)),
        },
    }
}

/// `{"code": …, "message": …, "error": …}`: the code is required; the error, which a
/// typed client decodes as its channel's error type, is `{code, message}` when left out
/// (what the default JSON channel's `Reason` reads).
fn refusal(refuse: Value) -> Result<AppRefusal, String> {
    #[derive(Deserialize)]
    struct Refuse {
        code: String,
        #[serde(default)]
        message: String,
        error: Option<Value>,
    }
    let Refuse { code, message, error } = serde_json::from_value(refuse)
        .map_err(|error| format!("the app's backend refused with an unreadable `refuse`: {error}"))?;
    let message = if message.is_empty() { code.clone() } else { message };
    let error = error.unwrap_or_else(|| json!({ "code": code, "message": message }));
    Ok(AppRefusal { refusal: Refusal { code, error }, message })
}

/// The member, as the backend is told of them.
fn member(user: &User) -> Value {
    json!({ "id": user.id, "name": user.name })
}

impl Route for HookRoute {
    fn pattern(&self) -> &'static str {
        self.pattern
    }

    fn patience(&self) -> Duration {
        self.backend.timeout() + MARGIN
    }

    fn publish(&self, who: Who, body: &Value) -> Result<Option<BoxFuture<'static, Verdict>>, String> {
        let Some(url) = self.publish.clone() else { return Ok(None) };
        let backend = self.backend.clone();
        let mut call =
            json!({ "hook": "publish", "room": who.room, "user": member(&who.user), "body": body });
        Ok(Some(
            async move {
                match ask(&backend, &url, &call).await {
                    Outcome::Answered(mut answer) => {
                        // `body` rewrites the message; without it, it is stored as sent.
                        let body = answer.remove("body").unwrap_or_else(|| call["body"].take());
                        match serde_json::value::to_raw_value(&body) {
                            Ok(body) => Verdict::Store(body),
                            Err(error) => Verdict::Broken(error.to_string()),
                        }
                    }
                    Outcome::Refused(refusal) => Verdict::Refuse(refusal),
                    Outcome::Failed(CallFailed::Unavailable(why)) => Verdict::Unavailable(why),
                    Outcome::Failed(CallFailed::Broken(why)) => Verdict::Broken(why),
                }
            }
            .boxed(),
        ))
    }

    fn check_message(&self, _body: &Value) -> Result<(), String> {
        Ok(())
    }

    fn check_state(&self, _value: &Value) -> Result<(), String> {
        Ok(())
    }

    fn join(&self, who: Who) -> Option<BoxFuture<'static, Result<Option<Value>, Refused>>> {
        let url = self.join.clone()?;
        let backend = self.backend.clone();
        let call = json!({ "hook": "join", "room": who.room, "user": member(&who.user) });
        Some(
            async move {
                match ask(&backend, &url, &call).await {
                    Outcome::Answered(mut answer) => match answer.remove("meta") {
                        None | Some(Value::Null) => Ok(None),
                        Some(meta) => Ok(Some(meta)),
                    },
                    Outcome::Refused(refusal) => Err(Refused::App(refusal)),
                    Outcome::Failed(failed) => Err(refused(failed)),
                }
            }
            .boxed(),
        )
    }

    fn request(&self, who: Who, body: &Value) -> Option<Result<BoxFuture<'static, Answer>, String>> {
        let url = self.request.clone()?;
        let backend = self.backend.clone();
        let call = json!({ "hook": "request", "room": who.room, "user": member(&who.user), "body": body });
        Some(Ok(async move {
            match ask(&backend, &url, &call).await {
                Outcome::Answered(mut answer) => match answer.remove("reply") {
                    Some(reply) => Answer::Reply(reply),
                    None => Answer::Broken("the app's backend answered a request with no `reply`".into()),
                },
                Outcome::Refused(refusal) => Answer::Refuse(refusal),
                Outcome::Failed(CallFailed::Unavailable(why)) => Answer::Unavailable(why),
                Outcome::Failed(CallFailed::Broken(why)) => Answer::Broken(why),
            }
        }
        .boxed()))
    }

    fn leave(&self, _who: Who, _why: Leaving) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

fn refused(failed: CallFailed) -> Refused {
    match failed {
        CallFailed::Unavailable(why) => Refused::Unavailable(why),
        CallFailed::Broken(why) => Refused::Broken(why),
    }
}

/// The connect hook: which of the connection's headers it is given, and where.
pub(crate) struct ConnectHook {
    pub backend: Arc<Backend>,
    pub url: http::Uri,
    /// Lower-case header names.
    pub headers: Vec<http::HeaderName>,
}

impl ConnectHook {
    /// Asks the backend who a connection is.
    pub(crate) fn call(
        self: &Arc<Self>,
        connecting: Connecting,
    ) -> BoxFuture<'static, Result<Admitted, Refused>> {
        let hook = self.clone();
        async move {
            let call = json!({
                "hook": "connect",
                "token": connecting.token,
                "name": connecting.name,
                "peer": connecting.peer.map(|peer: IpAddr| peer.to_string()),
                "headers": hook.passed(&connecting.headers),
            });
            match ask(&hook.backend, &hook.url, &call).await {
                Outcome::Answered(mut answer) => admitted(answer.remove("user"), connecting.name),
                Outcome::Refused(refusal) => Err(Refused::App(refusal)),
                Outcome::Failed(failed) => Err(refused(failed)),
            }
        }
        .boxed()
    }

    /// The configured headers the connection's request has, each once (several values
    /// joined, as HTTP/1 would fold them: cookies with `; `).
    fn passed(&self, headers: &http::HeaderMap) -> Map<String, Value> {
        let mut passed = Map::new();
        for name in &self.headers {
            let values: Vec<&str> =
                headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).collect();
            if !values.is_empty() {
                let separator = if name == http::header::COOKIE { "; " } else { ", " };
                passed.insert(name.as_str().to_owned(), Value::String(values.join(separator)));
            }
        }
        passed
    }
}

/// `{"id": …, "name": …, "rooms": [...]}`: the name defaults to the one the `hello` asked
/// for (then the id), the rooms to every room.
fn admitted(user: Option<Value>, asked_name: Option<String>) -> Result<Admitted, Refused> {
    #[derive(Deserialize)]
    struct UserAnswer {
        id: String,
        name: Option<String>,
        rooms: Option<Vec<String>>,
    }
    let Some(user) = user else {
        return Err(Refused::Broken(
            "the app's backend answered a connect with no `user` and no `refuse`".into(),
        ));
    };
    let UserAnswer { id, name, rooms } = serde_json::from_value(user).map_err(|error| {
        Refused::Broken(format!("the app's backend answered a connect with an unreadable `user`: {error}"))
    })?;
    let name = name.or(asked_name).unwrap_or_else(|| id.clone());
    Ok(Admitted { id, name, rooms: rooms.unwrap_or_else(|| vec!["*".into()]) })
}
