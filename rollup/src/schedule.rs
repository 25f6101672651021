//! When the tiers are built: each tier catches up, finest first, to the newest bucket
//! whose samples are all in.
//!
//! The first tier's target is the newest bucket that closed at least `allowed_lateness`
//! ago ([`ScheduleConfig::allowed_lateness`]), in event time while samples keep coming
//! ([`first_tier_watermark`]: behind the newest sample written, so that a backfill
//! written in time order is built as it arrives, not ahead of it and then again as
//! late), in wall-clock time once writes pause: its samples are read from the engine's
//! `samples` table, the head included, so a minute's bucket is queryable a few seconds
//! (the [`ScheduleConfig::interval`]) after `minute end + allowed lateness`, whether the
//! head was persisted or not. A coarser tier's target is the newest of its buckets that
//! the tier before covers (its watermark). A tier never built starts at the oldest raw
//! sample. Samples written later than the allowed lateness, into buckets already built,
//! are marked late by the write path ([`strata_ingest::late`]); once persisted, the next
//! catch-up builds their buckets again in every tier ([`crate::Rollups::rematerialize`]).
//! Until then, a query reading such a bucket from a tier does not see them.
//!
//! Each catch-up ends by merging the small files builds left in a tier's partitions
//! ([`Rollups::compact`], once a partition has [`ScheduleConfig::compact_files`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::functions_aggregate::expr_fn::min;
use datafusion::logical_expr::col;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::error::Result;
use crate::job::Rollups;

/// The scheduler's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// How long after a bucket of the first tier closes its late samples are still waited
    /// for. Default 30 s.
    pub allowed_lateness: Duration,
    /// How often the tiers catch up. Default 10 s.
    pub interval: Duration,
    /// A partition of a tier table is compacted once it has this many small files
    /// ([`Rollups::compact`]). Default 16.
    pub compact_files: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            allowed_lateness: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            compact_files: 16,
        }
    }
}

/// The jobs' metrics (`GET /metrics`).
#[derive(Clone)]
pub struct RollupMetrics {
    /// `strata_rollup_build_duration_seconds{tier}`: time of one catch-up build.
    pub duration: HistogramVec,
    /// `strata_rollup_rows_written_total{tier}`: series-buckets written.
    pub rows_written: IntCounterVec,
    /// `strata_rollup_failures_total{tier}`: builds that failed (retried next interval).
    pub failures: IntCounterVec,
    /// `strata_rollup_watermark_seconds{tier}`: the newest bucket end built, s since the
    /// epoch.
    pub watermark: IntGaugeVec,
    /// `strata_rollup_lag_seconds{tier}`: now minus the watermark, s.
    pub lag: IntGaugeVec,
    /// `strata_rollup_late_rows_rebuilt_total`: series-buckets built again (all tiers)
    /// because late samples fell in them.
    pub late_rebuilt: prometheus::IntCounter,
    /// `strata_rollup_files_compacted_total`: tier files merged into larger ones.
    pub files_compacted: prometheus::IntCounter,
}

impl RollupMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// Prometheus errors if they are registered already.
    pub fn register(registry: &Registry) -> prometheus::Result<RollupMetrics> {
        let m = RollupMetrics {
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "strata_rollup_build_duration_seconds",
                    "Time of one rollup catch-up build",
                ),
                &["tier"],
            )?,
            rows_written: IntCounterVec::new(
                Opts::new("strata_rollup_rows_written_total", "Series-buckets written"),
                &["tier"],
            )?,
            failures: IntCounterVec::new(
                Opts::new("strata_rollup_failures_total", "Rollup builds that failed"),
                &["tier"],
            )?,
            watermark: IntGaugeVec::new(
                Opts::new(
                    "strata_rollup_watermark_seconds",
                    "Newest bucket end built, seconds since the epoch",
                ),
                &["tier"],
            )?,
            lag: IntGaugeVec::new(
                Opts::new(
                    "strata_rollup_lag_seconds",
                    "Now minus the tier's watermark",
                ),
                &["tier"],
            )?,
            late_rebuilt: prometheus::IntCounter::new(
                "strata_rollup_late_rows_rebuilt_total",
                "Series-buckets built again because late samples fell in them",
            )?,
            files_compacted: prometheus::IntCounter::new(
                "strata_rollup_files_compacted_total",
                "Tier files merged into larger ones",
            )?,
        };
        registry.register(Box::new(m.late_rebuilt.clone()))?;
        registry.register(Box::new(m.files_compacted.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.rows_written.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.watermark.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        Ok(m)
    }
}

/// The time (ms, UTC) up to which the first tier's buckets may close at wall clock
/// `now_ms`, given the allowed lateness (ms) and the write path's event time `(newest
/// sample ms, wall ms it rose)` ([`strata_ingest::Ingester::event_time`]): `newest -
/// lateness` while samples keep coming (the newest rose less than `lateness` ago), so a
/// backfill in time order is built behind its own progress; `now - lateness` once writes
/// are idle for `lateness` (Flink's idleness: quiet sources do not hold the tier back),
/// and without writes. Never past `now - lateness`.
pub fn first_tier_watermark(now_ms: i64, lateness_ms: i64, event_time: Option<(i64, i64)>) -> i64 {
    let by_clock = now_ms - lateness_ms;
    match event_time {
        Some((newest, at)) if now_ms - at < lateness_ms => by_clock.min(newest - lateness_ms),
        _ => by_clock,
    }
}

impl Rollups {
    /// The oldest raw sample's time (ms, UTC), `None` without samples: the smaller of the
    /// head's earliest sample (read in place, [`strata_engine::Source::oldest_in_head`])
    /// and the Delta table's (a scan of its timestamp column), from one view. Looked up
    /// until found, then remembered: a tier not built yet asks at every catch-up.
    async fn oldest_sample_ms(&self) -> Result<Option<i64>> {
        if let Some(t) = *self.oldest_sample.lock() {
            return Ok(Some(t));
        }
        let (table, head) = self.engine().source().oldest_in_head();
        let batches = datafusion::prelude::SessionContext::new()
            .read_table(table.table_provider().await?)?
            .aggregate(vec![], vec![min(col("timestamp")).alias("t")])?
            .collect()
            .await?;
        let stored = crate::table::first_i64(&batches, 0)?.map(|us| us.div_euclid(1000));
        let t = stored.into_iter().chain(head).min();
        *self.oldest_sample.lock() = t;
        Ok(t)
    }

    /// Brings every tier up to date at time `now_ms` (ms, UTC): builds, finest first, the
    /// buckets between each tier's watermark and its target (module doc), then the
    /// buckets late samples fell in ([`Rollups::rematerialize`]). Returns the rows written
    /// per tier by the first part.
    ///
    /// # Errors
    /// The first build that fails (the tiers after it are not built this time).
    pub async fn catch_up(
        &self,
        now_ms: i64,
        cfg: &ScheduleConfig,
        metrics: Option<&RollupMetrics>,
    ) -> Result<Vec<u64>> {
        let mut written = vec![];
        let lateness = cfg.allowed_lateness.as_millis() as i64;
        let event_time = self.ingester().and_then(|i| i.event_time());
        let mut source_watermark = first_tier_watermark(now_ms, lateness, event_time);
        for i in 0..self.tiers().len() {
            let tier = &self.tiers()[i];
            let r = tier.resolution_ms();
            let target = source_watermark.div_euclid(r) * r;
            let from = match self.watermark(i).await? {
                Some(w) => w,
                None => match self.oldest_sample_ms().await? {
                    Some(t) => (t - 1).div_euclid(r) * r,
                    None => {
                        written.push(0);
                        continue;
                    }
                },
            };
            let started = Instant::now();
            let rows = if from < target {
                match self.build(i, from, target, |_| {}).await {
                    Ok(rep) => rep.rows_written,
                    Err(e) => {
                        if let Some(m) = metrics {
                            m.failures.with_label_values(&[&tier.name]).inc();
                        }
                        return Err(e);
                    }
                }
            } else {
                0
            };
            let w = self.watermark(i).await?.unwrap_or(from);
            if let Some(m) = metrics {
                let name = [tier.name.as_str()];
                if rows > 0 {
                    m.duration
                        .with_label_values(&name)
                        .observe(started.elapsed().as_secs_f64());
                    m.rows_written.with_label_values(&name).inc_by(rows);
                }
                m.watermark.with_label_values(&name).set(w / 1000);
                m.lag.with_label_values(&name).set((now_ms - w) / 1000);
            }
            written.push(rows);
            source_watermark = w;
        }
        let late = self.rematerialize(now_ms).await?;
        if let Some(m) = metrics {
            m.late_rebuilt.inc_by(late.rows_written);
        }
        let merged = self.compact(cfg.compact_files).await?;
        if let Some(m) = metrics {
            m.files_compacted.inc_by(merged.files_removed);
        }
        Ok(written)
    }

    /// Runs [`Rollups::catch_up`] every `cfg.interval` until `shutdown` resolves; a failed
    /// catch-up is logged and retried at the next interval.
    pub async fn run(
        self: Arc<Self>,
        cfg: ScheduleConfig,
        metrics: Option<RollupMetrics>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let now = strata_ingest::ingester::wall_clock_ms();
            if let Err(e) = self.catch_up(now, &cfg, metrics.as_ref()).await {
                tracing::error!(error = %e, "building the rollup tiers failed; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_tier_watermark;

    #[test]
    fn the_first_tier_follows_event_time_while_samples_come_and_the_clock_after() {
        let (now, lateness) = (10_000_000, 30_000);
        // No writes: the wall clock.
        assert_eq!(first_tier_watermark(now, lateness, None), now - lateness);
        // A backfill an hour behind, its newest sample written 2 s ago: behind the backfill.
        let backfill = Some((now - 3_600_000, now - 2_000));
        assert_eq!(
            first_tier_watermark(now, lateness, backfill),
            now - 3_600_000 - lateness
        );
        // The same backfill paused for longer than the lateness: the wall clock.
        let paused = Some((now - 3_600_000, now - lateness));
        assert_eq!(first_tier_watermark(now, lateness, paused), now - lateness);
        // Real-time writes: the newest sample is now; never past now - lateness.
        assert_eq!(
            first_tier_watermark(now, lateness, Some((now, now))),
            now - lateness
        );
        // No lateness allowed: the wall clock.
        assert_eq!(first_tier_watermark(now, 0, Some((now - 5_000, now))), now);
    }
}
