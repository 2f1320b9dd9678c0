//! The cache policies: ResponseCache, LookupCache, PopulateCache, InvalidateCache; and
//! [`MemoryCache`], an in-memory cache with a bounded size and expiry by a passed-in time.

mod invalidate_cache;
mod lookup_cache;
mod populate_cache;
mod response_cache;

pub(crate) use invalidate_cache::InvalidateCachePolicy;
pub use invalidate_cache::*;
pub(crate) use lookup_cache::LookupCachePolicy;
pub use lookup_cache::*;
pub(crate) use populate_cache::PopulateCachePolicy;
pub use populate_cache::*;
pub(crate) use response_cache::ResponseCachePolicy;
pub use response_cache::*;

use http::StatusCode;

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::runtime::{Fault, Runtime};
use crate::xml::Element;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Longest cache key accepted, in bytes (Apigee's limit is 2 KB).
pub const MAX_KEY_LEN: usize = 2048;

/// `<KeyFragment ref>` or literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFragment {
    /// A literal fragment.
    Literal(String),
    /// A variable's value.
    Variable(String),
}

/// `<CacheKey>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheKey {
    /// `<Prefix>`: replaces the scope prefix.
    pub prefix: Option<String>,
    /// `<KeyFragment>`s in order.
    pub fragments: Vec<KeyFragment>,
}

/// `<Scope>`: what the key is prefixed with when there is no `<Prefix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheScope {
    /// `Exclusive` (default): org, env, proxy, revision and endpoint.
    #[default]
    Exclusive,
    /// `Global`: org and env.
    Global,
    /// `Application`: org, env and proxy.
    Application,
    /// `Proxy`: org, env, proxy, revision and proxy endpoint.
    Proxy,
    /// `Target`: org, env, proxy, revision and target endpoint.
    Target,
}

/// `<ExpirySettings>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// `<TimeoutInSec ref>` (also `TimeoutInSeconds`): seconds from now.
    Timeout(Setting<u64>),
    /// `<TimeOfDay ref>hh:mm:ss`: the next such time, UTC.
    TimeOfDay(Setting<String>),
    /// `<ExpiryDate ref>mm-dd-yyyy`: the end of that day, UTC.
    ExpiryDate(Setting<String>),
}

/// Seconds an entry lives when a policy has no `<ExpirySettings>`.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

impl Default for Expiry {
    fn default() -> Self {
        Self::Timeout(Setting::literal(DEFAULT_TIMEOUT_SECS))
    }
}

impl Expiry {
    /// The expiry time (epoch seconds) of an entry written at `now`.
    pub fn expires_at(&self, now: u64, lookup: &dyn Fn(&str) -> Option<String>) -> u64 {
        let pick = |s: &Setting<String>| {
            s.reference
                .as_deref()
                .and_then(lookup)
                .or_else(|| s.value.clone())
        };
        match self {
            Self::Timeout(s) => {
                let secs = s
                    .reference
                    .as_deref()
                    .and_then(lookup)
                    .and_then(|v| v.trim().parse().ok())
                    .or(s.value)
                    .unwrap_or(DEFAULT_TIMEOUT_SECS);
                now.saturating_add(secs)
            }
            Self::TimeOfDay(s) => {
                let secs = pick(s).and_then(|t| parse_hms(&t)).unwrap_or(0);
                let today = now - now % 86_400;
                let at = today + secs;
                if at > now { at } else { at + 86_400 }
            }
            Self::ExpiryDate(s) => pick(s)
                .and_then(|d| parse_mdy(&d))
                .map_or(now.saturating_add(DEFAULT_TIMEOUT_SECS), |day| day + 86_400),
        }
    }
}

fn parse_hms(t: &str) -> Option<u64> {
    let mut it = t.trim().split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (it.next()??, it.next()??, it.next().unwrap_or(Some(0))?);
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

/// `mm-dd-yyyy` to the epoch second of that day's start.
fn parse_mdy(t: &str) -> Option<u64> {
    let mut it = t.trim().split('-').map(|p| p.parse::<i64>().ok());
    let (m, d, y) = (it.next()??, it.next()??, it.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).ok().map(|d| d * 86_400)
}

/// The settings the cache policies share.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheCommon {
    /// `<CacheKey>`.
    pub key: CacheKey,
    /// `<Scope>`.
    pub scope: CacheScope,
    /// `<CacheResource>`: the named cache (default: the shared default cache).
    pub resource: Option<String>,
}

pub(super) fn common(cx: &mut Cx<'_>, el: &Element) -> CacheCommon {
    let key = match el.child("CacheKey") {
        Some(k) => {
            cx.known(k, &["Prefix", "KeyFragment"]);
            CacheKey {
                prefix: cx.child_text(k, "Prefix"),
                fragments: k
                    .children_named("KeyFragment")
                    .filter_map(|f| match ref_attr(f) {
                        Some(r) => Some(KeyFragment::Variable(r)),
                        None => f
                            .non_empty_text()
                            .map(|t| KeyFragment::Literal(t.to_owned())),
                    })
                    .collect(),
            }
        }
        None => {
            cx.error(el.offset, format!("`<{}>` needs a `<CacheKey>`", el.name));
            CacheKey::default()
        }
    };
    let scope = match cx.child_text(el, "Scope") {
        None => CacheScope::Exclusive,
        Some(s) => match s.as_str() {
            "Exclusive" => CacheScope::Exclusive,
            "Global" => CacheScope::Global,
            "Application" => CacheScope::Application,
            "Proxy" => CacheScope::Proxy,
            "Target" => CacheScope::Target,
            other => {
                if !crate::is_placeholder(other) {
                    cx.error(
                        el.child("Scope").map_or(el.offset, Element::text_offset),
                        format!(
                            "`<Scope>` must be Exclusive, Global, Application, Proxy or Target, not `{other}`"
                        ),
                    );
                }
                CacheScope::Exclusive
            }
        },
    };
    CacheCommon {
        key,
        scope,
        resource: cx.child_text(el, "CacheResource"),
    }
}

pub(super) fn expiry(cx: &mut Cx<'_>, el: &Element) -> Expiry {
    let Some(e) = el.child("ExpirySettings") else {
        return Expiry::default();
    };
    cx.known(
        e,
        &[
            "TimeoutInSec",
            "TimeoutInSeconds",
            "TimeOfDay",
            "ExpiryDate",
            "ExpiryTime",
        ],
    );
    if let Some(t) = e
        .child("TimeoutInSec")
        .or_else(|| e.child("TimeoutInSeconds"))
    {
        return Expiry::Timeout(
            cx.setting(Some(t), "a whole number of seconds", |t| t.parse().ok()),
        );
    }
    if let Some(t) = e.child("TimeOfDay") {
        return Expiry::TimeOfDay(cx.setting(Some(t), "a time hh:mm:ss", |t| {
            parse_hms(t).map(|_| t.to_owned())
        }));
    }
    if let Some(t) = e.child("ExpiryDate") {
        return Expiry::ExpiryDate(cx.setting(Some(t), "a date mm-dd-yyyy", |t| {
            parse_mdy(t).map(|_| t.to_owned())
        }));
    }
    Expiry::default()
}

pub(super) fn condition_text(cx: &mut Cx<'_>, el: &Element, name: &str) -> Option<String> {
    let c = el.child(name)?;
    let text = c.non_empty_text()?;
    if let Err(e) = preflow_condition::parse(text) {
        cx.error(
            c.trimmed_source_offset(e.location().span().start),
            format!("invalid condition in `<{name}>`: {}", e.message()),
        );
    }
    Some(text.to_owned())
}

pub(super) const COMMON: &[&str] = &[
    "CacheKey",
    "Scope",
    "CacheResource",
    "CacheLookupTimeoutInSeconds",
];

/// Where a policy runs, for the key's scope prefix.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ScopeContext<'a> {
    /// `organization.name`.
    pub organization: &'a str,
    /// `environment.name`.
    pub environment: &'a str,
    /// `apiproxy.name`.
    pub proxy: &'a str,
    /// `apiproxy.revision`.
    pub revision: &'a str,
    /// The proxy endpoint's name.
    pub proxy_endpoint: &'a str,
    /// The target endpoint's name, when running in one.
    pub target_endpoint: Option<&'a str>,
}

/// A key that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("the cache key is {0} bytes, longer than the limit of {MAX_KEY_LEN}")]
    TooLong(usize),
}

/// Builds the cache key: the `<Prefix>` (or the scope's prefix) and the fragments, joined
/// with `__`. Fragments that do not resolve are left out. `extra` (such as Accept headers)
/// is appended.
///
/// # Errors
/// A key longer than [`MAX_KEY_LEN`].
pub fn build_key(
    c: &CacheCommon,
    scope: &ScopeContext<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    extra: &[String],
) -> Result<String, KeyError> {
    let mut parts: Vec<String> = Vec::new();
    match &c.key.prefix {
        Some(p) => parts.push(p.clone()),
        None => {
            let s = scope;
            let base = [s.organization, s.environment];
            match c.scope {
                CacheScope::Global => parts.extend(base.map(str::to_owned)),
                CacheScope::Application => {
                    parts.extend([s.organization, s.environment, s.proxy].map(str::to_owned))
                }
                CacheScope::Proxy => parts.extend(
                    [
                        s.organization,
                        s.environment,
                        s.proxy,
                        s.revision,
                        s.proxy_endpoint,
                    ]
                    .map(str::to_owned),
                ),
                CacheScope::Target => parts.extend(
                    [
                        s.organization,
                        s.environment,
                        s.proxy,
                        s.revision,
                        s.target_endpoint.unwrap_or(""),
                    ]
                    .map(str::to_owned),
                ),
                CacheScope::Exclusive => parts.extend(
                    [
                        s.organization,
                        s.environment,
                        s.proxy,
                        s.revision,
                        s.target_endpoint.unwrap_or(s.proxy_endpoint),
                    ]
                    .map(str::to_owned),
                ),
            }
        }
    }
    for f in &c.key.fragments {
        match f {
            KeyFragment::Literal(t) => parts.push(t.clone()),
            KeyFragment::Variable(v) => {
                if let Some(val) = lookup(v) {
                    parts.push(val);
                }
            }
        }
    }
    parts.extend(extra.iter().cloned());
    let key = parts.join("__");
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    Ok(key)
}

/// A cached value: the text of a variable, or a whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedValue {
    /// A variable's text (LookupCache/PopulateCache).
    Text(String),
    /// A response (ResponseCache).
    Response {
        /// Status code.
        status: u16,
        /// Headers in order.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
}

impl CachedValue {
    fn size(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Response { headers, body, .. } => {
                body.len()
                    + headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            }
        }
    }
}

/// Bounds on a [`MemoryCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheLimits {
    /// Most entries held, all caches together.
    pub max_entries: usize,
    /// Most bytes held (keys and values), all caches together.
    pub max_bytes: usize,
    /// Largest single value; larger ones are not cached.
    pub max_value_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 256 * 1024 * 1024,
            max_value_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug)]
struct Entry {
    value: CachedValue,
    expires_at: u64,
    seq: u64,
    size: usize,
}

#[derive(Debug, Default)]
struct Inner {
    // (resource, key) -> entry
    entries: HashMap<(String, String), Entry>,
    // insertion/use order for eviction: seq -> (resource, key)
    order: BTreeMap<u64, (String, String)>,
    bytes: usize,
    seq: u64,
}

impl Inner {
    fn remove(&mut self, k: &(String, String)) {
        if let Some(e) = self.entries.remove(k) {
            self.order.remove(&e.seq);
            self.bytes = self.bytes.saturating_sub(e.size);
        }
    }
}

/// An in-memory cache shared by the cache policies: entries by cache resource and key,
/// with an expiry time, bounded in entries and bytes (least recently used entries are
/// evicted first). Time is passed in; nothing reads the clock.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct MemoryCache {
    limits: CacheLimits,
    inner: Mutex<Inner>,
}

impl MemoryCache {
    /// An empty cache with `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value under `key` in cache `resource` if present and not expired at `now`.
    pub fn get(&self, resource: &str, key: &str, now: u64) -> Option<CachedValue> {
        let mut inner = self.lock();
        let k = (resource.to_owned(), key.to_owned());
        let expired = inner.entries.get(&k).map(|e| e.expires_at <= now)?;
        if expired {
            inner.remove(&k);
            return None;
        }
        inner.seq += 1;
        let seq = inner.seq;
        let old = inner
            .entries
            .get_mut(&k)
            .map(|e| std::mem::replace(&mut e.seq, seq))?;
        inner.order.remove(&old);
        inner.order.insert(seq, k.clone());
        inner.entries.get(&k).map(|e| e.value.clone())
    }

    /// Stores `value` under `key` until `expires_at`. Returns false when the value is
    /// larger than the per-value limit (it is not stored).
    pub fn put(
        &self,
        resource: &str,
        key: &str,
        value: CachedValue,
        expires_at: u64,
        now: u64,
    ) -> bool {
        let size = value.size() + key.len() + resource.len();
        if size > self.limits.max_value_bytes || expires_at <= now {
            return false;
        }
        let mut inner = self.lock();
        let k = (resource.to_owned(), key.to_owned());
        inner.remove(&k);
        while !inner.order.is_empty()
            && (inner.entries.len() >= self.limits.max_entries
                || inner.bytes + size > self.limits.max_bytes)
        {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes = inner.bytes.saturating_sub(e.size);
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.order.insert(seq, k.clone());
        inner.bytes += size;
        inner.entries.insert(
            k,
            Entry {
                value,
                expires_at,
                seq,
                size,
            },
        );
        true
    }

    /// Removes `key`, or with `children` every key that starts with it. Returns how many
    /// entries were removed.
    pub fn invalidate(&self, resource: &str, key: &str, children: bool) -> usize {
        let mut inner = self.lock();
        let doomed: Vec<(String, String)> = inner
            .entries
            .keys()
            .filter(|(r, k)| r == resource && (k == key || (children && k.starts_with(key))))
            .cloned()
            .collect();
        for k in &doomed {
            inner.remove(k);
        }
        doomed.len()
    }

    /// How many entries are held (expired ones included until they are touched).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The time to live a response's own headers allow (`Cache-Control: max-age`, `s-maxage`,
/// `no-store`/`no-cache`/`private` meaning zero), when `UseResponseCacheHeaders` is on.
pub fn response_header_ttl(headers: &[(String, String)]) -> Option<u64> {
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("cache-control") {
            let mut ttl = None;
            for d in v.split(',').map(str::trim) {
                let lower = d.to_ascii_lowercase();
                if lower == "no-store" || lower == "no-cache" || lower == "private" {
                    return Some(0);
                }
                if let Some(n) = lower
                    .strip_prefix("s-maxage=")
                    .or_else(|| lower.strip_prefix("max-age="))
                    .and_then(|n| n.parse().ok())
                {
                    ttl = Some(ttl.map_or(n, |t: u64| t.min(n)));
                }
            }
            if ttl.is_some() {
                return ttl;
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Keys for an exchange

pub(crate) fn resource(c: &CacheCommon) -> &str {
    c.resource.as_deref().unwrap_or("")
}

pub(crate) fn key_of<R: Runtime>(
    rt: &R,
    c: &CacheCommon,
    extra: &[String],
) -> Result<String, Box<Fault>> {
    let revision = rt.variable("apiproxy.revision").unwrap_or_default();
    let proxy_endpoint = rt.variable("proxy.name").unwrap_or_default();
    let target = rt.variable("target.name");
    let scope = ScopeContext {
        organization: &rt.env().settings.organization,
        environment: &rt.env().settings.environment,
        proxy: rt.bundle_name(),
        revision: &revision,
        proxy_endpoint: &proxy_endpoint,
        target_endpoint: target.as_deref(),
    };
    build_key(c, &scope, &|n| rt.variable(n), extra).map_err(|e| {
        Box::new(Fault::new(
            "steps.cache.InvalidCacheKey",
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    })
}

#[cfg(test)]
mod tests;
