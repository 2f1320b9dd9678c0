//! Operating `preflow serve`: Prometheus metrics checked against the requests sent,
//! health and readiness (Redis stopped), JSON logs parsed line by line, request ids.

// Test helpers outside #[test] functions: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{Gateway, demo_token, forwarding_bundle, pace, raw_get, seed, token_for};
use preflow_redis::server::RedisServer;
use prometheus_parse::{Scrape, Value};

fn scrape(gw: &Gateway) -> (Scrape, String) {
    let r = raw_get(gw.metrics.expect("--metrics listener"), "/metrics", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{}",
        r.head
    );
    let parsed = Scrape::parse(r.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    (parsed, r.body)
}

/// The sum of the samples of `metric` whose labels include `labels`.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{metric} is not a scalar"),
        })
        .sum()
}

fn hello(gw: &Gateway, token: Option<&str>) -> u16 {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    raw_get(gw.addr, "/v1/test/hello", &auth).status
}

#[test]
fn metrics_count_the_requests_sent() {
    let gw = Gateway::start(&[seed().to_str().unwrap(), "--metrics", "127.0.0.1:0"]);
    let token = demo_token(&gw);
    assert_eq!(
        token_for(&gw, "demo-client", "wrong-secret").unwrap_err().0,
        401
    );
    pace();
    assert_eq!(hello(&gw, None), 401);
    let mut ok = 0;
    for _ in 0..3 {
        pace();
        assert_eq!(hello(&gw, Some(&token)), 200);
        ok += 1;
    }
    pace();
    // A burst meets the SpikeArrest (one request per 100 ms).
    let burst: Vec<u16> = (0..8).map(|_| hello(&gw, Some(&token))).collect();
    let limited = burst.iter().filter(|s| **s == 429).count() as f64;
    ok += burst.iter().filter(|s| **s == 200).count();
    assert!(limited >= 1.0, "{burst:?}");
    assert_eq!(raw_get(gw.addr, "/nowhere", "").status, 404);
    let ok = ok as f64;
    let hello_total = 1.0 + 3.0 + 8.0;

    let (s, text) = scrape(&gw);
    let requests = "preflow_requests_total";
    let hello_api = ("proxy", "hello-api");
    assert_eq!(
        value(
            &s,
            requests,
            &[hello_api, ("status_class", "2xx"), ("source", "target")]
        ),
        ok,
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            requests,
            &[hello_api, ("status_class", "4xx"), ("source", "policy")]
        ),
        1.0 + limited,
        "{text}"
    );
    assert_eq!(value(&s, requests, &[hello_api]), hello_total, "{text}");
    assert_eq!(
        value(
            &s,
            requests,
            &[
                ("proxy", ""),
                ("source", "gateway"),
                ("status_class", "4xx")
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "preflow_rate_limit_rejections_total",
            &[hello_api, ("policy", "SpikeArrest")]
        ),
        limited,
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "preflow_policy_faults_total",
            &[
                hello_api,
                ("policy", "SpikeArrest"),
                ("fault", "SpikeArrestViolation")
            ]
        ),
        limited,
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "preflow_policy_faults_total",
            &[hello_api, ("policy", "VerifyAccessToken")]
        ),
        1.0,
        "{text}"
    );
    let oauth = ("proxy", "oauth");
    assert_eq!(
        value(
            &s,
            "preflow_oauth_tokens_total",
            &[oauth, ("outcome", "issued")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "preflow_oauth_tokens_total",
            &[oauth, ("outcome", "refused")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&s, "preflow_request_duration_seconds_count", &[hello_api]),
        hello_total,
        "{text}"
    );
    // Only the requests that passed the policies called the target.
    assert_eq!(
        value(&s, "preflow_target_duration_seconds_count", &[hello_api]),
        ok,
        "{text}"
    );
    // The default file store kept the tokens: token operations succeeded, none failed.
    assert!(
        value(
            &s,
            "preflow_store_operations_total",
            &[("kind", "token"), ("outcome", "ok")]
        ) >= 2.0,
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "preflow_store_operations_total",
            &[("outcome", "unavailable")]
        ),
        0.0,
        "{text}"
    );
    // No secret or token in the scrape, and no app label unless asked for.
    assert!(!text.contains(&token) && !text.contains("demo-secret"));
    assert!(
        !text.contains("app=") && !text.contains("demo-app"),
        "{text}"
    );
}

#[test]
fn app_labels_are_opt_in() {
    let gw = Gateway::start(&[
        seed().to_str().unwrap(),
        "--metrics",
        "127.0.0.1:0",
        "--metrics-app-labels",
    ]);
    let token = demo_token(&gw);
    pace();
    assert_eq!(hello(&gw, Some(&token)), 200);
    pace();
    assert_eq!(hello(&gw, Some(&token)), 200);
    pace();
    assert_eq!(hello(&gw, None), 401);
    let (s, text) = scrape(&gw);
    let labels = [
        ("proxy", "hello-api"),
        ("app", "demo-app"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        value(&s, "preflow_app_requests_total", &labels),
        2.0,
        "{text}"
    );
    // A request without a verified credential has no app.
    assert_eq!(
        value(&s, "preflow_app_requests_total", &[("status_class", "4xx")]),
        0.0,
        "{text}"
    );
}

#[test]
fn health_and_readiness_on_the_admin_listener_without_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.toml");
    std::fs::copy(seed().join("apps.toml"), &apps).unwrap();
    let gw = Gateway::start_with_env(
        &[
            seed().to_str().unwrap(),
            "--apps",
            apps.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
        ],
        &[("PREFLOW_ADMIN_TOKEN", "an-admin-token-of-some-length")],
    );
    let admin = gw.admin.unwrap();
    assert_eq!(raw_get(gw.addr, "/nowhere", "").status, 404);
    let r = raw_get(admin, "/healthz", "");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = raw_get(admin, "/readyz", "");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    let r = raw_get(admin, "/metrics", "");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("# TYPE preflow_requests counter"),
        "{}",
        r.body
    );
    // The admin API itself still needs the token.
    assert_eq!(raw_get(admin, "/admin/apps", "").status, 401);
    let r = common::raw(
        admin,
        &format!(
            "POST /healthz HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
}

#[test]
fn readyz_fails_while_redis_is_stopped() {
    let mut redis = RedisServer::start().unwrap_or_else(|e| {
        panic!("this test needs redis-server (apt-get install redis-server): {e}")
    });
    let url = redis.url();
    let gw = Gateway::start(&[
        seed().to_str().unwrap(),
        "--redis",
        &url,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let m = gw.metrics.unwrap();
    // Ready once the Redis connection is up, which under a loaded test run can lag the
    // listener: wait for it, within a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut r = raw_get(m, "/readyz", "");
    while r.status != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        r = raw_get(m, "/readyz", "");
    }
    assert_eq!(r.status, 200, "never ready with Redis up: {}", r.body);
    assert_eq!(raw_get(m, "/healthz", "").status, 200);
    redis.stop();
    let r = raw_get(m, "/readyz", "");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("state store"), "{}", r.body);
    // Alive all the same.
    assert_eq!(raw_get(m, "/healthz", "").status, 200);
    // The metrics listener serves nothing else.
    assert_eq!(raw_get(m, "/admin/apps", "").status, 404);
}

#[test]
fn json_logs_one_object_per_request_with_its_request_id() {
    let gw = Gateway::start(&[seed().to_str().unwrap(), "--log-format", "json"]);
    let token = demo_token(&gw);
    pace();
    let r = raw_get(
        gw.addr,
        "/v1/test/hello?access_token=in-the-query",
        &format!("Authorization: Bearer {token}\r\nX-Request-ID: my-request-1\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-request-id").as_deref(), Some("my-request-1"));
    pace();
    let r = raw_get(gw.addr, "/v1/test/hello", "");
    assert_eq!(r.status, 401);
    let generated = r.header("x-request-id").unwrap();
    assert_eq!(generated.len(), 32, "{generated}");
    std::thread::sleep(Duration::from_millis(200));

    let log = gw.log();
    let mut access = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] == "preflow::access" {
            access.push(v);
        }
    }
    let find = |id: &str| {
        access
            .iter()
            .find(|v| v["request_id"] == id && v["proxy"] == "hello-api")
            .unwrap_or_else(|| panic!("no access line for {id}:\n{log}"))
    };
    let ok = find("my-request-1");
    // The id went on to the target: the back end's own line (the tenant's `iflow`
    // proxy on this gateway) carries it too.
    assert!(
        access
            .iter()
            .any(|v| v["request_id"] == "my-request-1" && v["proxy"] == "iflow"),
        "{log}"
    );
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["proxy"], "hello-api");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/v1/test/hello");
    assert!(ok["ms"].as_f64().unwrap() > 0.0, "{ok}");
    assert!(ok["target_ms"].as_f64().unwrap() > 0.0, "{ok}");
    assert!(ok.get("fault").is_none(), "{ok}");
    let refused = find(&generated);
    assert_eq!(refused["status"], 401);
    assert!(refused["fault"].as_str().is_some(), "{refused}");
    assert!(refused.get("target_ms").is_none(), "{refused}");
    // The token request and the back-end calls are logged too; no token or secret is.
    assert!(access.len() >= 3, "{log}");
    for secret in [
        token.as_str(),
        "demo-secret",
        "in-the-query",
        "Authorization",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn request_id_and_traceparent_reach_the_target() {
    use std::io::{Read as _, Write as _};
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let seen = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in up.incoming() {
                let mut s = conn.unwrap();
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).unwrap_or(0);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_lowercase());
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    forwarding_bundle(
        dir.path(),
        "up",
        "/up",
        &format!("<URL>http://{up_addr}/</URL>"),
    );
    let gw = Gateway::start(&[dir.path().to_str().unwrap()]);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = raw_get(
        gw.addr,
        "/up/a",
        &format!("X-Request-ID: abc-42\r\ntraceparent: {parent}\r\n"),
    );
    assert_eq!(r.status, 200);
    let r = raw_get(gw.addr, "/up/b", "");
    assert_eq!(r.status, 200);
    let generated = r.header("x-request-id").unwrap().to_lowercase();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].contains("x-request-id: abc-42\r\n"), "{}", seen[0]);
    assert!(
        seen[0].contains(&format!("traceparent: {parent}\r\n")),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].contains(&format!("x-request-id: {generated}\r\n")),
        "{}",
        seen[1]
    );
    assert!(seen[1].contains("traceparent: 00-"), "{}", seen[1]);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn errors_that_teach() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&seed().join("oauth"), &dir.path().join("oauth"));
    let scoped = dir.path().join("scoped/apiproxy");
    std::fs::create_dir_all(scoped.join("proxies")).unwrap();
    std::fs::create_dir_all(scoped.join("policies")).unwrap();
    std::fs::write(scoped.join("scoped.xml"), r#"<APIProxy name="scoped"/>"#).unwrap();
    std::fs::write(
        scoped.join("policies/Verify.xml"),
        r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation><Scope>Orders.Write</Scope></OAuthV2>"#,
    )
    .unwrap();
    std::fs::write(
        scoped.join("proxies/default.xml"),
        r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>Verify</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/scoped</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("apps.toml"),
        r#"[[developer]]
email = "demo@example.com"

[[product]]
name = "Orders"
proxies = ["oauth", "scoped"]
resources = ["/**"]
scopes = ["Orders.Read"]

[[app]]
id = "demo-app"
name = "demo-app"
developer = "demo@example.com"

[[app.credential]]
client_id = "demo-client"
client_secret = "demo-secret"
products = ["Orders"]
"#,
    )
    .unwrap();
    let gw = Gateway::start(&[dir.path().to_str().unwrap()]);

    // RFC 6750 §3.1: no credentials, no error code; a realm that names the proxy.
    let r = raw_get(gw.addr, "/scoped/x", "");
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert_eq!(challenge, "Bearer realm=\"scoped\"");

    // A token in the query string is named as such.
    let r = raw_get(gw.addr, "/scoped/x?access_token=abc", "");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("sent in the query string"), "{}", r.body);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    assert!(!challenge.contains("abc"), "{challenge}");

    // grant_type in the query string: the error says where it was seen.
    let basic = "Authorization: Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=\r\n";
    let r = common::raw(
        gw.addr,
        &format!(
            "POST /oauth/OAuthToken?grant_type=client_credentials HTTP/1.1\r\nHost: x\r\n{basic}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("grant_type was sent in the query string"),
        "{}",
        r.body
    );

    // insufficient_scope names the scope required.
    let token = demo_token(&gw);
    let r = raw_get(
        gw.addr,
        "/scoped/x",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Orders.Write"), "{}", r.body);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"Orders.Write\""),
        "{challenge}"
    );
}

#[test]
fn rate_limited_answers_carry_retry_after_unless_turned_off() {
    for (extra, expected) in [(None, Some("1")), (Some("--no-retry-after"), None)] {
        let mut args = vec![seed().to_str().unwrap().to_owned()];
        args.extend(extra.map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let gw = Gateway::start(&args);
        let token = demo_token(&gw);
        pace();
        let auth = format!("Authorization: Bearer {token}\r\n");
        let limited = (0..10)
            .map(|_| raw_get(gw.addr, "/v1/test/hello", &auth))
            .find(|r| r.status == 429)
            .expect("a burst meets the SpikeArrest");
        assert_eq!(
            limited.header("retry-after").as_deref(),
            expected,
            "{extra:?}"
        );
    }
}
