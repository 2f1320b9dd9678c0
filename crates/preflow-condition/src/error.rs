//! Errors: a parse error or a compile error, each with a span, a line and column, an
//! optional hint, and a rendering of the offending text with a caret.

use crate::ast::Span;
use std::fmt;

/// Any error from parsing or compiling a condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a valid condition.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The condition parsed but cannot be compiled (for example an invalid regex).
    #[error(transparent)]
    Compile(#[from] CompileError),
}

impl Error {
    /// The location of the error in the source text.
    pub fn location(&self) -> &Location {
        match self {
            Error::Parse(e) => &e.location,
            Error::Compile(e) => &e.location,
        }
    }

    /// The source text with the offending part marked by carets, plus the hint if any.
    pub fn render(&self, source: &str) -> String {
        match self {
            Error::Parse(e) => e.render(source),
            Error::Compile(e) => e.render(source),
        }
    }
}

/// Where in the source text an error is: byte span plus 1-based line and column (columns
/// count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    span: Span,
    line: usize,
    column: usize,
}

impl Location {
    /// Locates `span` in `source`. Offsets past the end or inside a character are clamped.
    pub fn new(source: &str, span: Span) -> Self {
        let start = floor_char_boundary(source, span.start);
        let end = floor_char_boundary(source, span.end.max(start));
        let before = source.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = source
            .get(line_start..start)
            .map_or(0, |s| s.chars().count())
            + 1;
        Self {
            span: Span::new(start, end),
            line,
            column,
        }
    }

    /// Byte span.
    pub fn span(&self) -> Span {
        self.span
    }

    /// 1-based line.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column, in characters.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The line holding the start of the span, with carets under the span.
    fn render(&self, source: &str) -> String {
        let line_start = source
            .get(..self.span.start)
            .and_then(|s| s.rfind('\n'))
            .map_or(0, |i| i + 1);
        let rest = source.get(line_start..).unwrap_or("");
        let text = rest.split('\n').next().unwrap_or("").trim_end_matches('\r');
        let line_end = line_start + text.len();
        let lead = self.column.saturating_sub(1);
        let marked_end = self.span.end.min(line_end).max(self.span.start);
        let width = source
            .get(self.span.start..marked_end)
            .map_or(0, |s| s.chars().count())
            .max(1);
        let gutter = self.line.to_string();
        format!(
            "{gutter} | {text}\n{pad} | {spaces}{carets}",
            pad = " ".repeat(gutter.len()),
            spaces = " ".repeat(lead),
            carets = "^".repeat(width)
        )
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A condition that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
    hint: Option<String>,
    location: Location,
}

/// A condition that parses but cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    message: String,
    hint: Option<String>,
    location: Location,
}

macro_rules! located_error {
    ($ty:ident) => {
        impl $ty {
            /// An error at `span` of `source`.
            pub(crate) fn new(source: &str, span: Span, message: impl Into<String>) -> Self {
                Self {
                    message: message.into(),
                    hint: None,
                    location: Location::new(source, span),
                }
            }

            /// Adds a hint on how to fix the text.
            #[must_use]
            pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
                self.hint = Some(hint.into());
                self
            }

            /// What is wrong, lowercase, user text in backticks.
            pub fn message(&self) -> &str {
                &self.message
            }

            /// How to fix it, when there is a likely fix.
            pub fn hint(&self) -> Option<&str> {
                self.hint.as_deref()
            }

            /// Where it is.
            pub fn location(&self) -> &Location {
                &self.location
            }

            /// The source line with carets under the offending text, then the hint.
            pub fn render(&self, source: &str) -> String {
                let mut out = format!("error: {self}\n{}", self.location.render(source));
                if let Some(h) = &self.hint {
                    out.push_str("\nhint: ");
                    out.push_str(h);
                }
                out
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{} at line {}, column {}",
                    self.message, self.location.line, self.location.column
                )
            }
        }

        impl std::error::Error for $ty {}
    };
}

located_error!(ParseError);
located_error!(CompileError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column_in_characters() {
        let src = "a = \"é\"\n  and b ==";
        let at = src.find("==").unwrap();
        let loc = Location::new(src, Span::new(at, at + 2));
        assert_eq!((loc.line(), loc.column()), (2, 9));
    }

    #[test]
    fn renders_caret_under_span() {
        let src = "request.verb LessThan 5";
        let e = ParseError::new(src, Span::new(13, 21), "unknown operator `LessThan`")
            .with_hint("use `LesserThan`");
        let r = e.render(src);
        assert!(r.contains("1 | request.verb LessThan 5"), "{r}");
        assert!(r.contains("  |              ^^^^^^^^"), "{r}");
        assert!(r.ends_with("hint: use `LesserThan`"), "{r}");
    }
}
