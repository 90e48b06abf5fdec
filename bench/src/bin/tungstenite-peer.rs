//! The bare tokio-tungstenite server the benchmarks compare Tether with: the limit a
//! Rust WebSocket server reaches when it does nothing but move frames.
//!
//! `tungstenite-peer echo` answers every text message with itself;
//! `tungstenite-peer broadcast` sends every text message to every connection. It prints
//! `listening on ADDR` once bound (port 0 picks a free port).

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Frames a broadcast receiver may fall behind before it skips (and the bench sees a loss).
const BACKLOG: usize = 4096;

#[tokio::main]
async fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "echo".into());
    let addr: SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:0".into()).parse().expect("an address");
    let listener = TcpListener::bind(addr).await.expect("bind");
    println!("listening on {}", listener.local_addr().expect("bound"));
    let (hub, _) = broadcast::channel::<Message>(BACKLOG);
    let hub = Arc::new(hub);
    // Small buffers, as a server holding many idle sockets would choose.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(8192);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        let broadcast = mode == "broadcast";
        tokio::spawn(async move {
            let Ok(socket) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
                return;
            };
            if broadcast { relay(socket, &hub).await } else { echo(socket).await }
        });
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn echo(mut socket: Socket) {
    while let Some(Ok(message)) = socket.next().await {
        if message.is_text() && socket.send(message).await.is_err() {
            return;
        }
    }
}

async fn relay(socket: Socket, hub: &broadcast::Sender<Message>) {
    let mut feed = hub.subscribe();
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(message)) if message.is_text() => { let _ = hub.send(message); }
                Some(Ok(_)) => {}
                _ => return,
            },
            outgoing = feed.recv() => {
                let Ok(first) = outgoing else {
                    if matches!(outgoing, Err(broadcast::error::RecvError::Closed)) { return }
                    continue;
                };
                if sink.feed(first).await.is_err() { return }
                // Everything else already waiting goes out with one flush.
                while let Ok(more) = feed.try_recv() {
                    if sink.feed(more).await.is_err() { return }
                }
                if sink.flush().await.is_err() { return }
            }
        }
    }
}
