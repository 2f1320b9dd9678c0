//! The SpikeArrest `<Rate>`: a whole number of messages per second or per minute.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use crate::time::NANOS_PER_SEC;

/// The period a [`Rate`] counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// `ps`: messages per second.
    PerSecond,
    /// `pm`: messages per minute.
    PerMinute,
}

impl RateUnit {
    /// The length of the period in nanoseconds.
    pub const fn period_ns(self) -> u64 {
        match self {
            RateUnit::PerSecond => NANOS_PER_SEC,
            RateUnit::PerMinute => 60 * NANOS_PER_SEC,
        }
    }

    /// The suffix used in `<Rate>`: `ps` or `pm`.
    pub const fn suffix(self) -> &'static str {
        match self {
            RateUnit::PerSecond => "ps",
            RateUnit::PerMinute => "pm",
        }
    }
}

/// A SpikeArrest rate such as `30ps` or `10pm`. The count is never zero.
///
/// ```
/// use preflow_ratelimit::{Rate, RateUnit};
/// let rate: Rate = "30pm".parse()?;
/// assert_eq!(rate.count().get(), 30);
/// assert_eq!(rate.unit(), RateUnit::PerMinute);
/// assert_eq!(rate.emission_interval_ns(), 2_000_000_000); // one message every 2 s
/// assert_eq!(rate.to_string(), "30pm");
/// assert!("0ps".parse::<Rate>().is_err());
/// # Ok::<(), preflow_ratelimit::RateParseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    count: NonZeroU32,
    unit: RateUnit,
}

impl Rate {
    /// `count` messages per second.
    pub const fn per_second(count: NonZeroU32) -> Self {
        Rate {
            count,
            unit: RateUnit::PerSecond,
        }
    }

    /// `count` messages per minute.
    pub const fn per_minute(count: NonZeroU32) -> Self {
        Rate {
            count,
            unit: RateUnit::PerMinute,
        }
    }

    /// The number of messages per period.
    pub const fn count(self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    pub const fn unit(self) -> RateUnit {
        self.unit
    }

    /// The length of the period in nanoseconds.
    pub const fn period_ns(self) -> u64 {
        self.unit.period_ns()
    }

    /// The emission interval: the period divided by the count, rounded up to a whole
    /// nanosecond so that no period ever admits more than `count` messages.
    pub const fn emission_interval_ns(self) -> u64 {
        self.period_ns().div_ceil(self.count.get() as u64)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.count, self.unit.suffix())
    }
}

/// Why a `<Rate>` string was rejected (Apigee's deployment error `InvalidAllowedRate`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateParseError {
    /// The string is empty or only whitespace.
    #[error("rate is empty; expected a whole number followed by `ps` or `pm`, like `30ps`")]
    Empty,
    /// The string does not end in `ps` or `pm`.
    #[error("rate `{0}` must end in `ps` (per second) or `pm` (per minute)")]
    MissingUnit(String),
    /// The part before the unit is not a whole number.
    #[error("rate `{0}` must start with a whole number of messages, like `30ps`")]
    InvalidCount(String),
    /// The count is zero.
    #[error("rate `{0}` must allow at least one message")]
    Zero(String),
    /// The count does not fit in 32 bits.
    #[error("rate `{0}` is too large; the most is 4294967295 messages per period")]
    TooLarge(String),
}

impl FromStr for Rate {
    type Err = RateParseError;

    /// Parses `<int>ps` or `<int>pm`. Surrounding whitespace is ignored and the suffix is
    /// matched case-insensitively; the number is plain ASCII digits.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(RateParseError::Empty);
        }
        let (digits, unit) = match text.char_indices().rev().nth(1) {
            Some((at, _)) => {
                let (digits, suffix) = text.split_at(at);
                if suffix.eq_ignore_ascii_case("ps") {
                    (digits, RateUnit::PerSecond)
                } else if suffix.eq_ignore_ascii_case("pm") {
                    (digits, RateUnit::PerMinute)
                } else {
                    return Err(RateParseError::MissingUnit(text.to_owned()));
                }
            }
            None => return Err(RateParseError::MissingUnit(text.to_owned())),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RateParseError::InvalidCount(text.to_owned()));
        }
        let count: u32 = digits
            .parse()
            .map_err(|_| RateParseError::TooLarge(text.to_owned()))?;
        let count = NonZeroU32::new(count).ok_or_else(|| RateParseError::Zero(text.to_owned()))?;
        Ok(Rate { count, unit })
    }
}
