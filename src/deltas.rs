//! Writing translated samples with delta points (OTLP delta sums and histograms, StatsD
//! counters and summary counts): the points become running totals
//! ([`strata_ingest::receive::otlp::DeltaState`]) resumed after a restart from each
//! series' last stored sample, and the totals are taken back when the write fails.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use strata_ingest::receive::otlp::{DeltaState, LabelSet, Translated};
use strata_ingest::{IngestError, Ingester, WriteOutcome};

/// How far back the running total of a delta series is looked up after a restart: older
/// than this, the series starts again from 0 (a counter reset to `rate`).
const DELTA_RESUME_RANGE: &str = "7d";

/// Writes [`Translated`] samples, delta points made running totals.
pub(crate) struct DeltaWriter {
    ingester: Arc<Ingester>,
    /// The PromQL session the running totals of delta series are resumed from.
    ctx: SessionContext,
    state: DeltaState,
    /// Writes with delta points one at a time: their running totals are taken back when
    /// the write fails, before another write adds to them.
    one: tokio::sync::Mutex<()>,
}

impl DeltaWriter {
    /// A writer to `ingester`, resuming totals through the PromQL session `ctx`.
    pub(crate) fn new(ingester: Arc<Ingester>, ctx: SessionContext) -> DeltaWriter {
        DeltaWriter {
            ingester,
            ctx,
            state: DeltaState::default(),
            one: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes `t`'s samples and its delta points as running totals (`protocol` names the
    /// source in `/metrics`); `Ok` once durable. Delta points refused (an overlap) are
    /// counted in `t`.
    ///
    /// # Errors
    /// [`IngestError::Overloaded`] and the write path's other errors (the totals are then
    /// as before).
    pub(crate) async fn write(
        &self,
        t: &mut Translated,
        protocol: &str,
        now: i64,
    ) -> Result<WriteOutcome, IngestError> {
        let limits = self.ingester.limits();
        if t.deltas.is_empty() {
            return self
                .ingester
                .write(std::mem::take(&mut t.validated), protocol, None)
                .await;
        }
        let _one = self.one.lock().await;
        // Sampling before the running totals: kept delta points are scaled by 1/p; the
        // totals written are then not sampled again.
        let sampler = self.ingester.sampler();
        if sampler.enabled() {
            let mut dropped = sampler.sample_deltas(&mut t.deltas);
            dropped.extend(sampler.thin(&mut t.validated));
            self.ingester.count_sampled_out(&dropped);
        }
        let unknown = self.state.unknown(t);
        if !unknown.is_empty() {
            self.state.resume(self.last_stored(&unknown, now).await);
        }
        let undo = self.state.apply(t, limits, now);
        match self
            .ingester
            .write_with(std::mem::take(&mut t.validated), protocol, None, false)
            .await
        {
            Ok(out) => Ok(out),
            Err(e) => {
                self.state.undo(undo);
                Err(e)
            }
        }
    }

    /// The last stored sample `(ms, value)` of each of the series `wanted` within
    /// [`DELTA_RESUME_RANGE`] before `now_ms`, by PromQL (`last_over_time` and
    /// `ts_of_last_over_time` per metric name); series not found are left out. A failed
    /// lookup is logged and resumes nothing (those series start from 0).
    async fn last_stored(&self, wanted: &[LabelSet], now_ms: i64) -> Vec<(LabelSet, (i64, f64))> {
        let without_name = |l: &LabelSet| -> LabelSet {
            l.iter()
                .filter(|(n, _)| n != strata_ingest::model::METRIC_NAME_LABEL)
                .cloned()
                .collect()
        };
        let mut names: Vec<&str> = wanted
            .iter()
            .filter_map(|l| {
                l.iter()
                    .find(|(n, _)| n == strata_ingest::model::METRIC_NAME_LABEL)
                    .map(|(_, v)| v.as_str())
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let opts = strata_promql::QueryOptions::default();
        let mut found = vec![];
        for name in names {
            let selector = format!(
                "{{__name__={}}}[{DELTA_RESUME_RANGE}]",
                serde_json::Value::String(name.to_string())
            );
            let mut by_labels: std::collections::HashMap<LabelSet, (i64, f64)> = Default::default();
            for (f, is_time) in [("ts_of_last_over_time", true), ("last_over_time", false)] {
                let q = format!("{f}({selector})");
                match strata_promql::instant_query(&self.ctx, &q, now_ms, &opts).await {
                    Ok(r) => {
                        if let strata_promql::QueryValue::Vector(v) = r.value {
                            for s in v {
                                let e = by_labels.entry(without_name(&s.labels)).or_default();
                                if is_time {
                                    e.0 = (s.v * 1000.0).round() as i64;
                                } else {
                                    e.1 = s.v;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, query = %q, "resuming delta totals");
                    }
                }
            }
            for l in wanted {
                if let Some(last) = by_labels.get(&without_name(l)) {
                    found.push((l.clone(), *last));
                }
            }
        }
        found
    }
}
