//! Zero-downtime deploys of `preflow serve`: a bundle zip posted to the admin API, the
//! PATHs read again on SIGHUP, a broken bundle refused, rollback and activation, all while
//! clients keep calling, and no request fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Gateway, raw, raw_get, seed};

const TOKEN: &str = "an-admin-token-of-some-length";

/// The files of bundle `hello`: a null-route proxy at `/deploy` answering `text`.
fn hello_files(text: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "apiproxy/hello.xml",
            r#"<APIProxy name="hello"/>"#.to_owned(),
        ),
        (
            "apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <PreFlow><Request><Step><Name>Answer</Name></Step></Request></PreFlow>
  <HTTPProxyConnection><BasePath>/deploy</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#
                .to_owned(),
        ),
        (
            "apiproxy/policies/Answer.xml",
            format!(
                r#"<RaiseFault name="Answer"><FaultResponse><Set>
  <Payload contentType="text/plain">{text}</Payload><StatusCode>200</StatusCode>
</Set></FaultResponse></RaiseFault>"#
            ),
        ),
    ]
}

fn write_bundle(dir: &Path, text: &str) {
    for (name, body) in hello_files(text) {
        let path = dir.join("hello").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

fn zip_of(files: &[(&str, String)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in files {
        out.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(body.as_bytes()).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn admin_post(admin: SocketAddr, path: &str, body: &[u8]) -> common::Raw {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    // The raw helper sends text; zips are binary.
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&req).unwrap();
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    common::Raw {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Waits until `/deploy` answers `want`.
fn wait_for(addr: SocketAddr, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = raw_get(addr, "/deploy", "");
        if r.body == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still `{}`, want `{want}`",
            r.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn deploys_under_load_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let bundles = dir.path().join("bundles");
    write_bundle(&bundles, "one");
    let apps = dir.path().join("apps.toml");
    std::fs::copy(seed().join("apps.toml"), &apps).unwrap();
    let gw = Gateway::start_with_env(
        &[
            bundles.to_str().unwrap(),
            "--apps",
            apps.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
        ],
        &[("PREFLOW_ADMIN_TOKEN", TOKEN)],
    );
    let admin = gw.admin.unwrap();
    let addr = gw.addr;
    assert_eq!(raw_get(addr, "/deploy", "").body, "one");

    // Clients calling all along; every answer must be a 200 from some revision.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    // Lets the load run on the active revision for a while before the next change.
    let under_load = || {
        let from = answered.load(Ordering::Relaxed);
        while answered.load(Ordering::Relaxed) < from + 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = raw(
                        addr,
                        &format!(
                            "GET /deploy HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                        ),
                    );
                    if r.status == 200 && ["one", "two", "three"].contains(&r.body.as_str()) {
                        ok += 1;
                        answered.fetch_add(1, Ordering::Relaxed);
                        seen.insert(r.body);
                    } else {
                        failed.push(format!("{} {}", r.status, r.body));
                    }
                }
                (ok, failed, seen)
            })
        })
        .collect();

    under_load();
    // 1. A zip through the admin API replaces the bundle of the same name.
    let r = admin_post(
        admin,
        "/admin/deployments?name=hello-two.zip",
        &zip_of(&hello_files("two")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["revision"], 2, "{v}");
    assert_eq!(v["bundles"][0]["base_paths"][0], "/deploy", "{v}");
    wait_for(addr, "two");
    under_load();

    // 2. A broken bundle is refused with its errors; revision 2 keeps serving.
    let mut broken = hello_files("x");
    broken[2].1 = "<RaiseFault name=\"Answer\"><FaultResponse>".to_owned();
    let r = admin_post(admin, "/admin/deployments", &zip_of(&broken));
    assert_eq!(r.status, 422, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"], "invalid_bundle");
    assert!(
        v["errors"][0].as_str().unwrap().contains("Answer.xml"),
        "{v}"
    );
    let r = admin_post(admin, "/admin/deployments", b"not a zip");
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(raw_get(addr, "/deploy", "").body, "two");

    // 3. SIGHUP reads the PATHs again: the latest deploy of a name wins.
    write_bundle(&bundles, "three");
    let hup = |gw: &Gateway| {
        let status = Command::new("kill")
            .args(["-HUP", &gw.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup(&gw);
    wait_for(addr, "three");
    under_load();
    // A file broken on disk: refused on SIGHUP, revision 3 keeps serving.
    std::fs::write(
        bundles.join("hello/apiproxy/policies/Answer.xml"),
        "<RaiseFault",
    )
    .unwrap();
    hup(&gw);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw.log().contains("deploy refused") {
        assert!(Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(raw_get(addr, "/deploy", "").body, "three");

    // 4. Rollback and activation.
    let r = admin_post(admin, "/admin/deployments/rollback", b"");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(addr, "two");
    let r = admin_post(admin, "/admin/deployments/3/activate", b"");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(addr, "three");
    assert_eq!(
        admin_post(admin, "/admin/deployments/99/activate", b"").status,
        404
    );
    let list = raw_get(
        admin,
        "/admin/deployments",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let v: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(v["active"], 3, "{v}");
    let numbers: Vec<u64> = v["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1], "{v}");
    assert_eq!(v["revisions"][1]["origin"], "upload hello-two.zip", "{v}");
    // Counted for the operator.
    let metrics = raw_get(admin, "/metrics", "").body;
    for line in [
        r#"preflow_deployments_total{origin="startup",outcome="deployed"} 1"#,
        r#"preflow_deployments_total{origin="upload",outcome="deployed"} 1"#,
        r#"preflow_deployments_total{origin="upload",outcome="refused"} 2"#,
        r#"preflow_deployments_total{origin="reload",outcome="deployed"} 1"#,
        r#"preflow_deployments_total{origin="reload",outcome="refused"} 1"#,
        r#"preflow_deployments_total{origin="activate",outcome="deployed"} 2"#,
        "preflow_active_revision 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    // Without the admin token: nothing.
    assert_eq!(raw_get(admin, "/admin/deployments", "").status, 401);

    under_load();
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut seen) = (0, Vec::new(), std::collections::BTreeSet::new());
    for c in clients {
        let (o, mut f, s) = c.join().unwrap();
        ok += o;
        failed.append(&mut f);
        seen.extend(s);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // The load ran across every revision.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["one", "three", "two"],
        "{ok} requests"
    );
    eprintln!("deploys under load: {ok} requests, 0 failed");
}

/// A request in flight when a revision is deployed finishes on the revision it began on:
/// its response flow is the old one's.
#[test]
fn a_request_in_flight_finishes_on_its_revision() {
    use std::io::Read as _;
    // A back end that answers each request after 1.5 s.
    let back = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let back_addr = back.local_addr().unwrap();
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for conn in back.incoming() {
            let Ok(mut conn) = conn else { continue };
            let arrived_tx = arrived_tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = arrived_tx.send(());
                std::thread::sleep(Duration::from_millis(1500));
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
                );
            });
        }
    });
    let front = |stamp: &str| -> Vec<(&'static str, String)> {
        vec![
            (
                "apiproxy/front.xml",
                r#"<APIProxy name="front"/>"#.to_owned(),
            ),
            (
                "apiproxy/proxies/default.xml",
                r#"<ProxyEndpoint name="default">
  <PostFlow><Response><Step><Name>Stamp</Name></Step></Response></PostFlow>
  <HTTPProxyConnection><BasePath>/front</BasePath></HTTPProxyConnection>
  <RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#
                    .to_owned(),
            ),
            (
                "apiproxy/targets/default.xml",
                format!(
                    r#"<TargetEndpoint name="default"><HTTPTargetConnection><URL>http://{back_addr}/</URL></HTTPTargetConnection></TargetEndpoint>"#
                ),
            ),
            (
                "apiproxy/policies/Stamp.xml",
                format!(
                    r#"<AssignMessage name="Stamp"><Set><Headers><Header name="X-Revision">{stamp}</Header></Headers></Set><AssignTo createNew="false" type="response"/></AssignMessage>"#
                ),
            ),
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in front("old") {
        let path = dir.path().join("bundles/front").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    let apps = dir.path().join("apps.toml");
    std::fs::copy(seed().join("apps.toml"), &apps).unwrap();
    let gw = Gateway::start_with_env(
        &[
            dir.path().join("bundles").to_str().unwrap(),
            "--apps",
            apps.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
        ],
        &[("PREFLOW_ADMIN_TOKEN", TOKEN)],
    );
    let addr = gw.addr;
    let in_flight = std::thread::spawn(move || raw_get(addr, "/front/x", ""));
    // Deploy while the request waits on its back end.
    arrived.recv_timeout(Duration::from_secs(20)).unwrap();
    let r = admin_post(
        gw.admin.unwrap(),
        "/admin/deployments",
        &zip_of(&front("new")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let old = in_flight.join().unwrap();
    assert_eq!(
        (old.status, old.body.as_str()),
        (200, "slow"),
        "{}",
        old.head
    );
    assert_eq!(
        old.header("x-revision").as_deref(),
        Some("old"),
        "{}",
        old.head
    );
    let new = raw_get(addr, "/front/x", "");
    assert_eq!(
        new.header("x-revision").as_deref(),
        Some("new"),
        "{}",
        new.head
    );
}
