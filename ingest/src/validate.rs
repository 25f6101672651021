//! Step 1 of the write path: validation of series and samples against Prometheus's naming
//! rules and Strata's limits.
//!
//! Names follow Prometheus 3 (`docs/ingest.md`, "Names"): under the default `utf8`
//! validation scheme (`metric_name_validation_scheme`), any non-empty UTF-8 string is a
//! valid metric or label name (`http.request.latency`); under `legacy`, names must match
//! `[a-zA-Z_:][a-zA-Z0-9_:]*` (metrics) and `[a-zA-Z_][a-zA-Z0-9_]*` (labels). Names can
//! be translated to the legacy character set as they arrive
//! (`metric_name_escaping_scheme`: `underscores`, `dots` or `values`, the escapings of
//! Prometheus's `model.EscapeName` in `prometheus/common` `model/metric.go`), for users
//! whose dashboards and tools expect legacy names.

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
    /// Which names are valid (default `utf8`, as Prometheus 3).
    pub metric_name_validation_scheme: NameValidation,
    /// How names are translated as they arrive, before validation (default
    /// `allow-utf-8`: kept as sent).
    pub metric_name_escaping_scheme: NameEscaping,
}

/// Which metric and label names are valid (Prometheus 3's
/// `metric_name_validation_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameValidation {
    /// Any non-empty UTF-8 string.
    #[default]
    Utf8,
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names, `[a-zA-Z_][a-zA-Z0-9_]*` for labels.
    Legacy,
}

/// How names outside the legacy character set are translated as they arrive (Prometheus's
/// `metric_name_escaping_scheme`; the rules of `model.EscapeName`, `prometheus/common`
/// `model/metric.go`). A translation applies to metric names and label names alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum NameEscaping {
    /// Kept as sent.
    #[default]
    #[serde(rename = "allow-utf-8")]
    AllowUtf8,
    /// Each character a legacy name cannot hold becomes `_` (`http.request.latency` ->
    /// `http_request_latency`; a leading digit too: `1a` -> `_a`).
    #[serde(rename = "underscores")]
    Underscores,
    /// `.` becomes `_dot_`, `_` becomes `__`, any other character a legacy name cannot
    /// hold `__` (`a.b_c` -> `a_dot_b__c`); legacy names are escaped too.
    #[serde(rename = "dots")]
    Dots,
    /// A name that is not legacy is prefixed `U__`; `_` becomes `__` and each other
    /// character a legacy name cannot hold `_<hex code point>_` (`a.b` -> `U__a_2e_b`).
    #[serde(rename = "values")]
    Values,
}

/// Whether `c`, at character index `i` of a name, is in the legacy character set
/// (`isValidLegacyRune` in `prometheus/common` `model/metric.go`: letters, `_`, `:`, and
/// digits after the first character).
fn legacy_char(c: char, i: usize) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (c.is_ascii_digit() && i > 0)
}

/// `name` translated by `scheme` (see [`NameEscaping`]); borrowed when unchanged.
pub fn escape_name(name: &str, scheme: NameEscaping) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    use std::fmt::Write;
    let legacy = !name.is_empty() && name.chars().enumerate().all(|(i, c)| legacy_char(c, i));
    let mut out = String::with_capacity(name.len() + 8);
    match scheme {
        NameEscaping::AllowUtf8 => return Cow::Borrowed(name),
        NameEscaping::Underscores => {
            if legacy {
                return Cow::Borrowed(name);
            }
            for (i, c) in name.chars().enumerate() {
                out.push(if legacy_char(c, i) { c } else { '_' });
            }
        }
        NameEscaping::Dots => {
            for (i, c) in name.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    '.' => out.push_str("_dot_"),
                    c if legacy_char(c, i) => out.push(c),
                    _ => out.push_str("__"),
                }
            }
        }
        NameEscaping::Values => {
            if legacy {
                return Cow::Borrowed(name);
            }
            out.push_str("U__");
            for (i, c) in name.chars().enumerate() {
                match c {
                    '_' => out.push_str("__"),
                    c if legacy_char(c, i) => out.push(c),
                    c => {
                        let _ = write!(out, "_{:x}_", c as u32);
                    }
                }
            }
        }
    }
    if out == name {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(out)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_labels_per_series: 30,
            max_label_value_length: 2048,
            max_future_ms: 5 * 60 * 1000,
            metric_name_validation_scheme: NameValidation::Utf8,
            metric_name_escaping_scheme: NameEscaping::AllowUtf8,
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
    /// The metric name is empty, or (under legacy validation) does not match
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {name:?}: {rule}")]
    InvalidMetricName {
        /// The offending name.
        name: String,
        /// What a name must be under the validation scheme in force.
        rule: &'static str,
    },
    /// A label name is empty, or (under legacy validation) does not match
    /// `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {name:?} in series {series}: {rule}")]
    InvalidLabelName {
        /// The offending name.
        name: String,
        /// The series, for the message.
        series: String,
        /// What a name must be under the validation scheme in force.
        rule: &'static str,
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
    /// A series that cannot be read as the protocol defines it (a remote write 2.0 label
    /// reference outside the symbols table, an odd number of label references, samples and
    /// histograms in one series): the message names the problem.
    #[error("{0}")]
    Malformed(String),
    /// A new series beyond an active-series limit ([`crate::policy::cardinality`]).
    #[error(
        "series limit reached: a new series of {metric} would exceed {limit} active series {scope}"
    )]
    SeriesLimit {
        /// The series' metric name.
        metric: String,
        /// The limit.
        limit: usize,
        /// `in all` or `of this metric`.
        scope: &'static str,
    },
    /// A new series with a label value beyond the distinct-values limit of its metric.
    #[error(
        "label {label:?} of metric {metric} already has {limit} distinct values, the limit: the series with {label}={value:?} is refused"
    )]
    LabelValuesLimit {
        /// The metric name.
        metric: String,
        /// The label.
        label: String,
        /// The refused value.
        value: String,
        /// The limit.
        limit: usize,
    },
}

impl Rejection {
    /// A short, stable reason code for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::InvalidUtf8(_) => "invalid_utf8",
            Rejection::MissingMetricName(_) => "missing_metric_name",
            Rejection::InvalidMetricName { .. } => "invalid_metric_name",
            Rejection::InvalidLabelName { .. } => "invalid_label_name",
            Rejection::DuplicateLabel { .. } => "duplicate_label",
            Rejection::TooManyLabels { .. } => "too_many_labels",
            Rejection::LabelValueTooLong { .. } => "label_value_too_long",
            Rejection::TooFarInFuture { .. } => "too_far_in_future",
            Rejection::Malformed(_) => "malformed_series",
            Rejection::SeriesLimit { .. } => "series_limit",
            Rejection::LabelValuesLimit { .. } => "label_values_limit",
        }
    }
}

/// A name as Prometheus 3's HTTP API takes it in a URL path (`/api/v1/label/<name>/values`):
/// a `U__` name is value-encoded ([`NameEscaping::Values`]) and decoded here (`U__a_2e_b`
/// -> `a.b`); any other name, or a `U__` name that does not decode, is returned as it is
/// (`UnescapeName` in `prometheus/common` `model/metric.go`).
pub fn unescape_values_name(name: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let Some(rest) = name.strip_prefix("U__") else {
        return Cow::Borrowed(name);
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        // `_<hex>_`
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() && hex.len() < 8 => hex.push(h),
                _ => return Cow::Borrowed(name),
            }
        }
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(d) => out.push(d),
            None => return Cow::Borrowed(name),
        }
    }
    Cow::Owned(out)
}

/// Whether `s` is a valid metric name under `scheme`.
pub fn metric_name_ok(s: &str, scheme: NameValidation) -> bool {
    match scheme {
        NameValidation::Utf8 => !s.is_empty(),
        NameValidation::Legacy => is_valid_metric_name(s),
    }
}

/// Whether `s` is a valid label name under `scheme`.
pub fn label_name_ok(s: &str, scheme: NameValidation) -> bool {
    match scheme {
        NameValidation::Utf8 => !s.is_empty(),
        NameValidation::Legacy => is_valid_label_name(s),
    }
}

/// What a metric and a label name must be under `scheme`, for messages.
fn rules(scheme: NameValidation) -> (&'static str, &'static str) {
    match scheme {
        NameValidation::Utf8 => ("must not be empty", "must not be empty"),
        NameValidation::Legacy => (
            "must match [a-zA-Z_:][a-zA-Z0-9_:]* (metric_name_validation_scheme = \"legacy\")",
            "must match [a-zA-Z_][a-zA-Z0-9_]* (metric_name_validation_scheme = \"legacy\")",
        ),
    }
}

/// Whether `s` is a valid legacy Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// Whether `s` is a valid legacy Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
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
    let (buf, spans) = escaped(buf, spans, limits.metric_name_escaping_scheme);
    let scheme = limits.metric_name_validation_scheme;
    let (metric_rule, label_rule) = rules(scheme);
    let at = |r: (u32, u32)| span_bytes(&buf, r);
    let all = || spans.iter().map(|s| (at(s.name), at(s.value)));
    let mut has_name = false;
    let mut non_empty = 0;
    for (n, v) in all() {
        let (Ok(ns), Ok(vs)) = (std::str::from_utf8(n), std::str::from_utf8(v)) else {
            return Err(Rejection::InvalidUtf8(describe(all())));
        };
        if ns == METRIC_NAME_LABEL {
            if !metric_name_ok(vs, scheme) {
                return Err(Rejection::InvalidMetricName {
                    name: vs.to_string(),
                    rule: metric_rule,
                });
            }
            has_name = true;
        } else if !label_name_ok(ns, scheme) {
            return Err(Rejection::InvalidLabelName {
                name: ns.to_string(),
                series: describe(all()),
                rule: label_rule,
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

/// The label pairs of `buf` with their names (and the metric name, the value of
/// `__name__`) translated by `scheme`; `buf` and `spans` themselves when nothing changes
/// (always under `allow-utf-8`). Pairs that are not UTF-8 are left for validation to
/// reject.
fn escaped(buf: Bytes, spans: Vec<LabelSpan>, scheme: NameEscaping) -> (Bytes, Vec<LabelSpan>) {
    use std::borrow::Cow;
    if scheme == NameEscaping::AllowUtf8 {
        return (buf, spans);
    }
    let at = |r: (u32, u32)| span_bytes(&buf, r);
    let translate = |b: &[u8]| -> Option<String> {
        match escape_name(std::str::from_utf8(b).ok()?, scheme) {
            Cow::Owned(e) => Some(e),
            Cow::Borrowed(_) => None,
        }
    };
    let mut changed = false;
    type Pair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);
    let pairs: Vec<Pair<'_>> = spans
        .iter()
        .map(|s| {
            let (n, v) = (at(s.name), at(s.value));
            let (n2, v2) = if n == METRIC_NAME_LABEL.as_bytes() {
                (None, translate(v))
            } else {
                (translate(n), None)
            };
            changed |= n2.is_some() || v2.is_some();
            (
                n2.map_or(Cow::Borrowed(n), |e| Cow::Owned(e.into_bytes())),
                v2.map_or(Cow::Borrowed(v), |e| Cow::Owned(e.into_bytes())),
            )
        })
        .collect();
    if !changed {
        return (buf, spans);
    }
    crate::model::pack_pairs(pairs)
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
    fn escaping_follows_prometheus_escape_name() {
        use NameEscaping::*;
        // Cases of `TestEscapeName` in prometheus/common `model/metric_test.go` (and its
        // ports: Grafana's and the Java client's tests); `1abc` worked out from the rules.
        let cases = [
            ("no:escaping_required", Underscores, "no:escaping_required"),
            ("no:escaping_required", Dots, "no:escaping__required"),
            ("no:escaping_required", Values, "no:escaping_required"),
            (
                "mysystem.prod.west.cpu.load",
                Underscores,
                "mysystem_prod_west_cpu_load",
            ),
            (
                "mysystem.prod.west.cpu.load",
                Dots,
                "mysystem_dot_prod_dot_west_dot_cpu_dot_load",
            ),
            (
                "mysystem.prod.west.cpu.load",
                Values,
                "U__mysystem_2e_prod_2e_west_2e_cpu_2e_load",
            ),
            ("http.status:sum", Values, "U__http_2e_status:sum"),
            ("label with 😱", Underscores, "label_with__"),
            ("label with 😱", Dots, "label__with____"),
            ("label with 😱", Values, "U__label_20_with_20__1f631_"),
            ("1abc", Underscores, "_abc"),
            ("1abc", Values, "U___31_abc"),
        ];
        for (name, scheme, want) in cases {
            assert_eq!(escape_name(name, scheme), want, "{name} {scheme:?}");
        }
        assert_eq!(escape_name("a.b", AllowUtf8), "a.b");
        for (name, _, _) in cases {
            assert_eq!(unescape_values_name(&escape_name(name, Values)), name);
        }
        // Not value-encoded, or broken: as it is.
        assert_eq!(unescape_values_name("up"), "up");
        assert_eq!(unescape_values_name("U__a_zz_"), "U__a_zz_");
        assert_eq!(unescape_values_name("U__a_2e"), "U__a_2e");
    }

    #[test]
    fn utf8_names_are_valid_and_escaping_rewrites_names_only() {
        let l = Limits::default();
        let ok = validate_pairs(
            p(&[("__name__", "http.request.latency"), ("http.method", "GET")]),
            &l,
        )
        .unwrap();
        assert_eq!(ok.metric_name(), "http.request.latency");
        let esc = Limits {
            metric_name_escaping_scheme: NameEscaping::Underscores,
            ..Limits::default()
        };
        // The value "a.b" of a label is not a name: kept.
        let got = validate_pairs(
            p(&[("__name__", "http.request.latency"), ("http.method", "a.b")]),
            &esc,
        )
        .unwrap();
        let pairs: Vec<(String, String)> = got
            .pair_bytes()
            .map(|(n, v)| {
                (
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            p(&[("__name__", "http_request_latency"), ("http_method", "a.b")])
        );
        // Two names escaping to one are duplicates.
        assert_eq!(
            validate_pairs(p(&[("__name__", "m"), ("a.b", "1"), ("a_b", "2")]), &esc)
                .unwrap_err()
                .reason(),
            "duplicate_label"
        );
        // Empty names are invalid in every scheme.
        assert_eq!(
            validate_pairs(p(&[("__name__", "m"), ("", "1")]), &l)
                .unwrap_err()
                .reason(),
            "invalid_label_name"
        );
    }

    #[test]
    fn rejections() {
        let l = Limits {
            metric_name_validation_scheme: NameValidation::Legacy,
            ..Limits::default()
        };
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
