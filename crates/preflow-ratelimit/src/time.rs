//! Time as the caller passes it in: nanoseconds since the Unix epoch, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds in one millisecond.
pub(crate) const NANOS_PER_MILLI: u64 = 1_000_000;
/// Nanoseconds in one second.
pub(crate) const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A point in time: nanoseconds since the Unix epoch (1970-01-01T00:00:00Z), UTC.
///
/// The limiters never read a clock. The host passes the current time to every check, which
/// keeps the algorithms deterministic and lets tests drive them with a fake clock. Quota
/// calendar windows are aligned to UTC wall-clock time, so the value must be Unix time, not
/// an arbitrary monotonic counter.
///
/// ```
/// use preflow_ratelimit::Timestamp;
/// let t = Timestamp::from_millis(1_500);
/// assert_eq!(t.as_nanos(), 1_500_000_000);
/// assert_eq!(t.as_millis(), 1_500);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);
    /// The latest representable time (about the year 2554).
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp from nanoseconds since the Unix epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// A timestamp from milliseconds since the Unix epoch (saturating at [`Timestamp::MAX`]).
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis.saturating_mul(NANOS_PER_MILLI))
    }

    /// A timestamp from seconds since the Unix epoch (saturating at [`Timestamp::MAX`]).
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Converts a [`SystemTime`] the host has read; times before the epoch map to the epoch
    /// and times past [`Timestamp::MAX`] saturate.
    pub fn from_system_time(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch, rounded down (the unit of Apigee's
    /// `ratelimit.{policy}.expiry.time`).
    pub const fn as_millis(self) -> u64 {
        self.0 / NANOS_PER_MILLI
    }

    /// This time plus `nanos`, saturating at [`Timestamp::MAX`].
    pub const fn saturating_add_nanos(self, nanos: u64) -> Self {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Nanoseconds from `earlier` to `self`, or 0 when `earlier` is later.
    pub const fn saturating_nanos_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        Timestamp::from_system_time(time)
    }
}
