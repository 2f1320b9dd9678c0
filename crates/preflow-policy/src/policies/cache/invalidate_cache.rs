//! `<InvalidateCache>`: removes cached entries.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{COMMON, CacheCommon, common, key_of, resource};

/// `<InvalidateCache>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct InvalidateCache {
    /// Key, scope and resource.
    pub common: CacheCommon,
    /// `<PurgeChildEntries>` (default false): remove every entry under the key's prefix.
    pub purge_child_entries: bool,
}

fn invalidate_cache(cx: &mut Cx<'_>, el: &Element) -> InvalidateCache {
    let mut known = COMMON.to_vec();
    known.push("PurgeChildEntries");
    cx.known_policy(el, &known);
    InvalidateCache {
        common: common(cx, el),
        purge_child_entries: cx.child_bool(el, "PurgeChildEntries", false),
    }
}

/// The InvalidateCache policy type.
#[derive(Debug)]
pub(crate) struct InvalidateCachePolicy;

impl PolicyType for InvalidateCachePolicy {
    type Config = InvalidateCache;
    type Compiled = (String, InvalidateCache);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> InvalidateCache {
        invalidate_cache(cx, el)
    }

    fn compile(
        config: &InvalidateCache,
        cx: &BuildCx<'_>,
    ) -> Result<(String, InvalidateCache), CompileError> {
        Ok((cx.name.to_owned(), config.clone()))
    }

    fn run<R: Runtime>(c: &(String, InvalidateCache), rt: &mut R) -> Outcome {
        let (name, cfg) = (c.0.as_str(), &c.1);
        let _ = name;
        let key = match key_of(rt, &cfg.common, &[]) {
            Ok(k) => k,
            Err(f) => return Outcome::Fault(*f),
        };
        rt.env()
            .resources
            .cache
            .invalidate(resource(&cfg.common), &key, cfg.purge_child_entries);
        Outcome::Continue
    }
}
