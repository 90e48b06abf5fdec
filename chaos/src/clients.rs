//! The checked clients: native Tether clients (the real core, its outbox and its
//! resends) that publish into rooms and record everything they were told, checking as
//! they go that no room's stream repeats or skips a message unannounced.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tether_client::{Client, ClientOptions};
use tether_shared::{ConnectionConfig, ErrorCode, Event, Input, ServerFrame};
use tokio::sync::watch;

/// What one client published, was told and saw: the history the checker reads.
#[derive(Debug, Default)]
pub struct Record {
    /// The client's name.
    pub name: String,
    /// Message id → room, for everything it published.
    pub published: HashMap<String, String>,
    /// Message id → (room, seq), for everything acked.
    pub acked: HashMap<String, (String, u64)>,
    /// Ids it was told it gave up on (expired unsent, refused, rejected for good).
    pub failed: HashSet<String>,
    /// Per room, the (seq, id) of every message it received, in arrival order.
    pub seen: HashMap<String, Vec<(u64, String)>>,
    /// Rooms whose `joined` arrived on the current connection.
    pub joined: HashSet<String>,
    /// Replays that said `complete: false`.
    pub gaps_told: usize,
    /// Welcomes received (the first, then one per reconnect).
    pub welcomes: u32,
    /// What broke a promise, as it happened.
    pub violations: Vec<String>,
    /// Rooms whose next message may skip ahead (a `complete: false` was told).
    gap_open: HashSet<String>,
    /// The last [`TRAIL`] things the client was told, in words, for a violation's report.
    trail: VecDeque<String>,
}

/// How much of what a client was told a violation's report shows.
const TRAIL: usize = 48;

impl Record {
    /// The last seq seen in `room`.
    pub fn last_seen(&self, room: &str) -> Option<u64> {
        self.seen.get(room).and_then(|seen| seen.last()).map(|(seq, _)| *seq)
    }

    /// Messages neither acked nor reported failed yet.
    pub fn outstanding(&self) -> usize {
        self.published.keys().filter(|id| !self.acked.contains_key(*id) && !self.failed.contains(*id)).count()
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Welcome { .. } => {
                self.note("welcome".into());
                self.welcomes += 1;
                self.joined.clear();
            }
            Event::Acked { envelope, seq, .. } => {
                if self.failed.contains(&envelope.id) {
                    self.violations
                        .push(format!("{}: {} acked after it was reported failed", self.name, envelope.id));
                }
                self.acked.insert(envelope.id, (envelope.room, seq));
            }
            Event::Dropped(dropped) => {
                self.failed.insert(dropped.envelope.id);
            }
            Event::Refused { id, .. } => {
                self.failed.insert(id);
            }
            Event::Rejected { envelope, will_retry: false, .. } => {
                self.failed.insert(envelope.id);
            }
            Event::Frame(frame) => self.frame(frame),
            Event::State(state) => self.note(format!("{state:?}")),
            _ => {}
        }
    }

    /// Remembers `what` for the report of a violation that may follow.
    fn note(&mut self, what: String) {
        if self.trail.len() == TRAIL {
            self.trail.pop_front();
        }
        self.trail.push_back(what);
    }

    /// A broken promise, with what led to it.
    fn violated(&mut self, what: String) {
        let trail: Vec<&str> = self.trail.iter().map(String::as_str).collect();
        self.violations.push(format!("{what}\n      after: {}", trail.join(" · ")));
    }

    fn frame(&mut self, frame: ServerFrame) {
        match &frame {
            ServerFrame::Joined { room, seq, .. } => self.note(format!("joined {room} at #{seq}")),
            ServerFrame::Message { room, seq, .. } => self.note(format!("{room} #{seq}")),
            ServerFrame::Replayed { room, to, complete, .. } => {
                self.note(format!("replayed {room} to #{to} complete {complete}"))
            }
            ServerFrame::Error { code, about, .. } => self.note(format!("error {code:?} about {about:?}")),
            _ => {}
        }
        match frame {
            ServerFrame::Joined { room, .. } => {
                self.joined.insert(room);
            }
            ServerFrame::Message { room, seq, id, .. } => {
                if let Some(last) = self.last_seen(&room) {
                    let told = self.gap_open.remove(&room);
                    if seq <= last {
                        self.violated(format!("{}: {room} #{seq} ({id}) arrived after #{last}", self.name));
                    } else if seq != last + 1 && !told {
                        let hole = format!("#{}..#{}", last + 1, seq - 1);
                        self.violated(format!("{}: {room} skipped {hole} without being told", self.name));
                    }
                }
                self.seen.entry(room).or_default().push((seq, id));
            }
            ServerFrame::Replayed { room, complete: false, .. } => {
                self.gaps_told += 1;
                self.gap_open.insert(room);
            }
            ServerFrame::Error { code: ErrorCode::CursorAhead, about, .. } => {
                // The client saw a message that the history no longer has.
                self.violations.push(format!("{}: cursor ahead of the history of {about:?}", self.name));
            }
            _ => {}
        }
    }
}

/// What the clients are doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Publishing at their pace.
    Publishing,
    /// Connected, not publishing: letting the outboxes drain and the streams catch up.
    Quiet,
    /// Done: disconnect and stop.
    Done,
}

/// How one client behaves.
#[derive(Clone)]
pub struct Plan {
    /// Its name (dev mode).
    pub name: String,
    /// Addresses to connect to.
    pub endpoints: Vec<String>,
    /// Rooms to be in.
    pub rooms: Vec<String>,
    /// Gap between publishes (a random one within), or never.
    pub publish_every: Option<(Duration, Duration)>,
    /// The core's settings.
    pub connection: ConnectionConfig,
}

/// A running checked client.
pub struct Checked {
    /// Its record, shared with the task.
    pub record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<u64>,
}

impl Checked {
    /// Starts the client: connects, joins its rooms, and publishes while the phase says so.
    pub fn start(plan: Plan, phase: watch::Receiver<Phase>, seed: u64) -> Checked {
        let record = Arc::new(Mutex::new(Record { name: plan.name.clone(), ..Record::default() }));
        let task = tokio::spawn(drive(plan, phase, record.clone(), seed));
        Checked { record, task }
    }

    /// Waits for the task (after [`Phase::Done`]); returns how many publishes its core
    /// wrote again.
    pub async fn finish(self) -> u64 {
        self.task.await.unwrap_or(0)
    }
}

async fn drive(plan: Plan, mut phase: watch::Receiver<Phase>, record: Arc<Mutex<Record>>, seed: u64) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let connection = ConnectionConfig { name: Some(plan.name.clone()), ..plan.connection };
    let mut client =
        Client::start(ClientOptions { endpoints: plan.endpoints, connection, ..ClientOptions::new("") });
    client.input(Input::Connect);
    for room in &plan.rooms {
        client.input(Input::Join(room.clone()));
    }
    let mut count = 0u64;
    let next_gap = |rng: &mut fastrand::Rng| {
        plan.publish_every.map(|(low, high)| {
            Duration::from_millis(rng.u64(low.as_millis() as u64..=high.as_millis().max(1) as u64))
        })
    };
    let mut gap = next_gap(&mut rng);
    loop {
        let publishing = *phase.borrow() == Phase::Publishing;
        let tick = async {
            match gap {
                Some(gap) if publishing => tokio::time::sleep(gap).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            event = client.next_event() => match event {
                Some(event) => record.lock().expect("record").event(event),
                None => break,
            },
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Done {
                    break;
                }
            }
            () = tick => {
                let room = &plan.rooms[rng.usize(..plan.rooms.len())];
                count += 1;
                let id = client.publish(room, json!({ "from": plan.name, "n": count }));
                record.lock().expect("record").published.insert(id, room.clone());
                gap = next_gap(&mut rng);
            }
        }
    }
    client.stats().resent
}
