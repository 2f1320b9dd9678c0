//! `<PopulateCache>`: writes a variable's value to the cache.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{CachedValue, PopulateCache, key_of, resource};

/// The PopulateCache policy type.
#[derive(Debug)]
pub(crate) struct PopulateCachePolicy;

impl PolicyType for PopulateCachePolicy {
    type Config = PopulateCache;
    type Compiled = (String, PopulateCache);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> PopulateCache {
        super::populate_cache(cx, el)
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
