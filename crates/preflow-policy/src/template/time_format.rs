//! Java `SimpleDateFormat` patterns, as the `timeFormat…` template functions take them,
//! applied to a time in UTC.
//!
//! Letters: `G` era, `y` year (`yy` two digits), `M` month (`MMM` short, `MMMM` long
//! name), `d` day of month, `D` day of year, `E` day name (`EEEE` long), `u` day number of
//! the week (Monday 1), `a` AM/PM, `H` hour 0-23, `k` 1-24, `K` 0-11, `h` 1-12, `m`, `s`,
//! `S` milliseconds, `z` zone (`UTC`), `Z` offset (`+0000`), `X` ISO offset (`Z`). Text
//! in single quotes is literal (`''` is a quote); other letters are unsupported, so the
//! function does not resolve.

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Longest pattern accepted.
const MAX_PATTERN: usize = 256;

fn number(out: &mut String, n: i64, width: usize) {
    out.push_str(&format!("{n:0width$}"));
}

fn name(out: &mut String, full: &str, count: usize) {
    if count >= 4 {
        out.push_str(full);
    } else {
        out.extend(full.chars().take(3));
    }
}

/// Formats `millis` (since the epoch) with a `SimpleDateFormat` pattern, in UTC; `None`
/// for a pattern letter outside the supported set or a time out of range.
pub(crate) fn format_time(pattern: &str, millis: i64) -> Option<String> {
    if pattern.len() > MAX_PATTERN {
        return None;
    }
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(millis)?;
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\'' {
            // Quoted text; `''` is one quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            while let Some(&q) = chars.get(i) {
                if q == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                out.push(q);
                i += 1;
            }
            i += 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let hour12 = |h: u32| if h.is_multiple_of(12) { 12 } else { h % 12 };
        match c {
            'G' => out.push_str(if t.year() > 0 { "AD" } else { "BC" }),
            'y' | 'Y' if n == 2 => number(&mut out, i64::from(t.year().rem_euclid(100)), 2),
            'y' | 'Y' => number(&mut out, i64::from(t.year()), n),
            'M' | 'L' if n >= 3 => {
                let m = MONTHS.get(t.month0() as usize).copied().unwrap_or("");
                name(&mut out, m, n);
            }
            'M' | 'L' => number(&mut out, i64::from(t.month()), n),
            'd' => number(&mut out, i64::from(t.day()), n),
            'D' => number(&mut out, i64::from(t.ordinal()), n),
            'E' => {
                let d = DAYS
                    .get(t.weekday().num_days_from_monday() as usize)
                    .copied()
                    .unwrap_or("");
                name(&mut out, d, n);
            }
            'u' => number(&mut out, i64::from(t.weekday().number_from_monday()), n),
            'a' => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
            'H' => number(&mut out, i64::from(t.hour()), n),
            'k' => number(
                &mut out,
                i64::from(if t.hour() == 0 { 24 } else { t.hour() }),
                n,
            ),
            'K' => number(&mut out, i64::from(t.hour() % 12), n),
            'h' => number(&mut out, i64::from(hour12(t.hour())), n),
            'm' => number(&mut out, i64::from(t.minute()), n),
            's' => number(&mut out, i64::from(t.second()), n),
            'S' => number(&mut out, i64::from(t.timestamp_subsec_millis()), n),
            'z' => out.push_str(if n >= 4 {
                "Coordinated Universal Time"
            } else {
                "UTC"
            }),
            'Z' => out.push_str("+0000"),
            'X' => out.push('Z'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn documented_patterns() {
        // 1494390266 s is 2017-05-10 04:24:26 UTC, a Wednesday.
        let ms = 1_494_390_266_000;
        assert_eq!(format_time("yyyy-MM-dd", ms).as_deref(), Some("2017-05-10"));
        assert_eq!(
            format_time("yyyy-MM-dd HH:mm:ss.SSS", ms + 7).as_deref(),
            Some("2017-05-10 04:24:26.007")
        );
        assert_eq!(
            format_time("EEE, d MMM yyyy HH:mm:ss Z", ms).as_deref(),
            Some("Wed, 10 May 2017 04:24:26 +0000")
        );
        assert_eq!(
            format_time("EEEE, MMMM d, yyyy 'at' h:mm a z", ms).as_deref(),
            Some("Wednesday, May 10, 2017 at 4:24 AM UTC")
        );
        assert_eq!(format_time("yy''Q", ms), None);
        assert_eq!(format_time("yy''", ms).as_deref(), Some("17'"));
    }
}
