//! Instant and range queries: parse, plan ([`crate::plan`]), run on the engine, shape
//! the result ([`crate::value`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BinaryArray, Float64Array, Int64Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::prelude::SessionContext;
use promql_parser::parser::Expr as P;

use crate::exec::{PromQueryPlanner, Steps};
use crate::plan::{Planned, Planner};
use crate::value::{InstantSample, QueryValue, RangeSeries};
use crate::{PromqlError, QueryOptions, QueryResult, Result};

/// Marks a session built by [`prom_session`] (a config extension), and holds its two
/// one-partition twins, ready to run plans in.
struct PromPlanner {
    /// The same session with one target partition (`None` in the twins themselves).
    one_partition: Option<RunIn>,
    /// The one-partition session without physical optimizer rules: see [`session_for`].
    bare: Option<RunIn>,
}

/// Where a PromQL plan is planned physically and run: a session's state, and the task
/// context its operators run with (the session's configuration and runtime, without its
/// function registries: physical operators hold their functions).
///
/// The twins of a PromQL session keep theirs, built once: a copy of a session's state
/// (its function registries, its configuration) and of its configuration for the task
/// context were 6% of a one-series query's CPU in a `perf` profile. A twin's copy sees
/// tables registered later, as the catalog is shared; nothing else of a twin changes.
#[derive(Clone)]
pub(crate) struct RunIn {
    state: Arc<datafusion::execution::SessionState>,
    task: Arc<datafusion::execution::TaskContext>,
}

impl RunIn {
    /// `ctx` as it is now.
    pub(crate) fn of(ctx: &SessionContext) -> RunIn {
        let state = ctx.state();
        let task = datafusion::execution::TaskContext::new(
            None,
            state.session_id().to_string(),
            state.config().clone(),
            Default::default(),
            Default::default(),
            Default::default(),
            Default::default(),
            state.runtime_env().clone(),
        );
        RunIn {
            state: Arc::new(state),
            task: Arc::new(task),
        }
    }
}

impl std::fmt::Debug for PromPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromPlanner")
            .field("one_partition", &self.one_partition.is_some())
            .field("bare", &self.bare.is_some())
            .finish()
    }
}

/// Estimated rows (see [`Planner::est_rows`]; the output steps are added) up to which a
/// PromQL plan runs in one partition. On the bench's data (2 cores, `benches/README.md`)
/// one partition answered 1 series over 1 h (about 370 rows) 0.3 ms (18%) faster; with
/// the rows in the sample cache (`strata_engine::sample_cache`), 8 series over 12 h
/// (35,000 rows) took 2.2-3.0 ms in one partition against 3.0-3.2 ms in two (medians of
/// 150 requests, two rounds each): below that size, DataFusion's repartitioning,
/// two-phase aggregation and thread hand-offs cost more than the second thread gives.
pub const ONE_PARTITION_ROWS: usize = 65_536;

/// The session to run `plan` in: `ctx`'s one-partition twin when the plan is estimated
/// to read at most [`ONE_PARTITION_ROWS`] rows, else `ctx`.
///
/// When `plan` is given and has no joins, windows, unions or limits, a small plan gets the
/// twin without physical optimizer rules: [`PromQueryPlanner`] then runs them only when
/// the plan as first built cannot run as it is (more than one partition somewhere, an
/// input order required). On a one-series query the physical optimizer was 12% of the
/// CPU.
fn session_for(
    ctx: &SessionContext,
    planner: &Planner,
    steps: usize,
    plan: Option<&LogicalPlan>,
) -> RunIn {
    let rows = planner
        .est_rows
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_add(steps);
    if rows > ONE_PARTITION_ROWS {
        return RunIn::of(ctx);
    }
    let twin = ctx
        .state_ref()
        .read()
        .config()
        .get_extension::<PromPlanner>()
        .and_then(|p| match plan {
            Some(plan) if without_exchanges(plan) => p.bare.clone(),
            _ => p.one_partition.clone(),
        });
    twin.unwrap_or_else(|| RunIn::of(ctx))
}

/// Whether `plan` has none of the nodes whose physical operators need the physical
/// optimizer to pick a mode or add an exchange: joins (a hash join's partition mode),
/// windows (their input order), unions, limits, subqueries, `DISTINCT`.
fn without_exchanges(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut simple = true;
    let _ = plan.apply(|n| {
        if matches!(
            n,
            LogicalPlan::Join(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Subquery(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Distinct(_)
                | LogicalPlan::RecursiveQuery(_)
                | LogicalPlan::Repartition(_)
        ) {
            simple = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    simple
}

/// The session for PromQL plans: `ctx`'s catalog, functions and configuration with a
/// query planner that also knows PromQL's plan nodes (SQL plans as before). `ctx` itself
/// when it already is one.
///
/// Building it copies the session's state (its function registries, configuration) three
/// times (the session and its two one-partition twins): whatever runs many PromQL queries
/// (the HTTP API) builds it once and passes it to [`instant_query`] and [`range_query`],
/// which otherwise build it per query.
pub fn prom_session(ctx: &SessionContext) -> SessionContext {
    if ctx
        .state_ref()
        .read()
        .config()
        .get_extension::<PromPlanner>()
        .is_some()
    {
        return ctx.clone();
    }
    let state = ctx.state();
    let mut config = state.config().clone();
    config.options_mut().optimizer.max_passes = 1;
    let rules: Vec<_> = state
        .optimizers()
        .iter()
        .filter(|r| KEPT_RULES.contains(&r.name()))
        .cloned()
        .collect();
    let physical: Vec<_> = state
        .physical_optimizers()
        .iter()
        .filter(|r| !SKIPPED_PHYSICAL_RULES.contains(&r.name()))
        .cloned()
        .collect();
    let planner = Arc::new(PromQueryPlanner {
        rules: physical.clone(),
    });
    let build = |config: datafusion::prelude::SessionConfig, physical| {
        SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state.clone())
                .with_config(config)
                .with_optimizer_rules(rules.clone())
                .with_physical_optimizer_rules(physical)
                .with_query_planner(planner.clone())
                .build(),
        )
    };
    let mut one = config.clone().with_extension(Arc::new(PromPlanner {
        one_partition: None,
        bare: None,
    }));
    one.options_mut().execution.target_partitions = 1;
    let twins = PromPlanner {
        one_partition: Some(RunIn::of(&build(one.clone(), physical.clone()))),
        bare: Some(RunIn::of(&build(one, vec![]))),
    };
    build(config.with_extension(Arc::new(twins)), physical)
}

/// The only logical optimizer rules PromQL sessions run, in one pass (DataFusion runs
/// about 25, up to 3 passes, and they were 12% of a one-series query's CPU in a `perf`
/// profile). The planner ([`crate::plan`]) already writes each scan with its filters and
/// columns and no subqueries, limits, cross or outer joins, or unions; what is left is
/// needed by other plans run in these sessions (the series lookups of
/// [`crate::selector`]): turning `DISTINCT` into an aggregate, which the physical planner
/// requires, join keys out of join filters, and filters and projections pushed into scans.
const KEPT_RULES: &[&str] = &[
    "replace_distinct_aggregate",
    "extract_equijoin_predicate",
    "push_down_filter",
    "optimize_projections",
];

/// DataFusion's physical optimizer rules that PromQL plans give nothing to do: they have
/// no limits, windows, sorts to push into scans, or `COUNT(*)` that statistics answer.
/// `SanityCheckPlan` only checks a plan that the rules kept above already satisfy. (The
/// physical optimizer was 10% of a small query's CPU in a `perf` profile.)
const SKIPPED_PHYSICAL_RULES: &[&str] = &[
    "aggregate_statistics",
    "LimitedDistinctAggregation",
    "WindowTopN",
    "LimitAggregation",
    "LimitPushPastWindows",
    "LimitPushdown",
    "TopKRepartition",
    "PushdownSort",
    "SanityCheckPlan",
];

/// How many parsed queries [`parse`] keeps.
const PARSED_QUERIES: usize = 1024;

/// A parsed query and its nesting depth ([`crate::depth::depth`]). Dropping it, like
/// everything that recurses over a deep expression, runs on a stack big enough for the
/// depth.
#[derive(Debug)]
pub struct Parsed {
    /// The expression.
    pub expr: P,
    /// Its nesting depth (at most [`crate::depth::MAX_DEPTH`]).
    pub depth: usize,
}

impl Drop for Parsed {
    fn drop(&mut self) {
        if self.depth > crate::depth::SHALLOW {
            let e = std::mem::replace(
                &mut self.expr,
                P::NumberLiteral(promql_parser::parser::NumberLiteral { val: 0.0 }),
            );
            crate::depth::with_stack(crate::depth::stack_for(self.depth), move || drop(e));
        }
    }
}

/// Stack bytes the parser may need per byte of query text (its type checks recurse once
/// per nesting level, and a level takes at least one byte).
const PARSE_STACK_PER_BYTE: usize = 512;

/// Parses a query, mapping parse errors to `bad_data` with the parser's message.
///
/// The parser runs on a stack sized for the text's length, so any nesting parses safely;
/// a query longer than [`crate::depth::MAX_QUERY_BYTES`] or nesting deeper than
/// [`crate::depth::MAX_DEPTH`] levels is refused (`bad_data`, naming the limit).
///
/// The last 1,024 (`PARSED_QUERIES`) distinct query texts that parsed are kept (least recently
/// used out first), as VictoriaMetrics keeps parsed queries (`parseCache` in
/// `app/vmselect/promql/parser.go`): a dashboard sends the same texts on every refresh,
/// and parsing compiles each regular expression matcher anew.
///
/// # Errors
/// [`PromqlError::BadData`].
pub fn parse(query: &str) -> Result<Arc<Parsed>> {
    use crate::depth::{MAX_DEPTH, MAX_QUERY_BYTES};
    static PARSED: std::sync::LazyLock<std::sync::Mutex<lru::LruCache<String, Arc<Parsed>>>> =
        std::sync::LazyLock::new(|| {
            std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(PARSED_QUERIES).expect("not zero"),
            ))
        });
    let kept = || PARSED.lock().unwrap_or_else(|e| e.into_inner());
    if query.len() > MAX_QUERY_BYTES {
        return Err(PromqlError::BadData(format!(
            "invalid parameter \"query\": the query is {} bytes long, more than the limit of {MAX_QUERY_BYTES} bytes",
            query.len()
        )));
    }
    if let Some(e) = kept().get(query).cloned() {
        return Ok(e);
    }
    let stack = query
        .len()
        .saturating_mul(PARSE_STACK_PER_BYTE)
        .saturating_add(crate::depth::stack_for(0));
    let parsed = crate::depth::with_stack(stack, || {
        // promql-parser 0.11 panics on some numbers where a duration goes (`up[1e20]`:
        // `Duration::from_secs_f64` of a value too large): a bad query, not a crash.
        let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(query))
            .unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("the parser failed");
                Err(format!("unsupported number in the query ({why})"))
            });
        let expr = parsed
            .map_err(|e| PromqlError::BadData(format!("invalid parameter \"query\": {e}")))?;
        let parsed = Parsed {
            depth: crate::depth::depth(&expr),
            expr,
        };
        if parsed.depth > MAX_DEPTH {
            return Err(PromqlError::BadData(format!(
                "invalid parameter \"query\": the query nests {} levels deep, more than the limit of {MAX_DEPTH}",
                parsed.depth
            )));
        }
        Ok(parsed)
    })?;
    let parsed = Arc::new(parsed);
    kept().put(query.to_string(), parsed.clone());
    Ok(parsed)
}

/// Runs a query's `body` polled with the stack its parsed query needs: `body` gets the
/// slot to record it in once it has parsed (see [`crate::depth::OnStack`]).
async fn on_stack<T, F: std::future::Future<Output = Result<T>>>(
    body: impl FnOnce(Arc<std::sync::atomic::AtomicUsize>) -> F,
) -> Result<T> {
    let need = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    crate::depth::OnStack::new(body(need.clone()), need).await
}

/// [`parse`], then records in `need` the stack the rest of the query needs.
fn parse_for(query: &str, need: &std::sync::atomic::AtomicUsize) -> Result<Arc<Parsed>> {
    let parsed = parse(query)?;
    if parsed.depth > crate::depth::SHALLOW {
        need.store(
            crate::depth::stack_for(parsed.depth),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    Ok(parsed)
}

/// Runs a PromQL plan as [`crate::plan`] wrote it, without DataFusion's analyzer and
/// logical optimizer.
///
/// The planner writes every expression with its final types, each scan with its filters
/// and columns, and no nodes those passes rewrite (no `DISTINCT`, subqueries, limits,
/// outer joins or unions of scans); the passes still walked and rebuilt the whole plan,
/// 11% of a one-series query's CPU in a `perf` profile (`benches/README.md`). The task
/// context carries the session's configuration and runtime but not its function
/// registries (copying them was another 2%): physical operators hold their functions.
/// The series lookups of [`crate::selector`] are SQL-shaped plans and still go through
/// the session's optimizer.
///
/// # Errors
/// Physical planning or execution errors.
pub(crate) async fn run_plan(ctx: &SessionContext, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    run_in(&RunIn::of(ctx), plan).await
}

/// [`run_plan`] in `run`.
async fn run_in(run: &RunIn, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    let (physical, task) = physical_plan(run, &plan).await?;
    Ok(datafusion::physical_plan::collect(physical, task).await?)
}

/// `plan`'s physical plan in `run` as [`run_plan`] runs it, and the task context to run
/// it with.
async fn physical_plan(
    run: &RunIn,
    plan: &LogicalPlan,
) -> Result<(
    Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    Arc<datafusion::execution::TaskContext>,
)> {
    let physical = run
        .state
        .query_planner()
        .create_physical_plan(plan, run.state.as_ref())
        .await?;
    Ok((physical, run.task.clone()))
}

/// `query` (a whole query: planning, with the series lookups and sub-plans it runs, and
/// evaluation) within `opts.timeout`: [`PromqlError::Timeout`] (Prometheus's
/// `query timed out in expression evaluation`) when it runs past it. The query stops
/// where it next waits (an operator computing in one poll is not interrupted), and an
/// answer that took longer than the timeout is not given either.
async fn with_timeout<T>(
    opts: &QueryOptions,
    query: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let Some(t) = opts.timeout else {
        return query.await;
    };
    let timed_out = || {
        PromqlError::Timeout(format!(
            "query timed out in expression evaluation (timeout {t:?})"
        ))
    };
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(t, query)
        .await
        .map_err(|_| timed_out())?;
    if answer.is_ok() && started.elapsed() > t {
        return Err(timed_out());
    }
    answer
}

/// A PromQL plan's output rows: `(encoded labels, ts ms, value)`.
pub(crate) type Rows = Vec<(Vec<u8>, i64, f64)>;

/// A PromQL plan's output batch as its `labels`, `ts` and `value` columns.
fn columns(b: &RecordBatch) -> (&BinaryArray, &Int64Array, &Float64Array) {
    let l = b.column(0).as_binary::<i32>();
    let t = b
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("ts is Int64");
    let v = b
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("value is Float64");
    (l, t, v)
}

/// The rows of a PromQL plan's output batches, rows with a null value left out.
pub(crate) fn rows(batches: &[RecordBatch]) -> Rows {
    let mut out = vec![];
    for b in batches {
        let (l, t, v) = columns(b);
        for i in 0..b.num_rows() {
            if !v.is_null(i) {
                out.push((l.value(i).to_vec(), t.value(i), v.value(i)));
            }
        }
    }
    out
}

/// `(timestamp ms, value)` points.
type Points = Vec<(i64, f64)>;

/// The rows of `batches` (`labels, ts, value`; null values and those `keep` refuses
/// dropped) as series sorted by labels, each series' points sorted by time. Each distinct
/// label set is decoded once, not once per row.
fn matrix(batches: &[RecordBatch], keep: impl Fn(f64) -> bool) -> Vec<RangeSeries> {
    let mut index: std::collections::HashMap<&[u8], usize> = Default::default();
    let mut series: Vec<(&[u8], Points)> = vec![];
    for b in batches {
        let (l, t, v) = columns(b);
        // Rows come series by series: the previous row's series is checked first.
        let mut last: Option<(&[u8], usize)> = None;
        for i in 0..b.num_rows() {
            if v.is_null(i) || !keep(v.value(i)) {
                continue;
            }
            let labels = l.value(i);
            let k = match last {
                Some((prev, k)) if prev == labels => k,
                _ => *index.entry(labels).or_insert_with(|| {
                    series.push((labels, vec![]));
                    series.len() - 1
                }),
            };
            last = Some((labels, k));
            series[k].1.push((t.value(i), v.value(i)));
        }
    }
    series_of(series)
}

/// Series as a range query answers them: each distinct label set decoded once, series
/// with equal labels merged, sorted by labels, each one's points sorted by time.
fn series_of<L: AsRef<[u8]>>(series: impl IntoIterator<Item = (L, Points)>) -> Vec<RangeSeries> {
    let mut m: BTreeMap<crate::value::LabelSet, Points> = BTreeMap::new();
    for (labels, points) in series {
        m.entry(crate::labels::decode(labels.as_ref()))
            .or_default()
            .extend(points);
    }
    m.into_iter()
        .map(|(labels, mut points)| {
            points.sort_by_key(|p| p.0);
            RangeSeries { labels, points }
        })
        .collect()
}

/// A query parsed (recording in `need` the stack it needs: [`parse_for`]), the PromQL
/// session it runs in ([`prom_session`]) and its planner over `[start, end]` (ms) with
/// the query's `step` (ms, 0 for an instant query); subqueries without a step use 1
/// minute (Prometheus's default `evaluation_interval`).
///
/// # Errors
/// As [`parse`].
fn prepare(
    ctx: &SessionContext,
    query: &str,
    need: &std::sync::atomic::AtomicUsize,
    opts: &QueryOptions,
    (start, end, step): (i64, i64, i64),
) -> Result<(Arc<Parsed>, SessionContext, Planner)> {
    let parsed = parse_for(query, need)?;
    let ctx = prom_session(ctx);
    let planner = Planner {
        depth: parsed.depth,
        ctx: ctx.clone(),
        lookback: crate::clamp_ms(opts.lookback_delta_ms),
        start,
        end,
        default_step: 60_000,
        step,
        query: query.to_string(),
        notes: Default::default(),
        est_rows: Default::default(),
        marked: Default::default(),
        root_call: Default::default(),
        routing: crate::tiers::Routing::of(&ctx, now_ms(), opts.max_source_resolution_ms),
        sources: Default::default(),
        direct_ok: false,
        direct: Default::default(),
    };
    Ok((parsed, ctx, planner))
}

/// The wall clock, ms since the epoch (where retention horizons are, for routing).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `(start, end, step)` (ms) clamped to what a query computes with ([`crate::clamp_ms`]).
fn clamped(start: i64, end: i64, step: i64) -> (i64, i64, i64) {
    use crate::clamp_ms;
    (clamp_ms(start), clamp_ms(end), clamp_ms(step))
}

fn take_sources(p: &Planner) -> Vec<crate::SourceRange> {
    p.sources
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

fn take_notes(n: &crate::Notes) -> (Vec<String>, Vec<String>) {
    std::mem::take(&mut *n.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The sort a query's outermost function asks for.
fn order_of(e: &P) -> Option<(String, Vec<String>)> {
    match e {
        P::Paren(p) => order_of(&p.expr),
        P::Call(c) if c.func.name.starts_with("sort") => {
            let labels = c.args.args[1..]
                .iter()
                .filter_map(|a| match a.as_ref() {
                    P::StringLiteral(s) => Some(s.val.clone()),
                    _ => None,
                })
                .collect();
            Some((c.func.name.to_string(), labels))
        }
        _ => None,
    }
}

fn sort_vector(v: &mut [InstantSample], e: &P) {
    match order_of(e) {
        Some((f, _)) if f == "sort" || f == "sort_desc" => {
            let desc = f == "sort_desc";
            // NaN last in both directions (Prometheus `funcSort`).
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.v.total_cmp(&a.v),
                _ => a.v.total_cmp(&b.v),
            });
        }
        Some((f, labels)) => {
            let desc = f == "sort_by_label_desc";
            let get = |s: &InstantSample, n: &str| {
                s.labels
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            v.sort_by(|a, b| {
                let mut o = std::cmp::Ordering::Equal;
                for n in &labels {
                    o = o.then_with(|| natural_cmp(&get(a, n), &get(b, n)));
                }
                let o = o.then_with(|| a.labels.cmp(&b.labels));
                if desc { o.reverse() } else { o }
            });
        }
        None => {
            // Aggregations like topk return their groups in value order; keep a stable
            // label order otherwise.
            if !is_ordered_agg(e) {
                v.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
        }
    }
}

/// Natural order (digit runs compare as numbers), as Prometheus's `sort_by_label` does
/// (`github.com/facette/natsort`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = vec![];
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    if a.is_empty() || b.is_empty() {
        return a.cmp(b);
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, x), (db, y)) in ca.iter().zip(cb.iter()) {
        let o = if *da && *db {
            let (xt, yt) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            xt.len()
                .cmp(&yt.len())
                .then_with(|| xt.cmp(yt))
                .then_with(|| x.len().cmp(&y.len()))
        } else {
            x.cmp(y)
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

fn is_ordered_agg(e: &P) -> bool {
    match e {
        P::Paren(p) => is_ordered_agg(&p.expr),
        P::Aggregate(a) => matches!(a.op.to_string().as_str(), "topk" | "bottomk"),
        _ => false,
    }
}

/// Evaluates `query` at `t_ms` (ms since the epoch).
///
/// # Errors
/// [`PromqlError::BadData`] for queries that do not parse or use what is not
/// supported; [`PromqlError::Execution`] for evaluation errors (e.g. many-to-many
/// matching); [`PromqlError::Timeout`] past `opts.timeout`.
pub async fn instant_query(
    ctx: &SessionContext,
    query: &str,
    t_ms: i64,
    opts: &QueryOptions,
) -> Result<QueryResult> {
    let (t_ms, _, _) = clamped(t_ms, t_ms, 0);
    on_stack(|need| {
        with_timeout(opts, async move {
            let (parsed, ctx, planner) = prepare(ctx, query, &need, opts, (t_ms, t_ms, 0))?;
            let expr = &parsed.expr;
            let steps = Steps {
                start: t_ms,
                end: t_ms,
                step: 1,
            };
            let planned = planner.plan_query(expr, steps).await?;
            let run = session_for(&ctx, &planner, 1, planned.plan());
            let value = match planned {
                Planned::Const(v) => QueryValue::Scalar { t_ms, v },
                Planned::Str(s) => QueryValue::String { t_ms, s },
                Planned::Scalar(p) => {
                    let r = rows(&run_in(&run, p).await?);
                    QueryValue::Scalar {
                        t_ms,
                        v: r.first().map(|x| x.2).unwrap_or(f64::NAN),
                    }
                }
                Planned::Vector(p) => {
                    let mut v: Vec<InstantSample> = rows(&run_in(&run, p).await?)
                        .into_iter()
                        .map(|(l, t, v)| InstantSample {
                            labels: crate::labels::decode(&l),
                            t_ms: t,
                            v,
                        })
                        .collect();
                    sort_vector(&mut v, expr);
                    QueryValue::Vector(v)
                }
                Planned::Matrix(p) => QueryValue::Matrix(matrix(&run_in(&run, p).await?, |v| {
                    !crate::exec::is_stale(v)
                })),
            };
            let (warnings, infos) = take_notes(&planner.notes);
            Ok(QueryResult {
                value,
                warnings,
                infos,
                sources: take_sources(&planner),
            })
        })
    })
    .await
}

/// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms` (inclusive, ms).
///
/// # Errors
/// As [`instant_query`]; also [`PromqlError::BadData`] when the step is not positive,
/// the range is reversed, it would give more than `opts.max_points_per_series` points,
/// or the query is not a scalar or instant vector.
pub async fn range_query(
    ctx: &SessionContext,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &QueryOptions,
) -> Result<QueryResult> {
    let (start_ms, end_ms, step_ms) = clamped(start_ms, end_ms, step_ms);
    on_stack(|need| {
        with_timeout(opts, async move {
        if step_ms <= 0 {
            return Err(PromqlError::BadData(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(PromqlError::BadData(
                "invalid parameter \"end\": end timestamp must not be before start time".into(),
            ));
        }
        if (end_ms - start_ms) / step_ms > opts.max_points_per_series {
            return Err(PromqlError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let (parsed, ctx, mut planner) =
            prepare(ctx, query, &need, opts, (start_ms, end_ms, step_ms))?;
        planner.direct_ok = true;
        let expr = &parsed.expr;
        let steps = Steps {
            start: start_ms,
            end: end_ms,
            step: step_ms,
        };
        let planned = planner.plan_query(expr, steps).await?;
        let direct = planner.direct.lock().ok().and_then(|mut d| d.take());
        let series = match (planned, direct) {
            // Answered at planning from rollup tiers ([`Planner::direct`]).
            (_, Some(direct)) => series_of(direct),
            (Planned::Const(v), _) => vec![RangeSeries {
                labels: vec![],
                points: steps.iter().map(|t| (t, v)).collect(),
            }],
            (Planned::Scalar(p) | Planned::Vector(p), _) => {
                let points = usize::try_from((end_ms - start_ms) / step_ms).unwrap_or(usize::MAX);
                let run = session_for(&ctx, &planner, points.saturating_add(1), Some(&p));
                matrix(&run_in(&run, p).await?, |_| true)
            }
            (Planned::Str(_), _) => {
                return Err(PromqlError::BadData(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
            (Planned::Matrix(_), _) => {
                return Err(PromqlError::BadData(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
        };
        let (warnings, infos) = take_notes(&planner.notes);
        Ok(QueryResult {
            value: QueryValue::Matrix(series),
            warnings,
            infos,
            sources: take_sources(&planner),
        })
    })
    })
    .await
}

/// The logical and physical plan of a query evaluated at the steps `start_ms..=end_ms`
/// every `step_ms` (ms since the epoch, UTC; an instant query is `start = end`), as the
/// query runs them (see [`run_plan`]), printed as DataFusion's `EXPLAIN` indents plans
/// (for debugging). With `analyze`, the plan is also run and printed as `EXPLAIN ANALYZE`
/// does, with each operator's rows and compute time, and a first line gives the PromQL
/// planning time (series selection included) in ms.
///
/// # Errors
/// As [`instant_query`].
pub async fn explain(
    ctx: &SessionContext,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &QueryOptions,
    analyze: bool,
) -> Result<String> {
    let (start_ms, end_ms, step_ms) = clamped(start_ms, end_ms, step_ms);
    on_stack(|need| async move {
        let started = std::time::Instant::now();
        let (parsed, ctx, planner) = prepare(ctx, query, &need, opts, (start_ms, end_ms, step_ms))?;
        let expr = &parsed.expr;
        let steps = Steps {
            start: start_ms,
            end: end_ms,
            step: step_ms.max(1),
        };
        let plan = match planner.plan_query(expr, steps).await? {
            Planned::Scalar(p) | Planned::Vector(p) | Planned::Matrix(p) => p,
            Planned::Const(v) => return Ok(format!("constant {v}")),
            Planned::Str(s) => return Ok(format!("string {s:?}")),
        };
        let planning = started.elapsed();
        let sources = format!(
            "sources: {}\n",
            crate::format_sources(&take_sources(&planner))
        );
        let points = usize::try_from((end_ms - start_ms) / step_ms.max(1)).unwrap_or(usize::MAX);
        // The plans as a query runs them (`run_plan`): the logical plan as planned, and the
        // physical plan of the session the query would run in.
        let run = session_for(&ctx, &planner, points.saturating_add(1), Some(&plan));
        let (physical, task) = physical_plan(&run, &plan).await?;
        let logical = plan.display_indent();
        Ok(if analyze {
            datafusion::physical_plan::collect(physical.clone(), task).await?;
            let shown = DisplayableExecutionPlan::with_metrics(physical.as_ref()).indent(false);
            format!(
                "PromQL planning (series selection included): {:.3} ms\n{sources}\
             logical plan:\n{logical}\nphysical plan with metrics:\n{shown}",
                planning.as_secs_f64() * 1e3
            )
        } else {
            let shown = DisplayableExecutionPlan::new(physical.as_ref()).indent(false);
            format!("{sources}logical plan:\n{logical}\nphysical plan:\n{shown}")
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kept_or_skipped_optimizer_rule_is_one_of_datafusions() {
        // A rule renamed in a DataFusion upgrade would silently stay in PromQL's plans.
        let ctx = SessionContext::new();
        let names: Vec<String> = ctx
            .state()
            .optimizers()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        let prom = prom_session(&ctx);
        let state = prom.state();
        let kept: Vec<&str> = state.optimizers().iter().map(|r| r.name()).collect();
        assert_eq!(kept, KEPT_RULES, "DataFusion's rules: {names:?}");
        let physical: Vec<String> = ctx
            .state()
            .physical_optimizers()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        for rule in SKIPPED_PHYSICAL_RULES {
            assert!(
                physical.iter().any(|n| n == rule),
                "{rule} not in {physical:?}"
            );
        }
        let left = prom.state().physical_optimizers().len();
        assert_eq!(left, physical.len() - SKIPPED_PHYSICAL_RULES.len());
    }

    #[test]
    fn a_kept_parse_is_the_parse_and_errors_are_not_kept() {
        let q = r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))"#;
        let first = parse(q).unwrap();
        let again = parse(q).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.expr, promql_parser::parser::parse(q).unwrap());
        // The regular expression still matches as the parser built it (anchored).
        let P::Aggregate(a) = &again.expr else {
            panic!("not an aggregation: {again:?}")
        };
        let P::Call(c) = a.expr.as_ref() else {
            panic!("not a call")
        };
        let P::MatrixSelector(m) = c.args.args[0].as_ref() else {
            panic!("not a range selector")
        };
        let re =
            m.vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "code")
                .unwrap();
        let promql_parser::label::MatchOp::Re(r) = &re.op else {
            panic!("not a regex matcher")
        };
        assert!(r.is_match("503") && !r.is_match("5030") && !r.is_match("200"));
        for _ in 0..2 {
            let e = parse("sum(").unwrap_err();
            assert!(
                matches!(e, PromqlError::BadData(ref m) if m.starts_with("invalid parameter \"query\"")),
                "{e:?}"
            );
        }
    }
}
