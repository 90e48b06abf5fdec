//! Latency histograms, in microseconds, shared by the workloads that time messages.

use hdrhistogram::Histogram;

/// An empty histogram from 1 µs to 2 minutes at three significant digits; histograms
/// made here can always be added together.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

/// Publishes `total` messages into `room` at `rate` per second, each stamped with the
/// microseconds since `origin` in its body's `t`, so that subscribers can tell how long
/// it took to reach them. What the publisher receives meanwhile is read and dropped.
pub async fn publish_stamped(
    writer: &mut crate::peer::Client,
    room: &str,
    rate: u64,
    total: u64,
    origin: std::time::Instant,
) {
    use futures::{SinkExt, StreamExt};
    let pace = std::time::Duration::from_micros(1_000_000 / rate);
    let mut next = tokio::time::Instant::now();
    for n in 0..total {
        let t = origin.elapsed().as_micros() as u64;
        let frame = format!(r#"{{"type":"publish","id":"s{n}","room":"{room}","body":{{"t":{t}}}}}"#);
        writer.send(tokio_tungstenite::tungstenite::Message::text(frame)).await.expect("publish");
        while let Ok(Some(_)) = tokio::time::timeout(std::time::Duration::ZERO, writer.next()).await {}
        next += pace;
        tokio::time::sleep_until(next).await;
    }
}
