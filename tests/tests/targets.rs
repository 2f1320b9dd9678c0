//! How targets are reached: API providers (`provider://`, SAP `<provider_id>`) with Basic
//! or OAuth 2.0 client credentials towards the back end, `<SSLInfo>` handed to the host,
//! and ProxyEndpoints chosen by virtual host.

mod common;

use bytes::Bytes;
use common::{at, request};
use preflow::{
    BuildError, Client, Environment, Exchange, Gateway, KvOp, KvReply, LoadOptions, Provider,
    ProviderAuth, Secret, StateMode, Step, StoreOp, StoreReply, Target, load_files,
};

const SECRET: &str = "s3cr&t/client";

fn proxy(base: &str, vhosts: &[&str], target_url: &str, ssl: &str) -> Vec<(String, String)> {
    let vh: String = vhosts
        .iter()
        .map(|v| format!("<VirtualHost>{v}</VirtualHost>"))
        .collect();
    vec![
        (
            "apiproxy/proxies/default.xml".to_owned(),
            format!(
                r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>{base}</BasePath>{vh}</HTTPProxyConnection>
  <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
            ),
        ),
        (
            "apiproxy/targets/default.xml".to_owned(),
            format!(
                r#"<TargetEndpoint name="default">
  <HTTPTargetConnection>{ssl}<URL>{target_url}</URL></HTTPTargetConnection>
</TargetEndpoint>"#
            ),
        ),
    ]
}

fn build(
    files: Vec<(String, String)>,
    env: Environment,
    state: StateMode,
) -> Result<Gateway, BuildError> {
    let loaded = load_files(
        files.iter().map(|(p, t)| (p.as_str(), t.as_str())),
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Gateway::builder()
        .bundles(loaded)
        .environment(env)
        .state(state)
        .build()
}

fn oauth_env() -> Environment {
    Environment::new().provider(
        Provider::new("cpi", "https://tenant.example/base").with_auth(
            ProviderAuth::ClientCredentials {
                token_url: "https://tenant.example/oauth/token".to_owned(),
                client_id: "gw".to_owned(),
                client_secret: Secret::new(SECRET),
                scope: Some("ESBMessaging.send".to_owned()),
            },
        ),
    )
}

/// A proxy at `/api` whose target is the `cpi` provider's root.
fn cpi_gateway(state: StateMode) -> Gateway {
    build(proxy("/api", &[], "provider://cpi", ""), oauth_env(), state).unwrap()
}

/// A back end and its token endpoint: tokens `t1`, `t2`… in turn; the back end refuses
/// the tokens listed in `refused` with 401.
struct Backend {
    tokens_issued: usize,
    expires_in: u64,
    refused: Vec<String>,
    calls: Vec<http::Request<Bytes>>,
}

impl Backend {
    fn new(expires_in: u64) -> Self {
        Backend {
            tokens_issued: 0,
            expires_in,
            refused: Vec::new(),
            calls: Vec::new(),
        }
    }

    fn answer(&mut self, t: &Target) -> http::Response<Bytes> {
        let uri = t.request.uri().to_string();
        if uri == "https://tenant.example/oauth/token" {
            assert_eq!(&*t.endpoint, "provider-token:cpi");
            self.tokens_issued += 1;
            let body = format!(
                r#"{{"access_token":"t{}","token_type":"Bearer","expires_in":{}}}"#,
                self.tokens_issued, self.expires_in
            );
            return http::Response::new(Bytes::from(body));
        }
        self.calls.push(t.request.clone());
        let auth = t.request.headers()["authorization"].to_str().unwrap();
        let token = auth.strip_prefix("Bearer ").unwrap().to_owned();
        let status = if self.refused.contains(&token) {
            401
        } else {
            200
        };
        http::Response::builder()
            .status(status)
            .body(Bytes::from_static(b"hello"))
            .unwrap()
    }
}

fn begin(g: &Gateway, path: &str, secs: f64) -> Exchange {
    let mut ex = g.begin(
        request("GET", path, &[("authorization", "Bearer caller-token")], ""),
        Client::http("192.0.2.7:4000".parse().unwrap()),
        at(secs),
    );
    ex.enable_trace();
    ex
}

/// Runs `ex` to its response against `backend`, answering store operations with `store`.
fn finish(
    g: &Gateway,
    ex: &mut Exchange,
    backend: &mut Backend,
    store: &mut dyn FnMut(StoreOp) -> StoreReply,
) -> http::Response<Bytes> {
    for _ in 0..50 {
        match g.step(ex) {
            Step::Respond(r) => return r,
            Step::Forward(t) => {
                let r = backend.answer(&t);
                ex.target_response(Ok(r));
            }
            Step::Store(op) => ex.store_reply(store(op)),
            Step::Pause(_) => panic!("nothing else is fetching"),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no response")
}

fn no_store(op: StoreOp) -> StoreReply {
    panic!("local state asked the store: {op:?}")
}

#[test]
fn one_token_request_serves_many_calls_until_shortly_before_it_expires() {
    let env = oauth_env();
    let g = build(
        proxy("/api", &[], "provider://cpi/iflow", ""),
        env,
        StateMode::Local,
    )
    .unwrap();
    let mut backend = Backend::new(100);
    for i in 0..5 {
        let mut ex = begin(&g, "/api/hello", f64::from(i));
        let r = finish(&g, &mut ex, &mut backend, &mut no_store);
        assert_eq!(r.status(), 200);
    }
    assert_eq!(backend.tokens_issued, 1);
    assert_eq!(backend.calls.len(), 5);
    for c in &backend.calls {
        assert_eq!(c.uri(), "https://tenant.example/base/iflow/hello");
        // The provider's token, never the caller's.
        assert_eq!(c.headers()["authorization"], "Bearer t1");
    }
    // A tenth of its life (10 s) before expiry, a new one is fetched.
    let mut ex = begin(&g, "/api/hello", 89.0);
    finish(&g, &mut ex, &mut backend, &mut no_store);
    assert_eq!(backend.tokens_issued, 1);
    let mut ex = begin(&g, "/api/hello", 91.0);
    finish(&g, &mut ex, &mut backend, &mut no_store);
    assert_eq!(backend.tokens_issued, 2);
    assert_eq!(
        backend.calls.last().unwrap().headers()["authorization"],
        "Bearer t2"
    );
}

#[test]
fn the_token_request_is_rfc_6749_client_credentials_and_hides_the_secret() {
    let g = cpi_gateway(StateMode::Local);
    let mut ex = begin(&g, "/api/x", 0.0);
    let Step::Forward(t) = g.step(&mut ex) else {
        panic!("the token request comes first")
    };
    assert_eq!(t.request.method(), "POST");
    assert_eq!(
        t.request.headers()["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        t.request.body().as_ref(),
        b"grant_type=client_credentials&scope=ESBMessaging.send"
    );
    assert!(t.request.headers()["authorization"].is_sensitive());
    assert!(!format!("{t:?}").contains(SECRET));
    assert!(!format!("{:?}", g.environment()).contains(SECRET));
    assert!(!format!("{:?}", ex.trace()).contains(SECRET));
}

#[test]
fn concurrent_exchanges_share_one_fetch() {
    let g = cpi_gateway(StateMode::Local);
    let mut backend = Backend::new(3600);
    let mut a = begin(&g, "/api/a", 0.0);
    let mut b = begin(&g, "/api/b", 0.0);
    let Step::Forward(token_req) = g.step(&mut a) else {
        panic!("a fetches")
    };
    // While a's fetch is out, b waits.
    assert!(matches!(g.step(&mut b), Step::Pause(_)));
    assert!(matches!(g.step(&mut b), Step::Pause(_)));
    let r = backend.answer(&token_req);
    a.target_response(Ok(r));
    assert_eq!(
        finish(&g, &mut a, &mut backend, &mut no_store).status(),
        200
    );
    assert_eq!(
        finish(&g, &mut b, &mut backend, &mut no_store).status(),
        200
    );
    assert_eq!(backend.tokens_issued, 1);
    assert_eq!(backend.calls.len(), 2);
}

#[test]
fn an_exchange_dropped_while_fetching_lets_the_next_one_fetch() {
    let g = cpi_gateway(StateMode::Local);
    let mut a = begin(&g, "/api/a", 0.0);
    let Step::Forward(t) = g.step(&mut a) else {
        panic!("a fetches")
    };
    assert_eq!(t.timeouts.io, Some(std::time::Duration::from_secs(15)));
    let mut b = begin(&g, "/api/b", 0.0);
    assert!(matches!(g.step(&mut b), Step::Pause(_)));
    // The host gives up on a (its client went away): b need not wait for it.
    drop(a);
    let Step::Forward(t) = g.step(&mut b) else {
        panic!("b fetches")
    };
    assert_eq!(&*t.endpoint, "provider-token:cpi");
}

#[test]
fn a_refused_token_is_replaced_once_then_the_401_goes_through() {
    let g = cpi_gateway(StateMode::Local);
    let mut backend = Backend::new(3600);
    let mut ex = begin(&g, "/api/x", 0.0);
    finish(&g, &mut ex, &mut backend, &mut no_store);
    // The back end revokes t1: the next call retries with t2 and succeeds.
    backend.refused.push("t1".to_owned());
    let mut ex = begin(&g, "/api/x", 1.0);
    let r = finish(&g, &mut ex, &mut backend, &mut no_store);
    assert_eq!(r.status(), 200);
    assert_eq!(backend.tokens_issued, 2);
    // A back end that refuses every token: one retry, then its 401.
    backend.refused.extend(["t2".to_owned(), "t3".to_owned()]);
    let mut ex = begin(&g, "/api/x", 2.0);
    let r = finish(&g, &mut ex, &mut backend, &mut no_store);
    assert_eq!(r.status(), 401);
    assert_eq!(backend.tokens_issued, 3);
}

#[test]
fn a_failing_token_endpoint_is_a_502_that_names_the_provider_not_the_secret() {
    let g = cpi_gateway(StateMode::Local);
    let mut ex = begin(&g, "/api/x", 0.0);
    let Step::Forward(_) = g.step(&mut ex) else {
        panic!()
    };
    ex.target_response(Ok(http::Response::builder()
        .status(401)
        .body(Bytes::from_static(br#"{"error":"invalid_client"}"#))
        .unwrap()));
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!()
    };
    assert_eq!(r.status(), 502);
    let body = String::from_utf8_lossy(r.body()).into_owned();
    assert!(body.contains("cpi") && body.contains("401"), "{body}");
    assert!(
        !body.contains(SECRET) && !body.contains("invalid_client"),
        "{body}"
    );
    // The next exchange tries again rather than waiting for a fetch that ended.
    let mut ex = begin(&g, "/api/x", 1.0);
    assert!(matches!(g.step(&mut ex), Step::Forward(_)));
}

#[test]
fn with_remote_state_the_token_is_shared_through_the_store() {
    let mut kv: std::collections::HashMap<String, (String, Option<u64>)> = Default::default();
    let mut store = |op: StoreOp| match op {
        StoreOp::Kv(KvOp::Get { namespace, key, .. }) => StoreReply::Kv(KvReply::Value(
            kv.get(&format!("{namespace}/{key}")).map(|v| v.0.clone()),
        )),
        StoreOp::Kv(KvOp::Put {
            namespace,
            key,
            value,
            expires_at,
            ..
        }) => {
            assert!(expires_at.is_some(), "the stored token expires");
            kv.insert(format!("{namespace}/{key}"), (value, expires_at));
            StoreReply::Kv(KvReply::Written(true))
        }
        other => panic!("{other:?}"),
    };
    let mut backend = Backend::new(3600);
    // Two instances sharing one store: the second uses the first one's token.
    for _instance in 0..2 {
        let g = cpi_gateway(StateMode::Remote);
        for i in 0..3 {
            let mut ex = begin(&g, "/api/x", f64::from(i));
            assert_eq!(finish(&g, &mut ex, &mut backend, &mut store).status(), 200);
        }
    }
    assert_eq!(backend.tokens_issued, 1);
    assert_eq!(backend.calls.len(), 6);
}

#[test]
fn basic_providers_and_unknown_providers() {
    let env = Environment::new().provider(
        Provider::new("legacy", "http://backend.example:8080/").with_auth(ProviderAuth::Basic {
            username: "gw".to_owned(),
            password: Secret::new("pw"),
        }),
    );
    let g = build(
        proxy("/api", &[], "provider://legacy/svc", ""),
        env.clone(),
        StateMode::Local,
    )
    .unwrap();
    let mut backend = Backend::new(0);
    let mut ex = begin(&g, "/api/x", 0.0);
    let Step::Forward(t) = g.step(&mut ex) else {
        panic!()
    };
    assert_eq!(t.request.uri(), "http://backend.example:8080/svc/x");
    assert_eq!(t.request.headers()["authorization"], "Basic Z3c6cHc=");
    drop(backend.calls.drain(..));

    let g = build(
        proxy("/api", &[], "provider://nowhere/svc", ""),
        env,
        StateMode::Local,
    )
    .unwrap();
    let mut ex = begin(&g, "/api/x", 0.0);
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!("an unknown provider cannot be called")
    };
    assert_eq!(r.status(), 500);
    assert!(String::from_utf8_lossy(r.body()).contains("no API provider named `nowhere`"));
}

#[test]
fn ssl_info_reaches_the_host_with_the_call() {
    let ssl = "<SSLInfo><Enabled>true</Enabled><TrustStore>ref://partners</TrustStore>\
        <KeyStore>gw-client</KeyStore><KeyAlias>gw</KeyAlias><ClientAuthEnabled>true</ClientAuthEnabled>\
        <Protocols><Protocol>TLSv1.3</Protocol></Protocols></SSLInfo>";
    let g = build(
        proxy("/api", &[], "https://partner.example/x", ssl),
        Environment::new(),
        StateMode::Local,
    )
    .unwrap();
    let mut ex = begin(&g, "/api/y", 0.0);
    let Step::Forward(t) = g.step(&mut ex) else {
        panic!()
    };
    let tls = t.tls.expect("the <SSLInfo>");
    assert!(tls.enabled && tls.client_auth);
    assert_eq!(tls.truststore.as_deref(), Some("partners"));
    assert_eq!(tls.keystore.as_deref(), Some("gw-client"));
    assert_eq!(tls.key_alias.as_deref(), Some("gw"));
    assert_eq!(tls.protocols, ["TLSv1.3"]);
    assert!(!tls.ignore_validation_errors);
}

fn two_proxies(a_hosts: &[&str], b_hosts: &[&str]) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (name, hosts) in [("a", a_hosts), ("b", b_hosts)] {
        for (p, t) in proxy("/same", hosts, &format!("http://{name}.example"), "") {
            files.push((format!("{name}/{p}"), t));
        }
    }
    files
}

#[test]
fn virtual_hosts_tell_apart_proxies_with_one_base_path() {
    let g = build(
        two_proxies(&["external"], &["internal"]),
        Environment::new(),
        StateMode::Local,
    )
    .unwrap();
    for (vhost, backend) in [("external", "a.example"), ("INTERNAL", "b.example")] {
        let mut ex = begin(&g, "/same/x", 0.0);
        ex.set_virtual_host(vhost);
        let Step::Forward(t) = g.step(&mut ex) else {
            panic!()
        };
        assert_eq!(t.request.uri().host(), Some(backend));
        assert_eq!(
            g.variable(&ex, "virtualhost.name").as_deref(),
            Some(vhost.to_ascii_lowercase().as_str())
        );
    }
    // A virtual host neither serves on: no proxy.
    let mut ex = begin(&g, "/same/x", 0.0);
    ex.set_virtual_host("other");
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!()
    };
    assert_eq!(r.status(), 404);
    assert_eq!(g.virtual_hosts(), ["external", "internal"]);

    // Overlapping virtual hosts (or one serving everywhere) still collide.
    for (a, b) in [
        (&["external"][..], &["external", "internal"][..]),
        (&[][..], &["internal"][..]),
    ] {
        let err = build(two_proxies(a, b), Environment::new(), StateMode::Local).unwrap_err();
        assert!(matches!(err, BuildError::DuplicateBasePath { .. }), "{err}");
    }
}

#[test]
fn sap_exports_name_the_provider_and_a_relative_path() {
    let files = [
        (
            "APIProxy/sap.xml",
            r#"<APIProxy xmlns="http://www.sap.com/apimgmt"><name>sap</name></APIProxy>"#,
        ),
        (
            "APIProxy/APIProxyEndPoint/default.xml",
            r#"<ProxyEndPoint default="true" xmlns="http://www.sap.com/apimgmt">
  <name>default</name><base_path>/sap</base_path>
  <routeRules><routeRule><name>default</name><targetEndPointName>default</targetEndPointName><sequence>1</sequence></routeRule></routeRules>
</ProxyEndPoint>"#,
        ),
        (
            "APIProxy/APITargetEndPoint/default.xml",
            r#"<TargetEndPoint xmlns="http://www.sap.com/apimgmt">
  <name>default</name><provider_id>cpi</provider_id><relativePath>/http/orders</relativePath>
</TargetEndPoint>"#,
        ),
    ];
    let loaded = load_files(files.iter().copied(), &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let env = oauth_env();
    let g = Gateway::builder()
        .bundles(loaded)
        .environment(env)
        .build()
        .unwrap();
    let mut backend = Backend::new(3600);
    let mut ex = begin(&g, "/sap/42", 0.0);
    assert_eq!(
        finish(&g, &mut ex, &mut backend, &mut no_store).status(),
        200
    );
    assert_eq!(
        backend.calls[0].uri(),
        "https://tenant.example/base/http/orders/42"
    );
}

/// Proxy `front` (base `/front`) whose target is `conn`, and proxy `back` (base `/back`)
/// that calls `http://back.example` and adds a header on the way back.
fn chained(conn: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (p, t) in proxy("/back", &[], "http://back.example/svc", "") {
        if p.contains("targets/") {
            files.push((format!("back/{p}"), t));
        }
    }
    files.push((
        "back/apiproxy/policies/AM.xml".to_owned(),
        r#"<AssignMessage name="AM"><Set><Headers><Header name="x-back">{proxy.basepath}</Header></Headers></Set><AssignTo type="response"/></AssignMessage>"#.to_owned(),
    ));
    files.push((
        "back/apiproxy/proxies/default.xml".to_owned(),
        r#"<ProxyEndpoint name="default"><PostFlow><Response><Step><Name>AM</Name></Step></Response></PostFlow>
  <HTTPProxyConnection><BasePath>/back</BasePath></HTTPProxyConnection>
  <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#
            .to_owned(),
    ));
    files.push((
        "front/apiproxy/proxies/default.xml".to_owned(),
        r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/front</BasePath></HTTPProxyConnection>
  <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#
            .to_owned(),
    ));
    files.push((
        "front/apiproxy/targets/default.xml".to_owned(),
        format!(r#"<TargetEndpoint name="default"><LocalTargetConnection>{conn}</LocalTargetConnection></TargetEndpoint>"#),
    ));
    files
}

#[test]
fn local_target_connections_chain_proxies_in_process() {
    for conn in [
        "<Path>/back</Path>",
        "<APIProxy>back</APIProxy><ProxyEndpoint>default</ProxyEndpoint>",
        "<APIProxy>back</APIProxy>",
    ] {
        let g = build(chained(conn), Environment::new(), StateMode::Local).unwrap();
        let mut ex = begin(&g, "/front/items?x=1", 0.0);
        // The host sees only the chained proxy's own target call.
        let Step::Forward(t) = g.step(&mut ex) else {
            panic!("{conn}: the back proxy's target")
        };
        assert_eq!(
            t.request.uri(),
            "http://back.example/svc/items?x=1",
            "{conn}"
        );
        ex.target_response(Ok(http::Response::new(Bytes::from_static(b"from back"))));
        let Step::Respond(r) = g.step(&mut ex) else {
            panic!("{conn}")
        };
        assert_eq!(r.status(), 200);
        assert_eq!(r.body().as_ref(), b"from back");
        assert_eq!(
            r.headers()["x-back"],
            "/back",
            "{conn}: the back proxy's flows ran"
        );
        assert_eq!(g.variable(&ex, "apiproxy.name").as_deref(), Some("front"));
    }
    // An API proxy that is not deployed cannot be called.
    let g = build(
        chained("<APIProxy>elsewhere</APIProxy>"),
        Environment::new(),
        StateMode::Local,
    )
    .unwrap();
    let mut ex = begin(&g, "/front/x", 0.0);
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!()
    };
    assert_eq!(r.status(), 500);
}

#[test]
fn a_proxy_chained_to_itself_stops_at_the_depth_limit() {
    let files = proxy("/loop", &[], "http://unused.example", "")
        .into_iter()
        .map(|(p, t)| {
            if p.ends_with("targets/default.xml") {
                (
                    p,
                    r#"<TargetEndpoint name="default"><LocalTargetConnection><Path>/loop</Path></LocalTargetConnection></TargetEndpoint>"#
                        .to_owned(),
                )
            } else {
                (p, t)
            }
        })
        .collect();
    let g = build(files, Environment::new(), StateMode::Local).unwrap();
    let mut ex = begin(&g, "/loop/x", 0.0);
    let Step::Respond(r) = g.step(&mut ex) else {
        panic!("answered without any I/O")
    };
    assert_eq!(r.status(), 502);
    assert!(String::from_utf8_lossy(r.body()).contains("chained local target calls"));
}
