//! Cardinality limits, checked where a series enters the head: active series in all, active
//! series per metric, and distinct values of one label within a metric (so that a
//! `request_id` label is refused at ingestion, naming the label).
//!
//! Only a series the head does not hold yet is checked: samples of an admitted series are
//! never refused. The counts are those of the head's series (Prometheus's and Mimir's
//! "active series": the series that received a sample within the last persist cycles, see
//! [`crate::head`]), plus the series admitted since the last [`Tracker::rebuild`]; a
//! rebuild after each persist forgets the series the head dropped. Until then a dropped
//! series still counts, so the limits err towards refusing, for at most one persist
//! interval.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use crate::head::SeriesMeta;
use crate::model::{METRIC_NAME_LABEL, RawLabels};
use crate::validate::Rejection;

/// `[cardinality]`: 0 means no limit. Example:
///
/// ```toml
/// [cardinality]
/// max_series = 5000000
/// max_series_per_metric = 200000
/// max_label_values_per_metric = 50000
/// [[cardinality.overrides]]
/// metric = "http_requests_total"
/// max_series = 1000000
/// max_label_values = 1000
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CardinalityConfig {
    /// Active series in all.
    pub max_series: usize,
    /// Active series of one metric (one `__name__`).
    pub max_series_per_metric: usize,
    /// Distinct values of one label among one metric's active series.
    pub max_label_values_per_metric: usize,
    /// Per-metric limits that replace the two above for that metric.
    pub overrides: Vec<MetricLimits>,
}

/// Limits of one metric.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricLimits {
    /// The metric name (`__name__`).
    pub metric: String,
    /// Its active series (0: no limit; absent: the global per-metric limit).
    pub max_series: Option<usize>,
    /// Distinct values of any one of its labels (0: no limit; absent: the global one).
    pub max_label_values: Option<usize>,
}

impl CardinalityConfig {
    /// Whether any limit is set.
    pub fn enabled(&self) -> bool {
        self.max_series > 0
            || self.max_series_per_metric > 0
            || self.max_label_values_per_metric > 0
            || self.overrides.iter().any(|o| {
                o.max_series.is_some_and(|n| n > 0) || o.max_label_values.is_some_and(|n| n > 0)
            })
    }

    fn limits_of(&self, metric: &str) -> (usize, usize) {
        let o = self.overrides.iter().find(|o| o.metric == metric);
        (
            o.and_then(|o| o.max_series)
                .unwrap_or(self.max_series_per_metric),
            o.and_then(|o| o.max_label_values)
                .unwrap_or(self.max_label_values_per_metric),
        )
    }
}

/// What one metric's series use.
#[derive(Default)]
struct MetricUse {
    series: usize,
    /// Label name -> the hashes of its distinct values.
    values: HashMap<Arc<str>, HashSet<u64>>,
}

/// The counts the limits are checked against.
pub struct Tracker {
    cfg: CardinalityConfig,
    series: usize,
    metrics: HashMap<Arc<str>, MetricUse>,
}

fn value_hash(v: &str) -> u64 {
    xxhash_rust::xxh64::xxh64(v.as_bytes(), 0)
}

impl Tracker {
    /// A tracker with no series.
    pub fn new(cfg: CardinalityConfig) -> Tracker {
        Tracker {
            cfg,
            series: 0,
            metrics: HashMap::new(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &CardinalityConfig {
        &self.cfg
    }

    /// Recounts from the head's active series.
    pub fn rebuild(&mut self, active: &[Arc<SeriesMeta>]) {
        self.series = active.len();
        self.metrics.clear();
        let track_values = self.cfg.max_label_values_per_metric > 0
            || self
                .cfg
                .overrides
                .iter()
                .any(|o| o.max_label_values.is_some());
        for m in active {
            let u = self
                .metrics
                .entry(m.labels.metric_name_shared())
                .or_default();
            u.series += 1;
            if track_values {
                for (n, v) in m.labels.pairs() {
                    if n.as_ref() != METRIC_NAME_LABEL {
                        u.values.entry(n.clone()).or_default().insert(value_hash(v));
                    }
                }
            }
        }
    }

    /// Admits a series the head does not hold, counting it, or says which limit refuses it.
    pub fn admit(&mut self, labels: &RawLabels) -> Result<(), Rejection> {
        let metric = labels.metric_name();
        let (max_series, max_values) = self.cfg.limits_of(metric);
        if self.cfg.max_series > 0 && self.series >= self.cfg.max_series {
            return Err(Rejection::SeriesLimit {
                metric: metric.to_string(),
                limit: self.cfg.max_series,
                scope: "in all",
            });
        }
        let u = self.metrics.entry(Arc::from(metric)).or_default();
        if max_series > 0 && u.series >= max_series {
            return Err(Rejection::SeriesLimit {
                metric: metric.to_string(),
                limit: max_series,
                scope: "of this metric",
            });
        }
        let mut fresh = vec![];
        for (n, v) in labels.iter() {
            if n == METRIC_NAME_LABEL {
                continue;
            }
            let h = value_hash(v);
            let seen = u.values.get(n);
            if seen.is_some_and(|s| s.contains(&h)) {
                continue;
            }
            let count = seen.map_or(0, HashSet::len);
            if max_values > 0 && count >= max_values {
                return Err(Rejection::LabelValuesLimit {
                    metric: metric.to_string(),
                    label: n.to_string(),
                    value: v.to_string(),
                    limit: max_values,
                });
            }
            fresh.push((n, h));
        }
        u.series += 1;
        self.series += 1;
        if max_values > 0 {
            for (n, h) in fresh {
                u.values.entry(Arc::from(n)).or_default().insert(h);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)]) -> RawLabels {
        RawLabels::from_pairs(pairs.iter().map(|(n, v)| (*n, v.to_string())))
    }

    #[test]
    fn per_metric_series_and_label_values_are_limited() {
        let mut t = Tracker::new(CardinalityConfig {
            max_series: 0,
            max_series_per_metric: 3,
            max_label_values_per_metric: 2,
            overrides: vec![MetricLimits {
                metric: "big".into(),
                max_series: Some(0),
                max_label_values: Some(0),
            }],
        });
        let req = |id: &str| series(&[("__name__", "http"), ("request_id", id)]);
        assert!(t.admit(&req("a")).is_ok());
        assert!(t.admit(&req("b")).is_ok());
        let e = t.admit(&req("c")).unwrap_err();
        assert_eq!(e.reason(), "label_values_limit");
        assert!(e.to_string().contains("request_id"), "{e}");
        // A known value in a new combination is fine, up to the series limit.
        assert!(
            t.admit(&series(&[
                ("__name__", "http"),
                ("request_id", "a"),
                ("x", "1")
            ]))
            .is_ok()
        );
        let e = t
            .admit(&series(&[
                ("__name__", "http"),
                ("request_id", "b"),
                ("x", "1"),
            ]))
            .unwrap_err();
        assert_eq!(e.reason(), "series_limit");
        assert!(e.to_string().contains("http"), "{e}");
        // The override lifts both for `big`.
        for i in 0..10 {
            assert!(
                t.admit(&series(&[("__name__", "big"), ("id", &i.to_string())]))
                    .is_ok()
            );
        }
    }

    #[test]
    fn the_global_limit_counts_every_metric() {
        let mut t = Tracker::new(CardinalityConfig {
            max_series: 2,
            ..Default::default()
        });
        assert!(t.admit(&series(&[("__name__", "a")])).is_ok());
        assert!(t.admit(&series(&[("__name__", "b")])).is_ok());
        assert_eq!(
            t.admit(&series(&[("__name__", "c")])).unwrap_err().reason(),
            "series_limit"
        );
    }
}
