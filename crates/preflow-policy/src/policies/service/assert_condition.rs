//! `<AssertCondition>`: faults when a condition is false.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{ASSERTION_FAILED, AssertCondition};
use crate::policies::condition::NamedCondition;
use crate::policies::source::status;
use crate::runtime::Fault;

/// The AssertCondition policy type.
#[derive(Debug)]
pub(crate) struct AssertConditionPolicy;

impl PolicyType for AssertConditionPolicy {
    type Config = AssertCondition;
    type Compiled = (String, NamedCondition);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> AssertCondition {
        super::assert_condition(cx, el)
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
