//! Policies of spec/policies.md §3 running inside the engine.

mod common;

use std::sync::Arc;

use common::*;
use preflow::{Settings, StateMode};
use preflow_oauth::{ApiProduct, App, Developer, NewCredential, QuotaTimeUnit, Registry};

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), text.to_owned())
}

fn build_with(files: &[(String, String)], registry: Arc<Registry>) -> preflow::Gateway {
    let mut all = files.to_vec();
    all.push(file("apiproxy/api.xml", r#"<APIProxy name="api"/>"#));
    let refs: Vec<(&str, &str)> = all.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    gateway_with(&refs, registry, Settings::default(), StateMode::Local)
}

fn build(files: &[(String, String)]) -> preflow::Gateway {
    build_with(files, Arc::new(Registry::new()))
}

fn proxy_with(request_steps: &[&str], response_steps: &[&str]) -> (String, String) {
    let s = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("<Step><Name>{n}</Name></Step>"))
            .collect()
    };
    file(
        "apiproxy/proxies/default.xml",
        &format!(
            r#"<ProxyEndpoint name="default"><PreFlow><Request>{}</Request><Response>{}</Response></PreFlow><HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection><RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#,
            s(request_steps),
            s(response_steps)
        ),
    )
}

fn target() -> (String, String) {
    file(
        "apiproxy/targets/default.xml",
        r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend</URL></HTTPTargetConnection></TargetEndpoint>"#,
    )
}

fn registry_with_key(quota: Option<(u64, u64, QuotaTimeUnit)>) -> (Arc<Registry>, String) {
    let (r, id, _) = registry_with_credential(quota);
    (r, id)
}

fn registry_with_credential(
    quota: Option<(u64, u64, QuotaTimeUnit)>,
) -> (Arc<Registry>, String, String) {
    let registry = Arc::new(Registry::new());
    registry.put_developer(Developer::new("dev@example.com"));
    let mut p = ApiProduct::new("P")
        .with_proxies(["api"])
        .with_resources(["/**"])
        .unwrap();
    if let Some((l, i, u)) = quota {
        p = p.with_quota(l, i, u);
    }
    registry.put_product(p);
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
    (registry, cred.client_id.clone(), cred.client_secret.clone())
}

#[test]
fn verify_api_key_and_product_quota_by_count_ref() {
    let (registry, key) = registry_with_key(Some((2, 1, QuotaTimeUnit::Minute)));
    let g = build_with(
        &[
            proxy_with(&["Key", "Q"], &[]),
            target(),
            file(
                "apiproxy/policies/Key.xml",
                r#"<VerifyAPIKey name="Key"><APIKey ref="request.header.x-apikey"/></VerifyAPIKey>"#,
            ),
            file(
                "apiproxy/policies/Q.xml",
                r#"<Quota name="Q"><Identifier ref="verifyapikey.Key.client_id"/><Allow count="100" countRef="verifyapikey.Key.apiproduct.developer.quota.limit"/><Interval ref="verifyapikey.Key.apiproduct.developer.quota.interval">1</Interval><TimeUnit ref="verifyapikey.Key.apiproduct.developer.quota.timeunit">hour</TimeUnit></Quota>"#,
            ),
        ],
        registry,
    );
    let h = [("x-apikey", key.as_str())];
    let first = run(&g, "GET", "/api/a", &h);
    assert_eq!(first.status(), 200, "{}", first.body());
    assert_eq!(
        g.variable(&first.exchange, "verifyapikey.Key.developer.email")
            .as_deref(),
        Some("dev@example.com")
    );
    assert_eq!(
        g.variable(&first.exchange, "ratelimit.Q.allowed.count")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        g.variable(&first.exchange, "ratelimit.Q.used.count")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        g.variable(&first.exchange, "ratelimit.Q.available.count")
            .as_deref(),
        Some("1")
    );
    assert_eq!(run(&g, "GET", "/api/a", &h).status(), 200);
    let third = run(&g, "GET", "/api/a", &h);
    assert_eq!(third.status(), 429);
    assert_eq!(third.errorcode(), "policies.ratelimit.QuotaViolation");
    assert_eq!(
        third.json()["fault"]["faultstring"].as_str().unwrap(),
        format!("Rate limit quota violation. Quota limit  exceeded. Identifier : {key}")
    );
    // The next minute opens a new window.
    let later = run_at(&g, request("GET", "/api/a", &h, ""), at(61.0), ok_target);
    assert_eq!(later.status(), 200);
    // Bad keys.
    let bad = run(&g, "GET", "/api/a", &[("x-apikey", "nope")]);
    assert_eq!(bad.status(), 401);
    assert_eq!(bad.errorcode(), "oauth.v2.InvalidApiKey");
    assert_eq!(bad.json()["fault"]["faultstring"], "Invalid ApiKey");
    let none = run(&g, "GET", "/api/a", &[]);
    assert_eq!(none.errorcode(), "steps.oauth.v2.FailedToResolveAPIKey");
}

#[test]
fn quota_default_identifier() {
    let g = build(&[
        proxy_with(&["Q"], &[]),
        target(),
        file(
            "apiproxy/policies/Q.xml",
            r#"<Quota name="Q"><Allow count="1"/><Interval>1</Interval><TimeUnit>minute</TimeUnit></Quota>"#,
        ),
    ]);
    assert_eq!(run(&g, "GET", "/api", &[]).status(), 200);
    let out = run(&g, "GET", "/api", &[]);
    assert_eq!(out.status(), 429);
    assert!(
        out.body().contains("Identifier : _default"),
        "{}",
        out.body()
    );
}

#[test]
fn oauth_lifecycle_refresh_info_invalidate() {
    let (registry, _) = registry_with_key(None);
    let app = registry.add_app("dev@example.com", App::new("Y")).unwrap();
    let cred = registry
        .add_credential(
            &app,
            NewCredential {
                products: vec!["P".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let files = vec![
        file(
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
              <Flows>
                <Flow name="token"><Condition>proxy.pathsuffix = "/token"</Condition><Request><Step><Name>Token</Name></Step></Request></Flow>
                <Flow name="refresh"><Condition>proxy.pathsuffix = "/refresh"</Condition><Request><Step><Name>Refresh</Name></Step></Request></Flow>
                <Flow name="info"><Condition>proxy.pathsuffix = "/info"</Condition><Request><Step><Name>Info</Name></Step><Step><Name>Set</Name></Step><Step><Name>Info</Name></Step></Request></Flow>
                <Flow name="revoke"><Condition>proxy.pathsuffix = "/revoke"</Condition><Request><Step><Name>Revoke</Name></Step></Request></Flow>
                <Flow name="api"><Request><Step><Name>Verify</Name></Step></Request></Flow>
              </Flows>
              <HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection><RouteRule name="n"/></ProxyEndpoint>"#,
        ),
        file(
            "apiproxy/policies/Token.xml",
            r#"<OAuthV2 name="Token"><Operation>GenerateAccessToken</Operation><SupportedGrantTypes><GrantType>client_credentials</GrantType><GrantType>password</GrantType></SupportedGrantTypes><GenerateResponse enabled="true"/></OAuthV2>"#,
        ),
        file(
            "apiproxy/policies/Refresh.xml",
            r#"<OAuthV2 name="Refresh"><Operation>RefreshAccessToken</Operation><GenerateResponse enabled="true"/></OAuthV2>"#,
        ),
        file(
            "apiproxy/policies/Verify.xml",
            r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
        ),
        file(
            "apiproxy/policies/Info.xml",
            r#"<GetOAuthV2Info name="Info"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
        ),
        file(
            "apiproxy/policies/Set.xml",
            r#"<SetOAuthV2Info name="Set"><AccessToken ref="request.queryparam.t"/><Attributes><Attribute name="tier" ref="request.queryparam.tier"/></Attributes></SetOAuthV2Info>"#,
        ),
        file(
            "apiproxy/policies/Revoke.xml",
            r#"<OAuthV2 name="Revoke"><Operation>InvalidateToken</Operation><Tokens><Token type="accesstoken" cascade="true">request.queryparam.t</Token></Tokens></OAuthV2>"#,
        ),
    ];
    let g = build_with(&files, registry);
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        cred.client_id, cred.client_secret
    );
    let out = run_at(
        &g,
        request(
            "POST",
            "/api/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        ),
        at(0.0),
        ok_target,
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    let tok = out.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        g.variable(&out.exchange, "oauthv2accesstoken.Token.access_token")
            .as_deref(),
        Some(tok.as_str())
    );
    let bearer = format!("Bearer {tok}");
    assert_eq!(
        run(&g, "GET", "/api/x", &[("authorization", &bearer)]).status(),
        200
    );

    let out = run(&g, "GET", &format!("/api/info?t={tok}&tier=gold"), &[]);
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(
        g.variable(&out.exchange, "oauthv2accesstoken.Info.client_id")
            .as_deref(),
        Some(cred.client_id.as_str())
    );
    assert_eq!(
        g.variable(&out.exchange, "oauthv2accesstoken.Info.accesstoken.tier")
            .as_deref(),
        Some("gold")
    );

    let out = run(&g, "GET", &format!("/api/revoke?t={tok}"), &[]);
    assert_eq!(out.status(), 200);
    let out = run(&g, "GET", "/api/x", &[("authorization", &bearer)]);
    assert_eq!(out.status(), 401);
    assert_eq!(
        out.errorcode(),
        "keymanagement.service.access_token_not_approved"
    );
}

fn oauth_files() -> Vec<(String, String)> {
    vec![
        file(
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
              <Flows>
                <Flow name="authorize"><Condition>proxy.pathsuffix = "/authorize"</Condition><Request><Step><Name>Code</Name></Step></Request></Flow>
                <Flow name="token"><Condition>proxy.pathsuffix = "/token"</Condition><Request><Step><Name>Token</Name></Step></Request></Flow>
                <Flow name="refresh"><Condition>proxy.pathsuffix = "/refresh"</Condition><Request><Step><Name>Refresh</Name></Step></Request></Flow>
                <Flow name="validate"><Condition>proxy.pathsuffix = "/validate"</Condition><Request><Step><Name>Validate</Name></Step></Request></Flow>
              </Flows>
              <HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection><RouteRule name="n"/></ProxyEndpoint>"#,
        ),
        file(
            "apiproxy/policies/Code.xml",
            r#"<OAuthV2 name="Code"><Operation>GenerateAuthorizationCode</Operation><GenerateResponse enabled="true"/></OAuthV2>"#,
        ),
        file(
            "apiproxy/policies/Token.xml",
            r#"<OAuthV2 name="Token"><Operation>GenerateAccessToken</Operation><SupportedGrantTypes><GrantType>authorization_code</GrantType></SupportedGrantTypes><GenerateResponse enabled="true"/></OAuthV2>"#,
        ),
        file(
            "apiproxy/policies/Refresh.xml",
            r#"<OAuthV2 name="Refresh"><Operation>RefreshAccessToken</Operation><GenerateResponse enabled="true"/></OAuthV2>"#,
        ),
        file(
            "apiproxy/policies/Validate.xml",
            r#"<OAuthV2 name="Validate"><Operation>ValidateToken</Operation><Tokens><Token type="accesstoken">request.queryparam.t</Token></Tokens></OAuthV2>"#,
        ),
    ]
}

#[test]
fn authorization_code_then_token_then_refresh_then_validate() {
    let (registry, client_id, secret) = registry_with_credential(None);
    let g = build_with(&oauth_files(), registry);
    // challenge = BASE64URL(SHA256(verifier)).
    let verifier = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc";
    let out = run(
        &g,
        "GET",
        &format!(
            "/api/authorize?client_id={client_id}&response_type=code&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=xyz&code_challenge={challenge}&code_challenge_method=S256"
        ),
        &[],
    );
    assert_eq!(out.status(), 302, "{}", out.body());
    let location = out.header("location").unwrap();
    assert!(
        location.starts_with("https://app.example/cb?code="),
        "{location}"
    );
    assert!(location.ends_with("&state=xyz"), "{location}");
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier={verifier}&client_id={client_id}&client_secret={secret}"
    );
    let post = |path: &str, body: &str, t: f64| {
        run_at(
            &g,
            request(
                "POST",
                path,
                &[("content-type", "application/x-www-form-urlencoded")],
                body,
            ),
            at(t),
            ok_target,
        )
    };
    let out = post("/api/token", &form, 1.0);
    assert_eq!(out.status(), 200, "{}", out.body());
    let refresh = out.json()["refresh_token"].as_str().unwrap().to_owned();
    let access = out.json()["access_token"].as_str().unwrap().to_owned();
    let out = run(&g, "GET", &format!("/api/validate?t={access}"), &[]);
    assert_eq!(out.status(), 200, "{}", out.body());
    let out = post(
        "/api/refresh",
        &format!(
            "grant_type=refresh_token&refresh_token={refresh}&client_id={client_id}&client_secret={secret}"
        ),
        2.0,
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    let renewed = out.json()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(renewed, access);
    // Reusing the code fails.
    let out = post("/api/token", &form, 3.0);
    assert_eq!(out.status(), 400, "{}", out.body());
    assert_eq!(out.json()["error"], "invalid_grant");
    // ValidateToken with an unknown token.
    let out = run(&g, "GET", "/api/validate?t=nope", &[]);
    assert_eq!(out.status(), 401);
}
