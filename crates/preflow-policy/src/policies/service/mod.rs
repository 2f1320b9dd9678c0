//! ServiceCallout, MessageLogging, StatisticsCollector, DataCapture and AssertCondition.
//!
//! ServiceCallout is sans-IO: the engine builds the request from the configuration, the
//! host performs the HTTP call, and the response is stored in the configured variable.
//! MessageLogging renders a [`LogRecord`] that the host's [`LogSink`] receives.

mod assert_condition;
mod data_capture;
mod message_logging;
mod service_callout;
mod statistics_collector;

use crate::extract::Pattern;
use crate::message::MessageOps;
use crate::parse::{Cx, ref_attr};
use crate::template::Template;
use crate::xml::Element;
pub(crate) use assert_condition::AssertConditionPolicy;
pub(crate) use data_capture::DataCapturePolicy;
pub(crate) use message_logging::MessageLoggingPolicy;
pub(crate) use service_callout::ServiceCalloutPolicy;
pub(crate) use statistics_collector::StatisticsCollectorPolicy;

// ---------------------------------------------------------------------------------------
// ServiceCallout

/// `<Request variable clearPayload>`: the callout request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CalloutRequest {
    /// `variable`: the message variable that holds the callout request (absent: a new
    /// request message).
    pub variable: Option<String>,
    /// `clearPayload` (default false).
    pub clear_payload: bool,
    /// `<Set>`, `<Add>`, `<Remove>`, `<Copy>` as in AssignMessage.
    pub ops: MessageOps,
    /// `<IgnoreUnresolvedVariables>` (default false).
    pub ignore_unresolved_variables: bool,
}

/// How the callout reaches its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutConnection {
    /// `<HTTPTargetConnection>`.
    Http {
        /// `<URL>`, a template.
        url: Template,
        /// `<Properties><Property>`.
        properties: Vec<(String, String)>,
        /// `<Authentication><GoogleAccessToken|GoogleIDToken>` present (the host must add the
        /// token; it is reported, not performed).
        google_auth: bool,
    },
    /// `<LocalTargetConnection>`: another proxy in the same gateway.
    Local {
        /// `<APIProxy>`.
        api_proxy: Option<String>,
        /// `<ProxyEndpoint>`.
        proxy_endpoint: Option<String>,
        /// `<Path>`.
        path: Option<String>,
    },
}

/// `<ServiceCallout>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceCallout {
    /// `<Request>`; absent means a new GET request.
    pub request: Option<CalloutRequest>,
    /// `<Response>`: the variable that receives the response; absent means
    /// fire-and-forget (the response is discarded).
    pub response: Option<String>,
    /// `<Timeout>` in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The connection.
    pub connection: Option<CalloutConnection>,
}

fn service_callout(cx: &mut Cx<'_>, el: &Element) -> ServiceCallout {
    cx.known_policy(
        el,
        &[
            "Request",
            "Response",
            "Timeout",
            "HTTPTargetConnection",
            "LocalTargetConnection",
        ],
    );
    let request = el.child("Request").map(|r| CalloutRequest {
        variable: r
            .attr("variable")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
        clear_payload: cx.attr_bool(r, "clearPayload", false),
        ops: crate::policies::message::message_ops(cx, r),
        ignore_unresolved_variables: cx.child_bool(r, "IgnoreUnresolvedVariables", false),
    });
    let connection = if let Some(h) = el.child("HTTPTargetConnection") {
        let url = cx.child_text(h, "URL");
        if url.is_none() {
            cx.error(
                h.offset,
                "the callout's `<HTTPTargetConnection>` needs a `<URL>`",
            );
        }
        Some(CalloutConnection::Http {
            url: Template::parse(url.as_deref().unwrap_or("")),
            properties: h
                .child("Properties")
                .map(|p| {
                    p.children_named("Property")
                        .map(|p| {
                            (
                                p.attr("name").unwrap_or_default().to_owned(),
                                p.text().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            google_auth: h.child("Authentication").is_some(),
        })
    } else if let Some(l) = el.child("LocalTargetConnection") {
        Some(CalloutConnection::Local {
            api_proxy: cx.child_text(l, "APIProxy"),
            proxy_endpoint: cx.child_text(l, "ProxyEndpoint"),
            path: cx.child_text(l, "Path"),
        })
    } else {
        cx.error(
            el.offset,
            "ServiceCallout needs an `<HTTPTargetConnection>` or a `<LocalTargetConnection>`",
        );
        None
    };
    ServiceCallout {
        request,
        response: cx.child_text(el, "Response"),
        timeout_ms: el.child("Timeout").and_then(|t| cx.number(t)),
        connection,
    }
}

/// The Apigee faults of ServiceCallout: (fault name, HTTP status).
pub mod faults {
    /// The callout could not be made or timed out: `steps.servicecallout.ExecutionFailed`.
    pub const EXECUTION_FAILED: (&str, u16) = ("ExecutionFailed", 500);
    /// The callout's response has status 4xx/5xx: `steps.servicecallout.ResponseCode`...
    /// Apigee reports `ExecutionFailed` with the reason `ResponseCode <n> is treated as error`.
    pub const RESPONSE_CODE: (&str, u16) = ("ExecutionFailed", 500);
    /// The request variable is not a message: `steps.servicecallout.RequestVariableNotMessageType`.
    pub const REQUEST_NOT_MESSAGE: (&str, u16) = ("RequestVariableNotMessageType", 500);
}

// ---------------------------------------------------------------------------------------
// MessageLogging

/// Where a MessageLogging record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// `<Syslog>`.
    Syslog {
        /// `<Host>`.
        host: Option<String>,
        /// `<Port>`.
        port: Option<u16>,
        /// `<Protocol>` (UDP default, TCP).
        protocol: Option<String>,
        /// `<FormatMessage>`.
        format_message: bool,
    },
    /// `<File>` (Edge private cloud).
    File {
        /// `<FileName>`.
        file_name: Option<String>,
    },
    /// `<CloudLogging>` (Apigee X).
    CloudLogging {
        /// `<LogName>`, a template.
        log_name: Template,
        /// `<Message contentType>`.
        content_type: Option<String>,
        /// `<Labels><Label><Key><Value>`.
        labels: Vec<(Template, Template)>,
    },
}

/// One `<Syslog>`, `<File>` or `<CloudLogging>` block.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogTarget {
    /// The destination.
    pub destination: LogDestination,
    /// `<Message>`, a template.
    pub message: Template,
}

/// `<MessageLogging>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageLogging {
    /// The targets, in document order.
    pub targets: Vec<LogTarget>,
    /// `<logLevel>` (File), default `INFO`.
    pub log_level: String,
}

fn message_logging(cx: &mut Cx<'_>, el: &Element) -> MessageLogging {
    cx.known_policy(
        el,
        &[
            "Syslog",
            "File",
            "CloudLogging",
            "logLevel",
            "BufferMessage",
        ],
    );
    let mut targets = Vec::new();
    for t in &el.children {
        let message = Template::parse(&cx.child_text(t, "Message").unwrap_or_default());
        let destination = match t.name.as_str() {
            "Syslog" => LogDestination::Syslog {
                host: cx.child_text(t, "Host"),
                port: t.child("Port").and_then(|p| cx.number(p)),
                protocol: cx.child_text(t, "Protocol"),
                format_message: cx.child_bool(t, "FormatMessage", false),
            },
            "File" => LogDestination::File {
                file_name: cx.child_text(t, "FileName"),
            },
            "CloudLogging" => LogDestination::CloudLogging {
                log_name: Template::parse(&cx.child_text(t, "LogName").unwrap_or_default()),
                content_type: t
                    .child("Message")
                    .and_then(|m| m.attr("contentType"))
                    .map(str::to_owned),
                labels: t
                    .child("Labels")
                    .map(|ls| {
                        ls.children_named("Label")
                            .map(|l| {
                                (
                                    Template::parse(&cx.child_text(l, "Key").unwrap_or_default()),
                                    Template::parse(&cx.child_text(l, "Value").unwrap_or_default()),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            _ => continue,
        };
        targets.push(LogTarget {
            destination,
            message,
        });
    }
    if targets.is_empty() {
        cx.error(
            el.offset,
            "MessageLogging needs a `<Syslog>`, `<File>` or `<CloudLogging>`",
        );
    }
    MessageLogging {
        targets,
        log_level: cx
            .child_text(el, "logLevel")
            .unwrap_or_else(|| "INFO".into()),
    }
}

/// A rendered log message, handed to the host's [`LogSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRecord {
    /// The policy name.
    pub policy: String,
    /// Where it goes (templates in the destination rendered).
    pub destination: LogDestination,
    /// The rendered CloudLogging log name, if any.
    pub log_name: Option<String>,
    /// Rendered CloudLogging labels.
    pub labels: Vec<(String, String)>,
    /// The rendered message.
    pub message: String,
    /// The log level.
    pub level: String,
}

/// Receives MessageLogging records; the host decides where they go. Implementations must
/// not block: the engine calls `log` inline.
pub trait LogSink: Send + Sync + std::fmt::Debug {
    /// Takes one record.
    fn log(&self, record: LogRecord);
}

/// A sink that keeps records in memory (tests, traces).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct MemorySink {
    records: std::sync::Mutex<Vec<LogRecord>>,
}

impl MemorySink {
    /// The records received so far.
    pub fn records(&self) -> Vec<LogRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl LogSink for MemorySink {
    fn log(&self, record: LogRecord) {
        if let Ok(mut r) = self.records.lock()
            && r.len() < 10_000
        {
            r.push(record);
        }
    }
}

/// Renders the records of a MessageLogging policy.
pub fn log_records(
    cfg: &MessageLogging,
    policy: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<LogRecord> {
    cfg.targets
        .iter()
        .map(|t| {
            let render = |tpl: &Template| tpl.render(|n| lookup(n));
            let (log_name, labels) = match &t.destination {
                LogDestination::CloudLogging {
                    log_name, labels, ..
                } => (
                    Some(render(log_name)),
                    labels.iter().map(|(k, v)| (render(k), render(v))).collect(),
                ),
                _ => (None, Vec::new()),
            };
            LogRecord {
                policy: policy.to_owned(),
                destination: t.destination.clone(),
                log_name,
                labels,
                message: render(&t.message),
                level: cfg.log_level.clone(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// StatisticsCollector

/// `<Statistic name ref type>default</Statistic>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistic {
    /// `name`: the custom dimension.
    pub name: String,
    /// `ref`: the variable read.
    pub reference: Option<String>,
    /// `type`: STRING, INTEGER, FLOAT, LONG, DOUBLE, BOOLEAN.
    pub stat_type: String,
    /// The default value when the variable does not resolve.
    pub default: Option<String>,
}

/// `<StatisticsCollector>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatisticsCollector {
    /// `<Statistics><Statistic>`.
    pub statistics: Vec<Statistic>,
}

fn statistics_collector(cx: &mut Cx<'_>, el: &Element) -> StatisticsCollector {
    cx.known_policy(el, &["Statistics"]);
    StatisticsCollector {
        statistics: el
            .child("Statistics")
            .map(|s| {
                s.children_named("Statistic")
                    .map(|st| Statistic {
                        name: st.attr("name").unwrap_or_default().trim().to_owned(),
                        reference: ref_attr(st),
                        stat_type: st
                            .attr("type")
                            .unwrap_or("STRING")
                            .trim()
                            .to_ascii_uppercase(),
                        default: st.non_empty_text().map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The prefix of the variables StatisticsCollector and DataCapture set, so that traces and
/// analytics hooks can read the collected values.
pub const STATISTICS_PREFIX: &str = "statistics.";

/// The values collected: `(statistics.<name>, value)` for every statistic that has one.
pub fn collect_statistics(
    cfg: &StatisticsCollector,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    cfg.statistics
        .iter()
        .filter_map(|s| {
            let v = s
                .reference
                .as_deref()
                .and_then(lookup)
                .or_else(|| s.default.clone())?;
            Some((format!("{STATISTICS_PREFIX}{}", s.name), v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// DataCapture

/// Where a `<Collect>` takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectFrom {
    /// `<Collect ref="var" default="x"/>`.
    Variable(String),
    /// `<URIPath><Pattern>`: captured from the path suffix.
    UriPath(Vec<Pattern>),
    /// `<QueryParam name><Pattern>`.
    QueryParam(String, Vec<Pattern>),
    /// `<Header name><Pattern>`.
    Header(String, Vec<Pattern>),
    /// `<JSONPayload><JSONPath>`.
    JsonPath(String),
    /// `<XMLPayload><XPath>`.
    XPath(String),
    /// Only a default.
    Nothing,
}

/// `<Capture>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capture {
    /// `<DataCollector>`: the data collector (written as a variable of that name).
    pub data_collector: String,
    /// Where the value comes from.
    pub from: CollectFrom,
    /// `default`.
    pub default: Option<String>,
}

/// `<DataCapture>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataCapture {
    /// `<Capture>`s.
    pub captures: Vec<Capture>,
    /// `<IgnoreUnresolvedVariables>` (default false).
    pub ignore_unresolved_variables: bool,
    /// `<ThrowExceptionOnLimit>` (default false).
    pub throw_exception_on_limit: bool,
}

fn ev_patterns(cx: &mut Cx<'_>, el: &Element) -> Vec<Pattern> {
    el.children_named("Pattern")
        .map(|p| Pattern {
            pattern: Template::parse(p.text()),
            ignore_case: cx.attr_bool(p, "ignoreCase", false),
        })
        .collect()
}

fn data_capture(cx: &mut Cx<'_>, el: &Element) -> DataCapture {
    cx.known_policy(
        el,
        &[
            "Capture",
            "IgnoreUnresolvedVariables",
            "ThrowExceptionOnLimit",
        ],
    );
    let captures = el
        .children_named("Capture")
        .map(|c| {
            let data_collector = c
                .child("DataCollector")
                .and_then(Element::non_empty_text)
                .unwrap_or_default()
                .to_owned();
            if data_collector.is_empty() {
                cx.error(c.offset, "`<Capture>` needs a `<DataCollector>`");
            }
            let collect = c.child("Collect");
            let default = collect.and_then(|k| k.attr("default")).map(str::to_owned);
            let from = match collect {
                None => CollectFrom::Nothing,
                Some(k) => {
                    let src = k.child("Source").unwrap_or(k);
                    if let Some(r) = ref_attr(k) {
                        CollectFrom::Variable(r)
                    } else if let Some(u) = src.child("URIPath").or_else(|| k.child("URIPath")) {
                        CollectFrom::UriPath(ev_patterns(cx, u))
                    } else if let Some(q) =
                        src.child("QueryParam").or_else(|| k.child("QueryParam"))
                    {
                        CollectFrom::QueryParam(
                            q.attr("name").unwrap_or_default().to_owned(),
                            ev_patterns(cx, q),
                        )
                    } else if let Some(h) = src.child("Header").or_else(|| k.child("Header")) {
                        CollectFrom::Header(
                            h.attr("name").unwrap_or_default().to_owned(),
                            ev_patterns(cx, h),
                        )
                    } else if let Some(j) = k.child("JSONPayload").and_then(|j| j.child("JSONPath"))
                    {
                        CollectFrom::JsonPath(j.text().to_owned())
                    } else if let Some(x) = k.child("XMLPayload").and_then(|x| x.child("XPath")) {
                        CollectFrom::XPath(x.text().to_owned())
                    } else {
                        CollectFrom::Nothing
                    }
                }
            };
            Capture {
                data_collector,
                from,
                default,
            }
        })
        .collect();
    DataCapture {
        captures,
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
        throw_exception_on_limit: cx.child_bool(el, "ThrowExceptionOnLimit", false),
    }
}

/// Matches `text` against an ExtractVariables-style pattern (`{name}` captures, literal
/// text otherwise); returns the captures.
pub fn match_pattern(p: &Pattern, text: &str) -> Option<Vec<(String, String)>> {
    use crate::template::Part;
    let parts = p.pattern.parts();
    let fold = |s: &str| {
        if p.ignore_case {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let text_f = fold(text);
    let mut at = 0usize;
    let mut out = Vec::new();
    let mut iter = parts.iter().peekable();
    while let Some(part) = iter.next() {
        match part {
            Part::Literal(l) => {
                let l = fold(l);
                if !text_f.get(at..)?.starts_with(&l) {
                    return None;
                }
                at += l.len();
            }
            Part::Variable(name) | Part::Function { name, .. } => {
                let rest = text_f.get(at..)?;
                let end = match iter.peek() {
                    Some(Part::Literal(next)) => rest.find(&fold(next))?,
                    _ => rest.len(),
                };
                out.push((name.clone(), text.get(at..at + end)?.to_owned()));
                at += end;
            }
        }
    }
    (at == text.len()).then_some(out)
}

/// What DataCapture reads.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CaptureInputs<'a> {
    /// `proxy.pathsuffix`.
    pub path_suffix: &'a str,
    /// Query parameters.
    pub query: &'a [(String, String)],
    /// Headers.
    pub headers: &'a [(String, String)],
    /// The payload.
    pub payload: Option<&'a [u8]>,
}

/// The values DataCapture collects: `(data collector, value)`.
pub fn capture_values(
    cfg: &DataCapture,
    inputs: &CaptureInputs<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let first_capture = |patterns: &[Pattern], text: &str| {
        patterns
            .iter()
            .find_map(|p| match_pattern(p, text))
            .and_then(|caps| caps.into_iter().next().map(|(_, v)| v))
    };
    cfg.captures
        .iter()
        .filter_map(|c| {
            let value = match &c.from {
                CollectFrom::Variable(v) => lookup(v),
                CollectFrom::UriPath(ps) => first_capture(ps, inputs.path_suffix),
                CollectFrom::QueryParam(n, ps) => inputs
                    .query
                    .iter()
                    .find(|(k, _)| k == n)
                    .and_then(|(_, v)| first_capture(ps, v)),
                CollectFrom::Header(n, ps) => inputs
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .and_then(|(_, v)| first_capture(ps, v)),
                CollectFrom::JsonPath(p) => inputs
                    .payload
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| {
                        crate::format::json_path(&v, p).ok().and_then(|found| {
                            found.first().map(|x| match x {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                        })
                    }),
                CollectFrom::XPath(x) => inputs
                    .payload
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|t| crate::xpath::evaluate(t, x, &[]).ok())
                    .and_then(|v| v.first()),
                CollectFrom::Nothing => None,
            };
            value
                .or_else(|| c.default.clone())
                .map(|v| (c.data_collector.clone(), v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// AssertCondition

/// `<AssertCondition>`: fails when its condition is false.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssertCondition {
    /// `<Condition>`, checked at load.
    pub condition: String,
}

/// The fault of a false assertion: `steps.assertcondition.AssertionFailed`, 500.
pub const ASSERTION_FAILED: (&str, u16) = ("AssertionFailed", 500);

fn assert_condition(cx: &mut Cx<'_>, el: &Element) -> AssertCondition {
    cx.known_policy(el, &["Condition"]);
    let Some(c) = el.child("Condition").filter(|c| !c.text().is_empty()) else {
        cx.error(el.offset, "AssertCondition needs a `<Condition>`");
        return AssertCondition {
            condition: String::new(),
        };
    };
    if let Err(e) = preflow_condition::parse(c.text()) {
        cx.error(
            c.trimmed_source_offset(e.location().span().start),
            format!("invalid condition: {}", e.message()),
        );
    }
    AssertCondition {
        condition: c.text().to_owned(),
    }
}
