//! A Javascript policy's `httpClient` call through `preflow serve`: the script calls a
//! local back end, the gateway performs the call as a host step, the script resumes
//! with the response and its result reaches the target.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};

use common::{Gateway, forwarding_bundle, raw_get};

/// A back end: `/auth` answers `token-42`; any other path echoes its `x-auth` header.
fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.trim().eq_ignore_ascii_case("x-auth")
                {
                    auth = v.trim().to_owned();
                }
            }
            let body = if line.contains(" /auth") {
                "token-42".to_owned()
            } else {
                format!("echo:{auth}")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn http_client_calls_a_local_back_end_through_the_host() {
    let backend = backend();
    let dir = tempfile::tempdir().unwrap();
    forwarding_bundle(
        dir.path(),
        "js",
        "/js",
        &format!("<URL>http://{backend}/echo</URL>"),
    );
    let root = dir.path().join("js/apiproxy");
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::create_dir_all(root.join("resources/jsc")).unwrap();
    std::fs::write(
        root.join("policies/Auth.xml"),
        r#"<Javascript name="Auth" timeLimit="200"><ResourceURL>jsc://auth.js</ResourceURL></Javascript>"#,
    )
    .unwrap();
    std::fs::write(
        root.join("resources/jsc/auth.js"),
        format!(
            "var ex = httpClient.get('http://{backend}/auth');\nex.waitForComplete();\nvar r = ex.getResponse();\ncontext.proxyRequest.headers['x-auth'] = r.content + '/' + r.status;\n"
        ),
    )
    .unwrap();
    // The PreFlow runs the policy.
    let proxy = root.join("proxies/default.xml");
    let text = std::fs::read_to_string(&proxy).unwrap().replace(
        "<HTTPProxyConnection>",
        "<PreFlow><Request><Step><Name>Auth</Name></Step></Request></PreFlow><HTTPProxyConnection>",
    );
    std::fs::write(&proxy, text).unwrap();
    let gw = Gateway::start(&[dir.path().to_str().unwrap()]);
    for _ in 0..3 {
        let r = raw_get(gw.addr, "/js/x", "");
        assert_eq!(r.status, 200, "{} {}\n{}", r.head, r.body, gw.log());
        assert_eq!(r.body, "echo:token-42/200");
    }
}
