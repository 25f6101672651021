//! The tier tables as the engine's catalog holds them, and the read path PromQL takes
//! through them.
//!
//! A [`TierTable`] is the latest version of one tier table (swapped in after each commit,
//! so SQL never sees a missing table) and serves SQL through delta-rs's provider. PromQL
//! does not go through SQL: a 2-year query at step 1d reads 730 buckets of each selected
//! series, and through delta-rs and DataFusion that read cost 150 to 450 ms (planning the
//! scan from the Delta log, statistics pruning of every file, a DataFusion plan and a row
//! copy per bucket), more than VictoriaMetrics took to scan the raw samples
//! (`benches/README.md`, long-range run 3). [`TierTable::read_buckets`] reads them the
//! way the engine reads `samples` for PromQL:
//! - the files of the version, listed once per version with their partition values
//!   (`date`, `metric_family`), are chosen by partition: the dates the range covers, the
//!   families of the selected metrics;
//! - each file's series runs ([`strata_engine::runs`], built once per file, timed by
//!   `bucket_end`) give the rows of the selected series whose buckets overlap the range,
//!   as a Parquet row selection read with the offset index: only those pages are fetched
//!   and only those rows decoded;
//! - whole files are kept in memory ([`strata_engine::file_cache`], up to
//!   [`TIER_FILE_CACHE_BYTES`] per tier: the 1d and 1h tiers of two years of 1,000 series
//!   take 21 MB), so a dashboard's repeated query reads no file;
//! - files are read concurrently, one task each.
//!
//! A file that is not sorted by series (its runs average fewer than 4 rows: one bucket
//! per series, as a tier's newest files are until compaction merges them) is read whole
//! and filtered by series.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::StreamExt;
use strata_engine::file_cache::FileCache;
use strata_engine::runs::{RunRef, RunsCache, SeriesFilter, Wanted};
use strata_engine::tables::PageIndexCaching;

use crate::catalog::{SeriesBuckets, SketchRead};
use crate::error::{Result, RollupError};
use crate::table::BucketColumns;

/// The memory one tier table's files may take in the read path's file cache (bytes).
pub const TIER_FILE_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// One data file of a tier table's version, with its partition.
#[derive(Debug, Clone)]
struct TierFile {
    file: PartitionedFile,
    /// The `date` partition: days since the epoch (UTC).
    day: i32,
    metric_family: String,
}

/// A table version and its files.
type Listed = (Option<u64>, Arc<Vec<TierFile>>);

/// One version of a tier table: the delta-rs provider SQL scans, and the table itself,
/// whose files the PromQL read path lists on its first read of the version.
struct Current {
    provider: Arc<dyn TableProvider>,
    table: Arc<DeltaTable>,
}

/// A tier table (or a tier's series table) as the engine's catalog holds it: the latest
/// version its jobs wrote, for SQL, and the PromQL read path over it
/// ([`TierTable::read_buckets`]).
pub struct TierTable {
    schema: SchemaRef,
    current: parking_lot::RwLock<Current>,
    /// The files of the version PromQL read last, by version.
    files: parking_lot::Mutex<Option<Listed>>,
    /// The series runs of the table's files, by `bucket_end`.
    runs: Arc<RunsCache>,
    /// Whole files in memory.
    file_cache: Arc<FileCache>,
}

impl std::fmt::Debug for TierTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierTable")
            .field("version", &self.current.read().table.version())
            .finish_non_exhaustive()
    }
}

/// A bucket's end (ms) and where it is: `(batch, row)` of a read's decoded batches.
type RowAt = (i64, u32, u32);

impl TierTable {
    /// The table at `table`'s loaded version, up to `cache_bytes` of its files kept in
    /// memory for PromQL's reads (0: none).
    ///
    /// # Errors
    /// Delta errors making the version's provider.
    pub(crate) async fn of(table: &DeltaTable, cache_bytes: usize) -> Result<TierTable> {
        let current = Self::current_of(table).await?;
        Ok(TierTable {
            schema: current.provider.schema(),
            current: parking_lot::RwLock::new(current),
            files: parking_lot::Mutex::new(None),
            runs: Arc::new(RunsCache::timed_by("bucket_end")),
            file_cache: Arc::new(FileCache::new(cache_bytes)),
        })
    }

    /// Moves to `table`'s loaded version (after a commit).
    ///
    /// # Errors
    /// Delta errors making the version's provider.
    pub(crate) async fn set(&self, table: &DeltaTable) -> Result<()> {
        let current = Self::current_of(table).await?;
        *self.current.write() = current;
        Ok(())
    }

    async fn current_of(table: &DeltaTable) -> Result<Current> {
        Ok(Current {
            provider: table.table_provider().await?,
            table: Arc::new(table.clone()),
        })
    }

    /// The files of `table` (this table's current version), listed once per version
    /// with their partitions; the runs and cached files of files the version no longer
    /// has are dropped then.
    ///
    /// # Errors
    /// [`RollupError::Invariant`] for a file without its `date` and `metric_family`
    /// partition values; Delta errors.
    fn files(&self, table: &DeltaTable) -> Result<Arc<Vec<TierFile>>> {
        let version = table.version();
        let mut cached = self.files.lock();
        if let Some((v, files)) = cached.as_ref()
            && *v == version
        {
            return Ok(files.clone());
        }
        let mut files = vec![];
        for f in table.snapshot()?.snapshot().log_data().iter() {
            let parts = f.partition_values_map();
            let day = parts
                .get("date")
                .cloned()
                .flatten()
                .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
                .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32);
            let (Some(day), Some(Some(metric_family))) = (day, parts.get("metric_family").cloned())
            else {
                return Err(RollupError::Invariant(format!(
                    "tier file {} without its date and metric_family partition",
                    f.path()
                )));
            };
            files.push(TierFile {
                file: strata_engine::files::partitioned_file(&f),
                day,
                metric_family,
            });
        }
        let live: HashSet<_> = files.iter().map(|f| &f.file.object_meta.location).collect();
        self.runs.retain(&live);
        self.file_cache.retain(&live);
        let files = Arc::new(files);
        *cached = Some((version, files.clone()));
        Ok(files)
    }

    /// The latest version's delta-rs provider (what SQL scans).
    pub(crate) fn provider(&self) -> Arc<dyn TableProvider> {
        self.current.read().provider.clone()
    }

    /// Reads the buckets of this tier table (resolution `resolution_ms`) ending in
    /// `(from_ms, to_ms]` (ms, UTC) of the series `ids` (of the metrics `names`, whose
    /// families choose the files), by series id, in time order. Only the bucket fields
    /// `fields` are read (names from [`crate::table::BUCKET_FIELDS`]; `count` always),
    /// the others are 0; of the sketch columns, what `sketch` says. `ctx` gives the session's Parquet
    /// metadata cache. See the module doc for how.
    ///
    /// # Errors
    /// [`RollupError::Invariant`] for a field that is not a bucket field or a row that
    /// breaks the table's layout; Parquet errors reading a file.
    #[allow(clippy::too_many_arguments)]
    pub async fn read_buckets(
        &self,
        ctx: &SessionContext,
        resolution_ms: i64,
        names: &[&str],
        ids: &[i64],
        (from_ms, to_ms): (i64, i64),
        fields: &[&str],
        sketch: SketchRead,
    ) -> Result<HashMap<i64, SeriesBuckets>> {
        let table = self.current.read().table.clone();
        let files = self.files(&table)?;
        let store = table.log_store().object_store(None);
        let families: HashSet<String> = names
            .iter()
            .map(|n| strata_ingest::model::metric_family(n))
            .collect();
        let day = |ms: i64| {
            crate::tier::partition_day(resolution_ms, strata_ingest::storage::date_of_ms(ms))
        };
        // A bucket's partition is that of its first instant (`bucket_end - 1`).
        let (first_day, last_day) = (day(from_ms), day(to_ms - 1));
        // In date order, and within a date in the order they were written: a series'
        // buckets then arrive in time order (the builds move forward in time; files of
        // rebuilt buckets interleave, and are sorted below).
        let mut chosen: Vec<&TierFile> = files
            .iter()
            .filter(|f| {
                f.day >= first_day && f.day <= last_day && families.contains(&f.metric_family)
            })
            .collect();
        chosen.sort_by_key(|f| (f.day, f.file.object_meta.last_modified));
        let chosen: Vec<PartitionedFile> = chosen.into_iter().map(|f| f.file.clone()).collect();
        let cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        let readers: Arc<dyn ParquetFileReaderFactory> = Arc::new(PageIndexCaching::new(Arc::new(
            CachedParquetFileReaderFactory::new(self.file_cache.store(store), cache),
        )));
        let mut wanted = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let filter = Arc::new(SeriesFilter {
            wanted: Wanted::Series(wanted.clone()),
            from_us: Some(from_ms.saturating_mul(1000).saturating_add(1)),
            to_us: Some(to_ms.saturating_mul(1000)),
        });
        let mut columns: Vec<&'static str> = vec!["series_id", "bucket_end", "count"];
        for f in fields {
            let known = crate::table::BUCKET_FIELDS
                .iter()
                .find(|k| *k == f)
                .ok_or_else(|| RollupError::Invariant(format!("{f} is not a bucket field")))?;
            if !columns.contains(known) {
                columns.push(known);
            }
        }
        let quantile = match sketch {
            SketchRead::None => None,
            SketchRead::Sketch => {
                columns.push("sketch");
                None
            }
            SketchRead::Quantile(i) => {
                let (_, c) = crate::sketch::STORED_QUANTILES
                    .get(i)
                    .ok_or_else(|| RollupError::Invariant(format!("no stored quantile {i}")))?;
                columns.push(c);
                Some(*c)
            }
        };
        let columns = Arc::new(columns);
        let reads = chosen.into_iter().map(|file| {
            let (runs, readers, filter, columns) = (
                self.runs.clone(),
                readers.clone(),
                filter.clone(),
                columns.clone(),
            );
            tokio::spawn(async move {
                let got = read_file(&runs, &readers, file.clone(), &filter, &columns).await?;
                match (quantile, got.first()) {
                    // A file written before the stored quantiles: its sketches instead.
                    (Some(q), Some(b)) if b.column_by_name(q).is_none() => {
                        let instead: Vec<&str> = columns
                            .iter()
                            .map(|c| if *c == q { "sketch" } else { *c })
                            .collect();
                        read_file(&runs, &readers, file, &filter, &instead).await
                    }
                    _ => Ok(got),
                }
            })
        });
        let parallel = ctx.state().config().target_partitions().max(1);
        let mut batches = futures::stream::iter(reads).buffered(parallel);
        // A file read whole (no run list) holds other series too.
        let keep = |id: i64| wanted.binary_search(&id).is_ok();
        // Each wanted series' rows as `(bucket end ms, batch, row)`, in reading order,
        // then sorted by time (files rewritten by a rebuild's `replaceWhere` hold a
        // series' buckets out of order).
        let mut batch_columns: Vec<BucketColumns> = vec![];
        let mut rows: HashMap<i64, Vec<RowAt>> = HashMap::new();
        let per_series = usize::try_from((to_ms - from_ms) / resolution_ms.max(1))
            .unwrap_or(0)
            .min(1 << 16);
        while let Some(read) = batches.next().await {
            let read =
                read.map_err(|e| RollupError::Invariant(format!("a tier read task: {e}")))?;
            for b in read? {
                let with_sketch = b.column_by_name("sketch").is_some();
                let cols = BucketColumns::with_quantile(&b, with_sketch, quantile)?;
                let k = u32::try_from(batch_columns.len())
                    .map_err(|_| RollupError::Invariant("too many tier batches".into()))?;
                // Rows come in runs of one series: whether it is wanted, and where its
                // rows go, are looked up once a run (`None`: not wanted).
                let mut run: Option<(i64, Option<&mut Vec<RowAt>>)> = None;
                let mut taken = false;
                for i in 0..b.num_rows() {
                    let (id, end) = (cols.series_id(i), cols.end_ms(i));
                    if end <= from_ms || end > to_ms {
                        continue;
                    }
                    if run.as_ref().is_none_or(|(r, _)| *r != id) {
                        let v = keep(id).then(|| {
                            rows.entry(id)
                                .or_insert_with(|| Vec::with_capacity(per_series))
                        });
                        run = Some((id, v));
                    }
                    if let Some((_, Some(v))) = &mut run {
                        // Batches are at most a Parquet row group's rows (u32).
                        v.push((end, k, i as u32));
                        taken = true;
                    }
                }
                // A batch of only other series' rows is not kept.
                if taken {
                    batch_columns.push(cols);
                }
            }
        }
        let columns: Arc<[BucketColumns]> = batch_columns.into();
        let mut out: HashMap<i64, SeriesBuckets> = HashMap::with_capacity(rows.len());
        for (id, mut refs) in rows {
            // Files come in any order; a stable sort keeps a later file's row after an
            // earlier one's.
            if !refs.is_sorted_by_key(|r| r.0) {
                refs.sort_by_key(|r| r.0);
            }
            out.insert(id, SeriesBuckets::new(columns.clone(), refs));
        }
        Ok(out)
    }
}

/// The rows of `file` the filter's series have in runs overlapping its time range (the
/// whole file when it has no usable run list), in the columns `columns`.
async fn read_file(
    runs: &Arc<RunsCache>,
    readers: &Arc<dyn ParquetFileReaderFactory>,
    file: PartitionedFile,
    filter: &SeriesFilter,
    columns: &[&str],
) -> Result<Vec<RecordBatch>> {
    let selection = match runs.get_or_build(readers, &file, true).await {
        Some(r) => {
            let selected: Vec<RunRef> = r.select_runs(filter);
            if selected.is_empty() {
                return Ok(vec![]);
            }
            Some((selected, r.total_rows()))
        }
        None => None,
    };
    Ok(strata_engine::runs::read_runs(
        readers.as_ref(),
        0,
        &file,
        selection.as_ref().map(|(r, n)| (r.as_slice(), *n)),
        columns,
        8192,
    )
    .await?)
}

#[async_trait::async_trait]
impl TableProvider for TierTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.provider()
            .scan(state, projection, filters, limit)
            .await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        self.provider().supports_filters_pushdown(filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::Bucket;
    use crate::table::{self, Row, SeriesKey};

    const H: i64 = 3_600_000;

    /// Rows of one series for the hours ending at `hours`, each with a sketch of 100
    /// values `hour * 1000 + 0..100`.
    fn rows(hours: std::ops::RangeInclusive<i64>) -> Vec<Row> {
        let key = SeriesKey {
            family: "lat".into(),
            metric_name: "lat".into(),
            series_id: 7,
        };
        hours
            .map(|h| {
                let mut k = crate::sketch::new_kll();
                let mut b: Option<Bucket> = None;
                for i in 0..100 {
                    let (t, v) = ((h - 1) * H + 1 + i * 1000, (h * 1000 + i) as f64);
                    crate::sketch::kll_update(&mut k, v);
                    match &mut b {
                        Some(b) => b.push(t, v),
                        None => b = Some(Bucket::of(t, v)),
                    }
                }
                Row::new(key.clone(), h * H, b.unwrap(), Some(&k))
            })
            .collect()
    }

    /// `rows` written over the buckets ending in `(from_ms, to_ms]`, in `table`'s schema.
    async fn write(table: &DeltaTable, rows: &[Row], (from_ms, to_ms): (i64, i64)) -> DeltaTable {
        use crate::job::ts_lit;
        let schema = table.snapshot().unwrap().snapshot().arrow_schema();
        let batch = table::batch(&schema, rows, H).unwrap();
        let range = datafusion::prelude::col("bucket_end")
            .gt(ts_lit(from_ms))
            .and(datafusion::prelude::col("bucket_end").lt_eq(ts_lit(to_ms)));
        let commit = deltalake::kernel::transaction::CommitProperties::default();
        crate::job::replace(table, batch, range, commit)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn files_from_before_the_stored_quantiles_answer_from_their_sketches() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = strata_ingest::storage::DataDir::Local(dir.path().to_path_buf());
        // A table made before the stored quantiles, with hours 1 to 3 written.
        let old: Vec<_> = table::columns()
            .into_iter()
            .filter(|f| !table::quantile_columns().contains(f))
            .collect();
        let t = data_dir
            .open_table("rollup_1h", old, &table::PARTITIONS)
            .await
            .unwrap();
        let t = write(&t, &rows(1..=3), (0, 3 * H)).await;
        // Opened again: the columns are added, and hours 4 to 5 written with them (a
        // replace of hours 4 and 5 only).
        let t = table::with_new_columns(t).await.unwrap();
        let schema = t.snapshot().unwrap().snapshot().arrow_schema();
        assert!(schema.field_with_name("p99").is_ok());
        let t = write(&t, &rows(4..=5), (3 * H, 5 * H)).await;
        // Reopening it adds nothing.
        let version = t.version();
        let t = table::with_new_columns(t).await.unwrap();
        assert_eq!(t.version(), version);

        let tier = TierTable::of(&t, 0).await.unwrap();
        let ctx = SessionContext::new();
        let p99 = crate::sketch::stored_quantile(0.99).unwrap();
        let read = tier
            .read_buckets(
                &ctx,
                H,
                &["lat"],
                &[7],
                (0, 5 * H),
                &[],
                SketchRead::Quantile(p99),
            )
            .await
            .unwrap();
        let got = &read[&7];
        assert_eq!(got.ends(), (1..=5).map(|h| h * H).collect::<Vec<_>>());
        for (i, end) in got.ends().iter().enumerate() {
            let h = end / H;
            // The 0.99 quantile of h*1000 + 0..100 (inclusive rank: the 99th value).
            let want = (h * 1000 + 98) as f64;
            if h <= 3 {
                assert_eq!(got.quantile(i), None, "hour {h}: an old file has no column");
                let k = crate::sketch::kll_read(got.sketch(i).unwrap()).unwrap();
                assert_eq!(crate::sketch::kll_quantile(&k, 0.99).unwrap(), Some(want));
            } else {
                assert_eq!(got.quantile(i), Some(want), "hour {h}");
                assert!(got.sketch(i).is_none(), "hour {h}: the sketch is not read");
            }
        }
    }
}
