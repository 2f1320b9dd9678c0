//! Thread per core: `--workers N` threads, each with its own socket on the listen address
//! (`SO_REUSEPORT`), its own runtime and its own upstream pools; `PREFLOW_WORKERS`.

// Test helpers outside #[test] functions: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Stdio};

use common::{Gateway, HELLO, demo_token, pace, raw_get, seed};

/// Listening TCP sockets on `port` (IPv4), from `/proc/net/tcp`.
#[cfg(target_os = "linux")]
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "0A"
        })
        .count()
}

/// The names of the process's threads.
#[cfg(target_os = "linux")]
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn each_worker_listens_on_the_address_and_every_connection_is_served() {
    let gw = Gateway::start(&[seed().to_str().unwrap(), "--workers", "3"]);
    assert_eq!(
        listening_sockets(gw.addr.port()),
        3,
        "one socket per worker"
    );
    let mut names = thread_names(gw.child.id());
    // Thread names are cut to 15 bytes by the kernel: "preflow-w<index>".
    names.retain(|n| n.starts_with("preflow-w"));
    names.sort();
    assert_eq!(names, ["preflow-w0", "preflow-w1", "preflow-w2"]);
    // A token request checks a client secret and commits the token durably (off the
    // worker's runtime); then every connection, whichever worker the kernel gives it to,
    // is verified and proxied.
    let token = demo_token(&gw);
    // The seed's SpikeArrest admits one request per 100 ms.
    for _ in 0..12 {
        pace();
        let r = raw_get(
            gw.addr,
            "/v1/test/hello",
            &format!("Authorization: Bearer {token}\r\n"),
        );
        assert_eq!((r.status, r.body.as_str()), (200, HELLO), "{}", r.head);
    }
    assert!(gw.terminate().success());
}

#[cfg(target_os = "linux")]
#[test]
fn one_worker_binds_its_address_alone() {
    let gw = Gateway::start_with_env(&[seed().to_str().unwrap()], &[("PREFLOW_WORKERS", "1")]);
    assert_eq!(listening_sockets(gw.addr.port()), 1);
    // Without SO_REUSEPORT the address stays exclusive.
    assert!(std::net::TcpListener::bind(gw.addr).is_err());
    let r = raw_get(gw.addr, "/v1/test/hello", "");
    assert_eq!(r.status, 401, "{}", r.head);
}

#[test]
fn a_bad_worker_count_stops_the_start() {
    let bin = env!("CARGO_BIN_EXE_preflow");
    let dir = tempfile::tempdir().unwrap();
    for (args, env) in [
        (vec!["--workers", "0"], None),
        (vec![], Some("none")),
        (vec![], Some("0")),
    ] {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg(seed())
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(dir.path())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match env {
            Some(v) => cmd.env("PREFLOW_WORKERS", v),
            None => cmd.env_remove("PREFLOW_WORKERS"),
        };
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?} {env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("workers") || err.contains("WORKERS"),
            "{args:?} {env:?}: {err}"
        );
    }
}
