//! Brute-force protection of client authentication (RFC 6749 §2.3.1, §4.3.2).
//!
//! Failed authentications are counted per client id and per source address. Reaching the
//! limit within the window locks that key out; each further lock-out doubles in length up
//! to a ceiling. A success clears the client id's failures (not the address's).

use std::net::IpAddr;

use dashmap::DashMap;

/// Limits of the throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures per client id within `window` that trigger a lock-out.
    pub max_failures_per_client: u32,
    /// Failures per source address within `window` that trigger a lock-out.
    pub max_failures_per_ip: u32,
    /// Window in seconds.
    pub window: u64,
    /// First lock-out in seconds; doubled for each further lock-out.
    pub lockout: u64,
    /// Longest lock-out in seconds.
    pub max_lockout: u64,
    /// Keys tracked before stale entries are purged.
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            max_failures_per_client: 5,
            max_failures_per_ip: 20,
            window: 300,
            lockout: 60,
            max_lockout: 3600,
            max_tracked: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: u32,
    first_failure: u64,
    locked_until: Option<u64>,
    lockouts: u32,
}

/// What the throttle knows about one client id or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleState {
    /// Failures counted in the current window.
    pub failures: u32,
    /// End of the current lock-out, if locked out at the time asked.
    pub locked_until: Option<u64>,
    /// Lock-outs so far.
    pub lockouts: u32,
}

/// Which key is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// The client id.
    Client {
        /// Seconds until the lock-out ends.
        retry_after: u64,
    },
    /// The source address.
    Address {
        /// Seconds until the lock-out ends.
        retry_after: u64,
    },
}

impl Lockout {
    /// Seconds until the lock-out ends.
    pub fn retry_after(self) -> u64 {
        match self {
            Self::Client { retry_after } | Self::Address { retry_after } => retry_after,
        }
    }
}

/// Failure counters per client id and per source address.
#[derive(Debug, Default)]
pub struct Throttle {
    config: ThrottleConfig,
    clients: DashMap<String, Entry>,
    ips: DashMap<IpAddr, Entry>,
}

impl Throttle {
    /// A throttle with these limits.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            clients: DashMap::new(),
            ips: DashMap::new(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Whether a client id or address is locked out at `now`.
    pub fn check(
        &self,
        client_id: Option<&str>,
        ip: Option<IpAddr>,
        now: u64,
    ) -> Result<(), Lockout> {
        if let Some(until) = client_id
            .and_then(|c| self.clients.get(c).and_then(|e| e.locked_until))
            .filter(|&u| u > now)
        {
            return Err(Lockout::Client {
                retry_after: until - now,
            });
        }
        if let Some(until) = ip
            .and_then(|i| self.ips.get(&i).and_then(|e| e.locked_until))
            .filter(|&u| u > now)
        {
            return Err(Lockout::Address {
                retry_after: until - now,
            });
        }
        Ok(())
    }

    fn bump(config: &ThrottleConfig, e: &mut Entry, max: u32, now: u64) {
        if e.failures == 0 || now.saturating_sub(e.first_failure) >= config.window {
            e.failures = 0;
            e.first_failure = now;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= max {
            let factor = 1u64.checked_shl(e.lockouts.min(32)).unwrap_or(u64::MAX);
            let length = config
                .lockout
                .saturating_mul(factor)
                .min(config.max_lockout);
            e.locked_until = Some(now.saturating_add(length));
            e.lockouts = e.lockouts.saturating_add(1);
            e.failures = 0;
        }
    }

    /// Counts one failed authentication (the raw-Basic fallback's extra reading included).
    pub fn record_failure(&self, client_id: Option<&str>, ip: Option<IpAddr>, now: u64) {
        if self.clients.len() + self.ips.len() > self.config.max_tracked {
            self.purge(now);
        }
        if let Some(c) = client_id {
            let mut e = self.clients.entry(c.to_owned()).or_default();
            Self::bump(
                &self.config,
                &mut e,
                self.config.max_failures_per_client,
                now,
            );
        }
        if let Some(i) = ip {
            let mut e = self.ips.entry(i).or_default();
            Self::bump(&self.config, &mut e, self.config.max_failures_per_ip, now);
        }
    }

    /// Clears a client id's failures after a successful authentication (its lock-out
    /// history stays, so the next lock-out is longer).
    pub fn record_success(&self, client_id: &str) {
        if let Some(mut e) = self.clients.get_mut(client_id) {
            e.failures = 0;
        }
    }

    fn state(e: Option<Entry>, config: &ThrottleConfig, now: u64) -> ThrottleState {
        match e {
            None => ThrottleState::default(),
            Some(e) => ThrottleState {
                failures: if now.saturating_sub(e.first_failure) < config.window {
                    e.failures
                } else {
                    0
                },
                locked_until: e.locked_until.filter(|&u| u > now),
                lockouts: e.lockouts,
            },
        }
    }

    /// The state of a client id at `now`.
    pub fn client_state(&self, client_id: &str, now: u64) -> ThrottleState {
        Self::state(self.clients.get(client_id).map(|e| *e), &self.config, now)
    }

    /// The state of a source address at `now`.
    pub fn ip_state(&self, ip: IpAddr, now: u64) -> ThrottleState {
        Self::state(self.ips.get(&ip).map(|e| *e), &self.config, now)
    }

    /// Forgets keys with no recent failures and no lock-out in force.
    pub fn purge(&self, now: u64) {
        let window = self.config.window;
        let keep = |e: &Entry| {
            e.locked_until.is_some_and(|u| u > now) || now.saturating_sub(e.first_failure) < window
        };
        self.clients.retain(|_, e| keep(e));
        self.ips.retain(|_, e| keep(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_limit_and_doubles() {
        let t = Throttle::new(ThrottleConfig {
            max_failures_per_client: 3,
            ..Default::default()
        });
        for i in 0..2 {
            t.record_failure(Some("c"), None, 100 + i);
        }
        assert!(t.check(Some("c"), None, 102).is_ok());
        assert_eq!(t.client_state("c", 102).failures, 2);
        t.record_failure(Some("c"), None, 102);
        assert_eq!(
            t.check(Some("c"), None, 103),
            Err(Lockout::Client { retry_after: 59 })
        );
        assert_eq!(t.client_state("c", 103).locked_until, Some(162));
        assert!(t.check(Some("c"), None, 162).is_ok());
        for _ in 0..3 {
            t.record_failure(Some("c"), None, 200);
        }
        assert_eq!(t.client_state("c", 200).locked_until, Some(320));
        assert!(t.check(Some("other"), None, 200).is_ok());
    }

    #[test]
    fn per_address() {
        let t = Throttle::new(ThrottleConfig {
            max_failures_per_ip: 2,
            ..Default::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        t.record_failure(Some("a"), Some(ip), 0);
        t.record_failure(Some("b"), Some(ip), 1);
        assert!(matches!(
            t.check(Some("z"), Some(ip), 2),
            Err(Lockout::Address { .. })
        ));
        assert_eq!(t.ip_state(ip, 2).lockouts, 1);
    }

    #[test]
    fn success_clears_client_failures() {
        let t = Throttle::default();
        t.record_failure(Some("c"), None, 0);
        t.record_success("c");
        assert_eq!(t.client_state("c", 1).failures, 0);
    }
}
