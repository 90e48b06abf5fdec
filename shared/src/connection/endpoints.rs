//! Where the core connects: one address, or several addresses of the same service.

/// The addresses a connection may use, and the one it uses now.
///
/// A fleet of clients given the same list must not all land on its first entry, so each
/// starts at an entry drawn from its own seed. An attempt that fails moves to the next
/// entry; a connection that was welcomed and then lost tries its own address once more
/// first (a blip or a redeploy of that node is the common case), and moves on only if
/// that attempt fails too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoints {
    list: Vec<String>,
    current: usize,
}

impl Endpoints {
    /// `list` in its order, starting at an entry chosen by `seed`.
    pub(super) fn new(list: Vec<String>, seed: u64) -> Endpoints {
        let current = match list.len() {
            0 => 0,
            len => (seed % len as u64) as usize,
        };
        Endpoints { list, current }
    }

    /// The address the next (or current) attempt uses; empty when none was given, which
    /// drivers report as an invalid address.
    pub(super) fn current(&self) -> &str {
        self.list.get(self.current).map_or("", String::as_str)
    }

    /// Moves on to the next address (wrapping round).
    pub(super) fn advance(&mut self) {
        if !self.list.is_empty() {
            self.current = (self.current + 1) % self.list.len();
        }
    }

    /// Forgets the current address, which can never work, and moves to the next one.
    /// Returns false when it was the last.
    pub(super) fn drop_current(&mut self) -> bool {
        if self.list.len() <= 1 {
            return false;
        }
        self.list.remove(self.current);
        self.current %= self.list.len();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(seed: u64) -> Endpoints {
        Endpoints::new(vec!["ws://a/ws".into(), "ws://b/ws".into(), "ws://c/ws".into()], seed)
    }

    #[test]
    fn seeds_spread_the_first_choice_over_the_list() {
        let firsts: std::collections::BTreeSet<String> =
            (0..30).map(|seed| three(seed).current().to_owned()).collect();
        assert_eq!(firsts.len(), 3);
    }

    #[test]
    fn advancing_visits_every_address_in_turn() {
        let mut endpoints = three(1);
        let mut seen = vec![endpoints.current().to_owned()];
        for _ in 0..3 {
            endpoints.advance();
            seen.push(endpoints.current().to_owned());
        }
        assert_eq!(seen, ["ws://b/ws", "ws://c/ws", "ws://a/ws", "ws://b/ws"]);
    }

    #[test]
    fn an_impossible_address_is_dropped_unless_it_is_the_last() {
        let mut endpoints = three(2);
        assert_eq!(endpoints.current(), "ws://c/ws");
        assert!(endpoints.drop_current());
        assert_eq!(endpoints.current(), "ws://a/ws");
        assert!(endpoints.drop_current());
        assert_eq!(endpoints.current(), "ws://b/ws");
        assert!(!endpoints.drop_current());
        assert_eq!(endpoints.current(), "ws://b/ws");
        assert_eq!(Endpoints::new(Vec::new(), 7).current(), "");
    }
}
