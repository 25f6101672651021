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
//! `PromNode` consumes and produces that shape. The operator gathers its input into one
//! partition, groups it by series, and emits one batch.

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
    fn get(&self, id: i64) -> Option<&Vec<u8>> {
        self.map.get(&id)
    }

    /// Number of series.
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Splits the series into `n` maps of about equal size (by id).
    fn split(&self, n: usize) -> Vec<SeriesMap> {
        let mut parts: Vec<Vec<(i64, Vec<u8>)>> = (0..n).map(|_| vec![]).collect();
        for (id, l) in self.map.iter() {
            parts[(*id as u64 % n as u64) as usize].push((*id, l.clone()));
        }
        parts.into_iter().map(SeriesMap::new).collect()
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
        vec![Distribution::SinglePartition]
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
        let threads = context.session_config().target_partitions();
        let input = self.input.execute(partition, context)?;
        let op = self.op.clone();
        let schema = self.schema.clone();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let fut = async move {
            let batches: Vec<RecordBatch> = input
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_>>()?;
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

/// Rows of one series: `(ts ms, value)`.
type SeriesRows = Vec<(i64, f64)>;

/// Groups `labels, ts, value` rows by label set (or, with `series`, `series_id, ts,
/// value` rows by series, dropping series not in the map), each series sorted by time
/// with duplicate timestamps collapsed to the last row; series sorted by labels.
fn group(
    batches: &[RecordBatch],
    series: Option<&SeriesMap>,
) -> Result<Vec<(Vec<u8>, SeriesRows)>> {
    let mut out: Vec<(Vec<u8>, SeriesRows)> = match series {
        Some(m) => group_by_id(batches, m)?,
        None => group_by_labels(batches)?,
    };
    for (_, rows) in &mut out {
        if !rows.is_sorted_by_key(|r| r.0) {
            rows.sort_by_key(|r| r.0);
        }
        rows.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                *earlier = *later;
                true
            } else {
                false
            }
        });
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn ts_value(b: &RecordBatch) -> Result<(&Int64Array, &Float64Array)> {
    let ts = b
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| DataFusionError::Internal("ts is not Int64".into()))?;
    let vs = b
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| DataFusionError::Internal("value is not Float64".into()))?;
    Ok((ts, vs))
}

fn group_by_labels(batches: &[RecordBatch]) -> Result<Vec<(Vec<u8>, SeriesRows)>> {
    let mut idx: rustc_hash::FxHashMap<&[u8], usize> = Default::default();
    let mut out: Vec<(Vec<u8>, SeriesRows)> = vec![];
    for b in batches {
        let labels = b.column(0).as_binary::<i32>();
        let (ts, vs) = ts_value(b)?;
        for i in 0..b.num_rows() {
            if vs.is_null(i) {
                continue;
            }
            let l = labels.value(i);
            let k = *idx.entry(l).or_insert_with(|| {
                out.push((l.to_vec(), vec![]));
                out.len() - 1
            });
            out[k].1.push((ts.value(i), vs.value(i)));
        }
    }
    Ok(out)
}

/// Groups `(series_id, ts_us, value)` rows (`ts_us` in µs, as the scan gives them) by
/// series, keeping those in `m`, timestamps converted to ms.
fn group_by_id(batches: &[RecordBatch], m: &SeriesMap) -> Result<Vec<(Vec<u8>, SeriesRows)>> {
    let mut idx: rustc_hash::FxHashMap<i64, usize> = Default::default();
    let mut counts: Vec<(i64, usize)> = vec![];
    let cols = batches
        .iter()
        .map(|b| {
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Internal("series_id is not Int64".into()))?;
            let (ts, vs) = ts_value(b)?;
            Ok((ids, ts, vs))
        })
        .collect::<Result<Vec<_>>>()?;
    // Samples arrive in runs of one series (files are sorted by series, then time); a run
    // is looked up once, and a run of a series not in the map (the scan only prunes) is
    // skipped. The first pass counts each series' rows, so the second fills vectors of
    // their final size.
    let mut runs: Vec<Vec<(usize, usize, usize)>> = Vec::with_capacity(cols.len());
    for (ids, _, _) in &cols {
        let ids = ids.values();
        let mut batch_runs = vec![];
        let mut start = 0;
        while start < ids.len() {
            let id = ids[start];
            let end = start + ids[start..].iter().take_while(|x| **x == id).count();
            if m.get(id).is_some() {
                let k = *idx.entry(id).or_insert_with(|| {
                    counts.push((id, 0));
                    counts.len() - 1
                });
                counts[k].1 += end - start;
                batch_runs.push((start, end, k));
            }
            start = end;
        }
        runs.push(batch_runs);
    }
    let mut rows: Vec<(i64, SeriesRows)> = counts
        .iter()
        .map(|(id, n)| (*id, Vec::with_capacity(*n)))
        .collect();
    for ((_, ts, vs), batch_runs) in cols.iter().zip(&runs) {
        for &(start, end, k) in batch_runs {
            let out = &mut rows[k].1;
            for i in start..end {
                if !vs.is_null(i) {
                    out.push((ts.value(i) / 1000, vs.value(i)));
                }
            }
        }
    }
    Ok(rows
        .into_iter()
        .filter_map(|(id, r)| m.get(id).map(|l| (l.clone(), r)))
        .collect())
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
        }
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

/// Input rows from which a per-series operator is split over threads: below it, spawning
/// threads costs more than it saves.
const PARALLEL_MIN_ROWS: usize = 200_000;

/// Runs `op` over `batches`, on up to `threads` threads when the operator works series by
/// series over `series_id` input ([`PromOp::InstantSelect`] and [`PromOp::RangeFunc`] with
/// a [`SeriesMap`]) and the input is large: each thread takes a share of the series and
/// reads every batch, skipping the runs of other series. The operator runs after its
/// input is complete, so the scan's threads are idle by then. Output order is by thread,
/// then by labels; nothing downstream depends on order across series.
fn run_parallel(
    op: &PromOp,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    threads: usize,
) -> Result<Vec<RecordBatch>> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let series = match op {
        PromOp::InstantSelect { series, .. } | PromOp::RangeFunc { series, .. } => series,
        PromOp::CheckUnique { .. } => &None,
    };
    let Some(series) = series else {
        return run(op, schema, batches);
    };
    let threads = threads.min(series.len());
    if threads < 2 || rows < PARALLEL_MIN_ROWS {
        return run(op, schema, batches);
    }
    let ops: Vec<PromOp> = series
        .split(threads)
        .into_iter()
        .map(|m| {
            let mut op = op.clone();
            match &mut op {
                PromOp::InstantSelect { series, .. } | PromOp::RangeFunc { series, .. } => {
                    *series = Some(m)
                }
                PromOp::CheckUnique { .. } => {}
            }
            op
        })
        .collect();
    let outs: Vec<Result<Vec<RecordBatch>>> = std::thread::scope(|s| {
        let spawned: Vec<_> = ops[1..]
            .iter()
            .map(|op| s.spawn(move || run(op, schema, batches)))
            .collect();
        let mut outs = vec![run(&ops[0], schema, batches)];
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

fn run(op: &PromOp, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    match op {
        PromOp::InstantSelect {
            steps,
            lookback,
            at,
            sample_ts,
            series,
        } => {
            let mut out = Out::new(schema);
            for (l, rows) in group(batches, series.as_ref())? {
                for (t, (st, sv)) in select_at_steps(&rows, *steps, *lookback, *at) {
                    out.push(&l, t, if *sample_ts { st as f64 / 1000.0 } else { sv })?;
                }
            }
            out.finish()
        }
        PromOp::RangeFunc {
            func,
            steps,
            range,
            at,
            params,
            series,
            inner,
        } => {
            let mut out = Out::new(schema);
            for (l, mut rows) in group(batches, series.as_ref())? {
                if let Some(i) = inner {
                    rows = select_at_steps(&rows, i.steps, i.lookback, i.at)
                        .map(|(t, (_, v))| (t, v))
                        .collect();
                }
                rows.retain(|r| !is_stale(r.1));
                for t in steps.iter() {
                    let e = at.eval_time(t);
                    let lo = rows.partition_point(|r| r.0 <= e - range);
                    let hi = rows.partition_point(|r| r.0 <= e);
                    // predict_linear's intercept is at the step (Prometheus marks it unsafe for `@`).
                    let eval_ts = t;
                    if let Some(v) =
                        kernels::eval_range(*func, &rows[lo..hi], e - range, e, eval_ts, params)
                    {
                        out.push(&l, t, v)?;
                    }
                }
            }
            out.finish()
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
#[derive(Debug)]
pub struct PromQueryPlanner;

#[async_trait]
impl datafusion::execution::context::QueryPlanner for PromQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(PromExtensionPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array};

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
            for i in 0..b.num_rows() {
                out.push((l.value(i).to_vec(), t.value(i), v.value(i).to_bits()));
            }
        }
        out.sort();
        out
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
