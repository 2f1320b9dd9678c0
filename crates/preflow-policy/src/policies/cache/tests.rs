//! Unit tests of the cache family.

use crate::cache::{
    CacheLimits, CachedValue, MemoryCache, ScopeContext, build_key, response_header_ttl,
};
use crate::test_support::*;

#[test]
fn keys_scopes_and_expiry() {
    let PolicyConfig::PopulateCache(p) = load(
        r#"<PopulateCache name="P"><CacheKey><Prefix>tok</Prefix><KeyFragment ref="client_id"/><KeyFragment>v1</KeyFragment></CacheKey>
           <Scope>Global</Scope><Source>token</Source><ExpirySettings><TimeoutInSec ref="ttl">60</TimeoutInSec></ExpirySettings></PopulateCache>"#,
    )
    .0
    else {
        panic!()
    };
    let vars = Vars::new(&[("client_id", "abc")]);
    let scope = ScopeContext {
        organization: "org",
        environment: "test",
        proxy: "p",
        revision: "1",
        proxy_endpoint: "default",
        target_endpoint: None,
    };
    assert_eq!(
        build_key(&p.common, &scope, &|n| vars.get(n), &[]).unwrap(),
        "tok__abc__v1"
    );
    assert_eq!(p.expiry.expires_at(100, &|n| vars.get(n)), 160);
    let ttl = Vars::new(&[("ttl", "5")]);
    assert_eq!(p.expiry.expires_at(100, &|n| ttl.get(n)), 105);
    let PolicyConfig::LookupCache(l) = load(
        r#"<LookupCache name="L"><CacheKey><KeyFragment ref="client_id"/></CacheKey><AssignTo>out</AssignTo></LookupCache>"#,
    )
    .0
    else {
        panic!()
    };
    assert_eq!(
        build_key(&l.common, &scope, &|n| vars.get(n), &[]).unwrap(),
        "org__test__p__1__default__abc"
    );
    let PolicyConfig::ResponseCache(r) = load(
        r#"<ResponseCache name="R"><CacheKey><KeyFragment ref="request.uri"/></CacheKey>
           <ExpirySettings><TimeOfDay>14:30:00</TimeOfDay></ExpirySettings>
           <SkipCacheLookup>request.header.nocache = "true"</SkipCacheLookup></ResponseCache>"#,
    )
    .0
    else {
        panic!()
    };
    assert_eq!(r.expiry.expires_at(0, &|_| None), 14 * 3600 + 1800);
    let date = crate::cache::Expiry::ExpiryDate(crate::Setting::literal("01-02-1970".to_owned()));
    assert_eq!(date.expires_at(0, &|_| None), 2 * 86_400);
    let absurd = crate::cache::Expiry::ExpiryDate(crate::Setting::literal(
        "01-01-99999999999999999".to_owned(),
    ));
    assert_eq!(
        absurd.expires_at(7, &|_| None),
        7 + crate::cache::DEFAULT_TIMEOUT_SECS
    );
    assert_eq!(
        r.expiry.expires_at(86_400 + 15 * 3600, &|_| None),
        2 * 86_400 + 14 * 3600 + 1800
    );
    assert!(r.skip_cache_lookup.is_some());
    let (_, diags) = load(
        r#"<ResponseCache name="R"><CacheKey/><SkipCacheLookup>a = </SkipCacheLookup></ResponseCache>"#,
    );
    assert!(
        diags
            .iter()
            .any(|d| d.is_error() && d.message.contains("SkipCacheLookup"))
    );
}

#[test]
fn memory_cache_expires_and_evicts() {
    let c = MemoryCache::new(CacheLimits {
        max_entries: 2,
        max_bytes: 1_000,
        max_value_bytes: 100,
    });
    assert!(c.put("r", "a", CachedValue::Text("1".into()), 10, 0));
    assert!(c.put("r", "b", CachedValue::Text("2".into()), 10, 0));
    assert_eq!(c.get("r", "a", 5), Some(CachedValue::Text("1".into())));
    // "b" is now least recently used and goes first.
    assert!(c.put("r", "c", CachedValue::Text("3".into()), 10, 0));
    assert_eq!(c.get("r", "b", 5), None);
    assert!(c.get("r", "a", 5).is_some());
    assert_eq!(c.get("r", "a", 10), None, "expired");
    assert!(!c.put("r", "big", CachedValue::Text("x".repeat(200)), 10, 0));
    assert!(c.put("r", "pre1", CachedValue::Text("x".into()), 10, 0));
    assert_eq!(c.invalidate("r", "pre", true), 1);
    assert_eq!(c.get("other", "c", 5), None);
    assert_eq!(
        response_header_ttl(&[("Cache-Control".into(), "public, max-age=30".into())]),
        Some(30)
    );
    assert_eq!(
        response_header_ttl(&[("cache-control".into(), "no-store".into())]),
        Some(0)
    );
}
