//! The checker: what every client recorded, read against every room's history.
//!
//! The promises, as checked here:
//! - every acked message is in its room's history exactly once, under the seq its ack
//!   named, and the history is one gapless run of seqs (nothing is pruned in a run);
//! - no message is in the history twice, and nothing is there that nobody published;
//! - every subscriber saw each room in the history's order, never the same message
//!   twice, never skipping one unannounced (checked as the messages arrived), and ended
//!   caught up with the room's head;
//! - every message a client published was either acked or reported to it as failed,
//!   and one reported failed is not in the history: a client is told a message failed
//!   only when it was never written (refused, dropped unsent) or was rejected, and a
//!   rejection means nothing was stored. (One whose store lost the answer is rejected
//!   `unconfirmed`, which a client re-sends under its id until it is acked.)

use std::collections::{HashMap, HashSet};

use crate::clients::Record;

/// A room's history: seq → message id, oldest first.
pub type History = Vec<(u64, String)>;

/// Every broken promise found, in words; empty when all hold.
pub fn violations(records: &[&Record], histories: &HashMap<String, History>) -> Vec<String> {
    let mut found: Vec<String> = records.iter().flat_map(|record| record.violations.clone()).collect();
    let mut where_is: HashMap<(&str, &str), u64> = HashMap::new();
    for (room, history) in histories {
        let mut ids = HashSet::new();
        for (index, (seq, id)) in history.iter().enumerate() {
            if *seq != index as u64 + 1 {
                found.push(format!("history of {room}: #{seq} where #{} was expected", index + 1));
                break;
            }
            if !ids.insert(id.as_str()) {
                found.push(format!("history of {room}: {id} is stored twice (again as #{seq})"));
            }
            where_is.insert((room.as_str(), id.as_str()), *seq);
        }
    }
    let published: HashSet<&str> =
        records.iter().flat_map(|record| record.published.keys().map(String::as_str)).collect();
    for (room, history) in histories {
        for (seq, id) in history {
            if !published.contains(id.as_str()) {
                found.push(format!("history of {room}: #{seq} ({id}) was never published"));
            }
        }
    }
    for record in records {
        let name = &record.name;
        for (id, (room, seq)) in &record.acked {
            match where_is.get(&(room.as_str(), id.as_str())) {
                None => {
                    found.push(format!("{name}: {id} was acked as {room} #{seq} and is not in the history"))
                }
                Some(stored) if stored != seq => {
                    found.push(format!("{name}: {id} was acked as {room} #{seq} but is stored as #{stored}"));
                }
                Some(_) => {}
            }
        }
        for id in &record.failed {
            let room = record.published.get(id).map(String::as_str).unwrap_or_default();
            if let Some(seq) = where_is.get(&(room, id.as_str())) {
                found.push(format!("{name}: {id} was reported failed but is stored as {room} #{seq}"));
            }
        }
        let silent = record.outstanding();
        if silent > 0 {
            found.push(format!("{name}: {silent} messages were neither acked nor reported failed"));
        }
        for (room, seen) in &record.seen {
            let Some(history) = histories.get(room) else { continue };
            for (seq, id) in seen {
                let stored = history.get(*seq as usize - 1).map(|(_, id)| id.as_str());
                if stored != Some(id.as_str()) {
                    found.push(format!("{name}: saw {room} #{seq} as {id}, the history has {stored:?}"));
                }
            }
            let head = history.last().map_or(0, |(seq, _)| *seq);
            if record.last_seen(room).is_some_and(|last| last < head) {
                found.push(format!(
                    "{name}: {room} ends at #{:?}, the head is #{head}",
                    record.last_seen(room)
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(ids: &[&str]) -> History {
        ids.iter().enumerate().map(|(i, id)| (i as u64 + 1, id.to_string())).collect()
    }

    fn record(name: &str) -> Record {
        let mut record = Record::default();
        record.name = name.into();
        record
    }

    #[test]
    fn a_clean_run_has_no_violations() {
        let mut ada = record("ada");
        ada.published.insert("a1".into(), "r".into());
        ada.acked.insert("a1".into(), ("r".into(), 1));
        ada.seen.insert("r".into(), vec![(1, "a1".into())]);
        let histories = HashMap::from([("r".to_owned(), history(&["a1"]))]);
        assert!(violations(&[&ada], &histories).is_empty());
    }

    #[test]
    fn loss_duplication_reordering_and_silence_are_each_found() {
        let mut ada = record("ada");
        for id in ["a1", "a2", "a3"] {
            ada.published.insert(id.into(), "r".into());
        }
        ada.acked.insert("a1".into(), ("r".into(), 1));
        ada.acked.insert("a2".into(), ("r".into(), 2));
        ada.published.insert("a4".into(), "r".into());
        ada.failed.insert("a4".into());
        ada.seen.insert("r".into(), vec![(1, "a1".into()), (2, "x".into())]);
        // a2 acked but lost; a1 stored twice; a3 neither acked nor failed; a4 reported
        // failed yet stored; the subscriber's #2 is not the history's.
        let histories = HashMap::from([("r".to_owned(), history(&["a1", "a1", "a9", "a4"]))]);
        let found = violations(&[&ada], &histories);
        let has = |needle: &str| found.iter().any(|v| v.contains(needle));
        assert!(has("a2 was acked as r #2 and is not in the history"), "{found:?}");
        assert!(has("a1 is stored twice"), "{found:?}");
        assert!(has("a9) was never published"), "{found:?}");
        assert!(has("1 messages were neither acked nor reported failed"), "{found:?}");
        assert!(has("saw r #2 as x"), "{found:?}");
        assert!(has("a4 was reported failed but is stored as r #4"), "{found:?}");
        assert!(has("r ends at #Some(2), the head is #4"), "{found:?}");
    }
}
