//! The state every route and connection shares, in one type (axum's `AppState`).
//!
//! Handlers borrow it through an `Arc`; nothing in it is a global.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;
use crate::engine::Engine;
use crate::hub::RoomHub;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::History;

/// Everything the routes and connections share.
pub struct Context {
    pub(crate) config: Config,
    pub(crate) shutdown: Shutdown,
    pub(crate) hub: Arc<RoomHub>,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) store: Arc<dyn History>,
    pub(crate) metrics: Arc<Metrics>,
    /// Verifies tokens: the auth secret, or in dev mode the store's own secret.
    pub(crate) secret: Vec<u8>,
    /// Tells every connection to close with 1012 (test endpoint only).
    pub(crate) drop_all: tokio::sync::watch::Sender<u64>,
    /// Refuse WebSocket upgrades with 403, as a proxy that strips `Upgrade` does (test
    /// endpoint only).
    pub(crate) refuse_upgrades: std::sync::atomic::AtomicBool,
    /// Sessions of the HTTP fallback transports, by id.
    pub(crate) sessions: crate::fallback::session::Sessions,
    /// The MessagePack form of shared frames, made once for every MessagePack client.
    pub(crate) packed: crate::wire::Packed,
    /// The dashboard's last minutes, a sample a second.
    pub(crate) stats: crate::samples::Series,
    /// Bytes waiting in every send queue together (`--queued-bytes`).
    pub(crate) send_budget: Arc<crate::outbound::SendBudget>,
    /// New rooms per user (or address) per minute.
    pub(crate) room_creations: crate::creations::RoomCreations,
    /// The app's typed channels and their handlers.
    pub(crate) channels: crate::channels::Channels,
    /// Recent answers to idempotent requests.
    pub(crate) answers: crate::channels::answers::RecentAnswers,
    next_conn: AtomicU64,
}

impl Context {
    /// Builds the shared context.
    pub(crate) fn new(
        config: Config,
        shutdown: Shutdown,
        hub: Arc<RoomHub>,
        engine: Arc<dyn Engine>,
        store: Arc<dyn History>,
        metrics: Arc<Metrics>,
        channels: crate::channels::Channels,
    ) -> Self {
        let secret = match &config.auth_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => store.secret(),
        };
        let drop_all = tokio::sync::watch::Sender::new(0);
        let room_creations = crate::creations::RoomCreations::new(config.room_creations);
        let send_budget = crate::outbound::SendBudget::new(config.queued_bytes, metrics.clone());
        Context {
            channels,
            answers: Default::default(),
            room_creations,
            send_budget,
            config,
            shutdown,
            hub,
            engine,
            store,
            metrics,
            secret,
            drop_all,
            sessions: Default::default(),
            stats: Default::default(),
            packed: Default::default(),
            refuse_upgrades: Default::default(),
            next_conn: AtomicU64::new(1),
        }
    }

    /// A fresh connection id.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}
