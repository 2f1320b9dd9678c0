//! The endpoint model: proxy endpoints, target endpoints and shared flows, with their
//! flows, steps, route rules and fault rules, and conditions parsed at load time.

use std::time::Duration;

use preflow_condition::{Compiled, Names, ParseOptions, ast, parse_with};
use preflow_policy::xml::Element;
use preflow_policy::{Location, ParseContext};

/// A condition: its text, its parsed and compiled form (or why it has none) and where it
/// is written.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The text as written, trimmed.
    pub text: String,
    /// The parsed and compiled condition, or why the text does not parse or compile.
    pub form: ConditionForm,
    /// Where the text starts in its file.
    pub location: Location,
}

/// What a `<Condition>` text turned into at load.
#[derive(Debug, Clone)]
pub enum ConditionForm {
    /// The text parses and compiles.
    Valid {
        /// The parsed condition; byte spans are offsets into the condition's text.
        ast: ast::Condition,
        /// The compiled form, patterns pre-compiled, variables resolved to their names. A
        /// host that keeps variables in slots compiles `ast` again with its own resolver.
        compiled: Compiled<Box<str>>,
    },
    /// The text does not parse or compile. The bundle still loads, with a warning; a
    /// gateway evaluating the condition raises the `ConditionInvalid` fault instead of
    /// deciding true or false.
    Invalid {
        /// The parser's or compiler's message.
        message: String,
    },
}

impl Condition {
    /// The parsed condition, when the text parses and compiles.
    pub fn ast(&self) -> Option<&ast::Condition> {
        match &self.form {
            ConditionForm::Valid { ast, .. } => Some(ast),
            ConditionForm::Invalid { .. } => None,
        }
    }

    /// The compiled condition, when the text parses and compiles.
    pub fn compiled(&self) -> Option<&Compiled<Box<str>>> {
        match &self.form {
            ConditionForm::Valid { compiled, .. } => Some(compiled),
            ConditionForm::Invalid { .. } => None,
        }
    }

    /// Why the text does not parse or compile, when it does not.
    pub fn invalid(&self) -> Option<&str> {
        match &self.form {
            ConditionForm::Valid { .. } => None,
            ConditionForm::Invalid { message } => Some(message),
        }
    }
}

impl PartialEq for Condition {
    /// Conditions are equal when text, tree (or error) and location are; the compiled
    /// form follows from the tree.
    fn eq(&self, other: &Self) -> bool {
        let form = match (&self.form, &other.form) {
            (ConditionForm::Valid { ast: a, .. }, ConditionForm::Valid { ast: b, .. }) => a == b,
            (ConditionForm::Invalid { message: a }, ConditionForm::Invalid { message: b }) => {
                a == b
            }
            _ => false,
        };
        form && self.text == other.text && self.location == other.location
    }
}

/// A `<Step>`: a policy to run, when its condition holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `<Name>`: the policy.
    pub policy: String,
    /// `<Condition>`; none means always.
    pub condition: Option<Condition>,
    /// Step-level `<FaultRules>` (legacy).
    pub fault_rules: Vec<FaultRule>,
    /// Where the `<Step>` is.
    pub location: Location,
}

/// A flow: PreFlow, PostFlow, PostClientFlow, or a conditional `<Flow>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flow {
    /// `name` attribute.
    pub name: String,
    /// `<Description>`.
    pub description: Option<String>,
    /// `<Condition>` (conditional flows only); none means always.
    pub condition: Option<Condition>,
    /// `<Request>` steps in order.
    pub request: Vec<Step>,
    /// `<Response>` steps in order.
    pub response: Vec<Step>,
    /// Where the flow element is (`None` for a flow that is not written).
    pub location: Option<Location>,
}

/// Where a route rule sends the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// `<TargetEndpoint>`: a target endpoint of the same proxy, by name.
    TargetEndpoint(String),
    /// `<URL>`: a URL called directly.
    Url(String),
    /// Neither: a null route; no target is called.
    Null,
}

/// A `<RouteRule>`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRule {
    /// `name` attribute.
    pub name: String,
    /// `<Condition>`; none means always.
    pub condition: Option<Condition>,
    /// Where it routes.
    pub target: RouteTarget,
    /// Where the rule is.
    pub location: Location,
}

/// A `<FaultRule>`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// `name` attribute.
    pub name: String,
    /// `<Condition>`; none means always.
    pub condition: Option<Condition>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Where the rule is.
    pub location: Location,
}

/// The `<DefaultFaultRule>`.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultFaultRule {
    /// `name` attribute.
    pub name: String,
    /// `<Condition>`; none means always.
    pub condition: Option<Condition>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// `<AlwaysEnforce>`, default false: run even after a FaultRule ran (unless that
    /// FaultRule raised a fault).
    pub always_enforce: bool,
    /// Where the rule is.
    pub location: Location,
}

/// A `<ProxyEndpoint>` (`proxies/*.xml`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyEndpoint {
    /// `name` attribute.
    pub name: String,
    /// `<Description>`.
    pub description: Option<String>,
    /// `<HTTPProxyConnection><BasePath>`.
    pub base_path: Option<String>,
    /// `<HTTPProxyConnection><VirtualHost>` (Edge).
    pub virtual_hosts: Vec<String>,
    /// `<HTTPProxyConnection><Properties>` (`request.streaming.enabled`…).
    pub properties: Vec<(String, String)>,
    /// `<PreFlow>`.
    pub pre_flow: Flow,
    /// `<Flows><Flow>` in order; the first whose condition holds runs.
    pub flows: Vec<Flow>,
    /// `<PostFlow>`.
    pub post_flow: Flow,
    /// `<PostClientFlow>`: runs after the response is sent.
    pub post_client_flow: Option<Flow>,
    /// `<RouteRule>` in order; the first whose condition holds wins.
    pub route_rules: Vec<RouteRule>,
    /// `<FaultRules>`.
    pub fault_rules: Vec<FaultRule>,
    /// `<DefaultFaultRule>`.
    pub default_fault_rule: Option<DefaultFaultRule>,
    /// Where the root element is.
    pub location: Location,
}

/// A `<Server>` of a load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `name`: a target server defined in the environment.
    pub name: String,
    /// `<Weight>`.
    pub weight: Option<u32>,
    /// `<IsFallback>`.
    pub is_fallback: bool,
}

/// `<LoadBalancer>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadBalancer {
    /// `<Algorithm>`: RoundRobin (default), Weighted, LeastConnections.
    pub algorithm: Option<String>,
    /// `<Server>`s.
    pub servers: Vec<Server>,
    /// `<MaxFailures>`.
    pub max_failures: Option<u32>,
    /// `<RetryEnabled>` (Apigee's default: true).
    pub retry_enabled: Option<bool>,
    /// `<ServerUnhealthyResponse><ResponseCode>`: statuses that count as failures.
    pub unhealthy_codes: Vec<u16>,
    /// `<TargetDisableSecs>`: how long a failed server stays out without a monitor.
    pub target_disable_secs: Option<u64>,
}

/// `<HealthMonitor>` of a load balancer's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthMonitor {
    /// `<IsEnabled>` (default true).
    pub enabled: bool,
    /// `<IntervalInSec>` (default 10 s).
    pub interval: Duration,
    /// `<TCPMonitor>` or `<HTTPMonitor>`.
    pub probe: Probe,
}

/// What a health monitor checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Probe {
    /// `<TCPMonitor>`: a TCP connection can be opened.
    Tcp {
        /// `<ConnectTimeoutInSec>`.
        connect_timeout: Option<Duration>,
        /// `<Port>` (default: the target server's).
        port: Option<u16>,
    },
    /// `<HTTPMonitor>`: a request gets one of the expected answers.
    Http(HttpProbe),
}

/// `<HTTPMonitor>`: `<Request>` and `<SuccessResponse>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpProbe {
    /// `<ConnectTimeoutInSec>`.
    pub connect_timeout: Option<Duration>,
    /// `<SocketReadTimeoutInSec>`.
    pub read_timeout: Option<Duration>,
    /// `<Port>` (default: the target server's).
    pub port: Option<u16>,
    /// `<Verb>` (default GET).
    pub verb: String,
    /// `<Path>` (default `/`).
    pub path: String,
    /// `<IsSSL>` (default: as the target server).
    pub is_ssl: Option<bool>,
    /// `<Header name>` of the request.
    pub headers: Vec<(String, String)>,
    /// `<SuccessResponse><ResponseCode>`: accepted statuses (none given: any 2xx).
    pub success_codes: Vec<u16>,
    /// `<SuccessResponse><Header name>`: headers the answer must carry with that value.
    pub success_headers: Vec<(String, String)>,
}

/// `<HTTPTargetConnection>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpTargetConnection {
    /// `<URL>`.
    pub url: Option<String>,
    /// `<LoadBalancer>`.
    pub load_balancer: Option<Box<LoadBalancer>>,
    /// `<Path>` (with a load balancer).
    pub path: Option<String>,
    /// `<Properties><Property name>value</Property>`.
    pub properties: Vec<(String, String)>,
    /// `<SSLInfo>`.
    pub ssl_info: Option<preflow_policy::runtime::TlsSettings>,
    /// `<HealthMonitor>` of the load balancer's servers.
    pub health_monitor: Option<Box<HealthMonitor>>,
}

/// `<LocalTargetConnection>`: a proxy-chained call to another proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalTargetConnection {
    /// `<APIProxy>`.
    pub api_proxy: Option<String>,
    /// `<ProxyEndpoint>`.
    pub proxy_endpoint: Option<String>,
    /// `<Path>`.
    pub path: Option<String>,
}

/// How a target endpoint reaches its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetConnection {
    /// `<HTTPTargetConnection>`.
    Http(HttpTargetConnection),
    /// `<LocalTargetConnection>`.
    Local(LocalTargetConnection),
    /// `<HostedTarget>` or `<ScriptTarget>`: code hosted by Apigee, not supported.
    Hosted,
    /// No connection element.
    None,
}

/// A `<TargetEndpoint>` (`targets/*.xml`).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetEndpoint {
    /// `name` attribute.
    pub name: String,
    /// `<Description>`.
    pub description: Option<String>,
    /// `<PreFlow>`.
    pub pre_flow: Flow,
    /// `<Flows><Flow>`.
    pub flows: Vec<Flow>,
    /// `<PostFlow>`.
    pub post_flow: Flow,
    /// `<FaultRules>`.
    pub fault_rules: Vec<FaultRule>,
    /// `<DefaultFaultRule>`.
    pub default_fault_rule: Option<DefaultFaultRule>,
    /// The backend connection.
    pub connection: TargetConnection,
    /// Where the root element is.
    pub location: Location,
}

/// A `<SharedFlow>` (`sharedflows/*.xml`): steps run inline by a FlowCallout.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedFlow {
    /// `name` attribute.
    pub name: String,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Where the root element is.
    pub location: Location,
}

impl Step {
    /// This step and the steps of its step-level fault rules.
    fn walk<'a>(&'a self, out: &mut Vec<&'a Step>) {
        out.push(self);
        for rule in &self.fault_rules {
            for step in &rule.steps {
                out.push(step);
            }
        }
    }
}

impl Flow {
    /// Request then response steps.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.request.iter().chain(&self.response)
    }
}

/// The conditions of an endpoint in a fixed order: flows, route rules, fault rules, the
/// DefaultFaultRule, then steps.
fn endpoint_conditions<'a>(
    flows: &'a [Flow],
    route_rules: &'a [RouteRule],
    fault_rules: &'a [FaultRule],
    default_fault_rule: Option<&'a DefaultFaultRule>,
    steps: Vec<&'a Step>,
) -> Vec<&'a Condition> {
    let mut out: Vec<&Condition> = flows.iter().filter_map(|f| f.condition.as_ref()).collect();
    out.extend(route_rules.iter().filter_map(|r| r.condition.as_ref()));
    out.extend(fault_rules.iter().filter_map(|r| r.condition.as_ref()));
    out.extend(default_fault_rule.and_then(|r| r.condition.as_ref()));
    out.extend(steps.into_iter().filter_map(|s| s.condition.as_ref()));
    out
}

fn flow_steps<'a>(flows: impl IntoIterator<Item = &'a Flow>, out: &mut Vec<&'a Step>) {
    for flow in flows {
        for step in flow.steps() {
            step.walk(out);
        }
    }
}

fn rule_steps<'a>(
    rules: &'a [FaultRule],
    default: Option<&'a DefaultFaultRule>,
    out: &mut Vec<&'a Step>,
) {
    for step in rules
        .iter()
        .flat_map(|r| &r.steps)
        .chain(default.into_iter().flat_map(|d| &d.steps))
    {
        step.walk(out);
    }
}

/// Every step of an endpoint: its fixed flows, conditional flows, fault rules and the
/// step-level fault rules of each.
fn endpoint_steps<'a>(
    pre: &'a Flow,
    flows: &'a [Flow],
    after: impl IntoIterator<Item = &'a Flow>,
    fault_rules: &'a [FaultRule],
    default_rule: Option<&'a DefaultFaultRule>,
) -> Vec<&'a Step> {
    let mut out = Vec::new();
    flow_steps(std::iter::once(pre).chain(flows).chain(after), &mut out);
    rule_steps(fault_rules, default_rule, &mut out);
    out
}

impl ProxyEndpoint {
    /// Every step of the endpoint: flows, fault rules, step-level fault rules.
    pub fn all_steps(&self) -> Vec<&Step> {
        endpoint_steps(
            &self.pre_flow,
            &self.flows,
            std::iter::once(&self.post_flow).chain(&self.post_client_flow),
            &self.fault_rules,
            self.default_fault_rule.as_ref(),
        )
    }

    /// Every condition of the endpoint, with what it guards.
    pub fn conditions(&self) -> Vec<&Condition> {
        endpoint_conditions(
            &self.flows,
            &self.route_rules,
            &self.fault_rules,
            self.default_fault_rule.as_ref(),
            self.all_steps(),
        )
    }
}

impl TargetEndpoint {
    /// Every step of the endpoint: flows, fault rules, step-level fault rules.
    pub fn all_steps(&self) -> Vec<&Step> {
        endpoint_steps(
            &self.pre_flow,
            &self.flows,
            [&self.post_flow],
            &self.fault_rules,
            self.default_fault_rule.as_ref(),
        )
    }

    /// Every condition of the endpoint.
    pub fn conditions(&self) -> Vec<&Condition> {
        endpoint_conditions(
            &self.flows,
            &[],
            &self.fault_rules,
            self.default_fault_rule.as_ref(),
            self.all_steps(),
        )
    }
}

impl SharedFlow {
    /// Every step, step-level fault rules included.
    pub fn all_steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        for step in &self.steps {
            step.walk(&mut out);
        }
        out
    }

    /// Every condition.
    pub fn conditions(&self) -> Vec<&Condition> {
        self.all_steps()
            .into_iter()
            .filter_map(|s| s.condition.as_ref())
            .collect()
    }
}

/// Parsing context for one endpoint file.
pub(crate) struct Ecx<'a> {
    /// The file and its problems, with the element readers policies use too.
    pub cx: ParseContext<'a>,
    pub options: &'a ParseOptions,
}

impl Ecx<'_> {
    fn warning(&mut self, offset: usize, message: impl Into<String>) {
        self.cx.warning(offset, message);
    }

    fn error(&mut self, offset: usize, message: impl Into<String>) {
        self.cx.error(offset, message);
    }

    pub fn known(&mut self, el: &Element, known: &[&str]) {
        self.cx.known(el, known);
    }

    fn at_most_one(&mut self, el: &Element, name: &str) {
        for extra in el.children_named(name).skip(1) {
            self.error(
                extra.offset,
                format!("more than one `<{name}>` in `<{}>`", el.name),
            );
        }
    }

    fn text_of(el: &Element, name: &str) -> Option<String> {
        el.child(name)
            .and_then(Element::non_empty_text)
            .map(str::to_owned)
    }

    fn location(&self, el: &Element) -> Location {
        self.cx.src.location(el.offset)
    }

    /// Parses the `<Condition>` child of `el`.
    fn condition_of(&mut self, el: &Element) -> Option<Condition> {
        self.at_most_one(el, "Condition");
        let c = el.child("Condition")?;
        self.condition(c, &el.name)
    }

    /// Parses a `<Condition>` element of a `<guarded>` element. An empty condition is
    /// none (always true). A condition that does not parse or compile is kept as
    /// [`ConditionForm::Invalid`] with a warning: a deploy may accept it, and evaluating it
    /// faults.
    pub fn condition(&mut self, c: &Element, guarded: &str) -> Option<Condition> {
        let text = c.text();
        if text.is_empty() {
            return None;
        }
        let location = self.cx.src.location(c.text_offset());
        let error = match parse_with(text, self.options) {
            Err(_) if preflow_policy::is_placeholder(text) => {
                self.cx.diags.push(
                    self.cx
                        .src
                        .warning(
                            c.text_offset(),
                            "condition holds a deploy-time placeholder; it is not checked",
                        )
                        .with_hint("replace the placeholder before loading"),
                );
                return None;
            }
            Err(e) => (
                e.location().span().start,
                e.message().to_owned(),
                e.hint().map(str::to_owned),
            ),
            Ok(ast) => match ast.compile(text, &Names) {
                Ok(compiled) => {
                    return Some(Condition {
                        text: text.to_owned(),
                        form: ConditionForm::Valid { ast, compiled },
                        location,
                    });
                }
                Err(e) => (
                    e.location().span().start,
                    e.message().to_owned(),
                    e.hint().map(str::to_owned),
                ),
            },
        };
        let (start, message, hint) = error;
        let at = c.trimmed_source_offset(start);
        let consequence = match guarded {
            "Flow" => "this flow faults with `ConditionInvalid` when flow selection reaches it",
            "Step" => "this step faults with `ConditionInvalid` when reached",
            "RouteRule" => {
                "this route rule faults with `ConditionInvalid` when route selection reaches it"
            }
            "FaultRule" | "DefaultFaultRule" => {
                "this fault rule faults with `ConditionInvalid` when fault handling reaches it"
            }
            _ => "evaluating it faults with `ConditionInvalid`",
        };
        let mut d = self
            .cx
            .src
            .warning(at, format!("invalid condition: {message}; {consequence}"));
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        self.cx.diags.push(d);
        Some(Condition {
            text: text.to_owned(),
            form: ConditionForm::Invalid { message },
            location,
        })
    }

    fn step(&mut self, el: &Element) -> Option<Step> {
        self.known(el, &["Name", "Condition", "FaultRules"]);
        self.at_most_one(el, "Name");
        let Some(policy) = Self::text_of(el, "Name") else {
            self.error(el.offset, "`<Step>` has no `<Name>`");
            return None;
        };
        Some(Step {
            policy,
            condition: self.condition_of(el),
            fault_rules: el
                .child("FaultRules")
                .map(|f| self.fault_rules(f))
                .unwrap_or_default(),
            location: self.location(el),
        })
    }

    fn steps(&mut self, el: &Element) -> Vec<Step> {
        el.children_named("Step")
            .filter_map(|s| self.step(s))
            .collect()
    }

    fn request_response(&mut self, el: &Element, which: &str) -> Vec<Step> {
        for extra in el.children_named(which).skip(1) {
            if extra.children.is_empty() {
                self.warning(
                    extra.offset,
                    format!("a second, empty `<{which}>` in `<{}>`", el.name),
                );
            } else {
                self.error(
                    extra.offset,
                    format!(
                        "a second `<{which}>` in `<{}>`; its steps would never run",
                        el.name
                    ),
                );
            }
        }
        match el.child(which) {
            Some(r) => {
                self.known(r, &["Step"]);
                self.steps(r)
            }
            None => Vec::new(),
        }
    }

    fn flow(&mut self, el: &Element, conditional: bool) -> Flow {
        let mut known = vec!["Description", "Request", "Response"];
        if conditional {
            known.push("Condition");
        }
        self.known(el, &known);
        Flow {
            name: el.attr("name").unwrap_or_default().trim().to_owned(),
            description: Self::text_of(el, "Description"),
            condition: if conditional {
                self.condition_of(el)
            } else {
                None
            },
            request: self.request_response(el, "Request"),
            response: self.request_response(el, "Response"),
            location: Some(self.location(el)),
        }
    }

    fn fixed_flow(&mut self, el: &Element, name: &str) -> Option<Flow> {
        self.at_most_one(el, name);
        el.child(name).map(|f| self.flow(f, false))
    }

    fn flows(&mut self, el: &Element) -> Vec<Flow> {
        self.at_most_one(el, "Flows");
        match el.child("Flows") {
            Some(flows) => {
                self.known(flows, &["Flow"]);
                flows
                    .children_named("Flow")
                    .map(|f| self.flow(f, true))
                    .collect()
            }
            None => Vec::new(),
        }
    }

    fn fault_rules(&mut self, el: &Element) -> Vec<FaultRule> {
        self.known(el, &["FaultRule"]);
        el.children_named("FaultRule")
            .map(|r| {
                self.known(r, &["Step", "Condition", "Description"]);
                FaultRule {
                    name: r.attr("name").unwrap_or_default().trim().to_owned(),
                    condition: self.condition_of(r),
                    steps: self.steps(r),
                    location: self.location(r),
                }
            })
            .collect()
    }

    fn endpoint_fault_rules(&mut self, el: &Element) -> (Vec<FaultRule>, Option<DefaultFaultRule>) {
        self.at_most_one(el, "FaultRules");
        self.at_most_one(el, "DefaultFaultRule");
        let rules = el
            .child("FaultRules")
            .map(|f| self.fault_rules(f))
            .unwrap_or_default();
        let default = el.child("DefaultFaultRule").map(|d| {
            self.known(d, &["Step", "Condition", "AlwaysEnforce", "Description"]);
            let always_enforce = match d.child("AlwaysEnforce") {
                None => false,
                Some(a) => match a.text().to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" | "" => false,
                    other => {
                        self.error(
                            a.text_offset(),
                            format!("`<AlwaysEnforce>` must be `true` or `false`, not `{other}`"),
                        );
                        false
                    }
                },
            };
            DefaultFaultRule {
                name: d.attr("name").unwrap_or_default().trim().to_owned(),
                condition: self.condition_of(d),
                steps: self.steps(d),
                always_enforce,
                location: self.location(d),
            }
        });
        (rules, default)
    }

    fn named_flow(flow: Option<Flow>, name: &str) -> Flow {
        flow.unwrap_or_else(|| Flow {
            name: name.to_owned(),
            ..Flow::default()
        })
    }

    pub fn proxy_endpoint(&mut self, el: &Element) -> ProxyEndpoint {
        self.known(
            el,
            &[
                "PreFlow",
                "PostFlow",
                "EventFlow",
                "Flows",
                "RouteRule",
                "PostClientFlow",
                "Description",
                "FaultRules",
                "DefaultFaultRule",
                "HTTPProxyConnection",
            ],
        );
        if let Some(e) = el.child("EventFlow") {
            self.warning(
                e.offset,
                "`<EventFlow>` (server-sent events) is not supported; it is ignored",
            );
        }
        self.at_most_one(el, "HTTPProxyConnection");
        let (base_path, virtual_hosts) = match el.child("HTTPProxyConnection") {
            Some(c) => {
                self.known(c, &["BasePath", "VirtualHost", "Properties"]);
                self.at_most_one(c, "BasePath");
                (
                    Self::text_of(c, "BasePath"),
                    c.children_named("VirtualHost")
                        .filter_map(|v| v.non_empty_text().map(str::to_owned))
                        .collect(),
                )
            }
            None => {
                self.warning(el.offset, "proxy endpoint has no `<HTTPProxyConnection>`");
                (None, Vec::new())
            }
        };
        let route_rules = el
            .children_named("RouteRule")
            .map(|r| {
                self.known(
                    r,
                    &["Condition", "TargetEndpoint", "URL", "IntegrationEndpoint"],
                );
                let target = if let Some(t) = Self::text_of(r, "TargetEndpoint") {
                    RouteTarget::TargetEndpoint(t)
                } else if let Some(u) = Self::text_of(r, "URL") {
                    RouteTarget::Url(u)
                } else {
                    if let Some(i) = r.child("IntegrationEndpoint") {
                        self.warning(
                            i.offset,
                            "`<IntegrationEndpoint>` is not supported; the rule is a null route",
                        );
                    }
                    RouteTarget::Null
                };
                RouteRule {
                    name: r.attr("name").unwrap_or_default().trim().to_owned(),
                    condition: self.condition_of(r),
                    target,
                    location: self.location(r),
                }
            })
            .collect();
        let properties = el
            .child("HTTPProxyConnection")
            .map(Element::properties)
            .unwrap_or_default();
        let pre_flow = self.fixed_flow(el, "PreFlow");
        let flows = self.flows(el);
        let post_flow = self.fixed_flow(el, "PostFlow");
        let post_client_flow = self.fixed_flow(el, "PostClientFlow");
        let (fault_rules, default_fault_rule) = self.endpoint_fault_rules(el);
        ProxyEndpoint {
            name: el.attr("name").unwrap_or_default().trim().to_owned(),
            description: Self::text_of(el, "Description"),
            base_path,
            virtual_hosts,
            properties,
            pre_flow: Self::named_flow(pre_flow, "PreFlow"),
            flows,
            post_flow: Self::named_flow(post_flow, "PostFlow"),
            post_client_flow,
            route_rules,
            fault_rules,
            default_fault_rule,
            location: self.location(el),
        }
    }

    fn http_target(&mut self, c: &Element) -> HttpTargetConnection {
        self.known(
            c,
            &[
                "URL",
                "LoadBalancer",
                "Path",
                "Properties",
                "SSLInfo",
                "HealthMonitor",
                "Authentication",
                "APIProvider",
                "Provider",
                "RelativePath",
            ],
        );
        let load_balancer = c.child("LoadBalancer").map(|lb| {
            self.known(
                lb,
                &[
                    "Algorithm",
                    "Server",
                    "MaxFailures",
                    "RetryEnabled",
                    "ServerUnhealthyResponse",
                    "TargetDisableSecs",
                ],
            );
            Box::new(LoadBalancer {
                algorithm: Self::text_of(lb, "Algorithm"),
                servers: lb
                    .children_named("Server")
                    .map(|s| Server {
                        name: s.attr("name").unwrap_or_default().trim().to_owned(),
                        weight: Self::text_of(s, "Weight").and_then(|w| w.parse().ok()),
                        is_fallback: Self::text_of(s, "IsFallback")
                            .is_some_and(|f| f.eq_ignore_ascii_case("true")),
                    })
                    .collect(),
                max_failures: Self::text_of(lb, "MaxFailures").and_then(|m| m.parse().ok()),
                retry_enabled: Self::text_of(lb, "RetryEnabled")
                    .map(|r| r.eq_ignore_ascii_case("true")),
                unhealthy_codes: lb
                    .child("ServerUnhealthyResponse")
                    .map(|u| {
                        u.children_named("ResponseCode")
                            .filter_map(|c| c.text().parse().ok())
                            .collect()
                    })
                    .unwrap_or_default(),
                target_disable_secs: Self::text_of(lb, "TargetDisableSecs")
                    .and_then(|t| t.parse().ok()),
            })
        });
        let health_monitor = c
            .child("HealthMonitor")
            .map(|m| Box::new(self.health_monitor(m)));
        // SAP's `<provider_id>` and `<relativePath>` (see `sap`): a provider URL.
        // `<Provider>` is accepted for `<APIProvider>`; without `<RelativePath>`, `<Path>`
        // is the path on the provider, as in SAP's ServiceCallout.
        let url = Self::text_of(c, "URL").or_else(|| {
            let provider = Self::text_of(c, "APIProvider").or_else(|| Self::text_of(c, "Provider"));
            provider.map(|p| {
                let rel = Self::text_of(c, "RelativePath")
                    .or_else(|| Self::text_of(c, "Path"))
                    .unwrap_or_default();
                let sep = if rel.is_empty() || rel.starts_with('/') {
                    ""
                } else {
                    "/"
                };
                format!("provider://{p}{sep}{rel}")
            })
        });
        if url.is_none() && load_balancer.is_none() {
            self.error(
                c.offset,
                "`<HTTPTargetConnection>` needs a `<URL>` or a `<LoadBalancer>`",
            );
        }
        HttpTargetConnection {
            url,
            load_balancer,
            path: Self::text_of(c, "Path"),
            properties: c.properties(),
            ssl_info: c.child("SSLInfo").map(preflow_policy::xml::ssl_info),
            health_monitor,
        }
    }

    /// `<HealthMonitor>`: `<IsEnabled>`, `<IntervalInSec>` and a `<TCPMonitor>` or an
    /// `<HTTPMonitor>`.
    fn health_monitor(&mut self, m: &Element) -> HealthMonitor {
        self.known(
            m,
            &["IsEnabled", "IntervalInSec", "TCPMonitor", "HTTPMonitor"],
        );
        let secs = |el: &Element, name: &str| {
            Self::text_of(el, name)
                .and_then(|t| t.parse::<u64>().ok())
                .map(std::time::Duration::from_secs)
        };
        let probe = if let Some(h) = m.child("HTTPMonitor") {
            self.known(h, &["Request", "SuccessResponse"]);
            let req = h.child("Request");
            if let Some(r) = req {
                self.known(
                    r,
                    &[
                        "ConnectTimeoutInSec",
                        "SocketReadTimeoutInSec",
                        "Port",
                        "Verb",
                        "Path",
                        "IsSSL",
                        "TrustAllSSL",
                        "Header",
                        "Payload",
                        "UseTargetServerSSLInfo",
                    ],
                );
            }
            let text = |name: &str| req.and_then(|r| Self::text_of(r, name));
            let headers = |el: Option<&Element>| -> Vec<(String, String)> {
                el.map(|e| {
                    e.children_named("Header")
                        .map(|h| {
                            (
                                h.attr("name").unwrap_or_default().to_owned(),
                                h.text().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
            };
            let success = h.child("SuccessResponse");
            Probe::Http(HttpProbe {
                connect_timeout: req.and_then(|r| secs(r, "ConnectTimeoutInSec")),
                read_timeout: req.and_then(|r| secs(r, "SocketReadTimeoutInSec")),
                port: text("Port").and_then(|p| p.parse().ok()),
                verb: text("Verb").unwrap_or_else(|| "GET".to_owned()),
                path: text("Path").unwrap_or_else(|| "/".to_owned()),
                is_ssl: text("IsSSL").map(|t| t.eq_ignore_ascii_case("true")),
                headers: headers(req),
                success_codes: success
                    .map(|s| {
                        s.children_named("ResponseCode")
                            .filter_map(|c| c.text().parse().ok())
                            .collect()
                    })
                    .unwrap_or_default(),
                success_headers: headers(success),
            })
        } else if let Some(t) = m.child("TCPMonitor") {
            self.known(t, &["ConnectTimeoutInSec", "Port"]);
            Probe::Tcp {
                connect_timeout: secs(t, "ConnectTimeoutInSec"),
                port: Self::text_of(t, "Port").and_then(|p| p.parse().ok()),
            }
        } else {
            self.error(
                m.offset,
                "`<HealthMonitor>` needs a `<TCPMonitor>` or an `<HTTPMonitor>`",
            );
            Probe::Tcp {
                connect_timeout: None,
                port: None,
            }
        };
        HealthMonitor {
            enabled: Self::text_of(m, "IsEnabled").is_none_or(|e| e.eq_ignore_ascii_case("true")),
            interval: secs(m, "IntervalInSec").unwrap_or(std::time::Duration::from_secs(10)),
            probe,
        }
    }

    pub fn target_endpoint(&mut self, el: &Element) -> TargetEndpoint {
        self.known(
            el,
            &[
                "PreFlow",
                "PostFlow",
                "EventFlow",
                "Flows",
                "Description",
                "FaultRules",
                "DefaultFaultRule",
                "HTTPTargetConnection",
                "LocalTargetConnection",
                "HostedTarget",
                "ScriptTarget",
            ],
        );
        let connections: Vec<&Element> = el
            .children
            .iter()
            .filter(|c| {
                matches!(
                    c.name.as_str(),
                    "HTTPTargetConnection"
                        | "LocalTargetConnection"
                        | "HostedTarget"
                        | "ScriptTarget"
                )
            })
            .collect();
        for extra in connections.iter().skip(1) {
            self.warning(
                extra.offset,
                format!(
                    "a second target connection `<{}>`; only the first is used",
                    extra.name
                ),
            );
        }
        let connection = match connections.first() {
            None => {
                self.warning(
                    el.offset,
                    "target endpoint has no `<HTTPTargetConnection>` or `<LocalTargetConnection>`",
                );
                TargetConnection::None
            }
            Some(c) => match c.name.as_str() {
                "HTTPTargetConnection" => TargetConnection::Http(self.http_target(c)),
                "LocalTargetConnection" => {
                    self.known(c, &["APIProxy", "ProxyEndpoint", "Path"]);
                    TargetConnection::Local(LocalTargetConnection {
                        api_proxy: Self::text_of(c, "APIProxy"),
                        proxy_endpoint: Self::text_of(c, "ProxyEndpoint"),
                        path: Self::text_of(c, "Path"),
                    })
                }
                other => {
                    self.warning(
                        c.offset,
                        format!("`<{other}>` is not supported; the target cannot be called"),
                    );
                    TargetConnection::Hosted
                }
            },
        };
        let pre_flow = self.fixed_flow(el, "PreFlow");
        let flows = self.flows(el);
        let post_flow = self.fixed_flow(el, "PostFlow");
        let (fault_rules, default_fault_rule) = self.endpoint_fault_rules(el);
        TargetEndpoint {
            name: el.attr("name").unwrap_or_default().trim().to_owned(),
            description: Self::text_of(el, "Description"),
            pre_flow: Self::named_flow(pre_flow, "PreFlow"),
            flows,
            post_flow: Self::named_flow(post_flow, "PostFlow"),
            fault_rules,
            default_fault_rule,
            connection,
            location: self.location(el),
        }
    }

    pub fn shared_flow(&mut self, el: &Element) -> SharedFlow {
        self.known(el, &["Step", "Description"]);
        SharedFlow {
            name: el.attr("name").unwrap_or_default().trim().to_owned(),
            steps: self.steps(el),
            location: self.location(el),
        }
    }
}
