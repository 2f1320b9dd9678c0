//! `<InvalidateCache>`: removes cached entries.

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

use super::{InvalidateCache, key_of, resource};

/// The InvalidateCache policy type.
#[derive(Debug)]
pub(crate) struct InvalidateCachePolicy;

impl PolicyType for InvalidateCachePolicy {
    type Config = InvalidateCache;
    type Compiled = (String, InvalidateCache);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> InvalidateCache {
        super::invalidate_cache(cx, el)
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
