//! The JWT policies: VerifyJWT, GenerateJWT and DecodeJWT.
//!
//! The configuration is read at load time; [`verify`], [`generate`] and [`decode`] run
//! one policy over a token, a variable lookup and the current time, without I/O. JWKS
//! documents named by `uri` are asked of the host through [`JwtInputs::jwks_for_uri`].
//! Signatures use the `jsonwebtoken` crate (RustCrypto backend); the claim checks are done
//! here so that each failure names the claim, the value found and the value expected.

mod run;

pub(crate) use run::JwtPolicy;

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::xml::Element;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Map, Value};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_LEN: usize = 256 * 1024;

/// Which JWT policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtOperation {
    /// `<VerifyJWT>`.
    Verify,
    /// `<GenerateJWT>`.
    Generate,
    /// `<DecodeJWT>`.
    Decode,
}

/// A signing algorithm of the JWS family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC SHA-256.
    Hs256,
    /// HMAC SHA-384.
    Hs384,
    /// HMAC SHA-512.
    Hs512,
    /// RSA PKCS#1 v1.5 SHA-256.
    Rs256,
    /// RSA PKCS#1 v1.5 SHA-384.
    Rs384,
    /// RSA PKCS#1 v1.5 SHA-512.
    Rs512,
    /// RSA-PSS SHA-256.
    Ps256,
    /// RSA-PSS SHA-384.
    Ps384,
    /// RSA-PSS SHA-512.
    Ps512,
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
}

impl JwtAlgorithm {
    /// Parses a JWS `alg` name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim() {
            "HS256" => Self::Hs256,
            "HS384" => Self::Hs384,
            "HS512" => Self::Hs512,
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            _ => return None,
        })
    }

    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
        }
    }

    /// Whether the algorithm uses a shared secret.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512)
    }

    /// Whether the algorithm uses an elliptic-curve key.
    pub fn is_ec(self) -> bool {
        matches!(self, Self::Es256 | Self::Es384)
    }

    /// Shortest HMAC secret accepted, in bytes (the hash size).
    fn min_secret_len(self) -> usize {
        match self {
            Self::Hs384 => 48,
            Self::Hs512 => 64,
            _ => 32,
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Hs384 => Algorithm::HS384,
            Self::Hs512 => Algorithm::HS512,
            Self::Rs256 => Algorithm::RS256,
            Self::Rs384 => Algorithm::RS384,
            Self::Rs512 => Algorithm::RS512,
            Self::Ps256 => Algorithm::PS256,
            Self::Ps384 => Algorithm::PS384,
            Self::Ps512 => Algorithm::PS512,
            Self::Es256 => Algorithm::ES256,
            Self::Es384 => Algorithm::ES384,
        }
    }
}

/// `<SecretKey encoding>`: the HMAC secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SecretKey {
    /// `<Value ref>`: the secret.
    pub value: Setting<String>,
    /// `encoding`: `utf8` (default), `base64`, `base64url` or `hex`.
    pub encoding: Option<String>,
    /// `<Id ref>`: the `kid` to write (GenerateJWT).
    pub id: Setting<String>,
}

/// Where a JWKS document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `<JWKS ref="var"/>`: the document is the variable's value.
    Variable(String),
    /// `<JWKS>{"keys":[...]}</JWKS>`: the document is written in the policy.
    Literal(String),
    /// `<JWKS uri="..."/>` or `uriRef`: the host supplies the document for the URI.
    Uri(Setting<String>),
}

/// `<PublicKey>` (VerifyJWT).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PublicKey {
    /// `<Value ref>`: a PEM public key.
    pub value: Setting<String>,
    /// `<JWKS>`.
    pub jwks: Option<JwksSource>,
}

/// `<PrivateKey>` (GenerateJWT).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PrivateKey {
    /// `<Value ref>`: a PEM private key (PKCS#8, or PKCS#1 for RSA).
    pub value: Setting<String>,
    /// `<Password ref>`: for encrypted keys (not supported: such keys fail to parse).
    pub password: Setting<String>,
    /// `<Id ref>`: the `kid` to write.
    pub id: Setting<String>,
}

/// The declared type of a claim or header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimType {
    /// `string` (default).
    #[default]
    String,
    /// `number`.
    Number,
    /// `boolean`.
    Boolean,
    /// `map`: a JSON object.
    Map,
}

/// `<Claim name ref type array>` or `<Header name ref type array>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// `name`.
    pub name: String,
    /// `ref` and the literal text.
    pub value: Setting<String>,
    /// `type`.
    pub claim_type: ClaimType,
    /// `array`: the value is a comma-separated list.
    pub array: bool,
}

/// A JWT policy's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Jwt {
    /// Verify, Generate or Decode.
    pub operation: JwtOperation,
    /// Whether the policy is for encrypted JWTs (`<Algorithms>` or `<Type>Encrypted`), which
    /// are not supported: running it fails with `InvalidConfiguration`.
    pub encrypted: bool,
    /// `<Algorithm>`: accepted algorithms (Verify accepts a comma-separated list).
    pub algorithms: Vec<JwtAlgorithm>,
    /// `<Source>`: the variable holding the token. Default: the `Authorization` header
    /// with `Bearer ` stripped.
    pub source: Option<String>,
    /// `<SecretKey>`.
    pub secret_key: Option<SecretKey>,
    /// `<PublicKey>`.
    pub public_key: Option<PublicKey>,
    /// `<PrivateKey>`.
    pub private_key: Option<PrivateKey>,
    /// `<Issuer>`.
    pub issuer: Setting<String>,
    /// `<Subject>`.
    pub subject: Setting<String>,
    /// `<Audience>`: one value or a comma-separated list.
    pub audience: Setting<String>,
    /// `<Id>`: the `jti`. Present and empty in GenerateJWT means "generate one".
    pub id: Option<Setting<String>>,
    /// `<AdditionalClaims><Claim>`.
    pub additional_claims: Vec<Claim>,
    /// `<AdditionalClaims ref>`: a variable holding a JSON object of claims.
    pub additional_claims_ref: Option<String>,
    /// `<AdditionalHeaders><Claim>`.
    pub additional_headers: Vec<Claim>,
    /// `<TimeAllowance>`, in milliseconds (default 0).
    pub time_allowance_ms: u64,
    /// `<IgnoreIssuedAt>`, default false.
    pub ignore_issued_at: bool,
    /// `<IgnoreUnresolvedVariables>`, default false.
    pub ignore_unresolved_variables: bool,
    /// `<IgnoreCriticalHeaders>`, default false.
    pub ignore_critical_headers: bool,
    /// `<ExpiresIn ref>`: lifetime of a generated token.
    pub expires_in: Setting<String>,
    /// `<NotBefore ref>`: a time interval after now, or an absolute time.
    pub not_before: Setting<String>,
    /// `<OutputVariable>`: where GenerateJWT writes the token.
    pub output_variable: Option<String>,
    /// `<CriticalHeaders>`: header names a verifier must understand.
    pub critical_headers: Vec<String>,
}

fn setting(cx: &mut Cx<'_>, el: &Element, name: &str) -> Setting<String> {
    cx.string_setting(el.child(name))
}

fn claims(cx: &mut Cx<'_>, el: &Element, item: &str) -> Vec<Claim> {
    el.children_named(item)
        .map(|c| {
            let claim_type = match c.attr("type").map(|t| t.trim().to_ascii_lowercase()) {
                None => ClaimType::String,
                Some(t) => match t.as_str() {
                    "" | "string" => ClaimType::String,
                    "number" | "integer" | "long" => ClaimType::Number,
                    "boolean" => ClaimType::Boolean,
                    "map" => ClaimType::Map,
                    other => {
                        cx.error(
                            c.offset,
                            format!(
                                "claim type must be string, number, boolean or map, not `{other}`"
                            ),
                        );
                        ClaimType::String
                    }
                },
            };
            Claim {
                name: c.attr("name").unwrap_or_default().trim().to_owned(),
                value: cx.string_setting(Some(c)),
                claim_type,
                array: cx.attr_bool(c, "array", false),
            }
        })
        .collect()
}

pub(crate) fn jwt(cx: &mut Cx<'_>, el: &Element, operation: JwtOperation) -> Jwt {
    // The reference pages list different children per operation: a generated token
    // takes its `iat` from the clock (there is no `<IssuedAt>`), and only verification
    // reads a `<Source>` or allows clock skew.
    const COMMON: &[&str] = &[
        "Algorithm",
        "Algorithms",
        "Type",
        "SecretKey",
        "Issuer",
        "Subject",
        "Audience",
        "Id",
        "AdditionalClaims",
        "AdditionalHeaders",
        "IgnoreUnresolvedVariables",
    ];
    const GENERATE: &[&str] = &[
        "PrivateKey",
        "ExpiresIn",
        "NotBefore",
        "OutputVariable",
        "CriticalHeaders",
    ];
    const VERIFY: &[&str] = &[
        "Source",
        "PublicKey",
        "TimeAllowance",
        "IgnoreIssuedAt",
        "IssuedAt",
        "IgnoreCriticalHeaders",
        "CriticalHeaders",
        "ExpiresIn",
        "NotBefore",
        "OutputVariable",
        "PrivateKey",
    ];
    let own = match operation {
        JwtOperation::Generate => GENERATE,
        JwtOperation::Verify | JwtOperation::Decode => VERIFY,
    };
    let known: Vec<&str> = COMMON.iter().chain(own).copied().collect();
    cx.known_policy(el, &known);
    let mut algorithms = Vec::new();
    if let Some(a) = el.child("Algorithm") {
        for name in a.text().split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match JwtAlgorithm::parse(name) {
                Some(alg) => algorithms.push(alg),
                None if crate::is_placeholder(name) => {}
                None => cx.error_hint(
                    a.text_offset(),
                    format!("unsupported JWT algorithm `{name}`"),
                    "use HS256/384/512, RS256/384/512, PS256/384/512, ES256 or ES384",
                ),
            }
        }
    }
    let encrypted = el.child("Algorithms").is_some()
        || el
            .child("Type")
            .is_some_and(|t| t.text().eq_ignore_ascii_case("encrypted"));
    if let Some(a) = el.child("Algorithms") {
        cx.warning(
            a.offset,
            "encrypted JWTs (`<Algorithms>`) are not supported; the policy loads but fails when it runs",
        );
    }
    if algorithms.len() > 1 && operation == JwtOperation::Generate {
        cx.error(
            el.offset,
            "GenerateJWT takes exactly one algorithm in `<Algorithm>`",
        );
    }
    if algorithms.is_empty()
        && operation != JwtOperation::Decode
        && el.child("Algorithms").is_none()
    {
        cx.error_hint(
            el.offset,
            format!("`<{}>` needs an `<Algorithm>`", el.name),
            "add `<Algorithm>RS256</Algorithm>` or similar",
        );
    }
    let secret_key = el.child("SecretKey").map(|s| SecretKey {
        value: setting(cx, s, "Value"),
        encoding: s.attr("encoding").map(|e| e.trim().to_ascii_lowercase()),
        id: setting(cx, s, "Id"),
    });
    let public_key = el.child("PublicKey").map(|p| {
        if let Some(c) = p.child("Certificate") {
            cx.error(
                c.offset,
                "`<PublicKey><Certificate>` is not supported; give the key as `<Value>` or `<JWKS>`",
            );
        }
        let jwks = p.child("JWKS").map(|j| {
            if let Some(r) = ref_attr(j) {
                JwksSource::Variable(r)
            } else if j.attr("uri").is_some() || j.attr("uriRef").is_some() {
                JwksSource::Uri(Setting {
                    value: j.attr("uri").map(|u| u.trim().to_owned()),
                    reference: j.attr("uriRef").map(|u| u.trim().to_owned()),
                })
            } else {
                JwksSource::Literal(j.text().to_owned())
            }
        });
        PublicKey {
            value: setting(cx, p, "Value"),
            jwks,
        }
    });
    let private_key = el.child("PrivateKey").map(|p| PrivateKey {
        value: setting(cx, p, "Value"),
        password: setting(cx, p, "Password"),
        id: setting(cx, p, "Id"),
    });
    let needs_hmac = algorithms.iter().any(|a| a.is_hmac());
    let needs_pk = algorithms.iter().any(|a| !a.is_hmac());
    match operation {
        JwtOperation::Verify => {
            if needs_hmac && secret_key.is_none() {
                cx.error(el.offset, "an HMAC algorithm needs a `<SecretKey>`");
            }
            if needs_pk && public_key.is_none() {
                cx.error(
                    el.offset,
                    "an RSA or EC algorithm needs a `<PublicKey>` (`<Value>` or `<JWKS>`)",
                );
            }
        }
        JwtOperation::Generate => {
            if needs_hmac && secret_key.is_none() {
                cx.error(el.offset, "an HMAC algorithm needs a `<SecretKey>`");
            }
            if needs_pk && private_key.is_none() {
                cx.error(el.offset, "an RSA or EC algorithm needs a `<PrivateKey>`");
            }
        }
        JwtOperation::Decode => {}
    }
    let time_allowance_ms = match el.child("TimeAllowance").and_then(|t| t.non_empty_text()) {
        None => 0,
        Some(t) => match parse_interval_ms(t) {
            Some(ms) => ms,
            None => {
                if !crate::is_placeholder(t) {
                    cx.error(
                        el.child("TimeAllowance")
                            .map_or(el.offset, |t| t.text_offset()),
                        format!(
                            "`<TimeAllowance>` must be a time interval such as `30s`, not `{t}`"
                        ),
                    );
                }
                0
            }
        },
    };
    let additional = el.child("AdditionalClaims");
    Jwt {
        operation,
        encrypted,
        algorithms,
        source: el
            .child("Source")
            .and_then(|s| ref_attr(s).or_else(|| s.non_empty_text().map(str::to_owned))),
        secret_key,
        public_key,
        private_key,
        issuer: setting(cx, el, "Issuer"),
        subject: setting(cx, el, "Subject"),
        audience: setting(cx, el, "Audience"),
        id: el.child("Id").map(|i| cx.string_setting(Some(i))),
        additional_claims: additional
            .map(|a| claims(cx, a, "Claim"))
            .unwrap_or_default(),
        additional_claims_ref: additional.and_then(ref_attr),
        additional_headers: el
            .child("AdditionalHeaders")
            .map(|a| claims(cx, a, "Claim"))
            .unwrap_or_default(),
        time_allowance_ms,
        ignore_issued_at: cx.child_bool(el, "IgnoreIssuedAt", false),
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
        ignore_critical_headers: cx.child_bool(el, "IgnoreCriticalHeaders", false),
        expires_in: setting(cx, el, "ExpiresIn"),
        not_before: setting(cx, el, "NotBefore"),
        output_variable: cx.child_text(el, "OutputVariable"),
        critical_headers: el
            .child("CriticalHeaders")
            .map(|c| {
                c.text()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Parses a time interval such as `1h`, `30m`, `300s`, `500ms`, `2d`, `1w`; a bare number
/// is seconds.
pub fn parse_interval_ms(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

const ENCRYPTED: &str = "encrypted JWTs (JWE) are not supported";

/// Why a JWT policy failed. The variants carry Apigee's fault names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct JwtError {
    /// The fault name, such as `TokenExpired` (errorcode `steps.jwt.<name>`).
    pub fault: JwtFault,
    /// What failed, naming the claim and the values found and expected.
    pub message: String,
}

/// Apigee's JWT fault names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFault {
    /// No token in the source, or a token that is not three base64url parts of JSON.
    FailedToDecode,
    /// The token's `alg` is not one the policy accepts.
    AlgorithmMismatch,
    /// The token has no `alg` header.
    NoAlgorithmFoundInHeader,
    /// The signature does not verify.
    InvalidSignature,
    /// `exp` is in the past.
    TokenExpired,
    /// `nbf` is in the future.
    TokenNotYetValid,
    /// `iss` differs from `<Issuer>`.
    JwtIssuerMismatch,
    /// `aud` does not hold `<Audience>`.
    JwtAudienceMismatch,
    /// `sub` differs from `<Subject>`.
    JwtSubjectMismatch,
    /// An additional claim, `jti`, or `iat` fails its check.
    InvalidClaim,
    /// A `crit` header the policy does not handle.
    UnhandledCriticalHeader,
    /// No JWKS key matches the token's `kid`.
    NoMatchingPublicKey,
    /// The token names no `kid` while the JWKS has several keys.
    KeyIdMissing,
    /// A key (PEM, JWKS) cannot be parsed.
    KeyParsingFailed,
    /// An HMAC secret shorter than the hash.
    InsufficientKeyLength,
    /// The private key cannot be read.
    InvalidPrivateKey,
    /// A referenced variable did not resolve.
    FailedToResolveVariable,
    /// Signing failed.
    SigningFailed,
    /// The configuration cannot be used (no algorithm, no key).
    InvalidConfiguration,
}

impl JwtFault {
    /// The fault name.
    pub fn name(self) -> &'static str {
        match self {
            Self::FailedToDecode => "FailedToDecode",
            Self::AlgorithmMismatch => "AlgorithmMismatch",
            Self::NoAlgorithmFoundInHeader => "NoAlgorithmFoundInHeader",
            Self::InvalidSignature => "InvalidSignature",
            Self::TokenExpired => "TokenExpired",
            Self::TokenNotYetValid => "TokenNotYetValid",
            Self::JwtIssuerMismatch => "JwtIssuerMismatch",
            Self::JwtAudienceMismatch => "JwtAudienceMismatch",
            Self::JwtSubjectMismatch => "JwtSubjectMismatch",
            Self::InvalidClaim => "InvalidClaim",
            Self::UnhandledCriticalHeader => "UnhandledCriticalHeader",
            Self::NoMatchingPublicKey => "NoMatchingPublicKey",
            Self::KeyIdMissing => "KeyIdMissing",
            Self::KeyParsingFailed => "KeyParsingFailed",
            Self::InsufficientKeyLength => "InsufficientKeyLength",
            Self::InvalidPrivateKey => "InvalidPrivateKey",
            Self::FailedToResolveVariable => "FailedToResolveVariable",
            Self::SigningFailed => "SigningFailed",
            Self::InvalidConfiguration => "InvalidConfiguration",
        }
    }

    /// The errorcode, `steps.jwt.<name>`.
    pub fn error_code(self) -> String {
        format!("steps.jwt.{}", self.name())
    }

    /// The HTTP status: 401 for a token that fails a check, 500 for configuration, key and
    /// generation problems.
    pub fn status(self) -> u16 {
        match self {
            Self::KeyParsingFailed
            | Self::InsufficientKeyLength
            | Self::InvalidPrivateKey
            | Self::FailedToResolveVariable
            | Self::SigningFailed
            | Self::InvalidConfiguration => 500,
            _ => 401,
        }
    }
}

fn fail(fault: JwtFault, message: impl Into<String>) -> JwtError {
    JwtError {
        fault,
        message: message.into(),
    }
}

/// What a JWT policy reads besides its configuration.
#[non_exhaustive]
pub struct JwtInputs<'a> {
    /// Reads a flow variable as text.
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// The JWKS document for a URI, when the host has one (sans-IO: never fetched here).
    pub jwks_for_uri: &'a dyn Fn(&str) -> Option<String>,
    /// The current time, in seconds since the Unix epoch.
    pub now: u64,
}

impl std::fmt::Debug for JwtInputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtInputs").field("now", &self.now).finish()
    }
}

/// A decoded token: header and claims.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decoded {
    /// The JOSE header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

impl Decoded {
    /// The flow variables a JWT policy sets, named without the `jwt.{policy}.` prefix:
    /// `header.*`, `claim.*` (and Apigee X's `decoded.header.*`, `decoded.claim.*`),
    /// `header-json`, `payload-json`, `payload-claim-names`, `expiry_formatted`,
    /// `seconds_remaining`, `is_expired`.
    pub fn variables(&self, now: u64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let short = |name: &str| -> Option<&'static str> {
            Some(match name {
                "iss" => "issuer",
                "sub" => "subject",
                "aud" => "audience",
                "exp" => "expiry",
                "iat" => "issuedat",
                "nbf" => "notbefore",
                "jti" => "id",
                _ => return None,
            })
        };
        for (k, v) in &self.header {
            let text = value_text(v);
            let name = match k.as_str() {
                "alg" => "algorithm",
                "typ" => "type",
                other => other,
            };
            out.push((format!("header.{name}"), text.clone()));
            out.push((format!("decoded.header.{k}"), text));
        }
        for (k, v) in &self.claims {
            let text = value_text(v);
            if let Some(s) = short(k) {
                out.push((format!("claim.{s}"), text.clone()));
            }
            out.push((format!("claim.{k}"), text.clone()));
            out.push((format!("decoded.claim.{k}"), text));
        }
        out.push((
            "header-json".to_owned(),
            Value::Object(self.header.clone()).to_string(),
        ));
        out.push((
            "payload-json".to_owned(),
            Value::Object(self.claims.clone()).to_string(),
        ));
        out.push((
            "payload-claim-names".to_owned(),
            self.claims.keys().cloned().collect::<Vec<_>>().join(","),
        ));
        if let Some(exp) = self.claims.get("exp").and_then(Value::as_u64) {
            out.push(("expiry_formatted".to_owned(), format_time(exp)));
            out.push((
                "seconds_remaining".to_owned(),
                exp.saturating_sub(now).to_string(),
            ));
            out.push(("is_expired".to_owned(), (exp <= now).to_string()));
        }
        out
    }
}

/// Formats epoch seconds as `yyyy-MM-ddTHH:mm:ssZ` (UTC).
pub fn format_time(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm), for days since 1970-01-01.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn json_part(part: &str, what: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| {
            fail(
                JwtFault::FailedToDecode,
                format!("the token's {what} is not base64url: {e}"),
            )
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(fail(
            JwtFault::FailedToDecode,
            format!("the token's {what} is not a JSON object"),
        )),
        Err(e) => Err(fail(
            JwtFault::FailedToDecode,
            format!("the token's {what} is not valid JSON: {e}"),
        )),
    }
}

struct Parts<'t> {
    signing_input: &'t str,
    signature: &'t str,
    decoded: Decoded,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(fail(
            JwtFault::FailedToDecode,
            format!("the token is longer than {MAX_TOKEN_LEN} bytes"),
        ));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        let n = token.split('.').count();
        return Err(fail(
            JwtFault::FailedToDecode,
            format!("a signed JWT has 3 dot-separated parts; this token has {n}"),
        ));
    };
    let header = json_part(h, "header")?;
    let claims = json_part(p, "payload")?;
    let signing_input = token.get(..h.len() + 1 + p.len()).unwrap_or_default();
    Ok(Parts {
        signing_input,
        signature: s,
        decoded: Decoded { header, claims },
    })
}

/// Strips `Bearer ` from an Authorization header value.
pub fn strip_bearer(value: &str) -> &str {
    let v = value.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v.get(7..).unwrap_or("").trim(),
        _ => v,
    }
}

/// The token a VerifyJWT or DecodeJWT reads: `<Source>`'s variable, else the
/// `Authorization` header with `Bearer ` stripped.
pub fn source_token(
    cfg: &Jwt,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, JwtError> {
    let (name, value) = match &cfg.source {
        Some(s) => (s.as_str(), lookup(s)),
        None => (
            "request.header.authorization",
            lookup("request.header.authorization"),
        ),
    };
    let Some(value) = value else {
        return Err(fail(
            JwtFault::FailedToDecode,
            format!("no token: variable `{name}` is not set"),
        ));
    };
    let token = if cfg.source.is_none() || name.to_ascii_lowercase().ends_with(".authorization") {
        strip_bearer(&value).to_owned()
    } else {
        value.trim().to_owned()
    };
    if token.is_empty() {
        return Err(fail(
            JwtFault::FailedToDecode,
            format!("no token: variable `{name}` is empty"),
        ));
    }
    Ok(token)
}

/// Decodes a token without checking its signature (DecodeJWT).
///
/// # Errors
/// [`JwtFault::FailedToDecode`] when the token is not a JWS compact serialisation of JSON.
pub fn decode(token: &str) -> Result<Decoded, JwtError> {
    split(token).map(|p| p.decoded)
}

fn resolve(
    s: &Setting<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
    what: &str,
    ignore_unresolved: bool,
) -> Result<Option<String>, JwtError> {
    if let Some(r) = &s.reference {
        if let Some(v) = lookup(r) {
            return Ok(Some(v));
        }
        if s.value.is_none() && !ignore_unresolved {
            return Err(fail(
                JwtFault::FailedToResolveVariable,
                format!("{what}: variable `{r}` is not set"),
            ));
        }
    }
    Ok(s.value.clone())
}

fn secret_bytes(
    key: &SecretKey,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<u8>, JwtError> {
    let Some(text) = resolve(&key.value, lookup, "secret key", false)? else {
        return Err(fail(
            JwtFault::InvalidConfiguration,
            "the secret key has no value",
        ));
    };
    let bad = |e: String| {
        fail(
            JwtFault::KeyParsingFailed,
            format!("the secret key is not valid {e}"),
        )
    };
    match key.encoding.as_deref().unwrap_or("utf8") {
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| bad(format!("base64: {e}"))),
        "base64url" => URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .map_err(|e| bad(format!("base64url: {e}"))),
        "hex" => {
            let t = text.trim();
            if t.len() % 2 != 0 {
                return Err(bad("hex: odd length".into()));
            }
            (0..t.len())
                .step_by(2)
                .map(|i| {
                    t.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                        .ok_or_else(|| bad("hex".into()))
                })
                .collect()
        }
        _ => Ok(text.into_bytes()),
    }
}

fn decoding_keys(
    cfg: &Jwt,
    alg: JwtAlgorithm,
    kid: Option<&str>,
    inputs: &JwtInputs<'_>,
) -> Result<DecodingKey, JwtError> {
    let lookup = inputs.lookup;
    if alg.is_hmac() {
        let Some(sk) = &cfg.secret_key else {
            return Err(fail(
                JwtFault::InvalidConfiguration,
                format!(
                    "the token uses {} but the policy has no `<SecretKey>`",
                    alg.name()
                ),
            ));
        };
        let secret = secret_bytes(sk, lookup)?;
        if secret.len() < alg.min_secret_len() {
            return Err(fail(
                JwtFault::InsufficientKeyLength,
                format!(
                    "the secret key is {} bytes; {} needs at least {}",
                    secret.len(),
                    alg.name(),
                    alg.min_secret_len()
                ),
            ));
        }
        return Ok(DecodingKey::from_secret(&secret));
    }
    let Some(pk) = &cfg.public_key else {
        return Err(fail(
            JwtFault::InvalidConfiguration,
            format!(
                "the token uses {} but the policy has no `<PublicKey>`",
                alg.name()
            ),
        ));
    };
    if let Some(jwks) = &pk.jwks {
        let doc = match jwks {
            JwksSource::Variable(v) => lookup(v).ok_or_else(|| {
                fail(
                    JwtFault::FailedToResolveVariable,
                    format!("JWKS: variable `{v}` is not set"),
                )
            })?,
            JwksSource::Literal(t) => t.clone(),
            JwksSource::Uri(u) => {
                let uri = resolve(u, lookup, "JWKS uri", false)?
                    .ok_or_else(|| fail(JwtFault::InvalidConfiguration, "the JWKS has no uri"))?;
                (inputs.jwks_for_uri)(&uri).ok_or_else(|| {
                    fail(
                        JwtFault::KeyParsingFailed,
                        format!("no JWKS document is configured for `{uri}`"),
                    )
                })?
            }
        };
        return jwks_key(&doc, alg, kid);
    }
    let Some(pem) = resolve(&pk.value, lookup, "public key", false)? else {
        return Err(fail(
            JwtFault::InvalidConfiguration,
            "the public key has no value",
        ));
    };
    let parsed = if alg.is_ec() {
        DecodingKey::from_ec_pem(pem.as_bytes())
    } else {
        DecodingKey::from_rsa_pem(pem.as_bytes())
    };
    parsed.map_err(|e| {
        fail(
            JwtFault::KeyParsingFailed,
            format!(
                "the public key is not a PEM {} key: {e}",
                if alg.is_ec() { "EC" } else { "RSA" }
            ),
        )
    })
}

fn jwks_key(doc: &str, alg: JwtAlgorithm, kid: Option<&str>) -> Result<DecodingKey, JwtError> {
    if doc.len() > MAX_JWKS_LEN {
        return Err(fail(
            JwtFault::KeyParsingFailed,
            format!("the JWKS is larger than {MAX_JWKS_LEN} bytes"),
        ));
    }
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(doc).map_err(|e| {
        fail(
            JwtFault::KeyParsingFailed,
            format!("the JWKS is not valid: {e}"),
        )
    })?;
    let jwk = match kid {
        Some(k) => set.find(k).ok_or_else(|| {
            let kids: Vec<&str> = set
                .keys
                .iter()
                .filter_map(|j| j.common.key_id.as_deref())
                .collect();
            fail(
                JwtFault::NoMatchingPublicKey,
                format!("no key in the JWKS has kid `{k}`; the JWKS has kids {kids:?}"),
            )
        })?,
        None => match set.keys.as_slice() {
            [only] => only,
            [] => return Err(fail(JwtFault::NoMatchingPublicKey, "the JWKS has no keys")),
            _ => {
                return Err(fail(
                    JwtFault::KeyIdMissing,
                    format!(
                        "the token has no `kid` header and the JWKS has {} keys",
                        set.keys.len()
                    ),
                ));
            }
        },
    };
    if let Some(jalg) = jwk.common.key_algorithm
        && format!("{jalg:?}") != alg.name()
    {
        return Err(fail(
            JwtFault::AlgorithmMismatch,
            format!(
                "the JWKS key is for {jalg:?}, the token uses {}",
                alg.name()
            ),
        ));
    }
    DecodingKey::from_jwk(jwk).map_err(|e| {
        fail(
            JwtFault::KeyParsingFailed,
            format!("the JWKS key cannot be used: {e}"),
        )
    })
}

fn claim_str(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).map(value_text)
}

fn number_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        {
            Some(n) => Ok(Some(n)),
            None => Err(fail(
                JwtFault::InvalidClaim,
                format!("claim `{name}` must be a number of seconds, found {v}"),
            )),
        },
    }
}

fn matches_claim(found: &Value, expected: &str, claim: &Claim) -> bool {
    let wanted: Vec<&str> = if claim.array {
        expected.split(',').map(str::trim).collect()
    } else {
        vec![expected.trim()]
    };
    match found {
        Value::Array(items) => {
            let texts: Vec<String> = items.iter().map(value_text).collect();
            wanted.iter().all(|w| texts.iter().any(|t| t == w))
        }
        Value::Number(n) => wanted.first().is_some_and(|w| {
            w.parse::<f64>()
                .ok()
                .zip(n.as_f64())
                .is_some_and(|(a, b)| a == b)
        }),
        Value::Bool(b) => wanted
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case(&b.to_string())),
        Value::Object(_) => serde_json::from_str::<Value>(expected).is_ok_and(|e| &e == found),
        other => wanted.len() == 1 && wanted.first().is_some_and(|w| *w == value_text(other)),
    }
}

/// Verifies `token` (VerifyJWT): the algorithm, the signature, `exp` and `nbf` with the
/// time allowance, `iat` (unless ignored), then issuer, subject, audience, `jti` and every
/// additional claim.
///
/// # Errors
/// The first check that fails, with its fault name and a message naming the claim, the
/// value in the token and the value expected.
pub fn verify(cfg: &Jwt, token: &str, inputs: &JwtInputs<'_>) -> Result<Decoded, JwtError> {
    if cfg.encrypted {
        return Err(fail(JwtFault::InvalidConfiguration, ENCRYPTED));
    }
    let parts = split(token)?;
    let header = &parts.decoded.header;
    let Some(alg_name) = header.get("alg").and_then(Value::as_str) else {
        return Err(fail(
            JwtFault::NoAlgorithmFoundInHeader,
            "the token's header has no `alg`",
        ));
    };
    let Some(alg) = JwtAlgorithm::parse(alg_name).filter(|a| cfg.algorithms.contains(a)) else {
        let accepted: Vec<&str> = cfg.algorithms.iter().map(|a| a.name()).collect();
        return Err(fail(
            JwtFault::AlgorithmMismatch,
            format!(
                "the token is signed with `{alg_name}`; the policy accepts {}",
                accepted.join(", ")
            ),
        ));
    };
    if let Some(crit) = header.get("crit") {
        let names: Vec<String> = match crit {
            Value::Array(items) => items.iter().map(value_text).collect(),
            other => vec![value_text(other)],
        };
        if !cfg.ignore_critical_headers {
            for n in names {
                if !cfg.critical_headers.contains(&n) {
                    return Err(fail(
                        JwtFault::UnhandledCriticalHeader,
                        format!(
                            "the token marks header `{n}` critical; the policy does not list it in `<CriticalHeaders>`"
                        ),
                    ));
                }
            }
        }
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let key = decoding_keys(cfg, alg, kid, inputs)?;
    let ok = jsonwebtoken::crypto::verify(
        parts.signature,
        parts.signing_input.as_bytes(),
        &key,
        alg.jose(),
    )
    .map_err(|e| {
        fail(
            JwtFault::InvalidSignature,
            format!("the signature cannot be checked with the configured key: {e}"),
        )
    })?;
    if !ok {
        return Err(fail(
            JwtFault::InvalidSignature,
            format!(
                "the {} signature does not match the configured key",
                alg.name()
            ),
        ));
    }
    check_claims(cfg, &parts.decoded, inputs)?;
    Ok(parts.decoded)
}

fn check_claims(cfg: &Jwt, decoded: &Decoded, inputs: &JwtInputs<'_>) -> Result<(), JwtError> {
    let claims = &decoded.claims;
    let now = inputs.now;
    let allowance = cfg.time_allowance_ms / 1000;
    if let Some(exp) = number_claim(claims, "exp")?
        && now >= exp.saturating_add(allowance)
    {
        return Err(fail(
            JwtFault::TokenExpired,
            format!(
                "the token expired at {} (`exp` {exp}); now is {} and the time allowance is {allowance}s",
                format_time(exp),
                format_time(now)
            ),
        ));
    }
    if let Some(nbf) = number_claim(claims, "nbf")?
        && now.saturating_add(allowance) < nbf
    {
        return Err(fail(
            JwtFault::TokenNotYetValid,
            format!(
                "the token is not valid before {} (`nbf` {nbf}); now is {} and the time allowance is {allowance}s",
                format_time(nbf),
                format_time(now)
            ),
        ));
    }
    if !cfg.ignore_issued_at
        && let Some(iat) = number_claim(claims, "iat")?
        && now.saturating_add(allowance) < iat
    {
        return Err(fail(
            JwtFault::InvalidClaim,
            format!(
                "claim `iat` is in the future: issued at {} (`iat` {iat}), now is {}",
                format_time(iat),
                format_time(now)
            ),
        ));
    }
    let lookup = inputs.lookup;
    let ignore = cfg.ignore_unresolved_variables;
    // `iss` and `sub` must equal the configured value exactly.
    for (setting, what, claim, fault) in [
        (&cfg.issuer, "issuer", "iss", JwtFault::JwtIssuerMismatch),
        (&cfg.subject, "subject", "sub", JwtFault::JwtSubjectMismatch),
    ] {
        if let Some(expected) = resolve(setting, lookup, what, ignore)? {
            let found = claim_str(claims, claim);
            if found.as_deref() != Some(expected.trim()) {
                return Err(fail(
                    fault,
                    format!(
                        "{what} mismatch: claim `{claim}` is {}, expected `{}`",
                        shown(found.as_deref()),
                        expected.trim()
                    ),
                ));
            }
        }
    }
    if let Some(aud) = resolve(&cfg.audience, lookup, "audience", ignore)? {
        let expected: Vec<&str> = aud
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let found: Vec<String> = match claims.get("aud") {
            Some(Value::Array(items)) => items.iter().map(value_text).collect(),
            Some(v) => vec![value_text(v)],
            None => Vec::new(),
        };
        if !expected.iter().any(|e| found.iter().any(|f| f == e)) {
            let found_text = if claims.contains_key("aud") {
                format!("{found:?}")
            } else {
                "absent".to_owned()
            };
            return Err(fail(
                JwtFault::JwtAudienceMismatch,
                format!(
                    "audience mismatch: claim `aud` is {found_text}, expected it to contain {}",
                    expected
                        .iter()
                        .map(|e| format!("`{e}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
    }
    if let Some(id) = &cfg.id
        && let Some(jti) = resolve(id, lookup, "id", ignore)?
    {
        let found = claim_str(claims, "jti");
        if found.as_deref() != Some(jti.trim()) {
            return Err(fail(
                JwtFault::InvalidClaim,
                format!(
                    "claim `jti` is {}, expected `{}`",
                    shown(found.as_deref()),
                    jti.trim()
                ),
            ));
        }
    }
    for claim in &cfg.additional_claims {
        let Some(expected) = resolve(
            &claim.value,
            lookup,
            &format!("claim `{}`", claim.name),
            ignore,
        )?
        else {
            continue;
        };
        match claims.get(&claim.name) {
            None => {
                return Err(fail(
                    JwtFault::InvalidClaim,
                    format!(
                        "claim `{}` is absent, expected `{}`",
                        claim.name,
                        expected.trim()
                    ),
                ));
            }
            Some(found) if !matches_claim(found, &expected, claim) => {
                return Err(fail(
                    JwtFault::InvalidClaim,
                    format!(
                        "claim `{}` is {found}, expected `{}`",
                        claim.name,
                        expected.trim()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for header in &cfg.additional_headers {
        let Some(expected) = resolve(
            &header.value,
            lookup,
            &format!("header `{}`", header.name),
            ignore,
        )?
        else {
            continue;
        };
        let found = decoded.header.get(&header.name);
        if !found.is_some_and(|f| matches_claim(f, &expected, header)) {
            return Err(fail(
                JwtFault::InvalidClaim,
                format!(
                    "header `{}` is {}, expected `{}`",
                    header.name,
                    found.map_or_else(|| "absent".to_owned(), Value::to_string),
                    expected.trim()
                ),
            ));
        }
    }
    Ok(())
}

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "absent".to_owned(), |s| format!("`{s}`"))
}

fn typed(claim: &Claim, text: &str) -> Result<Value, JwtError> {
    let one = |t: &str| -> Result<Value, JwtError> {
        let t = t.trim();
        Ok(match claim.claim_type {
            ClaimType::String => Value::String(t.to_owned()),
            ClaimType::Number => {
                if let Ok(i) = t.parse::<i64>() {
                    Value::from(i)
                } else if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
                {
                    Value::Number(n)
                } else {
                    return Err(fail(
                        JwtFault::InvalidClaim,
                        format!("claim `{}` must be a number, not `{t}`", claim.name),
                    ));
                }
            }
            ClaimType::Boolean => match crate::parse::parse_bool(t) {
                Some(b) => Value::Bool(b),
                None => {
                    return Err(fail(
                        JwtFault::InvalidClaim,
                        format!("claim `{}` must be true or false, not `{t}`", claim.name),
                    ));
                }
            },
            ClaimType::Map => serde_json::from_str(t).map_err(|e| {
                fail(
                    JwtFault::InvalidClaim,
                    format!("claim `{}` must be a JSON object: {e}", claim.name),
                )
            })?,
        })
    };
    if claim.array {
        let items: Result<Vec<Value>, JwtError> = text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(one)
            .collect();
        Ok(Value::Array(items?))
    } else {
        one(text)
    }
}

/// What GenerateJWT needs besides its configuration and the variables.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Generated {
    /// The token.
    pub token: String,
    /// Its header and claims.
    pub decoded: Option<Decoded>,
}

/// Generates a signed token (GenerateJWT). `jti` is used when `<Id/>` is present and empty
/// (the host passes a fresh random identifier).
///
/// # Errors
/// A key that cannot be read, a secret that is too short, an unresolved variable (unless
/// ignored) or a claim value that does not fit its type.
pub fn generate(cfg: &Jwt, inputs: &JwtInputs<'_>, jti: &str) -> Result<Generated, JwtError> {
    if cfg.encrypted {
        return Err(fail(JwtFault::InvalidConfiguration, ENCRYPTED));
    }
    let lookup = inputs.lookup;
    let ignore = cfg.ignore_unresolved_variables;
    let Some(&alg) = cfg.algorithms.first() else {
        return Err(fail(
            JwtFault::InvalidConfiguration,
            "no `<Algorithm>` is configured",
        ));
    };
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(alg.name().into()));
    header.insert("typ".into(), Value::String("JWT".into()));
    let (key, kid) = if alg.is_hmac() {
        let Some(sk) = &cfg.secret_key else {
            return Err(fail(
                JwtFault::InvalidConfiguration,
                "no `<SecretKey>` is configured",
            ));
        };
        let secret = secret_bytes(sk, lookup)?;
        if secret.len() < alg.min_secret_len() {
            return Err(fail(
                JwtFault::InsufficientKeyLength,
                format!(
                    "the secret key is {} bytes; {} needs at least {}",
                    secret.len(),
                    alg.name(),
                    alg.min_secret_len()
                ),
            ));
        }
        (
            EncodingKey::from_secret(&secret),
            resolve(&sk.id, lookup, "key id", true)?,
        )
    } else {
        let Some(pk) = &cfg.private_key else {
            return Err(fail(
                JwtFault::InvalidConfiguration,
                "no `<PrivateKey>` is configured",
            ));
        };
        let Some(pem) = resolve(&pk.value, lookup, "private key", false)? else {
            return Err(fail(
                JwtFault::InvalidPrivateKey,
                "the private key has no value",
            ));
        };
        let parsed = if alg.is_ec() {
            EncodingKey::from_ec_pem(pem.as_bytes())
        } else {
            EncodingKey::from_rsa_pem(pem.as_bytes())
        };
        let key = parsed.map_err(|e| {
            fail(
                JwtFault::InvalidPrivateKey,
                format!(
                    "the private key is not a PEM {} key: {e}",
                    if alg.is_ec() { "EC" } else { "RSA" }
                ),
            )
        })?;
        (key, resolve(&pk.id, lookup, "key id", true)?)
    };
    if let Some(kid) = kid {
        header.insert("kid".into(), Value::String(kid));
    }
    for h in &cfg.additional_headers {
        if let Some(v) = resolve(&h.value, lookup, &format!("header `{}`", h.name), ignore)? {
            header.insert(h.name.clone(), typed(h, &v)?);
        }
    }
    if !cfg.critical_headers.is_empty() {
        header.insert(
            "crit".into(),
            Value::Array(
                cfg.critical_headers
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
    }
    let mut claims = Map::new();
    if let Some(v) = resolve(&cfg.issuer, lookup, "issuer", ignore)? {
        claims.insert("iss".into(), Value::String(v));
    }
    if let Some(v) = resolve(&cfg.subject, lookup, "subject", ignore)? {
        claims.insert("sub".into(), Value::String(v));
    }
    if let Some(v) = resolve(&cfg.audience, lookup, "audience", ignore)? {
        let list: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let value = match list.as_slice() {
            [one] => Value::String((*one).to_owned()),
            many => Value::Array(
                many.iter()
                    .map(|a| Value::String((*a).to_owned()))
                    .collect(),
            ),
        };
        claims.insert("aud".into(), value);
    }
    claims.insert("iat".into(), Value::from(inputs.now));
    if let Some(v) = resolve(&cfg.expires_in, lookup, "expires in", ignore)? {
        let ms = parse_interval_ms(&v).ok_or_else(|| {
            fail(
                JwtFault::InvalidConfiguration,
                format!("`<ExpiresIn>` must be a time interval such as `1h`, not `{v}`"),
            )
        })?;
        claims.insert(
            "exp".into(),
            Value::from(inputs.now.saturating_add(ms / 1000)),
        );
    }
    if let Some(v) = resolve(&cfg.not_before, lookup, "not before", ignore)? {
        let nbf = match parse_interval_ms(&v) {
            Some(ms) => inputs.now.saturating_add(ms / 1000),
            None => v.trim().parse::<u64>().map_err(|_| {
                fail(
                    JwtFault::InvalidConfiguration,
                    format!("`<NotBefore>` must be a time interval such as `10m`, not `{v}`"),
                )
            })?,
        };
        claims.insert("nbf".into(), Value::from(nbf));
    }
    if let Some(id) = &cfg.id {
        let v = resolve(id, lookup, "id", ignore)?.unwrap_or_else(|| jti.to_owned());
        claims.insert("jti".into(), Value::String(v));
    }
    if let Some(r) = &cfg.additional_claims_ref
        && let Some(text) = lookup(r)
    {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => claims.extend(m),
            _ => {
                return Err(fail(
                    JwtFault::InvalidClaim,
                    format!("`<AdditionalClaims ref>`: variable `{r}` is not a JSON object"),
                ));
            }
        }
    }
    for c in &cfg.additional_claims {
        if let Some(v) = resolve(&c.value, lookup, &format!("claim `{}`", c.name), ignore)? {
            claims.insert(c.name.clone(), typed(c, &v)?);
        }
    }
    let h = URL_SAFE_NO_PAD.encode(Value::Object(header.clone()).to_string());
    let p = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
    let signing_input = format!("{h}.{p}");
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, alg.jose())
        .map_err(|e| fail(JwtFault::SigningFailed, format!("signing failed: {e}")))?;
    Ok(Generated {
        token: format!("{signing_input}.{sig}"),
        decoded: Some(Decoded { header, claims }),
    })
}

#[cfg(test)]
mod tests;
