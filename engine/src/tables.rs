//! The table providers: each scan unions the Delta table's scan with the head's rows, taken
//! together from one consistent [`Source`] view.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{
    FileScanConfigBuilder, FileSource, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, InListExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use deltalake::DeltaTable;
use futures::FutureExt;
use futures::future::BoxFuture;
use strata_ingest::storage;

use crate::file_cache::FileCache;
use crate::files;
use crate::runs::RunsCache;
use crate::sample_cache::SampleCache;
use crate::source::Source;

/// Metric names a filter list pins the scan to (`metric_name = 'x'` or
/// `metric_name IN ('x', 'y')`), used to copy only those series out of the head.
fn metric_names(filters: &[Expr]) -> Option<HashSet<String>> {
    pinned_values(filters, "metric_name", scalar_str).map(HashSet::from_iter)
}

/// The series a filter list pins the scan to (`series_id = n` or `series_id IN (...)`),
/// sorted: used to copy only those series out of the head.
fn series_ids(filters: &[Expr]) -> Option<Vec<u64>> {
    let mut ids = pinned_values(filters, "series_id", |v| match v {
        ScalarValue::Int64(Some(i)) => Some(*i as u64),
        _ => None,
    })?;
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

/// The time window (ms, both ends included, widened to whole ms) that `filters` (a
/// conjunction) confine `timestamp` to, from comparisons of the column with timestamp
/// literals (`timestamp > TIMESTAMP '...'`, either side); `None` if neither end is
/// bounded. Used to copy only that window out of the head; the filters still apply.
fn time_bounds(filters: &[Expr]) -> Option<(i64, i64)> {
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    let us = |e: &Expr| match e {
        Expr::Literal(ScalarValue::TimestampMicrosecond(Some(v), _), _) => Some(*v),
        _ => None,
    };
    let is_ts = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "timestamp");
    for f in filters {
        let Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr { left, op, right }) = f else {
            continue;
        };
        let (op, v) = match (is_ts(left), us(right), us(left), is_ts(right)) {
            (true, Some(v), _, _) => (*op, v),
            (_, _, Some(v), true) => match op.swap() {
                Some(o) => (o, v),
                None => continue,
            },
            _ => continue,
        };
        match op {
            Operator::Gt | Operator::GtEq => lo = lo.max(v.div_euclid(1000)),
            Operator::Lt | Operator::LtEq => hi = hi.min(v.div_euclid(1000) + 1),
            Operator::Eq => {
                lo = lo.max(v.div_euclid(1000));
                hi = hi.min(v.div_euclid(1000) + 1);
            }
            _ => {}
        }
    }
    (lo != i64::MIN || hi != i64::MAX).then_some((lo, hi))
}

/// The values the first of `filters` (a conjunction) that pins `column` allows:
/// `column = <literal>` or `column IN (<literals>)`, each literal read by `value` (a
/// filter with a literal it does not read pins nothing).
pub(crate) fn pinned_values<T>(
    filters: &[Expr],
    column: &str,
    value: impl Fn(&ScalarValue) -> Option<T>,
) -> Option<Vec<T>> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let literal = |e: &Expr| match e {
        Expr::Literal(v, _) => value(v),
        _ => None,
    };
    filters.iter().find_map(|f| match f {
        Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) if is_column(left) => literal(right).map(|v| vec![v]),
        Expr::InList(l) if !l.negated && is_column(&l.expr) => l.list.iter().map(literal).collect(),
        _ => None,
    })
}

pub(crate) fn scalar_str(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::Dictionary(_, v) => scalar_str(v),
        _ => None,
    }
}

/// Scans a Delta table's provider with the given projection (by our schema's indices) and
/// casts its output to our schema's types, so it can be unioned with head rows. With
/// `pruning`, the filters only prune (see [`prune_only`]).
async fn scan_delta(
    table: &DeltaTable,
    schema: &SchemaRef,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
    pruning: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    table
        .update_datafusion_session(state)
        .map_err(|e| external(e.into()))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| external(e.into()))?;
    let theirs = provider.schema();
    let wanted = columns(schema, projection);
    let their_idx: Vec<usize> = wanted
        .iter()
        .map(|i| theirs.index_of(schema.field(*i).name()))
        .collect::<std::result::Result<_, _>>()?;
    let plan = provider
        .scan(state, Some(&their_idx), filters, limit)
        .await?;
    let plan = cache_page_indexes(plan)?;
    let plan = if pruning { prune_only(plan)? } else { plan };
    cast_to(plan, schema, &wanted)
}

/// The indexes of `schema`'s columns a scan's `projection` reads (all without one).
fn columns(schema: &SchemaRef, projection: Option<&Vec<usize>>) -> Vec<usize> {
    match projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    }
}

/// Projects `plan` (whose columns are `wanted`'s, in order) to our schema's names and
/// types, so that it can be unioned with head rows.
fn cast_to(
    plan: Arc<dyn ExecutionPlan>,
    schema: &SchemaRef,
    wanted: &[usize],
) -> Result<Arc<dyn ExecutionPlan>> {
    let out_schema = plan.schema();
    let same = out_schema.fields().len() == wanted.len()
        && wanted
            .iter()
            .enumerate()
            .all(|(pos, i)| schema.field(*i) == out_schema.field(pos));
    if same {
        return Ok(plan);
    }
    let exprs = wanted
        .iter()
        .enumerate()
        .map(|(pos, i)| {
            let f = schema.field(*i);
            let col: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
                Arc::new(Column::new(out_schema.field(pos).name(), pos));
            let e: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
                if out_schema.field(pos).data_type() == f.data_type() {
                    col
                } else {
                    Arc::new(CastExpr::new(col, f.data_type().clone(), None))
                };
            (e, f.name().clone())
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

/// Makes the Parquet scans under `plan` prune only: row groups and pages are still skipped
/// by the predicate's statistics, but no row filter is evaluated (delta-rs always turns
/// its predicate into Parquet row filters), bloom filters are not read (Strata writes
/// none), and `IN (...)` lists in the predicate are rewritten as balanced `OR`s of
/// equalities, because DataFusion 55's page-index pruning ignores
/// `datafusion.execution.parquet.max_in_list_size` and gives up on lists longer than 20
/// (`PagePruningAccessPlanFilter::new` builds its `PruningPredicate` with the default).
fn prune_only(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    map_parquet_sources(plan, |pq| {
        let mut src = pq
            .clone()
            .with_pushdown_filters(false)
            .with_bloom_filter_on_read(false);
        if let Some(pred) = pq.filter() {
            src = src.with_predicate(in_lists_as_ors(pred)?);
        }
        Ok(Some(src))
    })
}

/// Makes every Parquet scan in `plan` keep page indexes in the session's file metadata
/// cache (see [`PageIndexCaching`]).
fn cache_page_indexes(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    map_parquet_sources(plan, |pq| {
        Ok(pq.parquet_file_reader_factory().map(|inner| {
            pq.clone()
                .with_parquet_file_reader_factory(Arc::new(PageIndexCaching(inner.clone())))
        }))
    })
}

/// Replaces the `ParquetSource` of every Parquet `DataSourceExec` under `plan` with what
/// `f` returns for it (`None` keeps the scan as it is).
fn map_parquet_sources(
    plan: Arc<dyn ExecutionPlan>,
    f: impl Fn(&ParquetSource) -> Result<Option<ParquetSource>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|p| {
        let Some(ds) = p.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(p));
        };
        let Some((conf, pq)) = ds.downcast_to_file_source::<ParquetSource>() else {
            return Ok(Transformed::no(p));
        };
        let Some(src) = f(pq)? else {
            return Ok(Transformed::no(p));
        };
        let conf = FileScanConfigBuilder::from(conf.clone())
            .with_source(Arc::new(src))
            .build();
        let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(conf);
        Ok(Transformed::yes(exec))
    })
    .data()
}

/// A Parquet reader factory whose readers always ask for the page index with the footer.
///
/// DataFusion 55's Parquet opener reads the footer with `PageIndexPolicy::Skip` and, when
/// page pruning needs the page index, loads it straight from the file: the session's file
/// metadata cache (which delta-rs's scan uses through `CachedParquetFileReaderFactory`)
/// then only ever holds footers, and every query read and decoded every page index again
/// (13% of the CPU of an 8-host, 10-metric PromQL query in a `perf` profile). Asking for
/// the page index with the footer makes the cache keep both: the opener finds the page
/// index present and skips its own load (`load_page_index` in
/// `datafusion-datasource-parquet`'s `opener/mod.rs`).
#[derive(Debug)]
pub struct PageIndexCaching(Arc<dyn ParquetFileReaderFactory>);

impl PageIndexCaching {
    /// Wraps `inner`'s readers.
    pub fn new(inner: Arc<dyn ParquetFileReaderFactory>) -> Self {
        PageIndexCaching(inner)
    }
}

impl ParquetFileReaderFactory for PageIndexCaching {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self
            .0
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(WithPageIndex(inner)))
    }
}

/// See [`PageIndexCaching`].
struct WithPageIndex(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<bytes::Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}

/// Rewrites each non-negated `x IN (a, b, ...)` in `e` as `x = a OR x = b OR ...`, the
/// `OR`s as a balanced tree (depth log2 of the list's length).
fn in_lists_as_ors(e: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
    fn ors(x: &Arc<dyn PhysicalExpr>, list: &[Arc<dyn PhysicalExpr>]) -> Arc<dyn PhysicalExpr> {
        if list.len() == 1 {
            return Arc::new(BinaryExpr::new(x.clone(), Operator::Eq, list[0].clone()));
        }
        let (a, b) = list.split_at(list.len() / 2);
        Arc::new(BinaryExpr::new(ors(x, a), Operator::Or, ors(x, b)))
    }
    e.transform_up(|e| match e.downcast_ref::<InListExpr>() {
        Some(l) if !l.negated() && !l.list().is_empty() => {
            Ok(Transformed::yes(ors(l.expr(), l.list())))
        }
        _ => Ok(Transformed::no(e)),
    })
    .data()
}

/// Unions the Delta scan with the head's rows (if any) as an in-memory scan with the same
/// projection.
fn union_with_head(
    delta: Arc<dyn ExecutionPlan>,
    head: Option<datafusion::arrow::record_batch::RecordBatch>,
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    match head {
        Some(batch) => {
            let mem = MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                schema.clone(),
                projection.cloned(),
            )?;
            UnionExec::try_new(vec![delta, mem])
        }
        None => Ok(delta),
    }
}

fn external(e: strata_ingest::IngestError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

/// A table version and its file list (`None`: the table needs delta-rs's reader).
type Listed = (Option<u64>, Option<Arc<files::FileList>>);

/// Which of Strata's two tables a [`HeadDeltaTable`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `samples`: `metric_name, series_id, timestamp (µs, UTC), value, date, metric_family`.
    Samples,
    /// `series`: `series_id, metric_name, labels (map), metric_family`.
    Series,
}

/// A Delta table and the head's rows for it, scanned together from one consistent
/// [`Source`] view. Filters are pushed to the Delta scan for partition, row-group and page
/// pruning (Inexact: DataFusion re-applies them); on `samples`, a `metric_name = '...'` or
/// `IN (...)` filter, and a `series_id = n` or `IN (...)` filter, also limit which head
/// series are copied (a series id is looked up by fingerprint, not searched for).
///
/// The pruning variant ([`HeadDeltaTable::pruning_samples`]) is not exact and does not
/// claim to be: it prunes with the filters but evaluates them on no row, so rows of other
/// series and samples outside the filter's time range can come out of pages and head
/// that the filter keeps. It is not in the SQL catalog; PromQL reads through it (its
/// operators drop series they did not select and bound their windows by time).
#[derive(Debug)]
pub struct HeadDeltaTable {
    source: Arc<dyn Source>,
    schema: SchemaRef,
    kind: Kind,
    pruning: bool,
    /// `schema` without the table's partition columns: the columns of its Parquet files.
    file_schema: SchemaRef,
    /// The pruning variant's file list of the last version it scanned (`None` inside: the
    /// table needs delta-rs's reader, see [`files::FileList::load`]).
    files: parking_lot::Mutex<Option<Listed>>,
    /// The series runs of the pruning variant's files (see [`crate::runs`]).
    runs: Arc<RunsCache>,
    /// The pruning variant's files in memory (see [`crate::file_cache`]).
    file_cache: Arc<FileCache>,
    /// The pruning variant's decoded series runs (see [`crate::sample_cache`]).
    sample_cache: Arc<SampleCache>,
}

impl HeadDeltaTable {
    /// A provider over `source`; the schema is the Delta table's.
    ///
    /// # Errors
    /// Delta errors reading the table's schema.
    pub fn new(source: Arc<dyn Source>, kind: Kind) -> Result<HeadDeltaTable> {
        let table = match kind {
            Kind::Samples => source.samples(Some(&HashSet::new())).0,
            Kind::Series => source.series().0,
        };
        let snapshot = table.snapshot().map_err(|e| external(e.into()))?;
        let schema = snapshot.snapshot().arrow_schema();
        let partitions = snapshot.metadata().partition_columns();
        let file_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .filter(|f| !partitions.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        ));
        Ok(HeadDeltaTable {
            source,
            schema,
            kind,
            pruning: false,
            file_schema,
            files: Default::default(),
            runs: Default::default(),
            // Only the pruning variant reads through the cache (SQL scans go through
            // delta-rs).
            file_cache: Arc::new(FileCache::new(0)),
            sample_cache: Arc::new(SampleCache::new(0)),
        })
    }

    /// The `samples` table whose filters only prune (see the type's doc). Filters are
    /// reported `Exact` to DataFusion so that no `FilterExec` re-applies them: give it only
    /// to consumers that drop rows of unselected series and bound time themselves. Its
    /// scans keep up to `caches.file_bytes` bytes of files ([`crate::file_cache`]) and
    /// `caches.sample_bytes` bytes of decoded samples ([`crate::sample_cache`]) in memory.
    ///
    /// # Errors
    /// Delta errors reading the table's schema.
    pub fn pruning_samples(
        source: Arc<dyn Source>,
        caches: crate::CacheSizes,
    ) -> Result<HeadDeltaTable> {
        Ok(HeadDeltaTable {
            pruning: true,
            file_cache: Arc::new(FileCache::new(caches.file_bytes)),
            sample_cache: Arc::new(SampleCache::new(caches.sample_bytes)),
            ..HeadDeltaTable::new(source, Kind::Samples)?
        })
    }

    /// The file list of `table`'s version, listed again only when the version changed.
    fn file_list(&self, table: &DeltaTable) -> Result<Option<Arc<files::FileList>>> {
        let version = table.version();
        let mut cached = self.files.lock();
        if let Some((v, list)) = cached.as_ref()
            && *v == version
        {
            return Ok(list.clone());
        }
        let list = files::FileList::load(table, &self.file_schema)
            .map_err(|e| external(e.into()))?
            .map(Arc::new);
        if let Some(list) = &list {
            let paths = list.paths();
            self.runs.retain(&paths);
            self.file_cache.retain(&paths);
            self.sample_cache.retain(&paths);
        }
        *cached = Some((version, list.clone()));
        Ok(list)
    }

    /// The pruning variant's scan of the Delta table through its [`files::FileList`];
    /// `None` when the table or the scan needs delta-rs's reader (a partition column
    /// read or filtered, or a table [`files::FileList::load`] does not list).
    async fn scan_files(
        &self,
        table: &DeltaTable,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let wanted = columns(&self.schema, projection);
        if !files::reads_only(&self.schema, &self.file_schema, &wanted, filters) {
            return Ok(None);
        }
        let Some(list) = self.file_list(table)? else {
            return Ok(None);
        };
        let file_projection = wanted
            .iter()
            .map(|i| self.file_schema.index_of(self.schema.field(*i).name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let plan = files::scan(
            &list,
            table,
            &self.file_schema,
            state,
            file_projection,
            filters,
            limit,
            &self.runs,
            &self.file_cache,
            &self.sample_cache,
        )
        .await?;
        let plan = prune_only(plan)?;
        Ok(Some(cast_to(plan, &self.schema, &wanted)?))
    }
}

/// The session config extension holding [`HeadDeltaTable::pruning_samples`], for PromQL's
/// plans (`SessionConfig::get_extension::<PruningSamples>()`).
#[derive(Debug, Clone)]
pub struct PruningSamples(pub Arc<HeadDeltaTable>);

#[async_trait]
impl TableProvider for HeadDeltaTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let how = if self.pruning {
            TableProviderFilterPushDown::Exact
        } else {
            TableProviderFilterPushDown::Inexact
        };
        Ok(vec![how; filters.len()])
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (table, head) = match self.kind {
            Kind::Samples => {
                let names = metric_names(filters);
                let ids = series_ids(filters);
                let (lo, hi) = time_bounds(filters).unwrap_or((i64::MIN, i64::MAX));
                let (table, head) = self
                    .source
                    .samples_of(names.as_ref(), ids.as_deref(), lo, hi);
                let batch = (!head.is_empty())
                    .then(|| storage::samples_batch(&self.schema, &head.iter().collect::<Vec<_>>()))
                    .transpose()
                    .map_err(external)?;
                (table, batch)
            }
            Kind::Series => {
                let (table, head) = self.source.series();
                let batch = (!head.is_empty())
                    .then(|| storage::series_batch(&self.schema, &head))
                    .transpose()
                    .map_err(external)?;
                (table, batch)
            }
        };
        let fast = if self.pruning && self.kind == Kind::Samples {
            self.scan_files(&table, state, projection, filters, limit)
                .await?
        } else {
            None
        };
        if let Some(delta) = fast {
            return union_with_head(delta, head, &self.schema, projection);
        }
        let delta = scan_delta(
            &table,
            &self.schema,
            state,
            projection,
            filters,
            limit,
            self.pruning,
        )
        .await?;
        union_with_head(delta, head, &self.schema, projection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_read_timestamp_comparisons_either_way_round() {
        use datafusion::prelude::{col, lit};
        let ts = |us: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(us),
                Some("UTC".into()),
            ))
        };
        // (1 s, 2 s]: from 1,000 ms (widened) to 2,001 ms.
        let f = [
            col("timestamp").gt(ts(1_000_000)),
            col("timestamp").lt_eq(ts(2_000_000)),
        ];
        assert_eq!(time_bounds(&f), Some((1_000, 2_001)));
        // The literal on the left: 5 s < timestamp.
        let f = [ts(5_000_000).lt(col("timestamp"))];
        assert_eq!(time_bounds(&f), Some((5_000, i64::MAX)));
        // Another column, or no literal: no bound.
        assert_eq!(time_bounds(&[col("value").gt(lit(1.0))]), None);
        assert_eq!(time_bounds(&[col("timestamp").gt(col("timestamp"))]), None);
    }
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
    use datafusion::object_store::local::LocalFileSystem;
    use datafusion::object_store::path::Path;
    use datafusion::object_store::{ObjectStore, ObjectStoreExt};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn page_index_is_cached_with_the_footer() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..10_000))],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(1000)
            .build();
        let file = std::fs::File::create(dir.path().join("f.parquet")).unwrap();
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let meta = store.head(&Path::from("f.parquet")).await.unwrap();
        let ctx = SessionContext::new();
        let cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        let inner: Arc<dyn ParquetFileReaderFactory> =
            Arc::new(CachedParquetFileReaderFactory::new(store, cache));
        let metrics = ExecutionPlanMetricsSet::new();
        let footer_only = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
        let read = |f: &dyn ParquetFileReaderFactory| {
            f.create_reader(
                0,
                PartitionedFile::new_from_meta(meta.clone()),
                None,
                &metrics,
            )
            .unwrap()
        };
        // DataFusion's opener asks for the footer only; the cache then holds no page index.
        let m = read(inner.as_ref())
            .get_metadata(Some(&footer_only))
            .await
            .unwrap();
        assert!(m.offset_index().is_none() && m.column_index().is_none());
        // Through PageIndexCaching the same request gets the page index (10 pages) ...
        let m = read(&PageIndexCaching(inner.clone()))
            .get_metadata(Some(&footer_only))
            .await
            .unwrap();
        assert_eq!(m.offset_index().unwrap()[0][0].page_locations().len(), 10);
        assert!(m.column_index().is_some());
        // ... and the cache keeps it for every later reader of the file.
        let m = read(inner.as_ref())
            .get_metadata(Some(&footer_only))
            .await
            .unwrap();
        assert!(m.offset_index().is_some());
    }
}
