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
use crate::parse::ref_attr;
use crate::template::Template;
pub(crate) use assert_condition::AssertConditionPolicy;
pub use assert_condition::*;
pub(crate) use data_capture::DataCapturePolicy;
pub use data_capture::*;
pub(crate) use message_logging::MessageLoggingPolicy;
pub use message_logging::*;
pub(crate) use service_callout::ServiceCalloutPolicy;
pub use service_callout::*;
pub(crate) use statistics_collector::StatisticsCollectorPolicy;
pub use statistics_collector::*;

#[cfg(test)]
mod tests;
