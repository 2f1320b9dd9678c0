//! Unit tests of bundle loading and the endpoint model, on small hand-written bundles.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use preflow::*;
use std::io::Write;

fn load(files: &[(&str, &str)]) -> Loaded {
    load_files(files.iter().copied(), &LoadOptions::default())
}

fn messages(loaded: &Loaded) -> Vec<String> {
    loaded.diagnostics.iter().map(ToString::to_string).collect()
}

const SA: (&str, &str) = (
    "apiproxy/policies/SA.xml",
    r#"<SpikeArrest name="SA"><Rate>10ps</Rate></SpikeArrest>"#,
);
const RF: (&str, &str) = (
    "apiproxy/policies/RF.xml",
    r#"<RaiseFault name="RF"><FaultResponse><Set><StatusCode>404</StatusCode></Set></FaultResponse></RaiseFault>"#,
);

const PROXY: &str = r#"<ProxyEndpoint name="default">
    <Description>the API</Description>
    <PreFlow name="PreFlow">
        <Request><Step><Name>SA</Name></Step></Request>
        <Response/>
    </PreFlow>
    <Flows>
        <Flow name="items">
            <Condition>(proxy.pathsuffix MatchesPath "/items") and (request.verb = "GET")</Condition>
            <Request/>
            <Response><Step><Condition>response.status.code = 200</Condition><Name>SA</Name>
                <FaultRules><FaultRule name="inner"><Step><Name>RF</Name></Step></FaultRule></FaultRules></Step></Response>
        </Flow>
        <Flow name="no-match"><Request><Step><Name>RF</Name></Step></Request></Flow>
    </Flows>
    <PostFlow name="PostFlow"><Request/><Response/></PostFlow>
    <PostClientFlow><Response><Step><Name>SA</Name></Step></Response></PostClientFlow>
    <FaultRules>
        <FaultRule name="quota"><Condition>fault.name = "SpikeArrestViolation"</Condition><Step><Name>RF</Name></Step></FaultRule>
    </FaultRules>
    <DefaultFaultRule name="all"><Step><Name>RF</Name></Step><AlwaysEnforce>true</AlwaysEnforce></DefaultFaultRule>
    <HTTPProxyConnection><BasePath>/v1/items</BasePath><VirtualHost>secure</VirtualHost></HTTPProxyConnection>
    <RouteRule name="mock"><Condition>request.header.mock = "true"</Condition><URL>https://mock.example.com</URL></RouteRule>
    <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
    <RouteRule name="none"/>
</ProxyEndpoint>"#;

const TARGET: &str = r#"<TargetEndpoint name="default">
    <PreFlow><Request><Step><Name>SA</Name></Step></Request></PreFlow>
    <FaultRules><FaultRule name="t"><Step><Name>RF</Name></Step></FaultRule></FaultRules>
    <HTTPTargetConnection><URL>https://backend.example.com/api</URL>
        <Properties><Property name="io.timeout.millis">5000</Property></Properties></HTTPTargetConnection>
</TargetEndpoint>"#;

#[test]
fn loads_a_full_proxy() {
    let loaded = load(&[
        (
            "apiproxy/items.xml",
            r#"<APIProxy name="items" revision="3"><Description>Items</Description><DisplayName>Items API</DisplayName></APIProxy>"#,
        ),
        ("apiproxy/proxies/default.xml", PROXY),
        ("apiproxy/targets/default.xml", TARGET),
        SA,
        RF,
    ]);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", messages(&loaded));
    let b = &loaded.bundles[0];
    assert_eq!(
        (b.kind, b.name.as_str(), b.revision.as_deref()),
        (BundleKind::ApiProxy, "items", Some("3"))
    );
    assert_eq!(b.description.as_deref(), Some("Items"));
    assert_eq!(b.display_name.as_deref(), Some("Items API"));
    assert_eq!(b.base_paths().collect::<Vec<_>>(), ["/v1/items"]);
    assert_eq!(b.policies.len(), 2);

    let p = &b.proxy_endpoints[0];
    assert_eq!(p.name, "default");
    assert_eq!(p.description.as_deref(), Some("the API"));
    assert_eq!(p.virtual_hosts, ["secure"]);
    assert_eq!(p.pre_flow.request[0].policy, "SA");
    assert_eq!(p.flows.len(), 2);
    let items = &p.flows[0];
    let cond = items.condition.as_ref().unwrap();
    assert_eq!(
        cond.text,
        r#"(proxy.pathsuffix MatchesPath "/items") and (request.verb = "GET")"#
    );
    assert!(cond.ast().is_some_and(|a| a.expr.is_some()));
    assert_eq!((cond.location.line, cond.location.column), (9, 24));
    let step = &items.response[0];
    assert_eq!(
        step.condition.as_ref().unwrap().text,
        "response.status.code = 200"
    );
    assert_eq!(step.fault_rules[0].steps[0].policy, "RF");
    assert!(p.flows[1].condition.is_none());
    assert_eq!(
        p.post_client_flow.as_ref().unwrap().response[0].policy,
        "SA"
    );
    assert_eq!(p.fault_rules[0].name, "quota");
    assert!(p.fault_rules[0].condition.is_some());
    let dfr = p.default_fault_rule.as_ref().unwrap();
    assert!(dfr.always_enforce);
    assert_eq!(dfr.steps[0].policy, "RF");
    assert_eq!(
        p.route_rules
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>(),
        [
            RouteTarget::Url("https://mock.example.com".into()),
            RouteTarget::TargetEndpoint("default".into()),
            RouteTarget::Null
        ]
    );
    assert!(p.route_rules[0].condition.is_some() && p.route_rules[2].condition.is_none());

    let t = &b.target_endpoints[0];
    let TargetConnection::Http(http) = &t.connection else {
        panic!()
    };
    assert_eq!(http.url.as_deref(), Some("https://backend.example.com/api"));
    assert_eq!(
        http.properties,
        [("io.timeout.millis".to_owned(), "5000".to_owned())]
    );
    assert_eq!(t.fault_rules[0].steps[0].policy, "RF");
    assert_eq!(b.all_steps().len(), 9);
}

#[test]
fn step_naming_a_missing_policy_is_a_warning_at_the_step() {
    let loaded = load(&[
        (
            "apiproxy/proxies/default.xml",
            "<ProxyEndpoint name=\"default\">\n  <PreFlow><Request>\n    <Step><Name>Missing</Name></Step></Request></PreFlow>\n  <HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection><RouteRule name=\"r\"/></ProxyEndpoint>",
        ),
        SA,
    ]);
    assert_eq!(
        messages(&loaded),
        [
            "apiproxy/proxies/default.xml:3:5: warning: step names policy `Missing`, which is not in the bundle; reaching the step raises fault `PolicyNotFound`"
        ]
    );
    let rendered = loaded.diagnostics[0].render();
    assert!(
        rendered
            .contains("3 |     <Step><Name>Missing</Name></Step></Request></PreFlow>\n  |     ^"),
        "{rendered}"
    );
    let loaded = load(&[
        (
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><PreFlow><Request><Step><Name>sa</Name></Step></Request></PreFlow><HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection></ProxyEndpoint>"#,
        ),
        SA,
    ]);
    assert_eq!(
        loaded.diagnostics[0].hint.as_deref(),
        Some("did you mean `SA`?")
    );
}

#[test]
fn condition_errors_point_into_the_file() {
    let proxy = "<ProxyEndpoint name=\"default\">\n  <Flows><Flow name=\"f\">\n    <Condition>\n      proxy.pathsuffix /~ &quot;/x&quot;</Condition>\n  </Flow></Flows>\n  <HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection>\n</ProxyEndpoint>";
    let loaded = load(&[("apiproxy/proxies/default.xml", proxy)]);
    assert!(!loaded.has_errors(), "{:?}", messages(&loaded));
    let warnings: Vec<_> = loaded.warnings().collect();
    assert_eq!(warnings.len(), 1, "{:?}", messages(&loaded));
    let w = warnings[0];
    assert_eq!((w.location.line, w.location.column), (4, 24), "{w}");
    assert!(
        w.message
            .starts_with("invalid condition: unknown operator `/~`"),
        "{w}"
    );
    assert!(w.render().contains("proxy.pathsuffix /~"), "{}", w.render());
}

/// A proxy whose second flow's condition does not parse (line 6, column 45), with a
/// first flow that matches `/ok` and answers before flow selection reaches it.
const INVALID_FLOW_PROXY: &str = "<ProxyEndpoint name=\"default\">
  <Flows>
    <Flow name=\"ok\"><Condition>proxy.pathsuffix = &quot;/ok&quot;</Condition>
      <Request><Step><Name>RF</Name></Step></Request></Flow>
    <Flow name=\"broken\">
      <Request/><Condition>proxy.pathsuffix /~ &quot;/x&quot;</Condition>
    </Flow>
  </Flows>
  <HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection>
  <RouteRule name=\"none\"/>
</ProxyEndpoint>";

fn run_get(g: &Gateway, uri: &str) -> http::Response<bytes::Bytes> {
    let req = http::Request::builder()
        .method("GET")
        .uri(uri)
        .body(bytes::Bytes::new())
        .unwrap();
    let mut ex = g.begin(
        req,
        Client::http("192.0.2.7:4000".parse().unwrap()),
        std::time::SystemTime::UNIX_EPOCH,
    );
    // No target is routed to and no state is remote: the first step answers.
    match g.step(&mut ex) {
        Step::Respond(response) => response,
        other => panic!("unexpected step {other:?}"),
    }
}

#[test]
fn invalid_flow_condition_warns_at_load_and_faults_when_reached() {
    let loaded = load(&[("apiproxy/proxies/default.xml", INVALID_FLOW_PROXY), RF]);
    assert!(!loaded.has_errors(), "{:?}", messages(&loaded));
    assert_eq!(
        messages(&loaded),
        [
            "apiproxy/proxies/default.xml:6:45: warning: invalid condition: unknown operator `/~`; this flow faults with `ConditionInvalid` when flow selection reaches it"
        ]
    );
    assert_eq!(
        loaded.diagnostics[0].hint.as_deref(),
        Some("use `~/` (MatchesPath)")
    );
    let flow = &loaded.bundles[0].proxy_endpoints[0].flows[1];
    let cond = flow.condition.as_ref().unwrap();
    assert_eq!(cond.text, r#"proxy.pathsuffix /~ "/x""#);
    assert!(cond.ast().is_none() && cond.compiled().is_none());
    assert_eq!(cond.invalid(), Some("unknown operator `/~`"));

    let g = Gateway::builder().bundles(loaded).build().unwrap();
    // Matched by the earlier flow: flow selection never reaches the invalid condition.
    let ok = run_get(&g, "/a/ok");
    assert_eq!(ok.status(), 404);
    // Anything else reaches it: a fault, neither a match nor a miss.
    for uri in ["/a/x", "/a/other"] {
        let r = run_get(&g, uri);
        assert_eq!(r.status(), 500, "{uri}");
        let body = String::from_utf8_lossy(r.body()).into_owned();
        assert!(
            body.contains("messaging.runtime.ConditionInvalid"),
            "{uri}: {body}"
        );
        assert!(
            body.contains(r#"Condition `proxy.pathsuffix /~ \"/x\"` is invalid and cannot be evaluated: unknown operator `/~`"#),
            "{uri}: {body}"
        );
    }
}

#[test]
fn invalid_step_route_and_fault_rule_conditions_fault() {
    let with = |pre: &str, rules: &str, route: &str| {
        format!(
            "<ProxyEndpoint name=\"default\"><PreFlow><Request>{pre}</Request></PreFlow>\
             <FaultRules>{rules}</FaultRules>\
             <HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection>{route}</ProxyEndpoint>"
        )
    };
    let bad = "<Condition>true = false</Condition>";
    let cases = [
        // A step condition.
        with(
            &format!("<Step>{bad}<Name>SA</Name></Step>"),
            "",
            "<RouteRule name=\"none\"/>",
        ),
        // A route rule condition.
        with(
            "",
            "",
            &format!("<RouteRule name=\"r\">{bad}</RouteRule><RouteRule name=\"none\"/>"),
        ),
        // A fault rule condition, reached by the fault RF raises.
        with(
            "<Step><Name>RF</Name></Step>",
            &format!("<FaultRule name=\"f\">{bad}<Step><Name>SA</Name></Step></FaultRule>"),
            "<RouteRule name=\"none\"/>",
        ),
    ];
    for proxy in &cases {
        let loaded = load(&[("apiproxy/proxies/default.xml", proxy), SA, RF]);
        assert!(!loaded.has_errors(), "{:?}", messages(&loaded));
        assert_eq!(loaded.warnings().count(), 1, "{:?}", messages(&loaded));
        let g = Gateway::builder().bundles(loaded).build().unwrap();
        let r = run_get(&g, "/a/x");
        assert_eq!(r.status(), 500, "{proxy}");
        let body = String::from_utf8_lossy(r.body()).into_owned();
        assert!(
            body.contains("messaging.runtime.ConditionInvalid")
                && body.contains("Condition `true = false` is invalid"),
            "{proxy}: {body}"
        );
    }
}

#[test]
fn unknown_elements_warn_and_duplicates_fail() {
    let proxy = r#"<ProxyEndpoint name="default"><Bogus/><Flows/><Flows/><HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection></ProxyEndpoint>"#;
    let loaded = load(&[("apiproxy/proxies/default.xml", proxy)]);
    let m = messages(&loaded);
    assert!(
        m.iter()
            .any(|m| m.contains("warning: unknown element `<Bogus>` in `<ProxyEndpoint>`")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|m| m.contains("error: more than one `<Flows>`")),
        "{m:?}"
    );
}

#[test]
fn placeholders_are_warnings() {
    let target = r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>@TARGETURL@</URL></HTTPTargetConnection></TargetEndpoint>"#;
    let proxy = r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/${basepath}</BasePath></HTTPProxyConnection><RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#;
    let loaded = load(&[
        ("apiproxy/proxies/default.xml", proxy),
        ("apiproxy/targets/default.xml", target),
    ]);
    assert!(!loaded.has_errors(), "{:?}", messages(&loaded));
    assert_eq!(loaded.warnings().count(), 2, "{:?}", messages(&loaded));
}

#[test]
fn route_rule_to_missing_target_is_an_error() {
    let proxy = r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection><RouteRule name="r"><TargetEndpoint>nowhere</TargetEndpoint></RouteRule></ProxyEndpoint>"#;
    let loaded = load(&[("apiproxy/proxies/default.xml", proxy)]);
    assert!(messages(&loaded)[0].contains("target endpoint `nowhere`, which is not in the bundle"));
}

#[test]
fn target_connections() {
    let lb = r#"<TargetEndpoint name="lb"><HTTPTargetConnection><LoadBalancer><Algorithm>RoundRobin</Algorithm>
        <Server name="a"><Weight>2</Weight></Server><Server name="b"><IsFallback>true</IsFallback></Server><MaxFailures>5</MaxFailures>
        </LoadBalancer><Path>/v1</Path></HTTPTargetConnection></TargetEndpoint>"#;
    let local = r#"<TargetEndpoint name="local"><LocalTargetConnection><APIProxy>other</APIProxy><ProxyEndpoint>default</ProxyEndpoint></LocalTargetConnection></TargetEndpoint>"#;
    let proxy = r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection></ProxyEndpoint>"#;
    let loaded = load(&[
        ("apiproxy/proxies/default.xml", proxy),
        ("apiproxy/targets/lb.xml", lb),
        ("apiproxy/targets/local.xml", local),
    ]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", messages(&loaded));
    let b = &loaded.bundles[0];
    let TargetConnection::Http(http) = &b.target_endpoint("lb").unwrap().connection else {
        panic!()
    };
    let balancer = http.load_balancer.as_ref().unwrap();
    assert_eq!(balancer.servers.len(), 2);
    assert_eq!(balancer.servers[0].weight, Some(2));
    assert!(balancer.servers[1].is_fallback);
    assert_eq!(balancer.max_failures, Some(5));
    assert_eq!(http.path.as_deref(), Some("/v1"));
    let TargetConnection::Local(l) = &b.target_endpoint("local").unwrap().connection else {
        panic!()
    };
    assert_eq!(
        (l.api_proxy.as_deref(), l.proxy_endpoint.as_deref()),
        (Some("other"), Some("default"))
    );
}

#[test]
fn shared_flows() {
    let loaded = load(&[
        (
            "sf/sharedflowbundle/common.xml",
            r#"<SharedFlowBundle name="common" revision="1"/>"#,
        ),
        (
            "sf/sharedflowbundle/sharedflows/default.xml",
            r#"<SharedFlow name="default"><Step><Condition>a = "b"</Condition><Name>SA</Name></Step></SharedFlow>"#,
        ),
        ("sf/sharedflowbundle/policies/SA.xml", SA.1),
    ]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", messages(&loaded));
    let b = &loaded.bundles[0];
    assert_eq!(
        (b.kind, b.name.as_str(), b.root.as_str()),
        (BundleKind::SharedFlow, "common", "sf/sharedflowbundle")
    );
    assert_eq!(b.shared_flows[0].steps[0].policy, "SA");
    assert!(b.shared_flows[0].steps[0].condition.is_some());
    let empty = load(&[("x/sharedflowbundle/policies/SA.xml", SA.1)]);
    assert!(
        messages(&empty)[0].contains("has no shared flow"),
        "{:?}",
        messages(&empty)
    );
}

#[test]
fn several_bundles_and_names() {
    let proxy = r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection></ProxyEndpoint>"#;
    let loaded = load(&[
        ("one/apiproxy/proxies/default.xml", proxy),
        ("two/apiproxy/proxies/default.xml", proxy),
        ("two/apiproxy/policies/Other.xml", SA.1),
        ("README.md", "not a bundle"),
    ]);
    assert_eq!(
        loaded
            .bundles
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    let m = messages(&loaded);
    assert_eq!(
        m,
        ["two/apiproxy/policies/Other.xml:1:1: warning: policy `SA` is in a file named `Other`"]
    );
}

#[test]
fn wrong_roots_and_broken_xml() {
    let loaded = load(&[
        (
            "apiproxy/proxies/default.xml",
            r#"<SpikeArrest name="SA"><Rate>1ps</Rate></SpikeArrest>"#,
        ),
        (
            "apiproxy/targets/t.xml",
            "<TargetEndpoint name=\"t\">\n<PreFlow>",
        ),
    ]);
    let m = messages(&loaded);
    assert!(m.iter().any(|m| m.starts_with("apiproxy/proxies/default.xml:1:1: error: expected `<ProxyEndpoint>`, found `<SpikeArrest>`")), "{m:?}");
    assert!(
        m.iter()
            .any(|m| m.starts_with("apiproxy/targets/t.xml:2:1: error: ")),
        "{m:?}"
    );
    assert!(m.iter().any(|m| m.contains("no proxy endpoint")), "{m:?}");
}

#[test]
fn limits_are_clear_errors() {
    let options = LoadOptions {
        limits: Limits {
            max_file_size: 10,
            max_files: 2,
            ..Limits::default()
        },
        ..LoadOptions::default()
    };
    let loaded = load_files(
        [
            ("apiproxy/proxies/a.xml", "<ProxyEndpoint name=\"a\"/>"),
            SA,
            RF,
        ],
        &options,
    );
    let m = messages(&loaded);
    assert!(
        m.iter()
            .any(|m| m.contains("larger than the limit of 10 bytes")),
        "{m:?}"
    );
    assert!(m.iter().any(|m| m.contains("more than 2 files")), "{m:?}");
    let options = LoadOptions {
        limits: Limits {
            max_total_size: 60,
            ..Limits::default()
        },
        ..LoadOptions::default()
    };
    let loaded = load_files([SA, RF], &options);
    assert!(
        messages(&loaded)
            .iter()
            .any(|m| m.contains("add up to more than the limit of 60 bytes")),
        "{:?}",
        messages(&loaded)
    );
    let deep = format!(
        "<ProxyEndpoint name=\"a\">{}{}</ProxyEndpoint>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    let loaded = load(&[("apiproxy/proxies/a.xml", &deep)]);
    assert!(
        messages(&loaded)[0].contains("nest deeper than the limit of 64"),
        "{:?}",
        messages(&loaded)
    );
}

#[test]
fn folders_and_zips_load_the_same_bundle() {
    let dir = std::env::temp_dir().join(format!("preflow-bundle-test-{}", std::process::id()));
    let root = dir.join("proj/apiproxy");
    std::fs::create_dir_all(root.join("proxies")).unwrap();
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::create_dir_all(root.join("resources/jsc")).unwrap();
    std::fs::write(
        root.join("proxies/default.xml"),
        PROXY.replace("<TargetEndpoint>default</TargetEndpoint>", ""),
    )
    .unwrap();
    std::fs::write(root.join("policies/SA.xml"), SA.1).unwrap();
    std::fs::write(root.join("policies/RF.xml"), RF.1).unwrap();
    std::fs::write(root.join("resources/jsc/x.xml"), "not xml at all").unwrap();
    for path in [dir.clone(), root.clone()] {
        let loaded = load_path(&path, &LoadOptions::default());
        assert!(loaded.diagnostics.is_empty(), "{:?}", messages(&loaded));
        assert_eq!(loaded.bundles.len(), 1);
        assert_eq!(loaded.bundles[0].name, "proj");
        assert!(
            loaded.bundles[0].root.ends_with("proj/apiproxy"),
            "{}",
            loaded.bundles[0].root
        );
    }

    let zip_path = dir.join("proj.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("apiproxy/proxies/default.xml", opts)
        .unwrap();
    zip.write_all(
        PROXY
            .replace("<TargetEndpoint>default</TargetEndpoint>", "")
            .as_bytes(),
    )
    .unwrap();
    zip.start_file("apiproxy/policies/SA.xml", opts).unwrap();
    zip.write_all(SA.1.as_bytes()).unwrap();
    zip.start_file("apiproxy/policies/RF.xml", opts).unwrap();
    zip.write_all(RF.1.as_bytes()).unwrap();
    zip.finish().unwrap();
    let loaded = load_path(&zip_path, &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", messages(&loaded));
    assert_eq!(loaded.bundles[0].proxy_endpoints[0].flows.len(), 2);
    assert!(
        loaded.bundles[0].root.ends_with("proj.zip!/apiproxy"),
        "{}",
        loaded.bundles[0].root
    );

    // The limit on all files together holds for folders and zips as for files in memory.
    let small = LoadOptions {
        limits: Limits {
            max_total_size: 60,
            ..Limits::default()
        },
        ..LoadOptions::default()
    };
    for path in [&root, &zip_path] {
        let loaded = load_path(path, &small);
        assert!(
            messages(&loaded)
                .iter()
                .any(|m| m.contains("add up to more than the limit of 60 bytes")),
            "{}: {:?}",
            path.display(),
            messages(&loaded)
        );
    }

    std::fs::write(dir.join("bad.zip"), b"PK not really").unwrap();
    let loaded = load_path(&dir.join("bad.zip"), &LoadOptions::default());
    assert!(
        messages(&loaded)[0].contains("not a readable zip"),
        "{:?}",
        messages(&loaded)
    );
    let loaded = load_path(&dir.join("missing"), &LoadOptions::default());
    assert!(loaded.has_errors());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn conditions_are_compiled_at_load() {
    let proxy = "<ProxyEndpoint name=\"default\">\n<Flows>\n<Flow name=\"a\"><Condition>request.verb = \"GET\"</Condition></Flow>\n<Flow name=\"b\"><Condition>request.path JavaRegex \"(unclosed\"</Condition></Flow>\n</Flows><HTTPProxyConnection><BasePath>/a</BasePath></HTTPProxyConnection></ProxyEndpoint>";
    let loaded = load(&[("apiproxy/proxies/default.xml", proxy)]);
    // A condition that parses but does not compile (a bad regex) is a warning too.
    assert!(!loaded.has_errors(), "{:?}", messages(&loaded));
    let warnings: Vec<String> = loaded.warnings().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("apiproxy/proxies/default.xml:4:")
            && warnings[0].contains("warning: invalid condition: "),
        "{warnings:?}"
    );
    let invalid = &loaded.bundles[0].proxy_endpoints[0].flows[1];
    assert!(invalid.condition.as_ref().unwrap().invalid().is_some());
    let flow = &loaded.bundles[0].proxy_endpoints[0].flows[0];
    let mut vars = preflow_condition::MapVariables::default();
    vars.set(
        "request.verb",
        preflow_condition::OwnedValue::String("GET".into()),
    );
    assert!(
        flow.condition
            .as_ref()
            .unwrap()
            .compiled()
            .unwrap()
            .eval(&vars)
    );
}

#[test]
fn gateway_is_send_and_sync_and_exchange_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<preflow::Gateway>();
    send::<preflow::Exchange>();
    send::<preflow::Step>();
    send::<preflow::StoreOp>();
    send::<preflow::StoreReply>();
}

/// A policy file that is not well-formed is reported once, where it is broken: the steps
/// naming it do not also warn that the policy is missing.
#[test]
fn a_broken_policy_file_is_not_also_a_missing_policy() {
    let loaded = preflow::load_files(
        [
            (
                "apiproxy/proxies/default.xml",
                r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>SA</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#,
            ),
            (
                "apiproxy/policies/SA.xml",
                r#"<SpikeArrest name="SA"><Rate>10ps</Rate>"#,
            ),
        ],
        &preflow::LoadOptions::default(),
    );
    let all: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        all[0].contains("SA.xml") && all[0].contains("never closed"),
        "{all:#?}"
    );
}
