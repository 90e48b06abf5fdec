//! `cargo xtask chaos`: checked clients publish and subscribe while a seeded fault
//! injector kills and restarts servers (and Redis, in cluster mode) and breaks their
//! connections; then the checker reads every record against every room's history.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tether_e2e::Fault;
use tether_shared::{BackoffConfig, ConnectionConfig, OutboxConfig};
use tokio::sync::watch;

use crate::check::{self, History};
use crate::clients::{Checked, Phase, Plan};
use crate::nodes::Deployment;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Faults to inject.
    pub cycles: u32,
    /// Chooses the faults, their moments and lengths (printed, to reproduce a run).
    pub seed: u64,
    /// Checked clients.
    pub clients: usize,
    /// Rooms they all publish to and subscribe to.
    pub rooms: usize,
    /// Nodes on one Redis instead of one node on SQLite.
    pub cluster: Option<usize>,
}

/// The kinds of fault, as counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// SIGKILL a node, start it again after a moment.
    Kill,
    /// SIGTERM a node (a deploy), start it again.
    Restart,
    /// Reset every connection through one node's proxy.
    Reset,
    /// Stall one node's proxy (nothing passes, nothing closes) for seconds.
    Blackhole,
    /// Slow one node's proxy down.
    Latency,
    /// SIGKILL Redis, start it again (cluster mode).
    Redis,
}

/// The largest share of publishes that may end reported failed (expired unsent) in a
/// run. A message lives 4 s unsent, so some expire while a node is down, more when
/// the schedule kills it again and again. Thirteen short runs here (`--cycles 10`, one
/// node, random seeds) ended with 0 % in nine, then 0.3 %, 5.3 %, 11.7 % (7 kills) and
/// 21.0 % (6 kills); cluster runs with `--cycles 6` at most 2 %. Twice the worst is
/// allowed, for a schedule with more kills still; a regression that lets most messages
/// expire is past it. Long runs average far below it.
const MAX_FAILED_SHARE: f64 = 0.40;

/// How the clients are set up: quick to notice and quick to come back, with a TTL on
/// unsent messages so that a long outage makes some give up (and say so).
fn client_settings() -> ConnectionConfig {
    ConnectionConfig {
        connect_timeout: Duration::from_secs(3),
        pong_timeout: Duration::from_secs(2),
        ack_timeout: Duration::from_secs(2),
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            ..BackoffConfig::default()
        },
        outbox: OutboxConfig { default_ttl: Some(Duration::from_secs(4)), ..OutboxConfig::default() },
        join_history: 0,
        ..ConnectionConfig::default()
    }
}

/// Runs the faults and the check; `Err` carries every violation found.
pub async fn run(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    // Every message stays in history, so that each one can be checked.
    let flags = ["--idle-timeout", "4s", "--history-messages", "1000000"];
    let mut deployment = Deployment::start(options.cluster, &flags).await;
    let rooms: Vec<String> = (0..options.rooms).map(|i| format!("chaos-{i}")).collect();
    let (phase_tx, phase) = watch::channel(Phase::Publishing);
    let clients: Vec<Checked> = (0..options.clients)
        .map(|i| {
            let plan = Plan {
                name: format!("client-{i}"),
                endpoints: deployment.endpoints(),
                rooms: rooms.clone(),
                publish_every: Some((Duration::from_millis(50), Duration::from_millis(400))),
                connection: client_settings(),
            };
            Checked::start(plan, phase.clone(), options.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        })
        .collect();

    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut faults: HashMap<Kind, u32> = HashMap::new();
    let mut duplicates = 0.0;
    for cycle in 0..options.cycles {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..800))).await;
        let kind = pick(&mut rng, options.cluster.is_some());
        *faults.entry(kind).or_default() += 1;
        let at = rng.usize(..deployment.nodes.len());
        match kind {
            Kind::Kill | Kind::Restart => {
                duplicates += deployment.nodes[at].metric("tether_duplicates_suppressed_total").await;
                if kind == Kind::Kill {
                    deployment.nodes[at].kill();
                } else {
                    deployment.nodes[at].terminate();
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(50..1000))).await;
                deployment.nodes[at].revive();
            }
            Kind::Reset => deployment.proxies[at].reset_all(),
            Kind::Blackhole | Kind::Latency => {
                let (fault, lasting) = if kind == Kind::Blackhole {
                    (Fault::Blackhole, rng.u64(500..4000))
                } else {
                    (Fault::Latency(Duration::from_millis(rng.u64(20..300))), rng.u64(500..2000))
                };
                deployment.proxies[at].set(fault);
                tokio::time::sleep(Duration::from_millis(lasting)).await;
                deployment.proxies[at].set(Fault::Pass);
            }
            Kind::Redis => {
                let redis = deployment.redis.as_mut().expect("cluster mode");
                redis.stop();
                tokio::time::sleep(Duration::from_millis(rng.u64(100..1000))).await;
                redis.resume();
            }
        }
        if (cycle + 1) % 10 == 0 {
            println!("  {} faults injected, {:.0} s", cycle + 1, started.elapsed().as_secs_f64());
        }
    }

    // Healthy again: publishing stops, outboxes drain, streams catch up.
    let _ = phase_tx.send(Phase::Quiet);
    let settled = settle(&deployment, &clients, &rooms).await;
    let histories = read_histories(&deployment, &rooms).await?;
    for node in &deployment.nodes {
        duplicates += node.metric("tether_duplicates_suppressed_total").await;
    }
    let _ = phase_tx.send(Phase::Done);
    let mut resent = 0;
    let records: Vec<_> = clients.iter().map(|client| client.record.clone()).collect();
    for client in clients {
        resent += client.finish().await;
    }
    let records: Vec<_> = records.iter().map(|record| record.lock().expect("record")).collect();
    let borrowed: Vec<&crate::clients::Record> = records.iter().map(|record| &**record).collect();
    let mut violations = check::violations(&borrowed, &histories);
    if let Err(behind) = settled {
        violations.insert(0, behind);
    }

    let published: usize = borrowed.iter().map(|r| r.published.len()).sum();
    let acked: usize = borrowed.iter().map(|r| r.acked.len()).sum();
    let failed: usize = borrowed.iter().map(|r| r.failed.len()).sum();
    let welcomes: u32 = borrowed.iter().map(|r| r.welcomes).sum();
    let gaps: usize = borrowed.iter().map(|r| r.gaps_told).sum();
    let stored: usize = histories.values().map(Vec::len).sum();
    violations.extend(failure_rate(published, failed));
    let mut kinds: Vec<_> = faults.into_iter().collect();
    kinds.sort();
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "chaos: {} cycles, seed {}, {} clients, {} rooms, {}, {:.0} s",
        options.cycles,
        options.seed,
        options.clients,
        options.rooms,
        options.cluster.map_or("one node on SQLite".to_owned(), |n| format!("{n} nodes on Redis")),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(summary, "  faults: {kinds:?}");
    let _ = writeln!(
        summary,
        "  published {published}, acked {acked}, reported failed {failed} (expired unsent), stored {stored}"
    );
    let _ = writeln!(
        summary,
        "  re-sent {resent}, duplicates suppressed {duplicates:.0}, reconnects {}, gaps told {gaps}",
        welcomes as usize - borrowed.len().min(welcomes as usize)
    );
    print!("{summary}");
    if violations.is_empty() {
        println!("  every promise held");
        Ok(())
    } else {
        for violation in violations.iter().take(50) {
            eprintln!("  VIOLATION {violation}");
        }
        let cluster = options.cluster.map_or(String::new(), |n| format!(" --cluster {n}"));
        Err(format!(
            "{} violations; reproduce the fault schedule with `cargo xtask chaos --cycles {} --seed {} --clients {}{cluster}`",
            violations.len(),
            options.cycles,
            options.seed,
            options.clients
        ))
    }
}

/// What is wrong with how many publishes ended reported failed, if anything: every
/// message acked or reported failed is checked elsewhere, but a run where most expire
/// would keep that promise too.
fn failure_rate(published: usize, failed: usize) -> Option<String> {
    if published == 0 {
        return Some("nothing was published: the run proves nothing".into());
    }
    let share = failed as f64 / published as f64;
    (share > MAX_FAILED_SHARE).then(|| {
        format!(
            "{failed} of {published} publishes reported failed ({:.1} %, at most {:.0} % allowed)",
            share * 100.0,
            MAX_FAILED_SHARE * 100.0
        )
    })
}

fn pick(rng: &mut fastrand::Rng, cluster: bool) -> Kind {
    let roll = rng.u32(..100);
    match roll {
        _ if cluster && roll < 15 => Kind::Redis,
        0..35 => Kind::Kill,
        35..45 => Kind::Restart,
        45..65 => Kind::Reset,
        65..80 => Kind::Blackhole,
        _ => Kind::Latency,
    }
}

/// Waits until every client's outbox is settled (each message acked or reported) and
/// every subscriber has reached every room's head; `Err` names who did not in time.
///
/// The heads are read only once no client has anything outstanding: publishing has
/// stopped, so every message is then stored (or reported failed) and the heads are
/// final. Read earlier, a publish acked in between would move a head past what was
/// read, and a subscriber could be let go one message short of it.
async fn settle(deployment: &Deployment, clients: &[Checked], rooms: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut behind: Vec<String> = clients
            .iter()
            .filter_map(|client| {
                let record = client.record.lock().expect("record");
                let outstanding = record.outstanding();
                (outstanding > 0).then(|| format!("{} ({outstanding} unsettled)", record.name))
            })
            .collect();
        if behind.is_empty() {
            let mut heads = HashMap::new();
            for room in rooms {
                let answer = deployment.live_node().api(&format!("history?room={room}&limit=1")).await;
                // A room nobody published to has no history (404); a failed read is not "0".
                let head = answer.and_then(|a| a["head"].as_u64());
                heads.insert(room.as_str(), head.unwrap_or(u64::MAX));
            }
            behind = clients
                .iter()
                .filter_map(|client| {
                    let record = client.record.lock().expect("record");
                    let lagging: Vec<&str> = rooms
                        .iter()
                        .filter(|room| record.last_seen(room).unwrap_or(0) < heads[room.as_str()])
                        .map(String::as_str)
                        .collect();
                    (!lagging.is_empty()).then(|| format!("{} (behind in {lagging:?})", record.name))
                })
                .collect();
        }
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not settled 60 s after the last fault: {}", behind.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every room's whole history, through the server API.
async fn read_histories(
    deployment: &Deployment,
    rooms: &[String],
) -> Result<HashMap<String, History>, String> {
    let mut histories = HashMap::new();
    for room in rooms {
        let mut history = Vec::new();
        let mut after = 0;
        loop {
            let page = deployment
                .live_node()
                .api(&format!("history?room={room}&after={after}&limit=1000"))
                .await
                .ok_or_else(|| format!("reading the history of {room} failed"))?;
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            for message in &messages {
                let seq = message["seq"].as_u64().unwrap_or(0);
                history.push((seq, message["id"].as_str().unwrap_or_default().to_owned()));
                after = seq;
            }
            if page["next"].is_null() || messages.is_empty() {
                break;
            }
        }
        histories.insert(room.clone(), history);
    }
    Ok(histories)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_where_messages_expire_fails() {
        assert_eq!(failure_rate(103, 2), None);
        assert_eq!(failure_rate(771, 162), None, "the worst short run measured");
        assert!(failure_rate(100, 41).unwrap().contains("41 of 100 publishes reported failed (41.0 %"));
        assert!(failure_rate(0, 0).is_some());
    }
}
