//! `preflow trace`: runs one request through bundles and prints each flow, condition (with
//! its result) and policy (with its result). State is local; a target call is not made:
//! the request that would be sent is printed and a stub response stands in for it.
//!
//! The apps file (`--apps`, or `apps.toml` in a bundle folder) gives the developers, apps
//! and products that token endpoints and VerifyAPIKey check, and the environment file
//! (`--env`, or `environment.toml` beside it) the target servers and providers. With
//! `--token-from "POST /path" --client ID:SECRET` the trace first asks that token endpoint
//! for a client-credentials token (traced too) and sends the request with it as a bearer
//! token. Credentials and tokens are masked (`***`) in what is printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use preflow::bytes::Bytes;
use preflow::{Client, Gateway, LoadOptions, Phase, Step, TraceEvent, load_paths};
use preflow_cli::apps::AppsFile;
use preflow_cli::environment;

/// Arguments of `preflow trace`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundles: an `apiproxy/` or `sharedflowbundle/` folder, a folder holding them, or a
    /// zip (several may be given, e.g. a proxy and its shared flows).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The request line: `METHOD /path?query`.
    #[arg(long, value_name = "METHOD /path")]
    request: String,
    /// A request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "Name: value")]
    headers: Vec<String>,
    /// The request body.
    #[arg(long)]
    data: Option<String>,
    /// The apps file (default: `apps.toml` in a folder of PATHS, if there is one).
    #[arg(long, value_name = "FILE")]
    apps: Option<PathBuf>,
    /// The environment file (default: `environment.toml` in a folder of PATHS, if any).
    #[arg(long, value_name = "FILE")]
    env: Option<PathBuf>,
    /// First get a client-credentials token from this token endpoint (`METHOD /path`)
    /// and send the request with it (`Authorization: Bearer …`); needs `--client`.
    #[arg(long, value_name = "METHOD /path", requires = "client")]
    token_from: Option<String>,
    /// The client credentials for `--token-from`, as `CLIENT_ID:SECRET` (HTTP Basic).
    #[arg(long, value_name = "ID:SECRET", requires = "token_from")]
    client: Option<String>,
}

/// Header and field names whose values are never printed.
const SECRET_NAMES: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "access_token",
    "refresh_token",
    "client_secret",
    "password",
    "code",
    "id_token",
];

/// A header value as printed: credentials masked after their scheme.
fn shown_header(name: &str, value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    if SECRET_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
        return match text.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} ***"),
            None => "***".to_owned(),
        };
    }
    text.into_owned()
}

/// A body as printed: the values of credential fields in a JSON object or a form masked.
fn shown_body(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(body) {
        let mut masked = false;
        for (k, v) in &mut map {
            if SECRET_NAMES.contains(&k.to_ascii_lowercase().as_str()) {
                *v = serde_json::Value::String("***".to_owned());
                masked = true;
            }
        }
        if masked {
            return serde_json::Value::Object(map).to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let form_like = text.contains('=') && !text.contains(char::is_whitespace);
    if form_like {
        return text
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_NAMES.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
    }
    text.into_owned()
}

/// The body of the stub response that stands in for a target.
pub const STUB_BODY: &str = "preflow trace: no target was called";

/// The stub answer to an API provider's token request.
const STUB_PROVIDER_TOKEN: &str =
    r#"{"access_token":"preflow-trace-stub","token_type":"Bearer","expires_in":60}"#;

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::ProxyRequest => "proxy request",
        Phase::TargetRequest => "target request",
        Phase::TargetResponse => "target response",
        Phase::ProxyResponse => "proxy response",
        Phase::Error => "error",
        Phase::PostClient => "post-client",
    }
}

/// One line per event.
pub fn render_event(e: &TraceEvent) -> String {
    match e {
        TraceEvent::ProxySelected {
            proxy,
            endpoint,
            base_path,
            path_suffix,
        } => format!(
            "proxy     {proxy} (endpoint {endpoint}), base path {base_path}, path suffix {path_suffix:?}"
        ),
        TraceEvent::Flow { phase: p, name } => format!("flow      {name} ({})", phase(*p)),
        TraceEvent::Condition { what, text, result } => {
            format!("  condition {what}: {text} -> {result}")
        }
        TraceEvent::Policy {
            name,
            type_name,
            result,
        } => format!("  policy  {name} ({type_name}): {result}"),
        TraceEvent::Route { rule, target } => format!("route     {rule} -> {target}"),
        TraceEvent::Fault { name, code, status } => {
            format!("fault     {name} ({code}), status {status}")
        }
        TraceEvent::Store { op } => format!("  store   {op}"),
        TraceEvent::Print { policy, line } => format!("  print   {policy}: {line}"),
        other => format!("{other:?}"),
    }
}

fn request_line(line: &str, flag: &str) -> Result<http::request::Builder, String> {
    let line = line.trim();
    let (method, target) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("{flag} must be `METHOD /path`, not `{line}`"))?;
    Ok(http::Request::builder()
        .method(method.trim())
        .uri(target.trim()))
}

fn build_request(args: &Args) -> Result<http::Request<Bytes>, String> {
    let mut b = request_line(&args.request, "--request")?;
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("a header must be `Name: value`, not `{h}`"))?;
        b = b.header(n.trim(), v.trim());
    }
    b.body(Bytes::from(args.data.clone().unwrap_or_default()))
        .map_err(|e| format!("invalid request: {e}"))
}

/// Runs the request and returns the printed report.
pub fn trace(gateway: &Gateway, request: http::Request<Bytes>) -> String {
    trace_exchange(gateway, request).0
}

/// Runs the request; the printed report and the response sent, if the exchange ended
/// with one.
fn trace_exchange(
    gateway: &Gateway,
    request: http::Request<Bytes>,
) -> (String, Option<http::Response<Bytes>>) {
    let mut out = String::new();
    out.push_str(&format!(
        "request   {} {}\n",
        request.method(),
        request.uri()
    ));
    let client = Client::http(std::net::SocketAddr::from(([127, 0, 0, 1], 40000)));
    // As a gateway does: the head first, the body when the engine asks for it.
    let (head, body) = request.into_parts();
    let mut body = Some(body);
    let mut ex = gateway.begin_head(head, client, SystemTime::now());
    ex.enable_trace();
    let mut printed = 0;
    let mut flush = |ex: &preflow::Exchange, out: &mut String| {
        for e in ex.trace().iter().skip(printed) {
            out.push_str(&render_event(e));
            out.push('\n');
        }
        printed = ex.trace().len();
    };
    for _ in 0..64 {
        match gateway.step(&mut ex) {
            Step::Pause(d) => std::thread::sleep(d),
            Step::ReadBody => {
                flush(&ex, &mut out);
                let body = body.take().unwrap_or_default();
                out.push_str(&format!("body      read ({} bytes)\n", body.len()));
                ex.request_body(body);
            }
            Step::Respond(resp) => {
                flush(&ex, &mut out);
                out.push_str(&format!("response  {}\n", resp.status()));
                for (k, v) in resp.headers() {
                    out.push_str(&format!(
                        "  {k}: {}\n",
                        shown_header(k.as_str(), v.as_bytes())
                    ));
                }
                if !resp.body().is_empty() {
                    out.push_str(&format!("  {}\n", shown_body(resp.body())));
                }
                return (out, Some(resp));
            }
            Step::Forward(target) => {
                flush(&ex, &mut out);
                let r = &target.request;
                out.push_str(&format!(
                    "forward   {} {} (target endpoint {})\n",
                    r.method(),
                    r.uri(),
                    if target.endpoint.is_empty() {
                        "(url)"
                    } else {
                        &*target.endpoint
                    }
                ));
                for (k, v) in r.headers() {
                    out.push_str(&format!(
                        "  {k}: {}\n",
                        shown_header(k.as_str(), v.as_bytes())
                    ));
                }
                if !r.body().is_empty() {
                    out.push_str(&format!("  {}\n", shown_body(r.body())));
                }
                // An API provider's token request gets a stub token, so that the
                // trace goes on to the target call it was for.
                let (kind, body) = if target.endpoint.starts_with("provider-token:") {
                    ("application/json", STUB_PROVIDER_TOKEN)
                } else {
                    ("text/plain", STUB_BODY)
                };
                out.push_str("  (no target was called; a stub 200 response stands in)\n");
                let stub = http::Response::builder()
                    .status(200)
                    .header("content-type", kind)
                    .body(Bytes::from_static(body.as_bytes()));
                match stub {
                    Ok(s) => ex.target_response(Ok(s)),
                    Err(e) => ex.target_response(Err(preflow::TargetError::Other(e.to_string()))),
                }
            }
            Step::Store(op) => {
                out.push_str(&format!("store     {op:?}\n"));
                return (out, None);
            }
        }
    }
    out.push_str("the exchange did not finish\n");
    (out, None)
}

/// The token request of `--token-from` with `--client`.
fn token_request(line: &str, client: &str) -> Result<http::Request<Bytes>, String> {
    use base64::Engine as _;
    let (id, secret) = client
        .split_once(':')
        .ok_or("--client must be `CLIENT_ID:SECRET`")?;
    // RFC 6749 §2.3.1: each part form-encoded before Base64.
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
    request_line(line, "--token-from")?
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from_static(b"grant_type=client_credentials"))
        .map_err(|e| format!("invalid token request: {e}"))
}

/// The `access_token` of a token response.
fn access_token(resp: &http::Response<Bytes>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(resp.body()).ok()?;
    v.get("access_token")?.as_str().map(str::to_owned)
}

/// The gateway of `args`: its bundles, apps file and environment file.
fn build_gateway(args: &Args) -> Result<Gateway, String> {
    let loaded = load_paths(&args.paths, &LoadOptions::default());
    for d in loaded.errors() {
        eprintln!("{}", d.render());
    }
    let errors = loaded.errors().count();
    if errors > 0 {
        return Err(format!("the bundles have {errors} error(s)"));
    }
    let mut builder = Gateway::builder().bundles(loaded);
    if let Some(path) = args.apps.clone().or_else(|| AppsFile::find(&args.paths)) {
        let cost = preflow_oauth::PasswordHashCost::default();
        let file = AppsFile::load_hashed(&path, cost).map_err(|e| e.to_string())?;
        let registry = file.to_registry(cost).map_err(|e| e.to_string())?;
        builder = builder.registry(std::sync::Arc::new(registry));
    }
    if let Some(path) = args.env.clone().or_else(|| environment::find(&args.paths)) {
        let mut env = environment::Environment::read(&path).map_err(|e| e.to_string())?;
        // Providers on a virtual host of this gateway: at the addresses the file gives.
        let hosts: Vec<(String, std::net::SocketAddr, bool)> = env
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.listen, h.tls.is_some()))
            .collect();
        env.resolve_virtual_host_providers(&hosts)
            .map_err(|e| e.to_string())?;
        builder = builder.environment(env.engine);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Runs `preflow trace`.
pub fn run(args: &Args) -> ExitCode {
    let request = match build_request(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("preflow trace: {e}");
            return ExitCode::from(2);
        }
    };
    let gateway = match build_gateway(args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("preflow trace: {e}");
            return ExitCode::from(1);
        }
    };
    let mut request = request;
    if let (Some(line), Some(client)) = (&args.token_from, &args.client) {
        let token_req = match token_request(line, client) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("preflow trace: {e}");
                return ExitCode::from(2);
            }
        };
        let (report, resp) = trace_exchange(&gateway, token_req);
        print!("{report}");
        let Some(token) = resp.as_ref().and_then(access_token) else {
            eprintln!(
                "preflow trace: {} answered no access_token (status {}); see the trace above",
                line.trim(),
                resp.map_or_else(|| "none".to_owned(), |r| r.status().to_string())
            );
            return ExitCode::from(1);
        };
        match http::HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(v) => {
                request.headers_mut().insert(http::header::AUTHORIZATION, v);
            }
            Err(_) => {
                eprintln!(
                    "preflow trace: the token endpoint answered a token that is no header value"
                );
                return ExitCode::from(1);
            }
        }
        println!();
    }
    print!("{}", trace(&gateway, request));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_flows_conditions_policies_and_the_forward() {
        let files = [
            (
                "apiproxy/proxies/default.xml",
                r#"<ProxyEndpoint name="default">
                  <PreFlow><Request><Step><Name>SA</Name></Step></Request></PreFlow>
                  <Flows><Flow name="items"><Condition>proxy.pathsuffix MatchesPath "/items/*"</Condition></Flow></Flows>
                  <HTTPProxyConnection><BasePath>/v1</BasePath></HTTPProxyConnection>
                  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
                </ProxyEndpoint>"#,
            ),
            (
                "apiproxy/targets/default.xml",
                r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://backend</URL></HTTPTargetConnection></TargetEndpoint>"#,
            ),
            (
                "apiproxy/policies/SA.xml",
                r#"<SpikeArrest name="SA"><Rate>10ps</Rate></SpikeArrest>"#,
            ),
        ];
        let loaded = preflow::load_files(files, &LoadOptions::default());
        let g = Gateway::builder().bundles(loaded).build().unwrap();
        let req = http::Request::get("/v1/items/7")
            .header("x-a", "b")
            .body(Bytes::new())
            .unwrap();
        let text = trace(&g, req);
        for needle in [
            "request   GET /v1/items/7",
            "flow      PreFlow (proxy request)",
            "  policy  SA (SpikeArrest): ok",
            "  condition flow items: proxy.pathsuffix MatchesPath \"/items/*\" -> true",
            "flow      items (proxy request)",
            "route     default -> target endpoint default",
            "forward   GET http://backend/items/7 (target endpoint default)",
            "  x-a: b",
            "response  200",
            STUB_BODY,
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }
}
