//! Tokens, codes and the registry shared by several gateway instances through Redis.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::Engine as _;
use common::{CALLBACK, Instance, now_secs, raw, server, store};
use preflow_oauth::{CodeRequest, TokenHash, VerifyError};
use preflow_redis::RedisRegistry;
use sha2::Digest as _;

#[tokio::test]
async fn a_token_from_one_instance_is_accepted_by_another_at_once() {
    let server = server();
    let a = Instance::start(&server.url()).await;
    let cred = common::seed(&a.registry).await;
    // B starts after the registry was written and loads it from Redis.
    let b = Instance::start(&server.url()).await;
    assert!(b.registry().client(&cred.client_id).is_some());

    let token = a.client_credentials(&cred).await;
    let verified = b.verify(&token).await.unwrap();
    assert_eq!(verified.app_name(), "my-app");
    // And the other way round.
    let token = b.client_credentials(&cred).await;
    assert!(a.verify(&token).await.is_ok());
    assert!(matches!(
        a.verify("not-a-token").await,
        Err(VerifyError::UnknownToken)
    ));
}

#[tokio::test]
async fn tokens_are_stored_only_as_digests_with_an_expiry() {
    let server = server();
    let a = Instance::start(&server.url()).await;
    let cred = common::seed(&a.registry).await;
    let token = a.client_credentials(&cred).await;
    let keys: Vec<String> = raw(&server, redis::cmd("KEYS").arg("*")).await;
    assert!(keys.iter().all(|k| !k.contains(&token)), "{keys:?}");
    let key = a.store.keys().token(&TokenHash::of(token.as_bytes()));
    assert!(keys.contains(&key), "{keys:?}");
    let ttl: i64 = raw(&server, redis::cmd("PTTL").arg(&key)).await;
    assert!(
        ttl > 3_500_000 && ttl <= 3_600_000,
        "PEXPIREAT the token expiry: {ttl}"
    );
    // No record holds the raw token or the raw client secret.
    for k in keys {
        let dump: Vec<u8> = raw(&server, redis::cmd("DUMP").arg(&k)).await;
        let text = String::from_utf8_lossy(&dump);
        assert!(!text.contains(&token), "{k}");
        assert!(!text.contains(&cred.client_secret), "{k}");
    }
}

#[tokio::test]
async fn revocation_is_seen_by_every_instance() {
    let server = server();
    let a = Instance::start(&server.url()).await;
    let cred = common::seed(&a.registry).await;
    let b = Instance::start(&server.url()).await;
    let token = a.client_credentials(&cred).await;
    assert!(b.verify(&token).await.is_ok());
    assert_eq!(a.revoke(&cred, &token).await, 200);
    assert!(
        matches!(b.verify(&token).await, Err(VerifyError::Revoked)),
        "revoked at A, refused at B"
    );
}

fn pkce() -> (String, String) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

#[tokio::test]
async fn codes_and_refresh_tokens_move_between_instances() {
    let server = server();
    let a = Instance::start(&server.url()).await;
    let cred = common::seed(&a.registry).await;
    let b = Instance::start(&server.url()).await;
    let (verifier, challenge) = pkce();
    let issued = a
        .server
        .issue_code(
            &CodeRequest {
                client_id: cred.client_id.clone(),
                redirect_uri: Some(CALLBACK.to_owned()),
                scope: None,
                code_challenge: Some(challenge),
                code_challenge_method: Some("S256".into()),
                username: Some("alice".into()),
            },
            now_secs(),
        )
        .unwrap();
    a.store.run_token(&issued.store_op).await.unwrap();
    let exchange = format!(
        "grant_type=authorization_code&code={}&redirect_uri={CALLBACK}&code_verifier={verifier}&client_id={}&client_secret={}",
        issued.code, cred.client_id, cred.client_secret
    );
    // The code issued at A is exchanged at B.
    let (status, body) = b.token(exchange.clone()).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(a.verify(&access).await.is_ok());
    // A second exchange of the same code fails, at either instance, and revokes the grant.
    let (status, _) = a.token(exchange).await;
    assert_eq!(status, 400);
    assert!(
        matches!(b.verify(&access).await, Err(VerifyError::Revoked)),
        "code reuse revokes the grant"
    );

    // A fresh grant: the refresh token issued at B is used at A.
    let (verifier, challenge) = pkce();
    let issued = b
        .server
        .issue_code(
            &CodeRequest {
                client_id: cred.client_id.clone(),
                redirect_uri: Some(CALLBACK.to_owned()),
                scope: None,
                code_challenge: Some(challenge),
                code_challenge_method: Some("S256".into()),
                username: Some("alice".into()),
            },
            now_secs(),
        )
        .unwrap();
    b.store.run_token(&issued.store_op).await.unwrap();
    let (_, body) = b
        .token(format!(
            "grant_type=authorization_code&code={}&redirect_uri={CALLBACK}&code_verifier={verifier}&client_id={}&client_secret={}",
            issued.code, cred.client_id, cred.client_secret
        ))
        .await;
    let refresh2 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh, refresh2);
    let (status, body) = a
        .token(format!(
            "grant_type=refresh_token&refresh_token={refresh2}&client_id={}&client_secret={}",
            cred.client_id, cred.client_secret
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let access3 = body["access_token"].as_str().unwrap();
    assert!(b.verify(access3).await.is_ok());
}

#[tokio::test]
async fn a_restarted_gateway_accepts_tokens_issued_before() {
    let server = server();
    let (cred, token) = {
        let a = Instance::start(&server.url()).await;
        let cred = common::seed(&a.registry).await;
        let token = a.client_credentials(&cred).await;
        (cred, token)
    }; // the first gateway is gone, with its registry and connection
    let restarted = Instance::start(&server.url()).await;
    assert_eq!(restarted.verify(&token).await.unwrap().app_name(), "my-app");
    // Its registry came from Redis: the client can still get tokens.
    let again = restarted.client_credentials(&cred).await;
    assert!(restarted.verify(&again).await.is_ok());
}

#[tokio::test]
async fn registry_changes_are_written_through() {
    let server = server();
    let store = store(&server).await;
    let registry = RedisRegistry::load(store.clone()).await.unwrap();
    let cred = common::seed(&registry).await;
    registry
        .set_credential_status(&cred.client_id, preflow_oauth::Approval::Revoked)
        .await
        .unwrap();
    let fresh = store.load_registry().await.unwrap();
    let client = fresh.client(&cred.client_id).unwrap();
    assert_eq!(client.credential.status, preflow_oauth::Approval::Revoked);
    assert_eq!(client.app.name, "my-app");
    assert!(
        client
            .credential
            .secret
            .verify(cred.client_secret.as_bytes())
    );
    // save_registry of a whole registry round-trips too.
    let other = store.clone();
    other.save_registry(&fresh).await.unwrap();
    assert_eq!(other.load_registry().await.unwrap().apps().len(), 1);
}
