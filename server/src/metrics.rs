//! Prometheus metrics, served as text at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label holding a stable code (error, rejection, close).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code as it appears on the wire (`rate_limited`, `4001`, …).
    pub code: String,
}

/// A label holding a resume outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `complete` or `incomplete`.
    pub outcome: String,
}

/// Every metric the server keeps. Cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Rooms with members (set when scraped).
    pub rooms: Gauge,
    /// Hellos answered with a welcome: every connect and reconnect, so a client that
    /// stays connected adds one however long it stays.
    pub welcomes: Counter,
    /// Tokens renewed in place with `refresh`.
    pub token_refreshes: Counter,
    /// Frames received from clients.
    pub frames_in: Counter,
    /// Frames queued to clients.
    pub frames_out: Counter,
    /// Publishes received.
    pub publishes: Counter,
    /// Messages stored and acked.
    pub acks: Counter<u64, AtomicU64>,
    /// Re-sent publishes answered with their original ack.
    pub duplicates: Counter,
    /// Publishes rejected, by code.
    pub rejections: Family<CodeLabel, Counter>,
    /// Error frames sent, by code.
    pub errors: Family<CodeLabel, Counter>,
    /// Frames refused by a rate limit.
    pub rate_limited: Counter,
    /// Connections closed because their send queue overflowed.
    pub slow_consumers: Counter,
    /// Replays after a join with `since`, by outcome.
    pub resumes: Family<OutcomeLabel, Counter>,
    /// Connections refused or closed at the door, by close code.
    pub refused: Family<CodeLabel, Counter>,
    /// Seconds per store commit (one batch).
    pub store_seconds: Histogram,
    /// Publishes remembered for dedupe (about 80 bytes each).
    pub dedupe_entries: Gauge,
    /// Bytes of history held (single node), as `--history-bytes` counts them.
    pub history_bytes: Gauge,
    /// Bytes waiting in every client's send queue together, which `--queued-bytes`
    /// bounds.
    pub queued_bytes: Gauge,
    /// Tasks alive in the server's runtime, sampled every second: a leak shows here.
    pub tasks: Gauge,
    /// Bytes of history dropped to stay within `--history-bytes`.
    pub history_shrunk_bytes: Counter,
    /// Joins refused because their user (or address) opened too many new rooms.
    pub room_creations_refused: Counter,
    /// Cluster mode: seconds per round trip of a publish pipeline to Redis.
    pub backplane_seconds: Histogram,
    /// Cluster mode: times the backplane's pub/sub connection was re-established.
    pub backplane_reconnects: Counter,
    /// Cluster mode: gaps in a room's live stream filled from history.
    pub backplane_gap_fills: Counter,
    /// Cluster mode: pub/sub messages received from Redis.
    pub backplane_messages: Counter,
    /// Commit times (store, or Redis pipeline in cluster mode) since the stats sampler
    /// last took them, in seconds: the dashboard's p50/p99 per second.
    recent_commits: std::sync::Mutex<Vec<f64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let metrics = Metrics {
            connections: Gauge::default(),
            rooms: Gauge::default(),
            welcomes: Counter::default(),
            token_refreshes: Counter::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            publishes: Counter::default(),
            acks: Counter::default(),
            duplicates: Counter::default(),
            rejections: Family::default(),
            errors: Family::default(),
            rate_limited: Counter::default(),
            slow_consumers: Counter::default(),
            resumes: Family::default(),
            refused: Family::default(),
            store_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            dedupe_entries: Gauge::default(),
            history_bytes: Gauge::default(),
            queued_bytes: Gauge::default(),
            tasks: Gauge::default(),
            history_shrunk_bytes: Counter::default(),
            room_creations_refused: Counter::default(),
            backplane_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            backplane_reconnects: Counter::default(),
            backplane_gap_fills: Counter::default(),
            backplane_messages: Counter::default(),
            recent_commits: Default::default(),
            registry: Registry::default(),
        };
        let counters = [
            ("welcomes", "Hellos answered with a welcome (connects and reconnects)", &metrics.welcomes),
            ("token_refreshes", "Tokens renewed in place with refresh", &metrics.token_refreshes),
            ("frames_in", "Frames received from clients", &metrics.frames_in),
            ("frames_out", "Frames queued to clients", &metrics.frames_out),
            ("publishes", "Publishes received", &metrics.publishes),
            ("acks", "Messages stored and acknowledged", &metrics.acks),
            (
                "duplicates_suppressed",
                "Re-sent publishes answered with the original ack",
                &metrics.duplicates,
            ),
            ("rate_limited", "Frames refused by a rate limit", &metrics.rate_limited),
            ("slow_consumer_drops", "Connections closed for a full send queue", &metrics.slow_consumers),
            (
                "history_shrunk_bytes",
                "Bytes of history dropped to stay within --history-bytes",
                &metrics.history_shrunk_bytes,
            ),
            (
                "room_creations_refused",
                "Joins refused for opening too many new rooms (--room-creations)",
                &metrics.room_creations_refused,
            ),
            (
                "backplane_reconnects",
                "Cluster mode: pub/sub connections to Redis re-established",
                &metrics.backplane_reconnects,
            ),
            (
                "backplane_gap_fills",
                "Cluster mode: gaps in a room's live stream filled from history",
                &metrics.backplane_gap_fills,
            ),
            (
                "backplane_messages",
                "Cluster mode: pub/sub messages received from Redis",
                &metrics.backplane_messages,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let gauges = [
            ("connections", "Open WebSocket connections", &metrics.connections),
            ("rooms", "Rooms with members", &metrics.rooms),
            ("dedupe_entries", "Publishes remembered for dedupe within the window", &metrics.dedupe_entries),
            ("history_bytes", "Bytes of history held (single node)", &metrics.history_bytes),
            ("queued_bytes", "Bytes waiting in all send queues together", &metrics.queued_bytes),
            ("tasks", "Tasks alive in the server's runtime (sampled each second)", &metrics.tasks),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        let by_code = [
            ("rejections", "Publishes rejected, by code", &metrics.rejections),
            ("errors", "Error frames sent, by code", &metrics.errors),
            (
                "refused_connections",
                "Connections refused or closed at the door, by close code",
                &metrics.refused,
            ),
        ];
        for (name, help, family) in by_code {
            registry.register(name, help, family.clone());
        }
        registry.register("resumes", "Replays after a join with since, by outcome", metrics.resumes.clone());
        registry.register("store_commit_seconds", "Seconds per store commit", metrics.store_seconds.clone());
        registry.register(
            "redis_round_trip_seconds",
            "Cluster mode: seconds per publish pipeline to Redis",
            metrics.backplane_seconds.clone(),
        );
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }

    /// Records one commit's duration: in the store histogram (one node) or the Redis
    /// one (`redis`), and for the stats sampler.
    pub fn commit(&self, seconds: f64, redis: bool) {
        match redis {
            true => self.backplane_seconds.observe(seconds),
            false => self.store_seconds.observe(seconds),
        }
        let mut recent = self.recent_commits.lock().expect("commits lock");
        // A sampler that stopped must not let this grow: beyond a second's worth at full
        // speed, older ones are enough for a percentile.
        if recent.len() < 65_536 {
            recent.push(seconds);
        }
    }

    /// Takes the commit times recorded since the last call.
    pub fn take_commits(&self) -> Vec<f64> {
        std::mem::take(&mut *self.recent_commits.lock().expect("commits lock"))
    }

    /// A counter of a family by its label, 0 if never counted.
    pub fn count(family: &Family<CodeLabel, Counter>, code: &str) -> u64 {
        family.get_or_create(&CodeLabel { code: code.to_owned() }).get()
    }

    /// Publishes rejected so far, for every reject code (zeros included), by its name.
    pub fn rejections_by_code(&self) -> std::collections::BTreeMap<String, u64> {
        tether_shared::RejectCode::ALL
            .iter()
            .map(|code| {
                let name = code_name(code);
                let count = Metrics::count(&self.rejections, &name);
                (name, count)
            })
            .collect()
    }

    /// Counts an error frame.
    pub fn error(&self, code: tether_shared::ErrorCode) {
        self.errors.get_or_create(&CodeLabel { code: code_name(&code) }).inc();
    }

    /// Counts a rejection.
    pub fn rejection(&self, code: tether_shared::RejectCode) {
        self.rejections.get_or_create(&CodeLabel { code: code_name(&code) }).inc();
    }
}

fn code_name(code: &impl serde::Serialize) -> String {
    serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
