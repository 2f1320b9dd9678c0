//! Data-driven policy tests: every file in `tests/data/policies/` holds cases, each a
//! set of policies, the request (and variables) before, and the response, target
//! request, variables or fault expected after. One test runs them all through the
//! engine; `PREFLOW_POLICY_CASES=FILE` runs another file.
//!
//! A case's policies run in the ProxyEndpoint PreFlow: `request_steps` (default: every
//! policy, in order) on the request and `response_steps` on the response. The target is
//! `http://backend/base` and answers `target` (default: 200, `x-backend: yes`,
//! `Hello world from IFlow`). `vars` are set before the first step.
//!
//! The files in `tests/data/documented/` hold the examples of Apigee's policy reference
//! pages; each of their cases names its page (`page`). `apps = true` gives a case the
//! registry of [`registry`] (products, apps and keys for the security policies).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{at, request, run_at};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Policy XML, one document each; the `name` attribute names the step.
    policies: Vec<String>,
    #[serde(default)]
    request_steps: Option<Vec<String>>,
    #[serde(default)]
    response_steps: Vec<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// Other bundle files by path inside `apiproxy/` (scripts in `resources/jsc/`).
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    request: Request,
    #[serde(default)]
    target: Option<Answer>,
    /// The reference page the example comes from (required under `documented/`).
    #[serde(default)]
    page: Option<String>,
    /// Run with the fixed registry of [`registry`].
    #[serde(default)]
    apps: bool,
    /// `response`: every policy runs in the response PreFlow (instead of the request's).
    #[serde(default)]
    flow: Option<String>,
    /// `<FaultRule>` and `<DefaultFaultRule>` elements of the ProxyEndpoint.
    #[serde(default)]
    fault_rules: String,
    /// `false`: the proxy has no target (a route rule without one), as a token
    /// endpoint has.
    #[serde(default = "yes")]
    route: bool,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default = "get")]
    method: String,
    #[serde(default = "root")]
    uri: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    /// When the request arrives, in seconds after the tests' fixed start time. The
    /// client is always `192.0.2.7:4000`.
    #[serde(default)]
    seconds: f64,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            method: get(),
            uri: root(),
            headers: BTreeMap::new(),
            body: String::new(),
            seconds: 0.0,
        }
    }
}

fn yes() -> bool {
    true
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/api".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: Option<u16>,
    body: Option<String>,
    json: Option<toml::Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    absent_headers: Vec<String>,
    /// Texts the response body must hold, and must not hold.
    #[serde(default)]
    body_contains: Vec<String>,
    #[serde(default)]
    body_lacks: Vec<String>,
    /// A reason phrase other than the status's canonical one.
    reason: Option<String>,
    errorcode: Option<String>,
    faultstring: Option<String>,
    faultstring_contains: Option<String>,
    fault_name: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    unset_vars: Vec<String>,
    /// Variables whose value must match a regular expression (random values).
    #[serde(default)]
    vars_like: BTreeMap<String, String>,
    /// The request the target received; `forwarded = false` when none may reach it.
    forwarded: Option<toml::Value>,
}

fn policy_name(xml: &str) -> String {
    let (at, quote) = [('"', "name=\""), ('\'', "name='")]
        .iter()
        .filter_map(|(q, pat)| xml.find(pat).map(|i| (i + 6, *q)))
        .min()
        .expect("a policy has a name attribute");
    let rest = &xml[at..];
    rest[..rest.find(quote).expect("closing quote")].to_owned()
}

fn steps(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("<Step><Name>{n}</Name></Step>"))
        .collect()
}

fn setup_policy(vars: &BTreeMap<String, String>) -> String {
    let assigns: String = vars
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            format!("<AssignVariable><Name>{k}</Name><Value>{v}</Value></AssignVariable>")
        })
        .collect();
    format!(r#"<AssignMessage name="CaseSetup">{assigns}</AssignMessage>"#)
}

/// Records a mismatch.
fn check(problems: &mut Vec<String>, what: &str, got: Option<String>, want: Option<&str>) {
    if got.as_deref() != want {
        problems.push(format!("{what}: got {got:?}, want {want:?}"));
    }
}

fn run_case(case: &Case) -> Result<(), String> {
    let mut files: Vec<(String, String)> = vec![
        ("apiproxy/api.xml".into(), r#"<APIProxy name="api"/>"#.into()),
        (
            "apiproxy/targets/default.xml".into(),
            r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend/base</URL></HTTPTargetConnection></TargetEndpoint>"#.into(),
        ),
    ];
    let all: Vec<String> = case.policies.iter().map(|p| policy_name(p)).collect();
    let on_response = case.flow.as_deref() == Some("response");
    let mut request_steps: Vec<String> = match (&case.request_steps, on_response) {
        (Some(s), _) => s.clone(),
        (None, true) => Vec::new(),
        (None, false) => all.clone(),
    };
    let response_steps = if on_response && case.response_steps.is_empty() {
        all
    } else {
        case.response_steps.clone()
    };
    if !case.vars.is_empty() {
        files.push((
            "apiproxy/policies/CaseSetup.xml".into(),
            setup_policy(&case.vars),
        ));
        request_steps.insert(0, "CaseSetup".into());
    }
    for (path, text) in &case.files {
        files.push((format!("apiproxy/{path}"), text.clone()));
    }
    for p in &case.policies {
        files.push((
            format!("apiproxy/policies/{}.xml", policy_name(p)),
            p.clone(),
        ));
    }
    files.push((
        "apiproxy/proxies/default.xml".into(),
        format!(
            r#"<ProxyEndpoint name="default"><FaultRules>{}</FaultRules><PreFlow><Request>{}</Request><Response>{}</Response></PreFlow><HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection>{}</ProxyEndpoint>"#,
            case.fault_rules,
            steps(&request_steps),
            steps(&response_steps),
            if case.route {
                r#"<RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule>"#
            } else {
                r#"<RouteRule name="none"/>"#
            }
        ),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let g = if case.apps {
        common::gateway_with(
            &refs,
            registry(),
            preflow::Settings::default(),
            preflow::StateMode::Local,
        )
    } else {
        common::gateway(&refs)
    };
    let r = &case.request;
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = |_: &http::Request<Bytes>| -> Result<http::Response<Bytes>, preflow::TargetError> {
        match &case.target {
            None => common::ok_target(&http::Request::new(Bytes::new())),
            Some(a) => {
                let mut b = http::Response::builder().status(a.status);
                for (k, v) in &a.headers {
                    b = b.header(k, v);
                }
                Ok(b.body(Bytes::from(a.body.clone()))
                    .expect("target response"))
            }
        }
    };
    let out = run_at(
        &g,
        request(&r.method, &r.uri, &headers, &r.body),
        at(r.seconds),
        answer,
    );
    let e = &case.expect;
    let mut problems = Vec::new();
    if let Some(s) = e.status {
        check(
            &mut problems,
            "status",
            Some(out.status().to_string()),
            Some(&s.to_string()),
        );
    }
    if let Some(b) = &e.body {
        check(&mut problems, "body", Some(out.body()), Some(b));
    }
    for t in &e.body_contains {
        if !out.body().contains(t.as_str()) {
            problems.push(format!("body {:?} does not contain {t:?}", out.body()));
        }
    }
    for t in &e.body_lacks {
        if out.body().contains(t.as_str()) {
            problems.push(format!("body {:?} contains {t:?}", out.body()));
        }
    }
    if let Some(r) = &e.reason {
        check(
            &mut problems,
            "reason phrase",
            out.response
                .extensions()
                .get::<preflow::ReasonPhrase>()
                .map(|p| p.0.clone()),
            Some(r),
        );
    }
    if let Some(j) = &e.json {
        // Compared as values: key order does not matter.
        let want = serde_json::to_value(j).expect("json");
        if out.json() != want {
            problems.push(format!("json: got {}, want {want}", out.json()));
        }
    }
    for (k, v) in &e.headers {
        check(
            &mut problems,
            &format!("header {k}"),
            out.header(k),
            Some(v),
        );
    }
    for k in &e.absent_headers {
        check(&mut problems, &format!("header {k}"), out.header(k), None);
    }
    if let Some(c) = &e.errorcode {
        check(&mut problems, "errorcode", Some(out.errorcode()), Some(c));
    }
    let faultstring = out.json()["fault"]["faultstring"]
        .as_str()
        .map(str::to_owned);
    if let Some(f) = &e.faultstring {
        check(&mut problems, "faultstring", faultstring.clone(), Some(f));
    }
    if let Some(f) = &e.faultstring_contains
        && !faultstring.as_deref().unwrap_or("").contains(f.as_str())
    {
        problems.push(format!(
            "faultstring {faultstring:?} does not contain {f:?}"
        ));
    }
    if let Some(f) = &e.fault_name {
        check(
            &mut problems,
            "fault.name",
            out.exchange.fault_name().map(str::to_owned),
            Some(f),
        );
    }
    for (k, v) in &e.vars {
        check(
            &mut problems,
            &format!("variable {k}"),
            g.variable(&out.exchange, k),
            Some(v),
        );
    }
    for (k, re) in &e.vars_like {
        let re = regex::Regex::new(&format!("^(?:{re})$")).expect("vars_like regex");
        match g.variable(&out.exchange, k) {
            Some(v) if re.is_match(&v) => {}
            other => problems.push(format!("variable {k}: got {other:?}, want /{re}/")),
        }
    }
    for k in &e.unset_vars {
        check(
            &mut problems,
            &format!("variable {k}"),
            g.variable(&out.exchange, k),
            None,
        );
    }
    match &e.forwarded {
        None => {}
        Some(toml::Value::Boolean(false)) if !out.forwarded.is_empty() => {
            problems.push(format!(
                "{} request(s) reached the target",
                out.forwarded.len()
            ));
        }
        Some(toml::Value::Boolean(false)) => {}
        Some(toml::Value::Table(t)) => match out.forwarded.first() {
            None => problems.push("nothing reached the target".into()),
            Some(sent) => {
                for (k, v) in t {
                    let want = v.as_str().map(str::to_owned);
                    match k.as_str() {
                        "method" => check(
                            &mut problems,
                            "forwarded method",
                            Some(sent.method().to_string()),
                            want.as_deref(),
                        ),
                        "uri" => check(
                            &mut problems,
                            "forwarded uri",
                            Some(sent.uri().to_string()),
                            want.as_deref(),
                        ),
                        "body" => check(
                            &mut problems,
                            "forwarded body",
                            Some(String::from_utf8_lossy(sent.body()).into_owned()),
                            want.as_deref(),
                        ),
                        "headers" => {
                            for (h, hv) in v.as_table().into_iter().flatten() {
                                check(
                                    &mut problems,
                                    &format!("forwarded header {h}"),
                                    sent.headers()
                                        .get(h)
                                        .map(|x| x.to_str().unwrap_or("").to_owned()),
                                    hv.as_str(),
                                );
                            }
                        }
                        "absent_headers" => {
                            for h in v.as_array().into_iter().flatten() {
                                let h = h.as_str().unwrap_or("");
                                check(
                                    &mut problems,
                                    &format!("forwarded header {h}"),
                                    sent.headers()
                                        .get(h)
                                        .map(|x| x.to_str().unwrap_or("").to_owned()),
                                    None,
                                );
                            }
                        }
                        other => problems.push(format!("unknown forwarded check `{other}`")),
                    }
                }
            }
        },
        Some(other) => problems.push(format!("`forwarded` must be false or a table, not {other}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

fn case_files() -> Vec<PathBuf> {
    if let Ok(f) = std::env::var("PREFLOW_POLICY_CASES") {
        return vec![PathBuf::from(f)];
    }
    let mut files = Vec::new();
    for sub in ["data/policies", "data/documented"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
        files.extend(
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml")),
        );
    }
    files.sort();
    files
}

fn documented(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "documented")
}

/// The registry of `apps = true` cases. Products: `all` (resource `/**`, scopes `READ`
/// and `WRITE`), `items` (resource `/items/*`, scope `READ`), `root` (resource `/`).
/// Keys (secret `secret-` + key): `key-all` (app `app-all` on `all`), `key-items`
/// (`app-items` on `items`), `key-root` (`app-root` on `root`), `key-revoked-app` (app
/// `app-revoked`, revoked), `key-revoked` (credential revoked, app `app-cred-revoked`),
/// `key-expired` (expired at the tests' start time), `key-pending` (product `all`
/// waiting for approval).
fn registry() -> std::sync::Arc<preflow::preflow_oauth::Registry> {
    use preflow::preflow_oauth::{
        ApiProduct, App, Approval, Developer, NewCredential, PasswordHashCost, Registry, SecretSpec,
    };
    let r = Registry::with_password_hash_cost(PasswordHashCost::insecure_for_tests());
    r.put_developer(Developer::new("dev@example.com"));
    r.put_product(
        ApiProduct::new("all")
            .with_resources(["/**"])
            .expect("resources")
            .with_scopes(["READ", "WRITE"])
            .expect("scopes"),
    );
    r.put_product(
        ApiProduct::new("items")
            .with_resources(["/items/*"])
            .expect("resources")
            .with_scopes(["READ"])
            .expect("scopes"),
    );
    r.put_product(
        ApiProduct::new("root")
            .with_resources(["/"])
            .expect("resources"),
    );
    let add = |app: &str, key: &str, product: &str, expires_at: Option<u64>| {
        let mut a = App::new(app);
        a.id = app.to_owned();
        let id = r.add_app("dev@example.com", a).expect("app");
        r.add_credential(
            &id,
            NewCredential {
                key: Some(key.to_owned()),
                secret: SecretSpec::Custom(format!("secret-{key}")),
                products: vec![product.to_owned()],
                expires_at,
                issued_at: common::T0 - 100,
            },
        )
        .expect("credential");
        id
    };
    add("app-all", "key-all", "all", None);
    add("app-items", "key-items", "items", None);
    add("app-root", "key-root", "root", None);
    let revoked = add("app-revoked", "key-revoked-app", "all", None);
    r.set_app_status(&revoked, Approval::Revoked)
        .expect("revoke app");
    add("app-cred-revoked", "key-revoked", "all", None);
    r.set_credential_status("key-revoked", Approval::Revoked)
        .expect("revoke key");
    add("app-expired", "key-expired", "all", Some(common::T0));
    add("app-pending", "key-pending", "all", None);
    r.set_credential_product("key-pending", "all", Approval::Pending)
        .expect("pending");
    std::sync::Arc::new(r)
}

#[test]
fn policy_cases() {
    let mut failures = Vec::new();
    let mut count = 0;
    let mut from_docs = 0;
    for path in case_files() {
        let text = std::fs::read_to_string(&path).expect("readable case file");
        let file: File =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for case in &file.cases {
            count += 1;
            if documented(&path) {
                from_docs += 1;
                if case.page.as_deref().is_none_or(str::is_empty) {
                    failures.push(format!(
                        "{}: {}\n    names no reference page (`page`)",
                        path.display(),
                        case.name
                    ));
                }
            }
            if let Err(why) = run_case(case) {
                failures.push(format!("{}: {}\n    {why}", path.display(), case.name));
            }
        }
    }
    if std::env::var_os("PREFLOW_POLICY_CASES").is_none() {
        assert!(count >= 20, "only {count} policy cases were found");
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if std::env::var_os("PREFLOW_POLICY_CASES").is_none() {
        assert!(
            from_docs >= 150,
            "only {from_docs} documented examples were found"
        );
    }
}
