use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower::ServiceExt as _;

use super::*;

const PROXY: &str = r#"<ProxyEndpoint name="default">
  <PreFlow name="PreFlow">
    <Request>
      <Step><Name>RF-Blocked</Name><Condition>request.header.X-Block = "yes"</Condition></Step>
    </Request>
  </PreFlow>
  <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
  <RouteRule name="backend"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#;

const TARGET: &str = r#"<TargetEndpoint name="default">
  <PostFlow name="PostFlow">
    <Response><Step><Name>AM-Tag</Name></Step></Response>
  </PostFlow>
  <HTTPTargetConnection>
    <URL>http://backend/api</URL>
    <Properties><Property name="io.timeout.millis">200</Property></Properties>
  </HTTPTargetConnection>
</TargetEndpoint>"#;

const BLOCKED: &str = r#"<RaiseFault name="RF-Blocked">
  <FaultResponse><Set><Payload contentType="text/plain">blocked</Payload><StatusCode>403</StatusCode></Set></FaultResponse>
</RaiseFault>"#;

const TAG: &str = r#"<AssignMessage name="AM-Tag">
  <Set><Headers><Header name="X-Through">preflow</Header></Headers></Set>
  <AssignTo createNew="false" type="response"/>
</AssignMessage>"#;

fn gateway() -> Arc<Gateway> {
    let loaded = preflow::load_files(
        [
            ("api/apiproxy/proxies/default.xml", PROXY),
            ("api/apiproxy/targets/default.xml", TARGET),
            ("api/apiproxy/policies/RF-Blocked.xml", BLOCKED),
            ("api/apiproxy/policies/AM-Tag.xml", TAG),
        ],
        &preflow::LoadOptions::default(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Arc::new(
        Gateway::builder()
            .bundles(loaded)
            .registry(Arc::new(preflow_oauth::Registry::new()))
            .build()
            .unwrap(),
    )
}

async fn body(resp: Response<Full<Bytes>>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn forwards_to_the_inner_service_and_runs_policies() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        CALLS.fetch_add(1, Ordering::SeqCst);
        if req.uri().path().ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let text = format!("{} {}", req.method(), req.uri());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    });
    let svc = PreflowLayer::new(gateway()).max_body_bytes(64).layer(inner);

    let resp = svc
        .clone()
        .oneshot(
            Request::get("/v1/api/items?x=1")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-through"], "preflow");
    assert_eq!(body(resp).await, "GET http://backend/api/items?x=1");
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);

    let resp = svc
        .clone()
        .oneshot(
            Request::get("/v1/api/items")
                .header("x-block", "yes")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(body(resp).await, "blocked");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        1,
        "a refused request never reaches the target"
    );

    let resp = svc
        .clone()
        .oneshot(
            Request::get("/elsewhere")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let resp = svc
        .clone()
        .oneshot(
            Request::post("/v1/api/items")
                .body(Full::new(Bytes::from(vec![b'x'; 100])))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    let resp = svc
        .clone()
        .oneshot(
            Request::get("/v1/api/slow")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
}

#[tokio::test]
async fn guards_an_axum_router() {
    use axum::{Router, routing::get};
    let backend = Router::new().route("/api/hello", get(|| async { "Hello world" }));
    let app = Router::new().fallback_service(PreflowLayer::new(gateway()).layer(backend));
    let resp = app
        .clone()
        .oneshot(
            Request::get("/v1/api/hello")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"Hello world");

    let resp = app
        .oneshot(
            Request::get("/v1/api/hello")
                .header("x-block", "yes")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
