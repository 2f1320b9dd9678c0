//! Applying a template: policies and scripts added, steps appended to the flows, by text
//! edits that leave the rest of each file as written.

use super::{Applied, ApplyError, Attach, OnClash, PolicyTemplate, escape, escape_attr, steps_xml};
use crate::bundle::LoadOptions;
use crate::endpoint::{Condition, Flow, Step};
use crate::layout::{self, RootKind};
use preflow_policy::xml::{self, Element};
use std::collections::BTreeMap;

/// Element names of one endpoint format.
struct Names {
    sap: bool,
    pre: &'static str,
    post: &'static str,
    post_client: &'static str,
    flows: &'static str,
    flow: &'static str,
    request: &'static str,
    response: &'static str,
    fault_rules: &'static str,
    fault_rule: &'static str,
    default_fault_rule: &'static str,
}

const SAP: Names = Names {
    sap: true,
    pre: "preFlow",
    post: "postFlow",
    post_client: "postClientFlow",
    flows: "conditionalFlows",
    flow: "conditionalFlow",
    request: "request",
    response: "response",
    fault_rules: "faultRules",
    fault_rule: "faultRule",
    default_fault_rule: "defaultFaultRule",
};

const APIGEE: Names = Names {
    sap: false,
    pre: "PreFlow",
    post: "PostFlow",
    post_client: "PostClientFlow",
    flows: "Flows",
    flow: "Flow",
    request: "Request",
    response: "Response",
    fault_rules: "FaultRules",
    fault_rule: "FaultRule",
    default_fault_rule: "DefaultFaultRule",
};

/// Text edits of one file: content appended inside elements, merged per place.
#[derive(Default)]
struct Edits {
    /// By start offset: the end of the replaced range, and what replaces it.
    at: BTreeMap<usize, (usize, String, String, String)>,
}

impl Edits {
    /// Appends `content` at the end of `el`'s content (a self-closing `el` is opened).
    fn append(&mut self, src: &str, el: &Element, content: &str) {
        let Some((tag_end, self_closing)) = start_tag_end(src, el.offset) else {
            return;
        };
        // On its own line, one level in, where the file is laid out in lines.
        let unit = indent_unit(src);
        let entry = if self_closing {
            let open = src
                .get(el.offset..tag_end.saturating_sub(2))
                .unwrap_or_default()
                .trim_end();
            let qname: String = open
                .chars()
                .skip(1)
                .take_while(|c| !c.is_whitespace())
                .collect();
            let indent = line_indent(src, el.offset);
            let entry = self.at.entry(el.offset).or_insert_with(|| {
                let close = match indent {
                    Some(i) => format!("\n{i}</{qname}>"),
                    None => format!("</{qname}>"),
                };
                (tag_end, format!("{open}>"), String::new(), close)
            });
            if let Some(i) = indent {
                entry.2.push_str(&format!("\n{i}{unit}"));
            }
            entry.2.push_str(content);
            return;
        } else {
            let at = el.inner.end;
            self.at
                .entry(at)
                .or_insert_with(|| (at, String::new(), String::new(), String::new()))
        };
        match line_indent(src, el.inner.end).filter(|_| !el.inner.is_empty()) {
            Some(i) => entry.2.push_str(&format!("{unit}{content}\n{i}")),
            None => entry.2.push_str(content),
        }
    }

    /// Inserts `content` just before `el` (on a line of its own when `el` starts one).
    fn insert_before(&mut self, src: &str, el: &Element, content: &str) {
        let at = el.offset;
        let piece = match line_indent(src, at) {
            Some(i) => format!("{content}\n{i}"),
            None => content.to_owned(),
        };
        self.at
            .entry(at)
            .or_insert_with(|| (at, String::new(), String::new(), String::new()))
            .2
            .push_str(&piece);
    }

    fn apply(self, src: &str) -> String {
        let mut out = src.to_owned();
        for (start, (end, open, body, close)) in self.at.into_iter().rev() {
            let (Some(head), Some(tail)) = (out.get(..start), out.get(end..)) else {
                continue;
            };
            out = format!("{head}{open}{body}{close}{tail}");
        }
        out
    }
}

/// One level of indentation in `src`: the white space that starts its first indented
/// line (four spaces when none is).
fn indent_unit(src: &str) -> &str {
    src.lines()
        .filter_map(|l| l.get(..l.len() - l.trim_start_matches([' ', '\t']).len()))
        .find(|w| !w.is_empty())
        .unwrap_or("    ")
}

/// The white space that starts the line up to `at`, when only white space precedes `at`
/// on its line.
fn line_indent(src: &str, at: usize) -> Option<&str> {
    let head = src.get(..at)?;
    let start = head.rfind('\n')? + 1;
    let indent = head.get(start..)?;
    indent
        .chars()
        .all(|c| c == ' ' || c == '\t')
        .then_some(indent)
}

/// The offset just past the `>` of the start tag at `offset`, and whether it is `/>`.
fn start_tag_end(src: &str, offset: usize) -> Option<(usize, bool)> {
    let bytes = src.as_bytes();
    let mut quote = None;
    let mut i = offset;
    while let Some(&b) = bytes.get(i) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => {
                return Some((i + 1, i > offset && bytes.get(i - 1) == Some(&b'/')));
            }
            None => {}
        }
        i += 1;
    }
    None
}

pub(super) fn apply(
    t: &PolicyTemplate,
    files: Vec<(String, Vec<u8>)>,
    on_clash: OnClash,
    options: &LoadOptions,
) -> Result<Applied, ApplyError> {
    let files: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(p, b)| (p.replace('\\', "/"), b))
        .filter(|(p, _)| !layout::is_macos_metadata(p))
        .collect();
    let roots = layout::roots(&files);
    let proxies: Vec<&String> = roots
        .iter()
        .filter(|(_, k)| **k == RootKind::Proxy)
        .map(|(r, _)| r)
        .collect();
    let root = match proxies.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(ApplyError::NoProxy(
                layout::NO_BUNDLE.replace("no bundle found", "no API proxy found"),
            ));
        }
        more => {
            return Err(ApplyError::NoProxy(format!(
                "{} API proxies found ({}); apply the template to one",
                more.len(),
                more.iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let rel_of = |path: &str| -> Option<String> {
        layout::root_of(path, &roots)
            .filter(|(r, _)| *r == root)
            .map(|(_, rel)| rel.to_owned())
    };
    let sap = files.iter().any(|(p, _)| {
        rel_of(p).is_some_and(|rel| {
            ["APIProxyEndPoint/", "APITargetEndPoint/", "Policy/"]
                .iter()
                .any(|d| rel.starts_with(d))
        })
    });
    let names = if sap { &SAP } else { &APIGEE };
    let prefix = if root.is_empty() {
        String::new()
    } else {
        format!("{root}/")
    };
    let loaded = crate::load_files(
        files.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
        options,
    );
    let existing = loaded
        .bundles
        .iter()
        .find(|b| b.root == root)
        .map(|b| b.policies.clone())
        .unwrap_or_default();
    let mut out: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
    let mut applied = Applied::default();

    // Policies: the same text is kept once; a different one clashes.
    let mut rename: BTreeMap<String, String> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut clashes = Vec::new();
    let taken = |n: &str| existing.contains_key(n) || t.policies.contains_key(n);
    for (name, bytes) in t.policy_files() {
        let Some(theirs) = existing.get(name) else {
            continue;
        };
        if out
            .get(&*theirs.location.file)
            .is_some_and(|b| same_text(b, bytes))
        {
            kept.push(name.clone());
            continue;
        }
        match on_clash {
            OnClash::Fail => clashes.push(name.clone()),
            OnClash::Rename => {
                let free = (2..)
                    .map(|i| format!("{name}-{i}"))
                    .find(|n| !taken(n) && !rename.values().any(|v| v == n))
                    .unwrap_or_else(|| format!("{name}-template"));
                rename.insert(name.clone(), free);
            }
        }
    }
    let mut additions: Vec<(String, Vec<u8>, String)> = Vec::new();
    for (name, bytes) in t.policy_files() {
        if clashes.contains(name) {
            continue;
        }
        if kept.contains(name) {
            applied
                .changes
                .push(format!("kept policy `{name}`: the proxy has the same one"));
            continue;
        }
        let final_name = rename.get(name).unwrap_or(name);
        let folder = if sap { "Policy" } else { "policies" };
        let path = format!("{prefix}{folder}/{final_name}.xml");
        let text = policy_text(bytes, final_name, name != final_name, sap);
        if out.get(&path).is_some_and(|b| !same_text(b, &text)) {
            clashes.push(format!("{folder}/{final_name}.xml"));
            continue;
        }
        let what = if name == final_name {
            format!("added policy `{name}` as {folder}/{final_name}.xml")
        } else {
            format!(
                "added policy `{name}` as `{final_name}` ({folder}/{final_name}.xml): the proxy has another `{name}`"
            )
        };
        additions.push((path, text, what));
    }
    for (name, bytes) in t.resources() {
        let path = if sap {
            format!("{prefix}FileResource/{name}")
        } else {
            let ext = name.rsplit('.').next().unwrap_or_default();
            let dir = match ext {
                "js" => "jsc",
                "py" => "py",
                "xsl" | "xslt" => "xsl",
                "java" | "jar" => "java",
                _ => "jsc",
            };
            format!("{prefix}resources/{dir}/{name}")
        };
        match out.get(&path) {
            Some(b) if same_text(b, bytes) => {}
            Some(_) => clashes.push(path.strip_prefix(&prefix).unwrap_or(&path).to_owned()),
            None => additions.push((
                path.clone(),
                bytes.clone(),
                format!(
                    "added script {}",
                    path.strip_prefix(&prefix).unwrap_or(&path)
                ),
            )),
        }
    }
    if !clashes.is_empty() {
        return Err(ApplyError::Clash(clashes));
    }
    for (path, bytes, what) in additions {
        out.insert(path, bytes);
        applied.changes.push(what);
    }

    // Steps.
    let (proxy_dir, target_dir) = if sap {
        ("APIProxyEndPoint/", "APITargetEndPoint/")
    } else {
        ("proxies/", "targets/")
    };
    let mut targets = 0;
    let paths: Vec<String> = out.keys().cloned().collect();
    for path in paths {
        let Some(rel) = rel_of(&path) else { continue };
        if !rel.to_ascii_lowercase().ends_with(".xml") || rel.matches('/').count() != 1 {
            continue;
        }
        let part = if rel.starts_with(proxy_dir) {
            t.proxy_endpoint.as_ref().map(Attach::of_proxy)
        } else if rel.starts_with(target_dir) {
            targets += 1;
            t.target_endpoint.as_ref().map(Attach::of_target)
        } else {
            None
        };
        let Some(attach) = part else { continue };
        let Some(bytes) = out.get(&path) else {
            continue;
        };
        let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
            .map_err(|_| ApplyError::Xml {
                file: path.clone(),
                message: "not valid UTF-8".to_owned(),
            })?;
        let root_el = xml::parse(text, &options.limits.xml).map_err(|e| ApplyError::Xml {
            file: path.clone(),
            message: e.message,
        })?;
        let mut edits = Edits::default();
        let label = rel.clone();
        endpoint(
            text,
            &root_el,
            &attach,
            names,
            &rename,
            &mut edits,
            &mut |what| {
                applied.changes.push(format!("{label}: {what}"));
            },
        );
        let edited = edits.apply(text);
        out.insert(path, edited.into_bytes());
    }
    if targets == 0
        && t.target_endpoint
            .as_ref()
            .is_some_and(|e| !e.all_steps().is_empty())
    {
        applied.warnings.push(
            "the template's target-endpoint steps are not attached: the proxy has no target endpoint".to_owned(),
        );
    }
    applied.files = out.into_iter().collect();
    Ok(applied)
}

/// Whether two files hold the same text, white space aside.
fn same_text(a: &[u8], b: &[u8]) -> bool {
    let squash = |x: &[u8]| -> String {
        String::from_utf8_lossy(x.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(x))
            .split_whitespace()
            .collect()
    };
    squash(a) == squash(b)
}

/// A template policy file as the proxy needs it: named `name` (an Apigee-format proxy
/// needs the `name` attribute; a renamed policy gets its new name everywhere it had one).
fn policy_text(bytes: &[u8], name: &str, renamed: bool, sap: bool) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)) else {
        return bytes.to_vec();
    };
    let Ok(root) = xml::parse(text, &xml::XmlLimits::default()) else {
        return bytes.to_vec();
    };
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    if let Some(a) = root.attribute("name") {
        if renamed {
            let quote = text.as_bytes().get(a.offset.saturating_sub(1)).copied();
            let end = text
                .get(a.offset..)
                .and_then(|rest| rest.bytes().position(|b| Some(b) == quote))
                .map_or(a.offset, |i| a.offset + i);
            edits.push((a.offset, end, escape_attr(name)));
        }
    } else if !sap {
        let tag = text.get(root.offset + 1..).unwrap_or_default();
        let at = root.offset
            + 1
            + tag
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(tag.len());
        edits.push((at, at, format!(" name=\"{}\"", escape_attr(name))));
    }
    if renamed
        && let Some(n) = root.child("name")
        && start_tag_end(text, n.offset).is_some_and(|(_, closed)| !closed)
    {
        edits.push((n.inner.start, n.inner.end, escape(name)));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_owned();
    for (start, end, with) in edits {
        if let (Some(head), Some(tail)) = (out.get(..start), out.get(end..)) {
            out = format!("{head}{with}{tail}");
        }
    }
    out.into_bytes()
}

/// The name of a flow or fault rule element.
fn name_of(el: &Element, n: &Names) -> String {
    if n.sap {
        el.child("name")
            .map(|c| c.text().to_owned())
            .unwrap_or_default()
    } else {
        el.attr("name").unwrap_or_default().trim().to_owned()
    }
}

/// The next SAP `<sequence>` number in a `<steps>` element.
fn next_sequence(steps: &Element) -> u64 {
    steps
        .children_named("step")
        .filter_map(|s| {
            s.child("sequence")
                .and_then(|q| q.text().parse::<u64>().ok())
        })
        .max()
        .map_or(1, |m| m.saturating_add(1))
}

/// Steps appended inside `holder` (SAP: into its `<steps>`).
fn append_steps(
    src: &str,
    holder: &Element,
    steps: &[Step],
    n: &Names,
    rename: &BTreeMap<String, String>,
    edits: &mut Edits,
) {
    if n.sap {
        match holder.child("steps") {
            Some(s) => edits.append(src, s, &steps_xml(steps, true, next_sequence(s), rename)),
            None => edits.append(
                src,
                holder,
                &format!("<steps>{}</steps>", steps_xml(steps, true, 1, rename)),
            ),
        }
    } else {
        edits.append(src, holder, &steps_xml(steps, false, 0, rename));
    }
}

/// A new `<request>`/`<response>` part holding `steps`.
fn part_xml(
    tag: &str,
    is_request: bool,
    steps: &[Step],
    n: &Names,
    rename: &BTreeMap<String, String>,
) -> String {
    if n.sap {
        format!(
            "<{tag}><isRequest>{is_request}</isRequest><steps>{}</steps></{tag}>",
            steps_xml(steps, true, 1, rename)
        )
    } else {
        format!("<{tag}>{}</{tag}>", steps_xml(steps, false, 0, rename))
    }
}

fn condition_xml(c: Option<&Condition>, n: &Names, sap_tag: &str) -> String {
    match c {
        Some(c) if n.sap => format!("<{sap_tag}>{}</{sap_tag}>", escape(&c.text)),
        Some(c) => format!("<Condition>{}</Condition>", escape(&c.text)),
        None => String::new(),
    }
}

/// A new flow element (`tag`) named `name` holding the template flow's steps.
fn flow_xml(
    tag: &str,
    name: &str,
    flow: &Flow,
    n: &Names,
    rename: &BTreeMap<String, String>,
) -> String {
    let mut body = condition_xml(flow.condition.as_ref(), n, "conditions");
    for (steps, part, req) in [
        (&flow.request, n.request, true),
        (&flow.response, n.response, false),
    ] {
        if !steps.is_empty() {
            body.push_str(&part_xml(part, req, steps, n, rename));
        }
    }
    if n.sap {
        format!("<{tag}><name>{}</name>{body}</{tag}>", escape(name))
    } else {
        format!("<{tag} name=\"{}\">{body}</{tag}>", escape_attr(name))
    }
}

/// Appends the template flow's steps to the flow element `el`.
fn attach_flow(
    src: &str,
    el: &Element,
    flow: &Flow,
    n: &Names,
    rename: &BTreeMap<String, String>,
    edits: &mut Edits,
) {
    let mut new_parts = String::new();
    for (steps, part, req) in [
        (&flow.request, n.request, true),
        (&flow.response, n.response, false),
    ] {
        if steps.is_empty() {
            continue;
        }
        match el.child(part) {
            Some(p) => append_steps(src, p, steps, n, rename, edits),
            None => new_parts.push_str(&part_xml(part, req, steps, n, rename)),
        }
    }
    if !new_parts.is_empty() {
        edits.append(src, el, &new_parts);
    }
}

fn policies_of(steps: &[Step], rename: &BTreeMap<String, String>) -> String {
    steps
        .iter()
        .map(|s| format!("`{}`", rename.get(&s.policy).unwrap_or(&s.policy)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Attaches the template part `a` to the endpoint whose root element is `root`.
fn endpoint(
    src: &str,
    root: &Element,
    a: &Attach<'_>,
    n: &Names,
    rename: &BTreeMap<String, String>,
    edits: &mut Edits,
    changes: &mut dyn FnMut(String),
) {
    let mut root_new = String::new();
    let fixed = [
        (Some(a.pre), n.pre, "PreFlow"),
        (Some(a.post), n.post, "PostFlow"),
        (a.post_client, n.post_client, "PostClientFlow"),
    ];
    for (flow, tag, shown) in fixed {
        let Some(flow) = flow.filter(|f| !f.request.is_empty() || !f.response.is_empty()) else {
            continue;
        };
        match root.child(tag) {
            Some(el) => attach_flow(src, el, flow, n, rename, edits),
            None => root_new.push_str(&flow_xml(tag, shown, flow, n, rename)),
        }
        for (steps, part) in [(&flow.request, "request"), (&flow.response, "response")] {
            if !steps.is_empty() {
                changes(format!(
                    "{shown} {part}: appended {}",
                    policies_of(steps, rename)
                ));
            }
        }
    }
    if !a.flows.is_empty() {
        let container = root.child(n.flows);
        let mut container_new = String::new();
        for f in a.flows {
            let existing =
                container.and_then(|c| c.children_named(n.flow).find(|x| name_of(x, n) == f.name));
            match existing {
                Some(el) => {
                    attach_flow(src, el, f, n, rename, edits);
                    changes(format!(
                        "flow `{}`: appended {}",
                        f.name,
                        policies_of(
                            &[f.request.as_slice(), f.response.as_slice()].concat(),
                            rename
                        )
                    ));
                }
                None => {
                    container_new.push_str(&flow_xml(n.flow, &f.name, f, n, rename));
                    changes(format!(
                        "flow `{}`: added, with {}",
                        f.name,
                        policies_of(
                            &[f.request.as_slice(), f.response.as_slice()].concat(),
                            rename
                        )
                    ));
                }
            }
        }
        if !container_new.is_empty() {
            // Before a catch-all flow (no condition), where the new flows can still run.
            let catch_all = container.and_then(|c| {
                c.children_named(n.flow).find(|f| {
                    let cond = if n.sap {
                        f.child("conditions").or_else(|| f.child("condition"))
                    } else {
                        f.child("Condition")
                    };
                    cond.is_none_or(|c| c.text().is_empty())
                })
            });
            match (container, catch_all) {
                (_, Some(last)) => edits.insert_before(src, last, &container_new),
                (Some(c), None) => edits.append(src, c, &container_new),
                (None, None) => root_new.push_str(&format!("<{0}>{container_new}</{0}>", n.flows)),
            }
        }
    }
    if !a.fault_rules.is_empty() {
        let container = root.child(n.fault_rules);
        let mut container_new = String::new();
        for r in a.fault_rules {
            let existing = container.and_then(|c| {
                c.children_named(n.fault_rule)
                    .find(|x| name_of(x, n) == r.name)
            });
            match existing {
                Some(el) => append_steps(src, el, &r.steps, n, rename, edits),
                None => {
                    let cond = condition_xml(r.condition.as_ref(), n, "condition");
                    let steps = if n.sap {
                        format!("<steps>{}</steps>", steps_xml(&r.steps, true, 1, rename))
                    } else {
                        steps_xml(&r.steps, false, 0, rename)
                    };
                    container_new.push_str(&if n.sap {
                        format!(
                            "<{0}><name>{1}</name>{cond}{steps}</{0}>",
                            n.fault_rule,
                            escape(&r.name)
                        )
                    } else {
                        format!(
                            "<{0} name=\"{1}\">{steps}{cond}</{0}>",
                            n.fault_rule,
                            escape_attr(&r.name)
                        )
                    });
                }
            }
            changes(format!(
                "fault rule `{}`: appended {}",
                r.name,
                policies_of(&r.steps, rename)
            ));
        }
        if !container_new.is_empty() {
            match container {
                Some(c) => edits.append(src, c, &container_new),
                None => root_new.push_str(&format!("<{0}>{container_new}</{0}>", n.fault_rules)),
            }
        }
    }
    if !a.default_steps.is_empty() {
        match root.child(n.default_fault_rule) {
            Some(el) => append_steps(src, el, a.default_steps, n, rename, edits),
            None if n.sap => root_new.push_str(&format!(
                "<defaultFaultRule><name>DefaultFaultRule</name><alwaysEnforce>{}</alwaysEnforce><steps>{}</steps></defaultFaultRule>",
                a.always_enforce,
                steps_xml(a.default_steps, true, 1, rename)
            )),
            None => root_new.push_str(&format!(
                "<DefaultFaultRule name=\"DefaultFaultRule\"><AlwaysEnforce>{}</AlwaysEnforce>{}</DefaultFaultRule>",
                a.always_enforce,
                steps_xml(a.default_steps, false, 0, rename)
            )),
        }
        changes(format!(
            "DefaultFaultRule: appended {}",
            policies_of(a.default_steps, rename)
        ));
    }
    if !root_new.is_empty() {
        edits.append(src, root, &root_new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_open_self_closing_elements_and_merge() {
        let src = "<a x=\"/>\"><b/><c></c></a>";
        let root = xml::parse(src, &xml::XmlLimits::default()).unwrap();
        let mut e = Edits::default();
        e.append(src, &root.children[0], "1");
        e.append(src, &root.children[0], "2");
        e.append(src, &root.children[1], "3");
        e.append(src, &root, "4");
        assert_eq!(e.apply(src), "<a x=\"/>\"><b>12</b><c>3</c>4</a>");
    }

    #[test]
    fn edits_keep_the_layout_of_indented_files() {
        let src = "<a>\n    <b/>\n    <c>\n        <d/>\n    </c>\n</a>";
        let root = xml::parse(src, &xml::XmlLimits::default()).unwrap();
        let mut e = Edits::default();
        e.append(src, &root.children[0], "<x/>");
        e.append(src, &root.children[1], "<y/>");
        e.append(src, &root.children[1], "<z/>");
        assert_eq!(
            e.apply(src),
            "<a>\n    <b>\n        <x/>\n    </b>\n    <c>\n        <d/>\n        <y/>\n        <z/>\n    </c>\n</a>"
        );
    }
}
