//! SAP API Management's export format.
//!
//! An SAP export holds an `APIProxy/` folder with the descriptor `APIProxy/<name>.xml`,
//! proxy endpoints in `APIProxyEndPoint/`, target endpoints in `APITargetEndPoint/` and
//! policies in `Policy/` (`FileResource/`, `APIResource/` and `Documentation/` are not
//! read). Endpoint files use lower-case, snake-case elements in the
//! `http://www.sap.com/apimgmt` namespace, with `<sequence>` numbers ordering steps and
//! route rules:
//!
//! ```xml
//! <ProxyEndPoint default="true" xmlns="http://www.sap.com/apimgmt">
//!   <name>default</name>
//!   <base_path>/v1/items</base_path>
//!   <routeRules><routeRule><name>default</name><targetEndPointName>default</targetEndPointName>
//!     <sequence>1</sequence></routeRule></routeRules>
//!   <preFlow><name>PreFlow</name><request><isRequest>true</isRequest><steps>
//!     <step><policy_name>VerifyKey</policy_name><condition/><sequence>1</sequence></step>
//!   </steps></request></preFlow>
//!   <conditionalFlows><conditionalFlow><name>get</name><conditions>request.verb = "GET"</conditions>
//!     ...</conditionalFlow></conditionalFlows>
//! </ProxyEndPoint>
//! ```
//!
//! [`normalize`] rewrites such a tree into the Apigee element tree the endpoint parser
//! reads, keeping every element's position, so that both formats give the same model and
//! messages point into the SAP file. Policies need no rewriting: they are Apigee policy
//! elements in SAP's namespace, and namespaces are ignored.

use preflow_policy::xml::{self, Attribute, Element, XmlLimits};
use preflow_policy::{Diagnostic, Policy, Source, policy_from_element, warn_placeholders};

/// Whether `root` is the root element of an SAP-format endpoint or descriptor.
pub(crate) fn is_sap(root: &Element) -> bool {
    matches!(root.name.as_str(), "ProxyEndPoint" | "TargetEndPoint")
        || (root.name == "APIProxy" && root.attr("name").is_none() && root.child("name").is_some())
}

/// Rewrites an SAP-format endpoint or descriptor into the Apigee form; any other element
/// is returned as it is.
pub(crate) fn normalize(root: Element) -> Element {
    if !is_sap(&root) {
        return root;
    }
    match root.name.as_str() {
        "ProxyEndPoint" => proxy_endpoint(&root),
        "TargetEndPoint" => target_endpoint(&root),
        _ => descriptor(&root),
    }
}

/// A new element without text, at `at`'s position.
fn element(name: &str, at: &Element) -> Element {
    let mut e = Element::default();
    e.name = name.to_owned();
    e.offset = at.offset;
    e.inner = at.inner.clone();
    e
}

/// `el` under another name, with its text (and text positions) kept.
fn renamed(el: &Element, name: &str) -> Element {
    let mut out = el.clone();
    out.name = name.to_owned();
    out.children.clear();
    out.attributes.clear();
    out
}

/// The `<name>` child as a `name` attribute.
fn name_attr(sap: &Element, out: &mut Element) {
    if let Some(n) = sap.child("name") {
        out.attributes.push(Attribute {
            name: "name".to_owned(),
            value: n.text().to_owned(),
            offset: n.text_offset(),
        });
    }
}

/// The condition of an SAP element: `<conditions>` or `<condition>`, when not blank.
fn condition(sap: &Element) -> Option<Element> {
    sap.child("conditions")
        .or_else(|| sap.child("condition"))
        .filter(|c| !c.text().is_empty())
        .map(|c| renamed(c, "Condition"))
}

/// `<sequence>`: the order of steps and route rules (absent sorts last, in document
/// order).
fn sequence(sap: &Element) -> u64 {
    sap.child("sequence")
        .and_then(|s| s.text().parse().ok())
        .unwrap_or(u64::MAX)
}

fn by_sequence<'a>(items: impl Iterator<Item = &'a Element>) -> Vec<&'a Element> {
    let mut v: Vec<&Element> = items.collect();
    // A stable sort keeps document order among equal sequence numbers.
    v.sort_by_key(|e| sequence(e));
    v
}

fn step(sap: &Element) -> Element {
    let mut out = element("Step", sap);
    if let Some(p) = sap.child("policy_name").or_else(|| sap.child("name")) {
        out.children.push(renamed(p, "Name"));
    }
    if let Some(c) = condition(sap) {
        out.children.push(c);
    }
    out
}

fn steps_into(sap: &Element, out: &mut Element) {
    if let Some(steps) = sap.child("steps") {
        for s in by_sequence(steps.children_named("step")) {
            out.children.push(step(s));
        }
    }
}

fn request_response(sap: &Element, name: &str, apigee: &str, out: &mut Element) {
    if let Some(r) = sap.child(name) {
        let mut e = element(apigee, r);
        steps_into(r, &mut e);
        out.children.push(e);
    }
}

fn flow(sap: &Element, apigee: &str, conditional: bool) -> Element {
    let mut out = element(apigee, sap);
    name_attr(sap, &mut out);
    if let Some(d) = sap.child("description").filter(|d| !d.text().is_empty()) {
        out.children.push(renamed(d, "Description"));
    }
    if conditional && let Some(c) = condition(sap) {
        out.children.push(c);
    }
    request_response(sap, "request", "Request", &mut out);
    request_response(sap, "response", "Response", &mut out);
    out
}

/// PreFlow, PostFlow, PostClientFlow, conditional flows and fault rules, shared by both
/// endpoint kinds.
fn flows_and_faults(sap: &Element, out: &mut Element, proxy: bool) {
    if let Some(f) = sap.child("preFlow") {
        out.children.push(flow(f, "PreFlow", false));
    }
    if let Some(cf) = sap.child("conditionalFlows") {
        let mut flows = element("Flows", cf);
        for f in cf.children_named("conditionalFlow") {
            flows.children.push(flow(f, "Flow", true));
        }
        out.children.push(flows);
    }
    if let Some(f) = sap.child("postFlow") {
        out.children.push(flow(f, "PostFlow", false));
    }
    if proxy && let Some(f) = sap.child("postClientFlow") {
        out.children.push(flow(f, "PostClientFlow", false));
    }
    if let Some(frs) = sap.child("faultRules") {
        let mut rules = element("FaultRules", frs);
        for fr in frs.children_named("faultRule") {
            let mut r = element("FaultRule", fr);
            name_attr(fr, &mut r);
            if let Some(c) = condition(fr) {
                r.children.push(c);
            }
            steps_into(fr, &mut r);
            rules.children.push(r);
        }
        if !rules.children.is_empty() {
            out.children.push(rules);
        }
    }
    if let Some(d) = sap.child("defaultFaultRule") {
        let mut r = element("DefaultFaultRule", d);
        name_attr(d, &mut r);
        if let Some(c) = condition(d) {
            r.children.push(c);
        }
        if let Some(a) = d.child("alwaysEnforce") {
            r.children.push(renamed(a, "AlwaysEnforce"));
        }
        steps_into(d, &mut r);
        out.children.push(r);
    }
}

fn proxy_endpoint(sap: &Element) -> Element {
    let mut out = element("ProxyEndpoint", sap);
    name_attr(sap, &mut out);
    if let Some(d) = sap.child("description").filter(|d| !d.text().is_empty()) {
        out.children.push(renamed(d, "Description"));
    }
    let mut conn = element("HTTPProxyConnection", sap);
    if let Some(b) = sap.child("base_path") {
        conn.children.push(renamed(b, "BasePath"));
    }
    for v in sap
        .child("virtual_hosts")
        .into_iter()
        .flat_map(|v| v.children.iter())
    {
        conn.children.push(renamed(v, "VirtualHost"));
    }
    out.children.push(conn);
    flows_and_faults(sap, &mut out, true);
    if let Some(rr) = sap.child("routeRules") {
        for r in by_sequence(rr.children_named("routeRule")) {
            let mut rule = element("RouteRule", r);
            name_attr(r, &mut rule);
            if let Some(c) = condition(r) {
                rule.children.push(c);
            }
            if let Some(t) = r
                .child("targetEndPointName")
                .or_else(|| r.child("targetEndpointName"))
                .filter(|t| !t.text().is_empty())
            {
                rule.children.push(renamed(t, "TargetEndpoint"));
            } else if let Some(u) = r.child("url").filter(|u| !u.text().is_empty()) {
                rule.children.push(renamed(u, "URL"));
            }
            out.children.push(rule);
        }
    }
    out
}

fn target_endpoint(sap: &Element) -> Element {
    let mut out = element("TargetEndpoint", sap);
    name_attr(sap, &mut out);
    if let Some(d) = sap.child("description").filter(|d| !d.text().is_empty()) {
        out.children.push(renamed(d, "Description"));
    }
    flows_and_faults(sap, &mut out, false);
    let mut conn = element("HTTPTargetConnection", sap);
    if let Some(u) = sap.child("url").filter(|u| !u.text().is_empty()) {
        conn.children.push(renamed(u, "URL"));
    } else if let Some(p) = sap
        .child("provider_id")
        .or_else(|| sap.child("providerId"))
        .filter(|p| !p.text().is_empty() && p.text() != "NONE")
    {
        // A target through an API provider: `provider://ID/relativePath`. `NONE` is what
        // SAP writes for a target with a URL. (`<additionalAPIProviders>` and
        // `<loadBalancerConfigurations>` balance between providers: not read yet.)
        conn.children.push(renamed(p, "APIProvider"));
        if let Some(r) = sap.child("relativePath").filter(|r| !r.text().is_empty()) {
            conn.children.push(renamed(r, "RelativePath"));
        }
    }
    if let Some(props) = sap.child("properties") {
        let mut p = element("Properties", props);
        for prop in props.children_named("property") {
            let mut q = element("Property", prop);
            if let Some(n) = prop.child("name") {
                q.attributes.push(Attribute {
                    name: "name".to_owned(),
                    value: n.text().to_owned(),
                    offset: n.text_offset(),
                });
            }
            if let Some(v) = prop.child("value") {
                let attributes = std::mem::take(&mut q.attributes);
                q = renamed(v, "Property");
                q.attributes = attributes;
            }
            p.children.push(q);
        }
        conn.children.push(p);
    }
    out.children.push(conn);
    out
}

fn descriptor(sap: &Element) -> Element {
    let mut out = element("APIProxy", sap);
    name_attr(sap, &mut out);
    if let Some(d) = sap.child("description").filter(|d| !d.text().is_empty()) {
        out.children.push(renamed(d, "Description"));
    }
    if let Some(t) = sap.child("title").filter(|t| !t.text().is_empty()) {
        out.children.push(renamed(t, "DisplayName"));
    }
    if let Some(v) = sap.child("version").filter(|v| !v.text().is_empty()) {
        out.attributes.push(Attribute {
            name: "revision".to_owned(),
            value: v.text().to_owned(),
            offset: v.text_offset(),
        });
    }
    out
}

/// Parses an SAP policy file (`Policy/<name>.xml`). SAP writes policies without a `name`
/// attribute: a `<name>` child, else the file name, is the policy's name.
pub(crate) fn parse_policy(
    src: &Source,
    rel: &str,
    limits: &XmlLimits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let mut root = match xml::parse(src.text(), limits) {
        Ok(r) => r,
        Err(e) => {
            diags.push(src.error(e.offset, e.message));
            return None;
        }
    };
    warn_placeholders(src, &root, diags);
    if root.attr("name").is_none_or(|n| n.trim().is_empty()) {
        // A `<name>` child names the policy where present; otherwise the file does.
        let child = root
            .children
            .iter()
            .position(|c| c.name == "name" && !c.text().is_empty());
        let (value, offset) = match child {
            Some(i) => {
                let c = root.children.remove(i);
                (c.text().to_owned(), c.text_offset())
            }
            None => {
                let file = rel.rsplit('/').next().unwrap_or(rel);
                let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
                (stem.to_owned(), root.offset)
            }
        };
        root.attributes.retain(|a| a.name != "name");
        root.attributes.push(Attribute {
            name: "name".to_owned(),
            value,
            offset,
        });
    }
    policy_from_element(src, &root, diags)
}
