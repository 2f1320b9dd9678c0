//! `<JSONThreatProtection>`: limits on the structure of a JSON payload.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

use super::{JsonThreatProtection, scan_json};
use crate::policies::source::{content_type_has, source_body, source_unavailable};

/// The JsonThreatProtection policy type.
#[derive(Debug)]
pub(crate) struct JsonThreatProtectionPolicy;

impl PolicyType for JsonThreatProtectionPolicy {
    type Config = JsonThreatProtection;
    type Compiled = (String, JsonThreatProtection);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> JsonThreatProtection {
        super::json_threat_protection(cx, el)
    }

    fn compile(
        config: &JsonThreatProtection,
        cx: &BuildCx<'_>,
    ) -> Result<(String, JsonThreatProtection), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, JsonThreatProtection), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let Some(body) = source_body(rt, Some(&cfg.source)) else {
            return Outcome::Fault(source_unavailable("jsonthreatprotection", &cfg.source));
        };
        // As in Apigee, only a JSON payload is checked: an empty body or another
        // content type passes.
        if body.is_empty() || !content_type_has(rt, Some(&cfg.source), "json") {
            return Outcome::Continue;
        }
        match scan_json(cfg, name, &body) {
            Ok(()) => Outcome::Continue,
            Err(t) => Outcome::Fault(
                Fault::new(
                    "steps.jsonthreatprotection.ExecutionFailed",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "JSONThreatProtection[{name}]: Execution failed. reason: {}",
                        t.message
                    ),
                )
                .named(t.fault_name()),
            ),
        }
    }
}
