//! `<LookupCache>`: reads a cached value into a variable.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{COMMON, CacheCommon, CachedValue, common, key_of, resource};

/// `<LookupCache>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LookupCache {
    /// Key, scope and resource.
    pub common: CacheCommon,
    /// `<AssignTo>`: the variable that receives the value.
    pub assign_to: String,
}

fn lookup_cache(cx: &mut Cx<'_>, el: &Element) -> LookupCache {
    let mut known = COMMON.to_vec();
    known.push("AssignTo");
    cx.known_policy(el, &known);
    let assign_to = cx.child_text(el, "AssignTo").unwrap_or_else(|| {
        cx.error(el.offset, "LookupCache needs an `<AssignTo>` variable");
        String::new()
    });
    LookupCache {
        common: common(cx, el),
        assign_to,
    }
}

/// The LookupCache policy type.
#[derive(Debug)]
pub(crate) struct LookupCachePolicy;

impl PolicyType for LookupCachePolicy {
    type Config = LookupCache;
    type Compiled = (String, LookupCache);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> LookupCache {
        lookup_cache(cx, el)
    }

    fn compile(
        config: &LookupCache,
        cx: &BuildCx<'_>,
    ) -> Result<(String, LookupCache), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, LookupCache), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let _ = name;
        let key = match key_of(rt, &cfg.common, &[]) {
            Ok(k) => k,
            Err(f) => return Outcome::Fault(*f),
        };
        let hit = rt
            .env()
            .resources
            .cache
            .get(resource(&cfg.common), &key, rt.now_secs());
        let prefix = format!("lookupcache.{name}");
        rt.set_variable(&format!("{prefix}.cachekey"), key);
        rt.set_variable(
            &format!("{prefix}.cachename"),
            resource(&cfg.common).to_owned(),
        );
        match hit {
            Some(CachedValue::Text(v)) => {
                rt.set_variable(&format!("{prefix}.cachehit"), "true".into());
                rt.set_variable(&cfg.assign_to, v);
            }
            _ => rt.set_variable(&format!("{prefix}.cachehit"), "false".into()),
        }
        Outcome::Continue
    }

    fn variables_set(l: &LookupCache) -> Vec<String> {
        vec![l.assign_to.clone()]
    }
}
