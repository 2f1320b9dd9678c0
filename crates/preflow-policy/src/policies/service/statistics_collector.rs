//! `<StatisticsCollector>`: collects values for analytics as `statistics.*` variables.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{STATISTICS_PREFIX, StatisticsCollector, collect_statistics};

/// The StatisticsCollector policy type.
#[derive(Debug)]
pub(crate) struct StatisticsCollectorPolicy;

impl PolicyType for StatisticsCollectorPolicy {
    type Config = StatisticsCollector;
    type Compiled = (String, StatisticsCollector);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> StatisticsCollector {
        super::statistics_collector(cx, el)
    }

    fn compile(
        config: &StatisticsCollector,
        cx: &BuildCx<'_>,
    ) -> Result<(String, StatisticsCollector), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, StatisticsCollector), rt: &mut R) -> Outcome {
        let cfg = &c.1;
        let values = collect_statistics(cfg, &|n| rt.variable(n));
        for (k, v) in values {
            rt.set_variable(&k, v);
        }
        Outcome::Continue
    }

    fn variables_set(s: &StatisticsCollector) -> Vec<String> {
        s.statistics
            .iter()
            .map(|st| format!("{STATISTICS_PREFIX}{}", st.name))
            .collect()
    }
}
