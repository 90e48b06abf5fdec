//! `axum-app`: an axum app with its own sign-in, and Tether under `/live`.

use tether_examples::Sessions;
use tether_examples::axum_app::{App, router};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions = Sessions::default();
    let tether = tether_examples::tether(&sessions).await?;
    let app = router(App { sessions, api: tether.api() }, &tether);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("the axum app is at http://{}/ (Tether under /live)", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(tether_server::wait_for_signal()).await?;
    tether.stop().await;
    Ok(())
}
