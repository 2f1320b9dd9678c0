//! State operations of policies through the store of `preflow serve`:
//! KeyValueMapOperations (Get, Put with and without override, Delete, initial entries)
//! and Get/SetOAuthV2Info on tokens, with the default state file (across a restart) and
//! with Redis (across two instances).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::{Gateway, demo_token, pace, raw_get, seed};
use preflow_redis::server::RedisServer;

/// A proxy at /kv: `/put?k=&v=` (override), `/add?k=&v=` (no override), `/get?k=`,
/// `/del?k=`, `/seeded` (an initial entry), `/attr-set?t=&color=` and `/attr-get?t=`.
fn kv_bundle(dir: &Path) {
    let flow = |name: &str, request: &[&str], response: &str| {
        let steps: String = request
            .iter()
            .map(|s| format!("<Step><Name>{s}</Name></Step>"))
            .collect();
        format!(
            r#"<Flow name="{name}"><Condition>proxy.pathsuffix = "/{name}"</Condition>
  <Request>{steps}</Request><Response><Step><Name>{response}</Name></Step></Response></Flow>"#
        )
    };
    let flows = [
        flow("put", &["KVM-Put"], "Say-OK"),
        flow("add", &["KVM-Add"], "Say-OK"),
        flow("get", &["KVM-Get"], "Say-Value"),
        flow("del", &["KVM-Del"], "Say-OK"),
        flow("seeded", &["KVM-Seeded"], "Say-Value"),
        flow("attr-set", &["Set-Info"], "Say-OK"),
        flow("attr-get", &["Get-Info"], "Say-Attr"),
    ]
    .join("\n");
    let kvm = |name: &str, op: &str| {
        format!(
            r#"<KeyValueMapOperations name="{name}" mapIdentifier="things">
  <Scope>environment</Scope>
  {op}
</KeyValueMapOperations>"#
        )
    };
    let key = r#"<Key><Parameter ref="request.queryparam.k"/></Key>"#;
    let say = |name: &str, text: &str| {
        format!(
            r#"<AssignMessage name="{name}">
  <Set><Payload contentType="text/plain">{text}</Payload><StatusCode>200</StatusCode></Set>
  <IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>
  <AssignTo createNew="false" transport="http" type="response"/>
</AssignMessage>"#
        )
    };
    let files = [
        ("kv/apiproxy/kv.xml", r#"<APIProxy name="kv"/>"#.to_owned()),
        (
            "kv/apiproxy/proxies/default.xml",
            format!(
                r#"<ProxyEndpoint name="default">
  <Flows>{flows}</Flows>
  <HTTPProxyConnection><BasePath>/kv</BasePath></HTTPProxyConnection>
  <RouteRule name="noroute"/>
</ProxyEndpoint>"#
            ),
        ),
        (
            "kv/apiproxy/policies/KVM-Put.xml",
            kvm(
                "KVM-Put",
                &format!(r#"<Put override="true">{key}<Value ref="request.queryparam.v"/></Put>"#),
            ),
        ),
        (
            "kv/apiproxy/policies/KVM-Add.xml",
            kvm(
                "KVM-Add",
                &format!(r#"<Put override="false">{key}<Value ref="request.queryparam.v"/></Put>"#),
            ),
        ),
        (
            "kv/apiproxy/policies/KVM-Get.xml",
            kvm(
                "KVM-Get",
                &format!(r#"<Get assignTo="kv.value">{key}</Get>"#),
            ),
        ),
        (
            "kv/apiproxy/policies/KVM-Del.xml",
            kvm("KVM-Del", &format!("<Delete>{key}</Delete>")),
        ),
        (
            "kv/apiproxy/policies/KVM-Seeded.xml",
            kvm(
                "KVM-Seeded",
                r#"<InitialEntries><Entry><Key><Parameter>colour</Parameter></Key><Value>red</Value><Value>green</Value></Entry></InitialEntries>
  <Get assignTo="kv.value" index="2"><Key><Parameter>colour</Parameter></Key></Get>"#,
            ),
        ),
        (
            "kv/apiproxy/policies/Set-Info.xml",
            r#"<SetOAuthV2Info name="Set-Info">
  <AccessToken ref="request.queryparam.t"/>
  <Attributes><Attribute name="color" ref="request.queryparam.color"/></Attributes>
</SetOAuthV2Info>"#
                .to_owned(),
        ),
        (
            "kv/apiproxy/policies/Get-Info.xml",
            r#"<GetOAuthV2Info name="Get-Info"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#
                .to_owned(),
        ),
        ("kv/apiproxy/policies/Say-OK.xml", say("Say-OK", "ok")),
        ("kv/apiproxy/policies/Say-Value.xml", say("Say-Value", "[{kv.value}]")),
        (
            "kv/apiproxy/policies/Say-Attr.xml",
            say(
                "Say-Attr",
                "[{oauthv2accesstoken.Get-Info.accesstoken.color}|{oauthv2accesstoken.Get-Info.client_id}]",
            ),
        ),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn get(gw: &Gateway, target: &str) -> (u16, String) {
    let r = raw_get(gw.addr, target, "");
    (r.status, r.body)
}

fn ok() -> (u16, String) {
    (200, "ok".to_owned())
}

fn value(v: &str) -> (u16, String) {
    (200, format!("[{v}]"))
}

fn start(bundle: &Path, extra: &[&str]) -> Gateway {
    let seed = seed();
    let mut args = vec![seed.to_str().unwrap(), bundle.to_str().unwrap()];
    args.extend_from_slice(extra);
    Gateway::start(&args)
}

/// Put, get, put without override, delete: `a` writes, `b` reads (the same gateway or
/// another instance).
fn key_values(a: &Gateway, b: &Gateway) {
    assert_eq!(get(b, "/kv/get?k=alpha"), value(""), "{}", b.log());
    assert_eq!(get(a, "/kv/put?k=alpha&v=one"), ok(), "{}", a.log());
    assert_eq!(get(b, "/kv/get?k=alpha"), value("one"), "{}", b.log());
    assert_eq!(get(a, "/kv/add?k=alpha&v=two"), ok());
    assert_eq!(
        get(b, "/kv/get?k=alpha"),
        value("one"),
        "no override keeps it"
    );
    assert_eq!(get(a, "/kv/put?k=alpha&v=three"), ok());
    assert_eq!(get(b, "/kv/get?k=alpha"), value("three"));
    assert_eq!(get(a, "/kv/add?k=beta&v=new"), ok());
    assert_eq!(get(b, "/kv/get?k=beta"), value("new"));
    assert_eq!(get(a, "/kv/del?k=beta"), ok());
    assert_eq!(get(b, "/kv/get?k=beta"), value(""));
    assert_eq!(get(b, "/kv/seeded"), value("green"), "{}", b.log());
}

/// SetOAuthV2Info on `a`, GetOAuthV2Info on `b`.
fn token_attributes(a: &Gateway, b: &Gateway) {
    let token = demo_token(a);
    pace();
    let set = format!("/kv/attr-set?t={token}&color=blue");
    assert_eq!(get(a, &set), ok(), "{}", a.log());
    let read = format!("/kv/attr-get?t={token}");
    assert_eq!(get(b, &read), value("blue|demo-client"), "{}", b.log());
    let set = format!("/kv/attr-set?t={token}&color=teal");
    assert_eq!(get(b, &set), ok());
    assert_eq!(get(a, &read), value("teal|demo-client"));
    assert_eq!(get(a, "/kv/attr-set?t=unknown&color=x").0, 401);
    assert_eq!(get(b, "/kv/attr-get?t=unknown").0, 401);
}

#[test]
fn with_the_state_file_kvm_entries_and_token_attributes_survive_a_restart() {
    let bundles = tempfile::tempdir().unwrap();
    kv_bundle(bundles.path());
    let dir = tempfile::tempdir().unwrap();
    let state = ["--state-dir", dir.path().to_str().unwrap()];
    let gw = start(bundles.path(), &state);
    key_values(&gw, &gw);
    token_attributes(&gw, &gw);
    let token = demo_token(&gw);
    assert_eq!(
        get(&gw, &format!("/kv/attr-set?t={token}&color=gold")),
        ok()
    );
    gw.crash();

    let gw = start(bundles.path(), &state);
    assert_eq!(get(&gw, "/kv/get?k=alpha"), value("three"), "{}", gw.log());
    assert_eq!(get(&gw, "/kv/get?k=beta"), value(""));
    assert_eq!(
        get(&gw, &format!("/kv/attr-get?t={token}")),
        value("gold|demo-client"),
        "{}",
        gw.log()
    );
}

#[test]
fn with_redis_two_instances_share_kvm_entries_and_token_attributes() {
    let redis = RedisServer::start().unwrap_or_else(|e| {
        panic!("these tests need redis-server (apt-get install redis-server): {e}")
    });
    let bundles = tempfile::tempdir().unwrap();
    kv_bundle(bundles.path());
    let url = redis.url();
    let args = ["--redis", url.as_str(), "--redis-timeout-ms", "500"];
    let a = start(bundles.path(), &args);
    let b = start(bundles.path(), &args);
    key_values(&a, &b);
    token_attributes(&a, &b);
    a.crash();
    let a = start(bundles.path(), &args);
    assert_eq!(get(&a, "/kv/get?k=alpha"), value("three"), "{}", a.log());
}

/// A token request for `id` with `secret` (client_secret_post) sent from `source`.
fn token_from(source: [u8; 4], gw: &Gateway, id: &str, secret: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let request = format!(
        "POST /oauth/OAuthToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let mut s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from((source, 0)))
            .unwrap();
        let stream = socket.connect(gw.addr).await.unwrap();
        let std = stream.into_std().unwrap();
        std.set_nonblocking(false).unwrap();
        std
    });
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Issue 12 item 3: the failure throttle is shared by the instances on one Redis, so
/// wrong secrets spread over two instances earn the attacker the free guesses of one,
/// and the legitimate client from another address keeps getting tokens.
#[test]
fn with_redis_failed_client_authentications_count_across_instances() {
    let redis = RedisServer::start().unwrap_or_else(|e| {
        panic!("these tests need redis-server (apt-get install redis-server): {e}")
    });
    let url = redis.url();
    let args = ["--redis", url.as_str(), "--redis-timeout-ms", "500"];
    let seed = seed();
    let a = Gateway::start(&[seed.to_str().unwrap(), args[0], args[1], args[2], args[3]]);
    let b = Gateway::start(&[seed.to_str().unwrap(), args[0], args[1], args[2], args[3]]);
    let attacker = [127, 0, 0, 1];
    let client = [127, 0, 0, 2];
    // One instance alone gives 5 free failures, and the 6th starts a 1 s wait (then 2 s,
    // 4 s): the first 429 comes after 6 to 8 failures. Two unshared instances would give
    // 5 each, 11 or more before the first 429.
    let mut failures = 0;
    let refused = loop {
        let on = if failures % 2 == 0 { &a } else { &b };
        let (status, text) = token_from(attacker, on, "demo-client", "wrong-secret");
        match status {
            401 => failures += 1,
            429 => break text,
            other => panic!("unexpected {other}: {text}\n{}", on.log()),
        }
        assert!(
            failures <= 10,
            "no 429 after {failures} failures over two instances"
        );
        pace();
    };
    assert!(
        (6..=8).contains(&failures),
        "{failures} failures before the first 429"
    );
    assert!(
        refused.to_ascii_lowercase().contains("retry-after:"),
        "{refused}"
    );
    // Both instances refuse the attacker's address now, the right secret included.
    for gw in [&a, &b] {
        let (status, _) = token_from(attacker, gw, "demo-client", "demo-secret");
        assert_eq!(status, 429);
    }
    // The legitimate client from a fresh address gets tokens from both.
    for gw in [&a, &b] {
        let (status, text) = token_from(client, gw, "demo-client", "demo-secret");
        assert_eq!(status, 200, "{text}\n{}", gw.log());
        pace();
    }
}
