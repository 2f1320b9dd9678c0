//! `preflow trace`: runs one request through bundles and prints each flow, condition (with
//! its result) and policy (with its result). State is local; a target call is not made:
//! the request that would be sent is printed and a stub response stands in for it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use preflow::bytes::Bytes;
use preflow::{Client, Gateway, LoadOptions, Phase, Step, TraceEvent, load_path};

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
}

/// The body of the stub response that stands in for a target.
pub const STUB_BODY: &str = "preflow trace: no target was called";

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
        other => format!("{other:?}"),
    }
}

fn build_request(args: &Args) -> Result<http::Request<Bytes>, String> {
    let line = args.request.trim();
    let (method, target) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("--request must be `METHOD /path`, not `{line}`"))?;
    let mut b = http::Request::builder()
        .method(method.trim())
        .uri(target.trim());
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
                        String::from_utf8_lossy(v.as_bytes())
                    ));
                }
                if !resp.body().is_empty() {
                    out.push_str(&format!("  {}\n", String::from_utf8_lossy(resp.body())));
                }
                return out;
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
                        String::from_utf8_lossy(v.as_bytes())
                    ));
                }
                if !r.body().is_empty() {
                    out.push_str(&format!("  {}\n", String::from_utf8_lossy(r.body())));
                }
                out.push_str("  (no target was called; a stub 200 response stands in)\n");
                let stub = http::Response::builder()
                    .status(200)
                    .header("content-type", "text/plain")
                    .body(Bytes::from_static(STUB_BODY.as_bytes()));
                match stub {
                    Ok(s) => ex.target_response(Ok(s)),
                    Err(e) => ex.target_response(Err(preflow::TargetError::Other(e.to_string()))),
                }
            }
            Step::Store(op) => {
                out.push_str(&format!("store     {op:?}\n"));
                return out;
            }
        }
    }
    out.push_str("the exchange did not finish\n");
    out
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
    let mut builder = Gateway::builder();
    for p in &args.paths {
        let loaded = load_path(p, &LoadOptions::default());
        for d in loaded.errors() {
            eprintln!("{}", d.render());
        }
        builder = builder.bundles(loaded);
    }
    let gateway = match builder.build() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("preflow trace: {e}");
            return ExitCode::from(1);
        }
    };
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
