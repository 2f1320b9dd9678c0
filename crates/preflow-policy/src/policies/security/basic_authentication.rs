//! `<BasicAuthentication>`: encodes or decodes an HTTP Basic credential.

use base64::Engine as _;
use http::StatusCode;

use crate::parse::Cx;
use crate::policy::variable_of;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

/// BasicAuthentication `<Operation>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicAuthOperation {
    /// Writes `Basic base64(user:password)` to `AssignTo`.
    Encode,
    /// Parses `Source` into the `User` and `Password` variables.
    Decode,
}

/// `<AssignTo createNew>variable</AssignTo>` of BasicAuthentication.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssignToVariable {
    /// The variable written.
    pub variable: String,
    /// `createNew`, default false.
    pub create_new: bool,
}

/// `<BasicAuthentication>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BasicAuthentication {
    /// `<Operation>`; `None` when missing or invalid (an error).
    pub operation: Option<BasicAuthOperation>,
    /// `<IgnoreUnresolvedVariables>`, default false.
    pub ignore_unresolved_variables: bool,
    /// `<User ref>`: source (Encode) or target (Decode) variable.
    pub user: Option<String>,
    /// `<Password ref>`.
    pub password: Option<String>,
    /// `<Source>` (Decode).
    pub source: Option<String>,
    /// `<AssignTo>` (Encode).
    pub assign_to: Option<AssignToVariable>,
}

fn parse(cx: &mut Cx<'_>, el: &Element) -> BasicAuthentication {
    cx.known_policy(
        el,
        &[
            "Operation",
            "IgnoreUnresolvedVariables",
            "User",
            "Password",
            "Source",
            "AssignTo",
        ],
    );
    let operation = match el.child("Operation") {
        Some(op) => match op.text().to_ascii_lowercase().as_str() {
            "encode" => Some(BasicAuthOperation::Encode),
            "decode" => Some(BasicAuthOperation::Decode),
            other => {
                cx.error_hint(
                    op.text_offset(),
                    format!("invalid BasicAuthentication operation `{other}`"),
                    "use `Encode` or `Decode`",
                );
                None
            }
        },
        None => {
            cx.error(el.offset, "BasicAuthentication needs an `<Operation>`");
            None
        }
    };
    let config = BasicAuthentication {
        operation,
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
        user: el.child("User").and_then(variable_of),
        password: el.child("Password").and_then(variable_of),
        source: cx.child_text(el, "Source"),
        assign_to: el.child("AssignTo").and_then(|a| {
            Some(AssignToVariable {
                variable: a.non_empty_text()?.to_owned(),
                create_new: cx.attr_bool(a, "createNew", false),
            })
        }),
    };
    if config.user.is_none() {
        cx.error(el.offset, "BasicAuthentication needs a `<User ref>`");
    }
    if config.password.is_none() {
        cx.error(el.offset, "BasicAuthentication needs a `<Password ref>`");
    }
    match operation {
        Some(BasicAuthOperation::Decode) if config.source.is_none() => {
            cx.error(el.offset, "BasicAuthentication Decode needs a `<Source>`");
        }
        Some(BasicAuthOperation::Encode) if config.assign_to.is_none() => {
            cx.error(
                el.offset,
                "BasicAuthentication Encode needs an `<AssignTo>`",
            );
        }
        _ => {}
    }
    config
}

fn run<R: Runtime>(rt: &mut R, b: &BasicAuthentication) -> Outcome {
    let unresolved = |v: &str| {
        Outcome::Fault(Fault::new(
            "steps.basicauthentication.UnresolvedVariable",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Unresolved variable : {v}"),
        ))
    };
    match b.operation {
        Some(BasicAuthOperation::Encode) => {
            let user_var = b.user.as_deref().unwrap_or("");
            let pass_var = b.password.as_deref().unwrap_or("");
            let user = rt.variable(user_var);
            let pass = rt.variable(pass_var);
            let (user, pass) = match (user, pass) {
                (Some(u), Some(p)) => (u, p),
                (u, p) if b.ignore_unresolved_variables => {
                    (u.unwrap_or_default(), p.unwrap_or_default())
                }
                (None, _) => return unresolved(user_var),
                (_, None) => return unresolved(pass_var),
            };
            let encoded = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            let target = b
                .assign_to
                .as_ref()
                .map_or("request.header.Authorization", |a| a.variable.as_str());
            rt.set_variable(target.trim(), encoded);
            Outcome::Continue
        }
        Some(BasicAuthOperation::Decode) => {
            let source = b
                .source
                .as_deref()
                .unwrap_or("request.header.Authorization");
            let invalid = || {
                Outcome::Fault(Fault::new(
                    "steps.basicauthentication.InvalidBasicAuthenticationSource",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Source variable : {source} for basic authentication decode policy is not valid"
                    ),
                ))
            };
            let Some(value) = rt.variable(source.trim()) else {
                return invalid();
            };
            let v = value.trim();
            let Some(encoded) = v
                .get(..6)
                .filter(|p| p.eq_ignore_ascii_case("basic "))
                .and_then(|_| v.get(6..))
            else {
                return invalid();
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
                return invalid();
            };
            let Ok(text) = String::from_utf8(bytes) else {
                return invalid();
            };
            let Some((user, pass)) = text.split_once(':') else {
                return invalid();
            };
            if let Some(u) = &b.user {
                rt.set_variable(u.trim(), user.to_owned());
            }
            if let Some(p) = &b.password {
                rt.set_variable(p.trim(), pass.to_owned());
            }
            Outcome::Continue
        }
        None => Outcome::Fault(Fault::new(
            "steps.basicauthentication.InvalidOperation",
            StatusCode::INTERNAL_SERVER_ERROR,
            "BasicAuthentication has no valid Operation",
        )),
    }
}

/// The BasicAuthentication policy type.
#[derive(Debug)]
pub(crate) struct BasicAuthenticationPolicy;

impl PolicyType for BasicAuthenticationPolicy {
    type Config = BasicAuthentication;
    type Compiled = BasicAuthentication;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> BasicAuthentication {
        parse(cx, el)
    }

    fn compile(
        config: &BasicAuthentication,
        cx: &BuildCx<'_>,
    ) -> Result<BasicAuthentication, CompileError> {
        let _ = cx;
        Ok(config.clone())
    }

    fn run<R: Runtime>(c: &BasicAuthentication, rt: &mut R) -> Outcome {
        run(rt, c)
    }

    fn variables_set(b: &BasicAuthentication) -> Vec<String> {
        if b.operation == Some(BasicAuthOperation::Decode) {
            b.user.iter().chain(&b.password).cloned().collect()
        } else {
            Vec::new()
        }
    }

    fn reads_request_body(b: &BasicAuthentication) -> bool {
        [&b.user, &b.password, &b.source]
            .into_iter()
            .flatten()
            .any(|v| crate::vars::reads_request_body(v))
    }
}
