//! Helpers shared by the engine tests: build a gateway from files, run one request.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use preflow::{Client, Exchange, Gateway, LoadOptions, Settings, StateMode, Step, load_files};
use preflow_oauth::Registry;

pub const T0: u64 = 1_700_000_000;

pub fn at(secs_after: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(secs_after)
}

pub fn gateway(files: &[(&str, &str)]) -> Gateway {
    gateway_with(
        files,
        Arc::new(Registry::new()),
        Settings::default(),
        StateMode::Local,
    )
}

pub fn gateway_with(
    files: &[(&str, &str)],
    registry: Arc<Registry>,
    settings: Settings,
    state: StateMode,
) -> Gateway {
    let loaded = load_files(files.iter().copied(), &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Gateway::builder()
        .bundles(loaded)
        .registry(registry)
        .settings(settings)
        .state(state)
        .build()
        .expect("gateway builds")
}

/// What happened to one request.
#[derive(Debug)]
pub struct Outcome {
    pub response: http::Response<Bytes>,
    /// Target requests sent, in order.
    pub forwarded: Vec<http::Request<Bytes>>,
    pub exchange: Exchange,
}

impl Outcome {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }
    pub fn body(&self) -> String {
        String::from_utf8_lossy(self.response.body()).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.response.body()).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    pub fn errorcode(&self) -> String {
        self.json()["fault"]["detail"]["errorcode"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Request<Bytes> {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from(body.to_owned())).unwrap()
}

/// Runs a request; the target answers with `target` (status, body).
pub fn run_at(
    g: &Gateway,
    req: http::Request<Bytes>,
    now: SystemTime,
    target: impl Fn(&http::Request<Bytes>) -> Result<http::Response<Bytes>, preflow::TargetError>,
) -> Outcome {
    let mut ex = g.begin(req, Client::http("192.0.2.7:4000".parse().unwrap()), now);
    ex.enable_trace();
    let mut forwarded = Vec::new();
    for _ in 0..100 {
        match g.step(&mut ex) {
            Step::Respond(response) => {
                return Outcome {
                    response,
                    forwarded,
                    exchange: ex,
                };
            }
            Step::Forward(t) => {
                let r = target(&t.request);
                forwarded.push(t.request);
                ex.target_response(r);
            }
            Step::Store(op) => panic!("unexpected store op in local mode: {op:?}"),
            Step::ReadBody => panic!("begin gave the whole request; no body to ask for"),
            Step::Pause(d) => std::thread::sleep(d),
        }
    }
    panic!("exchange did not finish: {:#?}", ex.trace());
}

pub fn ok_target(_: &http::Request<Bytes>) -> Result<http::Response<Bytes>, preflow::TargetError> {
    Ok(http::Response::builder()
        .status(200)
        .header("x-backend", "yes")
        .body(Bytes::from_static(b"Hello world from IFlow"))
        .unwrap())
}

pub fn run(g: &Gateway, method: &str, uri: &str, headers: &[(&str, &str)]) -> Outcome {
    run_at(g, request(method, uri, headers, ""), at(0.0), ok_target)
}

/// Every file under `dir`, as `(path under dir's parent, bytes)`.
pub fn files_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let base = dir.parent().unwrap();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}
