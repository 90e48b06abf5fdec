//! `cargo xtask soak`: clients joining, chatting, leaving and reconnecting at a steady
//! churn for M minutes, while the server's memory, descriptors, tasks and queues are
//! sampled; it fails if they trend upward after the warm-up, or if the clients were not
//! served all along.
//!
//! The trend rule: the samples after the warm-up (the first fifth of the run) are split
//! in thirds. The run fails if the last third's mean resident memory exceeds the first
//! third's by more than 10 % (and 8 MB), its mean descriptor count by more than 5 %
//! (and 20), or its mean task count by more than 10 % (and 50): a leak grows without
//! bound, a steady churn does not.
//!
//! The service rule ([`served`]): a flat memory curve also comes from a server that
//! serves nobody. So the run also fails on any error the clients were told (an error
//! frame, a rejected, refused or dropped publish), if fewer than 98 % of the publishes
//! were acked (the rest can only be those in flight when a session ended), if fewer
//! messages were received than acked (every acked message reaches at least its sender),
//! or if any client slot went without an acked publish or a received message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tether_client::{Client, ClientOptions};
use tether_shared::{ConnectionConfig, Event, Input, ServerFrame};

use crate::nodes::Deployment;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long.
    pub minutes: f64,
    /// Clients churning at once.
    pub clients: usize,
    /// Rooms they move between.
    pub rooms: usize,
    /// Seconds between samples.
    pub every: f64,
    /// Where the CSV and the PNG go.
    pub out: PathBuf,
}

/// One sample of the server.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the start.
    pub at: f64,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Open descriptors.
    pub fds: usize,
    /// Tasks alive in its runtime.
    pub tasks: f64,
    /// Bytes waiting in all send queues.
    pub queued: f64,
    /// Open connections.
    pub connections: f64,
}

/// Counts of what the clients did, in all and per client slot.
#[derive(Default)]
struct Activity {
    sessions: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    /// What the errors were, for the report.
    error_kinds: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Per slot: acked publishes and received messages.
    slots: Vec<[AtomicU64; 2]>,
}

/// What the clients did, read once at the end.
#[derive(Debug, Clone, Default, PartialEq)]
struct Served {
    published: u64,
    acked: u64,
    received: u64,
    errors: u64,
    /// Slots that never had a publish acked, and that never received a message.
    unacked_slots: usize,
    unfed_slots: usize,
}

impl Activity {
    fn new(clients: usize) -> Activity {
        Activity { slots: (0..clients).map(|_| Default::default()).collect(), ..Activity::default() }
    }

    fn served(&self) -> Served {
        let a = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Served {
            published: a(&self.published),
            acked: a(&self.acked),
            received: a(&self.received),
            errors: a(&self.errors),
            unacked_slots: self.slots.iter().filter(|[acked, _]| a(acked) == 0).count(),
            unfed_slots: self.slots.iter().filter(|[_, received]| a(received) == 0).count(),
        }
    }
}

/// The service rule: what was wrong with how the clients were served; empty when
/// nothing was.
fn served(served: &Served) -> Vec<String> {
    let mut wrong = Vec::new();
    if served.errors > 0 {
        wrong.push(format!("{} errors told to clients", served.errors));
    }
    if served.published == 0 || (served.acked as f64) < served.published as f64 * 0.98 {
        wrong.push(format!("{} of {} publishes acked (at least 98 % due)", served.acked, served.published));
    }
    if served.received < served.acked {
        wrong.push(format!("{} messages received for {} acked", served.received, served.acked));
    }
    if served.unacked_slots > 0 {
        wrong.push(format!("{} clients never had a publish acked", served.unacked_slots));
    }
    if served.unfed_slots > 0 {
        wrong.push(format!("{} clients never received a message", served.unfed_slots));
    }
    wrong
}

/// Runs the soak; `Err` when the server died or a resource trended upward.
pub async fn run(options: &Options) -> Result<(), String> {
    // Bounded history and a short dedupe window, so that what the server may rightly
    // keep (history, SQLite's page cache, dedupe entries) reaches its bound within the
    // warm-up, and whatever still grows after it is a leak.
    let flags = [
        "--idle-timeout",
        "10s",
        "--history-messages",
        "500",
        "--history-bytes",
        "16m",
        "--dedupe-window",
        "1m",
    ];
    let deployment = Deployment::start(None, &flags).await;
    let url = format!("ws://{}/ws", deployment.nodes[0].addr);
    let activity = Arc::new(Activity::new(options.clients));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(options.minutes * 60.0);
    let rooms: Arc<Vec<String>> = Arc::new((0..options.rooms).map(|i| format!("soak-{i}")).collect());
    let mut workers = Vec::new();
    for index in 0..options.clients {
        let (url, rooms, activity) = (url.clone(), rooms.clone(), activity.clone());
        workers.push(tokio::spawn(churn(index, url, rooms, activity, until)));
    }

    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(options.every));
    let node = &deployment.nodes[0];
    while Instant::now() < until {
        ticks.tick().await;
        if node.pid().is_none_or(|pid| crate::nodes::rss_of(pid) == 0) {
            return Err("the server died during the soak".into());
        }
        let metrics = node.metrics().await;
        let metric = |name: &str| metrics.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v);
        samples.push(Sample {
            at: started.elapsed().as_secs_f64(),
            rss: node.rss(),
            fds: node.fds(),
            tasks: metric("tether_tasks"),
            queued: metric("tether_queued_bytes"),
            connections: metric("tether_connections"),
        });
    }
    for worker in workers {
        let _ = worker.await;
    }

    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    write_csv(&options.out.join("soak.csv"), &samples)?;
    crate::plot::soak(&options.out.join("soak.png"), &samples)?;
    let verdict = trend(&samples);
    let service = activity.served();
    let wrong = served(&service);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "soak: {:.1} min, {} clients churning over {} rooms: {} sessions, {} published, {} acked, \
         {} received, {} errors",
        started.elapsed().as_secs_f64() / 60.0,
        options.clients,
        options.rooms,
        activity.sessions.load(Ordering::Relaxed),
        service.published,
        service.acked,
        service.received,
        service.errors
    );
    let _ = writeln!(report, "  {}", verdict.summary);
    let kinds = activity.error_kinds.lock().expect("not poisoned");
    if !kinds.is_empty() {
        let _ = writeln!(report, "  errors: {kinds:?}");
    }
    drop(kinds);
    let _ = writeln!(
        report,
        "  {}",
        if wrong.is_empty() { "every client served".to_owned() } else { wrong.join("; ") }
    );
    let _ = writeln!(
        report,
        "  samples in {}, plot in {}",
        options.out.join("soak.csv").display(),
        options.out.join("soak.png").display()
    );
    print!("{report}");
    let mut failures = Vec::new();
    if !verdict.upward.is_empty() {
        failures.push(format!("trending upward after the warm-up: {}", verdict.upward.join("; ")));
    }
    if !wrong.is_empty() {
        failures.push(format!("clients not served: {}", wrong.join("; ")));
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

/// One client slot: sessions of 20–120 s one after another, each joining 1–3 rooms,
/// chatting every 2–6 s, now and then moving to another room, then disconnecting.
async fn churn(index: usize, url: String, rooms: Arc<Vec<String>>, activity: Arc<Activity>, until: Instant) {
    let mut rng = fastrand::Rng::with_seed(index as u64);
    // Spread the first connects over the first seconds.
    tokio::time::sleep(Duration::from_millis(rng.u64(0..5_000))).await;
    while Instant::now() < until {
        activity.sessions.fetch_add(1, Ordering::Relaxed);
        let connection =
            ConnectionConfig { name: Some(format!("soak-{index}")), join_history: 5, ..Default::default() };
        let mut client = Client::start(ClientOptions { connection, ..ClientOptions::new(url.clone()) });
        client.input(Input::Connect);
        // Distinct rooms: a room joined twice and then left once would still be
        // published to, and rightly refused (not_joined).
        let mut joined: Vec<String> = Vec::new();
        for _ in 0..rng.usize(1..=3) {
            if let Some(room) = another_room(&mut rng, &rooms, &joined) {
                client.input(Input::Join(room.clone()));
                joined.push(room);
            }
        }
        let session_ends = (Instant::now() + Duration::from_secs(rng.u64(20..120))).min(until);
        let mut next_publish = Instant::now() + Duration::from_millis(rng.u64(2_000..6_000));
        while Instant::now() < session_ends {
            let wake = next_publish.min(session_ends);
            tokio::select! {
                event = client.next_event() => match event {
                    Some(Event::Acked { .. }) => {
                        activity.acked.fetch_add(1, Ordering::Relaxed);
                        activity.slots[index][0].fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Event::Frame(ServerFrame::Message { .. })) => {
                        activity.received.fetch_add(1, Ordering::Relaxed);
                        activity.slots[index][1].fetch_add(1, Ordering::Relaxed);
                    }
                    Some(error @ (
                        Event::Frame(ServerFrame::Error { .. })
                        | Event::Rejected { .. }
                        | Event::Refused { .. }
                        | Event::Dropped(_)
                    )) => {
                        activity.errors.fetch_add(1, Ordering::Relaxed);
                        let kind = match error {
                            Event::Frame(ServerFrame::Error { code, .. }) => format!("error {code:?}"),
                            Event::Rejected { code, .. } => format!("rejected {code:?}"),
                            Event::Refused { error, .. } => format!("refused: {error}"),
                            Event::Dropped(dropped) => format!("dropped {:?}", dropped.reason),
                            _ => unreachable!(),
                        };
                        *activity.error_kinds.lock().expect("not poisoned").entry(kind).or_default() += 1;
                    }
                    Some(_) => {}
                    None => break,
                },
                () = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= next_publish {
                        let room = &joined[rng.usize(..joined.len())];
                        client.publish(room, json!({ "text": "soaking", "from": index }));
                        activity.published.fetch_add(1, Ordering::Relaxed);
                        if rng.u8(..10) == 0
                            && let Some(room) = another_room(&mut rng, &rooms, &joined)
                        {
                            // Move: leave one room, join another.
                            let left = joined.swap_remove(rng.usize(..joined.len()));
                            client.input(Input::Leave(left));
                            client.input(Input::Join(room.clone()));
                            joined.push(room);
                        }
                        next_publish = Instant::now() + Duration::from_millis(rng.u64(2_000..6_000));
                    }
                }
            }
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(rng.u64(500..3_000))).await;
    }
}

/// A room picked at random among those not in `joined`, if any is left.
fn another_room(rng: &mut fastrand::Rng, rooms: &[String], joined: &[String]) -> Option<String> {
    let free: Vec<&String> = rooms.iter().filter(|room| !joined.contains(room)).collect();
    (!free.is_empty()).then(|| free[rng.usize(..free.len())].clone())
}

/// The trend rule's verdict.
struct Verdict {
    summary: String,
    upward: Vec<String>,
}

fn trend(samples: &[Sample]) -> Verdict {
    let after_warmup = &samples[samples.len() / 5..];
    let third = after_warmup.len() / 3;
    if third == 0 {
        return Verdict {
            summary: "too few samples to judge a trend".into(),
            upward: vec!["too few samples".into()],
        };
    }
    let (first, last) = (&after_warmup[..third], &after_warmup[after_warmup.len() - third..]);
    let mean =
        |part: &[Sample], value: fn(&Sample) -> f64| part.iter().map(value).sum::<f64>() / part.len() as f64;
    let rss = (mean(first, |s| s.rss as f64), mean(last, |s| s.rss as f64));
    let fds = (mean(first, |s| s.fds as f64), mean(last, |s| s.fds as f64));
    let tasks = (mean(first, |s| s.tasks), mean(last, |s| s.tasks));
    let peak_rss = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let peak_queued = samples.iter().map(|s| s.queued).fold(0.0, f64::max);
    let mut upward = Vec::new();
    if rss.1 > rss.0 * 1.10 && rss.1 - rss.0 > 8e6 {
        upward.push(format!("RSS {:.1} → {:.1} MB", rss.0 / 1e6, rss.1 / 1e6));
    }
    if fds.1 > fds.0 * 1.05 && fds.1 - fds.0 > 20.0 {
        upward.push(format!("descriptors {:.0} → {:.0}", fds.0, fds.1));
    }
    if tasks.1 > tasks.0 * 1.10 && tasks.1 - tasks.0 > 50.0 {
        upward.push(format!("tasks {:.0} → {:.0}", tasks.0, tasks.1));
    }
    let summary = format!(
        "after warm-up, first third → last third: RSS {:.1} → {:.1} MB, descriptors {:.0} → {:.0}, \
         tasks {:.0} → {:.0}; peak RSS {:.1} MB, peak queued {:.0} KB; {}",
        rss.0 / 1e6,
        rss.1 / 1e6,
        fds.0,
        fds.1,
        tasks.0,
        tasks.1,
        peak_rss as f64 / 1e6,
        peak_queued / 1e3,
        if upward.is_empty() { "no upward trend" } else { "UPWARD TREND" }
    );
    Verdict { summary, upward }
}

fn write_csv(path: &Path, samples: &[Sample]) -> Result<(), String> {
    let mut csv = String::from("seconds,rss_bytes,fds,tasks,queued_bytes,connections\n");
    for s in samples {
        let _ = writeln!(csv, "{:.1},{},{},{},{},{}", s.at, s.rss, s.fds, s.tasks, s.queued, s.connections);
    }
    std::fs::write(path, csv).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: impl Fn(usize) -> u64) -> Vec<Sample> {
        (0..100)
            .map(|i| Sample {
                at: i as f64,
                rss: rss(i),
                fds: 1000,
                tasks: 2000.0,
                queued: 0.0,
                connections: 1000.0,
            })
            .collect()
    }

    #[test]
    fn growing_tasks_are_a_leak_too() {
        let mut leaking = samples(|_| 100_000_000);
        for (i, sample) in leaking.iter_mut().enumerate() {
            sample.tasks = 2000.0 + i as f64 * 10.0;
        }
        assert_eq!(trend(&leaking).upward, ["tasks 2325 → 2865"]);
    }

    #[test]
    fn a_server_that_serves_nobody_fails_however_flat_its_memory() {
        let good = Served { published: 1000, acked: 995, received: 8000, ..Served::default() };
        assert!(served(&good).is_empty(), "{:?}", served(&good));
        let refused = Served { unacked_slots: 200, unfed_slots: 200, ..Served::default() };
        assert_eq!(served(&refused).len(), 3, "{:?}", served(&refused));
        let expiring = Served { acked: 500, ..good.clone() };
        assert!(served(&expiring)[0].contains("500 of 1000 publishes acked"));
        let erring = Served { errors: 1, ..good.clone() };
        assert_eq!(served(&erring), ["1 errors told to clients"]);
        let undelivered = Served { received: 10, ..good.clone() };
        assert_eq!(served(&undelivered), ["10 messages received for 995 acked"]);
        let one_starved = Served { unfed_slots: 1, ..good };
        assert_eq!(served(&one_starved), ["1 clients never received a message"]);
    }

    #[test]
    fn a_steady_run_passes_and_a_leak_fails() {
        let steady = samples(|i| 100_000_000 + (i as u64 % 7) * 1_000_000);
        assert!(trend(&steady).upward.is_empty());
        let warming = samples(|i| if i < 20 { 50_000_000 + i as u64 * 2_000_000 } else { 100_000_000 });
        assert!(trend(&warming).upward.is_empty(), "growth during the warm-up is not a trend");
        let leaking = samples(|i| 100_000_000 + i as u64 * 500_000);
        assert!(!trend(&leaking).upward.is_empty());
    }
}
