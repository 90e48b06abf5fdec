//! warp's own rejections as typed answers, for the routes whose every answer is JSON
//! (the server API, the HTTP fallback). Each route keeps its own recovery for its own
//! refusals and for a path it does not know; what warp decides before a call runs (a
//! body over the limit, one without a length, one that did not arrive whole
//! ([`crate::body`]), a query that does not parse, the wrong method) reads the same on
//! both.

use warp::Rejection;
use warp::http::StatusCode;

/// The status, error code and words for `rejection` when it is one of warp's own;
/// `methods` tells which method each of the route's calls wants. `None` for anything
/// else, such as no call matching at all.
pub fn typed(
    rejection: &Rejection,
    methods: &'static str,
) -> Option<(StatusCode, &'static str, &'static str)> {
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        Some((StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request is over the server's size limit"))
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        Some((StatusCode::LENGTH_REQUIRED, "length_required", "send the body with a Content-Length"))
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        Some((StatusCode::BAD_REQUEST, "invalid_request", "the query string is not valid"))
    } else if let Some(unread) = rejection.find::<crate::body::Unread>() {
        Some(match unread {
            crate::body::Unread::Late => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time; send it whole",
            ),
            // Not `invalid_request`, which speaks of the JSON's shape: no JSON arrived.
            crate::body::Unread::Cut => (
                StatusCode::BAD_REQUEST,
                "body_incomplete",
                "the request body ended before its Content-Length; send it whole",
            ),
        })
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Some((StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", methods))
    } else {
        None
    }
}
