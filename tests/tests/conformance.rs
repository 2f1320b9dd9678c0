//! The conformance suite of the condition language: every case of `tests/data/conditions.toml`
//! (or of the file named by `PREFLOW_CONFORMANCE`) through every evaluator path.
//!
//! Each case is parsed and compiled twice, once with [`Names`] handles read from
//! [`MapVariables`], once with dense slot handles (`usize`) into a vector of values, the way
//! a host with interned variables would do it. Both results must equal the case's
//! `expect`. All failures are collected and reported together. The format of the file is
//! described in its header.

use preflow_condition::{
    Dialect, Error, MapVariables, Names, OwnedValue, ParseOptions, Resolve, Value, Variables,
    compile,
};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    /// How many vectors the spec has; every id up to it must be a case or omitted.
    spec_vectors: Option<u32>,
    #[serde(default)]
    omitted: Vec<Omitted>,
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Omitted {
    id: u32,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: u32,
    condition: String,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    expect: Expect,
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
enum Expect {
    Bool(bool),
    Error(String),
}

/// What one evaluator path produced.
#[derive(Debug, PartialEq)]
enum Outcome {
    Bool(bool),
    ParseError(String),
    CompileError(String),
}

impl Outcome {
    fn agrees(&self, expect: &Expect) -> bool {
        match (self, expect) {
            (Outcome::Bool(got), Expect::Bool(want)) => got == want,
            (Outcome::ParseError(_), Expect::Error(e)) => e == "parse-error",
            (Outcome::CompileError(_), Expect::Error(e)) => e == "compile-error",
            _ => false,
        }
    }
}

fn suite_path() -> PathBuf {
    std::env::var_os("PREFLOW_CONFORMANCE").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/conditions.toml")),
        PathBuf::from,
    )
}

/// A TOML variable value as a typed value; see the file header.
fn owned_value(v: &toml::Value) -> Result<OwnedValue, String> {
    Ok(match v {
        toml::Value::String(s) => OwnedValue::String(s.clone()),
        toml::Value::Integer(i) => match i32::try_from(*i) {
            Ok(i) => OwnedValue::Integer(i),
            Err(_) => OwnedValue::Long(*i),
        },
        toml::Value::Float(f) => OwnedValue::Double(*f),
        toml::Value::Boolean(b) => OwnedValue::Boolean(*b),
        toml::Value::Table(t) if t.len() == 1 => {
            let (kind, x) = t.iter().next().unwrap();
            match (kind.as_str(), x) {
                ("integer", toml::Value::Integer(i)) => {
                    OwnedValue::Integer(i32::try_from(*i).map_err(|e| e.to_string())?)
                }
                ("long", toml::Value::Integer(i)) => OwnedValue::Long(*i),
                ("float", toml::Value::Float(f)) => OwnedValue::Float(*f as f32),
                ("float", toml::Value::Integer(i)) => OwnedValue::Float(*i as f32),
                ("double", toml::Value::Float(f)) => OwnedValue::Double(*f),
                ("double", toml::Value::Integer(i)) => OwnedValue::Double(*i as f64),
                ("string", toml::Value::String(s)) => OwnedValue::String(s.clone()),
                ("boolean", toml::Value::Boolean(b)) => OwnedValue::Boolean(*b),
                ("object", toml::Value::Boolean(true)) => OwnedValue::Object,
                ("null", toml::Value::Boolean(true)) => OwnedValue::Null,
                _ => return Err(format!("unknown typed value {v}")),
            }
        }
        other => return Err(format!("unsupported variable value {other}")),
    })
}

/// A resolver handing out dense slot indices, one per distinct name.
#[derive(Default)]
struct Slots {
    names: RefCell<Vec<String>>,
}

impl Resolve for Slots {
    type Handle = usize;
    fn resolve(&self, name: &str) -> usize {
        let mut names = self.names.borrow_mut();
        if let Some(i) = names.iter().position(|n| n == name) {
            return i;
        }
        names.push(name.to_owned());
        names.len() - 1
    }
}

/// Values by slot.
struct SlotValues(Vec<OwnedValue>);

impl Variables for SlotValues {
    type Handle = usize;
    fn get(&self, handle: &usize) -> Value<'_> {
        self.0
            .get(*handle)
            .map_or(Value::Null, OwnedValue::as_value)
    }
}

fn outcome<T>(result: Result<T, Error>, eval: impl FnOnce(T) -> bool) -> Outcome {
    match result {
        Ok(compiled) => Outcome::Bool(eval(compiled)),
        Err(Error::Parse(e)) => Outcome::ParseError(e.to_string()),
        Err(Error::Compile(e)) => Outcome::CompileError(e.to_string()),
        Err(e) => Outcome::ParseError(format!("unexpected error kind: {e}")),
    }
}

/// Runs one case through every evaluator path: (path name, outcome).
fn run_case(case: &Case) -> Result<Vec<(&'static str, Outcome)>, String> {
    if let Expect::Error(e) = &case.expect
        && e != "parse-error"
        && e != "compile-error"
    {
        return Err(format!(
            "expect must be true, false, \"parse-error\" or \"compile-error\", not {e:?}"
        ));
    }
    let dialect = match case.dialect.as_deref() {
        None | Some("edge") => Dialect::Edge,
        Some("x") => Dialect::ApigeeX,
        Some(other) => return Err(format!("unknown dialect `{other}`")),
    };
    let options = ParseOptions {
        dialect,
        ..ParseOptions::default()
    };
    let mut values = HashMap::new();
    for (name, v) in &case.vars {
        values.insert(name.as_str(), owned_value(v)?);
    }

    let mut map = MapVariables::default();
    for (name, v) in &values {
        map.set(name, v.clone());
    }
    let by_name = outcome(compile(&case.condition, &options, &Names), |c| c.eval(&map));

    let slots = Slots::default();
    let compiled = compile(&case.condition, &options, &slots);
    let slot_values = SlotValues(
        slots
            .names
            .borrow()
            .iter()
            .map(|n| values.get(n.as_str()).cloned().unwrap_or(OwnedValue::Null))
            .collect(),
    );
    let by_slot = outcome(compiled, |c| c.eval(&slot_values));

    Ok(vec![("names+map", by_name), ("slots", by_slot)])
}

#[test]
fn conformance() {
    let path = suite_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let suite: Suite =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{} is malformed: {e}", path.display()));
    assert!(!suite.case.is_empty(), "{} has no case", path.display());

    let mut problems = Vec::new();

    // Ids are unique, and when the file claims the spec's vectors, it covers all of them.
    let mut seen = BTreeSet::new();
    for id in suite
        .case
        .iter()
        .map(|c| c.id)
        .chain(suite.omitted.iter().map(|o| o.id))
    {
        if !seen.insert(id) {
            problems.push(format!("id {id} appears more than once"));
        }
    }
    for o in &suite.omitted {
        if o.reason.trim().is_empty() {
            problems.push(format!("omitted id {} gives no reason", o.id));
        }
    }
    if let Some(n) = suite.spec_vectors {
        let missing: Vec<u32> = (1..=n).filter(|id| !seen.contains(id)).collect();
        if !missing.is_empty() {
            problems.push(format!("spec vectors missing from the file: {missing:?}"));
        }
    }

    let mut passed = 0usize;
    for case in &suite.case {
        let results = match run_case(case) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("#{}: bad case: {e}", case.id));
                continue;
            }
        };
        let mut ok = true;
        for (path_name, got) in &results {
            if !got.agrees(&case.expect) {
                ok = false;
                problems.push(format!(
                    "#{} [{path_name}] `{}`{}: expected {:?}, got {:?}",
                    case.id,
                    case.condition,
                    case.dialect
                        .as_deref()
                        .map_or(String::new(), |d| format!(" (dialect {d})")),
                    case.expect,
                    got
                ));
            }
        }
        if ok {
            passed += 1;
        }
    }

    let total = suite.case.len();
    eprintln!("{}: {passed} of {total} cases pass", path.display());
    if !problems.is_empty() {
        let mut report = format!(
            "{} problem(s) in {} ({passed} of {total} cases pass):\n",
            problems.len(),
            path.display()
        );
        for p in &problems {
            let _ = writeln!(report, "  {p}");
        }
        panic!("{report}");
    }
}

/// The runner itself must be able to fail: a wrong expectation is reported.
#[test]
fn a_wrong_expectation_fails() {
    let case = Case {
        id: 0,
        condition: r#"request.verb = "GET""#.to_owned(),
        vars: BTreeMap::from([(
            "request.verb".to_owned(),
            toml::Value::String("GET".to_owned()),
        )]),
        expect: Expect::Bool(false),
        dialect: None,
        note: None,
    };
    let results = run_case(&case).unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, got)| !got.agrees(&case.expect)));
    assert!(
        results
            .iter()
            .all(|(_, got)| got.agrees(&Expect::Bool(true)))
    );
}

#[test]
fn typed_values_decode() {
    let v: toml::Table = toml::from_str(
        r#"
        a = 5
        b = 5000000000
        c = { long = 5 }
        d = { float = 1.5 }
        e = { object = true }
        f = 2.5
        g = { null = true }
        "#,
    )
    .unwrap();
    let got: Vec<OwnedValue> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|k| owned_value(&v[*k]).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            OwnedValue::Integer(5),
            OwnedValue::Long(5_000_000_000),
            OwnedValue::Long(5),
            OwnedValue::Float(1.5),
            OwnedValue::Object,
            OwnedValue::Double(2.5),
            OwnedValue::Null,
        ]
    );
    assert!(owned_value(&toml::Value::Array(vec![])).is_err());
}
