//! Arbitrary bytes, split into an `Authorization` header value and a form body, must
//! never make the token-request parser or the token endpoint panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use preflow_oauth::form::{basic_param, decode_basic, parse_form};
use preflow_oauth::http;
use preflow_oauth::{
    ApiProduct, App, Developer, MemoryStore, NewCredential, OAuthServer, PasswordHashCost,
    Registry, RequestContext, SecretSpec, ServerConfig,
};

struct Fixture {
    server: OAuthServer,
    store: MemoryStore,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let registry = Arc::new(Registry::with_password_hash_cost(
            PasswordHashCost::insecure_for_tests(),
        ));
        registry.put_developer(Developer::new("d@example.com"));
        registry.put_product(ApiProduct::new("p"));
        if let Ok(app) = registry.add_app("d@example.com", App::new("a")) {
            let _ = registry.add_credential(
                &app,
                NewCredential {
                    key: Some("s6BhdRkqt3".into()),
                    secret: SecretSpec::Custom("gX1fBat3bV".into()),
                    products: vec!["p".into()],
                    ..Default::default()
                },
            );
        }
        let config = ServerConfig {
            raw_basic_fallback: true,
            ..Default::default()
        };
        Fixture {
            server: OAuthServer::new(registry, config),
            store: MemoryStore::new(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // First byte: where to split; the rest: header value, then body.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (auth, body) = rest.split_at(at);

    let _ = parse_form(body);
    if let Some(param) = basic_param(auth) {
        if let Ok(decoded) = decode_basic(param) {
            let _ = decoded.raw_readings();
        }
    }

    let f = fixture();
    let mut builder =
        http::Request::post("/token").header("content-type", "application/x-www-form-urlencoded");
    if let Ok(value) = http::HeaderValue::from_bytes(auth) {
        builder = builder.header("authorization", value);
    }
    if let Ok(req) = builder.body(body.to_vec()) {
        let resp = f
            .server
            .token_request(&req, &RequestContext::at(1_700_000_000))
            .run(&f.server, &f.store);
        assert!(resp.status().as_u16() >= 200);
    }
});
