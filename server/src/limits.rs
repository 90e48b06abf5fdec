//! The limits a connection lives within: connections per IP address, the frame rate,
//! how many invalid frames are tolerated, and what a publish body may be.
//! `welcome.limits` announces them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Invalid frames tolerated before the connection is closed with 1008.
pub const MAX_STRIKES: u32 = 10;

/// Largest `state` value, in bytes of JSON: a cursor or a selection, not a document.
pub const MAX_STATE_BYTES: usize = 2 * 1024;

/// Why a publish body is refused (both answer `too_large`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefused {
    /// Over `max_body_bytes` as compact JSON.
    #[error("bodies are at most {0} bytes")]
    TooLarge(usize),
    /// Nested deeper than [`tether_shared::frame::MAX_BODY_DEPTH`].
    #[error("bodies nest at most {0} levels of arrays and objects")]
    TooDeep(usize),
}

/// A publish body as it is stored (compact JSON), if it is within `max_bytes` and
/// [`tether_shared::frame::MAX_BODY_DEPTH`]: one rule for the WebSocket, the fallbacks
/// and the server API.
pub fn checked_body(
    body: &serde_json::Value,
    max_bytes: usize,
) -> Result<Box<serde_json::value::RawValue>, BodyRefused> {
    let raw = serde_json::value::to_raw_value(body).expect("a JSON value serialises");
    if raw.get().len() > max_bytes {
        return Err(BodyRefused::TooLarge(max_bytes));
    }
    let max_depth = tether_shared::frame::MAX_BODY_DEPTH;
    if tether_shared::frame::nesting(body) > max_depth {
        return Err(BodyRefused::TooDeep(max_depth));
    }
    Ok(raw)
}

/// A body already encoded (an app's handler's answer, encoded straight from its type),
/// held to the same rule as [`checked_body`].
pub fn checked_raw(
    raw: Box<serde_json::value::RawValue>,
    max_bytes: usize,
) -> Result<Box<serde_json::value::RawValue>, BodyRefused> {
    if raw.get().len() > max_bytes {
        return Err(BodyRefused::TooLarge(max_bytes));
    }
    let max_depth = tether_shared::frame::MAX_BODY_DEPTH;
    if raw_nesting(raw.get()) > max_depth {
        return Err(BodyRefused::TooDeep(max_depth));
    }
    Ok(raw)
}

/// How deep arrays and objects nest in valid compact JSON, read from its text: what
/// [`tether_shared::frame::nesting`] says of the value, without building it.
fn raw_nesting(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Frames per second per connection, of any kind, at the least.
const FRAMES_PER_SEC: u32 = 100;

/// A connection's frame rate and burst: [`FRAMES_PER_SEC`], raised to twice the publish
/// rate when that is higher, since every publish is a frame and the frame limit must
/// never undercut the publish limit.
pub fn frame_rate(config: &crate::Config) -> (u32, u32) {
    (
        FRAMES_PER_SEC.max(config.publish_rate.saturating_mul(2)),
        (FRAMES_PER_SEC * 2).max(config.publish_burst.saturating_mul(2)),
    )
}

/// Counts open connections per address.
pub struct IpSlots {
    counts: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One connection's claim on its address's quota, released on drop.
pub struct IpSlot {
    slots: Arc<IpSlots>,
    ip: IpAddr,
}

impl IpSlots {
    /// At most `max` connections per address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(IpSlots { counts: Mutex::new(HashMap::new()), max })
    }

    /// Claims a slot for `ip`, or `None` when its quota is used up.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self.counts.lock().expect("ip slots lock");
        let count = counts.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot { slots: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().expect("ip slots lock");
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn nesting_read_from_text_is_the_values_nesting() {
        for text in [
            r#"1"#,
            r#"[]"#,
            r#"[[1],{"a":[2]}]"#,
            r#"{"s":"[[[not nesting]]]","e":"\"[["}"#,
            r#"[{"a":{"b":[[]]}}]"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(raw_nesting(text), tether_shared::frame::nesting(&value), "{text}");
        }
    }
    use super::*;

    #[test]
    fn slots_are_capped_and_released() {
        let slots = IpSlots::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = slots.acquire(ip).unwrap();
        let _b = slots.acquire(ip).unwrap();
        assert!(slots.acquire(ip).is_none());
        assert!(slots.acquire("10.0.0.1".parse().unwrap()).is_some(), "other addresses are separate");
        drop(a);
        assert!(slots.acquire(ip).is_some());
    }
}
