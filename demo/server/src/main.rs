//! `tether-demo-server`: the demo's server. It takes every flag `tether-server` takes
//! (see `--help`) and adds the demo's channels: the chat in every room, and the
//! planning-poker tables in `poker:…` rooms.

use tether_demo_server::{chat, poker};
use tether_server::Server;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tether_server::cli::run(|config| Server::new(config).channel(chat::handlers()).channel(poker::handlers()))
        .await
}
