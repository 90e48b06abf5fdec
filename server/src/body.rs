//! A request body, read whole, or a typed rejection saying why it could not be.
//!
//! warp's own `body::bytes()` turns every failure to read into a rejection of a type it
//! keeps private, which no recovery can find, so a body that stopped halfway was
//! answered as if no call had matched (404). This reads the same body and says which
//! failure it was: one that did not arrive within the body timeout
//! ([`crate::serve::Timely`]), or one cut off. [`crate::rejections::typed`] answers each.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::{Filter, Rejection};

use crate::serve::BodyTimeout;

/// Why a request's body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// It had not arrived whole when the body timeout ran out.
    Late,
    /// The connection failed or ended before the body's end.
    Cut,
}

impl warp::reject::Reject for Unread {}

/// The whole request body, as `warp::body::bytes()` gives it; a body that cannot be
/// read is rejected with [`Unread`].
pub fn whole() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Copy {
    warp::body::stream().and_then(|stream| async move { collect(stream).await.map_err(warp::reject::custom) })
}

async fn collect<B: Buf>(stream: impl Stream<Item = Result<B, warp::Error>>) -> Result<Bytes, Unread> {
    let mut stream = std::pin::pin!(stream);
    let mut whole = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => whole.put(chunk),
            Err(error) => return Err(unread(&error)),
        }
    }
    Ok(whole.freeze())
}

/// Which failure `error` is: the body timeout, found anywhere in its chain of causes,
/// or any other.
fn unread(error: &(dyn std::error::Error + 'static)) -> Unread {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyTimeout>() {
            return Unread::Late;
        }
        cause = error.source();
    }
    Unread::Cut
}
