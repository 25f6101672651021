//! PromQL on DataFusion, over Strata's tables.
//!
//! This crate turns PromQL (parsed by the `promql-parser` crate, never by hand) into work
//! on the engine's `series` and `samples` tables. What it does today: series selection —
//! a selector's label matchers (`=`, `!=`, `=~`, `!~`, and `or` groups) resolved against
//! the series catalog ([`selector::select_series`]), which the Prometheus HTTP API's
//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values` use. Planning of
//! PromQL expressions (instant and range queries) is not here yet.
//!
//! Data enters as a DataFusion `SessionContext` holding Strata's tables (see the
//! `strata-engine` crate) and leaves as label sets.

pub mod selector;

/// Errors of PromQL handling. Each maps to a Prometheus `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum PromqlError {
    /// The query or selector does not parse, or is not a selector where one is needed
    /// (`errorType` `bad_data`, HTTP 400).
    #[error("{0}")]
    BadData(String),
    /// Reading the tables failed (`errorType` `execution`, HTTP 422/500).
    #[error("{0}")]
    Execution(#[from] datafusion::error::DataFusionError),
}

impl From<datafusion::arrow::error::ArrowError> for PromqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        PromqlError::Execution(e.into())
    }
}

impl PromqlError {
    /// The Prometheus API `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            PromqlError::BadData(_) => "bad_data",
            PromqlError::Execution(_) => "execution",
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = PromqlError> = std::result::Result<T, E>;
