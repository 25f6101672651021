//! The jobs that materialize the tiers: read a time range of the source (raw samples for
//! the first tier, the tier before for the others), aggregate each series' buckets, and
//! replace that range of the tier's Delta table in one commit.
//!
//! A build of buckets ending in `(from, to]` writes with Delta's `replaceWhere` on
//! `bucket_end` over exactly that range, and records the tier's watermark (the newest
//! bucket end built, ms) as a Delta `txn` action of application [`APP_ID`] in the same
//! commit. So a build is atomic: one killed at any point (kill -9) left the table as it
//! was, and a build run again over the same range replaces what it wrote instead of
//! adding to it (no double counting). Long ranges are built in slices, one commit each,
//! oldest first, so a killed backfill keeps the slices it finished; a slice's length
//! adapts to the source rows the last one read ([`next_slice_ms`]), so sparse history
//! backfills in few commits and dense data never holds more than a few million source
//! rows in memory.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use strata_engine::Engine;
use strata_ingest::storage::DataDir;
use tokio::sync::Mutex;

use std::collections::HashMap;

use crate::bucket::{bucket_end, bucketize, coarsen};
use crate::catalog::TierCatalog;
use crate::error::{Result, RollupError};
use crate::read::TierTable;
use crate::sketch;
use crate::table::{self, Row};
use crate::tier::{self, Tier};

/// The Delta application id under which each tier table records its watermark.
pub const APP_ID: &str = "strata-rollup";

/// What one build did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// Source rows read (raw samples or finer buckets).
    pub source_rows: u64,
    /// Series-buckets written.
    pub rows_written: u64,
    /// Delta commits made (one per slice).
    pub commits: u64,
}

/// The tier tables and the jobs that build them, over an engine whose `samples` table
/// (the Delta table and the head) is the raw source.
pub struct Rollups {
    engine: Engine,
    tiers: Vec<Tier>,
    /// Each tier's table, in tier order; the lock serializes builds of one tier.
    tables: Vec<Mutex<DeltaTable>>,
    /// Each tier's series table (`rollup_<name>_series`), written under the tier's lock.
    series_tables: Vec<Mutex<DeltaTable>>,
    /// Each tier's table as registered in the engine's catalog (the latest version).
    providers: Vec<Arc<TierTable>>,
    series_providers: Vec<Arc<TierTable>>,
    /// The oldest raw sample's time (ms) once the scheduler has looked it up: where a
    /// tier never built starts ([`crate::schedule`]).
    pub(crate) oldest_sample: parking_lot::Mutex<Option<i64>>,
    /// The tiers as queries see them, installed in the engine's session.
    catalog: Arc<TierCatalog>,
    /// The write path whose late samples ([`strata_ingest::late`]) the tiers follow.
    ingester: Option<Arc<strata_ingest::Ingester>>,
    /// The samples-table version whose late marks are all built again; `None` until read
    /// from the first tier's log ([`LATE_APP_ID`]).
    late_checkpoint: Mutex<Option<i64>>,
}

/// The Delta application id under which the first tier table records the samples-table
/// version up to which late samples have been built again.
pub const LATE_APP_ID: &str = "strata-rollup-late";

impl Rollups {
    /// Opens (or creates) the tier tables `rollup_<name>` under `data_dir`, registers
    /// them in `engine`'s catalog under the same names, for SQL, and installs the
    /// [`TierCatalog`] PromQL routes by in `engine`'s session.
    ///
    /// # Errors
    /// [`RollupError::Config`] for an invalid tier list ([`tier::validate`]); storage,
    /// Delta or DataFusion errors.
    pub async fn open(engine: Engine, data_dir: &DataDir, tiers: Vec<Tier>) -> Result<Rollups> {
        tier::validate(&tiers)?;
        crate::sql::register(&engine.context());
        let mut tables = vec![];
        let (mut series_tables, mut series_providers) = (vec![], vec![]);
        let mut providers = vec![];
        for t in &tiers {
            let table = data_dir
                .open_table(&t.table(), table::columns(), &table::PARTITIONS)
                .await?;
            let table = table::with_new_columns(table).await?;
            let latest = Arc::new(TierTable::of(&table, crate::read::TIER_FILE_CACHE_BYTES).await?);
            engine.context().register_table(t.table(), latest.clone())?;
            providers.push(latest);
            tables.push(Mutex::new(table));
            let series = data_dir
                .open_table(
                    &t.series_table(),
                    table::series_columns(),
                    &table::PARTITIONS,
                )
                .await?;
            let latest = Arc::new(TierTable::of(&series, 0).await?);
            engine
                .context()
                .register_table(t.series_table(), latest.clone())?;
            series_providers.push(latest);
            series_tables.push(Mutex::new(series));
        }
        let mut watermarks = vec![];
        for t in &tables {
            watermarks.push(watermark_of(&*t.lock().await).await?);
        }
        let catalog =
            Arc::new(TierCatalog::new(tiers.clone(), watermarks).with_tables(providers.clone()));
        catalog.install(&engine.context());
        Ok(Rollups {
            catalog,
            ingester: None,
            late_checkpoint: Mutex::new(None),
            engine,
            tiers,
            tables,
            series_tables,
            providers,
            series_providers,
            oldest_sample: parking_lot::Mutex::new(None),
        })
    }

    /// Follows `ingester`'s late samples: builds of the first tier raise its late
    /// watermark before they read, and [`Rollups::rematerialize`] builds again the
    /// buckets late samples fall in.
    pub async fn track_late(&mut self, ingester: Arc<strata_ingest::Ingester>) {
        // What is built already (before a restart too) is late from now on.
        if let Some(w) = self.catalog.watermark_ms(0) {
            ingester.raise_late_watermark(w).await;
        }
        self.ingester = Some(ingester);
    }

    /// The tiers as queries see them (also installed in the engine's session).
    pub fn catalog(&self) -> &Arc<TierCatalog> {
        &self.catalog
    }

    /// The engine the raw samples are read from.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The write path whose late samples and event time the tiers follow
    /// ([`Rollups::track_late`]), if any.
    pub(crate) fn ingester(&self) -> Option<&Arc<strata_ingest::Ingester>> {
        self.ingester.as_ref()
    }

    /// The tiers, finest first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The index of tier `name`.
    ///
    /// # Errors
    /// [`RollupError::BadRequest`] naming the known tiers.
    pub fn tier(&self, name: &str) -> Result<usize> {
        self.tiers
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.tiers.iter().map(|t| t.name.as_str()).collect();
                RollupError::BadRequest(format!("unknown tier {name:?}; tiers: {known:?}"))
            })
    }

    /// The tier's watermark: the end (ms, UTC) of the newest bucket built, `None` before
    /// the first build.
    ///
    /// # Errors
    /// None: the watermark is the catalog's ([`TierCatalog::watermark_ms`]), read from
    /// the table's log when it was opened and moved by each build's commit.
    pub async fn watermark(&self, tier: usize) -> Result<Option<i64>> {
        Ok(self.catalog.watermark_ms(tier))
    }

    /// Builds `tier`'s buckets ending in `(from_ms, to_ms]` (ms since the epoch, UTC; both
    /// multiples of the tier's resolution) from its source, replacing whatever the table
    /// held for those buckets, slice by slice; `progress` is called after each slice with
    /// the time built up to. A tier other than the first reads the tier before it, which
    /// must have been built over the range already.
    ///
    /// # Errors
    /// [`RollupError::BadRequest`] for a range that is empty or not aligned; DataFusion
    /// errors reading the source; Delta errors writing (the slice's commit is then not
    /// made, and earlier slices stay).
    pub async fn build(
        &self,
        tier: usize,
        from_ms: i64,
        to_ms: i64,
        mut progress: impl FnMut(i64),
    ) -> Result<BuildReport> {
        let r = self.tiers[tier].resolution_ms();
        if from_ms >= to_ms || from_ms.rem_euclid(r) != 0 || to_ms.rem_euclid(r) != 0 {
            return Err(RollupError::BadRequest(format!(
                "tier {}: the range ({from_ms}, {to_ms}] ms must be non-empty and aligned to {r} ms",
                self.tiers[tier].name
            )));
        }
        let mut report = BuildReport::default();
        let mut slice = FIRST_SLICE_BUCKETS * r;
        let mut start = from_ms;
        while start < to_ms {
            let end = (start + slice).min(to_ms);
            if tier == 0
                && let Some(ingester) = &self.ingester
            {
                // A sample written from now on into (.., end] is marked late: the read
                // below sees it, or it is built again.
                ingester.raise_late_watermark(end).await;
            }
            let before = report.source_rows;
            let rows = self.source_rows(tier, start, end, &mut report).await?;
            self.write(tier, start, end, rows, &mut report).await?;
            progress(end);
            slice = next_slice_ms(slice, report.source_rows - before, r);
            start = end;
        }
        Ok(report)
    }

    /// The tier's rows for buckets ending in `(from, to]`, aggregated from its source.
    async fn source_rows(
        &self,
        tier: usize,
        from: i64,
        to: i64,
        report: &mut BuildReport,
    ) -> Result<Vec<Row>> {
        let r = self.tiers[tier].resolution_ms();
        let want_sketch = self.tiers[tier].sketch;
        let mut out = vec![];
        if tier == 0 {
            // In the tables' order already: series by key, each one's buckets by time.
            for s in crate::source::between(&self.engine, from, to).await? {
                report.source_rows += s.samples.len() as u64;
                let points = || s.samples.iter().map(|x| (x.timestamp_ms, x.value));
                let mut sketches = if want_sketch {
                    kll_by_bucket(points(), r)
                } else {
                    Default::default()
                };
                for (end_ms, bucket) in bucketize(points(), r) {
                    let k = sketches.remove(&end_ms);
                    out.push(Row::new(s.key.clone(), end_ms, bucket, k.as_ref()));
                }
            }
            return Ok(out);
        } else {
            let source = self.providers[tier - 1].provider();
            let df = SessionContext::new()
                .read_table(source)?
                .filter(
                    col("bucket_end")
                        .gt(ts_lit(from))
                        .and(col("bucket_end").lt_eq(ts_lit(to))),
                )?
                .sort(vec![
                    col("series_id").sort(true, false),
                    col("bucket_end").sort(true, false),
                ])?;
            let fine = table::rows(&df.collect().await?)?;
            report.source_rows += fine.len() as u64;
            // Sketches merged from the tier below, or built from raw samples where it has
            // none.
            let mut raw_sketches = if want_sketch && !self.tiers[tier - 1].sketch {
                self.raw_sketches(from, to, r, report).await?
            } else {
                Default::default()
            };
            for run in fine.chunk_by(|a, b| a.key.series_id == b.key.series_id) {
                let key = &run[0].key;
                let mut merged: HashMap<i64, sketch::Kll> = HashMap::new();
                if want_sketch && self.tiers[tier - 1].sketch {
                    for f in run {
                        if let Some(bytes) = &f.sketch {
                            let end = bucket_end(f.end_ms, r);
                            let k = merged.entry(end).or_insert_with(sketch::new_kll);
                            sketch::kll_merge(k, bytes)?;
                        }
                    }
                }
                for (end_ms, bucket) in coarsen(run.iter().map(|b| (b.end_ms, b.bucket)), r) {
                    let k = merged
                        .remove(&end_ms)
                        .or_else(|| raw_sketches.remove(&(key.series_id, end_ms)));
                    out.push(Row::new(key.clone(), end_ms, bucket, k.as_ref()));
                }
            }
        }
        // The table's order: family, metric name, series, bucket.
        out.sort_by(|a, b| (&a.key, a.end_ms).cmp(&(&b.key, b.end_ms)));
        Ok(out)
    }

    /// KLL sketches of raw values per `(series_id, bucket end)` for buckets of
    /// `resolution` ending in `(from, to]`, reading the raw samples an hour at a time (a
    /// day of every series' samples at once would not fit in memory at scale).
    async fn raw_sketches(
        &self,
        from: i64,
        to: i64,
        resolution: i64,
        report: &mut BuildReport,
    ) -> Result<HashMap<(i64, i64), sketch::Kll>> {
        const CHUNK: i64 = 3_600_000;
        let mut out: HashMap<(i64, i64), sketch::Kll> = HashMap::new();
        let mut start = from;
        while start < to {
            let end = ((start.div_euclid(CHUNK) + 1) * CHUNK).min(to);
            for s in crate::source::between(&self.engine, start, end).await? {
                report.source_rows += s.samples.len() as u64;
                for x in &s.samples {
                    let k = out
                        .entry((s.key.series_id, bucket_end(x.timestamp_ms, resolution)))
                        .or_insert_with(sketch::new_kll);
                    sketch::kll_update(k, x.value);
                }
            }
            start = end;
        }
        Ok(out)
    }

    /// Replaces the tier table's buckets ending in `(from, to]` with `rows`, and moves the
    /// watermark up to `to` if it is behind, in one commit.
    async fn write(
        &self,
        tier: usize,
        from: i64,
        to: i64,
        rows: Vec<Row>,
        report: &mut BuildReport,
    ) -> Result<()> {
        let mut table = self.tables[tier].lock().await;
        let range = col("bucket_end")
            .gt(ts_lit(from))
            .and(col("bucket_end").lt_eq(ts_lit(to)));
        // The series table first: a build killed between the two commits has not moved
        // the watermark, and its re-run replaces both.
        {
            let mut series = self.series_tables[tier].lock().await;
            let schema = series.snapshot()?.snapshot().arrow_schema();
            let batch = table::series_batch(&schema, &rows, self.tiers[tier].resolution_ms())?;
            let written =
                replace(&series, batch, range.clone(), CommitProperties::default()).await?;
            self.series_providers[tier].set(&written).await?;
            *series = written;
        }
        let watermark = self.catalog.watermark_ms(tier).unwrap_or(i64::MIN).max(to);
        let schema = table.snapshot()?.snapshot().arrow_schema();
        let batch = table::batch(&schema, &rows, self.tiers[tier].resolution_ms())?;
        let commit = CommitProperties::default()
            .with_application_transaction(Transaction::new(APP_ID, watermark));
        let written = replace(&table, batch, range, commit).await?;
        self.providers[tier].set(&written).await?;
        *table = written;
        self.catalog.set_watermark(tier, watermark);
        report.rows_written += rows.len() as u64;
        report.commits += 1;
        Ok(())
    }
}

impl Rollups {
    /// Builds again, in every tier, the built buckets that late samples persisted since
    /// the last call fall in ([`strata_ingest::late`]; their marks are read from the
    /// samples table's commits after the checkpoint), finest tier first, each from its
    /// source; then records the samples-table version reached as the checkpoint, a Delta
    /// `txn` ([`LATE_APP_ID`]) of the first tier's table. Killed before that commit, the
    /// next call builds the same buckets again (builds replace: nothing counts twice).
    /// Buckets whose source has expired (raw samples, or the finer tier, past retention
    /// at `now_ms`) are left as they are. Returns what the builds did.
    ///
    /// # Errors
    /// Delta errors reading the samples log or writing a tier; build errors.
    pub async fn rematerialize(&self, now_ms: i64) -> Result<BuildReport> {
        let mut report = BuildReport::default();
        let Some(ingester) = &self.ingester else {
            return Ok(report);
        };
        let mut checkpoint = self.late_checkpoint.lock().await;
        let from_version = match *checkpoint {
            Some(v) => v,
            None => {
                let table = self.tables[0].lock().await;
                table
                    .snapshot()?
                    .transaction_version(table.log_store().as_ref(), LATE_APP_ID)
                    .await?
                    .unwrap_or(-1)
            }
        };
        let (latest, marks) = ingester.late_since(from_version).await?;
        if latest <= from_version || marks.is_empty() {
            *checkpoint = Some(latest.max(from_version));
            return Ok(report);
        }
        let views = self.catalog.views(now_ms);
        let raw_horizon = self.catalog.raw_horizon_ms(now_ms);
        for (i, t) in self.tiers.iter().enumerate() {
            let r = t.resolution_ms();
            let Some(built) = self.watermark(i).await? else {
                continue;
            };
            let source_horizon = if i == 0 {
                raw_horizon
            } else {
                views[i - 1].horizon_ms
            };
            let mut runs: Vec<(i64, i64)> = vec![];
            for (lo, hi) in marks.iter() {
                let mut from = bucket_end(lo + 1, r) - r;
                if let Some(h) = source_horizon {
                    from = from.max(bucket_end(h, r));
                }
                let to = bucket_end(hi, r).min(built);
                if from >= to {
                    continue;
                }
                match runs.last_mut() {
                    Some(last) if last.1 >= from => last.1 = last.1.max(to),
                    _ => runs.push((from, to)),
                }
            }
            for (from, to) in runs {
                let rep = self.build(i, from, to, |_| {}).await?;
                report.source_rows += rep.source_rows;
                report.rows_written += rep.rows_written;
                report.commits += rep.commits;
            }
        }
        let mut table = self.tables[0].lock().await;
        let done = commit_txn(&table, LATE_APP_ID, latest).await?;
        self.providers[0].set(&done).await?;
        *table = done;
        *checkpoint = Some(latest);
        Ok(report)
    }
}

/// Commits to `table` only a `txn` action: application `app` at `version`.
async fn commit_txn(table: &DeltaTable, app: &str, version: i64) -> Result<DeltaTable> {
    use deltalake::kernel::transaction::CommitBuilder;
    let done = CommitBuilder::from(
        CommitProperties::default().with_application_transaction(Transaction::new(app, version)),
    )
    .build(
        Some(table.snapshot()?),
        table.log_store(),
        deltalake::protocol::DeltaOperation::Update { predicate: None },
    )
    .await?;
    let mut t = table.clone();
    t.update_incremental(Some(done.version())).await?;
    Ok(t)
}

/// A build's first slice, in buckets of the tier.
const FIRST_SLICE_BUCKETS: i64 = 60;

/// Source rows a slice aims at: a slice that read under a quarter of this doubles the
/// next one, over four times this halves it.
const SLICE_ROWS: u64 = 1 << 20;

/// The longest slice (ms): 64 days.
const MAX_SLICE_MS: i64 = 64 * 86_400_000;

/// The next slice's length after one of `len` ms read `rows` source rows: doubled when
/// `rows < SLICE_ROWS / 4` (up to [`MAX_SLICE_MS`], or one bucket if that is longer),
/// halved when `rows > 4 * SLICE_ROWS` (down to one bucket), else the same; always a
/// multiple of the resolution `r`.
fn next_slice_ms(len: i64, rows: u64, r: i64) -> i64 {
    let len = if rows < SLICE_ROWS / 4 {
        (len * 2).min(MAX_SLICE_MS.max(r))
    } else if rows > 4 * SLICE_ROWS {
        len / 2
    } else {
        len
    };
    (len / r).max(1) * r
}

/// Replaces the rows of `table` matching `range` with `batch` in one commit (Delta's
/// `replaceWhere`), sorted as given, with the tier tables' Parquet settings.
pub(crate) async fn replace(
    table: &DeltaTable,
    batch: arrow::record_batch::RecordBatch,
    range: Expr,
    commit: CommitProperties,
) -> Result<DeltaTable> {
    Ok(table
        .clone()
        .write(vec![batch])
        .with_session_state(strata_ingest::ingester::ordered_write_session()?)
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(range)
        .with_partition_columns(table::PARTITIONS)
        .with_writer_properties(table::writer_properties())
        .with_commit_properties(commit)
        .await?)
}

/// A UTC timestamp literal (µs) of `ms`.
pub(crate) fn ts_lit(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(ms * 1000),
        Some("UTC".into()),
    ))
}

/// KLL sketches of one series' time-ordered values per bucket end of `resolution`.
fn kll_by_bucket(
    samples: impl IntoIterator<Item = (i64, f64)>,
    resolution: i64,
) -> HashMap<i64, sketch::Kll> {
    let mut out: HashMap<i64, sketch::Kll> = HashMap::new();
    for (t, v) in samples {
        sketch::kll_update(
            out.entry(bucket_end(t, resolution))
                .or_insert_with(sketch::new_kll),
            v,
        );
    }
    out
}

/// The watermark recorded in `table`'s log ([`APP_ID`]).
async fn watermark_of(table: &DeltaTable) -> Result<Option<i64>> {
    Ok(table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), APP_ID)
        .await?)
}

#[cfg(test)]
mod slice_tests {
    use super::*;

    #[test]
    fn slices_grow_on_sparse_data_and_shrink_on_dense() {
        let m = 60_000;
        assert_eq!(next_slice_ms(60 * m, 1000, m), 120 * m);
        assert_eq!(next_slice_ms(MAX_SLICE_MS, 0, m), MAX_SLICE_MS);
        assert_eq!(next_slice_ms(60 * m, 10 << 20, m), 30 * m);
        assert_eq!(next_slice_ms(m, 10 << 20, m), m, "never under one bucket");
        assert_eq!(next_slice_ms(60 * m, SLICE_ROWS, m), 60 * m);
        // A 1d tier: 64 days is 64 buckets; growth stays on whole days.
        let d = 86_400_000;
        assert_eq!(next_slice_ms(60 * d, 0, d), 64 * d);
        assert_eq!(next_slice_ms(3 * d, 5 << 20, d), d);
    }
}

/// One tier's state, as `GET /api/v1/status/tiers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierStatus {
    /// The tier's name.
    pub name: String,
    /// Its bucket width, s.
    pub resolution_seconds: i64,
    /// Its Delta table (under the data directory; also its name in SQL).
    pub table: String,
    /// The newest bucket end built, ms since the epoch (UTC); null before the first build.
    pub watermark_ms: Option<i64>,
    /// `now - watermark`, s; null before the first build.
    pub lag_seconds: Option<i64>,
    /// Rows (series-buckets) in the table.
    pub rows: u64,
    /// Bytes of the table's live Parquet files.
    pub bytes: u64,
    /// Number of live Parquet files.
    pub files: u64,
    /// The oldest and newest bucket ends in the table, ms (UTC); null when empty.
    pub oldest_bucket_ms: Option<i64>,
    /// See `oldest_bucket_ms`.
    pub newest_bucket_ms: Option<i64>,
    /// How long the tier keeps buckets, s; null to keep them forever.
    pub retention_seconds: Option<u64>,
}

impl Rollups {
    /// Each tier's [`TierStatus`] at `now_ms` (ms, UTC).
    ///
    /// # Errors
    /// Delta or DataFusion errors reading a table.
    pub async fn status(&self, now_ms: i64) -> Result<Vec<TierStatus>> {
        use datafusion::functions_aggregate::expr_fn::{count, max, min};
        let mut out = vec![];
        for (i, t) in self.tiers.iter().enumerate() {
            let watermark = self.catalog.watermark_ms(i);
            let (bytes, files) = {
                let table = self.tables[i].lock().await;
                let snapshot = table.snapshot()?;
                let (mut bytes, mut files) = (0u64, 0u64);
                for f in snapshot.snapshot().log_data().iter() {
                    bytes += f.size().max(0) as u64;
                    files += 1;
                }
                (bytes, files)
            };
            let b = SessionContext::new()
                .read_table(self.providers[i].provider())?
                .aggregate(
                    vec![],
                    vec![
                        count(lit(1)).alias("n"),
                        min(col("bucket_end")).alias("lo"),
                        max(col("bucket_end")).alias("hi"),
                    ],
                )?
                .collect()
                .await?;
            let get = |c: usize| table::first_i64(&b, c);
            out.push(TierStatus {
                name: t.name.clone(),
                resolution_seconds: t.resolution_ms() / 1000,
                table: t.table(),
                watermark_ms: watermark,
                lag_seconds: watermark.map(|w| (now_ms - w) / 1000),
                rows: get(0)?.unwrap_or(0) as u64,
                bytes,
                files,
                oldest_bucket_ms: get(1)?.map(|us| us / 1000),
                newest_bucket_ms: get(2)?.map(|us| us / 1000),
                retention_seconds: t.retention.map(|r| r.as_secs()),
            });
        }
        Ok(out)
    }
}

/// What [`Rollups::enforce_retention`] removed from one tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Expired {
    /// The tier.
    pub tier: String,
    /// Data files removed from the tier table and its series table (their bytes are freed
    /// by a later vacuum).
    pub files_removed: u64,
}

impl Rollups {
    /// Deletes, in each tier with a retention, the whole `date` partitions (UTC days) whose
    /// every bucket is older than `now_ms - retention`, from the tier table and its series
    /// table (a Delta delete on the partition column: files are removed, none rewritten).
    ///
    /// # Errors
    /// Delta errors (the tier is then unchanged, later tiers not visited).
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<Vec<Expired>> {
        let mut out = vec![];
        for (i, t) in self.tiers.iter().enumerate() {
            let Some(retention) = t.retention else {
                continue;
            };
            // The first day to keep: the day of the cutoff (its buckets may be younger).
            // (The partition holding that day: a month or a year for coarse tiers.)
            let keep_from = tier::partition_day(
                t.resolution_ms(),
                strata_ingest::storage::date_of_ms(now_ms - retention.as_millis() as i64),
            );
            let mut files_removed = 0u64;
            let mut table = self.tables[i].lock().await;
            let mut series = self.series_tables[i].lock().await;
            for (tab, latest) in [
                (&mut *series, &self.series_providers[i]),
                (&mut *table, &self.providers[i]),
            ] {
                let (done, m) = strata_ingest::storage::delete_days_before(tab, keep_from).await?;
                files_removed += m;
                latest.set(&done).await?;
                *tab = done;
            }
            out.push(Expired {
                tier: t.name.clone(),
                files_removed,
            });
        }
        Ok(out)
    }

    /// Merges each tier table's small files, and its series table's, partition by
    /// partition, where a partition has at least `min_files` of them
    /// ([`strata_ingest::compaction::compact`]): the scheduler adds one file per build
    /// (a minute's buckets, an hour's), and a month of the 1h tier would otherwise be 720
    /// files of one bucket per series, read whole by PromQL ([`crate::read`]). Merged
    /// files are sorted by metric name, series and bucket end, as builds write them; the
    /// series tables by metric name and bucket end. Returns the files removed and added.
    ///
    /// # Errors
    /// Delta or DataFusion errors (that table is then unchanged).
    pub async fn compact(&self, min_files: usize) -> Result<strata_ingest::compaction::Compaction> {
        use strata_ingest::compaction::{Compaction, Layout, compact};
        let tier_layout = Layout {
            sort: vec![
                col("metric_name").sort(true, false),
                col("series_id").sort(true, false),
                col("bucket_end").sort(true, false),
            ],
            unique: Some(["series_id", "bucket_end"]),
            properties: table::writer_properties(),
            min_files,
        };
        let series_layout = Layout {
            sort: vec![
                col("metric_name").sort(true, false),
                col("bucket_end").sort(true, false),
            ],
            unique: None,
            ..tier_layout.clone()
        };
        let mut total = Compaction::default();
        for (tables, providers, layout) in [
            (&self.tables, &self.providers, &tier_layout),
            (&self.series_tables, &self.series_providers, &series_layout),
        ] {
            for (t, p) in tables.iter().zip(providers) {
                let mut t = t.lock().await;
                let (done, c) = compact(&t, layout).await?;
                if c.files_added + c.files_removed > 0 {
                    p.set(&done).await?;
                    *t = done;
                }
                total += c;
            }
        }
        Ok(total)
    }

    /// Deletes from disk the tier tables' data files that were removed from the tables
    /// (by rebuilds and retention) longer than `retention` ago (Delta vacuum); returns
    /// the number of files deleted.
    ///
    /// # Errors
    /// Delta or storage errors.
    pub async fn vacuum(&self, retention: std::time::Duration) -> Result<u64> {
        let mut n = 0;
        for (tables, providers) in [
            (&self.tables, &self.providers),
            (&self.series_tables, &self.series_providers),
        ] {
            for (t, p) in tables.iter().zip(providers) {
                let mut t = t.lock().await;
                let (done, deleted) = strata_ingest::storage::vacuum(&t, retention).await?;
                n += deleted;
                p.set(&done).await?;
                *t = done;
            }
        }
        Ok(n)
    }
}
