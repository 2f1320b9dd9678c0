//! Introspection (RFC 7662), revocation (RFC 7009) and the sans-IO store protocol.
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
    GrantId, GrantType, MemoryStore, Outcome, RequestContext, StoreOp, StoreReply, TokenHash,
    TokenKind, TokenRecord, TokenStore,
};

fn introspect(e: &Env, body: &str, auth: Option<&str>) -> http::Response<Vec<u8>> {
    let mut r = post(body).uri("/introspect");
    if let Some(a) = auth {
        r = r.basic(a);
    }
    e.server
        .introspection_request(&r.build(), &RequestContext::at(NOW + 1))
        .run(&e.server, &e.store)
}

fn revoke(e: &Env, body: &str, auth: &str) -> http::Response<Vec<u8>> {
    let r = post(body).uri("/revoke").basic(auth).build();
    e.server
        .revocation_request(&r, &RequestContext::at(NOW + 2))
        .run(&e.server, &e.store)
}

#[test]
fn introspection() {
    let e = env();
    let token = e.cc_token(Some("read"));
    let resp = introspect(
        &e,
        &format!("token={token}&token_type_hint=access_token"),
        Some(&e.basic()),
    );
    assert_eq!(resp.status(), 200);
    assert_no_store(&resp);
    let body = json(&resp);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], e.cred.client_id.as_str());
    assert_eq!(body["scope"], "read");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["exp"], NOW + 3600);
    assert_eq!(body["iat"], NOW);
    // Unknown token: exactly {"active":false}.
    let resp = introspect(&e, "token=unknown", Some(&e.basic()));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body(), br#"{"active":false}"#);
    // A wrong hint is ignored.
    let resp = introspect(
        &e,
        &format!("token={token}&token_type_hint=refresh_token"),
        Some(&e.basic()),
    );
    assert_eq!(json(&resp)["active"], true);
    // The caller must authenticate.
    assert_error(
        &introspect(&e, &format!("token={token}"), None),
        401,
        "invalid_client",
    );
    assert_error(
        &introspect(&e, &format!("token={token}"), Some(&basic_rfc("x", "y"))),
        401,
        "invalid_client",
    );
    assert_error(
        &introspect(&e, "", Some(&e.basic())),
        400,
        "invalid_request",
    );
    // GET is refused.
    let r = request("GET", "/introspect?token=x", "")
        .basic(&e.basic())
        .build();
    let resp = e
        .server
        .introspection_request(&r, &RequestContext::at(NOW))
        .run(&e.server, &e.store);
    assert_eq!(resp.status(), 405);
}

// Issue 12 item 5: a client introspects only its own tokens (RFC 7662 §4), unless its
// app carries the introspection role.
#[test]
fn cross_client_introspection_is_refused_without_the_role() {
    let e = env();
    let token = e.cc_token(None);
    // Another app of the same developer, without the role.
    let other_app = e
        .registry
        .add_app("dev@example.com", preflow_oauth::App::new("other-app"))
        .unwrap();
    let new_cred = || preflow_oauth::NewCredential {
        products: vec!["hello-product".into()],
        ..Default::default()
    };
    let other = e.registry.add_credential(&other_app, new_cred()).unwrap();
    let resp = introspect(
        &e,
        &format!("token={token}"),
        Some(&basic_rfc(&other.client_id, &other.client_secret)),
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body(), br#"{"active":false}"#);
    // Its own token it sees.
    let own = json(
        &e.server
            .token_request(
                &post("grant_type=client_credentials")
                    .basic(&basic_rfc(&other.client_id, &other.client_secret))
                    .build(),
                &RequestContext::at(NOW),
            )
            .run(&e.server, &e.store),
    )["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = introspect(
        &e,
        &format!("token={own}"),
        Some(&basic_rfc(&other.client_id, &other.client_secret)),
    );
    assert_eq!(json(&resp)["active"], true);
    assert_eq!(json(&resp)["client_id"], other.client_id.as_str());
    // A resource server's app with the role sees every client's tokens.
    let mut rs = preflow_oauth::App::new("resource-server");
    rs.introspect_any_token = true;
    let rs_app = e.registry.add_app("dev@example.com", rs).unwrap();
    let rs_cred = e.registry.add_credential(&rs_app, new_cred()).unwrap();
    let rs_basic = basic_rfc(&rs_cred.client_id, &rs_cred.client_secret);
    let resp = introspect(&e, &format!("token={token}"), Some(&rs_basic));
    assert_eq!(json(&resp)["active"], true);
    assert_eq!(json(&resp)["client_id"], e.cred.client_id.as_str());
    // The role does not widen revocation: the token stays active.
    assert_eq!(
        revoke(&e, &format!("token={token}"), &rs_basic).status(),
        200
    );
    assert_eq!(
        json(&introspect(&e, &format!("token={token}"), Some(&e.basic())))["active"],
        true
    );
}

#[test]
fn revocation() {
    let e = env();
    let token = e.cc_token(None);
    // Unknown token: 200.
    assert_eq!(revoke(&e, "token=unknown", &e.basic()).status(), 200);
    // Another client's token: 200, but not revoked.
    let other = e
        .registry
        .add_credential(
            &e.app_id,
            preflow_oauth::NewCredential {
                products: vec!["hello-product".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let resp = revoke(
        &e,
        &format!("token={token}"),
        &basic_rfc(&other.client_id, &other.client_secret),
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(&introspect(&e, &format!("token={token}"), Some(&e.basic())))["active"],
        true
    );
    // Own token: revoked.
    let resp = revoke(
        &e,
        &format!("token={token}&token_type_hint=whatever"),
        &e.basic(),
    );
    assert_eq!(resp.status(), 200);
    assert_no_store(&resp);
    assert_eq!(
        introspect(&e, &format!("token={token}"), Some(&e.basic())).body(),
        br#"{"active":false}"#
    );
    assert_error(
        &revoke(&e, &format!("token={token}"), &basic_rfc("x", "y")),
        401,
        "invalid_client",
    );
    assert_error(&revoke(&e, "", &e.basic()), 400, "invalid_request");
}

#[test]
fn revoking_a_refresh_token_revokes_its_grant() {
    let e = env();
    // A refresh token via the authorization-code grant.
    let issued = e
        .server
        .issue_code(
            &preflow_oauth::CodeRequest {
                client_id: e.cred.client_id.clone(),
                redirect_uri: None,
                scope: None,
                code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
                code_challenge_method: Some("S256".into()),
                username: None,
            },
            NOW,
        )
        .unwrap();
    e.store.execute(issued.store_op);
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        issued.code,
        enc("https://client.example.com/cb")
    );
    let tokens = json(&e.token(post(&body).basic(&e.basic()).build()));
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let resp = introspect(&e, &format!("token={refresh}"), Some(&e.basic()));
    assert_eq!(json(&resp)["token_type"], "refresh_token");
    assert_eq!(
        revoke(
            &e,
            &format!("token={refresh}&token_type_hint=refresh_token"),
            &e.basic()
        )
        .status(),
        200
    );
    assert_eq!(
        introspect(&e, &format!("token={access}"), Some(&e.basic())).body(),
        br#"{"active":false}"#
    );
    assert_eq!(
        introspect(&e, &format!("token={refresh}"), Some(&e.basic())).body(),
        br#"{"active":false}"#
    );
}

/// Drives the token endpoint by hand, as a remote-store driver would.
#[test]
fn token_endpoint_is_resumable() {
    let e = env();
    let req = post("grant_type=client_credentials")
        .basic(&e.basic())
        .build();
    let outcome = e.server.token_request(&req, &RequestContext::at(NOW));
    let Outcome::NeedsStore(op, pending) = outcome else {
        panic!("expected a store step")
    };
    let StoreOp::PutTokens(tokens) = &op else {
        panic!("{op:?}")
    };
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].1.kind, TokenKind::Access);
    // The continuation can be moved to another thread while the "remote" store works.
    let (reply, pending) = std::thread::spawn(move || (e.store.execute(op), pending))
        .join()
        .unwrap();
    let Outcome::Respond(resp) = e_server_resume(&e.server, pending, reply) else {
        panic!()
    };
    assert_eq!(resp.status(), 200);

    // A store failure becomes 503 with Retry-After.
    let outcome = e.server.token_request(&req, &RequestContext::at(NOW));
    let Outcome::NeedsStore(_, pending) = outcome else {
        panic!()
    };
    let Outcome::Respond(resp) = e.server.resume(pending, StoreReply::Unavailable) else {
        panic!()
    };
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(json(&resp)["error"], "temporarily_unavailable");
}

fn e_server_resume(
    s: &preflow_oauth::OAuthServer,
    p: preflow_oauth::Pending,
    r: StoreReply,
) -> Outcome {
    s.resume(p, r)
}

#[test]
fn refresh_rotation_steps() {
    let e = env();
    // Put a refresh token by hand and refresh it step by step.
    let rec = TokenRecord {
        kind: TokenKind::Refresh,
        client_id: Arc::from(e.cred.client_id.as_str()),
        app_id: Arc::from(e.app_id.as_str()),
        app_name: Arc::from("my-app"),
        developer_email: Arc::from("dev@example.com"),
        products: Arc::from(vec![Arc::from("hello-product")]),
        scope: Arc::from("read"),
        grant_type: GrantType::AuthorizationCode,
        username: None,
        issued_at: NOW,
        expires_at: Some(NOW + 100),
        revoked_at: None,
        grant_id: GrantId::random(),
        refresh_count: 0,
        attributes: Arc::from(Vec::new()),
    };
    e.store.put_tokens(&[(TokenHash::of(b"rt"), Arc::new(rec))]);
    let req = post("grant_type=refresh_token&refresh_token=rt")
        .basic(&e.basic())
        .build();
    let Outcome::NeedsStore(op, p) = e.server.token_request(&req, &RequestContext::at(NOW + 1))
    else {
        panic!()
    };
    assert_eq!(op, StoreOp::GetToken(TokenHash::of(b"rt")));
    let Outcome::NeedsStore(op, p) = e.server.resume(p, e.store.execute(op)) else {
        panic!()
    };
    assert!(matches!(&op, StoreOp::PutTokens(t) if t.len() == 2));
    let Outcome::NeedsStore(op, p) = e.server.resume(p, e.store.execute(op)) else {
        panic!()
    };
    assert_eq!(
        op,
        StoreOp::RevokeToken {
            hash: TokenHash::of(b"rt"),
            at: NOW + 1
        }
    );
    let Outcome::Respond(resp) = e.server.resume(p, e.store.execute(op)) else {
        panic!()
    };
    assert_eq!(json(&resp)["refresh_token"].as_str().unwrap().len(), 43);
    assert!(
        e.store
            .get_token(&TokenHash::of(b"rt"))
            .unwrap()
            .revoked_at
            .is_some()
    );
}

fn record(issued_at: u64, expires_at: Option<u64>) -> Arc<TokenRecord> {
    Arc::new(TokenRecord {
        kind: TokenKind::Access,
        client_id: Arc::from("c"),
        app_id: Arc::from("a"),
        app_name: Arc::from("a"),
        developer_email: Arc::from("d"),
        products: Arc::from(Vec::new()),
        scope: Arc::from(""),
        grant_type: GrantType::ClientCredentials,
        username: None,
        issued_at,
        expires_at,
        revoked_at: None,
        grant_id: GrantId::random(),
        refresh_count: 0,
        attributes: Arc::from(Vec::new()),
    })
}

#[test]
fn memory_store_reclaims_expired_tokens_and_codes() {
    let s = MemoryStore::new().with_revoked_retention(10);
    s.put_tokens(&[(TokenHash::of(b"a"), record(0, Some(100)))]);
    s.put_tokens(&[(TokenHash::of(b"b"), record(0, None))]);
    s.put_tokens(&[(TokenHash::of(b"c"), record(0, None))]);
    s.revoke_token(&TokenHash::of(b"c"), 50);
    s.put_code(
        TokenHash::of(b"code"),
        preflow_oauth::CodeRecord {
            client_id: "c".into(),
            redirect_uri: None,
            scope: String::new(),
            code_challenge: None,
            username: None,
            issued_at: 0,
            expires_at: 600,
            grant_id: GrantId::random(),
        },
    );
    assert_eq!(s.purge_expired(55), 0);
    assert_eq!(
        s.purge_expired(100),
        2,
        "expired a, revoked c past retention"
    );
    assert!(s.get_token(&TokenHash::of(b"b")).is_some());
    assert_eq!(s.code_count(), 1);
    assert_eq!(s.purge_expired(600), 1);
    assert_eq!(s.code_count(), 0);
}

#[test]
fn of_concurrent_revocations_of_one_token_exactly_one_wins() {
    for round in 0..20u64 {
        let store = MemoryStore::new();
        let hash = TokenHash::of(format!("t{round}").as_bytes());
        store.put_tokens(&[(hash, record(100, Some(4000)))]);
        let won: usize = std::thread::scope(|s| {
            let tries: Vec<_> = (0..4u64)
                .map(|i| {
                    let store = &store;
                    s.spawn(move || usize::from(store.revoke_token(&hash, 200 + i)))
                })
                .collect();
            tries.into_iter().map(|t| t.join().unwrap_or(0)).sum()
        });
        assert_eq!(won, 1, "round {round}");
        assert!(store.get_token(&hash).unwrap().revoked_at.is_some());
        assert!(!store.revoke_token(&hash, 300));
    }
}

#[test]
fn concurrent_attribute_writes_to_one_token_are_all_kept() {
    let store = MemoryStore::new();
    let hash = TokenHash::of(b"t");
    store.put_tokens(&[(hash, record(100, Some(4000)))]);
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..50 {
                    let set = [(format!("a{t}-{i}"), "v".to_owned())];
                    assert!(store.set_attributes(&hash, &set).is_some());
                }
            });
        }
    });
    assert_eq!(store.get_token(&hash).unwrap().attributes.len(), 200);
    assert!(
        store
            .set_attributes(&TokenHash::of(b"other"), &[])
            .is_none()
    );
}

#[test]
fn memory_store_reclaims_by_itself() {
    let s = MemoryStore::new();
    for i in 0..3000u64 {
        s.put_tokens(&[(TokenHash::of(&i.to_le_bytes()), record(i, Some(i + 10)))]);
    }
    assert!(
        s.token_count() < 2100,
        "expired tokens are reclaimed while inserting: {}",
        s.token_count()
    );
    assert!(
        s.get_token(&TokenHash::of(&2999u64.to_le_bytes()))
            .is_some()
    );
}

/// Plaintext secrets and tokens are returned once and kept nowhere.
#[test]
fn no_plaintext_is_kept() {
    let e = env();
    let custom = e.custom_credential("custom-id", "my custom secret");
    let token = e.cc_token(None);
    let registry = format!("{:?}", e.registry);
    let store = format!("{:?}", e.store);
    for needle in [
        e.cred.client_secret.as_str(),
        custom.client_secret.as_str(),
        token.as_str(),
    ] {
        assert!(!registry.contains(needle));
        assert!(!store.contains(needle));
    }
    assert!(
        registry.contains("custom-id"),
        "the registry debug output is not empty"
    );
    let rec = e.store.get_token(&TokenHash::of(token.as_bytes())).unwrap();
    assert!(!format!("{rec:?}").contains(&token));
    // Generated secrets: 256 bits from [A-Za-z0-9_-].
    assert_eq!(e.cred.client_secret.len(), 43);
    assert!(
        e.cred
            .client_secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let cred = e.registry.credential(&e.cred.client_id).unwrap();
    assert!(matches!(cred.secret, preflow_oauth::SecretHash::Sha256(_)));
    let cred = e.registry.credential("custom-id").unwrap();
    assert!(matches!(cred.secret, preflow_oauth::SecretHash::Argon2(_)));
}

#[test]
fn expired_tokens_are_inactive() {
    let e = env();
    let token = e.cc_token(None);
    let r = post(&format!("token={token}"))
        .uri("/introspect")
        .basic(&e.basic())
        .build();
    let resp = e
        .server
        .introspection_request(&r, &RequestContext::at(NOW + 3600))
        .run(&e.server, &e.store);
    assert_eq!(resp.body(), br#"{"active":false}"#);
    let resp = e
        .server
        .introspection_request(&r, &RequestContext::at(NOW + 3599))
        .run(&e.server, &e.store);
    assert_eq!(json(&resp)["active"], true);
}
