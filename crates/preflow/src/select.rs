//! Indexes built once per gateway so that choosing the API proxy and the conditional flow
//! of a request does not scan every base path or every flow.
//!
//! * [`BaseTrie`]: base paths in a segment trie. Apigee base paths match on segment
//!   boundaries (`/v1/api` serves `/v1/api` and `/v1/api/…`, not `/v1/apix`), so the
//!   deepest base path that serves a request is found by walking the request path's
//!   segments: one hash lookup per segment of the path, whatever the number of proxies.
//!   Building it is linear in the total length of the base paths.
//! * [`FlowIndex`]: the conditional flows of an endpoint bucketed by the first path
//!   segment of their guard's literal prefix. A request only considers the flows of its
//!   own first segment and the flows no bucket holds, still in declaration order, so the
//!   first matching flow is the one a scan would find.

use std::collections::HashMap;

use foldhash::fast::FixedState;

/// A base path served, with the proxy endpoint serving it.
#[derive(Debug)]
pub(crate) struct Base {
    pub path: String,
    pub bundle: usize,
    pub endpoint: usize,
    /// The endpoint's virtual hosts (lower case); empty: every virtual host.
    pub hosts: Vec<String>,
}

impl Base {
    /// Whether it serves on virtual host `vhost` (`None`: the host does not tell, every
    /// endpoint serves).
    pub fn serves_on(&self, vhost: Option<&str>) -> bool {
        self.hosts.is_empty() || vhost.is_none_or(|v| self.hosts.iter().any(|h| h == v))
    }

    /// Whether a request could reach both: their virtual hosts overlap.
    pub fn overlaps(&self, other: &Base) -> bool {
        self.hosts.is_empty()
            || other.hosts.is_empty()
            || self.hosts.iter().any(|h| other.hosts.contains(h))
    }
}

/// A hash map with a fixed fast hash: keys are base path segments and flow prefixes of
/// the gateway's own bundles, not attacker-chosen keys (lookups of request segments
/// cannot add entries).
type Map<V> = HashMap<Box<str>, V, FixedState>;

/// One node of the [`BaseTrie`]: the base paths ending here and the children by segment.
#[derive(Debug, Default)]
struct Node {
    /// Indices into the gateway's base list, in declaration order.
    bases: Vec<usize>,
    children: Map<Node>,
}

/// The base paths of a gateway as a segment trie.
#[derive(Debug, Default)]
pub(crate) struct BaseTrie {
    root: Node,
}

/// `rest` cut at its first `/`: the segment before it and what follows it (`None` when
/// there is no `/`). A byte scan: `str::split` with a `char` pattern costs several times
/// more on the short segments of request paths.
fn cut_segment(rest: &str) -> (&str, Option<&str>) {
    match rest.bytes().position(|b| b == b'/') {
        // `/` is ASCII, so both cuts fall on character boundaries.
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i + 1..)),
        None => (rest, None),
    }
}

/// The segments of a normalised path or base path (`/` has none).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').filter(|_| !rest.is_empty())
}

impl BaseTrie {
    /// Builds the trie of `bases`. Returns the index of the first base that would serve
    /// the same requests as a later one (the same path on overlapping virtual hosts) with
    /// that later one's index.
    pub(crate) fn build(bases: &[Base]) -> Result<Self, (usize, usize)> {
        let mut trie = BaseTrie::default();
        for (i, base) in bases.iter().enumerate() {
            let mut node = &mut trie.root;
            for seg in segments(&base.path) {
                node = node.children.entry(seg.into()).or_default();
            }
            // Only the bases of this one path are compared: virtual-host variants.
            if let Some(&other) = node
                .bases
                .iter()
                .find(|&&o| bases.get(o).is_some_and(|o| o.overlaps(base)))
            {
                return Err((other, i));
            }
            node.bases.push(i);
        }
        Ok(trie)
    }

    /// The deepest base serving `path` (normalised) on virtual host `vhost`: the index
    /// into the base list, and the length of the base path within `path`.
    pub(crate) fn find(
        &self,
        bases: &[Base],
        path: &str,
        vhost: Option<&str>,
    ) -> Option<(usize, usize)> {
        let serving = |node: &Node| {
            node.bases
                .iter()
                .copied()
                .find(|&i| bases.get(i).is_some_and(|b| b.serves_on(vhost)))
        };
        let mut best = serving(&self.root).map(|i| (i, 0));
        let mut node = &self.root;
        // The byte offset in `path` where the segments walked so far end.
        let mut end = 0;
        let mut rest = path.strip_prefix('/')?;
        loop {
            let (seg, tail) = cut_segment(rest);
            let Some(child) = node.children.get(seg) else {
                break;
            };
            node = child;
            end += 1 + seg.len();
            if let Some(i) = serving(node) {
                best = Some((i, end));
            }
            match tail {
                Some(t) => rest = t,
                None => break,
            }
        }
        best
    }
}

/// The conditional flows of one endpoint, bucketed for selection.
#[derive(Debug, Default)]
pub(crate) struct FlowIndex {
    /// Flows whose guard's prefix names a whole first segment, by that segment.
    by_segment: Map<Box<[usize]>>,
    /// Every other flow (no guard, a prefix within the first segment, an invalid
    /// condition), in order.
    rest: Box<[usize]>,
}

/// The first path segment a prefix fixes completely (`/orders/` and `/orders/x` fix
/// `orders`; `/ord` and `/orders` do not: `/ordersx` starts with them too).
fn whole_first_segment(prefix: &str) -> Option<&str> {
    let rest = prefix.strip_prefix('/')?;
    rest.split_once('/').map(|(seg, _)| seg)
}

/// The first segment of a path suffix (`` for an empty suffix or `/`).
fn first_segment(suffix: &str) -> Option<&str> {
    Some(cut_segment(suffix.strip_prefix('/')?).0)
}

impl FlowIndex {
    /// Buckets flows by the path prefix each one's condition requires (in flow order;
    /// `None`: no condition, an invalid one, or one without a prefix).
    pub(crate) fn build<'a>(prefixes: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut by_segment: HashMap<Box<str>, Vec<usize>, FixedState> = HashMap::default();
        let mut rest = Vec::new();
        for (i, prefix) in prefixes.into_iter().enumerate() {
            let seg = prefix.and_then(whole_first_segment);
            match seg {
                Some(s) => by_segment.entry(s.into()).or_default().push(i),
                None => rest.push(i),
            }
        }
        FlowIndex {
            by_segment: by_segment
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            rest: rest.into_boxed_slice(),
        }
    }

    /// The flows a request with path suffix `suffix` may select, in declaration order,
    /// starting at flow `from`. Flows left out have a guard that fails for `suffix`.
    pub(crate) fn candidates<'a>(
        &'a self,
        suffix: &str,
        from: usize,
    ) -> impl Iterator<Item = usize> + 'a {
        let bucket: &[usize] = first_segment(suffix)
            .and_then(|s| self.by_segment.get(s))
            .map_or(&[], |b| &b[..]);
        let start = |list: &'a [usize]| {
            let at = list.partition_point(|&i| i < from);
            list.get(at..).unwrap_or(&[]).iter().copied().peekable()
        };
        let (mut a, mut b) = (start(bucket), start(&self.rest));
        // Two ascending lists merged.
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(&x), Some(&y)) if x < y => a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(path: &str, hosts: &[&str]) -> Base {
        Base {
            path: path.into(),
            bundle: 0,
            endpoint: 0,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn deepest_base_on_segment_boundaries() {
        let bases = [
            base("/", &[]),
            base("/v1", &[]),
            base("/v1/api", &[]),
            base("/v1/api/x", &["internal"]),
        ];
        let trie = BaseTrie::build(&bases).unwrap();
        let find = |p: &str, v: Option<&str>| trie.find(&bases, p, v);
        assert_eq!(find("/v1/api/orders", None), Some((2, 7)));
        assert_eq!(find("/v1/api", None), Some((2, 7)));
        assert_eq!(find("/v1/api/", None), Some((2, 7)));
        assert_eq!(find("/v1/apix", None), Some((1, 3)));
        assert_eq!(find("/v2", None), Some((0, 0)));
        assert_eq!(find("/", None), Some((0, 0)));
        assert_eq!(find("/v1/api/x/y", Some("internal")), Some((3, 9)));
        assert_eq!(find("/v1/api/x/y", Some("public")), Some((2, 7)));
        let no_root = [base("/v1", &[])];
        let trie = BaseTrie::build(&no_root).unwrap();
        assert_eq!(trie.find(&no_root, "/v2/x", None), None);
        assert_eq!(trie.find(&no_root, "/v1/x", None), Some((0, 3)));
    }

    #[test]
    fn same_path_on_overlapping_hosts_is_a_duplicate() {
        let ok = [base("/a", &["x"]), base("/a", &["y"])];
        assert!(BaseTrie::build(&ok).is_ok());
        let dup = [base("/a", &["x"]), base("/b", &[]), base("/a", &[])];
        assert_eq!(BaseTrie::build(&dup).unwrap_err(), (0, 2));
    }

    #[test]
    fn segments_of_prefixes() {
        assert_eq!(whole_first_segment("/orders/"), Some("orders"));
        assert_eq!(whole_first_segment("/orders/x"), Some("orders"));
        assert_eq!(whole_first_segment("/orders"), None);
        assert_eq!(whole_first_segment("orders/"), None);
        assert_eq!(first_segment("/orders/1"), Some("orders"));
        assert_eq!(first_segment("/orders"), Some("orders"));
        assert_eq!(first_segment(""), None);
        assert_eq!(first_segment("/"), Some(""));
    }
}

#[cfg(test)]
mod oracle {
    use super::*;
    use crate::path::strip_base;

    /// The scan the trie replaces: longest base path first, the first that serves.
    fn scan(bases: &[Base], path: &str, vhost: Option<&str>) -> Option<(usize, usize)> {
        let mut order: Vec<usize> = (0..bases.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(bases[i].path.len()));
        order.into_iter().find_map(|i| {
            let b = &bases[i];
            if !b.serves_on(vhost) {
                return None;
            }
            strip_base(path, &b.path).map(|s| (i, path.len() - s.len()))
        })
    }

    proptest::proptest! {
        #[test]
        fn trie_finds_what_the_scan_finds(
            raw in proptest::collection::vec(("(/[ab]{0,2}){0,3}", proptest::option::of("[xy]")), 1..8),
            path in "(/[ab]{0,2}){1,4}/?",
            vhost in proptest::option::of("[xy]"),
        ) {
            let mut bases: Vec<Base> = Vec::new();
            for (p, h) in raw {
                let b = Base {
                    path: crate::path::normalize_base(&p),
                    bundle: 0,
                    endpoint: 0,
                    hosts: h.into_iter().collect(),
                };
                if !bases.iter().any(|o| o.path == b.path && o.overlaps(&b)) {
                    bases.push(b);
                }
            }
            bases.sort_by_key(|b| std::cmp::Reverse(b.path.len()));
            let Ok(path) = crate::path::normalize(&path) else { return Ok(()) };
            let trie = BaseTrie::build(&bases).unwrap();
            proptest::prop_assert_eq!(
                trie.find(&bases, &path, vhost.as_deref()),
                scan(&bases, &path, vhost.as_deref())
            );
        }
    }
}
