//! Idle memory: bytes of server RSS per welcomed, joined, silent connection, for rooms
//! of several sizes (it must not grow with the room), beside the peers' bare sockets.

use std::time::Duration;

use crate::peer::{Client, Mode, Peer};

/// Bytes per idle connection of `peer`, with `connections` spread over rooms of
/// `room_size` members (rooms mean nothing to the bare peers).
pub async fn per_connection(peer: Peer, connections: usize, room_size: usize) -> Result<f64, String> {
    let server = peer.start(Mode::Echo, &[])?;
    // Warm the allocator and the runtime with a few connections first.
    let mut warm: Vec<Client> = Vec::new();
    for i in 0..10 {
        warm.push(peer.subscriber(server.addr, &format!("warm-{i}")).await);
    }
    settle().await;
    let before = server.rss();
    let mut clients = Vec::with_capacity(connections);
    for i in 0..connections {
        clients.push(peer.subscriber(server.addr, &format!("room-{}", i / room_size.max(1))).await);
    }
    settle().await;
    let after = server.rss();
    drop(clients);
    Ok(after.saturating_sub(before) as f64 / connections as f64)
}

/// Gives the server a moment to finish presence ticks and free handshake buffers.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}
