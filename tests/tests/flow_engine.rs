//! The execution model of spec/policies.md §2, one rule at a time, with small bundles.

mod common;

use common::*;
use preflow::TraceEvent;

/// A no-op policy that records that it ran.
fn am(name: &str) -> (String, String) {
    (
        format!("apiproxy/policies/{name}.xml"),
        format!(
            r#"<AssignMessage name="{name}"><AssignVariable><Name>ran.{name}</Name><Value>yes</Value></AssignVariable></AssignMessage>"#
        ),
    )
}

fn raise(name: &str, status: u16, body: &str) -> (String, String) {
    (
        format!("apiproxy/policies/{name}.xml"),
        format!(
            r#"<RaiseFault name="{name}"><FaultResponse><Set><Payload contentType="text/plain">{body}</Payload><StatusCode>{status}</StatusCode></Set></FaultResponse></RaiseFault>"#
        ),
    )
}

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), text.to_owned())
}

fn build(files: &[(String, String)]) -> preflow::Gateway {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    gateway(&refs)
}

/// The names of the policies that ran, in order, with their results.
fn ran(out: &Outcome) -> Vec<String> {
    out.exchange
        .trace()
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Policy { name, result, .. } if result == "ok" => Some(name.clone()),
            TraceEvent::Policy { name, result, .. } => Some(format!("{name}:{result}")),
            _ => None,
        })
        .collect()
}

fn proxy(body: &str) -> (String, String) {
    file(
        "apiproxy/proxies/default.xml",
        &format!(r#"<ProxyEndpoint name="default">{body}</ProxyEndpoint>"#),
    )
}

fn target(body: &str) -> (String, String) {
    file(
        "apiproxy/targets/default.xml",
        &format!(
            r#"<TargetEndpoint name="default">{body}<HTTPTargetConnection><URL>http://backend/b</URL></HTTPTargetConnection></TargetEndpoint>"#
        ),
    )
}

const CONN: &str = "<HTTPProxyConnection><BasePath>/p</BasePath></HTTPProxyConnection>";
const TO_TARGET: &str =
    "<RouteRule name=\"t\"><TargetEndpoint>default</TargetEndpoint></RouteRule>";
const NULL_ROUTE: &str = "<RouteRule name=\"none\"/>";

fn steps(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("<Step><Name>{n}</Name></Step>"))
        .collect()
}

fn all_policies(names: &[&str]) -> Vec<(String, String)> {
    names.iter().map(|n| am(n)).collect()
}

#[test]
fn full_order_proxy_and_target_request_and_response() {
    let mut files = all_policies(&[
        "P1", "P2", "P3", "P4", "P5", "P6", "T1", "T2", "T3", "T4", "T5", "T6",
    ]);
    files.push(proxy(&format!(
        r#"<PreFlow><Request>{}</Request><Response>{}</Response></PreFlow>
        <Flows><Flow name="f"><Condition>proxy.pathsuffix = "/x"</Condition><Request>{}</Request><Response>{}</Response></Flow></Flows>
        <PostFlow><Request>{}</Request><Response>{}</Response></PostFlow>{CONN}{TO_TARGET}"#,
        steps(&["P1"]),
        steps(&["P4"]),
        steps(&["P2"]),
        steps(&["P5"]),
        steps(&["P3"]),
        steps(&["P6"]),
    )));
    files.push(target(&format!(
        r#"<PreFlow><Request>{}</Request><Response>{}</Response></PreFlow>
        <Flows><Flow name="tf"><Request>{}</Request><Response>{}</Response></Flow></Flows>
        <PostFlow><Request>{}</Request><Response>{}</Response></PostFlow>"#,
        steps(&["T1"]),
        steps(&["T4"]),
        steps(&["T2"]),
        steps(&["T5"]),
        steps(&["T3"]),
        steps(&["T6"]),
    )));
    let g = build(&files);
    let out = run(&g, "GET", "/p/x", &[]);
    assert_eq!(out.status(), 200);
    assert_eq!(
        ran(&out),
        [
            "P1", "P2", "P3", "T1", "T2", "T3", "T4", "T5", "T6", "P4", "P5", "P6"
        ]
    );
    // Flows that do not match are skipped; the request goes on (no 404).
    let out = run(&g, "GET", "/p/other", &[]);
    assert_eq!(out.status(), 200);
    assert_eq!(
        ran(&out),
        ["P1", "P3", "T1", "T2", "T3", "T4", "T5", "T6", "P4", "P6"]
    );
}

#[test]
fn only_the_first_matching_flow_runs_and_its_response_part() {
    let mut files = all_policies(&["A", "B", "C", "RA", "RB"]);
    files.push(proxy(&format!(
        r#"<Flows>
          <Flow name="a"><Condition>request.verb = "POST"</Condition><Request>{}</Request><Response>{}</Response></Flow>
          <Flow name="b"><Condition>proxy.pathsuffix MatchesPath "/x/**"</Condition><Request>{}</Request><Response>{}</Response></Flow>
          <Flow name="c"><Request>{}</Request></Flow>
        </Flows>{CONN}{NULL_ROUTE}"#,
        steps(&["A"]),
        steps(&["RA"]),
        steps(&["B"]),
        steps(&["RB"]),
        steps(&["C"]),
    )));
    let g = build(&files);
    assert_eq!(ran(&run(&g, "GET", "/p/x/y", &[])), ["B", "RB"]);
    assert_eq!(ran(&run(&g, "POST", "/p/x/y", &[])), ["A", "RA"]);
    assert_eq!(ran(&run(&g, "GET", "/p/z", &[])), ["C"]);
    let out = run(&g, "GET", "/p/x/y", &[]);
    assert_eq!(
        g.variable(&out.exchange, "proxy.flow.name").as_deref(),
        Some("b")
    );
}

#[test]
fn longest_base_path_wins() {
    let files = vec![
        file("a/apiproxy/a.xml", r#"<APIProxy name="a"/>"#),
        file(
            "a/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection><RouteRule name="n"/></ProxyEndpoint>"#,
        ),
        file("b/apiproxy/b.xml", r#"<APIProxy name="b"/>"#),
        file(
            "b/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/v1/api/</BasePath></HTTPProxyConnection><RouteRule name="n"/></ProxyEndpoint>"#,
        ),
    ];
    let g = build(&files);
    let which = |p: &str| {
        let out = run(&g, "GET", p, &[]);
        (
            g.variable(&out.exchange, "apiproxy.name")
                .unwrap_or_default(),
            g.variable(&out.exchange, "proxy.pathsuffix")
                .unwrap_or_default(),
            g.variable(&out.exchange, "proxy.basepath")
                .unwrap_or_default(),
        )
    };
    assert_eq!(
        which("/v1/api/items"),
        ("b".into(), "/items".into(), "/v1/api".into())
    );
    assert_eq!(which("/v1/api"), ("b".into(), "".into(), "/v1/api".into()));
    assert_eq!(
        which("/v1/api/"),
        ("b".into(), "/".into(), "/v1/api".into())
    );
    assert_eq!(
        which("/v1/apix"),
        ("a".into(), "/apix".into(), "/v1".into())
    );
    let out = run(&g, "GET", "/v2", &[]);
    assert_eq!(out.status(), 404);
    assert_eq!(
        out.errorcode(),
        "messaging.adaptors.http.flow.ApplicationNotFound"
    );
    assert!(
        out.json()["fault"]["faultstring"]
            .as_str()
            .unwrap()
            .contains("Unable to identify proxy")
    );
}

#[test]
fn route_rules_first_match_null_route_and_route_failed() {
    let files = vec![
        proxy(&format!(
            r#"{CONN}
            <RouteRule name="none"><Condition>request.header.x = "null"</Condition></RouteRule>
            <RouteRule name="t"><Condition>request.header.x = "t"</Condition><TargetEndpoint>default</TargetEndpoint></RouteRule>
            <RouteRule name="t2"><Condition>request.header.x ~ "t*"</Condition><URL>http://other/o</URL></RouteRule>"#
        )),
        target(""),
    ];
    let g = build(&files);
    let out = run(&g, "GET", "/p/a?q=1", &[("x", "null")]);
    assert_eq!(out.status(), 200);
    assert!(out.forwarded.is_empty());
    let out = run(&g, "GET", "/p/a?q=1", &[("x", "t")]);
    assert_eq!(out.forwarded[0].uri(), "http://backend/b/a?q=1");
    assert_eq!(
        g.variable(&out.exchange, "route.name").as_deref(),
        Some("t")
    );
    let out = run(&g, "GET", "/p/a", &[("x", "tt")]);
    assert_eq!(out.forwarded[0].uri(), "http://other/o/a");
    let out = run(&g, "GET", "/p/a", &[]);
    assert_eq!(out.status(), 500);
    assert_eq!(out.errorcode(), "messaging.runtime.RouteFailed");
    assert_eq!(
        out.json()["fault"]["faultstring"],
        "Unable to route the message to a Target Endpoint"
    );
}

#[test]
fn step_conditions_and_disabled_policies() {
    let mut files = all_policies(&["A", "C"]);
    files.push(file(
        "apiproxy/policies/B.xml",
        r#"<AssignMessage name="B" enabled="false"><AssignVariable><Name>b</Name><Value>1</Value></AssignVariable></AssignMessage>"#,
    ));
    files.push(proxy(&format!(
        r#"<PreFlow><Request>
          <Step><Name>A</Name><Condition>request.header.go = "yes"</Condition></Step>
          <Step><Name>B</Name></Step>
          <Step><Name>C</Name></Step>
        </Request></PreFlow>{CONN}{NULL_ROUTE}"#
    )));
    let g = build(&files);
    assert_eq!(
        ran(&run(&g, "GET", "/p", &[("Go", "yes")])),
        ["A", "B:skipped (disabled)", "C"]
    );
    assert_eq!(
        ran(&run(&g, "GET", "/p", &[])),
        ["B:skipped (disabled)", "C"]
    );
}

#[test]
fn continue_on_error_marks_failed_and_goes_on() {
    let mut files = all_policies(&["After"]);
    files.push(file(
        "apiproxy/policies/Key.xml",
        r#"<VerifyAPIKey name="Key" continueOnError="true"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#,
    ));
    files.push(proxy(&format!(
        r#"<PreFlow><Request>{}<Step><Name>After</Name><Condition>verifyapikey.Key.failed = true</Condition></Step></Request></PreFlow>{CONN}{NULL_ROUTE}"#,
        steps(&["Key"])
    )));
    let g = build(&files);
    let out = run(&g, "GET", "/p?apikey=bad", &[]);
    assert_eq!(out.status(), 200);
    assert_eq!(
        ran(&out),
        ["Key:failed InvalidApiKey (continueOnError)", "After"]
    );
    assert_eq!(
        g.variable(&out.exchange, "verifyapikey.Key.failed")
            .as_deref(),
        Some("true")
    );
}

#[test]
fn error_state_skips_the_rest_and_renders_the_default_fault() {
    let mut files = all_policies(&["Before", "After", "Post"]);
    files.push(raise("Boom", 418, "teapot"));
    files.push(file(
        "apiproxy/policies/Key.xml",
        r#"<VerifyAPIKey name="Key"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#,
    ));
    files.push(proxy(&format!(
        r#"<PreFlow><Request>{}</Request></PreFlow><PostFlow><Request>{}</Request></PostFlow>{CONN}{TO_TARGET}"#,
        steps(&["Before", "Key", "After"]),
        steps(&["Post"])
    )));
    files.push(target(""));
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(out.status(), 401);
    assert_eq!(ran(&out), ["Before", "Key:fault FailedToResolveAPIKey"]);
    assert!(out.forwarded.is_empty());
    assert_eq!(
        out.json(),
        serde_json::json!({"fault":{"faultstring":"Failed to resolve API Key variable request.queryparam.apikey","detail":{"errorcode":"steps.oauth.v2.FailedToResolveAPIKey"}}})
    );
    // XML when the client asks for it.
    let out = run(&g, "GET", "/p", &[("accept", "application/xml")]);
    assert_eq!(
        out.body(),
        "<fault><faultstring>Failed to resolve API Key variable request.queryparam.apikey</faultstring><detail><errorcode>steps.oauth.v2.FailedToResolveAPIKey</errorcode></detail></fault>"
    );
    assert_eq!(
        out.header("content-type").as_deref(),
        Some("application/xml")
    );
}

fn fault_rules_bundle(default_rule: &str, target_rules: &str) -> preflow::Gateway {
    let mut files = all_policies(&["F1", "F2", "F3", "D", "TF1", "TF2", "TD"]);
    files.push(raise("Boom", 418, "teapot"));
    files.push(raise("Shape", 402, "shaped"));
    files.push(raise("Shape2", 403, "shaped again"));
    files.push(proxy(&format!(
        r#"<PreFlow><Request><Step><Name>Boom</Name><Condition>request.header.where = "proxy"</Condition></Step></Request></PreFlow>
        <FaultRules>
          <FaultRule name="first"><Step><Name>F1</Name></Step></FaultRule>
          <FaultRule name="second"><Condition>fault.name = "RaiseFault"</Condition><Step><Name>F2</Name></Step><Step><Name>Shape</Name><Condition>request.header.shape = "yes"</Condition></Step><Step><Name>Shape2</Name><Condition>request.header.shape2 = "yes"</Condition></Step></FaultRule>
          <FaultRule name="third"><Condition>fault.name = "Nothing"</Condition><Step><Name>F3</Name></Step></FaultRule>
        </FaultRules>
        {default_rule}{CONN}{TO_TARGET}"#
    )));
    files.push(target(&format!(
        r#"<PreFlow><Request><Step><Name>Boom</Name><Condition>request.header.where = "target"</Condition></Step></Request></PreFlow>{target_rules}"#
    )));
    build(&files)
}

#[test]
fn proxy_fault_rules_bottom_to_top_only_one() {
    let g = fault_rules_bundle("", "");
    let out = run(&g, "GET", "/p", &[("where", "proxy")]);
    // "third" does not match, "second" does and is the last match: it alone runs.
    assert_eq!(ran(&out), ["Boom:fault RaiseFault", "F2"]);
    assert_eq!(out.status(), 418);
    assert_eq!(out.body(), "teapot");
}

#[test]
fn raise_fault_in_a_fault_rule_shapes_the_response_and_later_steps_run() {
    let g = fault_rules_bundle("", "");
    let out = run(
        &g,
        "GET",
        "/p",
        &[("where", "proxy"), ("shape", "yes"), ("shape2", "yes")],
    );
    assert_eq!(
        ran(&out),
        [
            "Boom:fault RaiseFault",
            "F2",
            "Shape:raised RaiseFault",
            "Shape2:raised RaiseFault"
        ]
    );
    assert_eq!(out.status(), 403);
    assert_eq!(out.body(), "shaped again");
}

#[test]
fn default_fault_rule_runs_when_no_rule_matches_or_with_always_enforce() {
    // Without AlwaysEnforce: a FaultRule ran, so the DefaultFaultRule does not.
    let g = fault_rules_bundle(
        r#"<DefaultFaultRule name="d"><Step><Name>D</Name></Step></DefaultFaultRule>"#,
        "",
    );
    let out = run(&g, "GET", "/p", &[("where", "proxy")]);
    assert_eq!(ran(&out), ["Boom:fault RaiseFault", "F2"]);
    // With AlwaysEnforce it runs after the FaultRule…
    let g = fault_rules_bundle(
        r#"<DefaultFaultRule name="d"><AlwaysEnforce>true</AlwaysEnforce><Step><Name>D</Name></Step></DefaultFaultRule>"#,
        "",
    );
    let out = run(&g, "GET", "/p", &[("where", "proxy")]);
    assert_eq!(ran(&out), ["Boom:fault RaiseFault", "F2", "D"]);
    // …unless that FaultRule raised a fault.
    let out = run(&g, "GET", "/p", &[("where", "proxy"), ("shape", "yes")]);
    assert_eq!(
        ran(&out),
        ["Boom:fault RaiseFault", "F2", "Shape:raised RaiseFault"]
    );
    assert_eq!(out.status(), 402);
}

#[test]
fn target_fault_rules_top_to_bottom_then_proxy_default_with_always_enforce() {
    let target_rules = r#"<FaultRules>
        <FaultRule name="t1"><Condition>fault.name = "RaiseFault"</Condition><Step><Name>TF1</Name></Step></FaultRule>
        <FaultRule name="t2"><Step><Name>TF2</Name></Step></FaultRule>
      </FaultRules>
      <DefaultFaultRule name="td"><Step><Name>TD</Name></Step></DefaultFaultRule>"#;
    let g = fault_rules_bundle(
        r#"<DefaultFaultRule name="d"><AlwaysEnforce>true</AlwaysEnforce><Step><Name>D</Name></Step></DefaultFaultRule>"#,
        target_rules,
    );
    let out = run(&g, "GET", "/p", &[("where", "target")]);
    // Target: the first matching rule (top to bottom); proxy FaultRules do not run; the
    // proxy DefaultFaultRule with AlwaysEnforce does.
    assert_eq!(ran(&out), ["Boom:fault RaiseFault", "TF1", "D"]);
    assert!(out.forwarded.is_empty());
    let g = fault_rules_bundle(
        r#"<DefaultFaultRule name="d"><Step><Name>D</Name></Step></DefaultFaultRule>"#,
        target_rules,
    );
    let out = run(&g, "GET", "/p", &[("where", "target")]);
    assert_eq!(ran(&out), ["Boom:fault RaiseFault", "TF1"]);
}

#[test]
fn a_fault_rule_whose_steps_do_not_run_gives_the_default_message() {
    let mut files = all_policies(&["D", "F"]);
    files.push(raise("Boom", 418, "teapot"));
    files.push(file(
        "apiproxy/policies/Key.xml",
        r#"<VerifyAPIKey name="Key"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#,
    ));
    files.push(proxy(&format!(
        r#"<PreFlow><Request>{}</Request></PreFlow>
        <FaultRules><FaultRule name="r"><Step><Name>F</Name><Condition>false</Condition></Step></FaultRule></FaultRules>
        <DefaultFaultRule name="d"><Step><Name>D</Name></Step></DefaultFaultRule>{CONN}{NULL_ROUTE}"#,
        steps(&["Key"])
    )));
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(ran(&out), ["Key:fault FailedToResolveAPIKey"]);
    assert_eq!(out.status(), 401);
    assert_eq!(out.errorcode(), "steps.oauth.v2.FailedToResolveAPIKey");
}

#[test]
fn fault_variables_reach_the_default_fault_rule() {
    let files = vec![
        raise("Boom", 418, "teapot"),
        file(
            "apiproxy/policies/Custom.xml",
            r#"<RaiseFault name="Custom"><FaultResponse><Set><Headers><Header name="x-fault">{fault.name}</Header></Headers><Payload contentType="application/json">{"status":{error.status.code},"state":"{error.state}"}</Payload><StatusCode>{error.status.code}</StatusCode></Set></FaultResponse></RaiseFault>"#,
        ),
        file(
            "apiproxy/policies/Key.xml",
            r#"<VerifyAPIKey name="Key"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#,
        ),
        proxy(&format!(
            r#"<PreFlow><Request>{}</Request></PreFlow>
            <DefaultFaultRule name="d"><AlwaysEnforce>true</AlwaysEnforce><Step><Name>Custom</Name></Step></DefaultFaultRule>{CONN}{NULL_ROUTE}"#,
            steps(&["Key"])
        )),
    ];
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(out.status(), 401);
    assert_eq!(
        out.header("x-fault").as_deref(),
        Some("FailedToResolveAPIKey")
    );
    assert_eq!(out.body(), r#"{"status":401,"state":"PROXY_REQ_FLOW"}"#);
}

#[test]
fn target_errors() {
    let mut files = all_policies(&["TR"]);
    files.push(proxy(&format!("{CONN}{TO_TARGET}")));
    files.push(target(&format!(
        "<PostFlow><Response>{}</Response></PostFlow>",
        steps(&["TR"])
    )));
    let g = build(&files);
    let out = run_at(&g, request("GET", "/p", &[], ""), at(0.0), |_| {
        Ok(http::Response::builder()
            .status(503)
            .body(bytes::Bytes::from_static(b"backend down"))
            .unwrap())
    });
    // The target's own error response reaches the client; response flows do not run.
    assert_eq!(out.status(), 503);
    assert_eq!(out.body(), "backend down");
    assert_eq!(out.exchange.fault_name(), Some("ErrorResponseCode"));
    assert!(ran(&out).is_empty());
    let out = run_at(&g, request("GET", "/p", &[], ""), at(0.0), |_| {
        Err(preflow::TargetError::Connect("refused".into()))
    });
    assert_eq!(out.status(), 503);
    assert_eq!(
        out.errorcode(),
        "messaging.adaptors.http.flow.ServiceUnavailable"
    );
    let out = run_at(&g, request("GET", "/p", &[], ""), at(0.0), |_| {
        Err(preflow::TargetError::Timeout)
    });
    assert_eq!(out.status(), 504);
    assert_eq!(
        out.errorcode(),
        "messaging.adaptors.http.flow.GatewayTimeout"
    );
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(ran(&out), ["TR"]);
}

#[test]
fn post_client_flow_runs_after_the_response() {
    let mut files = all_policies(&["Log"]);
    files.push(proxy(&format!(
        "<PostClientFlow><Response>{}</Response></PostClientFlow>{CONN}{NULL_ROUTE}",
        steps(&["Log"])
    )));
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(ran(&out), ["Log"]);
    assert_eq!(out.status(), 200);
}

#[test]
fn missing_and_unsupported_policies_fault_when_reached() {
    let files = [
        file(
            "apiproxy/policies/JS.xml",
            r#"<JavaCallout name="JS"><ClassName>x.Y</ClassName><ResourceURL>java://x.jar</ResourceURL></JavaCallout>"#,
        ),
        proxy(&format!(
            r#"<PreFlow><Request>
              <Step><Name>NotThere</Name><Condition>request.header.a = "1"</Condition></Step>
              <Step><Name>JS</Name><Condition>request.header.b = "1"</Condition></Step>
            </Request></PreFlow>{CONN}{NULL_ROUTE}"#
        )),
    ];
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let loaded = preflow::load_files(refs, &preflow::LoadOptions::default());
    let g = preflow::Gateway::builder().bundles(loaded).build().unwrap();
    assert_eq!(run(&g, "GET", "/p", &[]).status(), 200);
    let out = run(&g, "GET", "/p", &[("a", "1")]);
    assert_eq!(out.status(), 500);
    assert!(out.body().contains("NotThere"), "{}", out.body());
    let out = run(&g, "GET", "/p", &[("b", "1")]);
    assert_eq!(out.status(), 500);
    assert!(out.body().contains("JavaCallout"), "{}", out.body());
}

#[test]
fn flow_callout_runs_the_shared_flow_inline() {
    let files = vec![
        file("proxy/apiproxy/p.xml", r#"<APIProxy name="p"/>"#),
        file(
            "proxy/apiproxy/proxies/default.xml",
            &format!(
                r#"<ProxyEndpoint name="default"><PreFlow><Request>{}</Request></PreFlow>{CONN}{NULL_ROUTE}</ProxyEndpoint>"#,
                steps(&["FC", "After"])
            ),
        ),
        file(
            "proxy/apiproxy/policies/FC.xml",
            r#"<FlowCallout name="FC"><SharedFlowBundle>common</SharedFlowBundle><Parameters><Parameter name="greeting" value="hi"/></Parameters></FlowCallout>"#,
        ),
        file(
            "proxy/apiproxy/policies/After.xml",
            r#"<AssignMessage name="After"><Set><Payload contentType="text/plain">{greeting} {shared.ran}</Payload></Set><AssignTo createNew="false" type="response"/></AssignMessage>"#,
        ),
        file(
            "shared/sharedflowbundle/common.xml",
            r#"<SharedFlowBundle name="common"/>"#,
        ),
        file(
            "shared/sharedflowbundle/sharedflows/default.xml",
            r#"<SharedFlow name="default"><Step><Name>Mark</Name></Step></SharedFlow>"#,
        ),
        file(
            "shared/sharedflowbundle/policies/Mark.xml",
            r#"<AssignMessage name="Mark"><AssignVariable><Name>shared.ran</Name><Value>yes</Value></AssignVariable></AssignMessage>"#,
        ),
    ];
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(ran(&out), ["FC:flow callout", "Mark", "After"]);
    assert_eq!(out.body(), "hi yes");
}

#[test]
fn recursive_flow_callouts_are_bounded() {
    let files = vec![
        file("proxy/apiproxy/p.xml", r#"<APIProxy name="p"/>"#),
        file(
            "proxy/apiproxy/proxies/default.xml",
            &format!(
                r#"<ProxyEndpoint name="default"><PreFlow><Request>{}</Request></PreFlow>{CONN}{NULL_ROUTE}</ProxyEndpoint>"#,
                steps(&["FC"])
            ),
        ),
        file(
            "proxy/apiproxy/policies/FC.xml",
            r#"<FlowCallout name="FC"><SharedFlowBundle>loop</SharedFlowBundle></FlowCallout>"#,
        ),
        file(
            "shared/sharedflowbundle/loop.xml",
            r#"<SharedFlowBundle name="loop"/>"#,
        ),
        file(
            "shared/sharedflowbundle/sharedflows/default.xml",
            r#"<SharedFlow name="default"><Step><Name>Again</Name></Step></SharedFlow>"#,
        ),
        file(
            "shared/sharedflowbundle/policies/Again.xml",
            r#"<FlowCallout name="Again"><SharedFlowBundle>loop</SharedFlowBundle></FlowCallout>"#,
        ),
    ];
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(out.status(), 500);
    assert!(out.body().contains("deeper"), "{}", out.body());
}

#[test]
fn flow_variables() {
    let files = vec![proxy(&format!("{CONN}{TO_TARGET}")), target("")];
    let g = build(&files);
    let out = run(
        &g,
        "POST",
        "/p/a/b?x=1&x=2&y=%20z",
        &[("X-Multi", "a, b"), ("x-multi", "c")],
    );
    let v = |n: &str| g.variable(&out.exchange, n);
    assert_eq!(v("request.verb").as_deref(), Some("POST"));
    assert_eq!(v("request.uri").as_deref(), Some("/p/a/b?x=1&x=2&y=%20z"));
    assert_eq!(v("request.path").as_deref(), Some("/p/a/b"));
    assert_eq!(v("request.querystring").as_deref(), Some("x=1&x=2&y=%20z"));
    assert_eq!(v("request.queryparam.x").as_deref(), Some("1"));
    assert_eq!(v("request.queryparam.x.values.count").as_deref(), Some("2"));
    assert_eq!(v("request.queryparam.y").as_deref(), Some(" z"));
    assert_eq!(v("request.header.x-multi").as_deref(), Some("a"));
    assert_eq!(
        v("request.header.X-MULTI.values.count").as_deref(),
        Some("3")
    );
    assert_eq!(v("proxy.pathsuffix").as_deref(), Some("/a/b"));
    assert_eq!(v("client.ip").as_deref(), Some("192.0.2.7"));
    assert_eq!(v("client.port").as_deref(), Some("4000"));
    assert_eq!(v("client.scheme").as_deref(), Some("http"));
    assert_eq!(v("route.name").as_deref(), Some("t"));
    assert_eq!(
        v("target.url").as_deref(),
        Some("http://backend/b/a/b?x=1&x=2&y=%20z")
    );
    assert_eq!(v("response.status.code").as_deref(), Some("200"));
    assert_eq!(v("response.header.x-backend").as_deref(), Some("yes"));
    assert_eq!(
        v("response.content").as_deref(),
        Some("Hello world from IFlow")
    );
    assert_eq!(v("environment.name").as_deref(), Some("prod"));
    assert_eq!(v("is.error").as_deref(), Some("false"));
    assert_eq!(v("fault.name"), None);
}

#[test]
fn a_fault_inside_fault_handling_stops_and_answers_with_it() {
    let mut files = all_policies(&["After"]);
    files.push(raise("Boom", 418, "teapot"));
    files.push(file(
        "apiproxy/policies/Strict.xml",
        r#"<AssignMessage name="Strict"><Set><Headers><Header name="x">{not.set}</Header></Headers></Set></AssignMessage>"#,
    ));
    files.push(proxy(&format!(
        r#"<PreFlow><Request>{}</Request></PreFlow>
        <FaultRules><FaultRule name="r"><Step><Name>Strict</Name></Step><Step><Name>After</Name></Step></FaultRule></FaultRules>{CONN}{NULL_ROUTE}"#,
        steps(&["Boom"])
    )));
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(
        ran(&out),
        ["Boom:fault RaiseFault", "Strict:fault UnresolvedVariable"]
    );
    assert_eq!(out.status(), 500);
    assert_eq!(out.errorcode(), "steps.assignmessage.UnresolvedVariable");
}

#[test]
fn post_client_flow_also_runs_after_an_error() {
    let mut files = all_policies(&["Log"]);
    files.push(raise("Boom", 418, "teapot"));
    files.push(proxy(&format!(
        "<PreFlow><Request>{}</Request></PreFlow><PostClientFlow><Response>{}</Response></PostClientFlow>{CONN}{NULL_ROUTE}",
        steps(&["Boom"]),
        steps(&["Log"])
    )));
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(ran(&out), ["Boom:fault RaiseFault", "Log"]);
    assert_eq!(out.status(), 418);
}

#[test]
fn message_is_the_error_in_fault_rules_and_the_response_on_the_way_back() {
    let files = vec![
        raise("Boom", 418, "teapot"),
        file(
            "apiproxy/policies/Tag.xml",
            r#"<AssignMessage name="Tag"><Add><Headers><Header name="x-seen">{message.status.code}</Header></Headers></Add></AssignMessage>"#,
        ),
        proxy(&format!(
            r#"<PreFlow><Request><Step><Name>Boom</Name><Condition>request.header.fail = "1"</Condition></Step></Request><Response><Step><Name>Tag</Name></Step></Response></PreFlow>
            <FaultRules><FaultRule name="r"><Step><Name>Tag</Name></Step></FaultRule></FaultRules>{CONN}{TO_TARGET}"#
        )),
        target(""),
    ];
    let g = build(&files);
    let out = run(&g, "GET", "/p", &[("fail", "1")]);
    assert_eq!(out.status(), 418);
    assert_eq!(out.header("x-seen").as_deref(), Some("418"));
    let out = run(&g, "GET", "/p", &[]);
    assert_eq!(out.status(), 200);
    assert_eq!(out.header("x-seen").as_deref(), Some("200"));
    assert_eq!(out.header("x-backend").as_deref(), Some("yes"));
}

#[test]
fn target_default_fault_rule_runs_when_no_target_rule_matches() {
    let target_rules = r#"<FaultRules><FaultRule name="t1"><Condition>fault.name = "Other"</Condition><Step><Name>TF1</Name></Step></FaultRule></FaultRules>
      <DefaultFaultRule name="td"><Step><Name>TD</Name></Step></DefaultFaultRule>"#;
    let g = fault_rules_bundle("", target_rules);
    let out = run(&g, "GET", "/p", &[("where", "target")]);
    assert_eq!(ran(&out), ["Boom:fault RaiseFault", "TD"]);
}

#[test]
fn framing_headers_follow_the_buffered_bodies() {
    let files = vec![
        file(
            "apiproxy/policies/Body.xml",
            r#"<AssignMessage name="Body"><Set><Payload contentType="text/plain">a longer body than the target's</Payload></Set></AssignMessage>"#,
        ),
        proxy(&format!(
            "<PostFlow><Response>{}</Response></PostFlow>{CONN}{TO_TARGET}",
            steps(&["Body"])
        )),
        target(""),
    ];
    let g = build(&files);
    let out = run_at(
        &g,
        request(
            "POST",
            "/p",
            &[
                ("connection", "keep-alive, x-private"),
                ("x-private", "1"),
                ("transfer-encoding", "chunked"),
                ("content-length", "999"),
            ],
            "hello",
        ),
        at(0.0),
        |_| {
            Ok(http::Response::builder()
                .header("content-length", "2")
                .header("transfer-encoding", "chunked")
                .body(bytes::Bytes::from_static(b"ok"))
                .unwrap())
        },
    );
    let sent = &out.forwarded[0];
    assert_eq!(sent.headers()["content-length"], "5");
    assert!(sent.headers().get("connection").is_none());
    assert!(sent.headers().get("x-private").is_none());
    assert!(sent.headers().get("transfer-encoding").is_none());
    assert_eq!(out.body(), "a longer body than the target's");
    assert_eq!(out.header("content-length").as_deref(), Some("31"));
    assert_eq!(out.header("transfer-encoding"), None);
}
