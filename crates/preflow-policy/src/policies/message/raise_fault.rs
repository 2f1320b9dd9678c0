//! `<RaiseFault>`: enters the error state with a response of its own.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Message, Outcome, Runtime};
use crate::xml::Element;

use super::ops::{MessageOps, OPS, apply_ops, message_ops};

/// `<RaiseFault>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RaiseFault {
    /// `<FaultResponse>`: how the error response is built.
    pub fault_response: MessageOps,
    /// `<IgnoreUnresolvedVariables>`, default true.
    pub ignore_unresolved_variables: bool,
    /// `<ShortFaultReason>`, default false.
    pub short_fault_reason: bool,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> RaiseFault {
    cx.known_policy(
        el,
        &[
            "FaultResponse",
            "IgnoreUnresolvedVariables",
            "ShortFaultReason",
            "AssignTo",
        ],
    );
    let mut ignore = cx.child_bool(el, "IgnoreUnresolvedVariables", true);
    let fault_response = match el.child("FaultResponse") {
        Some(fr) => {
            let mut known = OPS.to_vec();
            known.push("IgnoreUnresolvedVariables");
            cx.known(fr, &known);
            ignore = cx.child_bool(fr, "IgnoreUnresolvedVariables", ignore);
            message_ops(cx, fr)
        }
        None => MessageOps::default(),
    };
    RaiseFault {
        fault_response,
        ignore_unresolved_variables: ignore,
        short_fault_reason: cx.child_bool(el, "ShortFaultReason", false),
    }
}

fn raise<R: Runtime>(rt: &mut R, name: &str, r: &RaiseFault) -> Outcome {
    let ops = &r.fault_response;
    let empty =
        ops.copy.is_none() && ops.remove.is_none() && ops.add.is_none() && ops.set.is_none();
    let mut fault = Fault::new(
        "steps.raisefault.RaiseFault",
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Raising fault. Fault name : {name}"),
    );
    fault.raised = true;
    let mut m = Message::response(StatusCode::INTERNAL_SERVER_ERROR);
    if let Err(f) = apply_ops(rt, ops, r.ignore_unresolved_variables, Some(&mut m)) {
        return Outcome::Fault(f);
    }
    if !empty {
        fault.status = m.status;
        fault.response = Some(m);
    }
    Outcome::Fault(fault)
}

/// The RaiseFault policy type.
#[derive(Debug)]
pub(crate) struct RaiseFaultPolicy;

/// A compiled RaiseFault: its configuration and the policy name its faultstring names.
#[derive(Debug)]
pub(crate) struct CompiledRaiseFault {
    name: String,
    config: RaiseFault,
}

impl PolicyType for RaiseFaultPolicy {
    type Config = RaiseFault;
    type Compiled = CompiledRaiseFault;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> RaiseFault {
        parse(cx, el)
    }

    fn compile(config: &RaiseFault, cx: &BuildCx<'_>) -> Result<CompiledRaiseFault, CompileError> {
        Ok(CompiledRaiseFault {
            name: cx.name.to_owned(),
            config: config.clone(),
        })
    }

    fn run<R: Runtime>(c: &CompiledRaiseFault, rt: &mut R) -> Outcome {
        raise(rt, &c.name, &c.config)
    }

    fn variables_set(config: &RaiseFault) -> Vec<String> {
        config.fault_response.variables_set()
    }

    fn reads_request_body(r: &RaiseFault) -> bool {
        r.fault_response.reads_request_body()
    }
}
