//! The counter-store interface: operations, replies, and the in-memory store.
//!
//! Every rate-limit decision is one atomic operation on one key. A [`CounterStore`] answers
//! it inline (the in-memory [`MemoryStore`], or a host's shared memory). A remote backend
//! such as Redis cannot be awaited inside this sans-IO crate, so the limiters can also
//! express the decision as a [`StoreOp`]: the host (or an async driver) runs it remotely,
//! gets a [`StoreReply`], and [`StoreOp::resolve`] turns the reply into the [`Decision`],
//! with no further I/O. Both paths perform the same arithmetic, defined here.
//!
//! # The operations
//!
//! * [`GcraTake`] (SpikeArrest): the key holds one integer, the theoretical arrival time
//!   (TAT) in nanoseconds; an absent key means TAT 0. With `base = max(tat, now)` and
//!   `new = base + weight·emission_interval_ns`, the request conforms iff
//!   `new − now ≤ tolerance_ns`; then the key is set to `new`, otherwise it is unchanged.
//!   A Redis script runs this with `GET`/`SET ... PXAT` (the key may expire at `new`).
//! * [`QuotaIncr`] (Quota default, calendar, flexi): the key holds a window
//!   `(start, expires_at, used, exceeded)`. If it is absent or expired at `now`, the
//!   window of the operation starts with `used = 0`. Then, if `used + weight ≤ limit`,
//!   `used += weight` and the request is allowed; otherwise `exceeded += weight` and it is
//!   rejected, so rejected requests never consume quota. This is `HINCRBY` guarded by the
//!   limit, with `PEXPIREAT expires_at`.
//! * [`QuotaSlide`] (Quota rollingwindow): the key holds per-slot counters of
//!   `slot_ns` each; the request is admitted iff the slots that cover the last
//!   `lookback_ns` (rounded out to whole slots, so the count is never under-estimated) plus
//!   `weight` stay within `limit`. In Redis: a hash of slot → count, summed and trimmed by
//!   a script.
//!
//! A remote backend must keep the integer arithmetic exact. Redis Lua numbers are doubles,
//! exact only up to 2^53 (about 104 days in nanoseconds), so a script should store times
//! relative to a fixed recent origin, or compare as 64-bit integers, rather than compute on
//! raw epoch nanoseconds. Replies carry the state after the operation, from which
//! [`StoreOp::resolve`] derives everything else (retry-after, available count).
//!
//! # Bounded memory
//!
//! [`MemoryStore`] reclaims idle keys. A key is idle when its state is indistinguishable
//! from an absent key: a TAT at or before `now`, a quota window that has expired, or a
//! rolling window whose every slot has aged out. Removing such keys never changes a
//! decision. Reclaiming happens in two ways:
//!
//! * amortised: after a number of new keys equal to the number of keys that survived the
//!   last sweep (at least [`MemoryStore::DEFAULT_MIN_SWEEP`]), the thread that inserts the
//!   next key sweeps the map once, removing the keys that were already idle an idle grace
//!   before its `now` ([`MemoryStore::DEFAULT_IDLE_GRACE_NS`], 1 s). The grace keeps keys
//!   that come back soon from being freed and allocated again on every visit. Checks on
//!   existing keys never sweep, so the hot path pays nothing, and the map holds at most
//!   about twice the keys active within their window plus the grace, plus the threshold.
//!   Both numbers are set with [`MemoryStore::with_sweep`];
//! * on demand: [`CounterStore::reclaim`], which removes every key idle at the given time
//!   (a map that another thread is sweeping at that moment is skipped).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::quota::QuotaDecision;
use crate::spike::SpikeDecision;
use crate::time::Timestamp;

/// A SpikeArrest operation: take `weight` from the GCRA state of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraTake {
    /// The time of the request.
    pub now: Timestamp,
    /// The emission interval `T`: the period divided by the rate, in nanoseconds.
    pub emission_interval_ns: u64,
    /// How far the new TAT may lie ahead of `now`: `weight·T` for the Edge behaviour
    /// (a request passes only when the previous one's interval has elapsed) and `burst·T`
    /// for the Apigee X behaviour (a token bucket of `burst` messages).
    pub tolerance_ns: u64,
    /// The message weight; 0 takes nothing.
    pub weight: u32,
}

impl GcraTake {
    /// The amount the TAT advances on success: `weight·T`, saturating.
    pub const fn increment_ns(&self) -> u64 {
        (self.weight as u64).saturating_mul(self.emission_interval_ns)
    }

    /// Applies the operation to a stored TAT (0 for an absent key): `Ok(new_tat)` if the
    /// request conforms, `Err(stored_tat)` otherwise. This is the whole algorithm; stores
    /// call it inside their atomic section.
    pub const fn apply(&self, tat: u64) -> Result<u64, u64> {
        let now = self.now.as_nanos();
        let base = if tat > now { tat } else { now };
        let new = base.saturating_add(self.increment_ns());
        if new - now <= self.tolerance_ns {
            Ok(new)
        } else {
            Err(tat)
        }
    }

    /// The decision a reply to this operation means.
    pub fn decide(&self, reply: &GcraReply) -> SpikeDecision {
        if reply.allowed {
            return SpikeDecision {
                allowed: true,
                retry_after_ns: 0,
            };
        }
        let base = u128::from(reply.tat.as_nanos().max(self.now.as_nanos()));
        let increment = u128::from(self.weight) * u128::from(self.emission_interval_ns);
        let conforming_at = (base + increment).saturating_sub(u128::from(self.tolerance_ns));
        let conforming_at = u64::try_from(conforming_at).unwrap_or(u64::MAX);
        SpikeDecision {
            allowed: false,
            retry_after_ns: conforming_at.saturating_sub(self.now.as_nanos()).max(1),
        }
    }
}

/// The reply to a [`GcraTake`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcraReply {
    /// Whether the request conformed (and the TAT moved).
    pub allowed: bool,
    /// The TAT after the operation: the new one if allowed, the unchanged one otherwise.
    pub tat: Timestamp,
}

/// A Quota operation on a fixed window (types default, calendar and flexi).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaIncr {
    /// The time of the request.
    pub now: Timestamp,
    /// The start of the window to open if the key holds no live window.
    pub window_start: Timestamp,
    /// The end (exclusive) of that window; the key may expire then.
    pub expires_at: Timestamp,
    /// The message weight; 0 counts nothing.
    pub weight: u32,
    /// The allowed count in the window.
    pub limit: u64,
}

/// A Quota operation on a rolling window (type rollingwindow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaSlide {
    /// The time of the request.
    pub now: Timestamp,
    /// The width of one counting slot in nanoseconds (never 0).
    pub slot_ns: u64,
    /// How far back the window looks, in nanoseconds.
    pub lookback_ns: u64,
    /// The message weight; 0 counts nothing.
    pub weight: u32,
    /// The allowed count in any window of `lookback_ns`.
    pub limit: u64,
}

/// The reply to a [`QuotaIncr`] or [`QuotaSlide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaReply {
    /// Whether the request fitted in the quota (and was counted).
    pub allowed: bool,
    /// The count used in the window after the operation.
    pub used: u64,
    /// The weight rejected in this window so far, this request included.
    pub total_exceeded: u64,
    /// When the window ends; `None` for a rolling window.
    pub expires_at: Option<Timestamp>,
}

/// Number of slots a rolling window is divided into; the window is counted with one more.
pub(crate) const ROLLING_SLOTS: u64 = 60;
/// Size of the slot ring kept per rolling-window key.
const RING: usize = 64;

/// One decision expressed as an atomic operation on one key, for a store that is not
/// answered inline (e.g. a Redis script). Obtained from
/// [`SpikeArrest::store_op`](crate::SpikeArrest::store_op) or
/// [`Quota::store_op`](crate::Quota::store_op).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// SpikeArrest GCRA on `key`.
    GcraTake {
        /// The store key.
        key: String,
        /// The operation.
        take: GcraTake,
    },
    /// Quota fixed-window increment on `key`.
    QuotaIncr {
        /// The store key.
        key: String,
        /// The operation.
        incr: QuotaIncr,
    },
    /// Quota rolling-window increment on `key`.
    QuotaSlide {
        /// The store key.
        key: String,
        /// The operation.
        slide: QuotaSlide,
    },
}

/// The reply of a store to a [`StoreOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreReply {
    /// The reply to [`StoreOp::GcraTake`].
    Gcra(GcraReply),
    /// The reply to [`StoreOp::QuotaIncr`] or [`StoreOp::QuotaSlide`].
    Quota(QuotaReply),
}

/// A rate-limit decision, as produced by [`StoreOp::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A SpikeArrest decision.
    Spike(SpikeDecision),
    /// A Quota decision.
    Quota(QuotaDecision),
}

impl Decision {
    /// Whether the request may proceed.
    pub const fn is_allowed(&self) -> bool {
        match self {
            Decision::Spike(d) => d.allowed,
            Decision::Quota(d) => d.allowed,
        }
    }
}

/// A [`StoreReply`] of the wrong kind was given to [`StoreOp::resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store reply does not match the operation: expected a {expected} reply")]
pub struct ReplyMismatch {
    expected: &'static str,
}

impl StoreOp {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            StoreOp::GcraTake { key, .. }
            | StoreOp::QuotaIncr { key, .. }
            | StoreOp::QuotaSlide { key, .. } => key,
        }
    }

    /// Turns the store's reply into the decision. Pure: no I/O, no clock.
    pub fn resolve(&self, reply: &StoreReply) -> Result<Decision, ReplyMismatch> {
        match (self, reply) {
            (StoreOp::GcraTake { take, .. }, StoreReply::Gcra(r)) => {
                Ok(Decision::Spike(take.decide(r)))
            }
            (StoreOp::QuotaIncr { incr, .. }, StoreReply::Quota(r)) => Ok(Decision::Quota(
                QuotaDecision::from_reply(incr.limit, incr.weight, r),
            )),
            (StoreOp::QuotaSlide { slide, .. }, StoreReply::Quota(r)) => Ok(Decision::Quota(
                QuotaDecision::from_reply(slide.limit, slide.weight, r),
            )),
            (StoreOp::GcraTake { .. }, StoreReply::Quota(_)) => {
                Err(ReplyMismatch { expected: "gcra" })
            }
            (_, StoreReply::Gcra(_)) => Err(ReplyMismatch { expected: "quota" }),
        }
    }
}

/// A store that answers rate-limit operations inline and atomically.
///
/// Implement it for state the host can reach synchronously (process memory, proxy-wasm
/// shared data with compare-and-swap). Remote stores are driven through [`StoreOp`] instead.
/// Each method must apply its operation atomically per key, exactly as documented in the
/// [module docs](self).
pub trait CounterStore {
    /// Applies a [`GcraTake`] to `key`.
    fn gcra_take(&self, key: &str, take: &GcraTake) -> GcraReply;
    /// Applies a [`QuotaIncr`] to `key`.
    fn quota_incr(&self, key: &str, incr: &QuotaIncr) -> QuotaReply;
    /// Applies a [`QuotaSlide`] to `key`.
    fn quota_slide(&self, key: &str, slide: &QuotaSlide) -> QuotaReply;
    /// Removes the state of keys idle at `now` (state equal to that of an absent key) and
    /// returns how many were removed.
    fn reclaim(&self, now: Timestamp) -> usize;

    /// Runs a [`StoreOp`], as a remote backend would.
    fn run(&self, op: &StoreOp) -> StoreReply {
        match op {
            StoreOp::GcraTake { key, take } => StoreReply::Gcra(self.gcra_take(key, take)),
            StoreOp::QuotaIncr { key, incr } => StoreReply::Quota(self.quota_incr(key, incr)),
            StoreOp::QuotaSlide { key, slide } => StoreReply::Quota(self.quota_slide(key, slide)),
        }
    }
}

impl<S: CounterStore + ?Sized> CounterStore for &S {
    fn gcra_take(&self, key: &str, take: &GcraTake) -> GcraReply {
        (**self).gcra_take(key, take)
    }
    fn quota_incr(&self, key: &str, incr: &QuotaIncr) -> QuotaReply {
        (**self).quota_incr(key, incr)
    }
    fn quota_slide(&self, key: &str, slide: &QuotaSlide) -> QuotaReply {
        (**self).quota_slide(key, slide)
    }
    fn reclaim(&self, now: Timestamp) -> usize {
        (**self).reclaim(now)
    }
}

impl<S: CounterStore + ?Sized> CounterStore for std::sync::Arc<S> {
    fn gcra_take(&self, key: &str, take: &GcraTake) -> GcraReply {
        (**self).gcra_take(key, take)
    }
    fn quota_incr(&self, key: &str, incr: &QuotaIncr) -> QuotaReply {
        (**self).quota_incr(key, incr)
    }
    fn quota_slide(&self, key: &str, slide: &QuotaSlide) -> QuotaReply {
        (**self).quota_slide(key, slide)
    }
    fn reclaim(&self, now: Timestamp) -> usize {
        (**self).reclaim(now)
    }
}

/// Applies a GCRA take to an atomic TAT with a compare-and-swap loop.
#[inline]
pub(crate) fn gcra_cas(cell: &AtomicU64, take: &GcraTake) -> GcraReply {
    let mut tat = cell.load(Ordering::Relaxed);
    loop {
        match take.apply(tat) {
            Ok(new) => {
                match cell.compare_exchange_weak(tat, new, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        return GcraReply {
                            allowed: true,
                            tat: Timestamp::from_nanos(new),
                        };
                    }
                    Err(actual) => tat = actual,
                }
            }
            Err(tat) => {
                return GcraReply {
                    allowed: false,
                    tat: Timestamp::from_nanos(tat),
                };
            }
        }
    }
}

#[derive(Debug)]
struct FixedWindow {
    expires_at: u64,
    used: u64,
    exceeded: u64,
}

#[derive(Debug)]
struct RollingWindow {
    slot_ns: u64,
    /// Index (time / slot_ns) of the newest slot written.
    newest: u64,
    counts: [u64; RING],
    exceeded: u64,
}

impl RollingWindow {
    fn new(slot_ns: u64, index: u64) -> Self {
        RollingWindow {
            slot_ns,
            newest: index,
            counts: [0; RING],
            exceeded: 0,
        }
    }

    fn slot(&mut self, index: u64) -> Option<&mut u64> {
        self.counts.get_mut((index % RING as u64) as usize)
    }

    /// Moves the ring forward to `index`, clearing the slots that are reused.
    fn advance(&mut self, index: u64) {
        if index <= self.newest {
            return;
        }
        if index - self.newest >= RING as u64 {
            self.counts = [0; RING];
        } else {
            for i in self.newest + 1..=index {
                if let Some(c) = self.slot(i) {
                    *c = 0;
                }
            }
        }
        self.newest = index;
    }

    /// The count in the slots `newest - span ..= newest`.
    fn sum(&self, span: u64) -> u64 {
        let span = span.min(RING as u64 - 1).min(self.newest);
        (self.newest - span..=self.newest)
            .filter_map(|i| self.counts.get((i % RING as u64) as usize))
            .fold(0u64, |a, c| a.saturating_add(*c))
    }

    fn idle(&self, now: u64) -> bool {
        now / self.slot_ns >= self.newest.saturating_add(RING as u64)
    }
}

/// Bookkeeping for the amortised sweep of one map.
#[derive(Debug)]
struct Sweeper {
    inserted: AtomicUsize,
    threshold: AtomicUsize,
    running: AtomicBool,
    min: usize,
}

impl Sweeper {
    fn new(min: usize) -> Self {
        Sweeper {
            inserted: AtomicUsize::new(0),
            threshold: AtomicUsize::new(min),
            running: AtomicBool::new(false),
            min,
        }
    }

    /// Records one new key; true when a sweep is due.
    #[inline]
    fn note_insert(&self) -> bool {
        self.inserted.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold.load(Ordering::Relaxed)
    }

    /// Runs `sweep` unless another thread is sweeping; `sweep` returns (removed, remaining).
    fn sweep(&self, sweep: impl FnOnce() -> (usize, usize)) -> usize {
        if self
            .running
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let (removed, remaining) = sweep();
        self.inserted.store(0, Ordering::Relaxed);
        self.threshold
            .store(remaining.max(self.min), Ordering::Relaxed);
        self.running.store(false, Ordering::Release);
        removed
    }
}

/// The in-memory [`CounterStore`]: `DashMap`s of atomics and small windows.
///
/// SpikeArrest state is one `AtomicU64` TAT per key, updated lock-free with
/// compare-and-swap under the map's shard read lock. Quota state is updated under the
/// shard write lock, which makes it exact under any number of threads. Lookups borrow the
/// `&str` key; a key is allocated only the first time it is seen. Idle keys are reclaimed
/// as described in the [module docs](self).
///
/// Keys are hashed with `H`, by default foldhash with a random seed per map: several
/// times faster than SipHash on short keys, and seeded so that colliding identifiers
/// cannot be precomputed. A deployment that wants SipHash's stronger guarantee against
/// hash flooding passes `std::collections::hash_map::RandomState` to
/// [`MemoryStore::with_hasher`].
pub struct MemoryStore<H = foldhash::quality::RandomState> {
    gcra: DashMap<Box<str>, AtomicU64, H>,
    fixed: DashMap<Box<str>, FixedWindow, H>,
    rolling: DashMap<Box<str>, Box<RollingWindow>, H>,
    gcra_sweep: Sweeper,
    fixed_sweep: Sweeper,
    rolling_sweep: Sweeper,
    idle_grace_ns: u64,
}

impl<H: BuildHasher + Clone> std::fmt::Debug for MemoryStore<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("gcra_keys", &self.gcra.len())
            .field("fixed_window_keys", &self.fixed.len())
            .field("rolling_window_keys", &self.rolling.len())
            .field("idle_grace_ns", &self.idle_grace_ns)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// The default smallest number of new keys between two amortised sweeps.
    pub const DEFAULT_MIN_SWEEP: usize = 4096;
    /// The default time a key stays after it became idle, until an amortised sweep may
    /// remove it: one second, in nanoseconds.
    pub const DEFAULT_IDLE_GRACE_NS: u64 = 1_000_000_000;

    /// An empty store with the default sweep settings.
    pub fn new() -> Self {
        MemoryStore::with_sweep(Self::DEFAULT_MIN_SWEEP, Self::DEFAULT_IDLE_GRACE_NS)
    }

    /// An empty store whose amortised sweeps run after at least `min_sweep` new keys (and
    /// at least as many new keys as survived the previous sweep; `0` is taken as 1) and
    /// remove keys idle for longer than `idle_grace_ns`.
    pub fn with_sweep(min_sweep: usize, idle_grace_ns: u64) -> Self {
        MemoryStore::with_hasher(
            min_sweep,
            idle_grace_ns,
            foldhash::quality::RandomState::default(),
        )
    }
}

impl<H: BuildHasher + Clone> MemoryStore<H> {
    /// An empty store with the given sweep settings (see [`MemoryStore::with_sweep`]) that
    /// hashes keys with `hasher`.
    pub fn with_hasher(min_sweep: usize, idle_grace_ns: u64, hasher: H) -> Self {
        let min = min_sweep.max(1);
        MemoryStore {
            gcra: DashMap::with_hasher(hasher.clone()),
            fixed: DashMap::with_hasher(hasher.clone()),
            rolling: DashMap::with_hasher(hasher),
            gcra_sweep: Sweeper::new(min),
            fixed_sweep: Sweeper::new(min),
            rolling_sweep: Sweeper::new(min),
            idle_grace_ns,
        }
    }

    /// The cut-off of an amortised sweep at `now`: keys idle at this time are removed.
    fn sweep_cutoff(&self, now: Timestamp) -> u64 {
        now.as_nanos().saturating_sub(self.idle_grace_ns)
    }

    /// The number of keys held (SpikeArrest and Quota together).
    pub fn len(&self) -> usize {
        self.gcra.len() + self.fixed.len() + self.rolling.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep_gcra(&self, now: u64) -> usize {
        self.gcra_sweep
            .sweep(|| retain_counting(&self.gcra, |tat| *tat.get_mut() > now))
    }

    fn sweep_fixed(&self, now: u64) -> usize {
        self.fixed_sweep
            .sweep(|| retain_counting(&self.fixed, |w| w.expires_at > now))
    }

    fn sweep_rolling(&self, now: u64) -> usize {
        self.rolling_sweep
            .sweep(|| retain_counting(&self.rolling, |r| !r.idle(now)))
    }
}

/// Retains the entries for which `keep` holds; returns (removed, remaining).
fn retain_counting<V, H: BuildHasher + Clone>(
    map: &DashMap<Box<str>, V, H>,
    mut keep: impl FnMut(&mut V) -> bool,
) -> (usize, usize) {
    let before = map.len();
    map.retain(|_, v| keep(v));
    let after = map.len();
    (before.saturating_sub(after), after)
}

impl FixedWindow {
    fn apply(&mut self, incr: &QuotaIncr) -> QuotaReply {
        if self.expires_at <= incr.now.as_nanos() {
            *self = FixedWindow::open(incr);
        }
        let weight = u64::from(incr.weight);
        let allowed = self.used.saturating_add(weight) <= incr.limit;
        if allowed {
            self.used += weight;
        } else {
            self.exceeded = self.exceeded.saturating_add(weight);
        }
        QuotaReply {
            allowed,
            used: self.used,
            total_exceeded: self.exceeded,
            expires_at: Some(Timestamp::from_nanos(self.expires_at)),
        }
    }

    fn open(incr: &QuotaIncr) -> Self {
        FixedWindow {
            expires_at: incr.expires_at.as_nanos(),
            used: 0,
            exceeded: 0,
        }
    }
}

impl RollingWindow {
    fn apply(&mut self, slide: &QuotaSlide, index: u64, span: u64) -> QuotaReply {
        self.advance(index);
        let before = self.sum(span);
        if before == 0 {
            self.exceeded = 0;
        }
        let weight = u64::from(slide.weight);
        let allowed = before.saturating_add(weight) <= slide.limit;
        if allowed {
            // A request from the past (index < newest) counts in the newest slot.
            let newest = self.newest;
            if let Some(c) = self.slot(newest) {
                *c = c.saturating_add(weight);
            }
        } else {
            self.exceeded = self.exceeded.saturating_add(weight);
        }
        QuotaReply {
            allowed,
            used: if allowed {
                before.saturating_add(weight)
            } else {
                before
            },
            total_exceeded: self.exceeded,
            expires_at: None,
        }
    }
}

impl<H: BuildHasher + Clone> CounterStore for MemoryStore<H> {
    #[inline]
    fn gcra_take(&self, key: &str, take: &GcraTake) -> GcraReply {
        if let Some(cell) = self.gcra.get(key) {
            return gcra_cas(&cell, take);
        }
        let reply = {
            let cell = self
                .gcra
                .entry(Box::from(key))
                .or_insert_with(|| AtomicU64::new(0));
            gcra_cas(&cell, take)
        };
        if self.gcra_sweep.note_insert() {
            self.sweep_gcra(self.sweep_cutoff(take.now));
        }
        reply
    }

    fn quota_incr(&self, key: &str, incr: &QuotaIncr) -> QuotaReply {
        if let Some(mut window) = self.fixed.get_mut(key) {
            return window.apply(incr);
        }
        let reply = self
            .fixed
            .entry(Box::from(key))
            .or_insert_with(|| FixedWindow::open(incr))
            .apply(incr);
        if self.fixed_sweep.note_insert() {
            self.sweep_fixed(self.sweep_cutoff(incr.now));
        }
        reply
    }

    fn quota_slide(&self, key: &str, slide: &QuotaSlide) -> QuotaReply {
        let slot_ns = slide.slot_ns.max(1);
        let index = slide.now.as_nanos() / slot_ns;
        let span = slide.lookback_ns.div_ceil(slot_ns);
        if let Some(mut window) = self.rolling.get_mut(key) {
            if window.slot_ns != slot_ns {
                **window = RollingWindow::new(slot_ns, index);
            }
            return window.apply(slide, index, span);
        }
        let reply = self
            .rolling
            .entry(Box::from(key))
            .or_insert_with(|| Box::new(RollingWindow::new(slot_ns, index)))
            .apply(slide, index, span);
        if self.rolling_sweep.note_insert() {
            self.sweep_rolling(self.sweep_cutoff(slide.now));
        }
        reply
    }

    fn reclaim(&self, now: Timestamp) -> usize {
        let now = now.as_nanos();
        self.sweep_gcra(now) + self.sweep_fixed(now) + self.sweep_rolling(now)
    }
}
