//! `<LoadBalancer>` over target servers: each algorithm, MaxFailures, fallback, retry,
//! disabled servers, re-admission by time and by health monitor. The engine is driven
//! here as a host would drive it, with back ends simulated by a function.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use preflow::*;

const PROXY: &str = r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection>
  <RouteRule name="r"><TargetEndpoint>lb</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#;

fn env() -> Environment {
    Environment::new()
        .target_server(TargetServer::new("a", "10.0.0.1", 8080))
        .target_server(TargetServer::new("b", "10.0.0.2", 8081))
        .target_server(TargetServer::new("c", "10.0.0.3", 8082))
        .target_server(TargetServer::new("off", "10.0.0.4", 8083).with_enabled(false))
        .target_server(
            TargetServer::new("secure", "secure.example", 443).with_tls(TlsSettings::verified()),
        )
}

fn target(lb: &str, extra: &str) -> String {
    format!(
        r#"<TargetEndpoint name="lb"><HTTPTargetConnection><LoadBalancer>{lb}</LoadBalancer>{extra}</HTTPTargetConnection></TargetEndpoint>"#
    )
}

fn try_gateway(lb: &str, extra: &str) -> Result<Gateway, BuildError> {
    let t = target(lb, extra);
    let loaded = load_files(
        [
            ("apiproxy/proxies/default.xml", PROXY),
            ("apiproxy/targets/lb.xml", t.as_str()),
        ],
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Gateway::builder()
        .bundles(loaded)
        .environment(env())
        .build()
}

fn gateway(lb: &str, extra: &str) -> Gateway {
    try_gateway(lb, extra).unwrap()
}

/// What a simulated back end does.
#[derive(Clone, Copy)]
enum Backend {
    Ok,
    Refused,
    Status(u16),
}

struct Outcome {
    /// Servers called, in order.
    servers: Vec<String>,
    /// URIs called.
    uris: Vec<String>,
    status: u16,
    body: String,
    vars: Vec<Option<String>>,
}

/// Runs `GET uri` at `at` seconds, each call answered by `backend(server)`.
fn call(g: &Gateway, at: u64, backend: impl Fn(&str) -> Backend) -> Outcome {
    let req = http::Request::get("/api/items?x=1")
        .body(Bytes::new())
        .unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + at);
    let mut ex = g.begin(req, Client::http("192.0.2.7:4000".parse().unwrap()), now);
    let mut servers = Vec::new();
    let mut uris = Vec::new();
    loop {
        match g.step(&mut ex) {
            Step::Respond(r) => {
                let vars = [
                    "loadbalancing.targetserver",
                    "loadbalancing.failedservers",
                    "target.host",
                    "target.port",
                    "target.url",
                ]
                .iter()
                .map(|v| g.variable(&ex, v))
                .collect();
                return Outcome {
                    servers,
                    uris,
                    status: r.status().as_u16(),
                    body: String::from_utf8_lossy(r.body()).into_owned(),
                    vars,
                };
            }
            Step::Forward(t) => {
                let server = t.server.as_deref().unwrap_or("").to_owned();
                uris.push(t.request.uri().to_string());
                let result = match backend(&server) {
                    Backend::Ok => Ok(http::Response::new(Bytes::from_static(b"ok"))),
                    Backend::Refused => Err(TargetError::Connect("refused".into())),
                    Backend::Status(s) => Ok(http::Response::builder()
                        .status(s)
                        .body(Bytes::new())
                        .unwrap()),
                };
                servers.push(server);
                ex.target_response(result);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn all_ok(_: &str) -> Backend {
    Backend::Ok
}

fn firsts(g: &Gateway, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| call(g, 0, all_ok).servers.remove(0))
        .collect()
}

#[test]
fn round_robin_is_the_default_and_sets_the_variables() {
    let g = gateway(
        r#"<Server name="a"/><Server name="b"/>"#,
        "<Path>/v1/</Path>",
    );
    assert_eq!(firsts(&g, 4), ["a", "b", "a", "b"]);
    let o = call(&g, 0, all_ok);
    assert_eq!(o.status, 200);
    assert_eq!(o.uris, ["http://10.0.0.1:8080/v1/items?x=1"]);
    assert_eq!(o.vars[0].as_deref(), Some("a"));
    assert_eq!(o.vars[1], None);
    assert_eq!(o.vars[2].as_deref(), Some("10.0.0.1"));
    assert_eq!(o.vars[3].as_deref(), Some("8080"));
    assert_eq!(
        o.vars[4].as_deref(),
        Some("http://10.0.0.1:8080/v1/items?x=1")
    );
}

#[test]
fn weighted_follows_the_weights() {
    let g = gateway(
        r#"<Algorithm>Weighted</Algorithm><Server name="a"><Weight>3</Weight></Server><Server name="b"/>"#,
        "",
    );
    let got = firsts(&g, 8);
    assert_eq!(got.iter().filter(|s| *s == "a").count(), 6, "{got:?}");
    assert_eq!(got.iter().filter(|s| *s == "b").count(), 2, "{got:?}");
}

#[test]
fn least_connections_prefers_the_idle_server() {
    let g = gateway(
        r#"<Algorithm>LeastConnections</Algorithm><Server name="a"/><Server name="b"/>"#,
        "",
    );
    // Two exchanges hold calls in flight; the third goes where fewer are.
    let begin = |g: &Gateway| {
        let req = http::Request::get("/api/x").body(Bytes::new()).unwrap();
        let mut ex = g.begin(
            req,
            Client::http("192.0.2.7:4000".parse().unwrap()),
            SystemTime::UNIX_EPOCH,
        );
        let Step::Forward(t) = g.step(&mut ex) else {
            panic!()
        };
        (ex, t.server.unwrap().to_string())
    };
    let (ex1, s1) = begin(&g);
    let (ex2, s2) = begin(&g);
    assert_ne!(s1, s2, "ties go round");
    // Release the call to `a` (dropping an exchange releases its call).
    let (held, released) = if s1 == "b" { (ex1, ex2) } else { (ex2, ex1) };
    drop(released);
    for _ in 0..4 {
        let (_ex, s) = begin(&g);
        assert_eq!(s, "a", "b still has a call in flight");
    }
    drop(held);
    let (_e1, x) = begin(&g);
    let (_e2, y) = begin(&g);
    assert_ne!(x, y, "with equal loads both are used");
}

#[test]
fn max_failures_takes_a_server_out_until_target_disable_secs() {
    let g = gateway(
        r#"<Server name="a"/><Server name="b"/><MaxFailures>2</MaxFailures><RetryEnabled>false</RetryEnabled><TargetDisableSecs>60</TargetDisableSecs>"#,
        "",
    );
    let a_down = |s: &str| {
        if s == "a" {
            Backend::Refused
        } else {
            Backend::Ok
        }
    };
    // Without retry, a call to `a` fails with 503.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&g, 0, a_down).status);
    }
    assert_eq!(statuses, [503, 200, 503, 200]);
    // `a` has failed twice in a row: out.
    for _ in 0..5 {
        let o = call(&g, 10, a_down);
        assert_eq!(
            (o.servers.as_slice(), o.status),
            (&["b".to_owned()][..], 200)
        );
    }
    // After TargetDisableSecs, `a` gets traffic again; it answers now, and stays in.
    let back: Vec<String> = (0..4)
        .map(|_| call(&g, 61, all_ok).servers.remove(0))
        .collect();
    assert!(back.contains(&"a".to_owned()), "{back:?}");
    let later: Vec<String> = (0..4)
        .map(|_| call(&g, 62, all_ok).servers.remove(0))
        .collect();
    assert_eq!(later.iter().filter(|s| *s == "a").count(), 2, "{later:?}");
}

#[test]
fn a_success_resets_the_consecutive_failures() {
    let g = gateway(
        r#"<Server name="a"/><MaxFailures>2</MaxFailures><RetryEnabled>false</RetryEnabled>"#,
        "",
    );
    assert_eq!(call(&g, 0, |_| Backend::Refused).status, 503);
    assert_eq!(call(&g, 0, all_ok).status, 200);
    assert_eq!(call(&g, 0, |_| Backend::Refused).status, 503);
    // One failure since the success: still in.
    assert_eq!(call(&g, 0, all_ok).servers, ["a"]);
    assert_eq!(call(&g, 0, |_| Backend::Refused).status, 503);
    assert_eq!(call(&g, 0, |_| Backend::Refused).status, 503);
    // Out, and no other server: NoActiveTargets without a call.
    let o = call(&g, 0, all_ok);
    assert_eq!((o.status, o.servers.len()), (503, 0));
}

#[test]
fn retry_goes_to_the_next_server_on_a_connect_failure() {
    let g = gateway(
        r#"<Server name="a"/><Server name="b"/><Server name="c"/>"#,
        "",
    );
    let o = call(&g, 0, |s| {
        if s == "a" {
            Backend::Refused
        } else {
            Backend::Ok
        }
    });
    assert_eq!(o.status, 200);
    assert_eq!(o.servers.len(), 2, "{:?}", o.servers);
    assert_eq!(o.servers[0], "a");
    assert_ne!(o.servers[1], "a");
    assert_eq!(o.vars[0].as_deref(), Some(o.servers[1].as_str()));
    assert_eq!(o.vars[1].as_deref(), Some("a"));
    // Every server refuses: each is tried once, then 503.
    let o = call(&g, 0, |_| Backend::Refused);
    assert_eq!(o.status, 503);
    let mut tried = o.servers.clone();
    tried.sort();
    assert_eq!(tried, ["a", "b", "c"]);
}

#[test]
fn unhealthy_responses_count_as_failures() {
    let g = gateway(
        r#"<Server name="a"/><Server name="b"/><MaxFailures>1</MaxFailures>
           <ServerUnhealthyResponse><ResponseCode>502</ResponseCode></ServerUnhealthyResponse>"#,
        "",
    );
    let a_bad = |s: &str| {
        if s == "a" {
            Backend::Status(502)
        } else {
            Backend::Ok
        }
    };
    let o = call(&g, 0, a_bad);
    assert_eq!(
        (o.servers.as_slice(), o.status),
        (&["a".to_owned(), "b".to_owned()][..], 200)
    );
    // `a` is out: everything goes to `b`.
    assert_eq!(firsts(&g, 3), ["b", "b", "b"]);
    // A plain 500 is the back end's answer, not a failure of the server.
    let g = gateway(r#"<Server name="a"/><MaxFailures>1</MaxFailures>"#, "");
    assert_eq!(call(&g, 0, |_| Backend::Status(500)).status, 500);
    assert_eq!(call(&g, 0, all_ok).status, 200);
}

#[test]
fn fallback_servers_serve_only_when_the_others_are_out() {
    let g = gateway(
        r#"<Server name="a"/><Server name="b"/><Server name="c"><IsFallback>true</IsFallback></Server>
           <MaxFailures>1</MaxFailures><RetryEnabled>false</RetryEnabled>"#,
        "",
    );
    let got = firsts(&g, 6);
    assert!(!got.contains(&"c".to_owned()), "{got:?}");
    // Both regular servers fail once: out; the fallback takes over.
    call(&g, 0, |_| Backend::Refused);
    call(&g, 0, |_| Backend::Refused);
    let o = call(&g, 1, all_ok);
    assert_eq!(o.servers, ["c"]);
}

#[test]
fn disabled_servers_take_no_traffic() {
    let g = gateway(r#"<Server name="a"/><Server name="off"/>"#, "");
    assert_eq!(firsts(&g, 4), ["a", "a", "a", "a"]);
    let g = gateway(r#"<Server name="off"/>"#, "");
    let o = call(&g, 0, all_ok);
    assert_eq!((o.status, o.servers.len()), (503, 0));
}

#[test]
fn unknown_servers_make_the_target_unusable_and_unknown_algorithms_fail_the_build() {
    // What the environment lacks: this target cannot be called (the rest of the
    // gateway serves), and `check` and `serve` warn about it.
    let g = try_gateway(r#"<Server name="nowhere"/>"#, "").unwrap();
    let o = call(&g, 0, all_ok);
    assert_eq!((o.status, o.servers.len()), (500, 0));
    assert!(
        o.body.contains("not a target server of the environment") && o.body.contains("nowhere"),
        "{}",
        o.body
    );
    let e = try_gateway(r#"<Algorithm>Random</Algorithm><Server name="a"/>"#, "").unwrap_err();
    assert!(
        e.to_string().contains("unknown `<Algorithm>` `Random`"),
        "{e}"
    );
}

#[test]
fn tls_comes_from_the_target_server_or_the_endpoint() {
    let g = gateway(r#"<Server name="secure"/>"#, "");
    let req = http::Request::get("/api").body(Bytes::new()).unwrap();
    let mut ex = g.begin(
        req,
        Client::http("192.0.2.7:4000".parse().unwrap()),
        SystemTime::UNIX_EPOCH,
    );
    let Step::Forward(t) = g.step(&mut ex) else {
        panic!()
    };
    assert_eq!(t.request.uri().to_string(), "https://secure.example:443/");
    assert!(t.tls.is_some());
    // `<SSLInfo>` on the endpoint makes a plain server's calls TLS, with its settings.
    let g = gateway(
        r#"<Server name="a"/>"#,
        "<SSLInfo><Enabled>true</Enabled><TrustStore>ref://ts</TrustStore></SSLInfo>",
    );
    let req = http::Request::get("/api").body(Bytes::new()).unwrap();
    let mut ex = g.begin(
        req,
        Client::http("192.0.2.7:4000".parse().unwrap()),
        SystemTime::UNIX_EPOCH,
    );
    let Step::Forward(t) = g.step(&mut ex) else {
        panic!()
    };
    assert!(
        t.request
            .uri()
            .to_string()
            .starts_with("https://10.0.0.1:8080")
    );
    assert_eq!(t.tls.unwrap().truststore.as_deref(), Some("ts"));
}

const MONITOR: &str = r#"<HealthMonitor><IsEnabled>true</IsEnabled><IntervalInSec>5</IntervalInSec>
  <HTTPMonitor><Request><ConnectTimeoutInSec>2</ConnectTimeoutInSec><SocketReadTimeoutInSec>3</SocketReadTimeoutInSec>
    <Port>9000</Port><Verb>GET</Verb><Path>/healthz</Path><Header name="X-Check">1</Header></Request>
    <SuccessResponse><ResponseCode>200</ResponseCode><Header name="X-Up">yes</Header></SuccessResponse>
  </HTTPMonitor></HealthMonitor>"#;

#[test]
fn health_checks_list_each_enabled_server() {
    let g = gateway(
        r#"<Server name="a"/><Server name="b"/><Server name="off"/><MaxFailures>1</MaxFailures>"#,
        MONITOR,
    );
    let checks = g.health_checks();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].server, "a");
    assert_eq!(checks[0].interval, Duration::from_secs(5));
    let CheckKind::Http(check) = &checks[1].kind else {
        panic!("{:?}", checks[1].kind)
    };
    let HttpCheck {
        method,
        uri,
        headers,
        connect_timeout,
        read_timeout,
        ..
    } = &**check;
    assert_eq!(method, http::Method::GET);
    assert_eq!(uri.to_string(), "http://10.0.0.2:9000/healthz");
    assert_eq!(headers["x-check"], "1");
    assert_eq!(
        (*connect_timeout, *read_timeout),
        (Duration::from_secs(2), Duration::from_secs(3))
    );
    let mut up = http::HeaderMap::new();
    up.insert("x-up", "yes".parse().unwrap());
    assert!(checks[0].kind.accepts(http::StatusCode::OK, &up));
    assert!(
        !checks[0]
            .kind
            .accepts(http::StatusCode::OK, &http::HeaderMap::new())
    );
    assert!(!checks[0].kind.accepts(http::StatusCode::NO_CONTENT, &up));

    let tcp = r#"<HealthMonitor><IsEnabled>true</IsEnabled><IntervalInSec>7</IntervalInSec>
        <TCPMonitor><ConnectTimeoutInSec>4</ConnectTimeoutInSec><Port>81</Port></TCPMonitor></HealthMonitor>"#;
    let g = gateway(r#"<Server name="a"/>"#, tcp);
    let checks = g.health_checks();
    assert_eq!(
        checks[0].kind,
        CheckKind::Tcp {
            host: "10.0.0.1".into(),
            port: 81,
            connect_timeout: Duration::from_secs(4)
        }
    );
    // A disabled monitor checks nothing.
    let off = tcp.replace("<IsEnabled>true", "<IsEnabled>false");
    assert!(
        gateway(r#"<Server name="a"/>"#, &off)
            .health_checks()
            .is_empty()
    );
}

#[test]
fn with_a_monitor_only_the_monitor_brings_a_server_back() {
    let g = gateway(
        r#"<Server name="a"/><Server name="b"/><MaxFailures>1</MaxFailures><TargetDisableSecs>1</TargetDisableSecs>"#,
        MONITOR,
    );
    // `a` fails once (the request is retried on `b`): out.
    let o = call(&g, 0, |s| {
        if s == "a" {
            Backend::Refused
        } else {
            Backend::Ok
        }
    });
    assert_eq!((o.servers.len(), o.status), (2, 200));
    // Long after TargetDisableSecs, still out: the monitor decides.
    assert_eq!(firsts_at(&g, 1000, 4), ["b", "b", "b", "b"]);
    assert!(!g.report_health("nowhere", true));
    assert!(g.report_health("a", true));
    let back = firsts_at(&g, 1000, 4);
    assert_eq!(back.iter().filter(|s| *s == "a").count(), 2, "{back:?}");
    // A failing probe takes a server out at once.
    assert!(g.report_health("b", false));
    assert_eq!(firsts_at(&g, 1000, 3), ["a", "a", "a"]);
}

fn firsts_at(g: &Gateway, at: u64, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| call(g, at, all_ok).servers.remove(0))
        .collect()
}

#[test]
fn a_policy_set_url_bypasses_the_balancer() {
    // A route rule URL wins over the endpoint: no server is chosen.
    let proxy = r#"<ProxyEndpoint name="default">
      <HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection>
      <RouteRule name="r"><URL>http://elsewhere.example/x</URL></RouteRule>
    </ProxyEndpoint>"#;
    let t = target(r#"<Server name="a"/>"#, "");
    let loaded = load_files(
        [
            ("apiproxy/proxies/default.xml", proxy),
            ("apiproxy/targets/lb.xml", t.as_str()),
        ],
        &LoadOptions::default(),
    );
    let g = Gateway::builder()
        .bundles(loaded)
        .environment(env())
        .build()
        .unwrap();
    let o = call(&g, 0, all_ok);
    assert_eq!(o.servers, [""]);
    assert!(
        o.uris[0].starts_with("http://elsewhere.example/x"),
        "{:?}",
        o.uris
    );
}
