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

    /// Folder holding the built single-page app (`cargo xtask dist` builds it into `dist/`). Unknown paths serve
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

    /// How long a connection may stay silent before the server considers it dead and
    /// frees its presence. Clients are told to ping at half this.
    #[arg(long, env = "TETHER_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long a request's body may take to arrive whole after its headers. Past it
    /// the request is answered 408 `body_timeout` and its connection closed, so that a
    /// client that stops halfway holds nothing. The largest body taken (a fallback
    /// `send` of 64 frames of 64 KiB) needs 3.4 Mbit/s at the default.
    #[arg(long, env = "TETHER_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Where history is kept: `sqlite` (durable, in --data-dir) or `memory` (lost on exit).
    #[arg(long, env = "TETHER_STORE", default_value = "sqlite", value_parser = ["sqlite", "memory"])]
    pub store: String,

    /// Folder for the SQLite database (`tether.db`).
    #[arg(long, env = "TETHER_DATA_DIR", default_value = "tether-data")]
    pub data_dir: PathBuf,

    /// Messages kept per room.
    #[arg(long, env = "TETHER_HISTORY_MESSAGES", default_value_t = 10_000)]
    pub history_messages: u64,

    /// How long messages are kept (e.g. 7d, 12h).
    #[arg(long, env = "TETHER_HISTORY_AGE", default_value = "7d", value_parser = parse_duration)]
    pub history_age: Duration,

    /// Bytes of history kept across all rooms together (e.g. 512m, 1g). Past it, the
    /// oldest messages of the whole server go first (each room keeps its latest, so its
    /// seqs are never reused), and a client resuming from before them is told
    /// `complete: false`. Bounds the disk however many rooms are written to.
    #[arg(long, env = "TETHER_HISTORY_BYTES", default_value = "1g", value_parser = parse_size)]
    pub history_bytes: u64,

    /// How long a re-sent message id is recognised and answered with its original ack.
    #[arg(long, env = "TETHER_DEDUPE_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub dedupe_window: Duration,

    /// Secret for verifying signed tokens. When set, every client needs a token; when
    /// unset (dev mode), clients pick a display name and /api/token issues dev tokens.
    #[arg(long, env = "TETHER_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Key for the server API (`/api/v1/…`, sent as `Authorization: Bearer KEY`), with
    /// which the app's backend publishes, reads presence and history, and disconnects
    /// users, and the dashboard at `/admin` signs in. Unset, the API answers 404.
    #[arg(long, env = "TETHER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Page origins allowed to open sockets (repeat, or comma-separate in the variable).
    /// Unset allows any origin.
    #[arg(long = "allowed-origin", env = "TETHER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Open connections allowed from one IP address.
    #[arg(long, env = "TETHER_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "TETHER_MAX_ROOMS", default_value_t = 32)]
    pub max_rooms: usize,

    /// New rooms one user may open per minute (in dev mode, where anyone may be anyone:
    /// one IP address). A room is new when it has neither history nor members; a join
    /// past the quota is answered `rate_limited` about that room.
    #[arg(long, env = "TETHER_ROOM_CREATIONS", default_value_t = 120)]
    pub room_creations: u32,

    /// Connections one room may hold.
    #[arg(long, env = "TETHER_MAX_MEMBERS", default_value_t = 10_000)]
    pub max_members: usize,

    /// Largest publish body, in bytes of JSON.
    #[arg(long, env = "TETHER_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Publishes per second per connection (sustained).
    #[arg(long, env = "TETHER_PUBLISH_RATE", default_value_t = 20)]
    pub publish_rate: u32,

    /// Volatile `state` frames (cursors and the like) per second per connection, with a
    /// burst of as many; counted apart from publishes.
    #[arg(long, env = "TETHER_STATE_RATE", default_value_t = 30)]
    pub state_rate: u32,

    /// Publishes allowed in a burst above the rate.
    #[arg(long, env = "TETHER_PUBLISH_BURST", default_value_t = 40)]
    pub publish_burst: u32,

    /// Shortest gap between two presence announcements in one room. The first change
    /// after a quiet spell goes out at once; changes within a tick of it are sent
    /// together as one diff (or one count) per room.
    #[arg(long, env = "TETHER_PRESENCE_TICK", default_value = "200ms", value_parser = parse_duration)]
    pub presence_tick: Duration,

    /// Users in a room above which its members are told only the count (and may page
    /// through the list on request) instead of every join and leave. The room goes back
    /// to a full list at half this.
    #[arg(long, env = "TETHER_PRESENCE_LIMIT", default_value_t = 200)]
    pub presence_limit: usize,

    /// Frames queued for one client before it counts as a slow consumer and is closed.
    #[arg(long, env = "TETHER_SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,

    /// Bytes waiting in all clients' send queues together (e.g. 256m). Past it, a
    /// client whose own queue holds more than 64 KiB is closed as a slow consumer
    /// (4001) instead of being queued more, so memory stays bounded however many slow
    /// clients there are; clients that keep up are never closed by it.
    #[arg(long, env = "TETHER_QUEUED_BYTES", default_value = "256m", value_parser = parse_size)]
    pub queued_bytes: u64,

    /// How long the dev-mode tokens of `/api/token` live. Short, so that the demo renews
    /// its token in place every few minutes, as an app with its own backend would.
    #[arg(long, env = "TETHER_DEV_TOKEN_TTL", default_value = "10m", value_parser = parse_duration)]
    pub dev_token_ttl: Duration,

    /// How long before a connection's token expires the server sends `token_expiring`,
    /// so that the client can refresh it in place.
    #[arg(long, env = "TETHER_TOKEN_WARNING", default_value = "30s", value_parser = parse_duration)]
    pub token_warning: Duration,

    /// Redis (or Valkey) URL, e.g. `redis://127.0.0.1:6379`. Makes this server one node
    /// of a cluster: history, seqs, dedupe and presence live in Redis, and any number of
    /// nodes pointing at the same Redis serve the same rooms. `--store` is then unused.
    #[arg(long, env = "TETHER_REDIS_URL")]
    pub redis: Option<String>,

    /// Enables `POST /api/test/drop`, which closes every WebSocket with 1012, and
    /// `POST /api/test/websockets?allow=false|true`, which refuses WebSocket upgrades
    /// (403) or lets them through again, so that browser tests can exercise reconnects
    /// and fallbacks. Never enable it in production.
    #[arg(long, env = "TETHER_TEST_ENDPOINTS")]
    pub test_endpoints: bool,

    /// The app's backend, asked over HTTP (see API.md, *Hooks*).
    #[command(flatten)]
    pub hooks: HookConfig,
}

/// Hooks over HTTP: the standalone server asks the app's backend, in any language, to
/// decide connections, joins, publishes and requests, as an app's in-process handlers
/// do. Each hook is off until its URL is given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HookConfig {
    /// URL that decides each connection (`http://…`): who it is, or a refusal.
    #[arg(long, env = "TETHER_HOOK_CONNECT")]
    pub hook_connect: Option<String>,

    /// URL that decides each join of a room the hooks cover: the member's metadata, or a
    /// refusal.
    #[arg(long, env = "TETHER_HOOK_JOIN")]
    pub hook_join: Option<String>,

    /// URL that decides each publish to a room the hooks cover: store it as sent, store
    /// a rewritten body, or refuse.
    #[arg(long, env = "TETHER_HOOK_PUBLISH")]
    pub hook_publish: Option<String>,

    /// URL that answers each request to a room the hooks cover: a reply, or a refusal.
    #[arg(long, env = "TETHER_HOOK_REQUEST")]
    pub hook_request: Option<String>,

    /// Rooms the join, publish and request hooks cover: `*` for every room, `board:*`
    /// for a prefix, or one room's name.
    #[arg(long, env = "TETHER_HOOK_ROOMS", default_value = "*")]
    pub hook_rooms: String,

    /// Longest one hook call may take, waiting for a free slot included. Past it the
    /// call fails as `unavailable`, and the server goes on.
    #[arg(long, env = "TETHER_HOOK_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub hook_timeout: Duration,

    /// Hook calls in flight at once, over every connection. Calls past it wait for a
    /// slot, within their timeout.
    #[arg(long, env = "TETHER_HOOK_CONCURRENCY", default_value_t = 64)]
    pub hook_concurrency: usize,

    /// Request headers the connect hook is given (cookies and `Authorization` unless
    /// told otherwise).
    #[arg(
        long = "hook-header",
        env = "TETHER_HOOK_HEADERS",
        value_delimiter = ',',
        default_values = ["cookie", "authorization"]
    )]
    pub hook_headers: Vec<String>,
}

impl HookConfig {
    /// No hooks, the defaults otherwise.
    pub fn off() -> Self {
        HookConfig {
            hook_rooms: "*".into(),
            hook_timeout: Duration::from_secs(3),
            hook_concurrency: 64,
            hook_headers: vec!["cookie".into(), "authorization".into()],
            ..HookConfig::default()
        }
    }
}

impl Config {
    /// A configuration for tests and embedding: a free loopback port, the memory store,
    /// no static files.
    pub fn for_tests() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            static_dir: PathBuf::from("dist"),
            log_level: "warn".into(),
            max_message_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            store: "memory".into(),
            data_dir: PathBuf::from("tether-data"),
            history_messages: 10_000,
            history_age: Duration::from_secs(7 * 24 * 3600),
            history_bytes: 1 << 30,
            dedupe_window: Duration::from_secs(600),
            auth_secret: None,
            api_key: None,
            allowed_origins: Vec::new(),
            max_connections_per_ip: 256,
            max_rooms: 32,
            max_members: 10_000,
            room_creations: 120,
            max_body_bytes: 16 * 1024,
            publish_rate: 20,
            state_rate: 30,
            publish_burst: 40,
            presence_tick: Duration::from_millis(200),
            presence_limit: 200,
            send_queue: 1024,
            queued_bytes: 256 << 20,
            redis: None,
            token_warning: Duration::from_secs(30),
            dev_token_ttl: Duration::from_secs(600),
            test_endpoints: false,
            hooks: HookConfig::off(),
        }
    }
}

/// Parses `250ms`, `10s`, `2m`, `12h`, `7d` or a bare number of seconds.
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
        "h" => Ok(Duration::from_secs(value * 3600)),
        "d" => Ok(Duration::from_secs(value * 86_400)),
        _ => Err(format!("`{text}`: the unit must be ms, s, m, h or d")),
    }
}

/// Parses a size: bytes, or a number with `k`, `m` or `g` (binary multiples, an
/// optional `b` or `ib` after), e.g. `64k`, `256MB`, `1GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (number, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => lower.split_at(split),
        None => (lower.as_str(), ""),
    };
    let value: u64 = number.parse().map_err(|_| format!("`{text}` is not a size such as 4096, 64k or 1g"))?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return Err(format!("`{text}`: the unit must be k, m or g")),
    };
    value.checked_mul(1 << shift).ok_or_else(|| format!("`{text}` is too big"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("256MB"), Ok(256 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("1t").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999g").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("5y").is_err());
    }
}
