//! The FlowCallout policy.

use http::StatusCode;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

/// `<Parameter name ref|value>`: a variable set before the shared flow runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Parameter {
    /// The variable name.
    pub name: String,
    /// `ref`: take the value from this variable.
    pub reference: Option<String>,
    /// `value` attribute or text: a literal.
    pub value: Option<String>,
}

/// `<FlowCallout>`: runs a shared flow inline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowCallout {
    /// `<SharedFlowBundle>`: the shared flow's name.
    pub shared_flow_bundle: Option<String>,
    /// `<Parameters><Parameter>`.
    pub parameters: Vec<Parameter>,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> FlowCallout {
    cx.known_policy(el, &["SharedFlowBundle", "Parameters"]);
    let shared_flow_bundle = cx.child_text(el, "SharedFlowBundle");
    if shared_flow_bundle.is_none() {
        cx.error_hint(
            el.offset,
            "FlowCallout needs a `<SharedFlowBundle>`",
            "add `<SharedFlowBundle>name-of-shared-flow</SharedFlowBundle>`",
        );
    }
    let parameters = el
        .child("Parameters")
        .map(|ps| {
            cx.known(ps, &["Parameter"]);
            ps.children_named("Parameter")
                .map(|p| Parameter {
                    name: p.attr("name").unwrap_or_default().trim().to_owned(),
                    reference: p.attr("ref").map(|r| r.trim().to_owned()),
                    value: p
                        .attr("value")
                        .map(str::to_owned)
                        .or_else(|| p.non_empty_text().map(str::to_owned)),
                })
                .collect()
        })
        .unwrap_or_default();
    FlowCallout {
        shared_flow_bundle,
        parameters,
    }
}

fn run<R: Runtime>(rt: &mut R, target: Option<usize>, f: &FlowCallout) -> Outcome {
    let Some(t) = target else {
        return Outcome::Fault(Fault::new(
            "flow.SharedFlowNotFound",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "Shared flow {} not found",
                f.shared_flow_bundle.as_deref().unwrap_or("(none)")
            ),
        ));
    };
    for param in &f.parameters {
        let value = param
            .reference
            .as_deref()
            .and_then(|r| rt.variable(r))
            .or_else(|| param.value.clone());
        if let Some(v) = value {
            rt.set_variable(&param.name, v);
        }
    }
    Outcome::CallSharedFlow(t)
}

/// The FlowCallout policy type.
#[derive(Debug)]
pub(crate) struct FlowCalloutPolicy;

impl PolicyType for FlowCalloutPolicy {
    type Config = FlowCallout;
    type Compiled = (Option<usize>, FlowCallout);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> FlowCallout {
        parse(cx, el)
    }

    fn compile(
        config: &FlowCallout,
        cx: &BuildCx<'_>,
    ) -> Result<(Option<usize>, FlowCallout), CompileError> {
        let target = config
            .shared_flow_bundle
            .as_deref()
            .and_then(|n| cx.shared_flows.get(n.trim()).copied());
        Ok((target, config.clone()))
    }

    fn run<R: Runtime>(c: &(Option<usize>, FlowCallout), rt: &mut R) -> Outcome {
        run(rt, c.0, &c.1)
    }

    fn variables_set(f: &FlowCallout) -> Vec<String> {
        f.parameters.iter().map(|p| p.name.clone()).collect()
    }

    fn shared_flow(f: &FlowCallout) -> Option<&str> {
        f.shared_flow_bundle.as_deref()
    }

    fn reads_request_body(f: &FlowCallout) -> bool {
        f.parameters
            .iter()
            .filter_map(|p| p.reference.as_deref())
            .any(crate::vars::reads_request_body)
    }
}
