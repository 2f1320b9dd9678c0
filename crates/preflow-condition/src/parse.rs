//! The nom parser. PLACEHOLDER: replaced by the parser work; returns an error until then.

use crate::ast::{Condition, Span};
use crate::error::ParseError;

/// Operator precedence rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Apigee Edge and SAP API Management: `NOT` > comparison > `AND` > `OR`.
    #[default]
    Edge,
    /// Apigee X: `OR` binds tighter than `AND`.
    ApigeeX,
}

/// Parser settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// Precedence dialect.
    pub dialect: Dialect,
    /// Longest accepted text, in bytes.
    pub max_len: usize,
    /// Deepest accepted nesting of parentheses and `NOT`.
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            dialect: Dialect::Edge,
            max_len: 64 * 1024,
            max_depth: 64,
        }
    }
}

/// Parses `text` with default options (Edge dialect).
///
/// # Errors
/// A [`ParseError`] locating the first problem, with a hint for common mistakes.
pub fn parse(text: &str) -> Result<Condition, ParseError> {
    parse_with(text, &ParseOptions::default())
}

/// Parses `text` with `options`.
///
/// # Errors
/// A [`ParseError`] locating the first problem, with a hint for common mistakes.
pub fn parse_with(text: &str, _options: &ParseOptions) -> Result<Condition, ParseError> {
    Err(ParseError::new(
        text,
        Span::new(0, 0),
        "parser not built yet",
    ))
}
