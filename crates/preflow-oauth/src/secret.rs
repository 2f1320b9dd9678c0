//! Random values, secret hashing and constant-time comparison.
//!
//! Two kinds of secret exist:
//!
//! * **Generated** secrets, tokens and codes carry at least 128 (by default 256) random bits
//!   from a cryptographically secure generator. Guessing a preimage of their SHA-256 digest
//!   is as hard as guessing the value itself, so a fast hash loses nothing, and it keeps
//!   the token endpoint cheap (a slow hash per request would be a denial-of-service lever).
//! * **Custom** secrets are chosen by people and may be short or guessable, so they are
//!   stored as an Argon2id password hash, which makes offline guessing expensive.
//!
//! Plaintext values are never stored; they are returned once, when created.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::RegistryError;
use std::hash::{BuildHasher, Hasher};

/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 of a message that pads into one 64-byte block (at most 55 bytes: every token
/// this crate issues), with the crate's compression function and without its streaming
/// buffer, which is a third of the cost at this size. `None` for longer messages.
fn one_block_sha256(value: &[u8]) -> Option<[u8; 32]> {
    let len = value.len();
    if len > 55 {
        return None;
    }
    let mut block = [0u8; 64];
    block.get_mut(..len)?.copy_from_slice(value);
    *block.get_mut(len)? = 0x80;
    let bits = u64::try_from(len).ok()?.checked_mul(8)?;
    block.get_mut(56..)?.copy_from_slice(&bits.to_be_bytes());
    let mut state = SHA256_IV;
    sha2::compress256(&mut state, &[block.into()]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Some(out)
}

/// Fewest random bytes a generated token may carry (128 bits, RFC 6749 §10.10).
pub const MIN_TOKEN_BYTES: usize = 16;
/// Default random bytes of generated tokens, secrets and codes (256 bits).
pub const DEFAULT_TOKEN_BYTES: usize = 32;
/// Most random bytes a generated token may carry.
pub const MAX_TOKEN_BYTES: usize = 64;

/// A SHA-256 digest of a token, authorization code or generated secret: the only form in
/// which these values are stored.
#[derive(Clone, Copy, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl PartialEq for TokenHash {
    /// Byte equality as two 16-byte compares in line: every token lookup ends with this
    /// check, where the derived version calls `memcmp`.
    fn eq(&self, other: &Self) -> bool {
        let (a, _) = self.0.as_chunks::<16>();
        let (b, _) = other.0.as_chunks::<16>();
        a.iter().zip(b).fold(0u128, |diff, (x, y)| {
            diff | (u128::from_ne_bytes(*x) ^ u128::from_ne_bytes(*y))
        }) == 0
    }
}

impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The digest is uniformly distributed: eight of its bytes are a good hash.
        let mut first = [0u8; 8];
        first.copy_from_slice(self.0.get(..8).unwrap_or(&[0u8; 8]));
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl TokenHash {
    /// Hashes a token value with SHA-256.
    pub fn of(value: &[u8]) -> Self {
        one_block_sha256(value).map_or_else(|| Self(Sha256::digest(value).into()), Self)
    }

    /// Compares two digests in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }

    /// The digest as lowercase hexadecimal (handy as a key in a remote store).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix is enough to tell digests apart in logs.
        let hex = self.to_hex();
        write!(f, "TokenHash({}…)", hex.get(..12).unwrap_or(""))
    }
}

/// Generates `bytes` random bytes from the thread-local CSPRNG (ChaCha, seeded from the
/// operating system) and encodes them base64url without padding, so that the value uses
/// only `[A-Za-z0-9_-]`, which every form encoder and every bearer transport leaves intact.
pub fn random_token(bytes: usize) -> String {
    let n = bytes.clamp(MIN_TOKEN_BYTES, MAX_TOKEN_BYTES);
    let mut buf = [0u8; MAX_TOKEN_BYTES];
    let slice = buf.get_mut(..n).unwrap_or(&mut []);
    rand::rng().fill_bytes(slice);
    URL_SAFE_NO_PAD.encode(slice)
}

/// Cost parameters of the Argon2id hash used for custom secrets and resource-owner
/// passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Parallelism.
    pub parallelism: u32,
}

impl Default for PasswordHashCost {
    /// OWASP's Argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl PasswordHashCost {
    /// A deliberately cheap setting for tests only. Never use it in production.
    pub fn insecure_for_tests() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, RegistryError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| RegistryError::PasswordHash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// How a secret is stored.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SecretHash {
    /// SHA-256 of a generated high-entropy secret.
    Sha256(TokenHash),
    /// An Argon2id PHC string of a custom secret.
    Argon2(String),
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sha256(_) => f.write_str("SecretHash::Sha256(…)"),
            Self::Argon2(_) => f.write_str("SecretHash::Argon2(…)"),
        }
    }
}

impl SecretHash {
    /// Hashes a generated secret with SHA-256.
    pub fn generated(secret: &str) -> Self {
        Self::Sha256(TokenHash::of(secret.as_bytes()))
    }

    /// Hashes a custom secret with Argon2id and a random salt.
    pub fn custom(secret: &str, cost: PasswordHashCost) -> Result<Self, RegistryError> {
        let mut salt_bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut salt_bytes);
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| RegistryError::PasswordHash(e.to_string()))?;
        let hash = cost
            .argon2()?
            .hash_password(secret.as_bytes(), &salt)
            .map_err(|e| RegistryError::PasswordHash(e.to_string()))?;
        Ok(Self::Argon2(hash.to_string()))
    }

    /// Checks a presented secret. SHA-256 digests are compared in constant time; Argon2
    /// verification compares its output in constant time internally.
    pub fn verify(&self, presented: &[u8]) -> bool {
        match self {
            Self::Sha256(stored) => stored.ct_eq(&TokenHash::of(presented)),
            Self::Argon2(phc) => {
                #[cfg(test)]
                ARGON2_VERIFICATIONS.with(|c| c.set(c.get() + 1));
                match PasswordHash::new(phc) {
                    Ok(parsed) => Argon2::default()
                        .verify_password(presented, &parsed)
                        .is_ok(),
                    Err(_) => false,
                }
            }
        }
    }
}

/// Hasher for keys that are already uniformly random (token digests, grant ids): it
/// uses the 64 bits the key writes, saving a SipHash round per lookup.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// [`BuildHasher`] of [`DigestHasher`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestState;

impl BuildHasher for DigestState {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// Equalises the work done for an unknown client id with the work done for a known one
/// holding a generated secret, so timing does not reveal which ids exist.
pub(crate) fn dummy_verify(presented: &[u8]) {
    let dummy = TokenHash([0u8; 32]);
    let _ = std::hint::black_box(dummy.ct_eq(&TokenHash::of(presented)));
}

#[cfg(test)]
thread_local! {
    /// Argon2id verifications done on this thread (the rejection-work tests read it).
    pub(crate) static ARGON2_VERIFICATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// PKCE S256 (RFC 7636 §4.6): `BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge`,
/// compared in constant time.
pub(crate) fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.len() == challenge.len() && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn token_hash_is_sha256(value in proptest::collection::vec(proptest::num::u8::ANY, 0..130)) {
            let want: [u8; 32] = Sha256::digest(&value).into();
            proptest::prop_assert_eq!(TokenHash::of(&value).0, want);
        }

        #[test]
        fn token_hash_equality_is_byte_equality(
            a in proptest::array::uniform32(proptest::num::u8::ANY),
            flips in proptest::collection::vec((0usize..32, 1u8..=255), 0..3),
        ) {
            // Equal digests, and digests differing in one to a few bytes at any place.
            let mut b = a;
            for (at, x) in flips {
                if let Some(byte) = b.get_mut(at) {
                    *byte ^= x;
                }
            }
            proptest::prop_assert_eq!(TokenHash(a) == TokenHash(b), a == b);
            proptest::prop_assert!(TokenHash(a) == TokenHash(a));
        }
    }

    #[test]
    fn token_hash_matches_the_fips_examples() {
        // FIPS 180-4 examples: "abc" (one block) and the 56-byte message (two blocks).
        assert_eq!(
            TokenHash::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            TokenHash::of(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_hex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            TokenHash::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn random_tokens_are_base64url_and_long_enough() {
        let t = random_token(DEFAULT_TOKEN_BYTES);
        assert_eq!(t.len(), 43);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(t, random_token(DEFAULT_TOKEN_BYTES));
        assert_eq!(random_token(1).len(), 22, "clamped to 128 bits");
    }

    #[test]
    fn secret_hashes_verify() {
        let g = SecretHash::generated("abc");
        assert!(g.verify(b"abc"));
        assert!(!g.verify(b"abd"));
        let c =
            SecretHash::custom("p:a+s s%w/o=rd&~", PasswordHashCost::insecure_for_tests()).unwrap();
        assert!(c.verify(b"p:a+s s%w/o=rd&~"));
        assert!(!c.verify(b"p:a+s s%w/o=rd&"));
    }

    #[test]
    fn pkce_rfc7636_appendix_b() {
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "x",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
