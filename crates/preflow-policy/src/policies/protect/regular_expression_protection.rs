//! `<RegularExpressionProtection>`: rejects requests whose parts match threat patterns.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

use super::{RegexInputs, RegexThreat, RegularExpressionProtection, check_regex};
use crate::policies::source::{header_list, source_message};

/// The RegularExpressionProtection policy type.
#[derive(Debug)]
pub(crate) struct RegularExpressionProtectionPolicy;

impl PolicyType for RegularExpressionProtectionPolicy {
    type Config = Box<RegularExpressionProtection>;
    type Compiled = Box<(String, RegularExpressionProtection)>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Box<RegularExpressionProtection> {
        Box::new(super::regular_expression_protection(cx, el))
    }

    fn compile(
        config: &Box<RegularExpressionProtection>,
        cx: &BuildCx<'_>,
    ) -> Result<Self::Compiled, CompileError> {
        Ok(Box::new((cx.name.to_owned(), (**config).clone())))
    }

    fn run<R: Runtime>(c: &Self::Compiled, rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let m = source_message(rt, Some(&cfg.source)).unwrap_or(rt.request());
        let headers = header_list(m);
        let needs_body = !cfg.json_paths.is_empty() || !cfg.xpaths.is_empty();
        let body = needs_body.then(|| m.body.clone());
        let path = m.path.clone();
        let query = rt.query_params().to_vec();
        let form = rt.form_params().to_vec();
        let inputs = RegexInputs {
            path: &path,
            query: &query,
            headers: &headers,
            form: &form,
            payload: body.as_deref(),
        };
        let lookup = |n: &str| rt.variable(n);
        match check_regex(cfg, name, &inputs, &lookup) {
            Ok(()) => Outcome::Continue,
            Err(e) => {
                let code = format!("steps.regexprotection.{}", e.fault_name());
                let st = match e {
                    RegexThreat::ThreatDetected { .. } => StatusCode::BAD_REQUEST,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                Outcome::Fault(Fault::new(code, st, e.to_string()))
            }
        }
    }
}
