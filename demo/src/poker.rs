//! The planning-poker table: the [`Poker`] channel of the demo's contract crate, where
//! every move is a request that the demo's server checks against the table it holds,
//! and what everyone sees is what the server published after a move it accepted.
//!
//! [`use_table`] keeps the newest table it has seen, from the answers to our own moves
//! and from the events the server publishes: events of concurrent moves may arrive in
//! any order, and [`Table::version`] says which is newer.

use std::rc::Rc;

use tether_demo_chat::poker::{DECK, Event, Move, Poker, Seat, Table, tenths};
use tether_shared::channel::ChannelError;
use tether_shared::typed::{Answer, RequestError};
use tether_yew::room::{Message, use_channel};
use web_sys::HtmlInputElement;
use yew::prelude::*;

/// The table as this page knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableView {
    /// The newest table seen; `None` until the first answer.
    pub table: Option<Table>,
    /// Our own card, with the version and round of the answer that told it.
    mine: Option<(u64, u64, Option<String>)>,
    /// Why our last move was refused, in words; cleared by the next one accepted.
    pub refusal: Option<String>,
    /// Joined again after a reconnect: the table may have changed in any way meanwhile
    /// (a server restarted without its history numbers from scratch), so whatever
    /// comes is taken until the look asked on joining is answered.
    resync: bool,
}

impl TableView {
    /// Our own card this round, face up to us alone.
    pub fn mine(&self) -> Option<&str> {
        let (round, (_, of_round, card)) = (self.table.as_ref()?.round, self.mine.as_ref()?);
        card.as_deref().filter(|_| *of_round == round)
    }
}

/// What changes a [`TableView`].
pub enum TableAction {
    /// The server published an event (a move by anyone).
    Heard(Table),
    /// The answer to one of our moves.
    Answered(Seat),
    /// One of our moves was refused (or not answered), in words.
    Refused(String),
    /// The room was joined again, and a look asked.
    Rejoined,
}

impl Reducible for TableView {
    type Action = TableAction;

    fn reduce(self: Rc<Self>, action: TableAction) -> Rc<Self> {
        let newer = |version: u64, or_same: bool| match &self.table {
            Some(table) if !self.resync => version > table.version || (or_same && version == table.version),
            _ => true,
        };
        let mut next = (*self).clone();
        match action {
            TableAction::Heard(table) if newer(table.version, false) => next.table = Some(table),
            TableAction::Heard(_) => return self,
            TableAction::Answered(Seat { table, mine }) => {
                // Answers may come back out of order: the newest tells our card.
                if next.mine.as_ref().is_none_or(|(version, _, _)| table.version >= *version) {
                    next.mine = Some((table.version, table.round, mine));
                }
                // An answer wins a tie with the event of the same move: it has our card.
                if newer(table.version, true) {
                    next.table = Some(table);
                }
                next.refusal = None;
                next.resync = false;
            }
            TableAction::Refused(why) => next.refusal = Some(why),
            // The look's answer tells our card again.
            TableAction::Rejoined => {
                next.resync = next.table.is_some();
                next.mine = None;
            }
        }
        Rc::new(next)
    }
}

/// What [`use_table`] returns.
pub struct UseTable {
    /// The table as this page knows it.
    pub view: UseReducerHandle<TableView>,
    /// Makes a move; its answer (or refusal) lands in `view`.
    pub play: Callback<Move>,
}

/// Sits at poker table `room`: joins it, looks at it on every (re)join, follows the
/// server's events, and makes moves.
#[hook]
pub fn use_table(room: AttrValue) -> UseTable {
    let channel = use_channel::<Poker>(room);
    let view = use_reducer(TableView::default);
    let play = {
        let (channel, view) = (channel.clone(), view.dispatcher());
        use_callback(channel.name(), move |turn: Move, _| {
            let view = view.clone();
            channel.request_then(turn, Callback::from(move |answer| view.dispatch(answered(answer))));
        })
    };
    // On every join confirmed (the first, and after each reconnect): a look.
    {
        let (play, view) = (play.clone(), view.dispatcher());
        use_effect_with(channel.view.info.joins, move |joins| {
            if *joins > 0 {
                view.dispatch(TableAction::Rejoined);
                play.emit(Move::Look);
            }
        });
    }
    // Every event not heard yet, newest last; the reducer keeps the newest table.
    {
        let view = view.dispatcher();
        let heard = use_mut_ref(|| None::<String>);
        use_effect_with(channel.view.messages.clone(), move |messages| {
            let last = heard.borrow().clone();
            let start = messages.iter().rposition(|m| Some(&m.id) == last.as_ref()).map_or(0, |at| at + 1);
            for event in messages[start..].iter().filter_map(|m| event_of(m)) {
                view.dispatch(TableAction::Heard(event.table.clone()));
            }
            *heard.borrow_mut() = messages.last().map(|m| m.id.clone());
        });
    }
    UseTable { view, play }
}

fn event_of(message: &Message<Poker>) -> Option<&Event> {
    // An event written by a server built with another contract is left out: the next
    // look or event that reads brings the table.
    message.body.as_ref().ok()
}

fn answered(answer: Answer<Poker>) -> TableAction {
    match answer {
        Ok(seat) => TableAction::Answered(seat),
        Err(RequestError::Refused(error)) => TableAction::Refused(error.message()),
        Err(other) => TableAction::Refused(other.to_string()),
    }
}

/// Properties of [`PokerTable`].
#[derive(Properties, PartialEq)]
pub struct PokerTableProps {
    /// The table's room (`poker:…`).
    pub room: AttrValue,
}

/// A planning-poker table: the round's topic, the deck, who voted, and the moves.
#[component]
pub fn PokerTable(props: &PokerTableProps) -> Html {
    let UseTable { view, play } = use_table(props.room.clone());
    let Some(table) = view.table.as_ref() else {
        return html! { <section class="poker"><p class="poker-waiting">{ "Sitting down…" }</p></section> };
    };
    let reveal = {
        let play = play.clone();
        Callback::from(move |_| play.emit(Move::Reveal))
    };
    html! {
        <section class="poker" aria-label="Planning poker">
            <h2 class="poker-topic">
                if table.round == 0 { { "No round yet: start one" } }
                else { { format!("Round {}: {}", table.round, if table.topic.is_empty() { "untitled" } else { &table.topic }) } }
            </h2>
            <NewRound play={play.clone()} />
            { deck(view.mine(), table.revealed, &play) }
            { votes(table) }
            <div class="poker-actions">
                <button class="reveal" onclick={reveal} disabled={table.revealed}>{ "Reveal" }</button>
                if let Some(average) = table.revealed.then(|| table.average_tenths()).flatten() {
                    <span class="average">{ format!("Average: {}", tenths(average)) }</span>
                }
            </div>
            if let Some(why) = &view.refusal {
                <p class="poker-refusal" role="alert">{ why }</p>
            }
        </section>
    }
}

/// The cards to vote with; ours (`mine`) stands out. A view function rather than a
/// component: it has no state of its own, and each component costs the bundle its own
/// copy of Yew's lifecycle.
fn deck(mine: Option<&str>, revealed: bool, play: &Callback<Move>) -> Html {
    html! {
        <div class="deck" role="group" aria-label="Cards">
            { for DECK.iter().map(|card| {
                let chosen = mine == Some(*card);
                let play = play.clone();
                let onclick = Callback::from(move |_| play.emit(Move::Vote { card: (*card).to_owned() }));
                html! {
                    <button class={classes!("card", chosen.then_some("chosen"))} aria-pressed={chosen.to_string()}
                        data-card={*card} disabled={revealed} {onclick}>{ *card }</button>
                }
            }) }
        </div>
    }
}

/// Who voted, their cards face down until the reveal.
fn votes(table: &Table) -> Html {
    html! {
        <ul class="votes" aria-label="Votes">
            if table.votes.is_empty() { <li class="no-votes">{ "No votes yet" }</li> }
            { for table.votes.iter().map(|vote| html! {
                <li class="vote" key={vote.voter.id.clone()}>
                    { match &vote.card {
                        Some(card) => html! { <span class="face up">{ card }</span> },
                        None => html! { <span class="face down" title="face down">{ "✓" }</span> },
                    } }
                    <span class="voter">{ &vote.voter.name }</span>
                </li>
            }) }
        </ul>
    }
}

/// Properties of [`NewRound`].
#[derive(Properties, PartialEq)]
pub struct NewRoundProps {
    /// Makes a move.
    pub play: Callback<Move>,
}

/// A topic and the button that starts a round with it.
#[component]
pub fn NewRound(props: &NewRoundProps) -> Html {
    let input = use_node_ref();
    let onsubmit = {
        let (input, play) = (input.clone(), props.play.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(field) = input.cast::<HtmlInputElement>() else { return };
            // Everything is the server's to judge: a topic too long comes back refused.
            play.emit(Move::NewRound { topic: field.value() });
            field.set_value("");
        })
    };
    html! {
        <form class="new-round" {onsubmit}>
            <input ref={input} class="topic-input" placeholder="What are we estimating?" aria-label="Topic" />
            <button type="submit">{ "New round" }</button>
        </form>
    }
}
