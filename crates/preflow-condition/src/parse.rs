//! The parser: a nom lexer producing one token at a time, driven by a descent parser that
//! keeps open parentheses on an explicit stack and counts nesting.
//!
//! Tokens are read on demand, so the first problem in the text is the one reported, whether
//! it is lexical (an unterminated string) or syntactic (a dangling `AND`). The parser does
//! not recurse: parentheses and `NOT`s are counted against [`ParseOptions::max_depth`], and
//! chains of `AND` and `OR` are built in loops.

use crate::ast::{Comparison, Condition, Expr, Literal, Op, Operand, Span, Variable};
use crate::error::ParseError;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while};
use nom::character::complete::{char, satisfy};
use nom::combinator::{map, not, opt, recognize};
use nom::sequence::pair;
use nom::{IResult, Parser as _};

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
    /// Deepest accepted nesting of parentheses and `NOT`. Values above
    /// [`ParseOptions::DEPTH_CEILING`] act as the ceiling: the parser itself does not
    /// recurse, but printing, compiling and dropping a tree do.
    pub max_depth: usize,
}

impl ParseOptions {
    /// The largest effective `max_depth`.
    pub const DEPTH_CEILING: usize = 256;
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
/// ```
/// let cond = preflow_condition::parse(r#"request.verb equals "GET" and not(x ~~ "a.*")"#)?;
/// assert_eq!(cond.to_string(), r#"request.verb = "GET" AND NOT (x JavaRegex "a.*")"#);
///
/// let err = preflow_condition::parse("response.status.code LessThan 500").unwrap_err();
/// assert_eq!(err.to_string(), "unknown operator `LessThan` at line 1, column 22");
/// assert_eq!(err.hint(), Some("use `LesserThan` or `<`"));
/// # Ok::<(), preflow_condition::ParseError>(())
/// ```
///
/// # Errors
/// A [`ParseError`] locating the first problem, with a hint for common mistakes.
pub fn parse(text: &str) -> Result<Condition, ParseError> {
    parse_with(text, &ParseOptions::default())
}

/// Parses `text` with `options`.
///
/// Empty or whitespace-only text is the empty condition (`expr: None`), which is true.
///
/// # Errors
/// A [`ParseError`] locating the first problem, with a hint for common mistakes.
pub fn parse_with(text: &str, options: &ParseOptions) -> Result<Condition, ParseError> {
    if text.len() > options.max_len {
        return Err(ParseError::new(
            text,
            Span::new(options.max_len, text.len()),
            format!(
                "condition is {} bytes long, longer than the limit of {} bytes",
                text.len(),
                options.max_len
            ),
        ));
    }
    let mut parser = Parser {
        src: text,
        pos: 0,
        peeked: None,
        depth: 0,
        max_depth: options.max_depth.min(ParseOptions::DEPTH_CEILING),
        dialect: options.dialect,
    };
    if parser.peek()?.tok == Tok::Eof {
        return Ok(Condition { expr: None });
    }
    let expr = parser.parse_condition()?;
    Ok(Condition { expr: Some(expr) })
}

// ---------------------------------------------------------------------------------------
// Keywords
// ---------------------------------------------------------------------------------------

/// A reserved word. Words are matched whole and case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    And,
    Or,
    Not,
    Op(Op),
    Null,
    True,
    False,
}

/// The keyword spelled by `word`, if any (case-insensitive, whole word).
pub(crate) fn keyword(word: &str) -> Option<Keyword> {
    const WORDS: &[(&str, Keyword)] = &[
        ("and", Keyword::And),
        ("or", Keyword::Or),
        ("not", Keyword::Not),
        ("equals", Keyword::Op(Op::Equals)),
        ("is", Keyword::Op(Op::Equals)),
        ("notequals", Keyword::Op(Op::NotEquals)),
        ("isnot", Keyword::Op(Op::NotEquals)),
        (
            "equalscaseinsensitive",
            Keyword::Op(Op::EqualsCaseInsensitive),
        ),
        ("greaterthan", Keyword::Op(Op::GreaterThan)),
        ("greaterthanorequals", Keyword::Op(Op::GreaterThanOrEquals)),
        ("lesserthan", Keyword::Op(Op::LesserThan)),
        ("lesserthanorequals", Keyword::Op(Op::LesserThanOrEquals)),
        ("startswith", Keyword::Op(Op::StartsWith)),
        ("matches", Keyword::Op(Op::Matches)),
        ("like", Keyword::Op(Op::Matches)),
        ("matchespath", Keyword::Op(Op::MatchesPath)),
        ("likepath", Keyword::Op(Op::MatchesPath)),
        ("javaregex", Keyword::Op(Op::JavaRegex)),
        ("null", Keyword::Null),
        ("true", Keyword::True),
        ("false", Keyword::False),
    ];
    WORDS
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(word))
        .map(|&(_, k)| k)
}

/// Whether `c` may continue an unquoted variable name.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Whether `name` can be written without single quotes: it follows the identifier
/// grammar `[A-Za-z][-A-Za-z0-9_.]*` and is not a keyword.
pub(crate) fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(is_name_char)
        && keyword(name).is_none()
}

/// A likely fix for a word written where an operator was expected.
fn misspelled_operator(word: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        ("lessthan", "use `LesserThan` or `<`"),
        ("lessthanorequals", "use `LesserThanOrEquals` or `<=`"),
        ("lessthanorequal", "use `LesserThanOrEquals` or `<=`"),
        ("lesserthanorequal", "use `LesserThanOrEquals` or `<=`"),
        ("greaterthanorequal", "use `GreaterThanOrEquals` or `>=`"),
        ("equal", "use `Equals` or `=`"),
        ("notequal", "use `NotEquals` or `!=`"),
        ("notmatches", "use `Not Matches`"),
        ("notmatchespath", "use `Not MatchesPath`"),
        ("notjavaregex", "use `Not JavaRegex`"),
        ("notstartswith", "use `Not StartsWith`"),
        ("notlike", "use `Not Like`"),
        (
            "contains",
            "there is no `Contains`; use `Matches \"*text*\"`",
        ),
        (
            "endswith",
            "there is no `EndsWith`; use `Matches \"*suffix\"`",
        ),
        (
            "matchescaseinsensitive",
            "there is no `MatchesCaseInsensitive`; use `JavaRegex \"(?i)...\"`",
        ),
    ];
    HINTS
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(word))
        .map(|&(_, h)| h)
}

// ---------------------------------------------------------------------------------------
// Tokens and the lexer
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Eof,
    LParen,
    RParen,
    And,
    Or,
    Not,
    /// A comparison operator, symbol or word.
    Op(Op),
    /// `!~`: negated Matches.
    NotMatches,
    /// An unquoted name that is not a keyword.
    Name(&'a str),
    /// `'name'`: the text between the quotes.
    Quoted(&'a str),
    /// `"text"`: the text between the quotes.
    Str(&'a str),
    /// A numeric literal as written (validated when it becomes an operand).
    Number(&'a str),
    Null,
    True,
    False,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok<'a>,
    span: Span,
    text: &'a str,
}

impl Token<'_> {
    /// How the token is named in a message.
    fn describe(&self) -> String {
        match self.tok {
            Tok::Eof => "the end of the condition".to_owned(),
            _ => format!("`{}`", shorten(self.text)),
        }
    }
}

/// `text`, cut to at most 40 characters.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX - 3).collect();
        s.push_str("...");
        s
    }
}

const NUMBER_HINT: &str =
    "numbers are written `-?digits(.digits)?` with an optional `f`, `d` or `L` suffix";

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// What the lexer recognised at the start of the input, before classification.
enum Lexeme<'a> {
    Symbol(&'a str),
    Word(&'a str),
    Number(&'a str),
    Str(&'a str),
    Quoted(&'a str),
}

fn symbol(i: &str) -> IResult<&str, &str> {
    // Longest match first. `!` before `~~` or `~/` is an infix `Not` (`x !~~ "re"`).
    alt((
        alt((
            tag(":="),
            tag("=|"),
            tag("=="),
            tag("!="),
            tag(">="),
            tag("<="),
            tag("~~"),
            tag("~/"),
            tag("&&"),
            tag("||"),
        )),
        recognize(pair(tag("!~"), not(satisfy(|c| c == '~' || c == '/')))),
        alt((
            tag("="),
            tag(">"),
            tag("<"),
            tag("~"),
            tag("!"),
            tag("("),
            tag(")"),
        )),
    ))
    .parse(i)
}

fn word(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        satisfy(|c: char| c.is_ascii_alphabetic()),
        take_while(is_name_char),
    ))
    .parse(i)
}

/// A run that starts like a number: `-`? then a digit, or a `.` followed by a digit. The
/// whole run of name characters is taken so that `20three` and `20.20.20` are reported as
/// one invalid number.
fn number(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        opt(char('-')),
        pair(
            alt((
                recognize(satisfy(|c: char| c.is_ascii_digit())),
                recognize(pair(char('.'), satisfy(|c: char| c.is_ascii_digit()))),
            )),
            take_while(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_'),
        ),
    ))
    .parse(i)
}

fn delimited_text(quote: char) -> impl Fn(&str) -> IResult<&str, &str> {
    move |i| {
        let (i, _) = char(quote).parse(i)?;
        let (i, body) = take_while(|c| c != quote).parse(i)?;
        let (i, _) = char(quote).parse(i)?;
        Ok((i, body))
    }
}

fn lexeme(i: &str) -> IResult<&str, Lexeme<'_>> {
    alt((
        map(delimited_text('"'), Lexeme::Str),
        map(delimited_text('\''), Lexeme::Quoted),
        map(number, Lexeme::Number),
        map(word, Lexeme::Word),
        map(symbol, Lexeme::Symbol),
    ))
    .parse(i)
}

// ---------------------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connective {
    And,
    Or,
}

impl Connective {
    fn token(self) -> Tok<'static> {
        match self {
            Connective::And => Tok::And,
            Connective::Or => Tok::Or,
        }
    }
}

/// `lhs CONNECTIVE rhs`, or `rhs` alone when there is no `lhs` yet.
fn join(conn: Connective, lhs: Option<Expr>, rhs: Expr) -> Expr {
    let Some(lhs) = lhs else {
        return rhs;
    };
    let span = lhs.span().to(rhs.span());
    let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
    match conn {
        Connective::And => Expr::And { lhs, rhs, span },
        Connective::Or => Expr::Or { lhs, rhs, span },
    }
}

/// The whole condition or one open pair of parentheses, while it is being parsed.
struct Group<'a> {
    /// The `(` that opened the group; `None` for the whole condition.
    open: Option<Token<'a>>,
    /// The chain of the looser connective, complete up to the last looser connective.
    outer: Option<Expr>,
    /// The chain of the tighter connective after it.
    inner: Option<Expr>,
    /// Where each `NOT` waiting for its operand starts, innermost last.
    nots: Vec<usize>,
}

impl<'a> Group<'a> {
    fn new(open: Option<Token<'a>>) -> Self {
        Self {
            open,
            outer: None,
            inner: None,
            nots: Vec::new(),
        }
    }

    /// Moves the tighter chain into the looser one.
    fn flush(&mut self, outer: Connective) {
        if let Some(inner) = self.inner.take() {
            self.outer = Some(join(outer, self.outer.take(), inner));
        }
    }

    fn finish(mut self, outer: Connective) -> Option<Expr> {
        self.flush(outer);
        self.outer
    }
}

/// The innermost open group.
fn top<'g, 'a>(root: &'g mut Group<'a>, open: &'g mut [Group<'a>]) -> &'g mut Group<'a> {
    match open.last_mut() {
        Some(g) => g,
        None => root,
    }
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset just after the last consumed token.
    pos: usize,
    peeked: Option<Token<'a>>,
    depth: usize,
    max_depth: usize,
    dialect: Dialect,
}

impl<'a> Parser<'a> {
    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.src, span, message)
    }

    fn peek(&mut self) -> Result<Token<'a>, ParseError> {
        if let Some(t) = self.peeked {
            return Ok(t);
        }
        let t = self.lex()?;
        self.peeked = Some(t);
        Ok(t)
    }

    fn bump(&mut self) -> Result<Token<'a>, ParseError> {
        let t = self.peek()?;
        self.peeked = None;
        self.pos = t.span.end;
        Ok(t)
    }

    /// Reads the token after `self.pos`.
    fn lex(&self) -> Result<Token<'a>, ParseError> {
        let rest = self.src.get(self.pos..).unwrap_or("");
        let trimmed = rest.trim_start_matches(is_space);
        let start = self.pos + (rest.len() - trimmed.len());
        if trimmed.is_empty() {
            let end = self.src.len();
            return Ok(Token {
                tok: Tok::Eof,
                span: Span::new(end, end),
                text: "",
            });
        }
        let Ok((after, lexeme)) = lexeme(trimmed) else {
            return Err(self.lex_error(trimmed, start));
        };
        let end = start + (trimmed.len() - after.len());
        let text = self.src.get(start..end).unwrap_or("");
        let span = Span::new(start, end);
        let tok = match lexeme {
            Lexeme::Str(s) => Tok::Str(s),
            Lexeme::Quoted(s) => {
                if s.is_empty() {
                    return Err(self.error(span, "empty quoted variable name `''`"));
                }
                Tok::Quoted(s)
            }
            Lexeme::Number(n) => Tok::Number(n),
            Lexeme::Word(w) => match keyword(w) {
                None => Tok::Name(w),
                Some(Keyword::And) => Tok::And,
                Some(Keyword::Or) => Tok::Or,
                Some(Keyword::Not) => Tok::Not,
                Some(Keyword::Op(op)) => Tok::Op(op),
                Some(Keyword::Null) => Tok::Null,
                Some(Keyword::True) => Tok::True,
                Some(Keyword::False) => Tok::False,
            },
            Lexeme::Symbol(s) => match s {
                ":=" => Tok::Op(Op::EqualsCaseInsensitive),
                "=|" => Tok::Op(Op::StartsWith),
                "==" | "=" => {
                    if let Some(e) = self.bad_equals(s, after, span) {
                        return Err(e);
                    }
                    Tok::Op(Op::Equals)
                }
                "!=" => Tok::Op(Op::NotEquals),
                ">=" => Tok::Op(Op::GreaterThanOrEquals),
                "<=" => Tok::Op(Op::LesserThanOrEquals),
                "~~" => Tok::Op(Op::JavaRegex),
                "~/" => Tok::Op(Op::MatchesPath),
                "!~" => Tok::NotMatches,
                "&&" => Tok::And,
                "||" => Tok::Or,
                ">" => Tok::Op(Op::GreaterThan),
                "<" => {
                    if after.starts_with('>') {
                        return Err(self
                            .error(Span::new(start, end + 1), "unknown operator `<>`")
                            .with_hint("use `!=` or `NotEquals`"));
                    }
                    Tok::Op(Op::LesserThan)
                }
                "~" => Tok::Op(Op::Matches),
                "!" => Tok::Not,
                "(" => Tok::LParen,
                _ => Tok::RParen,
            },
        };
        Ok(Token { tok, span, text })
    }

    /// `===` and `=~` are not operators.
    fn bad_equals(&self, s: &str, after: &str, span: Span) -> Option<ParseError> {
        if s == "==" && after.starts_with('=') {
            let run = after.len() - after.trim_start_matches('=').len();
            let end = span.end + run;
            let text = self.src.get(span.start..end).unwrap_or("===");
            return Some(
                self.error(
                    Span::new(span.start, end),
                    format!("unknown operator `{text}`"),
                )
                .with_hint("use `=` or `Equals`"),
            );
        }
        if s == "=" && after.starts_with('~') {
            return Some(
                self.error(Span::new(span.start, span.end + 1), "unknown operator `=~`")
                    .with_hint("use `~~` (JavaRegex) or `~` (Matches)"),
            );
        }
        None
    }

    /// The error for text at `start` that begins no token.
    fn lex_error(&self, rest: &str, start: usize) -> ParseError {
        let mut chars = rest.chars();
        let first = chars.next().unwrap_or(' ');
        let second = chars.next();
        let one = Span::new(start, start + first.len_utf8());
        match first {
            '"' => self
                .error(
                    Span::new(start, self.src.len()),
                    "unterminated string literal",
                )
                .with_hint("close the string with `\"`; a string cannot contain `\"`"),
            '\'' => self
                .error(
                    Span::new(start, self.src.len()),
                    "unterminated quoted variable name",
                )
                .with_hint("string values use double quotes: `\"...\"`"),
            '/' if second == Some('~') => self
                .error(Span::new(start, start + 2), "unknown operator `/~`")
                .with_hint("use `~/` (MatchesPath)"),
            '{' => {
                let after_brace = rest.get(1..).unwrap_or("");
                match word(after_brace) {
                    Ok((tail, name)) if tail.starts_with('}') => self
                        .error(
                            Span::new(start, start + name.len() + 2),
                            format!("variable names are not written in braces: `{{{name}}}`"),
                        )
                        .with_hint(format!("write `{name}`")),
                    _ => self
                        .error(one, "unexpected `{`")
                        .with_hint("group conditions with parentheses `(` `)`"),
                }
            }
            '}' => self.error(one, "unexpected `}`"),
            '.' if matches!(second, Some(c) if c == '.' || c.is_ascii_digit()) => {
                let run = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                    .unwrap_or(rest.len());
                let text = rest.get(..run).unwrap_or(rest);
                self.error(
                    Span::new(start, start + run),
                    format!("invalid number `{}`", shorten(text)),
                )
                .with_hint(NUMBER_HINT)
            }
            '\\' => self
                .error(one, "unexpected character `\\`")
                .with_hint("string literals have no escape sequences: write `\"...\"`"),
            '&' | '|' => self
                .error(one, format!("unexpected `{first}`"))
                .with_hint(format!("write `{first}{first}`, or use `AND` / `OR`")),
            '-' => self
                .error(one, "unexpected `-`")
                .with_hint("arithmetic is not supported; a negative number is written `-5`"),
            c if c.is_control() || c.is_whitespace() => self.error(
                one,
                format!("unexpected character `{}`", c.escape_unicode()),
            ),
            c => self.error(one, format!("unexpected character `{c}`")),
        }
    }

    fn enter(&mut self, span: Span) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.error(
                span,
                format!(
                    "conditions nest deeper than {} levels of parentheses and `NOT`",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The whole condition, without recursion: open parentheses are kept on an explicit
    /// stack of [`Group`]s, and each group builds its `AND`/`OR` chains left to right.
    fn parse_condition(&mut self) -> Result<Expr, ParseError> {
        let (outer, inner) = match self.dialect {
            Dialect::Edge => (Connective::Or, Connective::And),
            Dialect::ApigeeX => (Connective::And, Connective::Or),
        };
        let mut root = Group::new(None);
        let mut open: Vec<Group<'a>> = Vec::new();
        // The last token consumed, named when an operand is missing after it.
        let mut last: Option<Token<'a>> = None;
        loop {
            // Expecting an operand: any `NOT`s and `(`s, then a comparison or bare operand.
            let t = self.peek()?;
            let mut operand = match t.tok {
                Tok::Not => {
                    self.enter(t.span)?;
                    self.bump()?;
                    top(&mut root, &mut open).nots.push(t.span.start);
                    last = Some(t);
                    continue;
                }
                Tok::LParen => {
                    self.enter(t.span)?;
                    self.bump()?;
                    open.push(Group::new(Some(t)));
                    last = Some(t);
                    continue;
                }
                Tok::Name(_)
                | Tok::Quoted(_)
                | Tok::Str(_)
                | Tok::Number(_)
                | Tok::Null
                | Tok::True
                | Tok::False => {
                    self.bump()?;
                    self.parse_comparison(t)?
                }
                _ => return Err(self.expected_condition(t, last)),
            };
            // An operand is complete: apply its `NOT`s, close parentheses, then expect a
            // connective or the end.
            loop {
                let group = top(&mut root, &mut open);
                while let Some(start) = group.nots.pop() {
                    let span = Span::new(start, operand.span().end);
                    operand = Expr::Not {
                        operand: Box::new(operand),
                        span,
                    };
                    self.depth = self.depth.saturating_sub(1);
                }
                group.inner = Some(join(inner, group.inner.take(), operand));
                let opened = group.open;
                let t = self.peek()?;
                if t.tok == inner.token() {
                    self.bump()?;
                    last = Some(t);
                    break;
                }
                if t.tok == outer.token() {
                    self.bump()?;
                    group.flush(outer);
                    last = Some(t);
                    break;
                }
                match (t.tok, opened) {
                    (Tok::RParen, Some(_)) => {
                        self.bump()?;
                        self.leave();
                        let closed = open.pop().and_then(|g| g.finish(outer));
                        operand = closed.ok_or_else(|| self.error(t.span, "unmatched `)`"))?;
                    }
                    (Tok::RParen, None) => return Err(self.error(t.span, "unmatched `)`")),
                    (Tok::Eof, None) => {
                        return root
                            .finish(outer)
                            .ok_or_else(|| self.error(t.span, "expected a condition"));
                    }
                    (Tok::Eof, Some(paren)) => {
                        return Err(self
                            .error(paren.span, "unclosed `(`")
                            .with_hint("add a matching `)`"));
                    }
                    (_, None) => {
                        return Err(self.error(
                            t.span,
                            format!(
                                "expected `AND`, `OR` or the end of the condition, found {}",
                                t.describe()
                            ),
                        ));
                    }
                    (_, Some(_)) => {
                        return Err(self.error(
                            t.span,
                            format!("expected `)`, `AND` or `OR`, found {}", t.describe()),
                        ));
                    }
                }
            }
        }
    }

    /// The error for `found` where a condition should start.
    fn expected_condition(&self, found: Token<'a>, after: Option<Token<'a>>) -> ParseError {
        match (after, found.tok) {
            (Some(a), Tok::Eof) => self.error(
                a.span,
                format!("expected a condition after `{}`", shorten(a.text)),
            ),
            (Some(a), _) => self.error(
                found.span,
                format!(
                    "expected a condition after `{}`, found {}",
                    shorten(a.text),
                    found.describe()
                ),
            ),
            (None, _) => self.error(
                found.span,
                format!("expected a condition, found {}", found.describe()),
            ),
        }
    }

    /// After the operand `first`: a comparison, or `first` alone as a bare operand.
    fn parse_comparison(&mut self, first: Token<'a>) -> Result<Expr, ParseError> {
        let next = self.peek()?;
        let (op, negated, op_tok) = match next.tok {
            Tok::Op(op) => {
                self.bump()?;
                (op, false, next)
            }
            Tok::NotMatches => {
                self.bump()?;
                (Op::Matches, true, next)
            }
            Tok::Not => {
                self.bump()?;
                let op_tok = self.peek()?;
                match op_tok.tok {
                    Tok::Op(op) if op.allows_infix_not() => {
                        self.bump()?;
                        (op, true, op_tok)
                    }
                    Tok::NotMatches => {
                        return Err(self.error(
                            next.span.to(op_tok.span),
                            format!("`{}` cannot precede `!~`", next.text),
                        ));
                    }
                    Tok::Op(Op::Equals) => {
                        return Err(self
                            .error(
                                next.span.to(op_tok.span),
                                format!("`{} {}` is not an operator", next.text, op_tok.text),
                            )
                            .with_hint("use `NotEquals` or `!=`"));
                    }
                    Tok::Op(_) => {
                        return Err(self
                            .error(
                                next.span.to(op_tok.span),
                                format!("`{}` cannot precede `{}`", next.text, op_tok.text),
                            )
                            .with_hint(
                                "infix `Not` is allowed only before `Matches`, `MatchesPath`, \
                                 `JavaRegex` and `StartsWith`; wrap the comparison in `NOT (...)`",
                            ));
                    }
                    _ => {
                        return Err(self.error(
                            op_tok.span,
                            format!(
                                "expected `Matches`, `MatchesPath`, `JavaRegex` or `StartsWith` \
                                 after `{}`, found {}",
                                next.text,
                                op_tok.describe()
                            ),
                        ));
                    }
                }
            }
            Tok::Name(w) => {
                let err = self.error(next.span, format!("unknown operator `{}`", shorten(w)));
                return Err(match misspelled_operator(w) {
                    Some(hint) => err.with_hint(hint),
                    None => err,
                });
            }
            Tok::Quoted(_) | Tok::Str(_) | Tok::Number(_) | Tok::Null | Tok::True | Tok::False => {
                return Err(self.error(
                    next.span,
                    format!(
                        "missing operator between `{}` and {}",
                        shorten(first.text),
                        next.describe()
                    ),
                ));
            }
            _ => return self.bare_operand(first),
        };

        let lhs = match first.tok {
            Tok::Name(name) => Variable {
                name: name.to_owned(),
                quoted: false,
                span: first.span,
            },
            Tok::Quoted(name) => Variable {
                name: name.to_owned(),
                quoted: true,
                span: first.span,
            },
            _ => {
                return Err(self
                    .error(
                        first.span,
                        format!(
                            "the left-hand side of a comparison must be a variable, found `{}`",
                            shorten(first.text)
                        ),
                    )
                    .with_hint("put the variable on the left, as in `request.verb = \"GET\"`"));
            }
        };

        if op == Op::Equals && op_tok.text.eq_ignore_ascii_case("is") {
            let t = self.peek()?;
            if t.tok == Tok::Not {
                return Err(self
                    .error(
                        op_tok.span.to(t.span),
                        format!("`{} {}` is not an operator", op_tok.text, t.text),
                    )
                    .with_hint("use `IsNot` or `!=`"));
            }
        }

        let rhs = self.parse_rhs(op, op_tok)?;
        let span = first.span.to(rhs.span());
        Ok(Expr::Compare(Comparison {
            lhs,
            op,
            negated,
            rhs,
            span,
        }))
    }

    fn bare_operand(&self, first: Token<'a>) -> Result<Expr, ParseError> {
        match first.tok {
            Tok::Name(name) | Tok::Quoted(name) => Ok(Expr::Operand(Operand::Variable(Variable {
                name: name.to_owned(),
                quoted: matches!(first.tok, Tok::Quoted(_)),
                span: first.span,
            }))),
            Tok::Str(body) => {
                let err = self.error(
                    first.span,
                    "a string literal cannot stand alone as a condition",
                );
                Err(if body.contains(is_space) {
                    err.with_hint("a condition is not quoted: remove the double quotes around it")
                } else {
                    err.with_hint("compare it with a variable, as in `name = \"...\"`")
                })
            }
            _ => Ok(Expr::Operand(self.literal(first)?)),
        }
    }

    /// The right-hand side of `op`.
    fn parse_rhs(&mut self, op: Op, op_tok: Token<'a>) -> Result<Operand, ParseError> {
        let t = self.peek()?;
        let operand = match t.tok {
            Tok::Name(name) => Operand::Variable(Variable {
                name: name.to_owned(),
                quoted: false,
                span: t.span,
            }),
            Tok::Quoted(body) => {
                return Err(self
                    .error(t.span, "string values use double quotes")
                    .with_hint(format!(
                        "write `\"{}\"`; single quotes only enclose a variable name on the \
                         left-hand side",
                        shorten(body)
                    )));
            }
            Tok::Str(_) | Tok::Number(_) | Tok::Null | Tok::True | Tok::False => self.literal(t)?,
            Tok::Eof => {
                return Err(self.error(
                    op_tok.span,
                    format!("expected a value after `{}`", op_tok.text),
                ));
            }
            _ => {
                return Err(self.error(
                    t.span,
                    format!(
                        "expected a value after `{}`, found {}",
                        op_tok.text,
                        t.describe()
                    ),
                ));
            }
        };
        self.bump()?;
        let is_string = matches!(
            operand,
            Operand::Literal {
                value: Literal::String(_),
                ..
            }
        );
        if op.requires_string_rhs() && !is_string {
            return Err(self
                .error(
                    t.span,
                    format!(
                        "the right-hand side of `{}` must be a string literal, found `{}`",
                        op_tok.text,
                        shorten(t.text)
                    ),
                )
                .with_hint(format!(
                    "write the {} in double quotes, as in `{} \"...\"`",
                    if op == Op::EqualsCaseInsensitive {
                        "value"
                    } else {
                        "pattern"
                    },
                    op_tok.text
                )));
        }
        Ok(operand)
    }

    /// A literal token as an operand.
    fn literal(&self, t: Token<'a>) -> Result<Operand, ParseError> {
        let value = match t.tok {
            Tok::Str(s) => Literal::String(s.to_owned()),
            Tok::Null => Literal::Null,
            Tok::True => Literal::Boolean(true),
            Tok::False => Literal::Boolean(false),
            Tok::Number(n) => self.number(n, t.span)?,
            _ => {
                return Err(self.error(t.span, format!("expected a value, found {}", t.describe())));
            }
        };
        Ok(Operand::Literal {
            value,
            span: t.span,
        })
    }

    /// Validates and converts `-?digits(.digits)?[fFdDlL]?`.
    fn number(&self, text: &str, span: Span) -> Result<Literal, ParseError> {
        let invalid = || {
            self.error(span, format!("invalid number `{}`", shorten(text)))
                .with_hint(NUMBER_HINT)
        };
        let (mantissa, suffix) = match text.char_indices().last() {
            Some((i, c)) if matches!(c, 'f' | 'F' | 'd' | 'D' | 'l' | 'L') => {
                (text.get(..i).unwrap_or(""), Some(c.to_ascii_lowercase()))
            }
            _ => (text, None),
        };
        let unsigned = mantissa.strip_prefix('-').unwrap_or(mantissa);
        let (int_part, frac_part) = match unsigned.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (unsigned, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int_part) || frac_part.is_some_and(|f| !digits(f)) {
            return Err(invalid());
        }
        let out_of_range = |kind: &str| {
            self.error(
                span,
                format!("number `{}` is out of range for {kind}", shorten(text)),
            )
        };
        match (suffix, frac_part.is_some()) {
            (None, false) => match mantissa.parse::<i32>() {
                Ok(v) => Ok(Literal::Integer(v)),
                Err(_) => mantissa
                    .parse::<i64>()
                    .map(Literal::Long)
                    .map_err(|_| out_of_range("a long")),
            },
            (None, true) | (Some('d'), _) => match mantissa.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Literal::Double(v)),
                _ => Err(out_of_range("a double")),
            },
            (Some('f'), _) => match mantissa.parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(Literal::Float(v)),
                _ => Err(out_of_range("a float")),
            },
            (Some(_), true) => Err(self
                .error(
                    span,
                    format!("invalid number `{}`: a long has no fraction", shorten(text)),
                )
                .with_hint("drop the `L` suffix for a double")),
            (Some(_), false) => mantissa
                .parse::<i64>()
                .map(Literal::Long)
                .map_err(|_| out_of_range("a long")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn opts(dialect: Dialect) -> ParseOptions {
        ParseOptions {
            dialect,
            ..ParseOptions::default()
        }
    }

    fn p(text: &str) -> Condition {
        parse(text).unwrap_or_else(|e| panic!("{text:?} failed: {}", e.render(text)))
    }

    fn err(text: &str) -> ParseError {
        match parse(text) {
            Ok(c) => panic!("{text:?} parsed as {c:?}"),
            Err(e) => e,
        }
    }

    /// The error's message, the source text under its span, and its hint.
    fn err_at(text: &str) -> (String, String, Option<String>) {
        let e = err(text);
        let span = e.location().span();
        let under = text.get(span.start..span.end).unwrap().to_owned();
        (e.message().to_owned(), under, e.hint().map(str::to_owned))
    }

    fn sx_operand(o: &Operand) -> String {
        match o {
            Operand::Variable(v) if v.quoted => format!("'{}'", v.name),
            Operand::Variable(v) => v.name.clone(),
            Operand::Literal { value, .. } => format!("{value:?}"),
        }
    }

    /// The tree as an S-expression, independent of the printer.
    fn sx(e: &Expr) -> String {
        match e {
            Expr::Or { lhs, rhs, .. } => format!("(or {} {})", sx(lhs), sx(rhs)),
            Expr::And { lhs, rhs, .. } => format!("(and {} {})", sx(lhs), sx(rhs)),
            Expr::Not { operand, .. } => format!("(not {})", sx(operand)),
            Expr::Compare(c) => format!(
                "({}{:?} {} {})",
                if c.negated { "not-" } else { "" },
                c.op,
                sx_operand(&Operand::Variable(c.lhs.clone())),
                sx_operand(&c.rhs)
            ),
            Expr::Operand(o) => sx_operand(o),
        }
    }

    fn tree(text: &str) -> String {
        sx(p(text).expr.as_ref().unwrap())
    }

    fn tree_x(text: &str) -> String {
        let c = parse_with(text, &opts(Dialect::ApigeeX)).unwrap();
        sx(c.expr.as_ref().unwrap())
    }

    fn op_of(text: &str) -> (Op, bool) {
        match p(text).expr {
            Some(Expr::Compare(c)) => (c.op, c.negated),
            other => panic!("{text:?} is not a comparison: {other:?}"),
        }
    }

    #[test]
    fn every_operator_in_every_spelling() {
        let cases: &[(&str, Op)] = &[
            ("=", Op::Equals),
            ("==", Op::Equals),
            ("Equals", Op::Equals),
            ("eQuAlS", Op::Equals),
            ("Is", Op::Equals),
            ("is", Op::Equals),
            ("!=", Op::NotEquals),
            ("NotEquals", Op::NotEquals),
            ("Notequals", Op::NotEquals),
            ("IsNot", Op::NotEquals),
            ("isnot", Op::NotEquals),
            (":=", Op::EqualsCaseInsensitive),
            ("EqualsCaseInsensitive", Op::EqualsCaseInsensitive),
            ("EqUALScASEInSeNsiTIVe", Op::EqualsCaseInsensitive),
            (">", Op::GreaterThan),
            ("GreaterThan", Op::GreaterThan),
            (">=", Op::GreaterThanOrEquals),
            ("GREateRtHANoRequaLS", Op::GreaterThanOrEquals),
            ("<", Op::LesserThan),
            ("LesserThan", Op::LesserThan),
            ("<=", Op::LesserThanOrEquals),
            ("LesserThanOrEquals", Op::LesserThanOrEquals),
            ("=|", Op::StartsWith),
            ("StartsWith", Op::StartsWith),
            ("~", Op::Matches),
            ("Matches", Op::Matches),
            ("Like", Op::Matches),
            ("~/", Op::MatchesPath),
            ("MatchesPath", Op::MatchesPath),
            ("LikePath", Op::MatchesPath),
            ("likepath", Op::MatchesPath),
            ("~~", Op::JavaRegex),
            ("JavaRegex", Op::JavaRegex),
            ("jAvAregeX", Op::JavaRegex),
        ];
        for &(spelling, op) in cases {
            let text = format!("a {spelling} \"x\"");
            assert_eq!(op_of(&text), (op, false), "{text}");
            if !spelling.chars().next().unwrap().is_ascii_alphabetic() {
                let glued = format!("a{spelling}\"x\"");
                assert_eq!(op_of(&glued), (op, false), "{glued}");
            }
        }
    }

    #[test]
    fn symbols_take_the_longest_match() {
        assert_eq!(
            tree(r#"a:="x""#),
            r#"(EqualsCaseInsensitive a String("x"))"#
        );
        assert_eq!(tree(r#"a=|"x""#), r#"(StartsWith a String("x"))"#);
        assert_eq!(tree(r#"a=="x""#), r#"(Equals a String("x"))"#);
        assert_eq!(tree("a!=b"), "(NotEquals a b)");
        assert_eq!(tree("a>=1"), "(GreaterThanOrEquals a Integer(1))");
        assert_eq!(tree("a<=1"), "(LesserThanOrEquals a Integer(1))");
        assert_eq!(tree(r#"a~~"x""#), r#"(JavaRegex a String("x"))"#);
        assert_eq!(tree(r#"a~/"x""#), r#"(MatchesPath a String("x"))"#);
        assert_eq!(tree(r#"a!~"x""#), r#"(not-Matches a String("x"))"#);
        assert_eq!(tree(r#"a !~ "x""#), r#"(not-Matches a String("x"))"#);
        // `~ "/x"` with a space is Matches of "/x", not `~/`.
        assert_eq!(tree(r#"a ~ "/x""#), r#"(Matches a String("/x"))"#);
        // `!` before `~~` and `~/` is infix negation.
        assert_eq!(tree(r#"a !~~ "x""#), r#"(not-JavaRegex a String("x"))"#);
        assert_eq!(tree(r#"a !~/ "/x""#), r#"(not-MatchesPath a String("/x"))"#);
        assert_eq!(tree("A>-250"), "(GreaterThan A Integer(-250))");
    }

    #[test]
    fn keywords_are_whole_words() {
        assert_eq!(tree("notes.count = 1"), "(Equals notes.count Integer(1))");
        assert_eq!(tree("isnull"), "isnull");
        assert_eq!(tree("android and order"), "(and android order)");
        assert_eq!(
            tree("null-check = true"),
            "(Equals null-check Boolean(true))"
        );
        assert_eq!(tree("a = true.x"), "(Equals a true.x)");
        assert_eq!(tree("is_ok Is notnull"), "(Equals is_ok notnull)");
        assert_eq!(tree("x = NULL"), "(Equals x Null)");
        assert_eq!(
            tree("x = True or FALSE"),
            "(or (Equals x Boolean(true)) Boolean(false))"
        );
    }

    #[test]
    fn unary_not_in_every_form() {
        assert_eq!(tree("!valid"), "(not valid)");
        assert_eq!(tree("not valid"), "(not valid)");
        assert_eq!(tree("not(valid)"), "(not valid)");
        assert_eq!(tree("Not(valid)"), "(not valid)");
        assert_eq!(tree("nOT(valid)"), "(not valid)");
        assert_eq!(tree("!(valid)"), "(not valid)");
        assert_eq!(tree("!!valid"), "(not (not valid))");
        assert_eq!(tree("not not ! valid"), "(not (not (not valid)))");
        assert_eq!(
            tree("!((seven = \"5\") AND (valid = false))"),
            r#"(not (and (Equals seven String("5")) (Equals valid Boolean(false))))"#
        );
        assert_eq!(
            tree("NOT(a = \"1\") AND NOT (b = \"2\") AND NOT\n(c = \"3\")"),
            r#"(and (and (not (Equals a String("1"))) (not (Equals b String("2")))) (not (Equals c String("3"))))"#
        );
        // NOT applies to the whole comparison.
        assert_eq!(
            tree(r#"!x MatchesPath "/p""#),
            r#"(not (MatchesPath x String("/p")))"#
        );
        assert_eq!(
            tree(r#"request.verb IsNot "GET" and !proxy.pathsuffix MatchesPath "/path""#),
            r#"(and (NotEquals request.verb String("GET")) (not (MatchesPath proxy.pathsuffix String("/path"))))"#
        );
    }

    #[test]
    fn infix_not_negates_pattern_operators_and_starts_with() {
        for (spelling, op) in [
            ("Matches", Op::Matches),
            ("~", Op::Matches),
            ("Like", Op::Matches),
            ("MatchesPath", Op::MatchesPath),
            ("~/", Op::MatchesPath),
            ("LikePath", Op::MatchesPath),
            ("JavaRegex", Op::JavaRegex),
            ("~~", Op::JavaRegex),
            ("StartsWith", Op::StartsWith),
            ("=|", Op::StartsWith),
        ] {
            for not in ["Not", "NOT", "not", "!"] {
                let text = format!("proxy.pathsuffix {not} {spelling} \"/path\"");
                assert_eq!(op_of(&text), (op, true), "{text}");
            }
        }
    }

    #[test]
    fn infix_not_before_other_operators_is_an_error() {
        for text in [
            r#"request.verb Not Equals "GET""#,
            r#"request.verb Not = "GET""#,
            r#"request.verb ! = "GET""#,
            r#"request.verb not == "GET""#,
            r#"request.verb NOT Is "GET""#,
        ] {
            let (msg, _, hint) = err_at(text);
            assert!(msg.ends_with("is not an operator"), "{text}: {msg}");
            assert_eq!(hint.as_deref(), Some("use `NotEquals` or `!=`"), "{text}");
        }
        let (msg, under, hint) = err_at("request.header.content-length Not GreaterThan 0");
        assert_eq!(msg, "`Not` cannot precede `GreaterThan`");
        assert_eq!(under, "Not GreaterThan");
        assert!(hint.unwrap().contains("only before `Matches`"));
        let (msg, under, _) = err_at(r#"proxy.pathsuffix Not EqualsCaseInsensitive "/path""#);
        assert_eq!(msg, "`Not` cannot precede `EqualsCaseInsensitive`");
        assert_eq!(under, "Not EqualsCaseInsensitive");
        let (msg, under, _) = err_at(r#"a not "x""#);
        assert_eq!(
            msg,
            "expected `Matches`, `MatchesPath`, `JavaRegex` or `StartsWith` after `not`, found `\"x\"`"
        );
        assert_eq!(under, "\"x\"");
        let (msg, _, hint) = err_at("request.header.host is not null");
        assert_eq!(msg, "`is not` is not an operator");
        assert_eq!(hint.as_deref(), Some("use `IsNot` or `!=`"));
    }

    #[test]
    fn parentheses_group() {
        assert_eq!(tree("(valid)"), "valid");
        assert_eq!(tree("((a = 1))"), "(Equals a Integer(1))");
        assert_eq!(
            tree("(a = 1 or b = 2) and c = 3"),
            "(and (or (Equals a Integer(1)) (Equals b Integer(2))) (Equals c Integer(3)))"
        );
        assert_eq!(
            tree(
                "not(request.header.content-type = \"application/json\")AND(request.verb = \"GET\")"
            ),
            r#"(and (not (Equals request.header.content-type String("application/json"))) (Equals request.verb String("GET")))"#
        );
        assert_eq!(tree("( true )AND( x )"), "(and Boolean(true) x)");
    }

    #[test]
    fn quoted_variable_names() {
        assert_eq!(
            tree(r#"'request.header.help!me' = "yes""#),
            r#"(Equals 'request.header.help!me' String("yes"))"#
        );
        assert_eq!(tree("'a b' and x"), "(and 'a b' x)");
        let c = p(r#"'x=y' = "1""#);
        let Some(Expr::Compare(cmp)) = c.expr else {
            panic!("not a comparison")
        };
        assert_eq!(cmp.lhs.name, "x=y");
        assert!(cmp.lhs.quoted);
        assert_eq!(cmp.lhs.span, Span::new(0, 5));
    }

    #[test]
    fn string_literals_have_no_escapes() {
        assert_eq!(
            tree(r##"a ~~ "^\d+\.\""##),
            r#"(JavaRegex a String("^\\d+\\.\\"))"#
        );
        assert_eq!(tree(r#"a = """#), r#"(Equals a String(""))"#);
        assert_eq!(tree("a = \"x\ny\""), r#"(Equals a String("x\ny"))"#);
    }

    #[test]
    fn numbers() {
        let num = |t: &str| tree(&format!("a = {t}"));
        assert_eq!(num("404"), "(Equals a Integer(404))");
        assert_eq!(num("-250"), "(Equals a Integer(-250))");
        assert_eq!(num("2147483647"), "(Equals a Integer(2147483647))");
        assert_eq!(num("-2147483648"), "(Equals a Integer(-2147483648))");
        assert_eq!(num("2147483648"), "(Equals a Long(2147483648))");
        assert_eq!(num("12321421312L"), "(Equals a Long(12321421312))");
        assert_eq!(num("5l"), "(Equals a Long(5))");
        assert_eq!(num("0.5"), "(Equals a Double(0.5))");
        assert_eq!(num("-20.1392"), "(Equals a Double(-20.1392))");
        assert_eq!(num("3.142d"), "(Equals a Double(3.142))");
        assert_eq!(num("100.123D"), "(Equals a Double(100.123))");
        assert_eq!(num("3.142f"), "(Equals a Float(3.142))");
        assert_eq!(num("91.1F"), "(Equals a Float(91.1))");
        assert_eq!(num("7f"), "(Equals a Float(7.0))");
        for bad in [
            "20.20.20",
            "20..1392",
            "-20..1392",
            ".20.1",
            "..201392",
            "20.",
            "1e5",
            "0x10",
            "5.5L",
            "20three",
        ] {
            let text = format!("a > {bad}");
            let (msg, under, _) = err_at(&text);
            assert!(msg.starts_with("invalid number"), "{text}: {msg}");
            assert_eq!(under, bad, "{text}");
        }
        let (msg, _, _) = err_at("a = 99999999999999999999");
        assert_eq!(
            msg,
            "number `99999999999999999999` is out of range for a long"
        );
        let big = format!("a = 1{}f", "0".repeat(40));
        assert!(err(&big).message().contains("out of range for a float"));
    }

    #[test]
    fn right_hand_side_variables_where_allowed() {
        for op in [
            "=",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "StartsWith",
            "=|",
            "Equals",
            "IsNot",
        ] {
            let text = format!("a {op} other.var");
            assert!(tree(&text).ends_with(" a other.var)"), "{text}");
        }
        for op in [
            ":=",
            "~",
            "~~",
            "~/",
            "Matches",
            "MatchesPath",
            "JavaRegex",
            "Like",
            "LikePath",
            "EqualsCaseInsensitive",
        ] {
            for rhs in ["symbol_name", "20", "null", "true"] {
                let text = format!("a {op} {rhs}");
                let (msg, under, hint) = err_at(&text);
                assert_eq!(
                    msg,
                    format!(
                        "the right-hand side of `{op}` must be a string literal, found `{rhs}`"
                    ),
                );
                assert_eq!(under, rhs);
                assert!(hint.unwrap().contains("in double quotes"));
            }
        }
    }

    #[test]
    fn left_hand_side_must_be_a_variable() {
        for (text, lhs) in [
            (r#""a-string" = "another-string""#, r#""a-string""#),
            ("20 = 42", "20"),
            (r#"20 = "another-string""#, "20"),
            ("true = false", "true"),
            ("null != x", "null"),
        ] {
            let (msg, under, _) = err_at(text);
            assert_eq!(
                msg,
                format!("the left-hand side of a comparison must be a variable, found `{lhs}`")
            );
            assert_eq!(under, lhs);
        }
    }

    #[test]
    fn bare_operands() {
        assert_eq!(tree("valid"), "valid");
        assert_eq!(tree("false"), "Boolean(false)");
        assert_eq!(tree("true or false"), "(or Boolean(true) Boolean(false))");
        assert_eq!(tree("null"), "Null");
        assert_eq!(tree("-3"), "Integer(-3)");
        assert_eq!(tree("a and 'b c'"), "(and a 'b c')");
        let (msg, under, hint) = err_at(r#""request.formparam.grant_type is null""#);
        assert_eq!(msg, "a string literal cannot stand alone as a condition");
        assert_eq!(under, r#""request.formparam.grant_type is null""#);
        assert!(hint.unwrap().contains("remove the double quotes"));
        assert!(
            err(r#"a = 1 or "b""#)
                .hint()
                .unwrap()
                .contains("compare it")
        );
    }

    #[test]
    fn whitespace_and_unspaced_operators() {
        assert_eq!(
            tree(r#"request.verb="GET""#),
            r#"(Equals request.verb String("GET"))"#
        );
        assert_eq!(tree("A>250"), "(GreaterThan A Integer(250))");
        assert_eq!(
            tree("(a = 1)AND(b = 2)"),
            "(and (Equals a Integer(1)) (Equals b Integer(2)))"
        );
        assert_eq!(
            tree("\r\n\t(a\t=\r\n1)\n\tor\r\nb\n"),
            "(or (Equals a Integer(1)) b)"
        );
        assert_eq!(
            tree("(a = 1)&&(b = 2)||c"),
            tree("(a = 1) and (b = 2) or c")
        );
        for empty in ["", " ", "\n            \n          ", "\t\r\n"] {
            assert_eq!(p(empty), Condition { expr: None }, "{empty:?}");
        }
    }

    #[test]
    fn edge_precedence_and_associativity() {
        assert_eq!(tree("a and b or c"), "(or (and a b) c)");
        assert_eq!(tree("a or b and c"), "(or a (and b c))");
        assert_eq!(tree("a and b and c"), "(and (and a b) c)");
        assert_eq!(tree("a or b or c"), "(or (or a b) c)");
        assert_eq!(tree("not a and b"), "(and (not a) b)");
        assert_eq!(
            tree(r#"request.verb = "POST" and request.verb = "PUT" or request.verb = "GET""#),
            r#"(or (and (Equals request.verb String("POST")) (Equals request.verb String("PUT"))) (Equals request.verb String("GET")))"#
        );
        assert_eq!(tree("a or b and c or d"), "(or (or a (and b c)) d)");
    }

    #[test]
    fn apigee_x_precedence() {
        assert_eq!(tree_x("a and b or c"), "(and a (or b c))");
        assert_eq!(tree_x("a or b and c"), "(and (or a b) c)");
        assert_eq!(tree_x("a and b and c"), "(and (and a b) c)");
        assert_eq!(tree_x("a or b or c"), "(or (or a b) c)");
        assert_eq!(tree_x("not a or b"), "(or (not a) b)");
        assert_eq!(tree_x("(a and b) or c"), "(or (and a b) c)");
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            // (text, message, text under the span)
            ("(a or )", "expected a condition after `or`, found `)`", ")"),
            (
                r#"not (ps MatchesPath "**/health/*" or ps MatchesPath "**/healthz/**" or )"#,
                "expected a condition after `or`, found `)`",
                ")",
            ),
            (r#"a = "1" and "#, "expected a condition after `and`", "and"),
            (r#"a = "1" or"#, "expected a condition after `or`", "or"),
            ("not", "expected a condition after `not`", "not"),
            ("(", "expected a condition after `(`", "("),
            (
                r#"a = "1" and and b is null"#,
                "expected a condition after `and`, found `and`",
                "and",
            ),
            ("and a", "expected a condition, found `and`", "and"),
            (")", "expected a condition, found `)`", ")"),
            ("= 1", "expected a condition, found `=`", "="),
            (
                r#"a = "unterminated"#,
                "unterminated string literal",
                r#""unterminated"#,
            ),
            (r#"a = "x"""#, "unterminated string literal", "\""),
            (r#"(a = "x""#, "unclosed `(`", "("),
            (r#"((a = "x") or b"#, "unclosed `(`", "("),
            (r#"a = "x")"#, "unmatched `)`", ")"),
            (
                r#"a = "x" b = "y""#,
                "expected `AND`, `OR` or the end of the condition, found `b`",
                "b",
            ),
            (
                r#"(a = "x" b)"#,
                "expected `)`, `AND` or `OR`, found `b`",
                "b",
            ),
            ("a = ", "expected a value after `=`", "="),
            ("a = )", "expected a value after `=`, found `)`", ")"),
            (
                "a = and b",
                "expected a value after `=`, found `and`",
                "and",
            ),
            (
                r#"a "x""#,
                "missing operator between `a` and `\"x\"`",
                "\"x\"",
            ),
            (
                "a = b = c",
                "expected `AND`, `OR` or the end of the condition, found `=`",
                "=",
            ),
            ("a & b", "unexpected `&`", "&"),
            ("a # b", "unexpected character `#`", "#"),
            ("a = é", "unexpected character `é`", "é"),
            ("a =\u{a0}1", "unexpected character `\\u{a0}`", "\u{a0}"),
            ("a = \u{0}", "unexpected character `\\u{0}`", "\u{0}"),
            ("a = 'x", "unterminated quoted variable name", "'x"),
            ("'' = 1", "empty quoted variable name `''`", "''"),
            ("true of false", "unknown operator `of`", "of"),
            (
                r#"a SeemsLike "x""#,
                "unknown operator `SeemsLike`",
                "SeemsLike",
            ),
            (r#"a equalsa "x""#, "unknown operator `equalsa`", "equalsa"),
            ("a = {5}", "unexpected `{`", "{"),
            (
                r#"{seven = "5"} AND {valid = false}"#,
                "unexpected `{`",
                "{",
            ),
        ];
        for &(text, message, under) in cases {
            let (msg, got_under, _) = err_at(text);
            assert_eq!(
                (msg.as_str(), got_under.as_str()),
                (message, under),
                "{text:?}"
            );
        }
    }

    #[test]
    fn hints_for_common_mistakes() {
        let cases: &[(&str, &str, &str)] = &[
            // (text, text under the span, hint)
            ("code LessThan 500", "LessThan", "use `LesserThan` or `<`"),
            (
                "code lessthanorequals 5",
                "lessthanorequals",
                "use `LesserThanOrEquals` or `<=`",
            ),
            (
                "code GreaterThanOrEqual 5",
                "GreaterThanOrEqual",
                "use `GreaterThanOrEquals` or `>=`",
            ),
            (
                r#"v Not Equals "GET""#,
                "Not Equals",
                "use `NotEquals` or `!=`",
            ),
            (r#"p /~ "/x""#, "/~", "use `~/` (MatchesPath)"),
            (r#"v === "GET""#, "===", "use `=` or `Equals`"),
            (
                r#"v =~ "G.*""#,
                "=~",
                "use `~~` (JavaRegex) or `~` (Matches)",
            ),
            ("v <> 1", "<>", "use `!=` or `NotEquals`"),
            (
                r#"p Contains "x""#,
                "Contains",
                "there is no `Contains`; use `Matches \"*text*\"`",
            ),
            (
                r#"{request.verb} = "GET""#,
                "{request.verb}",
                "write `request.verb`",
            ),
            (
                r#"a = \"\""#,
                "\\",
                "string literals have no escape sequences: write `\"...\"`",
            ),
            ("a = 1 | b", "|", "write `||`, or use `AND` / `OR`"),
        ];
        for &(text, under, hint) in cases {
            let (_, got_under, got_hint) = err_at(text);
            assert_eq!(
                (got_under.as_str(), got_hint.as_deref()),
                (under, Some(hint)),
                "{text:?}"
            );
        }
        let e = err("request.verb = 'GET'");
        assert_eq!(e.message(), "string values use double quotes");
        assert_eq!(
            e.hint(),
            Some(
                "write `\"GET\"`; single quotes only enclose a variable name on the left-hand side"
            )
        );
        assert_eq!(e.location().span(), Span::new(15, 20));
        assert_eq!(
            err(r#"{request.verb} = "GET""#).message(),
            "variable names are not written in braces: `{request.verb}`"
        );
    }

    #[test]
    fn locations_count_lines_and_columns() {
        let text = "a = 1 and\n   b = \"x\" and\n\tand c";
        let e = err(text);
        assert_eq!((e.location().line(), e.location().column()), (3, 2));
        assert_eq!(
            e.to_string(),
            "expected a condition after `and`, found `and` at line 3, column 2"
        );
        assert!(
            e.render(text).contains("3 | \tand c\n  |  ^^^"),
            "{}",
            e.render(text)
        );
    }

    #[test]
    fn spans_cover_the_source_text() {
        let text = r#" (a = "1")  and not b"#;
        let c = p(text);
        let Some(Expr::And { lhs, rhs, span }) = &c.expr else {
            panic!("not an AND")
        };
        assert_eq!(
            text.get(span.start..span.end),
            Some(r#"a = "1")  and not b"#)
        );
        assert_eq!(
            text.get(lhs.span().start..lhs.span().end),
            Some(r#"a = "1""#)
        );
        assert_eq!(text.get(rhs.span().start..rhs.span().end), Some("not b"));
    }

    #[test]
    fn length_limit() {
        let options = ParseOptions {
            max_len: 10,
            ..ParseOptions::default()
        };
        assert!(parse_with("a = \"1234\"", &options).is_ok());
        let e = parse_with("a = \"12345\"", &options).unwrap_err();
        assert_eq!(
            e.message(),
            "condition is 11 bytes long, longer than the limit of 10 bytes"
        );
    }

    #[test]
    fn depth_limit_is_enforced_without_recursion_blowup() {
        let unlimited_len = |dialect| ParseOptions {
            dialect,
            max_len: usize::MAX,
            max_depth: 64,
        };
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(64)).is_ok());
        assert_eq!(
            err(&nested(65)).message(),
            "conditions nest deeper than 64 levels of parentheses and `NOT`"
        );
        assert!(parse(&format!("{}a", "!".repeat(64))).is_ok());
        assert!(parse(&format!("{}a", "not ".repeat(65))).is_err());
        assert!(parse(&format!("{}a", "!(".repeat(33))).is_err());
        for dialect in [Dialect::Edge, Dialect::ApigeeX] {
            for text in [
                "(".repeat(100_000),
                "!".repeat(100_000),
                "not ".repeat(100_000),
                format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000)),
                "(!".repeat(100_000),
            ] {
                let started = Instant::now();
                let e = parse_with(&text, &unlimited_len(dialect)).unwrap_err();
                assert!(
                    e.message().starts_with("conditions nest deeper"),
                    "{}",
                    e.message()
                );
                assert!(started.elapsed() < Duration::from_secs(2));
            }
        }
        // A huge max_depth is capped, so the stack stays safe.
        let huge = ParseOptions {
            max_len: usize::MAX,
            max_depth: usize::MAX,
            ..ParseOptions::default()
        };
        let e = parse_with(&nested(10_000), &huge).unwrap_err();
        assert_eq!(
            e.message(),
            format!(
                "conditions nest deeper than {} levels of parentheses and `NOT`",
                ParseOptions::DEPTH_CEILING
            )
        );
        // Long chains of AND are not nesting and parse in a loop.
        let chain = vec!["a = 1"; 5_000].join(" and ");
        assert!(parse_with(&chain, &huge).is_ok());
    }

    #[test]
    fn no_panic_on_odd_input() {
        for text in [
            "\u{0}",
            "é",
            "'",
            "\"",
            "!",
            "!=",
            "!~",
            "~",
            "(",
            ")",
            "-",
            ".",
            "..",
            "-.",
            "1.",
            "a = -",
            "a = 1.2.",
            "a !",
            "a not",
            "'é' = \"é\"",
            "a = \"\u{1F600}\"",
            "{",
            "}",
            "{a",
            "{a}",
            "a=",
            "a=|",
            "a:",
            "a :x",
            "||",
            "&&",
            "a || ",
            "\u{feff}a",
            "a\u{a0}= 1",
        ] {
            let _ = parse(text);
            let _ = parse_with(text, &opts(Dialect::ApigeeX));
        }
    }

    /// The test vectors of spec/conditions.md §7 that are about parsing: each either
    /// parses or, where the vector says "parse error", fails.
    #[test]
    fn spec_vectors_parse_or_fail_as_specified() {
        for &(n, text, error) in VECTORS {
            let result = parse(text);
            assert_eq!(result.is_err(), error, "vector {n}: {text:?} -> {result:?}");
        }
        assert_eq!(VECTORS.len(), 156);
    }

    const VECTORS: &[(u32, &str, bool)] = &[
        (1, r#"request.verb = "GET""#, false),
        (2, r#"request.verb = "GET""#, false),
        (3, r#"request.verb equals "GET""#, false),
        (4, r#"request.verb == "GET""#, false),
        (5, r#"request.verb Is "GET""#, false),
        (6, r#"request.verb IsNot "POST""#, false),
        (7, r#"request.verb NotEquals "GET""#, false),
        (8, r#"request.verb != "GET""#, false),
        (9, r#"request.verb = "get""#, false),
        (10, r#"request.verb := "get""#, false),
        (11, r#"request.verb EqualsCaseInsensitive "Get""#, false),
        (12, r#"request.verb eQuAlS "GET""#, false),
        (13, r#"response.status.code = "400""#, false),
        (14, r#"response.status.code = 400"#, false),
        (15, r#"response.status.code = "404""#, false),
        (
            16,
            r#"(response.status.code = 503) or (response.status.code = 400)"#,
            false,
        ),
        (
            17,
            r#"(response.status.code = 503) or (response.status.code = 400)"#,
            false,
        ),
        (18, r#"request.header.accept = "application/json""#, false),
        (
            19,
            r#"request.header.Content-type = "application/json""#,
            false,
        ),
        (
            20,
            r#"request.queryparam.country = "IN" Or request.queryparam.country = "DE""#,
            false,
        ),
        (
            21,
            r#"request.queryparam.country = "IN" Or request.queryparam.country = "DE""#,
            false,
        ),
        (22, r#"request.header.host is null"#, false),
        (23, r#"request.header.host is null"#, false),
        (24, r#"request.queryparam.country IsNot null"#, false),
        (25, r#"request.queryparam.country IsNot null"#, false),
        (26, r#"request.header.absent = "x""#, false),
        (27, r#"request.header.absent != "x""#, false),
        (28, r#"request.header.a = request.header.b"#, false),
        (29, r#"request.header.a != request.header.b"#, false),
        (30, r#"request.verb = request.header.absent"#, false),
        (31, r#"request.verb != request.header.absent"#, false),
        (32, r#"request.header.absent > 5"#, false),
        (33, r#"request.header.absent >= 5"#, false),
        (34, r#"request.header.absent < 5"#, false),
        (35, r#"request.header.absent <= 5"#, false),
        (36, r#"response.status.code > request.header.absent"#, false),
        (
            37,
            r#"response.status.code >= request.header.absent"#,
            false,
        ),
        (38, r#"response.status.code < request.header.absent"#, false),
        (39, r#"request.header.absent =| "x""#, false),
        (40, r#"request.verb =| request.header.absent"#, false),
        (41, r#"request.header.absent ~ "*""#, false),
        (42, r#"request.header.absent ~~ ".*""#, false),
        (43, r#"request.header.absent ~/ "/**""#, false),
        (44, r#"request.header.absent = """#, false),
        (45, r#"request.header.hello = """#, false),
        (46, r#"flow.cachehit is true"#, false),
        (47, r#"flow.cachehit = true"#, false),
        (48, r#"response.status.code > 399"#, false),
        (49, r#"response.status.code GreaterThan 399"#, false),
        (50, r#"response.status.code GreaterThanOrEquals 405"#, false),
        (51, r#"response.status.code LesserThanOrEquals 404"#, false),
        (52, r#"response.status.code < 500"#, false),
        (53, r#"response.status.code >= 400"#, false),
        (
            54,
            r#"(response.status.code >= 500) and (response.status.code <= 599)"#,
            false,
        ),
        (55, r#"response.status.code LessThan 500"#, true),
        (56, r#"request.header.x-count > 9"#, false),
        (57, r#"response.status.code > "1000""#, false),
        (58, r#"A > 20.20.20"#, true),
        (59, r#"A > -20.1392"#, false),
        (60, r#"proxy.pathsuffix StartsWith "/pets""#, false),
        (61, r#"proxy.pathsuffix =| "/pets""#, false),
        (62, r#"proxy.pathsuffix =| "/Pets""#, false),
        (63, r#"request.header.content-type =| "text/xml""#, false),
        (64, r#"proxy.pathsuffix Not StartsWith "/admin""#, false),
        (65, r#"proxy.pathsuffix Matches "/cat""#, false),
        (66, r#"proxy.pathsuffix Matches "/cat""#, false),
        (67, r#"proxy.pathsuffix Matches "/*at""#, false),
        (68, r#"proxy.pathsuffix Matches "/*at""#, false),
        (69, r#"proxy.pathsuffix Matches "/cat*""#, false),
        (70, r#"proxy.pathsuffix ~ "/c%*at""#, false),
        (71, r#"proxy.pathsuffix Like "/c%*at""#, false),
        (72, r#"proxy.pathsuffix Matches "/cat""#, false),
        (73, r#"proxy.pathsuffix Not Matches "/cat*""#, false),
        (74, r#"proxy.pathsuffix ~~ "/extensive-search/?""#, false),
        (75, r#"proxy.pathsuffix ~~ "/extensive-search/?""#, false),
        (76, r#"proxy.pathsuffix ~~ "/items/.+""#, false),
        (77, r#"proxy.pathsuffix ~~ "/items/.+""#, false),
        (78, r#"proxy.pathsuffix ~~ "/items/[0-9]+""#, false),
        (79, r#"proxy.pathsuffix ~~ "/regex2/[^/]+/[^/]+""#, false),
        (80, r#"proxy.pathsuffix JavaRegex "/cat""#, false),
        (81, r#"proxy.pathsuffix JavaRegex "/c*t""#, false),
        (82, r#"proxy.pathsuffix JavaRegex "/ca?t""#, false),
        (83, r#"proxy.pathsuffix JavaRegex "/[cbr]at""#, false),
        (84, r#"proxy.pathsuffix ~~ "(?i)/cat""#, false),
        (85, r#"proxy.pathsuffix JavaRegex "/cat""#, false),
        (
            86,
            r#"NOT (proxy.pathsuffix ~~ "/token/users(/.*)?") and NOT (proxy.pathsuffix ~~ "/apikey/users(/.*)?")"#,
            false,
        ),
        (
            87,
            r#"proxy.pathsuffix Not JavaRegex "/token/users(/.*)?""#,
            false,
        ),
        (
            88,
            r#"(proxy.pathsuffix MatchesPath "/statuses") and (request.verb = "GET")"#,
            false,
        ),
        (
            89,
            r#"proxy.pathsuffix MatchesPath "/extensive-search""#,
            false,
        ),
        (
            90,
            r#"proxy.pathsuffix LikePath "/extensive-search""#,
            false,
        ),
        (91, r#"request.path MatchesPath "/*/a/""#, false),
        (92, r#"request.path MatchesPath "/*/a/*""#, false),
        (93, r#"request.path MatchesPath "/*/a/**""#, false),
        (94, r#"request.path MatchesPath "/*/a/*/feed/""#, false),
        (95, r#"request.path MatchesPath "/a/**/feed/**""#, false),
        (96, r#"request.path MatchesPath "/a/**/feed/**""#, false),
        (97, r#"proxy.pathsuffix MatchesPath "%{user%}""#, false),
        (98, r#"proxy.pathsuffix MatchesPath "%{user%}""#, false),
        (99, r#"proxy.pathsuffix MatchesPath "/pets/{petId}""#, false),
        (100, r#"proxy.pathsuffix ~/ "/items/*""#, false),
        (101, r#"proxy.pathsuffix ~/ "/glob/*/*""#, false),
        (102, r#"proxy.pathsuffix MatchesPath "/items/*""#, false),
        (103, r#"proxy.pathsuffix MatchesPath "/items/*""#, false),
        (104, r#"proxy.pathsuffix MatchesPath "/items/**""#, false),
        (105, r#"request.path MatchesPath "/**/india/blr/**""#, false),
        (106, r#"request.path MatchesPath "/**/india/blr/**""#, false),
        (107, r#"request.path MatchesPath "/**/india/blr/**""#, false),
        (108, r#"request.path MatchesPath "**/india/blr**""#, false),
        (109, r#"request.path MatchesPath "**/india/blr**""#, false),
        (110, r#"proxy.pathsuffix MatchesPath "/""#, false),
        (111, r#"proxy.pathsuffix MatchesPath "/""#, false),
        (
            112,
            r#"((proxy.pathsuffix == "") or (proxy.pathsuffix == "/")) and (request.verb = "POST")"#,
            false,
        ),
        (
            113,
            r#"proxy.pathsuffix MatchesPath "/v3/SampleTicket/*""#,
            false,
        ),
        (
            114,
            r#"proxy.pathsuffix Not MatchesPath "/somepath""#,
            false,
        ),
        (115, r#"proxy.pathsuffix Not ~/ "/path""#, false),
        (
            116,
            r#"(proxy.pathsuffix MatchesPath "/OAuthToken" OR proxy.pathsuffix MatchesPath "/OAuthToken/**") AND (request.verb = "POST")"#,
            false,
        ),
        (
            122,
            r#"proxy.pathsuffix MatchesPath "/OAuthToken(**""#,
            false,
        ),
        (
            123,
            r#"proxy.pathsuffix MatchesPath "/OAuthToken(**""#,
            false,
        ),
        (
            124,
            r#"proxy.pathsuffix MatchesPath "/OAuthToken(**""#,
            false,
        ),
        (125, r#"request.uri MatchesPath "/v1/users""#, false),
        (126, r#"not (request.verb = "POST")"#, false),
        (127, r#"!(request.verb = "POST")"#, false),
        (
            128,
            r#"NOT(request.header.auth-type = "passthrough") AND NOT (request.header.auth-type = "impersonated")"#,
            false,
        ),
        (
            129,
            r#"request.verb IsNot "GET" and !proxy.pathsuffix MatchesPath "/path""#,
            false,
        ),
        (
            130,
            r#"request.verb = "POST" and request.verb = "PUT" or request.verb = "GET""#,
            false,
        ),
        (
            131,
            r#"request.verb = "GET" or request.verb = "PUT" and proxy.pathsuffix = "/x""#,
            false,
        ),
        (
            132,
            r#"(request.verb = "GET" or request.verb = "PUT") and proxy.pathsuffix = "/x""#,
            false,
        ),
        (
            133,
            r#"error.status.code = 429 Or error.status.code GreaterThan 499"#,
            false,
        ),
        (
            134,
            r#"proxy.pathsuffix ~ "/authorize" && request.verb = "POST""#,
            false,
        ),
        (
            135,
            r#"request.verb = "PUT" || request.verb = "POST""#,
            false,
        ),
        (
            136,
            r#"proxy.pathsuffix MatchesPath "/a" AnD request.verb = "GET""#,
            false,
        ),
        (137, r#""#, false),
        (138, r#"request.verb="GET""#, false),
        (139, r#"!valid"#, false),
        (140, r#"true or false"#, false),
        (141, r#"request.verb = 'GET'"#, true),
        (142, r#"'request.header.help!me' = "yes""#, false),
        (
            143,
            r#"request.formparam.grant_type = "authorization_code"#,
            true,
        ),
        (
            144,
            r#"request.formparam.grant_type = "authorization_code"""#,
            true,
        ),
        (
            145,
            r#"(request.formparam.grant_type = "authorization_code""#,
            true,
        ),
        (
            146,
            r#"request.formparam.grant_type = "authorization_code")"#,
            true,
        ),
        (147, r#"request.formparam.grant_type = "#, true),
        (
            148,
            r#"request.formparam.grant_type = "client_credentials" and "#,
            true,
        ),
        (149, r#"a = "1" and and request.header.foo is null"#, true),
        (150, r#""request.formparam.grant_type is null""#, true),
        (151, r#"{seven = "5"} AND {valid = false}"#, true),
        (152, r#"request.formparam.grant_type SeemsLike "x""#, true),
        (153, r#"request.formparam.grant_type equalsa "x""#, true),
        (154, r#"proxy.pathsuffix MatchesLike false"#, true),
        (155, r#""a-string" = "another-string""#, true),
        (156, r#"20 = 42"#, true),
        (
            157,
            r#"request.formparam.grant_type MatchesPath symbol_name"#,
            true,
        ),
        (
            158,
            r#"request.formparam.grant_type Equals symbol_name"#,
            false,
        ),
        (159, r#"request.verb Not Equals "GET""#, true),
        (160, r#"request.verb === "GET""#, true),
        (
            163,
            r#"not (proxy.pathsuffix MatchesPath "**/health/*" or proxy.pathsuffix MatchesPath "**/healthz/**" or )"#,
            true,
        ),
    ];
}
