//! Decoded samples of series runs kept in memory, so that a PromQL query that reads few
//! series (a dashboard panel, an alert rule) decodes no Parquet page once they are cached.
//!
//! With its files in memory ([`crate::file_cache`]) and its rows picked by series runs
//! ([`crate::runs`]), the bench's one-host, one-hour query still spent more of its time
//! setting up Parquet readers than in PromQL: per file, the footer taken from the metadata
//! cache, a page reader per column, a zstd context per column chunk, and
//! DataFusion's scan planning and opening (about 0.45 ms of a 1 ms query for 431 rows, by
//! `EXPLAIN ANALYZE`). GreptimeDB keeps decoded pages in a page cache and Prometheus keeps
//! its head chunks decoded for the same reason.
//!
//! A [`SampleCache`] holds one entry per series run (up to [`crate::runs::MAX_RUN_ROWS`]
//! consecutive rows of one series in one file): the run's `timestamp` and `value` columns
//! as Arrow arrays, least recently used evicted first, at most a configured number of
//! bytes together. Files never change once written, so an entry is valid for as long as
//! its file is in the table.
//!
//! [`CachedRunsExec`] is the scan that reads through it: it returns the runs a scan
//! selected, those in the cache from memory, the others read from their file with one
//! Parquet row selection per file (then cached), one batch per run: a cached run's arrays
//! go out as they are, uncopied. [`crate::files::scan`] uses it for scans that read no
//! column but `series_id`, `timestamp` and `value` and that the cache admits
//! ([`SampleCache::admits`]: at most half the cache's size, or [`CACHED_SCAN_ROWS`]
//! rows); larger scans read Parquet directly and leave the cache alone (a scan of every
//! series would evict the working set of the dashboards).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, MutableArrayData, RecordBatch, make_array,
};
use datafusion::arrow::compute::{cast, concat};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::object_store::path::Path;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use crate::runs::{FileRuns, MAX_RUN_ROWS, RunRef, spread};

/// The default size of a [`SampleCache`] (bytes): 256 MiB, about 16 million samples
/// (16 bytes each: an i64 timestamp and an f64 value).
pub const SAMPLE_CACHE_BYTES: usize = 256 << 20;

/// Scans selecting at most this many rows (samples) read through the [`SampleCache`]
/// whatever its size; see [`SampleCache::admits`].
pub const CACHED_SCAN_ROWS: usize = 1 << 20;

/// What one cached sample costs (bytes): an i64 timestamp and an f64 value.
const SAMPLE_BYTES: usize = 16;

/// The columns a [`CachedRunsExec`] can return.
pub const CACHED_COLUMNS: [&str; 3] = ["series_id", "timestamp", "value"];

/// What an entry costs beyond its samples (bytes): its key, two Arrow arrays' headers and
/// the cache's bookkeeping, roughly.
const ENTRY_OVERHEAD: usize = 320;

/// One series run's samples: its `timestamp` and `value` arrays, in file row order.
#[derive(Debug)]
struct CachedRun {
    timestamp: ArrayRef,
    value: ArrayRef,
}

impl CachedRun {
    fn bytes(&self) -> usize {
        ENTRY_OVERHEAD + self.timestamp.get_array_memory_size() + self.value.get_array_memory_size()
    }
}

/// Decoded series runs by (file path, first row), least recently used evicted first, at
/// most `max_bytes` bytes together (see the module doc).
#[derive(Debug)]
pub struct SampleCache {
    max_bytes: usize,
    state: parking_lot::Mutex<State>,
}

#[derive(Debug)]
struct State {
    runs: lru::LruCache<(Path, u32), Arc<CachedRun>>,
    bytes: usize,
}

impl SampleCache {
    /// A cache of at most `max_bytes` bytes (0: nothing is cached, and
    /// [`crate::files::scan`] reads Parquet directly).
    pub fn new(max_bytes: usize) -> SampleCache {
        SampleCache {
            max_bytes,
            state: parking_lot::Mutex::new(State {
                runs: lru::LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    /// Whether the cache holds anything at all (its size is not 0).
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Whether a scan of `rows` selected rows (samples) reads through the cache: the
    /// cache is on, and the rows take at most half its size (a scan never evicts more
    /// than half of what the other queries keep there) or are at most
    /// [`CACHED_SCAN_ROWS`]. With the default 256 MiB, scans of up to 8 M samples.
    pub fn admits(&self, rows: usize) -> bool {
        self.enabled() && rows <= CACHED_SCAN_ROWS.max(self.max_bytes / 2 / SAMPLE_BYTES)
    }

    /// The bytes held now.
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// The cached entries of `runs` of the file at `path`, in order (`None`: not cached).
    fn get_all(&self, path: &Path, runs: &[RunRef]) -> Vec<Option<Arc<CachedRun>>> {
        let mut s = self.state.lock();
        let mut key = (path.clone(), 0);
        runs.iter()
            .map(|r| {
                key.1 = r.first_row;
                s.runs.get(&key).cloned()
            })
            .collect()
    }

    /// Adds entries of the file at `path`, then evicts the least recently used entries
    /// until the cache is within its size.
    fn put_all(&self, path: &Path, entries: Vec<(u32, Arc<CachedRun>)>) {
        let mut s = self.state.lock();
        for (first_row, run) in entries {
            let bytes = run.bytes();
            if let Some(old) = s.runs.put((path.clone(), first_row), run) {
                s.bytes -= old.bytes();
            }
            s.bytes += bytes;
        }
        while s.bytes > self.max_bytes {
            match s.runs.pop_lru() {
                Some((_, old)) => s.bytes -= old.bytes(),
                None => break,
            }
        }
    }

    /// Drops the entries of files not in `live` (files a new table version removed).
    pub fn retain(&self, live: &std::collections::HashSet<&Path>) {
        let mut s = self.state.lock();
        let dead: Vec<(Path, u32)> = s
            .runs
            .iter()
            .filter(|((p, _), _)| !live.contains(p))
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            if let Some(old) = s.runs.pop(&k) {
                s.bytes -= old.bytes();
            }
        }
    }
}

/// Which column of the cache each output column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    SeriesId,
    Timestamp,
    Value,
}

/// A scan of selected series runs of Parquet files of the `samples` table, through a
/// [`SampleCache`] (see the module doc). Its schema is a projection of `series_id`,
/// `timestamp` and `value` of the files (as their types are in the file schema given);
/// each partition returns its files' runs in file order, each file's in row order, as
/// the Parquet scan with the same row selections would (whole runs: rows outside the
/// scan's time range come out, as they do there).
#[derive(Debug)]
pub struct CachedRunsExec {
    groups: Vec<Vec<FileRuns>>,
    readers: Arc<dyn ParquetFileReaderFactory>,
    cache: Arc<SampleCache>,
    columns: Vec<Col>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CachedRunsExec {
    /// A scan of `files`' runs in up to `partitions` partitions (of about equal numbers of
    /// rows, a file's runs split between partitions where a share overflows), returning
    /// `schema`'s columns.
    ///
    /// # Errors
    /// `schema` names a column other than `series_id`, `timestamp` and `value`.
    pub fn try_new(
        files: Vec<FileRuns>,
        partitions: usize,
        readers: Arc<dyn ParquetFileReaderFactory>,
        cache: Arc<SampleCache>,
        schema: SchemaRef,
    ) -> Result<CachedRunsExec> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "series_id" => Ok(Col::SeriesId),
                "timestamp" => Ok(Col::Timestamp),
                "value" => Ok(Col::Value),
                other => Err(DataFusionError::Internal(format!(
                    "the sample cache holds no column {other}"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let groups = spread(files, partitions);
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(groups.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(CachedRunsExec {
            groups,
            readers,
            cache,
            columns,
            schema,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for CachedRunsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let files: Vec<&str> = self
            .groups
            .iter()
            .flatten()
            .map(|f| f.file.object_meta.location.as_ref())
            .collect();
        let runs: usize = self.groups.iter().flatten().map(|f| f.runs.len()).sum();
        let rows: usize = self.groups.iter().flatten().map(FileRuns::rows).sum();
        write!(
            f,
            "CachedRunsExec: groups={}, runs={runs}, rows={rows}, files=[{}], projection=[{}]",
            self.groups.len(),
            files.join(", "),
            self.schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl ExecutionPlan for CachedRunsExec {
    fn name(&self) -> &str {
        "CachedRunsExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "CachedRunsExec has no children".into(),
            ))
        }
    }
    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let files = self.groups.get(partition).cloned().unwrap_or_default();
        let read = Reading {
            readers: self.readers.clone(),
            cache: self.cache.clone(),
            columns: self.columns.clone(),
            schema: self.schema.clone(),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            cached: MetricBuilder::new(&self.metrics).counter("runs_cached", partition),
            decoded: MetricBuilder::new(&self.metrics).counter("runs_decoded", partition),
            partition,
        };
        let stream = futures::stream::iter(files)
            .then(move |f| {
                let read = read.clone();
                async move { read.file(f).await }
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// One partition's reading state.
#[derive(Clone)]
struct Reading {
    readers: Arc<dyn ParquetFileReaderFactory>,
    cache: Arc<SampleCache>,
    columns: Vec<Col>,
    schema: SchemaRef,
    baseline: BaselineMetrics,
    cached: Count,
    decoded: Count,
    partition: usize,
}

impl Reading {
    /// `f`'s runs, a batch each (the cached arrays themselves: concatenating runs into
    /// larger batches cost as much as decoding them, for millions of rows).
    async fn file(&self, f: FileRuns) -> Result<Vec<RecordBatch>> {
        let path = &f.file.object_meta.location;
        let mut found = self.cache.get_all(path, &f.runs);
        let missing: Vec<usize> = (0..found.len()).filter(|i| found[*i].is_none()).collect();
        self.cached.add(found.len() - missing.len());
        self.decoded.add(missing.len());
        if !missing.is_empty() {
            let wanted: Vec<RunRef> = missing.iter().map(|i| f.runs[*i]).collect();
            let read = self.decode(&f, &wanted).await?;
            for (i, run) in missing.iter().zip(&read) {
                found[*i] = Some(run.clone());
            }
            self.cache
                .put_all(path, wanted.iter().map(|r| r.first_row).zip(read).collect());
        }
        let timer = self.baseline.elapsed_compute().timer();
        // One `series_id` array per series of the file, each run a slice of it (a series'
        // runs are consecutive, at most `MAX_RUN_ROWS` rows each).
        let mut ids: Option<(i64, ArrayRef)> = None;
        let mut out = Vec::with_capacity(f.runs.len());
        for (r, run) in f.runs.iter().zip(&found) {
            let run = run.as_deref().expect("every run found or read");
            let id = match &ids {
                Some((id, a)) if *id == r.series_id => a,
                _ => {
                    let a = Int64Array::from_value(r.series_id, MAX_RUN_ROWS as usize);
                    &ids.insert((r.series_id, Arc::new(a))).1
                }
            };
            let columns = self
                .columns
                .iter()
                .map(|c| match c {
                    Col::SeriesId => id.slice(0, r.rows as usize),
                    Col::Timestamp => run.timestamp.clone(),
                    Col::Value => run.value.clone(),
                })
                .collect();
            out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        timer.done();
        // Rows only: a batch's memory size, per run, cost more than making the batch.
        self.baseline
            .record_output(out.iter().map(RecordBatch::num_rows).sum());
        Ok(out)
    }

    /// Reads `wanted` (runs of `f`, sorted by first row) from the file: one Parquet read
    /// of their rows' `timestamp` and `value` columns.
    async fn decode(&self, f: &FileRuns, wanted: &[RunRef]) -> Result<Vec<Arc<CachedRun>>> {
        let rows: usize = wanted.iter().map(|r| r.rows as usize).sum();
        let batches = crate::runs::read_runs(
            self.readers.as_ref(),
            self.partition,
            &f.file,
            Some((wanted, f.total_rows)),
            &["timestamp", "value"],
            rows,
        )
        .await?;
        let col = |name: &str| -> Result<ArrayRef> {
            let arrays = batches
                .iter()
                .map(|b| {
                    b.column_by_name(name).cloned().ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "samples file {} has no column {name}",
                            f.file.object_meta.location
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            let joined = if refs.len() == 1 {
                arrays[0].clone()
            } else {
                concat(&refs)?
            };
            // As the scan's schema types them (the file's own types, normally).
            let field = self.schema.field_with_name(name).ok();
            match field {
                Some(f) if f.data_type() != joined.data_type() => Ok(cast(&joined, f.data_type())?),
                _ => Ok(joined),
            }
        };
        let (ts, value) = (col("timestamp")?, col("value")?);
        if ts.len() != rows || value.len() != rows {
            return Err(DataFusionError::Execution(format!(
                "samples file {}: {} rows read for {rows} selected",
                f.file.object_meta.location,
                ts.len()
            )));
        }
        // Each run's own copy (a slice would share, and hold, the whole read), so that
        // evicting one frees its memory and its size is its own.
        let mut out = Vec::with_capacity(wanted.len());
        let mut at = 0;
        for r in wanted {
            let n = r.rows as usize;
            out.push(Arc::new(CachedRun {
                timestamp: copy_of(&ts, at, n)?,
                value: copy_of(&value, at, n)?,
            }));
            at += n;
        }
        Ok(out)
    }
}

/// Rows `at..at + n` of `a` in buffers of their own (arrow's `concat` of one array and
/// `slice` share the source's buffers).
fn copy_of(a: &ArrayRef, at: usize, n: usize) -> Result<ArrayRef> {
    let data = a.to_data();
    let mut m = MutableArrayData::new(vec![&data], false, n);
    m.try_extend(0, at, at + n)?;
    Ok(make_array(m.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    #[test]
    fn a_cached_run_owns_its_rows_and_is_sized_by_them() {
        let big: ArrayRef = Arc::new(Float64Array::from_iter_values((0..100_000).map(f64::from)));
        let run = copy_of(&big, 500, 512).unwrap();
        assert_eq!(run.len(), 512);
        let v = run.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(v.value(0), 500.0);
        assert_eq!(v.value(511), 1011.0);
        // Its size is about its 4 KB of values, not the source's 800 KB.
        assert!(
            run.get_array_memory_size() < 8 * 1024,
            "{}",
            run.get_array_memory_size()
        );
        // Evicted least recently used first, within the cache's size.
        let cache = SampleCache::new(3 * (ENTRY_OVERHEAD + 2 * 4096 + 256));
        let path = Path::from("f.parquet");
        let entry = || {
            Arc::new(CachedRun {
                timestamp: copy_of(&big, 0, 512).unwrap(),
                value: copy_of(&big, 0, 512).unwrap(),
            })
        };
        let refs = |rows: &[u32]| -> Vec<RunRef> {
            rows.iter()
                .map(|r| RunRef {
                    series_id: 1,
                    first_row: *r,
                    rows: 512,
                })
                .collect()
        };
        cache.put_all(&path, vec![(0, entry()), (512, entry()), (1024, entry())]);
        assert!(
            cache
                .get_all(&path, &refs(&[0]))
                .iter()
                .all(Option::is_some)
        );
        cache.put_all(&path, vec![(1536, entry())]);
        let found: Vec<bool> = cache
            .get_all(&path, &refs(&[0, 512, 1024, 1536]))
            .iter()
            .map(Option::is_some)
            .collect();
        assert_eq!(found, [true, false, true, true]);
        assert!(cache.bytes() <= 3 * (ENTRY_OVERHEAD + 2 * 4096 + 256));
        cache.retain(&std::collections::HashSet::new());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_scan_reads_through_the_cache_up_to_half_its_size() {
        // 256 MiB: 128 MiB of 16-byte samples, 8,388,608 of them.
        let cache = SampleCache::new(256 << 20);
        assert!(cache.admits(8_388_608));
        assert!(!cache.admits(8_388_609));
        // A small cache still takes scans of up to 1 Mi samples (evicting as it goes).
        let small = SampleCache::new(100);
        assert!(small.admits(1 << 20));
        assert!(!small.admits((1 << 20) + 1));
        // Off: nothing.
        assert!(!SampleCache::new(0).admits(1));
    }
}
