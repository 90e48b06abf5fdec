//! Latency histograms, in microseconds, shared by the workloads that time messages.

use hdrhistogram::Histogram;

/// An empty histogram from 1 µs to 2 minutes at three significant digits; histograms
/// made here can always be added together.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}
