//! Reachability: steps after an unconditional RaiseFault, flows, route rules and fault
//! rules whose condition repeats an earlier one, and target endpoints no route rule names.

use super::warn;
use crate::bundle::{Bundle, BundleKind};
use crate::endpoint::{Condition, FaultRule, Flow, RouteTarget, Step};
use preflow_policy::Diagnostic;
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

/// The condition text with white space collapsed, for comparing.
fn normalised(c: &Condition) -> String {
    c.text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reports each item whose condition repeats an earlier item's.
fn repeated<'a, T>(
    items: impl Iterator<Item = &'a T>,
    what: &str,
    parts: impl Fn(&'a T) -> Option<(&'a str, &'a Condition)>,
    out: &mut Vec<Diagnostic>,
) where
    T: 'a,
{
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for item in items {
        let Some((name, cond)) = parts(item) else {
            continue;
        };
        let key = normalised(cond);
        match seen.get(key.as_str()) {
            Some(first) => out.push(
                warn(
                    "FLOW004",
                    &cond.location,
                    format!(
                        "{what} `{name}` has the same condition as {what} `{first}`; only the one tried first can run"
                    ),
                )
                .with_hint("merge the two, or change one of the conditions"),
            ),
            None => {
                seen.insert(key, name);
            }
        }
    }
}

fn flow_parts(f: &Flow) -> Option<(&str, &Condition)> {
    Some((f.name.as_str(), f.condition.as_ref()?))
}

fn fault_parts(r: &FaultRule) -> Option<(&str, &Condition)> {
    Some((r.name.as_str(), r.condition.as_ref()?))
}

/// FLOW004: conditions repeated on flows, route rules and fault rules of one endpoint.
pub(super) fn duplicate_conditions(bundle: &Bundle, out: &mut Vec<Diagnostic>) {
    for p in &bundle.proxy_endpoints {
        repeated(p.flows.iter(), "flow", flow_parts, out);
        repeated(
            p.route_rules.iter(),
            "route rule",
            |r| Some((r.name.as_str(), r.condition.as_ref()?)),
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
