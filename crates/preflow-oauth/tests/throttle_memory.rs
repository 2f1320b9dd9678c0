//! Issue 12 item 6: the throttle's memory with long client ids. 3,000 failed token
//! requests, each with a distinct 60 KB client id from a fresh address, must leave less
//! than 16 MiB on the heap (the throttle keeps 16-byte keyed digests, never the ids).
//!
//! A counting global allocator (`stats_alloc`) measures the live heap, so this test runs
//! without the libtest harness, whose threads would allocate at moments that depend on
//! scheduling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::net::IpAddr;
use std::sync::Arc;

use preflow_oauth::http;
use preflow_oauth::{
    ApiProduct, App, Developer, MemoryStore, NewCredential, OAuthServer, PasswordHashCost,
    Registry, RequestContext, SecretSpec, ServerConfig,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_heap() -> usize {
    let stats = GLOBAL.stats();
    stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated)
}

const FAILURES: u32 = 3_000;
const ID_BYTES: usize = 60 * 1024;
const BOUND: usize = 16 << 20;

fn main() {
    let registry = Arc::new(Registry::with_password_hash_cost(
        PasswordHashCost::insecure_for_tests(),
    ));
    registry.put_developer(Developer::new("d@example.com"));
    registry.put_product(ApiProduct::new("p"));
    let app = registry.add_app("d@example.com", App::new("a")).unwrap();
    // A chosen secret, so every rejection also does the Argon2id padding work (whose
    // dummy hash is made once, before the measurement).
    registry
        .add_credential(
            &app,
            NewCredential {
                key: Some("known".into()),
                secret: SecretSpec::Custom("s3cret".into()),
                products: vec!["p".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let server = OAuthServer::new(registry, ServerConfig::default());
    let store = MemoryStore::new();
    let request = |i: u32| {
        use base64::Engine as _;
        let mut id = format!("{i:08}");
        id.extend(std::iter::repeat_n('x', ID_BYTES - id.len()));
        // In the Basic header: a form body that large is refused before the throttle
        // (`form::MAX_BODY`); the header's size is the host's to bound.
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:wrong"));
        let req = http::Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(b"grant_type=client_credentials".to_vec())
            .unwrap();
        let mut ctx = RequestContext::at(1_700_000_000);
        ctx.client_ip = Some(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        let resp = server.token_request(&req, &ctx).run(&server, &store);
        assert_eq!(
            resp.status(),
            401,
            "{}",
            String::from_utf8_lossy(resp.body())
        );
    };
    // Warm-up: lazily built state (the padding hash, the tables' first shards).
    request(u32::MAX - 0x0a00_0000);
    let base = live_heap();
    let mut peak = 0;
    for i in 0..FAILURES {
        request(i);
        peak = peak.max(live_heap().saturating_sub(base));
    }
    let grown = live_heap().saturating_sub(base);
    let (pairs, sources) = server.throttle().len();
    assert_eq!(
        (pairs, sources),
        (FAILURES as usize + 1, FAILURES as usize + 1),
        "every failure was counted"
    );
    println!(
        "throttle memory: {FAILURES} failures with distinct {} KB client ids from fresh \
         addresses: live heap +{grown} bytes ({:.2} MiB; peak during the run +{:.2} MiB), \
         {pairs} pair and {sources} source keys",
        ID_BYTES / 1024,
        grown as f64 / f64::from(1 << 20),
        peak as f64 / f64::from(1 << 20),
    );
    assert!(grown < BOUND, "{grown} bytes retained");
}
