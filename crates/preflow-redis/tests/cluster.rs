//! A real Redis Cluster (three masters, one replica each, started by the test): every
//! operation runs in one slot, and a master killed under load is failed over with the
//! store answering again on its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use preflow_oauth::{GrantId, GrantType, StoreOp, StoreReply, TokenHash, TokenKind, TokenRecord};
use preflow_ratelimit::Timestamp;
use preflow_ratelimit::store::QuotaIncr;
use preflow_redis::server::RedisCluster;
use preflow_redis::{RedisConfig, RedisStore};

fn cluster() -> RedisCluster {
    RedisCluster::start(3, 1).unwrap_or_else(|e| {
        panic!("these tests need redis-server and redis-cli (apt-get install redis-server): {e}")
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn record(grant: GrantId) -> Arc<TokenRecord> {
    let t = now_secs();
    Arc::new(TokenRecord {
        kind: TokenKind::Access,
        client_id: "c".into(),
        app_id: "a".into(),
        app_name: "app".into(),
        developer_email: "d@example.com".into(),
        products: vec![Arc::<str>::from("p")].into(),
        scope: String::new().into(),
        grant_type: GrantType::ClientCredentials,
        username: None,
        issued_at: t,
        expires_at: Some(t + 3600),
        revoked_at: None,
        grant_id: grant,
        refresh_count: 0,
        attributes: Vec::new().into(),
    })
}

async fn connect(cluster: &RedisCluster) -> RedisStore {
    let config = RedisConfig::default()
        .with_timeout(Duration::from_millis(500))
        .with_breaker(preflow_redis::BreakerConfig::disabled());
    RedisStore::connect_cluster(&cluster.urls(), config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grants_and_quotas_work_across_slots() {
    let cluster = cluster();
    let store = connect(&cluster).await;
    assert!(store.is_cluster());
    // Tokens of one grant land in many slots; revoking the grant reaches them all.
    let grant = GrantId::random();
    let hashes: Vec<TokenHash> = (0..20)
        .map(|i| TokenHash::of(format!("t{i}").as_bytes()))
        .collect();
    for h in &hashes {
        let put = StoreOp::PutTokens(vec![(*h, record(grant))]);
        assert_eq!(store.run_token(&put).await.unwrap(), StoreReply::Done);
    }
    let revoke = StoreOp::RevokeGrant {
        grant,
        at: now_secs(),
    };
    assert_eq!(
        store.run_token(&revoke).await.unwrap(),
        StoreReply::Count(20)
    );
    // Quotas on keys in different slots, each exact.
    let start = Timestamp::from_system_time(SystemTime::now());
    for key in ["quota:a:Q:1", "quota:b:Q:2", "quota:c:Q:3"] {
        let op = preflow_ratelimit::StoreOp::QuotaIncr {
            key: key.into(),
            incr: QuotaIncr {
                now: start,
                window_start: start,
                expires_at: start.saturating_add_nanos(60_000_000_000),
                weight: 1,
                limit: 2,
            },
        };
        let allowed: Vec<bool> =
            futures_util::future::join_all((0..3).map(|_| store.run_ratelimit(&op)))
                .await
                .into_iter()
                .map(|r| op.resolve(&r.unwrap()).unwrap().is_allowed())
                .collect();
        assert_eq!(allowed.iter().filter(|a| **a).count(), 2, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_fails_over_and_the_store_recovers() {
    let mut cluster = cluster();
    let store = connect(&cluster).await;
    // Tokens written (and replicated) before the kill.
    let grant = GrantId::random();
    let before: Vec<TokenHash> = (0..30)
        .map(|i| TokenHash::of(format!("before{i}").as_bytes()))
        .collect();
    for h in &before {
        let put = StoreOp::PutTokens(vec![(*h, record(grant))]);
        store.run_token(&put).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let last_failure = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut load = Vec::new();
    for w in 0..4 {
        let (store, stop, ok, failed, last_failure) = (
            store.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&last_failure),
        );
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let h = TokenHash::of(format!("load{w}-{i}").as_bytes());
                let put = StoreOp::PutTokens(vec![(h, record(GrantId::random()))]);
                let result = match store.run_token(&put).await {
                    Ok(_) => store.run_token(&StoreOp::GetToken(h)).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(StoreReply::Token(Some(_))) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        if failed.load(Ordering::Relaxed) % 200 == 0 {
                            eprintln!("failure: {:?}", other.err());
                        }
                        *last_failure.lock().unwrap() = Some(Instant::now());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = cluster.master_of(&store.keys().token(&before[0])).unwrap();
    let killed_at = Instant::now();
    cluster.kill(victim);
    // Fail-over: a replica is promoted after the node timeout (1 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("under load: {ok} operations succeeded, {failed} failed");
    assert!(ok > 100, "the load ran: {ok}");
    let last = *last_failure.lock().unwrap();
    if let Some(last) = last {
        let outage = last.saturating_duration_since(killed_at);
        eprintln!("last failure {outage:?} after the kill");
        assert!(
            outage < Duration::from_secs(5),
            "failures went on {outage:?} after the kill"
        );
    }
    // The replica took over the victim's slots: tokens written before are all there.
    assert_ne!(
        cluster.master_of(&store.keys().token(&before[0])),
        Some(victim)
    );
    for h in &before {
        let got = store.run_token(&StoreOp::GetToken(*h)).await.unwrap();
        assert!(
            matches!(got, StoreReply::Token(Some(_))),
            "token lost in the fail-over"
        );
    }
}
