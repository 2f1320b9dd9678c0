//! `preflow serve --redis URL`: two gateway processes sharing tokens, apps and a quota
//! through a private redis-server; restarts of a gateway and of Redis.

// Test helpers outside #[test] functions: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Gateway, HELLO, demo_token, pace, raw_get, seed, token_for};
use preflow_redis::server::RedisServer;

fn redis() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| {
        panic!("these tests need redis-server (apt-get install redis-server): {e}")
    })
}

/// A proxy at /metered with a distributed, synchronous quota of 100 per hour and no target.
fn metered() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (
            "metered/apiproxy/metered.xml",
            r#"<APIProxy name="metered"/>"#,
        ),
        (
            "metered/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <PreFlow name="PreFlow"><Request><Step><Name>Quota</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/metered</BasePath></HTTPProxyConnection>
  <RouteRule name="noroute"/>
</ProxyEndpoint>"#,
        ),
        (
            "metered/apiproxy/policies/Quota.xml",
            r#"<Quota name="Quota">
  <Allow count="100"/><Interval>1</Interval><TimeUnit>hour</TimeUnit>
  <Distributed>true</Distributed><Synchronous>true</Synchronous>
</Quota>"#,
        ),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn gateway(redis: &RedisServer, metered: &Path, extra: &[&str]) -> Gateway {
    let url = redis.url();
    let seed = seed();
    let mut args = vec![
        seed.to_str().unwrap(),
        metered.to_str().unwrap(),
        "--redis",
        url.as_str(),
        "--redis-timeout-ms",
        "500",
    ];
    args.extend_from_slice(extra);
    Gateway::start(&args)
}

fn hello(gw: &Gateway, token: &str) -> (u16, String) {
    let r = raw_get(
        gw.addr,
        "/v1/test/hello",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    (r.status, r.body)
}

fn metered_status(gw: &Gateway) -> u16 {
    raw_get(gw.addr, "/metered/x", "").status
}

#[test]
fn two_instances_share_tokens_and_an_exact_quota() {
    let redis = redis();
    let dir = metered();
    let a = gateway(&redis, dir.path(), &[]);
    let b = gateway(&redis, dir.path(), &[]);

    // A token issued by one instance is accepted by the other at once.
    let token = demo_token(&a);
    let (status, body) = hello(&b, &token);
    assert_eq!((status, body.as_str()), (200, HELLO), "{}", b.log());
    pace();
    let token = demo_token(&b);
    assert_eq!(hello(&a, &token).0, 200);

    // 150 requests over both instances, from 6 threads: exactly 100 pass.
    let (a, b) = (&a, &b);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|w| {
                s.spawn(move || {
                    let gw = if w % 2 == 0 { a } else { b };
                    (0..25).map(|_| metered_status(gw)).collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (100, 50), "{statuses:?}");
}

#[test]
fn a_restarted_gateway_accepts_tokens_issued_before() {
    let redis = redis();
    let dir = metered();
    let first = gateway(&redis, dir.path(), &[]);
    let token = demo_token(&first);
    assert_eq!(first.terminate().code(), Some(0));

    let again = gateway(&redis, dir.path(), &[]);
    assert_eq!(hello(&again, &token).0, 200, "{}", again.log());
    drop(again);

    // An instance started without any apps file gets the apps from Redis.
    let url = redis.url();
    let seed = seed();
    let bundles: Vec<String> = ["hello-api", "oauth", "tenant-oauth", "iflow"]
        .iter()
        .map(|b| seed.join(b).to_str().unwrap().to_owned())
        .collect();
    let env_file = seed.join("environment.toml");
    let mut args: Vec<&str> = bundles.iter().map(String::as_str).collect();
    args.extend(["--redis", url.as_str(), "--env", env_file.to_str().unwrap()]);
    args.extend([
        "--vhost",
        "secure=127.0.0.1:0",
        "--vhost",
        "tenant=127.0.0.1:0",
    ]);
    let bare = Gateway::start(&args);
    pace();
    assert_eq!(hello(&bare, &token).0, 200, "{}", bare.log());
    pace();
    let fresh = token_for(&bare, "demo-client", "demo-secret").expect("apps from redis");
    pace();
    assert_eq!(hello(&bare, &fresh).0, 200);
}

#[test]
fn redis_stopped_mid_run_then_restarted() {
    let mut redis = redis();
    let dir = metered();
    let closed = gateway(&redis, dir.path(), &["--redis-fail-closed"]);
    let open = gateway(&redis, dir.path(), &[]);
    let token = demo_token(&open);
    assert_eq!(metered_status(&closed), 200);
    assert_eq!(metered_status(&open), 200);

    redis.stop();
    let started = Instant::now();
    let denied = metered_status(&closed);
    let admitted = metered_status(&open);
    let took = started.elapsed();
    eprintln!("two requests with redis stopped: {took:?}");
    assert_eq!(denied, 429, "fail-closed denies");
    assert_eq!(admitted, 200, "fail-open admits");
    // Each within the 500 ms Redis timeout (plus scheduling on a loaded machine).
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Tokens cannot be checked: refused, not hanging.
    pace();
    let started = Instant::now();
    let (status, _) = hello(&open, &token);
    assert_ne!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(3));

    // Restarted from its append-only file: the token works again.
    redis.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        pace();
        let (status, body) = hello(&open, &token);
        if status == 200 {
            assert_eq!(body, HELLO);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {status} {}",
            open.log()
        );
    }
}

#[test]
fn an_app_stored_by_another_instance_reaches_a_running_gateway() {
    let redis = redis();
    let dir = metered();
    let url = redis.url();
    let seed_dir = seed();
    let gw = Gateway::start_with_env(
        &[
            seed_dir.to_str().unwrap(),
            dir.path().to_str().unwrap(),
            "--redis",
            url.as_str(),
            "--redis-timeout-ms",
            "1000",
        ],
        &[("PREFLOW_LOG", "info,preflow_redis::sync=debug")],
    );
    // Another instance (here: the library, as a gateway's admin API would) adds an app.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issued = rt.block_on(async {
        let config = preflow_redis::RedisConfig::default().with_timeout(Duration::from_secs(2));
        let store = preflow_redis::RedisStore::connect(&redis.url(), config)
            .await
            .unwrap();
        let registry = preflow_redis::RedisRegistry::load(store).await.unwrap();
        let app = registry
            .add_app("demo@example.com", preflow_oauth::App::new("late-app"))
            .await
            .unwrap();
        registry
            .add_credential(
                &app,
                preflow_oauth::NewCredential {
                    products: vec!["IFlowHello".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    });
    // Pushed, not polled: the credential (the last record written) arrives at once.
    let deadline = Instant::now() + Duration::from_millis(500);
    while !gw
        .log()
        .contains("registry record applied table=\"credentials\"")
    {
        assert!(Instant::now() < deadline, "never pushed: {}", gw.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let token = token_for(&gw, &issued.client_id, &issued.client_secret)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", gw.log()));
    assert_eq!(hello(&gw, &token).0, 200);
}
