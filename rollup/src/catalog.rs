//! What the query side knows of the tiers: each tier's resolution, whether it has
//! sketches, how far it is built (its watermark) and how far back it still holds data
//! (its retention horizon), and how far back raw samples are kept. PromQL's planner
//! (`strata-promql`, `tiers` module) routes each query step to a tier or to raw samples by
//! this, and reads a tier's buckets with [`TierCatalog::read_buckets`].
//!
//! The catalog is a DataFusion session config extension of the engine's session
//! ([`TierCatalog::of`]), installed by [`crate::Rollups::open`] and kept current by the
//! jobs (each build commit moves the tier's watermark here too).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::prelude::SessionContext;

use crate::bucket::Bucket;
use crate::error::Result;
use crate::read::TierTable;
use crate::table::BucketColumns;
use crate::tier::Tier;

/// "None" in the atomics below.
const UNSET: i64 = i64::MIN;

const DAY_MS: i64 = 86_400_000;

/// The tiers as queries see them (a session config extension).
#[derive(Debug)]
pub struct TierCatalog {
    tiers: Vec<Tier>,
    /// Each tier's watermark, ms ([`UNSET`] before its first build).
    watermarks: Vec<AtomicI64>,
    /// Raw retention, ms (0: raw kept forever).
    raw_retention_ms: AtomicI64,
    /// Each tier's table, for [`TierCatalog::read_buckets`] (empty in a catalog made
    /// without them).
    tables: Vec<Arc<TierTable>>,
}

/// One tier at one moment, as [`TierCatalog::views`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierView {
    /// The tier's name (`1h`).
    pub name: String,
    /// Its table in the engine's catalog (`rollup_1h`).
    pub table: String,
    /// Bucket width, ms.
    pub resolution_ms: i64,
    /// Whether its buckets carry KLL sketches (`quantile_over_time` reads them).
    pub sketch: bool,
    /// The newest bucket end built, ms since the epoch (UTC); `None` before the first
    /// build. Every bucket ending at or before it is built.
    pub watermark_ms: Option<i64>,
    /// Buckets ending at or before this time (ms, UTC midnight) may have been deleted by
    /// retention; `None` when the tier keeps everything.
    pub horizon_ms: Option<i64>,
}

impl TierCatalog {
    /// A catalog of `tiers` with the given watermarks (ms; `None` for a tier never built),
    /// raw samples kept forever until [`TierCatalog::set_raw_retention`].
    pub fn new(tiers: Vec<Tier>, watermarks: Vec<Option<i64>>) -> TierCatalog {
        TierCatalog {
            watermarks: watermarks
                .into_iter()
                .map(|w| AtomicI64::new(w.unwrap_or(UNSET)))
                .collect(),
            tiers,
            raw_retention_ms: AtomicI64::new(0),
            tables: vec![],
        }
    }

    /// This catalog reading the tiers' buckets from `tables` (one per tier, in order).
    pub(crate) fn with_tables(self, tables: Vec<Arc<TierTable>>) -> TierCatalog {
        TierCatalog { tables, ..self }
    }

    /// Reads the buckets of tier `tier` ending in `(from_ms, to_ms]` (ms, UTC) of the
    /// series `ids` of the metrics `names`, by series id, in time order;
    /// only the bucket fields `fields`, and of the sketch columns what `sketch` says
    /// ([`TierTable::read_buckets`]; `ctx` is the query's session).
    ///
    /// # Errors
    /// [`crate::RollupError::Invariant`] for a tier this catalog has no table of, or a row
    /// that breaks the table's layout; Parquet errors reading a file.
    #[allow(clippy::too_many_arguments)]
    pub async fn read_buckets(
        &self,
        ctx: &SessionContext,
        tier: usize,
        names: &[&str],
        ids: &[i64],
        range: (i64, i64),
        fields: &[&str],
        sketch: SketchRead,
    ) -> Result<HashMap<i64, SeriesBuckets>> {
        let (Some(t), Some(table)) = (self.tiers.get(tier), self.tables.get(tier)) else {
            return Err(crate::RollupError::Invariant(format!(
                "no table for tier {tier} in the catalog"
            )));
        };
        table
            .read_buckets(ctx, t.resolution_ms(), names, ids, range, fields, sketch)
            .await
    }

    /// The catalog installed in `ctx`'s session, if any.
    pub fn of(ctx: &SessionContext) -> Option<Arc<TierCatalog>> {
        ctx.state_ref()
            .read()
            .config()
            .get_extension::<TierCatalog>()
    }

    /// Installs this catalog in `ctx`'s session (and so in every session later derived
    /// from it).
    pub fn install(self: &Arc<Self>, ctx: &SessionContext) {
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(self.clone());
    }

    /// Sets how long raw samples are kept (zero: forever); the server's `raw_retention`.
    pub fn set_raw_retention(&self, d: std::time::Duration) {
        self.raw_retention_ms.store(
            d.as_millis().min(i64::MAX as u128) as i64,
            Ordering::Relaxed,
        );
    }

    /// Tier `tier`'s watermark (ms, UTC): the newest bucket end built, `None` before the
    /// first build (or for an unknown tier). Kept in memory: read from the tables' logs
    /// when they are opened, moved by every build commit.
    pub fn watermark_ms(&self, tier: usize) -> Option<i64> {
        let w = self.watermarks.get(tier)?.load(Ordering::Relaxed);
        (w != UNSET).then_some(w)
    }

    pub(crate) fn set_watermark(&self, tier: usize, ms: i64) {
        if let Some(w) = self.watermarks.get(tier) {
            w.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// The tiers, finest first, as of `now_ms` (ms, UTC): a tier's horizon is the UTC
    /// midnight of `now - retention`, the first day its retention keeps
    /// ([`crate::Rollups::enforce_retention`]).
    pub fn views(&self, now_ms: i64) -> Vec<TierView> {
        self.tiers
            .iter()
            .enumerate()
            .map(|(i, t)| TierView {
                name: t.name.clone(),
                table: t.table(),
                resolution_ms: t.resolution_ms(),
                sketch: t.sketch,
                watermark_ms: self.watermark_ms(i),
                horizon_ms: t
                    .retention
                    .map(|r| day_start(now_ms - r.as_millis().min(i64::MAX as u128) as i64)),
            })
            .collect()
    }

    /// Raw samples ending at or before this time (ms, UTC midnight) may have been deleted
    /// by raw retention at `now_ms`: the midnight of `min(now - raw_retention, first
    /// tier's watermark)`, as the server's retention pass cuts; `None` when raw samples
    /// are kept forever or the first tier was never built (nothing is deleted then).
    pub fn raw_horizon_ms(&self, now_ms: i64) -> Option<i64> {
        let keep = self.raw_retention_ms.load(Ordering::Relaxed);
        let built = self.watermark_ms(0)?;
        (keep > 0).then(|| day_start((now_ms - keep).min(built)))
    }
}

fn day_start(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// What [`TierCatalog::read_buckets`] reads of the sketch columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SketchRead {
    /// Nothing.
    None,
    /// The KLL sketch.
    Sketch,
    /// The stored quantile [`crate::sketch::STORED_QUANTILES`]`[i]` (8 bytes a bucket
    /// rather than a sketch); the sketch instead from files written before the column.
    Quantile(usize),
}

/// One series' buckets of a tier in time order, as [`TierCatalog::read_buckets`] reads
/// them: where each one is in the decoded batches of the read (shared by all its
/// series), its [`Bucket`] made when asked for. Copying every bucket's 13 fields out of
/// the batches first was the largest part of a two-year query's time
/// (`benches/README.md`, run 8).
#[derive(Clone)]
pub struct SeriesBuckets {
    /// Each bucket's end, ms since the epoch, UTC, ascending.
    ends: Vec<i64>,
    /// Each bucket's `(batch, row)` in `columns`.
    at: Vec<(u32, u32)>,
    columns: Arc<[BucketColumns]>,
}

impl std::fmt::Debug for SeriesBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesBuckets")
            .field("ends", &self.ends)
            .finish_non_exhaustive()
    }
}

impl SeriesBuckets {
    /// The buckets at `rows` (`(end ms, batch, row)`, ascending by end) of `columns`.
    pub(crate) fn new(columns: Arc<[BucketColumns]>, rows: Vec<(i64, u32, u32)>) -> Self {
        let (ends, at) = rows.into_iter().map(|(e, b, r)| (e, (b, r))).unzip();
        SeriesBuckets { ends, at, columns }
    }

    /// `buckets` (`(end ms, bucket)`, ascending by end), without sketch columns: for
    /// buckets made in memory rather than read.
    pub fn from_buckets(buckets: &[(i64, Bucket)]) -> Self {
        let rows = buckets
            .iter()
            .enumerate()
            .map(|(i, (end, _))| (*end, 0, i as u32))
            .collect();
        SeriesBuckets::new(Arc::new([BucketColumns::of_buckets(buckets)]), rows)
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The buckets' ends, ms since the epoch, UTC, ascending.
    pub fn ends(&self) -> &[i64] {
        &self.ends
    }

    /// Bucket `i`'s aggregates (the fields not read are 0).
    ///
    /// # Errors
    /// [`crate::RollupError::Invariant`] for a null in the row's key or counts.
    ///
    /// # Panics
    /// If `i` is not below [`SeriesBuckets::len`].
    pub fn bucket(&self, i: usize) -> Result<Bucket> {
        let (b, r) = self.at[i];
        Ok(self.columns[b as usize].row(r as usize)?.2)
    }

    /// Bucket `i`'s KLL sketch bytes, when read and present.
    ///
    /// # Panics
    /// If `i` is not below [`SeriesBuckets::len`].
    pub fn sketch(&self, i: usize) -> Option<&[u8]> {
        let (b, r) = self.at[i];
        self.columns[b as usize].sketch(r as usize)
    }

    /// Bucket `i`'s stored quantile ([`SketchRead::Quantile`]), when read and present.
    ///
    /// # Panics
    /// If `i` is not below [`SeriesBuckets::len`].
    pub fn quantile(&self, i: usize) -> Option<f64> {
        let (b, r) = self.at[i];
        self.columns[b as usize].quantile(r as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn horizons_follow_retention_and_the_first_tier() {
        let d = 86_400_000;
        let tiers = vec![
            Tier::new("1m", Duration::from_secs(60))
                .with_retention(Duration::from_secs(2 * 86_400)),
            Tier::new("1h", Duration::from_secs(3600)),
        ];
        let c = TierCatalog::new(tiers, vec![None, Some(5 * d)]);
        let now = 10 * d + 3_600_000;
        let v = c.views(now);
        assert_eq!(v[0].horizon_ms, Some(8 * d));
        assert_eq!(v[0].watermark_ms, None);
        assert_eq!(v[1].horizon_ms, None);
        assert_eq!(v[1].watermark_ms, Some(5 * d));
        // Raw kept forever, or the first tier never built: nothing deleted.
        assert_eq!(c.raw_horizon_ms(now), None);
        c.set_raw_retention(Duration::from_secs(86_400));
        assert_eq!(c.raw_horizon_ms(now), None);
        // Built to day 4 12:00: raw is cut at day 4, not at day 9.
        c.set_watermark(0, 4 * d + d / 2);
        assert_eq!(c.raw_horizon_ms(now), Some(4 * d));
        c.set_watermark(0, 20 * d);
        assert_eq!(c.raw_horizon_ms(now), Some(9 * d));
        // A watermark never moves back.
        c.set_watermark(0, d);
        assert_eq!(c.views(now)[0].watermark_ms, Some(20 * d));
    }
}
