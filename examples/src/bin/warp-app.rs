//! `warp-app`: a warp app with its own sign-in, and Tether under `/live`.

use tether_examples::Sessions;
use tether_examples::warp_app::routes;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = Sessions::default();
    let tether = tether_examples::tether(&sessions).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("the warp app is at http://{}/ (Tether under /live)", listener.local_addr()?);
    warp::serve(routes(sessions, &tether))
        .incoming(listener)
        .graceful(tether_server::wait_for_signal())
        .run()
        .await;
    tether.stop().await;
    Ok(())
}
