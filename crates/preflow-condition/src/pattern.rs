//! Hand-written matchers for `Matches` (whole-string glob) and `MatchesPath` (path
//! expression), compiled once from the pattern literal.
//!
//! Both languages reduce to a sequence of literal bytes and two kinds of star: [`Tok::Any`]
//! (regex `.*`) and [`Tok::Seg`] (regex `[^/]*`, one path element). A compiled pattern
//! keeps its literal prefix and suffix apart, so the common shapes (`/v1/orders/**`,
//! `/pets/*`, a plain literal) are decided by a prefix/suffix test and at most one scan.
//! What remains between the first and the last star is matched by a two-pointer algorithm
//! that remembers where the last star of each kind started and never recurses: O(n·m) in
//! the worst case, linear on typical paths, and no allocation.
//!
//! The matchers are deliberately not built on the `regex` crate: the property tests and the
//! fuzz target compare them against the regex translation that `spec/conditions.md` §4.4
//! gives as the reference, which makes that translation an independent oracle.

/// One element of a compiled glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// A literal byte.
    Byte(u8),
    /// Zero or more bytes other than `/` (regex `[^/]*`).
    Seg,
    /// Zero or more bytes of any kind (regex `.*`).
    Any,
}

/// Why a pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// A `{` in a path expression without a closing `}` in the same path element. The
    /// offset is the byte position of the `{` in the pattern.
    UnclosedBrace(usize),
}

/// A compiled glob: `prefix`, then `middle` (empty, or starting and ending with a star), then
/// `suffix`. With an empty `middle` the pattern is the literal `prefix` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    prefix: Box<str>,
    middle: Box<[Tok]>,
    suffix: Box<str>,
}

impl Glob {
    /// Compiles a `Matches` / `Like` pattern: `*` is any run of characters (`/` included),
    /// `%c` is the literal `c`, a trailing lone `%` is a literal `%`, everything else is
    /// literal. The whole value must match, case-sensitively.
    pub(crate) fn matches(pattern: &str) -> Glob {
        let mut toks = Vec::with_capacity(pattern.len());
        let mut bytes = pattern.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'*' => toks.push(Tok::Any),
                b'%' => push_escaped(&mut toks, &mut bytes),
                _ => toks.push(Tok::Byte(b)),
            }
        }
        Glob::from_toks(&toks)
    }

    /// Compiles a `MatchesPath` / `LikePath` pattern by the reference algorithm of
    /// `spec/conditions.md` §4.4: split on `/` keeping empty elements; an element that is
    /// exactly `**` matches anything (`.*`); an element that is exactly `*` or `{name}`
    /// matches one element (`[^/]*`); inside any other element `**` is `.*`, `*` is
    /// `[^/]*`, `{name}` is `[^/]*`, `%c` is the literal `c` and every other character is
    /// literal. A `{name}` ends at the first `}` of its element.
    ///
    /// # Errors
    /// [`PatternError::UnclosedBrace`] when a `{` has no `}` after it in its element.
    pub(crate) fn matches_path(pattern: &str) -> Result<Glob, PatternError> {
        let mut toks = Vec::with_capacity(pattern.len());
        let mut offset = 0usize;
        for (i, piece) in pattern.split('/').enumerate() {
            if i > 0 {
                toks.push(Tok::Byte(b'/'));
            }
            compile_path_piece(piece, offset, &mut toks)?;
            offset = offset.saturating_add(piece.len()).saturating_add(1);
        }
        Ok(Glob::from_toks(&toks))
    }

    /// Splits off the literal prefix and suffix and merges runs of stars.
    fn from_toks(toks: &[Tok]) -> Glob {
        // Adjacent stars collapse: `.*` absorbs `[^/]*` on either side.
        let mut merged: Vec<Tok> = Vec::with_capacity(toks.len());
        for &t in toks {
            match (merged.last_mut(), t) {
                (Some(last @ (Tok::Seg | Tok::Any)), Tok::Seg | Tok::Any) => {
                    if t == Tok::Any {
                        *last = Tok::Any;
                    }
                }
                _ => merged.push(t),
            }
        }
        let first_star = merged.iter().position(|t| !matches!(t, Tok::Byte(_)));
        let last_star = merged.iter().rposition(|t| !matches!(t, Tok::Byte(_)));
        let (prefix, middle, suffix) = match (first_star, last_star) {
            (Some(first), Some(last)) => {
                let (head, rest) = merged.split_at_checked(first).unwrap_or((&[], &[]));
                let (mid, tail) = rest
                    .split_at_checked(last.saturating_sub(first).saturating_add(1))
                    .unwrap_or((rest, &[]));
                (head, mid, tail)
            }
            _ => (merged.as_slice(), &[][..], &[][..]),
        };
        Glob {
            prefix: literal(prefix),
            middle: middle.into(),
            suffix: literal(suffix),
        }
    }

    /// The literal a value must begin with when that is the whole pattern: the literal
    /// prefix, then one run of any characters, and nothing after it (`/v1/**`, `abc*`).
    pub(crate) fn as_prefix(&self) -> Option<&str> {
        (matches!(*self.middle, [Tok::Any]) && self.suffix.is_empty()).then_some(&*self.prefix)
    }

    /// Whether `value` matches the whole pattern.
    pub(crate) fn is_match(&self, value: &str) -> bool {
        let v = value.as_bytes();
        if self.middle.is_empty() {
            return bytes_eq(v, self.prefix.as_bytes());
        }
        let (prefix, suffix) = (self.prefix.as_bytes(), self.suffix.as_bytes());
        if v.len() < prefix.len() + suffix.len() {
            return false;
        }
        let Some((head, rest)) = v.split_at_checked(prefix.len()) else {
            return false;
        };
        let Some((mid, tail)) = rest.split_at_checked(rest.len().saturating_sub(suffix.len()))
        else {
            return false;
        };
        if !bytes_eq(head, prefix) || !bytes_eq(tail, suffix) {
            return false;
        }
        match *self.middle {
            [Tok::Any] => true,
            [Tok::Seg] => !mid.contains(&b'/'),
            _ => match_stars(&self.middle, mid),
        }
    }
}

/// Byte-slice equality without a call into the C library.
///
/// Conditions compare short strings (verbs, path prefixes, header values). Calling the C
/// library's `memcmp` for them costs more than the comparison itself, and some of its
/// vector variants take a slow path when a masked load crosses a page boundary, which
/// made a 12-byte prefix test cost over 100 ns on a benchmark host. Up to 32 bytes, the
/// first and last words of the length's size class are compared (they overlap when the
/// length lies between sizes), so a short string costs two loads a side and no loop;
/// longer ones go eight bytes at a time.
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        0..4 => a.iter().zip(b).fold(true, |eq, (x, y)| eq & (x == y)),
        4..8 => ends::<4>(a) == ends::<4>(b),
        8..16 => ends::<8>(a) == ends::<8>(b),
        16..=32 => ends::<16>(a) == ends::<16>(b),
        _ => {
            let mut wa = a.chunks_exact(8);
            let mut wb = b.chunks_exact(8);
            let words = wa
                .by_ref()
                .zip(wb.by_ref())
                .all(|(x, y)| x.first_chunk::<8>() == y.first_chunk::<8>());
            let rest = wa.remainder().iter().zip(wb.remainder());
            words && rest.fold(true, |eq, (x, y)| eq & (x == y))
        }
    }
}

/// The first and last `N` bytes of `s` (callers pass at least `N` bytes).
#[inline]
fn ends<const N: usize>(s: &[u8]) -> (Option<&[u8; N]>, Option<&[u8; N]>) {
    (s.first_chunk::<N>(), s.last_chunk::<N>())
}

/// Whether `s` begins with `prefix`, compared with [`bytes_eq`].
#[inline]
pub(crate) fn starts_with(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| bytes_eq(head, prefix.as_bytes()))
}

/// The literal text of a run of `Tok::Byte`s. The bytes come from a `&str` split only at
/// ASCII positions, so they are valid UTF-8.
fn literal(toks: &[Tok]) -> Box<str> {
    let bytes: Vec<u8> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Byte(b) => Some(*b),
            Tok::Seg | Tok::Any => None,
        })
        .collect();
    String::from_utf8_lossy(&bytes).into()
}

/// After a `%`: the next character is literal. A `%` that ends the text is itself literal.
/// The escaped character may be multi-byte; all of its bytes are literal.
fn push_escaped(toks: &mut Vec<Tok>, bytes: &mut impl Iterator<Item = u8>) {
    match bytes.next() {
        Some(b) => {
            toks.push(Tok::Byte(b));
            // Continuation bytes of a multi-byte character follow as ordinary literals
            // anyway, since only ASCII bytes are special.
        }
        None => toks.push(Tok::Byte(b'%')),
    }
}

/// One `/`-separated element of a path pattern, starting at byte `offset` of the pattern.
fn compile_path_piece(piece: &str, offset: usize, toks: &mut Vec<Tok>) -> Result<(), PatternError> {
    if piece == "**" {
        toks.push(Tok::Any);
        return Ok(());
    }
    if piece == "*" {
        toks.push(Tok::Seg);
        return Ok(());
    }
    let bytes = piece.as_bytes();
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'*' => {
                if bytes.get(i + 1) == Some(&b'*') {
                    toks.push(Tok::Any);
                    i += 2;
                } else {
                    toks.push(Tok::Seg);
                    i += 1;
                }
            }
            b'%' => {
                match bytes.get(i + 1) {
                    Some(&c) => toks.push(Tok::Byte(c)),
                    None => toks.push(Tok::Byte(b'%')),
                }
                i += 2;
            }
            b'{' => {
                let close = bytes
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|&c| c == b'}'))
                    .ok_or(PatternError::UnclosedBrace(offset.saturating_add(i)))?;
                toks.push(Tok::Seg);
                i += close + 1;
            }
            _ => {
                toks.push(Tok::Byte(b));
                i += 1;
            }
        }
    }
    Ok(())
}

/// Whole-value match of a star pattern (literal bytes, `Seg` and `Any`) against `v`.
///
/// Two-pointer glob matching with one backtrack point per star kind. On a mismatch the
/// last `Seg` star (if it started after the last `Any` star) takes one more byte, unless
/// that byte is `/`; otherwise the last `Any` star takes one more byte and matching resumes
/// after it. Retrying an earlier `Seg` is never needed: between the last `Any` and the
/// current position every `/` of the value must meet a literal `/` of the pattern, so an
/// earlier `Seg` can only shift text within its own element, where the later `Seg`
/// dominates it as in classic single-star globbing. Retrying an earlier `Any` is never
/// needed because the last `Any` can absorb whatever the earlier one would have.
fn match_stars(pat: &[Tok], v: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    // (pattern index after the star, value index where the star's match ends)
    let mut any_back: Option<(usize, usize)> = None;
    let mut seg_back: Option<(usize, usize)> = None;
    while let Some(&c) = v.get(i) {
        match pat.get(p) {
            Some(Tok::Byte(b)) if *b == c => {
                p += 1;
                i += 1;
                continue;
            }
            Some(Tok::Seg) => {
                seg_back = Some((p + 1, i));
                p += 1;
                continue;
            }
            Some(Tok::Any) => {
                any_back = Some((p + 1, i));
                seg_back = None;
                p += 1;
                continue;
            }
            Some(Tok::Byte(_)) | None => {}
        }
        if let Some((sp, si)) = seg_back
            && v.get(si).is_some_and(|&b| b != b'/')
        {
            seg_back = Some((sp, si + 1));
            p = sp;
            i = si + 1;
            continue;
        }
        match any_back {
            Some((ap, ai)) if ai < v.len() => {
                any_back = Some((ap, ai + 1));
                seg_back = None;
                p = ap;
                i = ai + 1;
            }
            _ => return false,
        }
    }
    pat.get(p..)
        .is_some_and(|rest| rest.iter().all(|t| matches!(t, Tok::Seg | Tok::Any)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, value: &str) -> bool {
        Glob::matches(pattern).is_match(value)
    }

    fn mp(pattern: &str, value: &str) -> bool {
        Glob::matches_path(pattern).unwrap().is_match(value)
    }

    #[test]
    fn literal_patterns_compile_to_equality() {
        let g = Glob::matches("/cat");
        assert!(g.middle.is_empty());
        assert_eq!(&*g.prefix, "/cat");
        let g = Glob::matches_path("/a/%{b%}").unwrap();
        assert!(g.middle.is_empty());
        assert_eq!(&*g.prefix, "/a/{b}");
    }

    #[test]
    fn prefix_and_suffix_are_split_off() {
        let g = Glob::matches_path("/v1/orders/**").unwrap();
        assert_eq!(&*g.prefix, "/v1/orders/");
        assert_eq!(&*g.middle, &[Tok::Any]);
        assert_eq!(&*g.suffix, "");
        let g = Glob::matches_path("/a/*/b/**/c").unwrap();
        assert_eq!(&*g.prefix, "/a/");
        assert_eq!(&*g.suffix, "/c");
    }

    #[test]
    fn glob_matches() {
        assert!(m("/cat", "/cat"));
        assert!(!m("/cat", "/cat/paws"));
        assert!(!m("/cat", "/Cat"));
        assert!(m("/*at", "/bat"));
        assert!(m("/*at", "/at"));
        assert!(m("/cat*", "/cat/bird/mouse"));
        assert!(m("/c%*at", "/c*at"));
        assert!(!m("/c%*at", "/cat"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m("%%", "%"));
        assert!(m("a%", "a%"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b*", "xxbxxaxx"));
        assert!(m("a*a*a", "aaa"));
        assert!(!m("a*a*a", "aa"));
        assert!(m("*é*", "café"));
    }

    #[test]
    fn path_matches() {
        assert!(mp("/*/a/", "/x/a/"));
        assert!(mp("/*/a/*", "/y/a/foo"));
        assert!(mp("/*/a/**", "/x/a/b/c/d"));
        assert!(mp("/a/**/feed/**", "/a/b/feed/rss/1234"));
        assert!(!mp("/a/**/feed/**", "/a/feed/rss"));
        assert!(mp("%{user%}", "{user}"));
        assert!(!mp("%{user%}", "user"));
        assert!(mp("/pets/{petId}", "/pets/123"));
        assert!(!mp("/pets/{petId}", "/pets/1/2"));
        assert!(mp("/items/*", "/items/"));
        assert!(!mp("/items/*", "/items"));
        assert!(!mp("/items/*", "/items/foo/bar"));
        assert!(!mp("/items/**", "/items"));
        assert!(mp("/items/**", "/items/"));
        assert!(!mp("/**/india/blr/**", "/india/blr/x"));
        assert!(mp("/**/india/blr/**", "/x/india/blr/y"));
        assert!(mp("**/india/blr**", "/india/blr"));
        assert!(mp("**/india/blr**", "/india/blrfoo"));
        assert!(mp("/", "/"));
        assert!(!mp("/", ""));
        assert!(mp("/OAuthToken(**", "/OAuthToken(1)/Items"));
        assert!(!mp("/OAuthToken(**", "/OAuthToken"));
        assert!(mp("/a*/b", "/abc/b"));
        assert!(!mp("/a*/b", "/a/c/b"));
        assert!(mp("/a/{x}.json", "/a/1.json"));
        assert!(!mp("/a/{x}.json", "/a/1/2.json"));
        assert!(mp("/a/*x*y", "/a/1x2y"));
        assert!(!mp("/a/*x*y", "/a/1x/2y"));
        assert!(mp("**a*b", "q/zzazb"));
        assert!(!mp("**a*b", "q/zza/b"));
        assert!(mp("**a*b", "q/a/b/zzab"));
    }

    #[test]
    fn byte_equality_at_every_length() {
        let a: Vec<u8> = (0..70u8).collect();
        for len in 0..=a.len() {
            let x = &a[..len];
            assert!(bytes_eq(x, x), "{len}");
            for i in 0..len {
                let mut y = x.to_vec();
                y[i] ^= 1;
                assert!(!bytes_eq(x, &y), "{len} differing at {i}");
            }
            if len > 0 {
                assert!(!bytes_eq(x, &a[..len - 1]), "{len}");
            }
        }
        assert!(starts_with("/v1/orders/1", "/v1/orders/"));
        assert!(!starts_with("/v1/order", "/v1/orders/"));
        assert!(starts_with("x", ""));
    }

    #[test]
    fn unbalanced_brace_is_an_error() {
        assert_eq!(
            Glob::matches_path("/v3/SampleTicket/{ticketNumber"),
            Err(PatternError::UnclosedBrace(17))
        );
        assert_eq!(
            Glob::matches_path("/a{/b}"),
            Err(PatternError::UnclosedBrace(2))
        );
        // A stray closing brace is a literal.
        assert!(mp("/a}", "/a}"));
    }

    #[test]
    fn escape_in_path_pattern() {
        assert!(mp("/c%*t", "/c*t"));
        assert!(!mp("/c%*t", "/cat"));
        // The pattern is split on `/` first, so `%` before `/` ends its element literally.
        assert!(mp("/a%/b", "/a%/b"));
    }
}
