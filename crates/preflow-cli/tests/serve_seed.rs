//! The seed scenario against the running `preflow serve` binary: real OAuth clients,
//! rejections, spike arrest, path tricks, the admin API, limits, target faults, shutdown.

// Test helpers outside #[test] functions: failing loudly is their job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use common::{Gateway, HELLO, demo_token, forwarding_bundle, pace, raw, raw_get, seed, token_for};
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, TokenResponse as _, TokenUrl};

fn http() -> oauth2::reqwest::blocking::Client {
    oauth2::reqwest::blocking::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn hello(gw: &Gateway, token: &str) -> (u16, String) {
    let r = http()
        .get(gw.url("/v1/test/hello"))
        .bearer_auth(token)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn rust_oauth2_client_with_an_rfc_encoded_secret() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new("rfc-client".into()))
            .set_client_secret(ClientSecret::new("p:a+s s%w/o=rd&~".into()))
            .set_auth_type(auth.clone())
            .set_token_uri(TokenUrl::new(gw.url("/oauth/OAuthToken")).unwrap());
        let token = client
            .exchange_client_credentials()
            .request(&http())
            .unwrap_or_else(|e| panic!("{auth:?}: {e:?}"));
        assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
        pace();
        let (status, body) = hello(&gw, token.access_token().secret());
        assert_eq!((status, body.as_str()), (200, HELLO), "{auth:?}");
        pace();
    }
    let log = gw.log();
    assert!(
        log.contains("status=200 proxy=\"hello-api\""),
        "one log line per request with status and proxy:\n{log}"
    );
    assert!(log.contains("flow=\"GenerateToken\""), "{log}");
}

#[test]
fn rust_oauth2_client_sees_invalid_client_for_a_wrong_secret() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let client = BasicClient::new(ClientId::new("rfc-client".into()))
        .set_client_secret(ClientSecret::new("wrong".into()))
        .set_token_uri(TokenUrl::new(gw.url("/oauth/OAuthToken")).unwrap());
    let err = client
        .exchange_client_credentials()
        .request(&http())
        .unwrap_err();
    match err {
        oauth2::RequestTokenError::ServerResponse(e) => {
            assert_eq!(
                *e.error(),
                oauth2::basic::BasicErrorResponseType::InvalidClient
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_secret_is_401_invalid_client_with_a_basic_challenge() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let r = http()
        .post(gw.url("/oauth/OAuthToken"))
        .basic_auth("demo-client", Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(v["error"], "invalid_client");
    assert!(v.get("access_token").is_none());
}

#[test]
fn no_token_and_bad_token_get_a_bearer_challenge() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let r = http().get(gw.url("/v1/test/hello")).send().unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("realm="), "{challenge}");
    assert!(!r.text().unwrap().contains(HELLO));
    pace();
    for bad in ["bad", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let r = http()
            .get(gw.url("/v1/test/hello"))
            .bearer_auth(bad)
            .send()
            .unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(!r.text().unwrap().contains(HELLO));
        pace();
    }
}

#[test]
fn a_burst_meets_the_spike_arrest() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let token = demo_token(&gw);
    pace();
    let statuses: Vec<u16> = (0..20).map(|_| hello(&gw, &token).0).collect();
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    pace();
    assert_eq!(hello(&gw, &token).0, 200, "recovers after the burst");
}

#[test]
fn get_on_the_token_endpoint_issues_nothing() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    for target in [
        "/oauth/OAuthToken",
        "/oauth/OAuthToken?grant_type=client_credentials",
        "/oauth/OAuthToken?grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret",
    ] {
        let r = raw_get(
            gw.addr,
            target,
            "Authorization: Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=\r\n",
        );
        assert_ne!(r.status, 200, "{target}: {}", r.head);
        assert!(!r.body.contains("access_token"), "{target}: {}", r.body);
    }
    let r = raw_get(gw.addr, "/oauth/OAuthToken", "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
}

#[test]
fn path_tricks_never_reach_the_back_end_without_a_token() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let tricks = [
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
    for target in tricks {
        let r = raw_get(gw.addr, target, "");
        assert!(
            (400..500).contains(&r.status),
            "{target}: {} {}",
            r.head,
            r.body
        );
        assert!(!r.body.contains(HELLO), "{target} reached the back end");
        pace();
    }
    // The same forms with a bad token.
    for target in tricks {
        let r = raw_get(gw.addr, target, "Authorization: Bearer bad\r\n");
        assert!((400..500).contains(&r.status), "{target}: {}", r.head);
        assert!(!r.body.contains(HELLO), "{target} reached the back end");
        pace();
    }
}

#[test]
fn forwards_path_suffix_and_query_and_maps_target_faults() {
    // An upstream that records the request line and answers 200.
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let seen = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in up.incoming() {
                let mut s = conn.unwrap();
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.lock().unwrap().push(text);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream",
                );
            }
        });
    }
    // A target that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    drop(TcpListener::bind(closed).ok());

    let dir = tempfile::tempdir().unwrap();
    for (name, url) in [
        ("up", format!("http://{up_addr}/base")),
        ("silent", format!("http://{silent_addr}/")),
        ("closed", format!("http://{closed}/")),
    ] {
        let conn = format!(
            r#"<URL>{url}</URL>
    <Properties>
      <Property name="connect.timeout.millis">1000</Property>
      <Property name="io.timeout.millis">300</Property>
    </Properties>"#
        );
        forwarding_bundle(dir.path(), name, &format!("/{name}"), &conn);
    }
    let gw = Gateway::start(&[dir.path().to_str().unwrap()]);

    let r = raw_get(gw.addr, "/up/x/y?a=1&b=two%20words", "X-Custom: kept\r\n");
    assert_eq!((r.status, r.body.as_str()), (200, "upstream"), "{}", r.head);
    let request = seen.lock().unwrap()[0].clone();
    assert!(
        request.starts_with("GET /base/x/y?a=1&b=two%20words HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.to_ascii_lowercase().contains("x-custom: kept"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains(&format!("host: {up_addr}")),
        "{request}"
    );

    let r = raw_get(gw.addr, "/closed/x", "");
    assert_eq!(r.status, 503, "{} {}", r.head, r.body);
    assert!(
        r.body
            .contains("messaging.adaptors.http.flow.ServiceUnavailable"),
        "{}",
        r.body
    );

    let started = std::time::Instant::now();
    let r = raw_get(gw.addr, "/silent/x", "");
    assert_eq!(r.status, 504, "{} {}", r.head, r.body);
    assert!(
        r.body
            .contains("messaging.adaptors.http.flow.GatewayTimeout"),
        "{}",
        r.body
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn oversized_requests_get_413_and_431() {
    let gw = Gateway::start(&[
        seed().to_str().unwrap(),
        "--max-body-bytes",
        "1024",
        "--max-header-bytes",
        "4096",
    ]);
    let body = "grant_type=client_credentials&pad=".to_owned() + &"x".repeat(2000);
    let r = raw(
        gw.addr,
        &format!(
            "POST /oauth/OAuthToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 413, "{}", r.head);
    assert!(r.body.contains("protocol.http.TooBigBody"), "{}", r.body);

    // Chunked, without a declared length.
    let chunk = "x".repeat(1500);
    let r = raw(
        gw.addr,
        &format!(
            "POST /oauth/OAuthToken HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        ),
    );
    assert_eq!(r.status, 413, "{}", r.head);

    let r = raw_get(
        gw.addr,
        "/v1/test/hello",
        &format!("X-Big: {}\r\n", "y".repeat(6000)),
    );
    assert_eq!(r.status, 431, "{}", r.head);
    let r = raw_get(
        gw.addr,
        "/v1/test/hello",
        &format!("X-Huge: {}\r\n", "y".repeat(100_000)),
    );
    assert_eq!(r.status, 431, "{}", r.head);
}

#[test]
fn sigterm_lets_an_open_request_finish() {
    // An upstream that answers after 700 ms.
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in up.incoming() {
            let mut s = conn.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            std::thread::sleep(Duration::from_millis(700));
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    forwarding_bundle(
        dir.path(),
        "slow",
        "/slow",
        &format!("<URL>http://{up_addr}/</URL>"),
    );
    let gw = Gateway::start(&[dir.path().to_str().unwrap()]);
    let addr = gw.addr;
    let pending = std::thread::spawn(move || raw_get(addr, "/slow/x", ""));
    std::thread::sleep(Duration::from_millis(250));
    let status = gw.terminate();
    let r = pending.join().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "slow"), "{}", r.head);
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_stops_the_gateway_cleanly() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    assert_eq!(raw_get(gw.addr, "/v1/test/hello", "").status, 401);
    let addr = gw.addr;
    let status = gw.terminate();
    assert!(status.success(), "{status:?}");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn the_admin_api_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.toml");
    std::fs::copy(seed().join("apps.toml"), &apps).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preflow"))
        .args(["serve", seed().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0", "--apps", apps.to_str().unwrap()])
        .env_remove("PREFLOW_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PREFLOW_ADMIN_TOKEN"), "{err}");
}

#[test]
fn developer_self_service_survives_a_restart() {
    const ADMIN: &str = "test-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.toml");
    std::fs::copy(seed().join("apps.toml"), &apps).unwrap();
    let args = [
        seed().to_str().unwrap().to_owned(),
        "--apps".into(),
        apps.to_str().unwrap().into(),
        "--admin".into(),
        "127.0.0.1:0".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("PREFLOW_ADMIN_TOKEN", ADMIN)];
    let gw = Gateway::start_with_env(&args, &env);
    let admin = |gw: &Gateway, post: bool, path: &str, body: Option<&str>| {
        let url = format!("http://{}{path}", gw.admin.unwrap());
        let c = http();
        let req = if post { c.post(url) } else { c.get(url) };
        let req = req.bearer_auth(ADMIN);
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_owned()),
            None => req,
        };
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
        (status, v)
    };

    // Without the admin token: 401.
    let r = http()
        .get(format!("http://{}/admin/products", gw.admin.unwrap()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    let (status, products) = admin(&gw, false, "/admin/products", None);
    assert_eq!(status, 200);
    assert_eq!(products["products"][0]["name"], "IFlowHello");

    let (status, created) = admin(
        &gw,
        true,
        "/admin/apps",
        Some(r#"{"name":"portal-app","developer":"new@example.com","products":["IFlowHello"]}"#),
    );
    assert_eq!(status, 201, "{created}");
    let cid = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let app_id = created["app_id"].as_str().unwrap().to_owned();

    let token = token_for(&gw, &cid, &secret).unwrap();
    assert_eq!(hello(&gw, &token), (200, HELLO.to_owned()));

    let text = std::fs::read_to_string(&apps).unwrap();
    assert!(!text.contains(&secret), "clear secret in the apps file");
    assert!(
        !text.contains("demo-secret"),
        "clear secret in the apps file"
    );

    let (status, rotated) = admin(&gw, true, &format!("/admin/credentials/{cid}/rotate"), None);
    assert_eq!(status, 200);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(token_for(&gw, &cid, &secret).unwrap_err().0, 401);
    let token = token_for(&gw, &cid, &new_secret).unwrap();
    pace();
    assert_eq!(hello(&gw, &token).0, 200, "tokens issued before stay valid");
    drop(gw);

    // Restart: the app and its rotated secret are still there; the seed's clear
    // secrets were written back as hashes and still work.
    let gw = Gateway::start_with_env(&args, &env);
    assert_eq!(token_for(&gw, &cid, &secret).unwrap_err().0, 401);
    let token = token_for(&gw, &cid, &new_secret).unwrap();
    assert_eq!(hello(&gw, &token).0, 200);
    demo_token(&gw);

    let (status, _) = admin(&gw, true, &format!("/admin/apps/{app_id}/revoke"), None);
    assert_eq!(status, 200);
    pace();
    assert_eq!(
        hello(&gw, &token).0,
        401,
        "a revoked app's tokens stop working"
    );
    assert_eq!(token_for(&gw, &cid, &new_secret).unwrap_err().0, 401);
    drop(gw);

    let gw = Gateway::start_with_env(&args, &env);
    assert_eq!(token_for(&gw, &cid, &new_secret).unwrap_err().0, 401);
    let (_, listed) = admin(&gw, false, "/admin/apps", None);
    let app = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app_id"] == app_id.as_str())
        .unwrap();
    assert_eq!(app["status"], "revoked");
}

// Issue 12: an attacker sending wrong secrets for the demo client's id from other
// addresses (127.0.0.2–9) cannot lock it out: the client keeps getting tokens from
// 127.0.0.1, while each attacking address is slowed down (429 with Retry-After).
#[test]
fn wrong_secrets_from_other_addresses_do_not_lock_out_the_client() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let attackers: Vec<_> = (2..=9u8)
        .map(|last| {
            oauth2::reqwest::blocking::ClientBuilder::new()
                .local_address(std::net::IpAddr::from([127, 0, 0, last]))
                .build()
                .unwrap()
        })
        .collect();
    let mut slowed = 0;
    for round in 0..10 {
        for attacker in &attackers {
            let r = attacker
                .post(gw.url("/oauth/OAuthToken"))
                .basic_auth("demo-client", Some(format!("guess-{round}")))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .unwrap();
            match r.status().as_u16() {
                401 => {}
                429 => {
                    assert!(r.headers().contains_key("retry-after"));
                    slowed += 1;
                }
                s => panic!("round {round}: attacker got {s}"),
            }
        }
        assert!(
            token_for(&gw, "demo-client", "demo-secret").is_ok(),
            "round {round}: the legitimate client was refused"
        );
    }
    // Five free failures per (client, address), then waits of 1, 2, 4 s: each attacker
    // meets at least one of them in rounds 7 to 10 (unless a round took over 4 s).
    assert!(slowed >= 8, "{slowed} attacker requests slowed");
}

/// A client that trusts the seed's example CA.
fn seed_tls_client() -> reqwest::blocking::Client {
    let ca = std::fs::read(seed().join("tls/ca.pem")).unwrap();
    reqwest::blocking::ClientBuilder::new()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

#[test]
fn the_api_reaches_the_tenant_through_its_provider_with_one_back_end_token() {
    let gw = Gateway::start(&[seed().to_str().unwrap()]);
    let tenant = gw.vhosts["tenant"];
    let token = demo_token(&gw);
    for _ in 0..5 {
        assert_eq!(hello(&gw, &token), (200, HELLO.to_owned()));
        pace();
    }
    // The tenant saw five API calls and one request to its token endpoint.
    let log = gw.log();
    let tenant_lines = |path: &str| {
        log.lines()
            .filter(|l| l.contains("listener=\"tenant\"") && l.contains(&format!("path={path} ")))
            .count()
    };
    assert_eq!(tenant_lines("/oauth/token"), 1, "{log}");
    assert_eq!(tenant_lines("/http/v1/test/hello"), 5, "{log}");
    // Neither the back end's token nor its client secret is logged.
    assert!(!log.contains("iflow-backend-secret"), "{log}");
    assert!(!log.contains("Bearer "), "{log}");

    // The tenant refuses the APIM app's token, over verified TLS on its own host.
    let r = seed_tls_client()
        .get(format!(
            "https://localhost:{}/http/v1/test/hello",
            tenant.port()
        ))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The tenant's own client, with the scope, gets in.
    let tok: serde_json::Value = serde_json::from_str(
        &seed_tls_client()
            .post(format!("https://localhost:{}/oauth/token", tenant.port()))
            .basic_auth("preflow-gateway", Some("iflow-backend-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    let r = seed_tls_client()
        .get(format!(
            "https://localhost:{}/http/v1/test/hello",
            tenant.port()
        ))
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().unwrap(), HELLO);
    // The tenant's API is not served on the APIM listener.
    let r = raw_get(gw.addr, "/http/v1/test/hello", "");
    assert_eq!(r.status, 404, "{}", r.body);
}
