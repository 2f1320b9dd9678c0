//! The message vocabulary AssignMessage and RaiseFault share: Copy, Remove, Add, Set,
//! AssignVariable and AssignTo, their parsing, and applying them to an exchange.

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::parse::{Cx, ref_attr};
use crate::runtime::{Fault, Message, Runtime};
use crate::template::{Part, Template};
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
#[non_exhaustive]
pub struct NamedTemplate {
    /// The name (itself a template, such as `{flow.header.name}`).
    pub name: Template,
    /// The value.
    pub value: Template,
    /// The name as a header name, parsed once when it is fixed text (the usual case).
    header: Option<HeaderName>,
}

impl NamedTemplate {
    /// A named value; a fixed name that is a valid header name is parsed here, once.
    pub(crate) fn new(name: Template, value: Template) -> Self {
        let header = match name.parts() {
            [Part::Literal(n)] => HeaderName::from_bytes(n.trim().as_bytes()).ok(),
            _ => None,
        };
        NamedTemplate {
            name,
            value,
            header,
        }
    }
}

/// `<Copy source>`: copies parts of another message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Payload {
    /// `contentType`.
    pub content_type: Option<String>,
    /// The body, a template with the chosen delimiters. Markup inside the element (an XML
    /// payload) is kept as written.
    pub template: Template,
}

/// `<Set>`: replaces values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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

pub(crate) const OPS: &[&str] = &["AssignTo", "Copy", "Remove", "Add", "Set", "AssignVariable"];

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
            Some(name) => Some(NamedTemplate::new(
                Template::parse(name.trim()),
                Template::parse(c.text()),
            )),
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
            headers.push(NamedTemplate::new(
                Template::parse(name.trim()),
                Template::parse(h.text()),
            ));
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

// ---------------------------------------------------------------------------------------
// Applying the operations

/// `steps.assignmessage.UnresolvedVariable` for `name`. The policy's run puts
/// `AssignMessage[policy]: ` before the text, as Apigee prints it.
fn unresolved(name: &str) -> Fault {
    Fault::new(
        "steps.assignmessage.UnresolvedVariable",
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unable to resolve variable {name}"),
    )
}

/// Renders a template; an unresolved reference is a fault unless `ignore`.
pub(crate) fn render<R: Runtime>(rt: &R, t: &Template, ignore: bool) -> Result<String, Fault> {
    t.render_on(rt, ignore).map_err(|u| unresolved(&u.0))
}

/// Sets the variables a named message's fields read as (`{name}.header.{h}`,
/// `{name}.queryparam.{q}`, `{name}.formparam.{f}`, `{name}.content`, `{name}.verb`,
/// `{name}.path`, `{name}.querystring`, `{name}.uri`, `{name}.version`,
/// `{name}.status.code`, `{name}.reason.phrase`).
fn publish<R: Runtime>(rt: &mut R, name: &str, m: &Message) {
    let mut vars: Vec<(String, String)> = Vec::new();
    for key in m.headers.keys() {
        let values: Vec<&str> = m
            .headers
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        vars.push((format!("{name}.header.{}", key.as_str()), values.join(",")));
    }
    for (k, v) in params_of(m.query.as_deref()) {
        vars.push((format!("{name}.queryparam.{k}"), v));
    }
    let form = m
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        for (k, v) in params_of(std::str::from_utf8(&m.body).ok()) {
            vars.push((format!("{name}.formparam.{k}"), v));
        }
    }
    let query = m.query.clone().unwrap_or_default();
    let uri = if query.is_empty() {
        m.path.clone()
    } else {
        format!("{}?{query}", m.path)
    };
    let version = match m.version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2.0",
        _ => "1.1",
    };
    vars.extend([
        (
            format!("{name}.content"),
            String::from_utf8_lossy(&m.body).into_owned(),
        ),
        (format!("{name}.verb"), m.method.to_string()),
        (format!("{name}.path"), m.path.clone()),
        (format!("{name}.querystring"), query),
        (format!("{name}.uri"), uri),
        (format!("{name}.version"), version.to_owned()),
        (format!("{name}.status.code"), m.status.as_u16().to_string()),
        (
            format!("{name}.reason.phrase"),
            m.reason
                .clone()
                .or_else(|| m.status.canonical_reason().map(str::to_owned))
                .unwrap_or_default(),
        ),
    ]);
    for (k, v) in vars {
        rt.set_variable(&k, v);
    }
}

/// Renders name and value of each entry.
fn render_pairs<R: Runtime>(
    rt: &R,
    items: &[NamedTemplate],
    ignore: bool,
) -> Result<Vec<(String, String)>, Fault> {
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        out.push((render(rt, &i.name, ignore)?, render(rt, &i.value, ignore)?));
    }
    Ok(out)
}

/// Header names and values rendered for a message, a few kept inline.
type Headers = SmallVec<[(HeaderName, HeaderValue); 4]>;

/// Renders header entries into header names and values.
fn render_headers<R: Runtime>(
    rt: &R,
    items: &[NamedTemplate],
    ignore: bool,
) -> Result<Headers, Fault> {
    let mut out = Headers::new();
    for i in items {
        let value = render(rt, &i.value, ignore)?;
        // A fixed name was parsed when the policy was built.
        let pair = match &i.header {
            Some(name) => (name.clone(), header_value(name.as_str(), value)?),
            None => {
                let name = render(rt, &i.name, ignore)?;
                let n = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| cannot_set_header(&name))?;
                (n, header_value(&name, value)?)
            }
        };
        out.push(pair);
    }
    Ok(out)
}

/// The rendered text as a header value, its bytes taken without a copy.
fn header_value(name: &str, value: String) -> Result<HeaderValue, Fault> {
    HeaderValue::try_from(value).map_err(|_| cannot_set_header(name))
}

fn cannot_set_header(name: &str) -> Fault {
    Fault::new(
        "steps.assignmessage.SetVariableFailed",
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Cannot set header `{name}`"),
    )
}

fn params_of(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn encode_params(params: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn select(sel: &Selection, name: &str) -> bool {
    match sel {
        Selection::None => false,
        Selection::All => true,
        Selection::Named(n) => n.iter().any(|x| x.eq_ignore_ascii_case(name)),
    }
}

/// Where AssignMessage operations apply.
#[derive(Clone, PartialEq, Eq)]
enum Target {
    Request,
    Response,
    /// A message variable other than `request` and `response` (`CustomReq`): kept on the
    /// exchange for later policies, its fields readable as `CustomReq.header.…`.
    Named(String),
    /// RaiseFault's or ServiceCallout's message.
    Detached,
}

/// A new, empty message (a `GET` without path, or a `200` response).
fn new_message() -> Message {
    Message::response(StatusCode::OK)
}

/// Applies Copy, Remove, Add, Set, AssignVariable in that order. With `raise`, the
/// operations build that message (RaiseFault's FaultResponse).
pub(crate) fn apply_ops<R: Runtime>(
    rt: &mut R,
    ops: &MessageOps,
    ignore: bool,
    mut raise: Option<&mut Message>,
) -> Result<(), Fault> {
    // The request is read through `request_mut` below, which fills in its path and query
    // first: a policy changing only the response does not copy them.
    let current = if rt.is_response_side() {
        Target::Response
    } else {
        Target::Request
    };
    let (target, create_new) = match (&raise, &ops.assign_to) {
        (Some(_), _) => (Target::Detached, false),
        (None, Some(a)) => {
            let t = match a.variable.as_deref().map(str::trim) {
                Some("request") => Target::Request,
                Some("response") => Target::Response,
                Some("message") => current,
                Some(name) => Target::Named(name.to_owned()),
                None => match a.message_type {
                    MessageType::Request => Target::Request,
                    MessageType::Response => Target::Response,
                },
            };
            (t, a.create_new)
        }
        (None, None) => (current, false),
    };
    // A named message starts from its last state unless a new one is created.
    let mut scratch = match &target {
        Target::Named(name) if !create_new => rt
            .state()
            .named_message(name)
            .cloned()
            .unwrap_or_else(new_message),
        Target::Named(_) => new_message(),
        _ => Message::response(StatusCode::OK),
    };
    // `createNew` builds a new request or response that replaces the current one
    // completely when the policy is done (reads until then see the old one).
    let replace = create_new && matches!(target, Target::Request | Target::Response);
    if replace && target == Target::Request {
        // The path stays so that the target call still has one.
        scratch.path = rt.request_mut().path.clone();
    }
    if target == Target::Response && rt.response().is_none() {
        *rt.response_mut() = Some(Message::response(StatusCode::OK));
    }
    macro_rules! msg {
        () => {
            match (&mut raise, &target) {
                (Some(m), _) => &mut **m,
                (None, _) if replace => &mut scratch,
                (None, Target::Request) => rt.request_mut(),
                (None, Target::Response) => rt.response_mut().as_mut().unwrap_or(&mut scratch),
                (None, Target::Named(_) | Target::Detached) => &mut scratch,
            }
        };
    }
    if let Some(copy) = &ops.copy {
        let source = match copy.source.as_deref().map(str::trim) {
            Some("response") => rt.response().cloned(),
            None | Some("request") => Some(rt.request_mut().clone()),
            Some("message") if rt.is_response_side() => rt.response().cloned(),
            Some("message") => Some(rt.request_mut().clone()),
            Some(name) => rt.state().named_message(name).cloned(),
        };
        let source = match source {
            Some(m) => m,
            None if ignore => Message::response(StatusCode::OK),
            None => return Err(unresolved(copy.source.as_deref().unwrap_or("response"))),
        };
        let m = msg!();
        for (k, v) in source.headers.iter() {
            if select(&copy.headers, k.as_str()) {
                m.headers.insert(k.clone(), v.clone());
            }
        }
        if !copy.query_params.is_none() {
            let mut mine = params_of(m.query.as_deref());
            for (k, v) in params_of(source.query.as_deref()) {
                if select(&copy.query_params, &k) {
                    mine.retain(|(x, _)| x != &k);
                    mine.push((k, v));
                }
            }
            m.query = Some(encode_params(&mine)).filter(|q| !q.is_empty());
        }
        if copy.payload {
            m.body = source.body.clone();
            if let Some(ct) = source.headers.get(CONTENT_TYPE) {
                m.headers.insert(CONTENT_TYPE, ct.clone());
            }
        }
        if copy.verb {
            m.method = source.method.clone();
        }
        if copy.path {
            m.path = source.path.clone();
        }
        if copy.version {
            m.version = source.version;
        }
        if copy.status_code {
            m.status = source.status;
        }
        if copy.reason_phrase {
            m.reason = source
                .reason
                .clone()
                .or_else(|| source.status.canonical_reason().map(str::to_owned));
        }
        if !copy.form_params.is_none() {
            let mut mine = params_of(std::str::from_utf8(&m.body).ok());
            for (k, v) in params_of(std::str::from_utf8(&source.body).ok()) {
                if select(&copy.form_params, &k) {
                    mine.retain(|(x, _)| x != &k);
                    mine.push((k, v));
                }
            }
            m.body = Bytes::from(encode_params(&mine));
            m.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
    }
    if let Some(rm) = &ops.remove {
        let m = msg!();
        match &rm.headers {
            Selection::None => {}
            Selection::All => m.headers.clear(),
            Selection::Named(names) => {
                for n in names {
                    if let Ok(h) = HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes())
                    {
                        m.headers.remove(h);
                    }
                }
            }
        }
        if !rm.query_params.is_none() {
            let mut q = params_of(m.query.as_deref());
            q.retain(|(k, _)| !select(&rm.query_params, k));
            m.query = Some(encode_params(&q)).filter(|q| !q.is_empty());
        }
        if !rm.form_params.is_none() {
            let mut f = params_of(std::str::from_utf8(&m.body).ok());
            f.retain(|(k, _)| !select(&rm.form_params, k));
            m.body = Bytes::from(encode_params(&f));
        }
        if rm.payload {
            m.body = Bytes::new();
        }
    }
    if let Some(add) = &ops.add {
        let headers = render_headers(rt, &add.headers, ignore)?;
        let qs = render_pairs(rt, &add.query_params, ignore)?;
        let fs = render_pairs(rt, &add.form_params, ignore)?;
        let m = msg!();
        for (n, v) in headers {
            m.headers.append(n, v);
        }
        if !qs.is_empty() {
            let mut q = params_of(m.query.as_deref());
            q.extend(qs);
            m.query = Some(encode_params(&q));
        }
        if !fs.is_empty() {
            let mut f = params_of(std::str::from_utf8(&m.body).ok());
            f.extend(fs);
            m.body = Bytes::from(encode_params(&f));
            m.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
    }
    if let Some(set) = &ops.set {
        let headers = render_headers(rt, &set.headers, ignore)?;
        let qs = render_pairs(rt, &set.query_params, ignore)?;
        let fs = render_pairs(rt, &set.form_params, ignore)?;
        let payload = match &set.payload {
            Some(p) => Some((render(rt, &p.template, ignore)?, p.content_type.clone())),
            None => None,
        };
        let opt = |t: &Option<Template>| -> Result<Option<String>, Fault> {
            t.as_ref().map(|t| render(rt, t, ignore)).transpose()
        };
        let verb = opt(&set.verb)?;
        let version = opt(&set.version)?;
        let path = opt(&set.path)?;
        let status = opt(&set.status_code)?;
        let reason = opt(&set.reason_phrase)?;
        let m = msg!();
        for (n, v) in headers {
            m.headers.insert(n, v);
        }
        if !qs.is_empty() {
            let mut q = params_of(m.query.as_deref());
            for (k, v) in qs {
                q.retain(|(x, _)| x != &k);
                q.push((k, v));
            }
            m.query = Some(encode_params(&q));
        }
        if !fs.is_empty() {
            let mut f = params_of(std::str::from_utf8(&m.body).ok());
            for (k, v) in fs {
                f.retain(|(x, _)| x != &k);
                f.push((k, v));
            }
            m.body = Bytes::from(encode_params(&f));
            m.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        if let Some((body, ct)) = payload {
            m.body = Bytes::from(body);
            if let Some(v) = ct.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
                m.headers.insert(CONTENT_TYPE, v);
            }
        }
        if let Some(v) = verb.and_then(|v| http::Method::from_bytes(v.trim().as_bytes()).ok()) {
            m.method = v;
        }
        if let Some(p) = path {
            m.path = p;
        }
        match version.as_deref().map(str::trim) {
            Some("1.0" | "HTTP/1.0") => m.version = http::Version::HTTP_10,
            Some("1.1" | "HTTP/1.1") => m.version = http::Version::HTTP_11,
            Some("2" | "2.0" | "HTTP/2" | "HTTP/2.0") => m.version = http::Version::HTTP_2,
            _ => {}
        }
        if let Some(s) = status {
            match s
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
            {
                Some(s) => m.status = s,
                None => {
                    return Err(Fault::new(
                        "steps.assignmessage.SetVariableFailed",
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Invalid status code `{s}`"),
                    ));
                }
            }
        }
        if let Some(r) = reason {
            m.reason = Some(r);
        }
    }
    if target == Target::Request {
        rt.invalidate_params();
    }
    for av in &ops.assign_variables {
        let value = av.reference.as_deref().and_then(|r| rt.variable(r.trim()));
        let value = match value {
            Some(v) => Some(v),
            None => match &av.template {
                Some(t) => Some(render(rt, t, true)?),
                None => match av.template_ref.as_deref().and_then(|r| rt.variable(r)) {
                    Some(t) => Some(render(rt, &Template::parse(&t), true)?),
                    None => av.value.clone(),
                },
            },
        };
        if let Some(v) = value {
            rt.set_variable(av.name.trim(), v);
        }
    }
    if let Target::Named(name) = &target {
        publish(rt, name, &scratch);
        rt.state_mut().set_named_message(name, scratch);
    } else if replace && target == Target::Request {
        *rt.request_mut() = scratch;
        rt.invalidate_params();
    } else if replace {
        *rt.response_mut() = Some(scratch);
    }
    Ok(())
}

impl Set {
    /// The templates of `<Set>` besides its named values: the payload, verb, path,
    /// version, status code and reason phrase.
    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.payload
            .as_ref()
            .map(|p| &p.template)
            .into_iter()
            .chain(
                [
                    &self.verb,
                    &self.path,
                    &self.version,
                    &self.status_code,
                    &self.reason_phrase,
                ]
                .into_iter()
                .flatten(),
            )
    }
}

impl MessageOps {
    /// Whether applying the operations reads the request body: a template or ref naming
    /// its content or form, a payload or form parameters copied from it, or its form
    /// parameters changed.
    pub(crate) fn reads_request_body(&self) -> bool {
        let copy = self.copy.as_ref().is_some_and(|c| {
            c.payload
                || !c.form_params.is_none()
                || c.source
                    .as_deref()
                    .is_some_and(crate::vars::reads_request_body)
        });
        let remove = self
            .remove
            .as_ref()
            .is_some_and(|r| !r.form_params.is_none());
        let form = self.add.as_ref().is_some_and(|a| !a.form_params.is_empty())
            || self.set.as_ref().is_some_and(|s| !s.form_params.is_empty());
        copy || remove || form || self.names_any(crate::vars::reads_request_body)
    }

    /// Whether applying the operations may read the request's headers: a `<Copy>` (from
    /// any message, conservatively), a template or ref reading them, a template taken
    /// from a variable (unknown until run). Writing headers reads none.
    pub(crate) fn reads_request_headers(&self) -> bool {
        self.copy.is_some() || self.names_any(crate::vars::reads_request_headers)
    }

    /// Whether a template or ref of `<Add>`, `<Set>` or `<AssignVariable>` names a
    /// variable for which `var` holds; a template taken from a variable counts, being
    /// unknown until run.
    fn names_any(&self, var: fn(&str) -> bool) -> bool {
        let template = |t: &Template| t.reads(var);
        let named = |items: &[NamedTemplate]| {
            items
                .iter()
                .any(|i| template(&i.name) || template(&i.value))
        };
        let add = self
            .add
            .as_ref()
            .is_some_and(|a| named(&a.headers) || named(&a.query_params) || named(&a.form_params));
        let set = self.set.as_ref().is_some_and(|s| {
            named(&s.headers)
                || named(&s.query_params)
                || named(&s.form_params)
                || s.templates().any(template)
        });
        let assign = self.assign_variables.iter().any(|a| {
            a.reference.as_deref().is_some_and(var)
                || a.template_ref.is_some()
                || a.template.as_ref().is_some_and(template)
        });
        add || set || assign
    }

    /// The variables the operations set: AssignVariable names and a named AssignTo.
    pub(crate) fn variables_set(&self) -> Vec<String> {
        self.assign_variables
            .iter()
            .map(|a| a.name.clone())
            .chain(self.assign_to.as_ref().and_then(|a| a.variable.clone()))
            .collect()
    }
}
