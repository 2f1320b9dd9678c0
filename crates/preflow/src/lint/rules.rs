//! The rule catalogue: every finding of `preflow check` carries one of these ids. Ids are
//! stable: a rule may be retired, never renumbered.

use preflow_policy::{Diagnostic, Severity};

/// One check of `preflow check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rule {
    /// Stable id, such as `TLS001`.
    pub id: &'static str,
    /// Severity unless configured otherwise.
    pub severity: Severity,
    /// Whether `--strict` makes it an error: references a build pipeline may fill in
    /// later, which Apigee's import rejects.
    pub strict: bool,
    /// One line: what it catches.
    pub summary: &'static str,
    /// Why it matters.
    pub rationale: &'static str,
}

const fn rule(
    id: &'static str,
    severity: Severity,
    strict: bool,
    summary: &'static str,
    rationale: &'static str,
) -> Rule {
    Rule {
        id,
        severity,
        strict,
        summary,
        rationale,
    }
}

use Severity::{Error, Warning};

/// Every rule, in catalogue order.
pub const RULES: &[Rule] = &[
    rule(
        "LOAD001",
        Error,
        false,
        "The bundle does not load: a file is not well-formed XML, a required element or attribute is missing or invalid.",
        "Apigee refuses to import such a bundle and preflow cannot run it.",
    ),
    rule(
        "LOAD002",
        Warning,
        false,
        "The bundle loads, but the loader found something unsupported or suspicious (an unsupported feature, a name that does not match its file).",
        "preflow runs the bundle differently from Apigee or ignores part of it.",
    ),
    rule(
        "SCH001",
        Warning,
        false,
        "An element that the policy type or endpoint does not define (from each policy module's own list of elements).",
        "Apigee ignores or rejects unknown elements; usually a typo or an element in the wrong parent, so the setting meant has no effect.",
    ),
    rule(
        "SCH002",
        Warning,
        false,
        "An element that must appear once is missing, empty or repeated (`<BasePath>`, `<RouteRule><TargetEndpoint>`, `<AssignVariable><Name>`…).",
        "Apigee rejects the bundle or uses only the first; the others are silently ignored.",
    ),
    rule(
        "XML001",
        Error,
        false,
        "The XML declaration `<?xml …?>` is not at the very start of the file (a comment or white space before it).",
        "Such a file is not well-formed XML (XML 1.0 §2.8); Apigee's import and strict parsers reject it.",
    ),
    rule(
        "REF001",
        Warning,
        true,
        "A step names a policy that is not in the bundle.",
        "Apigee's import rejects the bundle; a build step may still add the policy, so it is a warning unless `--strict`.",
    ),
    rule(
        "REF002",
        Warning,
        true,
        "A policy names a resource file (`jsc://`, `xsl://`, `py://`, `java://`…) that is not in the bundle's `resources/`.",
        "Apigee's import rejects the bundle; a build step may still add the file, so it is a warning unless `--strict`.",
    ),
    rule(
        "REF003",
        Warning,
        true,
        "A target names a target server, API provider, trust store or key store that the environment does not define.",
        "Calls through the target fail at run time; environments are often configured separately, so it is a warning unless `--strict`.",
    ),
    rule(
        "REF004",
        Warning,
        true,
        "A FlowCallout calls a shared flow that is not among the loaded bundles (checked when some shared flows are loaded).",
        "The call fails at run time unless the shared flow is deployed separately.",
    ),
    rule(
        "TLS001",
        Warning,
        false,
        "An `https` target URL without `<SSLInfo>`.",
        "Without `<SSLInfo>` Apigee does not validate the back end's certificate, so anyone on the path can impersonate the back end.",
    ),
    rule(
        "TLS002",
        Warning,
        false,
        "`<SSLInfo><Enabled>` disagrees with the URL: not `true` for an `https` URL, or `true` for an `http` URL.",
        "The TLS settings are either ignored or applied to a plain-text connection; the configuration does not say what it means.",
    ),
    rule(
        "TLS003",
        Warning,
        false,
        "`<SSLInfo>` for an `https` target without a `<TrustStore>`.",
        "Apigee validates the back end's certificate chain only against a trust store; without one any certificate is accepted.",
    ),
    rule(
        "TLS004",
        Warning,
        false,
        "`<SSLInfo><IgnoreValidationErrors>true`.",
        "The back end's certificate is not verified: anyone on the path can impersonate the back end.",
    ),
    rule(
        "TLS005",
        Warning,
        false,
        "With `--profile x`: `<SSLInfo>` for an `https` target without `<Enforce>true</Enforce>`.",
        "Without `Enforce`, Apigee X logs certificate and host-name mismatches but still connects.",
    ),
    rule(
        "TLS006",
        Warning,
        false,
        "More than one `<SSLInfo>` in a target connection.",
        "Only one is used; which one is not obvious to the reader.",
    ),
    rule(
        "FLOW001",
        Warning,
        false,
        "A conditional flow after a flow without a condition.",
        "Only the first flow whose condition holds runs, so the later flow never runs.",
    ),
    rule(
        "FLOW002",
        Warning,
        false,
        "A route rule after a route rule without a condition.",
        "The first route rule whose condition holds wins, so the later rule never applies.",
    ),
    rule(
        "FLOW003",
        Warning,
        false,
        "A fault rule without a condition that is tried before other fault rules (reported at the unconditional rule).",
        "The unconditional rule always matches first, so the rules tried after it never run.",
    ),
    rule(
        "FLOW004",
        Warning,
        false,
        "Two flows, route rules or fault rules of one endpoint with the same condition.",
        "Only the first one tried can ever run; the other is dead configuration or a copy-paste mistake.",
    ),
    rule(
        "FLOW005",
        Warning,
        false,
        "A step after a step that runs a RaiseFault without a condition.",
        "The RaiseFault always enters the error flow, so the later steps never run.",
    ),
    rule(
        "FLOW006",
        Warning,
        false,
        "A TargetEndpoint that no route rule names.",
        "The target is never called; dead configuration, or a route rule names the wrong target.",
    ),
    rule(
        "FLOW007",
        Warning,
        false,
        "An `<EventFlow>` (server-sent events).",
        "preflow does not run EventFlow steps; their policies count as used, but they do not run under preflow.",
    ),
    rule(
        "FLOW008",
        Warning,
        false,
        "Two flows, route rules or fault rules of one endpoint with the same name.",
        "Traces, analytics and the `current.flow.name` variable tell them apart by name; tools that edit bundles by name change the wrong one.",
    ),
    rule(
        "FLOW009",
        Warning,
        false,
        "Steps in the `<Request>` of a `<PostClientFlow>`.",
        "PostClientFlow runs after the response is sent and has no request phase; its request steps never run.",
    ),
    rule(
        "FLOW010",
        Warning,
        false,
        "A proxy endpoint without a route rule, or whose route rules all have conditions.",
        "A request that no route rule's condition matches gets no route; the fallback should be explicit.",
    ),
    rule(
        "COND001",
        Warning,
        false,
        "`AND` and `OR` mixed without parentheses.",
        "Apigee Edge and Apigee X group them differently; parentheses say which is meant.",
    ),
    rule(
        "COND002",
        Warning,
        false,
        "A condition reads a variable that no policy of the loaded bundles sets.",
        "Usually a misspelt variable or policy name; the condition then tests an unset variable.",
    ),
    rule(
        "COND003",
        Warning,
        false,
        "A condition that does not parse or compile.",
        "The bundle loads, but evaluating the condition raises the `ConditionInvalid` fault instead of deciding true or false.",
    ),
    rule(
        "COND004",
        Warning,
        false,
        "An empty `<Condition>` element.",
        "It counts as no condition, so the step, flow or rule always runs; usually a condition was meant.",
    ),
    rule(
        "COND005",
        Warning,
        false,
        "A condition that is false whatever the request, such as one with `false AND` in it.",
        "The step, flow or rule it guards never runs: dead configuration, or a switch left off by mistake.",
    ),
    rule(
        "COND006",
        Warning,
        false,
        "A variable standing alone as a condition or operand, without a comparison (`<Condition>flag</Condition>`).",
        "It holds only when the variable is boolean `true` or the text `true`; Apigee's documented grammar always compares and apigeelint rejects it, so the intent is unclear.",
    ),
    rule(
        "POL001",
        Warning,
        false,
        "An ExtractVariables that extracts nothing, or a parameter, header or variable of it without a `<Pattern>`.",
        "The policy costs time and sets no variable; a pattern or path is missing.",
    ),
    rule(
        "POL002",
        Warning,
        false,
        "An `<AssignVariable>` with neither `<Ref>`, `<Value>` nor `<Template>`, or a `<Ref>` written with braces.",
        "The variable is not assigned the value meant.",
    ),
    rule(
        "POL003",
        Warning,
        false,
        "A ResponseCache without `<ExcludeErrorResponse>true`.",
        "Error responses of the back end are cached and served to later clients until they expire.",
    ),
    rule(
        "POL004",
        Warning,
        false,
        "A Quota without `<Distributed>true`.",
        "Each message processor counts on its own, so clients get the limit once per node.",
    ),
    rule(
        "POL005",
        Warning,
        false,
        "An AssignMessage `<Set><Payload contentType>` whose literal payload is not of that type.",
        "Clients parse the body by its Content-Type and fail.",
    ),
    rule(
        "POL006",
        Warning,
        false,
        "A policy that no step uses (steps in EventFlows count).",
        "Dead configuration; often a step that was meant to run it is missing.",
    ),
    rule(
        "POL007",
        Warning,
        false,
        "A Quota that one flow runs twice under the same condition.",
        "Each request is counted twice, so clients get half the quota they pay for.",
    ),
    rule(
        "POL008",
        Warning,
        false,
        "A ServiceCallout whose `<Request variable>` is `request` or whose `<Response>` is `response`.",
        "The callout overwrites the proxy's own request or response message.",
    ),
    rule(
        "POL009",
        Warning,
        false,
        "Several CORS policies attached, at least one of them without a condition.",
        "Only one CORS policy answers a request; the unconditional one shadows the others.",
    ),
    rule(
        "POL010",
        Warning,
        false,
        "A Quota whose `<UseQuotaConfigInAPIProduct stepName>` names no VerifyAPIKey or OAuthV2 policy of the bundle.",
        "The Quota reads its limits from the API product that step verified; with another step it finds none and fails or uses its defaults.",
    ),
    rule(
        "POL011",
        Warning,
        false,
        "An AssignMessage or RaiseFault `<Set><Payload>` without a content type (no `contentType`, no `Content-Type` header), or with both.",
        "Without one the message keeps the `Content-Type` it had (often the back end's, or none) and clients misread the new payload; with both, two places say it and may disagree.",
    ),
    rule(
        "POL012",
        Warning,
        false,
        "A DataCapture `<Collect>` reading a message its flow does not have: the response in a request flow, or a query parameter or URI path in a response flow without `<Source>request</Source>`.",
        "The capture never finds its value, so the data collector always records the default.",
    ),
    rule(
        "POL013",
        Warning,
        false,
        "An ExtractVariables `<JSONPath>` or `<XPath>` that does not compile. (A valid JSONPath filter, slice or union, which preflow does not evaluate, is LOAD002.)",
        "The variable is never extracted; with `IgnoreUnresolvedVariables` false every request faults.",
    ),
    rule(
        "TGT001",
        Warning,
        false,
        "A `<LoadBalancer>` without `<MaxFailures>` (and without a `<HealthMonitor>`).",
        "A server that fails stays in rotation, so a share of requests keeps failing.",
    ),
    rule(
        "DEP001",
        Warning,
        false,
        "A deprecated element, such as `<ExpirySettings><TimeoutInSec>` (now `<TimeoutInSeconds>`) or KeyValueMapOperations' `<ExclusiveCache>`.",
        "Deprecated elements may stop being accepted; the replacement says the same.",
    ),
    rule(
        "DEP002",
        Warning,
        false,
        "A deprecated policy type: ConcurrentRatelimit, OAuthV1, GetOAuthV1Info, DeleteOAuthV1Info.",
        "Apigee deprecated them and Apigee X does not offer them; use SpikeArrest/Quota or OAuthV2.",
    ),
    rule(
        "PRF001",
        Warning,
        false,
        "With `--profile x`: a feature of Apigee Edge only (an Edge-only policy type, `<VirtualHost>`, a hosted or script target).",
        "Apigee X rejects the bundle or ignores the setting.",
    ),
    rule(
        "PRF002",
        Warning,
        false,
        "With `--profile edge`: a feature of Apigee X only (an X-only policy type, `<SSLInfo><Enforce>`, `<EventFlow>`).",
        "Apigee Edge rejects the bundle or ignores the setting.",
    ),
];

/// The rule with id `id`.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id.eq_ignore_ascii_case(id))
}

/// The rule of a diagnostic: its own, or for the loader's diagnostics (made before
/// rules existed) the rule its message belongs to.
pub fn rule_of(d: &Diagnostic) -> &'static str {
    if let Some(rule) = d.rule {
        return rule;
    }
    let m = d.message.as_str();
    if m.starts_with("step names policy") {
        "REF001"
    } else if m.contains("is not in the bundle's resources/") {
        "REF002"
    } else if m.starts_with("invalid condition") {
        "COND003"
    } else if m.contains("has nothing to extract") {
        "POL001"
    } else if m.starts_with("unknown element") {
        "SCH001"
    } else if m.contains("`<EventFlow>`") {
        "FLOW007"
    } else if d.is_error() {
        "LOAD001"
    } else {
        "LOAD002"
    }
}
