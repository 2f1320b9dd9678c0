//! The condition parser against real conditions.
//!
//! * Every condition of `conditions.jsonl` found outside apigeelint's test fixtures parses
//!   in both dialects, except the real mistakes listed in [`MISTAKES`], which must fail with
//!   exactly the listed error. Each parsed condition also prints and parses back to the same
//!   tree in both dialects.
//! * Every expression of `conditions-apigeelint-labelled.tsv` gets the verdict of its label,
//!   except the deviations listed in [`DEVIATIONS`], where the project decides differently.
//! * Every text of `conditions-history.tsv` is in `conditions.jsonl` (a check of the TSV
//!   decoding) and, outside apigeelint's repository, parses unless listed in [`MISTAKES`].
//!
//! The corpus sits beside the repository as `shared/apigee-corpus`; a missing corpus fails.

use preflow_condition::ast::Condition;
use preflow_condition::{Dialect, ParseError, ParseOptions, parse_with};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// The corpus: `shared/apigee-corpus` beside the repository (`CARGO_MANIFEST_DIR/../..`),
/// or under `$PREFLOW_SHARED` when that is set (for checkouts that do not sit beside it).
fn corpus_dir() -> PathBuf {
    let shared = std::env::var_os("PREFLOW_SHARED").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
        PathBuf::from,
    );
    shared.join("apigee-corpus")
}

fn read(name: &str) -> String {
    let path = corpus_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("corpus file {} cannot be read: {e}", path.display()))
}

/// A real condition that does not parse, why, and the error it gets.
struct Mistake {
    text: &'static str,
    reason: &'static str,
    error: &'static str,
}

const MISTAKES: &[Mistake] = &[
    Mistake {
        text: r#"proxy.pathsuffix /~ "/3leg/request_token""#,
        reason: "reversed `~/` (corpus README calls it a typo)",
        error: "unknown operator `/~` at line 1, column 18",
    },
    Mistake {
        text: r#"proxy.pathsuffix /~ "/3leg/verifier""#,
        reason: "reversed `~/`",
        error: "unknown operator `/~` at line 1, column 18",
    },
    Mistake {
        text: r#"proxy.pathsuffix /~ "/3leg/access_token""#,
        reason: "reversed `~/`",
        error: "unknown operator `/~` at line 1, column 18",
    },
    Mistake {
        text: "true = false",
        reason: "a step switched off by comparing two literals; the left-hand side must be \
                 a variable (spec §3), although apigeelint accepts it",
        error: "the left-hand side of a comparison must be a variable, found `true` \
                at line 1, column 1",
    },
    Mistake {
        text: r#"request.queryparam.offset = null or request.queryparam.offset = \"\""#,
        reason: "backslash-escaped quotes (an over-escaped empty string, older commit); \
                 strings have no escapes",
        error: "unexpected character `\\` at line 1, column 65",
    },
    Mistake {
        text: r#"request.queryparam.limit = null or request.queryparam.limit = \"\""#,
        reason: "backslash-escaped quotes, as above",
        error: "unexpected character `\\` at line 1, column 63",
    },
    Mistake {
        text: "SanitizeUserPrompt.SUP-Sanitize-User-Prompt.sdpFilterResult.inspectResult.\
               matchState = \"MATCH_FOUND\" or SanitizeModelResponse.SMR-Sanitize-Model-Response.\
               sdpFilterResult.inspectResult.matchState = \"MATCH_FOUND",
        reason: "unterminated string (older commit)",
        error: "unterminated string literal at line 1, column 198",
    },
    Mistake {
        text: r#"(request.verb = "POST") and (proxy.pathsuffix MatchesPath "/{transfer_reference}"#,
        reason: "unterminated string and unclosed `(` (older commit)",
        error: "unterminated string literal at line 1, column 59",
    },
];

/// apigeelint labels that the project does not follow, and why.
const DEVIATIONS: &[(&str, &str)] = &[
    (
        r#"A > "valid""#,
        "string RHS of a relational operator: the type-adaptation table (spec §4.2) defines \
         String comparison; DESIGN requires a string literal only after :=, ~, ~~, ~/, and \
         restricts nothing else",
    ),
    (
        r#"A >= "something""#,
        "string RHS of a relational operator, as above",
    ),
    (
        r#"A > "something""#,
        "string RHS of a relational operator, as above",
    ),
    (
        r#"A <= "something""#,
        "string RHS of a relational operator, as above",
    ),
    (
        r#"A < "something""#,
        "string RHS of a relational operator, as above",
    ),
    (
        r#"A > "c""#,
        "string RHS of a relational operator, as above",
    ),
    (
        r#"A >= "c""#,
        "string RHS of a relational operator, as above",
    ),
    (
        "A =| 103",
        "StartsWith accepts any operand on the right (spec §3 allows a variable there and \
         §4.2 adapts a number to a string); only :=, ~, ~~, ~/ require a string literal",
    ),
];

fn options(dialect: Dialect) -> ParseOptions {
    ParseOptions {
        dialect,
        ..ParseOptions::default()
    }
}

const DIALECTS: [Dialect; 2] = [Dialect::Edge, Dialect::ApigeeX];

fn mistake(text: &str) -> Option<&'static Mistake> {
    MISTAKES.iter().find(|m| m.text == text)
}

/// Parses `text` in both dialects; when it parses, checks that the canonical form parses
/// back to the same tree in both dialects.
fn parse_both(text: &str) -> Result<(), ParseError> {
    for dialect in DIALECTS {
        let cond = parse_with(text, &options(dialect))?;
        assert_round_trip(text, &cond);
    }
    Ok(())
}

fn assert_round_trip(text: &str, cond: &Condition) {
    let printed = cond.to_string();
    for dialect in DIALECTS {
        let back = parse_with(&printed, &options(dialect)).unwrap_or_else(|e| {
            panic!(
                "{text:?} printed as {printed:?}, which does not parse in {dialect:?}: {}",
                e.render(&printed)
            )
        });
        assert_eq!(
            back.without_spans(),
            cond.without_spans(),
            "{text:?} printed as {printed:?} parses to another tree in {dialect:?}"
        );
    }
}

/// Checks `text` against the mistakes list; returns whether it was a listed mistake.
fn check_real(text: &str, seen: &mut HashSet<&'static str>) -> bool {
    match (parse_both(text), mistake(text)) {
        (Ok(()), None) => false,
        (Ok(()), Some(m)) => panic!("listed mistake {text:?} ({}) now parses", m.reason),
        (Err(e), None) => panic!("real condition {text:?} fails:\n{}", e.render(text)),
        (Err(e), Some(m)) => {
            assert_eq!(e.to_string(), m.error, "error of {text:?}");
            seen.insert(m.text);
            true
        }
    }
}

#[test]
fn real_conditions_parse_except_listed_mistakes() {
    let data = read("conditions.jsonl");
    let (mut parsed, mut mistakes, mut fixtures) = (0, 0, 0);
    let mut seen = HashSet::new();
    for (n, line) in data.lines().enumerate() {
        let row: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        let text = row["condition"].as_str().expect("condition is a string");
        let fixture = row["only_in_linter_fixtures"]
            .as_bool()
            .expect("only_in_linter_fixtures is a boolean");
        if fixture {
            fixtures += 1;
            continue;
        }
        if check_real(text, &mut seen) {
            mistakes += 1;
        } else {
            parsed += 1;
        }
    }
    for m in MISTAKES {
        assert!(
            seen.contains(m.text),
            "listed mistake {:?} is not in the corpus",
            m.text
        );
    }
    eprintln!(
        "conditions.jsonl: {parsed} real conditions parsed, {mistakes} listed mistakes, \
         {fixtures} fixture-only texts skipped"
    );
    assert_eq!(
        parsed + mistakes,
        1011,
        "real (non-fixture) conditions in the corpus"
    );
    assert_eq!(mistakes, MISTAKES.len());
}

/// Splits a TSV file into rows of unescaped fields, checking the header.
fn tsv(name: &str, header: &[&str]) -> Vec<Vec<String>> {
    let data = read(name);
    let mut lines = data.lines();
    let head: Vec<&str> = lines.next().expect("header row").split('\t').collect();
    assert_eq!(head, header, "header of {name}");
    lines
        .map(|line| {
            let cols: Vec<String> = line.split('\t').map(unescape).collect();
            assert_eq!(cols.len(), header.len(), "{name}: row {line:?}");
            cols
        })
        .collect()
}

/// Undoes the TSV escapes `\\`, `\t`, `\n` and `\r`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => panic!("bad TSV escape {other:?} in {field:?}"),
        }
    }
    out
}

#[test]
fn unescape_decodes_tsv_escapes() {
    assert_eq!(unescape(r"a\tb\nc\rd\\e"), "a\tb\nc\rd\\e");
    assert_eq!(unescape(r#"x = \\"\\""#), r#"x = \"\""#);
}

#[test]
fn apigeelint_labels_agree_except_listed_deviations() {
    let rows = tsv(
        "conditions-apigeelint-labelled.tsv",
        &["source", "expect_valid", "test_or_note", "condition"],
    );
    let (mut agree, mut deviate) = (0, 0);
    let mut seen = HashSet::new();
    for row in &rows {
        let (label, note, text) = (&row[1], &row[2], &row[3]);
        let expect_valid = match label.as_str() {
            "valid" => true,
            "invalid" => false,
            other => panic!("unknown label {other:?}"),
        };
        let result = parse_both(text);
        let deviation = DEVIATIONS.iter().find(|(t, _)| t == text);
        match (result.is_ok() == expect_valid, deviation) {
            (true, None) => agree += 1,
            (false, Some((t, _))) => {
                deviate += 1;
                seen.insert(*t);
            }
            (true, Some((_, reason))) => {
                panic!("listed deviation {text:?} ({reason}) now agrees with apigeelint")
            }
            (false, None) => match result {
                Ok(()) => panic!("{text:?} is labelled invalid ({note}) but parses"),
                Err(e) => panic!(
                    "{text:?} is labelled valid ({note}) but fails:\n{}",
                    e.render(text)
                ),
            },
        }
    }
    for (t, _) in DEVIATIONS {
        assert!(
            seen.contains(t),
            "listed deviation {t:?} is not in the labelled file"
        );
    }
    eprintln!(
        "apigeelint labels: {agree} of {} agree, {deviate} listed deviations",
        rows.len()
    );
    assert_eq!(rows.len(), 223, "labelled expressions");
    assert_eq!(agree + deviate, rows.len());
}

#[test]
fn history_conditions_parse_except_listed_mistakes() {
    let known: HashSet<String> = read("conditions.jsonl")
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("jsonl row");
            row["condition"].as_str().expect("condition").to_owned()
        })
        .collect();
    let rows = tsv(
        "conditions-history.tsv",
        &["repo", "path", "context", "condition", "commit"],
    );
    let mut per_outcome: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen = HashSet::new();
    for row in &rows {
        let (repo, text) = (&row[0], &row[3]);
        assert!(
            known.contains(text),
            "history text {text:?} is not in conditions.jsonl"
        );
        let outcome = if repo == "apigee/apigeelint" {
            "linter fixtures skipped"
        } else if check_real(text, &mut seen) {
            "listed mistakes"
        } else {
            "parsed"
        };
        *per_outcome.entry(outcome).or_default() += 1;
    }
    eprintln!("conditions-history.tsv: {per_outcome:?}");
    assert_eq!(rows.len(), 466, "history-only texts");
    assert_eq!(per_outcome.get("listed mistakes"), Some(&4));
}
