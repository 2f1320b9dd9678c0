//! Quota: default, calendar, rollingwindow and flexi windows counted in a [`CounterStore`].

use std::fmt;
use std::io::Write as _;
use std::num::NonZeroU32;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, Utc};

use crate::store::{
    CounterStore, MemoryStore, QuotaIncr, QuotaReply, QuotaSlide, ROLLING_SLOTS, StoreOp,
};
use crate::time::{NANOS_PER_SEC, Timestamp};

const NANOS_PER_DAY: u64 = 86_400 * NANOS_PER_SEC;

/// The Quota `type` attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QuotaType {
    /// No `type`: a window opens at the first request and ends at the next boundary of the
    /// time unit after `Interval` units, counted from the start of the unit the request
    /// falls in (a 1-hour quota first hit at 8:15 ends at 9:00; a week ends at Sunday
    /// 00:00 UTC; a month at the first day of a month, 00:00 UTC).
    #[default]
    Default,
    /// `calendar`: windows of `Interval` units aligned to `StartTime` (UTC), i.e.
    /// `StartTime + k·Interval·TimeUnit`, with calendar months for `month`.
    Calendar,
    /// `rollingwindow`: each request counts the requests of the last `Interval` units.
    /// The look-back is counted in 60 slots plus the current one, so it may include up to
    /// one slot (1/60 of the window) more than the exact window, never less: the quota is
    /// never exceeded. There is no expiry time.
    RollingWindow,
    /// `flexi`: each identifier's window opens at its first request and lasts `Interval`
    /// units (calendar months for `month`).
    Flexi,
}

impl QuotaType {
    /// The spelling of the `type` attribute (`default` for none).
    pub const fn as_str(self) -> &'static str {
        match self {
            QuotaType::Default => "default",
            QuotaType::Calendar => "calendar",
            QuotaType::RollingWindow => "rollingwindow",
            QuotaType::Flexi => "flexi",
        }
    }
}

impl fmt::Display for QuotaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuotaType {
    type Err = QuotaConfigError;

    /// Parses `default` (or an empty string), `calendar`, `rollingwindow` or `flexi`,
    /// ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        [
            QuotaType::Default,
            QuotaType::Calendar,
            QuotaType::RollingWindow,
            QuotaType::Flexi,
        ]
        .into_iter()
        .find(|q| q.as_str().eq_ignore_ascii_case(t))
        .or(if t.is_empty() {
            Some(QuotaType::Default)
        } else {
            None
        })
        .ok_or_else(|| QuotaConfigError::InvalidQuotaType(s.to_owned()))
    }
}

/// The Quota `<TimeUnit>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// `second` (Apigee allows it only for non-distributed quotas).
    Second,
    /// `minute`.
    Minute,
    /// `hour`.
    Hour,
    /// `day` (UTC days).
    Day,
    /// `week` (7 days; default-type windows end at Sunday 00:00 UTC).
    Week,
    /// `month` (calendar months, by `chrono`).
    Month,
}

impl TimeUnit {
    /// The spelling used in `<TimeUnit>`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Second => "second",
            TimeUnit::Minute => "minute",
            TimeUnit::Hour => "hour",
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
            TimeUnit::Month => "month",
        }
    }

    /// The fixed length of the unit in nanoseconds; `None` for `month`.
    pub const fn fixed_ns(self) -> Option<u64> {
        match self {
            TimeUnit::Second => Some(NANOS_PER_SEC),
            TimeUnit::Minute => Some(60 * NANOS_PER_SEC),
            TimeUnit::Hour => Some(3_600 * NANOS_PER_SEC),
            TimeUnit::Day => Some(NANOS_PER_DAY),
            TimeUnit::Week => Some(7 * NANOS_PER_DAY),
            TimeUnit::Month => None,
        }
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TimeUnit {
    type Err = QuotaConfigError;

    /// Parses `second`, `minute`, `hour`, `day`, `week` or `month`, ignoring ASCII case
    /// and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        [
            TimeUnit::Second,
            TimeUnit::Minute,
            TimeUnit::Hour,
            TimeUnit::Day,
            TimeUnit::Week,
            TimeUnit::Month,
        ]
        .into_iter()
        .find(|u| u.as_str().eq_ignore_ascii_case(t))
        .ok_or_else(|| QuotaConfigError::InvalidTimeUnit(s.to_owned()))
    }
}

/// A per-class allowed count (`<Allow><Class ref="…"><Allow class="gold" count="100"/>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassAllow {
    /// The class value.
    pub class: String,
    /// The allowed count for that class.
    pub count: u64,
}

/// The configuration of a Quota policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaConfig {
    /// The `type` attribute.
    pub quota_type: QuotaType,
    /// `<Allow count>`: the allowed count per window.
    pub allow: u64,
    /// Per-class allowed counts; each listed class has its own counter.
    pub classes: Vec<ClassAllow>,
    /// `<Interval>`: the number of time units in a window.
    pub interval: NonZeroU32,
    /// `<TimeUnit>`.
    pub time_unit: TimeUnit,
    /// `<StartTime>` (UTC): required by, and only allowed for, `calendar`.
    pub start_time: Option<Timestamp>,
}

impl QuotaConfig {
    /// A default-type quota of `allow` per `interval` `time_unit`s.
    pub fn new(allow: u64, interval: NonZeroU32, time_unit: TimeUnit) -> Self {
        QuotaConfig {
            quota_type: QuotaType::Default,
            allow,
            classes: Vec::new(),
            interval,
            time_unit,
            start_time: None,
        }
    }

    /// The same configuration with another type.
    pub fn with_type(mut self, quota_type: QuotaType) -> Self {
        self.quota_type = quota_type;
        self
    }

    /// The same configuration with a `StartTime`.
    pub fn with_start_time(mut self, start_time: Timestamp) -> Self {
        self.start_time = Some(start_time);
        self
    }

    /// The same configuration with one more class count.
    pub fn with_class(mut self, class: impl Into<String>, count: u64) -> Self {
        self.classes.push(ClassAllow {
            class: class.into(),
            count,
        });
        self
    }
}

/// Why a Quota configuration was rejected (Apigee's Quota deployment errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaConfigError {
    /// `InvalidQuotaType`.
    #[error("invalid quota type `{0}`; expected default, calendar, rollingwindow or flexi")]
    InvalidQuotaType(String),
    /// `InvalidQuotaTimeUnit`.
    #[error("invalid quota time unit `{0}`; expected second, minute, hour, day, week or month")]
    InvalidTimeUnit(String),
    /// `InvalidQuotaInterval`.
    #[error("invalid quota interval `{0}`; expected a whole number of at least 1")]
    InvalidInterval(String),
    /// `InvalidStartTime`.
    #[error("invalid quota start time `{0}`; expected `yyyy-MM-dd HH:mm:ss` in UTC")]
    InvalidStartTime(String),
    /// `StartTimeNotSupported`.
    #[error("a start time is only supported by calendar quotas, not by type {0}")]
    StartTimeNotSupported(QuotaType),
    /// A calendar quota without `StartTime`.
    #[error("a calendar quota needs a start time")]
    MissingStartTime,
}

/// Parses a `<StartTime>`: `yyyy-MM-dd HH:mm:ss`, UTC.
///
/// ```
/// use preflow_ratelimit::{parse_start_time, Timestamp};
/// assert_eq!(parse_start_time("2024-01-01 00:00:00")?, Timestamp::from_secs(1_704_067_200));
/// assert!(parse_start_time("2024-13-01 00:00:00").is_err());
/// # Ok::<(), preflow_ratelimit::QuotaConfigError>(())
/// ```
pub fn parse_start_time(s: &str) -> Result<Timestamp, QuotaConfigError> {
    let invalid = || QuotaConfigError::InvalidStartTime(s.to_owned());
    let naive =
        NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").map_err(|_| invalid())?;
    let nanos = naive.and_utc().timestamp_nanos_opt().ok_or_else(invalid)?;
    u64::try_from(nanos)
        .map(Timestamp::from_nanos)
        .map_err(|_| invalid())
}

/// Parses an `<Interval>`: a whole number of at least 1.
pub fn parse_interval(s: &str) -> Result<NonZeroU32, QuotaConfigError> {
    s.trim()
        .parse::<NonZeroU32>()
        .map_err(|_| QuotaConfigError::InvalidInterval(s.to_owned()))
}

/// The outcome of a Quota check: everything the `ratelimit.{policy}.*` variables need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaDecision {
    /// Whether the request fitted in the quota. Rejected requests are not counted.
    pub allowed: bool,
    /// `allowed.count`: the allowed count of the window.
    pub allowed_count: u64,
    /// `used.count`: the count used in the window, this request included if allowed.
    pub used_count: u64,
    /// `available.count`: `allowed − used`.
    pub available_count: u64,
    /// `exceed.count`: by how much this request would have overrun the quota; 0 if allowed.
    pub exceed_count: u64,
    /// `total.exceed.count`: the weight rejected in this window so far.
    pub total_exceed_count: u64,
    /// `expiry.time`: when the window ends (use [`Timestamp::as_millis`]); `None` for a
    /// rolling window, where Apigee reports it as not valid.
    pub expires_at: Option<Timestamp>,
}

impl QuotaDecision {
    /// The decision a store reply means for a request of `weight` against `limit`. Pure.
    pub fn from_reply(limit: u64, weight: u32, reply: &QuotaReply) -> Self {
        let used = reply.used.min(limit);
        QuotaDecision {
            allowed: reply.allowed,
            allowed_count: limit,
            used_count: used,
            available_count: limit - used,
            exceed_count: if reply.allowed {
                0
            } else {
                reply
                    .used
                    .saturating_add(u64::from(weight))
                    .saturating_sub(limit)
            },
            total_exceed_count: reply.total_exceeded,
            expires_at: reply.expires_at,
        }
    }
}

/// One Quota check: identifier key, time, weight, and optional class and allow override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaCheck<'a> {
    /// The counter key (the `<Identifier>` value, or `_default`).
    pub key: &'a str,
    /// The `<Class>` value, if the policy has classes.
    pub class: Option<&'a str>,
    /// An allowed count that replaces `<Allow count>` (a resolved `countRef`).
    pub allow: Option<u64>,
    /// The time of the request.
    pub now: Timestamp,
    /// The message weight; 0 counts nothing.
    pub weight: u32,
}

impl<'a> QuotaCheck<'a> {
    /// A check of `weight` for `key` at `now`.
    pub const fn new(key: &'a str, now: Timestamp, weight: u32) -> Self {
        QuotaCheck {
            key,
            class: None,
            allow: None,
            now,
            weight,
        }
    }

    /// The same check with a class.
    pub const fn with_class(mut self, class: &'a str) -> Self {
        self.class = Some(class);
        self
    }

    /// The same check with an allowed count that replaces the configured one.
    pub const fn with_allow(mut self, allow: u64) -> Self {
        self.allow = Some(allow);
        self
    }
}

/// The store operation a check maps to.
enum Plan {
    Fixed(QuotaIncr),
    Rolling(QuotaSlide),
}

/// A Quota policy over a [`CounterStore`].
///
/// ```
/// use std::num::NonZeroU32;
/// use preflow_ratelimit::{Quota, QuotaConfig, TimeUnit, Timestamp};
/// let quota = Quota::new(QuotaConfig::new(2, NonZeroU32::MIN, TimeUnit::Hour))?;
/// let now = Timestamp::from_secs(1_704_097_800); // 2024-01-01 08:30 UTC
/// assert!(quota.check("app-1", now, 1).allowed);
/// let second = quota.check("app-1", now, 1);
/// assert_eq!((second.used_count, second.available_count), (2, 0));
/// // The default type ends the window at the top of the hour.
/// assert_eq!(second.expires_at, Some(Timestamp::from_secs(1_704_099_600)));
/// let third = quota.check("app-1", now, 1);
/// assert!(!third.allowed);
/// assert_eq!(third.exceed_count, 1);
/// # Ok::<(), preflow_ratelimit::QuotaConfigError>(())
/// ```
#[derive(Debug)]
pub struct Quota<S = MemoryStore> {
    config: QuotaConfig,
    store: S,
}

impl Quota<MemoryStore> {
    /// A Quota over its own [`MemoryStore`]; fails on an inconsistent configuration.
    pub fn new(config: QuotaConfig) -> Result<Self, QuotaConfigError> {
        Quota::with_store(config, MemoryStore::new())
    }
}

impl<S: CounterStore> Quota<S> {
    /// A Quota over `store` (which may be shared, e.g. `Arc<MemoryStore>`).
    pub fn with_store(config: QuotaConfig, store: S) -> Result<Self, QuotaConfigError> {
        match (config.quota_type, config.start_time) {
            (QuotaType::Calendar, None) => return Err(QuotaConfigError::MissingStartTime),
            (QuotaType::Calendar, Some(_)) | (_, None) => {}
            (other, Some(_)) => return Err(QuotaConfigError::StartTimeNotSupported(other)),
        }
        Ok(Quota { config, store })
    }

    /// The configuration.
    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Counts a request of `weight` for `key` at `now` against `<Allow count>`.
    pub fn check(&self, key: &str, now: Timestamp, weight: u32) -> QuotaDecision {
        self.check_with(&QuotaCheck::new(key, now, weight))
    }

    /// Counts a request described by `check`, answered by the store inline.
    ///
    /// A class listed in the configuration has its own counter and count; an unlisted
    /// class (or none) counts against the identifier's counter and `<Allow count>` (or the
    /// override in `check`).
    pub fn check_with(&self, check: &QuotaCheck<'_>) -> QuotaDecision {
        let limit = self.limit(check);
        let plan = self.plan(check.now, check.weight, limit);
        let run = |key: &str| match &plan {
            Plan::Fixed(incr) => self.store.quota_incr(key, incr),
            Plan::Rolling(slide) => self.store.quota_slide(key, slide),
        };
        let reply = match self.class_of(check) {
            Some(class) => with_class_key(check.key, class, run),
            None => run(check.key),
        };
        QuotaDecision::from_reply(limit, check.weight, &reply)
    }

    /// The same check as one store operation, for a store the host runs remotely; pass
    /// the reply to [`StoreOp::resolve`].
    pub fn store_op(&self, check: &QuotaCheck<'_>) -> StoreOp {
        let limit = self.limit(check);
        let key = match self.class_of(check) {
            Some(class) => with_class_key(check.key, class, str::to_owned),
            None => check.key.to_owned(),
        };
        match self.plan(check.now, check.weight, limit) {
            Plan::Fixed(incr) => StoreOp::QuotaIncr { key, incr },
            Plan::Rolling(slide) => StoreOp::QuotaSlide { key, slide },
        }
    }

    /// The allowed count that applies to `check`.
    pub fn limit(&self, check: &QuotaCheck<'_>) -> u64 {
        match self.class_count(check) {
            Some(count) => count,
            None => check.allow.unwrap_or(self.config.allow),
        }
    }

    fn class_count(&self, check: &QuotaCheck<'_>) -> Option<u64> {
        let class = check.class?;
        self.config
            .classes
            .iter()
            .find(|c| c.class == class)
            .map(|c| c.count)
    }

    fn class_of<'c>(&self, check: &QuotaCheck<'c>) -> Option<&'c str> {
        check
            .class
            .filter(|class| self.config.classes.iter().any(|c| c.class == *class))
    }

    fn plan(&self, now: Timestamp, weight: u32, limit: u64) -> Plan {
        let windows = Windows {
            interval: self.config.interval.get(),
            unit: self.config.time_unit,
        };
        let now_ns = now.as_nanos();
        let (start, expires) = match self.config.quota_type {
            QuotaType::Default => (now_ns, windows.aligned_end(now_ns)),
            QuotaType::Flexi => (now_ns, windows.after(now_ns)),
            QuotaType::Calendar => windows.calendar(
                self.config.start_time.unwrap_or_default().as_nanos(),
                now_ns,
            ),
            QuotaType::RollingWindow => {
                return Plan::Rolling(QuotaSlide {
                    now,
                    slot_ns: windows.slot_ns(),
                    lookback_ns: windows.lookback(now_ns),
                    weight,
                    limit,
                });
            }
        };
        Plan::Fixed(QuotaIncr {
            now,
            window_start: Timestamp::from_nanos(start),
            expires_at: Timestamp::from_nanos(expires),
            weight,
            limit,
        })
    }
}

/// Runs `f` on `key` + U+001F + `class`, composed on the stack when it fits.
fn with_class_key<R>(key: &str, class: &str, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 256];
    let capacity = buf.len();
    let mut cursor = &mut buf[..];
    if write!(cursor, "{key}\u{1f}{class}").is_ok() {
        let written = capacity - cursor.len();
        if let Some(Ok(composed)) = buf.get(..written).map(std::str::from_utf8) {
            return f(composed);
        }
    }
    f(&format!("{key}\u{1f}{class}"))
}

/// Window arithmetic for `interval` × `unit`, in nanoseconds since the epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    pub(crate) interval: u32,
    pub(crate) unit: TimeUnit,
}

impl Windows {
    /// The fixed window length, `None` for months.
    fn fixed_len(self) -> Option<u64> {
        self.unit
            .fixed_ns()
            .map(|ns| ns.saturating_mul(u64::from(self.interval)))
    }

    /// The start of the unit `t` falls in (weeks start on Sunday, UTC).
    fn unit_start(self, t: u64) -> u64 {
        match self.unit {
            TimeUnit::Week => {
                let day = t / NANOS_PER_DAY;
                // 1970-01-01 was a Thursday: (day + 4) % 7 is 0 on Sundays.
                (day - (day + 4) % 7) * NANOS_PER_DAY
            }
            TimeUnit::Month => to_datetime(t)
                .and_then(|d| NaiveDate::from_ymd_opt(d.year(), d.month(), 1))
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or(t, |d| from_datetime(d.and_utc())),
            unit => unit.fixed_ns().map_or(t, |len| t - t % len),
        }
    }

    /// `t` plus `interval` units (calendar months for months), saturating.
    pub(crate) fn after(self, t: u64) -> u64 {
        match self.fixed_len() {
            Some(len) => t.saturating_add(len),
            None => shift_months(t, i64::from(self.interval)),
        }
    }

    /// The end of a default-type window opened at `t`.
    pub(crate) fn aligned_end(self, t: u64) -> u64 {
        self.after(self.unit_start(t))
    }

    /// The calendar window `[start, end)` containing `t`, aligned to `origin`.
    pub(crate) fn calendar(self, origin: u64, t: u64) -> (u64, u64) {
        match self.fixed_len() {
            Some(len) => {
                let start = if t >= origin {
                    origin + (t - origin) / len * len
                } else {
                    origin.saturating_sub((origin - t).div_ceil(len).saturating_mul(len))
                };
                (start, start.saturating_add(len))
            }
            None => {
                let m = i64::from(self.interval);
                let months = match (to_datetime(origin), to_datetime(t)) {
                    (Some(o), Some(n)) => {
                        (i64::from(n.year()) - i64::from(o.year())) * 12 + i64::from(n.month())
                            - i64::from(o.month())
                    }
                    _ => 0,
                };
                let mut k = months.div_euclid(m);
                // The month estimate is off by at most one window either way.
                for _ in 0..2 {
                    if shift_months(origin, k * m) > t {
                        k -= 1;
                    } else if shift_months(origin, (k + 1) * m) <= t {
                        k += 1;
                    }
                }
                (
                    shift_months(origin, k * m),
                    shift_months(origin, (k + 1) * m),
                )
            }
        }
    }

    /// The rolling look-back ending at `t`.
    pub(crate) fn lookback(self, t: u64) -> u64 {
        match self.fixed_len() {
            Some(len) => len,
            None => t - shift_months(t, -i64::from(self.interval)).min(t),
        }
    }

    /// The slot width of a rolling window: the longest look-back over 60 slots.
    pub(crate) fn slot_ns(self) -> u64 {
        let longest = self
            .fixed_len()
            .unwrap_or_else(|| 31 * NANOS_PER_DAY * u64::from(self.interval));
        longest.div_ceil(ROLLING_SLOTS).max(1)
    }
}

fn to_datetime(t: u64) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(t / NANOS_PER_SEC).ok()?;
    DateTime::from_timestamp(secs, u32::try_from(t % NANOS_PER_SEC).ok()?)
}

fn from_datetime(d: DateTime<Utc>) -> u64 {
    match d.timestamp_nanos_opt() {
        Some(n) => u64::try_from(n).unwrap_or(0),
        None if d.timestamp() < 0 => 0,
        None => u64::MAX,
    }
}

/// `t` moved by `months` calendar months (day clamped to the month's length), saturating
/// at the representable range.
fn shift_months(t: u64, months: i64) -> u64 {
    let Some(d) = to_datetime(t) else {
        return u64::MAX;
    };
    let n = Months::new(u32::try_from(months.unsigned_abs()).unwrap_or(u32::MAX));
    let shifted = if months >= 0 {
        d.checked_add_months(n)
    } else {
        d.checked_sub_months(n)
    };
    match shifted {
        Some(d) => from_datetime(d),
        None if months >= 0 => u64::MAX,
        None => 0,
    }
}
