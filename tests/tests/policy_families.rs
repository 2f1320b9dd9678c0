//! The JWT, protection, CORS, cache, callout, logging, statistics, assertion and format
//! policies running in the flow engine.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{at, ok_target, request, run, run_at};
use preflow::policies::service::{LogDestination, MemorySink};
use preflow::{Gateway, LoadOptions, PolicyResources, load_files};

const PROXY: &str = r#"<ProxyEndpoint name="default">
  <PreFlow><Request>{steps}</Request><Response>{response}</Response></PreFlow>
  <PostClientFlow><Response>{post_client}</Response></PostClientFlow>
  <HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection>
  <FaultRules>
    <FaultRule name="threat"><Condition>fault.name = "ExceededContainerDepth"</Condition>
      <Step><Name>RF-Threat</Name></Step></FaultRule>
  </FaultRules>
  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#;

const TARGET: &str = r#"<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>http://backend.internal/base</URL></HTTPTargetConnection>
</TargetEndpoint>"#;

const RF_THREAT: &str = r#"<RaiseFault name="RF-Threat"><FaultResponse><Set>
  <StatusCode>400</StatusCode><Payload contentType="text/plain">too deep: {fault.name}</Payload>
</Set></FaultResponse></RaiseFault>"#;

fn steps(names: &[&str]) -> String {
    // `NAME|CONDITION` gives the step a condition.
    names
        .iter()
        .map(|n| match n.split_once('|') {
            Some((n, c)) => format!("<Step><Name>{n}</Name><Condition>{c}</Condition></Step>"),
            None => format!("<Step><Name>{n}</Name></Step>"),
        })
        .collect()
}

fn gateway_with(
    request_steps: &[&str],
    response_steps: &[&str],
    post_client: &[&str],
    policies: &[(&str, &str)],
    resources: PolicyResources,
) -> Gateway {
    let proxy = PROXY
        .replace("{steps}", &steps(request_steps))
        .replace("{response}", &steps(response_steps))
        .replace("{post_client}", &steps(post_client));
    let mut files: Vec<(String, String)> = vec![
        ("apiproxy/proxies/default.xml".into(), proxy),
        ("apiproxy/targets/default.xml".into(), TARGET.into()),
        ("apiproxy/policies/RF-Threat.xml".into(), RF_THREAT.into()),
    ];
    for (name, xml) in policies {
        files.push((format!("apiproxy/policies/{name}.xml"), (*xml).to_owned()));
    }
    let loaded = load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Gateway::builder()
        .bundles(loaded)
        .resources(resources)
        .build()
        .expect("gateway builds")
}

fn gateway(request_steps: &[&str], policies: &[(&str, &str)]) -> Gateway {
    gateway_with(
        request_steps,
        &[],
        &[],
        policies,
        PolicyResources::default(),
    )
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn generate_then_verify_jwt_names_the_failing_claim() {
    let gen_ = r#"<GenerateJWT name="GJ"><Algorithm>HS256</Algorithm>
        <SecretKey><Value ref="private.key"/></SecretKey>
        <Issuer>https://issuer.example</Issuer><Audience>mobile</Audience><Subject ref="request.header.user"/>
        <ExpiresIn>10m</ExpiresIn><OutputVariable>token</OutputVariable></GenerateJWT>"#;
    let key = format!(
        r#"<AssignMessage name="AM-Key"><AssignVariable><Name>private.key</Name><Value>{SECRET}</Value></AssignVariable></AssignMessage>"#
    );
    let to_header = r#"<AssignMessage name="AM-Out"><Set><Headers><Header name="x-token">{token}</Header></Headers></Set>
        <AssignTo createNew="false" type="request"/></AssignMessage>"#;
    let g = gateway(
        &["AM-Key", "GJ", "AM-Out"],
        &[("GJ", gen_), ("AM-Key", &key), ("AM-Out", to_header)],
    );
    let out = run(&g, "GET", "/v1/x", &[("user", "alice")]);
    assert_eq!(out.status(), 200);
    let token = out.forwarded[0].headers()["x-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.split('.').count(), 3);

    let verify = |aud: &str| {
        format!(
            r#"<VerifyJWT name="VJ"><Algorithm>HS256</Algorithm><Source>request.header.x-jwt</Source>
            <SecretKey><Value ref="private.key"/></SecretKey><Issuer>https://issuer.example</Issuer>
            <Audience>{aud}</Audience></VerifyJWT>"#
        )
    };
    let ok = verify("mobile");
    let g = gateway(&["AM-Key", "VJ"], &[("VJ", &ok), ("AM-Key", &key)]);
    let out = run(&g, "GET", "/v1/x", &[("x-jwt", &token)]);
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(
        g.variable(&out.exchange, "jwt.VJ.claim.subject").as_deref(),
        Some("alice")
    );
    assert_eq!(
        g.variable(&out.exchange, "jwt.VJ.valid").as_deref(),
        Some("true")
    );

    let bad = verify("web-app");
    let g = gateway(&["AM-Key", "VJ"], &[("VJ", &bad), ("AM-Key", &key)]);
    let out = run(&g, "GET", "/v1/x", &[("x-jwt", &token)]);
    assert_eq!(out.status(), 401);
    assert_eq!(out.errorcode(), "steps.jwt.JwtAudienceMismatch");
    assert_eq!(
        g.variable(&out.exchange, "JWT.failed").as_deref(),
        Some("true")
    );
    assert!(
        g.variable(&out.exchange, "jwt.VJ.error")
            .unwrap()
            .starts_with("audience mismatch")
    );
    assert_eq!(
        out.json()["fault"]["faultstring"],
        "audience mismatch: claim `aud` is [\"mobile\"], expected it to contain `web-app`"
    );
    assert!(out.forwarded.is_empty());
    // Expired ten minutes later.
    let g = gateway(&["AM-Key", "VJ"], &[("VJ", &ok), ("AM-Key", &key)]);
    let later = run_at(
        &g,
        request("GET", "/v1/x", &[("x-jwt", &token)], ""),
        at(600.0),
        ok_target,
    );
    assert_eq!(later.errorcode(), "steps.jwt.TokenExpired");
}

#[test]
fn response_cache_serves_hits_without_the_target() {
    let rc = r#"<ResponseCache name="RC"><CacheKey><KeyFragment ref="request.uri"/></CacheKey>
        <ExpirySettings><TimeoutInSec>60</TimeoutInSec></ExpirySettings></ResponseCache>"#;
    let g = gateway_with(
        &["RC"],
        &["RC"],
        &[],
        &[("RC", rc)],
        PolicyResources::default(),
    );
    let first = run(&g, "GET", "/v1/items?a=1", &[]);
    assert_eq!(first.forwarded.len(), 1);
    assert_eq!(
        g.variable(&first.exchange, "responsecache.RC.cachehit")
            .as_deref(),
        Some("false")
    );
    let second = run_at(
        &g,
        request("GET", "/v1/items?a=1", &[], ""),
        at(30.0),
        ok_target,
    );
    assert!(second.forwarded.is_empty(), "served from the cache");
    assert_eq!(second.body(), "Hello world from IFlow");
    assert_eq!(second.header("x-backend").as_deref(), Some("yes"));
    assert_eq!(
        g.variable(&second.exchange, "responsecache.RC.cachehit")
            .as_deref(),
        Some("true")
    );
    let other_key = run(&g, "GET", "/v1/items?a=2", &[]);
    assert_eq!(other_key.forwarded.len(), 1);
    let expired = run_at(
        &g,
        request("GET", "/v1/items?a=1", &[], ""),
        at(61.0),
        ok_target,
    );
    assert_eq!(expired.forwarded.len(), 1);
}

#[test]
fn populate_lookup_and_invalidate_cache() {
    let pc = r#"<PopulateCache name="PC"><CacheKey><Prefix>t</Prefix><KeyFragment ref="request.header.k"/></CacheKey>
        <Source>request.header.v</Source><ExpirySettings><TimeoutInSec>100</TimeoutInSec></ExpirySettings></PopulateCache>"#;
    let lc = r#"<LookupCache name="LC"><CacheKey><Prefix>t</Prefix><KeyFragment ref="request.header.k"/></CacheKey>
        <AssignTo>found</AssignTo></LookupCache>"#;
    let ic = r#"<InvalidateCache name="IC"><CacheKey><Prefix>t</Prefix><KeyFragment ref="request.header.k"/></CacheKey></InvalidateCache>"#;
    let put = r#"<AssignMessage name="AM"><Set><Headers><Header name="x-found">{found}</Header></Headers></Set>
        <IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables><AssignTo createNew="false" type="request"/></AssignMessage>"#;
    let files: [(&str, &str); 4] = [("PC", pc), ("LC", lc), ("IC", ic), ("AM", put)];
    let g = gateway(
        &[
            r#"IC|request.verb = "DELETE""#,
            "LC",
            r#"PC|request.verb = "PUT""#,
            "AM",
        ],
        &files,
    );
    let hit = |out: &common::Outcome| g.variable(&out.exchange, "lookupcache.LC.cachehit");
    let miss = run(&g, "GET", "/v1/x", &[("k", "a")]);
    assert_eq!(hit(&miss).as_deref(), Some("false"));
    run(&g, "PUT", "/v1/x", &[("k", "a"), ("v", "1")]);
    let found = run(&g, "GET", "/v1/x", &[("k", "a")]);
    assert_eq!(hit(&found).as_deref(), Some("true"));
    assert_eq!(found.forwarded[0].headers()["x-found"], "1");
    assert_eq!(
        hit(&run(&g, "GET", "/v1/x", &[("k", "b")])).as_deref(),
        Some("false")
    );
    let expired = run_at(
        &g,
        request("GET", "/v1/x", &[("k", "a")], ""),
        at(100.0),
        ok_target,
    );
    assert_eq!(hit(&expired).as_deref(), Some("false"));
    run(&g, "PUT", "/v1/x", &[("k", "a"), ("v", "2")]);
    let deleted = run(&g, "DELETE", "/v1/x", &[("k", "a")]);
    assert_eq!(hit(&deleted).as_deref(), Some("false"));
}

#[test]
fn service_callout_is_a_host_step_and_fills_its_response_variable() {
    let sc = r#"<ServiceCallout name="SC">
        <Request variable="calloutRequest"><Set><Verb>POST</Verb><Payload contentType="application/json">{"user":"{request.header.user}"}</Payload>
          <Headers><Header name="x-api">k1</Header></Headers></Set></Request>
        <Response>calloutResponse</Response>
        <HTTPTargetConnection><URL>https://lookup.example/users</URL></HTTPTargetConnection></ServiceCallout>"#;
    let use_it = r#"<AssignMessage name="AM"><Set><Headers><Header name="x-tier">{calloutResponse.content}</Header>
        <Header name="x-code">{calloutResponse.status.code}</Header></Headers></Set><AssignTo createNew="false" type="request"/></AssignMessage>"#;
    let g = gateway(&["SC", "AM"], &[("SC", sc), ("AM", use_it)]);
    let target = |r: &http::Request<Bytes>| {
        if r.uri().host() == Some("lookup.example") {
            assert_eq!(r.method(), "POST");
            assert_eq!(r.headers()["x-api"], "k1");
            assert_eq!(r.body().as_ref(), br#"{"user":"alice"}"#);
            Ok(http::Response::new(Bytes::from_static(b"gold")))
        } else {
            ok_target(r)
        }
    };
    let out = run_at(
        &g,
        request("GET", "/v1/x", &[("user", "alice")], ""),
        at(0.0),
        target,
    );
    assert_eq!(out.status(), 200);
    assert_eq!(out.forwarded.len(), 2, "the callout, then the target");
    assert_eq!(out.forwarded[0].uri(), "https://lookup.example/users");
    assert_eq!(out.forwarded[1].headers()["x-tier"], "gold");
    assert_eq!(out.forwarded[1].headers()["x-code"], "200");
    // A failing callout is a fault.
    let failing = |r: &http::Request<Bytes>| {
        if r.uri().host() == Some("lookup.example") {
            Err(preflow::TargetError::Connect("refused".into()))
        } else {
            ok_target(r)
        }
    };
    let out = run_at(
        &g,
        request("GET", "/v1/x", &[("user", "alice")], ""),
        at(0.0),
        failing,
    );
    assert_eq!(out.status(), 500);
    assert_eq!(out.errorcode(), "steps.servicecallout.ExecutionFailed");
}

#[test]
fn message_logging_statistics_and_assertions() {
    let ml = r#"<MessageLogging name="ML"><Syslog><Message>{request.verb} {proxy.pathsuffix} {response.status.code}</Message>
        <Host>logs.internal</Host><Port>514</Port></Syslog></MessageLogging>"#;
    let sc = r#"<StatisticsCollector name="SC"><Statistics><Statistic name="tier" ref="request.header.tier" type="STRING">none</Statistic></Statistics></StatisticsCollector>"#;
    let ac = r#"<AssertCondition name="AC"><Condition>request.header.tier != "banned"</Condition></AssertCondition>"#;
    let sink = Arc::new(MemorySink::default());
    let g = gateway_with(
        &["SC", "AC"],
        &[],
        &["ML"],
        &[("ML", ml), ("SC", sc), ("AC", ac)],
        PolicyResources::default().with_log_sink(sink.clone()),
    );
    let out = run(&g, "GET", "/v1/items", &[("tier", "gold")]);
    assert_eq!(out.status(), 200);
    assert_eq!(
        g.variable(&out.exchange, "statistics.tier").as_deref(),
        Some("gold")
    );
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].message, "GET /items 200");
    assert!(matches!(
        records[0].destination,
        LogDestination::Syslog {
            port: Some(514),
            ..
        }
    ));
    let banned = run(&g, "GET", "/v1/items", &[("tier", "banned")]);
    assert_eq!(banned.status(), 500);
    assert_eq!(banned.errorcode(), "steps.assertcondition.AssertionFailed");
}

#[test]
fn a_local_service_callout_runs_the_other_proxy_in_process() {
    let files = [
        (
            "a/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><PreFlow><Request><Step><Name>SC-Local</Name></Step></Request></PreFlow>
              <HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection><RouteRule name="none"/></ProxyEndpoint>"#,
        ),
        (
            "a/apiproxy/policies/SC-Local.xml",
            r#"<ServiceCallout name="SC-Local"><Request><Set><Verb>GET</Verb></Set></Request>
              <Response>local</Response>
              <LocalTargetConnection><Path>/v2/profile</Path></LocalTargetConnection></ServiceCallout>"#,
        ),
        (
            "b/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><PostFlow><Response><Step><Name>AM</Name></Step></Response></PostFlow>
              <HTTPProxyConnection><BasePath>/v2</BasePath></HTTPProxyConnection><RouteRule name="none"/></ProxyEndpoint>"#,
        ),
        (
            "b/apiproxy/policies/AM.xml",
            r#"<AssignMessage name="AM"><Set><Payload contentType="text/plain">profile of {proxy.pathsuffix}</Payload></Set><AssignTo type="response"/></AssignMessage>"#,
        ),
    ];
    let g = common::gateway(&files);
    let direct = run_at(
        &g,
        request("GET", "/v2/profile", &[], ""),
        at(0.0),
        ok_target,
    );
    assert_eq!(direct.body(), "profile of /profile");
    // No I/O reaches the host: the callout is answered by proxy `b`.
    let out = run_at(&g, request("GET", "/v1/x", &[], ""), at(0.0), |r| {
        panic!("nothing is sent out: {r:?}")
    });
    assert_eq!(out.forwarded.len(), 0);
    assert_eq!(
        g.variable(&out.exchange, "local.status.code").as_deref(),
        Some("200"),
        "{:#?}",
        out.exchange.trace()
    );
    assert_eq!(
        g.variable(&out.exchange, "local.content").as_deref(),
        Some("profile of /profile")
    );
}

#[test]
fn check_knows_what_the_family_policies_set() {
    let proxy = r#"<ProxyEndpoint name="default">
      <PreFlow><Request>
        <Step><Name>SC</Name></Step>
        <Step><Name>LC</Name></Step>
        <Step><Name>GJ</Name></Step>
        <Step><Name>AM</Name><Condition>(calloutResponse.status.code = 200) and (cached != null) and (myToken != null) and (nothing.sets.this = "x")</Condition></Step>
      </Request></PreFlow>
      <HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection>
      <RouteRule name="none"/>
    </ProxyEndpoint>"#;
    let files = [
        ("apiproxy/proxies/default.xml", proxy),
        (
            "apiproxy/policies/SC.xml",
            r#"<ServiceCallout name="SC"><Response>calloutResponse</Response><HTTPTargetConnection><URL>https://x.example</URL></HTTPTargetConnection></ServiceCallout>"#,
        ),
        (
            "apiproxy/policies/LC.xml",
            r#"<LookupCache name="LC"><CacheKey><KeyFragment>k</KeyFragment></CacheKey><AssignTo>cached</AssignTo></LookupCache>"#,
        ),
        (
            "apiproxy/policies/GJ.xml",
            r#"<GenerateJWT name="GJ"><Algorithm>HS256</Algorithm><SecretKey><Value ref="private.k"/></SecretKey><OutputVariable>myToken</OutputVariable></GenerateJWT>"#,
        ),
        (
            "apiproxy/policies/AM.xml",
            r#"<AssignMessage name="AM"><AssignVariable><Name>private.k</Name><Value>v</Value></AssignVariable></AssignMessage>"#,
        ),
    ];
    let loaded = load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let unset: Vec<String> = preflow::lint(&loaded.bundles)
        .iter()
        .map(|d| d.message.clone())
        .filter(|m| m.contains("which no policy"))
        .collect();
    assert_eq!(
        unset,
        ["condition reads `nothing.sets.this`, which no policy of the loaded bundles sets"]
    );
}
