#![allow(dead_code)]

use std::sync::Arc;

use base64::Engine as _;
use preflow_oauth::{
    ApiProduct, App, Developer, IssuedCredential, MemoryStore, NewCredential, OAuthServer,
    PasswordHashCost, QuotaTimeUnit, Registry, RequestContext, SecretSpec, ServerConfig,
};

pub const NOW: u64 = 1_700_000_000;
pub const FORM: &str = "application/x-www-form-urlencoded";

pub struct Env {
    pub registry: Arc<Registry>,
    pub server: OAuthServer,
    pub store: MemoryStore,
    pub app_id: String,
    pub cred: IssuedCredential,
}

pub fn registry() -> Arc<Registry> {
    let r = Arc::new(Registry::with_password_hash_cost(
        PasswordHashCost::insecure_for_tests(),
    ));
    r.put_developer(Developer::new("dev@example.com"));
    r.put_product(
        ApiProduct::new("hello-product")
            .with_proxies(["hello-api"])
            .with_environments(["prod"])
            .with_resources(["/hello", "/items/**"])
            .unwrap()
            .with_scopes(["read", "write", "ESBMessaging.Send"])
            .unwrap()
            .with_quota(100, 1, QuotaTimeUnit::Minute),
    );
    r.put_product(
        ApiProduct::new("other-product")
            .with_proxies(["other-api"])
            .with_resources(["/"])
            .unwrap(),
    );
    r
}

pub fn env_with(config: ServerConfig) -> Env {
    let registry = registry();
    let mut app = App::new("my-app");
    app.callback_url = Some("https://client.example.com/cb".into());
    let app_id = registry.add_app("dev@example.com", app).unwrap();
    let cred = registry
        .add_credential(
            &app_id,
            NewCredential {
                products: vec!["hello-product".into(), "other-product".into()],
                issued_at: NOW,
                ..Default::default()
            },
        )
        .unwrap();
    let server = OAuthServer::new(Arc::clone(&registry), config);
    Env {
        registry,
        server,
        store: MemoryStore::new(),
        app_id,
        cred,
    }
}

pub fn env() -> Env {
    env_with(ServerConfig::default())
}

impl Env {
    /// Adds a credential with a custom secret to the same app.
    pub fn custom_credential(&self, id: &str, secret: &str) -> IssuedCredential {
        self.registry
            .add_credential(
                &self.app_id,
                NewCredential {
                    key: Some(id.into()),
                    secret: SecretSpec::Custom(secret.into()),
                    products: vec!["hello-product".into()],
                    issued_at: NOW,
                    ..Default::default()
                },
            )
            .unwrap()
    }

    pub fn token(&self, req: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        self.token_at(req, NOW)
    }

    pub fn token_at(&self, req: http::Request<Vec<u8>>, now: u64) -> http::Response<Vec<u8>> {
        self.server
            .token_request(&req, &RequestContext::at(now))
            .run(&self.server, &self.store)
    }

    pub fn basic(&self) -> String {
        basic_rfc(&self.cred.client_id, &self.cred.client_secret)
    }

    /// A client-credentials token for the default credential.
    pub fn cc_token(&self, scope: Option<&str>) -> String {
        let body = match scope {
            Some(s) => format!("grant_type=client_credentials&scope={}", enc(s)),
            None => "grant_type=client_credentials".into(),
        };
        let resp = self.token(post(&body).basic(&self.basic()).build());
        assert_eq!(
            resp.status(),
            200,
            "{}",
            String::from_utf8_lossy(resp.body())
        );
        json(&resp)["access_token"].as_str().unwrap().to_owned()
    }
}

pub fn enc(s: &str) -> String {
    form_encode(s)
}

/// RFC 6749 Appendix B encoding (what the Rust oauth2 crate sends).
pub fn form_encode(s: &str) -> String {
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

pub fn basic_rfc(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form_encode(id), form_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub fn basic_raw(id: &[u8], secret: &[u8]) -> String {
    let mut raw = id.to_vec();
    raw.push(b':');
    raw.extend_from_slice(secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub struct Req(http::request::Builder, Vec<u8>);

pub fn post(body: &str) -> Req {
    Req(
        http::Request::post("/token").header("content-type", FORM),
        body.as_bytes().to_vec(),
    )
}

pub fn request(method: &str, uri: &str, body: &str) -> Req {
    Req(
        http::Request::builder().method(method).uri(uri),
        body.as_bytes().to_vec(),
    )
}

impl Req {
    pub fn header(self, k: &str, v: &str) -> Self {
        Self(self.0.header(k, v), self.1)
    }
    pub fn basic(self, v: &str) -> Self {
        self.header("authorization", v)
    }
    pub fn uri(self, u: &str) -> Self {
        Self(self.0.uri(u), self.1)
    }
    pub fn build(self) -> http::Request<Vec<u8>> {
        self.0.body(self.1).unwrap()
    }
}

pub fn json(resp: &http::Response<Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(resp.body()).unwrap()
}

pub fn header<'a>(resp: &'a http::Response<Vec<u8>>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Asserts an RFC 6749 §5.2 error with the caching headers.
pub fn assert_error(resp: &http::Response<Vec<u8>>, status: u16, code: &str) {
    assert_eq!(
        resp.status(),
        status,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    let body = json(resp);
    assert_eq!(body["error"], code, "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(!d.contains('"') && !d.contains('\\'));
    assert_no_store(resp);
    if status == 401 {
        assert_eq!(
            header(resp, "www-authenticate"),
            Some("Basic realm=\"oauth\"")
        );
    }
}

pub fn assert_no_store(resp: &http::Response<Vec<u8>>) {
    assert_eq!(header(resp, "cache-control"), Some("no-store"));
    assert_eq!(header(resp, "pragma"), Some("no-cache"));
}
