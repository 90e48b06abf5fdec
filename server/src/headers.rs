//! Request headers read as they came.
//!
//! warp's typed header filters reject a value that is not visible ASCII (an `é`, any
//! byte past 127) before a route sees it, and the rejection ends as whatever answer
//! the route's recovery gives unknown rejections: a 404 or a plain-text 400. Reading
//! the raw value leaves the judging to the route, which answers as it answers any
//! other bad value: typed, as JSON.

use std::convert::Infallible;

use warp::Filter;
use warp::http::HeaderValue;

/// The header `name` as it came, if the request has one.
pub fn raw(name: &'static str) -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone {
    warp::header::value(name).map(Some).or(warp::any().map(|| None)).unify()
}

/// A header's value as text; one that is not visible ASCII is as good as absent.
pub fn text(value: Option<HeaderValue>) -> Option<String> {
    value.and_then(|value| value.to_str().ok().map(str::to_owned))
}
