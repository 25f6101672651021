//! The crate's one error type.

/// Errors of the rollup jobs. The HTTP handler maps [`RollupError::BadRequest`] to 400 and
/// everything else to 500.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    /// A request names an unknown tier or a bad time range; the message says which.
    #[error("{0}")]
    BadRequest(String),
    /// The tier configuration is invalid (a resolution that does not divide the next
    /// tier's, an unknown source tier).
    #[error("rollup config: {0}")]
    Config(String),
    /// Reading the source data failed.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A Delta table operation failed; the tier table is unchanged.
    #[error("Delta table: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// Opening the data directory failed.
    #[error(transparent)]
    Ingest(#[from] strata_ingest::IngestError),
    /// An Arrow conversion failed (a broken invariant).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A broken invariant of the tier tables.
    #[error("rollup invariant: {0}")]
    Invariant(String),
}

/// Result alias for this crate.
pub type Result<T, E = RollupError> = std::result::Result<T, E>;
