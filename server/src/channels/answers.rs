//! Recent answers to idempotent requests, so that one asked again (a client re-sends it
//! under the same id after a reconnect) is answered from memory, not asked of the
//! handler twice: the way the dedupe window answers a re-sent message with its ack.
//!
//! A repeat that arrives while the first is still being answered waits for that answer.
//! Only the app's decisions (a reply, a refusal) are kept; a handler that failed is
//! asked again. Kept for a minute, at most [`MAX_KEPT`] at once, per node: a client
//! that resumes on another node of a cluster is answered by the handler again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// How long an answer is kept.
const KEEP: Duration = Duration::from_secs(60);
/// Most answers kept at once; past it (a flood of distinct ids), requests are answered
/// without being remembered.
pub(crate) const MAX_KEPT: usize = 10_000;

/// The answer to one request, once there is one.
pub(crate) type Slot = Arc<OnceCell<Utf8Bytes>>;

/// Answers by (user, request id).
#[derive(Default)]
pub(crate) struct RecentAnswers {
    slots: Mutex<HashMap<(String, String), (Instant, Slot)>>,
}

impl RecentAnswers {
    /// The slot for `user`'s request `id`: the one a first asking made, or a new one.
    /// `None` when memory is full.
    pub(crate) fn slot(&self, user: &str, id: &str) -> Option<Slot> {
        let mut slots = self.slots.lock().expect("answers lock");
        let now = Instant::now();
        let key = (user.to_owned(), id.to_owned());
        if let Some((at, slot)) = slots.get(&key)
            && now.duration_since(*at) < KEEP
        {
            return Some(slot.clone());
        }
        if slots.len() >= MAX_KEPT {
            slots.retain(|_, (at, _)| now.duration_since(*at) < KEEP);
            if slots.len() >= MAX_KEPT {
                return None;
            }
        }
        let slot = Slot::default();
        slots.insert(key, (now, slot.clone()));
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_user_and_id_share_one_answer_and_others_do_not() {
        let answers = RecentAnswers::default();
        let first = answers.slot("ada", "q1").unwrap();
        first.set(Utf8Bytes::from("the answer")).unwrap();
        assert_eq!(answers.slot("ada", "q1").unwrap().get().map(|a| a.as_str()), Some("the answer"));
        assert!(answers.slot("bob", "q1").unwrap().get().is_none(), "another user's q1");
        assert!(answers.slot("ada", "q2").unwrap().get().is_none());
    }
}
