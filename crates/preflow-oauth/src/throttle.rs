//! Brute-force protection of client authentication that cannot be turned against a
//! client (RFC 6749 §10.10, RFC 9700 §4, OWASP's lock-out guidance).
//!
//! Failures are counted under two keys, never under the client id alone:
//!
//! * the **pair** (client id, source): guesses at one client's secret from one place;
//! * the **source**: guesses at any client from one place.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64).
//! Within [`ThrottleConfig::free_pair_failures`] (or `free_source_failures`) failures
//! nothing happens; each further failure makes the key wait
//! `base_delay · 2^(excess − 1)` seconds, up to [`ThrottleConfig::max_delay`], during
//! which its requests are answered 429 with `Retry-After` without checking any secret.
//! Requests refused while waiting are not counted, and a key without a failure for
//! [`ThrottleConfig::forget_after`] seconds starts again from zero. A success clears its
//! pair (not its source). So wrong secrets sent from other addresses never delay the
//! legitimate client: a correct secret from a source that has not failed is always
//! checked.
//!
//! Keys are HMAC-SHA-256 digests (truncated to 128 bits) under a random per-throttle
//! key, so a 60 KB client id costs 16 bytes, ids never sit in memory verbatim, and the
//! table's hashing cannot be steered. Each table holds at most
//! [`ThrottleConfig::max_entries`] keys; when full, forgotten keys go first, then the
//! least recently failed keys that are not waiting.
//!
//! The arithmetic on one key is [`ThrottleEntry`], independent of where entries live,
//! so a shared store can keep them (see the README's Security section).

use std::net::IpAddr;

use dashmap::DashMap;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

use crate::secret::DigestState;

/// Limits of the throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures of one (client id, source) pair before it must wait.
    pub free_pair_failures: u32,
    /// Failures from one source (any client id) before it must wait.
    pub free_source_failures: u32,
    /// First wait in seconds; doubled by each further failure.
    pub base_delay: u64,
    /// Longest wait in seconds.
    pub max_delay: u64,
    /// Seconds without a failure after which a key's count starts again from zero.
    pub forget_after: u64,
    /// Keys held per table (pairs, sources) before the oldest are evicted.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_pair_failures: 5,
            free_source_failures: 20,
            base_delay: 1,
            max_delay: 900,
            forget_after: 3600,
            max_entries: 100_000,
        }
    }
}

/// The failure count of one key and its wait, as a store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleEntry {
    /// Failures counted since the key was last forgotten.
    pub failures: u32,
    /// Time of the last counted failure (seconds).
    pub last_failure: u64,
    /// Time until which the key must wait (seconds; past values mean no wait).
    pub wait_until: u64,
}

impl ThrottleEntry {
    /// Seconds the key must still wait at `now`, if any.
    pub fn wait(&self, now: u64) -> Option<u64> {
        (self.wait_until > now).then(|| self.wait_until - now)
    }

    /// Whether the entry carries nothing at `now` (its count is forgotten and it does not
    /// wait), so a store may drop it.
    pub fn is_forgotten(&self, now: u64, config: &ThrottleConfig) -> bool {
        self.wait(now).is_none() && now.saturating_sub(self.last_failure) >= config.forget_after
    }

    /// Counts one failure at `now` for a key allowed `free` failures.
    pub fn fail(&mut self, now: u64, free: u32, config: &ThrottleConfig) {
        if self.is_forgotten(now, config) {
            *self = Self::default();
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        if let Some(excess) = self.failures.checked_sub(free).filter(|&e| e > 0) {
            let factor = 1u64.checked_shl((excess - 1).min(63)).unwrap_or(u64::MAX);
            let delay = config
                .base_delay
                .saturating_mul(factor)
                .min(config.max_delay);
            self.wait_until = now.saturating_add(delay);
        }
    }
}

/// A throttle key: 128 bits of HMAC-SHA-256 over the client id and/or the source.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThrottleKey(pub [u8; 16]);

impl std::hash::Hash for ThrottleKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // A MAC output is uniformly distributed: eight of its bytes are a good hash.
        let mut first = [0u8; 8];
        first.copy_from_slice(self.0.get(..8).unwrap_or(&[0u8; 8]));
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl std::fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThrottleKey({})", self.to_hex())
    }
}

impl ThrottleKey {
    /// The key as lowercase hexadecimal (a key name in a remote store).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The two keys of one authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleKeys {
    /// The (client id, source) pair; the source may be unknown.
    pub pair: ThrottleKey,
    /// The source, when known.
    pub source: Option<ThrottleKey>,
}

/// Why an attempt is refused before its secret is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// The (client id, source) pair must wait.
    Pair {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The source must wait.
    Source {
        /// Seconds to wait.
        retry_after: u64,
    },
}

impl Lockout {
    /// Seconds to wait.
    pub fn retry_after(self) -> u64 {
        match self {
            Self::Pair { retry_after } | Self::Source { retry_after } => retry_after,
        }
    }
}

type Table = DashMap<ThrottleKey, ThrottleEntry, DigestState>;

/// Failure counters per (client id, source) pair and per source, bounded in memory.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    mac_key: [u8; 32],
    pairs: Table,
    sources: Table,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

/// The source of an address: IPv4 addresses (IPv4-mapped IPv6 included) as they are,
/// IPv6 addresses by their /64.
fn source_bytes(ip: IpAddr) -> [u8; 17] {
    let (tag, value) = match ip.to_canonical() {
        IpAddr::V4(v4) => (4u8, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (6u8, (u128::from(v6) >> 64) << 64),
    };
    let mut out = [0u8; 17];
    for (slot, b) in out
        .iter_mut()
        .zip(std::iter::once(tag).chain(value.to_be_bytes()))
    {
        *slot = b;
    }
    out
}

impl Throttle {
    /// A throttle with these limits and a random key (counts are then private to this
    /// process).
    pub fn new(config: ThrottleConfig) -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::with_key(config, key)
    }

    /// A throttle whose keys are derived under `mac_key`: instances sharing counts
    /// through a store must share this key.
    pub fn with_key(config: ThrottleConfig, mac_key: [u8; 32]) -> Self {
        Self {
            config,
            mac_key,
            pairs: Table::with_hasher(DigestState),
            sources: Table::with_hasher(DigestState),
        }
    }

    /// The limits.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn mac(&self, domain: u8, client_id: Option<&str>, source: Option<&[u8; 17]>) -> ThrottleKey {
        let mut out = [0u8; 16];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.mac_key) {
            mac.update(&[domain]);
            mac.update(source.map_or(&[0u8; 17][..], |s| &s[..]));
            if let Some(id) = client_id {
                mac.update(id.as_bytes());
            }
            let digest = mac.finalize().into_bytes();
            out.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
        }
        ThrottleKey(out)
    }

    /// The keys of an attempt for `client_id` from `ip`.
    pub fn keys(&self, client_id: &str, ip: Option<IpAddr>) -> ThrottleKeys {
        let source = ip.map(source_bytes);
        ThrottleKeys {
            pair: self.mac(b'p', Some(client_id), source.as_ref()),
            source: source.map(|s| self.mac(b's', None, Some(&s))),
        }
    }

    /// Whether an attempt with these keys must wait at `now`.
    pub fn check(&self, keys: &ThrottleKeys, now: u64) -> Result<(), Lockout> {
        if let Some(retry_after) = self.pairs.get(&keys.pair).and_then(|e| e.wait(now)) {
            return Err(Lockout::Pair { retry_after });
        }
        if let Some(retry_after) = keys
            .source
            .and_then(|s| self.sources.get(&s).and_then(|e| e.wait(now)))
        {
            return Err(Lockout::Source { retry_after });
        }
        Ok(())
    }

    /// Counts one failed authentication.
    pub fn record_failure(&self, keys: &ThrottleKeys, now: u64) {
        let config = self.config;
        self.record_failure_with(keys, now, &config);
    }

    /// Counts one failed authentication with the limits of `config` (those of the server
    /// that counts, when a store keeps the entries for several servers).
    pub fn record_failure_with(&self, keys: &ThrottleKeys, now: u64, config: &ThrottleConfig) {
        Self::bump(
            &self.pairs,
            keys.pair,
            now,
            config.free_pair_failures,
            config,
        );
        if let Some(source) = keys.source {
            Self::bump(
                &self.sources,
                source,
                now,
                config.free_source_failures,
                config,
            );
        }
    }

    fn bump(table: &Table, key: ThrottleKey, now: u64, free: u32, config: &ThrottleConfig) {
        if table.len() >= config.max_entries && !table.contains_key(&key) {
            Self::evict(table, now, config);
        }
        table.entry(key).or_default().fail(now, free, config);
    }

    /// Brings a full table down to nine tenths of its cap: forgotten keys first, then
    /// the keys not waiting, then the rest, least recently failed first. The scan runs
    /// once per tenth of the cap's insertions, so eviction costs amortised O(log n).
    fn evict(table: &Table, now: u64, config: &ThrottleConfig) {
        table.retain(|_, e| !e.is_forgotten(now, config));
        let target = config
            .max_entries
            .saturating_sub(config.max_entries / 10 + 1);
        if table.len() <= target {
            return;
        }
        let mut by_age: Vec<(bool, u64, ThrottleKey)> = table
            .iter()
            .map(|r| (r.wait(now).is_some(), r.last_failure, *r.key()))
            .collect();
        by_age.sort_unstable();
        let excess = table.len().saturating_sub(target);
        for (_, _, key) in by_age.into_iter().take(excess) {
            table.remove(&key);
        }
    }

    /// Clears a pair after a successful authentication (its source keeps its count).
    pub fn record_success(&self, keys: &ThrottleKeys) {
        self.pairs.remove(&keys.pair);
    }

    /// The entry of a pair.
    pub fn pair_entry(&self, client_id: &str, ip: Option<IpAddr>) -> ThrottleEntry {
        let keys = self.keys(client_id, ip);
        self.pairs.get(&keys.pair).map(|e| *e).unwrap_or_default()
    }

    /// The entry of a source.
    pub fn source_entry(&self, ip: IpAddr) -> ThrottleEntry {
        let key = self.mac(b's', None, Some(&source_bytes(ip)));
        self.sources.get(&key).map(|e| *e).unwrap_or_default()
    }

    /// Keys held (pairs, sources).
    pub fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.sources.len())
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.sources.is_empty()
    }

    /// Forgets keys whose counts have lapsed and that do not wait.
    pub fn purge(&self, now: u64) {
        self.pairs.retain(|_, e| !e.is_forgotten(now, &self.config));
        self.sources
            .retain(|_, e| !e.is_forgotten(now, &self.config));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn pair_waits_progressively_after_free_failures() {
        let t = Throttle::new(ThrottleConfig {
            free_pair_failures: 3,
            ..Default::default()
        });
        let k = t.keys("c", ip("10.0.0.1"));
        for i in 0..3 {
            assert!(t.check(&k, 100 + i).is_ok());
            t.record_failure(&k, 100 + i);
        }
        assert!(t.check(&k, 103).is_ok(), "three free failures");
        t.record_failure(&k, 103);
        assert_eq!(t.check(&k, 103), Err(Lockout::Pair { retry_after: 1 }));
        assert!(t.check(&k, 104).is_ok());
        t.record_failure(&k, 104);
        assert_eq!(t.check(&k, 104), Err(Lockout::Pair { retry_after: 2 }));
        t.record_failure(&k, 106);
        assert_eq!(t.check(&k, 106), Err(Lockout::Pair { retry_after: 4 }));
        // The same client from another address, and another client here, are not held.
        assert!(t.check(&t.keys("c", ip("10.0.0.2")), 106).is_ok());
        assert!(t.check(&t.keys("d", ip("10.0.0.1")), 106).is_ok());
        // A success clears the pair.
        t.record_success(&k);
        assert!(t.check(&k, 106).is_ok());
        assert_eq!(t.pair_entry("c", ip("10.0.0.1")), ThrottleEntry::default());
    }

    #[test]
    fn delay_is_capped_and_forgotten() {
        let config = ThrottleConfig {
            free_pair_failures: 0,
            max_delay: 900,
            forget_after: 3600,
            ..Default::default()
        };
        let t = Throttle::new(config);
        let k = t.keys("c", None);
        for _ in 0..100 {
            t.record_failure(&k, 1000);
        }
        assert_eq!(t.check(&k, 1000), Err(Lockout::Pair { retry_after: 900 }));
        assert_eq!(t.pair_entry("c", None).failures, 100);
        // An hour after the last failure the count starts again.
        t.record_failure(&k, 1000 + 3600);
        assert_eq!(t.pair_entry("c", None).failures, 1);
    }

    #[test]
    fn source_waits_across_client_ids_and_ipv6_by_prefix() {
        let t = Throttle::new(ThrottleConfig {
            free_source_failures: 2,
            ..Default::default()
        });
        let a = ip("2001:db8:1:2::1");
        let b = ip("2001:db8:1:2:ffff::9");
        t.record_failure(&t.keys("x", a), 0);
        t.record_failure(&t.keys("y", b), 0);
        t.record_failure(&t.keys("z", a), 0);
        assert_eq!(
            t.check(&t.keys("fresh", b), 0),
            Err(Lockout::Source { retry_after: 1 })
        );
        assert!(t.check(&t.keys("fresh", ip("2001:db8:1:3::1")), 0).is_ok());
        assert_eq!(
            t.source_entry("2001:db8:1:2::77".parse().unwrap()).failures,
            3
        );
    }

    #[test]
    fn tables_are_capped() {
        let t = Throttle::new(ThrottleConfig {
            max_entries: 100,
            ..Default::default()
        });
        // One waiting pair survives a flood of single failures.
        let held = t.keys("victim-guess", ip("192.0.2.1"));
        for _ in 0..10 {
            t.record_failure(&held, 10);
        }
        for i in 0..10_000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            t.record_failure(&t.keys(&format!("id-{i}"), Some(addr)), 10);
            let (pairs, sources) = t.len();
            assert!(pairs <= 100 && sources <= 100, "{pairs} {sources}");
        }
        assert!(t.check(&held, 10).is_err());
    }

    #[test]
    fn keys_depend_on_the_secret_key() {
        let a = Throttle::with_key(ThrottleConfig::default(), [1; 32]);
        let b = Throttle::with_key(ThrottleConfig::default(), [1; 32]);
        let c = Throttle::with_key(ThrottleConfig::default(), [2; 32]);
        let id = "client";
        assert_eq!(a.keys(id, ip("10.0.0.1")), b.keys(id, ip("10.0.0.1")));
        assert_ne!(a.keys(id, ip("10.0.0.1")), c.keys(id, ip("10.0.0.1")));
        assert_ne!(a.keys(id, ip("10.0.0.1")).pair, a.keys(id, None).pair);
    }
}
