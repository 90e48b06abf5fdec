//! The browser's own signals, turned into inputs: the network going on- and offline, and
//! the page becoming visible again (a good moment to check the connection).

use gloo_events::EventListener;
use tether_shared::Input;

use super::Link;

impl Link {
    pub(super) fn listen_to_the_browser(&self) {
        let Some(window) = web_sys::window() else { return };
        let mut listeners = Vec::new();
        for (name, input) in [("online", Input::NetworkOnline), ("offline", Input::NetworkOffline)] {
            let weak = self.weak();
            listeners.push(EventListener::new(&window, name, move |_| {
                if let Some(link) = Link::upgrade(&weak) {
                    link.handle(input.clone());
                }
            }));
        }
        if let Some(document) = window.document() {
            let weak = self.weak();
            let doc = document.clone();
            listeners.push(EventListener::new(&document, "visibilitychange", move |_| {
                if doc.visibility_state() == web_sys::VisibilityState::Visible {
                    if let Some(link) = Link::upgrade(&weak) {
                        link.handle(Input::PageVisible);
                    }
                }
            }));
        }
        self.inner.borrow_mut()._listeners = listeners;
        if !window.navigator().on_line() {
            self.handle(Input::NetworkOffline);
        }
    }
}
