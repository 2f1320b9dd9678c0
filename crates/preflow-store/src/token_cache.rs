//! Decoded token records kept in memory in front of the database file.
//!
//! Verifying a token is the one store read on every protected request; reading it from
//! redb means a read transaction, a B-tree walk and a JSON decode (microseconds). The
//! file belongs to one gateway (redb locks it), so every write passes through this
//! process and the cache can be kept exact: writes update it after they commit.
//!
//! A reader that decoded a record from an older snapshot must not put it back after a
//! writer changed it. Writers bump a generation after their commit and before they touch
//! the cache; a reader fills only if the generation it saw before its read is still
//! current, checked under the entry's shard lock, so a writer's later update always
//! lands after the fill.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use preflow_oauth::{DigestState, TokenHash, TokenRecord};

/// Entries kept by default: at about 500 bytes per record, some 32 MiB.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 65_536;

#[derive(Debug)]
pub(crate) struct TokenCache {
    records: DashMap<TokenHash, Arc<TokenRecord>, DigestState>,
    generation: AtomicU64,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: DashMap::with_hasher(DigestState),
            generation: AtomicU64::new(0),
            capacity,
        }
    }

    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<TokenRecord>> {
        self.records.get(hash).map(|r| Arc::clone(r.value()))
    }

    /// The generation to hand back to [`TokenCache::fill`]; read before the database.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps a record read from the database, unless a write committed since `seen`.
    pub(crate) fn fill(&self, hash: TokenHash, record: &Arc<TokenRecord>, seen: u64) {
        if self.records.len() >= self.capacity {
            return;
        }
        let entry = self.records.entry(hash);
        if self.generation.load(Ordering::Acquire) == seen {
            entry.or_insert_with(|| Arc::clone(record));
        }
    }

    /// After a commit that wrote `hash`: the record as now stored.
    pub(crate) fn written(&self, hash: TokenHash, record: Arc<TokenRecord>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if self.records.len() < self.capacity || self.records.contains_key(&hash) {
            self.records.insert(hash, record);
        }
    }

    /// After a commit that changed or removed these records.
    pub(crate) fn forget<'a>(&self, hashes: impl IntoIterator<Item = &'a [u8; 32]>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for h in hashes {
            self.records.remove(&TokenHash(*h));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflow_oauth::{GrantId, GrantType, TokenKind};

    fn record(revoked: Option<u64>) -> Arc<TokenRecord> {
        Arc::new(TokenRecord {
            kind: TokenKind::Access,
            client_id: Arc::from("c"),
            app_id: Arc::from("a"),
            app_name: Arc::from("a"),
            developer_email: Arc::from("d@example.com"),
            products: Arc::from(Vec::new()),
            scope: Arc::from(""),
            grant_type: GrantType::ClientCredentials,
            username: None,
            issued_at: 1,
            expires_at: Some(100),
            revoked_at: revoked,
            grant_id: GrantId([0; 16]),
            refresh_count: 0,
            attributes: Arc::from(Vec::new()),
        })
    }

    #[test]
    fn a_fill_from_before_a_write_is_dropped() {
        let cache = TokenCache::new(8);
        let h = TokenHash::of(b"t");
        let seen = cache.generation();
        // A revocation commits while the reader decodes the old record.
        cache.forget([&h.0]);
        cache.fill(h, &record(None), seen);
        assert!(cache.get(&h).is_none());
        // A reader that started after the write fills.
        let seen = cache.generation();
        cache.fill(h, &record(Some(5)), seen);
        assert_eq!(cache.get(&h).and_then(|r| r.revoked_at), Some(5));
    }

    #[test]
    fn a_write_replaces_what_a_reader_filled() {
        let cache = TokenCache::new(8);
        let h = TokenHash::of(b"t");
        cache.fill(h, &record(None), cache.generation());
        cache.written(h, record(Some(9)));
        assert_eq!(cache.get(&h).and_then(|r| r.revoked_at), Some(9));
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = TokenCache::new(2);
        for i in 0..10u8 {
            cache.fill(TokenHash::of(&[i]), &record(None), cache.generation());
            cache.written(TokenHash::of(&[i, i]), record(None));
        }
        assert_eq!(cache.len(), 2);
    }
}
