//! `<OASValidation>`: validates the request against an OpenAPI 3 specification from the
//! bundle's `resources/oas/` (JSON or YAML): the operation (path and verb), its
//! parameters (path, query, header: presence and type) and, with
//! `<ValidateMessageBody>` (the default), a JSON body against the operation's schema.
//! A mismatch is `steps.oasvalidation.Failed` (400) naming the check that failed.
//!
//! Schemas support `type`, `enum`, `required`, `properties`, `additionalProperties:
//! false`, `items`, `minLength`/`maxLength`, `minimum`/`maximum`, `minItems`/`maxItems`,
//! `allOf`/`anyOf`/`oneOf` and local `$ref`s; other keywords are not checked. Only the
//! request is validated (`<Source>response</Source>` is accepted and checks nothing).

use http::StatusCode;
use serde_json::Value as Json;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

/// Deepest schema nesting or `$ref` chain followed.
const MAX_DEPTH: usize = 32;

/// `<OASValidation>`.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct OasValidation {
    /// `<Source>`: `request` (default) or `response`.
    pub source: String,
    /// `<OASResource>`: `oas://spec.yaml`.
    pub resource: Option<String>,
    /// `<Options><ValidateMessageBody>` (default true).
    pub validate_body: bool,
    /// `<Options><AllowUnspecifiedParameters><Query>` (default true).
    pub allow_unspecified_query: bool,
    /// `<Options><AllowUnspecifiedParameters><Header>` (default true).
    pub allow_unspecified_headers: bool,
    /// The specification, parsed, as the bundle loader attached it
    /// ([`OasValidation::attach`]).
    pub spec: Option<Json>,
}

/// The file name of an `oas://name` resource URL.
pub fn resource_name(url: &str) -> &str {
    url.trim().strip_prefix("oas://").unwrap_or(url.trim())
}

/// Parses a specification file: JSON, else YAML.
///
/// # Errors
/// The YAML parser's message when the text is neither.
pub fn parse_spec(text: &str) -> Result<Json, String> {
    if let Ok(v) = serde_json::from_str::<Json>(text) {
        return Ok(v);
    }
    serde_yaml_ng::from_str::<Json>(text).map_err(|e| e.to_string())
}

impl OasValidation {
    /// Attaches the specification with `lookup` giving a `resources/oas/` file's text by
    /// name. `Err` with the resource URL when it is missing, or with the parse error.
    ///
    /// # Errors
    /// The missing resource, or why the file is not JSON or YAML.
    pub fn attach(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let Some(url) = &self.resource else {
            return Ok(());
        };
        let Some(text) = lookup(resource_name(url)) else {
            return Err(format!(
                "`{url}` is not in the bundle's resources/oas/; the policy faults when reached"
            ));
        };
        self.spec = Some(parse_spec(&text).map_err(|e| format!("`{url}` does not parse: {e}"))?);
        Ok(())
    }
}

fn oas_validation(cx: &mut Cx<'_>, el: &Element) -> OasValidation {
    cx.known_policy(el, &["Source", "OASResource", "Options"]);
    let resource = cx.child_text(el, "OASResource");
    if resource.is_none() {
        cx.error(
            el.offset,
            "OASValidation needs `<OASResource>oas://...</OASResource>`",
        );
    }
    let options = el.child("Options");
    let allow = options.and_then(|o| o.child("AllowUnspecifiedParameters"));
    let source = cx
        .child_text(el, "Source")
        .unwrap_or_else(|| "request".to_owned());
    let mut flag = |parent: Option<&Element>, name: &str| match parent.and_then(|p| p.child(name)) {
        Some(e) => cx.bool_text(e, true),
        None => true,
    };
    OasValidation {
        validate_body: flag(options, "ValidateMessageBody"),
        allow_unspecified_query: flag(allow, "Query"),
        allow_unspecified_headers: flag(allow, "Header"),
        source,
        resource,
        spec: None,
    }
}

/// Follows a local `$ref` (`#/components/...`).
fn deref<'a>(spec: &'a Json, mut v: &'a Json) -> &'a Json {
    for _ in 0..MAX_DEPTH {
        let Some(r) = v.get("$ref").and_then(Json::as_str) else {
            return v;
        };
        let Some(ptr) = r.strip_prefix('#') else {
            return v;
        };
        match spec.pointer(ptr) {
            Some(t) => v = t,
            None => return v,
        }
    }
    v
}

/// Checks `value` against `schema`; the first problem, with its JSON path.
fn check(spec: &Json, schema: &Json, value: &Json, at: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let schema = deref(spec, schema);
    if let Some(all) = schema.get("allOf").and_then(Json::as_array) {
        for s in all {
            check(spec, s, value, at, depth + 1)?;
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(any) = schema.get(key).and_then(Json::as_array)
            && !any.is_empty()
            && !any
                .iter()
                .any(|s| check(spec, s, value, at, depth + 1).is_ok())
        {
            return Err(format!("{at}: matches none of the {key} schemas"));
        }
    }
    if value.is_null() && schema.get("nullable").and_then(Json::as_bool) == Some(true) {
        return Ok(());
    }
    if let Some(t) = schema.get("type").and_then(Json::as_str) {
        let ok = match t {
            "string" => value.is_string(),
            "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "null" => value.is_null(),
            _ => true,
        };
        if !ok {
            return Err(format!("{at}: expected {t}, found {value}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Json::as_array)
        && !e.contains(value)
    {
        return Err(format!(
            "{at}: {value} is not one of {}",
            Json::Array(e.clone())
        ));
    }
    if let Some(s) = value.as_str() {
        let n = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Json::as_u64)
            .is_some_and(|m| n < m)
        {
            return Err(format!("{at}: shorter than minLength"));
        }
        if schema
            .get("maxLength")
            .and_then(Json::as_u64)
            .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: longer than maxLength"));
        }
    }
    if let Some(x) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Json::as_f64)
            .is_some_and(|m| x < m)
        {
            return Err(format!("{at}: {x} is less than the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Json::as_f64)
            .is_some_and(|m| x > m)
        {
            return Err(format!("{at}: {x} is greater than the maximum"));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if schema
            .get("minItems")
            .and_then(Json::as_u64)
            .is_some_and(|m| n < m)
        {
            return Err(format!("{at}: fewer items than minItems"));
        }
        if schema
            .get("maxItems")
            .and_then(Json::as_u64)
            .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: more items than maxItems"));
        }
        if let Some(s) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(spec, s, item, &format!("{at}[{i}]"), depth + 1)?;
            }
        }
    }
    if let Some(obj) = value.as_object() {
        for r in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && !obj.contains_key(r)
            {
                return Err(format!("{at}: required property `{r}` is missing"));
            }
        }
        let props = schema.get("properties").and_then(Json::as_object);
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(spec, s, v, &format!("{at}.{k}"), depth + 1)?,
                None => {
                    if schema.get("additionalProperties") == Some(&Json::Bool(false)) {
                        return Err(format!("{at}: property `{k}` is not allowed"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A parameter's text as the JSON its schema expects.
fn typed(spec: &Json, schema: Option<&Json>, text: &str) -> Json {
    let t = schema
        .map(|s| deref(spec, s))
        .and_then(|s| s.get("type"))
        .and_then(Json::as_str);
    match t {
        Some("integer" | "number") => serde_json::from_str::<Json>(text)
            .ok()
            .filter(Json::is_number)
            .unwrap_or_else(|| Json::String(text.to_owned())),
        Some("boolean") => match text {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => Json::String(text.to_owned()),
        },
        _ => Json::String(text.to_owned()),
    }
}

/// Matches `path` against a template such as `/pets/{id}`; the path parameters.
fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let t: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (ts, ps) in t.iter().zip(&p) {
        if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if ps.is_empty() {
                return None;
            }
            params.push((name.to_owned(), (*ps).to_owned()));
        } else if ts != ps {
            return None;
        }
    }
    Some(params)
}

/// What the validation reads from the request.
pub struct RequestView<'a> {
    /// The path to match (the proxy path suffix).
    pub path: &'a str,
    /// The verb, upper case.
    pub method: &'a str,
    /// Query parameters.
    pub query: &'a [(String, String)],
    /// Headers (names lower case) and values.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

impl std::fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestView")
            .field("path", &self.path)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Validates a request against `spec`: `Err` with the reason of the first mismatch.
///
/// # Errors
/// Why the request does not match the specification.
pub fn validate(spec: &Json, config: &OasValidation, req: &RequestView<'_>) -> Result<(), String> {
    let paths = spec
        .get("paths")
        .and_then(Json::as_object)
        .ok_or("the specification has no paths")?;
    let found = paths
        .iter()
        .find_map(|(t, item)| match_path(t, req.path).map(|p| (t, item, p)));
    let Some((template, item, path_params)) = found else {
        return Err(format!(
            "no path of the specification matches `{}`",
            req.path
        ));
    };
    let item = deref(spec, item);
    let method = req.method.to_ascii_lowercase();
    let Some(op) = item.get(method.as_str()) else {
        return Err(format!("`{template}` has no {} operation", req.method));
    };
    let params: Vec<&Json> = item
        .get("parameters")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .chain(
            op.get("parameters")
                .and_then(Json::as_array)
                .into_iter()
                .flatten(),
        )
        .map(|p| deref(spec, p))
        .collect();
    let mut known_query = Vec::new();
    for p in &params {
        let name = p.get("name").and_then(Json::as_str).unwrap_or("");
        let location = p.get("in").and_then(Json::as_str).unwrap_or("");
        let required = p
            .get("required")
            .and_then(Json::as_bool)
            .unwrap_or(location == "path");
        let values: Vec<String> = match location {
            "path" => path_params
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect(),
            "query" => {
                known_query.push(name);
                req.query
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .collect()
            }
            "header" => (req.header)(&name.to_ascii_lowercase())
                .into_iter()
                .collect(),
            _ => continue,
        };
        if values.is_empty() {
            if required {
                return Err(format!("required {location} parameter `{name}` is missing"));
            }
            continue;
        }
        if let Some(schema) = p.get("schema") {
            for v in &values {
                let value = typed(spec, Some(schema), v);
                check(
                    spec,
                    schema,
                    &value,
                    &format!("{location} parameter `{name}`"),
                    0,
                )?;
            }
        }
    }
    if !config.allow_unspecified_query
        && let Some((k, _)) = req
            .query
            .iter()
            .find(|(k, _)| !known_query.contains(&k.as_str()))
    {
        return Err(format!("query parameter `{k}` is not in the specification"));
    }
    if let Some(body) = op.get("requestBody").map(|b| deref(spec, b)) {
        let required = body
            .get("required")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        if req.body.is_empty() {
            if required {
                return Err("the request body is required".to_owned());
            }
            return Ok(());
        }
        if !config.validate_body {
            return Ok(());
        }
        let ct = req
            .content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let content = body.get("content").and_then(Json::as_object);
        let media = content.and_then(|c| c.get(&ct).or_else(|| c.get("*/*")));
        let Some(media) = media else {
            return Err(format!("content type `{ct}` is not in the specification"));
        };
        if ct.ends_with("json")
            && let Some(schema) = media.get("schema")
        {
            let v: Json = serde_json::from_slice(req.body)
                .map_err(|e| format!("the body is not JSON: {e}"))?;
            check(spec, schema, &v, "body", 0)?;
        }
    }
    Ok(())
}

/// The OASValidation policy type.
#[derive(Debug)]
pub(crate) struct OasValidationPolicy;

impl PolicyType for OasValidationPolicy {
    type Config = Box<OasValidation>;
    type Compiled = (String, Box<OasValidation>);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Box<OasValidation> {
        Box::new(oas_validation(cx, el))
    }

    fn compile(c: &Box<OasValidation>, cx: &BuildCx<'_>) -> Result<Self::Compiled, CompileError> {
        Ok((cx.name.to_owned(), c.clone()))
    }

    fn run<R: Runtime>(c: &Self::Compiled, rt: &mut R) -> Outcome {
        let (name, cfg) = c;
        let resource = cfg.resource.as_deref().unwrap_or("");
        let Some(spec) = &cfg.spec else {
            return Outcome::Fault(Fault::new(
                "steps.oasvalidation.ResourceNotFound",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("OASValidation {name}: resource \"{resource}\" is not in the bundle"),
            ));
        };
        if !cfg.source.eq_ignore_ascii_case("request") {
            return Outcome::Continue;
        }
        let req = rt.request();
        let header = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let view = RequestView {
            path: rt.path_suffix(),
            method: req.method.as_str(),
            query: rt.query_params(),
            header: &header,
            content_type: req
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            body: &req.body,
        };
        match validate(spec, cfg, &view) {
            Ok(()) => Outcome::Continue,
            Err(why) => Outcome::Fault(Fault::new(
                "steps.oasvalidation.Failed",
                StatusCode::BAD_REQUEST,
                format!(
                    "OASValidation {name} with resource \"{resource}\": failed with reason: \"[ERROR - {why}]\""
                ),
            )),
        }
    }
}
