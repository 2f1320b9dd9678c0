//! Two (or three) `preflow serve --redis` processes: registry changes made through one
//! instance's admin API are in force on the others before the admin API answers; stale
//! apps files never win; what Redis loses is republished.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Gateway, raw, raw_get, seed, token_for};
use preflow_redis::server::RedisServer;

const ADMIN: &str = "test-admin-token-0123456789";

fn redis() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| {
        panic!("these tests need redis-server (apt-get install redis-server): {e}")
    })
}

/// An instance with its own copy of the seed's apps file and an admin listener.
struct Instance {
    gw: Gateway,
    _apps: tempfile::TempDir,
}

fn instance(redis: &RedisServer) -> Instance {
    instance_at(&redis.url(), &[])
}

fn instance_at(url: &str, extra: &[&str]) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let apps: PathBuf = dir.path().join("apps.toml");
    std::fs::copy(seed().join("apps.toml"), &apps).unwrap();
    let seed = seed();
    let mut args = vec![
        seed.to_str().unwrap(),
        "--redis",
        url,
        "--redis-timeout-ms",
        "500",
        "--apps",
        apps.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let gw = Gateway::start_with_env(&args, &[("PREFLOW_ADMIN_TOKEN", ADMIN)]);
    Instance { gw, _apps: dir }
}

fn admin_post(gw: &Gateway, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = raw(
        gw.admin.unwrap(),
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    (r.status, serde_json::from_str(&r.body).unwrap_or_default())
}

fn hello(gw: &Gateway, token: &str) -> u16 {
    raw_get(
        gw.addr,
        "/v1/test/hello",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .status
}

struct App {
    app_id: String,
    client_id: String,
    secret: String,
}

fn create_app(gw: &Gateway, name: &str) -> App {
    let body =
        format!(r#"{{"name":"{name}","developer":"new@example.com","products":["IFlowHello"]}}"#);
    let (status, v) = admin_post(gw, "/admin/apps", &body);
    assert_eq!(status, 201, "{v}");
    App {
        app_id: v["app_id"].as_str().unwrap().to_owned(),
        client_id: v["client_id"].as_str().unwrap().to_owned(),
        secret: v["client_secret"].as_str().unwrap().to_owned(),
    }
}

#[test]
fn a_revoked_app_is_refused_by_the_other_instance_at_once_and_never_issued_a_token_after() {
    let redis = redis();
    let a = instance(&redis);
    let b = instance(&redis);

    // A new app made on A is usable on B as soon as A answered: first try.
    let app = create_app(&a.gw, "portal-app");
    let token = token_for(&b.gw, &app.client_id, &app.secret)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", b.gw.log()));
    assert_eq!(hello(&b.gw, &token), 200);

    // B issues tokens to the app without pause while A revokes it.
    let stop = AtomicBool::new(false);
    let (revoke_sent, acked, refused, issued) = std::thread::scope(|s| {
        let hammer = s.spawn(|| {
            let mut issued = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                if token_for(&b.gw, &app.client_id, &app.secret).is_ok() {
                    issued.push(sent);
                }
            }
            issued
        });
        std::thread::sleep(Duration::from_millis(200));
        let revoke_sent = Instant::now();
        let (status, v) = admin_post(&a.gw, &format!("/admin/apps/{}/revoke", app.app_id), "");
        let acked = Instant::now();
        assert_eq!(status, 200, "{v}");
        // The token B issued before is refused by B right after A answered.
        let refused = (hello(&b.gw, &token), Instant::now());
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (revoke_sent, acked, refused, hammer.join().unwrap())
    });
    assert!(
        issued.iter().any(|t| *t < revoke_sent),
        "B issued tokens before the revoke"
    );
    let late: Vec<_> = issued.iter().filter(|t| **t >= acked).collect();
    assert!(
        late.is_empty(),
        "B issued {} tokens after the revoke was acknowledged",
        late.len()
    );

    let (status, refused_at) = refused;
    assert_eq!(status, 401, "{}", b.gw.log());
    let since_sent = refused_at - revoke_sent;
    assert!(
        since_sent < Duration::from_millis(100),
        "refused {since_sent:?} after the revoke was sent"
    );
    eprintln!(
        "revoke acknowledged after {:?}; refused on the other instance {:?} after it was sent",
        acked - revoke_sent,
        since_sent
    );

    // A rotation as well: the old secret stops working on B at once.
    let other = create_app(&a.gw, "rotated-app");
    let (status, v) = admin_post(
        &a.gw,
        &format!("/admin/credentials/{}/rotate", other.client_id),
        "",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        token_for(&b.gw, &other.client_id, &other.secret)
            .unwrap_err()
            .0,
        401
    );
    let new_secret = v["client_secret"].as_str().unwrap();
    assert!(token_for(&b.gw, &other.client_id, new_secret).is_ok());
}

#[test]
fn a_stale_apps_file_never_overwrites_a_newer_record() {
    let redis = redis();
    let a = instance(&redis);
    // The seed's demo app, revoked through A.
    let (status, v) = admin_post(&a.gw, "/admin/apps/demo-app/revoke", "");
    assert_eq!(status, 200, "{v}");
    // C starts later with the seed's apps file, where demo-app is still approved.
    let c = instance(&redis);
    assert_eq!(
        token_for(&c.gw, "demo-client", "demo-secret")
            .unwrap_err()
            .0,
        401,
        "{}",
        c.gw.log()
    );
    // And A's revocation stays in force after C's start.
    assert_eq!(
        token_for(&a.gw, "demo-client", "demo-secret")
            .unwrap_err()
            .0,
        401
    );
}

#[test]
fn an_instance_republishes_what_redis_lost() {
    let mut redis = redis();
    let a = instance(&redis);
    let app = create_app(&a.gw, "portal-app");
    // The instance republishes at start too: wait for one more than now.
    let republished = |log: &str| log.matches("registry records republished to redis").count();
    let before = republished(&a.gw.log());
    // Redis restarts empty (no append-only file).
    redis.stop();
    for entry in std::fs::read_dir(redis.dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    redis.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while republished(&a.gw.log()) <= before {
        assert!(Instant::now() < deadline, "not republished: {}", a.gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // An instance started now (its apps file has no such app) knows it from Redis.
    let c = instance(&redis);
    let token = token_for(&c.gw, &app.client_id, &app.secret)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", c.gw.log()));
    assert_eq!(hello(&c.gw, &token), 200);
}

#[test]
fn two_instances_on_a_redis_cluster_share_tokens_and_revocations() {
    let cluster = preflow_redis::server::RedisCluster::start(3, 0)
        .unwrap_or_else(|e| panic!("this test needs redis-server and redis-cli: {e}"));
    let urls = cluster.urls().join(",");
    let a = instance_at(&urls, &["--redis-cluster"]);
    let b = instance_at(&urls, &["--redis-cluster"]);
    let app = create_app(&a.gw, "cluster-app");
    let token = token_for(&b.gw, &app.client_id, &app.secret)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", b.gw.log()));
    assert_eq!(hello(&a.gw, &token), 200, "{}", a.gw.log());
    let sent = Instant::now();
    let (status, v) = admin_post(&a.gw, &format!("/admin/apps/{}/revoke", app.app_id), "");
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(hello(&b.gw, &token), 401, "{}", b.gw.log());
    assert!(token_for(&b.gw, &app.client_id, &app.secret).is_err());
    eprintln!(
        "cluster: revoke answered and refused on B within {:?}",
        sent.elapsed()
    );
}
