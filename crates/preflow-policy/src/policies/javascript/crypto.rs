//! Digests for the script's `crypto` object: MD5, SHA-1, SHA-256, SHA-512, and their HMACs.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
    m.update(data);
    Some(m.finalize().into_bytes().to_vec())
}

/// The digest of `data` by `alg` (`MD5`, `SHA-1`, `SHA-256`, `SHA-512`, with or without
/// the dash), keyed (HMAC) when `key` is given; `None` for another algorithm.
pub(crate) fn digest(alg: &str, data: &[u8], key: Option<&[u8]>) -> Option<Vec<u8>> {
    let alg: String = alg
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let alg = alg.strip_prefix("HMAC").unwrap_or(&alg);
    match (alg, key) {
        ("MD5", None) => Some(Md5::digest(data).to_vec()),
        ("SHA1", None) => Some(Sha1::digest(data).to_vec()),
        ("SHA256", None) => Some(Sha256::digest(data).to_vec()),
        ("SHA512", None) => Some(Sha512::digest(data).to_vec()),
        ("MD5", Some(k)) => hmac::<Hmac<Md5>>(k, data),
        ("SHA1", Some(k)) => hmac::<Hmac<Sha1>>(k, data),
        ("SHA256", Some(k)) => hmac::<Hmac<Sha256>>(k, data),
        ("SHA512", Some(k)) => hmac::<Hmac<Sha512>>(k, data),
        _ => None,
    }
}
