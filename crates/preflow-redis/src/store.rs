//! [`RedisStore`]: the async driver that runs store operations on Redis.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use preflow_oauth::{CodeRecord, CodeTake, GrantId, TokenHash, TokenRecord};
use preflow_ratelimit::Timestamp;
use preflow_ratelimit::store::{GcraReply, GcraTake, QuotaIncr, QuotaReply, QuotaSlide};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use crate::breaker::{Breaker, BreakerConfig};
use crate::error::RedisError;
use crate::keys::{KeyLayout, unhex32};
use crate::scripts::Scripts;

/// The largest integer a Redis Lua number holds exactly; arguments are clamped to it.
const LUA_EXACT: u64 = 1 << 53;

/// How a [`RedisStore`] talks to Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The key layout (prefix).
    pub keys: KeyLayout,
    /// The time one operation may take, connection included; past it the operation
    /// fails with [`RedisError::Timeout`].
    pub timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            keys: KeyLayout::default(),
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(200),
            breaker: BreakerConfig::default(),
        }
    }
}

impl RedisConfig {
    /// The same configuration with a per-operation timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same configuration with a circuit breaker.
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The same configuration with a key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.keys = KeyLayout::new(prefix);
        self
    }
}

/// A connection to one Redis server or to a Redis Cluster. Both reconnect by
/// themselves; the cluster connection follows `MOVED`/`ASK` redirections and fail-overs.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

struct Inner {
    conn: std::sync::RwLock<Conn>,
    /// For a cluster: the client, to connect anew when a node stops answering (the
    /// connection alone retries a dead master until the slot map changes, which it learns
    /// only from a redirection that a dead node cannot send).
    cluster: Option<redis::cluster::ClusterClient>,
    reconnecting: std::sync::atomic::AtomicBool,
    keys: KeyLayout,
    scripts: Scripts,
    timeout: Duration,
    breaker: Breaker,
}

/// Runs rate-limit and token-store operations on Redis (cheap to clone; clones share
/// one multiplexed, self-reconnecting connection and one circuit breaker).
///
/// Each operation is bounded by [`RedisConfig::timeout`] and touches one cluster slot.
/// Failures are logged with `tracing` and returned; they count against the circuit
/// breaker, which, once open, fails operations at once with
/// [`RedisError::CircuitOpen`] until its cool-down has passed.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.inner.keys)
            .field("timeout", &self.inner.timeout)
            .field("breaker", &self.inner.breaker)
            .finish_non_exhaustive()
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn lua_arg(v: u64) -> u64 {
    v.min(LUA_EXACT)
}

/// Nanoseconds to milliseconds, rounded up.
fn ceil_ms(ns: u64) -> u64 {
    ns.div_ceil(1_000_000)
}

impl RedisStore {
    /// A store for the server at `url` (`redis://host:port/db`). No connection is made
    /// yet: the first operation connects, and a lost connection is re-established by
    /// later operations, so a gateway can start while Redis is down.
    ///
    /// Must be called within a tokio runtime (the connection is driven by a task on it);
    /// outside one it fails with [`RedisError::NoRuntime`].
    pub fn new(url: &str, config: RedisConfig) -> Result<Self, RedisError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisError::NoRuntime);
        }
        let client = redis::Client::open(url).map_err(|e| RedisError::Url(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.connect_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self::with_conn(Conn::Single(conn), None, config))
    }

    fn with_conn(
        conn: Conn,
        cluster: Option<redis::cluster::ClusterClient>,
        config: RedisConfig,
    ) -> Self {
        RedisStore {
            inner: Arc::new(Inner {
                conn: std::sync::RwLock::new(conn),
                cluster,
                reconnecting: std::sync::atomic::AtomicBool::new(false),
                keys: config.keys,
                scripts: Scripts::new(),
                timeout: config.timeout,
                breaker: Breaker::new(config.breaker),
            }),
        }
    }

    /// A store on a Redis Cluster, given the URLs of some of its nodes
    /// (`redis://host:port`). The slot map is read from them now (so the cluster must
    /// answer); afterwards the connection follows `MOVED` and `ASK` redirections, refreshes
    /// the slot map and retries on the new master after a fail-over. Every operation of
    /// this crate touches keys of one hash tag ([`KeyLayout`]), hence one slot.
    pub async fn connect_cluster(urls: &[String], config: RedisConfig) -> Result<Self, RedisError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisError::NoRuntime);
        }
        let client = redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.timeout)
            .retries(2)
            .build()
            .map_err(|e| RedisError::Url(e.to_string()))?;
        let wait = config.connect_timeout.max(config.timeout).saturating_mul(4);
        let conn = tokio::time::timeout(wait, client.get_async_connection())
            .await
            .map_err(|_| {
                RedisError::Timeout(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
            })??;
        let store = Self::with_conn(Conn::Cluster(conn), Some(client), config);
        store.ping().await?;
        Ok(store)
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// Like [`RedisStore::new`], then checks that Redis answers (`PING`).
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, RedisError> {
        let store = RedisStore::new(url, config)?;
        store.ping().await?;
        Ok(store)
    }

    /// Sends `PING`.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.guarded("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    /// The key layout.
    pub fn keys(&self) -> &KeyLayout {
        &self.inner.keys
    }

    /// The Lua scripts.
    pub(crate) fn scripts(&self) -> &Scripts {
        &self.inner.scripts
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Whether the circuit breaker is open (operations fail at once).
    pub fn is_circuit_open(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// Runs `f` on a connection, bounded by the timeout, through the circuit breaker.
    pub(crate) async fn guarded<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let inner = &self.inner;
        if !inner.breaker.allow() {
            tracing::debug!(op = what, "redis skipped: circuit breaker open");
            return Err(RedisError::CircuitOpen);
        }
        let conn = inner
            .conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let result = match tokio::time::timeout(inner.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisError::Command(e)),
            Err(_) => Err(RedisError::Timeout(
                u64::try_from(inner.timeout.as_millis()).unwrap_or(u64::MAX),
            )),
        };
        match &result {
            Ok(_) => inner.breaker.success(),
            Err(e) => {
                tracing::warn!(op = what, error = %e, "redis operation failed");
                inner.breaker.failure();
                if e.is_unavailable() {
                    self.reconnect_cluster();
                }
            }
        }
        result
    }

    /// After a failure on a cluster: one task connects anew, reading the slot map from
    /// the nodes that answer (a fail-over's promoted replica included), and replaces the
    /// connection. At most one runs at a time, and at most one every 100 ms.
    fn reconnect_cluster(&self) {
        use std::sync::atomic::Ordering;
        let Some(client) = self.inner.cluster.clone() else {
            return;
        };
        if self.inner.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let wait = inner
                .timeout
                .saturating_mul(4)
                .max(Duration::from_millis(200));
            match tokio::time::timeout(wait, client.get_async_connection()).await {
                Ok(Ok(conn)) => {
                    *inner
                        .conn
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Conn::Cluster(conn);
                    tracing::info!("redis cluster connection renewed");
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "redis cluster not reachable"),
                Err(_) => tracing::warn!("redis cluster did not answer in time"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            inner.reconnecting.store(false, Ordering::Release);
        });
    }

    // ---- rate limiting ----

    /// Runs a rate-limit operation exactly (one round trip); the reply goes to
    /// [`preflow_ratelimit::StoreOp::resolve`].
    pub async fn run_ratelimit(
        &self,
        op: &preflow_ratelimit::StoreOp,
    ) -> Result<preflow_ratelimit::StoreReply, RedisError> {
        use preflow_ratelimit::{StoreOp, StoreReply};
        match op {
            StoreOp::GcraTake { key, take } => {
                self.gcra(key, take, false).await.map(StoreReply::Gcra)
            }
            StoreOp::QuotaIncr { key, incr } => {
                self.quota(key, incr, false).await.map(StoreReply::Quota)
            }
            StoreOp::QuotaSlide { key, slide } => {
                self.rolling(key, slide, false).await.map(StoreReply::Quota)
            }
        }
    }

    /// GCRA on the Redis clock. With `force`, the increment is added whatever the
    /// tolerance (asynchronous flush of admitted weight).
    pub(crate) async fn gcra(
        &self,
        id: &str,
        take: &GcraTake,
        force: bool,
    ) -> Result<GcraReply, RedisError> {
        let key = self.inner.keys.gcra(id);
        let (allowed, rel): (i64, i64) = self
            .guarded("gcra", |mut c| async move {
                self.inner
                    .scripts
                    .gcra
                    .key(&key)
                    .arg(lua_arg(take.increment_ns()))
                    .arg(lua_arg(take.tolerance_ns))
                    .arg(if force { "1" } else { "0" })
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        // The TAT relative to the Redis clock, carried over to the host's clock.
        Ok(GcraReply {
            allowed: allowed == 1,
            tat: take.now.saturating_add_nanos(to_u64(rel)),
        })
    }

    /// Fixed-window quota increment. With `force`, the weight is counted whatever the
    /// limit (asynchronous flush).
    pub(crate) async fn quota(
        &self,
        id: &str,
        incr: &QuotaIncr,
        force: bool,
    ) -> Result<QuotaReply, RedisError> {
        let key = self.inner.keys.quota(id);
        let (allowed, used, exceeded, end): (i64, i64, i64, String) = self
            .guarded("quota", |mut c| async move {
                self.inner
                    .scripts
                    .quota
                    .key(&key)
                    .arg(incr.now.as_millis())
                    .arg(ceil_ms(incr.expires_at.as_nanos()))
                    .arg(incr.expires_at.as_nanos())
                    .arg(incr.weight)
                    .arg(lua_arg(incr.limit))
                    .arg(if force { "1" } else { "0" })
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let end = end
            .parse::<u64>()
            .map_err(|_| RedisError::Reply(format!("window end {end:?} is not an integer")))?;
        Ok(QuotaReply {
            allowed: allowed == 1,
            used: to_u64(used),
            total_exceeded: to_u64(exceeded),
            expires_at: Some(Timestamp::from_nanos(end)),
        })
    }

    /// Rolling-window quota increment. With `force`, the weight is counted whatever the
    /// limit (asynchronous flush).
    pub(crate) async fn rolling(
        &self,
        id: &str,
        slide: &QuotaSlide,
        force: bool,
    ) -> Result<QuotaReply, RedisError> {
        let key = self.inner.keys.rolling(id);
        let slot_ns = slide.slot_ns.max(1);
        let index = slide.now.as_nanos() / slot_ns;
        let span = slide.lookback_ns.div_ceil(slot_ns);
        let ttl_ms = ceil_ms(span.saturating_add(2).saturating_mul(slot_ns)).max(1);
        let (allowed, used, exceeded): (i64, i64, i64) = self
            .guarded("rolling", |mut c| async move {
                self.inner
                    .scripts
                    .rolling
                    .key(&key)
                    .arg(index)
                    .arg(lua_arg(span))
                    .arg(slide.weight)
                    .arg(lua_arg(slide.limit))
                    .arg(ttl_ms)
                    .arg(if force { "1" } else { "0" })
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(QuotaReply {
            allowed: allowed == 1,
            used: to_u64(used),
            total_exceeded: to_u64(exceeded),
            expires_at: None,
        })
    }

    // ---- key-value entries ----

    /// Runs a key-value operation: one `GET`, `SET … [NX] [PXAT]` or `DEL` of the entry's
    /// key ([`KeyLayout::kv`]). Expiry follows the Redis clock.
    pub async fn run_kv(&self, op: &preflow::KvOp) -> Result<preflow::KvReply, RedisError> {
        use preflow::{KvOp, KvReply};
        let key = self.inner.keys.kv(op.namespace(), op.key());
        match op {
            KvOp::Get { .. } => {
                let value: Option<String> = self
                    .guarded("kv_get", |mut c| async move {
                        redis::cmd("GET").arg(&key).query_async(&mut c).await
                    })
                    .await?;
                Ok(KvReply::Value(value))
            }
            KvOp::Put {
                value,
                expires_at,
                overwrite,
                ..
            } => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key).arg(value);
                if !overwrite {
                    cmd.arg("NX");
                }
                if let Some(at) = expires_at {
                    cmd.arg("PXAT").arg(ceil_ms(*at).max(1));
                }
                let written: Option<String> = self
                    .guarded(
                        "kv_put",
                        |mut c| async move { cmd.query_async(&mut c).await },
                    )
                    .await?;
                Ok(KvReply::Written(written.is_some()))
            }
            KvOp::Delete { .. } => {
                self.guarded("kv_delete", |mut c| async move {
                    redis::cmd("DEL").arg(&key).query_async::<u64>(&mut c).await
                })
                .await?;
                Ok(KvReply::Done)
            }
            // Not the operation's contents: a value may be a secret.
            _ => Err(RedisError::Reply(
                "key-value operation not supported".to_owned(),
            )),
        }
    }

    // ---- tokens ----

    /// Runs a token-store operation; the reply goes to the continuation that asked for it
    /// ([`preflow_oauth::Pending`], [`preflow_oauth::VerifyPending`]).
    pub async fn run_token(
        &self,
        op: &preflow_oauth::StoreOp,
    ) -> Result<preflow_oauth::StoreReply, RedisError> {
        use preflow_oauth::{StoreOp, StoreReply};
        match op {
            StoreOp::PutTokens(tokens) => {
                for (hash, record) in tokens {
                    self.put_token(hash, record).await?;
                }
                Ok(StoreReply::Done)
            }
            StoreOp::GetToken(hash) => self.get_token(hash).await.map(StoreReply::Token),
            StoreOp::RevokeToken { hash, at } => self
                .revoke_token(hash, *at)
                .await
                .map(|r| StoreReply::Count(usize::from(r))),
            StoreOp::RevokeGrant { grant, at } => {
                self.revoke_grant(grant, *at).await.map(StoreReply::Count)
            }
            StoreOp::PutCode { hash, record } => {
                self.put_code(hash, record).await.map(|()| StoreReply::Done)
            }
            StoreOp::TakeCode(hash) => self.take_code(hash).await.map(StoreReply::Code),
            StoreOp::SetAttributes { hash, set } => {
                self.set_attributes(hash, set).await.map(StoreReply::Token)
            }
            StoreOp::ThrottleCheck { keys, now } => self
                .throttle_check(keys, *now)
                .await
                .map(|r| StoreReply::Throttle(r.err())),
            StoreOp::ThrottleFail { keys, now, config } => self
                .throttle_fail(keys, *now, config)
                .await
                .map(|_| StoreReply::Done),
            StoreOp::ThrottleSuccess(keys) => {
                self.throttle_success(keys).await.map(|()| StoreReply::Done)
            }
            // Not the operation's contents: they may hold token digests.
            _ => Err(RedisError::Reply(
                "token-store operation not supported".to_owned(),
            )),
        }
    }

    /// Runs a token-store operation and answers [`preflow_oauth::StoreReply::Unavailable`]
    /// when Redis fails (the endpoints then answer 503): token operations always fail
    /// closed. The failure is logged.
    pub async fn execute_token(&self, op: &preflow_oauth::StoreOp) -> preflow_oauth::StoreReply {
        match self.run_token(op).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %e, "token store unavailable");
                preflow_oauth::StoreReply::Unavailable
            }
        }
    }

    async fn put_token(&self, hash: &TokenHash, record: &TokenRecord) -> Result<(), RedisError> {
        let json = serde_json::to_string(record)?;
        let expires_ms = record.expires_at.map_or(0, |s| s.saturating_mul(1000));
        let key = self.inner.keys.token(hash);
        let grant_key = self.inner.keys.grant(&record.grant_id);
        let member = hex::encode(hash.0);
        self.guarded("put_token", |mut c| async move {
            self.inner
                .scripts
                .put_record
                .key(&key)
                .arg(&json)
                .arg(expires_ms)
                .invoke_async::<i64>(&mut c)
                .await?;
            if let Some(at) = record.revoked_at {
                redis::cmd("HSET")
                    .arg(&key)
                    .arg("rev")
                    .arg(at)
                    .query_async::<i64>(&mut c)
                    .await?;
            }
            self.inner
                .scripts
                .grant_add
                .key(&grant_key)
                .arg(&member)
                .arg(expires_ms)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn get_token(&self, hash: &TokenHash) -> Result<Option<Arc<TokenRecord>>, RedisError> {
        let key = self.inner.keys.token(hash);
        let (rec, rev): (Option<String>, Option<u64>) = self
            .guarded("get_token", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("rec")
                    .arg("rev")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(rec) = rec else {
            return Ok(None);
        };
        let mut record: TokenRecord = serde_json::from_str(&rec)?;
        if record.revoked_at.is_none() {
            record.revoked_at = rev;
        }
        Ok(Some(Arc::new(record)))
    }

    async fn revoke_token(&self, hash: &TokenHash, at: u64) -> Result<bool, RedisError> {
        let key = self.inner.keys.token(hash);
        let changed: i64 = self
            .guarded("revoke_token", |mut c| async move {
                self.inner
                    .scripts
                    .revoke
                    .key(&key)
                    .arg(at)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(changed == 1)
    }

    async fn revoke_grant(&self, grant: &GrantId, at: u64) -> Result<usize, RedisError> {
        let key = self.inner.keys.grant(grant);
        let members: Vec<String> = self
            .guarded("grant_members", |mut c| async move {
                redis::cmd("SMEMBERS").arg(&key).query_async(&mut c).await
            })
            .await?;
        let mut revoked = 0;
        for member in members {
            let Some(bytes) = unhex32(&member) else {
                tracing::warn!(member, "ignoring a malformed member of a grant set");
                continue;
            };
            if self.revoke_token(&TokenHash(bytes), at).await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Read, change, then compare-and-set in Lua (the multiplexed connection rules out
    /// `WATCH`); a record changed meanwhile by another instance is read again, a bounded
    /// number of times.
    async fn set_attributes(
        &self,
        hash: &TokenHash,
        set: &[(String, String)],
    ) -> Result<Option<Arc<TokenRecord>>, RedisError> {
        const ATTEMPTS: usize = 8;
        let key = &self.inner.keys.token(hash);
        for _ in 0..ATTEMPTS {
            let (rec, rev): (Option<String>, Option<u64>) = self
                .guarded("set_attributes", |mut c| async move {
                    redis::cmd("HMGET")
                        .arg(key)
                        .arg("rec")
                        .arg("rev")
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let Some(rec) = rec else {
                return Ok(None);
            };
            let mut record: TokenRecord = serde_json::from_str(&rec)?;
            record.attributes = preflow_oauth::merge_attributes(&record.attributes, set);
            let json = serde_json::to_string(&record)?;
            let (rec, json) = (&rec, &json);
            let replaced: i64 = self
                .guarded("set_attributes", |mut c| async move {
                    self.inner
                        .scripts
                        .replace_record
                        .key(key)
                        .arg(rec)
                        .arg(json)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            if replaced == 1 {
                if record.revoked_at.is_none() {
                    record.revoked_at = rev;
                }
                return Ok(Some(Arc::new(record)));
            }
        }
        Err(RedisError::Reply(
            "token attributes changed concurrently too often".to_owned(),
        ))
    }

    async fn put_code(&self, hash: &TokenHash, record: &CodeRecord) -> Result<(), RedisError> {
        let json = serde_json::to_string(record)?;
        let key = self.inner.keys.code(hash);
        let expires_ms = record.expires_at.saturating_mul(1000).max(1);
        self.guarded("put_code", |mut c| async move {
            self.inner
                .scripts
                .put_record
                .key(&key)
                .arg(&json)
                .arg(expires_ms)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn take_code(&self, hash: &TokenHash) -> Result<CodeTake, RedisError> {
        let key = self.inner.keys.code(hash);
        let reply: Vec<String> = self
            .guarded("take_code", |mut c| async move {
                self.inner
                    .scripts
                    .take_code
                    .key(&key)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match reply.as_slice() {
            [] => Ok(CodeTake::Unknown),
            [rec, used] => {
                let record: CodeRecord = serde_json::from_str(rec)?;
                Ok(if used == "1" {
                    CodeTake::Reused(record)
                } else {
                    CodeTake::Fresh(record)
                })
            }
            _ => Err(RedisError::Reply(format!(
                "take_code returned {} values",
                reply.len()
            ))),
        }
    }
}
