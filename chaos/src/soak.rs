//! `cargo xtask soak`: clients joining, chatting, leaving and reconnecting at a steady
//! churn for M minutes, while the server's memory, descriptors, tasks and queues are
//! sampled; it fails if memory or descriptors trend upward after the warm-up.
//!
//! The rule: the samples after the warm-up (the first fifth of the run) are split in
//! thirds. The run fails if the last third's mean resident memory exceeds the first
//! third's by more than 10 % (and 8 MB), or its mean descriptor count by more than 5 %
//! (and 20): a leak grows without bound, a steady churn does not.

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

/// Counts of what the clients did.
#[derive(Default)]
struct Activity {
    sessions: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
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
    let activity = Arc::new(Activity::default());
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
    let a = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "soak: {:.1} min, {} clients churning over {} rooms: {} sessions, {} published, {} acked, \
         {} received, {} error frames",
        started.elapsed().as_secs_f64() / 60.0,
        options.clients,
        options.rooms,
        a(&activity.sessions),
        a(&activity.published),
        a(&activity.acked),
        a(&activity.received),
        a(&activity.errors)
    );
    let _ = writeln!(report, "  {}", verdict.summary);
    let _ = writeln!(
        report,
        "  samples in {}, plot in {}",
        options.out.join("soak.csv").display(),
        options.out.join("soak.png").display()
    );
    print!("{report}");
    if verdict.upward.is_empty() {
        Ok(())
    } else {
        Err(format!("trending upward after the warm-up: {}", verdict.upward.join("; ")))
    }
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
        let mut joined: Vec<String> = Vec::new();
        for _ in 0..rng.usize(1..=3) {
            let room = rooms[rng.usize(..rooms.len())].clone();
            client.input(Input::Join(room.clone()));
            joined.push(room);
        }
        let session_ends = (Instant::now() + Duration::from_secs(rng.u64(20..120))).min(until);
        let mut next_publish = Instant::now() + Duration::from_millis(rng.u64(2_000..6_000));
        while Instant::now() < session_ends {
            let wake = next_publish.min(session_ends);
            tokio::select! {
                event = client.next_event() => match event {
                    Some(Event::Acked { .. }) => { activity.acked.fetch_add(1, Ordering::Relaxed); }
                    Some(Event::Frame(ServerFrame::Message { .. })) => { activity.received.fetch_add(1, Ordering::Relaxed); }
                    Some(Event::Frame(ServerFrame::Error { .. })) => { activity.errors.fetch_add(1, Ordering::Relaxed); }
                    Some(_) => {}
                    None => break,
                },
                () = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= next_publish {
                        let room = &joined[rng.usize(..joined.len())];
                        client.publish(room, json!({ "text": "soaking", "from": index }));
                        activity.published.fetch_add(1, Ordering::Relaxed);
                        if rng.u8(..10) == 0 {
                            // Move: leave one room, join another.
                            let left = joined.swap_remove(rng.usize(..joined.len()));
                            client.input(Input::Leave(left));
                            let room = rooms[rng.usize(..rooms.len())].clone();
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
    fn a_steady_run_passes_and_a_leak_fails() {
        let steady = samples(|i| 100_000_000 + (i as u64 % 7) * 1_000_000);
        assert!(trend(&steady).upward.is_empty());
        let warming = samples(|i| if i < 20 { 50_000_000 + i as u64 * 2_000_000 } else { 100_000_000 });
        assert!(trend(&warming).upward.is_empty(), "growth during the warm-up is not a trend");
        let leaking = samples(|i| 100_000_000 + i as u64 * 500_000);
        assert!(!trend(&leaking).upward.is_empty());
    }
}
