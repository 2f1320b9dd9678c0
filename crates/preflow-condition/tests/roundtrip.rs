//! Property: printing a tree in canonical form and parsing the text gives the same tree
//! (spans aside), in both dialects.
//!
//! Trees are generated within the language: string literals without `"`, unquoted names
//! from the identifier grammar minus keywords, quoted names without `'` (and only where a
//! quoted name is allowed: not on the right-hand side), a string literal on the right of
//! `:=` and the pattern operators, infix negation only where it is allowed, and no string
//! literal standing alone. Failures are persisted in `proptest-regressions/roundtrip.txt`.

use preflow_condition::ast::{Comparison, Condition, Expr, Literal, Op, Operand, Span, Variable};
use preflow_condition::{Dialect, ParseOptions, parse_with};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "equals",
    "is",
    "notequals",
    "isnot",
    "equalscaseinsensitive",
    "greaterthan",
    "greaterthanorequals",
    "lesserthan",
    "lesserthanorequals",
    "startswith",
    "matches",
    "like",
    "matchespath",
    "likepath",
    "javaregex",
    "null",
    "true",
    "false",
];

const OPS: &[Op] = &[
    Op::Equals,
    Op::NotEquals,
    Op::EqualsCaseInsensitive,
    Op::GreaterThan,
    Op::GreaterThanOrEquals,
    Op::LesserThan,
    Op::LesserThanOrEquals,
    Op::StartsWith,
    Op::Matches,
    Op::MatchesPath,
    Op::JavaRegex,
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        // Keyword-like prefixes make whole-word matching work for its keep.
        "(not|and|or|is|null|true)?[A-Za-z][-A-Za-z0-9_.]{0,10}",
        prop::sample::select(vec![
            "request.verb",
            "proxy.pathsuffix",
            "notes.count",
            "isnull"
        ])
        .prop_map(str::to_owned),
    ]
    .prop_filter("keywords are not names", |s| {
        !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
    })
}

fn variable(allow_quoted: bool) -> BoxedStrategy<Variable> {
    let plain = name().prop_map(|name| Variable {
        name,
        quoted: false,
        span: Span::default(),
    });
    if allow_quoted {
        prop_oneof![
            3 => plain,
            1 => "[^']{1,12}".prop_map(|name| Variable {
                name,
                quoted: true,
                span: Span::default(),
            }),
        ]
        .boxed()
    } else {
        plain.boxed()
    }
}

fn string_literal() -> impl Strategy<Value = Literal> {
    "[^\"]{0,16}".prop_map(Literal::String)
}

/// Every literal but strings.
fn other_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<i32>().prop_map(Literal::Integer),
        any::<i64>().prop_map(Literal::Long),
        any::<f32>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Literal::Float),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Literal::Double),
        (-1000i32..1000).prop_map(|n| Literal::Double(f64::from(n) / 8.0)),
        any::<bool>().prop_map(Literal::Boolean),
        Just(Literal::Null),
    ]
}

fn literal_operand(lit: impl Strategy<Value = Literal>) -> impl Strategy<Value = Operand> {
    lit.prop_map(|value| Operand::Literal {
        value,
        span: Span::default(),
    })
}

fn comparison() -> impl Strategy<Value = Expr> {
    (variable(true), prop::sample::select(OPS), any::<bool>()).prop_flat_map(|(lhs, op, negate)| {
        let rhs = if op.requires_string_rhs() {
            literal_operand(string_literal()).boxed()
        } else {
            prop_oneof![
                literal_operand(string_literal()),
                literal_operand(other_literal()),
                variable(false).prop_map(Operand::Variable),
            ]
            .boxed()
        };
        let negated = negate && op.allows_infix_not();
        rhs.prop_map(move |rhs| {
            Expr::Compare(Comparison {
                lhs: lhs.clone(),
                op,
                negated,
                rhs,
                span: Span::default(),
            })
        })
    })
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        3 => comparison(),
        1 => variable(true).prop_map(|v| Expr::Operand(Operand::Variable(v))),
        1 => literal_operand(other_literal()).prop_map(Expr::Operand),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not {
                operand: Box::new(e),
                span: Span::default(),
            }),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::And {
                lhs: Box::new(l),
                rhs: Box::new(r),
                span: Span::default(),
            }),
            (inner.clone(), inner).prop_map(|(l, r)| Expr::Or {
                lhs: Box::new(l),
                rhs: Box::new(r),
                span: Span::default(),
            }),
        ]
    })
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        1 => Just(Condition { expr: None }),
        20 => expr().prop_map(|e| Condition { expr: Some(e) }),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/roundtrip.txt"
        )))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn print_then_parse_gives_the_same_tree(cond in condition()) {
        let text = cond.to_string();
        for dialect in [Dialect::Edge, Dialect::ApigeeX] {
            let options = ParseOptions { dialect, ..ParseOptions::default() };
            let back = parse_with(&text, &options)
                .map_err(|e| TestCaseError::fail(format!("{text:?} does not parse: {}", e.render(&text))))?;
            prop_assert_eq!(back.without_spans(), cond.clone(), "text: {:?}", text);
        }
    }

    #[test]
    fn parse_then_print_is_a_fixed_point(cond in condition()) {
        let text = cond.to_string();
        let back = parse_with(&text, &ParseOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.to_string(), text);
    }
}

/// Examples of the canonical form, so that a change in it is noticed.
#[test]
fn canonical_form_examples() {
    let cases = [
        ("request.verb equals \"GET\"", "request.verb = \"GET\""),
        ("a==1 && b IsNot null", "a = 1 AND b != null"),
        (
            "a ~/ \"/x\" || b ~~ \"y\"",
            "a MatchesPath \"/x\" OR b JavaRegex \"y\"",
        ),
        (
            "a=|\"x\" or b~\"*\"",
            "a StartsWith \"x\" OR b Matches \"*\"",
        ),
        (
            "a LIKE \"x\" and b likepath \"/p\"",
            "a Matches \"x\" AND b MatchesPath \"/p\"",
        ),
        ("x :=\"y\"", "x := \"y\""),
        ("a not ~/ \"/p\"", "a NOT MatchesPath \"/p\""),
        ("a !~ \"p\"", "a NOT Matches \"p\""),
        ("!(a = 1)", "NOT (a = 1)"),
        ("not not a", "NOT NOT a"),
        ("!(a or b)", "NOT (a OR b)"),
        ("a and b or c", "(a AND b) OR c"),
        ("a or b and c", "a OR (b AND c)"),
        ("a and (b and c)", "a AND (b AND c)"),
        ("(a and b) and c", "a AND b AND c"),
        ("x = 5L", "x = 5L"),
        ("x = 2147483648", "x = 2147483648L"),
        ("x = 3.0", "x = 3.0"),
        ("x = 3d", "x = 3.0"),
        ("x = 0.5F", "x = 0.5f"),
        ("x = 7f", "x = 7.0f"),
        ("x = -0.000001", "x = -0.000001"),
        ("x > 1e0d", ""),
        ("'help!me' = TRUE", "'help!me' = true"),
        ("'plain' = Null", "'plain' = null"),
        ("  ", ""),
    ];
    for (text, canonical) in cases {
        match parse_with(text, &ParseOptions::default()) {
            Ok(cond) => assert_eq!(cond.to_string(), canonical, "{text:?}"),
            Err(e) => assert_eq!(canonical, "", "{text:?} fails: {e}"),
        }
    }
}

#[test]
fn names_that_need_quotes_are_quoted() {
    let var = |name: &str| Variable {
        name: name.to_owned(),
        quoted: false,
        span: Span::default(),
    };
    assert_eq!(var("request.verb").to_string(), "request.verb");
    assert_eq!(var("and").to_string(), "'and'");
    assert_eq!(var("Null").to_string(), "'Null'");
    assert_eq!(var("a b").to_string(), "'a b'");
    assert_eq!(var("9lives").to_string(), "'9lives'");
    assert_eq!(Condition { expr: None }.to_string(), "");
}

#[test]
fn deep_chains_print_without_deep_recursion() {
    let text = vec!["a = 1"; 20_000].join(" and ");
    let options = ParseOptions {
        max_len: usize::MAX,
        ..ParseOptions::default()
    };
    let cond = parse_with(&text, &options).unwrap();
    let printed = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || (cond.to_string().len(), cond))
        .unwrap()
        .join()
        .unwrap()
        .0;
    assert_eq!(printed, text.len());
}
