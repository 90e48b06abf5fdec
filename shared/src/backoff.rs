//! Reconnect delays: exponential, capped, and jittered so that a thousand clients
//! dropped by one server restart do not all come back in the same millisecond.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How much randomness to add to each delay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Exactly the exponential delay. Predictable, but herds.
    None,
    /// Uniform in `[0, delay]` ("full jitter"): spreads a herd best.
    Full,
    /// Uniform in `delay × [1 − p, 1 + p]`, then capped at the maximum; `p` in percent,
    /// at most 100.
    Percent(u8),
}

/// Backoff settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Growth per attempt; 2.0 doubles.
    pub multiplier: f64,
    /// No delay exceeds this, jitter included.
    pub max: Duration,
    /// Give up after this many retries; `None` retries forever.
    pub max_attempts: Option<u32>,
    /// Randomness added to each delay.
    pub jitter: Jitter,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            max_attempts: None,
            jitter: Jitter::Percent(20),
        }
    }
}

/// Computes delays; owns its random source so runs are reproducible from a seed.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    rng: fastrand::Rng,
    attempt: u32,
}

impl Backoff {
    /// A backoff with `config`, drawing jitter from a generator seeded with `seed`.
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Backoff { config, rng: fastrand::Rng::with_seed(seed), attempt: 0 }
    }

    /// The settings it was made with (the retry limit is read from here for "attempt k of N").
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// The delay before retry number `attempt` (1 for the first retry), jitter applied.
    pub fn next_delay(&mut self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        let max = self.config.max.as_secs_f64();
        let jittered = match self.config.jitter {
            Jitter::None => base,
            Jitter::Full => base * self.rng.f64(),
            Jitter::Percent(percent) => {
                let spread = f64::from(percent.min(100)) / 100.0;
                base * (1.0 - spread + 2.0 * spread * self.rng.f64())
            }
        };
        Duration::from_secs_f64(jittered.clamp(0.0, max))
    }

    /// The delay before retry `attempt` without jitter, capped at the maximum.
    pub fn base_delay(&self, attempt: u32) -> f64 {
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let grown = self.config.initial.as_secs_f64() * self.config.multiplier.max(1.0).powi(exponent);
        grown.min(self.config.max.as_secs_f64())
    }

    /// Whether retry number `attempt` (1 for the first) is allowed.
    pub fn should_retry(&self, attempt: u32) -> bool {
        self.config.max_attempts.is_none_or(|max| attempt <= max)
    }

    /// Counts one more failed attempt and returns its delay, or `None` when attempts are
    /// exhausted.
    pub fn next_retry(&mut self) -> Option<(u32, Duration)> {
        let attempt = self.attempt.saturating_add(1);
        if !self.should_retry(attempt) {
            return None;
        }
        self.attempt = attempt;
        Some((attempt, self.next_delay(attempt)))
    }

    /// The number of failed attempts since the last success or reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Forgets past failures: the next delay is the initial one again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(1),
            max_attempts: Some(5),
            jitter: Jitter::None,
        }
    }

    #[test]
    fn doubles_then_caps() {
        let mut backoff = Backoff::new(plain(), 1);
        let delays: Vec<u64> = (1..=6).map(|a| backoff.next_delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn stops_after_max_attempts_and_reset_starts_over() {
        let mut backoff = Backoff::new(plain(), 1);
        let attempts: Vec<u32> = std::iter::from_fn(|| backoff.next_retry().map(|(a, _)| a)).collect();
        assert_eq!(attempts, [1, 2, 3, 4, 5]);
        assert!(!backoff.should_retry(6));
        backoff.reset();
        assert_eq!(backoff.next_retry(), Some((1, Duration::from_millis(100))));
    }

    #[test]
    fn unlimited_attempts_keep_going() {
        let config = BackoffConfig { max_attempts: None, ..plain() };
        let backoff = Backoff::new(config, 1);
        assert!(backoff.should_retry(1_000_000));
    }

    #[test]
    fn same_seed_same_delays() {
        let config = BackoffConfig { jitter: Jitter::Full, ..plain() };
        let mut a = Backoff::new(config.clone(), 42);
        let mut b = Backoff::new(config, 42);
        for attempt in 1..20 {
            assert_eq!(a.next_delay(attempt), b.next_delay(attempt));
        }
    }

    #[test]
    fn percent_jitter_stays_in_its_band() {
        let config = BackoffConfig { jitter: Jitter::Percent(25), max: Duration::from_secs(60), ..plain() };
        let mut backoff = Backoff::new(config, 7);
        for _ in 0..1000 {
            let delay = backoff.next_delay(3).as_secs_f64();
            assert!((0.3..=0.5).contains(&delay), "{delay}");
        }
    }
}
