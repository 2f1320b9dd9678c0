//! `<XMLToJSON>`: converts a XML payload to JSON.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{XmlToJson, convert, xml_to_json, xml_to_json_text};

/// The XMLToJSON policy type.
#[derive(Debug)]
pub(crate) struct XmlToJsonPolicy;

impl PolicyType for XmlToJsonPolicy {
    type Config = XmlToJson;
    type Compiled = (String, XmlToJson);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> XmlToJson {
        xml_to_json(cx, el)
    }

    fn compile(config: &XmlToJson, cx: &BuildCx<'_>) -> Result<(String, XmlToJson), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, XmlToJson), rt: &mut R) -> Outcome {
        let cfg = &c.1;
        convert(
            rt,
            &c.0,
            cfg.source.as_deref(),
            cfg.output_variable.as_deref(),
            false,
            |b| xml_to_json_text(b, &cfg.options),
        )
    }

    fn variables_set(config: &XmlToJson) -> Vec<String> {
        config
            .output_variable
            .iter()
            .filter(|v| !matches!(v.as_str(), "request" | "response" | "message"))
            .cloned()
            .collect()
    }
}
