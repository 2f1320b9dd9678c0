//! Condition benchmarks.
//!
//! - `condition_eval`: one three-clause condition evaluated against a request's variables,
//!   `preflow` (compiled condition over an `http` request head) beside `cedar` (cedar-policy
//!   deciding the equivalent policy on a prebuilt request). Both must be true.
//!   `preflow_names_map` is the same condition with variables looked up by name in a map of
//!   34 flow variables, for hosts that keep variables by name. `handwritten` is the floor:
//!   the same condition written as plain Rust over the same request representation (no
//!   parser, no interpretation, the header name resolved once as the resolver does).
//! - `condition_parse`: parse and compile the seed scenario's token-flow condition.

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use preflow_condition::{
    MapVariables, Names, OwnedValue, ParseOptions, Resolve, Value, Variables, compile,
};
use std::hint::black_box;
use std::str::FromStr;

const CONDITION: &str = r#"request.verb = "POST" and proxy.pathsuffix MatchesPath "/v1/orders/**" and request.header.x-api-key != null"#;
const CEDAR_POLICY: &str = r#"permit(principal, action, resource) when { context.verb == "POST" && context.path like "/v1/orders/*" && context has apikey };"#;
const SEED_CONDITION: &str = r#"(proxy.pathsuffix MatchesPath "/OAuthToken" OR proxy.pathsuffix MatchesPath "/OAuthToken/**" OR proxy.pathsuffix MatchesPath "/OAuthToken(**")AND(request.verb = "POST")"#;

/// The request as a gateway holds it after parsing the head.
struct RequestVars {
    method: Method,
    path_suffix: String,
    headers: HeaderMap,
}

/// What a variable name resolves to: a request field, a header, or nothing (null).
enum Slot {
    Verb,
    PathSuffix,
    Header(HeaderName),
    Unknown,
}

struct RequestResolver;

impl Resolve for RequestResolver {
    type Handle = Slot;
    fn resolve(&self, name: &str) -> Slot {
        match name {
            "request.verb" => Slot::Verb,
            "proxy.pathsuffix" => Slot::PathSuffix,
            _ => name
                .strip_prefix("request.header.")
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .map_or(Slot::Unknown, Slot::Header),
        }
    }
}

impl Variables for RequestVars {
    type Handle = Slot;
    fn get(&self, slot: &Slot) -> Value<'_> {
        match slot {
            Slot::Verb => Value::String(self.method.as_str()),
            Slot::PathSuffix => Value::String(&self.path_suffix),
            Slot::Header(h) => self
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map_or(Value::Null, Value::String),
            Slot::Unknown => Value::Null,
        }
    }
}

fn request() -> RequestVars {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
    headers.insert("x-api-key", HeaderValue::from_static("k3y-0f-the-app"));
    RequestVars {
        method: Method::POST,
        path_suffix: "/v1/orders/123/items".to_owned(),
        headers,
    }
}

/// The condition of [`CONDITION`] by hand, with its semantics: the verb is `POST`; the path
/// suffix matches `/v1/orders/**` (the literal prefix `/v1/orders/`, then anything); the
/// header is present with a value that is text (else the variable is null).
fn handwritten(vars: &RequestVars, api_key: &HeaderName) -> bool {
    vars.method == Method::POST
        && vars.path_suffix.starts_with("/v1/orders/")
        && vars
            .headers
            .get(api_key)
            .is_some_and(|v| v.to_str().is_ok())
}

fn condition_eval(c: &mut Criterion) {
    let compiled = compile(CONDITION, &ParseOptions::default(), &RequestResolver)
        .expect("benchmark condition compiles");
    let vars = request();
    assert!(compiled.eval(&vars), "preflow must be true for the request");

    let policies = PolicySet::from_str(CEDAR_POLICY).expect("cedar policy parses");
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
            RestrictedExpression::new_string("k3y-0f-the-app".into()),
        ),
    ])
    .expect("cedar context");
    let uid = |s: &str| EntityUid::from_str(s).expect("cedar uid");
    let cedar_request = Request::new(
        uid(r#"User::"app""#),
        uid(r#"Action::"call""#),
        uid(r#"Api::"orders""#),
        context,
        None,
    )
    .expect("cedar request");
    let entities = Entities::empty();
    let authorizer = Authorizer::new();
    assert_eq!(
        authorizer
            .is_authorized(&cedar_request, &policies, &entities)
            .decision(),
        Decision::Allow,
        "cedar must allow the request"
    );

    let mut group = c.benchmark_group("condition_eval");
    group.bench_function("preflow", |b| {
        b.iter(|| black_box(&compiled).eval(black_box(&vars)))
    });
    let api_key = HeaderName::from_static("x-api-key");
    assert!(handwritten(&vars, &api_key), "handwritten must be true");
    group.bench_function("handwritten", |b| {
        b.iter(|| handwritten(black_box(&vars), black_box(&api_key)))
    });
    let by_name = compile(CONDITION, &ParseOptions::default(), &Names).expect("compiles");
    let mut map = MapVariables::default();
    for i in 0..31 {
        map.set(&format!("flow.var{i}"), OwnedValue::String(format!("v{i}")));
    }
    map.set("request.verb", OwnedValue::String("POST".into()));
    map.set(
        "proxy.pathsuffix",
        OwnedValue::String("/v1/orders/123/items".into()),
    );
    map.set(
        "request.header.x-api-key",
        OwnedValue::String("k3y-0f-the-app".into()),
    );
    assert!(by_name.eval(&map), "preflow must be true for the map");
    group.bench_function("preflow_names_map", |b| {
        b.iter(|| black_box(&by_name).eval(black_box(&map)))
    });
    group.bench_function("cedar", |b| {
        b.iter(|| {
            authorizer
                .is_authorized(black_box(&cedar_request), &policies, &entities)
                .decision()
        })
    });
    group.finish();
}

fn condition_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("condition_parse");
    group.bench_function("preflow", |b| {
        b.iter(|| {
            compile(
                black_box(SEED_CONDITION),
                &ParseOptions::default(),
                &RequestResolver,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, condition_eval, condition_parse);
criterion_main!(benches);
