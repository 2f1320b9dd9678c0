//! The key layout.
//!
//! Every key starts with a configurable prefix (default `preflow`). The part in braces
//! is the Redis Cluster hash tag: each operation touches keys of one tag only, so each
//! runs in one cluster slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:gcra:{ID}` | string | SpikeArrest TAT, absolute nanoseconds (Redis clock), `PXAT` the TAT |
//! | `P:quota:{ID}` | hash | fixed window: `e` end (ms), `en` end (ns), `u` used, `x` exceeded; `PEXPIREAT` the end |
//! | `P:roll:{ID}` | hash | rolling window: one field per slot index with its count, `n` newest slot, `x` exceeded |
//! | `P:token:{HEX}` | hash | `rec` token record (JSON), `rev` revocation time; `PEXPIREAT` the token expiry |
//! | `P:code:{HEX}` | hash | `rec` code record (JSON), `used` flag; `PEXPIREAT` the code expiry |
//! | `P:grant:{HEX}` | set | digests (hex) of the tokens of one grant; expires with its last token |
//! | `P:throttle:{KEY}` | hash | failed client authentications of one throttle key: `f` count, `l` last failure, `w` wait until (seconds); `EXPIREAT` when forgotten |
//! | `P:throttle-key` | string | the MAC key (hex) under which every instance derives throttle keys, created once (`SET NX`) |
//! | `P:kv:{KV}` | string | one key-value entry ([`preflow::KvOp`]); `PXAT` its expiry |
//! | `P:{registry}:developers`, `…:products`, `…:apps`, `…:credentials` | hash | registry records (JSON) by id |
//!
//! `ID` is the rate-limit key of the operation ([`preflow_ratelimit::StoreOp::key`]),
//! `HEX` the SHA-256 digest of a token or code (or a grant id) in hexadecimal, `KEY` a
//! [`preflow_oauth::ThrottleKey`] in hexadecimal (a keyed digest, never a client id),
//! `KV` the SHA-256 digest (hex) of the entry's namespace (length-prefixed) and key: one
//! key per entry, spread over the slots, whatever characters (braces included) the
//! namespace and key hold.

use preflow_oauth::{GrantId, ThrottleKey, TokenHash};

/// Builds the keys of one deployment (one prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        KeyLayout::new("preflow")
    }
}

/// Parses lowercase or uppercase hexadecimal into 32 bytes.
pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|()| out)
}

impl KeyLayout {
    /// A layout whose keys start with `prefix` and a colon.
    pub fn new(prefix: impl Into<String>) -> Self {
        KeyLayout {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The SpikeArrest key of a rate-limit identifier.
    pub fn gcra(&self, id: &str) -> String {
        format!("{}:gcra:{{{id}}}", self.prefix)
    }

    /// The fixed-window Quota key of a rate-limit identifier.
    pub fn quota(&self, id: &str) -> String {
        format!("{}:quota:{{{id}}}", self.prefix)
    }

    /// The rolling-window Quota key of a rate-limit identifier.
    pub fn rolling(&self, id: &str) -> String {
        format!("{}:roll:{{{id}}}", self.prefix)
    }

    /// The key of a token record.
    pub fn token(&self, hash: &TokenHash) -> String {
        format!("{}:token:{{{}}}", self.prefix, hex::encode(hash.0))
    }

    /// The key of an authorization-code record.
    pub fn code(&self, hash: &TokenHash) -> String {
        format!("{}:code:{{{}}}", self.prefix, hex::encode(hash.0))
    }

    /// The key of the set of tokens of a grant.
    pub fn grant(&self, grant: &GrantId) -> String {
        format!("{}:grant:{{{}}}", self.prefix, hex::encode(grant.0))
    }

    /// The key of a client-authentication throttle entry.
    pub fn throttle(&self, key: &ThrottleKey) -> String {
        format!("{}:throttle:{{{}}}", self.prefix, hex::encode(key.0))
    }

    /// The key holding the throttle's shared MAC key.
    pub fn throttle_mac_key(&self) -> String {
        format!("{}:throttle-key", self.prefix)
    }

    /// The key of a key-value entry.
    pub fn kv(&self, namespace: &str, key: &str) -> String {
        let len = u64::try_from(namespace.len()).unwrap_or(u64::MAX);
        let mut named = Vec::with_capacity(8 + namespace.len() + key.len());
        named.extend_from_slice(&len.to_be_bytes());
        named.extend_from_slice(namespace.as_bytes());
        named.extend_from_slice(key.as_bytes());
        format!(
            "{}:kv:{{{}}}",
            self.prefix,
            hex::encode(TokenHash::of(&named).0)
        )
    }

    /// The key of one registry table: `developers`, `products`, `apps` or `credentials`.
    pub fn registry(&self, table: &str) -> String {
        format!("{}:{{registry}}:{table}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = TokenHash::of(b"x");
        assert_eq!(unhex32(&hex::encode(h.0)), Some(h.0));
        assert_eq!(hex::encode(h.0), h.to_hex());
        assert_eq!(unhex32("zz"), None);
    }

    #[test]
    fn keys_carry_hash_tags() {
        let k = KeyLayout::new("p");
        assert_eq!(k.gcra("app-1"), "p:gcra:{app-1}");
        assert_eq!(k.registry("apps"), "p:{registry}:apps");
        assert!(k.token(&TokenHash::of(b"t")).starts_with("p:token:{"));
        let entry = k.kv("kvm:{o/e/p}:{map}", "key");
        assert!(entry.starts_with("p:kv:{") && entry.ends_with('}'));
        assert_eq!(entry.matches('{').count(), 1);
        // The namespace is length-prefixed: moving a colon between the parts changes the key.
        assert_ne!(k.kv("a:b", "c"), k.kv("a", "b:c"));
    }
}
