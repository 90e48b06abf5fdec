//! Connections per IP address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
