//! Events handed to subscribers once per animation frame: a burst of 5,000 messages
//! costs a handful of renders, not 5,000. After each batch the link tells the server this
//! device has the messages (one `delivered` receipt per room).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use tether_shared::{Event, Input, ReceiptKind, ServerFrame};

use super::{Inner, Link, Status, Subscriber};

impl Link {
    /// Calls `subscriber` with every batch of events (at most once per animation frame)
    /// and the status after it, until the returned guard is dropped.
    pub fn subscribe(&self, subscriber: impl Fn(&Rc<[Event]>, &Status) + 'static) -> Subscription {
        let mut inner = self.inner.borrow_mut();
        inner.next_subscriber += 1;
        let id = inner.next_subscriber;
        inner.subscribers.push((id, Rc::new(subscriber)));
        Subscription { link: self.weak(), id }
    }

    pub(super) fn schedule_flush(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.pending.is_empty() || inner.frame.is_some() {
            return;
        }
        let weak = self.weak();
        inner.frame = Some(gloo_render::request_animation_frame(move |_| {
            if let Some(link) = Link::upgrade(&weak) {
                link.flush();
            }
        }));
    }

    /// Hands the collected events to every subscriber, as one batch.
    fn flush(&self) {
        let (events, subscribers) = {
            let mut inner = self.inner.borrow_mut();
            inner.frame = None;
            let events: Rc<[Event]> = std::mem::take(&mut inner.pending).into();
            let subscribers: Vec<Subscriber> = inner.subscribers.iter().map(|(_, s)| s.clone()).collect();
            (events, subscribers)
        };
        let status = self.status();
        for subscriber in subscribers {
            subscriber(&events, &status);
        }
        // This device has these messages now: one `delivered` receipt per room and batch,
        // sent here once rather than by every hook that happens to watch the room.
        let me = status.user.as_ref().map(|user| user.id.as_str());
        let mut delivered: Vec<(&str, u64)> = Vec::new();
        for event in events.iter() {
            if let Event::Frame(ServerFrame::Message { room, seq, from, .. }) = event {
                if Some(from.id.as_str()) == me {
                    continue;
                }
                match delivered.iter_mut().find(|(r, _)| *r == room.as_str()) {
                    Some((_, latest)) => *latest = (*latest).max(*seq),
                    None => delivered.push((room, *seq)),
                }
            }
        }
        for (room, seq) in delivered {
            self.handle(Input::Receipt { room: room.to_owned(), kind: ReceiptKind::Delivered, seq });
        }
    }
}

/// Keeps a subscription alive; dropping it unsubscribes.
pub struct Subscription {
    link: Weak<RefCell<Inner>>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.link.upgrade() {
            if let Ok(mut inner) = inner.try_borrow_mut() {
                inner.subscribers.retain(|(id, _)| *id != self.id);
            }
        }
    }
}
