//! PromQL expression → DataFusion logical plan.
//!
//! Every expression becomes a plan whose rows are `(labels, ts, value)` (see
//! [`crate::exec`]): an instant vector has one row per series and step, a scalar one row
//! per step with empty labels. The mapping:
//!
//! | PromQL | plan |
//! |---|---|
//! | selector | scan of `samples` (metric name, time range) ⋈ matched series → [`PromOp::InstantSelect`] |
//! | `f(v[r])`, `f(q[r:s])` | samples (or the subquery's plan) → [`PromOp::RangeFunc`] |
//! | aggregation | `Aggregate` grouped by (label key, ts) with the `prom_agg` UDAF; `topk` & co. a window `row_number()` |
//! | `v op w` | hash join on (matching key, ts), `prom_value` UDF for the operator |
//! | `and`, `unless` | semi join, anti join |
//! | `a or b or ...` | one union of every operand, tagged by position; a window `rank()` keeps, per match key and step, the first operand's rows |
//! | math, date, label functions | projections with UDFs |
//! | `time()`, `vector()`, `scalar()`, `absent()` | a steps table, joins |

use std::sync::Arc;

use datafusion::arrow::array::{BinaryArray, Float64Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Column, JoinType, NullEquality, ScalarValue};
use datafusion::functions::math::expr_fn::isnan;
use datafusion::functions_aggregate::expr_fn::{count, max};
use datafusion::functions_window::expr_fn::{rank, row_number};
use datafusion::logical_expr::{
    EmptyRelation, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, cast, ident, lit,
    when,
};
use datafusion::prelude::{Expr, SessionContext};
use futures::future::BoxFuture;
use promql_parser::label::MatchOp;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr as P, LabelModifier, Offset, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};
use strata_rollup::catalog::SketchRead;
use strata_rollup::sketch;

use crate::exec::{At, InnerSelect, PromNode, PromOp, SeriesMap, Steps, prom_schema};
use crate::kernels::RangeFn;
use crate::labels::{DROP_MARK, LabelOp, NAME};
use crate::udf::{AggFn, BinOp, SimpleAgg, ValueFn};
use crate::{PromqlError, Result};

/// A planned expression, by PromQL type.
pub enum Planned {
    /// A number known at planning time.
    Const(f64),
    /// A string literal.
    Str(String),
    /// A scalar: one row per step, empty labels.
    Scalar(LogicalPlan),
    /// An instant vector.
    Vector(LogicalPlan),
    /// A range vector (only as a query's result): rows are the raw samples.
    Matrix(LogicalPlan),
}

impl Planned {
    /// The plan to run, `None` for a constant or a string.
    pub fn plan(&self) -> Option<&LogicalPlan> {
        match self {
            Planned::Scalar(p) | Planned::Vector(p) | Planned::Matrix(p) => Some(p),
            Planned::Const(_) | Planned::Str(_) => None,
        }
    }
}

/// One series' answer: its encoded labels and `(step ms, value)` points.
pub type LabelledPoints = (Vec<u8>, crate::tiers::Points);

/// Plans one query.
pub struct Planner {
    /// The engine's session (tables `samples`, `series`).
    pub ctx: SessionContext,
    /// Lookback delta, ms.
    pub lookback: i64,
    /// The query's start, ms (for `@ start()`).
    pub start: i64,
    /// The query's end, ms (for `@ end()`).
    pub end: i64,
    /// Default subquery step, ms.
    pub default_step: i64,
    /// The query's step, ms (0 for an instant query; `step()`).
    pub step: i64,
    /// The query text (for annotation positions).
    pub query: String,
    /// Annotations found.
    pub notes: crate::Notes,
    /// Samples the largest of the plan's selectors reads, estimated as its series times
    /// its time range (ms) over [`ASSUMED_INTERVAL_MS`], plus one per series (decides
    /// whether the plan runs in one partition: `crate::query::session_for`). The largest,
    /// not the sum: a second partition pays off on a large scan, while a plan of many
    /// small selectors (a chain of binary operators over aggregations) spent more on
    /// repartitioning every few-row operator than it gained (10-operand `+ on()` chains,
    /// 200 hosts: 15.8 -> 10.4 ms, `benches/README.md`).
    pub est_rows: std::sync::atomic::AtomicUsize,
    /// Whether some series' names were marked for removal at plan time (see
    /// [`Planner::plan_query`]).
    pub marked: std::sync::atomic::AtomicBool,
    /// The query's nesting depth ([`crate::depth::depth`]): a query at most
    /// [`SHALLOW_PLAN_DEPTH`] deep cannot build a plan taller than [`MAX_PLAN_HEIGHT`], and
    /// its plans' heights are not measured.
    pub depth: usize,
    /// The query's expression when it is a function call (set by
    /// [`Planner::plan_query`]; compared by address only): a range function that is the
    /// whole query drops its known series' names at plan time instead of marking them.
    pub root_call: std::sync::atomic::AtomicPtr<Call>,
    /// The rollup tiers this query may read ([`crate::tiers`]); `None`: raw samples only.
    pub routing: Option<crate::tiers::Routing>,
    /// Which source answered which steps, in planning order.
    pub sources: std::sync::Mutex<Vec<crate::SourceRange>>,
    /// Whether a range function that is the whole query, and reads rollup tiers only, may
    /// leave its series in [`Planner::direct`] instead of in its plan (set for range
    /// queries, whose answer is series: no plan needs to run then).
    pub direct_ok: bool,
    /// That query's answer, computed at planning: `(encoded labels, (step ms, value)
    /// points)` per series, its plan an empty scan ([`Planner::plan_query`] builds the
    /// plan from them where one is still needed).
    pub direct: std::sync::Mutex<Option<Vec<LabelledPoints>>>,
}

/// The sample interval, ms, [`Planner::est_rows`] assumes: Prometheus's default scrape
/// interval is 1 minute, and most setups scrape every 10 to 60 s.
pub const ASSUMED_INTERVAL_MS: i64 = 10_000;

fn bad(msg: impl Into<String>) -> PromqlError {
    PromqlError::BadData(msg.into())
}

/// A failure reading a rollup tier, as an execution error.
fn tier_error(e: strata_rollup::RollupError) -> PromqlError {
    PromqlError::Execution(datafusion::error::DataFusionError::External(Box::new(e)))
}

/// `d` in ms, at most [`crate::MAX_TIME_MS`].
fn ms(d: std::time::Duration) -> i64 {
    d.as_millis().min(crate::MAX_TIME_MS as u128) as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(*d),
        Some(Offset::Neg(d)) => -ms(*d),
    }
}

fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(
            datafusion::common::DFSchema::try_from(prom_schema().as_ref().clone())
                .expect("static schema"),
        ),
    })
}

fn unwrap_paren(e: &P) -> &P {
    match e {
        P::Paren(p) => unwrap_paren(&p.expr),
        other => other,
    }
}

/// The three output columns under their names.
fn out_cols(labels: Expr, ts: Expr, value: Expr) -> Vec<Expr> {
    vec![labels.alias("labels"), ts.alias("ts"), value.alias("value")]
}

impl Planner {
    /// The position `(line:column)` of argument `arg` of the first call of `fname` in
    /// the query text (Prometheus's annotation positions), `(1:1)` when not found.
    fn pos_of_arg(&self, fname: &str, arg: Option<&P>) -> String {
        let q = &self.query;
        let Some(i) = q.find(&format!("{fname}(")) else {
            return "(1:1)".into();
        };
        let at = match arg {
            None => Some(i),
            Some(a) => q[i..].find(&a.to_string()).map(|j| i + j),
        };
        let at = at.unwrap_or(i);
        let line = q[..at].matches('\n').count() + 1;
        let col = at - q[..at].rfind('\n').map(|n| n + 1).unwrap_or(0) + 1;
        format!("({line}:{col})")
    }

    fn note(&self, warn: bool, msg: String) {
        let mut g = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        let list = if warn { &mut g.0 } else { &mut g.1 };
        if !list.contains(&msg) {
            list.push(msg);
        }
    }

    fn check_quantile(&self, phi: f64, fname: &str, arg: &P) {
        if !(0.0..=1.0).contains(&phi) {
            let pos = self.pos_of_arg(fname, Some(arg));
            self.note(
                true,
                format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {} {pos}",
                    crate::labels::format_value(phi)
                ),
            );
        }
    }

    /// A parameter as an expression over `v`'s rows: a literal when constant, else the
    /// scalar's plan joined on `ts` (column `param`).
    async fn param_expr(
        &self,
        v: LogicalPlan,
        e: &P,
        steps: Steps,
    ) -> Result<(LogicalPlan, Expr, Option<f64>)> {
        match self.plan(e, steps).await? {
            Planned::Const(c) => Ok((v, lit(c), Some(c))),
            Planned::Scalar(sp) => {
                let sp = LogicalPlanBuilder::from(sp)
                    .project(vec![
                        ident("ts").alias("p_ts"),
                        ident("value").alias("param"),
                    ])?
                    .build()?;
                let j = LogicalPlanBuilder::from(v)
                    .join(sp, JoinType::Inner, (vec!["ts"], vec!["p_ts"]), None)?
                    .build()?;
                Ok((j, ident("param"), None))
            }
            _ => Err(bad("expected a scalar parameter")),
        }
    }

    fn at_of(&self, at: &Option<AtModifier>, offset: &Option<Offset>) -> At {
        let at = at.as_ref().map(|a| match a {
            AtModifier::Start => self.start,
            AtModifier::End => self.end,
            AtModifier::At(t) => match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => ms(d),
                Err(e) => -ms(e.duration()),
            },
        });
        At {
            offset: offset_ms(offset),
            at,
        }
    }

    /// The times `[min, max]` that steps read data at.
    fn eval_span(steps: Steps, at: At) -> (i64, i64) {
        match at.at {
            Some(a) => (a - at.offset, a - at.offset),
            None => (steps.start - at.offset, steps.end - at.offset),
        }
    }

    /// The raw samples `(labels, ts, value)` of the series `vs` picks with timestamps in
    /// `(from, to]` ms (a range selector as a query's result).
    async fn raw(&self, vs: &VectorSelector, from: i64, to: i64) -> Result<LogicalPlan> {
        let Some((samples, series)) = self.raw_ids(vs, from, to, true).await? else {
            return Ok(empty_plan());
        };
        let ids = Int64Array::from_iter_values(series.iter().map(|s| s.0));
        let labels = BinaryArray::from_iter_values(series.iter().map(|s| &s.1));
        let batch = RecordBatch::try_from_iter(vec![
            ("sel_id", Arc::new(ids) as _),
            ("labels", Arc::new(labels) as _),
        ])?;
        let sel = self.ctx.read_batch(batch)?.into_unoptimized_plan();
        let plan = LogicalPlanBuilder::from(samples)
            .join(
                sel,
                JoinType::Inner,
                (vec!["series_id"], vec!["sel_id"]),
                None,
            )?
            .project(vec![
                ident("labels"),
                (cast(ident("timestamp"), DataType::Int64) / lit(1000i64)).alias("ts"),
                ident("value"),
            ])?
            .build()?;
        Ok(plan)
    }

    /// The raw samples `(series_id, timestamp, value)` (`timestamp`: µs since the epoch, UTC) of
    /// the metrics `vs` names, with timestamps in `(from, to]` ms, and the encoded labels
    /// of the series `vs` picks (rows of other series of the same metrics may remain: a
    /// [`PromNode`] given the map drops them).
    /// Without `exact`, the filters only prune ([`strata_engine::tables::PruningSamples`]):
    /// rows of other series and outside `(from, to]` may also come, and the consumer must
    /// bound its windows by time. `None` when no series matches.
    async fn raw_ids(
        &self,
        vs: &VectorSelector,
        from: i64,
        to: i64,
        exact: bool,
    ) -> Result<Option<(LogicalPlan, Selected)>> {
        let Some(picked) = self.pick(vs).await? else {
            return Ok(None);
        };
        Ok(Some(self.scan_picked(&picked, from, to, exact).await?))
    }

    /// The series `vs` selects, `None` when none does.
    async fn pick(&self, vs: &VectorSelector) -> Result<Option<Picked>> {
        let (series, candidates) =
            crate::selector::select_series_counted(&self.ctx, std::slice::from_ref(vs), None)
                .await?;
        Ok((!series.is_empty()).then_some(Picked { series, candidates }))
    }

    /// [`Planner::raw_ids`] of series already picked.
    async fn scan_picked(
        &self,
        picked: &Picked,
        from: i64,
        to: i64,
        exact: bool,
    ) -> Result<(LogicalPlan, Selected)> {
        let Picked { series, candidates } = picked;
        let candidates = *candidates;
        let per_series = usize::try_from((to - from).max(0) / ASSUMED_INTERVAL_MS)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        self.est_rows.fetch_max(
            series.len().saturating_mul(per_series),
            std::sync::atomic::Ordering::Relaxed,
        );
        let names = picked.names();
        let ts_lit = crate::selector::ts_lit;
        let in_time = ident("timestamp")
            .gt(ts_lit(from))
            .and(ident("timestamp").lt_eq(ts_lit(to)));
        // Fewer series than the metrics hold: name them, so Parquet row groups and pages
        // (sorted by metric, series, time) of other series are pruned by their statistics.
        let name_series =
            series.len() <= strata_engine::MAX_SERIES_IN_LIST && series.len() * 2 <= candidates;
        // One scan for all the selector's metrics and series: the series runs of each file
        // (`strata_engine::runs`) pick each series' rows exactly, so each file is opened
        // once. (Page statistics, for files whose runs are not listed yet, prune column by
        // column, so there a page of one metric can match another metric's ids.)
        let mut filter = ident("metric_name")
            .in_list(names.iter().map(|n| lit(*n)).collect(), false)
            .and(in_time);
        if name_series {
            filter = filter.and(
                ident("series_id")
                    .in_list(series.iter().map(|s| lit(s.series_id)).collect(), false),
            );
        }
        // The scan, with its filters and columns, as the optimizer would push them down
        // (PromQL sessions run few optimizer rules: `KEPT_RULES` in `crate::query`). The
        // exact `samples` table may return rows its filters do not match: they are
        // filtered again above it.
        let provider = self.samples_provider(exact).await?;
        let schema = provider.schema();
        let mut read = vec!["series_id", "timestamp", "value"];
        if exact {
            read.push("metric_name");
        }
        let projection = read
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let filters = datafusion::logical_expr::utils::split_conjunction_owned(filter.clone());
        let mut scan = LogicalPlanBuilder::scan_with_filters(
            "samples",
            datafusion::datasource::provider_as_source(provider),
            Some(projection),
            filters,
        )?;
        if exact {
            scan = scan.filter(filter)?.project(vec![
                ident("series_id"),
                ident("timestamp"),
                ident("value"),
            ])?;
        }
        // Timestamps stay the scan's microseconds: the operators read them as i64 and
        // divide by 1000 only the rows they keep (no projection to plan and run).
        let samples = scan.build()?;
        Ok((samples, picked.labels()))
    }

    /// The `samples` table: exact, or pruning only
    /// ([`strata_engine::tables::PruningSamples`]).
    async fn samples_provider(
        &self,
        exact: bool,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        if exact {
            return Ok(self.ctx.table_provider("samples").await?);
        }
        let pruning = self
            .ctx
            .state_ref()
            .read()
            .config()
            .get_extension::<strata_engine::tables::PruningSamples>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "the session has no PruningSamples".into(),
                )
            })?;
        Ok(pruning.0.clone())
    }

    /// `op` (a [`PromOp::RangeFunc`] or [`PromOp::InstantSelect`] over `raw`, keyed by
    /// series id) at its steps, where `tiered` routes some of them to rollup tiers: the
    /// raw routes as `op` over `raw` at their steps, the tier routes evaluated now from
    /// the tiers' buckets ([`crate::tiers`]), all in one union. Records the routes in
    /// [`Planner::sources`] and notes approximate answers in the query's `infos`.
    ///
    /// # Errors
    /// Reading a tier fails; plan building errors.
    ///
    /// With `whole` (`op` is the whole query's plan: a range function at its root whose
    /// labels need no more work) and [`Planner::direct_ok`], tier routes answering every
    /// step leave their series in [`Planner::direct`] and the plan is an empty scan.
    fn range_node<'a>(
        &'a self,
        op: PromOp,
        raw: LogicalPlan,
        tiered: Option<&'a Tiered>,
        whole: bool,
    ) -> BoxFuture<'a, Result<LogicalPlan>> {
        // Boxed: its state stays out of `call`'s, whose frames deep queries stack up.
        Box::pin(self.tiered_node(op, raw, tiered, whole))
    }

    async fn tiered_node(
        &self,
        op: PromOp,
        raw: LogicalPlan,
        tiered: Option<&Tiered>,
        whole: bool,
    ) -> Result<LogicalPlan> {
        use crate::tiers::Source;
        let Some(tiered) = tiered else {
            return Self::node(op, raw);
        };
        let Some(routing) = &self.routing else {
            return Self::node(op, raw);
        };
        let (func, range, at, params, series) = match &op {
            PromOp::RangeFunc {
                func,
                range,
                at,
                params,
                series,
                ..
            } => (Some(*func), *range, *at, params.clone(), series.clone()),
            PromOp::InstantSelect {
                lookback,
                at,
                series,
                ..
            } => (None, *lookback, *at, vec![], series.clone()),
            PromOp::CheckUnique { .. } => return Self::node(op, raw),
        };
        let sample_ts = matches!(
            op,
            PromOp::InstantSelect {
                sample_ts: true,
                ..
            }
        );
        let series = series.ok_or_else(|| bad("a tiered selector without its series"))?;
        let names: Vec<&str> = tiered.names.iter().map(String::as_str).collect();
        let mut parts = vec![];
        // The tier routes' points by series: `(labels, (step ms, value) points)`.
        let mut tier_points: Vec<(&Vec<u8>, crate::tiers::Points)> = vec![];
        for route in &tiered.routes {
            let Source::Tier { tier, exact } = route.source else {
                let mut o = op.clone();
                if let PromOp::RangeFunc { steps, .. } | PromOp::InstantSelect { steps, .. } =
                    &mut o
                {
                    *steps = route.steps;
                }
                parts.push(Self::node(o, raw.clone())?);
                self.record(route, "raw");
                continue;
            };
            let v = &routing.views[tier];
            let res = v.resolution_ms;
            self.record(route, &v.name);
            let span = if func.is_some() {
                range
            } else {
                range.max(res)
            };
            let (first, last) = (
                at.eval_time(route.steps.start),
                at.eval_time(route.steps.end),
            );
            let from = crate::tiers::window(first.min(last), span, res, exact).0;
            let to = crate::tiers::window(first.max(last), span, res, exact).1;
            let quantile = func == Some(RangeFn::QuantileOverTime);
            // Windows of one bucket each (a range of the tier's resolution: exact windows
            // are aligned, snapped ones one bucket wide) read a stored quantile's column,
            // when φ is one, rather than the sketches.
            let stored = params.first().and_then(|phi| sketch::stored_quantile(*phi));
            let sketch_read = match (quantile, stored) {
                (false, _) => SketchRead::None,
                (true, Some(i)) if range == res => SketchRead::Quantile(i),
                (true, _) => SketchRead::Sketch,
            };
            let buckets = routing
                .catalog
                .read_buckets(
                    &self.ctx,
                    tier,
                    &names,
                    &tiered.ids,
                    (from, to),
                    crate::tiers::fields(func),
                    sketch_read,
                )
                .await
                .map_err(tier_error)?;
            if !exact {
                self.note(false, format!(
                    "PromQL info: raw samples have expired here: answered from the {} rollup tier with windows widened to whole {} buckets (approximate)",
                    v.name, v.name
                ));
            }
            if quantile {
                self.note(false, format!(
                    "PromQL info: quantile_over_time answered from the {} rollup tier's KLL sketches: approximate (rank error about 1.65%)",
                    v.name
                ));
            }
            let points = crate::tiers::eval_series(
                buckets,
                crate::tiers::Eval {
                    func,
                    route: *route,
                    at,
                    range,
                    res,
                    params: params.clone(),
                    sample_ts,
                },
                self.ctx.state().config().target_partitions(),
            )
            .await
            .map_err(tier_error)?;
            tier_points.extend(
                points
                    .into_iter()
                    .filter_map(|(id, p)| Some((series.get(id)?, p))),
            );
        }
        if whole
            && self.direct_ok
            && parts.is_empty()
            && let Ok(mut d) = self.direct.lock()
        {
            *d = Some(
                tier_points
                    .into_iter()
                    .map(|(l, p)| (l.clone(), p))
                    .collect(),
            );
            return Ok(empty_plan());
        }
        if !tier_points.is_empty() || parts.is_empty() {
            parts.push(points_plan(&self.ctx, &tier_points)?);
        }
        let mut b = LogicalPlanBuilder::from(parts.remove(0));
        for p in parts {
            b = b.union(p)?;
        }
        Ok(b.build()?)
    }

    /// [`Tiered::of`]; routes that all read raw samples are recorded as such here.
    fn tiered(&self, routes: Vec<crate::tiers::Route>, picked: &Picked) -> Option<Tiered> {
        if routes.iter().all(|r| r.source == crate::tiers::Source::Raw) {
            for r in &routes {
                self.record(r, "raw");
            }
            return None;
        }
        Tiered::of(routes, picked)
    }

    /// Records that `source` answered `route`'s steps.
    fn record(&self, route: &crate::tiers::Route, source: &str) {
        if let Ok(mut s) = self.sources.lock() {
            s.push(crate::SourceRange {
                source: source.to_string(),
                start_ms: route.steps.start,
                end_ms: route.steps.end,
                exact: !matches!(
                    route.source,
                    crate::tiers::Source::Tier { exact: false, .. }
                ),
            });
        }
    }

    fn node(op: PromOp, input: LogicalPlan) -> Result<LogicalPlan> {
        Ok(PromNode::new(op, input)?.into_plan())
    }

    /// Plans query `e` evaluated at `steps`: [`Planner::plan`], then the end of
    /// Prometheus's delayed name removal (`engine.go` `cleanupMetricLabels`): the
    /// metadata labels of series whose names were marked for removal are dropped, and
    /// two series that became equal at one step fail the query ("vector cannot contain
    /// metrics with the same labelset"). Skipped when nothing was marked or the
    /// expression's own labels cannot carry a mark (an aggregation that drops the name).
    ///
    /// # Errors
    /// As [`Planner::plan`].
    pub async fn plan_query(&self, e: &P, steps: Steps) -> Result<Planned> {
        if let P::Call(c) = unwrap_paren(e) {
            self.root_call.store(
                std::ptr::from_ref(c).cast_mut(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let planned = self.plan(e, steps).await?;
        let p = match &planned {
            Planned::Vector(p) => p,
            Planned::Matrix(p) if matches!(unwrap_paren(e), P::Subquery(_)) => p,
            _ => return Ok(planned),
        };
        if drops_name(e)
            || !(self.marked.load(std::sync::atomic::Ordering::Relaxed) || has_mark_op(p))
        {
            return Ok(planned);
        }
        // An answer left in `direct` is the plan's rows.
        let direct = self.direct.lock().ok().and_then(|mut d| d.take());
        let built;
        let p = match direct {
            Some(points) => {
                built = points_plan(&self.ctx, &points)?;
                &built
            }
            None => p,
        };
        let fin = check_unique_labels(relabel(p.clone(), LabelOp::Finalize)?)?;
        Ok(match planned {
            Planned::Matrix(_) => Planned::Matrix(fin),
            _ => Planned::Vector(fin),
        })
    }

    /// Plans `e` evaluated at `steps`.
    ///
    /// Each level of the recursion runs on a stack that grows as needed
    /// ([`crate::depth::grow`]), and a plan taller than [`MAX_PLAN_HEIGHT`] is run before
    /// more is planned on top of it ([`Planner::bounded`]).
    pub fn plan<'a>(&'a self, e: &'a P, steps: Steps) -> BoxFuture<'a, Result<Planned>> {
        Box::pin(crate::depth::Grown(Box::pin(async move {
            let planned = self.plan_node(e, steps).await?;
            self.bounded(planned).await
        })))
    }

    /// `p` as it is when its plan is at most [`MAX_PLAN_HEIGHT`] nodes tall; else its plan
    /// is run now and `p` becomes a scan of the result.
    ///
    /// DataFusion's operators recurse once per node when they start and when they poll
    /// their inputs, on whatever stack their task runs, and its optimizer passes take
    /// longer the taller a plan is: a query nesting thousands of operators is answered
    /// in parts of at most this height. The names marked for removal in the part run
    /// are still removed at the end ([`Planner::plan_query`]).
    ///
    /// # Errors
    /// Running the part fails (the query would have failed there).
    async fn bounded(&self, p: Planned) -> Result<Planned> {
        if self.depth <= SHALLOW_PLAN_DEPTH {
            return Ok(p);
        }
        let tall = |p: &LogicalPlan| taller_than(p, MAX_PLAN_HEIGHT);
        Ok(match p {
            Planned::Vector(v) if tall(&v) => Planned::Vector(self.materialize(v).await?),
            Planned::Scalar(v) if tall(&v) => Planned::Scalar(self.materialize(v).await?),
            other => other,
        })
    }

    /// Runs `p` and returns a plan that scans its rows.
    async fn materialize(&self, p: LogicalPlan) -> Result<LogicalPlan> {
        if has_mark_op(&p) {
            self.marked
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let schema = Arc::new(p.schema().as_arrow().clone());
        // DataFusion recurses once per node to start a plan up to MAX_PLAN_HEIGHT tall
        // (kilobytes per frame unoptimized): more than the red zone the planner's
        // recursion keeps, so it runs with a stack of its own.
        let need = Arc::new(std::sync::atomic::AtomicUsize::new(EXEC_STACK));
        let batches =
            crate::depth::OnStack::new(crate::query::run_plan(&self.ctx, p), need).await?;
        let schema = batches.first().map_or(schema, |b| b.schema());
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
        Ok(LogicalPlanBuilder::scan(
            "materialized",
            datafusion::datasource::provider_as_source(Arc::new(table)),
            None,
        )?
        .build()?)
    }

    /// Plans the node `e` (its operands through [`Planner::plan`]).
    async fn plan_node(&self, e: &P, steps: Steps) -> Result<Planned> {
        {
            match e {
                P::NumberLiteral(n) => Ok(Planned::Const(n.val)),
                P::StringLiteral(s) => Ok(Planned::Str(s.val.clone())),
                P::Paren(p) => self.plan(&p.expr, steps).await,
                P::Unary(u) => match self.plan(&u.expr, steps).await? {
                    Planned::Const(v) => Ok(Planned::Const(-v)),
                    Planned::Scalar(p) => Ok(Planned::Scalar(map_value(p, |v| -v, false)?)),
                    Planned::Vector(p) => Ok(Planned::Vector(map_value(p, |v| -v, true)?)),
                    _ => Err(bad(
                        "unary minus applies to scalars and instant vectors only",
                    )),
                },
                P::VectorSelector(vs) => Ok(Planned::Vector(
                    self.instant_select(vs, steps, false).await?,
                )),
                P::MatrixSelector(ms_) => {
                    let at = self.at_of(&ms_.vs.at, &ms_.vs.offset);
                    let (lo, hi) = Self::eval_span(steps, at);
                    let raw = self.raw(&ms_.vs, lo - ms(ms_.range), hi).await?;
                    Ok(Planned::Matrix(raw))
                }
                P::Subquery(sq) => {
                    let (inner, _) = self.subquery_input(sq, steps).await?;
                    Ok(Planned::Matrix(inner))
                }
                P::Call(c) => self.call(c, steps).await,
                P::Aggregate(a) => self.aggregate(a, steps).await,
                P::Binary(b) => self.binary(b, steps).await,
                P::Extension(_) => Err(bad("extension expressions are not supported")),
            }
        }
    }

    async fn instant_select(
        &self,
        vs: &VectorSelector,
        steps: Steps,
        sample_ts: bool,
    ) -> Result<LogicalPlan> {
        let at = self.at_of(&vs.at, &vs.offset);
        let routes = match &self.routing {
            Some(r) => r.routes(None, steps, at, self.lookback),
            None => vec![],
        };
        let Some(picked) = self.pick(vs).await? else {
            return Ok(empty_plan());
        };
        let Some(tiered) = self.tiered(routes, &picked) else {
            let (lo, hi) = Self::eval_span(steps, at);
            let (raw, series) = self
                .scan_picked(&picked, lo - self.lookback, hi, false)
                .await?;
            return self.instant_node(steps, at, sample_ts, raw, series);
        };
        let raw = match tiered.raw_steps() {
            Some(st) => {
                let (lo, hi) = Self::eval_span(st, at);
                self.scan_picked(&picked, lo - self.lookback, hi, false)
                    .await?
                    .0
            }
            None => empty_plan(),
        };
        let op = PromOp::InstantSelect {
            steps,
            lookback: self.lookback,
            at,
            sample_ts,
            series: Some(SeriesMap::new(picked.labels())),
        };
        self.range_node(op, raw, Some(&tiered), false).await
    }

    /// A [`PromOp::InstantSelect`] over `raw` (`(series_id, ts, value)` rows) and the
    /// selected series' labels.
    fn instant_node(
        &self,
        steps: Steps,
        at: At,
        sample_ts: bool,
        raw: LogicalPlan,
        series: Selected,
    ) -> Result<LogicalPlan> {
        Self::node(
            PromOp::InstantSelect {
                steps,
                lookback: self.lookback,
                at,
                sample_ts,
                series: Some(SeriesMap::new(series)),
            },
            raw,
        )
    }

    /// The raw rows of a [`Selection`] (as [`Planner::raw_ids`], pruning only) with its
    /// series' labels rewritten. `Some(None)` when no series matches; `None` when two
    /// series end up with the same labels, where only a per-step check (the row path)
    /// can tell whether that is an error.
    async fn select(
        &self,
        sel: &Selection<'_>,
        from: i64,
        to: i64,
    ) -> Result<Option<Option<(LogicalPlan, Selected)>>> {
        let Some((raw, mut series)) = self.raw_ids(sel.vs, from, to, false).await? else {
            return Ok(Some(None));
        };
        for op in &sel.ops {
            match relabelled(&series, std::slice::from_ref(op))? {
                Some(s) => series = s,
                None => return Ok(None),
            }
        }
        Ok(Some(Some((raw, series))))
    }

    /// A subquery's inner steps (absolute multiples of its step, Prometheus `engine.go`)
    /// and its `At`.
    fn subquery_steps(&self, sq: &SubqueryExpr, steps: Steps) -> (Steps, At) {
        let at = self.at_of(&sq.at, &sq.offset);
        let (lo, hi) = Self::eval_span(steps, at);
        let step = sq
            .step
            .map(ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.default_step);
        let range = ms(sq.range);
        let mut start = step * ((lo - range) / step);
        if start < lo - range {
            start += step;
        }
        let inner_steps = Steps {
            start,
            end: hi,
            step,
        };
        (inner_steps, at)
    }

    /// A subquery's inner plan (rows at the inner steps) and its `At`.
    async fn subquery_input(&self, sq: &SubqueryExpr, steps: Steps) -> Result<(LogicalPlan, At)> {
        let (inner_steps, at) = self.subquery_steps(sq, steps);
        let inner = match self.plan(&sq.expr, inner_steps).await? {
            Planned::Vector(p) | Planned::Scalar(p) => p,
            Planned::Const(v) => const_plan(&self.ctx, inner_steps, v)?,
            _ => return Err(bad("subquery is only allowed on instant vector")),
        };
        Ok((inner, at))
    }

    /// The raw rows and the window parameters of a range argument (`v[r]` or `q[r:s]`).
    /// With a range selector, or a subquery over a [`Selection`] (fused: see
    /// [`InnerSelect`]), the rows are `(series_id, ts, value)` and `series` gives the
    /// labels; with any other subquery, the rows are `(labels, ts, value)`.
    fn range_input<'a>(
        &'a self,
        e: &'a P,
        steps: Steps,
        f: Option<RangeFn>,
    ) -> BoxFuture<'a, Result<RangeInput>> {
        // Boxed, as `range_node`.
        Box::pin(self.range_input_unboxed(e, steps, f))
    }

    async fn range_input_unboxed(
        &self,
        e: &P,
        steps: Steps,
        f: Option<RangeFn>,
    ) -> Result<RangeInput> {
        match unwrap_paren(e) {
            P::MatrixSelector(m) => {
                let at = self.at_of(&m.vs.at, &m.vs.offset);
                let range = ms(m.range);
                let routes = match (&self.routing, f) {
                    (Some(r), Some(f)) => r.routes(Some(f), steps, at, range),
                    _ => vec![],
                };
                let Some(picked) = self.pick(&m.vs).await? else {
                    return Ok(RangeInput {
                        raw: empty_plan(),
                        range,
                        at,
                        series: None,
                        inner: None,
                        tiered: None,
                    });
                };
                let tiered = self.tiered(routes, &picked);
                // Raw samples for the steps raw answers (all of them without tiers).
                let raw_steps = match &tiered {
                    Some(t) => t.raw_steps(),
                    None => Some(steps),
                };
                let raw = match raw_steps {
                    Some(st) => {
                        let (lo, hi) = Self::eval_span(st, at);
                        self.scan_picked(&picked, lo - range, hi, false).await?.0
                    }
                    None => empty_plan(),
                };
                Ok(RangeInput {
                    raw,
                    range,
                    at,
                    series: Some(picked.labels()),
                    inner: None,
                    tiered,
                })
            }
            P::Subquery(sq) => {
                let range = ms(sq.range);
                if let Some(sel) = Selection::of(&sq.expr, &self.query) {
                    let (inner_steps, at) = self.subquery_steps(sq, steps);
                    let sel_at = sel.at(self);
                    let (lo, hi) = Self::eval_span(inner_steps, sel_at);
                    if let Some(r) = self.select(&sel, lo - self.lookback, hi).await? {
                        let (raw, series) = match r {
                            Some((raw, series)) => (raw, Some(series)),
                            None => (empty_plan(), None),
                        };
                        return Ok(RangeInput {
                            raw,
                            range,
                            at,
                            series,
                            inner: Some(InnerSelect {
                                steps: inner_steps,
                                lookback: self.lookback,
                                at: sel_at,
                            }),
                            tiered: None,
                        });
                    }
                }
                let (raw, at) = self.subquery_input(sq, steps).await?;
                Ok(RangeInput {
                    raw,
                    range,
                    at,
                    series: None,
                    inner: None,
                    tiered: None,
                })
            }
            _ => Err(bad(
                "expected a range vector (a range selector or a subquery)",
            )),
        }
    }

    /// `info(v, selector)` (Prometheus `info.go`): the info series the selector picks
    /// (by default `target_info`) are selected at the query's steps first, with their
    /// sample times; at each step, of several with the same name and identifying labels
    /// the one with the latest sample wins. `v`'s rows then get their data labels through
    /// the [`InfoUdf`].
    ///
    /// # Errors
    /// A second argument that is not a vector selector; a failing plan.
    async fn info(&self, args: &[&P], steps: Steps) -> Result<LogicalPlan> {
        use promql_parser::label::{Matcher, Matchers};
        let base = self.vector_arg(args[0], steps).await?;
        // The info series are read at the `@` and offset of the selector's own, else of
        // the first selector in `v` (Prometheus `infoSelectHints`).
        let mut when = first_selector(args[0]).map(|vs| (vs.at.clone(), vs.offset.clone()));
        let mut matchers = match args.get(1).map(|a| unwrap_paren(a)) {
            None => vec![],
            Some(P::VectorSelector(vs)) => {
                let mut ms = vs.matchers.matchers.clone();
                if let Some(n) = &vs.name {
                    ms.push(Matcher::new(MatchOp::Equal, NAME, n));
                }
                if vs.at.is_some() || vs.offset.is_some() {
                    when = Some((vs.at.clone(), vs.offset.clone()));
                }
                ms
            }
            Some(_) => return Err(bad("info: the second argument must be a vector selector")),
        };
        if !matchers.iter().any(|m| m.name == NAME) {
            matchers.push(Matcher::new(MatchOp::Equal, NAME, "target_info"));
        }
        let (name_matchers, data_matchers): (Vec<Matcher>, Vec<Matcher>) =
            matchers.iter().cloned().partition(|m| m.name == NAME);
        let mut info_vs = VectorSelector::new(None, Matchers::new(matchers));
        if let Some((at, offset)) = when {
            info_vs.at = at;
            info_vs.offset = offset;
        }
        let infos = self.instant_select(&info_vs, steps, true).await?;
        let infos = self.run_now(infos).await?;
        let table = crate::labels::InfoTable::new(&infos, name_matchers, data_matchers);
        let udf = datafusion::logical_expr::ScalarUDF::from(crate::labels::InfoUdf::new(table));
        Ok(LogicalPlanBuilder::from(base)
            .project(out_cols(
                udf.call(vec![ident("labels"), ident("ts")]),
                ident("ts"),
                ident("value"),
            ))?
            .filter(ident("labels").is_not_null())?
            .build()?)
    }

    /// Runs `p` while planning (a scalar argument or the info series that the rest of
    /// the plan reads as constants) and returns its rows.
    ///
    /// # Errors
    /// The plan fails.
    async fn run_now(&self, p: LogicalPlan) -> Result<crate::query::Rows> {
        Ok(crate::query::rows(
            &crate::query::run_plan(&self.ctx, p).await?,
        ))
    }

    /// A scalar's value at each of `steps` (NaN where it has none), by running its plan.
    ///
    /// # Errors
    /// The plan fails.
    async fn scalar_at_steps(&self, p: LogicalPlan, steps: Steps) -> Result<Vec<f64>> {
        let mut vals = vec![f64::NAN; steps.iter().count()];
        for (_, ts, v) in self.run_now(p).await? {
            let off = ts - steps.start;
            if off >= 0
                && off % steps.step == 0
                && let Some(x) = vals.get_mut((off / steps.step) as usize)
            {
                *x = v;
            }
        }
        Ok(vals)
    }

    async fn const_arg(&self, e: &P, steps: Steps, what: &str) -> Result<f64> {
        match self.plan(e, steps).await? {
            Planned::Const(v) => Ok(v),
            _ => Err(bad(format!(
                "{what}: only a constant number is supported as this argument"
            ))),
        }
    }

    async fn vector_arg(&self, e: &P, steps: Steps) -> Result<LogicalPlan> {
        match self.plan(e, steps).await? {
            Planned::Vector(p) => Ok(p),
            _ => Err(bad("expected an instant vector argument")),
        }
    }

    async fn call(&self, c: &Call, steps: Steps) -> Result<Planned> {
        let name = c.func.name;
        let args: Vec<&P> = c.args.args.iter().map(|b| b.as_ref()).collect();
        if let Some(f) = RangeFn::from_name(name) {
            // The range argument's position: quantile_over_time(φ, v[r]) has it second.
            let (ri, params): (usize, Vec<usize>) = match f {
                RangeFn::QuantileOverTime => (1, vec![0]),
                _ => (0, (1..args.len()).collect()),
            };
            let mut ps = vec![];
            let mut step_params = vec![];
            for i in params {
                match self.plan(args[i], steps).await? {
                    Planned::Const(v) => ps.push(v),
                    // A scalar that varies by step is evaluated first, as a scalar
                    // subquery would be; the function reads its value at each step.
                    Planned::Scalar(p) if f == RangeFn::QuantileOverTime => {
                        let vals = self.scalar_at_steps(p, steps).await?;
                        if let Some(bad_phi) = vals.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                            self.check_quantile(*bad_phi, name, args[i]);
                        }
                        step_params.push((ps.len(), vals));
                        ps.push(f64::NAN);
                    }
                    _ => {
                        return Err(bad(format!(
                            "{name}: only a constant number is supported as this argument"
                        )));
                    }
                }
            }
            f.validate_params(&ps).map_err(bad)?;
            if f == RangeFn::QuantileOverTime && step_params.is_empty() {
                self.check_quantile(ps[0], name, args[0]);
            }
            let RangeInput {
                raw,
                range,
                at,
                series,
                inner,
                tiered,
            } = self
                .range_input(args[ri], steps, step_params.is_empty().then_some(f))
                .await?;
            let op = |func, series: Option<Selected>| PromOp::RangeFunc {
                func,
                steps,
                range,
                at,
                params: ps,
                step_params,
                series: series.map(SeriesMap::new),
                inner,
            };
            if f == RangeFn::AbsentOverTime {
                let present = self
                    .range_node(
                        op(RangeFn::PresentOverTime, series),
                        raw,
                        tiered.as_ref(),
                        false,
                    )
                    .await?;
                let vs = match unwrap_paren(args[ri]) {
                    P::MatrixSelector(m) => Some(&m.vs),
                    _ => None,
                };
                return Ok(Planned::Vector(absent_plan(&self.ctx, steps, present, vs)?));
            }
            let keep_name = matches!(f, RangeFn::LastOverTime | RangeFn::FirstOverTime);
            // Known series: mark their names for removal at plan time (marked sets stay
            // distinct: the names are still there). When this call is the whole query,
            // nothing can read the names later: they are dropped now, unless that makes
            // two series equal (then the query's end finds where, see `plan_query`).
            let root = std::ptr::eq(c, self.root_call.load(std::sync::atomic::Ordering::Relaxed));
            let (series, named) = match series {
                Some(s) if root && !keep_name => {
                    match relabelled(&s, &[LabelOp::DropName, LabelOp::Finalize])? {
                        Some(unnamed) => (Some(unnamed), false),
                        None => (Some(s), true),
                    }
                }
                Some(s) if !keep_name => match relabelled(&s, &[LabelOp::DropName])? {
                    Some(unnamed) => {
                        self.marked
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        (Some(unnamed), false)
                    }
                    None => (Some(s), true),
                },
                s => (s, true),
            };
            let whole = root && (keep_name || !named);
            let plan = self
                .range_node(op(f, series), raw, tiered.as_ref(), whole)
                .await?;
            return Ok(Planned::Vector(if keep_name || !named {
                plan
            } else {
                drop_name(plan)?
            }));
        }
        match name {
            "time" => Ok(Planned::Scalar(steps_plan(&self.ctx, steps, |t| {
                t as f64 / 1000.0
            })?)),
            "start" => Ok(Planned::Const(self.start as f64 / 1000.0)),
            "end" => Ok(Planned::Const(self.end as f64 / 1000.0)),
            "step" => Ok(Planned::Const(self.step as f64 / 1000.0)),
            "range" => Ok(Planned::Const((self.end - self.start) as f64 / 1000.0)),
            "min_of" | "max_of" => {
                let a = self.const_arg(args[0], steps, name).await?;
                let b = self.const_arg(args[1], steps, name).await?;
                Ok(Planned::Const(if name == "min_of" {
                    crate::kernels::go_min(a, b)
                } else {
                    crate::kernels::go_max(a, b)
                }))
            }
            "pi" => Ok(Planned::Const(std::f64::consts::PI)),
            "vector" => match self.plan(args[0], steps).await? {
                Planned::Const(v) => Ok(Planned::Vector(const_plan(&self.ctx, steps, v)?)),
                Planned::Scalar(p) => Ok(Planned::Vector(p)),
                _ => Err(bad("vector() expects a scalar")),
            },
            "scalar" => {
                let v = self.vector_arg(args[0], steps).await?;
                Ok(Planned::Scalar(scalar_plan(&self.ctx, steps, v)?))
            }
            "timestamp" => match unwrap_paren(args[0]) {
                P::VectorSelector(vs) => {
                    let p = self.instant_select(vs, steps, true).await?;
                    Ok(Planned::Vector(drop_name(p)?))
                }
                other => {
                    let v = self.vector_arg(other, steps).await?;
                    let p = LogicalPlanBuilder::from(v)
                        .project(out_cols(
                            LabelOp::DropName.call(vec![ident("labels")]),
                            ident("ts"),
                            cast(ident("ts"), DataType::Float64) / lit(1000.0),
                        ))?
                        .build()?;
                    Ok(Planned::Vector(p))
                }
            },
            "absent" => {
                let v = self.vector_arg(args[0], steps).await?;
                let vs = match unwrap_paren(args[0]) {
                    P::VectorSelector(vs) => Some(vs),
                    _ => None,
                };
                Ok(Planned::Vector(absent_plan(&self.ctx, steps, v, vs)?))
            }
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
                if self.step > 0 {
                    let pos = self.pos_of_arg(name, None);
                    self.note(true, format!("PromQL warning: sort is ineffective for range queries since results are always ordered by labels {pos}"));
                }
                // Ordering is applied to the query's result (see `crate::query`).
                Ok(Planned::Vector(self.vector_arg(args[0], steps).await?))
            }
            "info" => Ok(Planned::Vector(self.info(&args, steps).await?)),
            "label_replace" | "label_join" => {
                let op = label_op(name, &args, &self.query)?;
                if let Some(mut sel) = Selection::of(args[0], &self.query) {
                    sel.ops.push(op.clone());
                    let at = sel.at(self);
                    let (lo, hi) = Self::eval_span(steps, at);
                    if let Some(r) = self.select(&sel, lo - self.lookback, hi).await? {
                        return Ok(Planned::Vector(match r {
                            Some((raw, series)) => {
                                self.instant_node(steps, at, false, raw, series)?
                            }
                            None => empty_plan(),
                        }));
                    }
                }
                let v = self.vector_arg(args[0], steps).await?;
                Ok(Planned::Vector(check_unique_labels(relabel(v, op)?)?))
            }
            "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => {
                let (v_arg, phis, qlabel): (&P, Vec<f64>, Option<String>) = match name {
                    "histogram_quantile" => (
                        args[1],
                        vec![self.const_arg(args[0], steps, name).await?],
                        None,
                    ),
                    "histogram_fraction" => (
                        args[2],
                        vec![
                            self.const_arg(args[0], steps, name).await?,
                            self.const_arg(args[1], steps, name).await?,
                        ],
                        None,
                    ),
                    _ => {
                        let label = match unwrap_paren(args[1]) {
                            P::StringLiteral(s) => s.val.clone(),
                            _ => return Err(bad("histogram_quantiles expects a label name")),
                        };
                        let mut phis = vec![];
                        for a in &args[2..] {
                            phis.push(self.const_arg(a, steps, name).await?);
                        }
                        (args[0], phis, Some(label))
                    }
                };
                let v = self.vector_arg(v_arg, steps).await?;
                let pos = self.pos_of_arg(name, Some(v_arg));
                let notes = Some((self.notes.clone(), pos));
                // Grouped by the labels without `le` (the name kept, so two metrics never
                // mix), then the name dropped: equal results are an error, as in Prometheus.
                let key = LabelOp::Drop(vec!["le".into()]).call(vec![ident("labels")]);
                let one = |f: AggFn,
                           v: LogicalPlan,
                           relabel: Option<LabelOp>|
                 -> Result<LogicalPlan> {
                    let dropped = LabelOp::DropName.call(vec![ident("labels")]);
                    let labels = match relabel {
                        Some(op) => op.call(vec![dropped]),
                        None => dropped,
                    };
                    Ok(LogicalPlanBuilder::from(v)
                        .aggregate(
                            vec![key.clone().alias("labels"), ident("ts")],
                            vec![
                                f.call_noting(vec![ident("labels"), ident("value")], notes.clone())
                                    .alias("value"),
                            ],
                        )?
                        .filter(ident("value").is_not_null())?
                        .project(out_cols(labels, ident("ts"), ident("value")))?
                        .build()?)
                };
                let plan = match name {
                    "histogram_fraction" => check_unique_labels(one(
                        AggFn::HistogramFraction(phis[0].to_bits(), phis[1].to_bits()),
                        v,
                        None,
                    )?)?,
                    "histogram_quantile" => {
                        self.check_quantile(phis[0], name, args[0]);
                        check_unique_labels(one(
                            AggFn::HistogramQuantile(phis[0].to_bits()),
                            v,
                            None,
                        )?)?
                    }
                    _ => {
                        let label = qlabel.unwrap_or_default();
                        let mut plans = vec![];
                        for (i, phi) in phis.iter().enumerate() {
                            self.check_quantile(*phi, name, args[2 + i]);
                            // Go prints these as `0.0`, `0.25`, `1.0`.
                            let mut q = crate::labels::format_value(*phi);
                            if q.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
                                q.push_str(".0");
                            }
                            let op = LabelOp::Set(label.clone(), q);
                            plans.push(one(
                                AggFn::HistogramQuantile(phi.to_bits()),
                                v.clone(),
                                Some(op),
                            )?);
                        }
                        let mut b = LogicalPlanBuilder::from(plans.remove(0));
                        for p in plans {
                            b = b.union(p)?;
                        }
                        check_unique_labels(b.build()?)?
                    }
                };
                Ok(Planned::Vector(plan))
            }
            "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour"
            | "minute" | "month" | "year" => {
                let v = if args.is_empty() {
                    steps_plan(&self.ctx, steps, |t| t as f64 / 1000.0)?
                } else {
                    drop_name(self.vector_arg(args[0], steps).await?)?
                };
                Ok(Planned::Vector(apply_value(
                    v,
                    ValueFn::Date(name.to_string()),
                    vec![],
                )?))
            }
            _ => {
                // Math functions: one vector argument and constant parameters.
                if crate::kernels::eval_math(name, 1.0, &[0.0, 1.0]).is_none() {
                    return Err(bad(format!("function {name:?} is not supported")));
                }
                let v = self.vector_arg(args[0], steps).await?;
                let mut ps = vec![];
                for a in &args[1..] {
                    ps.push(self.const_arg(a, steps, name).await?.to_bits());
                }
                let f = ValueFn::Math(name.to_string(), ps);
                Ok(Planned::Vector(apply_value(drop_name(v)?, f, vec![])?))
            }
        }
    }

    async fn aggregate(&self, a: &AggregateExpr, steps: Steps) -> Result<Planned> {
        let op = a.op.to_string();
        let v = self.vector_arg(&a.expr, steps).await?;
        let key = match &a.modifier {
            None => LabelOp::Keep(vec![]),
            Some(LabelModifier::Include(l)) => LabelOp::Keep(l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => {
                let mut names = l.labels.clone();
                names.push(NAME.into());
                LabelOp::Drop(names)
            }
        };
        let simple = match op.as_str() {
            "sum" => Some(SimpleAgg::Sum),
            "avg" => Some(SimpleAgg::Avg),
            "min" => Some(SimpleAgg::Min),
            "max" => Some(SimpleAgg::Max),
            "count" => Some(SimpleAgg::Count),
            "group" => Some(SimpleAgg::Group),
            "stddev" => Some(SimpleAgg::Stddev),
            "stdvar" => Some(SimpleAgg::Stdvar),
            _ => None,
        };
        let group = |f: Expr, v: LogicalPlan, key: LabelOp| -> Result<LogicalPlan> {
            if matches!(&key, LabelOp::Keep(k) if k.iter().any(|n| n == NAME)) {
                // `by (__name__)`: series with the same name form one group whether or
                // not their names are marked for removal, and the group's name is marked
                // when any of its series' is (Prometheus's delayed name removal).
                let unmarked = LabelOp::Drop(vec![DROP_MARK.into()])
                    .call(vec![key.call(vec![ident("labels")])]);
                let mark = LabelOp::Keep(vec![DROP_MARK.into()]).call(vec![ident("labels")]);
                let empty = lit(ScalarValue::Binary(Some(vec![])));
                return Ok(LogicalPlanBuilder::from(v)
                    .aggregate(
                        vec![unmarked.alias("labels"), ident("ts")],
                        vec![f.alias("value"), max(mark).alias("mark")],
                    )?
                    .project(out_cols(
                        when(ident("mark").eq(empty), ident("labels"))
                            .otherwise(LabelOp::DropName.call(vec![ident("labels")]))?,
                        ident("ts"),
                        ident("value"),
                    ))?
                    .build()?);
            }
            if matches!(&key, LabelOp::Keep(k) if k.is_empty()) {
                // One group per step, all with the empty label set: grouping by the
                // label column too would rewrite and hash every row's labels.
                // (Grouping by the empty label set as a constant key instead of adding it
                // after was slower: two group columns take DataFusion's row-format group
                // table, `ts` alone its primitive one.)
                let empty = lit(ScalarValue::Binary(Some(crate::labels::encode(&[]))));
                return Ok(LogicalPlanBuilder::from(labels_unread(v)?)
                    .aggregate(vec![ident("ts")], vec![f.alias("value")])?
                    .project(vec![empty.alias("labels"), ident("ts"), ident("value")])?
                    .build()?);
            }
            // The aggregate's columns are `labels, ts, value` as they are.
            Ok(LogicalPlanBuilder::from(v)
                .aggregate(
                    vec![key.call(vec![ident("labels")]).alias("labels"), ident("ts")],
                    vec![f.alias("value")],
                )?
                .build()?)
        };
        if let Some(s) = simple {
            return Ok(Planned::Vector(group(
                AggFn::Simple(s).call(vec![ident("value")]),
                v,
                key,
            )?));
        }
        let param = a.param.as_deref();
        match op.as_str() {
            "quantile" => {
                let pe = param.ok_or_else(|| bad("quantile needs φ"))?;
                let (v, p, c) = self.param_expr(v, pe, steps).await?;
                match c {
                    Some(phi) => {
                        self.check_quantile(phi, "quantile", pe);
                        Ok(Planned::Vector(group(
                            AggFn::Quantile(phi.to_bits()).call(vec![ident("value")]),
                            v,
                            key,
                        )?))
                    }
                    None => Ok(Planned::Vector(group(
                        AggFn::QuantileDyn.call(vec![ident("value"), p]),
                        v,
                        key,
                    )?)),
                }
            }
            "count_values" => {
                let label = match param.map(unwrap_paren) {
                    Some(P::StringLiteral(s)) => s.val.clone(),
                    _ => return Err(bad("count_values expects a string label name")),
                };
                if !valid_label_name(&label) {
                    return Err(bad(format!("invalid label name {label:?}")));
                }
                let keyed = LogicalPlanBuilder::from(v)
                    .project(vec![
                        LabelOp::SetFromValue(label)
                            .call(vec![key.call(vec![ident("labels")]), ident("value")])
                            .alias("labels"),
                        ident("ts"),
                        ident("value"),
                    ])?
                    .build()?;
                let p = LogicalPlanBuilder::from(keyed)
                    .aggregate(
                        vec![ident("labels"), ident("ts")],
                        vec![count(lit(1)).alias("n")],
                    )?
                    .project(out_cols(
                        ident("labels"),
                        ident("ts"),
                        cast(ident("n"), DataType::Float64),
                    ))?
                    .build()?;
                Ok(Planned::Vector(p))
            }
            "topk" | "bottomk" | "limitk" => {
                let pe = param.ok_or_else(|| bad("k is missing"))?;
                let (v, p, c) = self.param_expr(v, pe, steps).await?;
                let limit = match c {
                    Some(k) if k.is_nan() => return Err(bad("Parameter value is NaN")),
                    Some(k) => lit(if k >= i64::MAX as f64 {
                        i64::MAX
                    } else {
                        k as i64
                    }),
                    None => cast(p, DataType::Int64),
                };
                // Ties go to the series whose label set sorts first, in every step: the
                // series Prometheus keeps (its heap in `engine.go`'s `aggregation` replaces
                // an element only on a strictly better value, and series arrive sorted by
                // labels), so a range query's answer does not flip between tied series.
                let order: Vec<SortExpr> = match op.as_str() {
                    "topk" => vec![
                        isnan(ident("value")).sort(true, false),
                        ident("value").sort(false, false),
                        ident("labels").sort(true, false),
                    ],
                    "bottomk" => vec![
                        isnan(ident("value")).sort(true, false),
                        ident("value").sort(true, false),
                        ident("labels").sort(true, false),
                    ],
                    _ => vec![ident("labels").sort(true, false)],
                };
                let rn = row_number()
                    .partition_by(vec![key.call(vec![ident("labels")]), ident("ts")])
                    .order_by(order)
                    .build()?
                    .alias("rn");
                let p = LogicalPlanBuilder::from(v)
                    .window(vec![rn])?
                    .filter(cast(ident("rn"), DataType::Int64).lt_eq(limit))?
                    .project(vec![ident("labels"), ident("ts"), ident("value")])?
                    .build()?;
                Ok(Planned::Vector(p))
            }
            "limit_ratio" => {
                let r = self
                    .const_arg(param.ok_or_else(|| bad("ratio is missing"))?, steps, &op)
                    .await?;
                if r.is_nan() {
                    return Err(bad("Ratio value is NaN"));
                }
                let r = r.clamp(-1.0, 1.0);
                let p = LogicalPlanBuilder::from(v)
                    .filter(
                        ValueFn::Ratio(r.to_bits())
                            .call(vec![ident("labels")])
                            .is_not_null(),
                    )?
                    .build()?;
                Ok(Planned::Vector(p))
            }
            other => Err(bad(format!("aggregation {other:?} is not supported"))),
        }
    }

    async fn binary(&self, b: &BinaryExpr, steps: Steps) -> Result<Planned> {
        let opname = b.op.to_string();
        let modifier = b.modifier.as_ref();
        let return_bool = modifier.is_some_and(|m| m.return_bool);
        if opname == "or" {
            let mut plans = vec![];
            for o in or_operands(b) {
                plans.push(self.vector_arg(o, steps).await?);
            }
            return Ok(Planned::Vector(or_op(
                plans,
                modifier.and_then(|m| m.matching.as_ref()),
            )?));
        }
        if matches!(opname.as_str(), "and" | "unless") {
            let l = self.vector_arg(&b.lhs, steps).await?;
            let r = self.vector_arg(&b.rhs, steps).await?;
            return Ok(Planned::Vector(set_op(
                &opname,
                l,
                r,
                modifier.and_then(|m| m.matching.as_ref()),
            )?));
        }
        let op = match opname.as_str() {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "^" => BinOp::Pow,
            "atan2" => BinOp::Atan2,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            ">" => BinOp::Gt,
            "<" => BinOp::Lt,
            ">=" => BinOp::Ge,
            "<=" => BinOp::Le,
            other => return Err(bad(format!("operator {other:?} is not supported"))),
        };
        let lhs = self.plan(&b.lhs, steps).await?;
        let rhs = self.plan(&b.rhs, steps).await?;
        let drop = !op.is_comparison() || return_bool;
        match (lhs, rhs) {
            (Planned::Const(l), Planned::Const(r)) => {
                let (v, keep) = op.apply(l, r);
                Ok(Planned::Const(if op.is_comparison() {
                    if keep { 1.0 } else { 0.0 }
                } else {
                    v
                }))
            }
            (Planned::Vector(l), Planned::Vector(r)) => Ok(Planned::Vector(vector_binop(
                op,
                return_bool,
                l,
                r,
                modifier,
            )?)),
            (Planned::Vector(v), s) => {
                let f = ValueFn::Bin {
                    op,
                    bool_: return_bool,
                    keep_rhs: false,
                };
                Ok(Planned::Vector(self.vs_binop(v, s, f, false, drop, steps)?))
            }
            (s, Planned::Vector(v)) => {
                let f = ValueFn::Bin {
                    op,
                    bool_: return_bool,
                    keep_rhs: true,
                };
                Ok(Planned::Vector(self.vs_binop(v, s, f, true, drop, steps)?))
            }
            (l, r) => {
                // Scalar with scalar: one row per step.
                let f = ValueFn::Bin {
                    op,
                    bool_: op.is_comparison(),
                    keep_rhs: false,
                };
                let l = self.as_scalar_plan(l, steps)?;
                let r = self.as_scalar_plan(r, steps)?;
                let r = LogicalPlanBuilder::from(r)
                    .project(vec![
                        ident("ts").alias("r_ts"),
                        ident("value").alias("r_value"),
                    ])?
                    .build()?;
                let p = LogicalPlanBuilder::from(l)
                    .join(r, JoinType::Inner, (vec!["ts"], vec!["r_ts"]), None)?
                    .project(out_cols(
                        ident("labels"),
                        ident("ts"),
                        f.call(vec![ident("value"), ident("r_value")]),
                    ))?
                    .build()?;
                Ok(Planned::Scalar(p))
            }
        }
    }

    fn as_scalar_plan(&self, p: Planned, steps: Steps) -> Result<LogicalPlan> {
        match p {
            Planned::Const(v) => const_plan(&self.ctx, steps, v),
            Planned::Scalar(p) => Ok(p),
            _ => Err(bad("expected a scalar operand")),
        }
    }

    /// Vector with scalar; `swap` when the scalar is on the left.
    fn vs_binop(
        &self,
        v: LogicalPlan,
        s: Planned,
        f: ValueFn,
        swap: bool,
        drop: bool,
        steps: Steps,
    ) -> Result<LogicalPlan> {
        let labels = if drop {
            LabelOp::DropName.call(vec![ident("labels")])
        } else {
            ident("labels")
        };
        let (input, sv) = match s {
            Planned::Const(c) => (v, lit(c)),
            other => {
                let sp = self.as_scalar_plan(other, steps)?;
                let sp = LogicalPlanBuilder::from(sp)
                    .project(vec![
                        ident("ts").alias("s_ts"),
                        ident("value").alias("s_value"),
                    ])?
                    .build()?;
                let j = LogicalPlanBuilder::from(v)
                    .join(sp, JoinType::Inner, (vec!["ts"], vec!["s_ts"]), None)?
                    .build()?;
                (j, ident("s_value"))
            }
        };
        let args = if swap {
            vec![sv, ident("value")]
        } else {
            vec![ident("value"), sv]
        };
        Ok(LogicalPlanBuilder::from(input)
            .project(out_cols(labels, ident("ts"), f.call(args)))?
            .filter(ident("value").is_not_null())?
            .build()?)
    }
}

/// `value` mapped by an ordinary expression, optionally dropping the metric name.
fn map_value(p: LogicalPlan, f: impl Fn(Expr) -> Expr, drop: bool) -> Result<LogicalPlan> {
    let labels = if drop {
        LabelOp::DropName.call(vec![ident("labels")])
    } else {
        ident("labels")
    };
    Ok(LogicalPlanBuilder::from(p)
        .project(out_cols(labels, ident("ts"), f(ident("value"))))?
        .build()?)
}

/// Marks `__name__` for removal at the end of the query ([`LabelOp::DropName`]): two
/// series that become equal then fail there ([`Planner::plan_query`]), not here.
fn drop_name(p: LogicalPlan) -> Result<LogicalPlan> {
    map_value(p, |v| v, true)
}

/// The first vector selector in `e` (depth first, left to right), if any.
fn first_selector(e: &P) -> Option<&VectorSelector> {
    match e {
        P::VectorSelector(vs) => Some(vs),
        P::MatrixSelector(m) => Some(&m.vs),
        P::Paren(p) => first_selector(&p.expr),
        P::Unary(u) => first_selector(&u.expr),
        P::Subquery(sq) => first_selector(&sq.expr),
        P::Aggregate(a) => first_selector(&a.expr),
        P::Binary(b) => first_selector(&b.lhs).or_else(|| first_selector(&b.rhs)),
        P::Call(c) => c.args.args.iter().find_map(|a| first_selector(a)),
        _ => None,
    }
}

/// Whether an expression's result has no metric name in any case: an aggregation
/// that keeps only some labels (not `__name__`) or drops some (and the name).
fn drops_name(e: &P) -> bool {
    match unwrap_paren(e) {
        P::Aggregate(a) => {
            let op = a.op.to_string();
            if matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio") {
                return false;
            }
            match &a.modifier {
                None | Some(LabelModifier::Exclude(_)) => true,
                Some(LabelModifier::Include(l)) => !l.labels.iter().any(|n| n == NAME),
            }
        }
        _ => false,
    }
}

/// A scan of `points` (`(encoded labels, (step ms, value) points)` per series): one
/// row per point, each with its series' labels, in buffers sized once.
///
/// # Errors
/// Building the batch or the plan.
fn points_plan<L: AsRef<[u8]>>(
    ctx: &SessionContext,
    points: &[(L, crate::tiers::Points)],
) -> Result<LogicalPlan> {
    let (n, bytes) = points.iter().fold((0, 0), |(n, b), (l, p)| {
        (n + p.len(), b + l.as_ref().len() * p.len())
    });
    let mut labels = datafusion::arrow::array::BinaryBuilder::with_capacity(n, bytes);
    let (mut ts, mut values) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (l, points) in points {
        for &(t, v) in points {
            labels.append_value(l);
            ts.push(t);
            values.push(v);
        }
    }
    let batch = RecordBatch::try_new(
        crate::exec::prom_schema(),
        vec![
            Arc::new(labels.finish()),
            Arc::new(Int64Array::from(ts)),
            Arc::new(Float64Array::from(values)),
        ],
    )?;
    Ok(ctx.read_batch(batch)?.into_unoptimized_plan())
}

/// Whether a plan marks names for removal at run time (a [`LabelOp::DropName`] UDF).
fn has_mark_op(p: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNode;
    p.exists(|node| {
        Ok(node.expressions().iter().any(|e| {
            e.exists(|x| {
                Ok(matches!(x, Expr::ScalarFunction(f) if f.func.name() == crate::labels::MARK_UDF))
            })
            .unwrap_or(false)
        }))
    })
    .unwrap_or(true)
}

/// The [`LabelOp`] of a `label_replace(v, dst, replacement, src, regex)` or
/// `label_join(v, dst, sep, src...)` call (`args` include `v`; `query` the query's text),
/// its arguments checked as Prometheus checks them (`functions.go`: `label_join`'s
/// source label names, then the destination label name).
fn label_op(name: &str, args: &[&P], query: &str) -> Result<LabelOp> {
    let valid = |s: &str| valid_label_name(s) && !invalid_utf8_in_go(s, query);
    let mut strs = vec![];
    for a in &args[1..] {
        match unwrap_paren(a) {
            P::StringLiteral(s) => strs.push(s.val.clone()),
            _ => return Err(bad(format!("{name} expects string arguments"))),
        }
    }
    if name == "label_replace" {
        let [dst, replacement, src, regex] =
            <[String; 4]>::try_from(strs).map_err(|_| bad("label_replace expects 5 arguments"))?;
        if regex::Regex::new(&format!("^(?s:{regex})$")).is_err() {
            return Err(bad(format!(
                "invalid regular expression in label_replace(): {regex}"
            )));
        }
        if !valid(&dst) {
            return Err(bad(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        return Ok(LabelOp::Replace {
            dst,
            replacement,
            src,
            regex,
        });
    }
    if strs.len() < 2 {
        return Err(bad("label_join needs a destination label and a separator"));
    }
    if let Some(src) = strs[2..].iter().find(|s| !valid(s)) {
        return Err(bad(format!(
            "invalid source label name in label_join(): {src}"
        )));
    }
    let dst = strs[0].clone();
    if !valid(&dst) {
        return Err(bad(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(LabelOp::Join {
        dst,
        sep: strs[1].clone(),
        srcs: strs[2..].to_vec(),
    })
}

/// `series` with `op` applied to their labels, or `None` when two of them end up with
/// the same label set.
fn relabelled(series: &[(i64, Vec<u8>)], ops: &[LabelOp]) -> Result<Option<Selected>> {
    let mut sets: Vec<Vec<u8>> = series.iter().map(|s| s.1.clone()).collect();
    for op in ops {
        op.apply_all(&mut sets)?;
    }
    let mut sorted: Vec<&[u8]> = sets.iter().map(Vec::as_slice).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Ok(None);
    }
    Ok(Some(series.iter().map(|s| s.0).zip(sets).collect()))
}

/// Selected series: `(series_id, encoded labels)`.
type Selected = Vec<(i64, Vec<u8>)>;

/// The series a selector picks ([`Planner::pick`]), and how many series its metrics have.
struct Picked {
    series: Vec<Arc<crate::selector::SeriesLabels>>,
    candidates: usize,
}

impl Picked {
    /// `(series_id, encoded labels)` of each series.
    fn labels(&self) -> Selected {
        self.series
            .iter()
            .map(|s| (s.series_id, crate::labels::encode(&s.labels)))
            .collect()
    }

    /// The metric names, sorted and deduplicated.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.series.iter().map(|s| s.get(NAME)).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// A range argument planned: see [`Planner::range_input`].
struct RangeInput {
    raw: LogicalPlan,
    /// Window length, ms.
    range: i64,
    at: At,
    series: Option<Selected>,
    inner: Option<InnerSelect>,
    /// Where some steps read a rollup tier: the routes, and the series to read there
    /// (`raw` then covers only the raw routes' steps).
    tiered: Option<Tiered>,
}

/// A selector whose steps are routed to rollup tiers ([`crate::tiers`]).
struct Tiered {
    routes: Vec<crate::tiers::Route>,
    names: Vec<String>,
    ids: Vec<i64>,
}

impl Tiered {
    /// `None` when every route reads raw samples.
    fn of(routes: Vec<crate::tiers::Route>, picked: &Picked) -> Option<Tiered> {
        routes
            .iter()
            .any(|r| r.source != crate::tiers::Source::Raw)
            .then(|| Tiered {
                routes,
                names: picked.names().into_iter().map(str::to_string).collect(),
                ids: picked.series.iter().map(|s| s.series_id).collect(),
            })
    }

    /// The steps from the first to the last raw route's, `None` without raw routes.
    fn raw_steps(&self) -> Option<Steps> {
        let mut raw = self
            .routes
            .iter()
            .filter(|r| r.source == crate::tiers::Source::Raw);
        let first = raw.next()?.steps;
        let last = raw.next_back().map_or(first, |r| r.steps);
        Some(Steps {
            start: first.start,
            end: last.end,
            step: first.step,
        })
    }
}

/// A selector, perhaps under `label_replace` / `label_join` calls: its series and their
/// output labels are known at plan time, so the relabelling is applied to the series'
/// label sets rather than to every output row.
struct Selection<'a> {
    vs: &'a VectorSelector,
    /// Label rewrites, innermost first.
    ops: Vec<LabelOp>,
}

impl<'a> Selection<'a> {
    /// `e` as a selection, or `None` for any other expression (or invalid label function
    /// arguments, which the row path reports).
    fn of(e: &'a P, query: &str) -> Option<Selection<'a>> {
        match unwrap_paren(e) {
            P::VectorSelector(vs) => Some(Selection { vs, ops: vec![] }),
            P::Call(c) if matches!(c.func.name, "label_replace" | "label_join") => {
                let args: Vec<&P> = c.args.args.iter().map(|b| b.as_ref()).collect();
                let op = label_op(c.func.name, &args, query).ok()?;
                let mut sel = Selection::of(args.first()?, query)?;
                sel.ops.push(op);
                Some(sel)
            }
            _ => None,
        }
    }

    fn at(&self, p: &Planner) -> At {
        p.at_of(&self.vs.at, &self.vs.offset)
    }
}

fn relabel(p: LogicalPlan, op: LabelOp) -> Result<LogicalPlan> {
    Ok(LogicalPlanBuilder::from(p)
        .project(out_cols(
            op.call(vec![ident("labels")]),
            ident("ts"),
            ident("value"),
        ))?
        .build()?)
}

fn check_unique_labels(p: LogicalPlan) -> Result<LogicalPlan> {
    Planner::node(
        PromOp::CheckUnique {
            key: "labels".into(),
            ts: "ts".into(),
            show: None,
            message: "vector cannot contain metrics with the same labelset".into(),
        },
        p,
    )
}

fn apply_value(p: LogicalPlan, f: ValueFn, extra: Vec<Expr>) -> Result<LogicalPlan> {
    let mut args = vec![ident("value")];
    args.extend(extra);
    Ok(LogicalPlanBuilder::from(p)
        .project(out_cols(ident("labels"), ident("ts"), f.call(args)))?
        .filter(ident("value").is_not_null())?
        .build()?)
}

/// A table of the steps with `value = f(ts)` and empty labels.
fn steps_plan(ctx: &SessionContext, steps: Steps, f: impl Fn(i64) -> f64) -> Result<LogicalPlan> {
    let ts: Vec<i64> = steps.iter().collect();
    let n = ts.len();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "labels",
            Arc::new(BinaryArray::from_iter_values(std::iter::repeat_n(b"", n))) as _,
        ),
        (
            "value",
            Arc::new(Float64Array::from_iter_values(ts.iter().map(|t| f(*t)))) as _,
        ),
        ("ts", Arc::new(Int64Array::from(ts)) as _),
    ])?;
    Ok(
        LogicalPlanBuilder::from(ctx.read_batch(batch)?.into_unoptimized_plan())
            .project(vec![ident("labels"), ident("ts"), ident("value")])?
            .build()?,
    )
}

fn const_plan(ctx: &SessionContext, steps: Steps, v: f64) -> Result<LogicalPlan> {
    steps_plan(ctx, steps, |_| v)
}

/// `scalar(v)`: the single sample's value at each step, NaN when there is not exactly one.
fn scalar_plan(ctx: &SessionContext, steps: Steps, v: LogicalPlan) -> Result<LogicalPlan> {
    let agg = LogicalPlanBuilder::from(v)
        .aggregate(
            vec![ident("ts").alias("v_ts")],
            vec![
                count(lit(1)).alias("n"),
                AggFn::Simple(SimpleAgg::Max)
                    .call(vec![ident("value")])
                    .alias("v"),
            ],
        )?
        .build()?;
    Ok(LogicalPlanBuilder::from(steps_plan(ctx, steps, |_| 0.0)?)
        .join(agg, JoinType::Left, (vec!["ts"], vec!["v_ts"]), None)?
        .project(out_cols(
            ident("labels"),
            ident("ts"),
            when(ident("n").eq(lit(1i64)), ident("v")).otherwise(lit(f64::NAN))?,
        ))?
        .build()?)
}

/// `absent(v)`: 1 at the steps where `v` has no sample, labelled with the selector's
/// equality matchers (Prometheus `functions.go` `createLabelsForAbsentFunction`).
fn absent_plan(
    ctx: &SessionContext,
    steps: Steps,
    v: LogicalPlan,
    vs: Option<&VectorSelector>,
) -> Result<LogicalPlan> {
    let mut labels: Vec<(String, String)> = vec![];
    let mut dup: Vec<String> = vec![];
    if let Some(vs) = vs {
        let ms: Vec<(String, String)> = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| matches!(m.op, MatchOp::Equal) && m.name != NAME)
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        let all_names: Vec<&str> = vs
            .matchers
            .matchers
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        for (n, val) in ms {
            if all_names.iter().filter(|x| **x == n).count() > 1
                || labels.iter().any(|(k, _)| *k == n)
            {
                dup.push(n);
            } else {
                labels.push((n, val));
            }
        }
        labels.retain(|(n, _)| !dup.contains(n));
    }
    labels.sort();
    let enc = crate::labels::encode(&labels);
    let present = LogicalPlanBuilder::from(v)
        .aggregate(vec![ident("ts").alias("p_ts")], Vec::<Expr>::new())?
        .build()?;
    Ok(LogicalPlanBuilder::from(steps_plan(ctx, steps, |_| 1.0)?)
        .join(
            present,
            JoinType::LeftAnti,
            (vec!["ts"], vec!["p_ts"]),
            None,
        )?
        .project(out_cols(
            lit(ScalarValue::Binary(Some(enc))),
            ident("ts"),
            ident("value"),
        ))?
        .build()?)
}

/// Whether the string literal `s` (as promql-parser decoded it) of `query` is not valid
/// UTF-8 as Prometheus reads it (see [`go_invalid_literals`]). Only a literal with a
/// character from U+0080 to U+00FF can be one, so the query is scanned for those only.
fn invalid_utf8_in_go(s: &str, query: &str) -> bool {
    s.chars().any(|c| ('\u{80}'..='\u{ff}').contains(&c))
        && go_invalid_literals(query).iter().any(|(d, _)| d == s)
}

/// The quoted string literals of `query` that are not valid UTF-8 as Prometheus reads
/// them: `(the literal as promql-parser decodes it, the literal as written, quotes
/// included)`.
///
/// Go's `strconv.Unquote` (Prometheus `strutil.Unquote`) makes a `\xHH` or octal `\OOO`
/// escape one byte, so `"\xff"` is the byte 0xff, not valid UTF-8, and `label_replace`
/// rejects it as a label name. promql-parser, whose strings are Rust `String`s, decodes
/// the same escape as the character U+00FF. Raw (backquoted) strings have no escapes;
/// `#` comments are skipped.
pub fn go_invalid_literals(query: &str) -> Vec<(String, &str)> {
    let b = query.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let oct = |c: u8| (c as char).to_digit(8);
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' | b'`' => {
                let end = if b[i] == b'#' { b'\n' } else { b'`' };
                i += 1;
                while i < b.len() && b[i] != end {
                    i += 1;
                }
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                let start = i;
                let mut bytes = vec![];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] != b'\\' || i + 1 >= b.len() {
                        bytes.push(b[i]);
                        i += 1;
                        continue;
                    }
                    let byte = match &b[i + 1..] {
                        [b'x', h, l, ..] => hex(*h).zip(hex(*l)).map(|(h, l)| h * 16 + l),
                        [o, m, l, ..] => oct(*o)
                            .zip(oct(*m))
                            .zip(oct(*l))
                            .map(|((o, m), l)| o * 64 + m * 8 + l),
                        _ => None,
                    };
                    match byte {
                        Some(v) => {
                            bytes.push(v as u8);
                            i += 4;
                        }
                        // Any other escape is ASCII or a whole character in Go too.
                        None => {
                            bytes.push(b'_');
                            i += 2;
                        }
                    }
                }
                i += 1;
                let literal = &query[start..i.min(b.len())];
                if std::str::from_utf8(&bytes).is_err()
                    && let Ok(d) = promql_parser::util::unquote_string(literal)
                {
                    out.push((d, literal));
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with("__") || s == NAME || (s.starts_with("__") && s.len() > 2)
}

/// The matching key of a binary operation.
fn match_key(matching: Option<&LabelModifier>) -> LabelOp {
    match matching {
        Some(LabelModifier::Include(l)) => LabelOp::Keep(l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => {
            let mut n = l.labels.clone();
            n.push(NAME.into());
            LabelOp::Drop(n)
        }
        None => LabelOp::Drop(vec![NAME.into()]),
    }
}

/// `a` where it is not null, else `b`: `coalesce` as a `CASE`, which needs no simplifier
/// pass (PromQL sessions run without DataFusion's expression simplifier, and
/// DataFusion's `coalesce` UDF expects it to have been rewritten).
fn coalesce2(a: Expr, b: Expr) -> Result<Expr> {
    Ok(when(a.clone().is_not_null(), a).otherwise(b)?)
}

fn keyed(p: LogicalPlan, key: &LabelOp, prefix: &str) -> Result<LogicalPlan> {
    Ok(LogicalPlanBuilder::from(p)
        .project(vec![
            ident("labels").alias(format!("{prefix}labels")),
            ident("ts").alias(format!("{prefix}ts")),
            ident("value").alias(format!("{prefix}value")),
            key.clone()
                .call(vec![ident("labels")])
                .alias(format!("{prefix}key")),
        ])?
        .build()?)
}

fn on(l: &str, r: &str) -> (Vec<Column>, Vec<Column>) {
    (
        vec![
            Column::from_name(format!("{l}key")),
            Column::from_name(format!("{l}ts")),
        ],
        vec![
            Column::from_name(format!("{r}key")),
            Column::from_name(format!("{r}ts")),
        ],
    )
}

/// The operands of a chain `a or b or c ...` whose `or`s match alike (the same `on` or
/// `ignoring`, or none), left to right: `(a or b) or c` keeps the samples of `c` whose
/// match key is in neither `a` nor `b` (the samples `b` adds have `b`'s keys), so it is
/// `or_op([a, b, c])`.
fn or_operands(b: &BinaryExpr) -> Vec<&P> {
    let matching = |b: &BinaryExpr| b.modifier.as_ref().and_then(|m| m.matching.clone());
    let mut rev = vec![b.rhs.as_ref()];
    let mut lhs = unwrap_paren(&b.lhs);
    while let P::Binary(inner) = lhs {
        if inner.op.to_string() != "or" || matching(inner) != matching(b) {
            break;
        }
        rev.push(inner.rhs.as_ref());
        lhs = unwrap_paren(&inner.lhs);
    }
    rev.push(lhs);
    rev.reverse();
    rev
}

/// `operands[0] or operands[1] or ...` (Prometheus `engine.go` `VectorOr`, chained): every
/// sample of the first, then of each next operand the samples whose match key no earlier
/// operand has at their step.
///
/// Each operand is read once: the operands' rows, tagged with their position, go through
/// one union, and a window ranks each (match key, step) partition by position, keeping
/// rank 1. (A union of the left side with the right side anti-joined to the left read the
/// left side twice, so a chain of n `or`s read its first operand 2^n times.)
fn or_op(operands: Vec<LogicalPlan>, matching: Option<&LabelModifier>) -> Result<LogicalPlan> {
    let key = match_key(matching);
    let tagged = operands
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Arc::new(
                LogicalPlanBuilder::from(p)
                    .project(vec![
                        ident("labels"),
                        ident("ts"),
                        ident("value"),
                        key.clone().call(vec![ident("labels")]).alias("key"),
                        lit(i as i64).alias("side"),
                    ])?
                    .build()?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let all = LogicalPlan::Union(datafusion::logical_expr::Union::try_new(tagged)?);
    let first = rank()
        .partition_by(vec![ident("key"), ident("ts")])
        .order_by(vec![ident("side").sort(true, false)])
        .build()?
        .alias("first");
    Ok(LogicalPlanBuilder::from(all)
        .window(vec![first])?
        .filter(cast(ident("first"), DataType::Int64).eq(lit(1i64)))?
        .project(vec![ident("labels"), ident("ts"), ident("value")])?
        .build()?)
}

/// Whether `p` has a path of more than `h` nodes from its root to a leaf.
fn taller_than(p: &LogicalPlan, h: usize) -> bool {
    h == 0 || p.inputs().iter().any(|i| taller_than(i, h - 1))
}

/// The tallest plan (nodes from its root to its deepest leaf) the planner builds before
/// it runs it as a part of the query ([`Planner::bounded`]). Ordinary queries stay under
/// it (`sum(rate(x[5m])) / sum(rate(y[5m])) > 0.1` is 25 nodes tall).
pub const MAX_PLAN_HEIGHT: usize = 96;

/// Stack a plan at most [`MAX_PLAN_HEIGHT`] tall is started and run on when the planner
/// runs it ([`Planner::materialize`]), bytes.
const EXEC_STACK: usize = 4 << 20;

/// The deepest query whose plans need no measuring against [`MAX_PLAN_HEIGHT`]: one
/// level of an expression adds at most 8 nodes to a plan's height (a vector matching
/// operator: both sides' keys, the join, its checks, filter and projection), and
/// [`Planner::plan_query`] a few more at the top.
pub const SHALLOW_PLAN_DEPTH: usize = 10;

fn set_op(
    op: &str,
    l: LogicalPlan,
    r: LogicalPlan,
    matching: Option<&LabelModifier>,
) -> Result<LogicalPlan> {
    let key = match_key(matching);
    let lk = keyed(l, &key, "l_")?;
    let rk = keyed(r, &key, "r_")?;
    let (lc, rc) = on("l_", "r_");
    let back = |p: LogicalPlanBuilder, pre: &str| -> Result<LogicalPlan> {
        Ok(p.project(out_cols(
            ident(format!("{pre}labels")),
            ident(format!("{pre}ts")),
            ident(format!("{pre}value")),
        ))?
        .build()?)
    };
    match op {
        "and" => back(
            LogicalPlanBuilder::from(lk).join_detailed(
                rk,
                JoinType::LeftSemi,
                (lc, rc),
                None,
                NullEquality::NullEqualsNothing,
            )?,
            "l_",
        ),
        "unless" => back(
            LogicalPlanBuilder::from(lk).join_detailed(
                rk,
                JoinType::LeftAnti,
                (lc, rc),
                None,
                NullEquality::NullEqualsNothing,
            )?,
            "l_",
        ),
        other => Err(bad(format!(
            "{other:?} is not planned as a join (`or`: or_op)"
        ))),
    }
}

fn vector_binop(
    op: BinOp,
    return_bool: bool,
    l: LogicalPlan,
    r: LogicalPlan,
    modifier: Option<&promql_parser::parser::BinModifier>,
) -> Result<LogicalPlan> {
    let matching = modifier.and_then(|m| m.matching.as_ref());
    let card = modifier
        .map(|m| m.card.clone())
        .unwrap_or(VectorMatchCardinality::OneToOne);
    let key = match_key(matching);
    let lk = keyed(l, &key, "l_")?;
    let rk = keyed(r, &key, "r_")?;
    // The "one" side must be unique per match group; for group_right it is the left.
    let (many, one) = match card {
        VectorMatchCardinality::OneToMany(_) => ("r_", "l_"),
        _ => ("l_", "r_"),
    };
    let side = if one == "r_" { "right" } else { "left" };
    let check = |p: LogicalPlan| {
        Planner::node(
            PromOp::CheckUnique {
                key: format!("{one}key"),
                ts: format!("{one}ts"),
                show: Some(format!("{one}labels")),
                message: format!(
                    "found duplicate series for the match group {{labels}} on the {side} hand-side of the operation: {{dups}};many-to-many matching not allowed: matching labels must be unique on one side"
                ),
            },
            p,
        )
    };
    let (lk, rk) = if one == "r_" {
        (lk, check(rk)?)
    } else {
        (check(lk)?, rk)
    };
    let (lc, rc) = on("l_", "r_");
    // Fill modifiers (`fill`, `fill_left`, `fill_right`): a match group missing on one
    // side gets a sample of the fill value there. As in Prometheus's `VectorBinop`, the
    // values name the sides after `group_right` swaps them: the left value fills the
    // "many" side, the right value the "one" side. A filled "many" series has the match
    // group's labels (the other side's matching key).
    let fill = modifier.map(|m| m.fill_values.clone()).unwrap_or_default();
    let (fill_many, fill_one) = (fill.lhs, fill.rhs);
    let join_type = match (fill_many.is_some(), fill_one.is_some(), many == "l_") {
        (false, false, _) => JoinType::Inner,
        (true, true, _) => JoinType::Full,
        // Rows of the "many" side without a match are kept when the "one" side is filled.
        (false, true, true) | (true, false, false) => JoinType::Left,
        (false, true, false) | (true, false, true) => JoinType::Right,
    };
    // A side that has a fill value may be missing (null after the outer join): its value
    // is then the fill value and its labels the other side's matching key.
    let value = |side: &str, fill: Option<f64>| -> Result<Expr> {
        let c = ident(format!("{side}value"));
        fill.map_or(Ok(c.clone()), |v| coalesce2(c, lit(v)))
    };
    let labels_of = |side: &str, fill: Option<f64>| -> Result<Expr> {
        let c = ident(format!("{side}labels"));
        let other_key = if side == "l_" { "r_key" } else { "l_key" };
        fill.map_or(Ok(c.clone()), |_| coalesce2(c, ident(other_key)))
    };
    let (fill_l, fill_r) = if many == "l_" {
        (fill_many, fill_one)
    } else {
        (fill_one, fill_many)
    };
    let mut labels = labels_of(many, fill_many)?;
    if !op.is_comparison() || return_bool {
        labels = LabelOp::DropName.call(vec![labels]);
    }
    let include = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
    if matches!(card, VectorMatchCardinality::OneToOne) {
        labels = match matching {
            Some(LabelModifier::Include(l)) => LabelOp::Keep(l.labels.clone()).call(vec![labels]),
            Some(LabelModifier::Exclude(l)) => LabelOp::Drop(l.labels.clone()).call(vec![labels]),
            None => labels,
        };
    }
    if !include.is_empty() {
        let one_labels = labels_of(one, fill_one)?;
        labels = LabelOp::Include(include).call(vec![labels, one_labels]);
    }
    let f = ValueFn::Bin {
        op,
        bool_: return_bool,
        keep_rhs: false,
    };
    let ts = match join_type {
        JoinType::Inner | JoinType::Left => ident("l_ts"),
        JoinType::Right => ident("r_ts"),
        _ => coalesce2(ident("l_ts"), ident("r_ts"))?,
    };
    let many_key = match join_type {
        JoinType::Inner => ident(format!("{many}key")),
        _ => coalesce2(ident(format!("{many}key")), ident(format!("{one}key")))?,
    };
    let joined = LogicalPlanBuilder::from(lk)
        .join_detailed(
            rk,
            join_type,
            (lc, rc),
            None,
            NullEquality::NullEqualsNothing,
        )?
        .project(vec![
            labels.alias("labels"),
            ts.alias("ts"),
            f.call(vec![value("l_", fill_l)?, value("r_", fill_r)?])
                .alias("value"),
            many_key.alias("m_key"),
        ])?
        .build()?;
    let checked = if matches!(card, VectorMatchCardinality::OneToOne) {
        Planner::node(
            PromOp::CheckUnique {
                key: "m_key".into(),
                ts: "ts".into(),
                show: None,
                message: "multiple matches for labels {labels}: many-to-one matching must be explicit (group_left/group_right)".into(),
            },
            joined,
        )?
    } else {
        let p = LogicalPlanBuilder::from(joined)
            .project(vec![
                ident("labels"),
                ident("ts"),
                ident("value"),
                ident("labels").alias("r_key"),
            ])?
            .build()?;
        Planner::node(
            PromOp::CheckUnique {
                key: "r_key".into(),
                ts: "ts".into(),
                show: None,
                message: "multiple matches for labels {labels}: grouping labels must ensure unique matches".into(),
            },
            p,
        )?
    };
    Ok(LogicalPlanBuilder::from(checked)
        .filter(ident("value").is_not_null())?
        .project(vec![ident("labels"), ident("ts"), ident("value")])?
        .build()?)
}

/// `v` (columns `labels, ts, value`) for a consumer that reads only `ts` and `value`:
/// projections on top that only rewrite labels (the name's removal, `label_replace`) are
/// left out, and a per-series operator below them gives every series the empty label set
/// ([`PromOp::without_labels`]). DataFusion's `optimize_projections` would prune the
/// label rewrites; PromQL plans run without it ([`crate::query`]'s `run_plan`).
///
/// # Errors
/// Rebuilding the operator's node fails (a broken invariant).
fn labels_unread(v: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::logical_expr::Projection;
    let plain =
        |e: &Expr, name: &str| matches!(e.clone().unalias(), Expr::Column(c) if c.name == name);
    match &v {
        LogicalPlan::Projection(Projection { expr, input, .. })
            if expr.len() == 3
                && v.schema().field_names() == ["labels", "ts", "value"]
                && plain(&expr[1], "ts")
                && plain(&expr[2], "value")
                && input.schema().field_names() == ["labels", "ts", "value"] =>
        {
            labels_unread(input.as_ref().clone())
        }
        LogicalPlan::Extension(e) => {
            let node = e.node.as_any().downcast_ref::<PromNode>();
            match node.and_then(|n| Some((n.op.without_labels()?, n.input.clone()))) {
                Some((op, input)) => Ok(PromNode::new(op, input)?.into_plan()),
                None => Ok(v),
            }
        }
        _ => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::go_invalid_literals;

    #[test]
    fn literals_that_go_reads_as_invalid_utf8() {
        let q = r#"label_join(m, "\xff", '\377', "\xc3\xbf", `\xff`, "ÿ", "a\"\xfe") # "\xff""#;
        let found = go_invalid_literals(q);
        // "\xff" and '\377' (one byte 0xff), "a\"\xfe" (an escaped quote, then 0xfe);
        // not "\xc3\xbf" (valid UTF-8 for ÿ in Go), the raw string, the character written
        // as itself, or the comment.
        assert_eq!(
            found,
            vec![
                ("\u{ff}".to_string(), r#""\xff""#),
                ("\u{ff}".to_string(), r"'\377'"),
                ("a\"\u{fe}".to_string(), r#""a\"\xfe""#),
            ]
        );
        assert!(go_invalid_literals(r#"up{job="api"}"#).is_empty());
    }
}
