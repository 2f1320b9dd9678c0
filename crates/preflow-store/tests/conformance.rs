//! One conformance suite for every state store: in memory, the embedded redb file, Redis
//! (a `redis-server` this test starts) and a Redis Cluster (three masters it starts). Each case drives the store through the
//! operations the engine asks for and checks the replies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use preflow::{KvOp, KvReply};
use preflow_oauth::{
    CodeRecord, CodeTake, GrantId, GrantType, StoreOp, StoreReply, TokenHash, TokenKind,
    TokenRecord,
};
use preflow_ratelimit::Timestamp;
use preflow_ratelimit::store::{GcraTake, QuotaIncr, QuotaSlide};
use preflow_store::{DurableStore, MemoryState, StateStore};

/// What the suite needs of a store: the engine's two kinds of operations.
trait Backend {
    async fn token(&self, op: StoreOp) -> StoreReply;
    async fn counter(&self, op: preflow_ratelimit::StoreOp) -> preflow_ratelimit::StoreReply;
    async fn kv(&self, op: KvOp) -> KvReply;
}

struct Inline<S>(S);

impl<S: StateStore> Backend for Inline<S> {
    async fn token(&self, op: StoreOp) -> StoreReply {
        self.0.token(&op).unwrap()
    }
    async fn counter(&self, op: preflow_ratelimit::StoreOp) -> preflow_ratelimit::StoreReply {
        self.0.counter(&op).unwrap()
    }
    async fn kv(&self, op: KvOp) -> KvReply {
        self.0.kv(&op).unwrap()
    }
}

struct Redis(preflow_redis::RedisStore);

impl Backend for Redis {
    async fn token(&self, op: StoreOp) -> StoreReply {
        self.0.run_token(&op).await.unwrap()
    }
    async fn counter(&self, op: preflow_ratelimit::StoreOp) -> preflow_ratelimit::StoreReply {
        self.0.run_ratelimit(&op).await.unwrap()
    }
    async fn kv(&self, op: KvOp) -> KvReply {
        self.0.run_kv(&op).await.unwrap()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

fn record(kind: TokenKind, grant: GrantId, issued_at: u64) -> Arc<TokenRecord> {
    Arc::new(TokenRecord {
        kind,
        client_id: "client-1".into(),
        app_id: "app-1".into(),
        app_name: "my-app".into(),
        developer_email: "dev@example.com".into(),
        products: vec![Arc::<str>::from("p1"), Arc::<str>::from("p2")].into(),
        scope: "read write".into(),
        grant_type: GrantType::ClientCredentials,
        username: None,
        issued_at,
        expires_at: Some(issued_at + 3600),
        revoked_at: None,
        grant_id: grant,
        refresh_count: 0,
        attributes: vec![("tier".to_owned(), "gold".to_owned())].into(),
    })
}

fn hash(name: &str) -> TokenHash {
    TokenHash::of(format!("{name}-{}", now().as_nanos()).as_bytes())
}

async fn tokens_round_trip(s: &impl Backend) {
    let t = now_secs();
    let grant = GrantId::random();
    let (a, r) = (hash("access"), hash("refresh"));
    let access = record(TokenKind::Access, grant, t);
    let refresh = record(TokenKind::Refresh, grant, t);
    let put = StoreOp::PutTokens(vec![(a, Arc::clone(&access)), (r, Arc::clone(&refresh))]);
    assert_eq!(s.token(put).await, StoreReply::Done);
    assert_eq!(
        s.token(StoreOp::GetToken(a)).await,
        StoreReply::Token(Some(access))
    );
    assert_eq!(
        s.token(StoreOp::GetToken(r)).await,
        StoreReply::Token(Some(refresh))
    );
    assert_eq!(
        s.token(StoreOp::GetToken(hash("unknown"))).await,
        StoreReply::Token(None)
    );
}

async fn revocation(s: &impl Backend) {
    let t = now_secs();
    let grant = GrantId::random();
    let (a, r, other) = (hash("a"), hash("r"), hash("other"));
    let put = StoreOp::PutTokens(vec![
        (a, record(TokenKind::Access, grant, t)),
        (r, record(TokenKind::Refresh, grant, t)),
    ]);
    assert_eq!(s.token(put).await, StoreReply::Done);
    let put = StoreOp::PutTokens(vec![(
        other,
        record(TokenKind::Access, GrantId::random(), t),
    )]);
    assert_eq!(s.token(put).await, StoreReply::Done);
    // Read first, so a store that keeps records in memory holds them when they change.
    for h in [a, r, other] {
        assert!(matches!(
            s.token(StoreOp::GetToken(h)).await,
            StoreReply::Token(Some(_))
        ));
    }
    let revoke = StoreOp::RevokeToken { hash: a, at: t + 1 };
    assert_eq!(s.token(revoke.clone()).await, StoreReply::Count(1));
    assert_eq!(
        s.token(revoke).await,
        StoreReply::Count(0),
        "already revoked"
    );
    let StoreReply::Token(Some(got)) = s.token(StoreOp::GetToken(a)).await else {
        panic!("revoked token kept for verification");
    };
    assert_eq!(got.revoked_at, Some(t + 1));
    // The grant: only the refresh token was still live.
    let family = StoreOp::RevokeGrant { grant, at: t + 2 };
    assert_eq!(s.token(family).await, StoreReply::Count(1));
    let StoreReply::Token(Some(got)) = s.token(StoreOp::GetToken(r)).await else {
        panic!("refresh token kept");
    };
    assert_eq!(got.revoked_at, Some(t + 2));
    let StoreReply::Token(Some(got)) = s.token(StoreOp::GetToken(other)).await else {
        panic!("other grant kept");
    };
    assert_eq!(got.revoked_at, None, "another grant is untouched");
    let unknown = StoreOp::RevokeToken {
        hash: hash("none"),
        at: t,
    };
    assert_eq!(s.token(unknown).await, StoreReply::Count(0));
}

async fn codes_are_taken_once(s: &impl Backend) {
    let t = now_secs();
    let code = CodeRecord {
        client_id: "client-1".into(),
        redirect_uri: Some("https://app.example/cb".into()),
        scope: "read".into(),
        code_challenge: Some("challenge".into()),
        username: Some("alice".into()),
        issued_at: t,
        expires_at: t + 600,
        grant_id: GrantId::random(),
    };
    let h = hash("code");
    let put = StoreOp::PutCode {
        hash: h,
        record: code.clone(),
    };
    assert_eq!(s.token(put).await, StoreReply::Done);
    assert_eq!(
        s.token(StoreOp::TakeCode(h)).await,
        StoreReply::Code(CodeTake::Fresh(code.clone()))
    );
    assert_eq!(
        s.token(StoreOp::TakeCode(h)).await,
        StoreReply::Code(CodeTake::Reused(code))
    );
    assert_eq!(
        s.token(StoreOp::TakeCode(hash("nope"))).await,
        StoreReply::Code(CodeTake::Unknown)
    );
}

fn quota_reply(r: preflow_ratelimit::StoreReply) -> preflow_ratelimit::store::QuotaReply {
    match r {
        preflow_ratelimit::StoreReply::Quota(q) => q,
        other => panic!("expected a quota reply, got {other:?}"),
    }
}

async fn fixed_window_quota(s: &impl Backend) {
    let start = now();
    let key = format!("quota:api:Q:{}", start.as_nanos());
    let incr = |at: Timestamp, weight: u32| preflow_ratelimit::StoreOp::QuotaIncr {
        key: key.clone(),
        incr: QuotaIncr {
            now: at,
            window_start: at,
            expires_at: at.saturating_add_nanos(60_000_000_000),
            weight,
            limit: 3,
        },
    };
    let mut allowed = Vec::new();
    for _ in 0..3 {
        allowed.push(quota_reply(s.counter(incr(start, 1)).await).allowed);
    }
    assert_eq!(allowed, [true, true, true]);
    let over = quota_reply(s.counter(incr(start, 1)).await);
    assert!(!over.allowed);
    assert_eq!(
        (over.used, over.total_exceeded),
        (3, 1),
        "rejections are not counted"
    );
    let heavy = quota_reply(s.counter(incr(start, 2)).await);
    assert!(!heavy.allowed);
    assert_eq!((heavy.used, heavy.total_exceeded), (3, 3));
    // The window's end comes from the first request of the window.
    assert_eq!(
        heavy.expires_at,
        Some(start.saturating_add_nanos(60_000_000_000))
    );
}

async fn rolling_window_quota(s: &impl Backend) {
    let start = now();
    let key = format!("quota:api:R:{}", start.as_nanos());
    let slide = |at: Timestamp| preflow_ratelimit::StoreOp::QuotaSlide {
        key: key.clone(),
        slide: QuotaSlide {
            now: at,
            slot_ns: 1_000_000_000,
            lookback_ns: 60_000_000_000,
            weight: 1,
            limit: 2,
        },
    };
    let a = quota_reply(s.counter(slide(start)).await);
    let b = quota_reply(s.counter(slide(start)).await);
    let c = quota_reply(s.counter(slide(start)).await);
    assert_eq!((a.allowed, b.allowed, c.allowed), (true, true, false));
    assert_eq!((c.used, c.total_exceeded), (2, 1));
}

async fn spike_arrest(s: &impl Backend) {
    let start = now();
    let key = format!("spike:api:S:{}", start.as_nanos());
    let take = preflow_ratelimit::StoreOp::GcraTake {
        key,
        take: GcraTake {
            now: start,
            emission_interval_ns: 10_000_000_000,
            tolerance_ns: 10_000_000_000,
            weight: 1,
        },
    };
    let first = s.counter(take.clone()).await;
    let second = s.counter(take.clone()).await;
    assert!(take.resolve(&first).unwrap().is_allowed());
    assert!(!take.resolve(&second).unwrap().is_allowed());
}

fn kv_get(namespace: &str, key: &str) -> KvOp {
    KvOp::Get {
        namespace: namespace.into(),
        key: key.into(),
        now: now().as_nanos(),
    }
}

fn kv_put(
    namespace: &str,
    key: &str,
    value: &str,
    expires_at: Option<u64>,
    overwrite: bool,
) -> KvOp {
    KvOp::Put {
        namespace: namespace.into(),
        key: key.into(),
        value: value.into(),
        expires_at,
        overwrite,
        now: now().as_nanos(),
    }
}

fn value(v: &str) -> KvReply {
    KvReply::Value(Some(v.to_owned()))
}

async fn key_values(s: &impl Backend) {
    // Namespaces as KeyValueMapOperations names them, braces and colons included.
    let ns = format!("kvm:{{org/env/p-{}}}:{{map}}", now().as_nanos());
    let other = format!("{ns}x");
    assert_eq!(s.kv(kv_get(&ns, "k")).await, KvReply::Value(None));
    assert_eq!(
        s.kv(kv_put(&ns, "k", "v1", None, true)).await,
        KvReply::Written(true)
    );
    assert_eq!(s.kv(kv_get(&ns, "k")).await, value("v1"));
    assert_eq!(s.kv(kv_get(&other, "k")).await, KvReply::Value(None));
    // Without overwrite a live entry stays; with it, it is replaced.
    assert_eq!(
        s.kv(kv_put(&ns, "k", "v2", None, false)).await,
        KvReply::Written(false)
    );
    assert_eq!(s.kv(kv_get(&ns, "k")).await, value("v1"));
    assert_eq!(
        s.kv(kv_put(&ns, "k", "v3 ✓", None, true)).await,
        KvReply::Written(true)
    );
    assert_eq!(s.kv(kv_get(&ns, "k")).await, value("v3 ✓"));
    assert_eq!(
        s.kv(KvOp::Delete {
            namespace: ns.clone(),
            key: "k".into()
        })
        .await,
        KvReply::Done
    );
    assert_eq!(s.kv(kv_get(&ns, "k")).await, KvReply::Value(None));
    // Expiry: an entry that has expired is absent, and may be written without overwrite.
    let soon = now().as_nanos() + 150_000_000;
    assert_eq!(
        s.kv(kv_put(&ns, "e", "brief", Some(soon), true)).await,
        KvReply::Written(true)
    );
    assert_eq!(s.kv(kv_get(&ns, "e")).await, value("brief"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.kv(kv_get(&ns, "e")).await, KvReply::Value(None));
    assert_eq!(
        s.kv(kv_put(&ns, "e", "again", None, false)).await,
        KvReply::Written(true)
    );
    assert_eq!(s.kv(kv_get(&ns, "e")).await, value("again"));
    let past = now().as_nanos() - 1_000_000_000;
    s.kv(kv_put(&ns, "p", "gone", Some(past), true)).await;
    assert_eq!(s.kv(kv_get(&ns, "p")).await, KvReply::Value(None));
    // A long entry in an awkward namespace.
    let long = "x".repeat(100_000);
    s.kv(kv_put("{", "}", &long, None, true)).await;
    assert_eq!(s.kv(kv_get("{", "}")).await, value(&long));
}

async fn token_attributes(s: &impl Backend) {
    let t = now_secs();
    let (a, unknown) = (hash("attrs"), hash("attrs-unknown"));
    let access = record(TokenKind::Access, GrantId::random(), t);
    let put = StoreOp::PutTokens(vec![(a, Arc::clone(&access))]);
    assert_eq!(s.token(put).await, StoreReply::Done);
    let revoke = StoreOp::RevokeToken { hash: a, at: t };
    assert_eq!(s.token(revoke).await, StoreReply::Count(1));
    let set = StoreOp::SetAttributes {
        hash: a,
        set: vec![
            ("tier".to_owned(), "platinum".to_owned()),
            ("new".to_owned(), "x".to_owned()),
        ],
    };
    let expected = TokenRecord {
        attributes: vec![
            ("tier".to_owned(), "platinum".to_owned()),
            ("new".to_owned(), "x".to_owned()),
        ]
        .into(),
        revoked_at: Some(t),
        ..(*access).clone()
    };
    assert_eq!(
        s.token(set).await,
        StoreReply::Token(Some(Arc::new(expected.clone())))
    );
    assert_eq!(
        s.token(StoreOp::GetToken(a)).await,
        StoreReply::Token(Some(Arc::new(expected))),
        "attributes change, the rest of the record and its revocation stay"
    );
    let set = StoreOp::SetAttributes {
        hash: unknown,
        set: vec![("k".to_owned(), "v".to_owned())],
    };
    assert_eq!(s.token(set).await, StoreReply::Token(None));
    assert_eq!(
        s.token(StoreOp::GetToken(unknown)).await,
        StoreReply::Token(None)
    );
}

async fn throttle(s: &impl Backend) {
    use preflow_oauth::{Lockout, Throttle, ThrottleConfig};
    let config = ThrottleConfig::default();
    let ip = Some(std::net::IpAddr::from([10, 1, 2, 3]));
    let keys = Throttle::new(config).keys(&format!("client-{}", now().as_nanos()), ip);
    let t = now_secs();
    let check = |now| StoreOp::ThrottleCheck { keys, now };
    assert_eq!(s.token(check(t)).await, StoreReply::Throttle(None));
    for _ in 0..config.free_pair_failures {
        let fail = StoreOp::ThrottleFail {
            keys,
            now: t,
            config,
        };
        assert_eq!(s.token(fail).await, StoreReply::Done);
    }
    assert_eq!(
        s.token(check(t)).await,
        StoreReply::Throttle(None),
        "free failures"
    );
    let fail = StoreOp::ThrottleFail {
        keys,
        now: t,
        config,
    };
    s.token(fail).await;
    assert_eq!(
        s.token(check(t)).await,
        StoreReply::Throttle(Some(Lockout::Pair { retry_after: 1 }))
    );
    assert_eq!(s.token(check(t + 1)).await, StoreReply::Throttle(None));
    assert_eq!(
        s.token(StoreOp::ThrottleSuccess(keys)).await,
        StoreReply::Done
    );
    let fail = StoreOp::ThrottleFail {
        keys,
        now: t + 1,
        config,
    };
    s.token(fail).await;
    assert_eq!(
        s.token(check(t + 1)).await,
        StoreReply::Throttle(None),
        "a success cleared the pair"
    );
}

async fn suite(s: &impl Backend) {
    key_values(s).await;
    throttle(s).await;
    token_attributes(s).await;
    tokens_round_trip(s).await;
    revocation(s).await;
    codes_are_taken_once(s).await;
    fixed_window_quota(s).await;
    rolling_window_quota(s).await;
    spike_arrest(s).await;
}

#[tokio::test]
async fn memory_conforms() {
    suite(&Inline(MemoryState::new())).await;
}

#[tokio::test]
async fn redb_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(&Inline(
        DurableStore::open(dir.path().join("state.redb")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn redb_without_token_cache_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(&Inline(
        DurableStore::open(dir.path().join("state.redb"))
            .unwrap()
            .with_token_cache(0),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_conforms() {
    let server = preflow_redis::server::RedisServer::start().expect("redis-server");
    let config =
        preflow_redis::RedisConfig::default().with_timeout(std::time::Duration::from_secs(2));
    let store = preflow_redis::RedisStore::connect(&server.url(), config)
        .await
        .unwrap();
    suite(&Redis(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_conforms() {
    let cluster = preflow_redis::server::RedisCluster::start(3, 0).expect("redis cluster");
    let config =
        preflow_redis::RedisConfig::default().with_timeout(std::time::Duration::from_secs(2));
    let store = preflow_redis::RedisStore::connect_cluster(&cluster.urls(), config)
        .await
        .unwrap();
    suite(&Redis(store)).await;
}

/// What makes the embedded store worth having: it all survives closing and reopening.
#[tokio::test]
async fn redb_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let t = now_secs();
    let grant = GrantId::random();
    let (a, revoked, h) = (hash("a"), hash("revoked"), hash("code"));
    let start = now();
    let incr = preflow_ratelimit::StoreOp::QuotaIncr {
        key: "quota:api:Q:app".into(),
        incr: QuotaIncr {
            now: start,
            window_start: start,
            expires_at: start.saturating_add_nanos(3_600_000_000_000),
            weight: 1,
            limit: 2,
        },
    };
    let code = CodeRecord {
        client_id: "c".into(),
        redirect_uri: None,
        scope: String::new(),
        code_challenge: None,
        username: None,
        issued_at: t,
        expires_at: t + 600,
        grant_id: grant,
    };
    {
        let s = Inline(DurableStore::open(&path).unwrap());
        let put = StoreOp::PutTokens(vec![
            (a, record(TokenKind::Access, grant, t)),
            (revoked, record(TokenKind::Access, GrantId::random(), t)),
        ]);
        assert_eq!(s.token(put).await, StoreReply::Done);
        let revoke = StoreOp::RevokeToken {
            hash: revoked,
            at: t,
        };
        assert_eq!(s.token(revoke).await, StoreReply::Count(1));
        let put = StoreOp::PutCode {
            hash: h,
            record: code.clone(),
        };
        assert_eq!(s.token(put).await, StoreReply::Done);
        assert!(matches!(
            s.token(StoreOp::TakeCode(h)).await,
            StoreReply::Code(CodeTake::Fresh(_))
        ));
        assert!(quota_reply(s.counter(incr.clone()).await).allowed);
        assert!(quota_reply(s.counter(incr.clone()).await).allowed);
        s.kv(kv_put("kvm:{o/e/p}:{m}", "k", "kept", None, true))
            .await;
    }
    let s = Inline(DurableStore::open(&path).unwrap());
    assert_eq!(
        s.token(StoreOp::GetToken(a)).await,
        StoreReply::Token(Some(record(TokenKind::Access, grant, t)))
    );
    let StoreReply::Token(Some(r)) = s.token(StoreOp::GetToken(revoked)).await else {
        panic!("revoked token lost");
    };
    assert_eq!(r.revoked_at, Some(t), "a revocation survives");
    assert_eq!(
        s.token(StoreOp::TakeCode(h)).await,
        StoreReply::Code(CodeTake::Reused(code)),
        "a used code stays used"
    );
    let over = quota_reply(s.counter(incr).await);
    assert!(!over.allowed, "the quota count survives");
    assert_eq!(over.used, 2);
    assert_eq!(
        s.kv(kv_get("kvm:{o/e/p}:{m}", "k")).await,
        value("kept"),
        "a key-value entry survives"
    );
}

#[test]
fn purge_removes_only_dead_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = DurableStore::open(dir.path().join("state.redb")).unwrap();
    let t = now_secs();
    let (live, expired) = (hash("live"), hash("expired"));
    let mut old = (*record(TokenKind::Access, GrantId::random(), t - 7200)).clone();
    old.expires_at = Some(t - 3600);
    let put = StoreOp::PutTokens(vec![
        (live, record(TokenKind::Access, GrantId::random(), t)),
        (expired, Arc::new(old)),
    ]);
    store.token(&put).unwrap();
    let at = t * 1_000_000_000;
    for (key, expires_at) in [("old", Some(at - 1)), ("new", Some(at + 1)), ("ever", None)] {
        let put = KvOp::Put {
            namespace: "ns".into(),
            key: key.into(),
            value: "v".into(),
            expires_at,
            overwrite: true,
            now: at - 2,
        };
        store.kv(&put).unwrap();
    }
    let removed = store.purge_expired(Timestamp::from_nanos(at)).unwrap();
    assert_eq!(removed, 2);
    let get = |key: &str| KvOp::Get {
        namespace: "ns".into(),
        key: key.into(),
        now: at - 2,
    };
    assert_eq!(store.kv(&get("old")).unwrap(), KvReply::Value(None));
    assert_eq!(store.kv(&get("new")).unwrap(), value("v"));
    assert_eq!(store.kv(&get("ever")).unwrap(), value("v"));
    assert!(matches!(
        store.token(&StoreOp::GetToken(live)).unwrap(),
        StoreReply::Token(Some(_))
    ));
    assert_eq!(
        store.token(&StoreOp::GetToken(expired)).unwrap(),
        StoreReply::Token(None)
    );
}

/// Readers racing a revocation: once the revocation has returned, every later read sees
/// it, whatever the readers filled the token cache with meanwhile.
#[test]
fn a_revocation_is_seen_by_every_read_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DurableStore::open(dir.path().join("state.redb")).unwrap());
    let t = now_secs();
    for round in 0..20u64 {
        let h = hash(&format!("raced-{round}"));
        let put = StoreOp::PutTokens(vec![(h, record(TokenKind::Access, GrantId::random(), t))]);
        store.token(&put).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        store.token(&StoreOp::GetToken(h)).unwrap();
                    }
                })
            })
            .collect();
        let revoke = StoreOp::RevokeToken {
            hash: h,
            at: t + round,
        };
        assert_eq!(store.token(&revoke).unwrap(), StoreReply::Count(1));
        for _ in 0..100 {
            let StoreReply::Token(Some(got)) = store.token(&StoreOp::GetToken(h)).unwrap() else {
                panic!("token lost");
            };
            assert_eq!(got.revoked_at, Some(t + round), "round {round}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        let StoreReply::Token(Some(got)) = store.token(&StoreOp::GetToken(h)).unwrap() else {
            panic!("token lost");
        };
        assert_eq!(
            got.revoked_at,
            Some(t + round),
            "round {round}, after the readers"
        );
    }
}

#[test]
fn a_second_process_cannot_open_a_file_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let _first = DurableStore::open(&path).unwrap();
    let err = DurableStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("state database open"), "{err}");
}
