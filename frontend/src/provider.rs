//! `WebSocketProvider`: the context that owns every connection of the app, one per URL.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use yew::prelude::*;

use crate::endpoint::default_socket_url;
use crate::link::{Link, LinkOptions};

/// Connections shared by URL, counted by who uses them.
#[derive(Default)]
struct Pool {
    links: RefCell<HashMap<String, (Link, usize)>>,
}

/// What `WebSocketProvider` puts in context.
#[derive(Clone)]
pub struct TetherContext {
    pool: Rc<Pool>,
    /// The URL hooks use when they name none.
    pub default_url: AttrValue,
    /// Options for links this provider creates.
    pub options: Rc<LinkOptions>,
}

impl PartialEq for TetherContext {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.pool, &other.pool) && self.default_url == other.default_url
    }
}

impl TetherContext {
    /// The shared link for `url`, created on first use. The lease keeps it alive; when
    /// the last lease for a URL is dropped, its socket, timers and listeners go too.
    pub fn acquire(&self, url: &str, options: Option<&LinkOptions>) -> Lease {
        let mut links = self.pool.links.borrow_mut();
        let entry = links.entry(url.to_owned()).or_insert_with(|| {
            (Link::new(url, options.cloned().unwrap_or_else(|| (*self.options).clone())), 0)
        });
        entry.1 += 1;
        Lease { pool: Rc::downgrade(&self.pool), url: url.to_owned(), link: entry.0.clone() }
    }

    /// Open links, for leak checks.
    pub fn link_count(&self) -> usize {
        self.pool.links.borrow().len()
    }
}

/// A counted use of a shared link.
pub struct Lease {
    pool: Weak<Pool>,
    url: String,
    /// The shared link; it lives as long as any lease of its URL does.
    pub link: Link,
}

impl PartialEq for Lease {
    fn eq(&self, other: &Self) -> bool {
        self.link == other.link
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else { return };
        let removed = {
            let mut links = pool.links.borrow_mut();
            match links.get_mut(&self.url) {
                Some((_, count)) if *count > 1 => {
                    *count -= 1;
                    None
                }
                Some(_) => links.remove(&self.url),
                None => None,
            }
        };
        // Dropped outside the borrow: closing the socket may run callbacks.
        drop(removed);
    }
}

/// Properties of [`WebSocketProvider`].
#[derive(Properties, PartialEq)]
pub struct WebSocketProviderProps {
    /// The default server URL; the page's own `/ws` when unset.
    #[prop_or_default]
    pub url: Option<AttrValue>,
    /// Options for the links this provider creates.
    #[prop_or_default]
    pub options: LinkOptions,
    /// The part of the app that may use the Tether hooks.
    pub children: Html,
}

/// Provides shared connections to everything below it. Put it near the root.
#[component]
pub fn WebSocketProvider(props: &WebSocketProviderProps) -> Html {
    let context = use_memo((props.url.clone(), props.options.clone()), |(url, options)| TetherContext {
        pool: Rc::new(Pool::default()),
        default_url: url.clone().unwrap_or_else(|| AttrValue::from(default_socket_url())),
        options: Rc::new(options.clone()),
    });
    html! {
        <ContextProvider<TetherContext> context={(*context).clone()}>
            { props.children.clone() }
        </ContextProvider<TetherContext>>
    }
}
