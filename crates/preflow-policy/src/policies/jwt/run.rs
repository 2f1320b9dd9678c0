//! Running a JWT policy: the `jwt.{policy}.*` variables and the faults.

use crate::parse::Cx;
use crate::policies::source::status;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Fault, Outcome, Runtime};
use crate::xml::Element;

use super::{Jwt, JwtInputs, JwtOperation, decode, generate, source_token, verify};

fn run<R: Runtime>(rt: &mut R, name: &str, cfg: &Jwt) -> Outcome {
    let prefix = format!("jwt.{name}");
    let now = rt.now_secs();
    let result = {
        let lookup = |n: &str| rt.variable(n);
        let jwks = |uri: &str| rt.env().resources.jwks.get(uri).cloned();
        let inputs = JwtInputs {
            lookup: &lookup,
            jwks_for_uri: &jwks,
            now,
        };
        match cfg.operation {
            JwtOperation::Generate => {
                let id = format!("{:032x}", rand::random::<u128>());
                generate(cfg, &inputs, &id).map(|out| (out.decoded, Some(out.token)))
            }
            JwtOperation::Verify => source_token(cfg, &lookup)
                .and_then(|t| verify(cfg, &t, &inputs))
                .map(|d| (Some(d), None)),
            JwtOperation::Decode => source_token(cfg, &lookup)
                .and_then(|t| decode(&t))
                .map(|d| (Some(d), None)),
        }
    };
    match result {
        Ok((decoded, token)) => {
            if let Some(d) = decoded {
                for (k, v) in d.variables(now) {
                    rt.set_variable(&format!("{prefix}.{k}"), v);
                }
            }
            if let Some(t) = token {
                let out = cfg
                    .output_variable
                    .clone()
                    .unwrap_or_else(|| format!("{prefix}.generated_jwt"));
                rt.set_variable(&out, t);
            }
            rt.set_variable(&format!("{prefix}.valid"), "true".into());
            rt.set_variable("JWT.failed", "false".into());
            Outcome::Continue
        }
        Err(e) => {
            rt.set_variable(&format!("{prefix}.valid"), "false".into());
            rt.set_variable(&format!("{prefix}.error"), e.message.clone());
            // Every JWT policy sets the same `JWT.failed` on failure.
            rt.set_variable("JWT.failed", "true".into());
            Outcome::Fault(Fault::new(
                e.fault.error_code(),
                status(e.fault.status()),
                e.message,
            ))
        }
    }
}

/// The JWT policy type: `<VerifyJWT>`, `<GenerateJWT>` and `<DecodeJWT>`.
#[derive(Debug)]
pub(crate) struct JwtPolicy;

impl PolicyType for JwtPolicy {
    type Config = Box<Jwt>;
    type Compiled = (String, Box<Jwt>);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> Box<Jwt> {
        let operation = match el.name.as_str() {
            "VerifyJWT" => JwtOperation::Verify,
            "GenerateJWT" => JwtOperation::Generate,
            _ => JwtOperation::Decode,
        };
        Box::new(super::jwt(cx, el, operation))
    }

    fn compile(config: &Box<Jwt>, cx: &BuildCx<'_>) -> Result<Self::Compiled, CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &Self::Compiled, rt: &mut R) -> Outcome {
        run(rt, &c.0, &c.1)
    }

    fn variables_set(j: &Box<Jwt>) -> Vec<String> {
        j.output_variable
            .iter()
            .cloned()
            .chain(std::iter::once("JWT.failed".to_owned()))
            .collect()
    }
}
