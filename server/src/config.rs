//! Command-line flags and environment variables.
//!
//! Every flag has an environment variable so that the same binary can be configured by
//! a shell, a container runtime or a service manager without a wrapper script.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// How the server is configured. `tether-server --help` prints this.
#[derive(Debug, Clone, Parser)]
#[command(name = "tether-server", version, about = "Tether's real-time WebSocket server")]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port, which is printed at start-up.
    #[arg(long, env = "TETHER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Folder holding the built single-page app (trunk's `dist/`). Unknown paths serve
    /// its `index.html`, so client-side routes survive a reload.
    #[arg(long, env = "TETHER_STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,

    /// Log filter in `tracing` syntax: a level (`info`) or per-target directives
    /// (`tether_server=debug,warp=info`).
    #[arg(long, env = "TETHER_LOG", default_value = "info")]
    pub log_level: String,

    /// Largest accepted WebSocket message, in bytes. Larger messages close the socket
    /// with 1009.
    #[arg(long, env = "TETHER_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// How long a connection may stay silent before the server considers it dead.
    #[arg(long, env = "TETHER_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
}

impl Config {
    /// A configuration for tests and embedding: a free loopback port, no static files.
    pub fn for_tests() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            static_dir: PathBuf::from("dist"),
            log_level: "warn".into(),
            max_message_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let value: u64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration such as 250ms, 10s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("`{text}`: the unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
