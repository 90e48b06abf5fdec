//! Tether inside an app's own binary: the server runs in-process, and the app pushes
//! into a room through the same calls the HTTP API offers, with no key and no HTTP.
//!
//! ```sh
//! cargo run -p tether-server --example embedded
//! ```
//!
//! Open the printed address (after `cargo xtask dist`, for the demo app) and join the
//! room `prices`: a tick arrives every second, stored and numbered like any message.

use std::time::Duration;

use serde_json::json;
use tether_server::api::calls::PublishRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tether_server::Config::for_tests();
    config.listen = ([127, 0, 0, 1], 8090).into();
    let running = tether_server::start(config).await?;
    println!("Tether is running at http://{}/", running.addr());
    let api = running.api();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    for tick in 0u64.. {
        tokio::select! {
            _ = ticks.tick() => {}
            () = tether_server::wait_for_signal() => break,
        }
        let price = 100.0 + (tick as f64 / 5.0).sin() * 3.0;
        let request = PublishRequest {
            room: "prices".into(),
            // An id per tick: a tick published twice (a retry after a hiccup) is stored once.
            id: Some(format!("tick-{tick}")),
            body: json!({ "symbol": "TTHR", "price": (price * 100.0).round() / 100.0 }),
            from: None,
        };
        match api.publish(request).await {
            Ok(published) => println!("tick {tick} stored as #{} in {}", published.seq, published.room),
            Err(error) => eprintln!("tick {tick} not stored: {error} ({})", error.code()),
        }
        let members = api.presence("prices", None, None).await.map(|page| page.count).unwrap_or(0);
        if tick % 10 == 0 {
            let rooms = api.rooms().await.map(|rooms| rooms.len()).unwrap_or(0);
            println!("{members} watching; {rooms} rooms with members");
        }
    }
    running.stop().await;
    Ok(())
}
