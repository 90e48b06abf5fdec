//! The fuzzing loop: inputs made at random or mutated from a corpus of earlier ones,
//! each run under a panic catcher, until the time budget is spent or a target fails.
//!
//! Without coverage instrumentation (which needs nightly), the signal that an input is
//! worth keeping is the target's own [`Outcome::detail`]: an input that produced a
//! detail never seen before (a new error message, a frame of a new kind, another close
//! code) joins the corpus and is mutated further. Everything is driven by one seeded
//! generator, so a run is repeatable from its seed.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::mutate;

/// What one input did, when it broke nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Coarse labels for the report: which frame decoded, which error code answered,
    /// which close code or HTTP status came back.
    pub labels: Vec<String>,
    /// Finer detail (error messages without their numbers, kinds of frames seen), for
    /// deciding whether an input showed something new and is worth mutating further.
    pub detail: String,
}

impl Outcome {
    /// Adds a label (it also counts as detail).
    pub fn label(&mut self, label: impl Into<String>) {
        let label = label.into();
        self.detail.push_str(&label);
        self.detail.push('|');
        self.labels.push(label);
    }

    /// Adds detail that is not worth a line in the report.
    pub fn detail(&mut self, detail: &str) {
        self.detail.push_str(&shape(detail));
        self.detail.push('|');
    }
}

/// An error message without its numbers (line and column, sizes), so that the same
/// failure at another offset counts as the same behaviour.
pub fn shape(message: &str) -> String {
    message.chars().filter(|c| !c.is_ascii_digit()).take(120).collect()
}

/// One thing the fuzzer exercises.
pub trait Target {
    /// Its name on the command line and under `fuzz/reproducers/`.
    fn name(&self) -> &'static str;
    /// Inputs to start from: well-formed cases the mutations start out near.
    fn seeds(&mut self) -> Vec<Vec<u8>>;
    /// The longest input worth making.
    fn max_len(&self) -> usize {
        2048
    }
    /// How many runs shrinking a failing input may spend (runs of slow targets cost more).
    fn shrink_runs(&self) -> usize {
        4_000
    }
    /// Runs one input: what it did, or the invariant it broke.
    fn run(&mut self, input: &[u8]) -> Result<Outcome, String>;
}

/// How long to fuzz one target.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Wall-clock time.
    pub time: Duration,
    /// Stop after this many cases even if time remains.
    pub cases: Option<u64>,
}

/// What fuzzing one target found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs run.
    pub cases: u64,
    /// Time spent.
    pub elapsed: Duration,
    /// How often each outcome label was seen.
    pub outcomes: BTreeMap<String, u64>,
    /// Distinct details seen (the corpus's measure of new behaviour).
    pub behaviours: usize,
    /// Inputs kept for mutation.
    pub corpus: usize,
    /// The first failure, if any (fuzzing a target stops there).
    pub failure: Option<Failure>,
}

impl Report {
    /// Cases per second.
    pub fn rate(&self) -> f64 {
        self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A failing input.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Which case it was.
    pub case: u64,
    /// The panic or the invariant broken.
    pub message: String,
    /// The input, shrunk as far as it still fails the same way.
    pub input: Vec<u8>,
}

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CAPTURING: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Installs a panic hook that, while a target runs, records every panic (on any
/// thread: a server task's as well as the target's own) instead of printing it, and
/// otherwise behaves as the default hook.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.load(Ordering::SeqCst) > 0 {
                let thread = std::thread::current();
                let message = format!("{info} (thread {})", thread.name().unwrap_or("unnamed"));
                PANICS.lock().unwrap_or_else(|e| e.into_inner()).push(message);
            } else {
                default(info);
            }
        }));
    });
}

/// Panics recorded since the last call.
fn take_panics() -> Vec<String> {
    std::mem::take(&mut *PANICS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Records panics instead of printing them while it lives.
struct Capture;

impl Capture {
    fn start() -> Capture {
        install_panic_hook();
        CAPTURING.fetch_add(1, Ordering::SeqCst);
        Capture
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one input under the panic catcher: a panic anywhere in the process while it
/// ran is a failure, as is a broken invariant.
pub fn check(target: &mut dyn Target, input: &[u8]) -> Result<Outcome, String> {
    let _capture = Capture::start();
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let panics = take_panics();
    if !panics.is_empty() {
        return Err(format!("panic: {}", panics.join("\n")));
    }
    match result {
        Ok(result) => result,
        Err(_) => Err("panic without a message".into()),
    }
}

/// Where the input being run is written before it runs, so that a crash that takes the
/// whole process down (a stack overflow, an abort) still leaves its reproducer behind.
pub struct LastInput(File);

impl LastInput {
    /// Creates (or empties) the file at `path`.
    pub fn create(path: &Path) -> std::io::Result<LastInput> {
        File::create(path).map(LastInput)
    }

    /// Records `input` as the one about to run: one positioned write, no reopening.
    fn record(&self, input: &[u8]) {
        let mut record = (input.len() as u64).to_le_bytes().to_vec();
        record.extend_from_slice(input);
        let _ = self.0.write_all_at(&record, 0);
    }

    /// The input recorded last in the file at `path`.
    pub fn read(path: &Path) -> Option<Vec<u8>> {
        let bytes = std::fs::read(path).ok()?;
        let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
        bytes.get(8..8 + len).map(<[u8]>::to_vec)
    }
}

/// The first line of a failure, without numbers: two failures with the same signature
/// are taken to be the same bug when shrinking.
fn signature(message: &str) -> String {
    shape(message.lines().next().unwrap_or_default())
}

/// Fuzzes `target` from `seed` within `budget`; stops at the first failure, which it
/// shrinks before returning.
pub fn fuzz(target: &mut dyn Target, seed: u64, budget: Budget, last: Option<&LastInput>) -> Report {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let max_len = target.max_len();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let seeds = target.seeds();
    let mut case = 0u64;
    let mut failure = None;
    while started.elapsed() < budget.time && budget.cases.is_none_or(|cases| case < cases) {
        let input = if (case as usize) < seeds.len() {
            seeds[case as usize].clone()
        } else if corpus.is_empty() || rng.u8(..) < 40 {
            mutate::fresh(&mut rng, max_len)
        } else {
            let mut input = corpus[rng.usize(..corpus.len())].clone();
            let other = &corpus[rng.usize(..corpus.len())];
            mutate::havoc(&mut rng, &mut input, max_len, other);
            input
        };
        if let Some(last) = last {
            last.record(&input);
        }
        case += 1;
        match check(target, &input) {
            Ok(outcome) => {
                for label in &outcome.labels {
                    *outcomes.entry(label.clone()).or_default() += 1;
                }
                let mut hasher = std::hash::DefaultHasher::new();
                outcome.detail.hash(&mut hasher);
                if seen.insert(hasher.finish()) {
                    if corpus.len() < 2_000 {
                        corpus.push(input);
                    } else {
                        let slot = rng.usize(..corpus.len());
                        corpus[slot] = input;
                    }
                }
            }
            Err(message) => {
                let input = shrink(target, input, &message);
                failure = Some(Failure { case, message, input });
                break;
            }
        }
    }
    Report {
        target: target.name(),
        cases: case,
        elapsed: started.elapsed(),
        outcomes,
        behaviours: seen.len(),
        corpus: corpus.len(),
        failure,
    }
}

/// Makes a failing input smaller while it keeps failing with the same signature:
/// chunks cut out, from halves down to single bytes, within the target's run budget.
pub fn shrink(target: &mut dyn Target, mut input: Vec<u8>, message: &str) -> Vec<u8> {
    let wanted = signature(message);
    let mut runs = target.shrink_runs();
    let mut chunk = input.len() / 2;
    while chunk > 0 && runs > 0 {
        let mut start = 0;
        let mut cut_any = false;
        while start < input.len() && runs > 0 {
            let end = (start + chunk).min(input.len());
            let mut smaller = input.clone();
            smaller.drain(start..end);
            runs -= 1;
            match check(target, &smaller) {
                Err(found) if signature(&found) == wanted => {
                    input = smaller;
                    cut_any = true;
                }
                _ => start += chunk,
            }
        }
        if !cut_any {
            chunk /= 2;
        }
    }
    input
}

/// Replays one saved input.
pub fn replay(target: &mut dyn Target, input: &[u8]) -> Result<Outcome, String> {
    check(target, input)
}
