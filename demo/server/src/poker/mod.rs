//! The planning-poker tables: every move is a request, checked by [`Game::play`]
//! against the table the server holds, and then published to the table by the server,
//! in the mover's name. Members may not publish at all, so the table's history holds
//! nothing but what the server accepted.
//!
//! A member's publish runs the channel's publish handler, which refuses every one; the
//! server's own publishes (`Api::publish`, the request handler's and the HTTP API's)
//! are the app's authority and run no publish handler, only the check of the message
//! type. So refusing in `on_publish` shuts members out without shutting the server out.

mod game;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tether_demo_chat::poker::{Event, Move, Poker, PokerError, Seat, Voter};
use tether_server::api::calls::{PublishRequest, Sender};
use tether_server::{Api, Call, Handlers};
use tether_shared::channel::{decode, encode};

pub use game::Game;

/// Every table's game, by room. Held in this process's memory: cards laid face down
/// were never published, so they exist nowhere else.
///
/// A `std::sync::Mutex`, not Tokio's: it is never held across an `.await` (a move is
/// checked and applied under it, then published after it is released), and the work
/// under it is a few comparisons. Tables are never dropped: a demo has few.
#[derive(Default)]
pub struct Tables {
    games: Mutex<HashMap<String, Game>>,
}

impl Tables {
    fn games(&self) -> MutexGuard<'_, HashMap<String, Game>> {
        // A poisoned lock still holds whole games: `Game::play` changes a game only
        // after every check has passed.
        self.games.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure `room` has a game: on its first move since the server started, the
    /// one its last published event describes (see [`Game::resumed`]), so that the
    /// versions go on from what clients already hold.
    async fn sit(&self, api: &Api, room: &str) {
        if self.games().contains_key(room) {
            return;
        }
        // Unreadable history (a store failing) starts a fresh game: members who saw the
        // old one get the new one with their next look.
        let last = api.history(room, None, Some(1)).await.ok().and_then(|mut page| page.messages.pop());
        let game = match last.map(|message| decode::<Event>(&message.body)) {
            Some(Ok(event)) => Game::resumed(event.table),
            _ => Game::default(),
        };
        // Another move may have sat down meanwhile: the first one's game stays.
        self.games().entry(room.to_owned()).or_insert(game);
    }

    /// Puts `room`'s game back to `before` if nothing moved since `version`; whether
    /// it did. A later move's event carries the table with this move in it, so once
    /// another move is made this one has been heard and stays.
    fn undo(&self, room: &str, version: u64, before: Game) -> bool {
        let mut games = self.games();
        match games.get_mut(room) {
            Some(game) if game.version() == version => {
                *game = before;
                true
            }
            _ => false,
        }
    }
}

/// The poker channel's handlers.
pub fn handlers() -> Handlers<Poker, Tables> {
    Handlers::<Poker, Tables>::with_state(Default::default())
        .on_publish(|_call, _event: Event| async { Err(PokerError::MovesOnly) })
        .on_request(play)
}

/// One move: checked and applied under the lock, then published to the table, and
/// answered with the table as the mover may see it.
async fn play(call: Call<Tables>, turn: Move) -> Result<Seat, PokerError> {
    let voter = Voter { id: call.user.id.clone(), name: call.user.name.clone() };
    call.state.sit(&call.api, &call.room).await;
    let (before, happened, seat) = {
        let mut games = call.state.games();
        let game = games.entry(call.room.clone()).or_default();
        let before = game.clone();
        let happened = game.play(&voter, &turn)?;
        (before, happened, game.seat(&voter.id))
    };
    let Some(what) = happened else { return Ok(seat) };
    let event = Event { what, table: seat.table.clone() };
    let publish = PublishRequest {
        room: call.room.clone(),
        body: encode(&event),
        id: None,
        from: Some(Sender { id: voter.id, name: sender_name(&voter.name) }),
    };
    if call.api.publish(publish).await.is_err() && call.state.undo(&call.room, seat.table.version, before) {
        return Err(PokerError::Unavailable);
    }
    Ok(seat)
}

/// The name an API publish may carry (1-32 characters): a dev sign-in's always is one,
/// and an app's own sign-in (a token, `on_connect`) may name anyone anyhow.
fn sender_name(name: &str) -> String {
    match name.trim() {
        "" => "member".to_owned(),
        name => name.chars().take(32).collect(),
    }
}
