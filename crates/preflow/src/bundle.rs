//! Bundles: an `apiproxy/` or `sharedflowbundle/` folder, parsed from its files
//! (the `load` module gathers them from memory, a folder or a zip).

use crate::endpoint::{Ecx, ProxyEndpoint, RouteTarget, SharedFlow, Step, TargetEndpoint};
use crate::layout;
use preflow_condition::ParseOptions;
use preflow_policy::xml::{self, XmlLimits};
use preflow_policy::{
    Diagnostic, ParseContext, Policy, Severity, Source, parse_policy, policy_from_element,
    warn_placeholders,
};
use std::collections::BTreeMap;

/// Limits on what a load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_file_size: usize,
    /// Most files read in one load (every file of every bundle, zip entries included).
    pub max_files: usize,
    /// Most bytes read in one load, all files together.
    pub max_total_size: usize,
    /// Deepest folder nesting searched for bundles.
    pub max_dir_depth: usize,
    /// Limits on each XML document.
    pub xml: XmlLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: 4 * 1024 * 1024,
            max_files: 20_000,
            max_total_size: 256 * 1024 * 1024,
            max_dir_depth: 32,
            xml: XmlLimits::default(),
        }
    }
}

/// Settings of a load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Size, count and depth limits.
    pub limits: Limits,
    /// How conditions are parsed (dialect, length and depth limits).
    pub conditions: ParseOptions,
}

/// Whether a bundle is an API proxy or a shared flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleKind {
    /// An `apiproxy/` folder.
    ApiProxy,
    /// A `sharedflowbundle/` folder.
    SharedFlow,
}

/// A loaded bundle: the descriptor's fields, the endpoints or shared flows, and the
/// policies by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// API proxy or shared flow.
    pub kind: BundleKind,
    /// The name: the descriptor's `name`, else its file name, else the parent folder's.
    pub name: String,
    /// The descriptor's `revision`.
    pub revision: Option<String>,
    /// The descriptor's `<Description>`.
    pub description: Option<String>,
    /// The descriptor's `<DisplayName>`.
    pub display_name: Option<String>,
    /// The bundle folder as it appears in messages.
    pub root: String,
    /// `proxies/*.xml`, by file name.
    pub proxy_endpoints: Vec<ProxyEndpoint>,
    /// `targets/*.xml`, by file name.
    pub target_endpoints: Vec<TargetEndpoint>,
    /// `sharedflows/*.xml`, by file name.
    pub shared_flows: Vec<SharedFlow>,
    /// `policies/*.xml`, by policy name.
    pub policies: BTreeMap<String, Policy>,
}

impl Bundle {
    /// The base paths of the proxy endpoints.
    pub fn base_paths(&self) -> impl Iterator<Item = &str> {
        self.proxy_endpoints
            .iter()
            .filter_map(|p| p.base_path.as_deref())
    }

    /// The policy called `name`.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// The target endpoint called `name`.
    pub fn target_endpoint(&self, name: &str) -> Option<&TargetEndpoint> {
        self.target_endpoints.iter().find(|t| t.name == name)
    }

    /// Every step of every endpoint and shared flow.
    pub fn all_steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        for p in &self.proxy_endpoints {
            out.extend(p.all_steps());
        }
        for t in &self.target_endpoints {
            out.extend(t.all_steps());
        }
        for s in &self.shared_flows {
            out.extend(s.all_steps());
        }
        out
    }
}

/// Children of `<APIProxy>` and `<SharedFlowBundle>` descriptors. Only the name, revision,
/// description and display name are used: endpoints and policies are found by scanning.
const DESCRIPTOR_CHILDREN: &[&str] = &[
    "BasePaths",
    "Basepaths",
    "ConfigurationVersion",
    "CreatedAt",
    "CreatedBy",
    "Description",
    "DisplayName",
    "HostedManifestVersion",
    "IntegrationEndpoints",
    "LastModifiedAt",
    "LastModifiedBy",
    "ManifestVersion",
    "Policies",
    "ProxyEndpoints",
    "Resources",
    "SharedFlows",
    "Spec",
    "StepDefinitions",
    "TargetEndpoints",
    "TargetServers",
    "subType",
    "validate",
];

/// Gives Javascript policies their scripts from `resources/jsc/` and OASValidation
/// policies their specifications from `resources/oas/`: a file that is not
/// there is a warning (the policy faults when reached), one that does not compile is
/// an error at its line and column.
fn attach_resources(
    bundle: &mut Bundle,
    files: &[(String, String, Vec<u8>)],
    diags: &mut Vec<Diagnostic>,
) {
    use preflow_policy::PolicyConfig;
    let scripts: BTreeMap<&str, (&str, &[u8])> = files
        .iter()
        .filter_map(|(rel, path, bytes)| {
            // SAP exports keep scripts in `FileResource/`.
            rel.strip_prefix("resources/jsc/")
                .or_else(|| rel.strip_prefix("FileResource/"))
                .map(|name| (name, (path.as_str(), bytes.as_slice())))
        })
        .collect();
    let specs: BTreeMap<&str, &[u8]> = files
        .iter()
        .filter_map(|(rel, _, bytes)| {
            rel.strip_prefix("resources/oas/")
                .map(|name| (name, bytes.as_slice()))
        })
        .collect();
    let mut checked: Vec<&str> = Vec::new();
    for policy in bundle.policies.values_mut() {
        if let PolicyConfig::OasValidation(oas) = &mut policy.config {
            let attached = oas.attach(|name| {
                specs
                    .get(name)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            });
            if let Err(why) = attached {
                let severity = if why.contains("does not parse") {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                diags.push(Diagnostic::for_file(
                    policy.location.file.clone(),
                    severity,
                    format!("OASValidation policy `{}`: {why}", policy.name),
                ));
            }
            continue;
        }
        let PolicyConfig::Javascript(js) = &mut policy.config else {
            continue;
        };
        let missing = js.attach(|name| {
            scripts
                .get(name)
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        });
        for url in missing {
            diags.push(Diagnostic::for_file(
                policy.location.file.clone(),
                Severity::Warning,
                format!(
                    "Javascript policy `{}` names `{url}`, which is not in the bundle's resources/jsc/; the policy faults when reached",
                    policy.name
                ),
            ));
        }
        for script in &js.scripts {
            let Some((path, bytes)) = scripts.get(script.name.as_str()) else {
                continue;
            };
            if checked.contains(path) {
                continue;
            }
            checked.push(path);
            let syntax = preflow_policy::javascript::check_syntax(&script.text);
            let unsupported = preflow_policy::javascript::unsupported_constructs(&script.text);
            if syntax.is_ok() && unsupported.is_empty() {
                continue;
            }
            let Some(src) = decode(path, bytes, diags) else {
                continue;
            };
            if let Err((message, line, column)) = syntax {
                let offset = line_col_offset(src.text(), line, column);
                diags.push(src.error(offset, message));
            }
            for (offset, what) in unsupported {
                diags.push(src.warning(offset, what));
            }
        }
    }
}

/// The byte offset of a 1-based line and column in `text` (the start when unknown).
fn line_col_offset(text: &str, line: Option<u32>, column: Option<u32>) -> usize {
    let Some(line) = line else {
        return 0;
    };
    let mut offset = 0usize;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            let col = column.unwrap_or(1).saturating_sub(1) as usize;
            let within = l
                .char_indices()
                .nth(col)
                .map_or(l.trim_end_matches('\n').len(), |(b, _)| b);
            return offset + within;
        }
        offset += l.len();
    }
    offset
}

/// What a file of a bundle holds, by its path inside the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Descriptor,
    Proxy,
    Target,
    Policy,
    SharedFlow,
    Ignored,
    Unexpected,
}

fn role(rel: &str) -> Role {
    let is_xml = rel.to_ascii_lowercase().ends_with(".xml");
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        [file] if is_xml && !file.is_empty() => Role::Descriptor,
        [_] => Role::Ignored,
        ["proxies", _] if is_xml => Role::Proxy,
        ["targets", _] if is_xml => Role::Target,
        ["policies", _] if is_xml => Role::Policy,
        ["sharedflows", _] if is_xml => Role::SharedFlow,
        ["resources" | "manifests" | "stepdefinitions", ..] => Role::Ignored,
        ["APIProxyEndPoint", _] if is_xml => Role::Proxy,
        ["APITargetEndPoint", _] if is_xml => Role::Target,
        ["Policy", _] if is_xml => Role::Policy,
        ["FileResource" | "APIResource" | "Documentation", ..] => Role::Ignored,
        _ if is_xml => Role::Unexpected,
        _ => Role::Ignored,
    }
}

fn stem(rel: &str) -> &str {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.rsplit_once('.').map_or(file, |(s, _)| s)
}

/// Decodes a file to text: UTF-8 with an optional byte order mark.
pub(crate) fn decode(path: &str, bytes: &[u8], diags: &mut Vec<Diagnostic>) -> Option<Source> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(Source::new(path, text)),
        Err(e) => {
            let text = String::from_utf8_lossy(bytes);
            let src = Source::new(path, text.into_owned());
            diags.push(src.error(e.valid_up_to(), "file is not valid UTF-8"));
            None
        }
    }
}

pub(crate) fn load_bundle(
    root: &str,
    kind: BundleKind,
    mut files: Vec<(String, String, Vec<u8>)>,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) -> Option<Bundle> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    // `x/apiproxy` is named `x`; a folder found by content (`Orders-APIProxy`) by itself.
    let own = root.rsplit('/').next().unwrap_or(root);
    let folder_name = if layout::named(own).is_some() {
        root.rsplit('/')
            .nth(1)
            .filter(|s| !s.is_empty())
            .unwrap_or(root)
    } else {
        own
    }
    .to_owned();
    let mut bundle = Bundle {
        kind,
        name: folder_name,
        revision: None,
        description: None,
        display_name: None,
        root: root.to_owned(),
        proxy_endpoints: Vec::new(),
        target_endpoints: Vec::new(),
        shared_flows: Vec::new(),
        policies: BTreeMap::new(),
    };
    let limits = &options.limits.xml;
    let mut descriptor_seen = false;
    // Policies first, so that steps can be checked against them.
    for (rel, path, bytes) in files.iter().filter(|f| role(&f.0) == Role::Policy) {
        let Some(src) = decode(path, bytes, diags) else {
            continue;
        };
        let parsed = if rel.starts_with("Policy/") {
            crate::sap::parse_policy(&src, rel, limits, diags)
        } else {
            parse_policy(&src, limits, diags)
        };
        let Some(policy) = parsed else {
            continue;
        };
        if policy.name != stem(rel) {
            diags.push(
                src.warning(
                    src.location(0).offset.max(policy.location.offset),
                    format!(
                        "policy `{}` is in a file named `{}`",
                        policy.name,
                        stem(rel)
                    ),
                )
                .with_hint(format!("name the file `{}.xml`", policy.name)),
            );
        }
        insert_policy(&mut bundle.policies, &src, policy, diags);
    }
    attach_resources(&mut bundle, &files, diags);
    for (rel, path, bytes) in &files {
        let role = role(rel);
        match role {
            Role::Policy | Role::Ignored => continue,
            Role::Unexpected => {
                diags.push(Diagnostic::for_file(
                    path.as_str(),
                    Severity::Warning,
                    "unexpected file in the bundle; it is ignored",
                ));
                continue;
            }
            _ => {}
        }
        let Some(src) = decode(path, bytes, diags) else {
            continue;
        };
        let root_el = match xml::parse(src.text(), limits) {
            Ok(r) => crate::sap::normalize(r),
            Err(e) => {
                diags.push(src.error(e.offset, e.message));
                continue;
            }
        };
        warn_placeholders(&src, &root_el, diags);
        let mut cx = Ecx {
            cx: ParseContext { src: &src, diags },
            options: &options.conditions,
        };
        let expected = match role {
            Role::Descriptor => match kind {
                BundleKind::ApiProxy => "APIProxy",
                BundleKind::SharedFlow => "SharedFlowBundle",
            },
            Role::Proxy => "ProxyEndpoint",
            Role::Target => "TargetEndpoint",
            _ => "SharedFlow",
        };
        if root_el.name != expected {
            // A policy dropped into the wrong folder is a common slip; say so.
            let hint = if preflow_policy::is_supported_type(&root_el.name) {
                format!(
                    "`<{}>` is a policy; move the file to `policies/`",
                    root_el.name
                )
            } else {
                format!("the root element of this file must be `<{expected}>`")
            };
            cx.cx.diags.push(
                src.error(
                    root_el.offset,
                    format!("expected `<{expected}>`, found `<{}>`", root_el.name),
                )
                .with_hint(hint),
            );
            if role == Role::Descriptor {
                // Policies sometimes sit next to the descriptor; load them for their names.
                let _ = policy_from_element(&src, &root_el, &mut Vec::new());
            }
            continue;
        }
        match role {
            Role::Descriptor => {
                if descriptor_seen {
                    cx.cx.diags.push(src.warning(
                        root_el.offset,
                        "a second descriptor in the bundle; it is ignored",
                    ));
                    continue;
                }
                descriptor_seen = true;
                cx.known(&root_el, DESCRIPTOR_CHILDREN);
                bundle.name = root_el
                    .attr("name")
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(stem(rel))
                    .to_owned();
                bundle.revision = root_el.attr("revision").map(|r| r.trim().to_owned());
                bundle.description = root_el
                    .child("Description")
                    .and_then(|d| d.non_empty_text())
                    .map(str::to_owned);
                bundle.display_name = root_el
                    .child("DisplayName")
                    .and_then(|d| d.non_empty_text())
                    .map(str::to_owned);
            }
            Role::Proxy => {
                let ep = cx.proxy_endpoint(&root_el);
                name_matches_file(&src, &root_el, &ep.name, rel, cx.cx.diags);
                bundle.proxy_endpoints.push(ep);
            }
            Role::Target => {
                let ep = cx.target_endpoint(&root_el);
                name_matches_file(&src, &root_el, &ep.name, rel, cx.cx.diags);
                bundle.target_endpoints.push(ep);
            }
            _ => {
                let flow = cx.shared_flow(&root_el);
                bundle.shared_flows.push(flow);
            }
        }
    }
    let before = diags.len();
    check_references(&bundle, diags);
    // Show the offending line, as for every other error.
    for d in diags.iter_mut().skip(before) {
        let line = files
            .iter()
            .find(|f| *f.1 == *d.location.file)
            .and_then(|f| std::str::from_utf8(&f.2).ok())
            .and_then(|text| text.lines().nth(d.location.line.saturating_sub(1)));
        if let Some(line) = line {
            d.line_text = line.trim_end_matches('\r').to_owned();
        }
    }
    match kind {
        BundleKind::ApiProxy if bundle.proxy_endpoints.is_empty() => {
            diags.push(Diagnostic::for_file(
                root,
                Severity::Error,
                "API proxy bundle has no proxy endpoint (`proxies/*.xml`)",
            ));
        }
        BundleKind::SharedFlow if bundle.shared_flows.is_empty() => {
            // Policies alone: a library of policies a build step assembles; a FlowCallout
            // to it runs no step.
            diags.push(Diagnostic::for_file(
                root,
                Severity::Warning,
                "shared flow bundle has no shared flow (`sharedflows/*.xml`); calling it runs nothing",
            ));
        }
        _ => {}
    }
    Some(bundle)
}

/// Adds `policy` to `policies`, or reports a second policy of its name; whether it was
/// added.
pub(crate) fn insert_policy(
    policies: &mut BTreeMap<String, Policy>,
    src: &Source,
    policy: Policy,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if let Some(first) = policies.get(&policy.name) {
        diags.push(
            src.error(
                policy.location.offset,
                format!("a second policy named `{}`", policy.name),
            )
            .with_hint(format!("the first is at {}", first.location)),
        );
        return false;
    }
    policies.insert(policy.name.clone(), policy);
    true
}

fn name_matches_file(
    src: &Source,
    el: &xml::Element,
    name: &str,
    rel: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if name.is_empty() {
        diags.push(src.error(
            el.offset,
            format!("`<{}>` has no `name` attribute", el.name),
        ));
    } else if name != stem(rel) {
        diags.push(src.warning(
            el.offset,
            format!("endpoint `{name}` is in a file named `{}`", stem(rel)),
        ));
    }
}

/// Steps must name policies of the bundle; route rules must name its target endpoints.
pub(crate) fn check_references(bundle: &Bundle, diags: &mut Vec<Diagnostic>) {
    // A policy whose file did not load was reported there: its steps are not "missing".
    // (`policies/NAME.xml`, or SAP's `Policy/NAME.xml`.)
    let broken = |policy: &str| {
        let file = format!("/{policy}.xml");
        diags
            .iter()
            .any(|d| d.severity == Severity::Error && d.location.file.ends_with(&file))
    };
    let mut missing = Vec::new();
    for step in bundle.all_steps() {
        if !bundle.policies.contains_key(&step.policy) && !broken(&step.policy) {
            // Build scripts often add policies before deployment: a warning, and a
            // runtime fault (`PolicyNotFound`) if the step is reached.
            let mut d = Diagnostic::at(
                step.location.clone(),
                Severity::Warning,
                format!(
                    "step names policy `{}`, which is not in the bundle; reaching the step raises fault `PolicyNotFound`",
                    step.policy
                ),
            );
            if let Some(close) = closest(&step.policy, bundle.policies.keys()) {
                d = d.with_hint(format!("did you mean `{close}`?"));
            } else {
                d = d.with_hint(format!("add `policies/{}.xml`", step.policy));
            }
            missing.push(d);
        }
    }
    diags.append(&mut missing);
    for ep in &bundle.proxy_endpoints {
        for rule in &ep.route_rules {
            if let RouteTarget::TargetEndpoint(t) = &rule.target
                && bundle.target_endpoint(t).is_none()
            {
                diags.push(Diagnostic::at(
                    rule.location.clone(),
                    Severity::Error,
                    format!("route rule names target endpoint `{t}`, which is not in the bundle"),
                ));
            }
        }
    }
}

/// The policy name closest to `name`, ignoring case and punctuation, if close enough.
fn closest<'a>(name: &str, names: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let target = norm(name);
    names.map(String::as_str).find(|n| norm(n) == target)
}
