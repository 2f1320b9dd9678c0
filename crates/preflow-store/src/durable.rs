//! [`DurableStore`]: tokens, codes and Quota counters in one redb file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use preflow_oauth::{
    CodeRecord, CodeTake, DEFAULT_REVOKED_RETENTION, StoreOp, StoreReply, TokenHash, TokenRecord,
};
use preflow_ratelimit::CounterStore as _;
use preflow_ratelimit::Timestamp;
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use crate::StateStore;
use crate::error::{StoreError, db};
use crate::token_cache::{DEFAULT_TOKEN_CACHE_ENTRIES, TokenCache};
use crate::windows::{Fixed, Rolling};

/// The default file name of the state database in the gateway's state folder.
pub const DEFAULT_FILE_NAME: &str = "preflow-state.redb";

/// Token digest → JSON [`TokenRecord`].
const TOKENS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tokens");
/// Grant id (16 bytes) followed by a token digest (32 bytes) → nothing: the tokens of a
/// grant are a range scan.
const GRANTS: TableDefinition<&[u8], ()> = TableDefinition::new("grants");
/// Code digest → JSON `(CodeRecord, used)`.
const CODES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("codes");
/// Quota key → fixed window.
const QUOTA: TableDefinition<&str, &[u8]> = TableDefinition::new("quota");
/// Quota key → rolling window.
const ROLLING: TableDefinition<&str, &[u8]> = TableDefinition::new("rolling");
/// (namespace, key) → expiry (ns, big-endian, 0 for none) and value ([`crate::kv`]).
const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");

/// Tokens, refresh tokens, authorization codes and Quota counters in one redb file;
/// SpikeArrest state in memory. See the [crate docs](crate) for what is durable when.
#[derive(Debug)]
pub struct DurableStore {
    db: Database,
    path: PathBuf,
    spikes: preflow_ratelimit::MemoryStore,
    /// Client-authentication throttle entries: in memory, as one gateway uses a file.
    throttle: preflow_oauth::Throttle,
    /// Counter commits made without fsync since the last [`DurableStore::sync`].
    unsynced: AtomicBool,
    revoked_retention: u64,
    /// Decoded token records, kept exact by the write paths (see [`crate::token_cache`]).
    tokens: TokenCache,
}

fn grant_key(grant: &[u8; 16], hash: &[u8; 32]) -> [u8; 48] {
    let mut k = [0u8; 48];
    let (g, h) = k.split_at_mut(16);
    g.copy_from_slice(grant);
    h.copy_from_slice(hash);
    k
}

impl DurableStore {
    /// Opens (or creates) the database file at `path`, creating its folder if needed. A
    /// file held by another running gateway is refused (redb locks it).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let database = Database::create(&path).map_err(db("open"))?;
        // Create every table once, so read transactions never meet a missing one.
        let txn = database.begin_write().map_err(db("begin"))?;
        {
            txn.open_table(TOKENS).map_err(db("open table"))?;
            txn.open_table(GRANTS).map_err(db("open table"))?;
            txn.open_table(CODES).map_err(db("open table"))?;
            txn.open_table(QUOTA).map_err(db("open table"))?;
            txn.open_table(ROLLING).map_err(db("open table"))?;
            txn.open_table(KV).map_err(db("open table"))?;
        }
        txn.commit().map_err(db("commit"))?;
        Ok(DurableStore {
            db: database,
            path,
            spikes: preflow_ratelimit::MemoryStore::new(),
            throttle: preflow_oauth::Throttle::default(),
            unsynced: AtomicBool::new(false),
            revoked_retention: DEFAULT_REVOKED_RETENTION,
            tokens: TokenCache::new(DEFAULT_TOKEN_CACHE_ENTRIES),
        })
    }

    /// Sets how many decoded token records are kept in memory in front of the file
    /// (default [`DEFAULT_TOKEN_CACHE_ENTRIES`]; 0 reads every token from the file).
    pub fn with_token_cache(mut self, entries: usize) -> Self {
        self.tokens = TokenCache::new(entries);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the counter commits since the last call durable (one fsync); does nothing
    /// when there are none.
    pub fn sync(&self) -> Result<(), StoreError> {
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db("begin"))?;
        let result = txn.commit().map_err(db("commit"));
        if result.is_err() {
            self.unsynced.store(true, Ordering::Release);
        }
        result
    }

    /// Removes expired tokens, codes and key-value entries, revoked tokens past their
    /// retention (a day) and idle counters; how many records were removed.
    pub fn purge_expired(&self, now: Timestamp) -> Result<usize, StoreError> {
        let secs = now.as_nanos() / 1_000_000_000;
        let retention = self.revoked_retention;
        let txn = self.write(Durability::Immediate)?;
        let mut removed = 0;
        let mut dead_tokens = Vec::new();
        {
            let mut tokens = txn.open_table(TOKENS).map_err(db("open table"))?;
            let mut grants = txn.open_table(GRANTS).map_err(db("open table"))?;
            for row in tokens.iter().map_err(db("scan"))? {
                let (k, v) = row.map_err(db("scan"))?;
                let keep = match serde_json::from_slice::<TokenRecord>(v.value()) {
                    Ok(r) => {
                        !r.is_expired(secs)
                            && r.revoked_at
                                .is_none_or(|at| at.saturating_add(retention) > secs)
                    }
                    Err(_) => false,
                };
                if !keep {
                    dead_tokens.push(*k.value());
                }
            }
            let dead_set: std::collections::HashSet<[u8; 32]> =
                dead_tokens.iter().copied().collect();
            let mut dead_grants = Vec::new();
            for row in grants.iter().map_err(db("scan"))? {
                let (k, _) = row.map_err(db("scan"))?;
                let key = k.value();
                if key
                    .get(16..)
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                    .is_some_and(|h| dead_set.contains(&h))
                {
                    dead_grants.push(key.to_vec());
                }
            }
            for k in &dead_tokens {
                tokens.remove(k).map_err(db("remove"))?;
                removed += 1;
            }
            for k in &dead_grants {
                grants.remove(k.as_slice()).map_err(db("remove"))?;
            }
            let mut codes = txn.open_table(CODES).map_err(db("open table"))?;
            let mut dead = Vec::new();
            for row in codes.iter().map_err(db("scan"))? {
                let (k, v) = row.map_err(db("scan"))?;
                let keep = serde_json::from_slice::<(CodeRecord, bool)>(v.value())
                    .is_ok_and(|(c, _)| c.expires_at > secs);
                if !keep {
                    dead.push(*k.value());
                }
            }
            for k in &dead {
                codes.remove(k).map_err(db("remove"))?;
                removed += 1;
            }
            let mut quota = txn.open_table(QUOTA).map_err(db("open table"))?;
            let mut dead = Vec::new();
            for row in quota.iter().map_err(db("scan"))? {
                let (k, v) = row.map_err(db("scan"))?;
                if Fixed::decode(v.value()).is_ok_and(|w| w.expires_at > now.as_nanos()) {
                    continue;
                }
                dead.push(k.value().to_owned());
            }
            let mut rolling = txn.open_table(ROLLING).map_err(db("open table"))?;
            let mut dead_rolling = Vec::new();
            for row in rolling.iter().map_err(db("scan"))? {
                let (k, v) = row.map_err(db("scan"))?;
                if Rolling::decode(v.value()).is_ok_and(|w| !w.idle(now.as_nanos())) {
                    continue;
                }
                dead_rolling.push(k.value().to_owned());
            }
            for k in &dead {
                quota.remove(k.as_str()).map_err(db("remove"))?;
                removed += 1;
            }
            for k in &dead_rolling {
                rolling.remove(k.as_str()).map_err(db("remove"))?;
                removed += 1;
            }
            let mut kv = txn.open_table(KV).map_err(db("open table"))?;
            let mut dead_kv = Vec::new();
            for row in kv.iter().map_err(db("scan"))? {
                let (k, v) = row.map_err(db("scan"))?;
                if crate::kv::expiry(v.value()).is_ok_and(|at| crate::kv::live(at, now.as_nanos()))
                {
                    continue;
                }
                let (ns, key) = k.value();
                dead_kv.push((ns.to_owned(), key.to_owned()));
            }
            for (ns, key) in &dead_kv {
                kv.remove((ns.as_str(), key.as_str()))
                    .map_err(db("remove"))?;
                removed += 1;
            }
        }
        txn.commit().map_err(db("commit"))?;
        self.tokens.forget(&dead_tokens);
        self.spikes.reclaim(now);
        self.throttle.purge(secs);
        Ok(removed)
    }

    fn write(&self, durability: Durability) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(db("begin"))?;
        txn.set_durability(durability);
        Ok(txn)
    }

    fn get_token(&self, hash: &TokenHash) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        if let Some(record) = self.tokens.get(hash) {
            return Ok(Some(record));
        }
        let seen = self.tokens.generation();
        let txn = self.db.begin_read().map_err(db("begin"))?;
        let tokens = txn.open_table(TOKENS).map_err(db("open table"))?;
        match tokens.get(&hash.0).map_err(db("read"))? {
            Some(v) => {
                let record = Arc::new(serde_json::from_slice(v.value())?);
                self.tokens.fill(*hash, &record, seen);
                Ok(Some(record))
            }
            None => Ok(None),
        }
    }

    fn put_tokens(&self, put: &[(TokenHash, Arc<TokenRecord>)]) -> Result<(), StoreError> {
        let txn = self.write(Durability::Immediate)?;
        {
            let mut tokens = txn.open_table(TOKENS).map_err(db("open table"))?;
            let mut grants = txn.open_table(GRANTS).map_err(db("open table"))?;
            for (hash, record) in put {
                let json = serde_json::to_vec(&**record)?;
                tokens
                    .insert(&hash.0, json.as_slice())
                    .map_err(db("write"))?;
                grants
                    .insert(grant_key(&record.grant_id.0, &hash.0).as_slice(), ())
                    .map_err(db("write"))?;
            }
        }
        txn.commit().map_err(db("commit"))?;
        for (hash, record) in put {
            self.tokens.written(*hash, Arc::clone(record));
        }
        Ok(())
    }

    /// Revokes the tokens `hashes` inside `txn`; how many were live.
    fn revoke_in(
        txn: &WriteTransaction,
        hashes: &[[u8; 32]],
        at: u64,
    ) -> Result<usize, StoreError> {
        let mut tokens = txn.open_table(TOKENS).map_err(db("open table"))?;
        let mut n = 0;
        for hash in hashes {
            let record = match tokens.get(hash).map_err(db("read"))? {
                Some(v) => serde_json::from_slice::<TokenRecord>(v.value())?,
                None => continue,
            };
            if record.revoked_at.is_some() {
                continue;
            }
            let record = TokenRecord {
                revoked_at: Some(at),
                ..record
            };
            let json = serde_json::to_vec(&record)?;
            tokens.insert(hash, json.as_slice()).map_err(db("write"))?;
            n += 1;
        }
        Ok(n)
    }

    fn revoke_token(&self, hash: &TokenHash, at: u64) -> Result<usize, StoreError> {
        let txn = self.write(Durability::Immediate)?;
        let n = Self::revoke_in(&txn, &[hash.0], at)?;
        txn.commit().map_err(db("commit"))?;
        self.tokens.forget([&hash.0]);
        Ok(n)
    }

    fn revoke_grant(&self, grant: &[u8; 16], at: u64) -> Result<usize, StoreError> {
        let txn = self.write(Durability::Immediate)?;
        let hashes = {
            let grants = txn.open_table(GRANTS).map_err(db("open table"))?;
            let from = grant_key(grant, &[0u8; 32]);
            let to = grant_key(grant, &[0xffu8; 32]);
            let mut hashes = Vec::new();
            for row in grants
                .range(from.as_slice()..=to.as_slice())
                .map_err(db("scan"))?
            {
                let (k, _) = row.map_err(db("scan"))?;
                let mut h = [0u8; 32];
                if let Some(tail) = k.value().get(16..48) {
                    h.copy_from_slice(tail);
                    hashes.push(h);
                }
            }
            hashes
        };
        let n = Self::revoke_in(&txn, &hashes, at)?;
        txn.commit().map_err(db("commit"))?;
        self.tokens.forget(&hashes);
        Ok(n)
    }

    /// Reads, changes and writes the token's record in one write transaction.
    fn set_attributes(
        &self,
        hash: &TokenHash,
        set: &[(String, String)],
    ) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let txn = self.write(Durability::Immediate)?;
        let updated = {
            let mut tokens = txn.open_table(TOKENS).map_err(db("open table"))?;
            let record = match tokens.get(&hash.0).map_err(db("read"))? {
                Some(v) => serde_json::from_slice::<TokenRecord>(v.value())?,
                None => return Ok(None),
            };
            let record = TokenRecord {
                attributes: preflow_oauth::merge_attributes(&record.attributes, set),
                ..record
            };
            let json = serde_json::to_vec(&record)?;
            tokens
                .insert(&hash.0, json.as_slice())
                .map_err(db("write"))?;
            record
        };
        txn.commit().map_err(db("commit"))?;
        let updated = Arc::new(updated);
        self.tokens.written(*hash, Arc::clone(&updated));
        Ok(Some(updated))
    }

    fn put_code(&self, hash: &TokenHash, record: &CodeRecord) -> Result<(), StoreError> {
        let txn = self.write(Durability::Immediate)?;
        {
            let mut codes = txn.open_table(CODES).map_err(db("open table"))?;
            let json = serde_json::to_vec(&(record, false))?;
            codes
                .insert(&hash.0, json.as_slice())
                .map_err(db("write"))?;
        }
        txn.commit().map_err(db("commit"))
    }

    fn take_code(&self, hash: &TokenHash) -> Result<CodeTake, StoreError> {
        let txn = self.write(Durability::Immediate)?;
        let take = {
            let mut codes = txn.open_table(CODES).map_err(db("open table"))?;
            let stored = match codes.get(&hash.0).map_err(db("read"))? {
                Some(v) => Some(serde_json::from_slice::<(CodeRecord, bool)>(v.value())?),
                None => None,
            };
            match stored {
                None => CodeTake::Unknown,
                Some((record, true)) => CodeTake::Reused(record),
                Some((record, false)) => {
                    let json = serde_json::to_vec(&(&record, true))?;
                    codes
                        .insert(&hash.0, json.as_slice())
                        .map_err(db("write"))?;
                    CodeTake::Fresh(record)
                }
            }
        };
        txn.commit().map_err(db("commit"))?;
        Ok(take)
    }

    fn quota_incr(
        &self,
        key: &str,
        incr: &preflow_ratelimit::store::QuotaIncr,
    ) -> Result<preflow_ratelimit::store::QuotaReply, StoreError> {
        let txn = self.write(Durability::None)?;
        let reply = {
            let mut table = txn.open_table(QUOTA).map_err(db("open table"))?;
            let mut window = match table.get(key).map_err(db("read"))? {
                Some(v) => Fixed::decode(v.value())?,
                None => Fixed::open(incr),
            };
            let reply = window.apply(incr);
            table
                .insert(key, window.encode().as_slice())
                .map_err(db("write"))?;
            reply
        };
        txn.commit().map_err(db("commit"))?;
        self.unsynced.store(true, Ordering::Release);
        Ok(reply)
    }

    fn quota_slide(
        &self,
        key: &str,
        slide: &preflow_ratelimit::store::QuotaSlide,
    ) -> Result<preflow_ratelimit::store::QuotaReply, StoreError> {
        let slot_ns = slide.slot_ns.max(1);
        let index = slide.now.as_nanos() / slot_ns;
        let span = slide.lookback_ns.div_ceil(slot_ns);
        let txn = self.write(Durability::None)?;
        let reply = {
            let mut table = txn.open_table(ROLLING).map_err(db("open table"))?;
            let stored = match table.get(key).map_err(db("read"))? {
                Some(v) => Some(Rolling::decode(v.value())?),
                None => None,
            };
            let mut window = match stored {
                Some(w) if w.slot_ns() == slot_ns => w,
                _ => Rolling::new(slot_ns, index),
            };
            let reply = window.apply(slide, index, span);
            table
                .insert(key, window.encode().as_slice())
                .map_err(db("write"))?;
            reply
        };
        txn.commit().map_err(db("commit"))?;
        self.unsynced.store(true, Ordering::Release);
        Ok(reply)
    }
}

impl DurableStore {
    fn kv_get(&self, namespace: &str, key: &str, now: u64) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db("begin"))?;
        let table = txn.open_table(KV).map_err(db("open table"))?;
        let Some(v) = table.get((namespace, key)).map_err(db("read"))? else {
            return Ok(None);
        };
        let (value, at) = crate::kv::decode(v.value())?;
        Ok(crate::kv::live(at, now).then_some(value))
    }

    fn kv_put(
        &self,
        (namespace, key): (&str, &str),
        value: &str,
        expires_at: Option<u64>,
        overwrite: bool,
        now: u64,
    ) -> Result<bool, StoreError> {
        let txn = self.write(Durability::Immediate)?;
        let written = {
            let mut table = txn.open_table(KV).map_err(db("open table"))?;
            let existing = match table.get((namespace, key)).map_err(db("read"))? {
                Some(v) => Some(crate::kv::expiry(v.value())?),
                None => None,
            };
            let blocked = !overwrite && existing.is_some_and(|at| crate::kv::live(at, now));
            if !blocked {
                table
                    .insert(
                        (namespace, key),
                        crate::kv::encode(value, expires_at).as_slice(),
                    )
                    .map_err(db("write"))?;
            }
            !blocked
        };
        if written {
            txn.commit().map_err(db("commit"))?;
        } else {
            txn.abort().map_err(db("abort"))?;
        }
        Ok(written)
    }

    fn kv_delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        let txn = self.write(Durability::Immediate)?;
        let removed = {
            let mut table = txn.open_table(KV).map_err(db("open table"))?;
            let removed = table.remove((namespace, key)).map_err(db("remove"))?;
            removed.is_some()
        };
        if removed {
            txn.commit().map_err(db("commit"))
        } else {
            txn.abort().map_err(db("abort"))
        }
    }
}

impl StateStore for DurableStore {
    fn kv(&self, op: &preflow::KvOp) -> Result<preflow::KvReply, StoreError> {
        use preflow::{KvOp, KvReply};
        Ok(match op {
            KvOp::Get {
                namespace,
                key,
                now,
            } => KvReply::Value(self.kv_get(namespace, key, *now)?),
            KvOp::Put {
                namespace,
                key,
                value,
                expires_at,
                overwrite,
                now,
            } => KvReply::Written(self.kv_put(
                (namespace, key),
                value,
                *expires_at,
                *overwrite,
                *now,
            )?),
            KvOp::Delete { namespace, key } => {
                self.kv_delete(namespace, key)?;
                KvReply::Done
            }
            _ => KvReply::Done,
        })
    }

    fn token(&self, op: &StoreOp) -> Result<StoreReply, StoreError> {
        Ok(match op {
            StoreOp::PutTokens(tokens) => {
                self.put_tokens(tokens)?;
                StoreReply::Done
            }
            StoreOp::GetToken(hash) => StoreReply::Token(self.get_token(hash)?),
            StoreOp::RevokeToken { hash, at } => StoreReply::Count(self.revoke_token(hash, *at)?),
            StoreOp::RevokeGrant { grant, at } => {
                StoreReply::Count(self.revoke_grant(&grant.0, *at)?)
            }
            StoreOp::PutCode { hash, record } => {
                self.put_code(hash, record)?;
                StoreReply::Done
            }
            StoreOp::TakeCode(hash) => StoreReply::Code(self.take_code(hash)?),
            StoreOp::SetAttributes { hash, set } => {
                StoreReply::Token(self.set_attributes(hash, set)?)
            }
            StoreOp::ThrottleCheck { keys, now } => {
                StoreReply::Throttle(self.throttle.check(keys, *now).err())
            }
            StoreOp::ThrottleFail { keys, now, config } => {
                self.throttle.record_failure_with(keys, *now, config);
                StoreReply::Done
            }
            StoreOp::ThrottleSuccess(keys) => {
                self.throttle.record_success(keys);
                StoreReply::Done
            }
            _ => StoreReply::Unavailable,
        })
    }

    fn counter(
        &self,
        op: &preflow_ratelimit::StoreOp,
    ) -> Result<preflow_ratelimit::StoreReply, StoreError> {
        use preflow_ratelimit::{StoreOp, StoreReply};
        Ok(match op {
            StoreOp::GcraTake { key, take } => StoreReply::Gcra(self.spikes.gcra_take(key, take)),
            StoreOp::QuotaIncr { key, incr } => StoreReply::Quota(self.quota_incr(key, incr)?),
            StoreOp::QuotaSlide { key, slide } => StoreReply::Quota(self.quota_slide(key, slide)?),
        })
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "quota counters not synced at close");
        }
    }
}
