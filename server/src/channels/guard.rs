//! One handler call, bounded: an app's handler that panics or never answers fails that
//! call alone. The connection that asked, the other connections and the server go on.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

/// Why a handler call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Fault {
    /// The handler panicked (the panic's message, when it had one).
    #[error("the app's handler failed: {0}")]
    Panicked(String),
    /// The handler did not answer within its channel's patience.
    #[error("the app's handler did not answer within {0:?}")]
    TimedOut(Duration),
}

impl Fault {
    /// A caught panic, with what it said when it said it in words.
    pub(crate) fn panicked(panic: Box<dyn std::any::Any + Send>) -> Fault {
        let said = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Fault::Panicked(said)
    }
}

/// Runs `call` to its answer, or to a [`Fault`]: a panic is caught at this boundary and
/// a call past `patience` is dropped (cancelled at its next await).
pub(crate) async fn guarded<T>(call: impl Future<Output = T>, patience: Duration) -> Result<T, Fault> {
    match tokio::time::timeout(patience, AssertUnwindSafe(call).catch_unwind()).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(panic)) => Err(Fault::panicked(panic)),
        Err(_) => Err(Fault::TimedOut(patience)),
    }
}

/// Polls a call once, in place, with a waker that does nothing: its answer if it is
/// ready (most handlers answer without waiting for anything), behind the same panic
/// boundary. A call that is not ready is then run under [`guarded`] by a task, whose
/// polls register its own waker (every future registers the waker of the poll that
/// returned `Pending`, so nothing is lost).
pub(crate) fn poll_once<T>(call: &mut futures::future::BoxFuture<'static, T>) -> Option<Result<T, Fault>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(&mut cx))) {
        Ok(std::task::Poll::Ready(answer)) => Some(Ok(answer)),
        Ok(std::task::Poll::Pending) => None,
        Err(panic) => Some(Err(Fault::panicked(panic))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_or_a_call_that_never_answers_is_a_fault_and_an_answer_passes() {
        let patience = Duration::from_millis(50);
        assert_eq!(guarded(async { 7 }, patience).await, Ok(7));
        let panicked = guarded(async { panic!("boom") }, patience).await;
        assert_eq!(panicked, Err::<(), _>(Fault::Panicked("boom".into())));
        let never = guarded(std::future::pending::<()>(), patience).await;
        assert_eq!(never, Err(Fault::TimedOut(patience)));
    }
}
