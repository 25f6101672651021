//! The data files of one Delta table version, listed once per version, and the Parquet
//! scans PromQL reads them through.
//!
//! delta-rs plans every scan by replaying the table's file actions through the Delta
//! kernel (data skipping included): 16% of the CPU of a one-series PromQL query in a
//! `perf` profile, more than reading the series' pages. A [`FileList`] keeps what those
//! scans need (paths, sizes, and each file's statistics from its `add` action, Delta
//! protocol "Per-file Statistics", as delta-rs parses them) until the table's version
//! changes;
//! [`scan`] skips files by those statistics with DataFusion's `PruningPredicate`, all
//! files in one vectorized evaluation, and reads the rest with DataFusion's Parquet scan.
//!
//! Only tables this reader reads exactly as delta-rs would get a list: no deletion
//! vectors, no column mapping, and file paths relative to the table root (Strata's own
//! tables). For any other table [`FileList::load`] returns `None` and the caller scans
//! through delta-rs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue, ToDFSchema};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::object_store::ObjectMeta;
use datafusion::object_store::path::Path;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use deltalake::DeltaTable;

use crate::file_cache::FileCache;
use crate::runs::{BUILD_INLINE_BYTES, FileRuns, RunsCache, SeriesFilter, spread};
use crate::sample_cache::{CACHED_COLUMNS, CachedRunsExec, SampleCache};
use crate::tables::PageIndexCaching;

/// The data files of one version of a Delta table, with their statistics as DataFusion's
/// [`PruningStatistics`] (one container per file): the minimum, maximum and null count of
/// each column stored in the files, and each file's row count, taken once per version from
/// delta-rs's own `PruningStatistics` of the snapshot (the `add` actions' parsed `stats`).
#[derive(Debug)]
pub struct FileList {
    files: Vec<PartitionedFile>,
    rows: Option<ArrayRef>,
    mins: HashMap<String, ArrayRef>,
    maxs: HashMap<String, ArrayRef>,
    nulls: HashMap<String, ArrayRef>,
    /// Each file's `timestamp` and `metric_name` ranges, from the same statistics.
    bounds: Vec<FileBounds>,
}

/// One file's smallest and largest `timestamp` (µs since the epoch, UTC) and
/// `metric_name`, each `None` where the statistics lack it.
#[derive(Debug, Default)]
struct FileBounds {
    ts: (Option<i64>, Option<i64>),
    names: (Option<String>, Option<String>),
}

/// A statistics column's values as µs (a timestamp column), one per file.
fn stat_us(a: Option<&ArrayRef>, files: usize) -> Vec<Option<i64>> {
    match a.and_then(|a| a.as_primitive_opt::<TimestampMicrosecondType>()) {
        Some(ts) => (0..files)
            .map(|i| (i < ts.len() && ts.is_valid(i)).then(|| ts.value(i)))
            .collect(),
        None => vec![None; files],
    }
}

/// A statistics column's values as strings, one per file.
fn stat_str(a: Option<&ArrayRef>, files: usize) -> Vec<Option<String>> {
    let cast = a.and_then(|a| datafusion::arrow::compute::cast(a, &DataType::Utf8).ok());
    match cast.as_ref().and_then(|a| a.as_string_opt::<i32>()) {
        Some(s) => (0..files)
            .map(|i| (i < s.len() && s.is_valid(i)).then(|| s.value(i).to_string()))
            .collect(),
        None => vec![None; files],
    }
}

/// The filters of a PromQL selector's scan, when they are all of that kind: metric names
/// pinned (`metric_name = 'x'` or `IN (...)`, at most one such filter), series ids pinned
/// (not used to skip files: the runs pick series), and `timestamp` compared with
/// microsecond literals.
#[derive(Debug, Default)]
struct SelectorFilters {
    /// Sorted.
    names: Option<Vec<String>>,
    from_us: Option<i64>,
    to_us: Option<i64>,
}

impl SelectorFilters {
    fn from_filters(filters: &[Expr]) -> Option<SelectorFilters> {
        use datafusion::logical_expr::{BinaryExpr, Operator};
        let named = |e: &Expr, n: &str| matches!(e, Expr::Column(c) if c.name == n);
        let lit_of =
            |e: &Expr, ok: &dyn Fn(&ScalarValue) -> bool| matches!(e, Expr::Literal(v, _) if ok(v));
        let name = |v: &ScalarValue| crate::tables::scalar_str(v).is_some();
        let id = |v: &ScalarValue| matches!(v, ScalarValue::Int64(Some(_)));
        let us = |v: &ScalarValue| matches!(v, ScalarValue::TimestampMicrosecond(Some(_), _));
        let mut name_filters = 0;
        for f in filters {
            let understood = match f {
                Expr::InList(l) if !l.negated && named(&l.expr, "metric_name") => {
                    name_filters += 1;
                    l.list.iter().all(|e| lit_of(e, &name))
                }
                Expr::InList(l) if !l.negated && named(&l.expr, "series_id") => {
                    l.list.iter().all(|e| lit_of(e, &id))
                }
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                    Operator::Eq if named(left, "metric_name") => {
                        name_filters += 1;
                        lit_of(right, &name)
                    }
                    Operator::Eq => named(left, "series_id") && lit_of(right, &id),
                    Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq => {
                        named(left, "timestamp") && lit_of(right, &us)
                    }
                    _ => false,
                },
                _ => false,
            };
            if !understood || name_filters > 1 {
                return None;
            }
        }
        let mut names =
            crate::tables::pinned_values(filters, "metric_name", crate::tables::scalar_str);
        if let Some(n) = names.as_mut() {
            n.sort_unstable();
        }
        let (from_us, to_us) = crate::runs::time_bounds(filters);
        Some(SelectorFilters {
            names,
            from_us,
            to_us,
        })
    }

    /// Whether a file with bounds `b` may hold rows these filters match.
    fn may_match(&self, b: &FileBounds) -> bool {
        let in_time = self
            .from_us
            .is_none_or(|f| b.ts.1.is_none_or(|max| max >= f))
            && self.to_us.is_none_or(|t| b.ts.0.is_none_or(|min| min <= t));
        let named = match (&self.names, &b.names) {
            (Some(names), (Some(min), Some(max))) => {
                let first = names.partition_point(|n| n < min);
                names.get(first).is_some_and(|n| n <= max)
            }
            _ => true,
        };
        in_time && named
    }
}

/// Delta's JSON statistics keep timestamps to the millisecond: a maximum is rounded up to
/// the end of its millisecond (as delta-rs's `LogicalFileView::max_values` does).
fn round_up_ms(a: ArrayRef) -> ArrayRef {
    match a.as_primitive_opt::<TimestampMicrosecondType>() {
        Some(ts) => Arc::new(
            ts.unary::<_, TimestampMicrosecondType>(|us| us + 999)
                .with_timezone_opt(ts.timezone()),
        ),
        None => a,
    }
}

/// A data file of a Delta table version (its `add` action, as delta-rs lists it) as
/// DataFusion's Parquet scans take it: path relative to the table's object store, size
/// and modification time; no partition values.
pub fn partitioned_file(f: &deltalake::kernel::LogicalFileView) -> PartitionedFile {
    PartitionedFile::new_from_meta(ObjectMeta {
        location: f.object_store_path(),
        last_modified: chrono::DateTime::from_timestamp_millis(f.modification_time())
            .unwrap_or_default(),
        size: f.size().max(0) as u64,
        e_tag: None,
        version: None,
    })
}

impl FileList {
    /// Lists the files of `table`'s loaded version with the statistics of the columns of
    /// `file_schema` (the table's columns stored in its Parquet files).
    ///
    /// Returns `None` when the table uses what this reader does not implement: deletion
    /// vectors, column mapping, or file paths that are absolute URLs (shallow clones).
    ///
    /// # Errors
    /// The table has no loaded snapshot.
    pub fn load(
        table: &DeltaTable,
        file_schema: &SchemaRef,
    ) -> deltalake::DeltaResult<Option<FileList>> {
        let snapshot = table.snapshot()?.snapshot();
        let mapping = snapshot
            .metadata()
            .configuration()
            .get("delta.columnMapping.mode")
            .is_some_and(|m| m != "none");
        if mapping {
            return Ok(None);
        }
        let mut files = vec![];
        for f in snapshot.log_data().iter() {
            if f.deletion_vector_descriptor().is_some() || f.path().contains("://") {
                return Ok(None);
            }
            files.push(partitioned_file(&f));
        }
        let stats = snapshot.log_data();
        let per_column = |f: &dyn Fn(&Column) -> Option<ArrayRef>| -> HashMap<String, ArrayRef> {
            file_schema
                .fields()
                .iter()
                .filter_map(|field| {
                    Some((field.name().clone(), f(&Column::from_name(field.name()))?))
                })
                .collect()
        };
        let mins = per_column(&|c| stats.min_values(c));
        let maxs = per_column(&|c| stats.max_values(c).map(round_up_ms));
        let n = files.len();
        let (ts_min, ts_max) = (
            stat_us(mins.get("timestamp"), n),
            stat_us(maxs.get("timestamp"), n),
        );
        let (name_min, name_max) = (
            stat_str(mins.get("metric_name"), n),
            stat_str(maxs.get("metric_name"), n),
        );
        let bounds = ts_min
            .into_iter()
            .zip(ts_max)
            .zip(name_min.into_iter().zip(name_max))
            .map(|(ts, names)| FileBounds { ts, names })
            .collect();
        Ok(Some(FileList {
            files,
            rows: stats.row_counts(),
            mins,
            maxs,
            nulls: per_column(&|c| stats.null_counts(c)),
            bounds,
        }))
    }

    /// The number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// The files' paths (relative to the table's object store).
    pub fn paths(&self) -> HashSet<&Path> {
        self.files.iter().map(|f| &f.object_meta.location).collect()
    }

    /// Whether the table has no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl PruningStatistics for FileList {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.mins.get(column.name.as_str()).cloned()
    }
    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.maxs.get(column.name.as_str()).cloned()
    }
    fn num_containers(&self) -> usize {
        self.files.len()
    }
    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.nulls.get(column.name.as_str()).cloned()
    }
    fn row_counts(&self) -> Option<ArrayRef> {
        self.rows.clone()
    }
    fn contained(
        &self,
        _column: &Column,
        _values: &std::collections::HashSet<ScalarValue>,
    ) -> Option<BooleanArray> {
        None
    }
}

/// A Parquet scan of the files of `list` that `filters` may match.
///
/// `file_schema` is the table's schema without its partition columns, `projection`
/// indexes it. The filters skip files (by the list's statistics; a `series_id` filter is
/// left out there: the runs below pick series), row groups and pages (by the files'
/// statistics and page indexes) and are evaluated on no row: rows they do not match can
/// come out (the pruning contract of
/// [`crate::tables::HeadDeltaTable::pruning_samples`]).
///
/// When the filters name the series or their metrics (`series_id IN (...)`,
/// `metric_name IN (...)`, see [`SeriesFilter::from_filters`]), files whose
/// [`crate::runs::SeriesRuns`] are in `runs` (or built now, up to [`BUILD_INLINE_BYTES`]
/// of files per scan, the others in the background: see [`RunsCache::get_or_build`]) are
/// read by row selection instead: only the runs of those series (or of all series of those
/// metrics) that overlap the filters' time range, without statistics evaluation; files
/// with no such run are skipped. The files read by row selection are spread over the
/// session's target partitions by selected rows ([`crate::runs::spread`], at run
/// boundaries). The plan is then a union of that scan and the statistics-pruned scan of
/// the other files.
///
/// # Errors
/// Filters that do not convert to physical expressions over `file_schema`, or the table's
/// object store failing to register.
#[allow(clippy::too_many_arguments)]
pub async fn scan(
    list: &FileList,
    table: &DeltaTable,
    file_schema: &SchemaRef,
    state: &dyn Session,
    projection: Vec<usize>,
    filters: &[Expr],
    limit: Option<usize>,
    runs: &Arc<RunsCache>,
    file_cache: &Arc<FileCache>,
    samples: &Arc<SampleCache>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let log_store = table.log_store();
    let url: ObjectStoreUrl = log_store.object_store_url();
    let runtime = state.runtime_env();
    let store = match runtime.object_store(&url) {
        Ok(s) => s,
        Err(_) => {
            let s = log_store.object_store(None);
            runtime.register_object_store(url.as_ref(), s.clone());
            s
        }
    };
    let physical = |filters: Vec<Expr>| {
        conjunction(filters)
            .map(|e| state.create_physical_expr(e, &file_schema.clone().to_dfschema()?))
            .transpose()
    };
    // Files: kept unless their statistics rule out the filters other than the series ids
    // (a long `IN` list costs more to rewrite and evaluate than it prunes here: the runs
    // below pick series, and the statistics scan prunes row groups and pages by them).
    // A PromQL selector's filters are checked against each file's bounds directly: the
    // same decisions as a `PruningPredicate`, without building and evaluating one (4% of
    // a one-series query's CPU in a `perf` profile).
    let keep = match SelectorFilters::from_filters(filters) {
        Some(q) => list.bounds.iter().map(|b| q.may_match(b)).collect(),
        None => {
            // Files: kept unless their statistics rule out the filters other than the
            // series ids (a long `IN` list costs more to rewrite and evaluate than it
            // prunes here: the runs below pick series, and the statistics scan prunes row
            // groups and pages by them).
            let file_filters = filters
                .iter()
                .filter(|f| !f.column_refs().iter().any(|c| c.name == "series_id"))
                .cloned()
                .collect();
            match physical(file_filters)? {
                Some(p) => PruningPredicateBuilder::new()
                    .with_file_schema(file_schema.clone())
                    .with_max_in_list_size(state.table_options().parquet.global.max_in_list_size)
                    .build(p)
                    .and_then(|pp| pp.prune(list).ok())
                    .unwrap_or_else(|| vec![true; list.len()]),
                None => vec![true; list.len()],
            }
        }
    };
    let cache = runtime.cache_manager.get_file_metadata_cache();
    let readers: Arc<dyn ParquetFileReaderFactory> = Arc::new(PageIndexCaching::new(Arc::new(
        CachedParquetFileReaderFactory::new(file_cache.store(store), cache),
    )));
    let series = SeriesFilter::from_filters(filters);
    let mut by_runs: Vec<FileRuns> = vec![];
    let mut by_stats: Vec<PartitionedFile> = vec![];
    let mut inline_left = BUILD_INLINE_BYTES;
    for (f, _) in list.files.iter().zip(keep).filter(|(_, k)| *k) {
        let selection = match &series {
            Some(s) => {
                let found = match runs.get(f) {
                    Some(r) => Some(r),
                    None => {
                        let inline = f.object_meta.size <= inline_left;
                        if inline {
                            inline_left -= f.object_meta.size;
                        }
                        runs.get_or_build(&readers, f, inline).await
                    }
                };
                found.map(|r| FileRuns {
                    file: f.clone(),
                    runs: r.select_runs(s),
                    total_rows: r.total_rows(),
                })
            }
            None => None,
        };
        match selection {
            Some(f) if !f.runs.is_empty() => by_runs.push(f),
            Some(_) => {}
            None => by_stats.push(f.clone()),
        }
    }
    let source = || {
        ParquetSource::new(file_schema.clone())
            .with_table_parquet_options(state.table_options().parquet.clone())
            .with_parquet_file_reader_factory(readers.clone())
    };
    let exec = |groups: Vec<FileGroup>, source: ParquetSource| {
        let config = FileScanConfigBuilder::new(url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(Some(projection.clone()))?
            .with_limit(limit)
            .build();
        Ok::<Arc<dyn ExecutionPlan>, datafusion::error::DataFusionError>(
            DataSourceExec::from_data_source(config),
        )
    };
    let mut plans: Vec<Arc<dyn ExecutionPlan>> = vec![];
    let selected: usize = by_runs.iter().map(FileRuns::rows).sum();
    let projected = Arc::new(file_schema.project(&projection)?);
    let cached = samples.admits(selected)
        && limit.is_none()
        && projected
            .fields()
            .iter()
            .all(|f| CACHED_COLUMNS.contains(&f.name().as_str()));
    if !by_runs.is_empty() && cached {
        plans.push(Arc::new(CachedRunsExec::try_new(
            by_runs,
            state.config().target_partitions(),
            readers.clone(),
            samples.clone(),
            projected.clone(),
        )?));
    } else if !by_runs.is_empty() {
        let groups = spread(by_runs, state.config().target_partitions())
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|f| {
                        let sel = ParquetRowSelection::new(f.selection());
                        f.file.with_extension(sel)
                    })
                    .collect::<Vec<_>>()
                    .into()
            })
            .collect();
        plans.push(exec(groups, source())?);
    }
    if !by_stats.is_empty() {
        let source = match physical(filters.to_vec())? {
            Some(p) => source().with_predicate(p),
            None => source(),
        };
        plans.push(exec(vec![FileGroup::new(by_stats)], source)?);
    }
    match plans.len() {
        0 => Ok(Arc::new(EmptyExec::new(projected))),
        1 => Ok(plans.remove(0)),
        _ => UnionExec::try_new(plans),
    }
}

/// Whether every column `projection` (indexes of `schema`) and `filters` name is stored
/// in the table's Parquet files (is a field of `file_schema`, which has no partition
/// columns).
pub fn reads_only(
    schema: &SchemaRef,
    file_schema: &SchemaRef,
    projection: &[usize],
    filters: &[Expr],
) -> bool {
    let in_files = |name: &str| file_schema.field_with_name(name).is_ok();
    projection.iter().all(|i| in_files(schema.field(*i).name()))
        && filters
            .iter()
            .all(|f| f.column_refs().iter().all(|c| in_files(&c.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn us(v: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    fn file(ts: (i64, i64), names: (&str, &str)) -> FileBounds {
        FileBounds {
            ts: (Some(ts.0), Some(ts.1)),
            names: (Some(names.0.into()), Some(names.1.into())),
        }
    }

    #[test]
    fn a_selectors_filters_skip_files_outside_its_names_and_times() {
        // Metrics b and d, two series, timestamps in (100, 200] µs.
        let filters = [
            col("metric_name").in_list(vec![lit("d"), lit("b")], false),
            col("series_id").in_list(vec![lit(1i64), lit(2i64)], false),
            col("timestamp").gt(us(100)),
            col("timestamp").lt_eq(us(200)),
        ];
        let q = SelectorFilters::from_filters(&filters).expect("a selector's filters");
        assert!(q.may_match(&file((150, 300), ("a", "b"))));
        assert!(q.may_match(&file((0, 101), ("b", "b"))));
        assert!(q.may_match(&file((200, 300), ("c", "z"))));
        // Before, after, and between the names.
        assert!(!q.may_match(&file((0, 100), ("b", "b"))));
        assert!(!q.may_match(&file((201, 300), ("b", "b"))));
        assert!(!q.may_match(&file((150, 160), ("c", "c"))));
        assert!(!q.may_match(&file((150, 160), ("e", "z"))));
        // No statistics: kept.
        assert!(q.may_match(&FileBounds::default()));
        // Any other filter: DataFusion's pruning decides.
        let other = [col("metric_name").eq(lit("b")), col("value").gt(lit(1.0))];
        assert!(SelectorFilters::from_filters(&other).is_none());
    }
}
