//! The abstract syntax tree of a condition, with byte spans into the source text.
//!
//! The tree is what the parser produces and what [`Display`](std::fmt::Display) prints back
//! in canonical form. Spans are byte offsets into the text that was parsed; two trees that
//! differ only in spans are compared with [`Expr::without_spans`].

/// A half-open byte range `start..end` in the condition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The smallest span covering both.
    #[must_use]
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A parsed condition. An empty condition (only whitespace) has no expression and is true.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The expression, or `None` for an empty condition.
    pub expr: Option<Expr>,
}

/// A boolean expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `lhs OR rhs` (also `||`).
    Or {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// Span of the whole expression.
        span: Span,
    },
    /// `lhs AND rhs` (also `&&`).
    And {
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// Span of the whole expression.
        span: Span,
    },
    /// `NOT operand` (also `!`).
    Not {
        /// The negated expression.
        operand: Box<Expr>,
        /// Span of the whole expression, `NOT` included.
        span: Span,
    },
    /// A comparison `lhs op rhs`.
    Compare(Comparison),
    /// A bare operand standing alone, such as `flow.cachehit` or `true`.
    Operand(Operand),
}

/// `lhs [Not] op rhs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The left-hand side, always a variable.
    pub lhs: Variable,
    /// The operator.
    pub op: Op,
    /// Infix negation (`x Not MatchesPath "/p"`), allowed only before pattern operators and
    /// StartsWith. Means `NOT (x op rhs)`.
    pub negated: bool,
    /// The right-hand side.
    pub rhs: Operand,
    /// Span of the whole comparison.
    pub span: Span,
}

/// A comparison operator. Word and symbol spellings map to the same operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=`, `==`, `Equals`, `Is`.
    Equals,
    /// `!=`, `NotEquals`, `IsNot`.
    NotEquals,
    /// `:=`, `EqualsCaseInsensitive`.
    EqualsCaseInsensitive,
    /// `>`, `GreaterThan`.
    GreaterThan,
    /// `>=`, `GreaterThanOrEquals`.
    GreaterThanOrEquals,
    /// `<`, `LesserThan`.
    LesserThan,
    /// `<=`, `LesserThanOrEquals`.
    LesserThanOrEquals,
    /// `=|`, `StartsWith`.
    StartsWith,
    /// `~`, `Matches`, `Like`: whole-string glob with `*` and `%` escapes.
    Matches,
    /// `~/`, `MatchesPath`, `LikePath`: path expression with `*`, `**`, `{name}`.
    MatchesPath,
    /// `~~`, `JavaRegex`: full-match regular expression.
    JavaRegex,
}

impl Op {
    /// The canonical spelling used when printing.
    pub const fn canonical(self) -> &'static str {
        match self {
            Op::Equals => "=",
            Op::NotEquals => "!=",
            Op::EqualsCaseInsensitive => ":=",
            Op::GreaterThan => ">",
            Op::GreaterThanOrEquals => ">=",
            Op::LesserThan => "<",
            Op::LesserThanOrEquals => "<=",
            Op::StartsWith => "StartsWith",
            Op::Matches => "Matches",
            Op::MatchesPath => "MatchesPath",
            Op::JavaRegex => "JavaRegex",
        }
    }

    /// Whether infix `Not` may precede this operator.
    pub const fn allows_infix_not(self) -> bool {
        matches!(
            self,
            Op::StartsWith | Op::Matches | Op::MatchesPath | Op::JavaRegex
        )
    }

    /// Whether the right-hand side must be a string literal.
    pub const fn requires_string_rhs(self) -> bool {
        matches!(
            self,
            Op::EqualsCaseInsensitive | Op::Matches | Op::MatchesPath | Op::JavaRegex
        )
    }
}

/// A variable reference such as `request.header.Content-Type` or `'request.header.help!me'`.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// The name, without quotes.
    pub name: String,
    /// Whether it was written in single quotes (needed to print names holding operators).
    pub quoted: bool,
    /// Span of the reference, quotes included.
    pub span: Span,
}

/// An operand: a variable or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A variable reference.
    Variable(Variable),
    /// A literal value.
    Literal {
        /// The value.
        value: Literal,
        /// Span of the literal as written.
        span: Span,
    },
}

/// A literal value. Unsuffixed integers are `Integer` (or `Long` when they do not fit in
/// 32 bits); unsuffixed decimals are `Double`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"`, no escape sequences.
    String(String),
    /// `404`.
    Integer(i32),
    /// `12321421312L`.
    Long(i64),
    /// `3.142f`.
    Float(f32),
    /// `0.5`, `3.142d`.
    Double(f64),
    /// `true` or `false`.
    Boolean(bool),
    /// `null`.
    Null,
}

impl Expr {
    /// The span of this expression.
    pub fn span(&self) -> Span {
        match self {
            Expr::Or { span, .. } | Expr::And { span, .. } | Expr::Not { span, .. } => *span,
            Expr::Compare(c) => c.span,
            Expr::Operand(o) => o.span(),
        }
    }

    /// A copy with every span zeroed, for comparing structure only.
    #[must_use]
    pub fn without_spans(&self) -> Expr {
        match self {
            Expr::Or { lhs, rhs, .. } => Expr::Or {
                lhs: Box::new(lhs.without_spans()),
                rhs: Box::new(rhs.without_spans()),
                span: Span::default(),
            },
            Expr::And { lhs, rhs, .. } => Expr::And {
                lhs: Box::new(lhs.without_spans()),
                rhs: Box::new(rhs.without_spans()),
                span: Span::default(),
            },
            Expr::Not { operand, .. } => Expr::Not {
                operand: Box::new(operand.without_spans()),
                span: Span::default(),
            },
            Expr::Compare(c) => Expr::Compare(Comparison {
                lhs: c.lhs.without_spans(),
                op: c.op,
                negated: c.negated,
                rhs: c.rhs.without_spans(),
                span: Span::default(),
            }),
            Expr::Operand(o) => Expr::Operand(o.without_spans()),
        }
    }

    /// Calls `f` on every variable the expression reads, left to right.
    pub fn for_each_variable<'a>(&'a self, f: &mut impl FnMut(&'a Variable)) {
        match self {
            Expr::Or { lhs, rhs, .. } | Expr::And { lhs, rhs, .. } => {
                lhs.for_each_variable(f);
                rhs.for_each_variable(f);
            }
            Expr::Not { operand, .. } => operand.for_each_variable(f),
            Expr::Compare(c) => {
                f(&c.lhs);
                if let Operand::Variable(v) = &c.rhs {
                    f(v);
                }
            }
            Expr::Operand(Operand::Variable(v)) => f(v),
            Expr::Operand(Operand::Literal { .. }) => {}
        }
    }
}

impl Condition {
    /// A copy with every span zeroed, for comparing structure only.
    #[must_use]
    pub fn without_spans(&self) -> Condition {
        Condition {
            expr: self.expr.as_ref().map(Expr::without_spans),
        }
    }

    /// Every variable the condition reads, in source order (duplicates included).
    pub fn variables(&self) -> Vec<&Variable> {
        let mut out = Vec::new();
        if let Some(e) = &self.expr {
            e.for_each_variable(&mut |v| out.push(v));
        }
        out
    }
}

impl Variable {
    fn without_spans(&self) -> Variable {
        Variable {
            name: self.name.clone(),
            quoted: self.quoted,
            span: Span::default(),
        }
    }
}

impl Operand {
    /// The span of this operand.
    pub fn span(&self) -> Span {
        match self {
            Operand::Variable(v) => v.span,
            Operand::Literal { span, .. } => *span,
        }
    }

    fn without_spans(&self) -> Operand {
        match self {
            Operand::Variable(v) => Operand::Variable(v.without_spans()),
            Operand::Literal { value, .. } => Operand::Literal {
                value: value.clone(),
                span: Span::default(),
            },
        }
    }
}
