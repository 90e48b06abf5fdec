//! The dashboard's sampler: one sample a second, kept by the server (in the context's
//! [`Series`]) so that a dashboard opened now shows the minutes
//! before it was opened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_shared::Millis;

use crate::context::Context;
use crate::samples::percentiles;
pub use crate::samples::{Sample, Series, Totals};

/// How often a sample is taken.
const EVERY: Duration = Duration::from_secs(1);

/// Takes a sample every second until the server shuts down.
pub(crate) fn spawn(context: Arc<Context>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = (Instant::now(), Totals::read(&context.metrics));
        let shutdown = context.shutdown.triggered();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            let now = (Instant::now(), Totals::read(&context.metrics));
            context.metrics.tasks.set(tokio::runtime::Handle::current().metrics().num_alive_tasks() as i64);
            let seconds = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
            let rate = |new: u64, old: u64| new.saturating_sub(old) as f64 / seconds;
            let (new, old) = (&now.1, &last.1);
            let (commit_p50_ms, commit_p99_ms) = percentiles(context.metrics.take_commits());
            let sample = Sample {
                at: Millis::now(),
                connections: context.metrics.connections.get(),
                rooms: context.hub.room_count(),
                frames_in: rate(new.frames_in, old.frames_in),
                frames_out: rate(new.frames_out, old.frames_out),
                acks: rate(new.acks, old.acks),
                rejections: rate(new.rejected(), old.rejected()),
                resumes: rate(new.resumes, old.resumes),
                slow_consumer_drops: rate(new.slow_consumer_drops, old.slow_consumer_drops),
                commit_p50_ms,
                commit_p99_ms,
            };
            // In a cluster, the other nodes' dashboards read it from Redis.
            context.engine.share_sample(&sample, context.hub.connected().users());
            context.stats.push(sample);
            last = now;
        }
    });
}
