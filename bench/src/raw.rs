//! A minimal WebSocket client for the subscribers of the fan-out ramp.
//!
//! A thousand subscribers on one load-generator core must read millions of frames a
//! second, more than a full client library leaves room for (a `Message` and a UTF-8
//! check per frame, a task wake-up per read). This one reads straight from the socket
//! into one buffer and hands out each text payload as a byte slice, in place. It
//! speaks just enough of RFC 6455 for a benchmark: the upgrade, unmasked server
//! frames (no fragmentation, which none of the servers under test use for these
//! small frames), masked client text frames, pings and close.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One WebSocket connection read frame by frame from a buffer.
pub struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Where the unread bytes start.
    start: usize,
    /// Where they end.
    end: usize,
}

const BUFFER: usize = 64 * 1024;

impl RawClient {
    /// Connects and upgrades to a WebSocket on `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> std::io::Result<RawClient> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut client = RawClient { stream, buffer: vec![0; BUFFER], start: 0, end: 0 };
        loop {
            if let Some(at) = find(&client.buffer[..client.end], b"\r\n\r\n") {
                if !client.buffer.starts_with(b"HTTP/1.1 101") {
                    let head = String::from_utf8_lossy(&client.buffer[..at]).into_owned();
                    return Err(std::io::Error::other(format!("upgrade refused: {head}")));
                }
                client.start = at + 4;
                return Ok(client);
            }
            if client.fill().await? == 0 {
                return Err(std::io::Error::other("closed during the upgrade"));
            }
        }
    }

    /// Sends one text frame (masked, as a client must; the zero key leaves it as is).
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.send(0x1, text.as_bytes()).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await
    }

    /// The next text (or binary) payload; `None` once the server closed. Pings are
    /// answered on the way.
    pub async fn next(&mut self) -> Option<&[u8]> {
        let (from, to) = loop {
            match self.parse() {
                Parsed::Frame { opcode, from, to } => {
                    self.start = to;
                    match opcode {
                        0x1 | 0x2 => break (from, to),
                        0x8 => return None,
                        0x9 => {
                            let ping = self.buffer[from..to].to_vec();
                            self.send(0xA, &ping).await.ok()?;
                        }
                        _ => {}
                    }
                }
                Parsed::Incomplete(needed) => {
                    if self.start > 0 {
                        self.buffer.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    }
                    if needed > self.buffer.len() {
                        self.buffer.resize(needed, 0);
                    }
                    if self.fill().await.ok()? == 0 {
                        return None;
                    }
                }
            }
        };
        Some(&self.buffer[from..to])
    }

    /// Reads the next text payload containing `needle`, as a string.
    pub async fn wait_for(&mut self, needle: &str) -> std::io::Result<String> {
        loop {
            match self.next().await {
                Some(payload) if find(payload, needle.as_bytes()).is_some() => {
                    return Ok(String::from_utf8_lossy(payload).into_owned());
                }
                Some(_) => continue,
                None => return Err(std::io::Error::other(format!("closed while waiting for {needle}"))),
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let read = self.stream.read(&mut self.buffer[self.end..]).await?;
        self.end += read;
        Ok(read)
    }

    fn parse(&self) -> Parsed {
        let bytes = &self.buffer[self.start..self.end];
        if bytes.len() < 2 {
            return Parsed::Incomplete(2);
        }
        let opcode = bytes[0] & 0x0F;
        let (length, header) = match bytes[1] & 0x7F {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => {
                (u64::from_be_bytes(bytes[2..10].try_into().expect("eight bytes")) as usize, 10)
            }
            126 | 127 => return Parsed::Incomplete(10),
            n => (n as usize, 2),
        };
        if bytes.len() < header + length {
            return Parsed::Incomplete(header + length);
        }
        let from = self.start + header;
        Parsed::Frame { opcode, from, to: from + length }
    }
}

enum Parsed {
    Frame {
        opcode: u8,
        from: usize,
        to: usize,
    },
    /// More bytes are needed: at least this many from the frame's start.
    Incomplete(usize),
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The stamp `"t":N` in a payload, if it has one.
pub fn stamp(payload: &[u8]) -> Option<u64> {
    let at = find(payload, br#""t":"#)? + 4;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    let mut any = false;
    for digit in digits {
        value = value * 10 + u64::from(digit - b'0');
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_from_any_frame_shape() {
        assert_eq!(stamp(br#"{"type":"message","body":{"t":1234},"ts":9}"#), Some(1234));
        assert_eq!(stamp(br#"42["message",{"t":77}]"#), Some(77));
        assert_eq!(stamp(br#"{"type":"ack"}"#), None);
    }
}
