//! The table providers: each scan unions the Delta table's scan with the head's rows, taken
//! together from one consistent [`Source`] view.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use deltalake::DeltaTable;
use strata_ingest::storage;

use crate::source::Source;

/// Metric names a filter list pins the scan to (`metric_name = 'x'` or
/// `metric_name IN ('x', 'y')`), used to copy only those series out of the head.
fn metric_names(filters: &[Expr]) -> Option<HashSet<String>> {
    for f in filters {
        match f {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                if let (Expr::Column(c), Expr::Literal(v, _)) = (left.as_ref(), right.as_ref())
                    && c.name == "metric_name"
                    && let Some(s) = scalar_str(v)
                {
                    return Some(HashSet::from([s]));
                }
            }
            Expr::InList(l) if !l.negated => {
                if let Expr::Column(c) = l.expr.as_ref()
                    && c.name == "metric_name"
                {
                    let names: Option<HashSet<String>> = l
                        .list
                        .iter()
                        .map(|e| match e {
                            Expr::Literal(v, _) => scalar_str(v),
                            _ => None,
                        })
                        .collect();
                    if names.is_some() {
                        return names;
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn scalar_str(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::Dictionary(_, v) => scalar_str(v),
        _ => None,
    }
}

/// Scans a Delta table's provider with the given projection (by our schema's indices) and
/// casts its output to our schema's types, so it can be unioned with head rows.
async fn scan_delta(
    table: &DeltaTable,
    schema: &SchemaRef,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    table
        .update_datafusion_session(state)
        .map_err(|e| external(e.into()))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| external(e.into()))?;
    let theirs = provider.schema();
    let wanted: Vec<usize> = match projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    let their_idx: Vec<usize> = wanted
        .iter()
        .map(|i| theirs.index_of(schema.field(*i).name()))
        .collect::<std::result::Result<_, _>>()?;
    let plan = provider
        .scan(state, Some(&their_idx), filters, limit)
        .await?;
    let out_schema = plan.schema();
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

/// Which of Strata's two tables a [`HeadDeltaTable`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `samples`: `metric_name, series_id, timestamp (µs, UTC), value, date, metric_family`.
    Samples,
    /// `series`: `series_id, metric_name, labels (map), metric_family`.
    Series,
}

/// A Delta table and the head's rows for it, scanned together from one consistent
/// [`Source`] view. Filters are pushed to the Delta scan for partition and row-group
/// pruning (Inexact: DataFusion re-applies them); on `samples`, a `metric_name = '...'` or
/// `IN (...)` filter also limits which head series are copied.
#[derive(Debug)]
pub struct HeadDeltaTable {
    source: Arc<dyn Source>,
    schema: SchemaRef,
    kind: Kind,
}

impl HeadDeltaTable {
    /// A provider over `source`; the schema is the Delta table's.
    ///
    /// # Errors
    /// Delta errors reading the table's schema.
    pub fn new(source: Arc<dyn Source>, kind: Kind) -> Result<HeadDeltaTable> {
        let table = match kind {
            Kind::Samples => source.samples(&|_| false).0,
            Kind::Series => source.series().0,
        };
        let schema = table
            .snapshot()
            .map_err(|e| external(e.into()))?
            .snapshot()
            .arrow_schema();
        Ok(HeadDeltaTable {
            source,
            schema,
            kind,
        })
    }
}

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
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
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
                let (table, head) = self.source.samples(&|m| {
                    names
                        .as_ref()
                        .is_none_or(|n| n.contains(m.labels.metric_name()))
                });
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
        let delta = scan_delta(&table, &self.schema, state, projection, filters, limit).await?;
        union_with_head(delta, head, &self.schema, projection)
    }
}
