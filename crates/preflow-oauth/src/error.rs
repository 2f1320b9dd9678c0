//! Errors of registry and configuration operations.

/// An error while changing the registry of developers, products, apps and credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No developer has this email.
    #[error("unknown developer {0:?}")]
    UnknownDeveloper(String),
    /// No app has this id.
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    /// No API product has this name.
    #[error("unknown api product {0:?}")]
    UnknownProduct(String),
    /// No credential has this consumer key.
    #[error("unknown credential {0:?}")]
    UnknownCredential(String),
    /// The consumer key is already used by another credential.
    #[error("consumer key {0:?} is already in use")]
    DuplicateKey(String),
    /// The custom secret or key is empty, longer than 512 bytes or holds a control
    /// character.
    #[error("{0} must be 1 to 512 bytes without control characters")]
    InvalidCredentialValue(&'static str),
    /// An API resource path is not valid.
    #[error("invalid api resource {path:?}: {reason}")]
    InvalidResource {
        /// The resource path as given.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// A scope value is not a valid RFC 6749 §3.3 scope-token.
    #[error("invalid scope token {0:?}")]
    InvalidScope(String),
    /// No resource owner has this user name.
    #[error("resource owner {0:?} already exists")]
    DuplicateResourceOwner(String),
}
