//! `<AssignMessage>`: builds or changes a message and sets variables.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::ops::{MessageOps, OPS, apply_ops, message_ops};

/// `<AssignMessage>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssignMessage {
    /// The operations; believed applied in the order Copy, Remove, Add, Set,
    /// AssignVariable.
    pub ops: MessageOps,
    /// `<IgnoreUnresolvedVariables>`, default false.
    pub ignore_unresolved_variables: bool,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> AssignMessage {
    let mut known = OPS.to_vec();
    known.push("IgnoreUnresolvedVariables");
    cx.known_policy(el, &known);
    AssignMessage {
        ops: message_ops(cx, el),
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
    }
}

/// The AssignMessage policy type.
#[derive(Debug)]
pub(crate) struct AssignMessagePolicy;

impl PolicyType for AssignMessagePolicy {
    type Config = AssignMessage;
    type Compiled = AssignMessage;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> AssignMessage {
        parse(cx, el)
    }

    fn compile(config: &AssignMessage, _: &BuildCx<'_>) -> Result<AssignMessage, CompileError> {
        Ok(config.clone())
    }

    fn run<R: Runtime>(a: &AssignMessage, rt: &mut R) -> Outcome {
        match apply_ops(rt, &a.ops, a.ignore_unresolved_variables, None) {
            Ok(()) => Outcome::Continue,
            Err(f) => Outcome::Fault(f),
        }
    }

    fn variables_set(config: &AssignMessage) -> Vec<String> {
        config.ops.variables_set()
    }

    fn reads_request_body(a: &AssignMessage) -> bool {
        a.ops.reads_request_body()
    }
}
