//! `<JSONToXML>`: converts a JSON payload to XML.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{JsonToXml, convert, json_to_xml, json_to_xml_text};

/// The JSONToXML policy type.
#[derive(Debug)]
pub(crate) struct JsonToXmlPolicy;

impl PolicyType for JsonToXmlPolicy {
    type Config = JsonToXml;
    type Compiled = (String, JsonToXml);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> JsonToXml {
        json_to_xml(cx, el)
    }

    fn compile(config: &JsonToXml, cx: &BuildCx<'_>) -> Result<(String, JsonToXml), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, JsonToXml), rt: &mut R) -> Outcome {
        let cfg = &c.1;
        convert(
            rt,
            &c.0,
            cfg.source.as_deref(),
            cfg.output_variable.as_deref(),
            true,
            |b| json_to_xml_text(b, &cfg.options),
        )
    }

    fn variables_set(config: &JsonToXml) -> Vec<String> {
        config
            .output_variable
            .iter()
            .filter(|v| !matches!(v.as_str(), "request" | "response" | "message"))
            .cloned()
            .collect()
    }
}
