//! Each target fuzzes for a few seconds without a failure, from a fixed seed (so that a
//! failure here is repeatable with `cargo xtask fuzz --target NAME --seed 1`, give or
//! take the cases a debug build gets through).

use std::time::Duration;

use tether_fuzz::engine::{self, Budget};
use tether_fuzz::targets;

#[test]
fn every_target_runs_clean_for_a_few_seconds() {
    // A debug build's frames are many times a release build's: serde reading JSON nested
    // to its limit of 128 needs more than the 2 MiB of a test thread (a release build,
    // which `cargo xtask fuzz` runs, fits in tokio's 2 MiB workers).
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(run_every_target)
        .expect("a test thread")
        .join()
        .expect("every target runs clean");
}

fn run_every_target() {
    for name in targets::NAMES {
        let mut target = targets::make(name).expect("a known target");
        let seconds = if name.starts_with("server") { 4 } else { 2 };
        let budget = Budget { time: Duration::from_secs(seconds), cases: None };
        let report = engine::fuzz(target.as_mut(), 1, budget, None);
        assert!(report.cases > 0, "{name} ran no case");
        if let Some(failure) = &report.failure {
            panic!(
                "{name} failed at case {}: {}\n  input: {:02x?}",
                failure.case, failure.message, failure.input
            );
        }
        println!("{name}: {} cases, {} outcomes", report.cases, report.outcomes.len());
    }
}
