//! The one socket a driver has open, under the id the core gave it.

use super::SocketId;

/// The driver's current socket. The core names a socket in every [`Action`] and every
/// socket event carries the id it was opened under; this answers only for the current
/// one, which is how a late action or event for a socket the core has already replaced
/// is ignored, in every driver the same way.
///
/// [`Action`]: super::Action
#[derive(Debug)]
pub struct CurrentSocket<S> {
    slot: Option<(SocketId, S)>,
}

impl<S> Default for CurrentSocket<S> {
    fn default() -> Self {
        CurrentSocket { slot: None }
    }
}

impl<S> CurrentSocket<S> {
    /// Makes `socket`, opened as `id`, the current one; the previous one is returned.
    pub fn replace(&mut self, id: SocketId, socket: S) -> Option<(SocketId, S)> {
        self.slot.replace((id, socket))
    }

    /// The socket, if `id` is the current one.
    pub fn get(&mut self, id: SocketId) -> Option<&mut S> {
        self.slot.as_mut().filter(|(current, _)| *current == id).map(|(_, socket)| socket)
    }

    /// Takes the socket out, if `id` is the current one.
    pub fn take(&mut self, id: SocketId) -> Option<S> {
        if self.id() == Some(id) { self.slot.take().map(|(_, socket)| socket) } else { None }
    }

    /// Takes whatever socket is current (shutting down).
    pub fn take_any(&mut self) -> Option<(SocketId, S)> {
        self.slot.take()
    }

    /// The current socket's id.
    pub fn id(&self) -> Option<SocketId> {
        self.slot.as_ref().map(|(id, _)| *id)
    }

    /// The current socket and its id, whichever it is (to read from it).
    pub fn current(&mut self) -> Option<(SocketId, &mut S)> {
        self.slot.as_mut().map(|(id, socket)| (*id, socket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_id_reaches_the_socket() {
        let mut current = CurrentSocket::default();
        assert!(current.replace(SocketId(1), "first").is_none());
        assert_eq!(current.replace(SocketId(2), "second"), Some((SocketId(1), "first")));
        assert!(current.get(SocketId(1)).is_none(), "a replaced socket's actions are ignored");
        assert!(current.take(SocketId(1)).is_none());
        assert_eq!(current.get(SocketId(2)).copied(), Some("second"));
        assert_eq!(current.take(SocketId(2)), Some("second"));
        assert_eq!(current.id(), None);
    }
}
