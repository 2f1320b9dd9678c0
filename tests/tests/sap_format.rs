//! SAP API Management's export format (`APIProxy/`, `APIProxyEndPoint/`,
//! `APITargetEndPoint/`, `Policy/`) loads into the same model as the Apigee format, and the
//! same requests give the same traces and responses.

mod common;

use common::{at, files_of, ok_target, request, run_at};
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

/// A zip of `files`, with what macOS's Archive Utility adds: an AppleDouble `._NAME`
/// under `__MACOSX/` for every file, and `.DS_Store` files.
fn macos_zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    // AppleDouble header, then bytes a terminal would act on.
    let apple_double =
        b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02\x1b[31m\x1b]0;pwned\x07\xff\xfe";
    for (name, bytes) in files {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
        let (dir, file) = name.rsplit_once('/').unwrap();
        zip.start_file(format!("__MACOSX/{dir}/._{file}"), options)
            .unwrap();
        zip.write_all(apple_double).unwrap();
    }
    let top = files[0].0.split('/').next().unwrap();
    for extra in [
        format!("{top}/.DS_Store"),
        format!("{top}/Policy/._spikeArrest.xml"),
    ] {
        zip.start_file(extra, options).unwrap();
        zip.write_all(apple_double).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn assert_printable(loaded: &Loaded) {
    for d in &loaded.diagnostics {
        let text = d.render();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "raw control characters in {text:?}"
        );
    }
}

#[test]
fn a_renamed_sap_export_is_found_by_its_content() {
    let loaded = load(&data("provider-target"));
    let b = &loaded.bundles[0];
    assert_eq!(b.name, "OAuthTokenGeneration");
    assert_eq!(b.display_name.as_deref(), Some("OAuth Token Generation"));
    assert!(
        b.root.ends_with("OAuthTokenGeneration-APIProxy"),
        "{}",
        b.root
    );
    assert_eq!(b.base_paths().collect::<Vec<_>>(), ["/oauth-gen"]);
    // The folder itself, too.
    let same = load(&data("provider-target/OAuthTokenGeneration-APIProxy"));
    assert_eq!(model(&same.bundles[0]), model(b));
    // `defaultRaiseFaultPolicy`, in every SAP export, is not reported as unused.
    let lints = preflow::lint(&loaded.bundles);
    assert!(lints.is_empty(), "{lints:#?}");
}

#[test]
fn a_macos_zip_loads_one_bundle_and_its_metadata_is_never_shown() {
    let files = files_of(&data("provider-target/OAuthTokenGeneration-APIProxy"));
    let zip = macos_zip(&files);
    let loaded = preflow::load_zip(
        "OAuthTokenGeneration.zip",
        std::io::Cursor::new(zip),
        &LoadOptions::default(),
    );
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.bundles.len(), 1);
    assert_eq!(loaded.bundles[0].name, "OAuthTokenGeneration");
    assert_eq!(
        loaded.bundles[0].policies.keys().collect::<Vec<_>>(),
        ["defaultRaiseFaultPolicy", "spikeArrest"]
    );
    // The same files in memory, as an unzipped macOS folder would hold them.
    let mut with_metadata = files.clone();
    with_metadata.push((
        "OAuthTokenGeneration-APIProxy/APIProxyEndPoint/._default.xml".into(),
        b"\x00\x05\x16\x07\x1b[2J".to_vec(),
    ));
    let loaded = preflow::load_files(with_metadata, &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
}

#[test]
fn names_and_bytes_in_diagnostics_are_escaped() {
    let files = [
        (
            "APIProxy/Policy/bad\u{1b}[31m\u{7}.xml",
            "<SpikeArrest xmlns=\"http://www.sap.com/apimgmt\"><Rate>1ps</Rate>\u{1b}]0;x\u{7}<Rate>",
        ),
        (
            "APIProxy/APIProxyEndPoint/default.xml",
            "<ProxyEndPoint><name>default</name><base_path>/x</base_path></ProxyEndPoint>",
        ),
    ];
    let loaded = preflow::load_files(files, &LoadOptions::default());
    assert!(loaded.has_errors());
    assert_printable(&loaded);
    let text: String = loaded.diagnostics.iter().map(|d| d.render()).collect();
    assert!(text.contains("bad\\u{1b}[31m\\u{7}.xml"), "{text}");
    // Non-UTF-8 bytes of a file are shown replaced, never raw.
    let loaded = preflow::load_files(
        [(
            "APIProxy/Policy/p.xml".to_owned(),
            b"<Quota>\xff\x1b[2J</Quota>".to_vec(),
        )],
        &LoadOptions::default(),
    );
    assert!(loaded.has_errors());
    assert_printable(&loaded);
}

#[test]
fn a_place_without_bundles_names_every_accepted_layout() {
    let dir = std::env::temp_dir().join(format!("preflow-sap-none-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("docs/readme.xml"), "<doc/>").unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("docs/readme.xml", zip::write::SimpleFileOptions::default())
        .unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let from_folder = load_path(&dir, &LoadOptions::default());
    let from_zip = preflow::load_zip("x.zip", std::io::Cursor::new(zip), &LoadOptions::default());
    std::fs::remove_dir_all(&dir).unwrap();
    for loaded in [from_folder, from_zip] {
        let [d] = loaded.diagnostics.as_slice() else {
            panic!("{:#?}", loaded.diagnostics)
        };
        for layout in [
            "`apiproxy/`",
            "`sharedflowbundle/`",
            "`APIProxy/`",
            "`APIProxyEndPoint/`",
            "OAuthTokenGeneration-APIProxy/",
            "`PolicyTemplateContainer/`",
            "zip",
        ] {
            assert!(d.message.contains(layout), "{layout} in {}", d.message);
        }
    }
}

#[test]
fn provider_targets_load_check_and_route_through_the_provider() {
    let loaded = load(&data("provider-target"));
    let target = &loaded.bundles[0].target_endpoints[0];
    let preflow::TargetConnection::Http(http) = &target.connection else {
        panic!("{:?}", target.connection)
    };
    assert_eq!(http.url.as_deref(), Some("provider://CPI/http/token"));
    // `check` with an environment that lacks the provider says so.
    let missing = preflow::lint_environment(&loaded.bundles, &preflow::Environment::new());
    assert!(
        missing
            .iter()
            .any(|d| d.message.contains("API provider `CPI`")),
        "{missing:#?}"
    );
    let env = preflow::Environment::new().provider(preflow::Provider::new(
        "CPI",
        "http://cpi.internal:8080/base",
    ));
    assert!(preflow::lint_environment(&loaded.bundles, &env).is_empty());
    let g = Gateway::builder()
        .bundles(loaded)
        .environment(env)
        .build()
        .unwrap();
    let out = run_at(
        &g,
        request("POST", "/oauth-gen/x?a=1", &[], ""),
        at(0.0),
        ok_target,
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(
        out.forwarded[0].uri().to_string(),
        "http://cpi.internal:8080/base/http/token/x?a=1"
    );
}

#[test]
fn provider_references_in_both_formats() {
    let files = [
        (
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/p</BasePath></HTTPProxyConnection>
               <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#,
        ),
        (
            "apiproxy/targets/default.xml",
            r#"<TargetEndpoint name="default"><HTTPTargetConnection><Provider>S4</Provider><Path>/sap/opu</Path></HTTPTargetConnection></TargetEndpoint>"#,
        ),
        (
            "APIProxy/APIProxyEndPoint/default.xml",
            "<ProxyEndPoint><name>default</name><base_path>/q</base_path><routeRules><routeRule><name>r</name><targetEndPointName>default</targetEndPointName></routeRule></routeRules></ProxyEndPoint>",
        ),
        (
            "APIProxy/APITargetEndPoint/default.xml",
            "<TargetEndPoint><name>default</name><url>https://example.com/x</url><provider_id>NONE</provider_id><additionalAPIProviders/></TargetEndPoint>",
        ),
    ];
    let loaded = preflow::load_files(files, &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let urls: Vec<String> = loaded
        .bundles
        .iter()
        .map(|b| match &b.target_endpoints[0].connection {
            preflow::TargetConnection::Http(h) => h.url.clone().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(urls, ["https://example.com/x", "provider://S4/sap/opu"]);
}

#[test]
fn sap_scripts_come_from_file_resource() {
    let files = [
        (
            "APIProxy/APIProxyEndPoint/default.xml",
            "<ProxyEndPoint><name>default</name><base_path>/js</base_path><preFlow><name>PreFlow</name><request><steps><step><policy_name>JS</policy_name></step></steps></request></preFlow><routeRules><routeRule><name>none</name></routeRule></routeRules></ProxyEndPoint>",
        ),
        (
            "APIProxy/Policy/JS.xml",
            "<Javascript xmlns=\"http://www.sap.com/apimgmt\" timeLimit=\"200\"><ResourceURL>jsc://set.js</ResourceURL></Javascript>",
        ),
        (
            "APIProxy/FileResource/set.js",
            "context.setVariable('response.header.x-js', 'ran');",
        ),
    ];
    let loaded = preflow::load_files(files, &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
}

#[test]
fn a_bundle_without_descriptor_is_named_after_its_folder() {
    let endpoint = "<ProxyEndPoint><name>default</name><base_path>/o</base_path><routeRules><routeRule><name>none</name></routeRule></routeRules></ProxyEndPoint>";
    let loaded = preflow::load_files(
        [
            (
                "exports/Orders-APIProxy/APIProxyEndPoint/default.xml",
                endpoint,
            ),
            (
                "exports/Items/APIProxy/APIProxyEndPoint/default.xml",
                endpoint,
            ),
        ],
        &LoadOptions::default(),
    );
    let names: Vec<&str> = loaded.bundles.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["Items", "Orders-APIProxy"]);
}

#[test]
fn sap_service_callouts_through_an_api_provider_load_with_a_warning() {
    let files = [
        (
            "APIProxy/APIProxyEndPoint/default.xml",
            "<ProxyEndPoint><name>default</name><base_path>/sc</base_path><preFlow><name>PreFlow</name><request><steps><step><policy_name>scCSRF</policy_name></step></steps></request></preFlow><routeRules><routeRule><name>none</name></routeRule></routeRules></ProxyEndPoint>",
        ),
        (
            "APIProxy/Policy/scCSRF.xml",
            "<ServiceCallout xmlns=\"http://www.sap.com/apimgmt\"><Request><Set><Headers><Header name=\"x-csrf-token\">fetch</Header></Headers><Verb>GET</Verb></Set></Request><Response>callOutResponse</Response><HTTPTargetConnection><APIProvider>ES5</APIProvider><Path>sap/opu/odata/IWFND/CATALOGSERVICE/ServiceCollection</Path></HTTPTargetConnection></ServiceCallout>",
        ),
    ];
    let loaded = preflow::load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let [w] = loaded.diagnostics.as_slice() else {
        panic!("{:#?}", loaded.diagnostics)
    };
    assert!(
        w.message
            .contains("`provider://ES5/sap/opu/odata/IWFND/CATALOGSERVICE/ServiceCollection`"),
        "{w}"
    );
}
