//! Errors of the Redis backends.

/// Why a Redis operation did not produce an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The operation did not complete within its timeout.
    #[error("redis operation timed out after {0} ms")]
    Timeout(u64),
    /// The circuit breaker is open: Redis failed repeatedly and is not asked until the
    /// cool-down has passed.
    #[error("redis circuit breaker is open")]
    CircuitOpen,
    /// The client or the server reported an error (connection refused, reset, script error).
    #[error("redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    /// A reply did not have the shape the operation expects.
    #[error("unexpected redis reply: {0}")]
    Reply(String),
    /// A stored record could not be encoded or decoded.
    #[error("record encoding failed: {0}")]
    Encoding(#[from] serde_json::Error),
    /// A stored registry record could not be applied to the registry.
    #[error("invalid registry record: {0}")]
    Registry(#[from] preflow_oauth::RegistryError),
    /// The store was created outside a tokio runtime.
    #[error("a redis store needs a tokio runtime")]
    NoRuntime,
    /// The URL given to connect is not a valid Redis URL.
    #[error("invalid redis url: {0}")]
    Url(String),
}

impl RedisError {
    /// Whether the error means Redis could not be reached or did not answer in time (as
    /// opposed to a malformed reply), i.e. whether it counts against the circuit breaker.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RedisError::Timeout(_) | RedisError::CircuitOpen | RedisError::Command(_)
        )
    }
}
