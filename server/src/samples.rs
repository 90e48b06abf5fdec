//! The dashboard's numbers as data: counters since start, and one sample a second over
//! the last minutes. The server's context holds the series; the sampler in the API
//! (`api/stats.rs`) fills it; the API and the dashboard read it. Kept apart from both so
//! that the context, which everything holds, depends on no route.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tether_shared::Millis;

use crate::metrics::Metrics;

/// Samples kept: five minutes at one a second.
const KEPT: usize = 300;

/// Counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Hellos answered with a welcome.
    pub welcomes: u64,
    /// Frames received from clients.
    pub frames_in: u64,
    /// Frames sent to clients.
    pub frames_out: u64,
    /// Publishes received (clients and the API).
    pub publishes: u64,
    /// Messages stored and acknowledged.
    pub acks: u64,
    /// Re-sent publishes answered with their original ack.
    pub duplicates: u64,
    /// Publishes rejected, by code.
    pub rejections: BTreeMap<String, u64>,
    /// Joins that resumed from a cursor.
    pub resumes: u64,
    /// Connections closed as slow consumers.
    pub slow_consumer_drops: u64,
    /// Tokens renewed in place.
    pub token_refreshes: u64,
}

impl Totals {
    /// The counters now.
    pub(crate) fn read(metrics: &Metrics) -> Totals {
        let resumes = ["complete", "incomplete"]
            .into_iter()
            .map(|outcome| {
                let label = crate::metrics::OutcomeLabel { outcome: outcome.into() };
                metrics.resumes.get_or_create(&label).get()
            })
            .sum();
        Totals {
            welcomes: metrics.welcomes.get(),
            frames_in: metrics.frames_in.get(),
            frames_out: metrics.frames_out.get(),
            publishes: metrics.publishes.get(),
            acks: metrics.acks.get(),
            duplicates: metrics.duplicates.get(),
            rejections: metrics.rejections_by_code(),
            resumes,
            slow_consumer_drops: metrics.slow_consumers.get(),
            token_refreshes: metrics.token_refreshes.get(),
        }
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejections.values().sum()
    }
}

/// One second of the server's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken, in ms since the epoch.
    pub at: Millis,
    /// Open connections.
    pub connections: i64,
    /// Rooms with members.
    pub rooms: usize,
    /// Frames received per second.
    pub frames_in: f64,
    /// Frames sent per second.
    pub frames_out: f64,
    /// Acks per second.
    pub acks: f64,
    /// Rejections per second, every code together.
    pub rejections: f64,
    /// Resumes per second.
    pub resumes: f64,
    /// Slow-consumer drops per second.
    pub slow_consumer_drops: f64,
    /// Median commit time over the second (store or Redis), in ms; `None` without any.
    pub commit_p50_ms: Option<f64>,
    /// 99th percentile commit time over the second, in ms.
    pub commit_p99_ms: Option<f64>,
}

/// The last five minutes of samples, one a second.
#[derive(Default)]
pub struct Series {
    samples: Mutex<VecDeque<Sample>>,
}

impl Series {
    /// The samples, oldest first.
    pub fn series(&self) -> Vec<Sample> {
        self.samples.lock().expect("series lock").iter().cloned().collect()
    }

    pub(crate) fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().expect("series lock");
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }
}

/// The median and 99th percentile of `seconds`, in ms (nearest rank).
pub(crate) fn percentiles(mut seconds: Vec<f64>) -> (Option<f64>, Option<f64>) {
    if seconds.is_empty() {
        return (None, None);
    }
    seconds.sort_by(f64::total_cmp);
    let rank =
        |p: f64| seconds[((p * seconds.len() as f64).ceil() as usize).clamp(1, seconds.len()) - 1] * 1e3;
    (Some(rank(0.50)), Some(rank(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(percentiles(Vec::new()), (None, None));
        let seconds: Vec<f64> = (1..=100).map(|ms| f64::from(ms) / 1e3).collect();
        let (p50, p99) = percentiles(seconds);
        assert!((p50.unwrap() - 50.0).abs() < 1e-9 && (p99.unwrap() - 99.0).abs() < 1e-9);
    }
}
