//! The crate's one error type.

/// Errors of the write path. HTTP handlers map them to status codes: `BadRequest` -> 400,
/// `TooLarge` -> 413, `Overloaded` -> 503 with `Retry-After`, everything else -> 500.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The request is malformed (bad snappy, bad protobuf, bad JSON, invalid series): the
    /// message names the problem. Nothing of a malformed body is written.
    #[error("{0}")]
    BadRequest(String),
    /// The request is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The head is over its size limit because persistence is behind; retry after the given
    /// number of seconds.
    #[error("overloaded: {reason}; retry after {retry_after_s} s")]
    Overloaded {
        /// What is over its limit.
        reason: String,
        /// Suggested wait before retrying, seconds.
        retry_after_s: u64,
    },
    /// The tenant's ingestion rate limit
    /// ([`crate::policy::ingestion_rate`]) refused the request: nothing of it was written;
    /// retry after the given number of seconds (HTTP 429).
    #[error("rate limited: {reason}; retry after {retry_after_s} s")]
    RateLimited {
        /// The limit and the request's size.
        reason: String,
        /// Seconds until the request would fit, at least 1.
        retry_after_s: u64,
    },
    /// The WAL could not be written or synced; nothing of the request was acknowledged.
    #[error("WAL: {0}")]
    Wal(String),
    /// Local or object-store I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A Delta table operation failed.
    #[error("Delta table: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// A DataFusion query over a table failed.
    #[error("query: {0}")]
    DataFusion(#[from] deltalake::datafusion::error::DataFusionError),
    /// Building Arrow data failed (a broken invariant).
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A configuration value is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Result alias for this crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;
