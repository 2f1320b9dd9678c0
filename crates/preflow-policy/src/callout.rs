//! The FlowCallout policy.

use crate::parse::Cx;
use crate::xml::Element;

/// `<Parameter name ref|value>`: a variable set before the shared flow runs.
#[derive(Debug, Clone, PartialEq, Eq)]
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
pub struct FlowCallout {
    /// `<SharedFlowBundle>`: the shared flow's name.
    pub shared_flow_bundle: Option<String>,
    /// `<Parameters><Parameter>`.
    pub parameters: Vec<Parameter>,
}

pub(crate) fn flow_callout(cx: &mut Cx<'_>, el: &Element) -> FlowCallout {
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
