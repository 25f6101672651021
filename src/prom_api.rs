//! The Prometheus HTTP API: queries (`/api/v1/query`, `/api/v1/query_range`, and
//! `/api/v1/query_explain`, Strata's own, which prints a query's DataFusion plan) and the
//! metadata endpoints (`/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, `/api/v1/metadata`, `/api/v1/status/buildinfo`), with
//! Prometheus's JSON shapes and error shapes (`docs/querying/api.md` of Prometheus).
//! GET takes URL parameters; POST takes them form-encoded too, as Prometheus does.

use std::sync::Arc;

use crate::server::now_ms;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};
use strata_promql::selector::{SeriesLabels, parse_selector, select_series};
use strata_promql::{PromqlError, QueryOptions, QueryValue};

/// Parameters from the query string and, for POST, the form body, in order.
fn params(query: Option<String>, body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = query
        .map(|q| serde_urlencoded::from_str(&q).unwrap_or_default())
        .unwrap_or_default();
    out.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default());
    out
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A Prometheus API error answer: `{"status":"error","errorType":..,"error":..}`.
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) error_type: &'static str,
    pub(crate) message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(
                json!({"status": "error", "errorType": self.error_type, "error": self.message}),
            ),
        )
            .into_response()
    }
}

/// A 400 `bad_data` answer.
pub(crate) fn bad_data(msg: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        error_type: "bad_data",
        message: msg.into(),
    }
}

fn from_promql(e: PromqlError) -> ApiError {
    let status = match e {
        PromqlError::BadData(_) => StatusCode::BAD_REQUEST,
        PromqlError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PromqlError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError {
        status,
        error_type: e.error_type(),
        message: e.to_string(),
    }
}

fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// A success answer with the distinct strings, sorted, cut at `limit`.
fn sorted_unique(items: impl Iterator<Item = String>, limit: Option<usize>) -> Response {
    let mut v: Vec<String> = items
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Some(l) = limit {
        v.truncate(l);
    }
    success(json!(v))
}

/// Parses a Prometheus API time: Unix seconds (float) or RFC 3339; returns ms.
///
/// # Errors
/// A message naming the parameter and value.
pub fn parse_time(name: &str, v: &str) -> Result<i64, String> {
    strata_promql::parse_time_ms(v).ok_or_else(|| {
        format!("invalid parameter \"{name}\": cannot parse \"{v}\" to a valid timestamp")
    })
}

/// The selectors and time range of a metadata request.
struct Request {
    selectors: Vec<promql_parser::parser::VectorSelector>,
    range: Option<(i64, i64)>,
    limit: Option<usize>,
}

fn request(p: &[(String, String)], require_match: bool) -> Result<Request, ApiError> {
    let mut selectors = vec![];
    for (n, v) in p {
        if n == "match[]" {
            selectors.push(parse_selector(v).map_err(from_promql)?);
        }
    }
    if require_match && selectors.is_empty() {
        return Err(bad_data("no match[] parameter provided"));
    }
    let t = |name: &str| -> Result<Option<i64>, ApiError> {
        param(p, name)
            .map(|v| parse_time(name, v))
            .transpose()
            .map_err(bad_data)
    };
    let (start, end) = (t("start")?, t("end")?);
    let range = match (start, end) {
        (None, None) => None,
        (s, e) => Some((s.unwrap_or(i64::MIN / 2), e.unwrap_or(i64::MAX / 2))),
    };
    let limit =
        match param(p, "limit") {
            None | Some("") | Some("0") => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| {
                bad_data(format!("invalid parameter \"limit\": cannot parse \"{v}\""))
            })?),
        };
    Ok(Request {
        selectors,
        range,
        limit,
    })
}

/// All series when no selector is given (labels and label values endpoints).
async fn pick(
    ctx: &SessionContext,
    r: &Request,
) -> Result<Vec<std::sync::Arc<SeriesLabels>>, ApiError> {
    let all;
    let selectors = if r.selectors.is_empty() {
        all = vec![parse_selector(r#"{__name__=~".+"}"#).map_err(from_promql)?];
        &all
    } else {
        &r.selectors
    };
    select_series(ctx, selectors, r.range)
        .await
        .map_err(from_promql)
}

async fn series(State(ctx): State<SessionContext>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q, &body);
    let r = match request(&p, true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match pick(&ctx, &r).await {
        Ok(mut s) => {
            if let Some(l) = r.limit {
                s.truncate(l);
            }
            success(Value::Array(
                s.into_iter()
                    .map(|s| {
                        Value::Object(
                            s.labels
                                .iter()
                                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                                .collect(),
                        )
                    })
                    .collect(),
            ))
        }
        Err(e) => e.into_response(),
    }
}

async fn labels(State(ctx): State<SessionContext>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q, &body);
    let r = match request(&p, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match pick(&ctx, &r).await {
        Ok(s) => sorted_unique(
            s.into_iter()
                .flat_map(|s| s.labels.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()),
            r.limit,
        ),
        Err(e) => e.into_response(),
    }
}

async fn label_values(
    State(ctx): State<SessionContext>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = params(q, &[]);
    let r = match request(&p, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // Any non-empty UTF-8 name (Prometheus 3), `U__` value-encoded ones decoded.
    let name = strata_ingest::validate::unescape_values_name(&name).into_owned();
    if name.is_empty() {
        return bad_data("invalid label name: \"\"").into_response();
    }
    match pick(&ctx, &r).await {
        Ok(s) => sorted_unique(
            s.iter()
                .map(|s| s.get(&name).to_string())
                .filter(|v| !v.is_empty()),
            r.limit,
        ),
        Err(e) => e.into_response(),
    }
}

/// A sample value as Prometheus's JSON API writes it (`web/api/v1/json_codec.go`
/// `marshalFloat`): the shortest decimal that reads back as the value, in Go's
/// `strconv.FormatFloat` `'f'` form, or its `'e'` form (`1e-07`, `1.5e+21`: a sign and at
/// least two exponent digits) when the magnitude is below 1e-6 or at least 1e21; `NaN`,
/// `+Inf`, `-Inf` ([`strata_promql::labels::FloatText`] otherwise). Written into the JSON
/// string without an intermediate `String`.
struct SampleValue(f64);

impl std::fmt::Display for SampleValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let magnitude = v.abs();
        if v != 0.0 && magnitude.is_finite() && !(1e-6..1e21).contains(&magnitude) {
            // Rust's shortest `{:e}` (`1.5e21`, `1e-7`) with Go's exponent.
            let e = format!("{v:e}");
            let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            let sign = if exp < 0 { '-' } else { '+' };
            write!(f, "{mantissa}e{sign}{:02}", exp.unsigned_abs())
        } else {
            std::fmt::Display::fmt(&strata_promql::labels::FloatText(v), f)
        }
    }
}

impl serde::Serialize for SampleValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A timestamp in ms as the API's seconds: an integer when whole, as Prometheus writes
/// it (`web/api/v1/json_codec.go` `marshalTimestamp`), else the float of its ms / 1000.
struct Timestamp(i64);

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// A query answer's JSON (`{"data": {"result": ..., "resultType": ...}, "status":
/// "success"}`, with `infos` and `warnings` when there are some), written straight from
/// the result: no `serde_json::Value` tree per point. Keys are in the order a
/// `serde_json::Value` object (sorted) gives them.
struct Answer<'a> {
    r: &'a strata_promql::QueryResult,
    /// Most series to give.
    limit: usize,
}

/// A `[timestamp, "value"]` pair.
struct Point(i64, f64);

/// A label set as a JSON object, sorted by name.
struct Metric<'a>(&'a [(String, String)]);

/// The `result` of an answer.
struct ResultJson<'a>(&'a QueryValue, usize);

/// One series of a vector (`value`) or matrix (`values`).
struct Series<'a> {
    labels: &'a [(String, String)],
    value: Option<Point>,
    values: &'a [(i64, f64)],
}

impl serde::Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&Timestamp(self.0))?;
        t.serialize_element(&SampleValue(self.1))?;
        t.end()
    }
}

impl serde::Serialize for Metric<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut sorted: Vec<&(String, String)> = self.0.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut m = s.serialize_map(Some(sorted.len()))?;
        for (k, v) in sorted {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl serde::Serialize for Series<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metric", &Metric(self.labels))?;
        match &self.value {
            Some(p) => m.serialize_entry("value", p)?,
            None => m.serialize_entry(
                "values",
                &serde_iter(self.values.iter().map(|(t, v)| Point(*t, *v))),
            )?,
        }
        m.end()
    }
}

impl<'a> Series<'a> {
    fn of(x: &'a strata_promql::RangeSeries) -> Series<'a> {
        Series {
            labels: &x.labels,
            value: None,
            values: &x.points,
        }
    }
}

/// A matrix of more points than this is serialized by several threads.
const PARALLEL_POINTS: usize = 32_768;

/// The JSON of each of `series`, serialized by up to one thread per core, when they
/// have more than [`PARALLEL_POINTS`] points (`None` otherwise, or on an error): a 2-year
/// range at step 1d of 100 series is 73,000 points, and formatting their floats took a
/// third of such a query's time on one thread.
fn serialize_in_parallel(
    series: &[strata_promql::RangeSeries],
) -> Option<Vec<Box<serde_json::value::RawValue>>> {
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if points <= PARALLEL_POINTS || threads < 2 || series.len() < 2 {
        return None;
    }
    let per = series.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let chunks: Vec<_> = series
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|x| serde_json::value::to_raw_value(&Series::of(x)).ok())
                        .collect::<Option<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(series.len());
        for c in chunks {
            out.extend(c.join().ok()??);
        }
        Some(out)
    })
}

/// Serializes an iterator's items as a JSON array.
fn serde_iter<T: serde::Serialize, I: Iterator<Item = T> + Clone>(it: I) -> impl serde::Serialize {
    struct Seq<I>(I);
    impl<T: serde::Serialize, I: Iterator<Item = T> + Clone> serde::Serialize for Seq<I> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_seq(self.0.clone())
        }
    }
    Seq(it)
}

impl serde::Serialize for ResultJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let limit = self.1;
        match self.0 {
            QueryValue::Scalar { t_ms, v } => Point(*t_ms, *v).serialize(s),
            QueryValue::String { t_ms, s: text } => (Timestamp(*t_ms), text).serialize(s),
            QueryValue::Vector(samples) => {
                s.collect_seq(samples.iter().take(limit).map(|x| Series {
                    labels: &x.labels,
                    value: Some(Point(x.t_ms, x.v)),
                    values: &[],
                }))
            }
            QueryValue::Matrix(series) => {
                let series = &series[..series.len().min(limit)];
                match serialize_in_parallel(series) {
                    Some(parts) => s.collect_seq(parts),
                    None => s.collect_seq(series.iter().map(Series::of)),
                }
            }
        }
    }
}

impl serde::Serialize for Answer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Data<'a>(&'a QueryValue, usize);
        impl serde::Serialize for Data<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let kind = match self.0 {
                    QueryValue::Scalar { .. } => "scalar",
                    QueryValue::String { .. } => "string",
                    QueryValue::Vector(_) => "vector",
                    QueryValue::Matrix(_) => "matrix",
                };
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("result", &ResultJson(self.0, self.1))?;
                m.serialize_entry("resultType", kind)?;
                m.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("data", &Data(&self.r.value, self.limit))?;
        if !self.r.infos.is_empty() {
            m.serialize_entry("infos", &self.r.infos)?;
        }
        m.serialize_entry("status", "success")?;
        if !self.r.warnings.is_empty() {
            m.serialize_entry("warnings", &self.r.warnings)?;
        }
        m.end()
    }
}

/// Parses a duration parameter: float seconds or a PromQL duration (`5m`, `1h30m`); ms.
fn parse_duration_ms(name: &str, v: &str) -> Result<i64, ApiError> {
    strata_promql::parse_duration_ms(v).ok_or_else(|| {
        bad_data(format!(
            "invalid parameter \"{name}\": cannot parse \"{v}\" to a valid duration"
        ))
    })
}

/// Parses `max_source_resolution` (Thanos's parameter): `auto` (or absent: any tier),
/// `raw` (or `0s`: raw samples only), or a duration (`1m`, `1h`, `1d`, `3600`): tiers at
/// most that coarse. Returns `QueryOptions::max_source_resolution_ms`.
fn max_source_resolution(p: &[(String, String)]) -> Result<Option<i64>, ApiError> {
    match param(p, "max_source_resolution") {
        None | Some("") | Some("auto") => Ok(None),
        Some("raw") => Ok(Some(0)),
        Some(v) => match strata_promql::parse_duration_ms(v) {
            Some(ms) if ms >= 0 => Ok(Some(ms)),
            _ => Err(bad_data(format!(
                "invalid parameter \"max_source_resolution\": {v:?} is none of raw, auto or a duration (1m, 1h, 1d)"
            ))),
        },
    }
}

/// Query options from `timeout`, `lookback_delta` and `max_source_resolution`.
fn query_options(p: &[(String, String)]) -> Result<QueryOptions, ApiError> {
    let mut o = QueryOptions {
        max_source_resolution_ms: max_source_resolution(p)?,
        ..QueryOptions::default()
    };
    if let Some(t) = param(p, "timeout").filter(|t| !t.is_empty()) {
        let ms = parse_duration_ms("timeout", t)?;
        o.timeout = Some(std::time::Duration::from_millis(ms.max(0) as u64));
    }
    if let Some(l) = param(p, "lookback_delta").filter(|t| !t.is_empty()) {
        o.lookback_delta_ms = parse_duration_ms("lookback_delta", l)?;
    }
    Ok(o)
}

fn limit_param(p: &[(String, String)]) -> Result<Option<usize>, ApiError> {
    match param(p, "limit") {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<usize>()
            .map(Some)
            .map_err(|_| bad_data(format!("invalid parameter \"limit\": cannot parse \"{v}\""))),
    }
}

fn query_param(p: &[(String, String)]) -> Result<&str, ApiError> {
    match param(p, "query") {
        Some(q) if !q.trim().is_empty() => Ok(q),
        _ => Err(bad_data(
            "invalid parameter \"query\": query must not be empty",
        )),
    }
}

/// The response header naming which source (raw samples or a rollup tier) answered which
/// steps: [`strata_promql::format_sources`].
pub const SOURCES_HEADER: &str = "x-strata-sources";

fn answer(r: Result<strata_promql::QueryResult, PromqlError>, limit: Option<usize>) -> Response {
    match r {
        Ok(r) => {
            let body = Answer {
                r: &r,
                limit: limit.unwrap_or(usize::MAX),
            };
            // Sized for the answer up front (a point takes about 24 bytes): a 2-year
            // matrix of 1.3 MB grew by doubling, a tenth of the query's CPU in copies.
            let points = match &r.value {
                QueryValue::Matrix(m) => m.iter().map(|s| s.points.len() + 4).sum(),
                QueryValue::Vector(v) => v.len() * 4,
                _ => 1,
            };
            let mut bytes = Vec::with_capacity(points.saturating_mul(24).min(1 << 30));
            match serde_json::to_writer(&mut bytes, &body).map(|()| bytes) {
                Ok(bytes) => (
                    [
                        (
                            axum::http::header::CONTENT_TYPE,
                            "application/json".to_string(),
                        ),
                        (
                            axum::http::HeaderName::from_static(SOURCES_HEADER),
                            strata_promql::format_sources(&r.sources),
                        ),
                    ],
                    bytes,
                )
                    .into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
        Err(e) => from_promql(e).into_response(),
    }
}

async fn query(State(ctx): State<SessionContext>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q, &body);
    let run = async {
        let query = query_param(&p)?;
        let t = match param(&p, "time").filter(|t| !t.is_empty()) {
            Some(t) => parse_time("time", t).map_err(bad_data)?,
            None => now_ms(),
        };
        let opts = query_options(&p)?;
        let limit = limit_param(&p)?;
        Ok::<_, ApiError>(answer(
            strata_promql::instant_query(&ctx, query, t, &opts).await,
            limit,
        ))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// The `start`, `end`, `step` of a range request (ms).
fn range_params(p: &[(String, String)]) -> Result<(i64, i64, i64), ApiError> {
    let t = |n: &str| match param(p, n) {
        Some(v) => parse_time(n, v).map_err(bad_data),
        None => Err(bad_data(format!(
            "invalid parameter \"{n}\": cannot parse \"\" to a valid timestamp"
        ))),
    };
    let (start, end) = (t("start")?, t("end")?);
    let step = match param(p, "step") {
        Some(s) => parse_duration_ms("step", s)?,
        None => {
            return Err(bad_data(
                "invalid parameter \"step\": cannot parse \"\" to a valid duration",
            ));
        }
    };
    Ok((start, end, step))
}

async fn query_range(
    State(ctx): State<SessionContext>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = params(q, &body);
    let run = async {
        let query = query_param(&p)?;
        let (start, end, step) = range_params(&p)?;
        let opts = query_options(&p)?;
        let limit = limit_param(&p)?;
        Ok::<_, ApiError>(answer(
            strata_promql::range_query(&ctx, query, start, end, step, &opts).await,
            limit,
        ))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// Strata's own: the DataFusion plan of a query (`query`, and `time` or `start`/`end`/
/// `step`), as text; with `analyze=true`, run and annotated with each operator's metrics.
async fn query_explain(
    State(ctx): State<SessionContext>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = params(q, &body);
    let run = async {
        let query = query_param(&p)?;
        let (start, end, step) = if param(&p, "start").is_some() {
            range_params(&p)?
        } else {
            let t = match param(&p, "time") {
                Some(t) => parse_time("time", t).map_err(bad_data)?,
                None => now_ms(),
            };
            (t, t, 1)
        };
        let opts = query_options(&p)?;
        let analyze = matches!(param(&p, "analyze"), Some("true" | "1"));
        let plan = strata_promql::explain(&ctx, query, start, end, step, &opts, analyze)
            .await
            .map_err(from_promql)?;
        Ok::<_, ApiError>(success(json!(plan)))
    };
    run.await.unwrap_or_else(|e| e.into_response())
}

/// `format_query`: the query as promql-parser prints it.
async fn format_query(RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = params(q, &body);
    match query_param(&p).and_then(|q| strata_promql::query::parse(q).map_err(from_promql)) {
        Ok(e) => {
            let text =
                strata_promql::depth::with_stack(strata_promql::depth::stack_for(e.depth), || {
                    e.expr.to_string()
                });
            success(json!(text))
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/metadata` (Prometheus's shape, `web/api/v1/api.go`, `metricMetadata`):
/// `{"<family>": [{"type", "help", "unit"}, ...]}` from the metadata senders gave
/// ([`strata_ingest::metadata`]). `metric` picks one family; `limit` caps the families
/// (Prometheus: a negative value is no limit, 0 gives none), `limit_per_metric` the entries
/// per family (0 or negative: no limit). A malformed number is `bad_data`.
async fn metadata(
    State(store): State<Arc<strata_ingest::metadata::MetadataStore>>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = params(q, &[]);
    let int = |name: &str| -> Result<Option<i64>, ApiError> {
        param(&p, name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    bad_data(format!(
                        "invalid parameter \"{name}\": {v:?} is not an integer"
                    ))
                })
            })
            .transpose()
    };
    let (limit, per) = match (int("limit"), int("limit_per_metric")) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let limit = limit.and_then(|l| usize::try_from(l).ok());
    let per = per.filter(|p| *p > 0).map(|p| p as usize);
    let found = store.get(param(&p, "metric").filter(|m| !m.is_empty()), limit, per);
    let data: serde_json::Map<String, Value> = found
        .into_iter()
        .map(|(family, entries)| {
            let list: Vec<Value> = entries
                .into_iter()
                .map(|m| json!({"type": m.metric_type.as_str(), "help": m.help, "unit": m.unit}))
                .collect();
            (family, Value::Array(list))
        })
        .collect();
    success(Value::Object(data))
}

/// `GET /api/v1/status/tsdb` in Prometheus's shape (`web/api/v1/api.go`, `serveTSDBStatus`;
/// `tsdb/index/postingsstats.go`): the head's active series counted by metric name, label
/// value pairs and label names, the top `limit` (default 10, positive) of each, sorted by
/// count and then name. `headStats` has the series, the distinct label pairs and the
/// samples' time range (ms; `minTime` > `maxTime` when the head is empty, as Prometheus
/// answers); `chunkCount` is 0 (Strata's head keeps samples, not chunks).
/// `memoryInBytesByLabelName` is the bytes of each label's distinct values.
async fn tsdb_status(
    State(ingester): State<Arc<strata_ingest::Ingester>>,
    RawQuery(q): RawQuery,
) -> Response {
    use std::collections::{HashMap, HashSet};
    let p = params(q, &[]);
    let limit = match param(&p, "limit") {
        None => 10,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return bad_data(format!("limit must be a positive number, got {v:?}"))
                    .into_response();
            }
        },
    };
    let (series, range) = ingester.active_series();
    let mut by_metric: HashMap<&str, u64> = HashMap::new();
    let mut values: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut by_pair: HashMap<(&str, &str), u64> = HashMap::new();
    for m in &series {
        *by_metric.entry(m.labels.metric_name()).or_default() += 1;
        for (n, v) in m.labels.pairs() {
            *by_pair.entry((n.as_ref(), v.as_ref())).or_default() += 1;
            values.entry(n.as_ref()).or_default().insert(v.as_ref());
        }
    }
    let top = |items: Vec<(String, u64)>| -> Value {
        let mut items = items;
        items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        items.truncate(limit);
        Value::Array(
            items
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    };
    let (min, max) = range.unwrap_or((i64::MAX, i64::MIN));
    success(json!({
        "headStats": {
            "numSeries": series.len(),
            "numLabelPairs": by_pair.len(),
            "chunkCount": 0,
            "minTime": min,
            "maxTime": max,
        },
        "seriesCountByMetricName":
            top(by_metric.iter().map(|(n, c)| (n.to_string(), *c)).collect()),
        "labelValueCountByLabelName":
            top(values.iter().map(|(n, v)| (n.to_string(), v.len() as u64)).collect()),
        "memoryInBytesByLabelName": top(values
            .iter()
            .map(|(n, v)| (n.to_string(), v.iter().map(|x| x.len() as u64).sum()))
            .collect()),
        "seriesCountByLabelValuePair":
            top(by_pair.iter().map(|((n, v), c)| (format!("{n}={v}"), *c)).collect()),
    }))
}

/// The TSDB status endpoint, on the write path's head.
pub fn tsdb_status_router(ingester: Arc<strata_ingest::Ingester>) -> Router {
    Router::new()
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .with_state(ingester)
}

/// The metadata endpoint, on the write path's metadata store.
pub fn metadata_router(store: Arc<strata_ingest::metadata::MetadataStore>) -> Router {
    Router::new()
        .route("/api/v1/metadata", get(metadata))
        .with_state(store)
}

/// Routes of this module, sharing the engine's session.
pub fn router(ctx: SessionContext) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route(
            "/api/v1/query_explain",
            get(query_explain).post(query_explain),
        )
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route(
            "/api/v1/status/config",
            get(|| async { success(json!({"yaml": ""})) }),
        )
        // Grafana asks for this; Strata stores no exemplars (rules and alerts:
        // crate::rules_api).
        .route(
            "/api/v1/query_exemplars",
            get(|| async { success(json!([])) }).post(|| async { success(json!([])) }),
        )
        .route(
            "/api/v1/status/runtimeinfo",
            get(|| async { success(json!({"storageRetention": "unlimited"})) }),
        )
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route(
            "/api/v1/status/buildinfo",
            get(|| async {
                success(json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "",
                    "application": "strata",
                }))
            }),
        )
        .with_state(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        // Go: strconv.FormatFloat(v, 'f' or 'e', -1, 64), as marshalFloat picks.
        for (v, want) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (1e-6, "0.000001"),
            (1e20, "100000000000000000000"),
            (123456789.125, "123456789.125"),
            (1e-7, "1e-07"),
            (-2.5e-10, "-2.5e-10"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(SampleValue(v).to_string(), want, "{v:?}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("t", "1700000000.5").unwrap(), 1_700_000_000_500);
        assert_eq!(
            parse_time("t", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(
            parse_time("start", "yesterday")
                .unwrap_err()
                .contains("\"start\"")
        );
    }
}
