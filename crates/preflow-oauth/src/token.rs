//! Token and authorization-code records: what the store keeps about each value (never
//! the value itself, only its SHA-256 digest as the key).

use std::sync::Arc;

use rand::RngCore as _;

/// An OAuth 2.0 grant type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GrantType {
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
    /// `password` (RFC 6749 §4.3); off unless enabled, RFC 9700 §2.4.
    Password,
    /// `authorization_code` (RFC 6749 §4.1).
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 §6).
    RefreshToken,
}

impl GrantType {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::Password => "password",
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
        }
    }

    /// Parses a registered name (case-sensitive, as RFC 6749 values are).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_credentials" => Some(Self::ClientCredentials),
            "password" => Some(Self::Password),
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

/// Whether a record is an access token or a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TokenKind {
    /// An access token.
    Access,
    /// A refresh token.
    Refresh,
}

/// Identifies one grant: every token issued from one authorization (a code, a
/// client-credentials request, and all refreshes after it) shares it, so the whole
/// family can be revoked at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantId(pub [u8; 16]);

impl GrantId {
    /// A random grant id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        Self(b)
    }
}

/// What is stored about an access or refresh token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    /// Access or refresh.
    pub kind: TokenKind,
    /// Client id (consumer key) of the credential the token was issued to.
    pub client_id: Arc<str>,
    /// Id of the app.
    pub app_id: Arc<str>,
    /// Name of the app.
    pub app_name: Arc<str>,
    /// Email of the app's developer.
    pub developer_email: Arc<str>,
    /// Products approved on the credential at issue time (`api_product_list`).
    pub products: Arc<[Arc<str>]>,
    /// Granted scope, space-separated (possibly empty).
    pub scope: Arc<str>,
    /// Grant type the token was issued by.
    pub grant_type: GrantType,
    /// Resource owner (password and authorization-code grants).
    pub username: Option<Arc<str>>,
    /// Issue time, seconds since the epoch.
    pub issued_at: u64,
    /// Expiry, seconds since the epoch; `None` never expires.
    pub expires_at: Option<u64>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<u64>,
    /// Grant family.
    pub grant_id: GrantId,
    /// How many times the grant has been refreshed.
    pub refresh_count: u32,
    /// Custom attributes (`accesstoken.{name}`).
    pub attributes: Arc<[(String, String)]>,
}

impl TokenRecord {
    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }

    /// Seconds left at `now`; `None` for a token that never expires.
    pub fn expires_in(&self, now: u64) -> Option<u64> {
        self.expires_at.map(|e| e.saturating_sub(now))
    }

    /// Whether the token is neither expired nor revoked at `now`.
    pub fn is_active(&self, now: u64) -> bool {
        self.revoked_at.is_none() && !self.is_expired(now)
    }

    /// Product names.
    pub fn product_names(&self) -> impl Iterator<Item = &str> {
        self.products.iter().map(|p| &**p)
    }
}

/// What is stored about an authorization code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeRecord {
    /// Client the code was issued to.
    pub client_id: String,
    /// Redirect URI given in the authorization request, which the token request must
    /// repeat exactly.
    pub redirect_uri: Option<String>,
    /// Granted scope, space-separated.
    pub scope: String,
    /// PKCE S256 code challenge.
    pub code_challenge: Option<String>,
    /// Resource owner who authorized the client.
    pub username: Option<String>,
    /// Issue time.
    pub issued_at: u64,
    /// Expiry (at most ten minutes after issue).
    pub expires_at: u64,
    /// Grant family of the tokens this code issues.
    pub grant_id: GrantId,
}
