//! A condition written inside a policy (AssertCondition, ResponseCache skips): compiled
//! at build time with names resolved when it runs.

use http::StatusCode;
use preflow_condition::{Compiled, Names, ParseOptions};

use crate::runtime::{Fault, Runtime};

/// A condition inside a policy.
#[derive(Debug)]
pub(crate) struct NamedCondition {
    pub(crate) text: String,
    compiled: Option<Compiled<Box<str>>>,
}

impl NamedCondition {
    pub(crate) fn new(text: &str) -> Self {
        NamedCondition {
            text: text.to_owned(),
            compiled: preflow_condition::compile(text, &ParseOptions::default(), &Names).ok(),
        }
    }

    /// Evaluates it; a condition that did not compile is a fault.
    pub(crate) fn eval<R: Runtime>(&self, rt: &R) -> Result<bool, Box<Fault>> {
        let Some(c) = &self.compiled else {
            return Err(Box::new(Fault::new(
                "messaging.runtime.InvalidCondition",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("invalid condition `{}`", self.text),
            )));
        };
        Ok(rt.eval(c))
    }
}
