//! Fan-out: one room, many subscribers, a publisher on an open-loop schedule. The rate
//! doubles until fewer than 99.9 % of deliveries arrive or p99 latency reaches 100 ms,
//! then bisects between the last pass and that failure.
//!
//! Latency is measured from when each message was *due* to be sent, not from when the
//! publisher got round to it, so a server that makes the publisher wait is charged for
//! it (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::latency;
use crate::peer::{Mode, Peer};
use crate::raw::stamp;

/// The pass mark of one step.
pub const MIN_DELIVERED: f64 = 0.999;
/// The latency limit of one step.
pub const MAX_P99: Duration = Duration::from_millis(100);

/// One step of the ramp.
#[derive(Clone, Debug)]
pub struct Step {
    /// Messages per second published.
    pub rate: u64,
    /// Fraction of the expected deliveries that arrived.
    pub delivered: f64,
    /// Deliveries per second achieved.
    pub deliveries_per_sec: f64,
    /// Publish-to-delivery latency.
    pub p50: Duration,
    /// Publish-to-delivery latency.
    pub p99: Duration,
    /// Server CPU time per delivery, over the whole step.
    pub cpu_per_delivery: Duration,
}

impl Step {
    /// Whether the step met the pass mark.
    pub fn passed(&self) -> bool {
        self.delivered >= MIN_DELIVERED && self.p99 < MAX_P99
    }
}

/// Bisections between the last passing and the first failing rate: each halves the
/// gap (geometrically), so three pin the limit to within 2^(1/8), about 9 %.
const BISECTIONS: usize = 3;

/// Runs the ramp for `peer` from `start_rate`, doubling, for `seconds` per step, then
/// narrows down between the last rate that passed and the first that failed. Steps
/// come back sorted by rate.
pub async fn ramp(
    peer: Peer,
    subscribers: usize,
    start_rate: u64,
    seconds: u64,
    max_steps: usize,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rate = start_rate;
    let (mut passing, mut failing) = (None, None);
    for _ in 0..max_steps {
        let step = measure(peer, subscribers, rate, seconds).await?;
        if !step.passed() {
            failing = Some(rate);
            steps.push(step);
            break;
        }
        passing = Some(rate);
        steps.push(step);
        rate *= 2;
    }
    if let (Some(mut low), Some(mut high)) = (passing, failing) {
        for _ in 0..BISECTIONS {
            let rate = ((low * high) as f64).sqrt().round() as u64;
            let step = measure(peer, subscribers, rate, seconds).await?;
            if step.passed() {
                low = rate;
            } else {
                high = rate;
            }
            steps.push(step);
        }
    }
    steps.sort_by_key(|s| s.rate);
    Ok(steps)
}

async fn measure(peer: Peer, subscribers: usize, rate: u64, seconds: u64) -> Result<Step, String> {
    let step = run(peer, subscribers, rate, seconds).await?;
    println!(
        "  fan-out {:<24} {:>6} msg/s: {:>6.2} % delivered, p50 {:>7.1?} p99 {:>7.1?}, server CPU {:.2} µs per delivery",
        peer.name(),
        rate,
        step.delivered * 100.0,
        step.p50,
        step.p99,
        step.cpu_per_delivery.as_secs_f64() * 1e6,
    );
    Ok(step)
}

/// One step: a fresh server, `subscribers` members, `rate` messages per second.
pub async fn run(peer: Peer, subscribers: usize, rate: u64, seconds: u64) -> Result<Step, String> {
    let server = peer.start(Mode::Broadcast, &["--send-queue", "4096"])?;
    let addr = server.addr;
    let room: Arc<str> = peer.room("fan").into();
    let epoch = Instant::now();
    let total = rate * seconds;
    let gate = Arc::new(Semaphore::new(100));
    let (stop, _) = watch::channel(false);
    let mut members = Vec::new();
    for _ in 0..subscribers {
        let gate = gate.clone();
        let mut stop = stop.subscribe();
        let room = room.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        members.push((
            ready_rx,
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.expect("open");
                let mut client = peer.raw_subscriber(addr, &room).await;
                drop(permit);
                let _ = ready_tx.send(());
                let mut latencies = latency::histogram();
                let mut received = 0u64;
                while received < total {
                    let ping = tokio::select! {
                        _ = stop.changed() => break,
                        next = client.next() => match next {
                            Some(payload) => match stamp(payload) {
                                Some(t) => {
                                    let now = epoch.elapsed().as_micros() as u64;
                                    latencies.saturating_record(now.saturating_sub(t).max(1));
                                    received += 1;
                                    false
                                }
                                // Socket.IO's ping, which a client must answer.
                                None => peer == Peer::SocketIo && payload == b"2",
                            },
                            None => break,
                        }
                    };
                    if ping && client.send_text("3").await.is_err() {
                        break;
                    }
                }
                (received, latencies)
            }),
        ));
    }
    let mut tasks = Vec::new();
    for (ready, task) in members {
        let _ = ready.await;
        tasks.push(task);
    }

    let cpu_before = server.cpu();
    // The publisher writes on schedule; its own copies are read and dropped.
    let publisher = peer.subscriber(addr, &room).await;
    let (mut sink, mut source) = publisher.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
    let begin = epoch.elapsed();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while sent < total {
        tick.tick().await;
        let due = (((epoch.elapsed() - begin).as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while sent < due {
            let t = (begin + Duration::from_secs_f64(sent as f64 / rate as f64)).as_micros() as u64;
            sink.feed(Message::text(peer.publish_frame(&room, sent, t))).await.map_err(|e| e.to_string())?;
            sent += 1;
        }
        sink.flush().await.map_err(|e| e.to_string())?;
    }
    // Everything published by now; give stragglers a grace period, then count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut results = Vec::new();
    for mut task in tasks {
        let result = tokio::select! {
            result = &mut task => result,
            () = tokio::time::sleep_until(deadline) => {
                let _ = stop.send(true);
                task.await
            }
        };
        results.push(result.expect("subscriber task"));
    }
    let elapsed = epoch.elapsed() - begin;
    let cpu = server.cpu().saturating_sub(cpu_before);
    drain.abort();
    let mut latencies = latency::histogram();
    let mut received = 0;
    for (count, histogram) in results {
        received += count;
        latencies.add(histogram).expect("same bounds");
    }
    let expected = total * subscribers as u64;
    Ok(Step {
        rate,
        delivered: received as f64 / expected as f64,
        deliveries_per_sec: received as f64 / elapsed.as_secs_f64().max(seconds as f64),
        p50: Duration::from_micros(latencies.value_at_quantile(0.50)),
        p99: Duration::from_micros(latencies.value_at_quantile(0.99)),
        cpu_per_delivery: cpu / received.max(1) as u32,
    })
}
