//! Series runs: where each series' rows lie in a Parquet file of the `samples` table, so
//! that a PromQL selector reads the rows of its series and no others.
//!
//! Strata's sample files are sorted by series within a metric and a time window (see
//! `strata_ingest::compaction`), so the samples of one series are a few runs of
//! consecutive rows. Page statistics only find the 4,096-row pages a series touches: in
//! the PromQL bench a one-host, one-hour query decoded 20,480 rows for its 360 samples,
//! and DataFusion evaluated its pruning predicate over the statistics of every row group
//! and page of the file on every query (a third of that query's scan time).
//!
//! A [`SeriesRuns`] lists a file's runs, cut at [`MAX_RUN_ROWS`] rows (as Prometheus cuts
//! chunks at 120 samples): series id, first row, row count, and the run's first and last
//! timestamps. It is built once per file (files are immutable) by reading
//! the file's `series_id` and `timestamp` columns, and kept in a [`RunsCache`] of bounded
//! size, with each metric's series ids in the file. [`SeriesRuns::select`] turns a set of
//! series ids (or metric names: all their series) and a time range into a
//! Parquet `RowSelection` (binary search per series), which the Parquet reader applies
//! with the file's offset index: only the pages holding selected rows are fetched and
//! only the selected rows are decoded. This is the role the postings-to-chunks step plays
//! in Prometheus's TSDB (`tsdb/querier.go`: series → chunk references).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::object_store::path::Path;
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::TryStreamExt;

use crate::tables::pinned_values;

/// The memory all files' run lists may take together (bytes); past it, the least recently
/// used lists are dropped (and built again when their file is read again).
pub const RUNS_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// A scan builds the run lists of files of up to this size in total (bytes) while it is
/// planned; other files get theirs built in the background, and queries read them by page
/// statistics until it is ready.
pub const BUILD_INLINE_BYTES: u64 = 8 * 1024 * 1024;

/// Runs are cut at this many rows, so that a query over part of a run's time reads
/// few rows outside it (a persisted file holds hours of each series: 2,160 rows for 6
/// hours at 10 s, of which a one-hour query wants 360).
pub const MAX_RUN_ROWS: u32 = 512;

/// A file whose runs average fewer rows than this is not worth a list (it is not sorted
/// by series): it is read by page statistics.
const MIN_AVERAGE_RUN_ROWS: usize = 4;

/// One run: `rows` consecutive rows of one series from row `first_row` of the file, with
/// timestamps (µs since the epoch, UTC) between `min_us` and `max_us` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    series_id: i64,
    first_row: u32,
    rows: u32,
    min_us: i64,
    max_us: i64,
}

/// The runs of one Parquet file of the `samples` table, sorted by series id, then row,
/// and the series ids of each metric in the file.
#[derive(Debug)]
pub struct SeriesRuns {
    total_rows: usize,
    runs: Vec<Run>,
    /// Metric name -> its series ids in the file, sorted, without duplicates.
    metrics: HashMap<String, Vec<i64>>,
}

/// Which series a selection reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// These series ids, sorted, without duplicates.
    Series(Vec<i64>),
    /// Every series of these metric names, sorted, without duplicates.
    Metrics(Vec<String>),
}

/// What a selection reads: which series, and which timestamps (µs since the epoch, UTC,
/// both bounds inclusive; `None`: unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesFilter {
    /// The series.
    pub wanted: Wanted,
    /// The smallest timestamp wanted.
    pub from_us: Option<i64>,
    /// The largest timestamp wanted.
    pub to_us: Option<i64>,
}

impl SeriesFilter {
    /// The series and time range a scan's pushed-down `filters` (a conjunction) pin it to:
    /// `series_id = <int>` or `series_id IN (<ints>)` (else `metric_name = <string>` or
    /// `metric_name IN (<strings>)`: every series of those metrics), and `timestamp`
    /// compared (`>`, `>=`, `<`, `<=`) with microsecond timestamp literals. `None` when no
    /// filter names the series or their metrics.
    pub fn from_filters(filters: &[Expr]) -> Option<SeriesFilter> {
        let wanted = match pinned_values(filters, "series_id", |v| match v {
            ScalarValue::Int64(Some(v)) => Some(*v),
            _ => None,
        }) {
            Some(mut ids) => {
                ids.sort_unstable();
                ids.dedup();
                Wanted::Series(ids)
            }
            None => {
                let mut names = pinned_values(filters, "metric_name", |v| match v {
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::Utf8View(Some(s))
                    | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
                    _ => None,
                })?;
                names.sort_unstable();
                names.dedup();
                Wanted::Metrics(names)
            }
        };
        let (from_us, to_us) = time_bounds(filters);
        Some(SeriesFilter {
            wanted,
            from_us,
            to_us,
        })
    }
}

/// The timestamps (µs since the epoch, UTC, both bounds inclusive; `None`: unbounded)
/// that `filters` (a conjunction) allow by comparing `timestamp` (`>`, `>=`, `<`, `<=`)
/// with microsecond timestamp literals; other filters are ignored.
pub(crate) fn time_bounds(filters: &[Expr]) -> (Option<i64>, Option<i64>) {
    let mut from_us: Option<i64> = None;
    let mut to_us: Option<i64> = None;
    for f in filters {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = f else {
            continue;
        };
        let (Expr::Column(c), Expr::Literal(ScalarValue::TimestampMicrosecond(Some(v), _), _)) =
            (left.as_ref(), right.as_ref())
        else {
            continue;
        };
        if c.name != "timestamp" {
            continue;
        }
        match op {
            Operator::Gt => from_us = max_opt(from_us, v.checked_add(1)),
            Operator::GtEq => from_us = max_opt(from_us, Some(*v)),
            Operator::Lt => to_us = min_opt(to_us, v.checked_sub(1)),
            Operator::LtEq => to_us = min_opt(to_us, Some(*v)),
            _ => {}
        }
    }
    (from_us, to_us)
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One run a selection reads: `rows` consecutive rows of series `series_id` from row
/// `first_row` of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRef {
    /// The run's series.
    pub series_id: i64,
    /// Its first row in the file (0-based).
    pub first_row: u32,
    /// Its number of rows (1 to [`MAX_RUN_ROWS`]).
    pub rows: u32,
}

/// `runs` (sorted by first row, not overlapping) as a Parquet selection over all
/// `total_rows` rows of their file.
pub fn selection(runs: &[RunRef], total_rows: usize) -> RowSelection {
    RowSelection::from_consecutive_ranges(
        runs.iter().map(|r| {
            let first = r.first_row as usize;
            first..first + r.rows as usize
        }),
        total_rows,
    )
}

/// Reads the rows of `file` in `runs` (runs of the file, sorted by first row, not
/// overlapping, with the file's row count; `None`: every row) in the columns `columns`
/// (by name, in the file's order), through `readers` (reader `partition` of a scan) with
/// the file's offset index: only the pages holding the runs are fetched and only their
/// rows decoded. Batches of up to `batch_rows` rows, in file order.
///
/// # Errors
/// The file cannot be read or decoded.
pub async fn read_runs(
    readers: &dyn ParquetFileReaderFactory,
    partition: usize,
    file: &PartitionedFile,
    runs: Option<(&[RunRef], usize)>,
    columns: &[&str],
    batch_rows: usize,
) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
    let reader: Box<dyn AsyncFileReader> = readers.create_reader(
        partition,
        file.clone(),
        None,
        &ExecutionPlanMetricsSet::new(),
    )?;
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(datafusion::parquet::file::metadata::PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options).await?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let builder = match runs {
        Some((runs, total_rows)) => builder.with_row_selection(selection(runs, total_rows)),
        None => builder,
    };
    Ok(builder
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()?
        .try_collect()
        .await?)
}

/// The runs one file contributes to a scan (or to one partition of it).
#[derive(Debug, Clone)]
pub struct FileRuns {
    /// The file.
    pub file: PartitionedFile,
    /// Its selected runs, sorted by first row, not overlapping.
    pub runs: Vec<RunRef>,
    /// The file's row count.
    pub total_rows: usize,
}

impl FileRuns {
    /// The rows its runs hold.
    pub fn rows(&self) -> usize {
        self.runs.iter().map(|r| r.rows as usize).sum()
    }

    /// Its runs as a Parquet selection over all the file's rows.
    pub fn selection(&self) -> RowSelection {
        selection(&self.runs, self.total_rows)
    }
}

/// Fewest selected rows worth a partition of their own in [`spread`].
const MIN_PARTITION_ROWS: usize = 4096;

/// `files` as up to `partitions` groups (each scanned on its own thread) of about equal
/// numbers of rows, in file and row order, a file's runs split at a run boundary where
/// a group's share overflows. DataFusion's own split of files by byte range works on
/// whole row groups, so one file's selection would otherwise be read on one thread.
pub fn spread(files: Vec<FileRuns>, partitions: usize) -> Vec<Vec<FileRuns>> {
    let total: usize = files.iter().map(FileRuns::rows).sum();
    let n = partitions.clamp(1, (total / MIN_PARTITION_ROWS).max(1));
    let share = total.div_ceil(n);
    let mut groups: Vec<Vec<FileRuns>> = vec![vec![]];
    let mut room = share;
    for FileRuns {
        file,
        runs,
        total_rows,
    } in files
    {
        let part = |runs: Vec<RunRef>| FileRuns {
            file: file.clone(),
            runs,
            total_rows,
        };
        let mut taken = vec![];
        for r in runs {
            if room == 0 && groups.len() < n {
                if !taken.is_empty() {
                    let full = std::mem::take(&mut taken);
                    groups.last_mut().expect("a group").push(part(full));
                }
                groups.push(vec![]);
                room = share;
            }
            room = room.saturating_sub(r.rows as usize);
            taken.push(r);
        }
        if !taken.is_empty() {
            groups.last_mut().expect("a group").push(part(taken));
        }
    }
    groups
}

impl SeriesRuns {
    /// The rows of the file the filter's series have, in runs that overlap its time
    /// range, as a selection over all the file's rows; `None` when no row is wanted.
    /// Whole runs are selected: rows outside the time range may come out.
    #[cfg(test)]
    fn select(&self, filter: &SeriesFilter) -> Option<RowSelection> {
        let runs = self.select_runs(filter);
        (!runs.is_empty()).then(|| selection(&runs, self.total_rows))
    }

    /// The runs of the file the filter's series have that overlap its time range, sorted
    /// by first row. Whole runs are selected: rows outside the time range may come out.
    pub fn select_runs(&self, filter: &SeriesFilter) -> Vec<RunRef> {
        let from = filter.from_us.unwrap_or(i64::MIN);
        let to = filter.to_us.unwrap_or(i64::MAX);
        let mut ranges: Vec<RunRef> = vec![];
        let mut add = |id: i64| {
            let start = self.runs.partition_point(|r| r.series_id < id);
            for r in self.runs[start..].iter().take_while(|r| r.series_id == id) {
                if r.max_us >= from && r.min_us <= to {
                    ranges.push(RunRef {
                        series_id: id,
                        first_row: r.first_row,
                        rows: r.rows,
                    });
                }
            }
        };
        match &filter.wanted {
            Wanted::Series(ids) => ids.iter().for_each(|id| add(*id)),
            Wanted::Metrics(names) => names
                .iter()
                .filter_map(|m| self.metrics.get(m))
                .flatten()
                .for_each(|id| add(*id)),
        }
        ranges.sort_unstable_by_key(|r| r.first_row);
        ranges
    }

    /// The file's number of rows.
    pub fn total_rows(&self) -> usize {
        self.total_rows
    }

    /// The memory the list takes (bytes).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.runs.capacity() * std::mem::size_of::<Run>()
            + self
                .metrics
                .iter()
                .map(|(m, ids)| 64 + m.len() + ids.capacity() * 8)
                .sum::<usize>()
    }

    /// The number of runs.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// Collects a file's runs from its rows, chunk by chunk, in file order.
#[derive(Debug, Default)]
struct RunsBuilder {
    runs: Vec<Run>,
    rows: u64,
    metrics: HashMap<String, Vec<i64>>,
}

impl RunsBuilder {
    /// Adds the next rows (series ids, timestamps in µs, and the row's metric name);
    /// `None` past `u32::MAX` rows.
    fn push<'a>(
        &mut self,
        ids: &[i64],
        ts: &[i64],
        metric: impl Fn(usize) -> &'a str,
    ) -> Option<()> {
        for (i, (&id, &t)) in ids.iter().zip(ts).enumerate() {
            match self.runs.last_mut() {
                Some(r) if r.series_id == id && r.rows < MAX_RUN_ROWS => {
                    r.rows += 1;
                    r.min_us = r.min_us.min(t);
                    r.max_us = r.max_us.max(t);
                }
                last => {
                    if last.is_none_or(|r| r.series_id != id) {
                        let m = metric(i);
                        match self.metrics.get_mut(m) {
                            Some(v) => v.push(id),
                            None => {
                                self.metrics.insert(m.to_owned(), vec![id]);
                            }
                        }
                    }
                    self.runs.push(Run {
                        series_id: id,
                        first_row: u32::try_from(self.rows).ok()?,
                        rows: 1,
                        min_us: t,
                        max_us: t,
                    })
                }
            }
            self.rows += 1;
        }
        u32::try_from(self.rows).ok().map(|_| ())
    }

    /// The list, sorted by series; `None` for runs averaging fewer than 4 rows.
    fn finish(mut self) -> Option<SeriesRuns> {
        let total_rows = usize::try_from(self.rows).ok()?;
        if self.runs.len() * MIN_AVERAGE_RUN_ROWS > total_rows {
            return None;
        }
        self.runs
            .sort_unstable_by_key(|r| (r.series_id, r.first_row));
        self.runs.shrink_to_fit();
        for ids in self.metrics.values_mut() {
            ids.sort_unstable();
            ids.dedup();
            ids.shrink_to_fit();
        }
        Some(SeriesRuns {
            total_rows,
            runs: self.runs,
            metrics: self.metrics,
        })
    }
}

/// Reads the `series_id`, `time_column` (`timestamp` in `samples`, `bucket_end` in the
/// rollup tiers: µs, UTC) and `metric_name` columns of `file` through `readers` (the
/// scan's reader factory, so the footer lands in the session's metadata cache) and lists
/// its runs and each metric's series; `Ok(None)` when the file is not worth a list: a
/// null id, time or metric name, more than `u32::MAX` rows, or runs averaging fewer than
/// 4 rows (an unsorted file).
///
/// # Errors
/// The file cannot be read, or lacks one of the three columns, or has `series_id` or the
/// time column in another type.
pub async fn build(
    readers: &dyn ParquetFileReaderFactory,
    file: PartitionedFile,
    time_column: &str,
) -> Result<Option<SeriesRuns>> {
    let reader: Box<dyn AsyncFileReader> =
        readers.create_reader(0, file, None, &ExecutionPlanMetricsSet::new())?;
    let builder =
        ParquetRecordBatchStreamBuilder::new_with_options(reader, ArrowReaderOptions::new())
            .await?;
    let descr = builder.parquet_schema();
    let mask = ProjectionMask::columns(descr, ["series_id", time_column, "metric_name"]);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(65536)
        .build()?;
    let mut runs = RunsBuilder::default();
    while let Some(batch) = stream.try_next().await? {
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| DataFusionError::Execution(format!("a file without column {name}")))
        };
        let (id_col, ts_col) = (col("series_id")?, col(time_column)?);
        let names = cast(&col("metric_name")?, &DataType::Utf8)?;
        if id_col.null_count() > 0 || ts_col.null_count() > 0 || names.null_count() > 0 {
            return Ok(None);
        }
        let names = names.as_string::<i32>();
        let (Some(i), Some(t)) = (
            id_col.as_primitive_opt::<Int64Type>(),
            ts_col.as_primitive_opt::<TimestampMicrosecondType>(),
        ) else {
            return Err(DataFusionError::Execution(format!(
                "a file whose series_id or {time_column} has another type"
            )));
        };
        if runs
            .push(i.values(), t.values(), |row| names.value(row))
            .is_none()
        {
            return Ok(None);
        }
    }
    Ok(runs.finish())
}

/// A cached file's run list, or why there is none.
#[derive(Debug)]
enum Slot {
    /// Being built (in the background, or by a query's planning).
    Building,
    /// Ready; `used` is the cache's clock at the last read.
    Ready(Arc<SeriesRuns>, AtomicU64),
    /// The file is not worth a list, or reading it failed: read by page statistics.
    Unusable,
    /// Dropped to keep the cache within its size at this time; built again on a read
    /// [`REBUILD_AFTER`] later, not before, so that a working set larger than the cache
    /// does not rebuild lists on every query.
    Evicted(std::time::Instant),
}

/// How long a file whose list was evicted is read by page statistics before its list is
/// built again.
pub const REBUILD_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// The run lists of the files of one table, by file path (files are immutable), at most
/// [`RUNS_CACHE_BYTES`] together (least recently used evicted first, see
/// [`REBUILD_AFTER`]). The default cache is the `samples` table's (runs timed by
/// `timestamp`); [`RunsCache::timed_by`] makes one for another time column.
#[derive(Debug)]
pub struct RunsCache {
    slots: parking_lot::Mutex<HashMap<Path, Slot>>,
    clock: AtomicU64,
    time_column: &'static str,
}

impl Default for RunsCache {
    fn default() -> Self {
        RunsCache::timed_by("timestamp")
    }
}

impl RunsCache {
    /// An empty cache of a table whose rows are timed by `time_column` (µs, UTC), sorted
    /// by `metric_name` and `series_id` like `samples`.
    pub fn timed_by(time_column: &'static str) -> RunsCache {
        RunsCache {
            slots: Default::default(),
            clock: AtomicU64::new(0),
            time_column,
        }
    }

    /// The run list of `file`, if ready.
    pub fn get(&self, file: &PartitionedFile) -> Option<Arc<SeriesRuns>> {
        match self.slots.lock().get(&file.object_meta.location) {
            Some(Slot::Ready(runs, used)) => {
                used.store(
                    self.clock.fetch_add(1, Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                Some(runs.clone())
            }
            _ => None,
        }
    }

    /// The run list of `file`, if ready. Otherwise it is built: now (awaited) if `inline`,
    /// else in the background (on the current Tokio runtime), and this call returns
    /// `None`. A file whose list cannot be built is read by page statistics from then on.
    pub async fn get_or_build(
        self: &Arc<Self>,
        readers: &Arc<dyn ParquetFileReaderFactory>,
        file: &PartitionedFile,
        inline: bool,
    ) -> Option<Arc<SeriesRuns>> {
        if let Some(runs) = self.get(file) {
            return Some(runs);
        }
        let path = file.object_meta.location.clone();
        {
            let mut slots = self.slots.lock();
            let start = match slots.get(&path) {
                None => true,
                Some(Slot::Evicted(at)) => at.elapsed() >= REBUILD_AFTER,
                Some(_) => false,
            };
            if !start {
                return None;
            }
            slots.insert(path.clone(), Slot::Building);
        }
        let task = {
            let (cache, readers, file) = (self.clone(), readers.clone(), file.clone());
            async move {
                let started = std::time::Instant::now();
                let built = build(readers.as_ref(), file, cache.time_column).await;
                cache.finish(path, built, started)
            }
        };
        // Spawned even when awaited: a query dropped mid-build (timeout, client gone)
        // does not leave the file marked as building forever.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if inline => rt.spawn(task).await.ok().flatten(),
            Ok(rt) => {
                rt.spawn(task);
                None
            }
            Err(_) if inline => task.await,
            Err(_) => {
                self.slots.lock().remove(&file.object_meta.location);
                None
            }
        }
    }

    fn finish(
        &self,
        path: Path,
        built: Result<Option<SeriesRuns>>,
        started: std::time::Instant,
    ) -> Option<Arc<SeriesRuns>> {
        let runs = match built {
            Ok(Some(runs)) => Arc::new(runs),
            Ok(None) => {
                tracing::debug!(file = %path, "file not sorted by series: no run list");
                self.slots.lock().insert(path, Slot::Unusable);
                return None;
            }
            Err(e) => {
                tracing::warn!(file = %path, error = %e, "reading a file's series runs failed");
                self.slots.lock().insert(path, Slot::Unusable);
                return None;
            }
        };
        tracing::debug!(
            file = %path,
            runs = runs.len(),
            bytes = runs.bytes(),
            ms = started.elapsed().as_millis() as u64,
            "samples file run list built"
        );
        let mut slots = self.slots.lock();
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        slots.insert(path, Slot::Ready(runs.clone(), AtomicU64::new(now)));
        evict(&mut slots, RUNS_CACHE_BYTES);
        Some(runs)
    }

    /// Drops the lists of files not in `live` (files a new table version removed).
    pub fn retain(&self, live: &HashSet<&Path>) {
        self.slots.lock().retain(|p, _| live.contains(p));
    }

    /// The memory the ready lists take (bytes).
    pub fn bytes(&self) -> usize {
        self.slots.lock().values().map(slot_bytes).sum()
    }
}

fn slot_bytes(s: &Slot) -> usize {
    match s {
        Slot::Ready(r, _) => r.bytes(),
        _ => 0,
    }
}

/// Drops least recently used ready lists (leaving [`Slot::Evicted`]) until the rest take
/// at most `budget` bytes.
fn evict(slots: &mut HashMap<Path, Slot>, budget: usize) {
    let mut total: usize = slots.values().map(slot_bytes).sum();
    while total > budget {
        let oldest = slots
            .iter()
            .filter_map(|(p, s)| match s {
                Slot::Ready(r, used) => Some((used.load(Ordering::Relaxed), p.clone(), r.bytes())),
                _ => None,
            })
            .min_by_key(|(used, _, _)| *used);
        let Some((_, path, bytes)) = oldest else {
            break;
        };
        slots.insert(path, Slot::Evicted(std::time::Instant::now()));
        total -= bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn list(ids: &[i64], ts: &[i64]) -> Option<SeriesRuns> {
        let mut b = RunsBuilder::default();
        // Odd series ids are metric "odd", even ones "even".
        b.push(ids, ts, |i| if ids[i] % 2 == 0 { "even" } else { "odd" })?;
        b.finish()
    }

    fn runs(ids: &[i64], ts: &[i64]) -> SeriesRuns {
        list(ids, ts).expect("sorted enough")
    }

    fn series(ids: &[i64], from_us: Option<i64>, to_us: Option<i64>) -> SeriesFilter {
        SeriesFilter {
            wanted: Wanted::Series(ids.to_vec()),
            from_us,
            to_us,
        }
    }

    fn of_metrics(names: &[&str], from_us: Option<i64>, to_us: Option<i64>) -> SeriesFilter {
        SeriesFilter {
            wanted: Wanted::Metrics(names.iter().map(|m| m.to_string()).collect()),
            from_us,
            to_us,
        }
    }

    fn selected(sel: &RowSelection) -> Vec<std::ops::Range<usize>> {
        let mut out = vec![];
        let mut row = 0;
        for s in sel.iter() {
            if !s.skip {
                out.push(row..row + s.row_count);
            }
            row += s.row_count;
        }
        out
    }

    #[test]
    fn spread_splits_files_at_run_boundaries_and_reads_each_run_once() {
        // Two files: 20 runs of 512 rows, and 3 runs of 100 (10,540 rows in all).
        let file = |name: &str, n: u32, rows: u32| FileRuns {
            file: PartitionedFile::new(name, 1),
            runs: (0..n)
                .map(|k| RunRef {
                    series_id: i64::from(k),
                    first_row: k * rows,
                    rows,
                })
                .collect(),
            total_rows: (n * rows) as usize,
        };
        let files = vec![file("a", 20, 512), file("b", 3, 100)];
        let groups = spread(files.clone(), 2);
        assert_eq!(groups.len(), 2);
        // The first group takes runs up to its share (5,270 rows: 11 runs), the second
        // the rest of a and all of b.
        let rows: Vec<usize> = groups
            .iter()
            .map(|g| g.iter().map(FileRuns::rows).sum())
            .collect();
        assert_eq!(rows, vec![11 * 512, 9 * 512 + 300]);
        let again: Vec<RunRef> = groups
            .iter()
            .flatten()
            .flat_map(|f| f.runs.clone())
            .collect();
        let all: Vec<RunRef> = files.iter().flat_map(|f| f.runs.clone()).collect();
        assert_eq!(again, all);
        // Each part's selection still spans its whole file.
        for f in groups.iter().flatten() {
            let s = f.selection();
            assert_eq!(s.row_count() + s.skipped_row_count(), f.total_rows);
            assert_eq!(s.row_count(), f.rows());
        }
        // Below 4,096 rows a partition each is not worth it: one group.
        assert_eq!(spread(vec![file("c", 3, 100)], 2).len(), 1);
    }

    /// Two 2-hour windows of three series, 4 samples each (as compaction sorts them).
    fn two_windows() -> SeriesRuns {
        let mut ids = vec![];
        let mut ts = vec![];
        for window in 0..2 {
            for id in [10, 20, 30] {
                for k in 0..4 {
                    ids.push(id);
                    ts.push(window * 7_200_000_000 + k * 10_000_000);
                }
            }
        }
        runs(&ids, &ts)
    }

    #[test]
    fn selects_the_rows_of_the_series_in_time() {
        let r = two_windows();
        assert_eq!(r.len(), 6);
        // Rows: window 0 = 10 (0..4), 20 (4..8), 30 (8..12); window 1 = 12..16, 16..20, 20..24.
        let all = |ids: Vec<i64>| series(&ids, None, None);
        assert_eq!(
            selected(&r.select(&all(vec![20])).unwrap()),
            vec![4..8, 16..20]
        );
        assert_eq!(
            selected(&r.select(&all(vec![10, 30])).unwrap()),
            // 8..12 and 12..16 are adjacent: one selector.
            vec![0..4, 8..16, 20..24]
        );
        assert!(r.select(&all(vec![15])).is_none());
        // Only the second window: from its first sample on.
        let late = series(&[20], Some(7_200_000_000), None);
        assert_eq!(selected(&r.select(&late).unwrap()), vec![16..20]);
        // Ends 1 µs before the second window: only the first.
        let early = series(&[20, 30], Some(0), Some(7_199_999_999));
        assert_eq!(selected(&r.select(&early).unwrap()), vec![4..12]);
        // A range between the windows' samples selects nothing.
        let gap = series(&[10], Some(40_000_000), Some(7_100_000_000));
        assert!(r.select(&gap).is_none());
    }

    #[test]
    fn metric_names_select_all_their_series() {
        // Two 2-hour windows of four series: 10 and 20 are metric "even", 11 and 21 "odd"
        // (see `list`).
        let mut ids = vec![];
        let mut ts = vec![];
        for window in 0..2 {
            for id in [10, 11, 20, 21] {
                for k in 0..4 {
                    ids.push(id);
                    ts.push(window * 7_200_000_000 + k * 10_000_000);
                }
            }
        }
        // Rows: window 0 = 10 (0..4), 11 (4..8), 20 (8..12), 21 (12..16); window 1 = +16.
        let r = runs(&ids, &ts);
        let of = |metrics: &[&str], from_us| of_metrics(metrics, from_us, None);
        assert_eq!(
            selected(&r.select(&of(&["odd"], None)).unwrap()),
            vec![4..8, 12..16, 20..24, 28..32]
        );
        assert_eq!(
            selected(&r.select(&of(&["even"], Some(7_200_000_000))).unwrap()),
            vec![16..20, 24..28]
        );
        assert_eq!(
            selected(
                &r.select(&of(&["even", "odd"], Some(7_200_000_000)))
                    .unwrap()
            ),
            vec![16..32]
        );
        assert!(r.select(&of(&["other"], None)).is_none());
    }

    #[test]
    fn long_runs_are_cut_so_time_selects_part_of_them() {
        // One series, 1,200 rows at 10 s: runs of 512, 512 and 176 rows.
        let ids = vec![7i64; 1200];
        let ts: Vec<i64> = (0..1200).map(|i| i * 10_000_000).collect();
        let r = runs(&ids, &ts);
        assert_eq!(r.len(), 3);
        // Rows 600..=700 (times 6,000 s..=7,000 s) lie in the second run only.
        let mid = series(&[7], Some(6_000_000_000), Some(7_000_000_000));
        assert_eq!(selected(&r.select(&mid).unwrap()), vec![512..1024]);
    }

    #[test]
    fn unsorted_files_get_no_list() {
        let ids: Vec<i64> = (0..100).map(|i| i % 7).collect();
        let ts: Vec<i64> = (0..100).collect();
        assert!(list(&ids, &ts).is_none());
    }

    #[test]
    fn filters_give_series_and_inclusive_time_bounds() {
        let t = |us| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(us),
                Some("UTC".into()),
            ))
        };
        let filters = vec![
            col("metric_name").in_list(vec![lit("x")], false),
            col("timestamp").gt(t(1_000)),
            col("timestamp").lt_eq(t(9_000)),
            col("series_id").in_list(vec![lit(5i64), lit(-3i64), lit(5i64)], false),
        ];
        assert_eq!(
            SeriesFilter::from_filters(&filters),
            Some(series(&[-3, 5], Some(1_001), Some(9_000)))
        );
        // Without series ids, the metric names stand for all their series.
        assert_eq!(
            SeriesFilter::from_filters(&filters[..3]),
            Some(of_metrics(&["x"], Some(1_001), Some(9_000)))
        );
        assert_eq!(SeriesFilter::from_filters(&filters[1..3]), None);
        let one = vec![col("series_id").eq(lit(7i64)), col("timestamp").lt(t(50))];
        assert_eq!(
            SeriesFilter::from_filters(&one),
            Some(series(&[7], None, Some(49)))
        );
    }

    /// A real Parquet file (two series, 3 and 2 rows; the sorted layout Strata writes),
    /// listed in the background, then selected from.
    #[tokio::test]
    async fn lists_a_parquet_file_in_the_background() {
        use datafusion::arrow::array::{
            Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
        };
        use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
        use datafusion::object_store::ObjectStoreExt;
        use datafusion::object_store::local::LocalFileSystem;
        use datafusion::parquet::arrow::ArrowWriter;

        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("metric_name", DataType::Utf8, false),
            Field::new("series_id", DataType::Int64, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("value", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    "a", "a", "a", "a", "b", "b", "b", "b",
                ])),
                Arc::new(Int64Array::from(vec![1, 1, 1, 1, 2, 2, 2, 2])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![10, 20, 30, 40, 10, 20, 30, 40])
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![0.0; 8])),
            ],
        )
        .unwrap();
        let path = dir.path().join("f.parquet");
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let meta = store.head(&Path::from("f.parquet")).await.unwrap();
        let file = PartitionedFile::new_from_meta(meta);
        let readers: Arc<dyn ParquetFileReaderFactory> =
            Arc::new(DefaultParquetFileReaderFactory::new(store));
        let cache = Arc::new(RunsCache::default());
        assert!(cache.get_or_build(&readers, &file, false).await.is_none());
        let mut listed = None;
        for _ in 0..500 {
            listed = cache.get(&file);
            if listed.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let runs = listed.expect("listed in the background");
        assert_eq!(runs.len(), 2);
        let second = series(&[2], Some(25), None);
        assert_eq!(selected(&runs.select(&second).unwrap()), vec![4..8]);
        let metric_a = of_metrics(&["a"], None, None);
        assert_eq!(selected(&runs.select(&metric_a).unwrap()), vec![0..4]);
        // Built once: the next call finds it without building.
        assert!(cache.get_or_build(&readers, &file, true).await.is_some());
        assert!(cache.bytes() >= runs.bytes());
    }

    #[test]
    fn eviction_drops_the_least_recently_used() {
        let mut slots = HashMap::new();
        for (name, used) in [("a", 3), ("b", 1), ("c", 2)] {
            slots.insert(
                Path::from(name),
                Slot::Ready(Arc::new(two_windows()), AtomicU64::new(used)),
            );
        }
        let one = two_windows().bytes();
        evict(&mut slots, 2 * one);
        let mut left: Vec<String> = slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Ready(..)))
            .map(|(p, _)| p.to_string())
            .collect();
        left.sort();
        assert_eq!(left, vec!["a", "c"]);
        assert!(matches!(slots[&Path::from("b")], Slot::Evicted(_)));
    }
}
