//! `tether-fuzz [--minutes M] [--seed S] [--target NAME]`: fuzzes every target (or
//! one) for M minutes in all, split evenly, and prints per target the cases run, the
//! rate, the distinct outcomes seen and any failure. A failure is saved under
//! `fuzz/reproducers/<target>/` with the command that replays it, and the exit code is
//! non-zero. `--replay PATH…` runs saved reproducers instead.
//!
//! Each target runs in a child process of its own, so that a crash no panic handler
//! can catch (a stack overflow, an abort) is still reported, with its input saved from
//! the file the child writes each input to before running it.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;
use tether_fuzz::engine::{self, Budget, LastInput, Report};
use tether_fuzz::{reproducers, targets};

/// Fuzzes Tether's decoders, outbox, tokens, client core and server.
#[derive(Debug, Parser)]
#[command(name = "tether-fuzz")]
struct Args {
    /// Minutes to fuzz in all, split evenly across the targets.
    #[arg(long, default_value_t = 1.0)]
    minutes: f64,
    /// Seed of the run; a random one (printed) when absent. The same seed repeats a run.
    #[arg(long)]
    seed: Option<u64>,
    /// Fuzz only this target.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(targets::NAMES))]
    target: Option<String>,
    /// Replay saved reproducers (files, or folders holding them) instead of fuzzing.
    #[arg(long, num_args = 1..)]
    replay: Vec<PathBuf>,
    /// Print the targets and exit.
    #[arg(long)]
    list: bool,
    /// Internal: fuzz --target in this process, with this folder for the child's files.
    #[arg(long, hide = true)]
    worker: Option<PathBuf>,
    /// Internal: the worker's time.
    #[arg(long, hide = true, default_value_t = 10.0)]
    seconds: f64,
}

/// What a worker tells its parent.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Summary {
    cases: u64,
    seconds: f64,
    outcomes: usize,
    failure: Option<String>,
    reproducer: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for name in targets::NAMES {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    if !args.replay.is_empty() {
        return replay(&args.replay);
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    if let Some(folder) = &args.worker {
        let Some(target) = args.target.as_deref() else {
            eprintln!("--worker needs --target");
            return ExitCode::FAILURE;
        };
        return worker(target, seed, Duration::from_secs_f64(args.seconds.max(0.0)), folder);
    }
    let names: Vec<&str> = match &args.target {
        Some(name) => vec![name.as_str()],
        None => targets::NAMES.to_vec(),
    };
    let each = args.minutes.max(0.0) * 60.0 / names.len() as f64;
    println!("tether-fuzz: seed {seed}, {each:.1} s per target ({} targets)", names.len());
    let scratch = std::env::temp_dir().join(format!("tether-fuzz-{}", std::process::id()));
    let mut rows = Vec::new();
    let mut failed = false;
    for name in names {
        let folder = scratch.join(name);
        if let Err(error) = std::fs::create_dir_all(&folder) {
            eprintln!("tether-fuzz: cannot make {}: {error}", folder.display());
            return ExitCode::FAILURE;
        }
        let summary = spawn(name, target_seed(seed, name), each, &folder);
        failed |= summary.failure.is_some();
        rows.push((name, summary));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!("\n{:<16} {:>10} {:>10} {:>9} {:>9}", "target", "cases", "cases/s", "outcomes", "failures");
    for (name, summary) in &rows {
        println!(
            "{:<16} {:>10} {:>10.0} {:>9} {:>9}",
            name,
            summary.cases,
            summary.cases as f64 / summary.seconds.max(1e-9),
            summary.outcomes,
            usize::from(summary.failure.is_some())
        );
    }
    for (name, summary) in &rows {
        if let Some(failure) = &summary.failure {
            println!("\n{name} FAILED: {}", failure.lines().next().unwrap_or_default());
            if let Some(path) = &summary.reproducer {
                println!("  reproducer: {path}\n  replay:     cargo xtask fuzz --replay {path}");
            }
        }
    }
    if failed {
        println!("\ntether-fuzz: failures found (seed {seed})");
        ExitCode::FAILURE
    } else {
        println!("\ntether-fuzz: no failures (seed {seed})");
        ExitCode::SUCCESS
    }
}

/// Each target's own seed, so that runs of one target and of all agree.
fn target_seed(seed: u64, name: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    name.hash(&mut hasher);
    seed ^ hasher.finish()
}

/// Runs one target in a child process and reads what it found; a child that died
/// without reporting left its last input behind, which becomes the reproducer.
fn spawn(name: &str, seed: u64, seconds: f64, folder: &Path) -> Summary {
    let summary_path = folder.join("summary.json");
    let _ = std::fs::remove_file(&summary_path);
    let exe = std::env::current_exe().expect("the running binary's path");
    let status = Command::new(exe)
        .args(["--worker", &folder.display().to_string(), "--target", name])
        .args(["--seed", &seed.to_string(), "--seconds", &seconds.to_string()])
        .status();
    let reported =
        std::fs::read_to_string(&summary_path).ok().and_then(|text| serde_json::from_str(&text).ok());
    match (status, reported) {
        (Ok(_), Some(summary)) => summary,
        (status, _) => {
            let how = match status {
                Ok(status) => format!("the worker died ({status}): a stack overflow or an abort, see above"),
                Err(error) => format!("the worker could not start: {error}"),
            };
            let mut summary = Summary { failure: Some(how.clone()), ..Summary::default() };
            if let Some(input) = LastInput::read(&folder.join("last-input")) {
                match reproducers::save(&reproducers::dir(), name, &input, &how) {
                    Ok(path) => summary.reproducer = Some(shown(&path)),
                    Err(error) => eprintln!("tether-fuzz: could not save the reproducer: {error}"),
                }
            }
            println!("{name}: {how}");
            summary
        }
    }
}

/// The fuzzing itself, in the child.
fn worker(name: &str, seed: u64, time: Duration, folder: &Path) -> ExitCode {
    let last = match LastInput::create(&folder.join("last-input")) {
        Ok(last) => last,
        Err(error) => {
            eprintln!("tether-fuzz: cannot write the last input: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Some(mut target) = targets::make(name) else {
        eprintln!("tether-fuzz: no target {name}");
        return ExitCode::FAILURE;
    };
    let report = engine::fuzz(target.as_mut(), seed, Budget { time, cases: None }, Some(&last));
    print_report(&report);
    let mut summary = Summary {
        cases: report.cases,
        seconds: report.elapsed.as_secs_f64(),
        outcomes: report.outcomes.len(),
        ..Summary::default()
    };
    if let Some(failure) = &report.failure {
        summary.failure = Some(failure.message.clone());
        match reproducers::save(&reproducers::dir(), name, &failure.input, &failure.message) {
            Ok(path) => {
                println!("  reproducer ({} bytes): {}", failure.input.len(), shown(&path));
                println!("  replay: cargo xtask fuzz --replay {}", shown(&path));
                summary.reproducer = Some(shown(&path));
            }
            Err(error) => eprintln!("tether-fuzz: could not save the reproducer: {error}"),
        }
    }
    let text = serde_json::to_string(&summary).expect("summaries serialise");
    if let Err(error) = std::fs::write(folder.join("summary.json"), text) {
        eprintln!("tether-fuzz: cannot write the summary: {error}");
        return ExitCode::FAILURE;
    }
    if report.failure.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn print_report(report: &Report) {
    println!(
        "{}: {} cases in {:.1} s ({:.0}/s), {} distinct outcomes, {} behaviours kept, {}",
        report.target,
        report.cases,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.outcomes.len(),
        report.corpus,
        if report.failure.is_some() { "1 failure" } else { "no failure" }
    );
    let mut counts: Vec<(&String, &u64)> = report.outcomes.iter().collect();
    counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    // All of them: the rare ones are where a model's allowances show whether they are
    // still taken.
    let shown: Vec<String> = counts.iter().map(|(label, n)| format!("{label} ×{n}")).collect();
    println!("  outcomes: {}", shown.join(", "));
    if let Some(failure) = &report.failure {
        println!("  FAILURE at case {}: {}", failure.case, failure.message);
    }
}

/// A path as the person typed it would be: relative to the workspace when inside it.
fn shown(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("/"));
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// Replays reproducers: each file, or every `.bin` in each folder.
fn replay(paths: &[PathBuf]) -> ExitCode {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = reproducers::all(path);
            if found.is_empty() {
                // A target's own folder.
                files.extend(
                    reproducers::all(path.parent().unwrap_or(path))
                        .into_iter()
                        .filter(|(t, _)| path.file_name().is_some_and(|name| name.to_string_lossy() == *t)),
                );
            } else {
                files.extend(found);
            }
        } else if let Some(target) = reproducers::target_of(path) {
            files.push((target, path.clone()));
        }
    }
    let mut made: BTreeMap<String, Box<dyn engine::Target>> = BTreeMap::new();
    let mut failed = 0;
    for (name, path) in &files {
        let Ok(input) = std::fs::read(path) else {
            println!("{}: cannot read", path.display());
            failed += 1;
            continue;
        };
        if !made.contains_key(name) {
            match targets::make(name) {
                Some(target) => drop(made.insert(name.clone(), target)),
                None => {
                    println!("{}: no target {name}", path.display());
                    failed += 1;
                    continue;
                }
            }
        }
        let target = made.get_mut(name).expect("made above");
        match engine::replay(target.as_mut(), &input) {
            Ok(outcome) => println!("{}: ok ({})", path.display(), outcome.labels.join(", ")),
            Err(message) => {
                println!("{}: FAILED\n{message}", path.display());
                failed += 1;
            }
        }
    }
    println!("{} replayed, {failed} failed", files.len());
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
