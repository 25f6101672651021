//! `strata serve`: the HTTP endpoints (remote write, JSON push, admin, self-metrics,
//! health), Arrow Flight SQL, the scrape loops and background persistence, started
//! together and stopped together.

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
    /// The write path.
    pub ingester: Arc<Ingester>,
    /// The query engine.
    pub engine: Engine,
    /// The rollup tiers (their tables are in the engine's catalog); built in the
    /// background when `[rollup] enabled`.
    pub rollups: Arc<strata_rollup::Rollups>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
/// `Retry-After` for overload and shutdown, 500 otherwise.
pub(crate) fn status_of(e: &IngestError) -> (StatusCode, Option<u64>) {
    match e {
        IngestError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
        IngestError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
        IngestError::Overloaded { retry_after_s, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after_s))
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

/// `GET /metrics`: Strata's own metrics.
async fn metrics_handler(State(st): State<AppState>) -> Response {
    st.ingester.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.ingester.metrics().render(),
    )
        .into_response()
}

/// Builds the HTTP router.
fn router(st: AppState, max_body: usize) -> Router {
    Router::new()
        .route("/api/v1/write", post(remote_write_handler))
        .route("/api/v1/metrics", post(json_handler))
        .route("/write", post(influx_handler))
        .route("/api/v2/write", post(influx_handler))
        .route("/ping", get(influx_ping).head(influx_ping))
        .route("/api/v1/admin/flush", post(flush_handler))
        .route("/metrics", get(metrics_handler))
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }))
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

/// Starts everything `cfg` describes: opens the tables and the WAL (replaying it), binds
/// the HTTP, Flight and OTLP gRPC addresses (port 0 picks a free port), starts scraping and
/// background persistence.
///
/// # Errors
/// A message naming what failed: bad data directory, WAL or table errors, an address in use.
pub async fn start(cfg: Config) -> Result<Running, String> {
    let data_dir = DataDir::parse(&cfg.data_dir).map_err(|e| e.to_string())?;
    let metrics = strata_ingest::metrics::IngestMetrics::new();
    let ingester = Ingester::open(
        data_dir,
        &cfg.wal_dir(),
        cfg.limits.clone(),
        cfg.persist.clone(),
        metrics,
    )
    .await
    .map_err(|e| format!("opening storage: {e}"))?;
    ingester.set_relabel_configs(cfg.metric_relabel_configs.clone());
    ingester.set_cardinality_limits(cfg.cardinality.clone());
    ingester.set_sampling(&cfg.sampling);
    let source = Arc::new(IngesterSource(ingester.clone()));
    let engine = Engine::with_caches(source, cfg.query.cache_sizes())
        .await
        .map_err(|e| format!("starting the engine: {e}"))?;
    // PromQL inside SQL (also over Flight SQL): promql_instant(...), promql_range(...).
    strata_promql::sql_functions::register(&engine.context());
    let mut rollups = strata_rollup::Rollups::open(
        engine.clone(),
        ingester.data_dir(),
        cfg.rollup.tiers.clone(),
    )
    .await
    .map_err(|e| format!("opening the rollup tiers: {e}"))?;
    rollups.track_late(ingester.clone()).await;
    let rollups = Arc::new(rollups);
    if cfg.rollup.enabled && !cfg.rollup.retention_interval.is_zero() {
        // Where raw samples may be gone: PromQL reads the tiers there.
        rollups
            .catalog()
            .set_raw_retention(cfg.rollup.raw_retention);
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
    let st = AppState {
        ingester: ingester.clone(),
        max_decoded: cfg.max_request_bytes.saturating_mul(8),
        ct_zero_ingestion: cfg.remote_write.created_timestamp_zero_ingestion,
    };
    let mut tasks = vec![];
    let otlp = Arc::new(crate::otlp::Otlp::new(
        ingester.clone(),
        strata_promql::prom_session(&engine.context()),
        cfg.otlp.clone(),
        st.max_decoded,
    ));
    let grpc_addr = match bind_otlp_grpc(&cfg.otlp.grpc_addr).await? {
        Some(listener) => {
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let (o, rx) = (otlp.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::otlp::serve_grpc(listener, o, wait(rx)).await {
                    tracing::error!(error = %e, "OTLP gRPC server failed");
                }
            }));
            Some(addr)
        }
        None => None,
    };
    let statsd_mapper = crate::statsd::mapper(cfg.statsd.mapping_file.as_deref())?;
    let statsd_addr = match crate::statsd::bind(&cfg.statsd.addr).await? {
        Some((udp, tcp)) => {
            let addr = udp.local_addr().map_err(|e| e.to_string())?;
            let statsd = Arc::new(crate::statsd::Statsd::new(
                ingester.clone(),
                strata_promql::prom_session(&engine.context()),
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
    };
    let app = router(st, cfg.max_request_bytes)
        .merge(crate::otlp::router(otlp))
        .merge(crate::prom_api::router(strata_promql::prom_session(
            &engine.context(),
        )))
        .merge(crate::rollup_api::router(rollups.clone()))
        .merge(crate::prom_api::metadata_router(
            ingester.metadata().clone(),
        ))
        .merge(crate::prom_api::tsdb_status_router(ingester.clone()));
    let rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app)
            .with_graceful_shutdown(wait(rx))
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    let ctx = engine.context();
    let rx = stop_rx.clone();
    let policy = cfg.sql.policy();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = strata_flight::serve_listener(flight, ctx, policy, wait(rx)).await {
            tracing::error!(error = %e, "Flight SQL server failed");
        }
    }));
    tasks.extend(strata_ingest::receive::scrape::spawn(
        &cfg.scrape_configs,
        ingester.clone(),
        stop_rx.clone(),
    ));
    let ing = ingester.clone();
    let rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        ing.run_background(wait(rx)).await;
    }));
    if cfg.rollup.enabled && !cfg.rollup.retention_interval.is_zero() {
        let (r, ing, mut rx) = (rollups.clone(), ingester.clone(), stop_rx.clone());
        let (every, raw) = (cfg.rollup.retention_interval, cfg.rollup.raw_retention);
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
        let metrics = strata_rollup::RollupMetrics::register(&ingester.metrics().registry)
            .map_err(|e| format!("rollup metrics: {e}"))?;
        let (r, rx, schedule) = (rollups.clone(), stop_rx.clone(), cfg.rollup.schedule());
        tasks.push(tokio::spawn(async move {
            r.run(schedule, Some(metrics), wait(rx)).await;
        }));
    }
    tracing::info!(%http_addr, %flight_addr, otlp_grpc_addr = ?grpc_addr, statsd_addr = ?statsd_addr, "Strata is serving");
    Ok(Running {
        http_addr,
        flight_addr,
        otlp_grpc_addr: grpc_addr,
        statsd_addr,
        ingester,
        engine,
        rollups,
        stop,
        tasks,
    })
}
