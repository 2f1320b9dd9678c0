//! `<ResponseCache>`: answers from the cache on the request side, fills it on the
//! response side.

use bytes::Bytes;

use crate::parse::Cx;
use crate::policies::condition::NamedCondition;
use crate::policies::source::{add_headers, header_list, status};
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Message, Outcome, Runtime};
use crate::xml::Element;

use super::{
    COMMON, CacheCommon, CachedValue, Expiry, common, condition_text, expiry, key_of, resource,
    response_header_ttl,
};

/// `<ResponseCache>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResponseCache {
    /// Key, scope and resource.
    pub common: CacheCommon,
    /// `<ExpirySettings>`.
    pub expiry: Expiry,
    /// `<ExcludeErrorResponse>` (default false): responses with status >= 400 are cached too.
    pub exclude_error_response: bool,
    /// `<SkipCacheLookup>`: a condition; when true the lookup is skipped.
    pub skip_cache_lookup: Option<String>,
    /// `<SkipCachePopulation>`: a condition; when true the response is not cached.
    pub skip_cache_population: Option<String>,
    /// `<UseAcceptHeader>` (default false): the Accept headers join the key.
    pub use_accept_header: bool,
    /// `<UseResponseCacheHeaders>` (default false): `Cache-Control: max-age` and `Expires`
    /// of the response bound the time to live.
    pub use_response_cache_headers: bool,
}

fn response_cache(cx: &mut Cx<'_>, el: &Element) -> ResponseCache {
    let mut known = COMMON.to_vec();
    known.extend([
        "ExpirySettings",
        "ExcludeErrorResponse",
        "SkipCacheLookup",
        "SkipCachePopulation",
        "UseAcceptHeader",
        "UseResponseCacheHeaders",
    ]);
    cx.known_policy(el, &known);
    ResponseCache {
        common: common(cx, el),
        expiry: expiry(cx, el),
        exclude_error_response: cx.child_bool(el, "ExcludeErrorResponse", false),
        skip_cache_lookup: condition_text(cx, el, "SkipCacheLookup"),
        skip_cache_population: condition_text(cx, el, "SkipCachePopulation"),
        use_accept_header: cx.child_bool(el, "UseAcceptHeader", false),
        use_response_cache_headers: cx.child_bool(el, "UseResponseCacheHeaders", false),
    }
}

/// A compiled ResponseCache: its skip conditions compiled.
#[derive(Debug)]
pub(crate) struct CompiledResponseCache {
    name: String,
    config: ResponseCache,
    skip_lookup: Option<NamedCondition>,
    skip_populate: Option<NamedCondition>,
}

fn run<R: Runtime>(rt: &mut R, name: &str, rc: &CompiledResponseCache) -> Outcome {
    let (cfg, skip_lookup, skip_populate) = (&rc.config, &rc.skip_lookup, &rc.skip_populate);
    let prefix = format!("responsecache.{name}");
    let extra: Vec<String> = if cfg.use_accept_header {
        [
            "accept",
            "accept-encoding",
            "accept-language",
            "accept-charset",
        ]
        .iter()
        .filter_map(|h| {
            rt.request()
                .headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect()
    } else {
        Vec::new()
    };
    let key = match key_of(rt, &cfg.common, &extra) {
        Ok(k) => k,
        Err(f) => return Outcome::Fault(*f),
    };
    let now = rt.now_secs();
    if !rt.is_response_side() {
        if let Some(c) = skip_lookup {
            match c.eval(rt) {
                Ok(true) => return Outcome::Continue,
                Ok(false) => {}
                Err(f) => return Outcome::Fault(*f),
            }
        }
        rt.set_variable(&format!("{prefix}.cachekey"), key.clone());
        rt.set_variable(
            &format!("{prefix}.cachename"),
            resource(&cfg.common).to_owned(),
        );
        match rt
            .env()
            .resources
            .cache
            .get(resource(&cfg.common), &key, now)
        {
            Some(CachedValue::Response {
                status: st,
                headers,
                body,
            }) => {
                rt.set_variable(&format!("{prefix}.cachehit"), "true".into());
                let mut m = Message::response(status(st));
                add_headers(&mut m, &headers);
                m.body = Bytes::from(body);
                Outcome::CacheHit(m)
            }
            _ => {
                rt.set_variable(&format!("{prefix}.cachehit"), "false".into());
                Outcome::Continue
            }
        }
    } else {
        if let Some(c) = skip_populate {
            match c.eval(rt) {
                Ok(true) => return Outcome::Continue,
                Ok(false) => {}
                Err(f) => return Outcome::Fault(*f),
            }
        }
        if rt.variable(&format!("{prefix}.cachehit")).as_deref() == Some("true") {
            return Outcome::Continue;
        }
        let Some(resp) = rt.response() else {
            return Outcome::Continue;
        };
        let st = resp.status.as_u16();
        if cfg.exclude_error_response && st >= 400 {
            return Outcome::Continue;
        }
        let headers = header_list(resp);
        let mut until = cfg.expiry.expires_at(now, &|n| rt.variable(n));
        if cfg.use_response_cache_headers
            && let Some(ttl) = response_header_ttl(&headers)
        {
            until = until.min(now.saturating_add(ttl));
        }
        let value = CachedValue::Response {
            status: st,
            headers,
            body: resp.body.to_vec(),
        };
        rt.env()
            .resources
            .cache
            .put(resource(&cfg.common), &key, value, until, now);
        Outcome::Continue
    }
}

/// The ResponseCache policy type.
#[derive(Debug)]
pub(crate) struct ResponseCachePolicy;

impl PolicyType for ResponseCachePolicy {
    type Config = ResponseCache;
    type Compiled = Box<CompiledResponseCache>;

    fn parse(cx: &mut Cx<'_>, el: &Element) -> ResponseCache {
        response_cache(cx, el)
    }

    fn compile(r: &ResponseCache, cx: &BuildCx<'_>) -> Result<Self::Compiled, CompileError> {
        Ok(Box::new(CompiledResponseCache {
            name: cx.name.to_owned(),
            config: r.clone(),
            skip_lookup: r.skip_cache_lookup.as_deref().map(NamedCondition::new),
            skip_populate: r.skip_cache_population.as_deref().map(NamedCondition::new),
        }))
    }

    fn run<R: Runtime>(c: &Self::Compiled, rt: &mut R) -> Outcome {
        run(rt, &c.name, c)
    }

    fn advice(r: &ResponseCache) -> Vec<crate::Advice> {
        if r.exclude_error_response {
            return Vec::new();
        }
        vec![crate::Advice::new(
            "POL003",
            None,
            "ResponseCache also caches error responses: add `<ExcludeErrorResponse>true</ExcludeErrorResponse>`",
        )]
    }
}
