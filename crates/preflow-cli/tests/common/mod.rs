//! Runs `preflow serve` as a child process on 127.0.0.1:0 and talks to it.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The seed back end's answer to `/v1/test/hello`.
pub const HELLO: &str = "Hello world from IFlow";

/// The seed example folder.
pub fn seed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed")
}

/// A running gateway, killed when dropped.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The `--metrics` listener.
    pub metrics: Option<SocketAddr>,
    /// The `--portal` listener.
    pub portal: Option<SocketAddr>,
    /// The `secure` virtual host (HTTPS) of an environment file that has one.
    pub secure: Option<SocketAddr>,
    /// Every virtual host's address, by name.
    pub vhosts: std::collections::HashMap<String, SocketAddr>,
    pub stderr: Arc<Mutex<String>>,
    /// The `--state-dir` given when the arguments chose no state (removed on drop).
    pub state_dir: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Starts `preflow serve ARGS... --listen 127.0.0.1:0` and waits for its address.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        // A `secure` virtual host in an environment file (the seed's) gets a free port
        // too, unless the test gives its own file (whose addresses it chooses).
        let own_env = args.contains(&"--env");
        // The virtual hosts of the seed's environment file, besides `default`.
        let named: Vec<String> = args
            .iter()
            .filter_map(|a| {
                let p = Path::new(a);
                std::fs::read_to_string(if own_env {
                    p.to_owned()
                } else {
                    p.join("environment.toml")
                })
                .ok()
            })
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().strip_prefix("name = \"")?.strip_suffix('"'))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        // Side by side with other tests, the seed's fixed ports become free ones (a test
        // giving its own file chooses its addresses).
        let vhost_names: Vec<String> = if own_env {
            Vec::new()
        } else {
            ["secure", "tenant"]
                .iter()
                .filter(|n| named.iter().any(|m| m == *n))
                .map(|n| (*n).to_owned())
                .collect()
        };
        let wants_secure = named.iter().any(|n| n == "secure");
        // PREFLOW_TEST_BIN runs the suite against another build (e.g. the release binary,
        // for the memory figures of the README).
        let bin = std::env::var("PREFLOW_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_preflow").to_owned());
        let mut cmd = Command::new(bin);
        // Gateways run side by side: each gets a state file of its own unless the test
        // chose where state lives.
        let chose_state = args
            .iter()
            .any(|a| ["--redis", "--state", "--state-dir"].contains(a));
        let state_dir = (!chose_state).then(|| tempfile::tempdir().unwrap());
        cmd.arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("PREFLOW_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in &vhost_names {
            cmd.args(["--vhost", &format!("{name}=127.0.0.1:0")]);
        }
        if let Some(dir) = &state_dir {
            cmd.arg("--state-dir").arg(dir.path());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn preflow serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().unwrap();
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addr = None;
        let mut admin = None;
        let mut metrics = None;
        let mut portal = None;
        let mut secure = None;
        let mut vhosts = std::collections::HashMap::new();
        let wants_admin = args.contains(&"--admin");
        let wants_metrics = args.contains(&"--metrics");
        let wants_portal = args.contains(&"--portal");
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.strip_prefix("preflow virtual host ")
                && let Some((name, url)) = rest.split_once(" listening on ")
                && let Some((_, a)) = url.split_once("://")
            {
                vhosts.insert(name.to_owned(), a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("preflow listening on http://") {
                addr = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("preflow admin listening on http://") {
                admin = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("preflow metrics listening on http://") {
                metrics = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("preflow portal listening on http://") {
                portal = Some(a.parse().unwrap());
            }
            if let Some(a) = line.strip_prefix("preflow virtual host secure listening on https://")
            {
                secure = Some(a.parse().unwrap());
            }
            if addr.is_some()
                && (admin.is_some() || !wants_admin)
                && (metrics.is_some() || !wants_metrics)
                && (portal.is_some() || !wants_portal)
                && (secure.is_some() || !wants_secure)
                && vhost_names.iter().all(|n| vhosts.contains_key(n))
            {
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("preflow serve did not start:\n{}", stderr.lock().unwrap());
        };
        // Keep draining stdout so the child never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr,
            admin,
            metrics,
            portal,
            secure,
            vhosts,
            stderr,
            state_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills the process at once (SIGKILL, as a crash), and waits for it.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 exchange: the request is sent byte for byte (no client-side path
/// normalisation), the response read to the end.
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
    Raw {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// GET `target` (sent as is) with optional extra header lines.
pub fn raw_get(addr: SocketAddr, target: &str, headers: &str) -> Raw {
    raw(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"),
    )
}

/// A token for `demo-client` from the seed's token API (Basic, raw).
pub fn demo_token(gw: &Gateway) -> String {
    token_for(gw, "demo-client", "demo-secret").expect("demo token")
}

/// A token via `client_secret_post`, or the error response.
pub fn token_for(gw: &Gateway, id: &str, secret: &str) -> Result<String, (u16, String)> {
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        enc(id),
        enc(secret)
    );
    let r = raw(
        gw.addr,
        &format!(
            "POST /oauth/OAuthToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    if r.status != 200 {
        return Err((r.status, r.body));
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    Ok(v["access_token"].as_str().unwrap().to_owned())
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Waits out the seed's SpikeArrest (10 per second, one every 100 ms).
pub fn pace() {
    std::thread::sleep(Duration::from_millis(120));
}

/// Writes bundle `name` (`DIR/NAME/apiproxy`): a ProxyEndpoint at `base` routing to a
/// TargetEndpoint whose `<HTTPTargetConnection>` holds `conn` (`<URL>…</URL>`, properties,
/// `<SSLInfo>`…).
pub fn forwarding_bundle(dir: &Path, name: &str, base: &str, conn: &str) {
    let root = dir.join(name).join("apiproxy");
    std::fs::create_dir_all(root.join("proxies")).unwrap();
    std::fs::create_dir_all(root.join("targets")).unwrap();
    std::fs::write(
        root.join("proxies/default.xml"),
        format!(
            r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>{base}</BasePath></HTTPProxyConnection>
  <RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("targets/default.xml"),
        format!(
            r#"<TargetEndpoint name="default">
  <HTTPTargetConnection>{conn}</HTTPTargetConnection>
</TargetEndpoint>"#
        ),
    )
    .unwrap();
}
