//! `<MessageLogging>`: sends log records to the gateway's log sink.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::*;

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

impl LogRecord {
    /// A line a Javascript policy's script printed with `print()`.
    pub(crate) fn print(policy: &str, message: String) -> Self {
        LogRecord {
            policy: policy.to_owned(),
            destination: LogDestination::File { file_name: None },
            log_name: Some("print".to_owned()),
            labels: Vec::new(),
            message,
            level: "INFO".to_owned(),
        }
    }
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

/// The MessageLogging policy type.
#[derive(Debug)]
pub(crate) struct MessageLoggingPolicy;

impl PolicyType for MessageLoggingPolicy {
    type Config = MessageLogging;
    type Compiled = (String, MessageLogging);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> MessageLogging {
        message_logging(cx, el)
    }

    fn compile(
        config: &MessageLogging,
        cx: &BuildCx<'_>,
    ) -> Result<(String, MessageLogging), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, MessageLogging), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let records = log_records(cfg, name, &|n| rt.variable(n));
        if let Some(sink) = &rt.env().resources.log_sink {
            for r in records {
                sink.log(r);
            }
        }
        Outcome::Continue
    }
}
