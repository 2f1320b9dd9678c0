//! Client-authentication throttle entries shared through Redis: what one instance counts
//! another sees, with the same arithmetic as the in-process throttle.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::IpAddr;

use common::{raw, server, store};
use preflow_oauth::{Lockout, Throttle, ThrottleConfig, ThrottleEntry};

#[tokio::test]
async fn instances_share_counts_and_agree_with_the_local_arithmetic() {
    let server = server();
    let config = ThrottleConfig {
        free_pair_failures: 3,
        free_source_failures: 4,
        ..Default::default()
    };
    // Two instances sharing the MAC key derive the same keys.
    let a = Throttle::with_key(config, [7; 32]);
    let b = Throttle::with_key(config, [7; 32]);
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let keys = a.keys("client-1", Some(ip));
    assert_eq!(keys, b.keys("client-1", Some(ip)));
    let (sa, sb) = (store(&server).await, store(&server).await);

    // Instance A counts failures; the entries follow ThrottleEntry::fail exactly.
    let mut expected = ThrottleEntry::default();
    // The real time: entries expire on the Redis clock.
    let now = common::now_secs();
    for (i, t) in [0u64, 0, 1, 1, 3, 3, 10, 4000].into_iter().enumerate() {
        let got = sa.throttle_fail(&keys, now + t, &config).await.unwrap();
        expected.fail(now + t, config.free_pair_failures, &config);
        assert_eq!(got, expected, "failure {i}");
    }
    // After 4000 s the count started again: one failure, no wait.
    assert_eq!(expected.failures, 1);
    for _ in 0..3 {
        sa.throttle_fail(&keys, now + 4000, &config).await.unwrap();
    }
    // Instance B sees A's failures: the pair waits, a fresh address for the same client
    // does not.
    assert_eq!(
        sb.throttle_check(&keys, now + 4000).await.unwrap(),
        Err(Lockout::Pair { retry_after: 1 })
    );
    let fresh = b.keys("client-1", Some("198.51.100.1".parse().unwrap()));
    assert_eq!(sb.throttle_check(&fresh, now + 4000).await.unwrap(), Ok(()));
    // The source's count also started again at +4000 s: 4 failures, all free. One more,
    // for another client id, and the source waits for any client id.
    let other_id = b.keys("client-2", Some(ip));
    assert_eq!(
        sb.throttle_check(&other_id, now + 4000).await.unwrap(),
        Ok(())
    );
    sb.throttle_fail(&other_id, now + 4000, &config)
        .await
        .unwrap();
    assert_eq!(
        sa.throttle_check(&b.keys("client-3", Some(ip)), now + 4000)
            .await
            .unwrap(),
        Err(Lockout::Source { retry_after: 1 })
    );
    // A success clears the pair only.
    sb.throttle_success(&keys).await.unwrap();
    assert_eq!(
        sa.throttle_entry(&keys.pair).await.unwrap(),
        ThrottleEntry::default()
    );
    assert_eq!(
        sa.throttle_entry(&keys.source.unwrap())
            .await
            .unwrap()
            .failures,
        5
    );
    // Entries expire when they would be forgotten, and hold no client id.
    let key = sa.keys().throttle(&keys.source.unwrap());
    let ttl: i64 = raw(&server, redis::cmd("TTL").arg(&key)).await;
    assert!(ttl > 0, "{ttl}");
    assert!(!key.contains("client-1"));
}
