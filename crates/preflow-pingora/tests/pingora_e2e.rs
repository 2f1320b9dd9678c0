//! Pingora with `PreflowProxy` in front of a back end: the seed scenario end to end
//! (the hosts' shared suite in crates/preflow-cli/tests/hosts).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

#[path = "../../preflow-cli/tests/hosts/mod.rs"]
mod hosts;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hosts::{
    Backend, forwarding_api, free_port, get, hello_api, plain_api, plain_scenario, scenario, seed,
    wait_listening, whole_api, whole_scenario,
};
use pingora::server::Server;
use preflow_cli::hosted;
use preflow_pingora::PreflowProxy;

/// Log lines of the proxy, for failure messages.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn pingora_with_preflow_runs_the_seed_scenario() {
    let log = Log::default();
    let sink = log.clone();
    let _ = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .try_init();

    let backend = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let api = hello_api(dir.path(), backend.addr);
    // A proxy whose back end is down: nothing listens on its port.
    let down = forwarding_api(
        dir.path(),
        "down",
        "/down",
        &format!("http://127.0.0.1:{}/x", free_port()),
        &[],
    );
    let options = hosted::Options {
        paths: vec![
            api,
            seed().join("oauth"),
            down,
            plain_api(dir.path(), backend.addr),
            whole_api(dir.path(), backend.addr),
        ],
        apps: Some(seed().join("apps.toml")),
        redis_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let loaded = hosted::load(&options).unwrap();
    let host = preflow_host::Host::new(loaded.gateway).unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::thread::spawn(move || {
        let mut server = Server::new(None).unwrap();
        server.bootstrap();
        let mut service =
            pingora::proxy::http_proxy_service(&server.configuration, PreflowProxy::new(host));
        service.add_tcp(&addr.to_string());
        server.add_service(service);
        server.run_forever();
    });
    let show = || String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    wait_listening(addr, "pingora", &show);
    scenario("pingora", addr, &backend, &show);
    whole_scenario("pingora", addr, &backend, &show);

    // Passed as it came (`Gateway::pass_response`): even the case of the back end's
    // header names (a head rebuilt from the engine's answer has none).
    let r = plain_scenario("pingora", addr, &show);
    assert!(
        r.head.contains("\r\nX-Backend: seed\r\n"),
        "pingora: the back end's head was not passed as it came: {}",
        r.head
    );

    // A back end that cannot be reached: the engine's error flow answers (503).
    let r = get(addr, "/down/anything", "");
    assert!(
        r.status == 503 && r.body.contains("\"fault\""),
        "pingora: back end down: {}\n{}\n{}",
        r.head,
        r.body,
        show()
    );
    let logged = show();
    assert!(
        logged.contains("host=\"pingora\"") && logged.contains("proxy=\"hello-api\""),
        "pingora: access log:\n{logged}"
    );
}

#[path = "../../preflow-cli/tests/tls_backend/mod.rs"]
mod tls_backend;

/// A bundle at `/tls` forwarding to `https://localhost:PORT/back` with `ssl_info`.
fn tls_bundle(dir: &std::path::Path, port: u16, ssl_info: &str) -> std::path::PathBuf {
    tls_backend::tls_api(
        dir,
        &format!("<URL>https://localhost:{port}/back</URL>{ssl_info}"),
    )
}

/// Pingora with `PreflowProxy` over `paths` and the environment file `env`.
fn start_pingora(paths: Vec<std::path::PathBuf>, env: std::path::PathBuf) -> SocketAddr {
    let options = hosted::Options {
        paths,
        env: Some(env),
        redis_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let loaded = hosted::load(&options).unwrap();
    let host = preflow_host::Host::new(loaded.gateway)
        .unwrap()
        .with_tls_stores(loaded.tls);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::thread::spawn(move || {
        let mut server = Server::new(None).unwrap();
        server.bootstrap();
        let mut service =
            pingora::proxy::http_proxy_service(&server.configuration, PreflowProxy::new(host));
        service.add_tcp(&addr.to_string());
        server.add_service(service);
        server.run_forever();
    });
    wait_listening(addr, "pingora", &String::new);
    addr
}

#[test]
fn pingora_verifies_https_targets_against_the_trust_store_and_presents_the_key_store() {
    use std::sync::atomic::Ordering;
    use tls_backend::{Ca, https_backend};

    let backend_ca = Ca::new("back end CA");
    let (cert, key) = backend_ca.issue(&["localhost"]);
    let client_ca = Ca::new("client CA");
    let (client_cert, client_key) = client_ca.issue(&["gateway.example"]);
    // The back end requires a client certificate from the client CA.
    let (backend, seen, _h) = https_backend(&cert, &key, Some(&client_ca.pem()));
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    file("backend-ca.pem", &backend_ca.pem());
    file("other-ca.pem", &Ca::new("some other CA").pem());
    file("client.pem", &client_cert);
    file("client-key.pem", &client_key);
    let env = file(
        "environment.toml",
        "[[truststore]]\nname = \"backends\"\nca = \"backend-ca.pem\"\n\n[[truststore]]\nname = \"others\"\nca = \"other-ca.pem\"\n\n[[keystore]]\nname = \"gateway\"\ncert = \"client.pem\"\nkey = \"client-key.pem\"\n",
    );

    // Trust store and key store named by the target's SSLInfo: verified, mutual TLS.
    let good = tempfile::tempdir().unwrap();
    let api = tls_bundle(
        good.path(),
        backend.port(),
        "<SSLInfo><Enabled>true</Enabled><TrustStore>ref://backends</TrustStore><KeyStore>ref://gateway</KeyStore><KeyAlias>gateway</KeyAlias><ClientAuthEnabled>true</ClientAuthEnabled></SSLInfo>",
    );
    let addr = start_pingora(vec![api], env.clone());
    let r = get(addr, "/tls/x", "");
    assert_eq!(
        r.status, 200,
        "pingora: https target with trust and key stores: {}\n{}",
        r.head, r.body
    );
    assert!(
        r.body.contains("client certificate: yes") && r.body.contains("path /back/x"),
        "pingora: the back end saw the gateway's certificate: {}",
        r.body
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);

    // A trust store that does not hold the back end's CA: no request reaches it.
    let bad = tempfile::tempdir().unwrap();
    let api = tls_bundle(
        bad.path(),
        backend.port(),
        "<SSLInfo><Enabled>true</Enabled><TrustStore>ref://others</TrustStore><KeyStore>ref://gateway</KeyStore></SSLInfo>",
    );
    let addr = start_pingora(vec![api], env);
    let r = get(addr, "/tls/x", "");
    assert!(
        r.status >= 500,
        "pingora: a back end the trust store does not vouch for must fail: {}\n{}",
        r.head,
        r.body
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "no request reached the back end"
    );
}
