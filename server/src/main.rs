//! `tether-server`: the binary. See `tether-server --help`. Every room is a plain JSON
//! room; an app with typed channels runs [`tether_server::cli::run`] from a binary of
//! its own (the demo's is `tether-demo-server`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tether_server::cli::run(tether_server::Server::new).await
}
