//! Message-building policies: AssignMessage and RaiseFault, which share the Copy, Remove,
//! Add, Set and AssignVariable vocabulary.

use crate::parse::{Cx, ref_attr};
use crate::template::Template;
use crate::xml::Element;

/// A set of headers, query parameters or form parameters to act on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// The element is absent: nothing.
    #[default]
    None,
    /// The element is empty (`<Headers/>`): all of them.
    All,
    /// These names.
    Named(Vec<String>),
}

impl Selection {
    /// Whether nothing is selected.
    pub fn is_none(&self) -> bool {
        matches!(self, Selection::None)
    }
}

/// A named value: a header, query parameter or form parameter with a template value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTemplate {
    /// The name (itself a template, such as `{flow.header.name}`).
    pub name: Template,
    /// The value.
    pub value: Template,
}

/// `<Copy source>`: copies parts of another message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    /// `source`: the message variable to copy from (default: the current message).
    pub source: Option<String>,
    /// `<Headers>`.
    pub headers: Selection,
    /// `<QueryParams>`.
    pub query_params: Selection,
    /// `<FormParams>`.
    pub form_params: Selection,
    /// `<Payload>`.
    pub payload: bool,
    /// `<Verb>`.
    pub verb: bool,
    /// `<Version>`.
    pub version: bool,
    /// `<Path>`.
    pub path: bool,
    /// `<StatusCode>`.
    pub status_code: bool,
    /// `<ReasonPhrase>`.
    pub reason_phrase: bool,
}

/// `<Remove>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Remove {
    /// `<Headers>`.
    pub headers: Selection,
    /// `<QueryParams>`.
    pub query_params: Selection,
    /// `<FormParams>`.
    pub form_params: Selection,
    /// `<Payload>`.
    pub payload: bool,
}

/// `<Add>`: adds values (headers may repeat).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Add {
    /// `<Headers><Header name>`.
    pub headers: Vec<NamedTemplate>,
    /// `<QueryParams><QueryParam name>`.
    pub query_params: Vec<NamedTemplate>,
    /// `<FormParams><FormParam name>`.
    pub form_params: Vec<NamedTemplate>,
}

/// `<Payload contentType variablePrefix variableSuffix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `contentType`.
    pub content_type: Option<String>,
    /// The body, a template with the chosen delimiters. Markup inside the element (an XML
    /// payload) is kept as written.
    pub template: Template,
}

/// `<Set>`: replaces values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Set {
    /// `<Headers><Header name>`.
    pub headers: Vec<NamedTemplate>,
    /// `<QueryParams><QueryParam name>`.
    pub query_params: Vec<NamedTemplate>,
    /// `<FormParams><FormParam name>`.
    pub form_params: Vec<NamedTemplate>,
    /// `<Payload>`.
    pub payload: Option<Payload>,
    /// `<Verb>`.
    pub verb: Option<Template>,
    /// `<Path>`.
    pub path: Option<Template>,
    /// `<Version>`.
    pub version: Option<Template>,
    /// `<StatusCode>`.
    pub status_code: Option<Template>,
    /// `<ReasonPhrase>`.
    pub reason_phrase: Option<Template>,
}

/// Where an AssignVariable's value comes from; the first that resolves wins, in the
/// order Ref, Template, Value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssignVariable {
    /// `<Name>`: the variable to set.
    pub name: String,
    /// `<Ref>`: a variable to copy.
    pub reference: Option<String>,
    /// `<Template>`: a message template.
    pub template: Option<Template>,
    /// `<Template ref>`: a variable holding a template.
    pub template_ref: Option<String>,
    /// `<Value>`: a literal, the default when Ref does not resolve.
    pub value: Option<String>,
}

/// The kind of message `AssignTo` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageType {
    /// `request` (default).
    #[default]
    Request,
    /// `response`.
    Response,
}

/// `<AssignTo createNew transport type>variable</AssignTo>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssignTo {
    /// The message variable; `None` is the current request or response.
    pub variable: Option<String>,
    /// `createNew`, default false.
    pub create_new: bool,
    /// `type`, default request.
    pub message_type: MessageType,
}

/// The operations on a message shared by AssignMessage and RaiseFault's FaultResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageOps {
    /// `<AssignTo>`.
    pub assign_to: Option<AssignTo>,
    /// `<Copy>`.
    pub copy: Option<Copy>,
    /// `<Remove>`.
    pub remove: Option<Remove>,
    /// `<Add>`.
    pub add: Option<Add>,
    /// `<Set>`.
    pub set: Option<Set>,
    /// `<AssignVariable>` in document order.
    pub assign_variables: Vec<AssignVariable>,
}

/// `<AssignMessage>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignMessage {
    /// The operations; believed applied in the order Copy, Remove, Add, Set,
    /// AssignVariable.
    pub ops: MessageOps,
    /// `<IgnoreUnresolvedVariables>`, default false.
    pub ignore_unresolved_variables: bool,
}

/// `<RaiseFault>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaiseFault {
    /// `<FaultResponse>`: how the error response is built.
    pub fault_response: MessageOps,
    /// `<IgnoreUnresolvedVariables>`, default true.
    pub ignore_unresolved_variables: bool,
    /// `<ShortFaultReason>`, default false.
    pub short_fault_reason: bool,
}

const OPS: &[&str] = &["AssignTo", "Copy", "Remove", "Add", "Set", "AssignVariable"];

pub(crate) fn assign_message(cx: &mut Cx<'_>, el: &Element) -> AssignMessage {
    let mut known = OPS.to_vec();
    known.push("IgnoreUnresolvedVariables");
    cx.known_policy(el, &known);
    AssignMessage {
        ops: message_ops(cx, el),
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
    }
}

pub(crate) fn raise_fault(cx: &mut Cx<'_>, el: &Element) -> RaiseFault {
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

pub(crate) fn message_ops(cx: &mut Cx<'_>, el: &Element) -> MessageOps {
    MessageOps {
        assign_to: el.child("AssignTo").map(|a| assign_to(cx, a)),
        copy: el.child("Copy").map(|c| copy(cx, c)),
        remove: el.child("Remove").map(|r| remove(cx, r)),
        add: el.child("Add").map(|a| add(cx, a)),
        set: el.child("Set").map(|s| set(cx, s)),
        assign_variables: el
            .children_named("AssignVariable")
            .map(|a| assign_variable(cx, a))
            .collect(),
    }
}

fn assign_to(cx: &mut Cx<'_>, el: &Element) -> AssignTo {
    let message_type = match el.attribute("type") {
        None => MessageType::Request,
        Some(a) => match a.value.trim().to_ascii_lowercase().as_str() {
            "request" | "message" | "" => MessageType::Request,
            "response" => MessageType::Response,
            other => {
                cx.diags.push(
                    cx.src
                        .warning(
                            a.offset,
                            format!("unknown `AssignTo` type `{other}`; `request` is assumed"),
                        )
                        .with_hint("use `request` or `response`"),
                );
                MessageType::Request
            }
        },
    };
    AssignTo {
        variable: el.non_empty_text().map(str::to_owned),
        create_new: cx.attr_bool(el, "createNew", false),
        message_type,
    }
}

fn selection(el: Option<&Element>, item: &str) -> Selection {
    match el {
        None => Selection::None,
        Some(e) => {
            let names: Vec<String> = e
                .children_named(item)
                .filter_map(|c| c.attr("name").map(|n| n.trim().to_owned()))
                .collect();
            if names.is_empty() {
                Selection::All
            } else {
                Selection::Named(names)
            }
        }
    }
}

fn copy(cx: &mut Cx<'_>, el: &Element) -> Copy {
    cx.known(
        el,
        &[
            "Headers",
            "QueryParams",
            "FormParams",
            "Payload",
            "Verb",
            "Version",
            "Path",
            "StatusCode",
            "ReasonPhrase",
        ],
    );
    let flag = |cx: &mut Cx<'_>, name: &str| match el.child(name) {
        None => false,
        Some(c) if c.non_empty_text().is_none() => true,
        Some(c) => cx.bool_text(c, true),
    };
    Copy {
        source: el
            .attr("source")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        headers: selection(el.child("Headers"), "Header"),
        query_params: selection(el.child("QueryParams"), "QueryParam"),
        form_params: selection(el.child("FormParams"), "FormParam"),
        payload: flag(cx, "Payload"),
        verb: flag(cx, "Verb"),
        version: flag(cx, "Version"),
        path: flag(cx, "Path"),
        status_code: flag(cx, "StatusCode"),
        reason_phrase: flag(cx, "ReasonPhrase"),
    }
}

fn remove(cx: &mut Cx<'_>, el: &Element) -> Remove {
    cx.known(el, &["Headers", "QueryParams", "FormParams", "Payload"]);
    Remove {
        headers: selection(el.child("Headers"), "Header"),
        query_params: selection(el.child("QueryParams"), "QueryParam"),
        form_params: selection(el.child("FormParams"), "FormParam"),
        payload: match el.child("Payload") {
            None => false,
            Some(p) if p.non_empty_text().is_none() => true,
            Some(p) => cx.bool_text(p, true),
        },
    }
}

fn named(cx: &mut Cx<'_>, group: Option<&Element>, item: &str) -> Vec<NamedTemplate> {
    let Some(group) = group else {
        return Vec::new();
    };
    cx.known(group, &[item]);
    group
        .children_named(item)
        .filter_map(|c| match c.attr("name") {
            Some(name) => Some(NamedTemplate {
                name: Template::parse(name.trim()),
                value: Template::parse(c.text()),
            }),
            None => {
                cx.error(c.offset, format!("`<{item}>` needs a `name` attribute"));
                None
            }
        })
        .collect()
}

fn add(cx: &mut Cx<'_>, el: &Element) -> Add {
    cx.known(el, &["Headers", "QueryParams", "FormParams", "Header"]);
    let mut headers = named(cx, el.child("Headers"), "Header");
    // A bare `<Header>` directly inside `<Add>` is seen in real bundles; accept it.
    for h in el.children_named("Header") {
        if let Some(name) = h.attr("name") {
            headers.push(NamedTemplate {
                name: Template::parse(name.trim()),
                value: Template::parse(h.text()),
            });
        }
    }
    Add {
        headers,
        query_params: named(cx, el.child("QueryParams"), "QueryParam"),
        form_params: named(cx, el.child("FormParams"), "FormParam"),
    }
}

fn set(cx: &mut Cx<'_>, el: &Element) -> Set {
    cx.known(
        el,
        &[
            "Headers",
            "QueryParams",
            "FormParams",
            "Payload",
            "Verb",
            "Path",
            "Version",
            "StatusCode",
            "ReasonPhrase",
            "Authentication",
        ],
    );
    let text = |name: &str| el.child(name).map(|c| Template::parse(c.text()));
    Set {
        headers: named(cx, el.child("Headers"), "Header"),
        query_params: named(cx, el.child("QueryParams"), "QueryParam"),
        form_params: named(cx, el.child("FormParams"), "FormParam"),
        payload: el.child("Payload").map(|p| payload(cx, p)),
        verb: text("Verb"),
        path: text("Path"),
        version: text("Version"),
        status_code: text("StatusCode"),
        reason_phrase: text("ReasonPhrase"),
    }
}

fn single_char(cx: &mut Cx<'_>, el: &Element, attr: &str, default: char) -> char {
    match el.attribute(attr) {
        None => default,
        Some(a) => {
            let mut chars = a.value.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => {
                    cx.error(
                        a.offset,
                        format!("`{attr}` must be one character, not `{}`", a.value),
                    );
                    default
                }
            }
        }
    }
}

fn payload(cx: &mut Cx<'_>, el: &Element) -> Payload {
    let prefix = single_char(cx, el, "variablePrefix", '{');
    let suffix = single_char(cx, el, "variableSuffix", '}');
    let body = if el.children.is_empty() {
        el.text().to_owned()
    } else {
        el.inner_xml(cx.src.text()).trim().to_owned()
    };
    Payload {
        content_type: el.attr("contentType").map(|c| c.trim().to_owned()),
        template: Template::parse_with(&body, prefix, suffix),
    }
}

fn assign_variable(cx: &mut Cx<'_>, el: &Element) -> AssignVariable {
    cx.known(
        el,
        &[
            "Name",
            "Ref",
            "Template",
            "Value",
            "ResourceURL",
            "PropertySetRef",
        ],
    );
    let name = cx.child_text(el, "Name").unwrap_or_default();
    if name.is_empty() {
        cx.error_hint(
            el.offset,
            "`<AssignVariable>` needs a `<Name>`",
            "add `<Name>variable.name</Name>`",
        );
    }
    let template_el = el.child("Template");
    AssignVariable {
        name,
        reference: cx.child_text(el, "Ref"),
        template: template_el
            .and_then(Element::non_empty_text)
            .map(Template::parse),
        template_ref: template_el.and_then(ref_attr),
        value: el.child("Value").map(|v| v.raw_text().to_owned()),
    }
}
