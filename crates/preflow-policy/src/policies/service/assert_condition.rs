//! `<AssertCondition>`: faults when a condition is false.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use crate::policies::condition::NamedCondition;
use crate::policies::source::status;
use crate::runtime::Fault;

/// `<AssertCondition>`: fails when its condition is false.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssertCondition {
    /// `<Condition>`, checked at load.
    pub condition: String,
}

/// The fault of a false assertion: `steps.assertcondition.AssertionFailed`, 500.
pub const ASSERTION_FAILED: (&str, u16) = ("AssertionFailed", 500);

fn assert_condition(cx: &mut Cx<'_>, el: &Element) -> AssertCondition {
    cx.known_policy(el, &["Condition"]);
    let Some(c) = el.child("Condition").filter(|c| !c.text().is_empty()) else {
        cx.error(el.offset, "AssertCondition needs a `<Condition>`");
        return AssertCondition {
            condition: String::new(),
        };
    };
    if let Err(e) = preflow_condition::parse(c.text()) {
        cx.error(
            c.trimmed_source_offset(e.location().span().start),
            format!("invalid condition: {}", e.message()),
        );
    }
    AssertCondition {
        condition: c.text().to_owned(),
    }
}

/// The AssertCondition policy type.
#[derive(Debug)]
pub(crate) struct AssertConditionPolicy;

impl PolicyType for AssertConditionPolicy {
    type Config = AssertCondition;
    type Compiled = (String, NamedCondition);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> AssertCondition {
        assert_condition(cx, el)
    }

    fn compile(
        config: &AssertCondition,
        cx: &BuildCx<'_>,
    ) -> Result<(String, NamedCondition), CompileError> {
        Ok((cx.name.to_owned(), NamedCondition::new(&config.condition)))
    }

    fn run<R: Runtime>(c: &(String, NamedCondition), rt: &mut R) -> Outcome {
        let name = c.0.as_str();
        match c.1.eval(rt) {
            Ok(true) => Outcome::Continue,
            Ok(false) => Outcome::Fault(Fault::new(
                format!("steps.assertcondition.{}", ASSERTION_FAILED.0),
                status(ASSERTION_FAILED.1),
                format!("AssertCondition[{name}]: condition `{}` is false", c.1.text),
            )),
            Err(f) => Outcome::Fault(*f),
        }
    }
}
