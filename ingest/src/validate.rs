//! Step 1 of the write path: validation of series and samples against Prometheus's naming
//! rules and Strata's limits.

use serde::Deserialize;

use bytes::Bytes;

use crate::model::{LabelSpan, METRIC_NAME_LABEL, RawLabels, SeriesSamples, span_bytes};

/// Limits applied to every incoming series. Defaults follow the issue that defines Strata's
/// write path (and Cortex/Mimir's usual defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most labels per series, `__name__` included (default 30).
    pub max_labels_per_series: usize,
    /// Longest label value, in bytes (default 2048).
    pub max_label_value_length: usize,
    /// How far in the future a sample's timestamp may be, in milliseconds (default 5 minutes).
    pub max_future_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_labels_per_series: 30,
            max_label_value_length: 2048,
            max_future_ms: 5 * 60 * 1000,
        }
    }
}

/// Why a series or sample was rejected. The `reason()` string is the value of the `reason`
/// label of `strata_samples_rejected_total`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// A label name or value is not valid UTF-8.
    #[error("label {0} is not valid UTF-8")]
    InvalidUtf8(String),
    /// The series has no `__name__` label.
    #[error("series {0} has no metric name (__name__)")]
    MissingMetricName(String),
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {0:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName(String),
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {name:?} in series {series}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabelName {
        /// The offending name.
        name: String,
        /// The series, for the message.
        series: String,
    },
    /// The same label name appears twice.
    #[error("duplicate label name {name:?} in series {series}")]
    DuplicateLabel {
        /// The duplicated name.
        name: String,
        /// The series, for the message.
        series: String,
    },
    /// More labels than [`Limits::max_labels_per_series`].
    #[error("series {series} has {count} labels, more than the limit of {limit}")]
    TooManyLabels {
        /// The series, for the message.
        series: String,
        /// Labels it has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A label value longer than [`Limits::max_label_value_length`] bytes.
    #[error(
        "label {name:?} of series {series} has a value of {length} bytes, longer than the limit of {limit}"
    )]
    LabelValueTooLong {
        /// The label's name.
        name: String,
        /// The series, for the message.
        series: String,
        /// The value's length in bytes.
        length: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A sample more than [`Limits::max_future_ms`] ahead of the server's clock.
    #[error(
        "sample at {timestamp_ms} ms of series {series} is too far in the future (now is {now_ms} ms)"
    )]
    TooFarInFuture {
        /// The series, for the message.
        series: String,
        /// The sample's timestamp, ms since the epoch.
        timestamp_ms: i64,
        /// The server's clock, ms since the epoch.
        now_ms: i64,
    },
}

impl Rejection {
    /// A short, stable reason code for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::InvalidUtf8(_) => "invalid_utf8",
            Rejection::MissingMetricName(_) => "missing_metric_name",
            Rejection::InvalidMetricName(_) => "invalid_metric_name",
            Rejection::InvalidLabelName { .. } => "invalid_label_name",
            Rejection::DuplicateLabel { .. } => "duplicate_label",
            Rejection::TooManyLabels { .. } => "too_many_labels",
            Rejection::LabelValueTooLong { .. } => "label_value_too_long",
            Rejection::TooFarInFuture { .. } => "too_far_in_future",
        }
    }
}

/// Whether `s` is a valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// Whether `s` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A short rendering of a label set for error messages (values cut at 64 bytes).
fn describe<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> String {
    let mut s = String::from("{");
    for (i, (n, v)) in pairs.enumerate() {
        let n = String::from_utf8_lossy(n);
        let v = String::from_utf8_lossy(v);
        if i > 0 {
            s.push_str(", ");
        }
        let mut end = v.len().min(64);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        let dots = if end < v.len() { "..." } else { "" };
        s.push_str(&format!("{n}={:?}{dots}", &v[..end]));
    }
    s.push('}');
    s
}

/// Validates one series' labels as received: `spans` index `buf` (any order, see
/// [`crate::model::pack_pairs`]). Returns its [`RawLabels`] (sorted by name, sharing
/// `buf`). Empty values are dropped (Prometheus treats them as absent).
///
/// # Errors
/// The first [`Rejection`] found: invalid UTF-8, missing or invalid metric name, invalid
/// or duplicate label name, too many labels, or a label value that is too long.
///
/// # Panics
/// If a span lies outside `buf`.
pub fn validate_labels(
    buf: Bytes,
    spans: Vec<LabelSpan>,
    limits: &Limits,
) -> Result<RawLabels, Rejection> {
    let at = |r: (u32, u32)| span_bytes(&buf, r);
    let all = || spans.iter().map(|s| (at(s.name), at(s.value)));
    let mut has_name = false;
    let mut non_empty = 0;
    for (n, v) in all() {
        let (Ok(ns), Ok(vs)) = (std::str::from_utf8(n), std::str::from_utf8(v)) else {
            return Err(Rejection::InvalidUtf8(describe(all())));
        };
        if ns == METRIC_NAME_LABEL {
            if !is_valid_metric_name(vs) {
                return Err(Rejection::InvalidMetricName(vs.to_string()));
            }
            has_name = true;
        } else if !is_valid_label_name(ns) {
            return Err(Rejection::InvalidLabelName {
                name: ns.to_string(),
                series: describe(all()),
            });
        }
        if v.len() > limits.max_label_value_length {
            return Err(Rejection::LabelValueTooLong {
                name: ns.to_string(),
                series: describe(all()),
                length: v.len(),
                limit: limits.max_label_value_length,
            });
        }
        if !v.is_empty() {
            non_empty += 1;
        }
    }
    if !has_name {
        return Err(Rejection::MissingMetricName(describe(all())));
    }
    if non_empty > limits.max_labels_per_series {
        return Err(Rejection::TooManyLabels {
            series: describe(all()),
            count: non_empty,
            limit: limits.max_labels_per_series,
        });
    }
    let labels = RawLabels::from_spans(buf.clone(), spans);
    let mut names = labels.pair_bytes().map(|(n, _)| n);
    let mut prev = names.next();
    for n in names {
        if Some(n) == prev {
            return Err(Rejection::DuplicateLabel {
                name: String::from_utf8_lossy(n).into_owned(),
                series: describe(labels.pair_bytes()),
            });
        }
        prev = Some(n);
    }
    Ok(labels)
}

/// Checks a series' samples against the clock: none may be more than
/// [`Limits::max_future_ms`] after `now_ms` (ms since the epoch, UTC).
///
/// # Errors
/// [`Rejection::TooFarInFuture`] for the first such sample.
pub fn validate_samples(s: &SeriesSamples, limits: &Limits, now_ms: i64) -> Result<(), Rejection> {
    if let Some(bad) = s
        .samples
        .iter()
        .find(|x| x.timestamp_ms > now_ms + limits.max_future_ms)
    {
        return Err(Rejection::TooFarInFuture {
            series: format!("{:?}", s.labels.metric_name()),
            timestamp_ms: bad.timestamp_ms,
            now_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn validate_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: Vec<(N, V)>,
        l: &Limits,
    ) -> Result<RawLabels, Rejection> {
        let (buf, spans) = crate::model::pack_pairs(pairs);
        validate_labels(buf, spans, l)
    }

    #[test]
    fn names() {
        assert!(is_valid_metric_name("node_cpu:rate5m"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name("a-b"));
        assert!(is_valid_label_name("_x1"));
        assert!(!is_valid_label_name("a:b"));
    }

    #[test]
    fn rejections() {
        let l = Limits::default();
        assert_eq!(
            validate_pairs(p(&[("job", "x")]), &l).unwrap_err().reason(),
            "missing_metric_name"
        );
        assert_eq!(
            validate_pairs(p(&[("__name__", "a b")]), &l)
                .unwrap_err()
                .reason(),
            "invalid_metric_name"
        );
        assert_eq!(
            validate_pairs(p(&[("__name__", "a"), ("j-b", "x")]), &l)
                .unwrap_err()
                .reason(),
            "invalid_label_name"
        );
        assert_eq!(
            validate_pairs(p(&[("__name__", "a"), ("j", "x"), ("j", "y")]), &l)
                .unwrap_err()
                .reason(),
            "duplicate_label"
        );
        let long = "v".repeat(2049);
        let e = validate_pairs(p(&[("__name__", "a"), ("j", &long)]), &l).unwrap_err();
        assert_eq!(e.reason(), "label_value_too_long");
        assert!(e.to_string().contains("2049 bytes"));
        let mut many = p(&[("__name__", "a")]);
        for i in 0..30 {
            many.push((format!("l{i}"), "v".into()));
        }
        assert_eq!(
            validate_pairs(many.clone(), &l).unwrap_err().reason(),
            "too_many_labels"
        );
        many.pop();
        assert_eq!(validate_pairs(many, &l).unwrap().len(), 30);
        assert_eq!(
            validate_pairs(vec![(&b"__name__"[..], &b"\xff"[..])], &l)
                .unwrap_err()
                .reason(),
            "invalid_utf8"
        );
    }
}
