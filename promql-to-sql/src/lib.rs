//! PromQL on DataFusion, over Strata's tables.
//!
//! This crate turns PromQL (parsed by the `promql-parser` crate, never by hand) into
//! DataFusion plans over the engine's `series` and `samples` tables:
//! - [`selector`]: which series a selector's label matchers (`=`, `!=`, `=~`, `!~`, `or`
//!   groups) pick, from the series catalog; also what the Prometheus HTTP API's
//!   `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values` use.
//! - [`plan`]: a PromQL expression as a DataFusion logical plan (scans, joins,
//!   aggregates, and [`exec`]'s plan nodes for what SQL has no operator for: step
//!   alignment, lookback, range windows, staleness), with [`kernels`] and [`udf`] for the
//!   per-window and per-sample functions.
//! - [`query`]: instant and range queries (parse, plan, run on the engine, shape the
//!   result as [`value`]s), and `EXPLAIN` of a query's plans.
//! - [`sql_functions`]: `promql_range(...)` and `promql_instant(...)`, PromQL as SQL
//!   table functions.
//! - [`depth`]: queries of any nesting handled without overflowing a stack (up to
//!   [`depth::MAX_DEPTH`] levels; deeper ones are refused).
//!
//! Data enters as a DataFusion `SessionContext` holding Strata's tables (see the
//! `strata-engine` crate) and leaves as label sets with samples.

pub mod depth;
pub mod exec;
pub mod kernels;
pub mod labels;
pub mod plan;
pub mod query;
pub mod selector;
pub mod sql_functions;
pub mod tiers;
pub mod udf;
pub mod value;

pub use query::{explain, instant_query, prom_session, range_query};

pub use value::{InstantSample, LabelSet, QueryValue, RangeSeries};

/// Options of one query evaluation.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Lookback delta in ms (Prometheus default 5 minutes): how far back an instant
    /// selector looks for the latest sample.
    pub lookback_delta_ms: i64,
    /// Abort the query after this long (`errorType` `timeout`).
    pub timeout: Option<std::time::Duration>,
    /// Most points per series a range query may produce (Prometheus: 11,000).
    pub max_points_per_series: i64,
    /// The coarsest rollup tier resolution the query may read, ms (Thanos's
    /// `max_source_resolution`): `None` for `auto` (any tier, routed as [`tiers`]
    /// documents), `Some(0)` for raw samples only.
    pub max_source_resolution_ms: Option<i64>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            timeout: Some(std::time::Duration::from_secs(120)),
            max_points_per_series: 11_000,
            max_source_resolution_ms: None,
        }
    }
}

/// A query's value with the annotations Prometheus would attach (`warnings`, `infos`,
/// each the full rendered message, e.g. `PromQL info: metric might not be a counter, ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: QueryValue,
    /// Warning annotations.
    pub warnings: Vec<String>,
    /// Info annotations.
    pub infos: Vec<String>,
    /// Which source (raw samples or a rollup tier) answered which steps, for the
    /// selectors routed across tiers ([`tiers`]); empty when everything read raw samples
    /// without routing.
    pub sources: Vec<SourceRange>,
}

/// Steps of a query answered by one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRange {
    /// `raw` or the tier's name (`1h`).
    pub source: String,
    /// The first and last step answered, ms since the epoch (UTC).
    pub start_ms: i64,
    /// See `start_ms`.
    pub end_ms: i64,
    /// False where the tier answered approximately (raw expired, windows widened).
    pub exact: bool,
}

/// `sources` sorted by time, consecutive ranges of the same source merged, printed as
/// `source=start..end` (first and last step, Unix seconds; `source~` where approximate)
/// joined by `, `, e.g. `1d=1700006400..1700092800, raw=1700179200..1700265600`; `raw`
/// when empty. The response header `X-Strata-Sources` carries it.
pub fn format_sources(sources: &[SourceRange]) -> String {
    if sources.is_empty() {
        return "raw".into();
    }
    let mut sorted = sources.to_vec();
    sorted.sort_by(|a, b| (a.start_ms, &a.source).cmp(&(b.start_ms, &b.source)));
    let mut merged: Vec<SourceRange> = vec![];
    for s in sorted {
        match merged.last_mut() {
            Some(m) if m.source == s.source && m.exact == s.exact => {
                m.end_ms = m.end_ms.max(s.end_ms);
            }
            _ => merged.push(s),
        }
    }
    merged
        .iter()
        .map(|s| {
            let secs = |ms: i64| crate::labels::format_value(ms as f64 / 1000.0);
            format!(
                "{}{}={}..{}",
                s.source,
                if s.exact { "" } else { "~" },
                secs(s.start_ms),
                secs(s.end_ms)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Errors of PromQL handling. Each maps to a Prometheus `errorType`.
#[derive(Debug, thiserror::Error)]
pub enum PromqlError {
    /// The query or selector does not parse, or is not a selector where one is needed
    /// (`errorType` `bad_data`, HTTP 400).
    #[error("{0}")]
    BadData(String),
    /// Reading the tables failed (`errorType` `execution`, HTTP 422/500).
    #[error("{}", clean_message(.0))]
    Execution(#[from] datafusion::error::DataFusionError),
    /// The query ran past its timeout (`errorType` `timeout`, HTTP 503).
    #[error("{0}")]
    Timeout(String),
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
            PromqlError::Timeout(_) => "timeout",
        }
    }
}

/// The message of an execution error without DataFusion's wrapping ("Execution
/// error: ..."), as Prometheus would print it.
fn clean_message(e: &datafusion::error::DataFusionError) -> String {
    let s = e.find_root().strip_backtrace();
    for p in ["Execution error: ", "External error: ", "Arrow error: "] {
        if let Some(rest) = s.strip_prefix(p) {
            return rest.to_string();
        }
    }
    s
}

/// The latest time (and the longest duration) a query computes with, ms: about 73,000
/// years. Times and durations past it (`time=1e300`, `offset 300000000y`) are clamped to
/// it, so that sums of a few of them, in µs as the tables store times, cannot overflow.
pub const MAX_TIME_MS: i64 = i64::MAX / 4000;

/// `v` (a time or duration, ms) clamped to `[-MAX_TIME_MS, MAX_TIME_MS]`.
pub fn clamp_ms(v: i64) -> i64 {
    v.clamp(-MAX_TIME_MS, MAX_TIME_MS)
}

/// Parses a time as the Prometheus API takes it: Unix seconds (a float) or RFC 3339;
/// returns ms since the epoch (clamped: [`clamp_ms`]), `None` when it is neither.
pub fn parse_time_ms(v: &str) -> Option<i64> {
    if let Ok(f) = v.parse::<f64>() {
        return f.is_finite().then(|| clamp_ms((f * 1000.0).round() as i64));
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| clamp_ms(t.timestamp_millis()))
}

/// Parses a duration as the Prometheus API takes it: seconds (a float) or a PromQL
/// duration (`5m`, `1h30m`); returns ms, `None` when it is neither or overflows.
pub fn parse_duration_ms(v: &str) -> Option<i64> {
    if let Ok(f) = v.parse::<f64>() {
        return (f.is_finite() && (f * 1000.0).abs() < i64::MAX as f64)
            .then(|| (f * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(v)
        .ok()
        .map(|d| clamp_ms(d.as_millis().min(MAX_TIME_MS as u128) as i64))
}

/// Annotations collected while planning and running a query: `(warnings, infos)`.
pub type Notes = std::sync::Arc<std::sync::Mutex<(Vec<String>, Vec<String>)>>;

/// Result alias for this crate.
pub type Result<T, E = PromqlError> = std::result::Result<T, E>;
