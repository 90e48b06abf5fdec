//! The warp app: its filters, with Tether's filter composed under `/live`.

use std::collections::HashMap;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::{COOKIE, PAGE, Sessions, news};

/// The app's routes with `tether` under `/live`.
pub fn routes(sessions: Sessions, tether: &tether_server::Tether) -> BoxedFilter<(Response,)> {
    let login = {
        let sessions = sessions.clone();
        warp::path!("login").and(warp::get()).and(warp::query::<HashMap<String, String>>()).map(
            move |query: HashMap<String, String>| {
                let name = query.get("name").cloned().unwrap_or_else(|| "guest".into());
                let session = sessions.sign_in(&name);
                let cookie = format!("{COOKIE}={session}; Path=/; HttpOnly");
                warp::reply::with_header(format!("signed in as {name}\n"), "set-cookie", cookie)
                    .into_response()
            },
        )
    };
    let me = {
        let sessions = sessions.clone();
        warp::path!("me").and(warp::get()).and(warp::header::optional::<String>("cookie")).map(
            move |cookie: Option<String>| match sessions.who(cookie.as_deref()) {
                Some(name) => name.into_response(),
                None => warp::reply::with_status("not signed in", StatusCode::UNAUTHORIZED).into_response(),
            },
        )
    };
    let announce = {
        let api = tether.api();
        warp::path!("announce").and(warp::post()).and(warp::query::<HashMap<String, String>>()).then(
            move |query: HashMap<String, String>| {
                let api = api.clone();
                async move {
                    let text = query.get("text").cloned().unwrap_or_default();
                    match api.publish(news(&text)).await {
                        Ok(published) => format!("announced as #{}\n", published.seq).into_response(),
                        Err(error) => {
                            let status =
                                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
                            warp::reply::with_status(error.to_string(), status).into_response()
                        }
                    }
                }
            },
        )
    };
    let page = warp::path::end().and(warp::get()).map(|| warp::reply::html(PAGE).into_response());
    page.or(login)
        .unify()
        .or(me)
        .unify()
        .or(announce)
        .unify()
        .or(warp::path("live").and(tether.filter()))
        .unify()
        .boxed()
}
