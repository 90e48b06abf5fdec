//! Cluster mode: many stateless nodes over one Redis (or Valkey) server.
//!
//! A node started with `--redis` keeps nothing of its own that another node needs:
//! history, seqs, dedupe markers and presence live in Redis ([`keys`]), and the nodes
//! hear of each other's messages and presence through one pub/sub channel per room.
//! The single-node parts plug in at their seams, so one node pays nothing for this:
//!
//! - the sequencer's queue is drained by [`publish::Publisher`], whose Lua function is
//!   the one owner of a room's seq, instead of the local sequencer thread;
//! - joins and replays read [`history::RedisHistory`] through the `History` trait;
//! - the hub tells the [`backplane::Backplane`] when a room gains or loses its last
//!   local member, and of local presence and ephemeral frames; the backplane's task
//!   delivers what other nodes publish back into the hub, in seq order.

pub mod backplane;
pub mod history;
mod keys;
pub mod publish;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tether_shared::User;

pub use history::RedisHistory;

use crate::config::Config;
use crate::hub::RoomHub;
use crate::metrics::Metrics;
use crate::samples::Sample;
use crate::store::StoreError;

use crate::engine::{Engine, NodeId, Publish, Request, Rooms, refuse_closed};

/// How long one Redis command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a cluster member runs besides the single node's parts.
pub struct Cluster {
    /// Joins' and replays' view of history.
    pub history: Arc<RedisHistory>,
    client: redis::Client,
    node: NodeId,
}

impl Cluster {
    /// Connects to Redis at `url` and reads the shared epoch and secret.
    pub async fn connect(url: &str) -> Result<Cluster, StoreError> {
        let client = redis::Client::open(url)?;
        let opening = client.clone();
        let history = tokio::task::spawn_blocking(move || RedisHistory::open(opening))
            .await
            .expect("opening Redis does not panic")?;
        let node = NodeId::from(format!("{:012x}", fastrand::u64(..) >> 16));
        tracing::info!(node = %node, "cluster node; state in Redis");
        Ok(Cluster { history: Arc::new(history), client, node })
    }

    /// Starts the publish task and the backplane, and hands the hub its backplane.
    pub async fn start(
        &self,
        hub: &Arc<RoomHub>,
        metrics: Arc<Metrics>,
        config: &Config,
    ) -> Result<RedisEngine, StoreError> {
        let connection = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut redis = ConnectionManager::new_with_config(self.client.clone(), connection).await?;
        publish::load_library(&mut redis).await?;
        let rooms: Arc<dyn Rooms> = hub.clone();
        let rooms = Arc::downgrade(&rooms);
        let backplane = backplane::start(backplane::RelayParts {
            client: self.client.clone(),
            redis: redis.clone(),
            node: self.node.clone(),
            hub: rooms.clone(),
            metrics: metrics.clone(),
            tick: config.presence_tick,
            history: self.history.clone(),
        });
        hub.set_backplane(backplane.clone());
        let (requests, receiver) = tokio::sync::mpsc::unbounded_channel();
        let publisher = publish::Publisher {
            redis,
            hub: rooms,
            node: self.node.clone(),
            metrics: metrics.clone(),
            history_messages: config.history_messages,
            history_age: config.history_age,
            dedupe_window_ms: config.dedupe_window.as_millis() as u64,
            since_trim: HashMap::new(),
        };
        tokio::spawn(publisher.run(receiver));
        Ok(RedisEngine { requests, metrics, backplane })
    }
}

/// The Redis engine: the handle on this node's publish task, whose Redis function
/// numbers and stores each publish. Cloning is cheap.
#[derive(Clone)]
pub struct RedisEngine {
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    metrics: Arc<Metrics>,
    backplane: Arc<backplane::Backplane>,
}

impl Engine for RedisEngine {
    fn publish(&self, publish: Publish) {
        if let Err(tokio::sync::mpsc::error::SendError(Request::Publish(publish))) =
            self.requests.send(Request::Publish(publish))
        {
            refuse_closed(&self.metrics, &publish);
        }
    }

    fn barrier(&self) -> BoxFuture<'static, ()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let queued = self.requests.send(Request::Barrier(done)).is_ok();
        Box::pin(async move {
            if queued {
                let _ = wait.await;
            }
        })
    }

    fn node(&self) -> Option<&NodeId> {
        Some(self.backplane.node())
    }

    fn present_elsewhere(&self, room: &str) -> Result<Vec<(NodeId, User)>, StoreError> {
        self.backplane.present_elsewhere(room)
    }

    fn rooms(&self, _here: Vec<(String, usize)>) -> Result<Vec<(String, usize)>, StoreError> {
        self.backplane.rooms()
    }

    fn disconnect_elsewhere(&self, user: &str, code: u16) -> bool {
        self.backplane.send(backplane::Command::Disconnect { user: user.to_owned(), code });
        true
    }

    fn share_sample(&self, sample: &Sample, users: usize) {
        let mut shared = serde_json::to_value(sample).unwrap_or_default();
        shared["users"] = users.into();
        self.backplane.send(backplane::Command::Stats(shared.to_string()));
    }

    fn node_samples(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.backplane.node_stats()
    }

    fn leave(&self) -> BoxFuture<'static, ()> {
        let backplane = self.backplane.clone();
        Box::pin(async move { backplane.leave().await })
    }
}
