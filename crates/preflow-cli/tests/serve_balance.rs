//! `preflow serve` load balancing across two real local back ends: one is killed, traffic
//! continues on the other, and the killed one is back in rotation once it listens again
//! and its HTTP health monitor succeeds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Gateway, raw_get};

/// A plain HTTP/1.1 back end answering every request with its name (one request per
/// connection); stopped (its socket closed) when dropped.
struct Backend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(name: &'static str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // The head; these requests have no body.
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut s = reader.into_inner();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
            }
        });
        Backend {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn traffic_moves_off_a_killed_back_end_and_returns_after_its_monitor_succeeds() {
    let a = Backend::start("A", any_port());
    let b = Backend::start("B", any_port());
    let a_addr = a.addr;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lb/apiproxy");
    std::fs::create_dir_all(root.join("proxies")).unwrap();
    std::fs::create_dir_all(root.join("targets")).unwrap();
    std::fs::write(
        root.join("proxies/default.xml"),
        r#"<ProxyEndpoint name="default"><HTTPProxyConnection><BasePath>/lb</BasePath></HTTPProxyConnection>
        <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule></ProxyEndpoint>"#,
    )
    .unwrap();
    std::fs::write(
        root.join("targets/default.xml"),
        r#"<TargetEndpoint name="default"><HTTPTargetConnection>
          <LoadBalancer><Server name="a"/><Server name="b"/><MaxFailures>2</MaxFailures></LoadBalancer>
          <Path>/api</Path>
          <HealthMonitor><IsEnabled>true</IsEnabled><IntervalInSec>1</IntervalInSec>
            <HTTPMonitor><Request><ConnectTimeoutInSec>1</ConnectTimeoutInSec><SocketReadTimeoutInSec>1</SocketReadTimeoutInSec>
              <Verb>GET</Verb><Path>/healthz</Path></Request>
              <SuccessResponse><ResponseCode>200</ResponseCode></SuccessResponse></HTTPMonitor>
          </HealthMonitor>
        </HTTPTargetConnection></TargetEndpoint>"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lb/environment.toml"),
        format!(
            "[[target_server]]\nname = \"a\"\nhost = \"127.0.0.1\"\nport = {}\n\n[[target_server]]\nname = \"b\"\nhost = \"127.0.0.1\"\nport = {}\n",
            a.addr.port(),
            b.addr.port()
        ),
    )
    .unwrap();
    let gw = Gateway::start(&[dir.path().join("lb").to_str().unwrap()]);
    let get = || {
        let r = raw_get(gw.addr, "/lb/x", "");
        assert_eq!(r.status, 200, "{} {}\n{}", r.head, r.body, gw.log());
        r.body
    };

    // Both in rotation.
    let seen: Vec<String> = (0..6).map(|_| get()).collect();
    assert_eq!(seen.iter().filter(|s| *s == "A").count(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "B").count(), 3, "{seen:?}");

    // A dies: every request still succeeds (retried on B, then A is out).
    drop(a);
    let seen: Vec<String> = (0..10).map(|_| get()).collect();
    assert!(seen.iter().all(|s| s == "B"), "{seen:?}");
    // Its probes fail meanwhile: still out after a few intervals.
    std::thread::sleep(Duration::from_millis(2500));
    let seen: Vec<String> = (0..4).map(|_| get()).collect();
    assert!(seen.iter().all(|s| s == "B"), "{seen:?}");

    // A listens again: its monitor brings it back.
    let _a = Backend::start("A", a_addr);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if get() == "A" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A did not come back\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen: Vec<String> = (0..6).map(|_| get()).collect();
    assert!(seen.contains(&"A".to_owned()), "{seen:?}");
    assert!(seen.contains(&"B".to_owned()), "{seen:?}");
}
