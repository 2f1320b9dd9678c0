//! Checks beyond loading, for `preflow check`: conditions that mix `AND` and `OR` without
//! parentheses, flows, rules and steps that can never run, policies no step uses,
//! conditions that read variables nothing sets, target TLS, the policy modules' advice,
//! deprecated and platform-only features. Every finding carries a rule id of the
//! catalogue in [`rules`].

mod reach;
pub mod rules;
mod source;

use crate::bundle::Bundle;
use crate::endpoint::{Condition, FaultRule, Flow, RouteRule};
use preflow_condition::ast::{Expr, Operand};
use preflow_policy::{Diagnostic, Location, Severity};
use std::collections::{BTreeMap, BTreeSet};

/// The Apigee platform a bundle is meant for: features of the other one are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Platform {
    /// Not said (the default): features of one platform only are not reported.
    #[default]
    Any,
    /// Apigee Edge.
    Edge,
    /// Apigee X (and hybrid).
    X,
}

/// What [`lint_with`] checks for.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LintOptions {
    /// The platform the bundles are meant for.
    pub platform: Platform,
}

impl LintOptions {
    /// Options for `platform`.
    pub fn for_platform(platform: Platform) -> Self {
        Self { platform }
    }
}

/// Lints `bundles` for no platform in particular; see [`lint_with`].
pub fn lint(bundles: &[Bundle]) -> Vec<Diagnostic> {
    lint_with(bundles, &LintOptions::default())
}

/// Lints `bundles` (loaded together, so that variables set by shared flows count for the
/// proxies that call them). Findings are warnings except XML001; each carries its rule id.
/// Checks of the files as written read the files again from disk; for bundles loaded
/// from a zip or from memory those are skipped.
pub fn lint_with(bundles: &[Bundle], options: &LintOptions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut files = source::Files::default();
    let set = VariablesSet::of(bundles);
    let shared_flows: BTreeMap<&str, &Bundle> = bundles
        .iter()
        .filter(|b| b.kind == crate::BundleKind::SharedFlow)
        .map(|b| (b.name.as_str(), b))
        .collect();
    for bundle in bundles {
        let mut conditions: Vec<&Condition> = Vec::new();
        for p in &bundle.proxy_endpoints {
            unreachable_flows(&p.flows, &mut out);
            unreachable_routes(&p.route_rules, &mut out);
            if bundle.kind == crate::BundleKind::ApiProxy && p.route_rules.is_empty() {
                out.push(
                    warn(
                        "FLOW010",
                        &p.location,
                        format!(
                            "proxy endpoint `{}` has no route rule: no request reaches a target",
                            p.name
                        ),
                    )
                    .with_hint("add `<RouteRule name=\"default\"><TargetEndpoint>…</TargetEndpoint></RouteRule>`, or `<RouteRule name=\"noroute\"/>` to make the null route explicit"),
                );
            } else if bundle.kind == crate::BundleKind::ApiProxy
                && p.route_rules.iter().all(|r| r.condition.is_some())
            {
                out.push(
                    warn(
                        "FLOW010",
                        &p.location,
                        format!(
                            "proxy endpoint `{}` has no route rule without a condition: a request no condition matches is not routed",
                            p.name
                        ),
                    )
                    .with_hint("add a last `<RouteRule>` without a `<Condition>` (with no `<TargetEndpoint>` for a null route)"),
                );
            }
            unreachable_fault_rules(&p.fault_rules, true, &mut out);
            conditions.extend(p.conditions());
        }
        for t in &bundle.target_endpoints {
            unreachable_flows(&t.flows, &mut out);
            unreachable_fault_rules(&t.fault_rules, false, &mut out);
            conditions.extend(t.conditions());
        }
        for s in &bundle.shared_flows {
            conditions.extend(s.conditions());
        }
        for c in &conditions {
            and_or_mix(c, &mut out);
            never_true(c, &mut out);
            bare_variable(c, &mut out);
        }
        let mut event_flow_policies = BTreeSet::new();
        raw_checks(
            bundle,
            options.platform,
            &mut files,
            &mut event_flow_policies,
            &mut out,
        );
        reach::after_raise_fault(bundle, &mut out);
        reach::duplicate_conditions(bundle, &mut out);
        reach::unreferenced_targets(bundle, &mut out);
        reach::quota_twice(bundle, &mut out);
        reach::cors_policies(bundle, &mut out);
        ignored_validation(bundle, &mut out);
        unreferenced_policies(bundle, &event_flow_policies, &mut out);
        if !shared_flows.is_empty() {
            missing_shared_flows(bundle, &shared_flows, &mut out);
        }
        if set.is_complete_for(bundle, &shared_flows) {
            for c in &conditions {
                unset_variables(c, &set, &mut out);
            }
        }
    }
    out
}

fn warn(rule: &'static str, location: &Location, message: String) -> Diagnostic {
    Diagnostic::at(location.clone(), Severity::Warning, message).with_rule(rule)
}

/// The checks of the files as written (see [`source`]).
fn raw_checks(
    bundle: &Bundle,
    platform: Platform,
    files: &mut source::Files,
    event_flow_policies: &mut BTreeSet<String>,
    out: &mut Vec<Diagnostic>,
) {
    // Descriptors at the bundle root are not part of the model; check their declaration.
    let mut names: Vec<String> = std::fs::read_dir(&bundle.root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml") && p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        if let Some(f) = files.get(name) {
            source::xml_declaration(f, out);
        }
    }
    for p in &bundle.proxy_endpoints {
        if let Some(f) = files.get(&p.location.file) {
            source::xml_declaration(f, out);
            source::proxy(f, p, platform, event_flow_policies, out);
        }
    }
    for t in &bundle.target_endpoints {
        if let Some(f) = files.get(&t.location.file) {
            source::xml_declaration(f, out);
            source::target(f, t, platform, event_flow_policies, out);
        }
    }
    for s in &bundle.shared_flows {
        if let Some(f) = files.get(&s.location.file) {
            source::xml_declaration(f, out);
        }
    }
    for p in bundle.policies.values() {
        let f = files.get(&p.location.file);
        if let Some(f) = f {
            source::xml_declaration(f, out);
        }
        source::policy(f, bundle, p, platform, out);
    }
}

const IGNORES_VALIDATION: &str =
    "does not verify the back end's certificate (`<IgnoreValidationErrors>true`)";

/// TLS004: targets that accept any certificate. The same finding as [`lint_environment`]'s,
/// so that running both reports it once.
fn ignored_validation(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    for t in &bundle.target_endpoints {
        if let crate::endpoint::TargetConnection::Http(h) = &t.connection
            && let Some(d) = ignores_validation(t, h)
        {
            out.push(d);
        }
    }
}

fn ignores_validation(
    t: &crate::endpoint::TargetEndpoint,
    h: &crate::endpoint::HttpTargetConnection,
) -> Option<Diagnostic> {
    let tls = h.ssl_info.as_ref()?;
    let url = h.url.as_deref().map(str::trim).unwrap_or_default();
    (tls.ignore_validation_errors && (url.starts_with("https://") || tls.enabled || url.is_empty()))
        .then(|| {
            warn(
                "TLS004",
                &t.location,
                format!("target endpoint `{}` {IGNORES_VALIDATION}", t.name),
            )
            .with_hint(
                "anyone on the path can impersonate the back end; name a `<TrustStore>` instead",
            )
        })
}

/// The location of byte `at` of a condition's text.
fn within(c: &Condition, at: usize) -> Location {
    let before = c.text.get(..at).unwrap_or(&c.text);
    let mut loc = c.location.clone();
    loc.offset += before.len();
    match before.rfind('\n') {
        None => loc.column += before.chars().count(),
        Some(nl) => {
            loc.line += before.matches('\n').count();
            loc.column = before.get(nl + 1..).map_or(0, |s| s.chars().count()) + 1;
        }
    }
    loc
}

/// FLOW001, reported once at the unconditional flow: that is where the fix goes.
fn unreachable_flows(flows: &[Flow], out: &mut Vec<Diagnostic>) {
    let Some(first) = flows.iter().position(|f| f.condition.is_none()) else {
        return;
    };
    let Some(cover) = flows.get(first) else {
        return;
    };
    let hidden: Vec<&Flow> = flows.iter().skip(first + 1).collect();
    let Some(loc) = cover
        .location
        .as_ref()
        .or_else(|| hidden.iter().find_map(|f| f.location.as_ref()))
    else {
        return;
    };
    if hidden.is_empty() {
        return;
    }
    let names: Vec<String> = hidden.iter().map(|f| format!("`{}`", f.name)).collect();
    let noun = if hidden.len() == 1 { "flow" } else { "flows" };
    out.push(
        warn(
            "FLOW001",
            loc,
            format!(
                "flow `{}` has no condition and is not last: {noun} {} after it can never run",
                cover.name,
                names.join(", ")
            ),
        )
        .with_hint(
            "only the first flow whose condition holds runs; move the unconditional flow last",
        ),
    );
}

fn unreachable_routes(rules: &[RouteRule], out: &mut Vec<Diagnostic>) {
    if let Some(first) = rules.iter().position(|r| r.condition.is_none()) {
        let Some(cover) = rules.get(first) else {
            return;
        };
        for r in rules.iter().skip(first + 1) {
            out.push(
                warn(
                    "FLOW002",
                    &r.location,
                    format!(
                        "route rule `{}` can never apply: route rule `{}` before it has no condition",
                        r.name, cover.name
                    ),
                )
                .with_hint("the first route rule whose condition holds wins; move the unconditional rule last"),
            );
        }
    }
}

/// Proxy fault rules are tried from last to first, target fault rules from first to last.
fn unreachable_fault_rules(rules: &[FaultRule], proxy: bool, out: &mut Vec<Diagnostic>) {
    let order: Vec<&FaultRule> = if proxy {
        rules.iter().rev().collect()
    } else {
        rules.iter().collect()
    };
    let Some(first) = order.iter().position(|r| r.condition.is_none()) else {
        return;
    };
    let (Some(cover), Some(shadowed)) = (order.get(first), order.get(first + 1..)) else {
        return;
    };
    if shadowed.is_empty() {
        return;
    }
    // Reported at the unconditional rule, where a condition is missing, and at each rule
    // it shadows, which is dead configuration.
    for r in shadowed {
        out.push(warn(
            "FLOW003",
            &r.location,
            format!(
                "fault rule `{}` can never run: fault rule `{}`, tried before it, has no condition",
                r.name, cover.name
            ),
        ));
    }
    let names: Vec<String> = shadowed.iter().map(|r| format!("`{}`", r.name)).collect();
    let noun = if names.len() == 1 {
        "fault rule"
    } else {
        "fault rules"
    };
    out.push(
        warn(
            "FLOW003",
            &cover.location,
            format!(
                "fault rule `{}` has no condition, so {noun} {}, tried after it, can never run",
                cover.name,
                names.join(", ")
            ),
        )
        .with_hint(if proxy {
            "proxy endpoint fault rules are tried from the last to the first: give this rule a condition or move it first"
        } else {
            "target endpoint fault rules are tried from the first to the last: give this rule a condition or move it last"
        }),
    );
}

/// The index of the `)` that closes the `(` at `open`, skipping string literals.
fn matching_close(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    for (i, ch) in text.get(open..)?.char_indices() {
        match ch {
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether the expression at `start..end` is wrapped in its own parentheses. A span
/// starts and ends at the innermost operands, so it may hold unmatched parentheses of the
/// operands at its edges; it is widened over them first.
fn parenthesised(text: &str, start: usize, end: usize) -> bool {
    let span = text.get(start..end).unwrap_or("");
    let (mut unmatched_close, mut unmatched_open) = (0usize, 0usize);
    let mut in_string = false;
    for ch in span.chars() {
        match ch {
            '"' => in_string = !in_string,
            '(' if !in_string => unmatched_open += 1,
            ')' if !in_string => {
                if unmatched_open > 0 {
                    unmatched_open -= 1;
                } else {
                    unmatched_close += 1;
                }
            }
            _ => {}
        }
    }
    // Widen left over `unmatched_close` opening parentheses, right over `unmatched_open`.
    let mut from = start;
    let mut need = unmatched_close;
    while need > 0 {
        let before = text.get(..from).unwrap_or("").trim_end();
        if !before.ends_with('(') {
            return false;
        }
        from = before.len() - 1;
        need -= 1;
    }
    let mut to = end;
    let mut need = unmatched_open;
    while need > 0 {
        let after = text.get(to..).unwrap_or("");
        let skip = after.len() - after.trim_start().len();
        if !after.trim_start().starts_with(')') {
            return false;
        }
        to += skip + 1;
        need -= 1;
    }
    let before = text.get(..from).unwrap_or("").trim_end();
    let after = text.get(to..).unwrap_or("");
    if !before.ends_with('(') || !after.trim_start().starts_with(')') {
        return false;
    }
    let open = before.len() - 1;
    let close = to + (after.len() - after.trim_start().len());
    matching_close(text, open) == Some(close)
}

/// Whether `e` is false whatever the request: the literal `false`, or an `AND` with such
/// an operand, or an `OR` of such operands.
fn is_never_true(e: &Expr, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    match e {
        Expr::Operand(Operand::Literal {
            value: preflow_condition::ast::Literal::Boolean(false),
            ..
        }) => true,
        Expr::And { lhs, rhs, .. } => {
            is_never_true(lhs, depth + 1) || is_never_true(rhs, depth + 1)
        }
        Expr::Or { lhs, rhs, .. } => is_never_true(lhs, depth + 1) && is_never_true(rhs, depth + 1),
        _ => false,
    }
}

/// COND005: a condition that can never hold, so what it guards never runs.
fn never_true(c: &Condition, out: &mut Vec<Diagnostic>) {
    if let Some(e) = c.ast().and_then(|a| a.expr.as_ref())
        && is_never_true(e, 0)
    {
        out.push(
            warn(
                "COND005",
                &c.location,
                "the condition is false whatever the request (a literal `false` in an `AND`); what it guards never runs".to_owned(),
            )
            .with_hint("remove the `false` term, or the step, flow or rule it guards"),
        );
    }
}

/// COND006: a variable standing alone as a boolean, without a comparison.
fn bare_variable(c: &Condition, out: &mut Vec<Diagnostic>) {
    let Some(root) = c.ast().and_then(|a| a.expr.as_ref()) else {
        return;
    };
    let mut stack = vec![(root, 0usize)];
    while let Some((e, depth)) = stack.pop() {
        match e {
            Expr::And { lhs, rhs, .. } | Expr::Or { lhs, rhs, .. } if depth < 64 => {
                stack.push((rhs, depth + 1));
                stack.push((lhs, depth + 1));
            }
            Expr::Not { operand, .. } if depth < 64 => stack.push((operand, depth + 1)),
            Expr::Operand(Operand::Variable(v)) => {
                out.push(
                    warn(
                        "COND006",
                        &c.location,
                        format!(
                            "`{}` stands alone without a comparison: it holds only when the variable is `true` (or the text `true`)",
                            v.name
                        ),
                    )
                    .with_hint("compare it: `= true`, `!= null` or `= \"value\"`, whichever is meant"),
                );
                return;
            }
            _ => {}
        }
    }
}

fn and_or_mix(c: &Condition, out: &mut Vec<Diagnostic>) {
    let Some(root) = c.ast().and_then(|a| a.expr.as_ref()) else {
        return;
    };
    let mut stack = vec![root];
    // The first offending operand in the text; one warning per condition is enough.
    let mut first: Option<usize> = None;
    while let Some(e) = stack.pop() {
        let (lhs, rhs, is_and) = match e {
            Expr::And { lhs, rhs, .. } => (lhs, rhs, true),
            Expr::Or { lhs, rhs, .. } => (lhs, rhs, false),
            Expr::Not { operand, .. } => {
                stack.push(operand);
                continue;
            }
            _ => continue,
        };
        for child in [lhs, rhs] {
            let mixed = matches!(
                (is_and, child.as_ref()),
                (true, Expr::Or { .. }) | (false, Expr::And { .. })
            );
            let span = child.span();
            if mixed && !parenthesised(&c.text, span.start, span.end) {
                first = Some(first.map_or(span.start, |f| f.min(span.start)));
            }
            stack.push(child);
        }
    }
    if let Some(at) = first {
        out.push(
            warn(
                "COND001",
                &within(c, at),
                "`AND` and `OR` mixed without parentheses; Apigee Edge and Apigee X group them \
                 differently"
                    .to_owned(),
            )
            .with_hint("add parentheses to say which is meant"),
        );
    }
}

fn unreferenced_policies(
    bundle: &Bundle,
    event_flow_policies: &BTreeSet<String>,
    out: &mut Vec<Diagnostic>,
) {
    let used: BTreeSet<&str> = bundle
        .all_steps()
        .iter()
        .map(|s| s.policy.as_str())
        .chain(event_flow_policies.iter().map(String::as_str))
        .collect();
    for p in bundle.policies.values() {
        // SAP puts `defaultRaiseFaultPolicy` in every export, used or not.
        let sap_default =
            p.name == "defaultRaiseFaultPolicy" && p.location.file.contains("/Policy/");
        if !used.contains(p.name.as_str()) && !sap_default {
            out.push(
                warn(
                    "POL006",
                    &p.location,
                    format!("policy `{}` is not used by any step", p.name),
                )
                .with_hint("attach it with a `<Step>`, or remove the file"),
            );
        }
    }
}

/// FlowCallouts naming a shared flow that is not among the loaded bundles (checked only
/// when some shared flows were loaded, since they are usually deployed separately).
fn missing_shared_flows(
    bundle: &Bundle,
    shared_flows: &BTreeMap<&str, &Bundle>,
    out: &mut Vec<Diagnostic>,
) {
    for p in bundle.policies.values() {
        if let Some(name) = p.config.shared_flow()
            && !shared_flows.contains_key(name)
        {
            out.push(warn(
                "REF004",
                &p.location,
                format!(
                    "{} `{}` calls shared flow `{name}`, which is not among the loaded bundles",
                    p.type_name, p.name
                ),
            ));
        }
    }
}

/// Variable roots set by the platform: `request.*`, `fault.name`, and so on.
const SYSTEM_ROOTS: &[&str] = &[
    "request",
    "response",
    "message",
    "proxy",
    "client",
    "target",
    "system",
    "environment",
    "organization",
    "apiproxy",
    "route",
    "current",
    "error",
    "fault",
    "messageid",
    "is",
    "virtualhost",
    "tls",
    "router",
    "loadbalancing",
    "servicecallout",
    "ratelimit",
    "sharedflow",
    "upstream",
    "apigee",
    "mint",
    "graphql",
    "oauthv2accesstoken",
    "oauthv2authcode",
    "oauthv2refreshtoken",
    "oauthV2",
    "verifyapikey",
    "jwt",
    "jws",
    "cors",
    "cache",
    "lookupcache",
    "responsecache",
    "kvm",
    "keyvaluemap",
    "policy",
    "flow.resource",
];

/// Variables set by OAuthV2 VerifyAccessToken, GetOAuthV2Info and VerifyAPIKey.
const TOKEN_ROOTS: &[&str] = &[
    "client_id",
    "access_token",
    "scope",
    "grant_type",
    "token_type",
    "issued_at",
    "expires_in",
    "status",
    "organization_name",
    "developer",
    "app",
    "apiproduct",
    "accesstoken",
    "refresh_token",
    "authorization_code",
    "oauthv2authcode",
    "company",
];

/// What the policies of the loaded bundles set, and which bundles can be judged.
struct VariablesSet {
    names: BTreeSet<String>,
    policies: BTreeSet<String>,
    tokens: bool,
}

impl VariablesSet {
    fn of(bundles: &[Bundle]) -> Self {
        let mut set = VariablesSet {
            names: BTreeSet::new(),
            policies: BTreeSet::new(),
            tokens: false,
        };
        for p in bundles.iter().flat_map(|b| b.policies.values()) {
            set.policies.insert(p.name.clone());
            set.names.extend(preflow_policy::variables_set(&p.config));
            set.tokens |= p.config.sets_token_variables();
        }
        set
    }

    /// A bundle can be judged when every policy it holds is modelled (script policies set
    /// variables in code that is not read) and the same holds for every shared flow it
    /// calls, which must be loaded.
    fn is_complete_for(&self, bundle: &Bundle, shared_flows: &BTreeMap<&str, &Bundle>) -> bool {
        let mut stack = vec![bundle];
        let mut seen = BTreeSet::new();
        while let Some(b) = stack.pop() {
            if !seen.insert(b.root.as_str()) {
                continue;
            }
            for p in b.policies.values() {
                // A script may set variables by names computed at run time.
                if !p.config.is_supported() || p.type_name == "Javascript" {
                    return false;
                }
                if let Some(name) = p.config.shared_flow() {
                    match shared_flows.get(name) {
                        Some(called) => stack.push(called),
                        None => return false,
                    }
                }
            }
        }
        true
    }

    fn sets(&self, name: &str) -> bool {
        let has_root = |roots: &[&str]| {
            roots.iter().any(|r| {
                name == *r
                    || name
                        .strip_prefix(r)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
        };
        if has_root(SYSTEM_ROOTS) || (self.tokens && has_root(TOKEN_ROOTS)) {
            return true;
        }
        if name
            .split('.')
            .any(|segment| self.policies.contains(segment))
        {
            return true;
        }
        self.names.iter().any(|n| {
            name == n
                || name
                    .strip_prefix(n.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
                || n.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }
}

fn unset_variables(c: &Condition, set: &VariablesSet, out: &mut Vec<Diagnostic>) {
    let mut reported = BTreeSet::new();
    let Some(expr) = c.ast().and_then(|a| a.expr.as_ref()) else {
        return;
    };
    let mut vars = Vec::new();
    expr.for_each_variable(&mut |v| vars.push(v));
    // A bare literal operand is not a variable.
    if let Expr::Operand(Operand::Literal { .. }) = expr {
        return;
    }
    for v in vars {
        if !set.sets(&v.name) && reported.insert(v.name.clone()) {
            out.push(
                warn(
                    "COND002",
                    &within(c, v.span.start),
                    format!(
                        "condition reads `{}`, which no policy of the loaded bundles sets",
                        v.name
                    ),
                )
                .with_hint("check the spelling, or the policy that should set it"),
            );
        }
    }
}

/// What the bundles' targets ask of the environment: an `https` target whose
/// certificate is not verified, and API providers, target servers, trust stores and key
/// stores the environment does not define (a call through them would fail).
pub fn lint_environment(bundles: &[Bundle], env: &crate::Environment) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for bundle in bundles {
        for t in &bundle.target_endpoints {
            let crate::endpoint::TargetConnection::Http(h) = &t.connection else {
                continue;
            };
            let at = &t.location;
            let url = h.url.as_deref().map(str::trim).unwrap_or_default();
            if let Some(rest) = url.strip_prefix("provider://") {
                let name = rest.split('/').next().unwrap_or_default();
                if env.find_provider(name).is_none() {
                    out.push(warn(
                        "REF003",
                        at,
                        format!(
                            "target endpoint `{}` goes through API provider `{name}`, which the environment does not define",
                            t.name
                        ),
                    ));
                }
            }
            for s in h.load_balancer.iter().flat_map(|lb| &lb.servers) {
                if env.find_target_server(&s.name).is_none() {
                    out.push(warn(
                        "REF003",
                        at,
                        format!(
                            "target endpoint `{}` balances over target server `{}`, which the environment does not define",
                            t.name, s.name
                        ),
                    ));
                }
            }
            if let Some(d) = ignores_validation(t, h) {
                out.push(d);
            }
            let Some(tls) = &h.ssl_info else {
                continue;
            };
            for (kind, name, known) in [
                ("trust store", &tls.truststore, &env.truststores),
                ("key store", &tls.keystore, &env.keystores),
            ] {
                if let Some(n) = name
                    && !known.iter().any(|k| k == n)
                {
                    out.push(warn(
                        "REF003",
                        at,
                        format!(
                            "target endpoint `{}` names {kind} `{n}`, which the environment does not define",
                            t.name
                        ),
                    ));
                }
            }
        }
    }
    out
}
