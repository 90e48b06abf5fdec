//! The report: one markdown page of tables, every figure beside the same run's peers.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::ClusterRun;
use crate::durable::Durable;
use crate::echo::Echo;
use crate::encodings::Figures;
use crate::fanout::{self, Step};
use crate::handlers::{HandlerCost, PUBLISHERS, WINDOW};
use crate::mount::Mounted;
use crate::peer::Peer;
use crate::requests::RoundTrips;
use crate::storm::Storm;
use crate::stream::FrameTimes;
use crate::transports::Delivery;

/// A fan-out ramp: the peer, subscribers, and its steps (or why it could not run).
pub type Ramp = (Peer, usize, Result<Vec<Step>, String>);
/// An echo run: the peer, clients, and what it measured.
pub type EchoRun = (Peer, usize, Result<Echo, String>);
/// Idle memory: the peer, room size, connections, bytes per connection.
pub type IdleRun = (Peer, usize, usize, Result<f64, String>);

/// Figures gathered so far.
pub struct Report {
    quick: bool,
    storm: Option<Storm>,
    idle: Vec<IdleRun>,
    fanout: Vec<Ramp>,
    echo: Vec<EchoRun>,
    durable: Vec<(usize, Durable)>,
    handlers: Option<HandlerCost>,
    requests: Vec<RoundTrips>,
    mount: Vec<Mounted>,
    stream: Option<Result<Vec<FrameTimes>, String>>,
    cluster: Option<ClusterRun>,
    transports: Option<Vec<Delivery>>,
    encodings: Option<Vec<Figures>>,
    /// The file the report goes to: `results.md` for every workload, else named after
    /// the ones that ran, so a partial run never replaces the full report.
    file: String,
}

fn micros(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl Report {
    /// An empty report; `quick` runs are written beside the build, not into `docs/`.
    pub fn new(quick: bool, file: String) -> Report {
        Report {
            cluster: None,
            transports: None,
            encodings: None,
            file,
            quick,
            storm: None,
            idle: Vec::new(),
            fanout: Vec::new(),
            echo: Vec::new(),
            durable: Vec::new(),
            handlers: None,
            requests: Vec::new(),
            mount: Vec::new(),
            stream: None,
        }
    }

    /// Records the browser's frame times under a stream.
    pub fn stream(&mut self, stream: Result<Vec<FrameTimes>, String>) {
        self.stream = Some(stream);
    }

    /// Records a join storm.
    pub fn storm(&mut self, storm: Storm) {
        println!(
            "  storm: {} clients joined one room in {:.2?} (server CPU {:.2?}); server RSS {:.1} MB; {:.1} presence frames per member",
            storm.clients,
            storm.elapsed,
            storm.server_cpu,
            storm.rss as f64 / 1e6,
            storm.presence_frames_per_member
        );
        self.storm = Some(storm);
    }

    /// Records idle memory.
    pub fn idle(&mut self, peer: Peer, room: usize, connections: usize, bytes: Result<f64, String>) {
        self.idle.push((peer, room, connections, bytes));
    }

    /// Records a fan-out ramp.
    pub fn fanout(&mut self, peer: Peer, subscribers: usize, steps: Result<Vec<Step>, String>) {
        if let Err(why) = &steps {
            println!("  fan-out {}: {why}", peer.name());
        }
        self.fanout.push((peer, subscribers, steps));
    }

    /// Records an echo run.
    pub fn echo(&mut self, peer: Peer, clients: usize, echo: Result<Echo, String>) {
        if let Err(why) = &echo {
            println!("  echo {}: {why}", peer.name());
        }
        self.echo.push((peer, clients, echo));
    }

    /// Records delivery latency over each transport.
    pub fn transports(&mut self, deliveries: Vec<Delivery>) {
        for delivery in &deliveries {
            println!(
                "  {:<13} deliver p50 {:?}, p99 {:?} ({} received)",
                delivery.transport, delivery.p50, delivery.p99, delivery.received
            );
        }
        self.transports = Some(deliveries);
    }

    /// Records JSON beside MessagePack.
    pub fn encodings(&mut self, figures: Vec<Figures>) {
        for f in &figures {
            println!(
                "  {:<11} {:<13} {:.1} B and {} of server CPU per delivery ({} delivered)",
                f.encoding,
                f.workload,
                f.bytes_per_delivery,
                micros(f.cpu_per_delivery),
                f.delivered
            );
        }
        self.encodings = Some(figures);
    }

    /// Records the cluster workload.
    pub fn cluster(&mut self, run: ClusterRun) {
        let ((single, clustered), ((p50, p99), (cp50, cp99))) = (&run.acked, &run.deliver);
        println!(
            "  cluster: acked {:.0}/s on one node (SQLite), {:.0}/s through Redis ({:.2}×); deliver p50/p99 {:?}/{:?} on one node, {:?}/{:?} across nodes",
            single.acked_per_sec,
            clustered.acked_per_sec,
            clustered.acked_per_sec / single.acked_per_sec,
            p50,
            p99,
            cp50,
            cp99
        );
        println!(
            "  cluster storm: {} clients in {:.2?} on one node, {:.2?} over {} nodes",
            run.storm.0.clients,
            run.storm.0.elapsed,
            run.storm.1.elapsed,
            crate::cluster::NODES
        );
        self.cluster = Some(run);
    }

    /// Records one durable run.
    pub fn durable(&mut self, clients: usize, durable: Durable) {
        self.durable.push((clients, durable));
    }

    /// Records request round trips beside publish acks.
    pub fn requests(&mut self, runs: Vec<RoundTrips>) {
        self.requests = runs;
    }

    /// Records Tether mounted in warp and axum beside the binary.
    pub fn mount(&mut self, runs: Vec<Mounted>) {
        self.mount = runs;
    }

    /// Records what a typed channel costs.
    pub fn handlers(&mut self, cost: HandlerCost) {
        self.handlers = Some(cost);
    }

    /// Where the report goes.
    pub fn folder(&self) -> PathBuf {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        if self.quick { root.join("target/bench-quick") } else { root.join("docs/bench") }
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let machine = machine();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Made by `cargo xtask bench{}` on {machine}. Each server under test ran alone, pinned \
             to CPU 0 (`taskset`); the load generator ran single-threaded on CPU 1. Ratios compare \
             figures from this same run.\n",
            if self.quick { " --quick" } else { "" }
        );
        if let Some(storm) = &self.storm {
            let _ = writeln!(md, "## Join storm: everyone joins one room\n");
            let _ = writeln!(
                md,
                "| clients | all joined in | server CPU meanwhile | server RSS after | per connection | presence frames per member |"
            );
            let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                md,
                "| {} | {:.2} s | {:.2} s | {:.1} MB | {:.1} KB | {:.1} |\n",
                storm.clients,
                storm.elapsed.as_secs_f64(),
                storm.server_cpu.as_secs_f64(),
                storm.rss as f64 / 1e6,
                storm.rss as f64 / storm.clients as f64 / 1e3,
                storm.presence_frames_per_member
            );
        }
        if !self.idle.is_empty() {
            let rooms: Vec<usize> = {
                let mut rooms: Vec<usize> =
                    self.idle.iter().filter(|(p, ..)| *p == Peer::Tether).map(|(_, r, ..)| *r).collect();
                rooms.dedup();
                rooms
            };
            let connections = self.idle[0].2;
            let _ = writeln!(
                md,
                "## Memory per idle connection ({connections} connections, welcomed and joined)\n"
            );
            let _ = write!(md, "| server |");
            for room in &rooms {
                let _ = write!(md, " rooms of {room} |");
            }
            let _ = writeln!(md, "\n|---|{}", "---:|".repeat(rooms.len()));
            let mut by_peer: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (peer, _, _, bytes) in &self.idle {
                let cell = match bytes {
                    Ok(bytes) => format!("{:.1} KB", bytes / 1e3),
                    Err(why) => format!("n/a ({why})"),
                };
                by_peer.entry(peer.name()).or_default().push(cell);
            }
            for peer in Peer::ALL {
                if let Some(cells) = by_peer.get(peer.name()) {
                    let cells = if cells.len() == 1 && rooms.len() > 1 {
                        vec![format!("{} (no rooms)", cells[0]); rooms.len()]
                    } else {
                        cells.clone()
                    };
                    let _ = writeln!(md, "| {} | {} |", peer.name(), cells.join(" | "));
                }
            }
            let _ = writeln!(md);
        }
        if !self.fanout.is_empty() {
            let subscribers = self.fanout[0].1;
            let _ = writeln!(
                md,
                "## Fan-out: 1 room × {subscribers} subscribers, open loop, rate doubling, then bisected\n\n\
                 A step passes with ≥ {:.1} % delivered and p99 < {} ms. Latency is from when a \
                 message was due to be sent to when a subscriber had it. The subscribers read raw \
                 WebSocket frames from one buffer each (`bench/src/raw.rs`), so the load generator \
                 keeps up with the fastest server. Server CPU covers the whole step, grace period included.\n",
                fanout::MIN_DELIVERED * 100.0,
                fanout::MAX_P99.as_millis()
            );
            let _ = writeln!(
                md,
                "| server | best passing rate | deliveries/s | p50 | p99 | server CPU per delivery | vs bare tokio-tungstenite |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
            let best = |steps: &Vec<Step>| steps.iter().rfind(|s| s.passed()).cloned();
            let baseline = self
                .fanout
                .iter()
                .find(|(p, ..)| *p == Peer::Tungstenite)
                .and_then(|(_, _, s)| s.as_ref().ok().and_then(best));
            for (peer, _, steps) in &self.fanout {
                match steps {
                    Ok(steps) => match best(steps) {
                        Some(step) => {
                            let ratio = baseline.as_ref().map_or("".into(), |b| {
                                format!("{:.2}×", step.deliveries_per_sec / b.deliveries_per_sec)
                            });
                            let _ = writeln!(
                                md,
                                "| {} | {} msg/s | {:.0} | {} | {} | {} | {} |",
                                peer.name(),
                                step.rate,
                                step.deliveries_per_sec,
                                millis(step.p50),
                                millis(step.p99),
                                micros(step.cpu_per_delivery),
                                ratio
                            );
                        }
                        None => {
                            let _ = writeln!(md, "| {} | none passed | | | | | |", peer.name());
                        }
                    },
                    Err(why) => {
                        let _ = writeln!(md, "| {} | n/a ({why}) | | | | | |", peer.name());
                    }
                }
            }
            let _ = writeln!(md, "\nEvery step:\n");
            let _ = writeln!(md, "| server | rate | delivered | p50 | p99 | server CPU per delivery |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
            for (peer, _, steps) in &self.fanout {
                for step in steps.iter().flatten() {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.2} % | {} | {} | {} |",
                        peer.name(),
                        step.rate,
                        step.delivered * 100.0,
                        millis(step.p50),
                        millis(step.p99),
                        micros(step.cpu_per_delivery)
                    );
                }
            }
            let _ = writeln!(md);
        }
        if !self.echo.is_empty() {
            let clients = self.echo[0].1;
            let _ = writeln!(md, "## Echo: {clients} connections, 32 B, closed loop\n");
            let _ = writeln!(
                md,
                "| server | round trips/s | server CPU per round trip | vs bare tokio-tungstenite |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|");
            let baseline = self
                .echo
                .iter()
                .find(|(p, ..)| *p == Peer::Tungstenite)
                .and_then(|(_, _, e)| e.as_ref().ok().map(|e| e.cpu_per_round_trip));
            for (peer, _, echo) in &self.echo {
                match echo {
                    Ok(echo) => {
                        let ratio = baseline.map_or("".into(), |b| {
                            format!("{:.2}×", echo.cpu_per_round_trip.as_secs_f64() / b.as_secs_f64())
                        });
                        let _ = writeln!(
                            md,
                            "| {} | {:.0} | {} | {} |",
                            peer.name(),
                            echo.round_trips_per_sec,
                            micros(echo.cpu_per_round_trip),
                            ratio
                        );
                    }
                    Err(why) => {
                        let _ = writeln!(md, "| {} | n/a ({why}) | | |", peer.name());
                    }
                }
            }
            let _ = writeln!(md);
        }
        if let Some((clients, _)) = self.durable.first() {
            let _ = writeln!(
                md,
                "## Durable publishes: SQLite, `synchronous = FULL`, {clients} publishers, each in its own room\n"
            );
            let _ = writeln!(md, "| in flight per publisher | acked publishes/s | ack p50 | ack p99 |");
            let _ = writeln!(md, "|---:|---:|---:|---:|");
            for (_, durable) in &self.durable {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {} | {} |",
                    durable.window,
                    durable.acked_per_sec,
                    millis(durable.p50),
                    millis(durable.p99)
                );
            }
            let _ = writeln!(md);
        }
        if let Some(cost) = &self.handlers {
            let _ = writeln!(
                md,
                "## What a typed channel costs\n\n\
                 The same loads into plain rooms (`tether-server`) and into the rooms of a typed \
                 channel whose publish handler accepts every message (`handler-server`): each body \
                 decoded as the channel's type, the handler called, its answer encoded again. \
                 Publishes: {PUBLISHERS} clients with {WINDOW} in flight each, memory store. Fan-out: \
                 {} messages/s to {} subscribers. Rounds alternate which side goes first; server CPU per publish is the median round, the rest are means.\n",
                cost.rate, cost.subscribers
            );
            let _ = writeln!(
                md,
                "| rooms | acked publishes/s | server CPU per publish | fan-out CPU per delivery | delivered |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|");
            for side in &cost.sides {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.2} µs | {:.2} µs | {:.2} % |",
                    side.peer.name(),
                    side.acked(),
                    side.cpu_per_publish_us(),
                    side.cpu_per_delivery_us(),
                    side.delivered() * 100.0
                );
            }
            let [plain, typed] = &cost.sides;
            let _ = writeln!(
                md,
                "\nTyped with a handler: {:.2}× plain rooms' server CPU per publish ({:.1} % of their \
                 throughput), {:.2}× their CPU per delivery.\n",
                typed.cpu_per_publish_us() / plain.cpu_per_publish_us(),
                typed.acked() / plain.acked() * 100.0,
                typed.cpu_per_delivery_us() / plain.cpu_per_delivery_us()
            );
        }
        if !self.requests.is_empty() {
            let _ = writeln!(
                md,
                "## Requests beside publishes\n\n\
                 Each connection keeps one request (answered by a typed channel's request handler, \
                 nothing stored) or one publish (acked once the memory store numbered it) in flight \
                 at a time; `handler-server`, in the same run. `emitWithAck` is Socket.IO 4 \
                 (Node) answering each `emitWithAck` from its handler's acknowledgement at once, \
                 with nothing stored, when it is installed.\n"
            );
            let _ = writeln!(md, "| kind | connections | answers/s | p50 | p99 |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|");
            for run in &self.requests {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {} |",
                    run.kind,
                    run.clients,
                    run.per_sec,
                    millis(run.p50),
                    millis(run.p99)
                );
            }
            let _ = writeln!(md);
        }
        if let Some(binary) = self.mount.first() {
            let _ = writeln!(
                md,
                "## Tether mounted in an app's own server\n\n\
                 The same core served by the `tether-server` binary, mounted in a warp app as a filter, \
                 and in an axum app as a tower service (`mount-server`). Echo: {} clients, each with one \
                 round trip in flight. Fan-out: 2,000 messages/s to {} subscribers. Each server ran \
                 twice, in order and then in reverse, and the two runs are averaged; ratios are to \
                 the binary.\n",
                binary.echo_clients, binary.subscribers
            );
            let _ = writeln!(
                md,
                "| server | echo round trips/s | vs binary | CPU per echo | vs binary | CPU per delivery | vs binary | delivered |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
            for mounted in &self.mount {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.2}× | {:.2} µs | {:.2}× | {:.2} µs | {:.2}× | {:.2} % |",
                    mounted.peer.name(),
                    mounted.echoes,
                    mounted.echoes / binary.echoes,
                    mounted.echo_cpu_us,
                    mounted.echo_cpu_us / binary.echo_cpu_us,
                    mounted.delivery_cpu_us,
                    mounted.delivery_cpu_us / binary.delivery_cpu_us,
                    mounted.delivered * 100.0
                );
            }
            let _ = writeln!(md);
        }
        if let Some(deliveries) = &self.transports {
            let _ = writeln!(
                md,
                "## Delivery over each transport\n\n\
                 One WebSocket publisher at 200 messages/s into a room with 10 subscribers on each \
                 transport, all in the same run.\n"
            );
            let _ = writeln!(md, "| transport | deliver p50 | deliver p99 | messages received |");
            let _ = writeln!(md, "|---|---:|---:|---:|");
            for delivery in deliveries {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    delivery.transport,
                    millis(delivery.p50),
                    millis(delivery.p99),
                    delivery.received
                );
            }
            let _ = writeln!(md);
        }
        if let Some(figures) = &self.encodings {
            let _ = writeln!(
                md,
                "## JSON and MessagePack\n\n\
                 One publisher sends 2,000 chat messages, then 2,000 cursor updates, to a room of 50 \
                 subscribers speaking JSON, then to one of 50 speaking MessagePack, against the same \
                 server. Cursor updates go about one a millisecond; they are coalesced for subscribers \
                 that fall behind, so fewer may be delivered than sent. Server CPU is read from \
                 `/proc` (10 ms ticks) over each phase.\n"
            );
            let _ = writeln!(
                md,
                "| encoding | workload | bytes per delivery | server CPU per delivery | delivered |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|");
            for f in figures {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} | {} | {} |",
                    f.encoding,
                    f.workload,
                    f.bytes_per_delivery,
                    micros(f.cpu_per_delivery),
                    f.delivered
                );
            }
            let _ = writeln!(md);
        }
        if let Some(run) = &self.cluster {
            let nodes = crate::cluster::NODES;
            let _ = writeln!(
                md,
                "## Cluster mode: {nodes} nodes over one Redis beside one node on SQLite\n\n\
                 Redis 7 with `appendonly yes`, `appendfsync always` (acked means on disk, like SQLite's \
                 `synchronous = FULL`). Every node and Redis share the server core, so the cluster's \
                 figures are the whole cluster on one core.\n"
            );
            let _ = writeln!(md, "| | one node (SQLite) | {nodes} nodes (Redis) | ratio |");
            let _ = writeln!(md, "|---|---:|---:|---:|");
            let (single, clustered) = &run.acked;
            let _ = writeln!(
                md,
                "| acked publishes/s ({} in flight per publisher) | {:.0} | {:.0} | {:.2}× |",
                single.window,
                single.acked_per_sec,
                clustered.acked_per_sec,
                clustered.acked_per_sec / single.acked_per_sec
            );
            let _ = writeln!(
                md,
                "| ack p50 / p99 | {} / {} | {} / {} | |",
                millis(single.p50),
                millis(single.p99),
                millis(clustered.p50),
                millis(clustered.p99)
            );
            let ((p50, p99), (cp50, cp99)) = run.deliver;
            let _ = writeln!(
                md,
                "| publish→deliver p50 / p99 (publisher on node 1, subscribers on the others) | {} / {} | {} / {} | |",
                millis(p50),
                millis(p99),
                millis(cp50),
                millis(cp99)
            );
            let (one, spread) = &run.storm;
            let _ = writeln!(
                md,
                "| {} clients join one room | {:.2} s | {:.2} s | {:.2}× |",
                one.clients,
                one.elapsed.as_secs_f64(),
                spread.elapsed.as_secs_f64(),
                one.elapsed.as_secs_f64() / spread.elapsed.as_secs_f64()
            );
            let _ = writeln!(
                md,
                "| server RSS after the storm | {:.1} MB | {:.1} MB (nodes) + {:.1} MB (Redis) | |",
                one.rss as f64 / 1e6,
                spread.rss as f64 / 1e6,
                run.redis_rss as f64 / 1e6
            );
            let _ = writeln!(
                md,
                "| presence frames per member during the storm | {:.1} | {:.1} | |\n",
                one.presence_frames_per_member, spread.presence_frames_per_member
            );
        }
        if let Some(stream) = &self.stream {
            let _ = writeln!(
                md,
                "## The demo app in headless Chromium under a stream into its open room\n\n\
                 Intervals between `requestAnimationFrame` callbacks while a native publisher streams \
                 into `#general` and until the page shows the last message (one frame at 60 Hz is 16.7 ms).\n"
            );
            let _ = writeln!(md, "| messages/s | frames | frame p50 | frame p95 | longest frame |");
            let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
            match stream {
                Ok(rates) => {
                    for r in rates {
                        let _ = writeln!(
                            md,
                            "| {} | {} | {} | {} | {} |",
                            r.rate,
                            r.frames,
                            millis(r.p50),
                            millis(r.p95),
                            millis(r.max)
                        );
                    }
                }
                Err(why) => {
                    let _ = writeln!(md, "| n/a ({why}) | | | | |");
                }
            }
            let _ = writeln!(md);
        }
        md
    }

    /// Prints the report and writes it (with plots) to [`Report::folder`].
    pub fn finish(&self) {
        let md = self.markdown();
        println!("\n{md}");
        let folder = self.folder();
        if let Err(error) = std::fs::create_dir_all(&folder) {
            eprintln!("cannot create {}: {error}", folder.display());
            return;
        }
        let path = folder.join(&self.file);
        match std::fs::write(&path, &md) {
            Ok(()) => println!("written to {}", path.display()),
            Err(error) => eprintln!("cannot write {}: {error}", path.display()),
        }
        crate::plot::all(&folder, &self.fanout, &self.echo, &self.idle);
    }
}

/// The machine, in words: CPU model and count, memory, kernel.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(String::new(), |kb| format!(", {:.0} GiB", kb as f64 / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} × {model}{memory}, Linux {}", kernel.trim())
}
