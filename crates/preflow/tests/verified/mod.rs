//! A gateway whose token store holds one verified access token: app `app-0` of
//! `dev@example.com`, key `client-0`, on product `P` covering proxy `api` (`/**`).

use std::sync::Arc;

use preflow::{Gateway, LoadOptions, load_files};
use preflow_oauth::{
    ApiProduct, App, Developer, GrantId, GrantType, NewCredential, Registry, TokenHash, TokenKind,
    TokenRecord, TokenStore,
};

/// Builds `files` into a gateway and stores `token` as an access token of `app-0`.
pub fn gateway_with_token<P, B>(files: impl IntoIterator<Item = (P, B)>, token: &str) -> Gateway
where
    P: AsRef<str>,
    B: AsRef<[u8]>,
{
    let registry = Arc::new(Registry::new());
    registry.put_developer(Developer::new("dev@example.com"));
    registry.put_product(
        ApiProduct::new("P")
            .with_proxies(["api"])
            .with_resources(["/**"])
            .unwrap(),
    );
    let app = registry
        .add_app("dev@example.com", App::new("app-0"))
        .unwrap();
    registry
        .add_credential(
            &app,
            NewCredential {
                key: Some("client-0".into()),
                products: vec!["P".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let loaded = load_files(files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let gateway = Gateway::builder()
        .bundles(loaded)
        .registry(Arc::clone(&registry))
        .build()
        .unwrap();
    let record = TokenRecord {
        kind: TokenKind::Access,
        client_id: Arc::from("client-0"),
        app_id: Arc::from(app.as_str()),
        app_name: Arc::from("app-0"),
        developer_email: Arc::from("dev@example.com"),
        products: Arc::from(vec![Arc::<str>::from("P")]),
        scope: Arc::from(""),
        grant_type: GrantType::ClientCredentials,
        username: None,
        issued_at: 1_700_000_000,
        expires_at: None,
        revoked_at: None,
        grant_id: GrantId([0; 16]),
        refresh_count: 0,
        attributes: Arc::from(Vec::new()),
    };
    gateway
        .token_store()
        .put_tokens(&[(TokenHash::of(token.as_bytes()), Arc::new(record))]);
    gateway
}
