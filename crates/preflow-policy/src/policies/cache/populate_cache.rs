//! `<PopulateCache>`: writes a variable's value to the cache.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{COMMON, CacheCommon, CachedValue, Expiry, common, expiry, key_of, resource};

/// `<PopulateCache>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PopulateCache {
    /// Key, scope and resource.
    pub common: CacheCommon,
    /// `<Source>`: the variable whose value is cached.
    pub source: String,
    /// `<ExpirySettings>`.
    pub expiry: Expiry,
}

fn populate_cache(cx: &mut Cx<'_>, el: &Element) -> PopulateCache {
    let mut known = COMMON.to_vec();
    known.extend(["Source", "ExpirySettings"]);
    cx.known_policy(el, &known);
    let source = cx.child_text(el, "Source").unwrap_or_else(|| {
        cx.error(el.offset, "PopulateCache needs a `<Source>` variable");
        String::new()
    });
    PopulateCache {
        common: common(cx, el),
        source,
        expiry: expiry(cx, el),
    }
}

/// The PopulateCache policy type.
#[derive(Debug)]
pub(crate) struct PopulateCachePolicy;

impl PolicyType for PopulateCachePolicy {
    type Config = PopulateCache;
    type Compiled = (String, PopulateCache);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> PopulateCache {
        populate_cache(cx, el)
    }

    fn compile(
        config: &PopulateCache,
        cx: &BuildCx<'_>,
    ) -> Result<(String, PopulateCache), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, PopulateCache), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let _ = name;
        let key = match key_of(rt, &cfg.common, &[]) {
            Ok(k) => k,
            Err(f) => return Outcome::Fault(*f),
        };
        if let Some(v) = rt.variable(&cfg.source) {
            let now = rt.now_secs();
            let until = cfg.expiry.expires_at(now, &|n| rt.variable(n));
            rt.env().resources.cache.put(
                resource(&cfg.common),
                &key,
                CachedValue::Text(v),
                until,
                now,
            );
        }
        Outcome::Continue
    }
}
