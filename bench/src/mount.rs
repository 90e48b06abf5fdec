//! Tether mounted in an app's own server, beside the binary: echo round trips and a
//! fan-out step through the warp filter (`mount-server`, `TETHER_MOUNT=warp`) and the
//! tower service (`TETHER_MOUNT=axum`), as ratios to `tether-server` in the same run.
//!
//! Each server runs twice, in order and then in reverse (binary, warp, axum, axum,
//! warp, binary), and the two passes are averaged: one echo run swings by ±10 % from one
//! run to the next on this machine, and whichever ran first would otherwise pay for the
//! machine warming up.

use crate::peer::Peer;
use crate::{echo, fanout};

/// Messages per second the fan-out step publishes.
const FANOUT_RATE: u64 = 2_000;

/// One server's figures, the mean of its runs.
pub struct Mounted {
    /// Which server.
    pub peer: Peer,
    /// Echo clients, each with one round trip in flight.
    pub echo_clients: usize,
    /// Echo round trips per second.
    pub echoes: f64,
    /// Server CPU per echo round trip, µs.
    pub echo_cpu_us: f64,
    /// Fan-out subscribers.
    pub subscribers: usize,
    /// Server CPU per fan-out delivery, µs.
    pub delivery_cpu_us: f64,
    /// Share of fan-out deliveries made.
    pub delivered: f64,
    /// Runs averaged.
    pub runs: u32,
}

/// The binary, then the warp and axum mounts (the first is what the ratios compare to).
pub async fn run(
    echo_clients: usize,
    echo_seconds: u64,
    subscribers: usize,
    fanout_seconds: u64,
) -> Vec<Mounted> {
    let peers = [Peer::Tether, Peer::MountedWarp, Peer::MountedAxum];
    let mut sums: Vec<Mounted> = peers
        .iter()
        .map(|&peer| Mounted {
            peer,
            echo_clients,
            echoes: 0.0,
            echo_cpu_us: 0.0,
            subscribers,
            delivery_cpu_us: 0.0,
            delivered: 0.0,
            runs: 0,
        })
        .collect();
    for index in [0, 1, 2, 2, 1, 0] {
        let peer = peers[index];
        let echo = echo::run(peer, echo_clients, echo_seconds).await;
        let fan = fanout::run(peer, subscribers, FANOUT_RATE, fanout_seconds).await;
        match (echo, fan) {
            (Ok(echo), Ok(step)) => {
                let sum = &mut sums[index];
                sum.echoes += echo.round_trips_per_sec;
                sum.echo_cpu_us += echo.cpu_per_round_trip.as_secs_f64() * 1e6;
                sum.delivery_cpu_us += step.cpu_per_delivery.as_secs_f64() * 1e6;
                sum.delivered += step.delivered;
                sum.runs += 1;
            }
            (Err(why), _) | (_, Err(why)) => println!("  mount {}: {why}", peer.name()),
        }
    }
    let mut means: Vec<Mounted> = sums
        .into_iter()
        .filter(|sum| sum.runs > 0)
        .map(|sum| {
            let n = f64::from(sum.runs);
            Mounted {
                echoes: sum.echoes / n,
                echo_cpu_us: sum.echo_cpu_us / n,
                delivery_cpu_us: sum.delivery_cpu_us / n,
                delivered: sum.delivered / n,
                ..sum
            }
        })
        .collect();
    if means.first().is_none_or(|first| first.peer != Peer::Tether) {
        println!("  mount: the binary did not run, so there is nothing to compare to");
        means.clear();
    }
    if let Some(binary) = means.first() {
        let (echoes, echo_cpu, delivery_cpu) = (binary.echoes, binary.echo_cpu_us, binary.delivery_cpu_us);
        for mounted in &means {
            println!(
                "  mount {:<26} echo {:>8.0}/s ({:.2}× the binary), {:.2} µs CPU each ({:.2}×); fan-out {FANOUT_RATE} msg/s to {}: {:.2} µs CPU per delivery ({:.2}×), {:.2} % delivered (mean of {} runs)",
                mounted.peer.name(),
                mounted.echoes,
                mounted.echoes / echoes,
                mounted.echo_cpu_us,
                mounted.echo_cpu_us / echo_cpu,
                mounted.subscribers,
                mounted.delivery_cpu_us,
                mounted.delivery_cpu_us / delivery_cpu,
                mounted.delivered * 100.0,
                mounted.runs
            );
        }
    }
    means
}
