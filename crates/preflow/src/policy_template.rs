//! SAP API Management policy templates: a set of policies and the flow steps that attach
//! them, exported as a `PolicyTemplateContainer/` folder (SAP's tutorials use one to
//! connect API Management to Cloud Integration).
//!
//! The export holds the descriptor `PolicyTemplateContainer/<name>.xml`, the policies in
//! `Policy/<name>.xml` and scripts in `FileResource/`. The descriptor carries the fields
//! of SAP's `PolicyTemplateContainer` entity (`name`, `title`, `description`, `version`)
//! and the template's flows as a proxy endpoint and a target endpoint in SAP's endpoint
//! format (`proxyEndPoint`/`targetEndPoint`, or `proxyEndPointxml`/`targetEndPointxml`
//! holding the endpoint as nested elements or as escaped XML text):
//!
//! ```xml
//! <PolicyTemplateContainer xmlns="http://www.sap.com/apimgmt">
//!   <name>ConnectToCPI</name>
//!   <title>Connect to Cloud Integration</title>
//!   <version>1</version>
//!   <proxyEndPoint><ProxyEndPoint><preFlow><name>PreFlow</name><request><steps>
//!     <step><policy_name>SetAuth</policy_name><condition/><sequence>1</sequence></step>
//!   </steps></request></preFlow></ProxyEndPoint></proxyEndPoint>
//! </PolicyTemplateContainer>
//! ```
//!
//! [`PolicyTemplate::apply`] applies a template to a proxy's files as SAP's *Apply* does:
//! the template's policies and scripts are added to the proxy, and its steps are appended
//! at the end of the flows they name (PreFlow, PostFlow, PostClientFlow, conditional
//! flows by name, fault rules by name, the DefaultFaultRule) of every proxy endpoint and
//! every target endpoint; a conditional flow or fault rule the proxy lacks is added (a
//! new conditional flow goes before a catch-all flow without condition, where it can
//! still be selected, else last). The
//! files are edited in place as text, so everything else in them stays as written.

use crate::bundle::{Bundle, BundleKind, LoadOptions, decode};
use crate::endpoint::{Ecx, FaultRule, Flow, ProxyEndpoint, Step, TargetEndpoint};
use crate::layout::{self, RootKind};
use preflow_policy::xml::{self, Element};
use preflow_policy::{Diagnostic, ParseContext, Policy, Severity, Source};
use std::collections::BTreeMap;
use std::fmt::Write as _;

mod apply;

/// A loaded SAP policy template.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyTemplate {
    /// The descriptor's `<name>`, else its file name.
    pub name: String,
    /// The descriptor's `<title>`.
    pub title: Option<String>,
    /// The descriptor's `<description>`.
    pub description: Option<String>,
    /// The descriptor's `<version>`.
    pub version: Option<String>,
    /// The template folder as it appears in messages.
    pub root: String,
    /// `Policy/*.xml`, by policy name.
    pub policies: BTreeMap<String, Policy>,
    /// The steps the template attaches to proxy endpoints.
    pub proxy_endpoint: Option<ProxyEndpoint>,
    /// The steps the template attaches to target endpoints.
    pub target_endpoint: Option<TargetEndpoint>,
    /// The policy files as written, by policy name.
    policy_files: BTreeMap<String, Vec<u8>>,
    /// `FileResource/` files, by file name.
    resources: BTreeMap<String, Vec<u8>>,
}

/// Loads the template in `files` (`(path inside the template, path shown, bytes)`).
pub(crate) fn load(
    root: &str,
    mut files: Vec<(String, String, Vec<u8>)>,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) -> Option<PolicyTemplate> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let limits = &options.limits.xml;
    let mut t = PolicyTemplate {
        name: root.rsplit('/').next().unwrap_or(root).to_owned(),
        title: None,
        description: None,
        version: None,
        root: root.to_owned(),
        policies: BTreeMap::new(),
        proxy_endpoint: None,
        target_endpoint: None,
        policy_files: BTreeMap::new(),
        resources: BTreeMap::new(),
    };
    let mut descriptor_seen = false;
    for (rel, path, bytes) in &files {
        let parts: Vec<&str> = rel.split('/').collect();
        let is_xml = rel.to_ascii_lowercase().ends_with(".xml");
        match parts.as_slice() {
            ["FileResource", name] => {
                t.resources.insert((*name).to_owned(), bytes.clone());
            }
            ["Policy", _] if is_xml => {
                let Some(src) = decode(path, bytes, diags) else {
                    continue;
                };
                let Some(policy) = crate::sap::parse_policy(&src, rel, limits, diags) else {
                    continue;
                };
                let name = policy.name.clone();
                if crate::bundle::insert_policy(&mut t.policies, &src, policy, diags) {
                    t.policy_files.insert(name, bytes.clone());
                }
            }
            [_] if is_xml => {
                let Some(src) = decode(path, bytes, diags) else {
                    continue;
                };
                let el = match xml::parse(src.text(), limits) {
                    Ok(el) => el,
                    Err(e) => {
                        diags.push(src.error(e.offset, e.message));
                        continue;
                    }
                };
                if layout::descriptor_kind(&el.name) != Some(RootKind::Template) {
                    diags.push(
                        src.warning(
                            el.offset,
                            format!(
                                "unexpected `<{}>` in a policy template; it is ignored",
                                el.name
                            ),
                        )
                        .with_hint("a template's descriptor is `<PolicyTemplateContainer>`"),
                    );
                    continue;
                }
                if descriptor_seen {
                    diags.push(src.warning(
                        el.offset,
                        "a second descriptor in the template; it is ignored",
                    ));
                    continue;
                }
                descriptor_seen = true;
                descriptor(&mut t, &src, &el, rel, options, diags);
            }
            ["APIProxyEndPoint" | "proxies", _] if is_xml => {
                if let Some(el) = parse_file(path, bytes, limits, diags)
                    && t.proxy_endpoint.is_none()
                {
                    let src = Source::new(path.as_str(), String::from_utf8_lossy(bytes));
                    t.proxy_endpoint = Some(proxy_part(&src, el, options, diags));
                }
            }
            ["APITargetEndPoint" | "targets", _] if is_xml => {
                if let Some(el) = parse_file(path, bytes, limits, diags)
                    && t.target_endpoint.is_none()
                {
                    let src = Source::new(path.as_str(), String::from_utf8_lossy(bytes));
                    t.target_endpoint = Some(target_part(&src, el, options, diags));
                }
            }
            _ if is_xml => diags.push(Diagnostic::for_file(
                path.as_str(),
                Severity::Warning,
                "unexpected file in the policy template; it is ignored",
            )),
            _ => {}
        }
    }
    if !descriptor_seen {
        diags.push(Diagnostic::for_file(
            root,
            Severity::Warning,
            "policy template has no descriptor (`<name>.xml` with `<PolicyTemplateContainer>`); applying it adds its policies only",
        ));
    }
    if t.policies.is_empty() {
        diags.push(Diagnostic::for_file(
            root,
            Severity::Warning,
            "policy template has no policy (`Policy/*.xml`)",
        ));
    }
    // Steps must name the template's policies, as in a bundle.
    let as_bundle = t.as_bundle();
    let before = diags.len();
    crate::bundle::check_references(&as_bundle, diags);
    for d in diags.iter_mut().skip(before) {
        d.message = d
            .message
            .replace("not in the bundle", "not in the template");
        if d.hint
            .as_deref()
            .is_some_and(|h| h.starts_with("add `policies/"))
        {
            d.hint = Some(
                d.hint
                    .take()
                    .unwrap_or_default()
                    .replace("add `policies/", "add `Policy/"),
            );
        }
    }
    Some(t)
}

fn parse_file(
    path: &str,
    bytes: &[u8],
    limits: &xml::XmlLimits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Element> {
    let src = decode(path, bytes, diags)?;
    match xml::parse(src.text(), limits) {
        Ok(el) => Some(el),
        Err(e) => {
            diags.push(src.error(e.offset, e.message));
            None
        }
    }
}

/// Reads the descriptor's fields and endpoint parts into `t`.
fn descriptor(
    t: &mut PolicyTemplate,
    src: &Source,
    el: &Element,
    rel: &str,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) {
    let text = |name: &str| {
        el.child(name)
            .and_then(Element::non_empty_text)
            .map(str::to_owned)
    };
    t.name = text("name").unwrap_or_else(|| {
        let file = rel.rsplit('/').next().unwrap_or(rel);
        file.rsplit_once('.').map_or(file, |(s, _)| s).to_owned()
    });
    t.title = text("title");
    t.description = text("description");
    t.version = text("version");
    // The fields are SAP's entity's; other children (dates, authors) are left alone.
    t.proxy_endpoint = best_part(src, el, "ProxyEndPoint", options, diags, proxy_part, |e| {
        !e.all_steps().is_empty()
    });
    t.target_endpoint = best_part(
        src,
        el,
        "TargetEndPoint",
        options,
        diags,
        target_part,
        |e| !e.all_steps().is_empty(),
    );
}

/// The endpoint of kind `kind` among the descriptor's children named after it
/// (`proxyEndPoint`, `proxyEndPointxml`, `proxyEndPoints`…), as nested elements or as
/// escaped XML text: the first that attaches any step, else the first that reads.
fn best_part<T>(
    src: &Source,
    el: &Element,
    kind: &str,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
    read: impl Fn(&Source, Element, &LoadOptions, &mut Vec<Diagnostic>) -> T,
    has_steps: impl Fn(&T) -> bool,
) -> Option<T> {
    let prefix = kind.to_ascii_lowercase();
    let mut best: Option<(T, Vec<Diagnostic>)> = None;
    for part in el
        .children
        .iter()
        .filter(|c| c.name.to_ascii_lowercase().starts_with(&prefix))
    {
        let mut local = Vec::new();
        let found = match endpoint_element(part, kind) {
            Some(e) => read(src, e, options, &mut local),
            None if part.text().starts_with('<') => {
                // Its own source, named after the field, so positions point into the text.
                let inner = Source::new(format!("{}#{}", src.name(), part.name), part.text());
                match xml::parse(inner.text(), &options.limits.xml) {
                    Ok(e) => {
                        let e = endpoint_element(&e, kind).unwrap_or(e);
                        read(&inner, e, options, &mut local)
                    }
                    Err(e) => {
                        local.push(inner.error(e.offset, e.message));
                        if best.is_none() {
                            diags.append(&mut local);
                        }
                        continue;
                    }
                }
            }
            None => continue,
        };
        let steps = has_steps(&found);
        if best.is_none() || steps {
            best = Some((found, local));
        }
        if steps {
            break;
        }
    }
    let (found, mut local) = best?;
    diags.append(&mut local);
    Some(found)
}

/// The endpoint element in a descriptor part: the part itself, or its `kind` child, as
/// an element the endpoint reader takes (SAP's `ProxyEndPoint` or Apigee's
/// `ProxyEndpoint`).
fn endpoint_element(part: &Element, kind: &str) -> Option<Element> {
    if part.children.is_empty() {
        return None;
    }
    if let Some(inner) = part
        .children
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(kind))
    {
        return endpoint_element(inner, kind).or_else(|| Some(inner.clone()));
    }
    let mut e = part.clone();
    let apigee = [
        "PreFlow",
        "PostFlow",
        "Flows",
        "FaultRules",
        "DefaultFaultRule",
    ]
    .iter()
    .any(|n| e.child(n).is_some());
    e.name = if apigee {
        kind.replace("EndPoint", "Endpoint")
    } else {
        kind.to_owned()
    };
    Some(e)
}

/// Messages about what a template's endpoints need not have.
fn connection_notice(d: &Diagnostic) -> bool {
    d.message
        .starts_with("proxy endpoint has no `<HTTPProxyConnection>`")
        || d.message
            .starts_with("target endpoint has no `<HTTPTargetConnection>`")
        || d.message
            .starts_with("`<HTTPTargetConnection>` needs a `<URL>`")
        || d.message.starts_with("`<ProxyEndpoint>` has no `name`")
        || d.message.starts_with("`<TargetEndpoint>` has no `name`")
}

fn proxy_part(
    src: &Source,
    el: Element,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) -> ProxyEndpoint {
    read_part(src, crate::sap::normalize(el), options, diags, |cx, el| {
        cx.proxy_endpoint(el)
    })
}

fn target_part(
    src: &Source,
    el: Element,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) -> TargetEndpoint {
    let mut el = crate::sap::normalize(el);
    // A template's target part has no connection of its own.
    el.children
        .retain(|c| c.name != "HTTPTargetConnection" || !c.children.is_empty());
    read_part(src, el, options, diags, |cx, el| cx.target_endpoint(el))
}

/// Reads an endpoint part with `read`, leaving out what a template need not have.
fn read_part<T>(
    src: &Source,
    el: Element,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
    read: impl FnOnce(&mut Ecx<'_>, &Element) -> T,
) -> T {
    let mut local = Vec::new();
    let mut cx = Ecx {
        cx: ParseContext {
            src,
            diags: &mut local,
        },
        options: &options.conditions,
    };
    let out = read(&mut cx, &el);
    diags.extend(local.into_iter().filter(|d| !connection_notice(d)));
    out
}

impl PolicyTemplate {
    /// The template as an API proxy bundle without base path or routes (its endpoints and
    /// policies), for the checks of policies and references.
    pub fn as_bundle(&self) -> Bundle {
        Bundle {
            kind: BundleKind::ApiProxy,
            name: self.name.clone(),
            revision: self.version.clone(),
            description: self.description.clone(),
            display_name: self.title.clone(),
            root: self.root.clone(),
            proxy_endpoints: self.proxy_endpoint.iter().cloned().collect(),
            target_endpoints: self.target_endpoint.iter().cloned().collect(),
            shared_flows: Vec::new(),
            policies: self.policies.clone(),
        }
    }

    /// Every step the template attaches.
    pub fn steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        if let Some(p) = &self.proxy_endpoint {
            out.extend(p.all_steps());
        }
        if let Some(t) = &self.target_endpoint {
            out.extend(t.all_steps());
        }
        out
    }

    /// Applies the template to the API proxy among `files` (`/`-separated paths and
    /// bytes, as read from a folder or a zip), returning every file with the template's
    /// policies, scripts and steps added. See the module documentation for what goes
    /// where; `on_clash` says what happens to a template policy whose name the proxy
    /// already uses for a different policy.
    ///
    /// # Errors
    /// No API proxy (or more than one) among `files`, a name clash under
    /// [`OnClash::Fail`], or a proxy file that is not well-formed XML.
    pub fn apply(
        &self,
        files: Vec<(String, Vec<u8>)>,
        on_clash: OnClash,
        options: &LoadOptions,
    ) -> Result<Applied, ApplyError> {
        apply::apply(self, files, on_clash, options)
    }

    pub(crate) fn policy_files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.policy_files
    }

    pub(crate) fn resources(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.resources
    }
}

/// What happens to a template policy whose name the proxy already uses for a different
/// policy (a policy with the same text is simply kept once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnClash {
    /// Nothing is applied; the error names every clash.
    #[default]
    Fail,
    /// The template's policy is added as `NAME-2` (the first free number) and the
    /// template's steps name it so.
    Rename,
}

/// The outcome of [`PolicyTemplate::apply`].
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Every file of the input, edited or added, in path order.
    pub files: Vec<(String, Vec<u8>)>,
    /// What was done, one line each (`added policy `X``, `attached `X` to …`).
    pub changes: Vec<String>,
    /// What could not be done (target steps for a proxy without target endpoints).
    pub warnings: Vec<String>,
}

/// Why a template cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The files hold no API proxy, or several.
    #[error("{0}")]
    NoProxy(String),
    /// Template policies or scripts whose names the proxy uses for different content.
    #[error("the proxy already has {}: {}; rename or remove them, or apply with renaming", if .0.len() == 1 { "a different file of this name" } else { "different files of these names" }, .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    Clash(Vec<String>),
    /// A proxy endpoint or target endpoint file that does not parse.
    #[error("{file}: {message}")]
    Xml {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
}

/// `text` escaped for XML content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// `text` escaped for a double-quoted attribute value.
pub(crate) fn escape_attr(text: &str) -> String {
    escape(text).replace('"', "&quot;")
}

/// The template flows to attach, by where they go.
pub(crate) struct Attach<'a> {
    pub pre: &'a Flow,
    pub post: &'a Flow,
    pub post_client: Option<&'a Flow>,
    pub flows: &'a [Flow],
    pub fault_rules: &'a [FaultRule],
    pub default_steps: &'a [Step],
    /// The template's DefaultFaultRule `AlwaysEnforce`, for a rule the proxy lacks.
    pub always_enforce: bool,
}

impl<'a> Attach<'a> {
    pub(crate) fn of_proxy(p: &'a ProxyEndpoint) -> Self {
        Self {
            pre: &p.pre_flow,
            post: &p.post_flow,
            post_client: p.post_client_flow.as_ref(),
            flows: &p.flows,
            fault_rules: &p.fault_rules,
            default_steps: p
                .default_fault_rule
                .as_ref()
                .map_or(&[], |d| d.steps.as_slice()),
            always_enforce: p
                .default_fault_rule
                .as_ref()
                .is_some_and(|d| d.always_enforce),
        }
    }

    pub(crate) fn of_target(t: &'a TargetEndpoint) -> Self {
        Self {
            pre: &t.pre_flow,
            post: &t.post_flow,
            post_client: None,
            flows: &t.flows,
            fault_rules: &t.fault_rules,
            default_steps: t
                .default_fault_rule
                .as_ref()
                .map_or(&[], |d| d.steps.as_slice()),
            always_enforce: t
                .default_fault_rule
                .as_ref()
                .is_some_and(|d| d.always_enforce),
        }
    }
}

/// Writes `steps` as step elements of the proxy's format, numbering SAP steps from
/// `first`.
pub(crate) fn steps_xml(
    steps: &[Step],
    sap: bool,
    first: u64,
    rename: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    for (i, s) in steps.iter().enumerate() {
        let name = rename.get(&s.policy).unwrap_or(&s.policy);
        let cond = s.condition.as_ref().map(|c| escape(&c.text));
        if sap {
            let _ = write!(
                out,
                "<step><policy_name>{}</policy_name><condition>{}</condition><sequence>{}</sequence></step>",
                escape(name),
                cond.unwrap_or_default(),
                first + i as u64
            );
        } else {
            let _ = write!(out, "<Step><Name>{}</Name>", escape(name));
            if let Some(c) = cond {
                let _ = write!(out, "<Condition>{c}</Condition>");
            }
            out.push_str("</Step>");
        }
    }
    out
}
