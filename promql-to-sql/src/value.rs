//! Query results as the Prometheus API shapes them: scalar, string, vector, matrix.
//!
//! Timestamps are milliseconds since the Unix epoch (UTC); values are `f64` (stale
//! markers never appear in results). Labels are sorted by name, `__name__` included when
//! the result keeps the metric name.

/// A label set: `(name, value)` pairs sorted by name, no empty values.
pub type LabelSet = Vec<(String, String)>;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// The series' labels.
    pub labels: LabelSet,
    /// Evaluation timestamp, ms since the epoch.
    pub t_ms: i64,
    /// The value.
    pub v: f64,
}

/// One series of a range vector (matrix).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: LabelSet,
    /// `(timestamp ms, value)` points in increasing time order.
    pub points: Vec<(i64, f64)>,
}

/// The value of a PromQL query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// A scalar at `t_ms`.
    Scalar {
        /// Evaluation timestamp, ms.
        t_ms: i64,
        /// The value.
        v: f64,
    },
    /// A string literal at `t_ms`.
    String {
        /// Evaluation timestamp, ms.
        t_ms: i64,
        /// The string.
        s: String,
    },
    /// An instant vector, in the order the query defines (sorted by labels unless the
    /// query orders it, e.g. `sort()` or `topk`).
    Vector(Vec<InstantSample>),
    /// A range vector: every range query's result, and an instant query of a range
    /// selector; series sorted by labels.
    Matrix(Vec<RangeSeries>),
}
