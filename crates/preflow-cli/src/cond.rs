//! `preflow cond`: parse and evaluate one condition against variables given on the command
//! line. Exit 0 with `true`/`false` on stdout; exit 2 with the located error on stderr.

use clap::ValueEnum;
use preflow_condition::{
    Dialect, MapVariables, OwnedValue, ParseOptions, Resolve, Value, Variables, parse_with,
};
use std::process::ExitCode;

/// Arguments of `preflow cond`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Precedence dialect: `edge` (Edge and SAP, AND binds tighter) or `x` (Apigee X).
    #[arg(long, value_enum, default_value = "edge")]
    dialect: DialectArg,
    /// A variable: `NAME=VALUE` (a string) or `NAME:TYPE=VALUE` with TYPE one of
    /// `int` (`integer`), `long`, `double`, `bool` (`boolean`), `string`. Unset variables
    /// are null.
    #[arg(long = "var", value_name = "NAME[:TYPE]=VALUE", value_parser = parse_var)]
    vars: Vec<(String, OwnedValue)>,
    /// Only parse: exit 0 when the condition parses, 2 when it does not.
    #[arg(long)]
    parse_only: bool,
    /// The condition text.
    #[arg(allow_hyphen_values = true)]
    expr: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DialectArg {
    Edge,
    X,
}

/// Runs `preflow cond`.
pub fn run(args: &Args) -> ExitCode {
    let options = ParseOptions {
        dialect: match args.dialect {
            DialectArg::Edge => Dialect::Edge,
            DialectArg::X => Dialect::ApigeeX,
        },
        ..ParseOptions::default()
    };
    let cond = match parse_with(&args.expr, &options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.render(&args.expr));
            return ExitCode::from(2);
        }
    };
    if args.parse_only {
        return ExitCode::SUCCESS;
    }
    let compiled = match cond.compile(&args.expr, &HeaderAwareNames) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.render(&args.expr));
            return ExitCode::from(2);
        }
    };
    let mut vars = MapVariables::default();
    for (name, value) in &args.vars {
        vars.set(&canonical_name(name), value.clone());
    }
    println!("{}", compiled.eval(&HeaderAwareVars(&vars)));
    ExitCode::SUCCESS
}

/// `NAME=VALUE` or `NAME:TYPE=VALUE`.
fn parse_var(arg: &str) -> Result<(String, OwnedValue), String> {
    let (lhs, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}` is not NAME=VALUE or NAME:TYPE=VALUE"))?;
    let Some((name, ty)) = lhs.rsplit_once(':') else {
        return Ok((lhs.to_owned(), OwnedValue::String(value.to_owned())));
    };
    let bad = |what: &str| format!("`{value}` is not {what} (in `{arg}`)");
    let value = match ty.to_ascii_lowercase().as_str() {
        "int" | "integer" => {
            OwnedValue::Integer(value.parse().map_err(|_| bad("a 32-bit integer"))?)
        }
        "long" => OwnedValue::Long(value.parse().map_err(|_| bad("a 64-bit integer"))?),
        "double" | "float" | "number" => {
            OwnedValue::Double(value.parse().map_err(|_| bad("a number"))?)
        }
        "bool" | "boolean" => {
            OwnedValue::Boolean(value.parse().map_err(|_| bad("`true` or `false`"))?)
        }
        "string" => OwnedValue::String(value.to_owned()),
        // A suffix that reads as a type name is a typo, never part of a variable name.
        other if !other.is_empty() && other.bytes().all(|b| b.is_ascii_alphabetic()) => {
            return Err(format!(
                "unknown type `{ty}` in `{arg}`: use int (integer), long, double, bool (boolean) or string"
            ));
        }
        _ => return Ok((lhs.to_owned(), OwnedValue::String(value.to_owned()))),
    };
    Ok((name.to_owned(), value))
}

const HEADER_PREFIXES: [&str; 3] = ["request.header.", "response.header.", "message.header."];

/// Header names are case-insensitive: `request.header.Content-Type` and
/// `request.header.content-type` name the same variable.
fn canonical_name(name: &str) -> String {
    for prefix in HEADER_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return format!("{prefix}{}", rest.to_ascii_lowercase());
        }
    }
    name.to_owned()
}

/// Resolves names to their canonical form (header names lower-cased).
#[derive(Debug)]
struct HeaderAwareNames;

impl Resolve for HeaderAwareNames {
    type Handle = Box<str>;
    fn resolve(&self, name: &str) -> Box<str> {
        canonical_name(name).into()
    }
}

#[derive(Debug)]
struct HeaderAwareVars<'a>(&'a MapVariables);

impl Variables for HeaderAwareVars<'_> {
    type Handle = Box<str>;
    fn get(&self, handle: &Box<str>) -> Value<'_> {
        self.0.get(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_typed_vars() {
        assert_eq!(
            parse_var("request.verb=POST").unwrap(),
            ("request.verb".into(), OwnedValue::String("POST".into()))
        );
        assert_eq!(
            parse_var("response.status.code:int=404").unwrap(),
            ("response.status.code".into(), OwnedValue::Integer(404))
        );
        assert_eq!(
            parse_var("n:long=12321421312").unwrap(),
            ("n".into(), OwnedValue::Long(12_321_421_312))
        );
        assert_eq!(
            parse_var("flow.cachehit:bool=true").unwrap(),
            ("flow.cachehit".into(), OwnedValue::Boolean(true))
        );
        // A value may itself contain `=` and `:`.
        assert_eq!(
            parse_var("a=b:int=c").unwrap(),
            ("a".into(), OwnedValue::String("b:int=c".into()))
        );
        assert!(parse_var("x:int=four").is_err());
        assert_eq!(
            parse_var("a:integer=3").unwrap(),
            ("a".into(), OwnedValue::Integer(3))
        );
        assert_eq!(
            parse_var("ok:boolean=false").unwrap(),
            ("ok".into(), OwnedValue::Boolean(false))
        );
        let e = parse_var("a:intger=3").unwrap_err();
        assert!(e.contains("unknown type `intger`"), "{e}");
        assert!(parse_var("novalue").is_err());
    }

    #[test]
    fn header_names_are_case_insensitive() {
        assert_eq!(
            canonical_name("request.header.Content-Type"),
            "request.header.content-type"
        );
        assert_eq!(canonical_name("proxy.pathSuffix"), "proxy.pathSuffix");
    }
}
