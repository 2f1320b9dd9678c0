//! Checks beyond loading, for `preflow check`: conditions that mix `AND` and `OR` without
//! parentheses, flows and rules that can never run, policies no step uses, and conditions
//! that read variables nothing sets.

use crate::bundle::Bundle;
use crate::endpoint::{Condition, FaultRule, Flow, RouteRule};
use preflow_condition::ast::{Expr, Operand};
use preflow_policy::{Diagnostic, Location, Severity};
use std::collections::{BTreeMap, BTreeSet};

/// Lints `bundles` (loaded together, so that variables set by shared flows count for the
/// proxies that call them). Every finding is a warning.
pub fn lint(bundles: &[Bundle]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
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
        }
        unreferenced_policies(bundle, &mut out);
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

fn warn(location: &Location, message: String) -> Diagnostic {
    Diagnostic::at(location.clone(), Severity::Warning, message)
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

fn unreachable_flows(flows: &[Flow], out: &mut Vec<Diagnostic>) {
    if let Some(first) = flows.iter().position(|f| f.condition.is_none()) {
        let Some(cover) = flows.get(first) else {
            return;
        };
        for f in flows.iter().skip(first + 1) {
            if let Some(loc) = &f.location {
                out.push(
                    warn(
                        loc,
                        format!(
                            "flow `{}` can never run: flow `{}` before it has no condition",
                            f.name, cover.name
                        ),
                    )
                    .with_hint("only the first flow whose condition holds runs; move the unconditional flow last"),
                );
            }
        }
    }
}

fn unreachable_routes(rules: &[RouteRule], out: &mut Vec<Diagnostic>) {
    if let Some(first) = rules.iter().position(|r| r.condition.is_none()) {
        let Some(cover) = rules.get(first) else {
            return;
        };
        for r in rules.iter().skip(first + 1) {
            out.push(
                warn(
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
    if let Some(first) = order.iter().position(|r| r.condition.is_none()) {
        let Some(cover) = order.get(first) else {
            return;
        };
        for r in order.iter().skip(first + 1) {
            out.push(warn(
                &r.location,
                format!(
                    "fault rule `{}` can never run: fault rule `{}`, tried before it, has no condition",
                    r.name, cover.name
                ),
            ).with_hint(if proxy {
                "proxy endpoint fault rules are tried from the last to the first"
            } else {
                "target endpoint fault rules are tried from the first to the last"
            }));
        }
    }
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
                &within(c, at),
                "`AND` and `OR` mixed without parentheses; Apigee Edge and Apigee X group them \
                 differently"
                    .to_owned(),
            )
            .with_hint("add parentheses to say which is meant"),
        );
    }
}

fn unreferenced_policies(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    let used: BTreeSet<&str> = bundle
        .all_steps()
        .iter()
        .map(|s| s.policy.as_str())
        .collect();
    for p in bundle.policies.values() {
        if !used.contains(p.name.as_str()) {
            out.push(warn(
                &p.location,
                format!("policy `{}` is not used by any step", p.name),
            ));
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
                        at,
                        format!(
                            "target endpoint `{}` balances over target server `{}`, which the environment does not define",
                            t.name, s.name
                        ),
                    ));
                }
            }
            let Some(tls) = &h.ssl_info else {
                continue;
            };
            if tls.ignore_validation_errors
                && (url.starts_with("https://") || tls.enabled || url.is_empty())
            {
                out.push(
                    warn(
                        at,
                        format!(
                            "target endpoint `{}` does not verify the back end's certificate (`<IgnoreValidationErrors>true`)",
                            t.name
                        ),
                    )
                    .with_hint("anyone on the path can impersonate the back end; name a `<TrustStore>` instead"),
                );
            }
            for (kind, name, known) in [
                ("trust store", &tls.truststore, &env.truststores),
                ("key store", &tls.keystore, &env.keystores),
            ] {
                if let Some(n) = name
                    && !known.iter().any(|k| k == n)
                {
                    out.push(warn(
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
