//! The planning-poker table's contract: a channel where every move is a *request* that
//! the server checks against the table it holds, and what the table hears is only what
//! the server publishes after a move it accepted.
//!
//! Votes are secret until the reveal, so they cannot travel as ordinary messages (a
//! message reaches everyone in the room): a vote goes to the server alone as a
//! [`Move`], and the [`Event`] published for it says who voted, not what. Each event
//! carries the whole [`Table`] as everyone may see it, numbered by
//! [`Table::version`], so a client keeps the newest one it has seen and never needs to
//! fold events in order.

use serde::{Deserialize, Serialize};
use tether_shared::channel::{Channel, ChannelError, Requests};

/// The poker tables: every room named `poker:…`. More specific than the chat's `*`, so
/// these rooms are the table's and not the chat's.
pub struct Poker;

impl Channel for Poker {
    const ROOMS: &'static str = "poker:*";
    type Message = Event;
    type State = ();
    type Meta = ();
    type Error = PokerError;
}

impl Requests for Poker {
    type Request = Move;
    type Reply = Seat;
}

/// The cards on the table, in the order they are laid out. `?` is "no idea": a vote
/// that counts as voted but not in the average.
pub const DECK: [&str; 9] = ["0", "1", "2", "3", "5", "8", "13", "21", "?"];

/// Longest topic a round may have, in characters.
pub const MAX_TOPIC: usize = 80;

/// What a member may do at the table. Each is checked by the server against the
/// table as it is, then published to everyone as an [`Event`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    /// Nothing: the table as it is now (for a member who just sat down).
    Look,
    /// Lay down a card (one of [`DECK`]); laying another before the reveal replaces it.
    Vote {
        /// The card's face.
        card: String,
    },
    /// Turn every card face up.
    Reveal,
    /// Clear the table for the next item.
    NewRound {
        /// What the round estimates (may be empty).
        topic: String,
    },
}

/// Who voted, as the table shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Voter {
    /// The member's user id (one vote per user, whatever their number of tabs).
    pub id: String,
    /// Their display name.
    pub name: String,
}

/// One vote as a table shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// Who.
    pub voter: Voter,
    /// The card, once revealed; `None` before (face down).
    pub card: Option<String>,
}

/// The table as everyone may see it: face-down cards until the reveal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Counts the table's moves: a bigger version is a newer table. Clients keep the
    /// newest they have seen, whatever order events reach them in.
    pub version: u64,
    /// Counts rounds, from 1 (0 before the first [`Move::NewRound`]).
    pub round: u64,
    /// What this round estimates.
    pub topic: String,
    /// One per voter, in the order they first voted this round.
    pub votes: Vec<Vote>,
    /// Whether the cards are face up.
    pub revealed: bool,
}

impl Table {
    /// The average of the revealed number cards (`?` and face-down cards left out), in
    /// tenths, rounded: `Some(35)` is 3.5. Tenths keep the float formatter out of the
    /// browser bundle. `None` when no number card is face up.
    pub fn average_tenths(&self) -> Option<u64> {
        let numbers: Vec<u64> =
            self.votes.iter().filter_map(|vote| vote.card.as_deref()?.parse::<u64>().ok()).collect();
        if numbers.is_empty() {
            return None;
        }
        let count = numbers.len() as u64;
        let sum: u64 = numbers.iter().sum();
        Some((sum * 10 + count / 2) / count)
    }
}

/// An average in tenths (see [`Table::average_tenths`]) as people write it: `3.5`, `8`.
pub fn tenths(value: u64) -> String {
    match value % 10 {
        0 => format!("{}", value / 10),
        tenth => format!("{}.{tenth}", value / 10),
    }
}

/// The answer to every move: the table as the asker may see it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Seat {
    /// The table as everyone sees it.
    pub table: Table,
    /// The asker's own card this round, face up to them alone.
    pub mine: Option<String>,
}

/// What happened at the table: published by the server (never by a member) after a
/// move it accepted, from the member who moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The move, as everyone may know it.
    pub what: Happened,
    /// The table after it.
    pub table: Table,
}

/// A move as everyone may know of it: a vote without its card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Happened {
    /// The sender laid down (or changed) a card, face down.
    Voted,
    /// The sender turned the cards face up.
    Revealed,
    /// The sender started a round.
    NewRound,
}

/// Why the server refused a move (or a publish: members never publish here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PokerError {
    /// That card is not in the [`DECK`].
    NotACard {
        /// The card asked for.
        card: String,
    },
    /// The cards are face up: votes wait for the next round.
    AlreadyRevealed,
    /// Nothing to reveal yet.
    NoVotes,
    /// The topic is over [`MAX_TOPIC`] characters.
    TopicTooLong {
        /// The limit.
        max: usize,
    },
    /// A member published to the table: moves are requests, and only the server
    /// publishes what they did.
    MovesOnly,
    /// The move could not be published to the table (the store refused it), so it was
    /// undone: try again.
    Unavailable,
}

impl ChannelError for PokerError {
    fn code(&self) -> &str {
        match self {
            PokerError::NotACard { .. } => "not_a_card",
            PokerError::AlreadyRevealed => "already_revealed",
            PokerError::NoVotes => "no_votes",
            PokerError::TopicTooLong { .. } => "topic_too_long",
            PokerError::MovesOnly => "moves_only",
            PokerError::Unavailable => "unavailable",
        }
    }

    fn message(&self) -> String {
        match self {
            PokerError::NotACard { card } => format!("{card:?} is not a card of the deck"),
            PokerError::AlreadyRevealed => "the cards are already face up: start a new round".into(),
            PokerError::NoVotes => "nobody has voted yet".into(),
            PokerError::TopicTooLong { max } => format!("a topic has at most {max} characters"),
            PokerError::MovesOnly => "the table takes moves, not messages".into(),
            PokerError::Unavailable => "the table could not tell the others: try again".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revealed(cards: &[&str]) -> Table {
        let votes = cards
            .iter()
            .enumerate()
            .map(|(i, card)| Vote {
                voter: Voter { id: i.to_string(), name: i.to_string() },
                card: Some((*card).to_owned()),
            })
            .collect();
        Table { votes, revealed: true, ..Table::default() }
    }

    #[test]
    fn the_average_leaves_question_marks_out_and_rounds_to_a_tenth() {
        assert_eq!(revealed(&["3", "5"]).average_tenths(), Some(40));
        assert_eq!(revealed(&["2", "3", "?"]).average_tenths(), Some(25));
        assert_eq!(revealed(&["1", "1", "2"]).average_tenths(), Some(13), "1.33… is 1.3");
        assert_eq!(revealed(&["1", "2", "2"]).average_tenths(), Some(17), "1.66… is 1.7");
        assert_eq!(revealed(&["?"]).average_tenths(), None);
        assert_eq!(Table::default().average_tenths(), None);
        assert_eq!((tenths(40), tenths(25), tenths(0)), ("4".to_owned(), "2.5".to_owned(), "0".to_owned()));
    }
}
