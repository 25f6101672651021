//! PromQL inside SQL: the table functions `promql_instant` and `promql_range`.
//!
//! ```sql
//! SELECT * FROM promql_range('sum by (job) (rate(http_requests_total[5m]))',
//!                            '2026-11-22T00:00:00Z', '2026-11-22T01:00:00Z', '1m');
//! SELECT labels['instance'], value FROM promql_instant('up', now());
//! ```
//!
//! Arguments: the query (a string), then the evaluation time (`promql_instant`) or start,
//! end and step (`promql_range`). Times are RFC 3339 strings, Unix seconds (numbers) or
//! SQL timestamps (`now() - interval '1 hour'` works: constant expressions are folded
//! first); the step is a PromQL duration string (`'30s'`, `'1m'`), seconds, or an
//! interval. Rows: `timestamp` (ms, UTC), `value` (f64), `labels` (map of label name to
//! value, `__name__` included when the query keeps it), one per sample of the result
//! (a scalar result is one row with empty labels). The query runs when the table is
//! scanned, through the same planner as the HTTP API, so these rows join and aggregate
//! like any other table over Flight SQL.
//!
//! `anomaly_range(query, start, end, step [, sensitivity [, resolution [, history]]])`
//! scores each point of `promql_range(query, start, end, step)` against the series'
//! seasonal baseline, as anomaly rules do (`strata_rules::anomaly`): the baseline is
//! fitted from the query over `history` before `start` (default 28 days) at steps of
//! `resolution` (default 15 minutes; it must divide a day). Rows: `timestamp`, `value`,
//! `labels` as `promql_range`'s, then `baseline`, `lower`, `upper` (`baseline ∓
//! sensitivity × sigma`), `score` (`(value - baseline) / sigma`) and `anomalous`
//! (`|score| >= sensitivity`, default sensitivity 3); the five are NULL for a series
//! with too little history.

use std::sync::Arc;

use datafusion::arrow::array::{
    Float64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::value::QueryValue;
use crate::{QueryOptions, instant_query, range_query};

/// Registers `promql_instant`, `promql_range` and `anomaly_range` on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udtf("promql_instant", Arc::new(PromqlFunction { range: false }));
    ctx.register_udtf("promql_range", Arc::new(PromqlFunction { range: true }));
    ctx.register_udtf("anomaly_range", Arc::new(AnomalyFunction));
}

/// The rows' schema: `timestamp`, `value`, `labels`.
pub fn schema() -> SchemaRef {
    let entries = Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    );
    Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Float64, false),
        Field::new("labels", DataType::Map(Arc::new(entries), false), false),
    ]))
}

#[derive(Debug)]
struct PromqlFunction {
    range: bool,
}

fn literal(e: &Expr, session: &dyn Session) -> Result<ScalarValue> {
    let info = SimplifyContext::builder()
        .with_query_execution_start_time(session.execution_props().query_execution_start_time)
        .build();
    match ExprSimplifier::new(info).simplify(e.clone())? {
        Expr::Literal(v, _) => Ok(v),
        other => plan_err!("PromQL table functions take constant arguments, got {other}"),
    }
}

/// The PromQL query argument of the table function `name`, parsed now so that a bad
/// query fails at planning with the parser's message.
fn query_arg(name: &str, e: &Expr, session: &dyn Session) -> Result<String> {
    let query = match literal(e, session)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s,
        other => return plan_err!("{name}: the query must be a string, got {other}"),
    };
    crate::query::parse(&query).map_err(|e| DataFusionError::Plan(e.to_string()))?;
    Ok(query)
}

/// A context over the scanning session's state, for the PromQL engine.
fn context_of(state: &dyn Session) -> Result<SessionContext> {
    match state.as_any().downcast_ref::<SessionState>() {
        Some(st) => Ok(SessionContext::new_with_state(st.clone())),
        None => plan_err!("PromQL table functions need DataFusion's SessionState"),
    }
}

/// A time argument in ms.
fn time_ms(v: &ScalarValue, what: &str) -> Result<i64> {
    let bad = || {
        DataFusionError::Plan(format!(
            "invalid {what}: {v} (use an RFC 3339 string, Unix seconds or a timestamp)"
        ))
    };
    Ok(match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => crate::parse_time_ms(s).ok_or_else(bad)?,
        ScalarValue::Int64(Some(x)) => x.saturating_mul(1000),
        ScalarValue::Int32(Some(x)) => *x as i64 * 1000,
        ScalarValue::Float64(Some(x)) => (x * 1000.0).round() as i64,
        ScalarValue::TimestampSecond(Some(x), _) => x.saturating_mul(1000),
        ScalarValue::TimestampMillisecond(Some(x), _) => *x,
        ScalarValue::TimestampMicrosecond(Some(x), _) => x / 1000,
        ScalarValue::TimestampNanosecond(Some(x), _) => x / 1_000_000,
        _ => return Err(bad()),
    })
}

/// A step argument in ms.
fn step_ms(v: &ScalarValue) -> Result<i64> {
    let bad = || {
        DataFusionError::Plan(format!(
            "invalid step: {v} (use '30s', seconds or an interval)"
        ))
    };
    Ok(match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => crate::parse_duration_ms(s).ok_or_else(bad)?,
        ScalarValue::Int64(Some(x)) => x.saturating_mul(1000),
        ScalarValue::Float64(Some(x)) => (x * 1000.0).round() as i64,
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            (i.days as i64 * 86_400_000).saturating_add(i.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            (i.days as i64 * 86_400_000).saturating_add(i.milliseconds as i64)
        }
        ScalarValue::DurationMillisecond(Some(x)) => *x,
        ScalarValue::DurationSecond(Some(x)) => x.saturating_mul(1000),
        _ => return Err(bad()),
    })
}

impl TableFunctionImpl for PromqlFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let session = args.session();
        let name = if self.range {
            "promql_range"
        } else {
            "promql_instant"
        };
        let want = if self.range { 4 } else { 2 };
        if exprs.len() != want {
            return plan_err!(
                "{name} takes {want} arguments: {}",
                if self.range {
                    "(query, start, end, step)"
                } else {
                    "(query, time)"
                }
            );
        }
        let query = query_arg(name, &exprs[0], session)?;
        let start = time_ms(
            &literal(&exprs[1], session)?,
            if self.range { "start" } else { "time" },
        )?;
        let (end, step) = if self.range {
            (
                time_ms(&literal(&exprs[2], session)?, "end")?,
                step_ms(&literal(&exprs[3], session)?)?,
            )
        } else {
            (start, 0)
        };
        Ok(Arc::new(PromqlTable {
            query,
            start,
            end,
            step,
            range: self.range,
        }))
    }
}

/// The result of one PromQL query as a table.
#[derive(Debug)]
struct PromqlTable {
    query: String,
    start: i64,
    end: i64,
    step: i64,
    range: bool,
}

fn to_batch(v: &QueryValue) -> Result<RecordBatch> {
    let mut ts = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut vals = Float64Builder::new();
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut push = |t: i64, v: f64, l: &[(String, String)]| -> Result<()> {
        ts.append_value(t);
        vals.append_value(v);
        for (k, x) in l {
            labels.keys().append_value(k);
            labels.values().append_value(x);
        }
        labels.append(true)?;
        Ok(())
    };
    match v {
        QueryValue::Scalar { t_ms, v } => push(*t_ms, *v, &[])?,
        QueryValue::String { .. } => {
            return Err(DataFusionError::Plan(
                "a string result has no rows; query a scalar or a vector".into(),
            ));
        }
        QueryValue::Vector(s) => {
            for x in s {
                push(x.t_ms, x.v, &x.labels)?;
            }
        }
        QueryValue::Matrix(m) => {
            for s in m {
                for (t, v) in &s.points {
                    push(*t, *v, &s.labels)?;
                }
            }
        }
    }
    let (ts, vals, labels) = (ts.finish(), vals.finish(), labels.finish());
    // The builder names the map's parts as `schema()` does.
    let schema = Arc::new(Schema::new(vec![
        schema().field(0).clone(),
        schema().field(1).clone(),
        Field::new(
            "labels",
            datafusion::arrow::array::Array::data_type(&labels).clone(),
            false,
        ),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![Arc::new(ts), Arc::new(vals), Arc::new(labels)],
    )?)
}

#[async_trait::async_trait]
impl TableProvider for PromqlTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = context_of(state)?;
        let opts = QueryOptions::default();
        let r = if self.range {
            range_query(&ctx, &self.query, self.start, self.end, self.step, &opts).await
        } else {
            instant_query(&ctx, &self.query, self.start, &opts).await
        }
        .map_err(|e| DataFusionError::Execution(format!("PromQL: {e}")))?;
        let batch = to_batch(&r.value)?;
        let batch = batch.with_schema(schema())?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema(),
            projection.cloned(),
        )?)
    }
}

/// `anomaly_range(...)` (see the module's doc).
#[derive(Debug)]
struct AnomalyFunction;

impl TableFunctionImpl for AnomalyFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let session = args.session();
        if !(4..=7).contains(&exprs.len()) {
            return plan_err!(
                "anomaly_range takes 4 to 7 arguments: (query, start, end, step [, sensitivity [, resolution [, history]]])"
            );
        }
        let query = query_arg("anomaly_range", &exprs[0], session)?;
        let start = time_ms(&literal(&exprs[1], session)?, "start")?;
        let end = time_ms(&literal(&exprs[2], session)?, "end")?;
        let step = step_ms(&literal(&exprs[3], session)?)?;
        let sensitivity = match exprs.get(4).map(|e| literal(e, session)).transpose()? {
            None => 3.0,
            Some(ScalarValue::Float64(Some(x))) => x,
            Some(ScalarValue::Int64(Some(x))) => x as f64,
            Some(other) => {
                return plan_err!("anomaly_range: sensitivity must be a number, got {other}");
            }
        };
        if !(sensitivity.is_finite() && sensitivity > 0.0) {
            return plan_err!("anomaly_range: sensitivity must be positive, got {sensitivity}");
        }
        let resolution = match exprs.get(5) {
            Some(e) => step_ms(&literal(e, session)?)?,
            None => 15 * 60_000,
        };
        if resolution <= 0 || strata_rules::anomaly::DAY_MS % resolution != 0 {
            return plan_err!(
                "anomaly_range: resolution {resolution} ms must divide a day (e.g. '5m', '15m', '1h')"
            );
        }
        let history = match exprs.get(6) {
            Some(e) => step_ms(&literal(e, session)?)?,
            None => 28 * strata_rules::anomaly::DAY_MS,
        };
        if history <= 0 || history / resolution > 100_000 {
            return plan_err!(
                "anomaly_range: history {history} ms must be positive and hold at most 100000 resolution steps"
            );
        }
        Ok(Arc::new(AnomalyTable {
            query,
            start,
            end,
            step,
            sensitivity,
            resolution,
            history,
        }))
    }
}

/// The rows of one `anomaly_range(...)` call.
#[derive(Debug)]
struct AnomalyTable {
    query: String,
    start: i64,
    end: i64,
    step: i64,
    sensitivity: f64,
    resolution: i64,
    history: i64,
}

/// `anomaly_range`'s schema: `promql_range`'s, then `baseline`, `lower`, `upper`, `score`
/// and `anomalous`.
fn anomaly_schema(labels: &Field) -> SchemaRef {
    let base = schema();
    let mut fields: Vec<Field> = vec![base.field(0).clone(), base.field(1).clone(), labels.clone()];
    for name in ["baseline", "lower", "upper", "score"] {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(Field::new("anomalous", DataType::Boolean, true));
    Arc::new(Schema::new(fields))
}

#[async_trait::async_trait]
impl TableProvider for AnomalyTable {
    fn schema(&self) -> SchemaRef {
        anomaly_schema(schema().field(2))
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::arrow::array::{Array, BooleanBuilder};
        let ctx = context_of(state)?;
        let err = |e: crate::PromqlError| DataFusionError::Execution(format!("PromQL: {e}"));
        let r = range_query(
            &ctx,
            &self.query,
            self.start,
            self.end,
            self.step,
            &QueryOptions::default(),
        )
        .await
        .map_err(err)?;
        let hist_end = (self.start - 1).div_euclid(self.resolution) * self.resolution;
        let h = range_query(
            &ctx,
            &self.query,
            hist_end - self.history,
            hist_end,
            self.resolution,
            &QueryOptions {
                max_points_per_series: 100_001,
                ..QueryOptions::default()
            },
        )
        .await
        .map_err(err)?;
        let (QueryValue::Matrix(series), QueryValue::Matrix(history)) = (&r.value, &h.value) else {
            return plan_err!("anomaly_range: the query must give a range vector");
        };
        let baselines: std::collections::HashMap<
            &[(String, String)],
            strata_rules::anomaly::Baseline,
        > = history
            .iter()
            .filter_map(|s| {
                strata_rules::anomaly::fit(&s.points, self.resolution, self.start)
                    .ok()
                    .map(|b| (s.labels.as_slice(), b))
            })
            .collect();
        let batch = to_batch(&r.value)?;
        let (mut base, mut lo, mut hi, mut score, mut flag) = (
            Float64Builder::new(),
            Float64Builder::new(),
            Float64Builder::new(),
            Float64Builder::new(),
            BooleanBuilder::new(),
        );
        for s in series {
            let b = baselines.get(s.labels.as_slice());
            for (t, v) in &s.points {
                match b {
                    Some(b) => {
                        let j = b.judge(*t, *v, self.sensitivity);
                        base.append_value(j.expected);
                        lo.append_value(j.lower);
                        hi.append_value(j.upper);
                        score.append_value(j.score);
                        flag.append_value(j.anomalous);
                    }
                    None => {
                        base.append_null();
                        lo.append_null();
                        hi.append_null();
                        score.append_null();
                        flag.append_null();
                    }
                }
            }
        }
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(base.finish()));
        columns.push(Arc::new(lo.finish()));
        columns.push(Arc::new(hi.finish()));
        columns.push(Arc::new(score.finish()));
        columns.push(Arc::new(flag.finish()));
        debug_assert!(columns.iter().all(|c| c.len() == batch.num_rows()));
        let schema = anomaly_schema(batch.schema().field(2));
        let batch = RecordBatch::try_new(schema, columns)?.with_schema(self.schema())?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}
