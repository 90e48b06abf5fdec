//! The command line a server binary runs: flags and environment into a [`Config`], logs,
//! the open file limit, start, wait for a signal, stop. `tether-server` runs it with no
//! channels; an app's own binary runs it with its channels registered, and gets the
//! same flags, logs and shutdown.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::{Config, Server};

/// Parses the flags, then serves what `server` builds from them until SIGINT or SIGTERM.
pub async fn run(server: impl FnOnce(Config) -> Server) -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|error| {
        eprintln!("invalid --log-level `{}`: {error}; using `info`", config.log_level);
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // One file descriptor per client: raise the soft limit to what the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open file limit"),
    }

    let running = match server(config).start().await {
        Ok(running) => running,
        Err(error) => {
            // The whole chain: "could not open the history store at …: sqlite: …".
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                // Some causes already say their own cause; say each thing once.
                let said = cause.to_string();
                if !message.contains(&said) {
                    message.push_str(&format!(": {said}"));
                }
                source = cause.source();
            }
            tracing::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let addr = running.addr();
    tracing::info!(%addr, "listening");
    // Printed plainly as well, so scripts and people can find the URL without parsing logs.
    println!("Tether is running at http://{addr}/");

    // A signal, or (with --test-endpoints) `POST /api/test/stop`.
    tokio::select! {
        () = crate::wait_for_signal() => {}
        () = running.stop_requested() => {}
    }
    running.stop().await;
    tracing::info!("shut down cleanly");
    ExitCode::SUCCESS
}
