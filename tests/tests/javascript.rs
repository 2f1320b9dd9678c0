//! The Javascript policy through the engine: limits that leave the gateway healthy,
//! isolation between exchanges, `httpClient` calls performed by the host, `print`, and
//! how bundles with scripts load (syntax errors at line:col, missing scripts).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{at, request, run_at};
use preflow::policies::service::MemorySink;
use preflow::{LoadOptions, PolicyResources, load_files};

fn bundle(policies: &[(&str, &str)], scripts: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = vec![
        ("apiproxy/api.xml".into(), r#"<APIProxy name="api"/>"#.into()),
        (
            "apiproxy/targets/default.xml".into(),
            r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend/base</URL></HTTPTargetConnection></TargetEndpoint>"#.into(),
        ),
    ];
    let mut steps = String::new();
    for (name, xml) in policies {
        files.push((format!("apiproxy/policies/{name}.xml"), (*xml).to_owned()));
        steps.push_str(&format!(
            "<Step><Name>{name}</Name><Condition>request.header.x-run = \"{name}\"</Condition></Step>"
        ));
    }
    for (name, text) in scripts {
        files.push((format!("apiproxy/resources/jsc/{name}"), (*text).to_owned()));
    }
    files.push((
        "apiproxy/proxies/default.xml".into(),
        format!(
            r#"<ProxyEndpoint name="default"><PreFlow><Request>{steps}</Request></PreFlow><HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection><RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#
        ),
    ));
    files
}

fn gateway(files: &[(String, String)]) -> preflow::Gateway {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    common::gateway(&refs)
}

fn js(name: &str, script: &str, time_limit: u32) -> String {
    format!(
        r#"<Javascript name="{name}" timeLimit="{time_limit}"><ResourceURL>jsc://{script}</ResourceURL></Javascript>"#
    )
}

fn run(g: &preflow::Gateway, policy: &str) -> common::Outcome {
    common::run(g, "GET", "/api/x", &[("x-run", policy)])
}

#[test]
fn limits_end_in_the_fault_and_the_gateway_stays_healthy() {
    let files = bundle(
        &[
            ("Loop", &js("Loop", "loop.js", 100)),
            ("Alloc", &js("Alloc", "alloc.js", 10_000)),
            ("Deep", &js("Deep", "deep.js", 1000)),
            ("Fine", &js("Fine", "fine.js", 200)),
        ],
        &[
            ("loop.js", "var i = 0;\nwhile (true) { i++; }\n"),
            (
                "alloc.js",
                "var keep = [];\nfor (;;) { keep.push('x'.repeat(1 << 20) + keep.length); }\n",
            ),
            ("deep.js", "function f(n) { return f(n + 1) + 1; }\nf(0);\n"),
            ("fine.js", "context.setVariable('ok', 'yes');\n"),
        ],
    );
    let g = gateway(&files);
    for (policy, want) in [
        ("Loop", "exceeded limit of 100ms"),
        ("Alloc", "out of memory"),
        ("Deep", "(deep.js:1)"),
    ] {
        let out = run(&g, policy);
        assert_eq!(out.status(), 500, "{policy}: {}", out.body());
        assert_eq!(out.errorcode(), "steps.javascript.ScriptExecutionFailed");
        assert!(out.body().contains(want), "{policy}: {}", out.body());
        // The next exchange runs normally.
        let ok = run(&g, "Fine");
        assert_eq!(ok.status(), 200, "after {policy}: {}", ok.body());
        assert_eq!(g.variable(&ok.exchange, "ok").as_deref(), Some("yes"));
    }
}

#[test]
fn no_exchange_sees_another_exchanges_data() {
    let files = bundle(
        &[
            ("Write", &js("Write", "write.js", 200)),
            ("Read", &js("Read", "read.js", 200)),
        ],
        &[
            (
                "write.js",
                "leaked = context.getVariable('request.header.x-secret');\nthis.viaThis = leaked;\nObject.prototype.polluted = leaked;\nJSON.parse = function () { return 'hijacked'; };\ncontext.getVariable.leaked = leaked;\ncontext.setVariable.leaked = leaked;\nString.prototype.trim = function () { return 'hijacked'; };\ncontext.session.setAttribute('s', leaked);\n",
            ),
            (
                "read.js",
                "context.setVariable('seen', [typeof leaked, typeof viaThis, String(({}).polluted), JSON.parse('1'), ' a '.trim(), String(context.session.getAttribute('s')), typeof context.getVariable.leaked, typeof context.setVariable.leaked].join(','));\n",
            ),
        ],
    );
    let g = gateway(&files);
    let w = common::run(
        &g,
        "GET",
        "/api/x",
        &[("x-run", "Write"), ("x-secret", "s3cr3t")],
    );
    assert_eq!(w.status(), 200, "{}", w.body());
    let r = run(&g, "Read");
    assert_eq!(r.status(), 200, "{}", r.body());
    assert_eq!(
        g.variable(&r.exchange, "seen").as_deref(),
        Some("undefined,undefined,undefined,1,a,undefined,undefined,undefined")
    );
}

#[test]
fn per_run_state_starts_afresh_in_every_run() {
    // Scripts run back to back on this thread's engine: each sees its own `properties`,
    // a fresh session, `Math.random` seeded anew, and no global of the run before.
    let policy = |name: &str, p: &str| {
        format!(
            r#"<Javascript name="{name}" timeLimit="200"><ResourceURL>jsc://state.js</ResourceURL><Properties><Property name="p">{p}</Property></Properties></Javascript>"#
        )
    };
    let files = bundle(
        &[("A", &policy("A", "a")), ("B", &policy("B", "b"))],
        &[(
            "state.js",
            "context.setVariable('out', [properties.p, Math.random(), context.session.getAttribute('k'), typeof glob].join(','));\ncontext.session.setAttribute('k', 1);\nglob = 1;\n",
        )],
    );
    let g = gateway(&files);
    let out = |policy: &str| {
        let o = run(&g, policy);
        assert_eq!(o.status(), 200, "{}", o.body());
        g.variable(&o.exchange, "out").unwrap()
    };
    let a1 = out("A");
    let b = out("B");
    let a2 = out("A");
    assert!(a1.starts_with("a,0."), "{a1}");
    assert!(a1.ends_with(",,undefined"), "{a1}");
    assert!(b.starts_with("b,0.") && b.ends_with(",,undefined"), "{b}");
    assert_eq!(a1, a2);
}

#[test]
fn an_object_with_its_own_to_string_still_works_with_frozen_builtins() {
    let files = bundle(
        &[("T", &js("T", "t.js", 200))],
        &[(
            "t.js",
            "function Money(v) { this.v = v; }\nMoney.prototype.toString = function () { return this.v + ' EUR'; };\nvar o = {};\no.toString = function () { return 'own'; };\ncontext.setVariable('m', String(new Money(3)) + '|' + o);\n",
        )],
    );
    let g = gateway(&files);
    let out = run(&g, "T");
    assert_eq!(g.variable(&out.exchange, "m").as_deref(), Some("3 EUR|own"));
}

#[test]
fn http_client_calls_go_through_the_host_and_the_script_resumes() {
    let script = r#"
var token = context.getVariable("request.header.x-token");
var req = new Request("http://auth.local/check?t=" + token, "POST", { "x-from": "js" }, "body-" + token);
var ex = httpClient.send(req);
ex.waitForComplete();
var r = ex.getResponse();
var second = httpClient.get("http://auth.local/second");
second.waitForComplete();
context.setVariable("auth.status", String(r.status));
context.setVariable("auth.body", r.content);
context.setVariable("auth.second", second.getResponse().content);
context.setVariable("auth.ok", String(ex.isSuccess()));
print("checked " + token);
"#;
    let files = bundle(
        &[("Auth", &js("Auth", "auth.js", 200))],
        &[("auth.js", script)],
    );
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let loaded = load_files(refs.iter().copied(), &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let sink = Arc::new(MemorySink::default());
    let g = preflow::Gateway::builder()
        .bundles(loaded)
        .resources(PolicyResources::default().with_log_sink(sink.clone()))
        .build()
        .unwrap();
    let out = run_at(
        &g,
        request("GET", "/api/x", &[("x-run", "Auth"), ("x-token", "t1")], ""),
        at(0.0),
        |req| {
            let body = match req.uri().host() {
                Some("auth.local") if req.uri().path() == "/check" => format!(
                    "{} {} {}",
                    req.uri().query().unwrap_or(""),
                    req.headers()
                        .get("x-from")
                        .map_or("", |v| v.to_str().unwrap()),
                    String::from_utf8_lossy(req.body())
                ),
                Some("auth.local") => "second".to_owned(),
                _ => "backend".to_owned(),
            };
            Ok(http::Response::builder()
                .status(200)
                .body(Bytes::from(body))
                .unwrap())
        },
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    let uris: Vec<String> = out.forwarded.iter().map(|r| r.uri().to_string()).collect();
    assert_eq!(
        uris,
        [
            "http://auth.local/check?t=t1",
            "http://auth.local/second",
            "http://backend/base/x"
        ]
    );
    assert_eq!(out.forwarded[0].method(), "POST");
    let v = |n: &str| g.variable(&out.exchange, n);
    assert_eq!(v("auth.status").as_deref(), Some("200"));
    assert_eq!(v("auth.body").as_deref(), Some("t=t1 js body-t1"));
    assert_eq!(v("auth.second").as_deref(), Some("second"));
    assert_eq!(v("auth.ok").as_deref(), Some("true"));
    // Printed once: only the run that finished counts, in the log and in the trace.
    let prints: Vec<String> = sink.records().into_iter().map(|r| r.message).collect();
    assert_eq!(prints, ["checked t1"]);
    let traced: Vec<&preflow::TraceEvent> = out
        .exchange
        .trace()
        .iter()
        .filter(|e| matches!(e, preflow::TraceEvent::Print { .. }))
        .collect();
    assert_eq!(
        traced,
        [&preflow::TraceEvent::Print {
            policy: "Auth".to_owned(),
            line: "checked t1".to_owned()
        }]
    );
}

#[test]
fn http_client_errors_reach_the_script() {
    let script = "var ex = httpClient.get('http://down.local/');\nex.waitForComplete();\ncontext.setVariable('e', String(ex.isSuccess()) + ':' + ex.getError());\n";
    let files = bundle(
        &[("Down", &js("Down", "down.js", 200))],
        &[("down.js", script)],
    );
    let g = gateway(&files);
    let out = run_at(
        &g,
        request("GET", "/api/x", &[("x-run", "Down")], ""),
        at(0.0),
        |req| match req.uri().host() {
            Some("down.local") => Err(preflow::TargetError::Connect("refused".into())),
            _ => common::ok_target(req),
        },
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(
        g.variable(&out.exchange, "e").as_deref(),
        Some("false:cannot connect to the target: refused")
    );
}

#[test]
fn a_syntax_error_is_reported_at_its_line_and_column() {
    let files = bundle(
        &[("Bad", &js("Bad", "bad.js", 200))],
        &[("bad.js", "var a = 1;\nvar b = {;\n")],
    );
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let loaded = load_files(refs.iter().copied(), &LoadOptions::default());
    let err = loaded.errors().next().expect("a syntax error");
    assert_eq!(&*err.location.file, "apiproxy/resources/jsc/bad.js");
    assert_eq!(err.location.line, 2, "{err:?}");
    assert_eq!(err.location.column, 10, "{err:?}");
    assert!(err.message.contains("SyntaxError"), "{err:?}");
    assert_eq!(err.line_text, "var b = {;");
}

#[test]
fn a_missing_script_is_a_warning_and_faults_when_reached() {
    let files = bundle(&[("Gone", &js("Gone", "gone.js", 200))], &[]);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let loaded = load_files(refs.iter().copied(), &LoadOptions::default());
    assert!(!loaded.has_errors());
    assert!(
        loaded
            .warnings()
            .any(|w| w.message.contains("jsc://gone.js")),
        "{:#?}",
        loaded.diagnostics
    );
    let g = gateway(&files);
    let out = run(&g, "Gone");
    assert_eq!(out.status(), 500);
    assert_eq!(out.errorcode(), "steps.javascript.ScriptExecutionFailed");
}

#[test]
fn scripts_load_from_a_folder() {
    let dir = std::env::temp_dir().join(format!("preflow-js-{}", std::process::id()));
    let files = bundle(
        &[("Fine", &js("Fine", "fine.js", 200))],
        &[("fine.js", "context.setVariable('ok', 'disk');\n")],
    );
    for (path, text) in &files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let loaded = preflow::load_path(&dir, &LoadOptions::default());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert!(
        loaded.warnings().next().is_none(),
        "{:#?}",
        loaded.diagnostics
    );
    let g = preflow::Gateway::builder().bundles(loaded).build().unwrap();
    let out = run(&g, "Fine");
    assert_eq!(g.variable(&out.exchange, "ok").as_deref(), Some("disk"));
}

#[test]
fn rhino_only_constructs_are_warnings_at_their_place() {
    let files = bundle(
        &[("E4x", &js("E4x", "e4x.js", 200))],
        &[(
            "e4x.js",
            "var x = context.proxyResponse.content.asXML;\nvar s = new java.lang.String('a');\n",
        )],
    );
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let loaded = load_files(refs.iter().copied(), &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let w: Vec<String> = loaded
        .warnings()
        .map(|w| {
            format!(
                "{}:{}:{} {}",
                w.location.file, w.location.line, w.location.column, w.message
            )
        })
        .collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].starts_with("apiproxy/resources/jsc/e4x.js:1:38 E4X"),
        "{w:#?}"
    );
    assert!(
        w[1].starts_with("apiproxy/resources/jsc/e4x.js:2:13 Java"),
        "{w:#?}"
    );
}
