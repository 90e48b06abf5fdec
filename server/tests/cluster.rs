//! Cluster mode: several nodes over one real `redis-server`, and every guarantee of one
//! node still true across them.

mod common;

use std::collections::{HashMap, HashSet};

use common::redis::Redis;
use common::*;
use serde_json::json;
use tether_shared::{ClientFrame, PROTOCOL_VERSION, ServerFrame, User};

/// A node of the cluster on `redis`, without publish limits.
async fn node(redis: &Redis) -> Running {
    let mut config = unthrottled();
    config.redis = Some(redis.url());
    server_with(config).await
}

async fn nodes(redis: &Redis, count: usize) -> Vec<Running> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(node(redis).await);
    }
    nodes
}

/// Says hello with the resume token of an earlier session: the same user, on any node.
async fn hello_again(addr: std::net::SocketAddr, resume_token: &str) -> (Client, User) {
    let mut client = connect(addr).await;
    let frame = ClientFrame::Hello {
        v: PROTOCOL_VERSION,
        token: None,
        name: None,
        resume_token: Some(resume_token.into()),
    };
    send(&mut client, &frame).await;
    match next_frame(&mut client).await {
        ServerFrame::Welcome { user, .. } => (client, user),
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn one_order_per_room_across_three_nodes() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 3).await;
    let mut subscribers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        subscribers.push(member(node.addr(), &format!("reader{i}"), "r").await);
    }
    const EACH: usize = 40;
    let mut publishers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut client = member(node.addr(), &format!("writer{i}"), "r").await;
        publishers.push(tokio::spawn(async move {
            for n in 0..EACH {
                let id = format!("w{i}-{n}");
                send(
                    &mut client,
                    &ClientFrame::Publish { id, room: "r".into(), body: json!({"n": n}), priority: 0 },
                )
                .await;
            }
            // Its own message first, then the ack, as on one node.
            let mut echoed = HashSet::new();
            let mut acked = 0;
            within("every ack", async {
                while acked < EACH {
                    match next_frame(&mut client).await {
                        ServerFrame::Message { id, .. } => drop(echoed.insert(id)),
                        ServerFrame::Ack { id, .. } => {
                            assert!(echoed.contains(&id), "the ack of {id} came before its message");
                            acked += 1;
                        }
                        _ => {}
                    }
                }
            })
            .await;
            client
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let mut seen_by_first: Option<Vec<(u64, String)>> = None;
    for subscriber in &mut subscribers {
        let mut got = Vec::new();
        while got.len() < 3 * EACH {
            let (seq, id, _) = next_message_in(subscriber, "r").await;
            got.push((seq, id));
        }
        let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=3 * EACH as u64).collect::<Vec<_>>(), "every seq once, in order");
        let ids: HashSet<&String> = got.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), 3 * EACH, "every message once");
        match &seen_by_first {
            None => seen_by_first = Some(got),
            Some(first) => assert_eq!(&got, first, "every node delivers the same order"),
        }
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_retry_on_another_node_gets_the_original_ack() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let mut watcher = member(nodes[1].addr(), "Watcher", "r").await;
    let (mut ada, _, token) = hello(nodes[0].addr(), "Ada").await;
    join(&mut ada, "r", None).await;
    let (seq, ts) = publish(&mut ada, "r", "m1", json!("once")).await;
    drop(ada);

    let (mut again, user) = hello_again(nodes[1].addr(), &token).await;
    assert_eq!(user.name, "Ada");
    join(&mut again, "r", None).await;
    assert_eq!(publish(&mut again, "r", "m1", json!("once")).await, (seq, ts), "the original ack");
    assert_eq!(publish(&mut again, "r", "m2", json!("next")).await.0, seq + 1);

    assert_eq!(next_message_in(&mut watcher, "r").await.1, "m1");
    assert_eq!(next_message_in(&mut watcher, "r").await.1, "m2", "m1 was not delivered twice");
    // Any id travels between nodes, also one that could pass for a line break.
    publish(&mut again, "r", "line\nbreak", json!("odd")).await;
    assert_eq!(next_message_in(&mut watcher, "r").await.1, "line\nbreak");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_from_its_cursor() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let mut writer = member(nodes[0].addr(), "Writer", "r").await;
    for n in 1..=3 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }
    let mut reader = member(nodes[0].addr(), "Reader", "r").await;
    send(&mut reader, &ClientFrame::Join { room: "r".into(), since: Some(0), history: None }).await;
    let mut upto = 0;
    while upto < 3 {
        upto = next_message_in(&mut reader, "r").await.0;
    }
    drop(reader);
    for n in 4..=6 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }

    let (mut reader, _, _) = hello(nodes[1].addr(), "Reader").await;
    send(&mut reader, &ClientFrame::Join { room: "r".into(), since: Some(3), history: None }).await;
    let frames = frames_until(&mut reader, |f| matches!(f, ServerFrame::Replayed { .. })).await;
    assert!(matches!(frames.last(), Some(ServerFrame::Replayed { to: 6, complete: true, .. })), "{frames:?}");
    let replayed: Vec<u64> = frames
        .iter()
        .filter_map(|f| if let ServerFrame::Message { seq, .. } = f { Some(*seq) } else { None })
        .collect();
    assert_eq!(replayed, vec![4, 5, 6], "exactly what was missed, from Redis");
    publish(&mut writer, "r", "m7", json!(7)).await;
    assert_eq!(next_message_in(&mut reader, "r").await.0, 7, "then live, from the other node");
    for node in nodes {
        node.stop().await;
    }
}

/// Reads presence frames until the names present (by user id) satisfy `wanted`.
async fn presence_until(
    client: &mut Client,
    room: &str,
    mut present: HashMap<String, String>,
    wanted: impl Fn(&HashSet<&str>) -> bool,
) -> HashMap<String, String> {
    // Long enough for a dead node's members to go (its heartbeat's life), which a caller
    // that waits for that bounds more tightly itself.
    within_for(2 * PATIENCE, "the presence awaited", async {
        while !wanted(&present.values().map(String::as_str).collect()) {
            if let ServerFrame::Presence { room: r, joined, left, .. } = next_frame(client).await
                && r == room
            {
                for user in joined {
                    present.insert(user.id, user.name);
                }
                for id in left {
                    present.remove(&id);
                }
            }
        }
        present
    })
    .await
}

#[tokio::test]
async fn presence_spans_nodes_and_two_tabs_are_one_member() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let (mut ada, ada_user, _) = hello(nodes[0].addr(), "Ada").await;
    let (_, members) = join(&mut ada, "r", None).await;
    assert_eq!(members.len(), 1);

    let (mut bob, bob_user, bob_token) = hello(nodes[1].addr(), "Bob").await;
    let (_, members) = join(&mut bob, "r", None).await;
    let names: HashSet<String> = members.into_iter().map(|user| user.name).collect();
    assert_eq!(names, HashSet::from(["Ada".to_owned(), "Bob".to_owned()]), "the snapshot lists both nodes");

    let present = HashMap::from([(ada_user.id.clone(), ada_user.name.clone())]);
    presence_until(&mut ada, "r", present, |p| p.contains("Bob")).await;
    // Bob's second tab, on Ada's node: still one Bob.
    let (mut bob_again, _) = hello_again(nodes[0].addr(), &bob_token).await;
    let (members, count) = joined_members(&mut bob_again, "r").await;
    assert_eq!((members.len(), count), (2, 2), "two users, not three members: {members:?}");

    // Bob's first tab closes: he is still here through the second, so Ada hears nothing.
    // Presence crosses nodes once a tick, so a ping is no marker for it: Cid's arrival on
    // Bob's node is, once that node has let the tab go. His join is answered once the
    // other nodes can see it, with (or after) anything the closing tab set off.
    drop(bob);
    let api = nodes[1].api();
    eventually("Bob's first tab let go", || async { api.stats().await.connections == 0 }).await;
    let (mut cid, cid_user, _) = hello(nodes[1].addr(), "Cid").await;
    join(&mut cid, "r", None).await;
    let with_cid = |frame: &ServerFrame| matches!(frame, ServerFrame::Presence { joined, .. } if joined.iter().any(|u| u.id == cid_user.id));
    let heard = frames_until(&mut ada, with_cid).await;
    for frame in &heard {
        if let ServerFrame::Presence { left, count, .. } = frame {
            let expected = if with_cid(frame) { 3 } else { 2 };
            assert!(
                left.is_empty() && *count == expected,
                "Ada heard of one of Bob's tabs closing: {heard:?}"
            );
        }
    }

    // His second tab closes too: now he is gone, and Ada hears it.
    drop(bob_again);
    let left = until(&mut ada, |frame| match frame {
        ServerFrame::Presence { left, count, .. } if !left.is_empty() => Some((left, count)),
        _ => None,
    })
    .await;
    assert_eq!(left, (vec![bob_user.id], 2), "Ada and Cid are left");
    for node in nodes {
        node.stop().await;
    }
}

/// Joins `room` and returns the `joined` frame's members and count.
async fn joined_members(client: &mut Client, room: &str) -> (Vec<User>, usize) {
    send(client, &ClientFrame::Join { room: room.into(), since: None, history: None }).await;
    until(client, |frame| match frame {
        ServerFrame::Joined { members, count, .. } => Some((members, count)),
        _ => None,
    })
    .await
}

/// A blocking connection to the test's Redis, for looking behind the nodes' backs.
fn redis_connection(redis: &Redis) -> ::redis::Connection {
    ::redis::Client::open(redis.url()).unwrap().get_connection().unwrap()
}

/// The value of a counter in a node's `/metrics`.
async fn counter(node: &Running, name: &str) -> u64 {
    let (status, _, body) = http_get(node.addr(), "/metrics").await;
    assert_eq!(status, 200);
    let line = body.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{name} in {body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_node_that_misses_live_messages_fills_the_gap_before_going_on() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let mut reader = member(nodes[0].addr(), "Reader", "r").await;
    let mut writer = member(nodes[1].addr(), "Writer", "r").await;
    publish(&mut writer, "r", "m1", json!(1)).await;
    assert_eq!(next_message_in(&mut reader, "r").await.0, 1);

    // A message stored without its pub/sub announcement, as when a node's subscription
    // was down at the moment it was published.
    let mut behind = redis_connection(&redis);
    let seq: u64 = ::redis::cmd("INCR").arg("tether:{r}:seq").query(&mut behind).unwrap();
    let user = r##"{"id":"u-lost","name":"Lost","color":"#123456"}"##;
    let _: String = ::redis::cmd("XADD")
        .arg("tether:{r}:log")
        .arg(format!("{seq}-0"))
        .arg(&["i", "lost", "u", user, "b", "\"unannounced\"", "t", "1"])
        .query(&mut behind)
        .unwrap();
    publish(&mut writer, "r", "m3", json!(3)).await;
    let (seq2, id2, _) = next_message_in(&mut reader, "r").await;
    assert_eq!((seq2, id2.as_str()), (2, "lost"), "the missed message, filled from history");
    assert_eq!(next_message_in(&mut reader, "r").await.0, 3, "then the one that revealed the gap");
    assert!(counter(&nodes[0], "tether_backplane_gap_fills_total").await >= 1);

    // The subscription itself dropped: the node reconnects by itself, and nothing
    // published meanwhile goes missing.
    let _: () = ::redis::cmd("CLIENT").arg(&["KILL", "TYPE", "pubsub"]).query(&mut behind).unwrap();
    for n in 4..=10 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }
    for expected in 4..=10 {
        assert_eq!(next_message_in(&mut reader, "r").await.0, expected, "no hole, no duplicate");
    }
    assert!(counter(&nodes[0], "tether_backplane_reconnects_total").await >= 1);

    // A Redis that lost the publish function (as with its data) gets it loaded again.
    let _: () = ::redis::cmd("FUNCTION").arg("FLUSH").query(&mut behind).unwrap();
    assert_eq!(publish(&mut writer, "r", "m11", json!(11)).await.0, 11);
    assert_eq!(next_message_in(&mut reader, "r").await.0, 11);
    for node in nodes {
        node.stop().await;
    }
}

/// Publishes until acked, retrying on `unavailable` or `unconfirmed` the way a client's
/// outbox does.
async fn publish_retrying(client: &mut Client, room: &str, id: &str, body: serde_json::Value) -> u64 {
    for _ in 0..100 {
        send(
            client,
            &ClientFrame::Publish { id: id.into(), room: room.into(), body: body.clone(), priority: 0 },
        )
        .await;
        let answer = until(client, |frame| match frame {
            ServerFrame::Ack { id: acked, seq, .. } if acked == id => Some(Some(seq)),
            ServerFrame::Reject { id: rejected, code, .. } if rejected == id => {
                assert!(code.retryable(), "{code:?}");
                Some(None)
            }
            _ => None,
        })
        .await;
        match answer {
            Some(seq) => return seq,
            None => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    panic!("{id} was never acked");
}

#[tokio::test]
async fn a_redis_outage_rejects_publishes_retryably_and_loses_nothing_acked() {
    let mut redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let mut reader = member(nodes[0].addr(), "Reader", "r").await;
    let mut writer = member(nodes[1].addr(), "Writer", "r").await;
    for n in 1..=3 {
        publish(&mut writer, "r", &format!("m{n}"), json!(n)).await;
    }

    redis.stop();
    send(
        &mut writer,
        &ClientFrame::Publish { id: "down".into(), room: "r".into(), body: json!(0), priority: 0 },
    )
    .await;
    let code = until(&mut writer, |frame| match frame {
        ServerFrame::Reject { id, code, .. } if id == "down" => Some(code),
        ServerFrame::Ack { id, .. } if id == "down" => panic!("acked while Redis is down"),
        _ => None,
    })
    .await;
    // The node may not have seen the connection die before writing to it: then it
    // cannot know whether Redis ran the publish, and says so.
    use tether_shared::RejectCode::{Unavailable, Unconfirmed};
    assert!(matches!(code, Unavailable | Unconfirmed), "{code:?}");
    assert!(code.retryable());
    let (status, _, body) = http_get(nodes[0].addr(), "/readyz").await;
    assert_eq!(status, 503, "{body}");

    redis.resume();
    let seq = publish_retrying(&mut writer, "r", "down", json!(0)).await;
    assert_eq!(seq, 4, "the acked messages survived the restart");
    let (status, _, _) = http_get(nodes[0].addr(), "/readyz").await;
    assert_eq!(status, 200);
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        seqs.push(next_message_in(&mut reader, "r").await.0);
    }
    assert_eq!(seqs, vec![1, 2, 3, 4], "live delivery came back across nodes, with no gap");
    for node in nodes {
        node.stop().await;
    }
}

/// A node process, killed if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_killed_node_leaves_no_ghosts() {
    let redis = Redis::start();
    let mut config = unthrottled();
    config.redis = Some(redis.url());
    // Ada only listens while she waits for the ghost to go.
    config.idle_timeout = std::time::Duration::from_secs(60);
    let survivor = server_with(config).await;
    let (mut ada, ada_user, _) = hello(survivor.addr(), "Ada").await;
    join(&mut ada, "r", None).await;

    let mut doomed = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_tether-server"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn", "--redis", &redis.url()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn a node"),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(doomed.0.stdout.take().unwrap()), &mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("Tether is running at http://")
        .expect(&line)
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut ghost = member(addr, "Ghost", "r").await;
    send(&mut ghost, &ClientFrame::Typing { room: "r".into(), active: true }).await;
    // Presence and typing travel separately (presence waits for its tick), in any order.
    let mut present = HashMap::from([(ada_user.id.clone(), ada_user.name.clone())]);
    let mut typist = None;
    within("the ghost's presence and typing", async {
        while typist.is_none() || !present.values().any(|name| name == "Ghost") {
            match next_frame(&mut ada).await {
                ServerFrame::Presence { joined, left, .. } => {
                    present.extend(joined.into_iter().map(|user| (user.id, user.name)));
                    left.iter().for_each(|id| drop(present.remove(id)));
                }
                ServerFrame::Typing { user, active: true, .. } => typist = Some(user.name),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(typist.as_deref(), Some("Ghost"), "typing crosses nodes");

    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let killed = std::time::Instant::now();
    let present = presence_until(&mut ada, "r", present, |p| !p.contains("Ghost")).await;
    let gone_after = killed.elapsed();
    eprintln!("a SIGKILLed node's member left presence after {gone_after:?}");
    assert!(gone_after < std::time::Duration::from_secs(10), "gone after {gone_after:?}");
    assert_eq!(present, HashMap::from([(ada_user.id, ada_user.name)]));
    survivor.stop().await;
}

#[tokio::test]
async fn history_older_than_its_age_is_trimmed() {
    let redis = Redis::start();
    let mut config = unthrottled();
    config.redis = Some(redis.url());
    config.history_age = std::time::Duration::ZERO;
    let node = server_with(config).await;
    let mut writer = member(node.addr(), "Writer", "r").await;
    // The trim runs beside the publishes, once per 64 of them, and keeps what is not
    // older than its own moment: the last messages before it may share its millisecond.
    // So two rounds: the second round's trim comes after every message of the first.
    for round in ["m", "n"] {
        for n in 1..=64 {
            publish(&mut writer, "r", &format!("{round}{n}"), json!(n)).await;
        }
    }
    // Nothing announces the trim: watch the log until the first round is gone.
    let mut behind = redis_connection(&redis);
    let started = std::time::Instant::now();
    loop {
        let left: u64 = ::redis::cmd("XLEN").arg("tether:{r}:log").query(&mut behind).unwrap();
        if left <= 64 {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{left} messages held: the first round outlived the history age"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    send(&mut writer, &ClientFrame::Join { room: "r".into(), since: Some(0), history: None }).await;
    let complete = until(&mut writer, |frame| match frame {
        ServerFrame::Replayed { complete, .. } => Some(complete),
        _ => None,
    })
    .await;
    assert!(!complete, "a replay from 0 says that history was trimmed");
    node.stop().await;
}

#[tokio::test]
async fn a_node_that_stops_takes_its_members_with_it_at_once() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let (mut ada, ada_user, _) = hello(nodes[0].addr(), "Ada").await;
    join(&mut ada, "r", None).await;
    let mut leaving = nodes.into_iter();
    let (staying, stopping) = (leaving.next().unwrap(), leaving.next().unwrap());
    let _bob = member(stopping.addr(), "Bob", "r").await;
    let present = HashMap::from([(ada_user.id.clone(), ada_user.name.clone())]);
    let present = presence_until(&mut ada, "r", present, |p| p.contains("Bob")).await;

    stopping.stop().await;
    let fields: Vec<String> =
        ::redis::cmd("HKEYS").arg("tether:{r}:present").query(&mut redis_connection(&redis)).unwrap();
    assert_eq!(fields.len(), 1, "only Ada's node is left in Redis: {fields:?}");
    let present = presence_until(&mut ada, "r", present, |p| !p.contains("Bob")).await;
    assert_eq!(present, HashMap::from([(ada_user.id, ada_user.name)]));
    staying.stop().await;
}

#[tokio::test]
async fn a_node_declared_dead_by_mistake_announces_its_members_again() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let (mut bob, bob_user, _) = hello(nodes[1].addr(), "Bob").await;
    join(&mut bob, "r", None).await;

    // Bob's node stalls past its heartbeat's life, and another node cleans up after it.
    let mut behind = redis_connection(&redis);
    let present_fields = |behind: &mut ::redis::Connection| -> Vec<String> {
        ::redis::cmd("HKEYS").arg("tether:{r}:present").query(behind).unwrap()
    };
    let field =
        present_fields(&mut behind).into_iter().find(|f| f.ends_with(&format!("/{}", bob_user.id))).unwrap();
    let bobs_node = field.split_once('/').unwrap().0.to_owned();
    let _: () = ::redis::cmd("DEL").arg(format!("tether:node:{bobs_node}")).query(&mut behind).unwrap();
    let _: () = ::redis::cmd("HDEL").arg("tether:{r}:present").arg(&field).query(&mut behind).unwrap();

    // Its heartbeat finds its own key gone and announces Bob again; nothing tells the
    // test when, so it looks.
    let started = std::time::Instant::now();
    while !present_fields(&mut behind).contains(&field) {
        assert!(started.elapsed() < PATIENCE, "Bob was never announced again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (ada, _, _) = hello(nodes[0].addr(), "Ada").await;
    let mut ada = ada;
    let (_, members) = join(&mut ada, "r", None).await;
    assert!(members.iter().any(|user| user.id == bob_user.id), "a newcomer on another node sees Bob");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn the_server_api_on_one_node_acts_on_the_whole_cluster() {
    use tether_server::api::calls::PublishRequest;
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let (a, b) = (nodes[0].api(), &nodes[1]);
    let (mut bob, bob_user, _) = hello(b.addr(), "Bob").await;
    join(&mut bob, "ops", None).await;

    // A publish through node A's API reaches Bob on node B, numbered in the room.
    let request = PublishRequest {
        room: "ops".into(),
        body: json!({"text": "deploy done"}),
        id: Some("d1".into()),
        from: None,
    };
    let published = a.publish(request.clone()).await.expect("stored");
    let (seq, id, body) = next_message_in(&mut bob, "ops").await;
    assert_eq!((seq, id.as_str(), body), (published.seq, "d1", json!({"text": "deploy done"})));
    assert_eq!(a.publish(request).await.unwrap().seq, published.seq, "deduplicated across the cluster too");

    // Node A has no member of the room, yet sees who is there and which rooms are busy.
    let presence = a.presence("ops", None, None).await.expect("presence from Redis");
    assert_eq!(presence.members.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), [bob_user.id.as_str()]);
    let rooms = a.rooms().await.expect("rooms from Redis");
    assert!(rooms.iter().any(|r| r.room == "ops" && r.members == 1), "{rooms:?}");
    assert_eq!(a.history("ops", None, None).await.unwrap().head, published.seq);

    // Disconnecting through node A closes Bob's connection on node B.
    let done = a.disconnect(&bob_user.id, false);
    assert!(done.cluster && done.connections == 0, "{done:?}");
    assert_eq!(expect_close(&mut bob).await.0, tether_shared::close::REMOVED);

    // Each node's sample reaches the other's stats (samples are taken each second).
    let started = std::time::Instant::now();
    loop {
        let stats = a.stats().await;
        if stats.nodes.len() == 2 {
            assert!(stats.node.is_some_and(|me| stats.nodes.iter().any(|n| n.node == me)));
            assert!(stats.nodes.iter().all(|n| n.sample["connections"].is_i64()));
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "both nodes' samples: {:?}",
            stats.nodes
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn volatile_state_crosses_nodes() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 2).await;
    let mut alice = member(nodes[0].addr(), "Alice", "board").await;
    let mut bob = member(nodes[1].addr(), "Bob", "board").await;
    let frame = ClientFrame::State { room: "board".into(), key: "cursor".into(), value: json!({"x": 3}) };
    send(&mut alice, &frame).await;
    let (from, value) = until(&mut bob, |frame| match frame {
        ServerFrame::State { from, value, .. } => Some((from, value)),
        _ => None,
    })
    .await;
    assert_eq!((from.name.as_str(), value), ("Alice", json!({"x": 3})));
}

/// How a publish was answered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Acked(u64),
    Rejected(tether_shared::RejectCode),
}

/// Every message id in room `r`'s history in Redis, with how many times each is there.
fn ids_in_history(redis: &Redis) -> HashMap<String, usize> {
    let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
        .arg("tether:{r}:log")
        .arg("-")
        .arg("+")
        .query(&mut redis_connection(redis))
        .unwrap();
    let mut ids = HashMap::new();
    for (_, fields) in entries {
        let id = fields.into_iter().find(|(name, _)| name == "i").expect("an id field").1;
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Redis killed with publishes in flight, and back from its append-only file: a publish
/// rejected `unavailable` was not stored; one rejected `unconfirmed` may have been (its
/// pipeline reached Redis, the replies were lost), and sending it again with the same id
/// settles it, each message in history exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_mid_publish_is_answered_only_with_what_is_known() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    const WRITERS: usize = 4;
    const EACH: usize = 300;
    let mut redis = Redis::start();
    let node = node(&redis).await;
    let addr = node.addr();
    let first_ack = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = member(addr, &format!("writer{w}"), "r").await;
        let first_ack = first_ack.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = client.split();
            let sending = tokio::spawn(async move {
                for n in 0..EACH {
                    let publish = ClientFrame::Publish {
                        id: format!("w{w}-{n}"),
                        room: "r".into(),
                        body: json!(n),
                        priority: 0,
                    };
                    sink.feed(Message::text(publish.encode())).await.unwrap();
                }
                sink.flush().await.unwrap();
                sink
            });
            let mut answers = HashMap::new();
            while answers.len() < EACH {
                let message = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
                    .await
                    .expect("every publish is answered")
                    .expect("the socket stays open")
                    .unwrap();
                let Message::Text(text) = message else { continue };
                match ServerFrame::decode(&text).unwrap() {
                    ServerFrame::Ack { id, seq, .. } => {
                        first_ack.notify_one();
                        answers.insert(id, Answer::Acked(seq));
                    }
                    ServerFrame::Reject { id, code, .. } => {
                        answers.insert(id, Answer::Rejected(code));
                    }
                    _ => {}
                }
            }
            let sink = sending.await.unwrap();
            (sink.reunite(stream).unwrap(), answers)
        }));
    }
    // Killed once publishes are flowing, with more in flight; back at once.
    tokio::time::timeout(PATIENCE, first_ack.notified()).await.expect("publishes are acked");
    redis.stop();
    redis.resume();

    let mut clients = Vec::new();
    let mut answers = HashMap::new();
    for task in tasks {
        let (client, answered) = task.await.unwrap();
        clients.push(client);
        answers.extend(answered);
    }
    let count = |wanted: fn(&Answer) -> bool| answers.values().filter(|a| wanted(a)).count();
    let (acked, unavailable, unconfirmed) = (
        count(|a| matches!(a, Answer::Acked(_))),
        count(|a| *a == Answer::Rejected(tether_shared::RejectCode::Unavailable)),
        count(|a| *a == Answer::Rejected(tether_shared::RejectCode::Unconfirmed)),
    );
    println!("{acked} acked, {unavailable} unavailable, {unconfirmed} unconfirmed");
    assert_eq!(acked + unavailable + unconfirmed, WRITERS * EACH, "only these answers: {answers:?}");
    assert!(unavailable + unconfirmed > 0, "the crash caught no publish in flight");

    let history = ids_in_history(&redis);
    let stored_unconfirmed = answers
        .iter()
        .filter(|(id, a)| {
            **a == Answer::Rejected(tether_shared::RejectCode::Unconfirmed) && history.contains_key(*id)
        })
        .count();
    println!("{stored_unconfirmed} of the {unconfirmed} unconfirmed had been stored");
    for (id, answer) in &answers {
        match answer {
            Answer::Acked(_) => assert_eq!(history.get(id), Some(&1), "{id} was acked"),
            Answer::Rejected(tether_shared::RejectCode::Unavailable) => {
                assert_eq!(history.get(id), None, "{id} was rejected `unavailable`, yet it was stored")
            }
            _ => {}
        }
    }
    // Each `unconfirmed` one, sent again with its id: acked once, stored once.
    for (id, answer) in &answers {
        if *answer == Answer::Rejected(tether_shared::RejectCode::Unconfirmed) {
            let writer: usize = id[1..id.find('-').unwrap()].parse().unwrap();
            let n: u64 = id[id.find('-').unwrap() + 1..].parse().unwrap();
            let seq = publish_retrying(&mut clients[writer], "r", id, json!(n)).await;
            assert!(seq > 0);
        }
    }
    let history = ids_in_history(&redis);
    for (id, answer) in &answers {
        if *answer == Answer::Rejected(tether_shared::RejectCode::Unconfirmed) {
            assert_eq!(history.get(id), Some(&1), "{id}, sent again with its id, is stored once");
        }
    }
    node.stop().await;
}

/// A TCP relay in front of Redis that loses Redis's answer to a publish: once armed,
/// a connection that carries a publish (`FCALL tether_publish`) up to Redis is cut as
/// soon as Redis answers, the answer swallowed. Redis has run the publish; the node
/// sees only a connection that died with its write in flight, as when Redis is killed
/// between storing a batch and the node reading the replies.
struct AnswerLosingRelay {
    addr: std::net::SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AnswerLosingRelay {
    /// The relay runs on a thread and runtime of its own: the node reads history with
    /// blocking calls, which must not stop the relay they go through.
    fn start(redis: &Redis) -> AnswerLosingRelay {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let target = redis.url().trim_start_matches("redis://").to_owned();
        let armed = std::sync::Arc::new(AtomicBool::new(false));
        let armed_for_relay = armed.clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((node, _)) = listener.accept().await {
                    let Ok(redis) = tokio::net::TcpStream::connect(&target).await else { continue };
                    let (mut node_read, mut node_write) = node.into_split();
                    let (mut redis_read, mut redis_write) = redis.into_split();
                    let carried_publish = std::sync::Arc::new(AtomicBool::new(false));
                    let (armed, carried) = (armed_for_relay.clone(), carried_publish.clone());
                    tokio::spawn(async move {
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = node_read.read(&mut buffer).await {
                            let chunk = &buffer[..n];
                            if armed.load(Ordering::SeqCst)
                                && chunk.windows(14).any(|w| w == b"tether_publish")
                            {
                                carried.store(true, Ordering::SeqCst);
                            }
                            if redis_write.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                    });
                    tokio::spawn(async move {
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = redis_read.read(&mut buffer).await {
                            if carried_publish.load(Ordering::SeqCst) {
                                // Redis has answered the publish: lose the answer, cut the node off.
                                return;
                            }
                            if node_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            })
        });
        AnswerLosingRelay { addr, armed }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn arm(&self, armed: bool) {
        self.armed.store(armed, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A publish whose answer from Redis was lost after Redis stored it is not rejected as
/// `unavailable` (which says nothing was stored) but `unconfirmed`; sent again with the
/// same id, it gets its original seq, and history holds it once.
#[tokio::test]
async fn a_publish_whose_answer_redis_lost_is_unconfirmed_not_unavailable() {
    let redis = Redis::start();
    let relay = AnswerLosingRelay::start(&redis);
    let mut config = unthrottled();
    config.redis = Some(relay.url());
    config.api_key = Some("key".into());
    let node = server_with(config).await;
    let mut writer = member(node.addr(), "Writer", "r").await;
    assert_eq!(publish(&mut writer, "r", "before", json!(1)).await.0, 1);

    relay.arm(true);
    send(
        &mut writer,
        &ClientFrame::Publish { id: "cut".into(), room: "r".into(), body: json!(2), priority: 0 },
    )
    .await;
    let code = until(&mut writer, |frame| match frame {
        ServerFrame::Reject { id, code, .. } if id == "cut" => Some(code),
        ServerFrame::Ack { id, .. } if id == "cut" => panic!("acked, though Redis's answer was lost"),
        _ => None,
    })
    .await;
    relay.arm(false);
    // Redis did store it: `unavailable` would have been a lie.
    assert_eq!(ids_in_history(&redis).get("cut"), Some(&1), "Redis ran the publish");
    assert_eq!(code, tether_shared::RejectCode::Unconfirmed);
    assert_eq!(publish_retrying(&mut writer, "r", "cut", json!(2)).await, 2, "its original seq");
    assert_eq!(ids_in_history(&redis).get("cut"), Some(&1), "stored once");

    // The server API says the same, with the id it made, to publish again under.
    let node_addr = node.addr();
    let api_publish = |body: serde_json::Value| async move {
        let headers = [("Authorization", "Bearer key")];
        let (status, _, answer) =
            http_with(node_addr, "POST", "/api/v1/publish", &headers, &body.to_string()).await;
        (status, serde_json::from_str::<serde_json::Value>(&answer).unwrap())
    };
    relay.arm(true);
    let (status, answer) = api_publish(json!({"room": "r", "body": 3})).await;
    relay.arm(false);
    assert_eq!((status, answer["error"].as_str()), (503, Some("unconfirmed")), "{answer}");
    let id = answer["id"].as_str().expect("the id to publish again under").to_owned();
    assert_eq!(ids_in_history(&redis).get(&id), Some(&1), "Redis ran the publish");
    let mut again = None;
    for _ in 0..100 {
        let (status, answer) = api_publish(json!({"room": "r", "body": 3, "id": id})).await;
        if status == 200 {
            again = Some(answer);
            break;
        }
        assert!(matches!(answer["error"].as_str(), Some("unavailable" | "unconfirmed")), "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let again = again.expect("published again once Redis answers");
    assert_eq!((again["id"].as_str(), again["seq"].as_u64()), (Some(id.as_str()), Some(3)), "{again}");
    assert_eq!(ids_in_history(&redis).get(&id), Some(&1), "stored once");
    node.stop().await;
}
