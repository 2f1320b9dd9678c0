//! Shared test setup: a private redis-server per test.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, SystemTime};

use preflow_ratelimit::Timestamp;
use preflow_redis::server::RedisServer;
use preflow_redis::{BreakerConfig, RedisConfig, RedisStore};

/// Starts a private redis-server. Fails the test when none can be started (CI installs
/// redis-server; these tests never skip).
pub fn server() -> RedisServer {
    match RedisServer::start() {
        Ok(s) => s,
        Err(e) => panic!("these tests need redis-server (apt-get install redis-server): {e}"),
    }
}

pub fn config() -> RedisConfig {
    RedisConfig::default()
        .with_timeout(Duration::from_secs(1))
        .with_breaker(BreakerConfig::disabled())
}

pub async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url(), config()).await.unwrap()
}

pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Waits, if need be, until the next hour starts more than `span` from now: a test whose
/// hourly quota counts over `span` of wall-clock time then stays in one window (one
/// running across the hour would see its count start again).
pub async fn clear_of_the_hour(span: std::time::Duration) {
    let into_hour = std::time::Duration::from_secs(now_secs() % 3600);
    let left = std::time::Duration::from_secs(3600).saturating_sub(into_hour);
    if left <= span {
        tokio::time::sleep(left + std::time::Duration::from_secs(1)).await;
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A raw command on the server, for inspection.
pub async fn raw<T: redis::FromRedisValue>(server: &RedisServer, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

use std::sync::Arc;

use preflow_oauth::http::{Request, StatusCode};
use preflow_oauth::{
    ApiCall, ApiProduct, App, Developer, IssuedCredential, NewCredential, OAuthServer, Registry,
    RequestContext, ServerConfig, VerifiedToken, VerifyError,
};
use preflow_redis::RedisRegistry;

pub const CALLBACK: &str = "https://client.example/cb";

/// Writes a developer, a product, an app and a credential through to Redis.
pub async fn seed(registry: &RedisRegistry) -> IssuedCredential {
    registry
        .put_developer(Developer::new("dev@example.com"))
        .await
        .unwrap();
    registry
        .put_product(
            ApiProduct::new("hello")
                .with_proxies(["hello-api"])
                .with_resources(["/**"])
                .unwrap()
                .with_scopes(["read"])
                .unwrap(),
        )
        .await
        .unwrap();
    let mut app = App::new("my-app");
    app.callback_url = Some(CALLBACK.to_owned());
    let id = registry.add_app("dev@example.com", app).await.unwrap();
    registry
        .add_credential(
            &id,
            NewCredential {
                products: vec!["hello".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// One gateway instance: its own connection, its registry loaded from Redis, its server.
pub struct Instance {
    pub store: RedisStore,
    pub registry: RedisRegistry,
    pub server: OAuthServer,
}

impl Instance {
    pub async fn start(url: &str) -> Instance {
        let store = RedisStore::connect(url, config()).await.unwrap();
        Instance::with_store(store).await
    }

    pub async fn with_store(store: RedisStore) -> Instance {
        let registry = RedisRegistry::load(store.clone()).await.unwrap();
        let server = OAuthServer::new(Arc::clone(registry.registry()), ServerConfig::default());
        Instance {
            store,
            registry,
            server,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.registry.registry()
    }

    pub async fn token(&self, body: String) -> (StatusCode, serde_json::Value) {
        let req = Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .unwrap();
        let outcome = self
            .server
            .token_request(&req, &RequestContext::at(now_secs()));
        let resp = self.store.drive(&self.server, outcome).await;
        let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
        (resp.status(), json)
    }

    pub async fn client_credentials(&self, cred: &IssuedCredential) -> String {
        let (status, body) = self
            .token(format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                cred.client_id, cred.client_secret
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let call = ApiCall {
            proxy: "hello-api",
            path_suffix: "/hello",
            environment: "prod",
            required_scopes: &[],
            scope_match: Default::default(),
            locations: Default::default(),
            now: now_secs(),
        };
        let req = Request::get("/hello")
            .header("authorization", format!("Bearer {token}"))
            .body(Vec::new())
            .unwrap();
        self.store
            .verify_access_token(&self.server, &req, &call)
            .await
    }

    pub async fn revoke(&self, cred: &IssuedCredential, token: &str) -> StatusCode {
        let req = Request::post("/revoke")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "token={token}&client_id={}&client_secret={}",
                cred.client_id, cred.client_secret
            ))
            .unwrap();
        let outcome = self
            .server
            .revocation_request(&req, &RequestContext::at(now_secs()));
        self.store.drive(&self.server, outcome).await.status()
    }
}
