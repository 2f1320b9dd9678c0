//! Sessions and CSRF tokens.
//!
//! Every visitor carries one cookie, a random value. Signed-in sessions are kept in this
//! process, keyed by the SHA-256 of that value (a leaked session table names no
//! cookie). The CSRF token of a form is an HMAC of the cookie under a key of this
//! process: nothing is stored for visitors who have not signed in, a token is only valid
//! with its own cookie, and signing in or out (which changes the cookie) invalidates
//! every token issued before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use preflow_oauth::TokenHash;
use preflow_oauth::secret::random_token;
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The name of the portal's cookie.
pub const COOKIE: &str = "preflow_portal";

/// How long a signed-in session lasts without being used.
pub const IDLE: Duration = Duration::from_secs(2 * 3600);

/// How long a signed-in session lasts at most.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

/// The most signed-in sessions kept; the oldest goes when a new one would pass it.
pub const MAX_SESSIONS: usize = 50_000;

#[derive(Debug, Clone)]
struct Session {
    developer: String,
    created: Instant,
    used: Instant,
}

/// The signed-in sessions and the CSRF key.
#[derive(Debug)]
pub struct Sessions {
    key: [u8; 32],
    signed_in: Mutex<HashMap<TokenHash, Session>>,
}

impl Default for Sessions {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            key,
            signed_in: Mutex::new(HashMap::new()),
        }
    }
}

/// A new cookie value (256 random bits).
pub fn new_cookie() -> String {
    random_token(32)
}

/// The portal cookie's value in a `Cookie` header, if any.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// The `Set-Cookie` value for `value`: HttpOnly, SameSite=Lax (a link from elsewhere
/// still arrives signed in; no cross-site POST carries it), Secure over HTTPS.
pub fn set_cookie(value: &str, secure: bool) -> String {
    let mut c = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    c
}

impl Sessions {
    /// The CSRF token of forms shown to the holder of `cookie`.
    pub fn csrf(&self, cookie: &str) -> String {
        // Any key length is valid for HMAC: the fallback is never taken.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(b"csrf\0");
        mac.update(cookie.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token of `cookie` (compared in constant time).
    pub fn csrf_ok(&self, cookie: &str, token: &str) -> bool {
        let expected = self.csrf(cookie);
        !token.is_empty() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }

    /// The developer signed in with `cookie`, if the session is alive (it is kept
    /// alive by this use).
    pub fn developer(&self, cookie: &str, now: Instant) -> Option<String> {
        let mut map = self.signed_in.lock().ok()?;
        let id = TokenHash::of(cookie.as_bytes());
        let alive = map.get(&id).is_some_and(|s| {
            now.duration_since(s.used) < IDLE && now.duration_since(s.created) < ABSOLUTE
        });
        if !alive {
            map.remove(&id);
            return None;
        }
        let s = map.get_mut(&id)?;
        s.used = now;
        Some(s.developer.clone())
    }

    /// Signs `developer` in: returns the new cookie value the session is bound to (a
    /// fresh one, so a cookie planted before sign-in never becomes a session).
    pub fn sign_in(&self, developer: &str, now: Instant) -> String {
        let cookie = new_cookie();
        if let Ok(mut map) = self.signed_in.lock() {
            if map.len() >= MAX_SESSIONS {
                map.retain(|_, s| {
                    now.duration_since(s.used) < IDLE && now.duration_since(s.created) < ABSOLUTE
                });
            }
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
            map.insert(
                TokenHash::of(cookie.as_bytes()),
                Session {
                    developer: developer.to_owned(),
                    created: now,
                    used: now,
                },
            );
        }
        cookie
    }

    /// Ends the session of `cookie`.
    pub fn sign_out(&self, cookie: &str) {
        if let Ok(mut map) = self.signed_in.lock() {
            map.remove(&TokenHash::of(cookie.as_bytes()));
        }
    }
}
