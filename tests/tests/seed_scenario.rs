//! The seed scenario of spec/scenario.md end to end, in process: a token API (null route,
//! GenerateAccessToken behind the tutorial's condition, a RaiseFault catch-all flow) and a
//! protected API (SpikeArrest and VerifyAccessToken in the PreFlow, a target).

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::*;
use preflow::{Settings, StateMode};
use preflow_oauth::{ApiProduct, App, Developer, NewCredential, Registry};

const TUTORIAL: &str = r#"(proxy.pathsuffix MatchesPath "/OAuthToken" OR proxy.pathsuffix MatchesPath "/OAuthToken/**" OR proxy.pathsuffix MatchesPath "/OAuthToken(**")AND(request.verb = "POST")"#;
const CATCH_ALL: &str = r#"(proxy.pathsuffix MatchesPath "/OAuthToken" OR proxy.pathsuffix MatchesPath "/OAuthToken/**" OR proxy.pathsuffix MatchesPath "/OAuthToken(**")"#;

fn files() -> Vec<(String, String)> {
    vec![
        (
            "token/apiproxy/proxies/default.xml".into(),
            format!(
                r#"<ProxyEndpoint name="default">
  <PreFlow name="PreFlow"><Request/><Response/></PreFlow>
  <Flows>
    <Flow name="GenerateToken">
      <Condition>{}</Condition>
      <Request><Step><Name>GenerateToken</Name></Step></Request>
    </Flow>
    <Flow name="DefaultFaultFlow">
      <Condition>{}</Condition>
      <Request><Step><Name>NotFound</Name></Step></Request>
    </Flow>
  </Flows>
  <PostFlow name="PostFlow"><Request/><Response/></PostFlow>
  <HTTPProxyConnection><BasePath>/v1/OAuthService</BasePath></HTTPProxyConnection>
  <RouteRule name="noroute"/>
</ProxyEndpoint>"#,
                TUTORIAL.replace('&', "&amp;").replace('<', "&lt;"),
                CATCH_ALL
            ),
        ),
        (
            "token/apiproxy/policies/GenerateToken.xml".into(),
            r#"<OAuthV2 name="GenerateToken">
  <Operation>GenerateAccessToken</Operation>
  <SupportedGrantTypes><GrantType>client_credentials</GrantType></SupportedGrantTypes>
  <GenerateResponse enabled="true"/>
  <ExpiresIn>1800000</ExpiresIn>
</OAuthV2>"#
                .into(),
        ),
        (
            "token/apiproxy/policies/NotFound.xml".into(),
            r#"<RaiseFault name="NotFound">
  <FaultResponse><Set>
    <Payload contentType="application/json">{"error":"use POST {proxy.pathsuffix}"}</Payload>
    <StatusCode>404</StatusCode>
  </Set></FaultResponse>
</RaiseFault>"#
                .into(),
        ),
        (
            "token/apiproxy/OAuth.xml".into(),
            r#"<APIProxy name="OAuth"/>"#.into(),
        ),
        (
            "api/apiproxy/api.xml".into(),
            r#"<APIProxy name="api"/>"#.into(),
        ),
        (
            "api/apiproxy/proxies/default.xml".into(),
            r#"<ProxyEndpoint name="default">
  <PreFlow name="PreFlow">
    <Request>
      <Step><Name>SpikeArrest</Name></Step>
      <Step><Name>VerifyToken</Name></Step>
    </Request>
  </PreFlow>
  <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
                .into(),
        ),
        (
            "api/apiproxy/targets/default.xml".into(),
            r#"<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>https://iflow.example.com/http/v1/test</URL></HTTPTargetConnection>
</TargetEndpoint>"#
                .into(),
        ),
        (
            "api/apiproxy/policies/SpikeArrest.xml".into(),
            r#"<SpikeArrest name="SpikeArrest"><Rate>10ps</Rate></SpikeArrest>"#.into(),
        ),
        (
            "api/apiproxy/policies/VerifyToken.xml".into(),
            r#"<OAuthV2 name="VerifyToken"><Operation>VerifyAccessToken</Operation></OAuthV2>"#
                .into(),
        ),
    ]
}

struct Seed {
    gateway: preflow::Gateway,
    client_id: String,
    secret: String,
}

fn seed(state: StateMode) -> Seed {
    let registry = Arc::new(Registry::new());
    registry.put_developer(Developer::new("dev@example.com"));
    registry.put_product(
        ApiProduct::new("P")
            .with_proxies(["api"])
            .with_resources(["/**"])
            .unwrap(),
    );
    let app = registry.add_app("dev@example.com", App::new("X")).unwrap();
    let cred = registry
        .add_credential(
            &app,
            NewCredential {
                products: vec!["P".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let files = files();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Seed {
        gateway: gateway_with(&refs, registry, Settings::default(), state),
        client_id: cred.client_id.clone(),
        secret: cred.client_secret.clone(),
    }
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_encode(s);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn token(s: &Seed) -> String {
    let auth = basic(&s.client_id, &s.secret);
    let out = run_at(
        &s.gateway,
        request(
            "POST",
            "/v1/OAuthService/OAuthToken",
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "grant_type=client_credentials",
        ),
        at(0.0),
        ok_target,
    );
    assert_eq!(
        out.status(),
        200,
        "{} {:#?}",
        out.body(),
        out.exchange.trace()
    );
    assert!(out.forwarded.is_empty(), "the token API has a null route");
    let json = out.json();
    assert_eq!(json["expires_in"], 1800);
    json["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn token_then_protected_call() {
    let s = seed(StateMode::Local);
    let tok = token(&s);
    let out = run(
        &s.gateway,
        "GET",
        "/v1/api/hello",
        &[("authorization", &format!("Bearer {tok}"))],
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(out.body(), "Hello world from IFlow");
    assert_eq!(out.forwarded.len(), 1);
    assert_eq!(
        out.forwarded[0].uri().to_string(),
        "https://iflow.example.com/http/v1/test/hello"
    );
    assert_eq!(
        s.gateway.variable(&out.exchange, "client_id").as_deref(),
        Some(s.client_id.as_str())
    );
    assert_eq!(
        s.gateway
            .variable(&out.exchange, "developer.email")
            .as_deref(),
        Some("dev@example.com")
    );
    assert_eq!(
        s.gateway
            .variable(&out.exchange, "apiproduct.name")
            .as_deref(),
        Some("P")
    );
}

#[test]
fn no_token_is_401() {
    let s = seed(StateMode::Local);
    let out = run(&s.gateway, "GET", "/v1/api/hello", &[]);
    assert_eq!(out.status(), 401);
    assert_eq!(out.errorcode(), "oauth.v2.InvalidAccessToken");
    assert!(
        out.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(out.forwarded.is_empty());
    let out = run_at(
        &s.gateway,
        request(
            "GET",
            "/v1/api/hello",
            &[("authorization", "Bearer nope")],
            "",
        ),
        at(1.0),
        ok_target,
    );
    assert_eq!(out.status(), 401);
    assert_eq!(
        out.errorcode(),
        "keymanagement.service.invalid_access_token"
    );
}

#[test]
fn burst_is_429() {
    let s = seed(StateMode::Local);
    let tok = token(&s);
    let auth = format!("Bearer {tok}");
    let h = [("authorization", auth.as_str())];
    let first = run_at(
        &s.gateway,
        request("GET", "/v1/api/a", &h, ""),
        at(1.0),
        ok_target,
    );
    assert_eq!(first.status(), 200);
    let second = run_at(
        &s.gateway,
        request("GET", "/v1/api/a", &h, ""),
        at(1.05),
        ok_target,
    );
    assert_eq!(second.status(), 429, "{}", second.body());
    assert_eq!(
        second.errorcode(),
        "policies.ratelimit.SpikeArrestViolation"
    );
    assert_eq!(second.exchange.fault_name(), Some("SpikeArrestViolation"));
    let third = run_at(
        &s.gateway,
        request("GET", "/v1/api/a", &h, ""),
        at(1.11),
        ok_target,
    );
    assert_eq!(third.status(), 200);
}

#[test]
fn private_cloud_profile_answers_500() {
    let registry = Arc::new(Registry::new());
    let files = files();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let settings = Settings {
        profile: preflow::Profile::PrivateCloud,
        ..Settings::default()
    };
    let g = gateway_with(&refs, registry, settings, StateMode::Local);
    let _ = run_at(&g, request("GET", "/v1/api/a", &[], ""), at(1.0), ok_target);
    let second = run_at(
        &g,
        request("GET", "/v1/api/a", &[], ""),
        at(1.01),
        ok_target,
    );
    assert_eq!(second.status(), 500);
    assert_eq!(
        second.errorcode(),
        "policies.ratelimit.SpikeArrestViolation"
    );
}

#[test]
fn get_on_token_endpoint_issues_nothing() {
    let s = seed(StateMode::Local);
    let auth = basic(&s.client_id, &s.secret);
    let out = run(
        &s.gateway,
        "GET",
        "/v1/OAuthService/OAuthToken?grant_type=client_credentials",
        &[("authorization", &auth)],
    );
    assert_eq!(out.status(), 404);
    assert_eq!(out.body(), r#"{"error":"use POST /OAuthToken"}"#);
    assert_eq!(s.gateway.token_store().token_count(), 0);
}

#[test]
fn wrong_secret_is_401_invalid_client() {
    let s = seed(StateMode::Local);
    let auth = basic(&s.client_id, "wrong");
    let out = run_at(
        &s.gateway,
        request(
            "POST",
            "/v1/OAuthService/OAuthToken",
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "grant_type=client_credentials",
        ),
        at(0.0),
        ok_target,
    );
    assert_eq!(out.status(), 401);
    assert_eq!(out.json()["error"], "invalid_client");
    assert_eq!(out.exchange.fault_name(), Some("InvalidClientIdentifier"));
}

#[test]
fn unknown_base_path_is_404_application_not_found() {
    let s = seed(StateMode::Local);
    let out = run(&s.gateway, "GET", "/v2/nothing", &[]);
    assert_eq!(out.status(), 404);
    assert_eq!(
        out.errorcode(),
        "messaging.adaptors.http.flow.ApplicationNotFound"
    );
}

/// The same scenario with every store operation surfaced to the host.
#[test]
fn remote_state_surfaces_store_ops() {
    let s = seed(StateMode::Remote);
    let tokens = preflow_oauth::MemoryStore::new();
    let counters = preflow_ratelimit::MemoryStore::new();
    let drive = |req: http::Request<bytes::Bytes>, now, ops: &mut Vec<String>| {
        let mut ex = s.gateway.begin(
            req,
            preflow::Client::http("192.0.2.1:1".parse().unwrap()),
            now,
        );
        loop {
            match s.gateway.step(&mut ex) {
                preflow::Step::Respond(r) => return r,
                preflow::Step::Forward(_) => ex.target_response(Ok(http::Response::new(
                    bytes::Bytes::from_static(b"backend"),
                ))),
                preflow::Step::Store(preflow::StoreOp::Token(op)) => {
                    use preflow_oauth::TokenStore as _;
                    ops.push("token".into());
                    ex.store_reply(preflow::StoreReply::Token(tokens.execute(op)));
                }
                preflow::Step::Store(preflow::StoreOp::RateLimit(op)) => {
                    use preflow_ratelimit::CounterStore as _;
                    ops.push("ratelimit".into());
                    ex.store_reply(preflow::StoreReply::RateLimit(counters.run(&op)));
                }
                preflow::Step::Store(other) => panic!("{other:?}"),
                preflow::Step::ReadBody => panic!("begin gave the whole request"),
                preflow::Step::Pause(d) => std::thread::sleep(d),
            }
        }
    };
    let mut ops = Vec::new();
    let auth = basic(&s.client_id, &s.secret);
    let r = drive(
        request(
            "POST",
            "/v1/OAuthService/OAuthToken",
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "grant_type=client_credentials",
        ),
        at(0.0),
        &mut ops,
    );
    assert_eq!(r.status(), 200);
    // The throttle check, the throttle success, the tokens stored.
    assert_eq!(ops, ["token", "token", "token"]);
    assert_eq!(
        s.gateway.token_store().token_count(),
        0,
        "local store untouched"
    );
    let json: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    let tok = json["access_token"].as_str().unwrap().to_owned();
    ops.clear();
    let auth = format!("Bearer {tok}");
    let r = drive(
        request("GET", "/v1/api/x", &[("authorization", &auth)], ""),
        at(1.0),
        &mut ops,
    );
    assert_eq!(r.status(), 200);
    assert_eq!(ops, ["ratelimit", "token"]);
    let r = drive(
        request("GET", "/v1/api/x", &[("authorization", &auth)], ""),
        at(1.01),
        &mut ops,
    );
    assert_eq!(r.status(), 429);
}

/// A redeployed revision keeps the tokens of the one before, serves its own flows, and a
/// revision that does not build leaves the running one untouched.
#[test]
fn redeploy_keeps_tokens_and_swaps_flows() {
    let s = seed(StateMode::Local);
    let tok = token(&s);
    let bearer = format!("Bearer {tok}");
    let mut files = files();
    for (path, body) in &mut files {
        if path == "api/apiproxy/proxies/default.xml" {
            *body = body.replace("/v1/api", "/v2/api");
        }
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let loaded = preflow::load_files(refs, &preflow::LoadOptions::default());
    let next = s.gateway.redeploy(&loaded).unwrap();
    let moved = run(&next, "GET", "/v2/api/hello", &[("authorization", &bearer)]);
    assert_eq!(moved.status(), 200, "{}", moved.body());
    let gone = run(&next, "GET", "/v1/api/hello", &[("authorization", &bearer)]);
    assert_eq!(gone.status(), 404, "{}", gone.body());
    // The old revision still serves its own base path.
    let old = run(
        &s.gateway,
        "GET",
        "/v1/api/hello",
        &[("authorization", &bearer)],
    );
    assert_eq!(old.status(), 200, "{}", old.body());

    let mut broken = loaded.clone();
    broken.bundles.extend(loaded.bundles.iter().cloned());
    let err = next.redeploy(&broken).unwrap_err();
    assert!(
        matches!(err, preflow::BuildError::DuplicateBasePath { .. }),
        "{err}"
    );
}
