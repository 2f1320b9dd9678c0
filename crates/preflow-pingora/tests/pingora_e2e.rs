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
    Backend, free_port, get, hello_api, scenario, seed, wait_listening, whole_api, whole_scenario,
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
    let down = dir.path().join("down/apiproxy");
    std::fs::create_dir_all(down.join("proxies")).unwrap();
    std::fs::create_dir_all(down.join("targets")).unwrap();
    std::fs::write(
        down.join("proxies/default.xml"),
        r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>/down</BasePath></HTTPProxyConnection>
  <RouteRule name="t"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#,
    )
    .unwrap();
    std::fs::write(
        down.join("targets/default.xml"),
        format!(
            r#"<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>http://127.0.0.1:{}/x</URL></HTTPTargetConnection>
</TargetEndpoint>"#,
            free_port()
        ),
    )
    .unwrap();
    let options = hosted::Options {
        paths: vec![
            api,
            seed().join("oauth"),
            dir.path().join("down"),
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
