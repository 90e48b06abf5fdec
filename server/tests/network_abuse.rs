//! Abuse below the protocol: peers that stop halfway through a request, a WebSocket
//! frame or a read. Each is let go by a deadline of the server's own (the header
//! timeout, the body timeout, the write stall, the idle timeout), never held forever,
//! and a well-behaved client is served all the while.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures::SinkExt;
use serde_json::{Value, json};
use tether_shared::{ClientFrame, ServerFrame, close};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// Longer than any of the server's deadlines for a peer that stops (5 s for headers,
/// 10 s for a body or a write), with room for a loaded machine.
const LET_GO: Duration = Duration::from_secs(40);

/// A raw connection that sends `bytes` and then nothing more.
async fn stalled(addr: SocketAddr, bytes: &[u8]) -> tokio::net::TcpStream {
    let mut stream = within("connecting", tokio::net::TcpStream::connect(addr)).await.expect("connect");
    within("writing", stream.write_all(bytes)).await.expect("write");
    stream
}

/// The server's `tether_connections` gauge.
async fn open_connections(addr: SocketAddr) -> u64 {
    let (_, _, metrics) = http_get(addr, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tether_connections "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the connections gauge")
}

#[tokio::test]
async fn requests_stopped_halfway_on_every_transport_are_let_go() {
    let server = server().await;
    let addr = server.addr();
    let hello = json!({"type": "hello", "v": 1, "name": "Real"}).to_string();
    let (status, _, body) = http_with(addr, "POST", "/rt/open", &[], &hello).await;
    assert_eq!(status, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    let session = session["session"].as_str().unwrap().to_owned();

    let half_sent = [
        // Nothing at all, not even a request line; the start of HTTP/2's preface.
        String::new(),
        "P".into(),
        "PRI * HTTP/2.0\r\n".into(),
        // Headers never finished: the WebSocket upgrade, the event stream, the long-poll.
        "GET /ws HTTP/1.1\r\nHost: tether\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n".into(),
        format!("GET /rt/sse?session={session} HTTP/1.1\r\nHost: tether\r\n"),
        format!("GET /rt/poll?session={session}&after=0 HTTP/1.1\r\nHost: tether\r\n"),
        // Bodies that stop short of their length: opening a session, sending on one.
        "POST /rt/open HTTP/1.1\r\nHost: tether\r\nContent-Length: 1000\r\n\r\n{\"type\":\"hel".into(),
        format!(
            "POST /rt/send?session={session} HTTP/1.1\r\nHost: tether\r\nContent-Length: 1000\r\n\r\n[{{\"ty"
        ),
    ];
    let mut attack = Vec::new();
    for request in &half_sent {
        attack.push((
            request.lines().next().unwrap_or("(nothing)").to_owned(),
            stalled(addr, request.as_bytes()).await,
        ));
    }
    // While they hang, the server serves others on every transport.
    assert!(pinged_from("127.0.0.2", addr).await, "a WebSocket is served");
    let ping = ClientFrame::Ping { nonce: 9 }.encode();
    let (status, _, _) = http_with(addr, "POST", &format!("/rt/send?session={session}"), &[], &ping).await;
    assert_eq!(status, 204, "a fallback session is served");
    for (what, stream) in &mut attack {
        tokio::time::timeout(LET_GO, closed_by_server(stream))
            .await
            .unwrap_or_else(|_| panic!("`{what}` was held past every deadline"));
    }
    server.stop().await;
}

/// A request whose body stops short of its `Content-Length` is answered, once the body
/// timeout has passed, with the documented timeout answer: `408` `body_timeout` as JSON,
/// on the fallback and the server API alike (not as a call that does not exist).
#[tokio::test]
async fn a_body_stopped_halfway_is_answered_408_body_timeout() {
    let mut config = tether_server::Config::for_tests();
    config.body_timeout = Duration::from_millis(300);
    let (server, requests) = body_cases(config).await;
    let addr = server.addr();
    for (path, headers, start) in requests {
        let request =
            format!("POST {path} HTTP/1.1\r\nHost: tether\r\n{headers}Content-Length: 1000\r\n\r\n{start}");
        let mut stream = stalled(addr, request.as_bytes()).await;
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer after the body timeout"))
            .unwrap();
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{path}: {raw:?}"));
        assert!(head.starts_with("HTTP/1.1 408"), "{path}: {head}\n\n{body}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{path}: {head}");
        let body: Value =
            serde_json::from_str(&dechunk_if(head, body)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(body["error"], "body_timeout", "{path}: {body}");
    }
    server.stop().await;
}

/// A server with an API key and an open fallback session, and for each route that reads
/// a body (`/rt/open`, `/rt/send`, `/api/v1/publish`): its path, its extra headers and
/// the start of a body that the cases here never finish.
async fn body_cases(
    mut config: tether_server::Config,
) -> (Running, [(String, &'static str, &'static str); 3]) {
    config.api_key = Some("key".into());
    let server = server_with(config).await;
    let hello = json!({"type": "hello", "v": 1, "name": "Ada"}).to_string();
    let (status, _, body) = http_with(server.addr(), "POST", "/rt/open", &[], &hello).await;
    assert_eq!(status, 200, "{body}");
    let session: Value = serde_json::from_str(&body).unwrap();
    let session = session["session"].as_str().unwrap().to_owned();
    let requests = [
        ("/rt/open".to_owned(), "", "{\"type\":\"hel"),
        (format!("/rt/send?session={session}"), "", "[{\"ty"),
        ("/api/v1/publish".to_owned(), "Authorization: Bearer key\r\n", "{\"room\":\"r\",\"bo"),
    ];
    (server, requests)
}

/// A request body that is cut off is answered with the documented answer, as JSON, on
/// the fallback and the server API alike: one that ends before its `Content-Length` is
/// `400` `body_incomplete`; a chunked one (malformed here), with or without a
/// `Content-Length` beside it, is `411` `length_required` before any of it is read.
#[tokio::test]
async fn a_body_cut_off_gets_the_documented_answer() {
    let (server, requests) = body_cases(tether_server::Config::for_tests()).await;
    let addr = server.addr();
    for (path, headers, start) in requests {
        let chunked = format!("{:x}\r\n{start}\r\nzz\r\n", start.len());
        for (how, framing, body, answer) in [
            ("cut short", "Content-Length: 1000\r\n", start.to_owned(), ("400", "body_incomplete")),
            (
                "a malformed chunk",
                "Transfer-Encoding: chunked\r\n",
                chunked.clone(),
                ("411", "length_required"),
            ),
            (
                "a malformed chunk with a length",
                "Content-Length: 1000\r\nTransfer-Encoding: chunked\r\n",
                chunked,
                ("411", "length_required"),
            ),
        ] {
            let request = format!("POST {path} HTTP/1.1\r\nHost: tether\r\n{headers}{framing}\r\n{body}");
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.write_all(request.as_bytes()).await.expect("write");
            stream.shutdown().await.expect("end the request side");
            let mut raw = Vec::new();
            tokio::time::timeout(PATIENCE, tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw))
                .await
                .unwrap_or_else(|_| panic!("{path}, {how}: no answer"))
                .unwrap();
            let raw = String::from_utf8_lossy(&raw);
            let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{path}, {how}: {raw:?}"));
            let (status, code) = answer;
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{path}, {how}: {head}\n\n{body}");
            assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{path}: {head}");
            let body: Value = serde_json::from_str(&dechunk_if(head, body))
                .unwrap_or_else(|e| panic!("{path}, {how}: {e}"));
            assert_eq!(body["error"], code, "{path}, {how}: {body}");
        }
    }
    server.stop().await;
}

/// A body as sent: chunked ones decoded.
fn dechunk_if(head: &str, body: &str) -> String {
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    }
}

#[tokio::test]
async fn a_websocket_frame_stopped_halfway_ends_with_the_idle_timeout() {
    let mut config = tether_server::Config::for_tests();
    config.idle_timeout = Duration::from_secs(2);
    let server = server_with(config).await;
    let (mut stuck, _, _) = hello(server.addr(), "Stuck").await;
    join(&mut stuck, "r", None).await;
    // A masked text frame that says 1,000 bytes follow, then 10 of them.
    let mut partial = vec![0x81, 0xFE, 0x03, 0xE8, 1, 2, 3, 4];
    partial.extend_from_slice(b"{\"type\":\"p");
    match stuck.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => {
            within("writing", tcp.write_all(&partial)).await.unwrap()
        }
        _ => unreachable!("plain TCP"),
    }
    // Others in its room chat on meanwhile.
    let mut other = member(server.addr(), "Other", "r").await;
    assert_eq!(publish(&mut other, "r", "m1", json!("hi")).await.0, 1);
    // The half frame is not a sign of life: the connection ends like a silent one.
    assert_eq!(expect_close(&mut stuck).await.0, close::IDLE_TIMEOUT);
    // (A fresh member: `other` has been silent for about as long.)
    let mut later = member(server.addr(), "Later", "r").await;
    assert_eq!(publish(&mut later, "r", "m2", json!("still here")).await.0, 2);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_let_go_and_does_not_hold_the_shutdown() {
    let server = server().await;
    let addr = server.addr();
    // A small receive window, so the server's writes stall soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = within("connecting", socket.connect(addr)).await.unwrap();
    let (sloth, _) = within(
        "the handshake",
        tokio_tungstenite::client_async(
            format!("ws://{addr}/ws"),
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        ),
    )
    .await
    .unwrap();
    let (mut write, read) = futures::StreamExt::split(sloth);
    // It asks for 9 MB of echoes and reads none of them. The answers are the server's
    // own writes on this connection, not a queue the slow-consumer limit would watch.
    let body = json!("z".repeat(60_000));
    let asking = tokio::spawn(async move {
        for _ in 0..150 {
            let echo = ClientFrame::Echo { body: body.clone() }.encode();
            if write.send(Message::text(echo)).await.is_err() {
                break;
            }
        }
        write
    });
    // While the server's write to it is stuck, a well-behaved client is served.
    let (mut good, _, _) = hello(addr, "Good").await;
    send(&mut good, &ClientFrame::Ping { nonce: 1 }).await;
    assert_eq!(next_frame(&mut good).await, ServerFrame::Pong { nonce: 1 });
    // The stuck write fails after the write stall, which ends the sloth's connection:
    // only the good client's is left open.
    tokio::time::timeout(LET_GO, async {
        while open_connections(addr).await > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the connection that never reads was let go");
    // And a shutdown is not held by it.
    tokio::time::timeout(LET_GO, server.stop()).await.expect("the server stops");
    drop((asking, read));
}

/// A client that is slow to read what it asked for (here a replay of several
/// megabytes, read through a small receive buffer) and sent frames after one that ended
/// the connection (text that is not UTF-8) must still get its close frame. The server
/// cannot read those frames as frames any more; if it let go of the socket over them,
/// TCP would reset the connection and throw away the end of the replay and the close
/// still queued for the client. It reads them away until the client closes instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_over_frames_sent_after_it_reaches_a_slow_reader() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    const REPLAYED: u32 = 500;
    let server = server_with(unthrottled()).await;
    let addr = server.addr();
    let (mut writer, _, _) = hello(addr, "Writer").await;
    join(&mut writer, "big", None).await;
    let page = "x".repeat(15_000);
    for n in 0..REPLAYED {
        publish(&mut writer, "big", &format!("m{n}"), json!(page)).await;
    }

    // A receive buffer of a few KB: most of the 7.5 MB replay waits in the server's
    // send buffer while this client reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let stream = within("connecting", socket.connect(addr)).await.expect("connect");
    let (mut slow, _) =
        within("the handshake", tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream))
            .await
            .expect("upgrade");
    let hello = ClientFrame::Hello { v: 1, token: None, name: Some("Slow".into()), resume_token: None };
    let join = ClientFrame::Join { room: "big".into(), since: None, history: Some(REPLAYED) };
    let not_utf8 = Frame::message(&b"{\"type\":\"ping\",\"nonce\":\xff}"[..], OpCode::Data(Data::Text), true);
    for message in [
        Message::text(hello.encode()),
        Message::text(join.encode()),
        Message::Frame(not_utf8),
        // More than the server reads at once: most of it is still in the kernel when
        // the server has read the frame before it.
        Message::text("x".repeat(60_000)),
    ] {
        within("sending", slow.feed(message)).await.expect("send");
    }
    within("sending", slow.flush()).await.expect("send");

    let mut replayed = 0;
    let closed = loop {
        match tokio::time::timeout(LET_GO, futures::StreamExt::next(&mut slow)).await.expect("an answer") {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerFrame::Message { .. }) = ServerFrame::decode(&text) {
                    replayed += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("the connection failed after {replayed} replayed messages: {error}"),
            None => panic!("the connection ended without a close after {replayed} replayed messages"),
        }
    };
    assert_eq!(closed, Some(close::INVALID_PAYLOAD));
    assert_eq!(replayed, REPLAYED, "the whole replay came before the close");
    drop(slow);
    server.stop().await;
}
