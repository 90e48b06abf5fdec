//! `mount-server`: Tether mounted at the root of a warp app (`TETHER_MOUNT=warp`, its
//! filter) or an axum app (`TETHER_MOUNT=axum`, its tower service), served by that
//! framework's own server. Takes `tether-server`'s flags. The mount workload measures
//! it beside the binary.

use clap::Parser;
use tether_server::{Config, Server};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    // As the binary's own listener does: accepted sockets inherit TCP_NODELAY (Linux), so
    // the comparison is of the mount, not of Nagle's algorithm.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.set_nodelay(true).expect("nodelay");
    socket.bind(config.listen).expect("the address is free");
    let listener = socket.listen(1024).expect("listening");
    let tether = Server::new(config).build().await.expect("Tether builds");
    let addr = listener.local_addr().expect("bound");
    println!("Tether is running at http://{addr}/");
    match std::env::var("TETHER_MOUNT").as_deref() {
        Ok("axum") => {
            let app = axum::Router::new().fallback_service(tether.service());
            axum::serve(listener, app).await.expect("axum serves");
        }
        _ => warp::serve(tether.filter()).incoming(listener).run().await,
    }
}
