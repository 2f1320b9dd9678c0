//! AccessEntity: app, developer, product and consumer-key profiles from the registry
//! into `AccessEntity.{policy}`, as XML and JSON.

mod common;

use std::sync::Arc;

use preflow::{Settings, StateMode};
use preflow_oauth::{ApiProduct, App, Developer, NewCredential, Registry};

fn registry() -> (Arc<Registry>, String) {
    let reg = Arc::new(Registry::new());
    let mut dev = Developer::new("ada@example.com");
    dev.first_name = "Ada".into();
    dev.last_name = "Lovelace".into();
    dev.attributes = vec![("tier".into(), "gold & co".into())];
    reg.put_developer(dev);
    reg.put_product(ApiProduct::new("Orders").with_proxies(["api"]));
    let app = reg.add_app("ada@example.com", App::new("ada-app")).unwrap();
    reg.add_credential(
        &app,
        NewCredential {
            key: Some("key-1".into()),
            products: vec!["Orders".into()],
            ..Default::default()
        },
    )
    .unwrap();
    (reg, app)
}

fn run(policy: &str, headers: &[(&str, &str)]) -> (preflow::Gateway, common::Outcome) {
    let files = [
        ("apiproxy/api.xml", r#"<APIProxy name="api"/>"#),
        ("apiproxy/policies/AE.xml", policy),
        (
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><PreFlow><Request><Step><Name>AE</Name></Step></Request></PreFlow><HTTPProxyConnection><BasePath>/api</BasePath></HTTPProxyConnection><RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#,
        ),
        (
            "apiproxy/targets/default.xml",
            r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend/base</URL></HTTPTargetConnection></TargetEndpoint>"#,
        ),
    ];
    let (reg, _) = registry();
    let g = common::gateway_with(&files, reg, Settings::default(), StateMode::Local);
    let out = common::run(&g, "GET", "/api/x", headers);
    (g, out)
}

#[test]
fn developer_profile_by_consumer_key_as_xml() {
    let (g, out) = run(
        r#"<AccessEntity name="AE"><EntityType value="developer"/><EntityIdentifier ref="request.header.x-key" type="consumerkey"/></AccessEntity>"#,
        &[("x-key", "key-1")],
    );
    assert_eq!(out.status(), 200);
    let p = g.variable(&out.exchange, "AccessEntity.AE").unwrap();
    assert!(
        p.starts_with(r#"<Developer email="ada@example.com">"#),
        "{p}"
    );
    assert!(p.contains("<FirstName>Ada</FirstName>"), "{p}");
    assert!(p.contains("<Value>gold &amp; co</Value>"), "{p}");
}

#[test]
fn app_profile_as_json_lists_keys_but_no_secret() {
    let (g, out) = run(
        r#"<AccessEntity name="AE"><EntityType value="app"/><EntityIdentifier ref="request.header.x-key" type="consumerkey"/><OutputFormat>JSON</OutputFormat></AccessEntity>"#,
        &[("x-key", "key-1")],
    );
    let p = g.variable(&out.exchange, "AccessEntity.AE").unwrap();
    let v: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(v["App"]["name"], "ada-app");
    assert_eq!(v["App"]["credentials"][0]["consumerKey"], "key-1");
    assert_eq!(
        v["App"]["credentials"][0]["apiProducts"][0]["apiproduct"],
        "Orders"
    );
    assert!(!p.to_ascii_lowercase().contains("secret"), "{p}");
}

#[test]
fn app_by_name_and_developer_product_and_consumer_key() {
    let (g, out) = run(
        r#"<AccessEntity name="AE"><EntityType value="apiproduct"/><EntityIdentifier ref="request.header.x-app" type="appname"/><SecondaryIdentifier ref="request.header.x-dev" type="developeremail"/></AccessEntity>"#,
        &[("x-app", "ada-app"), ("x-dev", "ada@example.com")],
    );
    let p = g.variable(&out.exchange, "AccessEntity.AE").unwrap();
    assert!(p.starts_with(r#"<ApiProduct name="Orders">"#), "{p}");
    assert!(p.contains("<Proxy>api</Proxy>"), "{p}");
    let (g, out) = run(
        r#"<AccessEntity name="AE"><EntityType value="consumerkey"/><EntityIdentifier ref="request.header.x-key" type="consumerkey"/></AccessEntity>"#,
        &[("x-key", "key-1")],
    );
    let p = g.variable(&out.exchange, "AccessEntity.AE").unwrap();
    assert!(
        p.starts_with("<Credential><ConsumerKey>key-1</ConsumerKey><Status>approved</Status>"),
        "{p}"
    );
}

#[test]
fn an_unknown_identifier_leaves_the_variable_unset() {
    let (g, out) = run(
        r#"<AccessEntity name="AE"><EntityType value="developer"/><EntityIdentifier ref="request.header.x-key" type="consumerkey"/></AccessEntity>"#,
        &[("x-key", "nope")],
    );
    assert_eq!(out.status(), 200);
    assert_eq!(g.variable(&out.exchange, "AccessEntity.AE"), None);
}

#[test]
fn a_bad_entity_type_is_a_load_error() {
    let loaded = preflow::load_files(
        [(
            "apiproxy/policies/AE.xml",
            r#"<AccessEntity name="AE"><EntityType value="planet"/><EntityIdentifier ref="x" type="appid"/></AccessEntity>"#,
        )],
        &preflow::LoadOptions::default(),
    );
    assert!(
        loaded
            .errors()
            .any(|e| e.message.contains("unknown entity type `planet`")),
        "{:#?}",
        loaded.diagnostics
    );
}
