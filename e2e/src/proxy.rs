//! A fault-injecting TCP proxy on tokio.
//!
//! It forwards bytes between a client and the server, and on command adds latency,
//! stalls the path without closing it (a blackhole: what a dead Wi-Fi looks like), resets
//! every connection, or drops bytes. Closing nothing is the point: only heartbeats can
//! tell a blackholed connection from a quiet one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the proxy treats traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Delay every chunk by this much.
    Latency(Duration),
    /// Forward nothing and close nothing.
    Blackhole,
    /// Forward, but drop every n-th chunk.
    DropEvery(usize),
}

/// A proxy in front of one upstream address, or of several tried in order (a failover
/// balancer: each new connection goes to the first that accepts it).
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    resets: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    accepts: watch::Receiver<usize>,
    refuse_upgrades: Arc<std::sync::atomic::AtomicBool>,
    refuse_streams: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::failover(vec![upstream]).await
    }

    /// Starts a proxy that sends each new connection to the first of `upstreams` that
    /// accepts it, as a load balancer does once a node is down.
    pub async fn failover(upstreams: Vec<SocketAddr>) -> FaultProxy {
        let upstreams = Arc::new(upstreams);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, fault_rx) = watch::channel(Fault::Pass);
        let (resets, resets_rx) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let (accepts_tx, accepts) = watch::channel(0usize);
        let refuse_upgrades = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = refuse_upgrades.clone();
        let refuse_streams = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing_streams = refuse_streams.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { break };
                let total = counter.fetch_add(1, Ordering::SeqCst) + 1;
                accepts_tx.send_replace(total);
                let fault = fault_rx.clone();
                let mut resets = resets_rx.clone();
                resets.mark_unchanged();
                let upstreams = upstreams.clone();
                let refuse = Refuse {
                    upgrades: refusing.load(Ordering::SeqCst),
                    streams: refusing_streams.load(Ordering::SeqCst),
                };
                connections.spawn(async move {
                    let mut client = client;
                    // What was read to judge the request is forwarded before the rest.
                    let head = if refuse.upgrades || refuse.streams {
                        match refused(&mut client, refuse).await {
                            Some(head) => head,
                            None => return,
                        }
                    } else {
                        Vec::new()
                    };
                    let Some(mut server) = first_accepting(&upstreams).await else { return };
                    if server.write_all(&head).await.is_err() {
                        return;
                    }
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pump(client_read, server_write, fault.clone()) => {}
                        _ = pump(server_read, client_write, fault) => {}
                        _ = resets.changed() => {}
                    }
                });
            }
        });
        FaultProxy { addr, fault, resets, accepted, accepts, refuse_upgrades, refuse_streams, task }
    }

    /// Answers every request for a Server-Sent Events stream (`GET /rt/sse`) with 403,
    /// as a proxy that mangles `text/event-stream` would fail it.
    pub fn refuse_event_streams(&self, refuse: bool) {
        self.refuse_streams.store(refuse, Ordering::SeqCst);
    }

    /// Answers every WebSocket upgrade request on a new connection with 403 and passes
    /// plain HTTP, as a proxy that strips `Upgrade` does; `false` lets upgrades through
    /// again.
    pub fn refuse_upgrades(&self, refuse: bool) {
        self.refuse_upgrades.store(refuse, Ordering::SeqCst);
    }

    /// Switches how traffic is treated, for existing and new connections alike.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Closes every current connection at once.
    pub fn reset_all(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Whether a new connection arrives within `window`. The proof that a client is *not*
    /// retrying is that this times out.
    pub async fn connection_within(&self, window: std::time::Duration) -> bool {
        let mut accepts = self.accepts.clone();
        accepts.mark_unchanged();
        tokio::time::timeout(window, accepts.changed()).await.is_ok()
    }

    /// `http://` base URL through this proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What the proxy refuses on new connections.
#[derive(Clone, Copy)]
struct Refuse {
    upgrades: bool,
    streams: bool,
}

/// Reads a request head from `client`: a refused request (a WebSocket upgrade, an event
/// stream) is answered with 403 (and `None`); anything else is handed back, to be
/// forwarded.
async fn refused(client: &mut TcpStream, refuse: Refuse) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = client.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let upgrade = refuse.upgrades && text.contains("\r\nupgrade: websocket");
    let stream = refuse.streams && text.starts_with("get /rt/sse");
    if upgrade || stream {
        let refusal = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = client.write_all(refusal.as_bytes()).await;
        return None;
    }
    // One request per connection, so that every request is judged: the server closes
    // the connection after answering, and the browser opens a new one for the next.
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (headers, rest) = head.split_at(end);
    let mut forwarded: Vec<u8> = String::from_utf8_lossy(&headers[..end - 4])
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|line| [line, "\r\n"])
        .collect::<String>()
        .into_bytes();
    forwarded.extend_from_slice(b"Connection: close\r\n\r\n");
    forwarded.extend_from_slice(rest);
    Some(forwarded)
}

/// A connection to the first of `upstreams` that accepts one.
async fn first_accepting(upstreams: &[SocketAddr]) -> Option<TcpStream> {
    for upstream in upstreams {
        if let Ok(stream) = TcpStream::connect(upstream).await {
            return Some(stream);
        }
    }
    None
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction, obeying the current fault.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut chunks = 0usize;
    loop {
        // While blackholed, read nothing: bytes pile up in kernel buffers, nothing closes.
        loop {
            let blackholed = *fault.borrow_and_update() == Fault::Blackhole;
            if !blackholed {
                break;
            }
            if fault.changed().await.is_err() {
                return;
            }
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = fault.changed() => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        chunks += 1;
        let current = *fault.borrow();
        match current {
            Fault::Latency(delay) => tokio::time::sleep(delay).await,
            Fault::DropEvery(every) if every > 0 && chunks % every == 0 => continue,
            // Arrived just as the path died: lost, like the network would lose it.
            Fault::Blackhole => continue,
            _ => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
