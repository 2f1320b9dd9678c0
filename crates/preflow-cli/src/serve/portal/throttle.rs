//! Sign-in throttling, after OWASP's credential-stuffing advice: failures are counted
//! per source address and per account *and* source, never per account alone, so nobody
//! can lock a developer out by failing on their email from elsewhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins allowed per account and source address in a window.
pub const PER_ACCOUNT_AND_SOURCE: u32 = 5;
/// Failed sign-ins allowed per source address in a window.
pub const PER_SOURCE: u32 = 50;
/// The most counters kept; when full, the oldest goes.
pub const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    since: Instant,
}

/// Failed sign-ins by key.
#[derive(Debug, Default)]
pub struct Throttle(Mutex<HashMap<String, Count>>);

fn keys(email: &str, source: IpAddr) -> [(String, u32); 2] {
    [
        (format!("s:{source}"), PER_SOURCE),
        (format!("a:{source}:{email}"), PER_ACCOUNT_AND_SOURCE),
    ]
}

impl Throttle {
    /// When the sign-in of `email` from `source` must wait: the time left, if any.
    pub fn wait(&self, email: &str, source: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.0.lock().ok()?;
        keys(email, source)
            .iter()
            .filter_map(|(k, limit)| {
                let c = map.get(k)?;
                let age = now.duration_since(c.since);
                (age < WINDOW && c.failures >= *limit).then(|| WINDOW.saturating_sub(age))
            })
            .max()
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, email: &str, source: IpAddr, now: Instant) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() + 2 > MAX_ENTRIES {
            map.retain(|_, c| now.duration_since(c.since) < WINDOW);
        }
        for (k, _) in keys(email, source) {
            if !map.contains_key(&k)
                && map.len() >= MAX_ENTRIES
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, c)| c.since)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            let c = map.entry(k).or_insert(Count {
                failures: 0,
                since: now,
            });
            if now.duration_since(c.since) >= WINDOW {
                *c = Count {
                    failures: 0,
                    since: now,
                };
            }
            c.failures = c.failures.saturating_add(1);
        }
    }

    /// Forgets the account's failures from `source` after a successful sign-in.
    pub fn succeeded(&self, email: &str, source: IpAddr) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&format!("a:{source}:{email}"));
        }
    }
}
