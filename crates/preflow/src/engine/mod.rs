//! The flow engine: spec/policies.md §2, as a resumable state machine.
//!
//! Execution position is a [`Stage`]: a segment (PreFlow, the selected conditional Flow or
//! PostFlow of the proxy or target, request or response side) and a step index, the
//! route, the target call, fault handling, the response and PostClientFlow. The step
//! index moves past a policy before it runs, so a policy that waits for a store reply is
//! never run twice. FlowCallouts push frames that run before the segment continues.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use preflow_policy::runtime::{Fault, Message, Outcome, PolicyRef, Target, wants_xml};

use crate::compiled::{
    CCompiled, CCond, CConn, CDefaultRule, CFlow, CRouteTarget, CStep, Inner, flows_of, join_url,
};
use crate::context::PolicyContext;
use crate::exchange::{
    Exchange, FaultSeg, Frame, Part, Phase, Resume, Seg, Stage, Step, TraceEvent,
};
use crate::fault::faults;
use crate::vars::View;

mod provider;

/// Upper bound on engine iterations per call, as a guard.
const MAX_ITERATIONS: usize = 1 << 20;

fn phase_of(stage: &Stage) -> Phase {
    match stage {
        Stage::Run(Seg::ProxyReq(_), _) | Stage::Route | Stage::Start => Phase::ProxyRequest,
        Stage::Run(Seg::TargetReq(_), _) | Stage::Forward | Stage::AwaitToken => {
            Phase::TargetRequest
        }
        Stage::Run(Seg::TargetResp(_), _) | Stage::AwaitTarget => Phase::TargetResponse,
        Stage::Run(Seg::ProxyResp(_), _) | Stage::Respond | Stage::Done => Phase::ProxyResponse,
        Stage::Fault(..) => Phase::Error,
        Stage::PostClient(_) => Phase::PostClient,
    }
}

/// Evaluates an optional condition (absent is true).
pub(crate) fn eval(
    g: &Inner,
    ex: &mut Exchange,
    c: Option<&CCond>,
    what: &str,
) -> Result<bool, Fault> {
    let Some(c) = c else {
        return Ok(true);
    };
    let compiled = match &c.compiled {
        CCompiled::Valid(compiled) => compiled,
        // Neither true nor false: the fault is what the trace records.
        CCompiled::Invalid(why) => return Err(faults::condition_invalid(&c.text, why)),
    };
    let guard = &c.guard;
    let result = if guard.is_empty() {
        compiled.eval(&View { g, ex })
    } else if guard.holds(ex.path_suffix(), &ex.request.method) {
        guard.exact || compiled.eval(&View { g, ex })
    } else {
        false
    };
    if ex.trace.is_some() {
        let what = what.to_owned();
        let text = c.text.clone();
        ex.record(|| TraceEvent::Condition { what, text, result });
    }
    Ok(result)
}

fn seg_steps<'g>(g: &'g Inner, ex: &Exchange, seg: Seg) -> &'g [CStep] {
    match flows_of(g, ex, seg) {
        Some((f, true)) => &f.request,
        Some((f, false)) => &f.response,
        None => &[],
    }
}

fn fault_steps<'g>(g: &'g Inner, ex: &Exchange, fs: FaultSeg) -> &'g [CStep] {
    let Some(b) = g.bundles.get(ex.bundle) else {
        return &[];
    };
    let proxy = b.proxies.get(ex.endpoint);
    let target = ex.target.and_then(|t| b.targets.get(t));
    match fs {
        FaultSeg::Rule {
            target: false,
            rule,
        } => proxy
            .and_then(|p| p.fault_rules.get(rule))
            .map_or(&[], |r| &r.steps),
        FaultSeg::Rule { target: true, rule } => target
            .and_then(|t| t.fault_rules.get(rule))
            .map_or(&[], |r| &r.steps),
        FaultSeg::Default { target: false } | FaultSeg::ProxyDefaultAfterTarget => proxy
            .and_then(|p| p.default_rule.as_ref())
            .map_or(&[], |r| &r.steps),
        FaultSeg::Default { target: true } => target
            .and_then(|t| t.default_rule.as_ref())
            .map_or(&[], |r| &r.steps),
    }
}

/// Enters segment `seg`: selects the conditional flow on the request side, names the
/// current flow, and passes segments without steps at once up to the first with steps
/// or past the last of the side. It stops at an empty one when tracing (the record shows
/// every flow) and while a body that conditions read is unread (the next step reads it).
fn enter_seg(g: &Inner, ex: &mut Exchange, mut seg: Seg) -> Result<(), Fault> {
    let body_first = ex.body_pending
        && g.bundles
            .get(ex.bundle)
            .is_some_and(|b| b.conditions_need_body);
    if body_first || ex.trace.is_some() {
        return enter_one(g, ex, seg);
    }
    loop {
        // A segment known to be empty is passed without entering it.
        if !idle(g, ex, seg) {
            enter_one(g, ex, seg)?;
            if !seg_steps(g, ex, seg).is_empty() {
                return Ok(());
            }
        }
        match next_seg(seg) {
            Some(n) => seg = n,
            None => {
                // The side's last flow is the current one, as if it had been walked.
                enter_one(g, ex, seg)?;
                ex.stage = after_side(seg);
                return Ok(());
            }
        }
    }
}

/// Whether segment `seg` has nothing to do, known without selecting or naming a flow: a
/// request side without conditional flows to choose from, or any other segment without
/// steps on its side (a response side whose request side chose no flow has none).
fn idle(g: &Inner, ex: &Exchange, seg: Seg) -> bool {
    match seg {
        Seg::ProxyReq(Part::Flow) => g.proxy_endpoint(ex).is_none_or(|p| p.flows.is_empty()),
        Seg::TargetReq(Part::Flow) => g.target_endpoint(ex).is_none_or(|t| t.flows.is_empty()),
        _ => seg_steps(g, ex, seg).is_empty(),
    }
}

/// Where an exchange goes once the last segment of `seg`'s side is done.
fn after_side(seg: Seg) -> Stage {
    match seg {
        Seg::ProxyReq(_) => Stage::Route,
        Seg::TargetReq(_) => Stage::Forward,
        Seg::TargetResp(_) | Seg::ProxyResp(_) => Stage::Respond,
    }
}

/// Enters one segment: its flow selected (request side) and named as the current one.
fn enter_one(g: &Inner, ex: &mut Exchange, seg: Seg) -> Result<(), Fault> {
    // Select the conditional flow once per endpoint, on the request side.
    if let Seg::ProxyReq(Part::Flow) | Seg::TargetReq(Part::Flow) = seg {
        let target = matches!(seg, Seg::TargetReq(_));
        let (flows, index): (&[CFlow], Option<&crate::select::FlowIndex>) =
            match g.bundles.get(ex.bundle) {
                Some(b) if target => ex
                    .target
                    .and_then(|t| b.targets.get(t))
                    .map_or((&[], None), |t| (&t.flows, Some(&t.flow_index))),
                Some(b) => b
                    .proxies
                    .get(ex.endpoint)
                    .map_or((&[], None), |p| (&p.flows, Some(&p.flow_index))),
                None => (&[], None),
            };
        let mut selected = None;
        let tracing = ex.trace.is_some();
        let mut from = 0;
        while from < flows.len() {
            // A failing guard decides without evaluating (or tracing) the condition: the
            // flows it rules out are skipped in one scan, with the path suffix and verb
            // read once.
            let next = match index {
                Some(index) if !tracing => {
                    // Only the flows the index leaves for this path suffix.
                    let (suffix, verb) = (ex.path_suffix(), &ex.request.method);
                    index.candidates(suffix, from).find(|&i| {
                        flows.get(i).is_some_and(|f| {
                            !f.cond.as_ref().is_some_and(|c| {
                                matches!(c.compiled, CCompiled::Valid(_))
                                    && !c.guard.is_empty()
                                    && !c.guard.holds(suffix, verb)
                            })
                        })
                    })
                }
                _ => Some(from).filter(|&i| i < flows.len()),
            };
            let Some((i, f)) = next.and_then(|i| flows.get(i).map(|f| (i, f))) else {
                break;
            };
            let what = if tracing {
                format!("flow {}", f.name)
            } else {
                String::new()
            };
            if eval(g, ex, f.cond.as_ref(), &what)? {
                selected = Some(i);
                break;
            }
            from = i + 1;
        }
        if target {
            ex.target_flow = selected;
        } else {
            ex.proxy_flow = selected;
        }
    }
    ex.stage = Stage::Run(seg, 0);
    if let Some((f, _)) = flows_of(g, ex, seg) {
        ex.current_flow_name = None;
        ex.current_flow = match seg {
            Seg::ProxyReq(Part::Pre)
            | Seg::ProxyResp(Part::Pre)
            | Seg::TargetReq(Part::Pre)
            | Seg::TargetResp(Part::Pre) => "PreFlow",
            Seg::ProxyReq(Part::Post)
            | Seg::ProxyResp(Part::Post)
            | Seg::TargetReq(Part::Post)
            | Seg::TargetResp(Part::Post) => "PostFlow",
            _ => "",
        };
        // A conditional flow's name is read from the gateway when asked for.
        if !ex.current_flow.is_empty() && f.name != ex.current_flow {
            ex.current_flow_name = Some(f.name.clone());
        }
        if ex.trace.is_some() {
            let phase = phase_of(&ex.stage);
            let name = f.name.clone();
            ex.record(|| TraceEvent::Flow { phase, name });
        }
    }
    Ok(())
}

fn next_seg(seg: Seg) -> Option<Seg> {
    Some(match seg {
        Seg::ProxyReq(Part::Pre) => Seg::ProxyReq(Part::Flow),
        Seg::ProxyReq(Part::Flow) => Seg::ProxyReq(Part::Post),
        Seg::TargetReq(Part::Pre) => Seg::TargetReq(Part::Flow),
        Seg::TargetReq(Part::Flow) => Seg::TargetReq(Part::Post),
        Seg::TargetResp(Part::Pre) => Seg::TargetResp(Part::Flow),
        Seg::TargetResp(Part::Flow) => Seg::TargetResp(Part::Post),
        Seg::TargetResp(Part::Post) => Seg::ProxyResp(Part::Pre),
        Seg::ProxyResp(Part::Pre) => Seg::ProxyResp(Part::Flow),
        Seg::ProxyResp(Part::Flow) => Seg::ProxyResp(Part::Post),
        Seg::ProxyReq(Part::Post) | Seg::TargetReq(Part::Post) | Seg::ProxyResp(Part::Post) => {
            return None;
        }
    })
}

/// Enters the error state with `fault` (spec/policies.md §2.4).
/// The request's declared `Content-Length`, when it has a valid one.
fn declared_length(ex: &Exchange) -> Option<usize> {
    ex.request
        .headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn enter_error(g: &Inner, ex: &mut Exchange, mut fault: Fault) {
    let target = ex.stage.target_side() && ex.target.is_some();
    if fault.state.is_empty() {
        fault.state = ex.stage.state_name();
    }
    if matches!(
        ex.stage,
        Stage::Fault(..) | Stage::PostClient(_) | Stage::Respond | Stage::Done
    ) {
        answer_with(ex, fault);
        return;
    }
    ex.response = Some(fault.render(faults_as_xml(ex)));
    record_fault(ex, &fault);
    ex.fault = Some(Box::new(fault));
    ex.callouts.clear();
    ex.rule_raised = false;
    ex.current_flow = "";
    ex.current_flow_name = None;
    choose_rule(g, ex, target);
}

/// A fault while handling a fault (a fault rule's step, or a fault rule's condition that
/// cannot be evaluated): stop and answer with it.
fn answer_with(ex: &mut Exchange, mut fault: Fault) {
    if fault.state.is_empty() {
        fault.state = ex.stage.state_name();
    }
    ex.target_error_streams = false;
    ex.response = Some(fault.render(faults_as_xml(ex)));
    record_fault(ex, &fault);
    ex.fault = Some(Box::new(fault));
    ex.callouts.clear();
    ex.stage = Stage::Respond;
}

fn record_fault(ex: &mut Exchange, fault: &Fault) {
    if ex.trace.is_some() {
        let (name, code, status) = (
            fault.name.to_string(),
            fault.code.to_string(),
            fault.status.as_u16(),
        );
        ex.record(|| TraceEvent::Fault { name, code, status });
    }
}

/// Picks the one FaultRule that runs: ProxyEndpoint bottom-to-top, TargetEndpoint
/// top-to-bottom; the first whose condition holds.
fn choose_rule(g: &Inner, ex: &mut Exchange, target: bool) {
    let Some(b) = g.bundles.get(ex.bundle) else {
        ex.stage = Stage::Respond;
        return;
    };
    let rules = if target {
        ex.target
            .and_then(|t| b.targets.get(t))
            .map_or(&[][..], |t| &t.fault_rules)
    } else {
        b.proxies
            .get(ex.endpoint)
            .map_or(&[][..], |p| &p.fault_rules)
    };
    let order: Box<dyn Iterator<Item = usize>> = if target {
        Box::new(0..rules.len())
    } else {
        Box::new((0..rules.len()).rev())
    };
    for i in order {
        let Some(rule) = rules.get(i) else { continue };
        let seg = FaultSeg::Rule { target, rule: i };
        if enter_rule(
            g,
            ex,
            &rule.name,
            rule.cond.as_ref(),
            "fault rule",
            seg,
            true,
        ) {
            return;
        }
    }
    goto_default(g, ex, target);
}

/// Enters fault segment `seg` when the condition of its rule `name` holds, naming the
/// rule in the trace and (when `current`) as the current flow. Returns whether the
/// exchange moved on: into the rule, or to answering a condition that cannot be
/// evaluated.
fn enter_rule(
    g: &Inner,
    ex: &mut Exchange,
    name: &str,
    cond: Option<&CCond>,
    kind: &str,
    seg: FaultSeg,
    current: bool,
) -> bool {
    match eval(g, ex, cond, &format!("{kind} {name}")) {
        Ok(true) => {
            if current {
                ex.current_flow_name = Some(name.to_owned());
            }
            let name = name.to_owned();
            ex.record(|| TraceEvent::Flow {
                phase: Phase::Error,
                name,
            });
            ex.stage = Stage::Fault(seg, 0);
            true
        }
        Ok(false) => false,
        Err(f) => {
            answer_with(ex, f);
            true
        }
    }
}

/// The DefaultFaultRule of the target endpoint (`target`) or of the proxy endpoint.
fn default_rule<'g>(g: &'g Inner, ex: &Exchange, target: bool) -> Option<&'g CDefaultRule> {
    let b = g.bundles.get(ex.bundle)?;
    if target {
        b.targets.get(ex.target?)?.default_rule.as_ref()
    } else {
        b.proxies.get(ex.endpoint)?.default_rule.as_ref()
    }
}

fn goto_default(g: &Inner, ex: &mut Exchange, target: bool) {
    if let Some(rule) = default_rule(g, ex, target) {
        let seg = FaultSeg::Default { target };
        if enter_rule(
            g,
            ex,
            &rule.name,
            rule.cond.as_ref(),
            "default fault rule",
            seg,
            true,
        ) {
            return;
        }
    }
    after_default(g, ex, target);
}

fn after_default(g: &Inner, ex: &mut Exchange, target: bool) {
    if target && g.env.settings.proxy_default_rule_on_target_fault && !ex.rule_raised {
        let rule = default_rule(g, ex, false).filter(|r| r.always_enforce);
        if let Some(rule) = rule {
            let seg = FaultSeg::ProxyDefaultAfterTarget;
            if enter_rule(
                g,
                ex,
                &rule.name,
                rule.cond.as_ref(),
                "default fault rule",
                seg,
                false,
            ) {
                return;
            }
        }
    }
    ex.stage = Stage::Respond;
}

fn fault_seg_done(g: &Inner, ex: &mut Exchange, fs: FaultSeg) {
    match fs {
        FaultSeg::Rule { target, .. } => {
            let rule = default_rule(g, ex, target);
            // AlwaysEnforce runs the DefaultFaultRule after a FaultRule, unless that
            // FaultRule raised a fault.
            if rule.is_some_and(|r| r.always_enforce) && !ex.rule_raised {
                goto_default(g, ex, target);
            } else {
                after_default(g, ex, target);
            }
        }
        FaultSeg::Default { target } => after_default(g, ex, target),
        FaultSeg::ProxyDefaultAfterTarget => ex.stage = Stage::Respond,
    }
}

/// What runs next: a step of a FlowCallout frame, of a segment, or of fault handling.
enum Next<'g> {
    Step(usize, &'g CStep),
    SegDone,
    /// The next step reads the request body, which the host has not given yet; the
    /// step's limit on its size, if it has one.
    NeedBody(Option<usize>),
}

fn next<'g>(g: &'g Inner, ex: &mut Exchange) -> Next<'g> {
    while let Some(frame) = ex.callouts.last_mut() {
        let steps = g
            .bundles
            .get(frame.bundle)
            .map_or(&[][..], |b| &b.shared_steps);
        if let Some(s) = steps.get(frame.idx) {
            if s.needs_body && ex.body_pending {
                return Next::NeedBody(s.max_body);
            }
            frame.idx += 1;
            return Next::Step(frame.bundle, s);
        }
        ex.callouts.pop();
    }
    let (steps, idx) = match ex.stage {
        Stage::Run(seg, i) => (seg_steps(g, ex, seg), i),
        Stage::Fault(fs, i) => (fault_steps(g, ex, fs), i),
        Stage::PostClient(i) => (
            g.bundles
                .get(ex.bundle)
                .and_then(|b| b.proxies.get(ex.endpoint))
                .and_then(|p| p.post_client.as_ref())
                .map_or(&[][..], |f| &f.response),
            i,
        ),
        _ => return Next::SegDone,
    };
    match steps.get(idx) {
        Some(s) if s.needs_body && ex.body_pending => Next::NeedBody(s.max_body),
        Some(s) => {
            ex.stage = match ex.stage {
                Stage::Run(seg, i) => Stage::Run(seg, i + 1),
                Stage::Fault(fs, i) => Stage::Fault(fs, i + 1),
                Stage::PostClient(i) => Stage::PostClient(i + 1),
                other => other,
            };
            Next::Step(ex.bundle, s)
        }
        None => Next::SegDone,
    }
}

/// Runs one step: its condition, then its policy.
fn run_step(g: &Inner, ex: &mut Exchange, bundle: usize, step: &CStep) -> Option<Step> {
    let policy = g
        .bundles
        .get(bundle)
        .and_then(|b| b.policies.get(step.policy))?;
    let what = if ex.trace.is_some() {
        format!("step {}", policy.name())
    } else {
        String::new()
    };
    match eval(g, ex, step.cond.as_ref(), &what) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(f) => {
            let at = PolicyRef {
                bundle,
                policy: step.policy,
            };
            handle(g, ex, at, Outcome::Fault(f));
            return None;
        }
    }
    if !policy.enabled() {
        if ex.trace.is_some() {
            let (name, type_name) = (policy.name().to_owned(), policy.type_name().to_owned());
            ex.record(|| TraceEvent::Policy {
                name,
                type_name,
                result: "skipped (disabled)".to_owned(),
            });
        }
        return None;
    }
    let at = PolicyRef {
        bundle,
        policy: step.policy,
    };
    if !ex.ran.contains(&at) {
        ex.ran.push(at);
    }
    // A step may change the answer: the back end's error body no longer follows it.
    ex.target_error_streams = false;
    let outcome = policy.run(&mut PolicyContext { g, ex, at });
    handle(g, ex, at, outcome)
}

/// Applies a policy's outcome.
fn handle(g: &Inner, ex: &mut Exchange, at: PolicyRef, outcome: Outcome) -> Option<Step> {
    let p = g
        .bundles
        .get(at.bundle)
        .and_then(|b| b.policies.get(at.policy))?;
    let tracing = ex.trace.is_some();
    // The result text is built only when tracing.
    let result = |ex: &mut Exchange, r: &dyn Fn() -> String| {
        if tracing {
            let (name, type_name) = (p.name().to_owned(), p.type_name().to_owned());
            let result = r();
            ex.record(|| TraceEvent::Policy {
                name,
                type_name,
                result,
            });
        }
    };
    match outcome {
        Outcome::Continue => {
            result(ex, &|| "ok".to_owned());
            None
        }
        Outcome::CallSharedFlow(shared) => {
            result(ex, &|| "flow callout".to_owned());
            if ex.callouts.len() >= g.env.settings.max_callout_depth {
                let f = faults::internal(format!(
                    "`{}` nests shared flows deeper than {}",
                    p.name(),
                    g.env.settings.max_callout_depth
                ));
                enter_error(g, ex, f);
            } else {
                ex.callouts.push(Frame {
                    bundle: shared,
                    idx: 0,
                });
            }
            None
        }
        Outcome::Store(op, kind) => {
            if tracing {
                let d = format!("{op:?}");
                let short: String = d.chars().take(120).collect();
                ex.record(|| TraceEvent::Store { op: short });
            }
            ex.resume = Some(Box::new(Resume {
                at,
                op: op.clone(),
                kind,
            }));
            Some(Step::Store(op))
        }
        Outcome::Respond(m) => {
            result(ex, &|| "respond".to_owned());
            ex.callouts.clear();
            ex.response = Some(m);
            ex.stage = Stage::Respond;
            None
        }
        Outcome::CacheHit(m) => {
            result(ex, &|| "cache hit".to_owned());
            ex.callouts.clear();
            ex.response = Some(m);
            if let Err(f) = enter_seg(g, ex, Seg::ProxyResp(Part::Pre)) {
                enter_error(g, ex, f);
            }
            None
        }
        Outcome::Callout(target) => {
            result(ex, &|| "service callout".to_owned());
            ex.callout = Some(at);
            Some(Step::Forward(target))
        }
        Outcome::Fault(mut fault) => {
            if !ex.failed.contains(&at) {
                ex.failed.push(at);
            }
            fault.policy = Some((at.bundle, at.policy));
            if matches!(ex.stage, Stage::PostClient(_)) {
                result(ex, &|| format!("fault {} (after the response)", fault.name));
                return None;
            }
            if let Stage::Fault(..) = ex.stage
                && fault.raised
            {
                {
                    // RaiseFault in a FaultRule: its response replaces the error
                    // response; the rule's remaining steps still run.
                    result(ex, &|| format!("raised {}", fault.name));
                    ex.rule_raised = true;
                    ex.response = Some(fault.render(faults_as_xml(ex)));
                    return None;
                }
            }
            if p.continue_on_error() && !fault.raised {
                result(ex, &|| format!("failed {} (continueOnError)", fault.name));
                return None;
            }
            result(ex, &|| format!("fault {}", fault.name));
            enter_error(g, ex, fault);
            None
        }
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and those it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) and
/// makes `Content-Length` match the buffered body, which policies may have changed.
pub(crate) fn fix_framing(headers: &mut http::HeaderMap, body_len: usize, allow_body: bool) {
    use http::header::CONTENT_LENGTH;
    if headers.keys().any(is_hop_by_hop) {
        strip_hop_by_hop(headers);
    }
    if allow_body {
        headers.insert(CONTENT_LENGTH, http::HeaderValue::from(body_len));
    } else {
        headers.remove(CONTENT_LENGTH);
    }
}

/// [`fix_framing`] for a message without a body and without `Content-Length`.
fn fix_framing_no_body(headers: &mut http::HeaderMap) {
    if headers.keys().any(is_hop_by_hop) {
        strip_hop_by_hop(headers);
    }
}

fn is_hop_by_hop(n: &http::HeaderName) -> bool {
    use http::header::{CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    *n == CONNECTION
        || *n == TE
        || *n == TRAILER
        || *n == TRANSFER_ENCODING
        || *n == UPGRADE
        || n.as_str() == "keep-alive"
        || n.as_str() == "proxy-connection"
}

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    let named: Vec<http::HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| http::HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(h);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn to_response(m: Message) -> http::Response<Bytes> {
    let mut r = http::Response::new(m.body);
    let status = m.status;
    *r.status_mut() = status;
    if let Some(reason) = m
        .reason
        .filter(|p| Some(p.as_str()) != status.canonical_reason())
    {
        r.extensions_mut().insert(crate::ReasonPhrase(reason));
    }
    *r.headers_mut() = m.headers;
    let allow_body = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    let len = r.body().len();
    fix_framing(r.headers_mut(), len, allow_body);
    r
}

/// Finishes `ex` on the back end's response head when nothing of the engine would touch
/// it (see [`Gateway::pass_response`](crate::Gateway::pass_response)): a streamed,
/// successful answer, no step in any response segment of the chosen flows, no
/// PostClientFlow, no header kept for the response, no trace, no load balancer or API
/// provider waiting on the outcome. Otherwise `ex` is left as it was.
pub(crate) fn pass_response(g: &Inner, ex: &mut Exchange, status: StatusCode) -> bool {
    let plain = ex.stage == Stage::AwaitTarget
        && ex.streaming
        && ex.trace.is_none()
        && ex.local.is_none()
        && ex.callout.is_none()
        && ex.balance.is_none()
        && ex.target_result.is_none()
        && !ex.body_pending
        && status.as_u16() < 400
        && !ex.state.has_response_headers();
    if !plain {
        return false;
    }
    // A provider's refused token is retried from the status: only with a provider.
    if g.target_endpoint(ex)
        .is_some_and(|t| matches!(t.auth, crate::provider::TargetAuth::ClientCredentials(_)))
    {
        return false;
    }
    if has_post_client(g, ex) {
        return false;
    }
    let mut seg = Seg::TargetResp(Part::Pre);
    loop {
        if !seg_steps(g, ex, seg).is_empty() {
            return false;
        }
        match next_seg(seg) {
            Some(n) => seg = n,
            None => break,
        }
    }
    // As if the empty segments had been walked: the last one is the current flow.
    if enter_one(g, ex, seg).is_err() {
        return false;
    }
    ex.target_answered = true;
    ex.response_streamed = true;
    ex.response = Some(Message::response(status));
    ex.stage = Stage::Done;
    true
}

/// Whether the proxy endpoint's PostClientFlow has steps (it reads the response after
/// the answer is handed over).
fn has_post_client(g: &Inner, ex: &Exchange) -> bool {
    g.proxy_endpoint(ex)
        .and_then(|p| p.post_client.as_ref())
        .is_some_and(|f| !f.response.is_empty())
}

/// Deepest chain of local target calls (a proxy whose target is a proxy …).
const MAX_LOCAL_DEPTH: u8 = 4;

/// Runs `ex` until the host has something to do. A call to a `<LocalTargetConnection>`
/// (a target or ServiceCallout whose URI is a path on this gateway) runs in process as a
/// chained exchange: its store operations, target calls and pauses go to the host like
/// the parent's (the answers reach it through the parent), and its response becomes the
/// parent's target response.
pub(crate) fn run(g: &Inner, ex: &mut Exchange) -> Step {
    loop {
        if let Some(child) = ex.local.as_mut() {
            match run(g, child) {
                Step::Respond(resp) => {
                    ex.local = None;
                    ex.target_result = Some(Box::new(Ok(resp)));
                }
                other => return other,
            }
        }
        match run_own(g, ex) {
            Step::Forward(t) if t.request.uri().authority().is_none() => {
                if ex.depth >= MAX_LOCAL_DEPTH {
                    ex.target_result = Some(Box::new(Err(crate::TargetError::Other(format!(
                        "more than {MAX_LOCAL_DEPTH} chained local target calls"
                    )))));
                    continue;
                }
                let mut child = begin_in(g, t.request, ex.client, ex.now);
                child.depth = ex.depth + 1;
                ex.local = Some(Box::new(child));
            }
            other => return other,
        }
    }
}

fn run_own(g: &Inner, ex: &mut Exchange) -> Step {
    if let Some(at) = ex.callout.take() {
        let policy = g
            .bundles
            .get(at.bundle)
            .and_then(|b| b.policies.get(at.policy));
        let outcome = match (ex.target_result.take(), policy) {
            (Some(result), Some(p)) => p.resume_callout(&mut PolicyContext { g, ex, at }, *result),
            (Some(_), None) => Outcome::Continue,
            (None, _) => Outcome::Fault(faults::internal(
                "the exchange was stepped before the callout response was given",
            )),
        };
        if let Some(s) = handle(g, ex, at, outcome) {
            return s;
        }
    }
    if let Some(resume) = ex.resume.take() {
        let Some(reply) = ex.reply.take() else {
            let op = resume.op.clone();
            ex.resume = Some(resume);
            return Step::Store(op);
        };
        let Resume { at, kind, .. } = *resume;
        let outcome = match g
            .bundles
            .get(at.bundle)
            .and_then(|b| b.policies.get(at.policy))
        {
            Some(p) => p.resume(&mut PolicyContext { g, ex, at }, kind, *reply),
            None => Outcome::Continue,
        };
        if let Some(s) = handle(g, ex, at, outcome) {
            return s;
        }
    }
    for _ in 0..MAX_ITERATIONS {
        if let Some(s) = advance(g, ex) {
            return s;
        }
    }
    let f = faults::internal("the exchange did not finish");
    let m = f.render(false);
    ex.stage = Stage::Done;
    Step::Respond(to_response(m))
}

fn advance(g: &Inner, ex: &mut Exchange) -> Option<Step> {
    match ex.stage {
        Stage::Start => {
            start(g, ex);
            None
        }
        Stage::Run(..) | Stage::Fault(..)
            if ex.body_pending
                && g.bundles
                    .get(ex.bundle)
                    .is_some_and(|b| b.conditions_need_body) =>
        {
            Some(Step::ReadBody)
        }
        Stage::Run(..) | Stage::Fault(..) | Stage::PostClient(_) => match next(g, ex) {
            Next::NeedBody(Some(max)) if declared_length(ex).is_some_and(|n| n > max) => {
                // Refused on its declared length, unread: the error flow sees no body.
                ex.body_pending = false;
                enter_error(g, ex, faults::too_big_body(max));
                None
            }
            Next::NeedBody(_) => Some(Step::ReadBody),
            Next::Step(bundle, step) => run_step(g, ex, bundle, step),
            Next::SegDone => {
                match ex.stage {
                    Stage::Run(seg, _) => match next_seg(seg) {
                        Some(n) => {
                            if let Err(f) = enter_seg(g, ex, n) {
                                enter_error(g, ex, f);
                            }
                        }
                        None => ex.stage = after_side(seg),
                    },
                    Stage::Fault(fs, _) => fault_seg_done(g, ex, fs),
                    Stage::PostClient(_) => {
                        ex.stage = Stage::Done;
                        let resp = ex
                            .final_response
                            .take()
                            .map_or_else(|| to_response(Message::response(StatusCode::OK)), |r| *r);
                        return Some(Step::Respond(resp));
                    }
                    _ => {}
                }
                None
            }
        },
        Stage::Route => {
            route(g, ex);
            None
        }
        Stage::Forward => forward(g, ex),
        Stage::AwaitToken => match provider::token_response(g, ex) {
            Ok(step) => step,
            Err(f) => {
                enter_error(g, ex, f);
                None
            }
        },
        Stage::AwaitTarget => {
            let Some(result) = ex.target_result.take() else {
                enter_error(
                    g,
                    ex,
                    faults::internal(
                        "the exchange was stepped before the target response was given",
                    ),
                );
                return None;
            };
            if ex.balance.is_some()
                && let Some(crate::compiled::CConn::Balanced(lb)) =
                    g.target_endpoint(ex).map(|t| &t.conn)
                && crate::balance::end_call(lb, &mut ex.balance, &result, ex.now_ns)
                // A streamed body is gone: it cannot be sent again.
                && !ex.request_streamed
            {
                ex.response_streamed = false;
                // `<RetryEnabled>`: the same request to the next server.
                ex.stage = Stage::Forward;
                return None;
            }
            ex.target_answered = result.is_ok();
            match *result {
                Ok(resp)
                    if g.target_endpoint(ex)
                        .is_some_and(|t| provider::retry_on(g, ex, &t.auth, resp.status())) =>
                {
                    // The provider's token was refused: once more with a new one.
                    ex.stage = Stage::Forward;
                }
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let m = Message {
                        method: ex.request.method.clone(),
                        path: String::new(),
                        query: None,
                        version: parts.version,
                        status: parts.status,
                        reason: None,
                        headers: parts.headers,
                        body,
                    };
                    if m.status.as_u16() >= 400 {
                        ex.response = Some(m.clone());
                        enter_error(g, ex, faults::error_response_code(m));
                        // Given as a head: its body follows unless an error step runs.
                        ex.target_error_streams = ex.response_streamed;
                    } else {
                        ex.response = Some(m);
                        if let Err(f) = enter_seg(g, ex, Seg::TargetResp(Part::Pre)) {
                            enter_error(g, ex, f);
                        }
                    }
                }
                Err(e) => {
                    let f = match &e {
                        crate::TargetError::Connect(_) => faults::service_unavailable(),
                        crate::TargetError::Timeout => faults::gateway_timeout(),
                        crate::TargetError::Other(why) => faults::bad_gateway(why),
                        other => faults::bad_gateway(&other.to_string()),
                    };
                    enter_error(g, ex, f);
                }
            }
            None
        }
        Stage::Respond => {
            let has_post_client = has_post_client(g, ex);
            // PostClientFlow (and a trace) still read the response; otherwise its head and
            // body move to the host and only the status line stays for later reads.
            let keep = has_post_client || ex.trace.is_some();
            let mut m = match ex.response.as_mut() {
                Some(r) if keep => r.clone(),
                Some(r) => {
                    let mut rest = Message::response(r.status);
                    rest.reason.clone_from(&r.reason);
                    std::mem::replace(r, rest)
                }
                None => Message::response(StatusCode::OK),
            };
            ex.state.finish_response(&mut m);
            let resp = if ex.streams_response_body() {
                // The back end's body follows from the host, with its own framing.
                let mut r = http::Response::new(Bytes::new());
                *r.status_mut() = m.status;
                *r.headers_mut() = m.headers;
                fix_framing_no_body(r.headers_mut());
                r
            } else {
                to_response(m)
            };
            if has_post_client {
                ex.final_response = Some(Box::new(resp));
                ex.stage = Stage::PostClient(0);
                ex.current_flow = "PostClientFlow";
                ex.current_flow_name = None;
                ex.record(|| TraceEvent::Flow {
                    phase: Phase::PostClient,
                    name: "PostClientFlow".to_owned(),
                });
                None
            } else {
                ex.stage = Stage::Done;
                Some(Step::Respond(resp))
            }
        }
        Stage::Done => {
            let f = faults::internal("the exchange has already finished");
            Some(Step::Respond(to_response(f.render(false))))
        }
    }
}

fn start(g: &Inner, ex: &mut Exchange) {
    let normalized = match crate::path::normalize(ex.req_path()) {
        Ok(p) => match p {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(o) => Some(o),
        },
        Err(e) => {
            let f = faults::bad_path(&e);
            ex.response = Some(f.render(faults_as_xml(ex)));
            record_fault(ex, &f);
            ex.fault = Some(Box::new(f));
            ex.stage = Stage::Respond;
            return;
        }
    };
    if let Some(n) = normalized {
        ex.request.path = n;
        ex.path_lazy = false;
    }
    let path = ex.req_path();
    let vhost = ex.virtual_host.as_deref();
    let found = g
        .base_trie
        .find(&g.bases, path, vhost)
        .and_then(|(i, len)| g.bases.get(i).map(|b| (len, b.bundle, b.endpoint)));
    let Some((base_len, b, e)) = found else {
        let host = ex
            .request
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(ex.original_uri.host())
            .or(vhost)
            .unwrap_or("default")
            .to_owned();
        let f = faults::application_not_found(&host, path);
        ex.response = Some(f.render(faults_as_xml(ex)));
        record_fault(ex, &f);
        ex.fault = Some(Box::new(f));
        ex.stage = Stage::Respond;
        return;
    };
    ex.bundle = b;
    ex.endpoint = e;
    ex.base_len = base_len;
    if ex.trace.is_some() {
        let proxy = g.bundles.get(b).map(|x| x.name.clone()).unwrap_or_default();
        let endpoint = g
            .proxy_endpoint(ex)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let base_path = ex.req_path().get(..base_len).unwrap_or("").to_owned();
        let path_suffix = ex.path_suffix().to_owned();
        ex.record(|| TraceEvent::ProxySelected {
            proxy,
            endpoint,
            base_path,
            path_suffix,
        });
    }
    if let Err(f) = enter_seg(g, ex, Seg::ProxyReq(Part::Pre)) {
        enter_error(g, ex, f);
    }
}

fn route(g: &Inner, ex: &mut Exchange) {
    let Some(p) = g.proxy_endpoint(ex) else {
        ex.stage = Stage::Respond;
        return;
    };
    let mut chosen = None;
    for (i, r) in p.routes.iter().enumerate() {
        let what = if ex.trace.is_some() {
            format!("route rule {}", r.name)
        } else {
            String::new()
        };
        match eval(g, ex, r.cond.as_ref(), &what) {
            Ok(true) => {
                chosen = Some(i);
                break;
            }
            Ok(false) => {}
            Err(f) => {
                enter_error(g, ex, f);
                return;
            }
        }
    }
    let Some(i) = chosen else {
        enter_error(g, ex, faults::route_failed());
        return;
    };
    ex.route = Some(i);
    let Some(r) = p.routes.get(i) else { return };
    if ex.trace.is_some() {
        let rule = r.name.clone();
        let target = match &r.target {
            CRouteTarget::Endpoint(t) => format!(
                "target endpoint {}",
                g.bundles
                    .get(ex.bundle)
                    .and_then(|b| b.targets.get(*t))
                    .map_or("", |t| t.name.as_str())
            ),
            CRouteTarget::Missing(t) => format!("missing target endpoint {t}"),
            CRouteTarget::Url(u) => u.clone(),
            CRouteTarget::Null => "null route".to_owned(),
        };
        ex.record(|| TraceEvent::Route { rule, target });
    }
    match &r.target {
        CRouteTarget::Endpoint(t) => {
            ex.target = Some(*t);
            if let Err(f) = enter_seg(g, ex, Seg::TargetReq(Part::Pre)) {
                enter_error(g, ex, f);
            }
        }
        CRouteTarget::Missing(t) => {
            let f = faults::target_unusable(&format!(
                "route rule `{}` names target endpoint `{t}`, which is not in the bundle",
                r.name
            ));
            enter_error(g, ex, f);
        }
        CRouteTarget::Url(u) => {
            if ex.target_url.is_none() {
                ex.target_url = Some(join_url(u, ex.path_suffix(), ex.req_query()));
            }
            ex.stage = Stage::Forward;
        }
        CRouteTarget::Null => {
            if ex.response.is_none() {
                ex.response = Some(Message::response(StatusCode::OK));
            }
            if let Err(f) = enter_seg(g, ex, Seg::ProxyResp(Part::Pre)) {
                enter_error(g, ex, f);
            }
        }
    }
}

fn forward(g: &Inner, ex: &mut Exchange) -> Option<Step> {
    let target = g.target_endpoint(ex);
    // The target gets the whole request: read the body first, unless the host pipes it
    // and nothing after the call reads it.
    let stream_request =
        ex.body_pending && ex.streaming && target.is_some_and(|t| t.stream_request);
    if ex.body_pending && !stream_request {
        return Some(Step::ReadBody);
    }
    // The load balancer's choice: the server's name and TLS settings.
    let mut balanced = None;
    // The endpoint's own URL, when its host is an IP literal: the address to connect to.
    let mut address = None;
    // The target's authority becomes the request's `Host`, as Apigee sends it.
    let mut host = None;
    let uri = match (&ex.target_url, target.map(|t| &t.conn)) {
        // A URL set by a route rule or a policy.
        (Some(url), _) => match url.parse::<http::Uri>() {
            Ok(u) => u,
            Err(_) => {
                let why = format!("the target url `{url}` is not a valid uri");
                enter_error(g, ex, faults::target_unusable(&why));
                return None;
            }
        },
        (None, Some(CConn::Balanced(lb))) => {
            let call =
                match crate::balance::begin_call(lb, &mut ex.balance, &mut ex.vars, ex.now_ns) {
                    Ok(call) => call,
                    Err(f) => {
                        enter_error(g, ex, f);
                        return None;
                    }
                };
            let uri = match build_uri(call.scheme, call.authority, call.base, ex) {
                Some(u) => u,
                None => {
                    enter_error(
                        g,
                        ex,
                        faults::target_unusable("the target path is not valid in a uri"),
                    );
                    return None;
                }
            };
            if let Some(c) = ex.balance.as_mut() {
                c.url = uri.to_string();
            }
            balanced = Some((call.name, call.tls));
            uri
        }
        (
            None,
            Some(CConn::Url {
                scheme,
                authority,
                base,
                address: literal,
                host: value,
                ..
            }),
        ) => {
            address = *literal;
            host = Some(value.clone());
            let suffix = ex.path_suffix();
            let query = ex.req_query();
            let empty = base.is_empty() && suffix.is_empty();
            let pq = path_and_query(&[
                base,
                suffix,
                if empty { "/" } else { "" },
                if query.is_some() { "?" } else { "" },
                query.unwrap_or(""),
            ]);
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(scheme.clone());
            parts.authority = Some(authority.clone());
            parts.path_and_query = http::uri::PathAndQuery::from_maybe_shared(pq).ok();
            match http::Uri::from_parts(parts) {
                Ok(u) => u,
                Err(_) => {
                    enter_error(
                        g,
                        ex,
                        faults::target_unusable("the target path is not valid in a uri"),
                    );
                    return None;
                }
            }
        }
        (None, Some(CConn::Local(base))) => {
            // A path on this gateway: `run` calls it in process.
            let mut pq = base.trim_end_matches('/').to_owned();
            pq.push_str(ex.path_suffix());
            if pq.is_empty() {
                pq.push('/');
            }
            if let Some(q) = ex.req_query() {
                pq.push('?');
                pq.push_str(q);
            }
            match http::Uri::try_from(pq) {
                Ok(u) => u,
                Err(_) => {
                    enter_error(
                        g,
                        ex,
                        faults::target_unusable("the local target path is not valid in a uri"),
                    );
                    return None;
                }
            }
        }
        (None, Some(CConn::LocalProxy { proxy, .. })) => {
            let why = format!("API proxy `{proxy}` is not deployed");
            enter_error(g, ex, faults::target_unusable(&why));
            return None;
        }
        (None, Some(CConn::Unusable(why))) => {
            let why = why.clone();
            enter_error(g, ex, faults::target_unusable(&why));
            return None;
        }
        (None, None) => {
            enter_error(g, ex, faults::target_unusable("no target url"));
            return None;
        }
    };
    let host = host.or_else(|| uri.authority().and_then(crate::compiled::host_value));
    let mut req = http::Request::new(ex.request.body.clone());
    *req.method_mut() = ex.request.method.clone();
    *req.uri_mut() = uri;
    let mut headers = if target.is_some_and(|t| t.move_request_headers) && ex.trace.is_none() {
        // Nothing after the call reads them (decided at build time): moved, not copied.
        ex.xml_faults = Some(wants_xml(&ex.request.headers));
        std::mem::take(&mut ex.request.headers)
    } else {
        ex.request.headers.clone()
    };
    // The client's `Host` named this gateway: replaced in place (a local target has none).
    match host {
        Some(h) => {
            headers.insert(http::header::HOST, h);
        }
        None => {
            headers.remove(http::header::HOST);
        }
    }
    let content_length = headers.contains_key(http::header::CONTENT_LENGTH);
    let len = ex.request.body.len();
    if stream_request {
        // The client's framing stays: its body follows as it arrives.
        fix_framing_no_body(&mut headers);
        ex.body_pending = false;
        ex.request_streamed = true;
    } else if len > 0 || content_length {
        fix_framing(&mut headers, len, true);
    } else {
        fix_framing_no_body(&mut headers);
    }
    if let Some(t) = target {
        match provider::authorize(g, ex, &t.auth, &mut headers) {
            provider::Authorized::Ready => {}
            provider::Authorized::Step(step) => return Some(step),
            provider::Authorized::Failed(f) => {
                enter_error(g, ex, f);
                return None;
            }
        }
    }
    *req.headers_mut() = headers;
    let mut timeouts = target.map(|t| t.timeouts).unwrap_or_default();
    timeouts.connect = timeouts.connect.or(g.env.settings.connect_timeout);
    timeouts.io = timeouts.io.or(g.env.settings.io_timeout);
    ex.stage = Stage::AwaitTarget;
    let (server, tls) = match balanced {
        Some((name, tls)) => (Some(name), tls),
        None => (None, target.and_then(|t| t.tls.clone())),
    };
    Some(Step::Forward(Target {
        request: req,
        timeouts,
        endpoint: target
            .map(|t| Arc::clone(&t.name_arc))
            .unwrap_or_else(|| Arc::from("")),
        tls,
        server,
        address,
        stream_request_body: stream_request,
        stream_response_body: ex.streaming && target.is_some_and(|t| t.stream_response),
    }))
}

/// Bytes of [`path_and_query`] are carved from a per-thread chunk of this size.
const PATH_CHUNK: usize = 16 * 1024;

thread_local! {
    /// The chunk forwarded paths are written into. A path is split off as a `Bytes`
    /// sharing the chunk, so building the forwarded request allocates nothing; a chunk is
    /// reused in place once every path cut from it is dropped, and a new one is taken only
    /// when it is full while some are still in flight (one allocation per many requests).
    static PATHS: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// The concatenation of `pieces` as `Bytes`, for a forwarded request's path and query.
fn path_and_query(pieces: &[&str]) -> Bytes {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let write = |buf: &mut bytes::BytesMut| {
        for p in pieces {
            buf.extend_from_slice(p.as_bytes());
        }
    };
    let carved = PATHS.try_with(|chunk| {
        let mut chunk = chunk.try_borrow_mut().ok()?;
        if chunk.capacity() < len {
            chunk.reserve(PATH_CHUNK.max(len));
        }
        write(&mut chunk);
        Some(chunk.split().freeze())
    });
    match carved {
        Ok(Some(b)) => b,
        // Thread-local storage torn down (thread exit): a plain allocation.
        _ => {
            let mut buf = bytes::BytesMut::with_capacity(len);
            write(&mut buf);
            buf.freeze()
        }
    }
}

/// `scheme://authority{base}{suffix}?{query}` for a server a load balancer chose.
fn build_uri(
    scheme: &http::uri::Scheme,
    authority: &http::uri::Authority,
    base: &str,
    ex: &Exchange,
) -> Option<http::Uri> {
    let suffix = ex.path_suffix();
    let query = ex.req_query();
    let mut pq = String::with_capacity(base.len() + suffix.len() + 2);
    pq.push_str(base);
    pq.push_str(suffix);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    parts.path_and_query = http::uri::PathAndQuery::from_maybe_shared(Bytes::from(pq)).ok();
    http::Uri::from_parts(parts).ok()
}

/// Begins an exchange of `inner` (also the chained exchange of a local target call).
pub(crate) fn begin_in(
    inner: &Inner,
    request: http::Request<Bytes>,
    client: preflow_policy::runtime::Client,
    now: std::time::SystemTime,
) -> Exchange {
    let (parts, body) = request.into_parts();
    let now_ns = now
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Exchange {
        request: Message {
            method: parts.method,
            path: String::new(),
            query: None,
            version: parts.version,
            status: http::StatusCode::OK,
            reason: None,
            headers: parts.headers,
            body,
        },
        original_uri: parts.uri,
        response: None,
        client,
        now,
        now_ns,
        bundle: usize::MAX,
        endpoint: usize::MAX,
        base_len: 0,
        target: None,
        target_url: None,
        route: None,
        proxy_flow: None,
        target_flow: None,
        current_flow: "",
        current_flow_name: None,
        stage: Stage::Start,
        resume: None,
        reply: None,
        target_result: None,
        fault: None,
        vars: std::collections::HashMap::new(),
        failed: Vec::new(),
        ran: smallvec::SmallVec::new(),
        state: preflow_policy::runtime::ExchangeState::default(),
        trace: None,
        message_id: inner.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        query_cache: std::sync::OnceLock::new(),
        form_cache: std::sync::OnceLock::new(),
        client_ip_cache: std::sync::OnceLock::new(),
        target_url_cache: std::sync::OnceLock::new(),
        system_time_cache: std::sync::OnceLock::new(),
        callouts: Vec::new(),
        rule_raised: false,
        callout: None,
        path_lazy: true,
        query_lazy: true,
        final_response: None,
        target_answered: false,
        body_pending: false,
        virtual_host: None,
        provider_wait: None,
        provider_looked_up: false,
        provider_lease: None,
        provider_generation: None,
        provider_retried: false,
        local: None,
        depth: 0,
        balance: None,
        streaming: false,
        request_streamed: false,
        response_streamed: false,
        target_error_streams: false,
        xml_faults: None,
    }
}

/// Whether faults of `ex` render as XML (the client's `Accept`).
fn faults_as_xml(ex: &Exchange) -> bool {
    ex.xml_faults
        .unwrap_or_else(|| wants_xml(&ex.request.headers))
}
