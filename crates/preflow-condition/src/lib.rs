//! The Apigee condition language.
//!
//! Text is parsed by a nom parser into an [`ast::Condition`] with byte spans, then compiled
//! into a [`Compiled`] form in which variable names are resolved to host handles and every
//! pattern (Matches, MatchesPath, JavaRegex) is pre-compiled. Evaluating a compiled
//! condition allocates nothing.
//!
//! ```
//! use preflow_condition::{compile, MapVariables, Names, OwnedValue, ParseOptions};
//!
//! let text = r#"(proxy.pathsuffix MatchesPath "/OAuthToken/**") AND (request.verb = "POST")"#;
//! let compiled = compile(text, &ParseOptions::default(), &Names)?;
//! let mut vars = MapVariables::default();
//! vars.set("proxy.pathsuffix", OwnedValue::String("/OAuthToken/x".into()));
//! vars.set("request.verb", OwnedValue::String("POST".into()));
//! assert!(compiled.eval(&vars));
//! # Ok::<(), preflow_condition::Error>(())
//! ```
#![deny(missing_docs)]

pub mod ast;
mod compile;
mod error;
mod eval;
mod java_regex;
mod parse;
mod pattern;
mod print;
mod value;

pub use compile::{Compiled, MAX_DEPTH, MapVariables, Names, OwnedValue};
pub use error::{CompileError, Error, Location, ParseError};
pub use parse::{Dialect, ParseOptions, parse, parse_with};
pub use value::{Resolve, Value, Variables};

/// Parses `text` with `options` and compiles it against `resolver` in one step.
///
/// # Errors
/// A [`ParseError`] or a [`CompileError`], both locating the problem in `text`.
pub fn compile<R: Resolve>(
    text: &str,
    options: &ParseOptions,
    resolver: &R,
) -> Result<Compiled<R::Handle>, Error> {
    let cond = parse_with(text, options)?;
    Ok(cond.compile(text, resolver)?)
}

impl ast::Condition {
    /// Compiles the condition: resolves every variable name through `resolver` and
    /// pre-compiles every pattern. `source` is the text the condition was parsed from; it
    /// is used only to locate errors.
    ///
    /// # Errors
    /// A pattern that cannot compile (an invalid JavaRegex, an unbalanced `{` in a path
    /// expression) is a [`CompileError`] pointing at the pattern.
    pub fn compile<R: Resolve>(
        &self,
        source: &str,
        resolver: &R,
    ) -> Result<Compiled<R::Handle>, CompileError> {
        compile::compile(self, source, resolver)
    }
}
