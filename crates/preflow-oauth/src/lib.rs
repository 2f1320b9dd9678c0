//! Developers, apps, products, credentials and an OAuth 2.0 authorization server and
//! verifier, sans-IO.
//!
//! * [`Registry`]: developers, API products, apps and their credentials. Generated
//!   secrets carry 256 random bits from `[A-Za-z0-9_-]` and are stored as SHA-256; custom
//!   secrets are stored as Argon2id. Comparisons are constant-time.
//! * [`OAuthServer`]: the token endpoint (RFC 6749: client credentials, authorization
//!   code with PKCE, refresh with rotation, and an opt-in password grant), introspection
//!   (RFC 7662), revocation (RFC 7009), bearer verification (RFC 6750) and API-key
//!   verification with Apigee product and scope checks, and brute-force throttling.
//! * [`TokenStore`]: tokens and codes, kept only as SHA-256 digests. The endpoints never
//!   touch a store: they return [`Outcome::NeedsStore`] with a [`StoreOp`] and a
//!   [`Pending`] continuation, so a remote store can run the operation asynchronously;
//!   [`Outcome::run`] drives a local [`MemoryStore`] inline.
//!
//! The library reads no clock: the caller passes the time.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use preflow_oauth::{
//!     ApiCall, ApiProduct, App, Developer, MemoryStore, NewCredential, OAuthServer,
//!     Registry, RequestContext, ServerConfig,
//! };
//!
//! let registry = Arc::new(Registry::new());
//! registry.put_developer(Developer::new("dev@example.com"));
//! registry.put_product(
//!     ApiProduct::new("hello")
//!         .with_proxies(["hello-api"])
//!         .with_resources(["/**"])?
//!         .with_scopes(["ESBMessaging.Send"])?,
//! );
//! let app = registry.add_app("dev@example.com", App::new("my-app"))?;
//! let cred = registry.add_credential(
//!     &app,
//!     NewCredential { products: vec!["hello".into()], ..Default::default() },
//! )?;
//!
//! let server = OAuthServer::new(Arc::clone(&registry), ServerConfig::default());
//! let store = MemoryStore::new();
//! let now = 1_700_000_000;
//!
//! // Issue: POST the token request; the outcome is driven against the in-memory store.
//! let req = http::Request::post("/token")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(format!(
//!         "grant_type=client_credentials&client_id={}&client_secret={}",
//!         cred.client_id, cred.client_secret
//!     ))?;
//! let resp = server.token_request(&req, &RequestContext::at(now)).run(&server, &store);
//! assert_eq!(resp.status(), 200);
//! let body: serde_json::Value = serde_json::from_slice(resp.body())?;
//! let token = body["access_token"].as_str().unwrap();
//! assert_eq!(body["expires_in"], 3600);
//!
//! // Verify: a call to the protected proxy.
//! let call = ApiCall {
//!     proxy: "hello-api",
//!     path_suffix: "/hello",
//!     environment: "prod",
//!     required_scopes: &["ESBMessaging.Send"],
//!     scope_match: Default::default(),
//!     locations: Default::default(),
//!     now: now + 10,
//! };
//! let api_req = http::Request::get("/hello")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Vec::new())?;
//! let verified = server.verify_access_token_inline(&api_req, &call, &store)?;
//! assert_eq!(verified.app_name(), "my-app");
//! assert_eq!(verified.expires_in(), Some(3590));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
pub mod form;
mod http_util;
mod registry;
pub mod resource;
pub mod scope;
pub mod secret;
mod server;
mod store;
mod throttle;
mod token;
mod verify;

/// The `http` crate, re-exported for hosts and tools that build requests.
pub use http;

pub use error::RegistryError;
pub use http_util::{EndpointError, ErrorCode, ResponseMode};
pub use registry::{
    ApiProduct, App, Approval, ClientRecord, ClientRefusal, Credential, CredentialProduct,
    Developer, DeveloperStatus, IssuedCredential, NewCredential, ProductQuota, QuotaTimeUnit,
    Registry, ResourceOwner, SecretSpec,
};
pub use secret::{DigestHasher, DigestState, PasswordHashCost, SecretHash, TokenHash};
pub use server::{
    CodeRequest, IssuedCode, MAX_CODE_LIFETIME, OAuthServer, Outcome, Pending, RequestContext,
    ServerConfig,
};
pub use store::{
    CodeTake, DEFAULT_REVOKED_RETENTION, MemoryStore, StoreOp, StoreReply, TokenStore,
    merge_attributes,
};
pub use throttle::{Lockout, Throttle, ThrottleConfig, ThrottleEntry, ThrottleKey, ThrottleKeys};
pub use token::{CodeRecord, GrantId, GrantType, TokenKind, TokenRecord};
pub use verify::{
    ApiCall, ApiKeyError, BearerLocations, ScopeMatch, VerifiedApiKey, VerifiedToken, VerifyError,
    VerifyPending, VerifyStep, bearer_token,
};
