//! What a typed channel costs: the same loads into plain rooms (`tether-server`) and
//! into a typed channel's rooms whose publish handler accepts everything
//! (`handler-server`), in the same run, alternating so that drift hits both alike.
//!
//! - Publishes: 20 clients, 16 in flight each, into the memory store, so the server's
//!   CPU (decode, handler, re-encode) and not the disk is the limit: acked per second.
//! - Fan-out: one publisher into one room of N subscribers at a fixed rate: the server's
//!   CPU per delivery. The body is encoded once per message either way; this shows it.

use crate::durable::{self, Durable};
use crate::fanout::{self, Step};
use crate::peer::{Mode, Peer};

/// Rounds per workload; the sides take turns going first, and the medians are compared.
const ROUNDS: usize = 3;
/// Publishers.
pub const PUBLISHERS: usize = 20;
/// Publishes each publisher keeps in flight.
pub const WINDOW: usize = 16;

/// The two sides of one comparison.
pub struct Side {
    /// Plain rooms or the typed channel.
    pub peer: Peer,
    /// Acked publishes per second, each round.
    pub acked_per_sec: Vec<f64>,
    /// The server's CPU per acked publish, each round: the figure that other work on
    /// the machine disturbs least.
    pub cpu_per_publish: Vec<std::time::Duration>,
    /// Fan-out rounds.
    pub fanout: Vec<Step>,
}

/// What the workload measured: plain first, typed second.
pub struct HandlerCost {
    /// Subscribers in the fan-out room.
    pub subscribers: usize,
    /// Messages a second into it.
    pub rate: u64,
    /// Plain rooms, then the typed channel.
    pub sides: [Side; 2],
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

impl Side {
    /// Mean acked publishes per second.
    pub fn acked(&self) -> f64 {
        mean(self.acked_per_sec.iter().copied())
    }

    /// Median server CPU per acked publish, in microseconds: one disturbed round (the
    /// machine is shared with the load generator) does not move it.
    pub fn cpu_per_publish_us(&self) -> f64 {
        let mut rounds: Vec<f64> = self.cpu_per_publish.iter().map(|cpu| cpu.as_secs_f64() * 1e6).collect();
        rounds.sort_by(f64::total_cmp);
        rounds.get(rounds.len() / 2).copied().unwrap_or(0.0)
    }

    /// Mean server CPU per fan-out delivery, in microseconds.
    pub fn cpu_per_delivery_us(&self) -> f64 {
        mean(self.fanout.iter().map(|step| step.cpu_per_delivery.as_secs_f64() * 1e6))
    }

    /// Mean share of fan-out deliveries that arrived.
    pub fn delivered(&self) -> f64 {
        mean(self.fanout.iter().map(|step| step.delivered))
    }
}

/// Runs both workloads on both sides.
pub async fn run(subscribers: usize, rate: u64, seconds: u64) -> Result<HandlerCost, String> {
    // A short first run of each, not counted: the first server of a run is slower than
    // the rest (measured 60k acked/s against 93k for the same binary right after).
    for peer in [Peer::Tether, Peer::TetherTyped] {
        let server = peer.start(Mode::Echo, &["--store", "memory", "--send-queue", "100000"])?;
        durable::publish_load(&[server.addr], &peer.room("warm"), PUBLISHERS, WINDOW, 2).await;
    }
    let mut sides = [Peer::Tether, Peer::TetherTyped].map(|peer| Side {
        peer,
        acked_per_sec: vec![],
        cpu_per_publish: vec![],
        fanout: vec![],
    });
    for round in 0..ROUNDS {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let side = &mut sides[side];
            let server = side.peer.start(Mode::Echo, &["--store", "memory", "--send-queue", "100000"])?;
            let cpu_before = server.cpu();
            let Durable { acked_per_sec, .. } =
                durable::publish_load(&[server.addr], &side.peer.room("load"), PUBLISHERS, WINDOW, seconds)
                    .await;
            let acked = (acked_per_sec * seconds as f64).max(1.0);
            let cpu_per_publish = server.cpu().saturating_sub(cpu_before).div_f64(acked);
            drop(server);
            println!(
                "  handlers, round {round}: {:<24} {acked_per_sec:>8.0} acked/s, {:.2} µs server CPU each",
                side.peer.name(),
                cpu_per_publish.as_secs_f64() * 1e6
            );
            side.acked_per_sec.push(acked_per_sec);
            side.cpu_per_publish.push(cpu_per_publish);
            let step = fanout::run(side.peer, subscribers, rate, seconds).await?;
            println!(
                "  handlers, round {round}: {:<24} fan-out {rate} msg/s to {subscribers}: {:.2} µs CPU per delivery, {:.2} % delivered",
                side.peer.name(),
                step.cpu_per_delivery.as_secs_f64() * 1e6,
                step.delivered * 100.0
            );
            side.fanout.push(step);
        }
    }
    let [plain, typed] = &sides;
    println!(
        "  handlers: a typed channel with a no-op publish handler spends {:.2}× plain rooms' server CPU per publish ({:.1} % of their throughput) and {:.2}× their CPU per fan-out delivery",
        typed.cpu_per_publish_us() / plain.cpu_per_publish_us(),
        typed.acked() / plain.acked() * 100.0,
        typed.cpu_per_delivery_us() / plain.cpu_per_delivery_us()
    );
    Ok(HandlerCost { subscribers, rate, sides })
}
