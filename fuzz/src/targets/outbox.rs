//! `outbox`: restoring an outbox from its snapshot (`Outbox::restore`,
//! `Outbox::restore_or_empty`), the JSON a browser keeps in `localStorage` across
//! reloads.
//!
//! Why it matters: the snapshot is read back from storage that other code, other
//! versions of Tether, extensions or a full disk may have damaged, at the moment the
//! app starts. A panic there means an app that cannot start until its storage is
//! cleared by hand. A snapshot that restores must give an outbox that keeps its
//! invariants (within its bounds, no id twice, its byte count the sum of its messages,
//! nothing in flight, priority order), must account for every message it held (kept,
//! or reported dropped, or a repeat of a kept id), and must snapshot again to text that
//! restores to the same outbox: a reload must not change the queue.

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Unstructured;
use serde_json::Value;
use tether_shared::outbox::SnapshotError;
use tether_shared::{Envelope, Millis, Outbox, OutboxConfig, Overflow};

use crate::engine::{Outcome, Target};
use crate::generate::{self, Loose};
use crate::targets::frames;

/// The target.
pub struct Snapshots;

impl Target for Snapshots {
    fn name(&self) -> &'static str {
        "outbox"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        let text = r#"{"version":1,"messages":[{"id":"a","room":"r","body":{"text":"hi"},"priority":2,"created":5,"expires":null},{"id":"b","room":"r","body":1,"priority":0,"created":6,"expires":9}]}"#;
        vec![[&[0u8, 0, 0, 0, 0, 0, 0, 0][..], text.as_bytes()].concat(), vec![1; 64], vec![2; 64]]
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        let (mode, rest) = super::mode(input, 3);
        let mut u = Unstructured::new(rest);
        let config = config(&mut u).unwrap_or_default();
        let text = match mode {
            0 => String::from_utf8_lossy(u.take_rest()).into_owned(),
            1 => snapshot_like(&mut u).unwrap_or_default(),
            _ => lived_in(&mut u).unwrap_or_default(),
        };
        let mut outcome = Outcome::default();
        check(&config, &text, &mut outcome)?;
        Ok(outcome)
    }
}

fn config(u: &mut Unstructured) -> arbitrary::Result<OutboxConfig> {
    Ok(OutboxConfig {
        max_messages: u.int_in_range(0..=12)?,
        max_bytes: if u.ratio(1, 4)? { usize::MAX } else { u.int_in_range(0..=3_000)? },
        overflow: *u.choose(&[Overflow::DropOldest, Overflow::DropNewest, Overflow::Reject])?,
        default_ttl: if u.arbitrary()? { Some(Duration::from_millis(generate::number(u)?)) } else { None },
    })
}

/// A snapshot built as a tree (so that fields can go missing or be doubled): mostly
/// version 1, envelopes with ids that repeat, times at the edges.
fn snapshot_like(u: &mut Unstructured) -> arbitrary::Result<String> {
    let mut messages = Vec::new();
    for _ in 0..u.int_in_range(0..=10)? {
        let envelope = Envelope {
            id: format!("m{}", u.int_in_range(0..=6)?),
            room: generate::room(u)?,
            body: generate::json(u, 2)?,
            priority: *u.choose(&[0, 0, 1, 2, 255])?,
            created: Millis(generate::number(u)?),
            expires: if u.arbitrary()? { Some(Millis(generate::number(u)?)) } else { None },
        };
        messages.push(Loose::of(&envelope));
    }
    let version =
        if u.ratio(7, 8)? { Loose::Raw("1".into()) } else { Loose::Raw(generate::number(u)?.to_string()) };
    let mut tree = Loose::Obj(vec![("version".into(), version), ("messages".into(), Loose::Arr(messages))]);
    generate::loosen(u, &mut tree)?;
    Ok(tree.to_json())
}

/// The snapshot of an outbox that lived a little: pushes, sends, acks, expiries and a
/// clock set back, under a configuration of its own.
fn lived_in(u: &mut Unstructured) -> arbitrary::Result<String> {
    let mut outbox = Outbox::new(config(u)?);
    let mut now = Millis(generate::number(u)? % (1 << 50));
    for _ in 0..u.int_in_range(0..=20)? {
        match u.int_in_range(0..=5)? {
            0 | 1 => {
                let envelope = Envelope {
                    id: format!("m{}", u.int_in_range(0..=8)?),
                    room: generate::room(u)?,
                    body: generate::json(u, 2)?,
                    priority: u.int_in_range(0..=3)?,
                    created: now,
                    expires: None,
                };
                let _ = outbox.push(envelope);
            }
            2 => drop(outbox.take_sendable(now, u.int_in_range(0..=4)?)),
            3 => drop(outbox.ack(&format!("m{}", u.int_in_range(0..=8)?))),
            4 => {
                now = now.after(Duration::from_millis(u.int_in_range(0..=100_000)?));
                drop(outbox.expire(now));
            }
            _ => outbox.shift_back(Duration::from_millis(generate::number(u)?)),
        }
    }
    Ok(outbox.snapshot())
}

/// What a restore must do with `text` under `config`.
pub fn check(config: &OutboxConfig, text: &str, outcome: &mut Outcome) -> Result<(), String> {
    let (empty, _, error) = Outbox::restore_or_empty(config.clone(), text);
    if error.is_some() && !empty.is_empty() {
        return Err("restore_or_empty failed yet returned messages".into());
    }
    let (outbox, dropped) = match Outbox::restore(config.clone(), text) {
        Ok(restored) => restored,
        Err(SnapshotError::UnsupportedVersion { found }) => {
            outcome.label("unsupported version");
            let version = serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("version")?.as_u64());
            return match version {
                Some(version) if version != 1 && u64::from(found) == version.min(u64::from(u32::MAX)) => {
                    Ok(())
                }
                other => Err(format!(
                    "UnsupportedVersion {{ found: {found} }} for a snapshot whose version is {other:?}"
                )),
            };
        }
        Err(SnapshotError::Corrupt(why)) => {
            outcome.label("corrupt");
            outcome.detail(&why);
            return Ok(());
        }
    };
    outcome.label(format!("restored {} kept, {} dropped", outbox.len().min(3), dropped.len().min(3)));
    invariants(&outbox, config)?;
    if outbox.in_flight() != 0 {
        return Err(format!("a restored outbox has {} messages in flight", outbox.in_flight()));
    }

    // Every message of the snapshot is kept, reported dropped, or a repeat of an id.
    let held: Vec<Envelope> = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("messages")?.clone()).ok())
        .ok_or("a snapshot that restored has no readable messages")?;
    let mut given: BTreeMap<&str, usize> = BTreeMap::new();
    for envelope in &held {
        *given.entry(envelope.id.as_str()).or_default() += 1;
    }
    for (id, &times) in &given {
        let kept = usize::from(outbox.contains(id));
        let lost = dropped.iter().filter(|d| d.envelope.id == *id).count();
        if kept + lost == 0 || kept + lost > times {
            return Err(format!(
                "message {id:?} (in the snapshot {times} times): kept {kept}, reported dropped {lost}\n  snapshot: {text}"
            ));
        }
    }

    // A reload of the restored outbox changes nothing.
    let again = outbox.snapshot();
    let (second, lost) = Outbox::restore(config.clone(), &again)
        .map_err(|e| format!("an outbox's own snapshot does not restore: {e}\n  snapshot: {again}"))?;
    if !lost.is_empty() {
        return Err(format!(
            "restoring an outbox's own snapshot dropped {} messages\n  snapshot: {again}",
            lost.len()
        ));
    }
    let first: Vec<&Envelope> = outbox.iter().collect();
    let then: Vec<&Envelope> = second.iter().collect();
    let what = format!(
        "an outbox changed through its own snapshot\n  before: {again}\n  after:  {}",
        second.snapshot()
    );
    let exactly = frames::compare(&first, &then, &what, outcome)?;
    if exactly && (second.snapshot() != again || second.bytes() != outbox.bytes()) {
        return Err(what);
    }

    // It goes on working: everything is sent, acked and gone, bytes to zero.
    let mut outbox = outbox;
    outbox.shift_back(Duration::from_millis(u64::MAX));
    let _ = outbox.next_expiry();
    let _ = outbox.expire(Millis(u64::MAX / 2));
    let sent = outbox.take_sendable(Millis(u64::MAX), usize::MAX);
    let _ = outbox.next_ack_deadline(Duration::from_millis(u64::MAX));
    let _ = outbox.overdue(Millis(u64::MAX), Duration::from_millis(u64::MAX));
    invariants(&outbox, config)?;
    for envelope in sent {
        if outbox.ack(&envelope.id).is_none() {
            return Err(format!("message {:?} was sent but could not be acked", envelope.id));
        }
    }
    if !outbox.is_empty() || outbox.bytes() != 0 {
        return Err(format!("after every ack {} messages and {} bytes remain", outbox.len(), outbox.bytes()));
    }
    Ok(())
}

/// Bounds, unique ids, bytes accounted, priority order.
///
/// The bounds give way to one thing only: a message written before is never dropped
/// (the server may have stored it), so an outbox restored under smaller bounds may stay
/// over them, but then with nothing in it that was never written.
fn invariants(outbox: &Outbox, config: &OutboxConfig) -> Result<(), String> {
    if outbox.len() > config.max_messages || outbox.bytes() > config.max_bytes {
        let snapshot: Value = serde_json::from_str(&outbox.snapshot()).map_err(|e| e.to_string())?;
        let written: Vec<&str> =
            snapshot["written"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if let Some(unsent) = outbox.iter().find(|e| !written.contains(&e.id.as_str())) {
            return Err(format!(
                "outbox over its bounds ({} messages, {} bytes, at most {}, {}) while it holds {:?}, never written",
                outbox.len(),
                outbox.bytes(),
                config.max_messages,
                config.max_bytes,
                unsent.id
            ));
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut bytes = 0;
    let mut last_priority = u8::MAX;
    for envelope in outbox.iter() {
        if !ids.insert(envelope.id.clone()) {
            return Err(format!("id {:?} held twice", envelope.id));
        }
        if envelope.priority > last_priority {
            return Err("messages out of priority order".into());
        }
        last_priority = envelope.priority;
        bytes += envelope.frame().encode().len();
    }
    if bytes != outbox.bytes() {
        return Err(format!("the outbox counts {} bytes, its messages add up to {bytes}", outbox.bytes()));
    }
    if ids.len() != outbox.len() {
        return Err(format!("len() is {} for {} messages", outbox.len(), ids.len()));
    }
    Ok(())
}
