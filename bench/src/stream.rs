//! The demo app in headless Chromium while a room streams: how long its frames take.
//!
//! The release server serves the built bundle (`dist/`); one Chromium page opens the
//! chat in `#general` and records every `requestAnimationFrame` time stamp, while a
//! native publisher sends an open-loop stream into the room. A long frame means the
//! main thread was busy (decoding, applying the batch, Yew's diff, the DOM), so the
//! intervals between frames are the frame times a person would feel.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tether_e2e::{Browser, Page};
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{Mode, Peer};

/// Stream rates, messages per second; 0 measures the idle page, for comparison.
pub const RATES: [u32; 4] = [0, 1_000, 2_000, 5_000];

/// Frame times at one stream rate.
pub struct FrameTimes {
    /// Messages per second sent into the room.
    pub rate: u32,
    /// Frames recorded while the stream ran and the page caught up.
    pub frames: usize,
    /// Median frame time.
    pub p50: Duration,
    /// 95th percentile frame time.
    pub p95: Duration,
    /// Longest frame.
    pub max: Duration,
}

/// Why the workload could not run here, if it can't.
pub fn missing() -> Option<String> {
    let dist = tether_e2e::root().join("dist/index.html");
    if !dist.is_file() {
        return Some(format!("{} is missing (run `cargo xtask dist`)", dist.display()));
    }
    if !std::path::Path::new("/usr/bin/chromedriver").is_file() {
        return Some("chromedriver is missing (run `cargo xtask setup --browser`)".into());
    }
    None
}

/// Streams into `#general` at each rate for `seconds` and reads the page's frame times.
pub async fn run(seconds: u64) -> Result<Vec<FrameTimes>, String> {
    if let Some(why) = missing() {
        return Err(why);
    }
    let dist = tether_e2e::root().join("dist");
    let dist = dist.display().to_string();
    let server = Peer::Tether.start(Mode::Broadcast, &["--static-dir", &dist])?;
    let browser = Browser::start().await;
    let page = browser.page("Viewer").await;
    let measured = measure(&page, server.addr, seconds).await;
    // Ending the session ends Chromium; dropping the driver alone would leave it running.
    page.close().await;
    measured
}

async fn measure(page: &Page, addr: std::net::SocketAddr, seconds: u64) -> Result<Vec<FrameTimes>, String> {
    page.open(&format!("http://{addr}")).await;
    let patience = Duration::from_secs(30);
    page.until("connected", patience, "document.querySelector('.indicator.connected')").await;
    page.until("in the room", patience, "document.querySelector('.presence .member')").await;
    page.js("window.__frames = null;
         const record = t => { if (window.__frames) window.__frames.push(t); requestAnimationFrame(record); };
         requestAnimationFrame(record);")
        .await;

    let mut publisher = Peer::Tether.subscriber(addr, "general").await;
    let mut results = Vec::new();
    for rate in RATES {
        page.js("window.__frames = [];").await;
        if rate == 0 {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
        } else {
            let last = stream(&mut publisher, rate, seconds).await;
            let shown = format!(
                "[...document.querySelectorAll('.message .text')].some(e => e.textContent === '{last}')"
            );
            page.until(&format!("the last message at {rate}/s"), patience, &shown).await;
        }
        let stamps = page.js("const f = window.__frames; window.__frames = null; return f;").await;
        let stamps: Vec<f64> = match stamps {
            Value::Array(items) => items.iter().filter_map(Value::as_f64).collect(),
            other => return Err(format!("the page gave no frame times: {other}")),
        };
        let mut intervals: Vec<f64> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
        intervals.sort_by(f64::total_cmp);
        if intervals.is_empty() {
            return Err(format!("no frames recorded at {rate}/s"));
        }
        let at = |q: f64| {
            let index = ((intervals.len() - 1) as f64 * q).round() as usize;
            Duration::from_secs_f64(intervals[index] / 1000.0)
        };
        results.push(FrameTimes { rate, frames: intervals.len(), p50: at(0.5), p95: at(0.95), max: at(1.0) });
    }
    Ok(results)
}

/// Publishes `rate` messages a second for `seconds` (open loop, in 1 ms steps) and
/// returns the text of the last one. Acks and echoes are read as they come.
async fn stream(publisher: &mut crate::peer::Client, rate: u32, seconds: u64) -> String {
    let total = rate as u64 * seconds;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let text = |n: u64| format!("stream {rate} #{n}");
    while sent < total {
        tokio::select! {
            _ = ticks.tick() => {
                let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                while sent < due {
                    let frame = format!(
                        r#"{{"type":"publish","id":"s{rate}-{sent}","room":"general","body":{{"text":"{}"}}}}"#,
                        text(sent)
                    );
                    publisher.feed(Message::text(frame)).await.expect("publish");
                    sent += 1;
                }
                publisher.flush().await.expect("flush");
            }
            incoming = publisher.next() => {
                if !matches!(incoming, Some(Ok(_))) {
                    panic!("the publisher was cut off: {incoming:?}");
                }
            }
        }
    }
    text(total - 1)
}
