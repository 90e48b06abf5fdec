//! Deadlines for tests: every await in a test has one, so that a broken system fails a
//! test instead of hanging it. Shared by the server's, the native client's and the
//! end-to-end tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// Upper bound on any single wait, so a broken server fails a test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `future` within [`PATIENCE`], or fails the test saying what did not happen.
///
/// Every await in a test has a deadline. One read has its own (`next_message`), but a
/// loop of reads or polls until something comes is kept alive for ever by whatever else
/// keeps coming (heartbeats, presence, other frames): such a loop goes in here whole.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(PATIENCE, what, future).await
}

/// [`within`], with a deadline of its own for a wait known to be longer.
pub async fn within_for<T>(patience: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(patience, future).await {
        Ok(done) => done,
        Err(_) => panic!("{what}: still waiting after {patience:?}"),
    }
}

/// Asks `check` again every few milliseconds until it holds, within [`PATIENCE`]: for a
/// state the server shows (a metric, a count) but announces with no event to await.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
