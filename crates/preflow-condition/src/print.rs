//! Canonical printing.
//!
//! Operators are printed in their canonical spelling ([`Op::canonical`]), connectives as
//! `AND`, `OR` and `NOT`, strings in double quotes, `Long` with an `L` suffix, `Float` with
//! an `f` suffix and `Double` always with a decimal point. Parentheses are inserted so that
//! the text parses back to the same tree in both dialects: a child of `AND`/`OR` that is
//! the other connective is always parenthesised, as is a right child that is the same
//! connective, and the operand of `NOT` is parenthesised when it is a comparison or a
//! connective.
//!
//! Added parentheses can make the canonical text nest up to about twice as deep as the text
//! it was parsed from (`a OR b AND (c OR d AND e)` prints as
//! `a OR (b AND (c OR (d AND e)))`), so parse it back with a `max_depth` to match.
//!
//! Two trees have no faithful text: a string literal holding `"` (the language has no
//! escapes) and a non-finite number. They print, but do not parse back.
//!
//! Left-nested chains of one connective (`a AND b AND c ...`, whose depth is not bounded by
//! the parser's nesting limit) are printed in a loop, so printing recurses only as deep as
//! the parentheses and `NOT`s of the tree.

use crate::ast::{Comparison, Condition, Expr, Literal, Operand, Variable};
use crate::parse::is_plain_name;
use std::fmt;

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expr {
            Some(e) => e.fmt(f),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or { .. } | Expr::And { .. } => write_chain(self, f),
            Expr::Not { operand, .. } => {
                f.write_str("NOT ")?;
                match operand.as_ref() {
                    Expr::Or { .. } | Expr::And { .. } | Expr::Compare(_) => {
                        write!(f, "({operand})")
                    }
                    Expr::Not { .. } | Expr::Operand(_) => operand.fmt(f),
                }
            }
            Expr::Compare(c) => c.fmt(f),
            Expr::Operand(o) => o.fmt(f),
        }
    }
}

/// Whether `e` is a connective, and which: `Some(true)` for `OR`, `Some(false)` for `AND`.
fn connective(e: &Expr) -> Option<bool> {
    match e {
        Expr::Or { .. } => Some(true),
        Expr::And { .. } => Some(false),
        _ => None,
    }
}

/// Prints `e` (an `AND` or `OR`) by walking its left spine of the same connective.
fn write_chain(e: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let is_or = connective(e);
    let mut rights = Vec::new();
    let mut leftmost = e;
    loop {
        match leftmost {
            Expr::Or { lhs, rhs, .. } | Expr::And { lhs, rhs, .. }
                if connective(leftmost) == is_or =>
            {
                rights.push(rhs.as_ref());
                leftmost = lhs;
            }
            _ => break,
        }
    }
    if connective(leftmost).is_some() {
        write!(f, "({leftmost})")?;
    } else {
        fmt::Display::fmt(leftmost, f)?;
    }
    let word = if is_or == Some(true) { " OR " } else { " AND " };
    for rhs in rights.into_iter().rev() {
        f.write_str(word)?;
        if connective(rhs).is_some() {
            write!(f, "({rhs})")?;
        } else {
            fmt::Display::fmt(rhs, f)?;
        }
    }
    Ok(())
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = if self.negated { "NOT " } else { "" };
        write!(f, "{} {not}{} {}", self.lhs, self.op.canonical(), self.rhs)
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Variable(v) => v.fmt(f),
            Operand::Literal { value, .. } => value.fmt(f),
        }
    }
}

impl fmt::Display for Variable {
    /// The name, in single quotes when it was quoted or cannot be written bare (it holds
    /// an operator character or is a keyword).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted || !is_plain_name(&self.name) {
            write!(f, "'{}'", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write!(f, "\"{s}\""),
            Literal::Integer(i) => write!(f, "{i}"),
            Literal::Long(l) => write!(f, "{l}L"),
            Literal::Float(x) => {
                write_decimal(f, &x.to_string(), x.is_finite())?;
                f.write_str("f")
            }
            Literal::Double(x) => write_decimal(f, &x.to_string(), x.is_finite()),
            Literal::Boolean(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
        }
    }
}

/// A finite number printed by `Display` (never in exponent form), with `.0` added when it
/// has no decimal point, so that an unsuffixed double stays a double.
fn write_decimal(f: &mut fmt::Formatter<'_>, digits: &str, finite: bool) -> fmt::Result {
    f.write_str(digits)?;
    if finite && !digits.contains('.') {
        f.write_str(".0")?;
    }
    Ok(())
}
