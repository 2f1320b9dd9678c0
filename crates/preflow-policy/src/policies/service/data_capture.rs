//! `<DataCapture>`: captures values for analytics.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{CaptureInputs, DataCapture, capture_values};
use crate::policies::source::header_list;

/// The DataCapture policy type.
#[derive(Debug)]
pub(crate) struct DataCapturePolicy;

impl PolicyType for DataCapturePolicy {
    type Config = DataCapture;
    type Compiled = (String, DataCapture);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> DataCapture {
        super::data_capture(cx, el)
    }

    fn compile(
        config: &DataCapture,
        cx: &BuildCx<'_>,
    ) -> Result<(String, DataCapture), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, DataCapture), rt: &mut R) -> Outcome {
        let cfg = &c.1;
        let m = if rt.is_response_side() {
            rt.response().unwrap_or(rt.request())
        } else {
            rt.request()
        };
        let headers = header_list(m);
        let body = m.body.clone();
        let suffix = rt.path_suffix().to_owned();
        let query = rt.query_params().to_vec();
        let inputs = CaptureInputs {
            path_suffix: &suffix,
            query: &query,
            headers: &headers,
            payload: Some(&body),
        };
        let values = capture_values(cfg, &inputs, &|n| rt.variable(n));
        for (k, v) in values {
            rt.set_variable(&k, v);
        }
        Outcome::Continue
    }

    fn variables_set(d: &DataCapture) -> Vec<String> {
        d.captures
            .iter()
            .map(|c| c.data_collector.clone())
            .collect()
    }
}
