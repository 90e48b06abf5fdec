//! One table's game as the server holds it: every card face up to the server alone. The
//! rules live here as plain data and plain functions, with no I/O, so that what a move
//! may do is read (and tested) in one place; `handlers.rs` does the talking.

use tether_demo_chat::poker::{DECK, Happened, MAX_TOPIC, Move, PokerError, Seat, Table, Vote, Voter};

/// One table: the round, and each voter's card in the order they first voted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Game {
    version: u64,
    round: u64,
    topic: String,
    votes: Vec<(Voter, String)>,
    revealed: bool,
}

impl Game {
    /// The game a table's last published event describes, after a restart: the votes
    /// of a round not yet revealed were never published, so that round starts over
    /// with its topic; a revealed round comes back whole. The version goes on from the
    /// event's, so that clients holding the table from before take what comes next.
    pub fn resumed(last: Table) -> Game {
        let votes = match last.revealed {
            true => last.votes.into_iter().filter_map(|vote| Some((vote.voter, vote.card?))).collect(),
            false => Vec::new(),
        };
        Game { version: last.version, round: last.round, topic: last.topic, votes, revealed: last.revealed }
    }

    /// Plays `play` by `voter`: what everyone may know of it, or why it is refused (and
    /// then nothing changed). [`Move::Look`] changes nothing and tells nothing.
    pub fn play(&mut self, voter: &Voter, play: &Move) -> Result<Option<Happened>, PokerError> {
        let happened = match play {
            Move::Look => return Ok(None),
            Move::Vote { card } => {
                if !DECK.contains(&card.as_str()) {
                    return Err(PokerError::NotACard { card: card.clone() });
                }
                if self.revealed {
                    return Err(PokerError::AlreadyRevealed);
                }
                match self.votes.iter_mut().find(|(who, _)| who.id == voter.id) {
                    Some((_, laid)) => *laid = card.clone(),
                    None => self.votes.push((voter.clone(), card.clone())),
                }
                Happened::Voted
            }
            Move::Reveal => {
                if self.revealed {
                    return Err(PokerError::AlreadyRevealed);
                }
                if self.votes.is_empty() {
                    return Err(PokerError::NoVotes);
                }
                self.revealed = true;
                Happened::Revealed
            }
            Move::NewRound { topic } => {
                let topic = topic.trim();
                if topic.chars().count() > MAX_TOPIC {
                    return Err(PokerError::TopicTooLong { max: MAX_TOPIC });
                }
                self.round += 1;
                self.topic = topic.to_owned();
                self.votes.clear();
                self.revealed = false;
                Happened::NewRound
            }
        };
        self.version += 1;
        Ok(Some(happened))
    }

    /// The table as everyone may see it: cards face down until the reveal.
    pub fn table(&self) -> Table {
        let votes = self
            .votes
            .iter()
            .map(|(voter, card)| Vote { voter: voter.clone(), card: self.revealed.then(|| card.clone()) })
            .collect();
        Table {
            version: self.version,
            round: self.round,
            topic: self.topic.clone(),
            votes,
            revealed: self.revealed,
        }
    }

    /// The table as user `id` may see it: everyone's view, and their own card.
    pub fn seat(&self, id: &str) -> Seat {
        let mine = self.votes.iter().find(|(voter, _)| voter.id == id).map(|(_, card)| card.clone());
        Seat { table: self.table(), mine }
    }

    /// The version: whether anything moved since it was read.
    pub fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(name: &str) -> Voter {
        Voter { id: name.to_lowercase(), name: name.into() }
    }

    fn vote(card: &str) -> Move {
        Move::Vote { card: card.into() }
    }

    #[test]
    fn cards_stay_face_down_to_others_until_the_reveal() {
        let (ada, bob) = (voter("Ada"), voter("Bob"));
        let mut game = Game::default();
        assert_eq!(game.play(&ada, &vote("5")), Ok(Some(Happened::Voted)));
        assert_eq!(game.play(&bob, &vote("8")), Ok(Some(Happened::Voted)));
        assert_eq!(game.play(&ada, &vote("3")), Ok(Some(Happened::Voted)), "a card may be changed");
        let table = game.table();
        assert_eq!(table.votes.len(), 2, "one vote per voter");
        assert!(table.votes.iter().all(|vote| vote.card.is_none()), "face down: {table:?}");
        assert_eq!(game.seat("ada").mine.as_deref(), Some("3"), "her own card, to her alone");

        assert_eq!(game.play(&bob, &Move::Reveal), Ok(Some(Happened::Revealed)));
        let cards: Vec<_> = game.table().votes.into_iter().map(|vote| vote.card).collect();
        assert_eq!(cards, [Some("3".to_owned()), Some("8".to_owned())], "in the order they first voted");
        assert_eq!(game.table().average_tenths(), Some(55));
    }

    #[test]
    fn a_refused_move_changes_nothing() {
        let ada = voter("Ada");
        let mut game = Game::default();
        assert_eq!(game.play(&ada, &Move::Reveal), Err(PokerError::NoVotes));
        assert_eq!(game.play(&ada, &vote("4")), Err(PokerError::NotACard { card: "4".into() }));
        let long = "x".repeat(MAX_TOPIC + 1);
        assert_eq!(
            game.play(&ada, &Move::NewRound { topic: long }),
            Err(PokerError::TopicTooLong { max: MAX_TOPIC })
        );
        assert_eq!(game, Game::default());

        game.play(&ada, &vote("?")).unwrap();
        game.play(&ada, &Move::Reveal).unwrap();
        let before = game.clone();
        assert_eq!(game.play(&ada, &vote("1")), Err(PokerError::AlreadyRevealed));
        assert_eq!(game.play(&ada, &Move::Reveal), Err(PokerError::AlreadyRevealed));
        assert_eq!(game.play(&ada, &Move::Look), Ok(None));
        assert_eq!(game, before);
    }

    #[test]
    fn every_accepted_move_is_a_newer_version_and_a_new_round_clears_the_table() {
        let ada = voter("Ada");
        let mut game = Game::default();
        game.play(&ada, &vote("2")).unwrap();
        game.play(&ada, &Move::Reveal).unwrap();
        game.play(&ada, &Move::NewRound { topic: "  login page  ".into() }).unwrap();
        let table = game.table();
        assert_eq!((table.version, table.round, table.topic.as_str()), (3, 1, "login page"));
        assert!(table.votes.is_empty() && !table.revealed);
        assert_eq!(game.seat("ada").mine, None);
    }

    #[test]
    fn a_resumed_game_keeps_a_revealed_round_and_restarts_a_hidden_one() {
        let (ada, bob) = (voter("Ada"), voter("Bob"));
        let mut game = Game::default();
        game.play(&ada, &Move::NewRound { topic: "search".into() }).unwrap();
        game.play(&ada, &vote("5")).unwrap();
        game.play(&bob, &vote("8")).unwrap();

        let hidden = Game::resumed(game.table());
        assert_eq!(hidden.table().votes, [], "the face-down cards were never published");
        assert_eq!((hidden.version(), hidden.table().topic.as_str()), (3, "search"));

        game.play(&bob, &Move::Reveal).unwrap();
        assert_eq!(Game::resumed(game.table()), game, "a revealed round comes back whole");
    }
}
