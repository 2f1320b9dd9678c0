//! Checks that read the bundle's files as written: the XML declaration's place, target
//! TLS settings, EventFlows, deprecated elements and types, features of one Apigee
//! platform only, and resource files. Files that cannot be read again (bundles loaded from
//! a zip or from memory) are skipped.

use super::{Platform, warn};
use crate::bundle::Bundle;
use crate::endpoint::{ProxyEndpoint, TargetEndpoint};
use preflow_policy::xml::{Element, XmlLimits, parse};
use preflow_policy::{Diagnostic, Policy, Source};
use std::collections::{BTreeSet, HashMap};

/// Files larger than this are not read again (the loader's own limit is lower).
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// A file read again: its text and its root element, when it parses.
pub(super) struct File {
    pub source: Source,
    pub root: Option<Element>,
}

impl File {
    fn warning(&self, rule: &'static str, offset: usize, message: String) -> Diagnostic {
        self.source.warning(offset, message).with_rule(rule)
    }
}

/// The files read so far, each read at most once.
#[derive(Default)]
pub(super) struct Files {
    map: HashMap<String, Option<File>>,
}

impl Files {
    /// The file `name`, or `None` when it cannot be read.
    pub fn get(&mut self, name: &str) -> Option<&File> {
        self.map
            .entry(name.to_owned())
            .or_insert_with(|| read(name))
            .as_ref()
    }
}

fn read(name: &str) -> Option<File> {
    let meta = std::fs::metadata(name).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    let text = std::fs::read_to_string(name).ok()?;
    let root = parse(&text, &XmlLimits::default()).ok();
    Some(File {
        source: Source::new(name, text),
        root,
    })
}

/// Policy types Apigee deprecated (DEP002).
const DEPRECATED_TYPES: &[&str] = &[
    "ConcurrentRatelimit",
    "OAuthV1",
    "GetOAuthV1Info",
    "DeleteOAuthV1Info",
];

/// Policy types of Apigee Edge only.
const EDGE_ONLY: &[&str] = &[
    "ConcurrentRatelimit",
    "ConnectorCallout",
    "DeleteOAuthV1Info",
    "GetOAuthV1Info",
    "OAuthV1",
    "StatisticsCollector",
];

/// Policy types of Apigee X only.
const X_ONLY: &[&str] = &[
    "AssertCondition",
    "CORS",
    "DataCapture",
    "ExternalCallout",
    "GraphQL",
    "HTTPModifier",
    "IntegrationCallout",
    "LLMTokenQuota",
    "ParseDialogflowRequest",
    "PromptTokenLimit",
    "PublishMessage",
    "ReadPropertySet",
    "SanitizeModelResponse",
    "SanitizeUserPrompt",
    "SemanticCacheLookup",
    "SemanticCachePopulate",
    "SetDialogflowResponse",
    "SetIntegrationRequest",
    "TraceCapture",
    "VerifyIAM",
];

fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|l| l.eq_ignore_ascii_case(name))
}

/// XML001: the declaration after a comment or white space. Files that do not parse at
/// all were reported by the loader.
pub(super) fn xml_declaration(file: &File, out: &mut Vec<Diagnostic>) {
    let text = file.source.text();
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let skip = text.len() - body.len();
    let Some(at) = body.find("<?xml") else {
        return;
    };
    let is_declaration = body
        .get(at + 5..)
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_whitespace() || c == '?');
    if at > 0 && is_declaration {
        out.push(
            file.source
                .error(
                    skip + at,
                    "the XML declaration is not at the start of the file",
                )
                .with_hint(
                    "move `<?xml …?>` to the very first line, before any comment or white space",
                )
                .with_rule("XML001"),
        );
    }
}

fn text_of<'e>(el: &'e Element, name: &str) -> Option<&'e str> {
    el.child(name)
        .and_then(Element::non_empty_text)
        .map(str::trim)
}

fn is_true(el: &Element, name: &str) -> bool {
    text_of(el, name).is_some_and(|t| t.eq_ignore_ascii_case("true"))
}

/// TLS001–TLS003, TLS005, TLS006 and `<Enforce>` under the Edge profile, for the target
/// connection `conn`.
fn target_tls(file: &File, conn: &Element, platform: Platform, out: &mut Vec<Diagnostic>) {
    let Some(url_el) = conn.child("URL") else {
        return;
    };
    let url = url_el.text().trim().to_ascii_lowercase();
    let https = url.starts_with("https://");
    let http = url.starts_with("http://");
    let infos: Vec<&Element> = conn.children_named("SSLInfo").collect();
    for extra in infos.iter().skip(1) {
        out.push(
            file.warning(
                "TLS006",
                extra.offset,
                "a second `<SSLInfo>` in the target connection; only one is used".to_owned(),
            )
            .with_hint("keep one `<SSLInfo>`"),
        );
    }
    for info in &infos {
        ssl_children(file, info, out);
    }
    let Some(ssl) = infos.first() else {
        if https {
            out.push(
                file.warning(
                    "TLS001",
                    conn.offset,
                    "`https` target without `<SSLInfo>`: the back end's certificate is not validated"
                        .to_owned(),
                )
                .with_hint("add `<SSLInfo>` with `<Enabled>true</Enabled>`, a `<TrustStore>` and `<Enforce>true</Enforce>`"),
            );
        }
        return;
    };
    let enabled = is_true(ssl, "Enabled");
    if let Some(enforce) = ssl.child("Enforce")
        && platform == Platform::Edge
    {
        out.push(
            file.warning(
                "PRF002",
                // At `<SSLInfo>`, like the other findings about the TLS settings as a whole.
                ssl.offset.min(enforce.offset),
                "`<SSLInfo>` uses `<Enforce>`, an Apigee X element; Apigee Edge rejects it"
                    .to_owned(),
            )
            .with_hint("remove `<Enforce>` for Edge, or check with `--profile x`"),
        );
    }
    if https && !enabled {
        out.push(
            file.warning(
                "TLS002",
                // At the URL: the scheme and the TLS settings disagree.
                url_el.offset,
                "`https` target URL whose `<SSLInfo>` is not enabled".to_owned(),
            )
            .with_hint("add `<Enabled>true</Enabled>` to `<SSLInfo>`"),
        );
    } else if http && enabled {
        let at = ssl.child("Enabled").map_or(ssl.offset, |e| e.offset);
        out.push(
            file.warning(
                "TLS002",
                at,
                "`<SSLInfo><Enabled>true` on an `http` URL".to_owned(),
            )
            .with_hint("use an `https` URL, or remove `<SSLInfo>`"),
        );
    }
    if !https || !enabled {
        return;
    }
    if text_of(ssl, "TrustStore").is_none() && !is_true(ssl, "IgnoreValidationErrors") {
        out.push(
            file.warning(
                "TLS003",
                ssl.offset,
                "`<SSLInfo>` without a `<TrustStore>`: Apigee does not validate the back end's certificate chain"
                    .to_owned(),
            )
            .with_hint("add `<TrustStore>` naming a trust store that holds the back end's CA"),
        );
    }
    if platform == Platform::X && !is_true(ssl, "Enforce") {
        out.push(
            file.warning(
                "TLS005",
                ssl.offset,
                "`<SSLInfo>` without `<Enforce>true</Enforce>`: Apigee X connects despite certificate or host-name errors"
                    .to_owned(),
            )
            .with_hint("add `<Enforce>true</Enforce>` to `<SSLInfo>`"),
        );
    }
}

/// Children of `<SSLInfo>`.
const SSL_CHILDREN: &[&str] = &[
    "Enabled",
    "Enforce",
    "ClientAuthEnabled",
    "KeyStore",
    "KeyAlias",
    "TrustStore",
    "IgnoreValidationErrors",
    "Protocols",
    "Ciphers",
    "CommonName",
];

/// SCH001 for `<SSLInfo>`: a misspelt child (`IgnoreValidationError`) silently keeps the
/// default.
fn ssl_children(file: &File, ssl: &Element, out: &mut Vec<Diagnostic>) {
    for c in &ssl.children {
        if !SSL_CHILDREN.contains(&c.name.as_str()) {
            out.push(file.warning(
                "SCH001",
                c.offset,
                format!("unknown element `<{}>` in `<SSLInfo>`", c.name),
            ));
        }
    }
}

/// TGT001: a load balancer without `<MaxFailures>` or a health monitor.
fn load_balancer(file: &File, conn: &Element, out: &mut Vec<Diagnostic>) {
    if let Some(lb) = conn.child("LoadBalancer")
        && lb.child("MaxFailures").is_none()
        && conn.child("HealthMonitor").is_none()
    {
        out.push(
            file.warning(
                "TGT001",
                lb.offset,
                "load balancer without `<MaxFailures>`: a failing server is never taken out of rotation"
                    .to_owned(),
            )
            .with_hint("add `<MaxFailures>` (and a `<HealthMonitor>` to bring servers back)"),
        );
    }
}

/// SCH001/SCH002 for `<HealthMonitor>`: one monitor, one kind of probe, known children of
/// `<SuccessResponse>`.
fn health_monitor(file: &File, conn: &Element, out: &mut Vec<Diagnostic>) {
    let monitors: Vec<&Element> = conn.children_named("HealthMonitor").collect();
    if let Some(second) = monitors.get(1) {
        out.push(file.warning(
            "SCH002",
            second.offset,
            "a second `<HealthMonitor>`; only the first is used".to_owned(),
        ));
    }
    let Some(m) = monitors.first() else {
        return;
    };
    if let (Some(_), Some(tcp)) = (m.child("HTTPMonitor"), m.child("TCPMonitor")) {
        out.push(file.warning(
            "SCH002",
            tcp.offset,
            "`<HealthMonitor>` with both `<HTTPMonitor>` and `<TCPMonitor>`; only the HTTP monitor is used"
                .to_owned(),
        ));
    }
    if let Some(success) = m
        .child("HTTPMonitor")
        .and_then(|h| h.child("SuccessResponse"))
    {
        for c in &success.children {
            if !matches!(c.name.as_str(), "ResponseCode" | "Header") {
                out.push(file.warning(
                    "SCH001",
                    c.offset,
                    format!("unknown element `<{}>` in `<SuccessResponse>`", c.name),
                ));
            }
        }
    }
}

/// The policies named by steps of an `<EventFlow>` of `root`.
fn event_flow_steps(root: &Element, used: &mut BTreeSet<String>) {
    let Some(ev) = root.child("EventFlow") else {
        return;
    };
    for phase in &ev.children {
        for step in phase.children_named("Step") {
            if let Some(name) = text_of(step, "Name") {
                used.insert(name.to_owned());
            }
        }
    }
}

/// SCH001: elements inside a step's `<Name>` (the name is text only); COND004: empty
/// `<Condition>` elements.
fn step_names(file: &File, el: &Element, depth: usize, out: &mut Vec<Diagnostic>) {
    if depth > 32 {
        return;
    }
    if el.name == "Condition" {
        for c in &el.children {
            out.push(file.warning(
                "SCH001",
                c.offset,
                format!(
                    "unknown element `<{}>` in `<Condition>`; a condition is text only",
                    c.name
                ),
            ));
        }
    }
    if el.name == "Condition" && el.children.is_empty() && el.text().trim().is_empty() {
        out.push(
            file.warning(
                "COND004",
                el.offset,
                "an empty `<Condition>`: it counts as no condition, so this always runs".to_owned(),
            )
            .with_hint("write the condition meant, or remove the element"),
        );
    }
    if el.name == "Step"
        && let Some(name) = el.child("Name")
    {
        for c in &name.children {
            out.push(file.warning(
                "SCH001",
                c.offset,
                format!(
                    "unknown element `<{}>` in `<Name>`; a step's name is text only",
                    c.name
                ),
            ));
        }
    }
    for c in &el.children {
        step_names(file, c, depth + 1, out);
    }
}

/// Target endpoint checks; policies of its EventFlow go into `used`.
pub(super) fn target(
    file: &File,
    t: &TargetEndpoint,
    platform: Platform,
    used: &mut BTreeSet<String>,
    out: &mut Vec<Diagnostic>,
) {
    let _ = t;
    let Some(root) = &file.root else {
        return;
    };
    event_flow_steps(root, used);
    step_names(file, root, 0, out);
    if let Some(ev) = root.child("EventFlow") {
        out.push(
            file.warning(
                "FLOW007",
                ev.offset,
                "`<EventFlow>` (server-sent events) is not run by preflow; its steps are ignored"
                    .to_owned(),
            ),
        );
        if platform == Platform::Edge {
            out.push(file.warning(
                "PRF002",
                ev.offset,
                "`<EventFlow>` is an Apigee X element; Apigee Edge rejects it".to_owned(),
            ));
        }
    }
    if let Some(conn) = root.child("HTTPTargetConnection") {
        target_tls(file, conn, platform, out);
        load_balancer(file, conn, out);
        health_monitor(file, conn, out);
    }
    if platform == Platform::X {
        for name in ["HostedTarget", "ScriptTarget"] {
            if let Some(el) = root.child(name) {
                out.push(file.warning(
                    "PRF001",
                    el.offset,
                    format!("`<{name}>` is an Apigee Edge feature; Apigee X has no hosted targets"),
                ));
            }
        }
    }
}

/// Proxy endpoint checks; policies of its EventFlow go into `used`.
pub(super) fn proxy(
    file: &File,
    p: &ProxyEndpoint,
    platform: Platform,
    used: &mut BTreeSet<String>,
    out: &mut Vec<Diagnostic>,
) {
    let _ = p;
    let Some(root) = &file.root else {
        return;
    };
    event_flow_steps(root, used);
    if platform == Platform::Edge
        && let Some(ev) = root.child("EventFlow")
    {
        out.push(file.warning(
            "PRF002",
            ev.offset,
            "`<EventFlow>` is an Apigee X element; Apigee Edge rejects it".to_owned(),
        ));
    }
    if let Some(flow) = root.child("PostClientFlow").filter(|f| {
        f.child("Request")
            .is_some_and(|r| r.child("Step").is_some())
    }) {
        out.push(
            file.warning(
                "FLOW009",
                flow.offset,
                "`<PostClientFlow>` has no request phase; the steps of its `<Request>` never run"
                    .to_owned(),
            )
            .with_hint(
                "remove `<Request>` from `<PostClientFlow>`; its steps belong in `<Response>`",
            ),
        );
    }
    if let Some(conn) = root.child("HTTPProxyConnection") {
        let paths: Vec<&Element> = conn.children_named("BasePath").collect();
        match paths.as_slice() {
            [] => out.push(
                file.warning(
                    "SCH002",
                    conn.offset,
                    "`<HTTPProxyConnection>` without a `<BasePath>`".to_owned(),
                )
                .with_hint("add `<BasePath>`, such as `<BasePath>/orders/v1</BasePath>`"),
            ),
            [_] => {}
            more => out.push(file.warning(
                "SCH002",
                conn.offset,
                format!(
                    "`<HTTPProxyConnection>` has {} `<BasePath>` elements; a proxy endpoint has one",
                    more.len()
                ),
            )),
        }
    }
    step_names(file, root, 0, out);
    for rule in root.children_named("RouteRule") {
        if let Some(t) = rule.child("TargetEndpoint")
            && t.text().trim().is_empty()
        {
            out.push(
                file.warning(
                    "SCH002",
                    t.offset,
                    "an empty `<TargetEndpoint>`: the route rule calls no target".to_owned(),
                )
                .with_hint("name a target endpoint, or remove the element for a null route"),
            );
        }
    }
    if platform == Platform::X
        && let Some(conn) = root.child("HTTPProxyConnection")
    {
        for vh in conn.children_named("VirtualHost") {
            out.push(
                file.warning(
                    "PRF001",
                    vh.offset,
                    "`<VirtualHost>` is an Apigee Edge element; Apigee X ignores it (environment groups route instead)"
                        .to_owned(),
                )
                .with_hint("remove `<VirtualHost>` for Apigee X"),
            );
        }
    }
}

/// Policy checks: deprecated types and elements, platform-only types, resource files,
/// and the policy module's own advice.
pub(super) fn policy(
    file: Option<&File>,
    bundle: &Bundle,
    p: &Policy,
    platform: Platform,
    out: &mut Vec<Diagnostic>,
) {
    let root = file.and_then(|f| f.root.as_ref());
    // The module's advice, at the element it names when the file can be read again.
    for advice in p.config.advice() {
        let offset = root.map(|r| {
            advice
                .element
                .and_then(|e| r.children_named(e).nth(advice.nth))
                .unwrap_or(r)
                .offset
        });
        let d = match (file, offset) {
            (Some(f), Some(at)) => f.warning(advice.rule, at, advice.message),
            _ => warn(advice.rule, &p.location, advice.message),
        };
        out.push(d);
    }
    let (Some(file), Some(root)) = (file, root) else {
        return;
    };
    let ty = root.name.as_str();
    if listed(DEPRECATED_TYPES, ty) {
        out.push(
            file.warning(
                "DEP002",
                root.offset,
                format!("`{ty}` is a deprecated policy type"),
            )
            .with_hint(if ty.eq_ignore_ascii_case("ConcurrentRatelimit") {
                "use SpikeArrest or Quota"
            } else {
                "use OAuthV2"
            }),
        );
    }
    match platform {
        Platform::X if listed(EDGE_ONLY, ty) => out.push(file.warning(
            "PRF001",
            root.offset,
            format!("`{ty}` is a policy type of Apigee Edge only; Apigee X rejects it"),
        )),
        Platform::Edge if listed(X_ONLY, ty) => out.push(file.warning(
            "PRF002",
            root.offset,
            format!("`{ty}` is a policy type of Apigee X only; Apigee Edge rejects it"),
        )),
        _ => {}
    }
    if platform == Platform::Edge {
        x_only_elements(file, root, out);
    }
    if matches!(ty, "AssignMessage" | "RaiseFault") {
        assign_variables(file, root, out);
    }
    if matches!(ty, "AssignMessage" | "RaiseFault") {
        payload_content_type(file, root, out);
    }
    if ty == "ServiceCallout" {
        service_callout(file, root, out);
    }
    if ty == "DataCapture" {
        data_capture_sources(file, root, attached_phases(bundle, &p.name), out);
    }
    if ty == "Quota" {
        quota_product_step(file, bundle, p, root, out);
    }
    deprecated_elements(file, root, 0, out);
    resources(file, bundle, root, out);
}

/// POL011: a `<Set><Payload>` whose content type is set by nobody, or twice (by the
/// `contentType` attribute and by a `Content-Type` header).
fn payload_content_type(file: &File, root: &Element, out: &mut Vec<Diagnostic>) {
    let sets = root.children_named("Set").chain(
        root.child("FaultResponse")
            .into_iter()
            .flat_map(|f| f.children_named("Set")),
    );
    for set in sets {
        let Some(payload) = set.child("Payload") else {
            continue;
        };
        let content_type_header = |parent: Option<&Element>| {
            parent
                .and_then(|p| p.child("Headers"))
                .into_iter()
                .flat_map(|h| h.children_named("Header"))
                .find(|h| {
                    h.attr("name")
                        .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-type"))
                })
                .map(|h| h.offset)
        };
        let in_set = content_type_header(Some(set));
        let attribute = payload
            .attr("contentType")
            .is_some_and(|c| !c.trim().is_empty());
        match (attribute, in_set) {
            (true, Some(at)) => out.push(
                file.warning(
                    "POL011",
                    at,
                    "`Content-Type` is set twice: by `<Payload contentType>` and by this `<Header>`"
                        .to_owned(),
                )
                .with_hint("keep one of them; `<Payload contentType>` says it next to the payload"),
            ),
            (false, None) if payload.non_empty_text().is_some() || !payload.children.is_empty() => {
                let parent = if root.name == "RaiseFault" {
                    root.child("FaultResponse")
                } else {
                    Some(root)
                };
                if content_type_header(parent.and_then(|p| p.child("Add"))).is_none() {
                    out.push(
                        file.warning(
                            "POL011",
                            payload.offset,
                            "a payload without a content type: the message keeps the `Content-Type` it had, or has none"
                                .to_owned(),
                        )
                        .with_hint("add `contentType=\"application/json\"` (or the payload's type) to `<Payload>`"),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Whether policy `name` is attached to a request flow and to a response flow of an
/// endpoint (fault rules and shared flows do not say which message they run on).
fn attached_phases(bundle: &Bundle, name: &str) -> (bool, bool) {
    let names = |steps: &[crate::endpoint::Step]| steps.iter().any(|s| s.policy == name);
    let (mut request, mut response) = (false, false);
    let mut flows: Vec<&crate::endpoint::Flow> = Vec::new();
    for p in &bundle.proxy_endpoints {
        flows.extend([&p.pre_flow, &p.post_flow]);
        flows.extend(&p.flows);
        flows.extend(&p.post_client_flow);
    }
    for t in &bundle.target_endpoints {
        flows.extend([&t.pre_flow, &t.post_flow]);
        flows.extend(&t.flows);
    }
    for f in flows {
        request |= names(&f.request);
        response |= names(&f.response);
    }
    (request, response)
}

/// POL012: a DataCapture `<Collect>` reading a message its flow does not have: the
/// response in a request flow, or a query parameter or URI path of a response (only
/// requests have them) in a response flow.
fn data_capture_sources(
    file: &File,
    root: &Element,
    (request, response): (bool, bool),
    out: &mut Vec<Diagnostic>,
) {
    for capture in root.children_named("Capture") {
        for collect in capture.children_named("Collect") {
            let source = collect
                .child("Source")
                .map(|s| s.text().trim().to_ascii_lowercase());
            let of_request_only = ["QueryParam", "URIPath"]
                .into_iter()
                .find(|n| collect.child(n).is_some());
            let reads_response = match source.as_deref() {
                Some("response") => true,
                // Without a source, `message`: the response in a response flow.
                None | Some("message") => response,
                _ => false,
            };
            let problem = if request && source.as_deref() == Some("response") {
                Some(
                    "reads the response in a request flow, where there is no response yet"
                        .to_owned(),
                )
            } else if let (Some(what), true) = (of_request_only, response && reads_response) {
                Some(format!(
                    "captures a `<{what}>` of the response in a response flow; responses have no {}",
                    if what == "URIPath" {
                        "URI path"
                    } else {
                        "query parameters"
                    }
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                out.push(
                    file.warning("POL012", capture.offset, format!("this `<Capture>` {problem}"))
                        .with_hint("set `<Source>request</Source>` in `<Collect>`, or attach the policy to the flow whose message it reads"),
                );
            }
        }
    }
}

/// The `<AssignVariable>` elements of an AssignMessage, or of a RaiseFault's
/// `<FaultResponse>`.
fn assign_variable_elements(root: &Element) -> impl Iterator<Item = &Element> {
    root.children_named("AssignVariable").chain(
        root.child("FaultResponse")
            .into_iter()
            .flat_map(|f| f.children_named("AssignVariable")),
    )
}

/// Children of `<AssignVariable>`.
const ASSIGN_VARIABLE_CHILDREN: &[&str] = &[
    "Name",
    "Ref",
    "Value",
    "Template",
    "PropertySetRef",
    "ResourceURL",
];

/// `<AssignVariable>`: unknown children (SCH001), repeated ones (SCH002), and a `<Ref>`
/// written as a template (POL002).
fn assign_variables(file: &File, root: &Element, out: &mut Vec<Diagnostic>) {
    for v in assign_variable_elements(root) {
        for c in &v.children {
            if !ASSIGN_VARIABLE_CHILDREN.contains(&c.name.as_str()) {
                out.push(file.warning(
                    "SCH001",
                    c.offset,
                    format!("unknown element `<{}>` in `<AssignVariable>`", c.name),
                ));
            }
        }
        for name in ["Name", "Ref", "Value", "Template"] {
            let n = v.children_named(name).count();
            if n > 1 {
                out.push(file.warning(
                    "SCH002",
                    v.offset,
                    format!("`<AssignVariable>` has {n} `<{name}>` elements; only one is used"),
                ));
            }
        }
        if let Some(r) = v.child("Ref")
            && r.text().trim().starts_with('{')
        {
            out.push(
                file.warning(
                    "POL002",
                    r.offset,
                    "`<Ref>` names a variable; with braces it names a variable that does not exist"
                        .to_owned(),
                )
                .with_hint("write the variable name without `{}`, or use `<Template>`"),
            );
        }
    }
}

/// PRF002: elements of Apigee X only inside policies that Edge has too.
fn x_only_elements(file: &File, root: &Element, out: &mut Vec<Diagnostic>) {
    let mut found: Vec<&Element> = Vec::new();
    match root.name.as_str() {
        "Quota" => found.extend(
            root.children
                .iter()
                .filter(|c| matches!(c.name.as_str(), "CountOnly" | "EnforceOnly" | "SharedName")),
        ),
        "AssignMessage" | "RaiseFault" => found.extend(
            assign_variable_elements(root)
                .flat_map(|v| &v.children)
                .filter(|c| c.name == "ResourceURL" || c.name == "PropertySetRef"),
        ),
        _ => {}
    }
    for el in found {
        out.push(file.warning(
            "PRF002",
            el.offset,
            format!(
                "`<{}>` in `<{}>` is an Apigee X element; Apigee Edge rejects it",
                el.name, root.name
            ),
        ));
    }
}

/// POL008: a ServiceCallout whose request or response is the proxy's own message, and
/// SCH001 for its `<SSLInfo>`.
fn service_callout(file: &File, root: &Element, out: &mut Vec<Diagnostic>) {
    if let Some(req) = root.child("Request")
        && req.attr("variable").is_some_and(|v| v.trim() == "request")
    {
        out.push(
            file.warning(
                "POL008",
                req.offset,
                "the callout's request is the variable `request`: building it overwrites the proxy's own request".to_owned(),
            )
            .with_hint("name the callout request something else, such as `calloutRequest`"),
        );
    }
    if let Some(resp) = root.child("Response")
        && resp.text().trim() == "response"
    {
        out.push(
            file.warning(
                "POL008",
                resp.offset,
                "the callout's response goes to `response`, overwriting the response the proxy is building".to_owned(),
            )
            .with_hint("name the callout response something else, such as `calloutResponse`"),
        );
    }
    if let Some(ssl) = root
        .child("HTTPTargetConnection")
        .and_then(|c| c.child("SSLInfo"))
    {
        ssl_children(file, ssl, out);
    }
}

/// POL010: `<UseQuotaConfigInAPIProduct stepName>` must name the VerifyAPIKey or OAuthV2
/// policy whose API product holds the quota settings.
fn quota_product_step(
    file: &File,
    bundle: &Bundle,
    p: &Policy,
    root: &Element,
    out: &mut Vec<Diagnostic>,
) {
    let Some(el) = root.child("UseQuotaConfigInAPIProduct") else {
        return;
    };
    let Some(step) = el.attr("stepName").map(str::trim) else {
        return;
    };
    let problem = match bundle.policy(step) {
        _ if step == p.name => Some("names the Quota itself".to_owned()),
        None => Some(format!("names `{step}`, which is not in the bundle")),
        Some(other) if !matches!(other.type_name.as_str(), "VerifyAPIKey" | "OAuthV2") => {
            Some(format!("names `{step}`, a {} policy", other.type_name))
        }
        Some(_) => None,
    };
    if let Some(problem) = problem {
        out.push(
            file.warning(
                "POL010",
                el.offset,
                format!("`<UseQuotaConfigInAPIProduct stepName>` {problem}; the quota settings of the API product are not found"),
            )
            .with_hint("name the VerifyAPIKey or OAuthV2 (VerifyAccessToken) policy that runs before the Quota"),
        );
    }
}

/// DEP001: `<ExpirySettings><TimeoutInSec>` anywhere in the policy.
fn deprecated_elements(file: &File, el: &Element, depth: usize, out: &mut Vec<Diagnostic>) {
    if depth > 32 {
        return;
    }
    if el.name == "KeyValueMapOperations"
        && let Some(old) = el.child("ExclusiveCache")
    {
        out.push(
            file.warning(
                "DEP001",
                old.offset,
                "`<ExclusiveCache>` is deprecated and has no effect".to_owned(),
            )
            .with_hint("remove `<ExclusiveCache>`"),
        );
    }
    if el.name == "ExpirySettings"
        && let Some(old) = el.child("TimeoutInSec")
    {
        out.push(
            file.warning(
                "DEP001",
                old.offset,
                "`<TimeoutInSec>` is deprecated".to_owned(),
            )
            .with_hint("write `<TimeoutInSeconds>` instead"),
        );
    }
    for c in &el.children {
        deprecated_elements(file, c, depth + 1, out);
    }
}

/// REF002: `<ResourceURL>` and `<IncludeURL>` naming files the bundle does not hold.
/// Checked only for bundles read from a folder.
fn resources(file: &File, bundle: &Bundle, root: &Element, out: &mut Vec<Diagnostic>) {
    let dir = std::path::Path::new(&bundle.root);
    if !dir.is_dir() {
        return;
    }
    for el in root
        .children
        .iter()
        .filter(|c| c.name == "ResourceURL" || c.name == "IncludeURL")
    {
        let url = el.text().trim();
        let Some((scheme, name)) = url.split_once("://") else {
            continue;
        };
        if scheme.is_empty() || name.is_empty() || name.contains("..") || name.contains('{') {
            continue;
        }
        // The loader reports the Javascript and OASValidation policies' own files (also
        // for zips): once is enough.
        if matches!(
            (root.name.as_str(), scheme),
            ("Javascript", "jsc") | ("OASValidation", "oas")
        ) {
            continue;
        }
        if !dir.join("resources").join(scheme).join(name).is_file() {
            out.push(
                file.warning(
                    "REF002",
                    el.offset,
                    format!("`{url}` names a resource file that is not in the bundle"),
                )
                .with_hint(format!("add `resources/{scheme}/{name}`")),
            );
        }
    }
}
