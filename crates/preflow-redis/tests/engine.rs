//! Two in-process gateways (the preflow engine in `StateMode::Remote`) sharing tokens, the
//! registry and a quota through Redis.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use common::{seed, server};
use preflow::{Gateway, StateMode};
use preflow_redis::{RedisRegistry, RedisStore, RemoteState};

const FILES: &[(&str, &str)] = &[
    ("token/apiproxy/OAuth.xml", r#"<APIProxy name="OAuth"/>"#),
    (
        "token/apiproxy/proxies/default.xml",
        r#"<ProxyEndpoint name="default">
  <Flows>
    <Flow name="GenerateToken">
      <Condition>(proxy.pathsuffix MatchesPath "/token") and (request.verb = "POST")</Condition>
      <Request><Step><Name>GenerateToken</Name></Step></Request>
    </Flow>
  </Flows>
  <HTTPProxyConnection><BasePath>/oauth</BasePath></HTTPProxyConnection>
  <RouteRule name="noroute"/>
</ProxyEndpoint>"#,
    ),
    (
        "token/apiproxy/policies/GenerateToken.xml",
        r#"<OAuthV2 name="GenerateToken">
  <Operation>GenerateAccessToken</Operation>
  <SupportedGrantTypes><GrantType>client_credentials</GrantType></SupportedGrantTypes>
  <GenerateResponse enabled="true"/>
</OAuthV2>"#,
    ),
    (
        "api/apiproxy/hello-api.xml",
        r#"<APIProxy name="hello-api"/>"#,
    ),
    (
        "api/apiproxy/proxies/default.xml",
        r#"<ProxyEndpoint name="default">
  <PreFlow name="PreFlow">
    <Request>
      <Step><Name>VerifyToken</Name></Step>
      <Step><Name>Quota</Name></Step>
    </Request>
  </PreFlow>
  <HTTPProxyConnection><BasePath>/hello</BasePath></HTTPProxyConnection>
  <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#,
    ),
    (
        "api/apiproxy/targets/default.xml",
        r#"<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>https://backend.example/</URL></HTTPTargetConnection>
</TargetEndpoint>"#,
    ),
    (
        "api/apiproxy/policies/VerifyToken.xml",
        r#"<OAuthV2 name="VerifyToken"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
    ),
    (
        "api/apiproxy/policies/Quota.xml",
        r#"<Quota name="Quota">
  <Allow count="100"/><Interval>1</Interval><TimeUnit>hour</TimeUnit>
  <Distributed>true</Distributed><Synchronous>true</Synchronous>
</Quota>"#,
    ),
];

struct Node {
    gateway: Gateway,
    state: RemoteState,
}

async fn node(url: &str, bundles: &std::path::Path) -> Node {
    let store = RedisStore::connect(url, common::config()).await.unwrap();
    let registry = RedisRegistry::load(store.clone()).await.unwrap();
    let gateway = Gateway::builder()
        .bundle_path(bundles)
        .registry(Arc::clone(registry.registry()))
        .state(StateMode::Remote)
        .build()
        .unwrap();
    Node {
        gateway,
        state: RemoteState::new(store),
    }
}

impl Node {
    async fn call(&self, req: http::Request<Bytes>) -> http::Response<Bytes> {
        let mut ex = self.gateway.begin(
            req,
            preflow::Client::http("127.0.0.1:40000".parse().unwrap()),
            SystemTime::now(),
        );
        loop {
            match self.gateway.step(&mut ex) {
                preflow::Step::Respond(r) => return r,
                preflow::Step::Forward(_) => {
                    ex.target_response(Ok(http::Response::new(Bytes::from_static(b"backend"))))
                }
                preflow::Step::Store(op) => ex.store_reply(self.state.run(&op).await),
                preflow::Step::ReadBody => panic!("begin gave the whole request"),
                preflow::Step::Pause(d) => std::thread::sleep(d),
            }
        }
    }

    async fn token(&self, id: &str, secret: &str) -> String {
        let req = http::Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(format!(
                "grant_type=client_credentials&client_id={id}&client_secret={secret}"
            )))
            .unwrap();
        let resp = self.call(req).await;
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
        let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    }

    async fn hello(&self, token: &str) -> http::StatusCode {
        let req = http::Request::get("/hello/x")
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap();
        self.call(req).await.status()
    }
}

fn bundles() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in FILES {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_tokens_and_an_exact_quota() {
    let server = server();
    let seeding = RedisRegistry::load(common::store(&server).await)
        .await
        .unwrap();
    let cred = seed(&seeding).await;
    let dir = bundles();
    let a = Arc::new(node(&server.url(), dir.path()).await);
    let b = Arc::new(node(&server.url(), dir.path()).await);

    // A token from one gateway is accepted by the other at once.
    let token = a.token(&cred.client_id, &cred.client_secret).await;
    assert_eq!(b.hello(&token).await, 200);
    assert_eq!(b.hello("forged").await, 401);
    // That call counted 1 of the quota of 100; 149 more, spread over both gateways.
    let mut tasks = Vec::new();
    for i in 0..149 {
        let node = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let token = token.clone();
        tasks.push(tokio::spawn(async move { node.hello(&token).await }));
    }
    let mut ok = 1;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("status {other}"),
        }
    }
    assert_eq!(
        (ok, limited),
        (100, 50),
        "a quota of 100 across both gateways"
    );
}

#[test]
fn a_store_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        RedisStore::new("redis://127.0.0.1:1/", common::config()),
        Err(preflow_redis::RedisError::NoRuntime)
    ));
}

#[tokio::test]
async fn quota_modes_follow_the_distributed_and_synchronous_flags() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("p/apiproxy/p.xml", r#"<APIProxy name="p"/>"#),
        (
            "p/apiproxy/proxies/default.xml",
            r#"<ProxyEndpoint name="default">
  <PreFlow name="PreFlow"><Request>
    <Step><Name>Local</Name></Step><Step><Name>Sync</Name></Step><Step><Name>Async</Name></Step>
  </Request></PreFlow>
  <HTTPProxyConnection><BasePath>/p</BasePath></HTTPProxyConnection>
  <RouteRule name="noroute"/>
</ProxyEndpoint>"#,
        ),
        (
            "p/apiproxy/policies/Local.xml",
            r#"<Quota name="Local"><Allow count="5"/><Interval>1</Interval><TimeUnit>hour</TimeUnit></Quota>"#,
        ),
        (
            "p/apiproxy/policies/Sync.xml",
            r#"<Quota name="Sync"><Allow count="5"/><Interval>1</Interval><TimeUnit>hour</TimeUnit>
  <Distributed>true</Distributed><Synchronous>true</Synchronous></Quota>"#,
        ),
        (
            "p/apiproxy/policies/Async.xml",
            r#"<Quota name="Async"><Allow count="5"/><Interval>1</Interval><TimeUnit>hour</TimeUnit>
  <Distributed>true</Distributed>
  <AsynchronousConfiguration><SyncIntervalInSeconds>2</SyncIntervalInSeconds></AsynchronousConfiguration></Quota>"#,
        ),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let loaded = preflow::load_path(dir.path(), &preflow::LoadOptions::default());
    assert!(!loaded.has_errors());
    let store = RedisStore::new("redis://127.0.0.1:1/", common::config()).unwrap();
    let state =
        RemoteState::new(store).with_bundle_policies(&loaded, preflow_redis::OnFailure::Closed);
    let mode = |policy: &str| state.policy_for(&format!("quota:p:{policy}:id")).mode;
    assert_eq!(mode("Local"), preflow_redis::Mode::Local);
    assert_eq!(mode("Sync"), preflow_redis::Mode::Synchronous);
    assert_eq!(mode("Async"), preflow_redis::Mode::Asynchronous);
    assert_eq!(
        state.policy_for("quota:p:Sync:id").on_failure,
        preflow_redis::OnFailure::Closed
    );
    assert_eq!(
        state.flush_interval(),
        Some(std::time::Duration::from_secs(2))
    );
}
