//! The parser: a nom lexer producing one token at a time, driven by a recursive-descent
//! parser with an explicit nesting counter.
//!
//! Tokens are read on demand, so the first problem in the text is the one reported, whether
//! it is lexical (an unterminated string) or syntactic (a dangling `AND`). Recursion happens
//! only through parentheses and is bounded by [`ParseOptions::max_depth`]; chains of `AND`
//! and `OR` and runs of `NOT` are handled by loops.

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
    /// [`ParseOptions::DEPTH_CEILING`] act as the ceiling, so that no setting can exhaust
    /// the stack.
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
    let expr = parser.parse_expr(Level::Outer, None)?;
    let next = parser.peek()?;
    match next.tok {
        Tok::Eof => Ok(Condition { expr: Some(expr) }),
        Tok::RParen => Err(parser.error(next.span, "unmatched `)`")),
        _ => Err(parser.error(
            next.span,
            format!(
                "expected `AND`, `OR` or the end of the condition, found {}",
                next.describe()
            ),
        )),
    }
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

/// The two precedence levels of the connectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The loosest connective (`OR` in Edge, `AND` in Apigee X).
    Outer,
    /// The tighter connective.
    Inner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connective {
    And,
    Or,
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
            '&' | '|' => self
                .error(one, format!("unexpected `{first}`"))
                .with_hint(format!("write `{first}{first}`, or use `AND` / `OR`")),
            '-' => self
                .error(one, "unexpected `-`")
                .with_hint("arithmetic is not supported; a negative number is written `-5`"),
            c if c.is_control() => self.error(one, format!("unexpected character {c:?}")),
            c => self.error(one, format!("unexpected character `{c}`")),
        }
    }

    fn connective(&self, level: Level) -> Connective {
        match (self.dialect, level) {
            (Dialect::Edge, Level::Outer) | (Dialect::ApigeeX, Level::Inner) => Connective::Or,
            (Dialect::Edge, Level::Inner) | (Dialect::ApigeeX, Level::Outer) => Connective::And,
        }
    }

    /// `level ( CONNECTIVE level )*`, left-associative, built in a loop.
    fn parse_expr(&mut self, level: Level, after: Option<Token<'a>>) -> Result<Expr, ParseError> {
        let conn = self.connective(level);
        let mut lhs = self.parse_operand_of(level, after)?;
        loop {
            let t = self.peek()?;
            let matches = matches!(
                (t.tok, conn),
                (Tok::And, Connective::And) | (Tok::Or, Connective::Or)
            );
            if !matches {
                return Ok(lhs);
            }
            self.bump()?;
            let rhs = self.parse_operand_of(level, Some(t))?;
            let span = lhs.span().to(rhs.span());
            let (lhs_box, rhs_box) = (Box::new(lhs), Box::new(rhs));
            lhs = match conn {
                Connective::And => Expr::And {
                    lhs: lhs_box,
                    rhs: rhs_box,
                    span,
                },
                Connective::Or => Expr::Or {
                    lhs: lhs_box,
                    rhs: rhs_box,
                    span,
                },
            };
        }
    }

    fn parse_operand_of(
        &mut self,
        level: Level,
        after: Option<Token<'a>>,
    ) -> Result<Expr, ParseError> {
        match level {
            Level::Outer => self.parse_expr(Level::Inner, after),
            Level::Inner => self.parse_unary(after),
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

    /// `NOT* primary`. The `NOT`s are counted in a loop, not by recursion.
    fn parse_unary(&mut self, mut after: Option<Token<'a>>) -> Result<Expr, ParseError> {
        let mut nots = Vec::new();
        loop {
            let t = self.peek()?;
            if t.tok != Tok::Not {
                break;
            }
            self.enter(t.span)?;
            self.bump()?;
            nots.push(t.span.start);
            after = Some(t);
        }
        let mut expr = self.parse_primary(after)?;
        for start in nots.into_iter().rev() {
            self.depth = self.depth.saturating_sub(1);
            let span = Span::new(start, expr.span().end);
            expr = Expr::Not {
                operand: Box::new(expr),
                span,
            };
        }
        Ok(expr)
    }

    /// `( expr )`, a comparison or a bare operand.
    fn parse_primary(&mut self, after: Option<Token<'a>>) -> Result<Expr, ParseError> {
        let t = self.peek()?;
        match t.tok {
            Tok::LParen => {
                self.enter(t.span)?;
                self.bump()?;
                let inner = self.parse_expr(Level::Outer, Some(t))?;
                let close = self.peek()?;
                match close.tok {
                    Tok::RParen => {
                        self.bump()?;
                        self.depth = self.depth.saturating_sub(1);
                        Ok(inner)
                    }
                    Tok::Eof => Err(self
                        .error(t.span, "unclosed `(`")
                        .with_hint("add a matching `)`")),
                    _ => Err(self.error(
                        close.span,
                        format!("expected `)`, `AND` or `OR`, found {}", close.describe()),
                    )),
                }
            }
            Tok::Name(_)
            | Tok::Quoted(_)
            | Tok::Str(_)
            | Tok::Number(_)
            | Tok::Null
            | Tok::True
            | Tok::False => {
                self.bump()?;
                self.parse_comparison(t)
            }
            _ => Err(self.expected_condition(t, after)),
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
                    "write the pattern in double quotes, as in `{} \"...\"`",
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
                .with_hint("numbers are written `-?digits(.digits)?` with an optional `f`, `d` or `L` suffix")
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

    fn p(text: &str) -> Condition {
        match parse(text) {
            Ok(c) => c,
            Err(e) => panic!("{text:?} failed: {}", e.render(text)),
        }
    }

    fn px(text: &str) -> Condition {
        let opts = ParseOptions {
            dialect: Dialect::ApigeeX,
            ..ParseOptions::default()
        };
        parse_with(text, &opts).unwrap()
    }

    fn err(text: &str) -> ParseError {
        match parse(text) {
            Ok(c) => panic!("{text:?} parsed as {c:?}"),
            Err(e) => e,
        }
    }

    /// The printed (canonical) form, which makes structural assertions compact.
    fn canon(text: &str) -> String {
        p(text).to_string()
    }

    #[test]
    fn smoke() {
        for t in ["a = \"b\"", "a=\"b\"", "(a = \"b\") and not (c ~~ \"x\")"] {
            eprintln!("{t} => {}", canon(t));
        }
    }
}
