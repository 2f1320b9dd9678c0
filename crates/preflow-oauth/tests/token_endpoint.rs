//! The token endpoint against spec/oauth.md §1, item by item.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::*;
use preflow_oauth::{
    App, CodeRequest, GrantType, NewCredential, ResponseMode, ServerConfig, StoreOp,
    ThrottleConfig, TokenStore,
};

// Item 2: POST only.
#[test]
fn item02_post_only() {
    let e = env();
    for m in ["GET", "PUT", "DELETE"] {
        let resp = e.token(
            request(m, "/token?grant_type=client_credentials", "")
                .basic(&e.basic())
                .build(),
        );
        assert_eq!(resp.status(), 405);
        assert_eq!(header(&resp, "allow"), Some("POST"));
        assert_eq!(json(&resp)["error"], "invalid_request");
        assert_no_store(&resp);
    }
}

// Item 3: form body, media type case-insensitive, parameters ignored, strict decoding.
#[test]
fn item03_content_type_and_strict_decoding() {
    let e = env();
    for ct in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded;charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded ; charset=utf-8",
    ] {
        let req = request("POST", "/token", "grant_type=client_credentials")
            .header("content-type", ct)
            .basic(&e.basic())
            .build();
        assert_eq!(e.token(req).status(), 200, "{ct}");
    }
    let json_req = request("POST", "/token", r#"{"grant_type":"client_credentials"}"#)
        .header("content-type", "application/json")
        .basic(&e.basic())
        .build();
    assert_error(&e.token(json_req), 400, "invalid_request");
    let no_ct = request("POST", "/token", "grant_type=client_credentials")
        .basic(&e.basic())
        .build();
    assert_error(&e.token(no_ct), 400, "invalid_request");
    let bad_pct = post("grant_type=client_credentials&scope=%zz")
        .basic(&e.basic())
        .build();
    assert_error(&e.token(bad_pct), 400, "invalid_request");
    let bad_utf8 = post("grant_type=client_credentials&scope=%C3%28")
        .basic(&e.basic())
        .build();
    assert_error(&e.token(bad_utf8), 400, "invalid_request");
}

// Item 3 / Appendix B: a secret whose encodings differ only in invalid bytes is refused,
// never decoded lossily into a match.
#[test]
fn item03_invalid_utf8_secret_never_matches() {
    let e = env();
    let c = e.custom_credential("lossy", "a\u{fffd}b");
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret=a%FFb",
        c.client_id
    );
    assert_error(&e.token(post(&body).build()), 400, "invalid_request");
}

// Item 4: the query is not a source of grant parameters; client_secret in it is refused.
#[test]
fn item04_query() {
    let e = env();
    let resp = e.token(
        post("")
            .uri("/token?grant_type=client_credentials")
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_request");
    assert!(
        json(&resp)["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type")
    );
    let body = format!(
        "grant_type=client_credentials&client_id={}",
        e.cred.client_id
    );
    let uri = format!("/token?client_secret={}", e.cred.client_secret);
    assert_error(
        &e.token(post(&body).uri(&uri).build()),
        400,
        "invalid_request",
    );
    // A query is retained and otherwise ignored.
    let resp = e.token(
        post("grant_type=client_credentials")
            .uri("/token?tenant=a")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
}

// Item 5: empty parameters are treated as omitted.
#[test]
fn item05_empty_parameters() {
    let e = env();
    let resp = e.token(
        post("grant_type=client_credentials&scope=&client_secret=")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    assert_eq!(json(&resp)["scope"], "read write ESBMessaging.Send");
    let resp = e.token(post("grant_type=&scope=read").basic(&e.basic()).build());
    assert_error(&resp, 400, "invalid_request");
}

// Item 6: unrecognised parameters are ignored.
#[test]
fn item06_unknown_parameters_ignored() {
    let e = env();
    let resp = e.token(
        post("grant_type=client_credentials&foo=1&foo=2&audience=x")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
}

// Item 7: repeated parameters are invalid_request.
#[test]
fn item07_repeated_parameters() {
    let e = env();
    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&scope=read&scope=write",
    ] {
        let resp = e.token(post(body).basic(&e.basic()).build());
        assert_error(&resp, 400, "invalid_request");
        assert!(
            json(&resp)["error_description"]
                .as_str()
                .unwrap()
                .contains("repeated")
        );
    }
}

// Item 8 and §1a: HTTP Basic with RFC 6749 §2.3.1 form-encoding.
#[test]
fn item08_basic_rfc6749_encoding() {
    let e = env();
    let secret = "p:a+s s%w/o=rd&é~";
    e.custom_credential("s6BhdRkqt3", secret);
    e.custom_credential("cli:ent id+%", secret);
    for header in [
        "Basic czZCaGRSa3F0MzpwJTNBYSUyQnMrcyUyNXclMkZvJTNEcmQlMjYlQzMlQTklN0U=",
        "Basic czZCaGRSa3F0MzpwJTNBYSUyQnMrcyUyNXclMkZvJTNEcmQlMjYlQzMlQTl+",
        "basic Y2xpJTNBZW50K2lkJTJCJTI1OnAlM0FhJTJCcytzJTI1dyUyRm8lM0RyZCUyNiVDMyVBOSU3RQ==",
        "BASIC Y2xpJTNBZW50K2lkJTJCJTI1OnAlM0FhJTJCcytzJTI1dyUyRm8lM0RyZCUyNiVDMyVBOSU3RQ==",
    ] {
        let resp = e.token(post("grant_type=client_credentials").basic(header).build());
        assert_eq!(
            resp.status(),
            200,
            "{header}: {}",
            String::from_utf8_lossy(resp.body())
        );
    }
    // Malformed base64 or no colon: invalid_client with a Basic challenge.
    for header in ["Basic !!!", "Basic YWJj"] {
        assert_error(
            &e.token(post("grant_type=client_credentials").basic(header).build()),
            401,
            "invalid_client",
        );
    }
}

// §1a step 5: the raw (RFC 7617) fallback is off by default, on when enabled.
#[test]
fn raw_basic_fallback() {
    let secret = "p:a+s s%w/o=rd&é~";
    let latin1 = "Basic czZCaGRSa3F0MzpwOmErcyBzJXcvbz1yZCbpfg==";
    let curl = "Basic czZCaGRSa3F0MzpwOmErcyBzJXcvbz1yZCbDqX4=";
    let strict = env();
    strict.custom_credential("s6BhdRkqt3", secret);
    for h in [latin1, curl] {
        let resp = strict.token(post("grant_type=client_credentials").basic(h).build());
        assert_error(&resp, 401, "invalid_client");
    }
    assert_eq!(
        strict
            .server
            .throttle()
            .pair_entry("s6BhdRkqt3", None)
            .failures,
        2
    );
    let lenient = env_with(ServerConfig {
        raw_basic_fallback: true,
        ..Default::default()
    });
    lenient.custom_credential("s6BhdRkqt3", secret);
    for h in [latin1, curl] {
        let resp = lenient.token(post("grant_type=client_credentials").basic(h).build());
        assert_eq!(resp.status(), 200, "{h}");
    }
    // Still works for RFC 6749 senders.
    let resp = lenient.token(
        post("grant_type=client_credentials")
            .basic(&basic_rfc("s6BhdRkqt3", secret))
            .build(),
    );
    assert_eq!(resp.status(), 200);
    // A wrong secret through the fallback counts as one failure.
    let resp = lenient.token(
        post("grant_type=client_credentials")
            .basic(&basic_raw(b"s6BhdRkqt3", b"x+y"))
            .build(),
    );
    assert_error(&resp, 401, "invalid_client");
    assert_eq!(
        lenient
            .server
            .throttle()
            .pair_entry("s6BhdRkqt3", None)
            .failures,
        1
    );
}

// Item 9: client_secret_post, which can be switched off per client.
#[test]
fn item09_client_secret_post() {
    let e = env();
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        e.cred.client_id, e.cred.client_secret
    );
    assert_eq!(e.token(post(&body).build()).status(), 200);
    let mut app = App::new("basic-only");
    app.allow_client_secret_post = false;
    let app_id = e.registry.add_app("dev@example.com", app).unwrap();
    let c = e
        .registry
        .add_credential(
            &app_id,
            NewCredential {
                products: vec!["hello-product".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        c.client_id, c.client_secret
    );
    assert_error(&e.token(post(&body).build()), 401, "invalid_client");
    let resp = e.token(
        post("grant_type=client_credentials")
            .basic(&basic_rfc(&c.client_id, &c.client_secret))
            .build(),
    );
    assert_eq!(resp.status(), 200);
}

// Item 10: one authentication method per request; body client_id must match Basic.
#[test]
fn item10_one_method() {
    let e = env();
    let body = format!(
        "grant_type=client_credentials&client_secret={}",
        e.cred.client_secret
    );
    assert_error(
        &e.token(post(&body).basic(&e.basic()).build()),
        400,
        "invalid_request",
    );
    let body = format!(
        "grant_type=client_credentials&client_id={}",
        e.cred.client_id
    );
    assert_eq!(e.token(post(&body).basic(&e.basic()).build()).status(), 200);
    let resp = e.token(
        post("grant_type=client_credentials&client_id=someone-else")
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_request");
    // Two Authorization headers.
    let resp = e.token(
        post("grant_type=client_credentials")
            .basic(&e.basic())
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_request");
    // secret without id.
    let body = format!(
        "grant_type=client_credentials&client_secret={}",
        e.cred.client_secret
    );
    assert_error(&e.token(post(&body).build()), 400, "invalid_request");
}

// Item 11 and 22: the client must authenticate; failures are 401 with a Basic challenge.
#[test]
fn item11_authentication_required() {
    let e = env();
    assert_error(
        &e.token(post("grant_type=client_credentials").build()),
        401,
        "invalid_client",
    );
    let body = format!(
        "grant_type=client_credentials&client_id={}",
        e.cred.client_id
    );
    assert_error(&e.token(post(&body).build()), 401, "invalid_client");
    let wrong = basic_rfc(&e.cred.client_id, "wrong");
    let resp = e.token(post("grant_type=client_credentials").basic(&wrong).build());
    assert_error(&resp, 401, "invalid_client");
    let unknown = basic_rfc("nobody", "wrong");
    let resp2 = e.token(
        post("grant_type=client_credentials")
            .basic(&unknown)
            .build(),
    );
    assert_eq!(
        json(&resp)["error_description"],
        json(&resp2)["error_description"]
    );
    // Unsupported scheme.
    let resp = e.token(
        post("grant_type=client_credentials")
            .basic("Bearer abc")
            .build(),
    );
    assert_error(&resp, 401, "invalid_client");
    // Revoked app, revoked credential: described once the secret is proven.
    e.registry
        .set_app_status(&e.app_id, preflow_oauth::Approval::Revoked)
        .unwrap();
    let resp = e.token(
        post("grant_type=client_credentials")
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 401, "invalid_client");
    assert!(
        json(&resp)["error_description"]
            .as_str()
            .unwrap()
            .contains("app is not approved")
    );
}

// Item 12 (issue 12 item 3): brute-force protection per (client id, address) and per
// address, with progressive waits and no lock-out of the client id.
#[test]
fn item12_brute_force_throttle() {
    let e = env_with(ServerConfig {
        throttle: ThrottleConfig {
            free_pair_failures: 3,
            free_source_failures: 5,
            ..Default::default()
        },
        ..Default::default()
    });
    let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let at = |now| preflow_oauth::RequestContext {
        now,
        client_ip: Some(ip),
        attributes: vec![],
    };
    let ctx = at(NOW);
    let wrong = basic_rfc(&e.cred.client_id, "wrong");
    let run = |basic: &str, ctx: &preflow_oauth::RequestContext| {
        e.server
            .token_request(
                &post("grant_type=client_credentials").basic(basic).build(),
                ctx,
            )
            .run(&e.server, &e.store)
    };
    for _ in 0..4 {
        assert_eq!(run(&wrong, &ctx).status(), 401);
    }
    let pair = e.server.throttle().pair_entry(&e.cred.client_id, Some(ip));
    assert_eq!((pair.failures, pair.wait_until), (4, NOW + 1));
    assert_eq!(e.server.throttle().source_entry(ip).failures, 4);
    // Waiting: even the right secret from this address is answered 429 with Retry-After,
    // without being checked.
    let r = run(&e.basic(), &ctx);
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    assert_eq!(json(&r)["error"], "invalid_client");
    assert_no_store(&r);
    // Requests refused while waiting are not counted.
    assert_eq!(run(&wrong, &ctx).status(), 429);
    assert_eq!(
        e.server
            .throttle()
            .pair_entry(&e.cred.client_id, Some(ip))
            .failures,
        4
    );
    // After the wait the right secret works and clears the pair.
    assert_eq!(run(&e.basic(), &at(NOW + 1)).status(), 200);
    assert_eq!(
        e.server.throttle().pair_entry(&e.cred.client_id, Some(ip)),
        preflow_oauth::ThrottleEntry::default()
    );
    // The address waits too, whatever client id it tries, once it has spent its free
    // failures; unknown and known ids are answered alike.
    assert_eq!(e.server.throttle().source_entry(ip).failures, 4);
    assert_eq!(run(&basic_rfc("guess", "x"), &at(NOW + 1)).status(), 401);
    assert_eq!(run(&basic_rfc("guess2", "x"), &at(NOW + 1)).status(), 401);
    let r = run(&basic_rfc("fresh", "x"), &at(NOW + 1));
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    assert_eq!(run(&e.basic(), &at(NOW + 1)).status(), 429);
}

// Issue 12 item 6: the lock-out scenario. An attacker sends wrong secrets for the
// legitimate client's id from many other addresses; the legitimate client keeps getting
// tokens from its own address, and each attacking address is slowed down.
#[test]
fn attacker_cannot_lock_out_a_client() {
    let e = env();
    let client_ip: std::net::IpAddr = "198.51.100.10".parse().unwrap();
    let wrong = basic_rfc(&e.cred.client_id, "wrong-guess");
    let (mut refused, mut slowed, mut issued) = (0, 0, 0);
    for round in 0..200u64 {
        let now = NOW + round;
        for attacker in 0..8u8 {
            let ctx = preflow_oauth::RequestContext {
                now,
                client_ip: Some(std::net::IpAddr::from([203, 0, 113, attacker])),
                attributes: vec![],
            };
            let r = e
                .server
                .token_request(
                    &post("grant_type=client_credentials").basic(&wrong).build(),
                    &ctx,
                )
                .run(&e.server, &e.store);
            match r.status().as_u16() {
                401 => refused += 1,
                429 => slowed += 1,
                s => panic!("attacker got {s}"),
            }
        }
        let ctx = preflow_oauth::RequestContext {
            now,
            client_ip: Some(client_ip),
            attributes: vec![],
        };
        let r = e
            .server
            .token_request(
                &post("grant_type=client_credentials")
                    .basic(&e.basic())
                    .build(),
                &ctx,
            )
            .run(&e.server, &e.store);
        assert_eq!(
            r.status(),
            200,
            "round {round}: the legitimate client was refused"
        );
        issued += 1;
    }
    assert_eq!(issued, 200);
    // Each attacking address got its five free failures, then one check per doubling
    // wait (1, 2, 4, …, 128 s within 200 s): far fewer guesses than requests.
    assert!(slowed > 1200, "{refused} refused, {slowed} slowed");
    assert!(refused <= 8 * 14, "{refused} refused, {slowed} slowed");
}

// Item 13: client_credentials issues no refresh token.
#[test]
fn item13_client_credentials() {
    let e = env();
    let resp = e.token(
        post("grant_type=client_credentials&scope=read")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "read");
}

// Item 14: the password grant is off unless enabled.
#[test]
fn item14_password_grant() {
    let e = env();
    e.registry.add_resource_owner("johndoe", "A3ddj3w").unwrap();
    let resp = e.token(
        post("grant_type=password&username=johndoe&password=A3ddj3w")
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "unsupported_grant_type");
    let mut config = ServerConfig::default();
    config.grant_types.push(GrantType::Password);
    let e = env_with(config);
    e.registry.add_resource_owner("johndoe", "A3ddj3w").unwrap();
    let resp = e.token(
        post("grant_type=password&username=johndoe&password=A3ddj3w")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
    assert!(json(&resp)["refresh_token"].is_string());
    let resp = e.token(
        post("grant_type=password&username=johndoe&password=wrong")
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_grant");
    let resp = e.token(
        post("grant_type=password&username=johndoe")
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_request");
}

fn pkce() -> (&'static str, &'static str) {
    (
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    )
}

fn code(e: &Env, now: u64) -> String {
    let issued = e
        .server
        .issue_code(
            &CodeRequest {
                client_id: e.cred.client_id.clone(),
                redirect_uri: Some("https://client.example.com/cb".into()),
                scope: Some("read".into()),
                code_challenge: Some(pkce().1.into()),
                code_challenge_method: Some("S256".into()),
                username: Some("alice".into()),
            },
            now,
        )
        .unwrap();
    e.store.execute(issued.store_op);
    issued.code
}

fn code_body(code: &str, verifier: &str) -> String {
    format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
        enc("https://client.example.com/cb")
    )
}

// Item 15: authorization codes: single use, bound to client and redirect URI, PKCE,
// ten minutes at most; a reused code revokes what it issued.
#[test]
fn item15_authorization_code() {
    let e = env();
    let c = code(&e, NOW);
    let resp = e.token(post(&code_body(&c, pkce().0)).basic(&e.basic()).build());
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    let body = json(&resp);
    assert_eq!(body["scope"], "read");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let h = |t: &str| preflow_oauth::TokenHash::of(t.as_bytes());
    assert!(e.store.get_token(&h(&access)).unwrap().is_active(NOW));
    // Reuse: denied, and the tokens issued with it are revoked.
    let resp = e.token(post(&code_body(&c, pkce().0)).basic(&e.basic()).build());
    assert_error(&resp, 400, "invalid_grant");
    assert!(!e.store.get_token(&h(&access)).unwrap().is_active(NOW));
    assert!(!e.store.get_token(&h(&refresh)).unwrap().is_active(NOW));

    // Wrong verifier, missing verifier, wrong redirect, missing redirect, expired, unknown.
    let c = code(&e, NOW);
    assert_error(
        &e.token(
            post(&code_body(&c, "wrong-verifier"))
                .basic(&e.basic())
                .build(),
        ),
        400,
        "invalid_grant",
    );
    let c = code(&e, NOW);
    let body = format!(
        "grant_type=authorization_code&code={c}&redirect_uri={}",
        enc("https://client.example.com/cb")
    );
    assert_error(
        &e.token(post(&body).basic(&e.basic()).build()),
        400,
        "invalid_grant",
    );
    let c = code(&e, NOW);
    let body = format!(
        "grant_type=authorization_code&code={c}&redirect_uri=https%3A%2F%2Fevil&code_verifier={}",
        pkce().0
    );
    assert_error(
        &e.token(post(&body).basic(&e.basic()).build()),
        400,
        "invalid_grant",
    );
    let c = code(&e, NOW);
    let body = format!(
        "grant_type=authorization_code&code={c}&code_verifier={}",
        pkce().0
    );
    assert_error(
        &e.token(post(&body).basic(&e.basic()).build()),
        400,
        "invalid_request",
    );
    let c = code(&e, NOW);
    assert_error(
        &e.token_at(
            post(&code_body(&c, pkce().0)).basic(&e.basic()).build(),
            NOW + 600,
        ),
        400,
        "invalid_grant",
    );
    assert_error(
        &e.token(post(&code_body("nope", pkce().0)).basic(&e.basic()).build()),
        400,
        "invalid_grant",
    );
    assert_error(
        &e.token(
            post("grant_type=authorization_code")
                .basic(&e.basic())
                .build(),
        ),
        400,
        "invalid_request",
    );

    // Issued to another client.
    let other = e
        .registry
        .add_credential(
            &e.app_id,
            NewCredential {
                products: vec!["hello-product".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let c = code(&e, NOW);
    let resp = e.token(
        post(&code_body(&c, pkce().0))
            .basic(&basic_rfc(&other.client_id, &other.client_secret))
            .build(),
    );
    assert_error(&resp, 400, "invalid_grant");

    // PKCE is required by default, S256 only; redirect must equal the callback URL.
    let mut req = CodeRequest {
        client_id: e.cred.client_id.clone(),
        redirect_uri: None,
        scope: None,
        code_challenge: None,
        code_challenge_method: None,
        username: None,
    };
    assert!(e.server.issue_code(&req, NOW).is_err());
    req.code_challenge = Some(pkce().1.into());
    req.code_challenge_method = Some("plain".into());
    assert!(e.server.issue_code(&req, NOW).is_err());
    req.code_challenge_method = Some("S256".into());
    req.redirect_uri = Some("https://evil.example/cb".into());
    assert!(e.server.issue_code(&req, NOW).is_err());
    req.redirect_uri = None;
    let issued = e.server.issue_code(&req, NOW).unwrap();
    match issued.store_op {
        StoreOp::PutCode { record, .. } => {
            assert_eq!(record.expires_at, NOW + 600);
            assert_eq!(
                record.redirect_uri.as_deref(),
                Some("https://client.example.com/cb")
            );
        }
        other => panic!("{other:?}"),
    }
}

fn refresh_of(e: &Env) -> (String, String) {
    let c = code(e, NOW);
    let body = json(&e.token(post(&code_body(&c, pkce().0)).basic(&e.basic()).build()));
    (
        body["access_token"].as_str().unwrap().into(),
        body["refresh_token"].as_str().unwrap().into(),
    )
}

// Item 16: refresh: rotation, scope rules, binding to the client, reuse detection.
#[test]
fn item16_refresh_rotation() {
    let e = env();
    let (access, refresh) = refresh_of(&e);
    let resp = e.token(
        post(&format!("grant_type=refresh_token&refresh_token={refresh}"))
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    let refresh2 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(body["scope"], "read");
    // The rotated token presented again: denied, and the whole grant revoked.
    let resp = e.token(
        post(&format!("grant_type=refresh_token&refresh_token={refresh}"))
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_grant");
    let h = |t: &str| preflow_oauth::TokenHash::of(t.as_bytes());
    assert!(
        e.store
            .get_token(&h(&refresh2))
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(e.store.get_token(&h(&access)).unwrap().revoked_at.is_some());

    // Scope may narrow, not widen.
    let (_, refresh) = refresh_of(&e);
    let resp = e.token(
        post(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&scope=write"
        ))
        .basic(&e.basic())
        .build(),
    );
    assert_error(&resp, 400, "invalid_scope");
    let resp = e.token(
        post(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&scope=read"
        ))
        .basic(&e.basic())
        .build(),
    );
    assert_eq!(resp.status(), 200);

    // Bound to the client.
    let other = e
        .registry
        .add_credential(
            &e.app_id,
            NewCredential {
                products: vec!["hello-product".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let (_, refresh) = refresh_of(&e);
    let resp = e.token(
        post(&format!("grant_type=refresh_token&refresh_token={refresh}"))
            .basic(&basic_rfc(&other.client_id, &other.client_secret))
            .build(),
    );
    assert_error(&resp, 400, "invalid_grant");
    // An access token is no refresh token; unknown and missing ones are refused.
    let (access, _) = refresh_of(&e);
    let resp = e.token(
        post(&format!("grant_type=refresh_token&refresh_token={access}"))
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_grant");
    let resp = e.token(post("grant_type=refresh_token").basic(&e.basic()).build());
    assert_error(&resp, 400, "invalid_request");
    // Expired.
    let (_, refresh) = refresh_of(&e);
    let resp = e.token_at(
        post(&format!("grant_type=refresh_token&refresh_token={refresh}"))
            .basic(&e.basic())
            .build(),
        NOW + 31 * 24 * 3600,
    );
    assert_error(&resp, 400, "invalid_grant");
}

#[test]
fn item16_reuse_refresh_token() {
    let e = env_with(ServerConfig {
        reuse_refresh_token: true,
        ..Default::default()
    });
    let (_, refresh) = refresh_of(&e);
    for _ in 0..2 {
        let resp = e.token(
            post(&format!("grant_type=refresh_token&refresh_token={refresh}"))
                .basic(&e.basic())
                .build(),
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(json(&resp)["refresh_token"], refresh.as_str());
    }
}

// Items 17-19: the success response.
#[test]
fn item17_19_success_response() {
    let e = env();
    let resp = e.token(
        post("grant_type=client_credentials")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    assert_no_store(&resp);
    let body = json(&resp);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["expires_in"].is_u64());
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

#[test]
fn lifetime_and_length_are_configurable() {
    let e = env_with(ServerConfig {
        access_token_lifetime: None,
        token_bytes: 16,
        ..Default::default()
    });
    let body = json(
        &e.token(
            post("grant_type=client_credentials")
                .basic(&e.basic())
                .build(),
        ),
    );
    assert!(body.get("expires_in").is_none());
    assert_eq!(body["access_token"].as_str().unwrap().len(), 22);
    let e = env_with(ServerConfig {
        access_token_lifetime: Some(60),
        token_bytes: 1,
        ..Default::default()
    });
    let body = json(
        &e.token(
            post("grant_type=client_credentials")
                .basic(&e.basic())
                .build(),
        ),
    );
    assert_eq!(body["expires_in"], 60);
    assert_eq!(
        body["access_token"].as_str().unwrap().len(),
        22,
        "never below 128 bits"
    );
}

// Item 20: scope rules.
#[test]
fn item20_scope() {
    let e = env();
    let body = json(
        &e.token(
            post("grant_type=client_credentials")
                .basic(&e.basic())
                .build(),
        ),
    );
    assert_eq!(body["scope"], "read write ESBMessaging.Send");
    let body = json(
        &e.token(
            post("grant_type=client_credentials&scope=write+read")
                .basic(&e.basic())
                .build(),
        ),
    );
    assert_eq!(body["scope"], "write read");
    for bad in ["admin", "read+admin", "read++write", "re%22ad"] {
        let resp = e.token(
            post(&format!("grant_type=client_credentials&scope={bad}"))
                .basic(&e.basic())
                .build(),
        );
        assert_error(&resp, 400, "invalid_scope");
    }
}

// Items 21-22: error codes.
#[test]
fn item21_22_error_codes() {
    let e = env();
    assert_error(
        &e.token(post("scope=read").basic(&e.basic()).build()),
        400,
        "invalid_request",
    );
    assert_error(
        &e.token(post("grant_type=magic").basic(&e.basic()).build()),
        400,
        "unsupported_grant_type",
    );
    assert_error(
        &e.token(
            post("grant_type=Client_Credentials")
                .basic(&e.basic())
                .build(),
        ),
        400,
        "unsupported_grant_type",
    );
    let mut app = App::new("cc-only");
    app.grant_types = Some(vec![GrantType::ClientCredentials]);
    let app_id = e.registry.add_app("dev@example.com", app).unwrap();
    let c = e
        .registry
        .add_credential(
            &app_id,
            NewCredential {
                products: vec!["hello-product".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let resp = e.token(
        post("grant_type=refresh_token&refresh_token=x")
            .basic(&basic_rfc(&c.client_id, &c.client_secret))
            .build(),
    );
    assert_error(&resp, 400, "unauthorized_client");
}

// Apigee-compatible modes (spec/policies.md §3.3, spec/oauth.md §5).
#[test]
fn apigee_response_modes() {
    let e = env_with(ServerConfig {
        response_mode: ResponseMode::Apigee,
        allow_get: true,
        grant_type_in_query: true,
        ..Default::default()
    });
    let resp = e.token(
        request("GET", "/token?grant_type=client_credentials", "")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["token_type"], "BearerToken");
    assert_eq!(body["expires_in"], "3600");
    assert_eq!(body["issued_at"], (NOW * 1000).to_string());
    assert_eq!(body["api_product_list"], "[hello-product, other-product]");
    assert_eq!(body["application_name"], "my-app");
    assert_eq!(body["developer.email"], "dev@example.com");
    assert_eq!(body["status"], "approved");
    let resp = e.token(
        post("grant_type=client_credentials")
            .basic(&basic_rfc("x", "y"))
            .build(),
    );
    assert_eq!(resp.status(), 401);
    let body = json(&resp);
    assert_eq!(body["ErrorCode"], "invalid_client");
    assert!(
        body["Error"]
            .as_str()
            .unwrap()
            .starts_with("ClientId is Invalid")
    );
    assert!(body.get("error").is_none());
    let resp = e.token(post("").basic(&e.basic()).build());
    assert_eq!(json(&resp)["Error"], "Required param : grant_type");

    let e = env_with(ServerConfig {
        response_mode: ResponseMode::RfcPlusApigee,
        ..Default::default()
    });
    let body = json(
        &e.token(
            post("grant_type=client_credentials")
                .basic(&e.basic())
                .build(),
        ),
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["application_name"], "my-app");
    let body = json(&e.token(post("grant_type=nope").basic(&e.basic()).build()));
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(body["ErrorCode"], "unsupported_grant_type");
}

// Many apps, each with its own credentials, share one endpoint; tokens are bound to them.
#[test]
fn many_apps_one_endpoint() {
    let e = env();
    let mut creds = vec![];
    for i in 0..5 {
        let app = e
            .registry
            .add_app("dev@example.com", App::new(format!("app{i}")))
            .unwrap();
        creds.push(
            e.registry
                .add_credential(
                    &app,
                    NewCredential {
                        products: vec!["hello-product".into()],
                        ..Default::default()
                    },
                )
                .unwrap(),
        );
    }
    for (i, c) in creds.iter().enumerate() {
        let resp = e.token(
            post("grant_type=client_credentials")
                .basic(&basic_rfc(&c.client_id, &c.client_secret))
                .build(),
        );
        let token = json(&resp)["access_token"].as_str().unwrap().to_owned();
        let rec = e
            .store
            .get_token(&preflow_oauth::TokenHash::of(token.as_bytes()))
            .unwrap();
        assert_eq!(&*rec.app_name, format!("app{i}"));
        assert_eq!(&*rec.client_id, c.client_id);
        // Another app's secret does not work for this id.
        let j = (i + 1) % creds.len();
        let resp = e.token(
            post("grant_type=client_credentials")
                .basic(&basic_rfc(&c.client_id, &creds[j].client_secret))
                .build(),
        );
        assert_eq!(resp.status(), 401);
    }
    let _ = Arc::clone(&e.registry);
}

// Custom token attributes are bound to the token.
#[test]
fn token_attributes() {
    let e = env();
    let ctx = preflow_oauth::RequestContext {
        now: NOW,
        client_ip: None,
        attributes: vec![("tier".into(), "gold".into())],
    };
    let resp = e
        .server
        .token_request(
            &post("grant_type=client_credentials")
                .basic(&e.basic())
                .build(),
            &ctx,
        )
        .run(&e.server, &e.store);
    let token = json(&resp)["access_token"].as_str().unwrap().to_owned();
    let rec = e
        .store
        .get_token(&preflow_oauth::TokenHash::of(token.as_bytes()))
        .unwrap();
    assert_eq!(
        &rec.attributes[..],
        &[("tier".to_owned(), "gold".to_owned())]
    );
    assert_eq!(rec.grant_type, GrantType::ClientCredentials);
    assert_eq!(rec.issued_at, NOW);
    assert_eq!(rec.expires_at, Some(NOW + 3600));
}

// Apigee `<ExpiresIn>` is in milliseconds; -1 never expires.
#[test]
fn apigee_expires_in_milliseconds() {
    let c = ServerConfig::default().with_apigee_expires_in(1_800_000);
    assert_eq!(c.access_token_lifetime, Some(1800));
    let e = env_with(c);
    assert_eq!(
        json(
            &e.token(
                post("grant_type=client_credentials")
                    .basic(&e.basic())
                    .build()
            )
        )["expires_in"],
        1800
    );
    assert_eq!(
        ServerConfig::default()
            .with_apigee_expires_in(-1)
            .access_token_lifetime,
        None
    );
    assert_eq!(
        ServerConfig::default()
            .with_apigee_expires_in(1)
            .access_token_lifetime,
        Some(1)
    );
    assert_eq!(
        ServerConfig::default()
            .with_apigee_refresh_expires_in(-1)
            .refresh_token_lifetime,
        None
    );
}

// The SAP tutorials send grant_type in the query string: the error says where it was
// seen and how to accept it; with grant_type_in_query it is accepted.
#[test]
fn grant_type_in_the_query_is_named_in_the_error() {
    let e = env_with(ServerConfig::default());
    let resp = e.token(
        request("POST", "/token?grant_type=client_credentials", "")
            .header("content-type", "application/x-www-form-urlencoded")
            .basic(&e.basic())
            .build(),
    );
    assert_error(&resp, 400, "invalid_request");
    let description = json(&resp)["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        description.contains("grant_type was sent in the query string")
            && description.contains("<GrantType>request.queryparam.grant_type</GrantType>"),
        "{description}"
    );
    let e = env_with(ServerConfig {
        grant_type_in_query: true,
        ..Default::default()
    });
    let resp = e.token(
        request("POST", "/token?grant_type=client_credentials", "")
            .header("content-type", "application/x-www-form-urlencoded")
            .basic(&e.basic())
            .build(),
    );
    assert_eq!(resp.status(), 200);
}
