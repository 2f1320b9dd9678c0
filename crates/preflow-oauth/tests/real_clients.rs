//! The endpoints served over HTTP/1.1 on loopback (hyper + tokio), exercised by the Rust
//! `oauth2` crate, an RFC 6749 §2.3.1 client, and by plain reqwest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, IntrospectionUrl, RequestTokenError, Scope,
    TokenIntrospectionResponse as _, TokenResponse as _, TokenUrl,
};
use preflow_oauth::{
    ApiProduct, App, Developer, MemoryStore, NewCredential, OAuthServer, Outcome, PasswordHashCost,
    Registry, RequestContext, SecretSpec, ServerConfig, TokenStore,
};

const SECRET: &str = "p:a+s s%w/o=rd&~";

struct Shared {
    server: OAuthServer,
    store: MemoryStore,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The host side: collect the body, call the endpoint, perform store steps, respond.
async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let req = http::Request::from_parts(parts, bytes.to_vec());
    let ctx = RequestContext {
        now: now(),
        client_ip: Some(peer.ip()),
        attributes: vec![],
    };
    let s = &shared.server;
    let mut outcome = match req.uri().path() {
        "/token" => s.token_request(&req, &ctx),
        "/introspect" => s.introspection_request(&req, &ctx),
        "/revoke" => s.revocation_request(&req, &ctx),
        _ => {
            let mut r = hyper::Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            return Ok(r);
        }
    };
    // The store steps, performed as an async driver would (yielding between steps).
    let resp = loop {
        match outcome {
            Outcome::Respond(r) => break r,
            Outcome::NeedsStore(op, pending) => {
                tokio::task::yield_now().await;
                let reply = shared.store.execute(op);
                outcome = s.resume(pending, reply);
            }
        }
    };
    let (parts, body) = resp.into_parts();
    Ok(hyper::Response::from_parts(
        parts,
        Full::new(Bytes::from(body)),
    ))
}

async fn serve(shared: Arc<Shared>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(Arc::clone(&shared), peer, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn setup() -> (Arc<Shared>, String) {
    let registry = Arc::new(Registry::with_password_hash_cost(
        PasswordHashCost::insecure_for_tests(),
    ));
    registry.put_developer(Developer::new("dev@example.com"));
    registry.put_product(ApiProduct::new("p").with_scopes(["read", "write"]).unwrap());
    let app = registry
        .add_app("dev@example.com", App::new("app"))
        .unwrap();
    let cred = registry
        .add_credential(
            &app,
            NewCredential {
                key: Some("cli:ent id+%".into()),
                secret: SecretSpec::Custom(SECRET.into()),
                products: vec!["p".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let server = OAuthServer::new(registry, ServerConfig::default());
    (
        Arc::new(Shared {
            server,
            store: MemoryStore::new(),
        }),
        cred.client_id,
    )
}

fn http_client() -> oauth2::reqwest::Client {
    oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_crate_client_credentials_introspect_revoke() {
    let (shared, client_id) = setup();
    let addr = serve(Arc::clone(&shared)).await;
    let base = format!("http://{addr}");
    let http = http_client();
    let client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(SECRET.into()))
        .set_token_uri(TokenUrl::new(format!("{base}/token")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(format!("{base}/introspect")).unwrap());

    // Token with HTTP Basic (RFC 6749 §2.3.1 encoding of ': + % space / = & ~').
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("read".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret().len(), 43);
    assert_eq!(*token.token_type(), oauth2::basic::BasicTokenType::Bearer);
    assert_eq!(
        token.expires_in(),
        Some(std::time::Duration::from_secs(3600))
    );
    assert!(token.refresh_token().is_none());
    assert_eq!(
        token.scopes().map(|s| s[0].as_str().to_owned()),
        Some("read".to_owned())
    );

    // Introspection through the oauth2 crate.
    let info = client
        .introspect(token.access_token())
        .set_token_type_hint("access_token")
        .request_async(&http)
        .await
        .unwrap();
    assert!(info.active());
    assert_eq!(
        info.client_id().map(|c| c.as_str()),
        Some(client_id.as_str())
    );
    assert_eq!(info.scopes().map(|s| s.len()), Some(1));

    // Revocation over plain reqwest (the oauth2 crate insists on https for revocation).
    let auth = {
        use base64::Engine as _;
        let raw = format!("{}:{}", form_encode(&client_id), form_encode(SECRET));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    };
    let resp = http
        .post(format!("{base}/revoke"))
        .header("authorization", &auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&token_type_hint=access_token",
            token.access_token().secret()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");

    let info = client
        .introspect(token.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!info.active());

    // client_secret_post through the oauth2 crate.
    let post_client = client.clone().set_auth_type(AuthType::RequestBody);
    let token2 = post_client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        token2.scopes().map(|s| s.len()),
        Some(2),
        "all product scopes by default"
    );

    // A wrong secret surfaces as a standard invalid_client error.
    let bad = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new("wrong".into()))
        .set_token_uri(TokenUrl::new(format!("{base}/token")).unwrap());
    match bad.exchange_client_credentials().request_async(&http).await {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidClient)
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
    // An unknown scope surfaces as invalid_scope.
    match client
        .exchange_client_credentials()
        .add_scope(Scope::new("admin".into()))
        .request_async(&http)
        .await
    {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidScope)
        }
        other => panic!("expected invalid_scope, got {other:?}"),
    }
    // The throttle saw the failures from this address.
    let ip = addr.ip();
    assert!(shared.server.throttle().source_entry(ip).failures >= 1);
}
