//! `<MessageLogging>`: sends log records to the gateway's log sink.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{MessageLogging, log_records};

/// The MessageLogging policy type.
#[derive(Debug)]
pub(crate) struct MessageLoggingPolicy;

impl PolicyType for MessageLoggingPolicy {
    type Config = MessageLogging;
    type Compiled = (String, MessageLogging);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> MessageLogging {
        super::message_logging(cx, el)
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
