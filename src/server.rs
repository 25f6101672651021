//! `strata serve`: the HTTP endpoints (remote write, JSON push, admin, self-metrics,
//! health), Arrow Flight SQL, the scrape loops and background persistence, started
//! together and stopped together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use strata_engine::Engine;
use strata_engine::source::IngesterSource;
use strata_ingest::receive::remote_write;
use strata_ingest::storage::DataDir;
use strata_ingest::{IngestError, Ingester};
use tokio::sync::watch;

use crate::config::Config;

/// A running server. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    /// The HTTP address actually bound (useful with port 0).
    pub http_addr: SocketAddr,
    /// The Flight SQL address actually bound.
    pub flight_addr: SocketAddr,
    /// The OTLP gRPC address bound, if any.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// The StatsD address bound (UDP and TCP), if any.
    pub statsd_addr: Option<SocketAddr>,
    /// The write path (with `[[tenants]]`, the first tenant's by ID).
    pub ingester: Arc<Ingester>,
    /// The query engine (with `[[tenants]]`, the first tenant's by ID).
    pub engine: Engine,
    /// The rollup tiers (their tables are in the engine's catalog); built in the
    /// background when `[rollup] enabled` (with `[[tenants]]`, the first tenant's by ID).
    pub rollups: Arc<strata_rollup::Rollups>,
    /// Each tenant's stack by tenant ID; empty without `[[tenants]]`.
    pub tenants: BTreeMap<String, Stack>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Rule evaluation's runtime: shut down when this is dropped, after the tasks.
    _rules_budget: Arc<crate::ruler::RulesBudget>,
    /// The rollup builds' runtime (`[rollup] threads`, `nice`), when they run.
    _rollup_runtime: Option<crate::background::Background>,
}

impl Running {
    /// Stops accepting requests, stops scraping, persists the head once more, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[derive(Clone)]
struct AppState {
    ingester: Arc<Ingester>,
    max_decoded: usize,
    /// `[remote_write] created_timestamp_zero_ingestion`.
    ct_zero_ingestion: bool,
}

/// The server clock in ms since the epoch (UTC).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The HTTP status of a write-path error and its `Retry-After` (s), as the remote-write
/// spec asks: 400/413 for data that will never be accepted (no retry), 503 with
/// `Retry-After` for overload and shutdown, 429 with `Retry-After` past the tenant's
/// ingestion rate, 500 otherwise.
pub(crate) fn status_of(e: &IngestError) -> (StatusCode, Option<u64>) {
    match e {
        IngestError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
        IngestError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
        IngestError::Overloaded { retry_after_s, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after_s))
        }
        IngestError::RateLimited { retry_after_s, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after_s))
        }
        IngestError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, Some(5)),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
    }
}

/// Maps write-path errors to HTTP answers ([`status_of`]): 4xx for data that
/// will never be accepted (no retry), 503 with `Retry-After` for overload, 500 otherwise.
fn error_response(e: IngestError) -> Response {
    let (status, retry) = status_of(&e);
    let mut r = (status, format!("{e}\n")).into_response();
    if let Some(s) = retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// The message a remote-write request carries, by its headers (remote write 2.0 spec,
/// "Content-Type" and "Content-Encoding"): `application/x-protobuf` alone or with
/// `proto=prometheus.WriteRequest` is 1.0, `proto=io.prometheus.write.v2.Request` is 2.0.
/// A request without `Content-Type` is read as 1.0 (older senders), one without
/// `Content-Encoding` as snappy. Returns `Err` with the 415 message for anything else.
fn remote_write_version(headers: &HeaderMap) -> Result<u8, String> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("");
        if !enc.trim().eq_ignore_ascii_case("snappy") {
            return Err(format!(
                "Content-Encoding {enc:?} is not supported: remote write bodies are snappy-compressed"
            ));
        }
    }
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(1);
    };
    let ct = ct.to_str().unwrap_or("");
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(format!(
            "Content-Type {ct:?} is not supported: remote write sends application/x-protobuf"
        ));
    }
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("proto") {
            return match v.trim().trim_matches('"') {
                "prometheus.WriteRequest" => Ok(1),
                "io.prometheus.write.v2.Request" => Ok(2),
                other => Err(format!(
                    "proto={other} is not supported: send prometheus.WriteRequest (1.0) or io.prometheus.write.v2.Request (2.0)"
                )),
            };
        }
    }
    Ok(1)
}

/// `POST /api/v1/write`: Prometheus remote write 1.0 and 2.0, chosen by `Content-Type`
/// ([`remote_write_version`]; 415 for what is neither). Metadata is recorded before the
/// samples are written, so that a request answered 2xx has both.
async fn remote_write_handler(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match remote_write_version(&headers) {
        Err(why) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{why}\n")).into_response(),
        Ok(2) => remote_write_v2(st, body).await,
        Ok(_) => remote_write_v1(st, body).await,
    }
}

async fn remote_write_v1(st: AppState, body: Bytes) -> Response {
    let req = match remote_write::decode_received(&body, st.max_decoded) {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    if !req.metadata.is_empty()
        && let Err(e) = st
            .ingester
            .metadata()
            .record(remote_write::metadata_entries(&req.metadata))
            .await
    {
        return error_response(e);
    }
    let v = st.ingester.validate_remote_write(req, now_ms());
    match st
        .ingester
        .write(v, "remote_write", Some(body.to_vec()))
        .await
    {
        Ok(out) if out.rejected == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(out) => (StatusCode::BAD_REQUEST, format!("{}\n", rejections(&out))).into_response(),
        Err(e) => error_response(e),
    }
}

/// Remote write 2.0: every answer carries the `X-Prometheus-Remote-Write-*-Written`
/// headers the spec requires (0 where nothing was written).
async fn remote_write_v2(st: AppState, body: Bytes) -> Response {
    use remote_write::v2::Written;
    let with_written = |mut r: Response, w: Written| {
        for (name, n) in [
            ("x-prometheus-remote-write-samples-written", w.samples),
            ("x-prometheus-remote-write-histograms-written", w.histograms),
            ("x-prometheus-remote-write-exemplars-written", w.exemplars),
        ] {
            r.headers_mut().insert(name, HeaderValue::from(n));
        }
        r
    };
    let req = match remote_write::v2::decode(&body, st.max_decoded) {
        Ok(r) => r,
        Err(e) => return with_written(error_response(e), Written::default()),
    };
    let t = st
        .ingester
        .translate_remote_write_v2(&req, now_ms(), st.ct_zero_ingestion);
    if !t.metadata.is_empty()
        && let Err(e) = st.ingester.metadata().record(t.metadata).await
    {
        return with_written(error_response(e), Written::default());
    }
    let written = t.written;
    match st
        .ingester
        .write(t.validated, "remote_write_v2", None)
        .await
    {
        Ok(out) if out.rejected == 0 => {
            with_written(StatusCode::NO_CONTENT.into_response(), written)
        }
        Ok(out) => with_written(
            (StatusCode::BAD_REQUEST, format!("{}\n", rejections(&out))).into_response(),
            written,
        ),
        Err(e) => with_written(error_response(e), Written::default()),
    }
}

/// What a write that kept some samples and rejected others tells its client.
fn rejections(out: &strata_ingest::WriteOutcome) -> String {
    format!(
        "{} samples rejected ({} accepted): {}",
        out.rejected,
        out.accepted,
        out.first_error.as_deref().unwrap_or_default()
    )
}

/// `POST /api/v1/metrics`: JSON push; `202 Accepted` with `{"accepted": n}`.
async fn json_handler(State(st): State<AppState>, body: Bytes) -> Response {
    let v = match strata_ingest::receive::json::parse(&body, st.ingester.limits(), now_ms()) {
        Ok(v) => v,
        Err(e) => return error_response(e),
    };
    match st.ingester.write(v, "json", None).await {
        Ok(out) if out.rejected == 0 => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"accepted": out.accepted})),
        )
            .into_response(),
        Ok(out) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "accepted": out.accepted,
                "rejected": out.rejected,
                "error": out.first_error,
            })),
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

/// Which InfluxDB API a line protocol request came through: its parameters and the
/// shape of its errors differ.
#[derive(Clone, Copy, PartialEq)]
enum InfluxApi {
    /// `/write`: `db`, `precision` (`n`, `u`, `ms`, `s`, `m`, `h`); errors
    /// `{"error": ...}`.
    V1,
    /// `/api/v2/write`: `org`, `bucket`, `precision` (`ns`, `us`, `ms`, `s`); errors
    /// `{"code": ..., "message": ...}`.
    V2,
}

/// `POST /write` (v1) and `POST /api/v2/write` (v2): InfluxDB line protocol
/// ([`strata_ingest::receive::influx`]); `204 No Content` once durable.
async fn influx_handler(
    State(st): State<AppState>,
    path: axum::extract::MatchedPath,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use strata_ingest::receive::influx;
    let api = if path.as_str() == "/write" {
        InfluxApi::V1
    } else {
        InfluxApi::V2
    };
    let code = |status: StatusCode| match status {
        StatusCode::PAYLOAD_TOO_LARGE => "request too large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::TOO_MANY_REQUESTS => "too many requests",
        s if s.is_client_error() => "invalid",
        _ => "internal error",
    };
    let fail = |e: IngestError| {
        let message = e.to_string();
        let mut r = error_response(e);
        let status = r.status();
        *r.body_mut() = axum::body::Body::from(
            match api {
                InfluxApi::V1 => serde_json::json!({"error": message}),
                InfluxApi::V2 => serde_json::json!({"code": code(status), "message": message}),
            }
            .to_string(),
        );
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let run = async {
        let precision =
            influx::Precision::parse(params.get("precision").map_or("", String::as_str))?;
        let db = match api {
            InfluxApi::V1 => params.get("db"),
            InfluxApi::V2 => params.get("bucket"),
        }
        .filter(|d| !d.is_empty())
        .cloned();
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let body = strata_ingest::receive::decode_content(body, encoding, st.max_decoded)?;
        let parsed = influx::parse(
            &body,
            &influx::Options { precision, db },
            st.ingester.limits(),
            now_ms(),
        )?;
        if parsed.skipped_strings > 0 {
            st.ingester
                .metrics()
                .samples_rejected
                .with_label_values(&["influx_string_field"])
                .inc_by(parsed.skipped_strings as u64);
        }
        st.ingester.write(parsed.validated, "influx", None).await
    };
    match run.await {
        Ok(out) if out.rejected == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(out) => fail(IngestError::BadRequest(format!(
            "partial write: {}",
            rejections(&out)
        ))),
        Err(e) => fail(e),
    }
}

/// `GET|HEAD /ping`: what InfluxDB clients and Telegraf check before writing.
async fn influx_ping() -> Response {
    (
        StatusCode::NO_CONTENT,
        [("X-Influxdb-Version", "1.8.10 (Strata)")],
    )
        .into_response()
}

/// `POST /api/v1/admin/flush`: persists the head now; answers after the Delta commit.
async fn flush_handler(State(st): State<AppState>) -> Response {
    match st.ingester.persist().await {
        Ok(r) => axum::Json(serde_json::json!({
            "samples": r.samples,
            "new_series": r.new_series,
            "version": r.version,
        }))
        .into_response(),
        Err(e) => error_response(e),
    }
}

/// Builds the HTTP router.
fn router(st: AppState, max_body: usize) -> Router {
    Router::new()
        .route("/api/v1/write", post(remote_write_handler))
        .route("/api/v1/metrics", post(json_handler))
        .route("/write", post(influx_handler))
        .route("/api/v2/write", post(influx_handler))
        .route("/api/v1/admin/flush", post(flush_handler))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(st)
}

/// One retention pass at `now_ms` (ms, UTC): each tier's retention
/// ([`strata_rollup::Rollups::enforce_retention`]), then raw retention when `raw` is not
/// zero: the `samples` table's UTC days before the day of `min(now - raw, first tier's
/// watermark)` are deleted, so a raw sample is never deleted before its first-tier bucket
/// is built (nothing is deleted before the first build). Returns what was removed, as
/// `(tier files, raw files)`.
///
/// # Errors
/// A message naming the step that failed.
pub async fn retention_pass(
    ingester: &Ingester,
    rollups: &strata_rollup::Rollups,
    raw: std::time::Duration,
    now_ms: i64,
) -> Result<(u64, u64), String> {
    let tiers = rollups
        .enforce_retention(now_ms)
        .await
        .map_err(|e| format!("tier retention: {e}"))?;
    let tier_files = tiers.iter().map(|e| e.files_removed).sum();
    if raw.is_zero() {
        return Ok((tier_files, 0));
    }
    let Some(built) = rollups
        .watermark(0)
        .await
        .map_err(|e| format!("reading the first tier's watermark: {e}"))?
    else {
        return Ok((tier_files, 0));
    };
    let cutoff = (now_ms - raw.as_millis() as i64).min(built);
    let raw_files = ingester
        .expire_days_before(strata_ingest::storage::date_of_ms(cutoff))
        .await
        .map_err(|e| format!("raw retention: {e}"))?;
    Ok((tier_files, raw_files))
}

/// Binds the OTLP gRPC address `addr` (`None` for an empty one). The default address
/// taken by another process (an OpenTelemetry collector on the same host) is logged and
/// skipped, whether or not the configuration spells it out; any other address must bind.
///
/// # Errors
/// A message when another address does not parse or bind.
async fn bind_otlp_grpc(addr: &str) -> Result<Option<tokio::net::TcpListener>, String> {
    if addr.is_empty() {
        return Ok(None);
    }
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if addr == strata_ingest::receive::otlp::DEFAULT_GRPC_ADDR => {
            tracing::warn!(error = %e, %addr, "the OTLP gRPC port is taken; serving without OTLP over gRPC (set [otlp] grpc_addr)");
            Ok(None)
        }
        Err(e) => Err(format!("binding the OTLP gRPC address {addr}: {e}")),
    }
}

/// One tenant's storage, engine and rollup tiers (the only one, anonymous, without
/// `[[tenants]]`), with the HTTP routes that act on them.
pub struct Stack {
    /// The write path.
    pub ingester: Arc<Ingester>,
    /// The query engine: its catalog holds this tenant's tables only.
    pub engine: Engine,
    /// The rollup tiers (their tables are in the engine's catalog).
    pub rollups: Arc<strata_rollup::Rollups>,
    /// Raw retention (`[rollup] raw_retention`, or the tenant's).
    raw_retention: std::time::Duration,
    /// The OTLP receiver.
    otlp: Arc<crate::otlp::Otlp>,
    /// Remote write, JSON, InfluxDB, OTLP/HTTP, the Prometheus API, admin routes.
    http: Router,
    /// The rule groups (`rule_files` and the ruler API), evaluated in the background.
    pub rules: Arc<crate::ruler::Ruler>,
    /// Anomaly rules' baselines (the `anomaly_baselines` table).
    baselines: Arc<crate::baselines::DeltaBaselines>,
}

/// Opens one tenant's stack (`tenant` is `None` for the anonymous one) in `data_dir` and
/// `wal_dir`, with the tenant's limits where it sets them and `cfg`'s otherwise.
///
/// # Errors
/// A message naming what failed: storage, WAL, engine, tiers, or a limit's value.
async fn open_stack(
    cfg: &Config,
    tenant: Option<&crate::tenants::TenantConfig>,
    data_dir: DataDir,
    wal_dir: &std::path::Path,
) -> Result<Stack, String> {
    let metrics = strata_ingest::metrics::IngestMetrics::new();
    let ingester = Ingester::open(
        data_dir,
        wal_dir,
        cfg.limits.clone(),
        cfg.persist.clone(),
        metrics,
    )
    .await
    .map_err(|e| format!("opening storage: {e}"))?;
    ingester.set_relabel_configs(cfg.metric_relabel_configs.clone());
    ingester.set_cardinality_limits(
        tenant
            .and_then(|t| t.cardinality.clone())
            .unwrap_or_else(|| cfg.cardinality.clone()),
    );
    ingester.set_sampling(&cfg.sampling);
    if let Some(t) = tenant {
        ingester
            .set_ingestion_rate(t.ingestion_rate)
            .map_err(|e| format!("tenant {:?}: {e}", t.id))?;
    }
    let source = Arc::new(IngesterSource(ingester.clone()));
    let engine = Engine::with_caches(source, cfg.query.cache_sizes())
        .await
        .map_err(|e| format!("starting the engine: {e}"))?;
    // PromQL inside SQL (also over Flight SQL): promql_instant(...), promql_range(...).
    strata_promql::sql_functions::register(&engine.context());
    let mut tiers = cfg.rollup.tiers.clone();
    if let Some(t) = tenant {
        for (name, keep) in &t.tier_retention {
            let Some(tier) = tiers.iter_mut().find(|x| &x.name == name) else {
                return Err(format!(
                    "tenant {:?}: tier_retention names no tier {name:?}",
                    t.id
                ));
            };
            tier.retention = Some(*keep);
        }
    }
    let mut rollups = strata_rollup::Rollups::open(engine.clone(), ingester.data_dir(), tiers)
        .await
        .map_err(|e| format!("opening the rollup tiers: {e}"))?;
    rollups.track_late(ingester.clone()).await;
    let rollups = Arc::new(rollups);
    let raw_retention = tenant
        .and_then(|t| t.raw_retention)
        .unwrap_or(cfg.rollup.raw_retention);
    if cfg.rollup.enabled && !cfg.rollup.retention_interval.is_zero() {
        // Where raw samples may be gone: PromQL reads the tiers there.
        rollups.catalog().set_raw_retention(raw_retention);
    }
    let st = AppState {
        ingester: ingester.clone(),
        max_decoded: cfg.max_request_bytes.saturating_mul(8),
        ct_zero_ingestion: cfg.remote_write.created_timestamp_zero_ingestion,
    };
    let otlp = Arc::new(crate::otlp::Otlp::new(
        ingester.clone(),
        strata_promql::prom_session(&engine.context()),
        cfg.otlp.clone(),
        st.max_decoded,
    ));
    let rule_files = match tenant {
        Some(t) => &t.rule_files,
        None => &cfg.rule_files,
    };
    let rules_dir = match ingester.data_dir().local_path() {
        Some(p) => p.join("rules"),
        None => wal_dir.join("rules"),
    };
    let rules = Arc::new(crate::ruler::Ruler::load(
        rule_files,
        rules_dir,
        cfg.rules.evaluation_interval,
    )?);
    let http = router(st, cfg.max_request_bytes)
        .merge(crate::rules_api::router(rules.clone()))
        .merge(crate::ruler::router(rules.clone()))
        .merge(crate::otlp::router(otlp.clone()))
        .merge(crate::prom_api::router(strata_promql::prom_session(
            &engine.context(),
        )))
        .merge(crate::rollup_api::router(rollups.clone()))
        .merge(crate::prom_api::metadata_router(
            ingester.metadata().clone(),
        ))
        .merge(crate::prom_api::tsdb_status_router(ingester.clone()));
    let baselines = Arc::new(crate::baselines::DeltaBaselines::open(ingester.data_dir()).await?);
    Ok(Stack {
        ingester,
        engine,
        rollups,
        raw_retention,
        otlp,
        http,
        rules,
        baselines,
    })
}

/// Starts `stack`'s background work: persistence, retention and vacuum, the rollup
/// builds, and `scrape_configs`.
fn spawn_stack_tasks(
    cfg: &Config,
    stack: &Stack,
    scrape_configs: &[strata_ingest::receive::scrape::ScrapeConfig],
    stop_rx: &watch::Receiver<bool>,
    rules_budget: &crate::ruler::RulesBudget,
    rollup_runtime: Option<&tokio::runtime::Handle>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), String> {
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    tasks.extend(strata_ingest::receive::scrape::spawn(
        scrape_configs,
        stack.ingester.clone(),
        stop_rx.clone(),
    ));
    let ing = stack.ingester.clone();
    let rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        ing.run_background(wait(rx)).await;
    }));
    {
        let external: strata_rules::Labels = cfg
            .rules
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let notifier = crate::notifier::Notifier::new(
            &cfg.alerting,
            external.clone(),
            cfg.rules.external_url.clone(),
            &stack.ingester.metrics().registry,
        )?;
        if let Some(n) = &notifier {
            tasks.push(tokio::spawn(n.clone().run(stop_rx.clone())));
        }
        let env = Arc::new(strata_rules::Env {
            querier: Arc::new(crate::rules_api::EngineQuerier(
                rules_budget.session(&stack.engine.context())?,
                (!cfg.rules.query_timeout.is_zero()).then_some(cfg.rules.query_timeout),
            )),
            appender: Arc::new(crate::rules_api::IngesterAppender(stack.ingester.clone())),
            notifier: notifier.map(|n| n as Arc<dyn strata_rules::Notifier>),
            baselines: Some(stack.baselines.clone()),
            external_labels: external,
            external_url: cfg.rules.external_url.clone(),
            resend_delay: cfg.alerting.resend_delay,
            metrics: Some(strata_rules::RuleMetrics::register(
                &stack.ingester.metrics().registry,
            )?),
            slots: Some(rules_budget.slots.clone()),
        });
        let (ruler, mut stop) = (stack.rules.clone(), stop_rx.clone());
        let handle = rules_budget.handle.clone();
        tasks.push(tokio::spawn(async move {
            ruler.start(env, stop.clone(), handle).await;
            let _ = stop.wait_for(|v| *v).await;
            ruler.join().await;
        }));
    }
    if cfg.rollup.enabled && !cfg.rollup.retention_interval.is_zero() {
        let (r, ing, mut rx) = (
            stack.rollups.clone(),
            stack.ingester.clone(),
            stop_rx.clone(),
        );
        let (every, raw) = (cfg.rollup.retention_interval, stack.raw_retention);
        let (vacuum_every, vacuum_keep) =
            (cfg.persist.vacuum_interval, cfg.persist.vacuum_retention);
        tasks.push(tokio::spawn(async move {
            let mut last_vacuum = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = rx.wait_for(|v| *v) => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = retention_pass(&ing, &r, raw, now_ms()).await {
                    tracing::warn!(error = %e, "enforcing retention failed; will retry");
                }
                if !vacuum_every.is_zero() && last_vacuum.elapsed() >= vacuum_every {
                    if let Err(e) = r.vacuum(vacuum_keep).await {
                        tracing::warn!(error = %e, "vacuuming the rollup tiers failed");
                    }
                    last_vacuum = std::time::Instant::now();
                }
            }
        }));
    }
    if cfg.rollup.enabled {
        let metrics = strata_rollup::RollupMetrics::register(&stack.ingester.metrics().registry)
            .map_err(|e| format!("rollup metrics: {e}"))?;
        let (r, rx, schedule) = (
            stack.rollups.clone(),
            stop_rx.clone(),
            cfg.rollup.schedule(),
        );
        let run = async move {
            r.run(schedule, Some(metrics), wait(rx)).await;
        };
        tasks.push(match rollup_runtime {
            Some(h) => h.spawn(run),
            None => tokio::spawn(run),
        });
    }
    Ok(())
}

/// The routes that are not a tenant's: self-metrics and health. With tenants, each
/// metric of `/metrics` carries a `tenant` label.
fn global_router<S: Clone + Send + Sync + 'static>(
    stacks: Arc<BTreeMap<String, Arc<Ingester>>>,
    tenanted: bool,
) -> Router<S> {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let stacks = stacks.clone();
                async move {
                    for i in stacks.values() {
                        i.refresh_gauges();
                    }
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render_metrics(&stacks, tenanted),
                    )
                }
            }),
        )
        .route("/ping", get(influx_ping).head(influx_ping))
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }))
}

/// The stacks' self-metrics in the Prometheus text format; with `tenanted`, each metric
/// gets a `tenant` label and same-named families are merged into one.
fn render_metrics(stacks: &BTreeMap<String, Arc<Ingester>>, tenanted: bool) -> String {
    use prometheus::Encoder as _;
    if !tenanted {
        return stacks
            .values()
            .next()
            .map(|i| i.metrics().render())
            .unwrap_or_default();
    }
    let mut families: BTreeMap<String, prometheus::proto::MetricFamily> = BTreeMap::new();
    for (tenant, ing) in stacks {
        for mut f in ing.metrics().registry.gather() {
            let mut metrics = f.take_metric();
            for m in &mut metrics {
                let mut labels = m.take_label();
                let mut l = prometheus::proto::LabelPair::default();
                l.set_name("tenant".into());
                l.set_value(tenant.clone());
                labels.insert(0, l);
                m.set_label(labels);
            }
            match families.get_mut(f.name()) {
                Some(existing) => existing.mut_metric().extend(metrics),
                None => {
                    f.set_metric(metrics);
                    families.insert(f.name().to_string(), f);
                }
            }
        }
    }
    let families: Vec<_> = families.into_values().collect();
    let mut out = vec![];
    match prometheus::TextEncoder::new().encode(&families, &mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(e) => format!("# error encoding metrics: {e}\n"),
    }
}

/// Routes a request to the stack of the tenant its headers name
/// ([`crate::tenants::Auth::resolve`]): 401 (with `WWW-Authenticate`) or 403 otherwise.
async fn dispatch(State(t): State<Arc<Tenancy>>, req: axum::extract::Request) -> Response {
    use tower::ServiceExt as _;
    let resolved = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        t.auth.resolve(
            header(crate::tenants::ORG_ID_HEADER),
            header(header::AUTHORIZATION.as_str()),
        )
    };
    match resolved {
        Ok(tenant) => match t.routers.get(&tenant) {
            Some(r) => match r.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            None => (StatusCode::UNAUTHORIZED, format!("no tenant {tenant:?}\n")).into_response(),
        },
        Err(crate::tenants::AuthError::Forbidden(m)) => {
            (StatusCode::FORBIDDEN, format!("{m}\n")).into_response()
        }
        Err(crate::tenants::AuthError::Unauthenticated(m)) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{m}\n"),
        )
            .into_response(),
    }
}

/// The tenants' routes and who may reach them.
struct Tenancy {
    auth: crate::tenants::Auth,
    routers: std::collections::HashMap<String, Router>,
}

/// Starts everything `cfg` describes: opens the tables and the WAL (replaying it), binds
/// the HTTP, Flight and OTLP gRPC addresses (port 0 picks a free port), starts scraping and
/// background persistence. With `[[tenants]]`, one stack per tenant under
/// `<data_dir>/tenants/<id>/`, every request routed by its tenant ([`crate::tenants`]).
///
/// # Errors
/// A message naming what failed: bad data directory, WAL or table errors, an address in
/// use, a tenant declaration or limit that is not valid.
pub async fn start(cfg: Config) -> Result<Running, String> {
    let data_dir = DataDir::parse(&cfg.data_dir).map_err(|e| e.to_string())?;
    let auth = crate::tenants::Auth::new(&cfg.tenants)?;
    let tenanted = !cfg.tenants.is_empty();
    if tenanted && !cfg.rule_files.is_empty() {
        return Err(
            "with [[tenants]], rule files belong to a tenant: move rule_files into [[tenants]] rule_files"
                .into(),
        );
    }
    if tenanted && !cfg.scrape_configs.is_empty() {
        return Err(
            "with [[tenants]], scrape jobs belong to a tenant: move [[scrape_configs]] into [[tenants.scrape_configs]]"
                .into(),
        );
    }
    let mut stacks: BTreeMap<String, Stack> = BTreeMap::new();
    if tenanted {
        for t in &cfg.tenants {
            let dir = data_dir
                .join(&format!("tenants/{}", t.id))
                .map_err(|e| format!("tenant {:?}: {e}", t.id))?;
            let wal = cfg.wal_dir().join("tenants").join(&t.id);
            let stack = open_stack(&cfg, Some(t), dir, &wal)
                .await
                .map_err(|e| format!("tenant {:?}: {e}", t.id))?;
            stacks.insert(t.id.clone(), stack);
        }
    } else {
        stacks.insert(
            String::new(),
            open_stack(&cfg, None, data_dir, &cfg.wal_dir()).await?,
        );
    }
    let (stop, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let http = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .map_err(|e| format!("binding HTTP address {}: {e}", cfg.http_addr))?;
    let flight = tokio::net::TcpListener::bind(cfg.flight_addr)
        .await
        .map_err(|e| format!("binding Flight SQL address {}: {e}", cfg.flight_addr))?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let flight_addr = flight.local_addr().map_err(|e| e.to_string())?;
    let auth = Arc::new(auth);
    let mut tasks = vec![];
    let grpc_addr = match bind_otlp_grpc(&cfg.otlp.grpc_addr).await? {
        Some(listener) => {
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let otlps = stacks
                .iter()
                .map(|(id, s)| (id.clone(), s.otlp.clone()))
                .collect();
            let tenancy = tenanted.then(|| auth.clone());
            let rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::otlp::serve_grpc(listener, otlps, tenancy, wait(rx)).await {
                    tracing::error!(error = %e, "OTLP gRPC server failed");
                }
            }));
            Some(addr)
        }
        None => None,
    };
    let statsd_stack = match (&cfg.statsd.tenant, tenanted) {
        (Some(t), true) => Some(
            stacks
                .get(t)
                .ok_or_else(|| format!("[statsd] tenant {t:?} is not in [[tenants]]"))?,
        ),
        (Some(_), false) => {
            return Err("[statsd] tenant is set but no [[tenants]] are configured".into());
        }
        (None, true) => {
            if !cfg.statsd.addr.is_empty() {
                tracing::warn!(
                    "StatsD has no tenant: serving without it (set [statsd] tenant to one of [[tenants]])"
                );
            }
            None
        }
        (None, false) => stacks.values().next(),
    };
    let statsd_addr = match statsd_stack {
        None => None,
        Some(stack) => {
            let statsd_mapper = crate::statsd::mapper(cfg.statsd.mapping_file.as_deref())?;
            match crate::statsd::bind(&cfg.statsd.addr).await? {
                Some((udp, tcp)) => {
                    let addr = udp.local_addr().map_err(|e| e.to_string())?;
                    let statsd = Arc::new(crate::statsd::Statsd::new(
                        stack.ingester.clone(),
                        strata_promql::prom_session(&stack.engine.context()),
                        statsd_mapper,
                    ));
                    tasks.extend(crate::statsd::spawn(
                        statsd,
                        (udp, tcp),
                        cfg.statsd.flush_interval,
                        stop_rx.clone(),
                    ));
                    Some(addr)
                }
                None => None,
            }
        }
    };
    let ingesters: Arc<BTreeMap<String, Arc<Ingester>>> = Arc::new(
        stacks
            .iter()
            .map(|(id, s)| (id.clone(), s.ingester.clone()))
            .collect(),
    );
    let app = if tenanted {
        let tenancy = Arc::new(Tenancy {
            auth: (*auth).clone(),
            routers: stacks
                .iter()
                .map(|(id, s)| (id.clone(), s.http.clone()))
                .collect(),
        });
        global_router(ingesters, true)
            .fallback(dispatch)
            .with_state(tenancy)
    } else {
        let only = stacks.values().next().expect("one stack");
        global_router(ingesters, false).merge(only.http.clone())
    };
    let rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app)
            .with_graceful_shutdown(wait(rx))
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    let rx = stop_rx.clone();
    let policy = cfg.sql.policy();
    let flight_ctxs: Vec<(String, datafusion::prelude::SessionContext)> = stacks
        .iter()
        .map(|(id, s)| (id.clone(), s.engine.context()))
        .collect();
    let flight_auth = tenanted.then(|| auth.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) =
            crate::tenants::serve_flight(flight, flight_ctxs, flight_auth, policy, wait(rx)).await
        {
            tracing::error!(error = %e, "Flight SQL server failed");
        }
    }));
    let rules_budget = Arc::new(crate::ruler::RulesBudget::new(&cfg.rules)?);
    let rollup_runtime = if cfg.rollup.enabled {
        Some(crate::background::Background::new(
            "strata-rollup",
            cfg.rollup.threads,
            cfg.rollup.nice,
        )?)
    } else {
        None
    };
    for (id, stack) in &stacks {
        let scrapes = match cfg.tenants.iter().find(|t| &t.id == id) {
            Some(t) => &t.scrape_configs,
            None => &cfg.scrape_configs,
        };
        spawn_stack_tasks(
            &cfg,
            stack,
            scrapes,
            &stop_rx,
            &rules_budget,
            rollup_runtime.as_ref().map(|b| &b.handle),
            &mut tasks,
        )?;
    }
    tracing::info!(%http_addr, %flight_addr, otlp_grpc_addr = ?grpc_addr, statsd_addr = ?statsd_addr, tenants = cfg.tenants.len(), "Strata is serving");
    let first = stacks.values().next().expect("at least one stack");
    let (ingester, engine, rollups) = (
        first.ingester.clone(),
        first.engine.clone(),
        first.rollups.clone(),
    );
    Ok(Running {
        http_addr,
        flight_addr,
        otlp_grpc_addr: grpc_addr,
        statsd_addr,
        ingester,
        engine,
        rollups,
        tenants: if tenanted { stacks } else { BTreeMap::new() },
        stop,
        tasks,
        _rules_budget: rules_budget,
        _rollup_runtime: rollup_runtime,
    })
}
