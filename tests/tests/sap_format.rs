//! SAP API Management's export format (`APIProxy/`, `APIProxyEndPoint/`,
//! `APITargetEndPoint/`, `Policy/`) loads into the same model as the Apigee format, and the
//! same requests give the same traces and responses.

mod common;

use common::{at, ok_target, request, run_at};
use preflow::{Bundle, Gateway, LoadOptions, Loaded, load_path};
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/sap")
        .join(rel)
}

fn corpus(rel: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/apigee-corpus/bundles").join(rel))
        .find(|dir| dir.is_dir())
        .expect("the Apigee corpus beside the repository")
}

fn load(path: &Path) -> Loaded {
    let loaded = load_path(path, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.bundles.len(), 1, "{}", path.display());
    loaded
}

/// The model without file positions and folder names, which differ between the formats,
/// and without Edge virtual hosts, which SAP exports do not carry in endpoint files.
fn model(b: &Bundle) -> String {
    let mut b = b.clone();
    for p in &mut b.proxy_endpoints {
        p.virtual_hosts.clear();
    }
    let text = format!("{b:#?}");
    let locations = regex::Regex::new(
        r#"(?s)Location \{\s*file: "[^"]*",\s*offset: \d+,\s*line: \d+,\s*column: \d+,?\s*\}"#,
    )
    .unwrap();
    let text = locations.replace_all(&text, "Location");
    let root = regex::Regex::new(r#"root: "[^"]*""#).unwrap();
    root.replace_all(&text, "root").into_owned()
}

fn assert_same_model(apigee: &Loaded, sap: &Loaded) {
    let (a, s) = (model(&apigee.bundles[0]), model(&sap.bundles[0]));
    if a != s {
        for (i, (x, y)) in a.lines().zip(s.lines()).enumerate() {
            assert_eq!(x, y, "models differ at line {i}");
        }
        assert_eq!(
            a.lines().count(),
            s.lines().count(),
            "models differ in length"
        );
    }
    assert!(a.contains("Location"), "positions are kept");
}

#[test]
fn corpus_regex_protection_and_its_sap_export_give_the_same_model() {
    let apigee = load(&corpus(
        "apigee__api-platform-samples/sample-proxies/regex-protection",
    ));
    let sap = load(&data("regex-protection"));
    assert_same_model(&apigee, &sap);
    let b = &sap.bundles[0];
    assert_eq!(b.name, "regex-protection");
    assert_eq!(b.revision.as_deref(), Some("2"));
    assert!(b.policies["RegexProtection"].config.is_supported());
    // Positions point into the SAP files.
    let step = &b.proxy_endpoints[0].pre_flow.request[0];
    assert!(
        step.location.file.ends_with("APIProxyEndPoint/default.xml"),
        "{}",
        step.location
    );
    assert_eq!(step.location.line, 32);
}

#[test]
fn corpus_dynamic_endpoint_and_its_sap_export_give_the_same_model() {
    let apigee = load(&corpus(
        "apigee__api-platform-samples/sample-proxies/dynamic-endpoint",
    ));
    let sap = load(&data("dynamic-endpoint"));
    assert_same_model(&apigee, &sap);
    let routes: Vec<&str> = sap.bundles[0].proxy_endpoints[0]
        .route_rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        routes,
        ["fbroute", "twroute", "default"],
        "ordered by <sequence>"
    );
}

#[test]
fn sequence_numbers_order_steps_and_route_rules() {
    let apigee = load(&data("rich/apigee"));
    let sap = load(&data("rich/sap"));
    assert_same_model(&apigee, &sap);
    let p = &sap.bundles[0].proxy_endpoints[0];
    let names: Vec<&str> = p
        .pre_flow
        .request
        .iter()
        .map(|s| s.policy.as_str())
        .collect();
    assert_eq!(names, ["CORS-1", "JTP-1"]);
    let routes: Vec<&str> = p.route_rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["backup", "default"]);
    assert!(p.default_fault_rule.as_ref().unwrap().always_enforce);
    assert_eq!(
        p.post_client_flow.as_ref().unwrap().response[0].policy,
        "ML-1"
    );
}

#[test]
fn sap_errors_point_into_the_sap_file() {
    let files = [(
        "APIProxy/APIProxyEndPoint/default.xml",
        "<ProxyEndPoint xmlns=\"http://www.sap.com/apimgmt\">\n  <name>default</name>\n  <base_path>/x</base_path>\n  <preFlow><name>PreFlow</name><request><steps>\n    <step><policy_name>Missing</policy_name><condition>a = </condition></step>\n  </steps></request></preFlow>\n</ProxyEndPoint>",
    )];
    let loaded = preflow::load_files(files, &LoadOptions::default());
    // A condition that does not parse is a warning at the condition, as in Apigee files.
    let warnings: Vec<String> = loaded.warnings().map(|d| d.to_string()).collect();
    assert!(
        warnings.iter().any(
            |e| e.starts_with("APIProxy/APIProxyEndPoint/default.xml:5:")
                && e.contains("warning: invalid condition")
        ),
        "{warnings:#?}"
    );
    let missing = loaded
        .diagnostics
        .iter()
        .find(|d| d.message.contains("step names policy `Missing`"))
        .expect("a missing policy is reported");
    assert_eq!(missing.location.line, 5);
}

fn gateway(loaded: Loaded) -> Gateway {
    Gateway::builder()
        .bundles(loaded)
        .build()
        .expect("gateway builds")
}

#[test]
fn the_same_requests_give_the_same_traces() {
    let pairs = [
        (
            load(&corpus(
                "apigee__api-platform-samples/sample-proxies/regex-protection",
            )),
            load(&data("regex-protection")),
            vec![
                ("GET", "/regex-protection/x?query=hello", vec![], ""),
                ("GET", "/regex-protection/x?query=1%20or%201", vec![], ""),
            ],
        ),
        (
            load(&corpus(
                "apigee__api-platform-samples/sample-proxies/dynamic-endpoint",
            )),
            load(&data("dynamic-endpoint")),
            vec![
                ("GET", "/dynamic-endpoint/x?routeTo=fb", vec![], ""),
                ("GET", "/dynamic-endpoint/x?routeTo=tw", vec![], ""),
                ("GET", "/dynamic-endpoint/x", vec![], ""),
            ],
        ),
        (
            load(&data("rich/apigee")),
            load(&data("rich/sap")),
            vec![
                (
                    "GET",
                    "/v1/items/42",
                    vec![("origin", "https://app.example")],
                    "",
                ),
                ("GET", "/v1/items/42", vec![("x-backup", "true")], ""),
                ("DELETE", "/v1/items", vec![], ""),
                (
                    "POST",
                    "/v1/items",
                    vec![("content-type", "application/json")],
                    r#"{"a":[{"b":{}}]}"#,
                ),
                (
                    "POST",
                    "/v1/items",
                    vec![("content-type", "application/json")],
                    r#"{"a":1}"#,
                ),
                (
                    "OPTIONS",
                    "/v1/items",
                    vec![
                        ("origin", "https://app.example"),
                        ("access-control-request-method", "GET"),
                    ],
                    "",
                ),
            ],
        ),
    ];
    for (apigee, sap, requests) in pairs {
        let (ga, gs) = (gateway(apigee), gateway(sap));
        for (method, uri, headers, body) in &requests {
            let a = run_at(&ga, request(method, uri, headers, body), at(0.0), ok_target);
            let s = run_at(&gs, request(method, uri, headers, body), at(0.0), ok_target);
            assert_eq!(a.status(), s.status(), "{method} {uri}");
            assert_eq!(a.body(), s.body(), "{method} {uri}");
            assert_eq!(
                format!("{:?}", a.response.headers()),
                format!("{:?}", s.response.headers()),
                "{method} {uri}"
            );
            let forwarded = |o: &common::Outcome| -> Vec<String> {
                o.forwarded.iter().map(|r| r.uri().to_string()).collect()
            };
            assert_eq!(forwarded(&a), forwarded(&s), "{method} {uri}");
            assert_eq!(
                format!("{:?}", a.exchange.trace()),
                format!("{:?}", s.exchange.trace()),
                "{method} {uri}"
            );
        }
    }
}

#[test]
fn sap_policies_are_named_by_a_name_element_or_their_file() {
    let files = [
        (
            "APIProxy/APIProxyEndPoint/default.xml",
            "<ProxyEndPoint xmlns=\"http://www.sap.com/apimgmt\"><name>default</name><base_path>/x</base_path>\n<preFlow><name>PreFlow</name><request><steps>\n<step><policy_name>Quota-1</policy_name><sequence>2</sequence></step>\n<step><policy_name>Named</policy_name><sequence>1</sequence></step>\n</steps></request></preFlow>\n<routeRules><routeRule><name>none</name></routeRule></routeRules></ProxyEndPoint>",
        ),
        (
            "APIProxy/Policy/Quota-1.xml",
            "<SpikeArrest xmlns=\"http://www.sap.com/apimgmt\"><Rate>10ps</Rate></SpikeArrest>",
        ),
        (
            "APIProxy/Policy/other-file.xml",
            "<SpikeArrest xmlns=\"http://www.sap.com/apimgmt\"><name>Named</name><Rate>5ps</Rate></SpikeArrest>",
        ),
    ];
    let loaded = preflow::load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let b = &loaded.bundles[0];
    assert!(b.policies.contains_key("Quota-1"));
    assert!(b.policies.contains_key("Named"));
    let order: Vec<&str> = b.proxy_endpoints[0]
        .pre_flow
        .request
        .iter()
        .map(|s| s.policy.as_str())
        .collect();
    assert_eq!(order, ["Named", "Quota-1"]);
    assert_eq!(
        b.proxy_endpoints[0].route_rules[0].target,
        preflow::RouteTarget::Null
    );
    assert!(
        !loaded
            .diagnostics
            .iter()
            .any(|d| d.message.contains("unknown element `<name>`")),
        "{:#?}",
        loaded.diagnostics
    );
}
