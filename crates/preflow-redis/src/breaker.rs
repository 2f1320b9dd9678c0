//! A circuit breaker shared by all operations of one [`RedisStore`](crate::RedisStore).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// When the circuit breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures (timeouts, connection errors) that open the breaker; 0 never
    /// opens it.
    pub failure_threshold: u32,
    /// How long the breaker stays open before one operation probes Redis again.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown: Duration::from_secs(2),
        }
    }
}

impl BreakerConfig {
    /// A breaker that never opens: every operation tries Redis.
    pub const fn disabled() -> Self {
        BreakerConfig {
            failure_threshold: 0,
            cooldown: Duration::ZERO,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    /// Whether an operation may try Redis now. After the cool-down one caller is let
    /// through as a probe and the breaker stays open for the others for another cool-down.
    pub(crate) fn allow(&self) -> bool {
        let Ok(mut open_until) = self.open_until.lock() else {
            return true;
        };
        match *open_until {
            None => true,
            Some(until) => {
                let now = Instant::now();
                if now >= until {
                    *open_until = Some(now + self.config.cooldown);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Whether the breaker is open (operations are not sent to Redis).
    pub(crate) fn is_open(&self) -> bool {
        self.open_until
            .lock()
            .map(|o| o.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    pub(crate) fn success(&self) {
        if self.failures.swap(0, Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(mut open_until) = self.open_until.lock() {
            if open_until.is_some() {
                tracing::info!("redis answers again: circuit breaker closed");
            }
            *open_until = None;
        }
    }

    pub(crate) fn failure(&self) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let threshold = self.config.failure_threshold;
        if threshold == 0 || failures < threshold {
            return;
        }
        if let Ok(mut open_until) = self.open_until.lock() {
            if open_until.is_none() {
                tracing::warn!(
                    failures,
                    cooldown_ms = self.config.cooldown.as_millis() as u64,
                    "redis failing: circuit breaker open, falling back to local state"
                );
            }
            *open_until = Some(Instant::now() + self.config.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            cooldown: Duration::from_millis(30),
        });
        assert!(b.allow());
        b.failure();
        assert!(b.allow() && !b.is_open());
        b.failure();
        assert!(b.is_open() && !b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one probe after the cool-down");
        assert!(!b.allow(), "only one");
        b.success();
        assert!(b.allow() && !b.is_open());
    }

    #[test]
    fn disabled_never_opens() {
        let b = Breaker::new(BreakerConfig::disabled());
        for _ in 0..100 {
            b.failure();
        }
        assert!(b.allow());
    }
}
