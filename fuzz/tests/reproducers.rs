//! Every saved reproducer (`fuzz/reproducers/<target>/*.bin`) replays without failing:
//! a bug the fuzzer found stays fixed.

use tether_fuzz::{engine, reproducers, targets};

#[test]
fn every_saved_reproducer_passes() {
    let mut failures = Vec::new();
    let saved = reproducers::all(&reproducers::dir());
    // None found (a moved folder, a renamed extension) would pass with nothing replayed.
    assert!(!saved.is_empty(), "no reproducers under {}: nothing was replayed", reproducers::dir().display());
    for (name, path) in &saved {
        let mut target =
            targets::make(name).unwrap_or_else(|| panic!("no target {name} for {}", path.display()));
        let input = std::fs::read(path).expect("a readable reproducer");
        if let Err(message) = engine::replay(target.as_mut(), &input) {
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} reproducers fail:\n{}",
        failures.len(),
        saved.len(),
        failures.join("\n")
    );
}
