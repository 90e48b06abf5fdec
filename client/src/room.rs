//! A channel's room for the native client: what to send, typed, and how to read the
//! client's events as the channel's types. The decoding is the protocol crate's
//! ([`ChannelEvent::read`]), the same the browser's hooks use.

use std::marker::PhantomData;

use tether_shared::channel::{Channel, encode};
use tether_shared::typed::ChannelEvent;
use tether_shared::{Event, Input};

/// A room of channel `C`: its name, and the channel's types for it.
#[derive(Debug)]
pub struct Room<C: Channel> {
    name: String,
    channel: PhantomData<fn() -> C>,
}

impl<C: Channel> Clone for Room<C> {
    fn clone(&self) -> Self {
        Room::new(self.name.clone())
    }
}

impl<C: Channel> Room<C> {
    /// The room called `name` (one the channel covers, or the server will refuse what
    /// does not fit the channel that does).
    pub fn new(name: impl Into<String>) -> Self {
        Room { name: name.into(), channel: PhantomData }
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input that joins it.
    pub fn join(&self) -> Input {
        Input::Join(self.name.clone())
    }

    /// The input that sets (or, with `None`, clears) our volatile state under `key`.
    pub fn state(&self, key: &str, value: Option<&C::State>) -> Input {
        let value = value.map_or(serde_json::Value::Null, encode);
        Input::State { room: self.name.clone(), key: key.to_owned(), value }
    }

    /// `event` as this room's typed event, if it is one.
    pub fn read(&self, event: &Event) -> Option<ChannelEvent<C>> {
        ChannelEvent::read(&self.name, event)
    }
}
