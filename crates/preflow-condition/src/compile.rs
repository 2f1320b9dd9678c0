//! The compiled form of a condition and its evaluator.
//!
//! Compiling resolves every variable name to a host handle once, converts literals to their
//! runtime values, compiles every pattern (glob, path expression, regex) and folds constant
//! parts, so that evaluating a request does no parsing, no name lookup beyond the host's
//! [`Variables::get`] and no allocation. Chains of `AND` / `OR` become flat n-ary nodes,
//! which keeps the tree shallow: its depth grows only with alternating nesting, and that
//! depth is limited ([`MAX_DEPTH`]), so neither compiling nor evaluating can exhaust the
//! stack.

use crate::ast::{Comparison, Condition, Expr, Literal, Op, Operand, Span};
use crate::error::CompileError;
use crate::eval::{NumText, Rel, eq_ignore_case, relate, truthy};
use crate::java_regex;
use crate::pattern::{self, Glob, PatternError};
use crate::value::{Resolve, Value, Variables};
use std::collections::HashMap;

/// The deepest nesting of alternating `AND`, `OR` and `NOT` a compiled condition may have.
/// Chains of one connective (`a and b and c …`) do not count towards it. The limit is above
/// the parser's own ceiling ([`ParseOptions::DEPTH_CEILING`](crate::ParseOptions::DEPTH_CEILING)),
/// so every parsed condition compiles; it guards against trees built by other means.
pub const MAX_DEPTH: usize = 512;

/// A compiled condition over variable handles of type `H`, ready to evaluate many times.
///
/// Built by [`compile`](crate::compile) or [`Condition::compile`]. Evaluation follows
/// `spec/conditions.md` §4 and the decisions of DESIGN.md:
///
/// * `=`, `!=`, `>`, `>=`, `<`, `<=` adapt their operands to a common type: a String on
///   either side makes a String comparison (numbers printed as Java prints them, so
///   `404 = "404"` and `404.0 = "404.0"`); otherwise Integer < Long < Float < Double, with a
///   Boolean widened to Integer 1 or 0 against a number. Strings order by UTF-16 code unit
///   (Java `compareTo`). A collection or other [`Value::Object`] makes every non-null
///   comparison false, `!=` included.
/// * Null operands follow the null table: `=` is true only for null against null; `!=` is
///   true when exactly one side is null; `>` and `<` are true when only the left side is
///   null; `>=` is true when the right side is null; `<=` is true when the left side is.
/// * `:=` has the null behaviour of `=` and compares string forms ignoring case.
///   `StartsWith` is a plain case-sensitive prefix test of string forms; null on either
///   side is false.
/// * `Matches` is a whole-string glob (`*` any run of characters, `/` and line breaks
///   included; `%c` the literal `c`). `MatchesPath` is the reference algorithm of §4.4
///   (`*` and `{name}` one path element, `**` any run of elements, `%c` literal), so
///   the pattern `/` matches only `/`: the 2015 report of it matching the empty path
///   suffix is a documented divergence. `JavaRegex` must match the whole value. A null
///   left side never matches; infix `Not` (and `!~`) negate the whole comparison, so they
///   are true for a null left side. Numbers on the left are matched by their string form.
/// * A bare variable is true iff it holds Boolean true or the String `true` in any case.
///
/// `JavaRegex` patterns run on the `regex` crate, with `\d`, `\w`, `\s` made ASCII-only and
/// `\Q…\E` quoting supported as in Java. Java-only syntax (look-around, backreferences,
/// atomic groups, possessive quantifiers) is a compile error. Remaining differences: `(?i)`
/// folds Unicode case here and only ASCII in Java by default, and `.` excludes only `\n`
/// here but every line terminator in Java.
#[derive(Debug, Clone)]
pub struct Compiled<H> {
    root: Node<H>,
}

impl<H> Compiled<H> {
    /// Evaluates the condition against the variables of one request. Allocates nothing.
    pub fn eval<V: Variables<Handle = H>>(&self, vars: &V) -> bool {
        self.root.eval(vars)
    }

    /// The value of a condition that reads no variable (such as the empty condition, `true`
    /// or `true or x`), or `None` when the result depends on variables.
    pub fn constant(&self) -> Option<bool> {
        match self.root {
            Node::Const(b) => Some(b),
            _ => None,
        }
    }
}

/// One node of the compiled tree.
#[derive(Debug, Clone)]
enum Node<H> {
    /// A constant (literal operands, empty conditions, folded connectives).
    Const(bool),
    /// True iff every child is true; evaluated left to right, stopping at the first false.
    All(Box<[Node<H>]>),
    /// True iff some child is true; evaluated left to right, stopping at the first true.
    Any(Box<[Node<H>]>),
    /// Negation.
    Not(Box<Node<H>>),
    /// A bare variable: true iff Boolean true or the String `true` in any case.
    Truthy(H),
    /// `=`, `!=`, `>`, `>=`, `<`, `<=` with type adaptation and the null table.
    Relate { lhs: H, rel: Rel, rhs: Arg<H> },
    /// `= "literal"`: a String compares bytes directly; other values go through
    /// [`relate`] (numbers by their Java string form).
    EqText { lhs: H, text: Box<str> },
    /// `= null` (`negate: false`) or `!= null` (`negate: true`): whether the value is
    /// null, which is all the null table decides for a null literal.
    IsNull { lhs: H, negate: bool },
    /// `:=`: like `=`, comparing string forms case-insensitively.
    EqIgnoreCase { lhs: H, rhs: Arg<H> },
    /// `=|` against a variable or a literal that is not a string: plain, case-sensitive
    /// prefix of string forms. Null on either side is false.
    StartsWith { lhs: H, rhs: Arg<H>, negate: bool },
    /// A prefix test against a literal: `=| "text"`, and a glob that is a literal prefix
    /// and then any run of characters (`MatchesPath "/v1/orders/**"`, `Matches "abc*"`).
    /// A null left side does not match.
    Prefix {
        lhs: H,
        prefix: Box<str>,
        negate: bool,
    },
    /// `~`, `~/`: a hand-written glob. A null left side does not match.
    Glob {
        lhs: H,
        glob: Box<Glob>,
        negate: bool,
    },
    /// `~~`: a full-match regex. A null left side does not match.
    Regex {
        lhs: H,
        regex: Box<regex::Regex>,
        negate: bool,
    },
}

/// A right-hand side: a variable or a literal converted at compile time.
#[derive(Debug, Clone)]
enum Arg<H> {
    Var(H),
    Lit(Lit),
}

/// A literal in its runtime form.
#[derive(Debug, Clone)]
enum Lit {
    Null,
    String(Box<str>),
    Integer(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Boolean(bool),
}

impl Lit {
    fn of(lit: &Literal) -> Lit {
        match lit {
            Literal::String(s) => Lit::String(s.as_str().into()),
            Literal::Integer(i) => Lit::Integer(*i),
            Literal::Long(l) => Lit::Long(*l),
            Literal::Float(f) => Lit::Float(*f),
            Literal::Double(d) => Lit::Double(*d),
            Literal::Boolean(b) => Lit::Boolean(*b),
            Literal::Null => Lit::Null,
        }
    }

    fn value(&self) -> Value<'_> {
        match self {
            Lit::Null => Value::Null,
            Lit::String(s) => Value::String(s),
            Lit::Integer(i) => Value::Integer(*i),
            Lit::Long(l) => Value::Long(*l),
            Lit::Float(f) => Value::Float(*f),
            Lit::Double(d) => Value::Double(*d),
            Lit::Boolean(b) => Value::Boolean(*b),
        }
    }
}

impl<H> Arg<H> {
    #[inline]
    fn get<'v, V: Variables<Handle = H>>(&'v self, vars: &'v V) -> Value<'v> {
        match self {
            Arg::Var(h) => vars.get(h),
            Arg::Lit(l) => l.value(),
        }
    }
}

impl<H> Node<H> {
    /// Connectives recurse through this function; the comparisons under them are
    /// evaluated in line ([`Node::in_line`]), so a chain of comparisons costs one call, not
    /// one per comparison.
    fn eval<V: Variables<Handle = H>>(&self, vars: &V) -> bool {
        match self {
            Node::All(children) => children.iter().all(|c| c.in_line(vars)),
            Node::Any(children) => children.iter().any(|c| c.in_line(vars)),
            Node::Not(inner) => !inner.in_line(vars),
            leaf => leaf.in_line(vars),
        }
    }

    #[inline(always)]
    fn in_line<V: Variables<Handle = H>>(&self, vars: &V) -> bool {
        match self {
            Node::All(_) | Node::Any(_) | Node::Not(_) => self.eval(vars),
            Node::Const(b) => *b,
            Node::Truthy(h) => truthy(vars.get(h)),
            Node::Relate { lhs, rel, rhs } => relate(*rel, vars.get(lhs), rhs.get(vars)),
            Node::EqText { lhs, text } => match vars.get(lhs) {
                Value::String(s) => pattern::bytes_eq(s.as_bytes(), text.as_bytes()),
                other => relate(Rel::Eq, other, Value::String(text)),
            },
            Node::IsNull { lhs, negate } => matches!(vars.get(lhs), Value::Null) != *negate,
            Node::EqIgnoreCase { lhs, rhs } => eq_ignore_case_values(vars.get(lhs), rhs.get(vars)),
            Node::StartsWith { lhs, rhs, negate } => {
                starts_with(vars.get(lhs), rhs.get(vars)) != *negate
            }
            Node::Prefix {
                lhs,
                prefix,
                negate,
            } => with_text(vars.get(lhs), |s| pattern::starts_with(s, prefix)) != *negate,
            Node::Glob { lhs, glob, negate } => {
                with_text(vars.get(lhs), |s| glob.is_match(s)) != *negate
            }
            Node::Regex { lhs, regex, negate } => {
                with_text(vars.get(lhs), |s| regex.is_match(s)) != *negate
            }
        }
    }
}

/// Applies `f` to the string form of `v` (numbers and booleans as Java prints them). Null
/// and objects have no string form, and give false.
#[inline]
fn with_text(v: Value<'_>, f: impl FnOnce(&str) -> bool) -> bool {
    match v {
        Value::String(s) => f(s),
        other => NumText::of(other).is_some_and(|t| f(t.as_str())),
    }
}

/// `:=` follows the null table of `=`; non-null operands compare by string form, ignoring
/// case.
fn eq_ignore_case_values(lhs: Value<'_>, rhs: Value<'_>) -> bool {
    match (lhs, rhs) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (a, b) => with_text(a, |a| with_text(b, |b| eq_ignore_case(a, b))),
    }
}

/// `=|` on the string forms of both sides; null or object on either side is false.
fn starts_with(lhs: Value<'_>, rhs: Value<'_>) -> bool {
    with_text(lhs, |l| with_text(rhs, |r| pattern::starts_with(l, r)))
}

/// The node of a compiled glob: a prefix test when that is all the pattern asks.
fn glob_node<H>(lhs: H, glob: Glob, negate: bool) -> Node<H> {
    match glob.as_prefix() {
        Some(prefix) => Node::Prefix {
            lhs,
            prefix: prefix.into(),
            negate,
        },
        None => Node::Glob {
            lhs,
            glob: Box::new(glob),
            negate,
        },
    }
}

/// Compiles `cond` (parsed from `source`) against `resolver`.
pub(crate) fn compile<R: Resolve>(
    cond: &Condition,
    source: &str,
    resolver: &R,
) -> Result<Compiled<R::Handle>, CompileError> {
    let root = match &cond.expr {
        None => Node::Const(true),
        Some(expr) => Compiler { source, resolver }.expr(expr, 0)?,
    };
    Ok(Compiled { root })
}

struct Compiler<'s, 'r, R> {
    source: &'s str,
    resolver: &'r R,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Chain {
    And,
    Or,
}

impl<R: Resolve> Compiler<'_, '_, R> {
    fn expr(&self, expr: &Expr, depth: usize) -> Result<Node<R::Handle>, CompileError> {
        if depth > MAX_DEPTH {
            return Err(CompileError::new(
                self.source,
                expr.span(),
                format!("condition nested more than {MAX_DEPTH} levels deep"),
            )
            .with_hint("split the condition or remove redundant parentheses"));
        }
        match expr {
            Expr::And { .. } => self.chain(expr, Chain::And, depth),
            Expr::Or { .. } => self.chain(expr, Chain::Or, depth),
            Expr::Not { operand, .. } => Ok(match self.expr(operand, depth + 1)? {
                Node::Const(b) => Node::Const(!b),
                Node::Not(inner) => *inner,
                node => Node::Not(Box::new(node)),
            }),
            Expr::Operand(Operand::Variable(v)) => Ok(Node::Truthy(self.resolver.resolve(&v.name))),
            Expr::Operand(Operand::Literal { value, .. }) => {
                Ok(Node::Const(truthy(Lit::of(value).value())))
            }
            Expr::Compare(c) => self.comparison(c),
        }
    }

    /// Flattens a chain of one connective into an n-ary node, without recursing along the
    /// chain, and folds constant operands.
    fn chain(
        &self,
        expr: &Expr,
        kind: Chain,
        depth: usize,
    ) -> Result<Node<R::Handle>, CompileError> {
        // Leaves in source order: walk with an explicit stack, right operand pushed first.
        let mut stack = vec![expr];
        let mut children = Vec::new();
        // The value that decides the whole chain: false for AND, true for OR.
        let absorbing = kind == Chain::Or;
        while let Some(e) = stack.pop() {
            match (e, kind) {
                (Expr::And { lhs, rhs, .. }, Chain::And)
                | (Expr::Or { lhs, rhs, .. }, Chain::Or) => {
                    stack.push(rhs);
                    stack.push(lhs);
                }
                _ => match self.expr(e, depth + 1)? {
                    Node::Const(b) if b == absorbing => {
                        // Still compile the rest, so that its errors are reported.
                        children.clear();
                        children.push(Node::Const(b));
                    }
                    Node::Const(_) => {}
                    node => {
                        if !matches!(children.first(), Some(Node::Const(_))) {
                            children.push(node);
                        }
                    }
                },
            }
        }
        Ok(match children.len() {
            0 => Node::Const(!absorbing),
            1 => children.pop().unwrap_or(Node::Const(!absorbing)),
            _ => match kind {
                Chain::And => Node::All(children.into_boxed_slice()),
                Chain::Or => Node::Any(children.into_boxed_slice()),
            },
        })
    }

    fn arg(&self, operand: &Operand) -> Arg<R::Handle> {
        match operand {
            Operand::Variable(v) => Arg::Var(self.resolver.resolve(&v.name)),
            Operand::Literal { value, .. } => Arg::Lit(Lit::of(value)),
        }
    }

    fn comparison(&self, c: &Comparison) -> Result<Node<R::Handle>, CompileError> {
        let lhs = self.resolver.resolve(&c.lhs.name);
        let negate = c.negated;
        let node = match c.op {
            Op::Equals => self.relate(lhs, Rel::Eq, c),
            Op::NotEquals => self.relate(lhs, Rel::Ne, c),
            Op::GreaterThan => self.relate(lhs, Rel::Gt, c),
            Op::GreaterThanOrEquals => self.relate(lhs, Rel::Ge, c),
            Op::LesserThan => self.relate(lhs, Rel::Lt, c),
            Op::LesserThanOrEquals => self.relate(lhs, Rel::Le, c),
            Op::EqualsCaseInsensitive => Node::EqIgnoreCase {
                lhs,
                rhs: self.arg(&c.rhs),
            },
            Op::StartsWith => {
                return Ok(match self.arg(&c.rhs) {
                    Arg::Lit(Lit::String(prefix)) => Node::Prefix {
                        lhs,
                        prefix,
                        negate,
                    },
                    rhs => Node::StartsWith { lhs, rhs, negate },
                });
            }
            Op::Matches => {
                let pattern = self.pattern_literal(c)?;
                return Ok(glob_node(lhs, Glob::matches(pattern), negate));
            }
            Op::MatchesPath => {
                let pattern = self.pattern_literal(c)?;
                let glob = Glob::matches_path(pattern).map_err(|e| self.path_error(c, &e))?;
                return Ok(glob_node(lhs, glob, negate));
            }
            Op::JavaRegex => {
                let pattern = self.pattern_literal(c)?;
                let regex = self.regex(pattern, c.rhs.span())?;
                return Ok(Node::Regex {
                    lhs,
                    regex: Box::new(regex),
                    negate,
                });
            }
        };
        Ok(if negate {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    fn relate(&self, lhs: R::Handle, rel: Rel, c: &Comparison) -> Node<R::Handle> {
        // The common shapes against a literal get nodes that skip type adaptation.
        match (rel, self.arg(&c.rhs)) {
            (Rel::Eq, Arg::Lit(Lit::String(text))) => Node::EqText { lhs, text },
            (Rel::Eq, Arg::Lit(Lit::Null)) => Node::IsNull { lhs, negate: false },
            (Rel::Ne, Arg::Lit(Lit::Null)) => Node::IsNull { lhs, negate: true },
            (rel, rhs) => Node::Relate { lhs, rel, rhs },
        }
    }

    /// The string literal a pattern operator needs on its right-hand side.
    fn pattern_literal<'c>(&self, c: &'c Comparison) -> Result<&'c str, CompileError> {
        match &c.rhs {
            Operand::Literal {
                value: Literal::String(s),
                ..
            } => Ok(s),
            other => Err(CompileError::new(
                self.source,
                other.span(),
                format!(
                    "the pattern of `{}` must be a string literal",
                    c.op.canonical()
                ),
            )
            .with_hint("write the pattern in double quotes")),
        }
    }

    fn path_error(&self, c: &Comparison, e: &PatternError) -> CompileError {
        let lit = c.rhs.span();
        match e {
            PatternError::UnclosedBrace(at) => {
                // The pattern text starts after the opening quote.
                let start = lit.start.saturating_add(1).saturating_add(*at);
                let span = Span::new(start.min(lit.end), lit.end);
                CompileError::new(
                    self.source,
                    span,
                    "unbalanced `{` in path expression: a `{name}` needs its closing `}` in the same path element",
                )
                .with_hint("close the brace, or write `%{` for a literal `{`")
            }
        }
    }

    /// Compiles a JavaRegex pattern as a full match.
    fn regex(&self, pattern: &str, span: Span) -> Result<regex::Regex, CompileError> {
        java_regex::compile(pattern).map_err(|e| {
            let err = CompileError::new(
                self.source,
                span,
                format!("invalid JavaRegex pattern: {}", e.problem),
            );
            match e.hint {
                Some(hint) => err.with_hint(hint),
                None => err,
            }
        })
    }
}

/// A resolver whose handles are the variable names themselves, for use with
/// [`MapVariables`] or any host that looks variables up by name at evaluation time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Names;

impl Resolve for Names {
    type Handle = Box<str>;
    fn resolve(&self, name: &str) -> Box<str> {
        name.into()
    }
}

/// An owned [`Value`], for hosts and tools that keep variables in a map.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    /// Null (the same as an unset variable).
    Null,
    /// `java.lang.String`.
    String(String),
    /// `java.lang.Integer`.
    Integer(i32),
    /// `java.lang.Long`.
    Long(i64),
    /// `java.lang.Float`.
    Float(f32),
    /// `java.lang.Double`.
    Double(f64),
    /// `java.lang.Boolean`.
    Boolean(bool),
    /// A collection or other object; every comparison with it is false.
    Object,
}

impl OwnedValue {
    /// The borrowed view of this value.
    pub fn as_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::String(s) => Value::String(s),
            OwnedValue::Integer(i) => Value::Integer(*i),
            OwnedValue::Long(l) => Value::Long(*l),
            OwnedValue::Float(f) => Value::Float(*f),
            OwnedValue::Double(d) => Value::Double(*d),
            OwnedValue::Boolean(b) => Value::Boolean(*b),
            OwnedValue::Object => Value::Object,
        }
    }
}

impl From<Value<'_>> for OwnedValue {
    fn from(v: Value<'_>) -> Self {
        match v {
            Value::Null => OwnedValue::Null,
            Value::String(s) => OwnedValue::String(s.to_owned()),
            Value::Integer(i) => OwnedValue::Integer(i),
            Value::Long(l) => OwnedValue::Long(l),
            Value::Float(f) => OwnedValue::Float(f),
            Value::Double(d) => OwnedValue::Double(d),
            Value::Boolean(b) => OwnedValue::Boolean(b),
            Value::Object => OwnedValue::Object,
        }
    }
}

impl<'a> From<&'a OwnedValue> for Value<'a> {
    fn from(v: &'a OwnedValue) -> Self {
        v.as_value()
    }
}

/// Variables kept in a map by name, for use with [`Names`]. Names are exact: any case
/// folding (such as for header names) is up to whoever fills the map.
#[derive(Debug, Clone, Default)]
pub struct MapVariables {
    map: HashMap<String, OwnedValue>,
}

impl MapVariables {
    /// Sets `name` to `value`, replacing any earlier value.
    pub fn set(&mut self, name: &str, value: OwnedValue) {
        self.map.insert(name.to_owned(), value);
    }

    /// Unsets `name`, so that it reads as null again.
    pub fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }

    /// The value of `name`; [`Value::Null`] when unset.
    pub fn value(&self, name: &str) -> Value<'_> {
        self.map.get(name).map_or(Value::Null, OwnedValue::as_value)
    }
}

impl Variables for MapVariables {
    type Handle = Box<str>;
    fn get(&self, handle: &Box<str>) -> Value<'_> {
        self.value(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{Expr, Variable};

    fn var(name: &str) -> Variable {
        Variable {
            name: name.to_owned(),
            quoted: false,
            span: Span::default(),
        }
    }

    fn lit(value: Literal) -> Operand {
        Operand::Literal {
            value,
            span: Span::new(10, 20),
        }
    }

    fn cmp(lhs: &str, op: Op, negated: bool, rhs: Operand) -> Expr {
        Expr::Compare(Comparison {
            lhs: var(lhs),
            op,
            negated,
            rhs,
            span: Span::default(),
        })
    }

    fn s(text: &str) -> Operand {
        lit(Literal::String(text.to_owned()))
    }

    fn and(lhs: Expr, rhs: Expr) -> Expr {
        Expr::And {
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            span: Span::default(),
        }
    }

    fn or(lhs: Expr, rhs: Expr) -> Expr {
        Expr::Or {
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            span: Span::default(),
        }
    }

    fn not(operand: Expr) -> Expr {
        Expr::Not {
            operand: Box::new(operand),
            span: Span::default(),
        }
    }

    fn build(expr: Expr) -> Result<Compiled<Box<str>>, CompileError> {
        compile(&Condition { expr: Some(expr) }, &" ".repeat(40), &Names)
    }

    fn run(expr: Expr, vars: &[(&str, OwnedValue)]) -> bool {
        let mut map = MapVariables::default();
        for (k, v) in vars {
            map.set(k, v.clone());
        }
        build(expr).unwrap().eval(&map)
    }

    #[test]
    fn empty_condition_is_true() {
        let c = compile(&Condition { expr: None }, "", &Names).unwrap();
        assert!(c.eval(&MapVariables::default()));
        assert_eq!(c.constant(), Some(true));
    }

    #[test]
    fn long_chains_are_flat() {
        const N: usize = 20_000;
        let mut e = cmp("v0", Op::Equals, false, s("x"));
        for i in 1..N {
            e = and(e, cmp(&format!("v{i}"), Op::Equals, false, s("x")));
        }
        let cond = Condition { expr: Some(e) };
        let c = compile(&cond, "", &Names).unwrap();
        // Dropping a tree this deep would recurse; the test process reclaims it.
        std::mem::forget(cond);
        match &c.root {
            Node::All(children) => assert_eq!(children.len(), N),
            other => panic!("not flat: {other:?}"),
        }
        let mut map = MapVariables::default();
        assert!(!c.eval(&map));
        for i in 0..N {
            map.set(&format!("v{i}"), OwnedValue::String("x".into()));
        }
        assert!(c.eval(&map));
    }

    #[test]
    fn deep_alternation_is_an_error() {
        let mut e = cmp("v", Op::Equals, false, s("x"));
        for i in 0..1200 {
            e = if i % 2 == 0 {
                and(cmp("a", Op::Equals, false, s("x")), e)
            } else {
                or(cmp("a", Op::Equals, false, s("x")), e)
            };
        }
        let cond = Condition { expr: Some(e) };
        let err = compile(&cond, "", &Names).unwrap_err();
        // Dropping a tree this deep would recurse; the test process reclaims it.
        std::mem::forget(cond);
        assert!(err.message().contains("nested"), "{err}");
    }

    #[test]
    fn constants_fold() {
        let t = || Expr::Operand(lit(Literal::Boolean(true)));
        let f = || Expr::Operand(lit(Literal::Boolean(false)));
        let x = || cmp("x", Op::Equals, false, s("1"));
        assert_eq!(build(or(x(), t())).unwrap().constant(), Some(true));
        assert_eq!(build(and(f(), x())).unwrap().constant(), Some(false));
        assert_eq!(build(not(and(t(), t()))).unwrap().constant(), Some(false));
        assert_eq!(build(and(t(), x())).unwrap().constant(), None);
        assert!(run(and(t(), x()), &[("x", OwnedValue::String("1".into()))]));
        assert!(!run(and(t(), x()), &[]));
        // A bare string literal is truthy by the same rule as a variable.
        assert_eq!(
            build(Expr::Operand(s("TRUE"))).unwrap().constant(),
            Some(true)
        );
    }

    #[test]
    fn constant_chain_still_reports_errors() {
        let bad = cmp("x", Op::JavaRegex, false, s("(?=a)"));
        let e = or(Expr::Operand(lit(Literal::Boolean(true))), bad);
        assert!(build(e).is_err());
    }

    #[test]
    fn bare_operands() {
        let e = || Expr::Operand(Operand::Variable(var("flag")));
        assert!(run(e(), &[("flag", OwnedValue::Boolean(true))]));
        assert!(run(e(), &[("flag", OwnedValue::String("True".into()))]));
        assert!(!run(e(), &[("flag", OwnedValue::String("1".into()))]));
        assert!(!run(e(), &[]));
        assert!(run(not(e()), &[("flag", OwnedValue::Boolean(false))]));
    }

    #[test]
    fn pattern_operators_and_negation() {
        let m = |neg| cmp("p", Op::Matches, neg, s("/c*"));
        let p = |v: &str| [("p", OwnedValue::String(v.into()))];
        assert!(run(m(false), &p("/cat")));
        assert!(!run(m(true), &p("/cat")));
        assert!(!run(m(false), &[]));
        assert!(run(m(true), &[]));
        assert!(!run(m(false), &[("p", OwnedValue::Object)]));
        assert!(run(
            cmp("p", Op::Matches, false, s("4*")),
            &[("p", OwnedValue::Integer(404))]
        ));
        let mp = |neg| cmp("p", Op::MatchesPath, neg, s("/a/*"));
        assert!(run(mp(false), &p("/a/b")));
        assert!(run(mp(true), &p("/a/b/c")));
        assert!(run(mp(true), &[]));
        let re = |neg| cmp("p", Op::JavaRegex, neg, s("/items/[0-9]+"));
        assert!(run(re(false), &p("/items/12")));
        assert!(!run(re(false), &p("/items/12/x")));
        assert!(!run(re(false), &p("x/items/12")));
        assert!(run(re(true), &p("/items/ABC")));
        assert!(!run(re(false), &[]));
        assert!(run(re(true), &[]));
    }

    #[test]
    fn regex_is_a_full_match_even_with_alternation() {
        let re = cmp("p", Op::JavaRegex, false, s("a|b"));
        assert!(run(re.clone(), &[("p", OwnedValue::String("a".into()))]));
        assert!(!run(re, &[("p", OwnedValue::String("ab".into()))]));
        // An unbalanced `)` cannot break out of the anchoring group.
        assert!(build(cmp("p", Op::JavaRegex, false, s("a)|(b"))).is_err());
    }

    #[test]
    fn invalid_regex_is_a_compile_error_on_the_literal() {
        for (pattern, what) in [
            ("foo(?=bar)", "look-ahead is not supported"),
            ("a*+b", "possessive quantifier is not supported"),
            ("[a-", "invalid JavaRegex pattern"),
        ] {
            let err = build(cmp("p", Op::JavaRegex, false, s(pattern))).unwrap_err();
            assert!(err.message().contains(what), "{pattern}: {err}");
            assert_eq!(err.location().span(), Span::new(10, 20), "{pattern}");
        }
        let err = build(cmp("p", Op::JavaRegex, false, s("(?<!x)y"))).unwrap_err();
        assert!(err.hint().is_some_and(|h| h.contains("look-around")));
    }

    #[test]
    fn unbalanced_brace_points_into_the_pattern() {
        let source = r#"p MatchesPath "/v3/{ticket""#;
        let start = source.find('"').unwrap();
        let e = cmp(
            "p",
            Op::MatchesPath,
            false,
            Operand::Literal {
                value: Literal::String("/v3/{ticket".into()),
                span: Span::new(start, source.len()),
            },
        );
        let err = compile(&Condition { expr: Some(e) }, source, &Names).unwrap_err();
        assert!(err.message().contains("unbalanced `{`"), "{err}");
        assert_eq!(err.location().column(), source.find('{').unwrap() + 1);
    }

    #[test]
    fn pattern_needs_a_string_literal() {
        let e = cmp("p", Op::Matches, false, Operand::Variable(var("q")));
        assert!(build(e).unwrap_err().message().contains("string literal"));
    }

    #[test]
    fn case_insensitive_equality_and_prefix() {
        let ci = |rhs| cmp("v", Op::EqualsCaseInsensitive, false, rhs);
        let v = |t: &str| [("v", OwnedValue::String(t.into()))];
        assert!(run(ci(s("get")), &v("GET")));
        assert!(!run(ci(s("get")), &v("GETS")));
        assert!(!run(ci(s("get")), &[]));
        assert!(run(ci(lit(Literal::Null)), &[]));
        let sw = |neg, rhs| cmp("v", Op::StartsWith, neg, rhs);
        assert!(run(sw(false, s("/pets")), &v("/petshop")));
        assert!(!run(sw(false, s("/Pets")), &v("/pets")));
        assert!(!run(sw(false, s("x")), &[]));
        assert!(run(sw(true, s("x")), &[]));
        assert!(!run(sw(false, Operand::Variable(var("w"))), &v("abc")));
        assert!(run(sw(false, s("4")), &[("v", OwnedValue::Integer(404))]));
    }

    #[test]
    fn relational_with_variables_on_both_sides() {
        let e = || {
            cmp(
                "a",
                Op::GreaterThanOrEquals,
                false,
                Operand::Variable(var("b")),
            )
        };
        assert!(run(e(), &[]));
        assert!(run(e(), &[("a", OwnedValue::Integer(3))]));
        assert!(!run(e(), &[("b", OwnedValue::Integer(3))]));
        assert!(run(
            e(),
            &[("a", OwnedValue::Long(3)), ("b", OwnedValue::Double(2.5))]
        ));
    }

    #[test]
    fn owned_values_round_trip() {
        for v in [
            OwnedValue::Null,
            OwnedValue::String("x".into()),
            OwnedValue::Integer(1),
            OwnedValue::Long(2),
            OwnedValue::Float(1.5),
            OwnedValue::Double(2.5),
            OwnedValue::Boolean(true),
            OwnedValue::Object,
        ] {
            assert_eq!(OwnedValue::from(v.as_value()), v);
        }
    }
}
