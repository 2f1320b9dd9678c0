//! [`RegistrySync`]: the registry of every instance kept consistent through Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use preflow_oauth::Registry;
use serde::{Deserialize, Serialize};

use crate::error::RedisError;
use crate::registry::{TABLES, apply_record, record_json, records};
use crate::store::RedisStore;

/// Writes records whose version is newer than the stored one and publishes what changed.
///
/// KEYS: the four tables, the four version tables, the channel (in [`TABLES`] order).
/// ARGV: mode (`change`, `seed` or `republish`), now (ms), change id, instance id, then
/// per record: table index (1-4), id, version, json.
const WRITE: &str = r#"
local mode, now = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 5, #ARGV, 4 do
  local t, id, v, json = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local cur = tonumber(redis.call('HGET', KEYS[4 + t], id) or '-1')
  local w = nil
  if mode == 'change' then
    w = math.max(now, cur + 1)
  elseif cur < v then
    w = v
  end
  if w then
    redis.call('HSET', KEYS[t], id, json)
    redis.call('HSET', KEYS[4 + t], id, string.format('%d', w))
    out[#out + 1] = {t, id, string.format('%d', w)}
  end
end
local receivers = 0
if #out > 0 then
  receivers = redis.call('PUBLISH', KEYS[9], cjson.encode({c = ARGV[3], from = ARGV[4], r = out}))
end
return {receivers, cjson.encode(out)}
"#;

static WRITE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(WRITE));

fn keys(store: &RedisStore) -> Vec<String> {
    let layout = store.keys();
    let mut keys: Vec<String> = TABLES.iter().map(|t| layout.registry(t)).collect();
    keys.extend(TABLES.iter().map(|t| layout.registry(&format!("v:{t}"))));
    keys.push(layout.registry("changes"));
    keys
}

/// Runs the write script with `rows` of `(table index, id, version, json)`; returns the
/// receivers of the notification and the records written with their versions.
pub(crate) async fn versioned_write(
    store: &RedisStore,
    mode: &str,
    change: &str,
    instance: &str,
    rows: &[(usize, String, u64, String)],
) -> Result<(u64, Vec<(usize, String, u64)>), RedisError> {
    if rows.is_empty() {
        return Ok((0, Vec::new()));
    }
    let keys = keys(store);
    let (receivers, written): (i64, String) = store
        .guarded("registry_write", |mut c| {
            let mut invocation = WRITE_SCRIPT.prepare_invoke();
            for k in &keys {
                invocation.key(k);
            }
            invocation.arg(mode).arg(now_ms()).arg(change).arg(instance);
            for (t, id, v, json) in rows {
                invocation.arg(*t).arg(id).arg(*v).arg(json);
            }
            async move { invocation.invoke_async(&mut c).await }
        })
        .await?;
    // cjson encodes an empty table as an object.
    let written: Vec<(usize, String, String)> = if written == "{}" {
        Vec::new()
    } else {
        serde_json::from_str(&written)?
    };
    let written = written
        .into_iter()
        .map(|(t, id, v)| (t, id, v.parse().unwrap_or(0)))
        .collect();
    Ok((u64::try_from(receivers).unwrap_or(0), written))
}

/// A change of one record made through [`crate::RedisRegistry`]: written as newer than
/// anything stored and notified to every instance (without waiting for confirmations).
pub(crate) async fn write_change(
    store: &RedisStore,
    table: &str,
    id: String,
    json: String,
) -> Result<(), RedisError> {
    let change = preflow_oauth::secret::random_token(12);
    let rows = [(table_index(table), id, 0, json)];
    versioned_write(store, "change", &change, "library", &rows)
        .await
        .map(|_| ())
}

/// What one instance knows about a record: the version and JSON it last applied or wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    version: u64,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    c: String,
    from: String,
    r: Vec<(usize, String, String)>,
}

/// The outcome of [`RegistrySync::publish_changes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Records written (newer than Redis held).
    pub records: usize,
    /// Instances that received the notification (this one included).
    pub receivers: u64,
    /// Instances that confirmed having applied it.
    pub confirmed: u64,
}

struct Inner {
    store: RedisStore,
    /// Where to subscribe: one server, or the nodes of a cluster tried in turn (a
    /// notification published on any node reaches subscribers on every node).
    clients: Vec<redis::Client>,
    attempt: std::sync::atomic::AtomicUsize,
    registry: Arc<Registry>,
    known: Mutex<HashMap<(usize, String), Known>>,
    fresh: AtomicBool,
    instance: String,
    confirm_timeout: Duration,
    publishing: tokio::sync::Mutex<()>,
}

/// Keeps one instance's registry consistent with every other's through Redis, by
/// versioned records and change notifications (pub/sub), not by polling. Cheap to clone.
///
/// * **Versioned records.** Each registry record (developer, product, app, credential) has
///   a version beside it in Redis (`P:{registry}:v:TABLE`). A change made on an instance
///   is written with version `max(now in ms, stored + 1)`, so it is newer than anything
///   stored. Records read from an apps file at start are *seeds* (version 0): written only
///   where Redis has no record, so a stale apps file or a restarted instance never
///   overwrites a newer record. Every write happens in one Lua script on the `{registry}`
///   hash tag, with the notification.
/// * **Notification and confirmation.** The script publishes the changed `(table, id,
///   version)`s on `P:{registry}:changes`; every subscribed instance reads the records,
///   applies them to its in-memory registry (its cache) when newer than what it holds, and
///   confirms by incrementing `P:{registry}:ack:CHANGE`. [`RegistrySync::publish_changes`]
///   returns once every instance that received the notification has confirmed (or its
///   confirmation timeout passed): an acknowledged change is in force on every connected
///   instance.
/// * **Stale instances do not issue.** While its subscription is down (Redis restarted,
///   connection lost), an instance is not [`RegistrySync::is_fresh`]; hosts refuse to
///   issue tokens then. On every (re)subscription it first republishes its records where
///   Redis lacks them or holds older versions (so an instance republishes what Redis lost),
///   then loads every record newer than its own, and only then is fresh again. A marker
///   key (`P:{registry}:epoch`), checked every second, detects a Redis that lost its data
///   without dropping connections (`FLUSHALL`) and triggers the same republication.
#[derive(Clone)]
pub struct RegistrySync {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistrySync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySync")
            .field("instance", &self.inner.instance)
            .field("fresh", &self.is_fresh())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn table_index(table: &str) -> usize {
    TABLES.iter().position(|t| *t == table).map_or(0, |i| i + 1)
}

fn table_name(index: usize) -> Option<&'static str> {
    index.checked_sub(1).and_then(|i| TABLES.get(i)).copied()
}

/// The default time [`RegistrySync::publish_changes`] waits for confirmations.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// An instance without a heartbeat for this long (ms) is no longer waited for.
const MEMBER_TTL_MS: u64 = 3_000;

impl RegistrySync {
    /// Keeps `registry` in step with Redis at `url` through `store` (whose timeout bounds
    /// each registry read and write). Its records are seeds until changed. Nothing is
    /// read or written before [`RegistrySync::start`].
    pub fn new(url: &str, store: RedisStore, registry: Arc<Registry>) -> Result<Self, RedisError> {
        Self::with_urls(&[url.to_owned()], store, registry)
    }

    /// Like [`RegistrySync::new`], subscribing to any of `urls` (the nodes of a Redis
    /// Cluster, tried in turn when one fails).
    pub fn with_urls(
        urls: &[String],
        store: RedisStore,
        registry: Arc<Registry>,
    ) -> Result<Self, RedisError> {
        let clients = urls
            .iter()
            .map(|u| redis::Client::open(u.as_str()).map_err(|e| RedisError::Url(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err(RedisError::Url("no redis url".into()));
        }
        let mut known = HashMap::new();
        for (table, id, json) in records(&registry)? {
            known.insert((table_index(table), id), Known { version: 0, json });
        }
        Ok(RegistrySync {
            inner: Arc::new(Inner {
                store,
                clients,
                attempt: std::sync::atomic::AtomicUsize::new(0),
                registry,
                known: Mutex::new(known),
                fresh: AtomicBool::new(false),
                instance: preflow_oauth::secret::random_token(12),
                confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
                publishing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The registry kept in step.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// Whether the subscription is up and every record published before it was loaded:
    /// the registry is as current as the notifications make it.
    pub fn is_fresh(&self) -> bool {
        self.inner.fresh.load(Ordering::Acquire)
    }

    fn channel(&self) -> String {
        self.inner.store.keys().registry("changes")
    }

    fn epoch_key(&self) -> String {
        self.inner.store.keys().registry("epoch")
    }

    fn ack_key(&self, change: &str) -> String {
        self.inner.store.keys().registry(&format!("ack:{change}"))
    }

    async fn write(
        &self,
        mode: &str,
        change: &str,
        rows: &[(usize, String, u64, String)],
    ) -> Result<(u64, Vec<(usize, String, u64)>), RedisError> {
        versioned_write(&self.inner.store, mode, change, &self.inner.instance, rows).await
    }

    fn remember(&self, written: &[(usize, String, u64)]) -> Result<(), RedisError> {
        let mut known = self.known_lock();
        for (t, id, v) in written {
            let json = table_name(*t)
                .map(|table| record_json(&self.inner.registry, table, id))
                .transpose()?
                .flatten()
                .unwrap_or_default();
            known.insert((*t, id.clone()), Known { version: *v, json });
        }
        Ok(())
    }

    fn known_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, String), Known>> {
        self.inner
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the records of the local registry that changed since they were last
    /// written or applied (versioned as changes), notifies every instance, and waits
    /// until every instance that received the notification confirmed it (at most the
    /// confirmation timeout). Call after changing the registry.
    pub async fn publish_changes(&self) -> Result<Published, RedisError> {
        let _one_at_a_time = self.inner.publishing.lock().await;
        let (change, receivers, records) = self.write_changes().await?;
        let confirmed = self.await_confirmations(&change, receivers).await;
        if confirmed < receivers {
            tracing::warn!(
                receivers,
                confirmed,
                "registry change not confirmed by every instance in time"
            );
        }
        Ok(Published {
            records,
            receivers,
            confirmed,
        })
    }

    /// Writes the local changes; returns the change id, the receivers of the
    /// notification and the number of records written.
    async fn write_changes(&self) -> Result<(String, u64, usize), RedisError> {
        let rows: Vec<(usize, String, u64, String)> = {
            let known = self.known_lock();
            records(&self.inner.registry)?
                .into_iter()
                .filter_map(|(table, id, json)| {
                    let t = table_index(table);
                    match known.get(&(t, id.clone())) {
                        Some(k) if k.json == json => None,
                        _ => Some((t, id, 0, json)),
                    }
                })
                .collect()
        };
        let change = preflow_oauth::secret::random_token(12);
        let (receivers, written) = self.write("change", &change, &rows).await?;
        self.remember(&written)?;
        Ok((change, receivers, written.len()))
    }

    fn members_key(&self) -> String {
        self.inner.store.keys().registry("members")
    }

    /// Notes this instance as live (a heartbeat in `P:{registry}:members`).
    async fn heartbeat(&self) -> Result<(), RedisError> {
        let key = self.members_key();
        let instance = self.inner.instance.clone();
        let now = now_ms();
        self.inner
            .store
            .guarded("registry_member", |mut c| async move {
                redis::pipe()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(now)
                    .arg(&instance)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now.saturating_sub(MEMBER_TTL_MS))
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// Instances that sent a heartbeat within [`MEMBER_TTL_MS`].
    async fn live_members(&self) -> u64 {
        let key = self.members_key();
        let since = now_ms().saturating_sub(MEMBER_TTL_MS);
        self.inner
            .store
            .guarded("registry_member", |mut c| async move {
                redis::cmd("ZCOUNT")
                    .arg(&key)
                    .arg(since)
                    .arg("+inf")
                    .query_async::<u64>(&mut c)
                    .await
            })
            .await
            .unwrap_or(0)
    }

    async fn await_confirmations(&self, change: &str, receivers: u64) -> u64 {
        // On a cluster, PUBLISH counts the subscribers of one node only: wait for every
        // live instance as well.
        let receivers = receivers.max(self.live_members().await);
        if receivers == 0 {
            return 0;
        }
        let key = self.ack_key(change);
        let deadline = Instant::now() + self.inner.confirm_timeout;
        let mut confirmed = 0;
        loop {
            let got: Result<Option<u64>, _> = self
                .inner
                .store
                .guarded("registry_ack", |mut c| {
                    let key = key.clone();
                    async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }
                })
                .await;
            if let Ok(Some(n)) = got {
                confirmed = n;
            }
            if confirmed >= receivers || Instant::now() >= deadline {
                return confirmed;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Writes this instance's records where Redis has none (seeds) or an older version
    /// (what Redis lost), without notifying changes of the seeds' content.
    async fn republish(&self) -> Result<usize, RedisError> {
        let rows: Vec<(usize, String, u64, String)> = self
            .known_lock()
            .iter()
            .map(|((t, id), k)| (*t, id.clone(), k.version, k.json.clone()))
            .collect();
        let mut rows = rows;
        rows.sort_by_key(|(t, ..)| *t);
        let change = preflow_oauth::secret::random_token(12);
        let (_, written) = self.write("republish", &change, &rows).await?;
        if !written.is_empty() {
            tracing::info!(
                records = written.len(),
                "registry records republished to redis"
            );
        }
        Ok(written.len())
    }

    /// Loads every record Redis holds in a newer version than this instance (or in the
    /// same version with other content: seeds of another apps file).
    async fn load_newer(&self) -> Result<usize, RedisError> {
        let mut applied = 0;
        for (i, table) in TABLES.iter().enumerate() {
            let t = i + 1;
            let records = self.inner.store.hgetall(table).await?;
            let versions: HashMap<String, String> = self
                .inner
                .store
                .hgetall(&format!("v:{table}"))
                .await?
                .into_iter()
                .collect();
            for (id, json) in records {
                let version = versions.get(&id).and_then(|v| v.parse().ok()).unwrap_or(0);
                if self.apply(t, &id, version, &json)? {
                    applied += 1;
                }
            }
        }
        Ok(applied)
    }

    /// Applies a record if it is newer than the known one; whether it was applied.
    fn apply(&self, t: usize, id: &str, version: u64, json: &str) -> Result<bool, RedisError> {
        let Some(table) = table_name(t) else {
            return Ok(false);
        };
        let mut known = self.known_lock();
        if let Some(k) = known.get(&(t, id.to_owned()))
            && (k.version > version || k.json == json)
        {
            return Ok(false);
        }
        apply_record(&self.inner.registry, table, json)?;
        tracing::debug!(table, version, "registry record applied");
        let json = record_json(&self.inner.registry, table, id)?.unwrap_or_default();
        known.insert((t, id.to_owned()), Known { version, json });
        Ok(true)
    }

    async fn fetch_and_apply(&self, notice: &Notice) -> Result<(), RedisError> {
        for (t, id, version) in &notice.r {
            let version: u64 = version.parse().unwrap_or(0);
            let already = self
                .known_lock()
                .get(&(*t, id.clone()))
                .is_some_and(|k| k.version >= version);
            if already {
                continue;
            }
            let Some(table) = table_name(*t) else {
                continue;
            };
            let key = self.inner.store.keys().registry(table);
            let json: Option<String> = self
                .inner
                .store
                .guarded("registry_read", |mut c| {
                    let key = key.clone();
                    let id = id.clone();
                    async move {
                        redis::cmd("HGET")
                            .arg(&key)
                            .arg(&id)
                            .query_async(&mut c)
                            .await
                    }
                })
                .await?;
            if let Some(json) = json {
                self.apply(*t, id, version, &json)?;
            }
        }
        Ok(())
    }

    async fn confirm(&self, change: &str) {
        let key = self.ack_key(change);
        let result: Result<(), _> = self
            .inner
            .store
            .guarded("registry_ack", |mut c| async move {
                redis::pipe()
                    .cmd("INCR")
                    .arg(&key)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(10_000)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "registry change not confirmed");
        }
    }

    /// Brings Redis and this instance in step: republishes what Redis lacks, loads what
    /// is newer, and marks the epoch.
    async fn reconcile(&self) -> Result<(), RedisError> {
        self.republish().await?;
        // Changes made here while Redis was unreachable (not confirmed: this task is the
        // one that would confirm them).
        self.write_changes().await?;
        let applied = self.load_newer().await?;
        if applied > 0 {
            tracing::info!(records = applied, "registry records loaded from redis");
        }
        let epoch = self.epoch_key();
        self.inner
            .store
            .guarded("registry_epoch", |mut c| async move {
                redis::cmd("SET")
                    .arg(&epoch)
                    .arg("1")
                    .arg("NX")
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Whether Redis lost the registry (the epoch marker is gone). An error means Redis
    /// does not answer: the subscription may be dead without the connection saying so.
    async fn epoch_lost(&self) -> Result<bool, RedisError> {
        let epoch = self.epoch_key();
        let exists: i64 = self
            .inner
            .store
            .guarded("registry_epoch", |mut c| async move {
                redis::cmd("EXISTS").arg(&epoch).query_async(&mut c).await
            })
            .await?;
        Ok(exists == 0)
    }

    /// Writes the seeds, loads newer records, subscribes to changes (a task that
    /// resubscribes and reconciles after every loss), and returns once the registry is
    /// fresh or `wait` has passed (Redis down: the task keeps trying). Stops when the
    /// returned guard is dropped.
    pub async fn start(&self, wait: Duration) -> SyncTask {
        let this = self.clone();
        let handle = tokio::spawn(async move { this.run().await });
        let deadline = Instant::now() + wait;
        while !self.is_fresh() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        SyncTask(handle)
    }

    async fn run(&self) {
        loop {
            if let Err(e) = self.subscribed().await {
                tracing::warn!(error = %e, "registry subscription lost; resubscribing");
            }
            self.inner.fresh.store(false, Ordering::Release);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One subscription: subscribe, reconcile, then apply notifications until the
    /// connection ends.
    async fn subscribed(&self) -> Result<(), RedisError> {
        let timeout = self.inner.store.timeout().max(Duration::from_millis(200));
        let n = self.inner.attempt.fetch_add(1, Ordering::Relaxed);
        let Some(client) = self.inner.clients.get(n % self.inner.clients.len().max(1)) else {
            return Err(RedisError::Url("no redis url".into()));
        };
        let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
            .await
            .map_err(|_| RedisError::Timeout(u64::try_from(timeout.as_millis()).unwrap_or(0)))??;
        pubsub.subscribe(self.channel()).await?;
        // Notifications from now on are received; everything before is in Redis.
        self.reconcile().await?;
        self.heartbeat().await?;
        self.inner.fresh.store(true, Ordering::Release);
        tracing::info!("registry subscribed to changes");
        let mut messages = pubsub.on_message();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(RedisError::Reply("subscription closed".into()));
                    };
                    let payload: String = msg.get_payload()?;
                    let notice: Notice = serde_json::from_str(&payload)?;
                    if let Err(e) = self.fetch_and_apply(&notice).await {
                        // Not confirmed: the publisher reports it; reload everything.
                        tracing::warn!(error = %e, "registry change not applied");
                        self.inner.fresh.store(false, Ordering::Release);
                        return Err(e);
                    }
                    self.confirm(&notice.c).await;
                }
                _ = check.tick() => {
                    self.heartbeat().await?;
                    if self.epoch_lost().await? {
                        tracing::warn!("redis lost the registry; republishing");
                        self.reconcile().await?;
                    }
                }
            }
        }
    }
}

/// Stops the subscription when dropped.
#[derive(Debug)]
pub struct SyncTask(tokio::task::JoinHandle<()>);

impl Drop for SyncTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
