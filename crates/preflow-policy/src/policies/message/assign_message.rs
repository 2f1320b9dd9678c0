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
    type Compiled = (String, AssignMessage);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> AssignMessage {
        parse(cx, el)
    }

    fn compile(
        config: &AssignMessage,
        cx: &BuildCx<'_>,
    ) -> Result<(String, AssignMessage), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>((name, a): &(String, AssignMessage), rt: &mut R) -> Outcome {
        match apply_ops(rt, &a.ops, a.ignore_unresolved_variables, None) {
            Ok(()) => Outcome::Continue,
            Err(mut f) => {
                f.faultstring = format!("AssignMessage[{name}]: {}", f.faultstring);
                Outcome::Fault(f)
            }
        }
    }

    fn advice(a: &AssignMessage) -> Vec<crate::Advice> {
        let mut out = Vec::new();
        for (i, v) in a.ops.assign_variables.iter().enumerate() {
            if v.reference.is_none()
                && v.value.is_none()
                && v.template.is_none()
                && v.template_ref.is_none()
            {
                out.push(crate::Advice::new(
                    "POL002",
                    Some("AssignVariable"),
                    format!(
                        "`<AssignVariable>` for `{}` has no `<Ref>`, `<Value>` or `<Template>`; it assigns nothing",
                        v.name
                    ),
                ).nth(i));
            }
        }
        if let Some(p) = a.ops.set.as_ref().and_then(|s| s.payload.as_ref())
            && let (Some(ct), Some(body)) = (&p.content_type, p.template.as_literal())
        {
            let body = body.trim();
            let ct = ct.to_ascii_lowercase();
            let mismatch = if ct.contains("json") {
                !body.is_empty() && serde_json::from_str::<serde_json::Value>(body).is_err()
            } else if ct.contains("xml") {
                !body.is_empty() && !body.starts_with('<')
            } else {
                false
            };
            if mismatch {
                out.push(crate::Advice::new(
                    "POL005",
                    Some("Set"),
                    format!("`<Payload contentType=\"{ct}\">` holds a payload that is not of that type; fix the payload or the content type"),
                ));
            }
        }
        out
    }

    fn variables_set(config: &AssignMessage) -> Vec<String> {
        config.ops.variables_set()
    }

    fn reads_request_body(a: &AssignMessage) -> bool {
        a.ops.reads_request_body()
    }

    fn reads_request_headers(a: &AssignMessage) -> bool {
        a.ops.reads_request_headers()
    }
}
