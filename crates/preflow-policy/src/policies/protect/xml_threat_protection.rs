//! `<XMLThreatProtection>`: limits on the structure of an XML payload.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

use super::{XmlThreatProtection, scan_xml};
use crate::policies::source::{content_type_has, source_body, source_unavailable};

/// The XmlThreatProtection policy type.
#[derive(Debug)]
pub(crate) struct XmlThreatProtectionPolicy;

impl PolicyType for XmlThreatProtectionPolicy {
    type Config = XmlThreatProtection;
    type Compiled = (String, XmlThreatProtection);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> XmlThreatProtection {
        super::xml_threat_protection(cx, el)
    }

    fn compile(
        config: &XmlThreatProtection,
        cx: &BuildCx<'_>,
    ) -> Result<(String, XmlThreatProtection), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, XmlThreatProtection), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let Some(body) = source_body(rt, Some(&cfg.source)) else {
            return Outcome::Fault(source_unavailable("xmlthreatprotection", &cfg.source));
        };
        if body.is_empty() || !content_type_has(rt, Some(&cfg.source), "xml") {
            return Outcome::Continue;
        }
        match scan_xml(cfg, name, &body) {
            Ok(()) => Outcome::Continue,
            Err(t) => Outcome::Fault(
                Fault::new(
                    "steps.xmlthreatprotection.ExecutionFailed",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "XMLThreatProtection[{name}]: Execution failed. reason: {}",
                        t.message
                    ),
                )
                .named(t.fault_name()),
            ),
        }
    }
}
