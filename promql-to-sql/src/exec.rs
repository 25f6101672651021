//! PromQL's own plan node: the operators SQL has no word for.
//!
//! [`PromNode`] is a DataFusion extension node (logical) and [`PromExec`] its physical
//! operator. Both carry a [`PromOp`]:
//!
//! - [`PromOp::InstantSelect`]: step alignment with the lookback delta and staleness
//!   markers — for each output step `t`, each series' latest sample in the left-open
//!   window `(t - offset - lookback, t - offset]`, dropped when it is a staleness marker
//!   (Prometheus `engine.go`, `vectorSelectorSingle`).
//! - [`PromOp::RangeFunc`]: range windows — for each step, each series' samples in
//!   `(t - offset - range, t - offset]` (markers removed) reduced by a range function
//!   ([`crate::kernels::eval_range`]; Prometheus `functions.go`).
//! - [`PromOp::CheckUnique`]: Prometheus's matching errors (one row per key and step).
//!
//! Every relation in a PromQL plan has the columns `labels` (`Binary`, see
//! [`crate::labels`]), `ts` (`Int64`, ms since the epoch, UTC) and `value` (`Float64`);
//! `PromNode` consumes and produces that shape. The operator reads all its input's
//! partitions itself (each on its own task, with no per-batch merging channel), groups the
//! rows by series, and emits one partition.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, AsArray, BinaryBuilder, Float64Array, Float64Builder, Int64Array, Int64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::{PhysicalOptimizerContext, PhysicalOptimizerRule};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

use crate::kernels::{self, RangeFn};

/// The staleness marker's bits (Prometheus `value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a staleness marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The evaluation steps of a query: `start..=end` every `step` ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Steps {
    /// First step, ms.
    pub start: i64,
    /// Last step (inclusive), ms.
    pub end: i64,
    /// Interval, ms (> 0).
    pub step: i64,
}

impl Steps {
    /// The step timestamps.
    pub fn iter(&self) -> impl Iterator<Item = i64> + use<> {
        let Steps { start, end, step } = *self;
        (0..)
            .map(move |i| start + i * step)
            .take_while(move |t| *t <= end)
    }
}

/// When a selector is evaluated relative to the step timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct At {
    /// `offset` in ms (negative for `offset -5m`).
    pub offset: i64,
    /// `@` timestamp in ms, when fixed.
    pub at: Option<i64>,
}

impl At {
    /// The time a step `t` reads data at.
    pub fn eval_time(&self, t: i64) -> i64 {
        self.at.unwrap_or(t) - self.offset
    }
}

/// The label sets of a selector's series by `series_id`, for a [`PromNode`] whose input is
/// keyed by `series_id` instead of labels (rows of other series are dropped). Labels are
/// attached once per series after grouping, not carried by every sample row.
#[derive(Clone)]
pub struct SeriesMap {
    map: Arc<rustc_hash::FxHashMap<i64, Vec<u8>>>,
    /// Order-independent digest of the ids, so that plans over different series differ.
    digest: u64,
}

impl SeriesMap {
    /// A map from `(series_id, encoded labels)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (i64, Vec<u8>)>) -> SeriesMap {
        let map: rustc_hash::FxHashMap<i64, Vec<u8>> = pairs.into_iter().collect();
        let digest = map.keys().fold(map.len() as u64, |d, k| {
            d.wrapping_add((*k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        });
        SeriesMap {
            map: Arc::new(map),
            digest,
        }
    }
    /// The encoded labels of series `id`.
    pub fn get(&self, id: i64) -> Option<&Vec<u8>> {
        self.map.get(&id)
    }

    /// The same series, each with the empty label set: for an operator whose output's
    /// labels nothing reads (`sum(rate(x[5m]))`), so that it copies no label bytes per
    /// output row.
    pub fn without_labels(&self) -> SeriesMap {
        SeriesMap {
            map: Arc::new(self.map.keys().map(|k| (*k, vec![])).collect()),
            digest: !self.digest,
        }
    }
}

impl PromOp {
    /// This operator with empty output label sets, when it takes its labels from a
    /// [`SeriesMap`] (see [`SeriesMap::without_labels`]); `None` otherwise.
    pub fn without_labels(&self) -> Option<PromOp> {
        let mut op = self.clone();
        match &mut op {
            PromOp::InstantSelect { series, .. } | PromOp::RangeFunc { series, .. } => {
                *series = Some(series.as_ref()?.without_labels());
                Some(op)
            }
            PromOp::CheckUnique { .. } => None,
        }
    }
}

impl fmt::Debug for SeriesMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} series (digest {:x})", self.map.len(), self.digest)
    }
}

/// The operation of a [`PromNode`].
#[derive(Debug, Clone)]
pub enum PromOp {
    /// Instant vector selection (see the module doc).
    InstantSelect {
        /// Output steps.
        steps: Steps,
        /// Lookback delta, ms.
        lookback: i64,
        /// Offset and `@`.
        at: At,
        /// Output the selected sample's timestamp in seconds instead of its value
        /// (`timestamp(v)`).
        sample_ts: bool,
        /// With `Some`, the input is `(series_id, ts, value)` and labels come from here.
        series: Option<SeriesMap>,
    },
    /// Range function over range windows (see the module doc).
    RangeFunc {
        /// The function.
        func: RangeFn,
        /// Output steps.
        steps: Steps,
        /// Window length, ms.
        range: i64,
        /// Offset and `@`.
        at: At,
        /// Scalar arguments (e.g. `quantile_over_time`'s φ).
        params: Vec<f64>,
        /// Scalar arguments that vary by step: `(index into params, value at each step)`,
        /// in place of `params[index]` (`quantile_over_time(scalar(x), v[r])`).
        step_params: Vec<(usize, Vec<f64>)>,
        /// With `Some`, the input is `(series_id, ts, value)` and labels come from here.
        series: Option<SeriesMap>,
        /// With `Some`, the range is a subquery over a selector (`sel[range:step]`, perhaps
        /// relabelled): each series' raw samples are first selected at the subquery's inner
        /// steps, as [`PromOp::InstantSelect`] does, and the windows run over those points.
        inner: Option<InnerSelect>,
    },
    /// Fails with `message` (with the duplicate's labels appended) when two rows share
    /// the column `key` and `ts`.
    CheckUnique {
        /// Key column (`Binary`).
        key: String,
        /// Timestamp column.
        ts: String,
        /// A `Binary` label column whose two duplicate values replace `{dups}` in the
        /// message.
        show: Option<String>,
        /// Error message.
        message: String,
    },
}

/// The instant selection a fused subquery runs per series before its range function
/// (`PromOp::RangeFunc::inner`): the points at `steps` are each step's latest sample in
/// `(at.eval_time(t) - lookback, at.eval_time(t)]`, staleness markers dropped, stamped `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InnerSelect {
    /// The subquery's inner steps, ms.
    pub steps: Steps,
    /// Lookback delta, ms.
    pub lookback: i64,
    /// The inner selector's offset and `@`.
    pub at: At,
}

/// The logical extension node.
#[derive(Debug, Clone)]
pub struct PromNode {
    /// What it does.
    pub op: PromOp,
    /// Its input (columns `labels`, `ts`, `value`, maybe more for `CheckUnique`).
    pub input: LogicalPlan,
    schema: DFSchemaRef,
}

/// The schema every PromQL relation has: `labels`, `ts`, `value`.
pub fn prom_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("labels", DataType::Binary, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Float64, true),
    ]))
}

impl PromNode {
    /// A node applying `op` to `input`.
    ///
    /// # Errors
    /// When the schema cannot be built.
    pub fn new(op: PromOp, input: LogicalPlan) -> Result<PromNode> {
        let schema = match op {
            PromOp::CheckUnique { .. } => input.schema().clone(),
            _ => Arc::new(DFSchema::try_from(prom_schema().as_ref().clone())?),
        };
        Ok(PromNode { op, input, schema })
    }

    /// Wraps it as a logical plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(datafusion::logical_expr::Extension {
            node: Arc::new(self),
        })
    }
}

impl PartialEq for PromNode {
    fn eq(&self, o: &Self) -> bool {
        format!("{:?}", self.op) == format!("{:?}", o.op) && self.input == o.input
    }
}
impl Eq for PromNode {}
impl Hash for PromNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        format!("{:?}", self.op).hash(state);
        self.input.hash(state);
    }
}
impl PartialOrd for PromNode {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        self.input.partial_cmp(&o.input)
    }
}

impl UserDefinedLogicalNodeCore for PromNode {
    fn name(&self) -> &str {
        match self.op {
            PromOp::InstantSelect { .. } => "PromInstantSelect",
            PromOp::RangeFunc { .. } => "PromRangeFunc",
            PromOp::CheckUnique { .. } => "PromCheckUnique",
        }
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt_op(&self.op, f)
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        PromNode::new(self.op.clone(), inputs.swap_remove(0))
    }
    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // All input columns are needed.
        Some(vec![(0..self.input.schema().fields().len()).collect()])
    }
}

fn fmt_op(op: &PromOp, f: &mut fmt::Formatter) -> fmt::Result {
    match op {
        PromOp::InstantSelect {
            steps,
            lookback,
            at,
            sample_ts,
            ..
        } => write!(
            f,
            "PromInstantSelect: steps=[{}..{} every {}ms], lookback={}ms, offset={}ms, at={:?}{}",
            steps.start,
            steps.end,
            steps.step,
            lookback,
            at.offset,
            at.at,
            if *sample_ts { ", timestamp()" } else { "" }
        ),
        PromOp::RangeFunc {
            func,
            steps,
            range,
            at,
            params,
            inner,
            ..
        } => {
            write!(
                f,
                "PromRangeFunc: {}({}ms) steps=[{}..{} every {}ms], offset={}ms, at={:?}, params={params:?}",
                func.name(),
                range,
                steps.start,
                steps.end,
                steps.step,
                at.offset,
                at.at
            )?;
            if let Some(i) = inner {
                write!(
                    f,
                    ", over instant selection at [{}..{} every {}ms], lookback={}ms, offset={}ms, at={:?}",
                    i.steps.start, i.steps.end, i.steps.step, i.lookback, i.at.offset, i.at.at
                )?;
            }
            Ok(())
        }
        PromOp::CheckUnique {
            key, ts, message, ..
        } => write!(f, "PromCheckUnique: key=({key}, {ts}) ({message})"),
    }
}

/// The physical operator of a [`PromNode`].
#[derive(Debug)]
pub struct PromExec {
    op: PromOp,
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl PromExec {
    fn new(op: PromOp, input: Arc<dyn ExecutionPlan>, schema: SchemaRef) -> Self {
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        PromExec {
            op,
            input,
            schema,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for PromExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        fmt_op(&self.op, f)
    }
}

impl ExecutionPlan for PromExec {
    fn name(&self) -> &str {
        "PromExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn required_input_distribution(&self) -> Vec<Distribution> {
        // Any: `execute` reads every input partition itself.
        vec![Distribution::UnspecifiedDistribution]
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
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
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(PromExec::new(
            self.op.clone(),
            children.swap_remove(0),
            self.schema.clone(),
        )))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "PromExec has one partition, not {}",
                partition + 1
            )));
        }
        let threads = context.session_config().target_partitions();
        let input = self.input.clone();
        let op = self.op.clone();
        let schema = self.schema.clone();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let fut = async move {
            // Every input partition, collected on a task of its own, as
            // CoalescePartitionsExec would run them but without its channel: a scan of
            // cached series runs sends a batch per run, thousands, and each send woke the
            // receiving task.
            let batches: Vec<RecordBatch> =
                datafusion::physical_plan::collect_partitioned(input, context)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect();
            let timer = baseline.elapsed_compute().timer();
            let out = run_parallel(&op, &schema, &batches, threads)?;
            timer.done();
            baseline.record_output(out.iter().map(|b| b.num_rows()).sum());
            Ok(out)
        };
        let stream = futures::stream::once(fut).flat_map(|r: Result<Vec<RecordBatch>>| {
            let items: Vec<Result<RecordBatch>> = match r {
                Ok(b) => b.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// A per-series operator's input batch's timestamps (column 1: Int64, or a scan's
/// microsecond timestamps as they are stored, read without a cast) and values (column 2).
fn ts_value(b: &RecordBatch) -> Result<(&[i64], &Float64Array)> {
    let c = b.column(1);
    let ts: &[i64] = match (
        c.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>(),
        c.as_primitive_opt::<datafusion::arrow::datatypes::TimestampMicrosecondType>(),
    ) {
        (Some(a), _) => a.values(),
        (_, Some(a)) => a.values(),
        _ => {
            return Err(DataFusionError::Internal(format!(
                "ts is {}, not Int64 or a timestamp in µs",
                c.data_type()
            )));
        }
    };
    let vs = b
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| DataFusionError::Internal("value is not Float64".into()))?;
    Ok((ts, vs))
}

/// Rows of one series: `(ts ms, value)`.
type SeriesRows = Vec<(i64, f64)>;

/// A run of one series' rows in one input batch: `(batch, first row, end row)`.
type Chunk = (usize, usize, usize);

/// The operator's input indexed by series, without copying a row: each series' labels and
/// the runs of its rows in input order. Files and the head give a series' samples in time
/// order, one run per file (or per batch), so a series' rows are its runs in the order
/// of their first timestamps unless runs overlap.
struct Grouped<'a> {
    /// `(labels, runs)`, sorted by labels.
    series: Vec<(&'a [u8], Vec<Chunk>)>,
    /// Each batch's timestamps and values.
    cols: Vec<(&'a [i64], &'a Float64Array)>,
    /// Divisor from the input's timestamps to ms: 1000 for `series_id` input (µs, as the
    /// scan gives them), 1 for `labels` input (ms).
    ts_div: i64,
}

/// Groups `labels, ts, value` rows by label set (or, with `series`, `series_id, ts,
/// value` rows by series, dropping series not in the map).
fn group<'a>(batches: &'a [RecordBatch], series: Option<&'a SeriesMap>) -> Result<Grouped<'a>> {
    let mut cols = Vec::with_capacity(batches.len());
    for b in batches {
        let (ts, vs) = ts_value(b)?;
        cols.push((ts, vs));
    }
    let mut out: Vec<(&'a [u8], Vec<Chunk>)> = vec![];
    match series {
        Some(m) => {
            // One lookup per run; runs of series not in the map (the scan only prunes)
            // are skipped.
            let mut idx: rustc_hash::FxHashMap<i64, usize> = Default::default();
            for (bi, b) in batches.iter().enumerate() {
                let ids = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| DataFusionError::Internal("series_id is not Int64".into()))?
                    .values();
                let mut start = 0;
                while start < ids.len() {
                    let id = ids[start];
                    let rest = &ids[start..];
                    // A batch of one series (a cached run's) is common: one check of all
                    // its ids, which vectorizes, instead of a search for the run's end.
                    let one =
                        rest[rest.len() - 1] == id && rest.iter().fold(true, |a, x| a & (*x == id));
                    let end = start
                        + if one {
                            rest.len()
                        } else {
                            rest.iter().take_while(|x| **x == id).count()
                        };
                    if let Some(l) = m.get(id) {
                        let k = *idx.entry(id).or_insert_with(|| {
                            out.push((l.as_slice(), vec![]));
                            out.len() - 1
                        });
                        out[k].1.push((bi, start, end));
                    }
                    start = end;
                }
            }
        }
        None => {
            let mut idx: rustc_hash::FxHashMap<&'a [u8], usize> = Default::default();
            for (bi, b) in batches.iter().enumerate() {
                let labels = b.column(0).as_binary::<i32>();
                let mut start = 0;
                while start < labels.len() {
                    let l = labels.value(start);
                    let mut end = start + 1;
                    while end < labels.len() && labels.value(end) == l {
                        end += 1;
                    }
                    let k = *idx.entry(l).or_insert_with(|| {
                        out.push((l, vec![]));
                        out.len() - 1
                    });
                    out[k].1.push((bi, start, end));
                    start = end;
                }
            }
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(b.0));
    Ok(Grouped {
        series: out,
        cols,
        ts_div: if series.is_some() { 1000 } else { 1 },
    })
}

impl Grouped<'_> {
    /// Number of input rows of series `k`.
    fn rows(&self, k: usize) -> usize {
        self.series[k].1.iter().map(|c| c.2 - c.1).sum()
    }

    /// Fills `buf` with series `k`'s rows (timestamps in ms), sorted by time, null values
    /// dropped, duplicate timestamps collapsed to the last row in input order; `order` is
    /// scratch space.
    fn fill(&self, k: usize, buf: &mut SeriesRows, order: &mut Vec<(i64, Chunk)>) {
        let chunks = &self.series[k].1;
        // By first timestamp, each looked up once.
        order.clear();
        order.extend(chunks.iter().map(|c| (self.cols[c.0].0[c.1], *c)));
        order.sort_unstable_by_key(|(t, c)| (*t, c.0, c.1));
        buf.clear();
        if self.copy(order.iter().map(|(_, c)| c), buf) {
            return;
        }
        // Runs overlap (or repeat a timestamp): input order, a stable sort, and the last
        // of equal timestamps kept.
        buf.clear();
        self.copy(chunks.iter(), buf);
        buf.sort_by_key(|r| r.0);
        buf.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                *earlier = *later;
                true
            } else {
                false
            }
        });
    }

    /// Appends the rows of `chunks` to `buf` (null values dropped); whether their
    /// timestamps strictly increase.
    fn copy<'c>(&self, chunks: impl Iterator<Item = &'c Chunk>, buf: &mut SeriesRows) -> bool {
        let mut strict = true;
        let mut last = i64::MIN;
        for &(b, start, end) in chunks {
            let (ts, vs) = self.cols[b];
            let (ts, values) = (&ts[start..end], &vs.values()[start..end]);
            let from = buf.len();
            // A division by a constant compiles to a multiplication; by a variable it
            // is the most expensive step of the copy.
            match (self.ts_div, vs.null_count()) {
                (1000, 0) => buf.extend(ts.iter().zip(values).map(|(t, v)| (t / 1000, *v))),
                (1, 0) => buf.extend(ts.iter().copied().zip(values.iter().copied())),
                (div, _) => buf.extend(
                    (start..end)
                        .filter(|i| !vs.is_null(*i))
                        .map(|i| (ts[i - start] / div, values[i - start])),
                ),
            }
            for r in &buf[from..] {
                strict &= r.0 > last;
                last = r.0;
            }
        }
        strict
    }
}

/// Output rows, cut into batches of at most [`BATCH_ROWS`] rows (a `Binary` column's
/// 32-bit offsets overflow past 2 GiB of label bytes).
struct Out {
    labels: BinaryBuilder,
    ts: Int64Builder,
    value: Float64Builder,
    rows: usize,
    done: Vec<RecordBatch>,
    schema: SchemaRef,
    /// Rows and label bytes still expected after the current batch's builders.
    hint: (usize, usize),
}

const BATCH_ROWS: usize = 1 << 16;

impl Out {
    fn new(schema: &SchemaRef) -> Self {
        Out {
            labels: BinaryBuilder::new(),
            ts: Int64Builder::new(),
            value: Float64Builder::new(),
            rows: 0,
            done: vec![],
            schema: schema.clone(),
            hint: (0, 0),
        }
    }
    /// An output expected to get about `rows` rows of `label_bytes` label bytes in all:
    /// each batch's builders are made that large at once (up to a batch), so that they do
    /// not grow (and copy their data) as rows are pushed.
    fn with_hint(schema: &SchemaRef, rows: usize, label_bytes: usize) -> Self {
        let mut out = Out::new(schema);
        out.hint = (rows, label_bytes);
        out.size_builders();
        out
    }
    fn size_builders(&mut self) {
        let (rows, bytes) = self.hint;
        if rows == 0 {
            return;
        }
        let batch = rows.min(BATCH_ROWS);
        // At most 8 MiB of labels at once: a sparse series' steps may come out empty.
        let batch_bytes = (bytes / rows).saturating_mul(batch).min(8 << 20);
        self.labels = BinaryBuilder::with_capacity(batch, batch_bytes);
        self.ts = Int64Builder::with_capacity(batch);
        self.value = Float64Builder::with_capacity(batch);
        self.hint = (rows - batch, bytes.saturating_sub(batch_bytes));
    }
    fn push(&mut self, l: &[u8], t: i64, v: f64) -> Result<()> {
        self.labels.append_value(l);
        self.ts.append_value(t);
        self.value.append_value(v);
        self.rows += 1;
        if self.rows == BATCH_ROWS {
            self.cut()?;
        }
        Ok(())
    }
    fn cut(&mut self) -> Result<()> {
        self.done.push(RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(self.labels.finish()),
                Arc::new(self.ts.finish()),
                Arc::new(self.value.finish()),
            ],
        )?);
        self.rows = 0;
        self.size_builders();
        Ok(())
    }
    fn finish(mut self) -> Result<Vec<RecordBatch>> {
        if self.rows > 0 || self.done.is_empty() {
            self.cut()?;
        }
        Ok(self.done)
    }
}

/// One series' instant selection: for each step `t`, `(t, (sample ts, value))` of its
/// latest sample in `(e - lookback, e]` (`e = at.eval_time(t)`) unless that sample is a
/// staleness marker (Prometheus `engine.go`, `vectorSelectorSingle`). `rows` are sorted by
/// time.
fn select_at_steps(
    rows: &[(i64, f64)],
    steps: Steps,
    lookback: i64,
    at: At,
) -> impl Iterator<Item = (i64, (i64, f64))> + '_ {
    // Evaluation times never decrease along the steps, so one cursor walks the rows.
    let mut end = 0;
    steps.iter().filter_map(move |t| {
        let e = at.eval_time(t);
        while end < rows.len() && rows[end].0 <= e {
            end += 1;
        }
        let (st, sv) = *rows.get(end.checked_sub(1)?)?;
        (st > e - lookback && !is_stale(sv)).then_some((t, (st, sv)))
    })
}

/// A position in one series' rows (sorted by time) for times that mostly increase, as a
/// range function's window edges do from step to step.
struct Cursor {
    /// The last answer and the time it was for.
    at: usize,
    t: i64,
}

impl Cursor {
    fn new() -> Cursor {
        Cursor { at: 0, t: i64::MIN }
    }

    /// The number of rows at or before `t` (`rows.partition_point(|r| r.0 <= t)`). From
    /// the last answer when `t` did not decrease, by galloping (exponential) search:
    /// O(log d) for a move of d rows, where a binary search over the whole series took
    /// a cache miss per halving (6% of the CPU of the bench's 8-series, 12-hour query).
    fn after(&mut self, rows: &[(i64, f64)], t: i64) -> usize {
        let le = |r: &(i64, f64)| r.0 <= t;
        let at = if t < self.t {
            rows.partition_point(le)
        } else {
            // rows[..known] are at or before the last time, so at or before `t`; probes
            // go 1, 2, 4, ... rows past the last row known to be, until one is after `t`
            // (or past the end): the answer is between.
            let mut known = self.at;
            let mut stride = 1;
            let end = loop {
                let probe = known + stride - 1;
                if probe >= rows.len() {
                    break rows.len();
                }
                if !le(&rows[probe]) {
                    break probe;
                }
                known = probe + 1;
                stride *= 2;
            };
            known + rows[known..end].partition_point(le)
        };
        *self = Cursor { at, t };
        at
    }
}

/// Input rows from which a per-series operator is split over threads: below it, spawning
/// threads costs more than it saves.
const PARALLEL_MIN_ROWS: usize = 200_000;

/// Runs `op` over `batches`. A per-series operator ([`PromOp::InstantSelect`],
/// [`PromOp::RangeFunc`]) over a large input runs on up to `threads` threads, each taking
/// a contiguous share (by rows) of the series in label order. The operator runs after its
/// input is complete, so the scan's threads are idle by then. Output is in label order.
fn run_parallel(
    op: &PromOp,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    threads: usize,
) -> Result<Vec<RecordBatch>> {
    let series = match op {
        PromOp::InstantSelect { series, .. } | PromOp::RangeFunc { series, .. } => series,
        PromOp::CheckUnique { .. } => return run(op, schema, batches),
    };
    let g = group(batches, series.as_ref())?;
    let n = g.series.len();
    let rows: usize = (0..n).map(|k| g.rows(k)).sum();
    let threads = threads.min(n);
    if threads < 2 || rows < PARALLEL_MIN_ROWS {
        return run_series(op, schema, &g, 0..n);
    }
    // Contiguous shares of about `rows / threads` rows each.
    let mut bounds = vec![0];
    let mut acc = 0;
    for k in 0..n {
        acc += g.rows(k);
        if bounds.len() < threads && acc * threads >= rows * bounds.len() {
            bounds.push(k + 1);
        }
    }
    bounds.push(n);
    bounds.dedup();
    let outs: Vec<Result<Vec<RecordBatch>>> = std::thread::scope(|s| {
        let g = &g;
        let spawned: Vec<_> = bounds[1..]
            .windows(2)
            .map(|w| {
                let r = w[0]..w[1];
                s.spawn(move || run_series(op, schema, g, r))
            })
            .collect();
        let mut outs = vec![run_series(op, schema, g, bounds[0]..bounds[1])];
        for h in spawned {
            outs.push(h.join().unwrap_or_else(|_| {
                Err(DataFusionError::Internal(
                    "a PromQL operator thread panicked".into(),
                ))
            }));
        }
        outs
    });
    let mut all = vec![];
    for o in outs {
        all.extend(o?);
    }
    Ok(all)
}

/// Runs a per-series operator over the series `range` of `g`, one series at a time
/// through one reused buffer.
fn run_series(
    op: &PromOp,
    schema: &SchemaRef,
    g: &Grouped,
    range: std::ops::Range<usize>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Out::new(schema);
    let mut buf: SeriesRows = vec![];
    let mut order = vec![];
    match op {
        PromOp::InstantSelect {
            steps,
            lookback,
            at,
            sample_ts,
            ..
        } => {
            for k in range {
                g.fill(k, &mut buf, &mut order);
                let l = g.series[k].0;
                for (t, (st, sv)) in select_at_steps(&buf, *steps, *lookback, *at) {
                    out.push(l, t, if *sample_ts { st as f64 / 1000.0 } else { sv })?;
                }
            }
        }
        PromOp::RangeFunc {
            func,
            steps,
            range: window,
            at,
            params,
            step_params,
            inner,
            ..
        } => {
            let mut points: SeriesRows = vec![];
            let mut step_ps = params.clone();
            // For rate and increase: each series' resets counted once, `resets[i]` those
            // among its first `i + 1` samples, so a window without one skips the scan.
            let counter = matches!(func, RangeFn::Rate | RangeFn::Increase);
            let mut resets: Vec<u32> = vec![];
            let per_series = steps.iter().count();
            let label_bytes: usize = range.clone().map(|k| g.series[k].0.len()).sum();
            out = Out::with_hint(
                schema,
                range.len().saturating_mul(per_series),
                label_bytes.saturating_mul(per_series),
            );
            for k in range {
                g.fill(k, &mut buf, &mut order);
                let l = g.series[k].0;
                let rows = match inner {
                    Some(i) => {
                        points.clear();
                        points.extend(
                            select_at_steps(&buf, i.steps, i.lookback, i.at)
                                .map(|(t, (_, v))| (t, v)),
                        );
                        &mut points
                    }
                    None => &mut buf,
                };
                rows.retain(|r| !is_stale(r.1));
                if counter {
                    resets.clear();
                    let mut n = 0u32;
                    resets.push(0);
                    for w in rows.windows(2) {
                        n += u32::from(w[1].1 < w[0].1);
                        resets.push(n);
                    }
                }
                let (mut lo_at, mut hi_at) = (Cursor::new(), Cursor::new());
                for (i, t) in steps.iter().enumerate() {
                    for (j, vals) in step_params {
                        step_ps[*j] = vals.get(i).copied().unwrap_or(f64::NAN);
                    }
                    let e = at.eval_time(t);
                    let lo = lo_at.after(rows, e - window);
                    let hi = hi_at.after(rows, e);
                    // predict_linear's intercept is at the step (Prometheus marks it unsafe for `@`).
                    let eval_ts = t;
                    let window_rows = &rows[lo..hi];
                    let value = if counter && hi > lo && resets[hi - 1] == resets[lo] {
                        kernels::counter_increase_without_resets(
                            window_rows,
                            e - window,
                            e,
                            *func == RangeFn::Rate,
                        )
                    } else {
                        kernels::eval_range(*func, window_rows, e - window, e, eval_ts, &step_ps)
                    };
                    if let Some(v) = value {
                        out.push(l, t, v)?;
                    }
                }
            }
        }
        PromOp::CheckUnique { .. } => {
            return Err(DataFusionError::Internal(
                "CheckUnique is not a per-series operator".into(),
            ));
        }
    }
    out.finish()
}

fn run(op: &PromOp, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    match op {
        PromOp::InstantSelect { series, .. } | PromOp::RangeFunc { series, .. } => {
            let g = group(batches, series.as_ref())?;
            run_series(op, schema, &g, 0..g.series.len())
        }
        PromOp::CheckUnique {
            key,
            ts,
            message,
            show,
        } => {
            // Keys borrow the input's label bytes (no copy per row) and carry the labels'
            // hash, computed once per run of equal labels (rows come series by series).
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let mut seen: rustc_hash::FxHashMap<RowKey, &[u8]> =
                rustc_hash::FxHashMap::with_capacity_and_hasher(rows, Default::default());
            let ki = schema.index_of(key)?;
            let ti = schema.index_of(ts)?;
            let si = show.as_ref().map(|c| schema.index_of(c)).transpose()?;
            let mut run: (&[u8], u64) = (&[], 0);
            for b in batches {
                let k = b.column(ki).as_binary::<i32>();
                let sh = si.map(|i| b.column(i).as_binary::<i32>());
                let ts = b
                    .column(ti)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(|| DataFusionError::Internal("ts is not Int64".into()))?;
                for i in 0..b.num_rows() {
                    let this: &[u8] = sh.map(|s| s.value(i)).unwrap_or_default();
                    let labels = k.value(i);
                    if labels != run.0 || run.0.is_empty() {
                        run = (labels, rustc_hash::FxBuildHasher.hash_one(labels));
                    }
                    let key = RowKey {
                        hash: run.1,
                        labels,
                        ts: ts.value(i),
                    };
                    if let Some(prev) = seen.insert(key, this) {
                        let mut d = [go_labels(prev), go_labels(this)];
                        d.sort();
                        return Err(DataFusionError::Execution(
                            message
                                .replace("{labels}", &go_labels(k.value(i)))
                                .replace("{dups}", &format!("[{}, {}]", d[0], d[1])),
                        ));
                    }
                }
            }
            Ok(batches.to_vec())
        }
    }
}

/// A (labels, timestamp) key whose labels' hash is computed once per run of rows.
#[derive(PartialEq, Eq)]
struct RowKey<'a> {
    hash: u64,
    labels: &'a [u8],
    ts: i64,
}

impl Hash for RowKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
        state.write_i64(self.ts);
    }
}

/// Labels as Go's `labels.String()` prints them: `{a="1", b="2"}`.
pub fn go_labels(b: &[u8]) -> String {
    let parts: Vec<String> = crate::labels::pairs(b)
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Plans [`PromNode`]s into [`PromExec`]s.
#[derive(Debug)]
pub struct PromExtensionPlanner;

#[async_trait]
impl ExtensionPlanner for PromExtensionPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(n) = node.as_any().downcast_ref::<PromNode>() else {
            return Ok(None);
        };
        let schema: SchemaRef = Arc::new(n.schema.as_arrow().clone());
        Ok(Some(Arc::new(PromExec::new(
            n.op.clone(),
            physical_inputs[0].clone(),
            schema,
        ))))
    }
}

/// A query planner that knows [`PromNode`].
///
/// In a session without physical optimizer rules (`crate::query`'s one-partition twin
/// for small plans), it runs `rules` itself only when the plan as first built cannot run
/// as it is: when some operator has more than one partition (the head's rows unioned with
/// a file scan, say; an operator reading only its first partition would lose rows) or
/// requires an input order, or the plan joins. Otherwise the session's own rules apply.
#[derive(Debug)]
pub struct PromQueryPlanner {
    /// DataFusion's physical optimizer rules PromQL sessions keep, in order.
    pub rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
}

/// The physical optimizer's view of a session (as DataFusion's own planner gives it).
struct RulesContext<'a>(&'a dyn datafusion::catalog::Session);

impl PhysicalOptimizerContext for RulesContext<'_> {
    fn config_options(&self) -> &datafusion::config::ConfigOptions {
        self.0.config_options()
    }
    fn statistics_registry(
        &self,
    ) -> Option<&datafusion::physical_plan::operator_statistics::StatisticsRegistry> {
        self.0.statistics_registry()
    }
}

/// Whether `plan` runs correctly without the physical optimizer: one partition
/// everywhere, no required input order, no join (whose partition mode the optimizer
/// picks).
fn runs_as_built(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::physical_plan::ExecutionPlanProperties;
    let mut ok = true;
    let _ = plan.apply(|n| {
        let fine = n.output_partitioning().partition_count() == 1
            && n.required_input_ordering().iter().all(|o| o.is_none())
            && !n.name().contains("Join");
        if !fine {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

#[async_trait]
impl datafusion::execution::context::QueryPlanner for PromQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut plan =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(PromExtensionPlanner)])
                .create_physical_plan(logical_plan, session_state)
                .await?;
        if session_state.physical_optimizers().is_empty() {
            let context = RulesContext(session_state);
            if runs_as_built(&plan) {
                // One partition: an aggregate's partial and final phases are one (the
                // planner always writes two), as DataFusion's rule of that name makes them.
                use datafusion::physical_optimizer::PhysicalOptimizerRule;
                let combine = datafusion::physical_optimizer::combine_partial_final_agg::CombinePartialFinalAggregate::new();
                return combine.optimize_with_context(plan, &context);
            }
            for rule in &self.rules {
                plan = rule
                    .optimize_with_context(plan, &context)
                    .map_err(|e| DataFusionError::Context(rule.name().to_string(), Box::new(e)))?;
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array};

    #[test]
    fn a_cursor_answers_as_a_binary_search_whichever_way_times_move() {
        // Irregular timestamps with repeats (a series' rows with a duplicate kept).
        let rows: Vec<(i64, f64)> = [0, 3, 3, 4, 10, 11, 25, 26, 27, 60, 61, 200]
            .iter()
            .map(|t| (*t, 0.0))
            .collect();
        let times = [
            -5, -1, 0, 0, 2, 3, 9, 10, 30, 30, 60, 59, 61, 199, 200, 500, 3, 26, 1000,
        ];
        for rows in [&rows[..], &rows[..1], &[][..]] {
            let mut c = Cursor::new();
            for t in times {
                assert_eq!(
                    c.after(rows, t),
                    rows.partition_point(|r| r.0 <= t),
                    "t={t} rows={rows:?}"
                );
            }
        }
    }

    /// 300 series x 1,000 samples at 10 s: series `k`'s value at sample `i` is `k`.
    fn input() -> (Vec<RecordBatch>, SeriesMap) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("series_id", DataType::Int64, false),
            Field::new("ts_us", DataType::Int64, false),
            Field::new("value", DataType::Float64, true),
        ]));
        let mut batches = vec![];
        for k in 0..300i64 {
            let ids = Int64Array::from(vec![k; 1000]);
            let ts = Int64Array::from_iter_values((0..1000).map(|i| i * 10_000_000));
            let vs = Float64Array::from(vec![k as f64; 1000]);
            batches.push(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(ids), Arc::new(ts), Arc::new(vs)],
                )
                .unwrap(),
            );
        }
        let map = SeriesMap::new((0..300i64).map(|k| (k, format!("s{k:03}").into_bytes())));
        (batches, map)
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(Vec<u8>, i64, u64)> {
        let mut out = vec![];
        for b in batches {
            let l = b.column(0).as_binary::<i32>();
            let (t, v) = ts_value(b).unwrap();
            for (i, t) in t.iter().enumerate() {
                out.push((l.value(i).to_vec(), *t, v.value(i).to_bits()));
            }
        }
        out.sort();
        out
    }

    /// One series' rows from `(ts s, value)` batches, in that input order.
    fn batches_of(parts: &[&[(i64, f64)]]) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("series_id", DataType::Int64, false),
            Field::new("ts_us", DataType::Int64, false),
            Field::new("value", DataType::Float64, true),
        ]));
        parts
            .iter()
            .map(|p| {
                let ids = Int64Array::from(vec![7; p.len()]);
                let ts = Int64Array::from_iter_values(p.iter().map(|r| r.0 * 1_000_000));
                let vs = Float64Array::from_iter_values(p.iter().map(|r| r.1));
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(ids), Arc::new(ts), Arc::new(vs)],
                )
                .unwrap()
            })
            .collect()
    }

    /// The values an instant selection at 10, 20, 30 and 40 s (lookback 5 s) gives.
    fn selected(batches: &[RecordBatch]) -> Vec<(i64, f64)> {
        let op = PromOp::InstantSelect {
            steps: Steps {
                start: 10_000,
                end: 40_000,
                step: 10_000,
            },
            lookback: 5_000,
            at: At {
                offset: 0,
                at: None,
            },
            sample_ts: false,
            series: Some(SeriesMap::new([(7, b"s".to_vec())])),
        };
        let out = run(&op, &prom_schema(), batches).unwrap();
        let mut got = vec![];
        for b in &out {
            let (t, v) = ts_value(b).unwrap();
            got.extend((0..b.num_rows()).map(|i| (t[i], v.value(i))));
        }
        got
    }

    #[test]
    fn runs_of_a_series_are_ordered_by_time_and_duplicates_keep_the_later_row() {
        // A later file's run first in the input: the selection still walks time in order.
        let later_first = batches_of(&[&[(30, 3.0), (40, 4.0)], &[(10, 1.0), (20, 2.0)]]);
        assert_eq!(
            selected(&later_first),
            vec![(10_000, 1.0), (20_000, 2.0), (30_000, 3.0), (40_000, 4.0)]
        );
        // Overlapping runs: at 20 s the row that came later in the input wins, as a
        // stable sort of the input followed by keeping the last duplicate gives.
        let overlapping = batches_of(&[&[(10, 1.0), (20, 2.0)], &[(20, 5.0), (30, 3.0)]]);
        assert_eq!(
            selected(&overlapping),
            vec![(10_000, 1.0), (20_000, 5.0), (30_000, 3.0)]
        );
        let overlapping = batches_of(&[&[(20, 5.0), (30, 3.0)], &[(10, 1.0), (20, 2.0)]]);
        assert_eq!(
            selected(&overlapping),
            vec![(10_000, 1.0), (20_000, 2.0), (30_000, 3.0)]
        );
    }

    #[test]
    fn series_split_over_threads_gives_the_same_rows() {
        let (batches, map) = input();
        let op = PromOp::RangeFunc {
            func: RangeFn::SumOverTime,
            steps: Steps {
                start: 600_000,
                end: 9_000_000,
                step: 600_000,
            },
            range: 60_000,
            at: At {
                offset: 0,
                at: None,
            },
            params: vec![],
            step_params: vec![],
            series: Some(map),
            inner: None,
        };
        let schema = prom_schema();
        let one = rows(&run(&op, &schema, &batches).unwrap());
        let two = rows(&run_parallel(&op, &schema, &batches, 2).unwrap());
        // 300 series x 15 steps; each window (t - 60 s, t] holds 6 samples of value k.
        assert_eq!(one.len(), 300 * 15);
        let s7: Vec<_> = one.iter().filter(|r| r.0 == b"s007").collect();
        assert_eq!(s7.len(), 15);
        assert!(s7.iter().all(|r| f64::from_bits(r.2) == 42.0));
        assert_eq!(one, two);
    }
}
