//! Errors of the embedded store.

/// Why a store operation failed. The operation then changed nothing that is visible after
/// a restart, and the caller answers `Unavailable` (token endpoints: 503).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened, read, written or committed.
    #[error("state database {what}: {source}")]
    Db {
        /// What was being done.
        what: &'static str,
        /// The database error.
        source: Box<redb::Error>,
    },
    /// A stored record could not be encoded or decoded.
    #[error("state record: {0}")]
    Record(#[from] serde_json::Error),
    /// A stored counter had an unexpected size (a damaged or foreign file).
    #[error("state counter under {table} has {len} bytes")]
    Counter {
        /// The table.
        table: &'static str,
        /// Its length.
        len: usize,
    },
    /// The folder of the database could not be created.
    #[error("state folder {path}: {source}")]
    Folder {
        /// The folder.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Maps any redb error into [`StoreError::Db`], saying what was being done.
pub(crate) fn db<E: Into<redb::Error>>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Db {
        what,
        source: Box::new(e.into()),
    }
}
