//! Strata's own metrics (`GET /metrics`), in one Prometheus registry.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The write path's metrics. Names follow Prometheus conventions (`_total` counters,
/// `_seconds` and `_bytes` units).
#[derive(Clone)]
pub struct IngestMetrics {
    /// The registry every Strata metric is registered in.
    pub registry: Registry,
    /// `strata_samples_ingested_total{protocol}`: samples acknowledged (durable).
    pub samples_ingested: IntCounterVec,
    /// `strata_samples_rejected_total{reason}`: samples rejected by validation or limits.
    pub samples_rejected: IntCounterVec,
    /// `strata_samples_dropped_total{reason}`: samples dropped on purpose, by
    /// configuration (`relabel`: a relabeling step dropped the series; `sampling_*`: a
    /// sampling policy, [`crate::policy::sampling`]).
    pub samples_dropped: IntCounterVec,
    /// `strata_sampling_adaptive_probability`: the adaptive sampling policy's probability.
    pub sampling_adaptive_probability: prometheus::Gauge,
    /// `strata_wal_bytes_written_total`.
    pub wal_bytes_written: IntGauge,
    /// `strata_wal_bytes`: bytes in live WAL segments.
    pub wal_bytes: IntGauge,
    /// `strata_wal_syncs_total`: group commits (fdatasync calls).
    pub wal_syncs: IntGauge,
    /// `strata_head_series`: series in the head.
    pub head_series: IntGauge,
    /// `strata_head_samples`: samples in the head not yet persisted.
    pub head_samples: IntGauge,
    /// `strata_persist_duration_seconds`: time to persist the head into Delta.
    pub persist_duration: Histogram,
    /// `strata_persist_failures_total`.
    pub persist_failures: IntCounter,
    /// `strata_persisted_samples_total`.
    pub persisted_samples: IntCounter,
    /// `strata_compactions_total{result}`.
    pub compactions: IntCounterVec,
    /// `strata_scrapes_total{job, result}`.
    pub scrapes: IntCounterVec,
}

impl IngestMetrics {
    /// Creates and registers the metrics in a new registry.
    pub fn new() -> IngestMetrics {
        let registry = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let g = |name: &str, help: &str| {
            let c = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let persist_duration = Histogram::with_opts(
            HistogramOpts::new(
                "strata_persist_duration_seconds",
                "Time to persist the head into the Delta tables, seconds.",
            )
            .buckets(prometheus::exponential_buckets(0.01, 2.0, 14).expect("valid buckets")),
        )
        .expect("valid metric");
        registry
            .register(Box::new(persist_duration.clone()))
            .expect("unique");
        let persist_failures =
            IntCounter::new("strata_persist_failures_total", "Failed persistence runs.")
                .expect("valid metric");
        registry
            .register(Box::new(persist_failures.clone()))
            .expect("unique");
        let persisted_samples = IntCounter::new(
            "strata_persisted_samples_total",
            "Samples written to the Delta samples table.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(persisted_samples.clone()))
            .expect("unique");
        IngestMetrics {
            samples_ingested: cv(
                "strata_samples_ingested_total",
                "Samples acknowledged (durable in the WAL), by protocol.",
                &["protocol"],
            ),
            samples_rejected: cv(
                "strata_samples_rejected_total",
                "Samples rejected, by reason.",
                &["reason"],
            ),
            samples_dropped: cv(
                "strata_samples_dropped_total",
                "Samples dropped on purpose by configuration (relabeling, sampling), by reason.",
                &["reason"],
            ),
            sampling_adaptive_probability: {
                let g = prometheus::Gauge::new(
                    "strata_sampling_adaptive_probability",
                    "The adaptive sampling policy's current probability (1: everything kept).",
                )
                .expect("valid metric");
                g.set(1.0);
                registry.register(Box::new(g.clone())).expect("unique");
                g
            },
            wal_bytes_written: g(
                "strata_wal_bytes_written_total",
                "Bytes written to the WAL since start.",
            ),
            wal_bytes: g("strata_wal_bytes", "Bytes in live WAL segments."),
            wal_syncs: g(
                "strata_wal_syncs_total",
                "WAL group commits (fdatasync calls) since start.",
            ),
            head_series: g("strata_head_series", "Series in the in-memory head."),
            head_samples: g(
                "strata_head_samples",
                "Samples in the head not yet persisted to Delta.",
            ),
            compactions: cv(
                "strata_compactions_total",
                "Background compactions (sorted merges of small files) of the samples table, by result.",
                &["result"],
            ),
            scrapes: cv(
                "strata_scrapes_total",
                "Scrapes by job and result (success or failure).",
                &["job", "result"],
            ),
            persist_duration,
            persist_failures,
            persisted_samples,
            registry,
        }
    }

    /// The registry rendered in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
    }
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}
