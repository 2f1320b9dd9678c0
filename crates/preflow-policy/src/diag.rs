//! Source files, locations and diagnostics (errors and warnings that name file, line and
//! column).

use std::fmt;
use std::sync::Arc;

/// The text of one file with its name, able to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct Source {
    name: Arc<str>,
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    /// A source named `name` (as it should appear in messages) holding `text`.
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The file name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shared file name.
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The location of byte `offset` (clamped to the text and to a character boundary).
    pub fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while offset > 0 && !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let line_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        Location {
            file: Arc::clone(&self.name),
            offset,
            line: line_index + 1,
            column,
        }
    }

    /// The text of the 1-based `line`, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(self.text.len());
        let rest = self.text.get(start..).unwrap_or("");
        rest.split('\n').next().unwrap_or("").trim_end_matches('\r')
    }

    /// An error at byte `offset`.
    pub fn error(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self, Severity::Error, offset, message)
    }

    /// A warning at byte `offset`.
    pub fn warning(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self, Severity::Warning, offset, message)
    }
}

/// A place in a file: byte offset, 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file name as it appears in messages.
    pub file: Arc<str>,
    /// Byte offset in the file.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Location {
    /// A location for a whole file, when no position inside it applies.
    pub fn file_start(file: impl Into<Arc<str>>) -> Self {
        Self {
            file: file.into(),
            offset: 0,
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Location {
    /// `file:line:column`, the file name with non-printable characters escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", printable(&self.file), self.line, self.column)
    }
}

/// `text` as it may be shown on a terminal: control characters (line breaks and tabs
/// included) and invisible formatting characters escaped as `\u{1b}`. Every diagnostic
/// goes through it when displayed, since file names, zip entry names and element text can
/// hold any bytes.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The bundle loads, but something looks wrong or is not supported.
    Warning,
    /// The bundle is not valid; Apigee would refuse to deploy it or the engine cannot run it.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A problem found while loading or checking a bundle.
///
/// Displays as `file:line:column: error|warning: message`; [`Diagnostic::render`] adds the
/// source line with a caret and the hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where.
    pub location: Location,
    /// What is wrong, lowercase, user text in backticks.
    pub message: String,
    /// How to fix it, when there is a likely fix.
    pub hint: Option<String>,
    /// The source line holding the location (empty when there is none).
    pub line_text: String,
    /// The stable id of the check that found it (`TLS001`…), when it has one; see the
    /// rule catalogue of `preflow check`.
    pub rule: Option<&'static str>,
}

impl Diagnostic {
    /// A diagnostic at byte `offset` of `source`.
    pub fn new(
        source: &Source,
        severity: Severity,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let location = source.location(offset);
        let line_text = source.line_text(location.line).to_owned();
        Self {
            severity,
            location,
            message: message.into(),
            hint: None,
            line_text,
            rule: None,
        }
    }

    /// A diagnostic about a whole file (or a file that could not be read).
    pub fn for_file(
        file: impl Into<Arc<str>>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            location: Location::file_start(file),
            message: message.into(),
            hint: None,
            line_text: String::new(),
            rule: None,
        }
    }

    /// A diagnostic at a known location, without the source line.
    pub fn at(location: Location, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            location,
            message: message.into(),
            hint: None,
            line_text: String::new(),
            rule: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the id of the rule that found it.
    #[must_use]
    pub fn with_rule(mut self, rule: &'static str) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The one-line form, then the source line with a caret under the column, then the hint.
    /// Control characters and other non-printable characters of the line are shown
    /// escaped (`\u{1b}`), and the caret still points at the right character.
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        if !self.line_text.is_empty() {
            let gutter = self.location.line.to_string();
            let pad = " ".repeat(gutter.len());
            let (line, lead) = escaped_line(&self.line_text, self.location.column);
            out.push_str(&format!("\n{pad} |\n{gutter} | {line}\n{pad} | {lead}^"));
        }
        if let Some(hint) = &self.hint {
            out.push_str("\n  = hint: ");
            out.push_str(&printable(hint));
        }
        out
    }
}

/// `line` with non-printable characters escaped, and the white space that puts a caret
/// under its 1-based character `column`.
fn escaped_line(line: &str, column: usize) -> (String, String) {
    let mut shown = String::with_capacity(line.len());
    let mut lead = String::new();
    for (i, c) in line.chars().enumerate() {
        let piece = if c == '\t' || !(c.is_control() || is_invisible(c)) {
            c.to_string()
        } else {
            c.escape_unicode().to_string()
        };
        if i + 1 < column {
            lead.extend(piece.chars().map(|p| if p == '\t' { '\t' } else { ' ' }));
        }
        shown.push_str(&piece);
    }
    (shown, lead)
}

/// Characters that print as nothing and would hide what the line holds.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(rule) => write!(
                f,
                "{}: {}[{rule}]: {}",
                self.location,
                self.severity,
                printable(&self.message)
            ),
            None => write!(
                f,
                "{}: {}: {}",
                self.location,
                self.severity,
                printable(&self.message)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let src = Source::new("a.xml", "ab\ncé d\n");
        let loc = src.location(7);
        assert_eq!((loc.line, loc.column), (2, 4));
        assert_eq!(src.line_text(2), "cé d");
        let d = src.error(7, "bad").with_hint("fix it");
        assert_eq!(d.to_string(), "a.xml:2:4: error: bad");
        assert!(d.render().contains("2 | cé d\n  |    ^"), "{}", d.render());
    }

    #[test]
    fn non_printable_bytes_are_escaped_and_the_caret_follows() {
        let src = Source::new("a.xml", "a\u{1b}b\u{feff}c");
        let d = src.warning(6, "here").with_rule("XML001");
        let text = d.render();
        assert!(
            text.starts_with("a.xml:1:5: warning[XML001]: here"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                "1 | a\\u{{1b}}b\\u{{feff}}c\n  | {}^",
                " ".repeat(16)
            )),
            "{text}"
        );
    }

    #[test]
    fn file_names_messages_and_hints_are_escaped() {
        let d = Diagnostic::for_file(
            "z.zip!/__MACOSX/._a\u{0}\u{7}\u{1b}[31m.xml",
            Severity::Error,
            "bad `\u{1b}]0;x\u{7}` here\nnext",
        )
        .with_hint("\u{202e}fix");
        let text = d.render();
        assert_eq!(
            text,
            "z.zip!/__MACOSX/._a\\u{0}\\u{7}\\u{1b}[31m.xml:1:1: error: bad `\\u{1b}]0;x\\u{7}` here\\u{a}next\n  = hint: \\u{202e}fix"
        );
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
        assert_eq!(printable("plain ✓"), "plain ✓");
    }

    #[test]
    fn offsets_past_the_end_are_clamped() {
        let src = Source::new("a.xml", "é");
        let loc = src.location(1);
        assert_eq!((loc.line, loc.column, loc.offset), (1, 1, 0));
        assert_eq!(src.location(99).column, 2);
    }
}
