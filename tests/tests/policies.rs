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
    (registry, cred.client_id.clone())
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
fn assign_message_operations() {
    let g = build(&[
        proxy_with(&["Req"], &["Resp"]),
        target(),
        file(
            "apiproxy/policies/Req.xml",
            r#"<AssignMessage name="Req">
              <Remove><Headers><Header name="x-secret"/></Headers><QueryParams><QueryParam name="drop"/></QueryParams></Remove>
              <Add><Headers><Header name="x-added">{request.verb}</Header></Headers><QueryParams><QueryParam name="added">1</QueryParam></QueryParams></Add>
              <Set><Headers><Header name="x-set">set-{request.header.x-in}</Header></Headers><Verb>POST</Verb></Set>
              <AssignVariable><Name>my.var</Name><Template>v-{request.queryparam.keep}</Template></AssignVariable>
              <AssignVariable><Name>my.ref</Name><Ref>request.header.x-in</Ref><Value>fallback</Value></AssignVariable>
              <AssignVariable><Name>my.default</Name><Ref>request.header.absent</Ref><Value>fallback</Value></AssignVariable>
            </AssignMessage>"#,
        ),
        file(
            "apiproxy/policies/Resp.xml",
            r#"<AssignMessage name="Resp">
              <Set><Payload contentType="application/json">{"v":"{my.var}","r":"{my.ref}","d":"{my.default}"}</Payload><StatusCode>201</StatusCode></Set>
              <Add><Headers><Header name="x-from-target">{response.header.x-backend}</Header></Headers></Add>
            </AssignMessage>"#,
        ),
    ]);
    let out = run(
        &g,
        "GET",
        "/api/a?keep=k&drop=d",
        &[("x-secret", "s"), ("x-in", "in")],
    );
    let sent = &out.forwarded[0];
    assert!(sent.headers().get("x-secret").is_none());
    assert_eq!(sent.headers()["x-added"], "GET");
    assert_eq!(sent.headers()["x-set"], "set-in");
    assert_eq!(sent.method(), "POST");
    assert_eq!(sent.uri(), "http://backend/a?keep=k&added=1");
    assert_eq!(out.status(), 201);
    assert_eq!(out.body(), r#"{"v":"v-k","r":"in","d":"fallback"}"#);
    assert_eq!(
        out.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(out.header("x-from-target").as_deref(), Some("yes"));
}

#[test]
fn assign_message_unresolved_variables() {
    let g = build(&[
        proxy_with(&["Strict"], &[]),
        target(),
        file(
            "apiproxy/policies/Strict.xml",
            r#"<AssignMessage name="Strict"><Set><Headers><Header name="x">{nothing.here}</Header></Headers></Set></AssignMessage>"#,
        ),
    ]);
    let out = run(&g, "GET", "/api", &[]);
    assert_eq!(out.status(), 500);
    assert_eq!(out.errorcode(), "steps.assignmessage.UnresolvedVariable");
}

#[test]
fn raise_fault_default_body() {
    let g = build(&[
        proxy_with(&["RF"], &[]),
        target(),
        file("apiproxy/policies/RF.xml", r#"<RaiseFault name="RF"/>"#),
    ]);
    let out = run(&g, "GET", "/api", &[]);
    assert_eq!(out.status(), 500);
    assert_eq!(
        out.json(),
        serde_json::json!({"fault":{"faultstring":"Raising fault. Fault name : RF","detail":{"errorcode":"steps.raisefault.RaiseFault"}}})
    );
}

#[test]
fn extract_variables() {
    let g = build(&[
        proxy_with(&["EV", "JSON"], &[]),
        target(),
        file(
            "apiproxy/policies/EV.xml",
            r#"<ExtractVariables name="EV"><VariablePrefix>ev</VariablePrefix>
              <URIPath><Pattern>/items/{id}</Pattern></URIPath>
              <QueryParam name="code"><Pattern>DBN{dbn}</Pattern></QueryParam>
              <Header name="Authorization"><Pattern>Bearer {tok}</Pattern></Header>
            </ExtractVariables>"#,
        ),
        file(
            "apiproxy/policies/JSON.xml",
            r#"<ExtractVariables name="JSON"><JSONPayload><Variable name="city"><JSONPath>$.address.city</JSONPath></Variable></JSONPayload><VariablePrefix>body</VariablePrefix></ExtractVariables>"#,
        ),
    ]);
    let out = run_at(
        &g,
        request(
            "POST",
            "/api/items/42?code=DBN88",
            &[
                ("authorization", "Bearer abc"),
                ("content-type", "application/json"),
            ],
            r#"{"address":{"city":"Walldorf"}}"#,
        ),
        at(0.0),
        ok_target,
    );
    let v = |n: &str| g.variable(&out.exchange, n);
    assert_eq!(v("ev.id").as_deref(), Some("42"));
    assert_eq!(v("ev.dbn").as_deref(), Some("88"));
    assert_eq!(v("ev.tok").as_deref(), Some("abc"));
    assert_eq!(v("body.city").as_deref(), Some("Walldorf"));
}

#[test]
fn key_value_maps() {
    let g = build(&[
        proxy_with(&["Put", "Get"], &[]),
        target(),
        file(
            "apiproxy/policies/Put.xml",
            r#"<KeyValueMapOperations name="Put" mapIdentifier="m"><Scope>environment</Scope>
              <InitialEntries><Entry><Key><Parameter>seed</Parameter></Key><Value>s1</Value></Entry></InitialEntries>
              <Put override="true"><Key><Parameter ref="request.queryparam.k"/></Key><Value ref="request.queryparam.v"/></Put>
            </KeyValueMapOperations>"#,
        ),
        file(
            "apiproxy/policies/Get.xml",
            r#"<KeyValueMapOperations name="Get" mapIdentifier="m">
              <Get assignTo="got" index="1"><Key><Parameter ref="request.queryparam.k"/></Key></Get>
              <Get assignTo="seeded"><Key><Parameter>seed</Parameter></Key></Get>
            </KeyValueMapOperations>"#,
        ),
    ]);
    let out = run(&g, "GET", "/api?k=a&v=1", &[]);
    assert_eq!(g.variable(&out.exchange, "got").as_deref(), Some("1"));
    assert_eq!(g.variable(&out.exchange, "seeded").as_deref(), Some("s1"));
}

#[test]
fn basic_authentication_encode_and_decode() {
    let g = build(&[
        proxy_with(&["Decode", "Encode"], &[]),
        target(),
        file(
            "apiproxy/policies/Decode.xml",
            r#"<BasicAuthentication name="Decode"><Operation>Decode</Operation><User ref="u"/><Password ref="p"/><Source>request.header.Authorization</Source></BasicAuthentication>"#,
        ),
        file(
            "apiproxy/policies/Encode.xml",
            r#"<BasicAuthentication name="Encode"><Operation>Encode</Operation><User ref="u"/><Password ref="p"/><AssignTo createNew="false">request.header.x-backend-auth</AssignTo></BasicAuthentication>"#,
        ),
    ]);
    let out = run(
        &g,
        "GET",
        "/api",
        &[("authorization", "Basic dXNlcjpwYXNz")],
    );
    assert_eq!(g.variable(&out.exchange, "u").as_deref(), Some("user"));
    assert_eq!(g.variable(&out.exchange, "p").as_deref(), Some("pass"));
    assert_eq!(
        out.forwarded[0].headers()["x-backend-auth"],
        "Basic dXNlcjpwYXNz"
    );
    let out = run(&g, "GET", "/api", &[("authorization", "Bearer x")]);
    assert_eq!(out.status(), 500);
    assert_eq!(
        out.errorcode(),
        "steps.basicauthentication.InvalidBasicAuthenticationSource"
    );
}

#[test]
fn access_control() {
    let g = build(&[
        proxy_with(&["AC"], &[]),
        target(),
        file(
            "apiproxy/policies/AC.xml",
            r#"<AccessControl name="AC"><IPRules noRuleMatchAction="DENY">
              <MatchRule action="ALLOW"><SourceAddress mask="24">192.0.2.0</SourceAddress></MatchRule>
            </IPRules></AccessControl>"#,
        ),
    ]);
    assert_eq!(run(&g, "GET", "/api", &[]).status(), 200);
    let out = run(&g, "GET", "/api", &[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(out.status(), 403);
    assert_eq!(out.errorcode(), "steps.accesscontrol.IPDeniedAccess");
    assert_eq!(
        out.json()["fault"]["faultstring"],
        "Access Denied for client ip : 203.0.113.9"
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
