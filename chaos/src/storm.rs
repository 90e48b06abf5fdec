//! The reconnect storm: thousands of clients, each in rooms, lose their server at once
//! (SIGKILL) and must all be welcomed, resumed and caught up within 30 s of its
//! restart, with their backoff's jitter spreading the load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tether_shared::ConnectionConfig;
use tokio::sync::watch;

use crate::clients::{Checked, Phase, Plan};
use crate::nodes::Deployment;

/// All must be back within this.
const DEADLINE: Duration = Duration::from_secs(30);

/// Runs a storm of `clients` over `rooms` rooms; `Err` when not everyone was back in time.
pub async fn run(clients: usize, rooms: usize) -> Result<(), String> {
    let mut deployment = Deployment::start(None, &["--max-members", "100000"]).await;
    let node_url = format!("ws://{}/ws", deployment.nodes[0].addr);
    let names: Vec<String> = (0..rooms).map(|i| format!("storm-{i}")).collect();
    let (phase_tx, phase) = watch::channel(Phase::Quiet);
    let started = Instant::now();
    let checked: Vec<Checked> = (0..clients)
        .map(|i| {
            let plan = Plan {
                name: format!("storm-{i}"),
                endpoints: vec![node_url.clone()],
                rooms: vec![names[i % rooms].clone(), names[(i * 7 + 3) % rooms].clone()],

                publish_every: None,
                // The default backoff: 500 ms doubling, with full jitter.
                connection: ConnectionConfig { join_history: 0, ..ConnectionConfig::default() },
            };
            Checked::start(plan, phase.clone(), i as u64)
        })
        .collect();
    let rooms_of = |index: usize| [names[index % rooms].clone(), names[(index * 7 + 3) % rooms].clone()];
    wait_until(&checked, Duration::from_secs(120), |record, index| {
        rooms_of(index).iter().all(|room| record.joined.contains(room))
    })
    .await
    .map_err(|behind| format!("the storm's clients did not all join: {behind} behind"))?;
    let node = &deployment.nodes[0];
    for room in &names {
        node.api_publish(room, json!({ "text": "before" })).await;
    }
    wait_until(&checked, Duration::from_secs(60), |record, index| {
        rooms_of(index).iter().all(|room| record.last_seen(room).is_some())
    })
    .await
    .map_err(|behind| format!("the storm's clients did not all receive a message: {behind} behind"))?;
    println!(
        "storm: {clients} clients in {rooms} rooms joined in {:.1} s; killing the server",
        started.elapsed().as_secs_f64()
    );

    // Peak memory, sampled while they come back.
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    deployment.nodes[0].kill();
    deployment.nodes[0].revive();
    let restarted = Instant::now();
    let pid = deployment.nodes[0].pid().expect("up");
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                let rss = crate::nodes::rss_of(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Something each room's members missed while away, and the head they must reach.
    // A publish or a read that fails is the storm's failure: a head taken as 0 would
    // count every client as caught up.
    let node = &deployment.nodes[0];
    let mut heads = std::collections::HashMap::new();
    for room in &names {
        if !node.api_publish(room, json!({ "text": "while you were away" })).await {
            return Err(format!("storm: publishing to {room} after the restart failed"));
        }
        let head = node.api(&format!("history?room={room}&limit=1")).await.and_then(|a| a["head"].as_u64());
        let head =
            head.ok_or_else(|| format!("storm: reading the head of {room} after the restart failed"))?;
        heads.insert(room.clone(), head);
    }
    let back = wait_until(&checked, DEADLINE, |record, index| {
        record.welcomes >= 2
            && rooms_of(index)
                .iter()
                .all(|room| record.last_seen(room).is_some_and(|seen| seen >= heads[room]))
    })
    .await;
    let all_back = restarted.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let reconnects: Vec<u32> = checked.iter().map(|c| c.record.lock().expect("record").welcomes).collect();
    let _ = phase_tx.send(Phase::Done);
    for client in checked {
        client.finish().await;
    }
    match back {
        Ok(()) => {
            println!(
                "storm: all {clients} welcomed, resumed and caught up {:.1} s after the restart; \
                 server peak RSS {:.1} MB",
                all_back.as_secs_f64(),
                peak.load(Ordering::Relaxed) as f64 / 1e6
            );
            Ok(())
        }
        Err(behind) => Err(format!(
            "storm: {behind} of {clients} clients not back within {} s (welcomes: max {:?})",
            DEADLINE.as_secs(),
            reconnects.iter().max()
        )),
    }
}

/// Waits until `done` holds for every client's record, checking as records change;
/// `Err` with how many are behind at the deadline.
async fn wait_until(
    clients: &[Checked],
    patience: Duration,
    done: impl Fn(&crate::clients::Record, usize) -> bool,
) -> Result<(), usize> {
    let deadline = Instant::now() + patience;
    loop {
        let behind = clients
            .iter()
            .enumerate()
            .filter(|(index, client)| !done(&client.record.lock().expect("record"), *index))
            .count();
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(behind);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
