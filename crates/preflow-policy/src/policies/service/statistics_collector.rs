//! `<StatisticsCollector>`: collects values for analytics as `statistics.*` variables.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::*;

/// `<Statistic name ref type>default</Statistic>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistic {
    /// `name`: the custom dimension.
    pub name: String,
    /// `ref`: the variable read.
    pub reference: Option<String>,
    /// `type`: STRING, INTEGER, FLOAT, LONG, DOUBLE, BOOLEAN.
    pub stat_type: String,
    /// The default value when the variable does not resolve.
    pub default: Option<String>,
}

/// `<StatisticsCollector>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatisticsCollector {
    /// `<Statistics><Statistic>`.
    pub statistics: Vec<Statistic>,
}

fn statistics_collector(cx: &mut Cx<'_>, el: &Element) -> StatisticsCollector {
    cx.known_policy(el, &["Statistics"]);
    StatisticsCollector {
        statistics: el
            .child("Statistics")
            .map(|s| {
                s.children_named("Statistic")
                    .map(|st| Statistic {
                        name: st.attr("name").unwrap_or_default().trim().to_owned(),
                        reference: ref_attr(st),
                        stat_type: st
                            .attr("type")
                            .unwrap_or("STRING")
                            .trim()
                            .to_ascii_uppercase(),
                        default: st.non_empty_text().map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The prefix of the variables StatisticsCollector and DataCapture set, so that traces and
/// analytics hooks can read the collected values.
pub const STATISTICS_PREFIX: &str = "statistics.";

/// The values collected: `(statistics.<name>, value)` for every statistic that has one.
pub fn collect_statistics(
    cfg: &StatisticsCollector,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    cfg.statistics
        .iter()
        .filter_map(|s| {
            let v = s
                .reference
                .as_deref()
                .and_then(lookup)
                .or_else(|| s.default.clone())?;
            Some((format!("{STATISTICS_PREFIX}{}", s.name), v))
        })
        .collect()
}

/// The StatisticsCollector policy type.
#[derive(Debug)]
pub(crate) struct StatisticsCollectorPolicy;

impl PolicyType for StatisticsCollectorPolicy {
    type Config = StatisticsCollector;
    type Compiled = (String, StatisticsCollector);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> StatisticsCollector {
        statistics_collector(cx, el)
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
