//! `tether-bench`: Tether and its peers side by side, measured from outside with real
//! WebSocket clients on loopback. Every server under test runs pinned to CPU 0 and the
//! load generator (this process, single-threaded) to CPU 1, so each figure is compared
//! with the peers' figures from the same run on the same machine.
//!
//! `cargo xtask bench [--quick] [--peers=tether,bare] [storm] [idle] [fanout] [echo] [durable] [handlers] [requests] [mount] [cluster] [transports] [encodings] [stream]`
//! runs the named workloads (all by default) against the named servers (all by
//! default), prints a markdown report and writes it, with plots, to `docs/bench/`.

mod cluster;
mod durable;
mod echo;
mod encodings;
mod fanout;
mod handlers;
mod idle;
mod latency;
mod mount;
mod peer;
mod plot;
mod process;
mod raw;
mod report;
mod requests;
mod storm;
mod stream;
mod transports;

use std::time::Duration;

use peer::Peer;
use report::Report;

/// How big the runs are.
struct Sizes {
    storm_clients: usize,
    idle_connections: usize,
    room_sizes: Vec<usize>,
    fanout_subscribers: usize,
    fanout_seconds: u64,
    echo_clients: usize,
    echo_seconds: u64,
    durable_seconds: u64,
    stream_seconds: u64,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            storm_clients: 10_000,
            idle_connections: 10_000,
            room_sizes: vec![1, 100, 1_000, 10_000],
            fanout_subscribers: 1_000,
            fanout_seconds: 3,
            echo_clients: 100,
            echo_seconds: 5,
            durable_seconds: 10,
            stream_seconds: 5,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            storm_clients: 2_000,
            idle_connections: 2_000,
            room_sizes: vec![1, 100, 1_000],
            fanout_subscribers: 200,
            fanout_seconds: 2,
            echo_clients: 50,
            echo_seconds: 2,
            durable_seconds: 3,
            stream_seconds: 2,
        }
    }
}

fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut wanted: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    let file =
        if wanted.is_empty() { "results.md".to_owned() } else { format!("results-{}.md", wanted.join("-")) };
    if wanted.is_empty() {
        wanted = vec![
            "storm",
            "idle",
            "fanout",
            "echo",
            "durable",
            "handlers",
            "requests",
            "mount",
            "cluster",
            "transports",
            "encodings",
            "stream",
        ];
    }
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    // `--peers=tether,bare`: only the servers whose names contain one of these words.
    let peers: Vec<Peer> = match args.iter().find_map(|a| a.strip_prefix("--peers=")) {
        Some(list) => Peer::ALL
            .into_iter()
            .filter(|p| list.split(',').any(|w| p.name().to_lowercase().contains(&w.to_lowercase())))
            .collect(),
        None => Peer::ALL.to_vec(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut report = Report::new(quick, file);
    runtime.block_on(async {
        for workload in wanted {
            println!("== {workload}");
            match workload {
                "storm" => report.storm(storm::run(sizes.storm_clients).await),
                "idle" => {
                    for &peer in &peers {
                        if peer == Peer::SocketIo {
                            continue; // Socket.IO pings every 25 s; idle sockets are measured on ws.
                        }
                        let sizes_for_peer: &[usize] =
                            if peer == Peer::Tether { &sizes.room_sizes } else { &[1] };
                        for &room in sizes_for_peer {
                            let bytes = idle::per_connection(peer, sizes.idle_connections, room).await;
                            println!(
                                "  idle {:<24} rooms of {room:>6}: {bytes:?} bytes/connection",
                                peer.name()
                            );
                            report.idle(peer, room, sizes.idle_connections, bytes);
                        }
                    }
                }
                "fanout" => {
                    for &peer in &peers {
                        // `--fanout-rate=N`: one step at N messages/s instead of the ramp.
                        let (start, steps) = match args.iter().find_map(|a| a.strip_prefix("--fanout-rate="))
                        {
                            Some(rate) => (rate.parse().expect("--fanout-rate=N"), 1),
                            None => (250, 10),
                        };
                        let steps =
                            fanout::ramp(peer, sizes.fanout_subscribers, start, sizes.fanout_seconds, steps)
                                .await;
                        report.fanout(peer, sizes.fanout_subscribers, steps);
                    }
                }
                "echo" => {
                    for &peer in &peers {
                        let result = echo::run(peer, sizes.echo_clients, sizes.echo_seconds).await;
                        if let Ok(echo) = &result {
                            println!(
                                "  echo {:<24} {:>8.0} round trips/s, {:.2} µs server CPU each",
                                peer.name(),
                                echo.round_trips_per_sec,
                                echo.cpu_per_round_trip.as_secs_f64() * 1e6
                            );
                        }
                        report.echo(peer, sizes.echo_clients, result);
                    }
                }
                "durable" => {
                    for window in durable::WINDOWS {
                        let result = durable::run(20, window, sizes.durable_seconds).await;
                        println!(
                            "  durable, window {window}: {:.0} acked/s, ack p50 {:?} p99 {:?}",
                            result.acked_per_sec, result.p50, result.p99
                        );
                        report.durable(20, result);
                    }
                }
                "handlers" => {
                    let rate = if quick { 1_000 } else { 2_000 };
                    match handlers::run(sizes.fanout_subscribers, rate, sizes.durable_seconds).await {
                        Ok(cost) => report.handlers(cost),
                        Err(why) => println!("  handlers: {why}"),
                    }
                }
                "requests" => match requests::run(sizes.durable_seconds).await {
                    Ok(runs) => report.requests(runs),
                    Err(why) => println!("  requests: {why}"),
                },
                "mount" => report.mount(
                    mount::run(sizes.echo_clients, sizes.echo_seconds, sizes.fanout_subscribers, sizes.fanout_seconds)
                        .await,
                ),
                "transports" => report.transports(transports::run(sizes.durable_seconds).await),
                "encodings" => report.encodings(encodings::run().await),
                "cluster" => report.cluster(cluster::run(sizes.durable_seconds, sizes.storm_clients).await),
                "stream" => {
                    let result = stream::run(sizes.stream_seconds).await;
                    match &result {
                        Ok(rates) => {
                            for r in rates {
                                println!(
                                    "  stream {} msgs/s: frame p50 {:?}, p95 {:?}, max {:?} ({} frames)",
                                    r.rate, r.p50, r.p95, r.max, r.frames
                                );
                            }
                        }
                        Err(why) => println!("  stream: {why}"),
                    }
                    report.stream(result);
                }
                other => {
                    eprintln!(
                        "unknown workload `{other}` (storm, idle, fanout, echo, durable, handlers, requests, mount, cluster, transports, encodings, stream)"
                    )
                }
            }
            // Let sockets of the previous workload leave TIME_WAIT behind them.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    report.finish();
}
