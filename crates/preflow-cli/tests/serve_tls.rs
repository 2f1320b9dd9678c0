//! TLS towards back ends and on listeners (issue 13 items 2, 3 and 9), against the running
//! `preflow serve` binary: local HTTPS back ends with a test CA made here (rcgen), a
//! certificate that does not verify (no request is sent), a host name that does not
//! match, mutual TLS to a target and on a listener, HTTP/2 on both sides, and virtual
//! hosts (a ProxyEndpoint served only where its `<VirtualHost>` says).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod tls_backend;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;

use common::Gateway;
use tls_backend::{Ca, https_backend, tls_api};

/// A bundle `tls-api` at `/tls` forwarding to `url` (or, when it starts with `<`, with
/// that `<HTTPTargetConnection>` content), and a bundle `only-secure` at `/only-secure`
/// (null route, answers 200) served only on the `secure` virtual host.
fn bundles(dir: &Path, url: &str) {
    let conn = if url.starts_with('<') {
        url.to_owned()
    } else {
        format!("<URL>{url}</URL>")
    };
    tls_api(dir, &conn);
    let only = dir.join("only-secure/apiproxy");
    std::fs::create_dir_all(only.join("proxies")).unwrap();
    std::fs::write(
        only.join("only-secure.xml"),
        r#"<APIProxy name="only-secure"/>"#,
    )
    .unwrap();
    std::fs::write(
        only.join("proxies/default.xml"),
        r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>/only-secure</BasePath><VirtualHost>secure</VirtualHost></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>"#,
    )
    .unwrap();
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// A blocking client that trusts `ca` (PEM) and speaks HTTP/1.1 or 2.
fn client(ca: &str) -> reqwest::blocking::Client {
    reqwest::blocking::ClientBuilder::new()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    gw: Gateway,
    ca: Ca,
}

/// The gateway with the two bundles, forwarding `/tls` to `url`, and an environment
/// with a `secure` HTTPS virtual host (certificate for `localhost` from the test CA) and
/// `extra` appended.
fn start(url: &str, extra: impl FnOnce(&Path, &Ca) -> String) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("preflow test CA");
    bundles(dir.path(), url);
    let (cert, key) = ca.issue(&["localhost"]);
    write(dir.path(), "listener.pem", &cert);
    write(dir.path(), "listener-key.pem", &key);
    write(dir.path(), "ca.pem", &ca.pem());
    let more = extra(dir.path(), &ca);
    let env = write(
        dir.path(),
        "environment.toml",
        &format!(
            "[[virtual_host]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\nhosts = [\"localhost\"]\ntls = {{ cert = \"listener.pem\", key = \"listener-key.pem\" }}\n\n{more}"
        ),
    );
    let gw = Gateway::start(&[dir.path().to_str().unwrap(), "--env", &env]);
    Setup { _dir: dir, gw, ca }
}

fn secure_addr(gw: &Gateway) -> SocketAddr {
    gw.secure.expect("the secure virtual host's address")
}

#[test]
fn an_https_target_verified_by_a_truststore_answers_over_http2() {
    let backend_ca = Ca::new("back end CA");
    let (cert, key) = backend_ca.issue(&["localhost"]);
    let (addr, seen, _h) = https_backend(&cert, &key, None);
    let backend_ca_pem = backend_ca.pem();
    let s = start(
        &format!("https://localhost:{}/back", addr.port()),
        |dir, _| {
            write(dir, "backend-ca.pem", &backend_ca_pem);
            format!(
                "[[truststore]]\nname = \"backends\"\nca = \"backend-ca.pem\"\n\n[[target_server]]\nname = \"b\"\nhost = \"localhost\"\nport = {}\ntls = {{ truststore = \"ref://backends\" }}\n",
                addr.port()
            )
        },
    );
    let r = reqwest::blocking::get(s.gw.url("/tls/x")).unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", s.gw.log());
    let body = r.text().unwrap();
    assert_eq!(
        body,
        "tls back end via HTTP/2.0, client certificate: no, path /back/x"
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn a_target_certificate_that_does_not_verify_gets_a_fault_and_no_request() {
    let backend_ca = Ca::new("unknown CA");
    let (cert, key) = backend_ca.issue(&["localhost"]);
    let (addr, seen, _h) = https_backend(&cert, &key, None);
    // No truststore: the web PKI roots, which do not know the back end's CA.
    let s = start(
        &format!("https://localhost:{}/back", addr.port()),
        |_, _| String::new(),
    );
    let r = reqwest::blocking::get(s.gw.url("/tls/x")).unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("messaging.adaptors.http.flow.BadGateway"),
        "{body}"
    );
    assert!(
        body.contains("certificate did not verify") && body.contains("UnknownIssuer"),
        "{body}"
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        0,
        "no request is sent"
    );
}

#[test]
fn the_target_host_name_is_checked() {
    let backend_ca = Ca::new("back end CA");
    // Issued for another name than the one the URL uses.
    let (cert, key) = backend_ca.issue(&["backend.example"]);
    let (addr, seen, _h) = https_backend(&cert, &key, None);
    let pem = backend_ca.pem();
    let s = start(
        &format!("https://localhost:{}/back", addr.port()),
        |dir, _| {
            write(dir, "backend-ca.pem", &pem);
            format!(
                "[[truststore]]\nname = \"backends\"\nca = \"backend-ca.pem\"\n\n[[target_server]]\nname = \"b\"\nhost = \"localhost\"\nport = {}\ntls = {{ truststore = \"backends\" }}\n",
                addr.port()
            )
        },
    );
    let r = reqwest::blocking::get(s.gw.url("/tls/x")).unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    assert_eq!(status, 502, "{body} {}", s.gw.log());
    assert!(body.contains("NotValidForName"), "{body}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn mutual_tls_to_a_target_presents_the_keystore_certificate() {
    let backend_ca = Ca::new("back end CA");
    let (cert, key) = backend_ca.issue(&["localhost"]);
    let client_ca = Ca::new("client CA");
    let (client_cert, client_key) = client_ca.issue(&["gateway.example"]);
    let (addr, seen, _h) = https_backend(&cert, &key, Some(&client_ca.pem()));
    let pem = backend_ca.pem();
    let s = start(
        &format!("https://localhost:{}/back", addr.port()),
        |dir, _| {
            write(dir, "backend-ca.pem", &pem);
            write(dir, "client.pem", &client_cert);
            write(dir, "client-key.pem", &client_key);
            format!(
                "[[truststore]]\nname = \"backends\"\nca = \"backend-ca.pem\"\n\n[[keystore]]\nname = \"gateway\"\ncert = \"client.pem\"\nkey = \"client-key.pem\"\n\n[[target_server]]\nname = \"b\"\nhost = \"localhost\"\nport = {}\ntls = {{ truststore = \"backends\", keystore = \"gateway\" }}\n",
                addr.port()
            )
        },
    );
    let r = reqwest::blocking::get(s.gw.url("/tls/x")).unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", s.gw.log());
    assert!(
        r.text().unwrap().contains("client certificate: yes"),
        "the back end saw the gateway's certificate"
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn a_targets_ssl_info_names_the_trust_and_key_stores_it_uses() {
    let backend_ca = Ca::new("back end CA");
    let (cert, key) = backend_ca.issue(&["localhost"]);
    let client_ca = Ca::new("client CA");
    let (client_cert, client_key) = client_ca.issue(&["gateway.example"]);
    let (addr, seen, _h) = https_backend(&cert, &key, Some(&client_ca.pem()));
    let pem = backend_ca.pem();
    // No target server: only the endpoint's <SSLInfo> says how to reach the back end.
    let conn = |stores: &str| {
        format!(
            "<SSLInfo><Enabled>true</Enabled>{stores}<Protocols><Protocol>TLSv1.3</Protocol></Protocols></SSLInfo><URL>https://localhost:{}/back</URL>",
            addr.port()
        )
    };
    let env = |dir: &Path, _: &Ca| {
        write(dir, "backend-ca.pem", &pem);
        write(dir, "client.pem", &client_cert);
        write(dir, "client-key.pem", &client_key);
        "[[truststore]]\nname = \"backends\"\nca = \"backend-ca.pem\"\n\n[[keystore]]\nname = \"gateway\"\ncert = \"client.pem\"\nkey = \"client-key.pem\"\n".to_owned()
    };
    let s = start(
        &conn("<TrustStore>ref://backends</TrustStore><KeyStore>gateway</KeyStore>"),
        env,
    );
    let r = reqwest::blocking::get(s.gw.url("/tls/x")).unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", s.gw.log());
    assert!(r.text().unwrap().contains("client certificate: yes"));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    drop(s);
    // A store the environment lacks: a 502 that names it, and nothing is sent.
    let s = start(&conn("<TrustStore>partners</TrustStore>"), env);
    let r = reqwest::blocking::get(s.gw.url("/tls/x")).unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert!(r.text().unwrap().contains("no truststore named `partners`"));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn the_https_listener_serves_only_its_virtual_hosts_proxies_there() {
    let s = start("http://127.0.0.1:9/unused", |_, _| String::new());
    let secure = secure_addr(&s.gw);
    let ca = s.ca.pem();
    let https = client(&ca);
    // Reached by name (SNI `localhost`), verified against the test CA.
    let url = format!("https://localhost:{}/only-secure", secure.port());
    let r = https.get(&url).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", s.gw.log());
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN h2");
    // TLS 1.2 clients and HTTP/1.1 clients are served too.
    let tls12 = reqwest::blocking::ClientBuilder::new()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .http1_only()
        .build()
        .unwrap();
    let r = tls12.get(&url).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    // The default (plain) host does not serve a proxy bound to `secure`.
    let r = reqwest::blocking::get(s.gw.url("/only-secure")).unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.text().unwrap().contains("ApplicationNotFound"));
    // Nor through a path that normalises to it.
    let r = common::raw_get(s.gw.addr, "/x/../only-secure", "");
    assert_eq!(r.status, 404, "{}", r.body);
    let log = s.gw.log();
    assert!(log.contains("listener=\"secure\""), "{log}");
}

#[test]
fn a_listener_with_a_client_ca_requires_client_certificates() {
    let client_ca = Ca::new("listener client CA");
    let (client_cert, client_key) = client_ca.issue(&["client.example"]);
    let client_ca_pem = client_ca.pem();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listener CA");
    bundles(dir.path(), "http://127.0.0.1:9/unused");
    let (cert, key) = ca.issue(&["localhost"]);
    write(dir.path(), "l.pem", &cert);
    write(dir.path(), "l-key.pem", &key);
    write(dir.path(), "client-ca.pem", &client_ca_pem);
    let env = write(
        dir.path(),
        "environment.toml",
        "[[virtual_host]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\ntls = { cert = \"l.pem\", key = \"l-key.pem\", client_ca = \"client-ca.pem\" }\n",
    );
    let gw = Gateway::start(&[dir.path().to_str().unwrap(), "--env", &env]);
    let url = format!(
        "https://localhost:{}/only-secure",
        gw.secure.unwrap().port()
    );
    let without = client(&ca.pem()).get(&url).send();
    assert!(without.is_err(), "no client certificate: refused");
    let identity =
        reqwest::Identity::from_pem(format!("{client_cert}{client_key}").as_bytes()).unwrap();
    let with = reqwest::blocking::ClientBuilder::new()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .identity(identity)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .unwrap();
    assert_eq!(with.status().as_u16(), 200, "{}", gw.log());
}

/// `preflow serve DIR ARGS…` expected to refuse to start; its standard error.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preflow"))
        .arg("serve")
        .arg(dir)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_environment_file_stops_the_start_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    bundles(dir.path(), "http://127.0.0.1:9/unused");
    let env = write(
        dir.path(),
        "environment.toml",
        "[[virtual_host]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\n\n[[target_server]]\nname = \"t\"\nhost = \"h\"\nport = 443\ntls = { truststore = \"missing\" }\n",
    );
    let err = refused(dir.path(), &["--env", &env]);
    assert!(
        err.contains(&format!("{env}:9:")) && err.contains("no truststore named `missing`"),
        "{err}"
    );
    // Found by default in a PATH folder, and an unknown key.
    write(
        dir.path(),
        "environment.toml",
        "[[virtual_host]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\ncolour = \"blue\"\n",
    );
    let err = refused(dir.path(), &[]);
    assert!(
        err.contains("environment.toml:4:") && err.contains("unknown field `colour`"),
        "{err}"
    );
    // --vhost names a host the file does not have.
    write(
        dir.path(),
        "environment.toml",
        "[[virtual_host]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\n",
    );
    let err = refused(dir.path(), &["--vhost", "other=127.0.0.1:0"]);
    assert!(err.contains("--vhost other"), "{err}");
}

#[test]
fn virtual_hosts_sharing_an_address_are_told_apart_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("SNI CA");
    bundles(dir.path(), "http://127.0.0.1:9/unused");
    for (name, host) in [("a", "a.test"), ("b", "b.test")] {
        let (cert, key) = ca.issue(&[host]);
        write(dir.path(), &format!("{name}.pem"), &cert);
        write(dir.path(), &format!("{name}-key.pem"), &key);
    }
    // Sharing needs a fixed port: one the kernel just handed out.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = write(
        dir.path(),
        "environment.toml",
        &format!(
            "[[virtual_host]]\nname = \"secure\"\nlisten = \"127.0.0.1:{port}\"\nhosts = [\"a.test\"]\ntls = {{ cert = \"a.pem\", key = \"a-key.pem\" }}\n\n[[virtual_host]]\nname = \"other\"\nlisten = \"127.0.0.1:{port}\"\nhosts = [\"b.test\"]\ntls = {{ cert = \"b.pem\", key = \"b-key.pem\" }}\n"
        ),
    );
    let gw = Gateway::start(&[dir.path().to_str().unwrap(), "--env", &env]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let https = reqwest::blocking::ClientBuilder::new()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("a.test", addr)
        .resolve("b.test", addr)
        .build()
        .unwrap();
    // Each name gets its own certificate (verification would fail otherwise) and its own
    // virtual host: `/only-secure` is served on `secure` only.
    let a = https
        .get(format!("https://a.test:{port}/only-secure"))
        .send()
        .unwrap();
    assert_eq!(a.status().as_u16(), 200, "{}", gw.log());
    let b = https
        .get(format!("https://b.test:{port}/only-secure"))
        .send()
        .unwrap();
    assert_eq!(b.status().as_u16(), 404, "{}", gw.log());
}
