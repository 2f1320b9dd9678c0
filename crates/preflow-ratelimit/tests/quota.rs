//! Quota behaviour: window boundaries per type and unit, counts, classes, store ops.
// Test helpers outside `#[test]` functions unwrap as well.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;

use preflow_ratelimit::{
    CounterStore, Decision, MemoryStore, Quota, QuotaCheck, QuotaConfig, QuotaConfigError,
    QuotaType, StoreOp, TimeUnit, Timestamp, parse_interval, parse_start_time,
};

const SEC: u64 = 1_000_000_000;

fn ts(s: &str) -> Timestamp {
    parse_start_time(s).unwrap()
}

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

fn quota(allow: u64, interval: u32, unit: TimeUnit, t: QuotaType) -> Quota {
    Quota::new(QuotaConfig::new(allow, n(interval), unit).with_type(t)).unwrap()
}

fn expiry(q: &Quota, key: &str, now: &str) -> Timestamp {
    q.check(key, ts(now), 1).expires_at.unwrap()
}

#[test]
fn parses_types_units_intervals_and_start_times() {
    assert_eq!("".parse::<QuotaType>(), Ok(QuotaType::Default));
    assert_eq!("calendar".parse::<QuotaType>(), Ok(QuotaType::Calendar));
    assert_eq!(
        "RollingWindow".parse::<QuotaType>(),
        Ok(QuotaType::RollingWindow)
    );
    assert_eq!(" flexi ".parse::<QuotaType>(), Ok(QuotaType::Flexi));
    assert_eq!(
        "daily".parse::<QuotaType>(),
        Err(QuotaConfigError::InvalidQuotaType("daily".into()))
    );
    assert_eq!("month".parse::<TimeUnit>(), Ok(TimeUnit::Month));
    assert_eq!("Week".parse::<TimeUnit>(), Ok(TimeUnit::Week));
    assert_eq!(
        "year".parse::<TimeUnit>(),
        Err(QuotaConfigError::InvalidTimeUnit("year".into()))
    );
    assert_eq!(parse_interval(" 5 "), Ok(n(5)));
    assert!(parse_interval("0").is_err());
    assert!(parse_interval("1.5").is_err());
    assert_eq!(
        ts("2024-01-01 00:00:00"),
        Timestamp::from_secs(1_704_067_200)
    );
    assert!(parse_start_time("2024-01-01T00:00:00").is_err());
    assert!(parse_start_time("2024-02-30 00:00:00").is_err());
    assert!(parse_start_time("1969-12-31 23:59:59").is_err());
    let e = parse_start_time("soon").unwrap_err().to_string();
    assert!(e.starts_with("invalid quota start time `soon`"), "{e}");
}

#[test]
fn start_time_only_with_calendar() {
    let base = QuotaConfig::new(1, n(1), TimeUnit::Hour);
    assert_eq!(
        Quota::new(base.clone().with_type(QuotaType::Calendar)).unwrap_err(),
        QuotaConfigError::MissingStartTime
    );
    assert_eq!(
        Quota::new(
            base.clone()
                .with_type(QuotaType::Flexi)
                .with_start_time(Timestamp::UNIX_EPOCH)
        )
        .unwrap_err(),
        QuotaConfigError::StartTimeNotSupported(QuotaType::Flexi)
    );
    assert!(
        Quota::new(
            base.with_type(QuotaType::Calendar)
                .with_start_time(Timestamp::UNIX_EPOCH)
        )
        .is_ok()
    );
}

#[test]
fn counts_used_available_and_exceeded() {
    let q = quota(5, 1, TimeUnit::Minute, QuotaType::Flexi);
    let now = ts("2024-03-10 12:00:30");
    let d = q.check("a", now, 3);
    assert!(d.allowed);
    assert_eq!(
        (
            d.allowed_count,
            d.used_count,
            d.available_count,
            d.exceed_count
        ),
        (5, 3, 2, 0)
    );
    // Rejected requests do not consume the quota.
    let d = q.check("a", now, 3);
    assert!(!d.allowed);
    assert_eq!(
        (
            d.used_count,
            d.available_count,
            d.exceed_count,
            d.total_exceed_count
        ),
        (3, 2, 1, 3)
    );
    let d = q.check("a", now, 2);
    assert!(d.allowed);
    assert_eq!((d.used_count, d.available_count), (5, 0));
    let d = q.check("a", now, 1);
    assert!(!d.allowed);
    assert_eq!((d.exceed_count, d.total_exceed_count), (1, 4));
    // Weight 0 does not affect the counter, even when the quota is used up.
    let d = q.check("a", now, 0);
    assert!(d.allowed);
    assert_eq!(d.used_count, 5);
    // Identifiers have separate counters.
    assert_eq!(q.check("b", now, 1).used_count, 1);
}

#[test]
fn default_windows_end_at_unit_boundaries() {
    use QuotaType::Default as D;
    // "a 60-minute quota starting 8:15 first ends at 9:00"
    assert_eq!(
        expiry(&quota(9, 1, TimeUnit::Hour, D), "k", "2024-01-01 08:15:00"),
        ts("2024-01-01 09:00:00")
    );
    assert_eq!(
        expiry(
            &quota(9, 1, TimeUnit::Minute, D),
            "k",
            "2024-01-01 08:15:42"
        ),
        ts("2024-01-01 08:16:00")
    );
    assert_eq!(
        expiry(
            &quota(9, 1, TimeUnit::Second, D),
            "k",
            "2024-01-01 08:15:42"
        ),
        ts("2024-01-01 08:15:43")
    );
    assert_eq!(
        expiry(&quota(9, 1, TimeUnit::Day, D), "k", "2024-01-01 08:15:42"),
        ts("2024-01-02 00:00:00")
    );
    // 2024-01-03 is a Wednesday; the week ends at midnight starting Sunday 2024-01-07.
    assert_eq!(
        expiry(&quota(9, 1, TimeUnit::Week, D), "k", "2024-01-03 10:00:00"),
        ts("2024-01-07 00:00:00")
    );
    assert_eq!(
        expiry(&quota(9, 1, TimeUnit::Week, D), "k", "2024-01-07 00:00:00"),
        ts("2024-01-14 00:00:00")
    );
    assert_eq!(
        expiry(&quota(9, 1, TimeUnit::Month, D), "k", "2024-02-10 10:00:00"),
        ts("2024-03-01 00:00:00")
    );
    assert_eq!(
        expiry(&quota(9, 1, TimeUnit::Month, D), "k", "2024-12-31 23:59:59"),
        ts("2025-01-01 00:00:00")
    );
    // Interval counts whole units from the start of the current one.
    assert_eq!(
        expiry(&quota(9, 2, TimeUnit::Hour, D), "k", "2024-01-01 08:15:00"),
        ts("2024-01-01 10:00:00")
    );
    assert_eq!(
        expiry(&quota(9, 3, TimeUnit::Month, D), "k", "2024-11-15 00:00:00"),
        ts("2025-02-01 00:00:00")
    );
}

#[test]
fn default_window_counts_until_expiry_then_resets() {
    let q = quota(2, 1, TimeUnit::Hour, QuotaType::Default);
    assert!(q.check("k", ts("2024-01-01 08:15:00"), 1).allowed);
    assert!(q.check("k", ts("2024-01-01 08:59:59"), 1).allowed);
    assert!(!q.check("k", ts("2024-01-01 08:59:59"), 1).allowed);
    let d = q.check("k", ts("2024-01-01 09:00:00"), 1);
    assert!(d.allowed);
    assert_eq!(d.used_count, 1);
    assert_eq!(d.total_exceed_count, 0);
    assert_eq!(d.expires_at, Some(ts("2024-01-01 10:00:00")));
}

#[test]
fn flexi_windows_start_at_the_first_request() {
    let q = quota(2, 1, TimeUnit::Hour, QuotaType::Flexi);
    assert_eq!(
        expiry(&q, "k", "2024-01-01 08:15:10"),
        ts("2024-01-01 09:15:10")
    );
    // Later requests stay in that window.
    assert_eq!(
        expiry(&q, "k", "2024-01-01 09:15:09"),
        ts("2024-01-01 09:15:10")
    );
    assert!(!q.check("k", ts("2024-01-01 09:15:09"), 1).allowed);
    // The next window opens at the next request after expiry.
    assert_eq!(
        expiry(&q, "k", "2024-01-01 11:00:00"),
        ts("2024-01-01 12:00:00")
    );
    // Months are calendar months: Jan 31 + 1 month is Feb 29 in 2024.
    let m = quota(2, 1, TimeUnit::Month, QuotaType::Flexi);
    assert_eq!(
        expiry(&m, "k", "2024-01-31 10:00:00"),
        ts("2024-02-29 10:00:00")
    );
    let w = quota(2, 2, TimeUnit::Week, QuotaType::Flexi);
    assert_eq!(
        expiry(&w, "k", "2024-01-03 10:00:00"),
        ts("2024-01-17 10:00:00")
    );
}

#[test]
fn calendar_windows_align_to_start_time() {
    let config = |interval, unit, start| {
        QuotaConfig::new(3, n(interval), unit)
            .with_type(QuotaType::Calendar)
            .with_start_time(ts(start))
    };
    let q = Quota::new(config(1, TimeUnit::Hour, "2024-01-01 00:30:00")).unwrap();
    assert_eq!(
        expiry(&q, "k", "2024-01-05 07:45:00"),
        ts("2024-01-05 08:30:00")
    );
    assert_eq!(
        expiry(&q, "k", "2024-01-05 08:30:00"),
        ts("2024-01-05 09:30:00")
    );
    // Before StartTime the windows extend backwards with the same period.
    let q = Quota::new(config(1, TimeUnit::Hour, "2024-01-01 00:30:00")).unwrap();
    assert_eq!(
        expiry(&q, "k", "2023-12-31 23:00:00"),
        ts("2023-12-31 23:30:00")
    );
    let q = Quota::new(config(1, TimeUnit::Hour, "2024-01-01 00:30:00")).unwrap();
    assert_eq!(
        expiry(&q, "k", "2024-01-01 00:30:00"),
        ts("2024-01-01 01:30:00")
    );
    // Weeks of 7 days from StartTime.
    let q = Quota::new(config(1, TimeUnit::Week, "2024-01-03 12:00:00")).unwrap();
    assert_eq!(
        expiry(&q, "k", "2024-01-20 00:00:00"),
        ts("2024-01-24 12:00:00")
    );
    // Months by chrono, always from StartTime: Jan 31, Feb 29, Mar 31, Apr 30, ...
    let q = Quota::new(config(1, TimeUnit::Month, "2024-01-31 00:00:00")).unwrap();
    assert_eq!(
        expiry(&q, "a", "2024-02-15 00:00:00"),
        ts("2024-02-29 00:00:00")
    );
    assert_eq!(
        expiry(&q, "b", "2024-03-01 00:00:00"),
        ts("2024-03-31 00:00:00")
    );
    assert_eq!(
        expiry(&q, "c", "2024-04-01 00:00:00"),
        ts("2024-04-30 00:00:00")
    );
    assert_eq!(
        expiry(&q, "d", "2024-04-30 00:00:00"),
        ts("2024-05-31 00:00:00")
    );
    assert_eq!(
        expiry(&q, "e", "2023-12-31 00:00:00"),
        ts("2024-01-31 00:00:00")
    );
    assert_eq!(
        expiry(&q, "f", "2023-12-30 23:59:59"),
        ts("2023-12-31 00:00:00")
    );
    let q = Quota::new(config(3, TimeUnit::Month, "2024-01-15 06:00:00")).unwrap();
    assert_eq!(
        expiry(&q, "a", "2024-04-15 05:59:59"),
        ts("2024-04-15 06:00:00")
    );
    assert_eq!(
        expiry(&q, "b", "2024-04-15 06:00:00"),
        ts("2024-07-15 06:00:00")
    );
    assert_eq!(
        expiry(&q, "c", "2026-11-21 09:00:00"),
        ts("2027-01-15 06:00:00")
    );
}

#[test]
fn calendar_counts_reset_per_window() {
    let q = Quota::new(
        QuotaConfig::new(2, n(1), TimeUnit::Minute)
            .with_type(QuotaType::Calendar)
            .with_start_time(ts("2024-01-01 00:00:30")),
    )
    .unwrap();
    assert!(q.check("k", ts("2024-01-01 10:00:29"), 2).allowed);
    assert!(!q.check("k", ts("2024-01-01 10:00:29"), 1).allowed);
    assert!(q.check("k", ts("2024-01-01 10:00:30"), 2).allowed);
    assert!(!q.check("k", ts("2024-01-01 10:01:29"), 1).allowed);
}

#[test]
fn rolling_window_looks_back_over_the_interval() {
    // 60 per hour, rolling: counted in 1-minute slots (an hour / 60).
    let q = quota(60, 1, TimeUnit::Hour, QuotaType::RollingWindow);
    let start = ts("2024-01-01 14:45:00").as_nanos();
    for i in 0..60 {
        let d = q.check("k", Timestamp::from_nanos(start + i * 10 * SEC), 1);
        assert!(d.allowed, "request {i}");
        assert_eq!(d.expires_at, None);
    }
    assert!(
        !q.check("k", Timestamp::from_nanos(start + 600 * SEC), 1)
            .allowed
    );
    // An hour and a slot after the burst, it has left the window.
    assert!(!q.check("k", ts("2024-01-01 15:45:00"), 1).allowed);
    let d = q.check("k", ts("2024-01-01 15:56:00"), 1);
    assert!(d.allowed);
    assert_eq!(d.used_count, 1);
}

#[test]
fn rolling_window_never_admits_more_than_allowed_in_any_interval() {
    // 10 per minute; requests every 1.7 s for 10 minutes.
    let q = quota(10, 1, TimeUnit::Minute, QuotaType::RollingWindow);
    let step = 1_700_000_000;
    let t0 = ts("2024-01-01 00:00:00").as_nanos();
    let admitted: Vec<u64> = (0..350)
        .map(|i| t0 + i * step)
        .filter(|t| q.check("k", Timestamp::from_nanos(*t), 1).allowed)
        .collect();
    for (i, a) in admitted.iter().enumerate() {
        let within = admitted[i..]
            .iter()
            .take_while(|b| **b < a + 60 * SEC)
            .count();
        assert!(within <= 10, "{within} in the minute from {a}");
    }
    // And it does not starve: roughly 10 per minute over 10 minutes.
    assert!(admitted.len() >= 90, "{}", admitted.len());
}

#[test]
fn rolling_months_use_calendar_lookback() {
    let q = quota(1, 1, TimeUnit::Month, QuotaType::RollingWindow);
    assert!(q.check("k", ts("2024-03-01 00:00:00"), 1).allowed);
    assert!(!q.check("k", ts("2024-03-31 00:00:00"), 1).allowed);
    // One month and one slot (31 days / 60) later it has rolled out.
    assert!(q.check("k", ts("2024-04-02 00:00:00"), 1).allowed);
}

#[test]
fn classes_have_their_own_counts_and_counters() {
    let config = QuotaConfig::new(1, n(1), TimeUnit::Hour)
        .with_class("gold", 3)
        .with_class("silver", 2);
    let q = Quota::new(config).unwrap();
    let now = ts("2024-01-01 00:00:00");
    let gold = QuotaCheck::new("app", now, 1).with_class("gold");
    for _ in 0..3 {
        assert!(q.check_with(&gold).allowed);
    }
    let d = q.check_with(&gold);
    assert!(!d.allowed);
    assert_eq!(d.allowed_count, 3);
    let silver = QuotaCheck::new("app", now, 1).with_class("silver");
    assert!(q.check_with(&silver).allowed);
    assert_eq!(q.check_with(&silver).used_count, 2);
    // An unlisted class counts against the identifier's own counter and count.
    let bronze = QuotaCheck::new("app", now, 1).with_class("bronze");
    assert!(q.check_with(&bronze).allowed);
    assert!(!q.check("app", now, 1).allowed);
    // A long class name still works (composed on the heap).
    let long = "x".repeat(400);
    let q =
        Quota::new(QuotaConfig::new(1, n(1), TimeUnit::Hour).with_class(long.clone(), 2)).unwrap();
    let check = QuotaCheck::new("app", now, 1).with_class(&long);
    assert!(q.check_with(&check).allowed);
    assert!(q.check_with(&check).allowed);
    assert!(!q.check_with(&check).allowed);
}

#[test]
fn allow_override_replaces_the_configured_count() {
    let q = quota(1, 1, TimeUnit::Hour, QuotaType::Default);
    let now = ts("2024-01-01 00:00:00");
    let check = QuotaCheck::new("app", now, 1).with_allow(3);
    assert!(q.check_with(&check).allowed);
    assert!(q.check_with(&check).allowed);
    let d = q.check_with(&check);
    assert!(d.allowed);
    assert_eq!(d.allowed_count, 3);
    assert!(!q.check_with(&check).allowed);
}

#[test]
fn store_op_round_trip_matches_inline_check() {
    for t in [
        QuotaType::Default,
        QuotaType::Flexi,
        QuotaType::RollingWindow,
    ] {
        let config = QuotaConfig::new(7, n(1), TimeUnit::Minute)
            .with_type(t)
            .with_class("gold", 4);
        let inline = Quota::new(config.clone()).unwrap();
        let planner = Quota::new(config).unwrap();
        let remote = MemoryStore::new();
        let t0 = ts("2024-01-01 00:00:00").as_nanos();
        for i in 0..300u64 {
            let now = Timestamp::from_nanos(t0 + i * 997_000_000);
            let class = if i % 3 == 0 { "gold" } else { "plain" };
            let check = QuotaCheck::new("app", now, (i % 3) as u32).with_class(class);
            let op = planner.store_op(&check);
            match (&op, t) {
                (StoreOp::QuotaSlide { .. }, QuotaType::RollingWindow)
                | (StoreOp::QuotaIncr { .. }, _) => {}
                other => panic!("unexpected op {other:?}"),
            }
            let decision = op.resolve(&remote.run(&op)).unwrap();
            assert_eq!(
                decision,
                Decision::Quota(inline.check_with(&check)),
                "{t} step {i}"
            );
        }
        assert!(planner.store().is_empty());
    }
}

#[test]
fn expired_windows_are_reclaimed() {
    let q = Quota::with_store(
        QuotaConfig::new(5, n(1), TimeUnit::Minute).with_type(QuotaType::Flexi),
        MemoryStore::with_sweep(16, 0),
    )
    .unwrap();
    let t0 = ts("2024-01-01 00:00:00").as_nanos();
    for i in 0..10_000u64 {
        // A new identifier every second: about 60 windows are live at any time.
        assert!(
            q.check(&format!("id-{i}"), Timestamp::from_nanos(t0 + i * SEC), 1)
                .allowed
        );
        assert!(q.store().len() <= 2 * 61 + 16, "len {}", q.store().len());
    }
    let held = q.store().len();
    assert!(held > 0);
    // At the last request's time exactly the windows opened in the last minute are live.
    let removed = q.store().reclaim(Timestamp::from_nanos(t0 + 9_999 * SEC));
    assert_eq!(q.store().len(), 60);
    assert_eq!(removed, held - 60);
    assert_eq!(
        q.store().reclaim(Timestamp::from_nanos(t0 + 20_000 * SEC)),
        60
    );
    assert!(q.store().is_empty());
}
