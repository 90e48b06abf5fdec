//! `tether-chaos`: Tether's proof under faults, run by `cargo xtask chaos` and
//! `cargo xtask soak` against the release server.
//!
//! - `chaos` runs checked native clients through a seeded fault injector (SIGKILL,
//!   restarts, resets, blackholes, latency; Redis restarts in cluster mode), then checks
//!   every record against every room's history, then runs a reconnect storm.
//! - `soak` churns clients for minutes and watches the server's resources for a leak.
//! - `siege` holds thousands of connections that send nothing while a good client
//!   measures its round trips.

mod chaos;
mod check;
mod clients;
mod nodes;
mod plot;
mod siege;
mod soak;
mod storm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tether-chaos", about = "Tether under faults: a checked chaos run, a soak and a siege")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Faults against checked clients, the history check, then a reconnect storm.
    Chaos {
        /// Faults to inject.
        #[arg(long, default_value_t = 100)]
        cycles: u32,
        /// The fault schedule's seed (random when unset; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// Checked clients.
        #[arg(long, default_value_t = 24)]
        clients: usize,
        /// Rooms they share.
        #[arg(long, default_value_t = 3)]
        rooms: usize,
        /// Run N nodes on one Redis instead of one node on SQLite.
        #[arg(long)]
        cluster: Option<usize>,
        /// Clients in the reconnect storm (0 skips it).
        #[arg(long, default_value_t = 2000)]
        storm: usize,
    },
    /// Churning clients for minutes; fails on an upward trend of memory or descriptors.
    Soak {
        /// How long.
        #[arg(long, default_value_t = 60.0)]
        minutes: f64,
        /// Clients churning at once.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Rooms they move between.
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        /// Seconds between samples.
        #[arg(long, default_value_t = 5.0)]
        every: f64,
        /// Where the CSV and the PNG go.
        #[arg(long, default_value = "target/soak")]
        out: PathBuf,
    },
    /// Connections that send nothing (silent TCP, then upgraded WebSockets without a
    /// hello) against a well-behaved client's round trips.
    Siege {
        /// Attacking connections per phase.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds each phase lasts once its connections are up.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Thousands of clients and connections, each a descriptor.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let result = match Cli::parse().command {
        Command::Chaos { cycles, seed, clients, rooms, cluster, storm } => {
            let seed = seed.unwrap_or_else(|| fastrand::u64(..));
            let options = chaos::Options { cycles, seed, clients, rooms, cluster };
            let checked = chaos::run(&options).await;
            match checked {
                Ok(()) if storm > 0 => storm::run(storm, 10).await,
                other => other,
            }
        }
        Command::Soak { minutes, clients, rooms, every, out } => {
            soak::run(&soak::Options { minutes, clients, rooms, every, out }).await
        }
        Command::Siege { connections, seconds } => siege::run(&siege::Options { connections, seconds }).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tether-chaos: {message}");
            ExitCode::FAILURE
        }
    }
}
