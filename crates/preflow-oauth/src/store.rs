//! The token store: the one piece of remote state of the OAuth side.
//!
//! Endpoints never call a store themselves. They return a [`StoreOp`] for the host to
//! perform, together with a continuation; the host performs the operation (inline for
//! [`MemoryStore`], over the network for a remote backend) and hands the [`StoreReply`]
//! back to the continuation. [`TokenStore`] is the synchronous interface a local store
//! implements; [`TokenStore::execute`] maps one operation to one reply, which is all a
//! remote driver has to mirror.

use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::secret::{DigestState, TokenHash};
use crate::throttle::{Lockout, Throttle, ThrottleConfig, ThrottleKeys};
use crate::token::{CodeRecord, GrantId, TokenRecord};

/// One operation on the token store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// Stores tokens (an access token, possibly with its refresh token) under their
    /// digests. Reply: [`StoreReply::Done`].
    PutTokens(Vec<(TokenHash, Arc<TokenRecord>)>),
    /// Looks a token up. Reply: [`StoreReply::Token`].
    GetToken(TokenHash),
    /// Marks a token revoked at `at`. Reply: [`StoreReply::Count`] (0 or 1).
    RevokeToken {
        /// Digest of the token.
        hash: TokenHash,
        /// Revocation time.
        at: u64,
    },
    /// Marks every token of a grant revoked. Reply: [`StoreReply::Count`].
    RevokeGrant {
        /// The grant.
        grant: GrantId,
        /// Revocation time.
        at: u64,
    },
    /// Stores an authorization code. Reply: [`StoreReply::Done`].
    PutCode {
        /// Digest of the code.
        hash: TokenHash,
        /// What the code stands for.
        record: CodeRecord,
    },
    /// Atomically marks a code used and returns it, saying whether it had been used
    /// before. Reply: [`StoreReply::Code`].
    TakeCode(TokenHash),
    /// Atomically adds or replaces custom attributes of a token (SetOAuthV2Info), keeping
    /// the rest of its record, its expiry and its revocation. Reply: [`StoreReply::Token`]
    /// with the updated record, `None` for an unknown token.
    SetAttributes {
        /// Digest of the token.
        hash: TokenHash,
        /// Attributes to set, in order; a name already present gets the new value.
        set: Vec<(String, String)>,
    },
    /// Whether a client authentication with these throttle keys must wait at `now`
    /// (seconds), read before its secret is checked. Reply: [`StoreReply::Throttle`].
    ThrottleCheck {
        /// The attempt's keys (keyed digests, never client ids).
        keys: ThrottleKeys,
        /// Current time (seconds).
        now: u64,
    },
    /// Counts a failed client authentication under both keys ([`ThrottleEntry::fail`]
    /// with these limits). Reply: [`StoreReply::Done`].
    ///
    /// [`ThrottleEntry::fail`]: crate::ThrottleEntry::fail
    ThrottleFail {
        /// The attempt's keys.
        keys: ThrottleKeys,
        /// Current time (seconds).
        now: u64,
        /// The limits.
        config: ThrottleConfig,
    },
    /// Clears the pair after a successful client authentication. Reply:
    /// [`StoreReply::Done`].
    ThrottleSuccess(ThrottleKeys),
}

/// `attributes` with `set` applied: each name set replaces its old value, and new names
/// follow the kept ones in the order given.
pub fn merge_attributes(
    attributes: &[(String, String)],
    set: &[(String, String)],
) -> Arc<[(String, String)]> {
    let mut out: Vec<(String, String)> = attributes
        .iter()
        .filter(|(k, _)| !set.iter().any(|(n, _)| n == k))
        .cloned()
        .collect();
    for (i, (name, value)) in set.iter().enumerate() {
        // The last value given for a name wins.
        if !set.iter().skip(i + 1).any(|(n, _)| n == name) {
            out.push((name.clone(), value.clone()));
        }
    }
    out.into()
}

/// Outcome of taking an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    /// No such code (or it was reclaimed after expiry).
    Unknown,
    /// First use.
    Fresh(CodeRecord),
    /// The code had already been used: the request must be denied and the tokens it
    /// issued revoked (RFC 6749 §4.1.2).
    Reused(CodeRecord),
}

/// The answer to a [`StoreOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreReply {
    /// The operation was done.
    Done,
    /// The token found, if any.
    Token(Option<Arc<TokenRecord>>),
    /// The code taken.
    Code(CodeTake),
    /// How many records changed.
    Count(usize),
    /// The answer to [`StoreOp::ThrottleCheck`]: the wait, if the attempt must wait.
    Throttle(Option<Lockout>),
    /// The backend could not perform the operation; endpoints answer 503.
    Unavailable,
}

/// A synchronous token store. Implemented by [`MemoryStore`]; a remote backend instead
/// performs [`StoreOp`]s asynchronously and feeds [`StoreReply`]s to the continuations.
pub trait TokenStore {
    /// Stores tokens under their digests.
    fn put_tokens(&self, tokens: &[(TokenHash, Arc<TokenRecord>)]);
    /// Looks a token up (revoked and expired tokens are returned until reclaimed, so
    /// verification can say why a token is refused).
    fn get_token(&self, hash: &TokenHash) -> Option<Arc<TokenRecord>>;
    /// Marks a token revoked; whether it was found and not yet revoked.
    fn revoke_token(&self, hash: &TokenHash, at: u64) -> bool;
    /// Marks every token of a grant revoked; how many were.
    fn revoke_grant(&self, grant: &GrantId, at: u64) -> usize;
    /// Stores an authorization code.
    fn put_code(&self, hash: TokenHash, record: CodeRecord);
    /// Atomically marks a code used and returns it.
    fn take_code(&self, hash: &TokenHash) -> CodeTake;
    /// Atomically sets custom attributes of a token ([`merge_attributes`]); the updated
    /// record, or `None` for an unknown token.
    fn set_attributes(
        &self,
        hash: &TokenHash,
        set: &[(String, String)],
    ) -> Option<Arc<TokenRecord>>;
    /// The client-authentication throttle entries the store keeps (answering
    /// [`StoreOp::ThrottleCheck`], [`StoreOp::ThrottleFail`], [`StoreOp::ThrottleSuccess`]).
    fn throttle(&self) -> &Throttle;
    /// Removes expired tokens and codes (and revoked tokens past their retention);
    /// how many records were removed.
    fn purge_expired(&self, now: u64) -> usize;

    /// Performs one operation.
    fn execute(&self, op: StoreOp) -> StoreReply {
        match op {
            StoreOp::PutTokens(tokens) => {
                self.put_tokens(&tokens);
                StoreReply::Done
            }
            StoreOp::GetToken(hash) => StoreReply::Token(self.get_token(&hash)),
            StoreOp::RevokeToken { hash, at } => {
                StoreReply::Count(usize::from(self.revoke_token(&hash, at)))
            }
            StoreOp::RevokeGrant { grant, at } => StoreReply::Count(self.revoke_grant(&grant, at)),
            StoreOp::PutCode { hash, record } => {
                self.put_code(hash, record);
                StoreReply::Done
            }
            StoreOp::TakeCode(hash) => StoreReply::Code(self.take_code(&hash)),
            StoreOp::SetAttributes { hash, set } => {
                StoreReply::Token(self.set_attributes(&hash, &set))
            }
            StoreOp::ThrottleCheck { keys, now } => {
                StoreReply::Throttle(self.throttle().check(&keys, now).err())
            }
            StoreOp::ThrottleFail { keys, now, config } => {
                self.throttle().record_failure_with(&keys, now, &config);
                StoreReply::Done
            }
            StoreOp::ThrottleSuccess(keys) => {
                self.throttle().record_success(&keys);
                StoreReply::Done
            }
        }
    }
}

impl std::hash::Hash for GrantId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(self.0.get(..8).unwrap_or(&[0u8; 8]));
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// How long a revoked token is kept so that verification can answer "revoked" rather
/// than "unknown" (seconds).
pub const DEFAULT_REVOKED_RETENTION: u64 = 24 * 3600;

/// An in-memory token store.
///
/// Tokens live in a lock-free map ([`papaya`]): a verification's lookup writes no shared
/// memory (no shard lock to take), so workers verifying the tokens of one app on several
/// cores do not slow each other down. Grants and codes, written as often as read, stay in
/// [`DashMap`]s.
///
/// Expired tokens and codes are reclaimed by [`TokenStore::purge_expired`], which the
/// store also runs by itself once the number of insertions since the last purge reaches
/// the number of stored records (so reclaiming costs amortised O(1) per insertion), using
/// the newest issue time it has seen as the current time.
#[derive(Debug)]
pub struct MemoryStore {
    tokens: papaya::HashMap<TokenHash, Arc<TokenRecord>, DigestState>,
    grants: DashMap<GrantId, Vec<TokenHash>, DigestState>,
    codes: DashMap<TokenHash, (CodeRecord, bool), DigestState>,
    puts_since_purge: AtomicUsize,
    latest_issue: AtomicUsize,
    revoked_retention: u64,
    throttle: Throttle,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty store with room for `n` tokens.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            tokens: papaya::HashMap::with_capacity_and_hasher(n, DigestState),
            grants: DashMap::with_capacity_and_hasher(n, DigestState),
            codes: DashMap::with_hasher(DigestState),
            puts_since_purge: AtomicUsize::new(0),
            latest_issue: AtomicUsize::new(0),
            revoked_retention: DEFAULT_REVOKED_RETENTION,
            throttle: Throttle::default(),
        }
    }

    /// Sets how long revoked tokens are kept (seconds).
    pub fn with_revoked_retention(mut self, seconds: u64) -> Self {
        self.revoked_retention = seconds;
        self
    }

    /// Number of stored tokens (access and refresh, including expired ones not yet
    /// reclaimed).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Number of stored authorization codes.
    pub fn code_count(&self) -> usize {
        self.codes.len()
    }

    fn note_put(&self, issued_at: u64, n: usize) {
        let issued = usize::try_from(issued_at).unwrap_or(usize::MAX);
        self.latest_issue.fetch_max(issued, Ordering::Relaxed);
        let puts = self
            .puts_since_purge
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        let stored = self.tokens.len().saturating_add(self.codes.len());
        if puts >= stored.max(1024) {
            self.puts_since_purge.store(0, Ordering::Relaxed);
            let now = self.latest_issue.load(Ordering::Relaxed) as u64;
            self.purge_expired(now);
        }
    }
}

impl TokenStore for MemoryStore {
    fn put_tokens(&self, tokens: &[(TokenHash, Arc<TokenRecord>)]) {
        let mut latest = 0;
        let map = self.tokens.pin();
        for (hash, record) in tokens {
            latest = latest.max(record.issued_at);
            map.insert(*hash, Arc::clone(record));
            self.grants.entry(record.grant_id).or_default().push(*hash);
        }
        self.note_put(latest, tokens.len());
    }

    fn get_token(&self, hash: &TokenHash) -> Option<Arc<TokenRecord>> {
        self.tokens.pin().get(hash).map(Arc::clone)
    }

    fn revoke_token(&self, hash: &TokenHash, at: u64) -> bool {
        // Compare-and-swap: of two concurrent revocations, one wins.
        let map = self.tokens.pin();
        let revoked = map.compute(*hash, |entry| match entry {
            Some((_, record)) if record.revoked_at.is_none() => {
                let mut record = TokenRecord::clone(record);
                record.revoked_at = Some(at);
                papaya::Operation::Insert(Arc::new(record))
            }
            _ => papaya::Operation::Abort(()),
        });
        matches!(revoked, papaya::Compute::Updated { .. })
    }

    fn revoke_grant(&self, grant: &GrantId, at: u64) -> usize {
        let hashes = match self.grants.get(grant) {
            Some(h) => h.value().clone(),
            None => return 0,
        };
        hashes.iter().filter(|h| self.revoke_token(h, at)).count()
    }

    fn put_code(&self, hash: TokenHash, record: CodeRecord) {
        let issued = record.issued_at;
        self.codes.insert(hash, (record, false));
        self.note_put(issued, 1);
    }

    fn take_code(&self, hash: &TokenHash) -> CodeTake {
        match self.codes.get_mut(hash) {
            None => CodeTake::Unknown,
            Some(mut entry) => {
                let (record, used) = entry.value_mut();
                if *used {
                    CodeTake::Reused(record.clone())
                } else {
                    *used = true;
                    CodeTake::Fresh(record.clone())
                }
            }
        }
    }

    fn set_attributes(
        &self,
        hash: &TokenHash,
        set: &[(String, String)],
    ) -> Option<Arc<TokenRecord>> {
        let map = self.tokens.pin();
        let updated = map.update(*hash, |record| {
            let mut record = TokenRecord::clone(record);
            record.attributes = merge_attributes(&record.attributes, set);
            Arc::new(record)
        })?;
        Some(Arc::clone(updated))
    }

    fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    fn purge_expired(&self, now: u64) -> usize {
        let retention = self.revoked_retention;
        let before = self.tokens.len() + self.codes.len();
        let tokens = self.tokens.pin();
        tokens.retain(|_, r| {
            !r.is_expired(now)
                && r.revoked_at
                    .is_none_or(|at| at.saturating_add(retention) > now)
        });
        self.codes.retain(|_, (c, _)| c.expires_at > now);
        self.grants.retain(|_, hashes| {
            hashes.retain(|h| tokens.contains_key(h));
            !hashes.is_empty()
        });
        before.saturating_sub(self.tokens.len() + self.codes.len())
    }
}
