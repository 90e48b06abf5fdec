//! Who is connected: every welcomed connection's send queue, by user.
//!
//! Rooms know their members, but a user may be connected without being in any room,
//! and the server API's `disconnect` must reach all of a user's connections on this
//! node at once. Connections add themselves when welcomed and remove themselves when
//! they end; nothing else holds a connection's queue for longer than a delivery.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::close::Close;
use crate::outbound::{ConnId, Outbound};

/// The connections of this node, by user id.
#[derive(Default)]
pub struct Connected {
    users: Mutex<HashMap<String, HashMap<ConnId, Outbound>>>,
}

impl Connected {
    /// Counts a welcomed connection of `user`.
    pub fn add(&self, user: &str, out: &Outbound) {
        let mut users = self.users.lock().expect("connected lock");
        users.entry(user.to_owned()).or_default().insert(out.conn(), out.clone());
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, user: &str, conn: ConnId) {
        let mut users = self.users.lock().expect("connected lock");
        if let Some(connections) = users.get_mut(user) {
            connections.remove(&conn);
            if connections.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Asks every connection of `user` to close with `close`; returns how many.
    pub fn close_user(&self, user: &str, close: Close) -> usize {
        let users = self.users.lock().expect("connected lock");
        let Some(connections) = users.get(user) else { return 0 };
        for out in connections.values() {
            out.end(close.clone());
        }
        connections.len()
    }

    /// Users with at least one connection here.
    pub fn users(&self) -> usize {
        self.users.lock().expect("connected lock").len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;
    use crate::outbound::{Next, QueueLimits};

    #[tokio::test]
    async fn closing_a_user_reaches_each_of_their_connections_and_no_one_else() {
        let connected = Connected::default();
        let metrics = Arc::new(Metrics::default());
        let (ada_one, mut ada_one_queue) = Outbound::new(1, QueueLimits::frames_only(4), metrics.clone());
        let (ada_two, mut ada_two_queue) = Outbound::new(2, QueueLimits::frames_only(4), metrics.clone());
        let (bob, bob_queue) = Outbound::new(3, QueueLimits::frames_only(4), metrics);
        connected.add("ada", &ada_one);
        connected.add("ada", &ada_two);
        connected.add("bob", &bob);
        assert_eq!(connected.users(), 2);
        let close = Close::new(tether_shared::close::REMOVED, "removed");
        assert_eq!(connected.close_user("ada", close.clone()), 2);
        for queue in [&mut ada_one_queue, &mut ada_two_queue] {
            assert!(matches!(queue.next().await, Next::End(c) if c == close));
        }
        assert!(bob_queue.may_read(), "Bob is untouched");
        connected.remove("ada", 1);
        connected.remove("ada", 2);
        assert_eq!((connected.users(), connected.close_user("ada", close)), (1, 0));
    }
}
