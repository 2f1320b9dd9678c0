//! Condition benchmarks.
//!
//! * `condition_eval`: the three-clause condition of `spec/peers-state-style-performance.md`
//!   §6 (`request.verb = "POST" and proxy.pathsuffix MatchesPath "/v1/orders/**" and
//!   request.header.x-api-key != null`), compiled once and evaluated per request:
//!   * `preflow/enum_slots`: variables resolved to an enum at compile time, read from a
//!     request struct;
//!   * `preflow/names_map`: variables looked up by name in a map of 34 flow variables;
//!   * `cedar/is_authorized`: the equivalent Cedar policy, with a prebuilt request.
//! * `condition_parse`: parsing and compiling that condition.
use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{Criterion, criterion_group, criterion_main};
use preflow_condition::{
    MapVariables, Names, OwnedValue, ParseOptions, Resolve, Value, Variables, compile,
};

const CONDITION: &str = r#"request.verb = "POST" and proxy.pathsuffix MatchesPath "/v1/orders/**" and request.header.x-api-key != null"#;

/// The variables a host knows ahead of time, as an enum.
#[derive(Debug, Clone, Copy)]
enum Var {
    Verb,
    PathSuffix,
    ApiKey,
    Unknown,
}

struct EnumResolver;

impl Resolve for EnumResolver {
    type Handle = Var;
    fn resolve(&self, name: &str) -> Var {
        match name {
            "request.verb" => Var::Verb,
            "proxy.pathsuffix" => Var::PathSuffix,
            "request.header.x-api-key" => Var::ApiKey,
            _ => Var::Unknown,
        }
    }
}

/// A request view as a host would hold it.
struct RequestView {
    verb: String,
    path_suffix: String,
    api_key: Option<String>,
}

impl Variables for RequestView {
    type Handle = Var;
    fn get(&self, handle: &Var) -> Value<'_> {
        match handle {
            Var::Verb => Value::String(&self.verb),
            Var::PathSuffix => Value::String(&self.path_suffix),
            Var::ApiKey => self.api_key.as_deref().map_or(Value::Null, Value::String),
            Var::Unknown => Value::Null,
        }
    }
}

fn condition_eval(c: &mut Criterion) {
    let mut group = c.benchmark_group("condition_eval");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);

    let compiled = compile(CONDITION, &ParseOptions::default(), &EnumResolver).expect("compiles");
    let request = RequestView {
        verb: "POST".into(),
        path_suffix: "/v1/orders/123/items".into(),
        api_key: Some("k-123".into()),
    };
    assert!(compiled.eval(&request));
    group.bench_function("preflow/enum_slots", |b| {
        b.iter(|| black_box(&compiled).eval(black_box(&request)));
    });

    let by_name = compile(CONDITION, &ParseOptions::default(), &Names).expect("compiles");
    let mut vars = MapVariables::default();
    for i in 0..31 {
        vars.set(&format!("flow.var{i}"), OwnedValue::String(format!("v{i}")));
    }
    vars.set("request.verb", OwnedValue::String("POST".into()));
    vars.set(
        "proxy.pathsuffix",
        OwnedValue::String("/v1/orders/123/items".into()),
    );
    vars.set(
        "request.header.x-api-key",
        OwnedValue::String("k-123".into()),
    );
    assert!(by_name.eval(&vars));
    group.bench_function("preflow/names_map", |b| {
        b.iter(|| black_box(&by_name).eval(black_box(&vars)));
    });

    let policies = PolicySet::from_str(
        r#"permit(principal, action == Action::"call", resource) when {
            context.verb == "POST" && context.path like "/v1/orders/*" && context has apikey
        };"#,
    )
    .expect("policy parses");
    let context = Context::from_pairs([
        (
            "verb".to_owned(),
            RestrictedExpression::new_string("POST".into()),
        ),
        (
            "path".to_owned(),
            RestrictedExpression::new_string("/v1/orders/123/items".into()),
        ),
        (
            "apikey".to_owned(),
            RestrictedExpression::new_string("k-123".into()),
        ),
    ])
    .expect("context");
    let cedar_request = Request::new(
        EntityUid::from_str(r#"User::"alice""#).expect("uid"),
        EntityUid::from_str(r#"Action::"call""#).expect("uid"),
        EntityUid::from_str(r#"Api::"orders""#).expect("uid"),
        context,
        None,
    )
    .expect("request");
    let authorizer = Authorizer::new();
    let entities = Entities::empty();
    assert_eq!(
        authorizer
            .is_authorized(&cedar_request, &policies, &entities)
            .decision(),
        Decision::Allow
    );
    group.bench_function("cedar/is_authorized", |b| {
        b.iter(|| {
            authorizer
                .is_authorized(black_box(&cedar_request), &policies, &entities)
                .decision()
        });
    });
    group.finish();
}

fn condition_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("condition_parse");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    group.bench_function("preflow/parse_and_compile", |b| {
        b.iter(|| compile(black_box(CONDITION), &ParseOptions::default(), &Names).is_ok());
    });
    group.finish();
}

criterion_group!(benches, condition_eval, condition_parse);
criterion_main!(benches);
