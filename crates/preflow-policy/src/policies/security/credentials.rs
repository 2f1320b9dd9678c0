//! What a verified access token or API key exposes as variables: the unprefixed
//! variables VerifyAccessToken sets (`client_id`, `developer.email`, `apiproduct.*`…) and
//! `verifyapikey.{policy}.*`.

use preflow_condition::Value;
use preflow_oauth::{VerifiedApiKey, VerifiedToken};

/// What a verified token or API key exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredField {
    /// `client_id`.
    ClientId,
    /// `grant_type` (tokens only).
    GrantType,
    /// `token_type` (tokens only).
    TokenType,
    /// `issued_at`, milliseconds (tokens only).
    IssuedAt,
    /// `expires_in`, seconds (tokens only).
    ExpiresIn,
    /// `status`.
    Status,
    /// `scope` (tokens only).
    Scope,
    /// `developer.app.name` or `app.name`.
    AppName,
    /// `developer.app.id` or `app.id`.
    AppId,
    /// `app.status`.
    AppStatus,
    /// `developer.id`.
    DeveloperId,
    /// `developer.email`.
    DeveloperEmail,
    /// `developer.status`.
    DeveloperStatus,
    /// `apiproduct.name`.
    ProductName,
    /// `apiproduct.developer.quota.limit`.
    QuotaLimit,
    /// `apiproduct.developer.quota.interval`.
    QuotaInterval,
    /// `apiproduct.developer.quota.timeunit`.
    QuotaTimeUnit,
    /// `app.{attribute}`.
    AppAttr(Box<str>),
    /// `apiproduct.{attribute}`.
    ProductAttr(Box<str>),
    /// `accesstoken.{attribute}`.
    TokenAttr(Box<str>),
}

pub(crate) fn cred_field(rest: &str) -> Option<CredField> {
    Some(match rest {
        "client_id" => CredField::ClientId,
        "grant_type" => CredField::GrantType,
        "token_type" => CredField::TokenType,
        "issued_at" => CredField::IssuedAt,
        "expires_in" => CredField::ExpiresIn,
        "status" => CredField::Status,
        "scope" => CredField::Scope,
        "developer.app.name" | "app.name" => CredField::AppName,
        "developer.app.id" | "app.id" => CredField::AppId,
        "app.status" => CredField::AppStatus,
        "developer.id" => CredField::DeveloperId,
        "developer.email" => CredField::DeveloperEmail,
        "developer.status" => CredField::DeveloperStatus,
        "apiproduct.name" => CredField::ProductName,
        "apiproduct.developer.quota.limit" => CredField::QuotaLimit,
        "apiproduct.developer.quota.interval" => CredField::QuotaInterval,
        "apiproduct.developer.quota.timeunit" => CredField::QuotaTimeUnit,
        other => {
            if let Some(a) = other.strip_prefix("app.") {
                CredField::AppAttr(a.into())
            } else if let Some(a) = other.strip_prefix("apiproduct.") {
                CredField::ProductAttr(a.into())
            } else if let Some(a) = other.strip_prefix("accesstoken.") {
                CredField::TokenAttr(a.into())
            } else {
                return None;
            }
        }
    })
}

#[derive(Clone, Copy)]
enum Cred<'a> {
    Token(&'a VerifiedToken),
    Key(&'a VerifiedApiKey),
}

fn cred<'a>(field: &CredField, v: Cred<'a>) -> Value<'a> {
    let (client_id, app, dev, product) = match v {
        Cred::Token(t) => (
            &*t.token().client_id,
            &*t.client().app,
            &*t.client().developer,
            t.product(),
        ),
        Cred::Key(k) => (
            k.client().credential.key.as_str(),
            &*k.client().app,
            &*k.client().developer,
            k.product(),
        ),
    };
    let token = match v {
        Cred::Token(t) => Some(t),
        Cred::Key(_) => None,
    };
    match field {
        CredField::ClientId => Value::String(client_id),
        CredField::GrantType => token.map_or(Value::Null, |t| {
            Value::String(t.token().grant_type.as_str())
        }),
        CredField::TokenType => token.map_or(Value::Null, |_| Value::String("BearerToken")),
        CredField::IssuedAt => token.map_or(Value::Null, |t| {
            Value::Long(i64::try_from(t.token().issued_at.saturating_mul(1000)).unwrap_or(0))
        }),
        CredField::ExpiresIn => token.map_or(Value::Null, |t| {
            Value::Long(
                t.expires_in()
                    .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX)),
            )
        }),
        CredField::Status => Value::String("approved"),
        CredField::Scope => token.map_or(Value::Null, |t| Value::String(&t.token().scope)),
        CredField::AppName => Value::String(&app.name),
        CredField::AppId => Value::String(&app.id),
        CredField::AppStatus => Value::String(app.status.as_str()),
        CredField::DeveloperId | CredField::DeveloperEmail => Value::String(&dev.email),
        CredField::DeveloperStatus => Value::String(match dev.status {
            preflow_oauth::DeveloperStatus::Active => "active",
            preflow_oauth::DeveloperStatus::Inactive => "inactive",
        }),
        CredField::ProductName => Value::String(&product.name),
        CredField::QuotaLimit => product.quota.as_ref().map_or(Value::Null, |q| {
            Value::Long(i64::try_from(q.limit).unwrap_or(i64::MAX))
        }),
        CredField::QuotaInterval => product.quota.as_ref().map_or(Value::Null, |q| {
            Value::Long(i64::try_from(q.interval).unwrap_or(i64::MAX))
        }),
        CredField::QuotaTimeUnit => product
            .quota
            .as_ref()
            .map_or(Value::Null, |q| Value::String(q.time_unit.as_str())),
        CredField::AppAttr(a) => opt_str(
            app.attributes
                .iter()
                .find(|(k, _)| k.as_str() == &**a)
                .map(|(_, v)| v.as_str()),
        ),
        CredField::ProductAttr(a) => opt_str(
            product
                .attributes
                .iter()
                .find(|(k, _)| k.as_str() == &**a)
                .map(|(_, v)| v.as_str()),
        ),
        CredField::TokenAttr(a) => token.map_or(Value::Null, |t| {
            opt_str(
                t.token()
                    .attributes
                    .iter()
                    .find(|(k, _)| k.as_str() == &**a)
                    .map(|(_, v)| v.as_str()),
            )
        }),
    }
}

/// The value of `field` for a verified access token.
pub(crate) fn token_value<'a>(field: &CredField, t: &'a VerifiedToken) -> Value<'a> {
    cred(field, Cred::Token(t))
}

/// The value of `field` for a verified API key.
pub(crate) fn key_value<'a>(field: &CredField, k: &'a VerifiedApiKey) -> Value<'a> {
    cred(field, Cred::Key(k))
}

fn opt_str(s: Option<&str>) -> Value<'_> {
    s.map_or(Value::Null, Value::String)
}
