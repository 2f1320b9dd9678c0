//! Reachability: steps after an unconditional RaiseFault, flows, route rules and fault
//! rules whose condition repeats an earlier one, and target endpoints no route rule names.

use super::warn;
use crate::bundle::{Bundle, BundleKind};
use crate::endpoint::{Condition, FaultRule, Flow, RouteTarget, Step};
use preflow_condition::ast::{Expr, Operand};
use preflow_policy::{Diagnostic, Location};
use std::collections::{BTreeMap, BTreeSet};

/// Every ordered list of steps of the bundle: each flow's request and response, each
/// fault rule, each shared flow.
fn flows_of<'a>(pre: &'a Flow, flows: &'a [Flow], post: &'a Flow) -> Vec<&'a Flow> {
    std::iter::once(pre)
        .chain(flows)
        .chain(std::iter::once(post))
        .collect()
}

fn step_lists(bundle: &Bundle) -> Vec<&[Step]> {
    let mut out: Vec<&[Step]> = Vec::new();
    for p in &bundle.proxy_endpoints {
        let mut all = flows_of(&p.pre_flow, &p.flows, &p.post_flow);
        all.extend(&p.post_client_flow);
        for f in all {
            out.push(&f.request);
            out.push(&f.response);
        }
        out.extend(p.fault_rules.iter().map(|r| r.steps.as_slice()));
        out.extend(p.default_fault_rule.iter().map(|r| r.steps.as_slice()));
    }
    for t in &bundle.target_endpoints {
        for f in flows_of(&t.pre_flow, &t.flows, &t.post_flow) {
            out.push(&f.request);
            out.push(&f.response);
        }
        out.extend(t.fault_rules.iter().map(|r| r.steps.as_slice()));
        out.extend(t.default_fault_rule.iter().map(|r| r.steps.as_slice()));
    }
    for s in &bundle.shared_flows {
        out.push(&s.steps);
    }
    out
}

/// FLOW005: steps after a step that always raises a fault.
pub(super) fn after_raise_fault(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    for steps in step_lists(bundle) {
        let raises = |s: &Step| {
            s.condition.is_none()
                && bundle.policy(&s.policy).is_some_and(|p| {
                    p.type_name == "RaiseFault" && p.enabled && !p.continue_on_error
                })
        };
        let Some(at) = steps.iter().position(raises) else {
            continue;
        };
        let Some(raise) = steps.get(at) else {
            continue;
        };
        for s in steps.iter().skip(at + 1) {
            out.push(
                warn(
                    "FLOW005",
                    &s.location,
                    format!(
                        "step `{}` never runs: step `{}` before it raises a fault whatever the request",
                        s.policy, raise.policy
                    ),
                )
                .with_hint("give the RaiseFault step a `<Condition>`, or remove the steps after it"),
            );
        }
    }
}

/// POL009: several CORS policies attached, one of them without a condition: only one
/// CORS policy answers a request, so the others never apply as meant.
pub(super) fn cors_policies(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    let cors: Vec<&Step> = bundle
        .all_steps()
        .into_iter()
        .filter(|s| {
            bundle
                .policy(&s.policy)
                .is_some_and(|p| p.type_name == "CORS" && p.enabled)
        })
        .collect();
    let distinct: BTreeSet<&str> = cors.iter().map(|s| s.policy.as_str()).collect();
    if distinct.len() < 2 {
        return;
    }
    for s in cors.iter().filter(|s| s.condition.is_none()) {
        out.push(
            warn(
                "POL009",
                &s.location,
                format!(
                    "CORS policy `{}` runs without a condition while {} other CORS policies are attached; only one applies",
                    s.policy,
                    distinct.len() - 1
                ),
            )
            .with_hint("keep one CORS policy, or give each a condition that excludes the others"),
        );
    }
}

/// POL007: a Quota that one list of steps runs twice under the same condition counts
/// each request twice. Reported at the policy, once per policy.
pub(super) fn quota_twice(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    let mut reported = BTreeSet::new();
    for steps in step_lists(bundle) {
        let mut seen = BTreeSet::new();
        for s in steps {
            let Some(p) = bundle.policy(&s.policy) else {
                continue;
            };
            if p.type_name != "Quota" || !p.enabled {
                continue;
            }
            let key = (s.policy.as_str(), s.condition.as_ref().map(normalised));
            if !seen.insert(key) && reported.insert(s.policy.as_str()) {
                out.push(
                    warn(
                        "POL007",
                        &p.location,
                        format!(
                            "Quota `{}` runs twice in one flow under the same condition, so each request counts twice",
                            p.name
                        ),
                    )
                    .with_hint("remove one of the steps, or use two Quota policies with their own identifiers"),
                );
            }
        }
    }
}

/// A form of the condition in which equivalent spellings agree: operators in their
/// canonical spelling, the operands of `AND` and `OR` chains sorted, redundant
/// parentheses and white space gone. Text that does not parse is compared as written,
/// white space collapsed.
fn normalised(c: &Condition) -> String {
    match c.ast().and_then(|a| a.expr.as_ref()) {
        Some(e) => canonical(e, 0),
        None => c.text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

fn operand(o: &Operand) -> String {
    match o {
        Operand::Variable(v) => v.name.clone(),
        Operand::Literal { value, .. } => format!("{value:?}"),
    }
}

/// Conditions nest far less deeply; past this the text stands for itself.
const MAX_DEPTH: usize = 64;

fn canonical(e: &Expr, depth: usize) -> String {
    if depth > MAX_DEPTH {
        return format!("{e:?}");
    }
    match e {
        Expr::Or { .. } | Expr::And { .. } => {
            let is_and = matches!(e, Expr::And { .. });
            let mut parts = Vec::new();
            let mut stack = vec![e];
            while let Some(x) = stack.pop() {
                match x {
                    Expr::And { lhs, rhs, .. } if is_and => {
                        stack.push(rhs);
                        stack.push(lhs);
                    }
                    Expr::Or { lhs, rhs, .. } if !is_and => {
                        stack.push(rhs);
                        stack.push(lhs);
                    }
                    other => parts.push(canonical(other, depth + 1)),
                }
            }
            parts.sort();
            parts.dedup();
            format!("({})", parts.join(if is_and { " and " } else { " or " }))
        }
        Expr::Not { operand, .. } => format!("not {}", canonical(operand, depth + 1)),
        Expr::Compare(c) => format!(
            "{} {}{} {}",
            c.lhs.name,
            if c.negated { "not " } else { "" },
            c.op.canonical(),
            operand(&c.rhs)
        ),
        Expr::Operand(o) => operand(o),
    }
}

/// Reports each item whose condition repeats an earlier item's.
fn repeated<'a, T>(
    items: impl Iterator<Item = &'a T>,
    what: &str,
    parts: impl Fn(&'a T) -> (&'a str, Option<&'a Condition>, Option<&'a Location>),
    out: &mut Vec<Diagnostic>,
) where
    T: 'a,
{
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for item in items {
        let (name, cond, loc) = parts(item);
        let Some(loc) = loc.or(cond.map(|c| &c.location)) else {
            continue;
        };
        if !name.is_empty() && !names.insert(name) {
            out.push(
                warn(
                    "FLOW008",
                    loc,
                    format!("a second {what} named `{name}`"),
                )
                .with_hint("give each its own name: traces, analytics and fault handling tell them apart by name"),
            );
        }
        // Flows without a condition repeat each other too (route and fault rules after
        // an unconditional one are FLOW002 and FLOW003 already).
        let key = match cond {
            Some(c) => normalised(c),
            None if what == "flow" => String::new(),
            None => continue,
        };
        match seen.get(key.as_str()) {
            Some(first) => out.push(
                warn(
                    "FLOW004",
                    loc,
                    if key.is_empty() {
                        format!(
                            "{what} `{name}` has no condition, like {what} `{first}` before it; only the first can run"
                        )
                    } else {
                        format!(
                            "{what} `{name}` has the same condition as {what} `{first}`; only the one tried first can run"
                        )
                    },
                )
                .with_hint("merge the two, or change one of the conditions"),
            ),
            None => {
                seen.insert(key, name);
            }
        }
    }
}

fn flow_parts(f: &Flow) -> (&str, Option<&Condition>, Option<&Location>) {
    (f.name.as_str(), f.condition.as_ref(), f.location.as_ref())
}

fn fault_parts(r: &FaultRule) -> (&str, Option<&Condition>, Option<&Location>) {
    (r.name.as_str(), r.condition.as_ref(), Some(&r.location))
}

/// FLOW004 and FLOW008: conditions and names repeated on flows, route rules and fault
/// rules of one endpoint.
pub(super) fn duplicate_conditions(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    for p in &bundle.proxy_endpoints {
        repeated(p.flows.iter(), "flow", flow_parts, out);
        repeated(
            p.route_rules.iter(),
            "route rule",
            |r| (r.name.as_str(), r.condition.as_ref(), Some(&r.location)),
            out,
        );
        repeated(p.fault_rules.iter(), "fault rule", fault_parts, out);
    }
    for t in &bundle.target_endpoints {
        repeated(t.flows.iter(), "flow", flow_parts, out);
        repeated(t.fault_rules.iter(), "fault rule", fault_parts, out);
    }
}

/// FLOW006: target endpoints of an API proxy that no route rule names.
pub(super) fn unreferenced_targets(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    if bundle.kind != BundleKind::ApiProxy || bundle.proxy_endpoints.is_empty() {
        return;
    }
    let named: BTreeSet<&str> = bundle
        .proxy_endpoints
        .iter()
        .flat_map(|p| &p.route_rules)
        .filter_map(|r| match &r.target {
            RouteTarget::TargetEndpoint(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    for t in &bundle.target_endpoints {
        if !named.contains(t.name.as_str()) {
            out.push(
                warn(
                    "FLOW006",
                    &t.location,
                    format!(
                        "target endpoint `{}` is never called: no route rule names it",
                        t.name
                    ),
                )
                .with_hint(
                    "add a `<RouteRule>` with `<TargetEndpoint>` naming it, or remove the file",
                ),
            );
        }
    }
}
