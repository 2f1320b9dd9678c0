//! SAP policy templates (`PolicyTemplateContainer/`): they load and check like bundles,
//! and applying one to a proxy (SAP or Apigee format) gives a proxy that loads, checks
//! clean and runs the template's policies where the template attached them.

mod common;

use common::{at, files_of, ok_target, request, run_at};
use preflow::{Gateway, LoadOptions, Loaded, OnClash, PolicyTemplate, load_files, load_path};
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/sap")
        .join(rel)
}

fn template() -> PolicyTemplate {
    let loaded = load_path(&data("templates/ConnectToCPI"), &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    assert!(loaded.bundles.is_empty());
    let [t] = loaded.templates.as_slice() else {
        panic!("{:#?}", loaded.templates)
    };
    t.clone()
}

fn names(steps: &[preflow::FlowStep]) -> Vec<&str> {
    steps.iter().map(|s| s.policy.as_str()).collect()
}

fn load_applied(files: &[(String, Vec<u8>)]) -> Loaded {
    let loaded = load_files(
        files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.bundles.len(), 1);
    loaded
}

#[test]
fn a_template_loads_with_its_policies_and_flows() {
    let t = template();
    assert_eq!(t.name, "ConnectToCPI");
    assert_eq!(t.title.as_deref(), Some("Connect to Cloud Integration"));
    assert_eq!(t.version.as_deref(), Some("1"));
    assert_eq!(
        t.policies.keys().collect::<Vec<_>>(),
        [
            "cpiFaultHeader",
            "cpiPong",
            "cpiSetSender",
            "cpiTagResponse",
            "cpiTargetHeader"
        ]
    );
    assert!(t.policies.values().all(|p| p.config.is_supported()));
    let p = t.proxy_endpoint.as_ref().unwrap();
    assert_eq!(names(&p.pre_flow.request), ["cpiSetSender"]);
    assert_eq!(names(&p.post_flow.response), ["cpiTagResponse"]);
    assert_eq!(
        p.post_flow.response[0].condition.as_ref().unwrap().text,
        "response.status.code < 400"
    );
    assert_eq!(p.flows[0].name, "cpiPing");
    assert_eq!(
        names(&p.default_fault_rule.as_ref().unwrap().steps),
        ["cpiFaultHeader"]
    );
    let target = t.target_endpoint.as_ref().unwrap();
    assert_eq!(names(&target.pre_flow.request), ["cpiTargetHeader"]);
}

#[test]
fn a_template_is_found_by_content_in_a_macos_zip() {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files_of(&data("templates/ConnectToCPI/PolicyTemplateContainer")) {
        // Renamed folder: found by its `<PolicyTemplateContainer>` descriptor.
        let name = name.replacen("PolicyTemplateContainer", "ConnectToCPI-template", 1);
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(&bytes).unwrap();
        let (dir, file) = name.rsplit_once('/').unwrap();
        zip.start_file(format!("__MACOSX/{dir}/._{file}"), options)
            .unwrap();
        zip.write_all(b"\x00\x05\x16\x07\x1b[31m\xff").unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let loaded = preflow::load_zip(
        "t.zip",
        std::io::Cursor::new(bytes),
        &LoadOptions::default(),
    );
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let [t] = loaded.templates.as_slice() else {
        panic!("{loaded:#?}")
    };
    assert_eq!(t.policies.len(), 5);
    assert_eq!(t.name, "ConnectToCPI");
    let steps = |t: &PolicyTemplate| -> Vec<String> {
        t.steps().iter().map(|s| s.policy.clone()).collect()
    };
    assert_eq!(steps(t), steps(&template()));
}

#[test]
fn template_problems_are_reported_like_bundle_problems() {
    let files = [
        (
            "PolicyTemplateContainer/T.xml",
            "<PolicyTemplateContainer><name>T</name>\n<proxyEndPoint><ProxyEndPoint><preFlow><request><steps>\n<step><policy_name>Missing</policy_name></step>\n</steps></request></preFlow></ProxyEndPoint></proxyEndPoint></PolicyTemplateContainer>",
        ),
        (
            "PolicyTemplateContainer/Policy/Broken.xml",
            "<AssignMessage><Set>",
        ),
    ];
    let loaded = load_files(files, &LoadOptions::default());
    let text: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter().any(|d| d.starts_with("PolicyTemplateContainer/T.xml:3:1: warning: step names policy `Missing`, which is not in the template")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(
            |d| d.starts_with("PolicyTemplateContainer/Policy/Broken.xml:1:")
                && d.contains("error")
        ),
        "{text:#?}"
    );
}

/// Applies the template to `proxy`, checks the result loads and lints without errors,
/// and returns it.
fn apply(proxy: &Path, on_clash: OnClash) -> (Loaded, preflow::Applied) {
    let applied = template()
        .apply(files_of(proxy), on_clash, &LoadOptions::default())
        .expect("applies");
    let loaded = load_applied(&applied.files);
    let lints = preflow::lint(&loaded.bundles);
    assert!(!lints.iter().any(|d| d.is_error()), "{lints:#?}");
    assert!(
        !lints.iter().any(|d| d.message.contains("cpi")),
        "the template's policies are attached and used: {lints:#?}"
    );
    (loaded, applied)
}

fn run_checks(loaded: Loaded, base: &str, first_step: &str) {
    let g = Gateway::builder().bundles(loaded).build().unwrap();
    let out = run_at(
        &g,
        request("GET", &format!("{base}/x?query=hello"), &[], ""),
        at(0.0),
        ok_target,
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    let sent = &out.forwarded[0];
    assert_eq!(sent.headers()["SAP-Sender"], "APIM");
    assert_eq!(sent.headers()["x-cpi-route"], "default");
    assert_eq!(
        out.header("x-cpi-template").as_deref(),
        Some("ConnectToCPI")
    );
    // The template's steps run after the proxy's own.
    let trace = format!("{:?}", out.exchange.trace());
    let (mine, theirs) = (
        trace.find(first_step).unwrap(),
        trace.find("cpiSetSender").unwrap(),
    );
    assert!(mine < theirs, "{trace}");
    // The added conditional flow answers without the back end.
    let out = run_at(
        &g,
        request("GET", &format!("{base}/cpi-ping"), &[], ""),
        at(0.0),
        ok_target,
    );
    assert_eq!((out.status(), out.body().as_str()), (200, "pong"));
    assert!(out.forwarded.is_empty());
}

#[test]
fn applied_to_an_sap_proxy_the_template_runs_where_it_attached_its_steps() {
    let (loaded, applied) = apply(&data("regex-protection"), OnClash::Fail);
    let b = &loaded.bundles[0];
    let p = &b.proxy_endpoints[0];
    assert_eq!(
        names(&p.pre_flow.request),
        ["RegexProtection", "cpiSetSender"]
    );
    assert_eq!(names(&p.post_flow.response), ["cpiTagResponse"]);
    assert_eq!(
        p.flows.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["cpiPing"]
    );
    assert_eq!(
        names(&p.default_fault_rule.as_ref().unwrap().steps),
        ["cpiFaultHeader"]
    );
    assert_eq!(
        names(&b.target_endpoints[0].pre_flow.request),
        ["cpiTargetHeader"]
    );
    assert!(p.default_fault_rule.as_ref().unwrap().always_enforce);
    // The proxy's own fault rule is untouched; policies land in `Policy/`.
    assert_eq!(p.fault_rules[0].name, "regex-threat");
    assert!(
        applied
            .files
            .iter()
            .any(|(p, _)| p == "regex-protection/APIProxy/Policy/cpiSetSender.xml")
    );
    assert!(
        applied
            .changes
            .iter()
            .any(|c| c.contains("PreFlow request: appended `cpiSetSender`")),
        "{:#?}",
        applied.changes
    );
    assert!(applied.warnings.is_empty());
    run_checks(loaded, "/regex-protection", "RegexProtection");
}

#[test]
fn applied_to_an_apigee_proxy_the_template_runs_too() {
    let (loaded, _) = apply(&data("rich/apigee"), OnClash::Fail);
    let b = &loaded.bundles[0];
    assert!(b.policies.contains_key("cpiSetSender"));
    assert_eq!(
        names(&b.proxy_endpoints[0].pre_flow.request),
        ["CORS-1", "JTP-1", "cpiSetSender"]
    );
    // The new flow goes before the proxy's catch-all flow, where it can be selected.
    let flows: Vec<&str> = b.proxy_endpoints[0]
        .flows
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(flows.last(), Some(&"not-found"), "{flows:?}");
    assert!(flows.contains(&"cpiPing"), "{flows:?}");
    // (`get-item` matches `/cpi-ping` first, so the proxy's own flow still wins there.)
    let g = Gateway::builder().bundles(loaded).build().unwrap();
    let out = run_at(
        &g,
        request("GET", "/v1/items/42", &[], ""),
        at(0.0),
        ok_target,
    );
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(out.forwarded[0].headers()["SAP-Sender"], "APIM");
    assert_eq!(
        out.header("x-cpi-template").as_deref(),
        Some("ConnectToCPI")
    );
}

#[test]
fn name_clashes_fail_rename_or_keep_the_same_policy() {
    let mut files = files_of(&data("regex-protection"));
    files.push((
        "regex-protection/APIProxy/Policy/cpiSetSender.xml".into(),
        b"<AssignMessage><Set><Headers><Header name=\"mine\">1</Header></Headers></Set></AssignMessage>".to_vec(),
    ));
    let err = template()
        .apply(files.clone(), OnClash::Fail, &LoadOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, preflow::ApplyError::Clash(n) if n == &["cpiSetSender"]),
        "{err}"
    );
    assert!(err.to_string().contains("`cpiSetSender`"), "{err}");

    let applied = template()
        .apply(files.clone(), OnClash::Rename, &LoadOptions::default())
        .unwrap();
    let loaded = load_applied(&applied.files);
    let b = &loaded.bundles[0];
    assert!(b.policies.contains_key("cpiSetSender-2"));
    assert_eq!(
        names(&b.proxy_endpoints[0].pre_flow.request),
        ["RegexProtection", "cpiSetSender-2"]
    );

    // The template's own text is the same policy: kept once, attached again.
    let same = std::fs::read(data(
        "templates/ConnectToCPI/PolicyTemplateContainer/Policy/cpiSetSender.xml",
    ))
    .unwrap();
    let last = files.len() - 1;
    files[last].1 = same;
    let applied = template()
        .apply(files, OnClash::Fail, &LoadOptions::default())
        .unwrap();
    assert!(
        applied
            .changes
            .iter()
            .any(|c| c.starts_with("kept policy `cpiSetSender`"))
    );
    load_applied(&applied.files);
}

#[test]
fn a_proxy_without_target_endpoints_gets_the_proxy_steps_and_a_warning() {
    let files = vec![
        (
            "APIProxy/APIProxyEndPoint/default.xml".to_owned(),
            b"<ProxyEndPoint xmlns=\"http://www.sap.com/apimgmt\"><name>default</name><base_path>/n</base_path><routeRules><routeRule><name>none</name></routeRule></routeRules><preFlow><name>PreFlow</name></preFlow></ProxyEndPoint>".to_vec(),
        ),
    ];
    let applied = template()
        .apply(files, OnClash::Fail, &LoadOptions::default())
        .unwrap();
    assert_eq!(applied.warnings.len(), 1, "{:#?}", applied.warnings);
    let loaded = load_applied(&applied.files);
    let p = &loaded.bundles[0].proxy_endpoints[0];
    assert_eq!(names(&p.pre_flow.request), ["cpiSetSender"]);
    assert_eq!(names(&p.post_flow.response), ["cpiTagResponse"]);
    let err = template()
        .apply(Vec::new(), OnClash::Fail, &LoadOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("no API proxy found"), "{err}");
}

#[test]
fn descriptor_flows_may_be_escaped_xml_text() {
    let endpoint = "<ProxyEndPoint><name>default</name><postFlow><name>PostFlow</name><request><isRequest>true</isRequest><steps><step><policy_name>P</policy_name><condition>request.verb = \"GET\"</condition><sequence>1</sequence></step></steps></request></postFlow></ProxyEndPoint>";
    let escaped = endpoint
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let descriptor = format!(
        "<PolicyTemplateContainer><name>T</name><createdBy>someone</createdBy><proxyEndPoints><proxyEndPoint>default</proxyEndPoint></proxyEndPoints><proxyEndPointxml>{escaped}</proxyEndPointxml><targetEndPointxml/></PolicyTemplateContainer>"
    );
    let files = [
        ("PolicyTemplateContainer/T.xml", descriptor.as_str()),
        (
            "PolicyTemplateContainer/Policy/P.xml",
            "<AssignMessage xmlns=\"http://www.sap.com/apimgmt\"><Set><Headers><Header name=\"x-p\">1</Header></Headers></Set></AssignMessage>",
        ),
    ];
    let loaded = load_files(files, &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let t = &loaded.templates[0];
    let post = &t.proxy_endpoint.as_ref().unwrap().post_flow;
    assert_eq!(names(&post.request), ["P"]);
    assert_eq!(
        post.request[0].condition.as_ref().unwrap().text,
        "request.verb = \"GET\""
    );
    assert!(
        post.request[0]
            .location
            .file
            .ends_with("T.xml#proxyEndPointxml")
    );
}

#[test]
fn template_scripts_reach_the_proxy_from_a_zip() {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    let entries = [
        (
            "PolicyTemplateContainer/X.xml",
            "<PolicyTemplateContainer><name>X</name><proxyEndPoint><ProxyEndPoint><preFlow><request><steps><step><policy_name>xsl</policy_name></step></steps></request></preFlow></ProxyEndPoint></proxyEndPoint></PolicyTemplateContainer>",
        ),
        (
            "PolicyTemplateContainer/Policy/xsl.xml",
            "<XSL xmlns=\"http://www.sap.com/apimgmt\"><ResourceURL>xsl://t.xsl</ResourceURL><Source>request</Source></XSL>",
        ),
        (
            "PolicyTemplateContainer/FileResource/t.xsl",
            "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\"/>",
        ),
    ];
    for (name, text) in entries {
        zip.start_file(name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let loaded = preflow::load_zip(
        "x.zip",
        std::io::Cursor::new(bytes),
        &LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let applied = loaded.templates[0]
        .apply(
            files_of(&data("regex-protection")),
            OnClash::Fail,
            &LoadOptions::default(),
        )
        .unwrap();
    let script = applied
        .files
        .iter()
        .find(|(p, _)| p == "regex-protection/APIProxy/FileResource/t.xsl")
        .expect("the script is copied");
    assert!(String::from_utf8_lossy(&script.1).contains("xsl:stylesheet"));
    load_applied(&applied.files);
}
