//! Bearer (RFC 6750) and API-key verification with product and scope checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use preflow_oauth::ApiProduct;
use preflow_oauth::{
    ApiCall, ApiKeyError, Approval, BearerLocations, DeveloperStatus, ScopeMatch, ServerConfig,
    StoreOp, StoreReply, TokenHash, TokenStore, VerifyError, VerifyStep,
};

fn call<'a>(path: &'a str, scopes: &'a [&'a str]) -> ApiCall<'a> {
    ApiCall {
        proxy: "hello-api",
        path_suffix: path,
        environment: "prod",
        required_scopes: scopes,
        scope_match: ScopeMatch::Any,
        locations: BearerLocations::default(),
        now: NOW + 5,
    }
}

fn api(auth: &str) -> http::Request<Vec<u8>> {
    http::Request::get("/hello")
        .header("authorization", auth)
        .body(Vec::new())
        .unwrap()
}

fn verify(
    e: &Env,
    req: &http::Request<Vec<u8>>,
    c: &ApiCall<'_>,
) -> Result<preflow_oauth::VerifiedToken, VerifyError> {
    e.server.verify_access_token_inline(req, c, &e.store)
}

#[test]
fn scheme_is_case_insensitive_and_variables_are_exposed() {
    let e = env();
    let token = e.cc_token(None);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let v = verify(&e, &api(&format!("{scheme} {token}")), &call("/hello", &[])).unwrap();
        assert_eq!(v.client_id(), e.cred.client_id);
        assert_eq!(v.app_name(), "my-app");
        assert_eq!(v.developer_email(), "dev@example.com");
        assert_eq!(v.product().name, "hello-product");
        assert_eq!(v.expires_in(), Some(3595));
        assert_eq!(v.scope(), "read write ESBMessaging.Send");
        let vars = v.variables();
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("client_id"), Some(e.cred.client_id.as_str()));
        assert_eq!(get("developer.app.name"), Some("my-app"));
        assert_eq!(get("developer.email"), Some("dev@example.com"));
        assert_eq!(get("apiproduct.name"), Some("hello-product"));
        assert_eq!(get("apiproduct.developer.quota.limit"), Some("100"));
        assert_eq!(get("apiproduct.developer.quota.interval"), Some("1"));
        assert_eq!(get("apiproduct.developer.quota.timeunit"), Some("minute"));
        assert_eq!(get("expires_in"), Some("3595"));
        assert_eq!(get("scope"), Some("read write ESBMessaging.Send"));
    }
}

fn challenge(err: &VerifyError) -> String {
    err.to_response("api").headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn missing_token_has_no_error_in_challenge() {
    let e = env();
    let req = http::Request::get("/hello").body(Vec::new()).unwrap();
    let err = verify(&e, &req, &call("/hello", &[])).unwrap_err();
    assert_eq!(err, VerifyError::MissingToken);
    assert_eq!(err.status(), 401);
    assert_eq!(challenge(&err), "Bearer realm=\"api\"");
    assert_eq!(err.error_code(), "oauth.v2.InvalidAccessToken");
    // Basic credentials are no bearer token.
    let err = verify(&e, &api("Basic abc"), &call("/hello", &[])).unwrap_err();
    assert_eq!(err, VerifyError::MissingToken);
}

#[test]
fn each_failure_names_its_check() {
    let e = env();
    let token = e.cc_token(Some("read"));
    let bearer = format!("Bearer {token}");

    let err = verify(&e, &api("Bearer unknown-token"), &call("/hello", &[])).unwrap_err();
    assert_eq!(err, VerifyError::UnknownToken);
    assert_eq!(
        err.error_code(),
        "keymanagement.service.invalid_access_token"
    );
    assert_eq!(err.fault_name(), "invalid_access_token");
    assert_eq!(
        challenge(&err),
        "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token is unknown\""
    );

    let err = verify(&e, &api("Bearer bad\"token"), &call("/hello", &[])).unwrap_err();
    assert_eq!(err, VerifyError::MalformedToken);

    let mut late = call("/hello", &[]);
    late.now = NOW + 3600;
    let err = verify(&e, &api(&bearer), &late).unwrap_err();
    assert_eq!(err, VerifyError::Expired);
    assert_eq!(
        err.error_code(),
        "keymanagement.service.access_token_expired"
    );
    assert!(challenge(&err).contains("error_description=\"the access token expired\""));

    let err = verify(&e, &api(&bearer), &call("/nothing-here", &[])).unwrap_err();
    assert!(matches!(err, VerifyError::NoProductMatch { .. }));
    assert_eq!(err.status(), 401);
    assert_eq!(
        err.error_code(),
        "keymanagement.service.InvalidAPICallAsNoApiProductMatchFound"
    );
    assert!(
        challenge(&err)
            .contains("no api product of this token covers proxy hello-api, path /nothing-here")
    );
    let mut other_env = call("/hello", &[]);
    other_env.environment = "test";
    assert!(matches!(
        verify(&e, &api(&bearer), &other_env),
        Err(VerifyError::NoProductMatch { .. })
    ));
    let mut other_proxy = call("/", &[]);
    other_proxy.proxy = "other-api";
    assert!(
        verify(&e, &api(&bearer), &other_proxy).is_ok(),
        "other-product covers '/' of other-api"
    );

    let err = verify(&e, &api(&bearer), &call("/items/a/b", &["write"])).unwrap_err();
    assert_eq!(
        err,
        VerifyError::InsufficientScope {
            required: "write".into()
        }
    );
    assert_eq!(err.status(), 403);
    assert!(challenge(&err).contains("error=\"insufficient_scope\""));
    assert!(challenge(&err).contains("scope=\"write\""));
    assert_eq!(err.fault_name(), "InsufficientScope");
    assert!(verify(&e, &api(&bearer), &call("/items/a/b", &["write", "read"])).is_ok());
    let mut all = call("/items/a/b", &["write", "read"]);
    all.scope_match = ScopeMatch::All;
    assert!(verify(&e, &api(&bearer), &all).is_err());

    // Revoked in the store.
    e.store
        .revoke_token(&TokenHash::of(token.as_bytes()), NOW + 1);
    let err = verify(&e, &api(&bearer), &call("/hello", &[])).unwrap_err();
    assert_eq!(err, VerifyError::Revoked);
    assert_eq!(
        err.error_code(),
        "keymanagement.service.access_token_not_approved"
    );
    assert!(challenge(&err).contains("the access token was revoked"));
}

#[test]
fn client_status_applies_at_verify_time() {
    let e = env();
    let bearer = format!("Bearer {}", e.cc_token(None));
    e.registry
        .set_credential_product(&e.cred.client_id, "hello-product", Approval::Revoked)
        .unwrap();
    assert!(matches!(
        verify(&e, &api(&bearer), &call("/hello", &[])),
        Err(VerifyError::NoProductMatch { .. })
    ));
    e.registry
        .set_credential_product(&e.cred.client_id, "hello-product", Approval::Approved)
        .unwrap();
    assert!(verify(&e, &api(&bearer), &call("/hello", &[])).is_ok());
    e.registry
        .set_app_status(&e.app_id, Approval::Revoked)
        .unwrap();
    let err = verify(&e, &api(&bearer), &call("/hello", &[])).unwrap_err();
    assert_eq!(
        err.error_code(),
        "keymanagement.service.invalid_client-app_not_approved"
    );
    e.registry
        .set_app_status(&e.app_id, Approval::Approved)
        .unwrap();
    e.registry
        .set_developer_status("dev@example.com", DeveloperStatus::Inactive)
        .unwrap();
    let err = verify(&e, &api(&bearer), &call("/hello", &[])).unwrap_err();
    assert_eq!(err.fault_name(), "DeveloperStatusNotActive");
}

#[test]
fn a_redefined_product_applies_to_issued_tokens_and_keys_at_once() {
    let e = env();
    let bearer = format!("Bearer {}", e.cc_token(None));
    let key = e.cred.client_id.as_str();
    let narrowed = || {
        ApiProduct::new("hello-product")
            .with_proxies(["hello-api"])
            .with_environments(["prod"])
            .with_resources(["/items/**"])
            .unwrap()
    };
    e.registry.put_product(narrowed());
    assert!(matches!(
        verify(&e, &api(&bearer), &call("/hello", &[])),
        Err(VerifyError::NoProductMatch { .. })
    ));
    assert!(matches!(
        e.server.verify_api_key(Some(key), &call("/hello", &[])),
        Err(ApiKeyError::NoProductMatch { .. })
    ));
    let v = verify(&e, &api(&bearer), &call("/items/7", &[])).unwrap();
    assert_eq!(v.product().api_resources.len(), 1);
    // Widened again: the same token and key pass where they were refused.
    e.registry.put_product(
        ApiProduct::new("hello-product")
            .with_proxies(["hello-api"])
            .with_resources(["/hello", "/items/**"])
            .unwrap(),
    );
    assert!(verify(&e, &api(&bearer), &call("/hello", &[])).is_ok());
    assert!(
        e.server
            .verify_api_key(Some(key), &call("/hello", &[]))
            .is_ok()
    );
}

#[test]
fn body_and_query_transport() {
    let e = env();
    let token = e.cc_token(None);
    let q = http::Request::get(format!("/hello?access_token={token}"))
        .body(Vec::new())
        .unwrap();
    assert_eq!(
        verify(&e, &q, &call("/hello", &[])).unwrap_err(),
        VerifyError::MissingToken,
        "off by default"
    );
    let mut c = call("/hello", &[]);
    c.locations = BearerLocations {
        form_body: true,
        query: true,
    };
    assert!(verify(&e, &q, &c).is_ok());
    let b = http::Request::post("/hello")
        .header("content-type", FORM)
        .body(format!("access_token={token}").into_bytes())
        .unwrap();
    assert!(verify(&e, &b, &c).is_ok());
    // GET bodies are not a transport.
    let g = http::Request::get("/hello")
        .header("content-type", FORM)
        .body(format!("access_token={token}").into_bytes())
        .unwrap();
    assert_eq!(verify(&e, &g, &c).unwrap_err(), VerifyError::MissingToken);
    // Two methods at once.
    let two = http::Request::get(format!("/hello?access_token={token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Vec::new())
        .unwrap();
    let err = verify(&e, &two, &c).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.rfc_error(), Some("invalid_request"));
}

#[test]
fn sans_io_verification() {
    let e = env();
    let token = e.cc_token(None);
    let req = api(&format!("Bearer {token}"));
    let c = call("/hello", &[]);
    let VerifyStep::NeedsStore(op, pending) = e.server.verify_access_token(&req, &c) else {
        panic!()
    };
    assert_eq!(op, StoreOp::GetToken(TokenHash::of(token.as_bytes())));
    let reply = e.store.execute(op);
    assert!(e.server.finish_verify(pending, reply, &c).is_ok());
    let VerifyStep::NeedsStore(_, pending) = e.server.verify_access_token(&req, &c) else {
        panic!()
    };
    assert_eq!(
        e.server
            .finish_verify(pending, StoreReply::Unavailable, &c)
            .unwrap_err()
            .status(),
        503
    );
}

#[test]
fn api_keys() {
    let e = env();
    let key = e.cred.client_id.as_str();
    let v = e
        .server
        .verify_api_key(Some(key), &call("/hello", &[]))
        .unwrap();
    assert_eq!(v.product().name, "hello-product");
    let vars = v.variables();
    assert!(vars.contains(&("apiproduct.developer.quota.limit".into(), "100".into())));
    assert!(vars.contains(&("developer.app.name".into(), "my-app".into())));
    assert!(vars.contains(&(
        "redirection_uris".into(),
        "https://client.example.com/cb".into()
    )));
    let err = e
        .server
        .verify_api_key(None, &call("/hello", &[]))
        .unwrap_err();
    assert_eq!(err, ApiKeyError::FailedToResolve);
    let err = e
        .server
        .verify_api_key(Some("nope"), &call("/hello", &[]))
        .unwrap_err();
    assert_eq!(err.error_code(), "oauth.v2.InvalidApiKey");
    assert_eq!(err.faultstring(), "Invalid ApiKey");
    let err = e
        .server
        .verify_api_key(Some(key), &call("/elsewhere", &[]))
        .unwrap_err();
    assert_eq!(err.fault_name(), "InvalidApiKeyForGivenResource");
    assert_eq!(err.status(), 401);
    e.registry
        .set_credential_status(key, Approval::Revoked)
        .unwrap();
    let err = e
        .server
        .verify_api_key(Some(key), &call("/hello", &[]))
        .unwrap_err();
    assert_eq!(err.fault_name(), "ApiKeyNotApproved");
    e.registry
        .set_credential_status(key, Approval::Approved)
        .unwrap();
    e.registry
        .set_app_status(&e.app_id, Approval::Revoked)
        .unwrap();
    let err = e
        .server
        .verify_api_key(Some(key), &call("/hello", &[]))
        .unwrap_err();
    assert_eq!(
        err.error_code(),
        "keymanagement.service.invalid_client-app_not_approved"
    );
}

#[test]
fn expired_credential_is_refused() {
    let e = env_with(ServerConfig::default());
    let c = e
        .registry
        .add_credential(
            &e.app_id,
            preflow_oauth::NewCredential {
                products: vec!["hello-product".into()],
                expires_at: Some(NOW + 10),
                ..Default::default()
            },
        )
        .unwrap();
    let mut later = call("/hello", &[]);
    later.now = NOW + 10;
    let err = e
        .server
        .verify_api_key(Some(&c.client_id), &later)
        .unwrap_err();
    assert_eq!(err.fault_name(), "consumer_key_expired");
    let resp = e.token_at(
        post("grant_type=client_credentials")
            .basic(&basic_rfc(&c.client_id, &c.client_secret))
            .build(),
        NOW + 10,
    );
    assert_error(&resp, 401, "invalid_client");
}

#[test]
fn refresh_tokens_are_no_bearer_tokens() {
    let e = env();
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
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let err = verify(&e, &api(&format!("Bearer {refresh}")), &call("/hello", &[])).unwrap_err();
    assert_eq!(err, VerifyError::UnknownToken);
    let v = verify(&e, &api(&format!("Bearer {access}")), &call("/hello", &[])).unwrap();
    let vars = v.variables();
    assert!(vars.contains(&("grant_type".into(), "authorization_code".into())));
}
