//! A small HTTP/1.1 client over a plain TCP stream, so that requests can be malformed
//! in ways a proper client would refuse to send: any method, any header, no length.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, or anything.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether to send `Content-Length`.
    pub length: bool,
}

impl Request {
    /// A request with a body and its length.
    pub fn new(method: &str, target: &str, body: impl Into<Vec<u8>>) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: body.into(),
            length: true,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An answer.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head, lowercased.
    pub head: String,
    /// The body, chunked encoding undone (as far as it came, for a stream cut short).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the head says the body is JSON.
    pub fn is_json(&self) -> bool {
        self.head.contains("content-type: application/json")
    }
}

/// Sends `request` to `addr` and reads the answer for at most `wait`; an error when no
/// whole head arrived in time.
pub async fn send(addr: SocketAddr, request: &Request, wait: Duration) -> Result<Response, String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let mut head =
        format!("{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n", request.method, request.target);
    if request.length {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&request.body);
    // A server may answer (413, 411) before it read the whole body, and close.
    let _ = stream.write_all(&bytes).await;
    let mut raw = Vec::new();
    let cut = match tokio::time::timeout(wait, stream.read_to_end(&mut raw)).await {
        Ok(Ok(_)) => false,
        Ok(Err(_)) => false,
        Err(_) => true,
    };
    parse(&raw).ok_or_else(|| {
        if cut {
            format!("no answer within {wait:?} to {} {}", request.method, request.target)
        } else {
            format!(
                "an answer that is not HTTP to {} {}: {:?}",
                request.method,
                request.target,
                String::from_utf8_lossy(&raw)
            )
        }
    })
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let rest = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_vec() };
    Some(Response { status, head, body })
}

/// Undoes chunked encoding, as far as the bytes go.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size else { break };
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(rest.len());
        body.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
    body
}
