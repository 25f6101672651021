//! The rollup tiers over HTTP: `GET /api/v1/status/tiers`, `POST
//! /api/v1/admin/rollup/build` and `POST /api/v1/admin/rollup/compact` (what `strata
//! rollup backfill` calls).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use strata_rollup::{RollupError, Rollups};

use crate::prom_api::{ApiError, bad_data, parse_time};
use crate::server::now_ms;

fn from_rollup(e: RollupError) -> Response {
    match e {
        RollupError::BadRequest(m) => bad_data(m),
        e => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "internal",
            message: e.to_string(),
        },
    }
    .into_response()
}

/// `GET /api/v1/status/tiers`: `{"status": "success", "data": [tier, ...]}`, each tier
/// as [`strata_rollup::job::TierStatus`] (watermark and buckets in ms since the epoch,
/// lag in s, bytes of live Parquet files).
async fn status(State(r): State<Arc<Rollups>>) -> Response {
    match r.status(now_ms()).await {
        Ok(t) => axum::Json(json!({"status": "success", "data": t})).into_response(),
        Err(e) => from_rollup(e),
    }
}

/// The parameters of a build.
#[derive(serde::Deserialize)]
struct Build {
    tier: String,
    from: String,
    to: String,
}

/// `POST /api/v1/admin/rollup/build?tier=1h&from=<time>&to=<time>` (times as Prometheus
/// takes them: RFC 3339 or Unix seconds): builds the tier's whole buckets inside `(from,
/// to]` from the tier below (which must cover them), replacing what the table held
/// there. Answers `{"status": "success", "data": {"from_ms", "to_ms", "source_rows",
/// "rows_written", "commits"}}` (the range cut to whole buckets; nothing built when it
/// holds none); 400 for an unknown tier or a bad time.
async fn build(State(r): State<Arc<Rollups>>, Query(p): Query<Build>) -> Response {
    let tier = match r.tier(&p.tier) {
        Ok(t) => t,
        Err(e) => return from_rollup(e),
    };
    let (from, to) = match (parse_time("from", &p.from), parse_time("to", &p.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return bad_data(e).into_response(),
    };
    let res = r.tiers()[tier].resolution_ms();
    let (from, to) = (
        from.div_euclid(res) * res + if from.rem_euclid(res) == 0 { 0 } else { res },
        to.div_euclid(res) * res,
    );
    let built = if from < to {
        r.build(tier, from, to, |_| {}).await
    } else {
        Ok(Default::default())
    };
    match built {
        Ok(rep) => axum::Json(json!({"status": "success", "data": {
            "from_ms": from,
            "to_ms": to,
            "source_rows": rep.source_rows,
            "rows_written": rep.rows_written,
            "commits": rep.commits,
        }}))
        .into_response(),
        Err(e) => from_rollup(e),
    }
}

/// `POST /api/v1/admin/rollup/compact`: merges the small files of every partition of the
/// tier tables holding at least two ([`Rollups::compact`]; the scheduler waits for its
/// `compact_files`). Answers `{"status": "success", "data": {"partitions",
/// "files_removed", "files_added"}}`.
async fn compact(State(r): State<Arc<Rollups>>) -> Response {
    match r.compact(2).await {
        Ok(c) => axum::Json(json!({"status": "success", "data": {
            "partitions": c.partitions,
            "files_removed": c.files_removed,
            "files_added": c.files_added,
        }}))
        .into_response(),
        Err(e) => from_rollup(e),
    }
}

/// The routes above, over `rollups`.
pub fn router(rollups: Arc<Rollups>) -> Router {
    Router::new()
        .route("/api/v1/status/tiers", get(status))
        .route("/api/v1/admin/rollup/build", post(build))
        .route("/api/v1/admin/rollup/compact", post(compact))
        .with_state(rollups)
}

/// The longest range one backfill request asks the server to build, days.
pub const BACKFILL_CHUNK_DAYS: i64 = 64;

/// What [`backfill`] did, summed over its requests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backfilled {
    /// Source rows read.
    pub source_rows: u64,
    /// Series-buckets written.
    pub rows_written: u64,
    /// Delta commits.
    pub commits: u64,
    /// Tier files merged by the compaction that ends the backfill.
    pub files_compacted: u64,
}

/// `strata rollup backfill`: rebuilds `tier` over `(from_ms, to_ms]` on the server at
/// `base_url` (`http://host:port`), for the tenant `tenant` names in requests of up to [`BACKFILL_CHUNK_DAYS`] UTC days
/// (`POST /api/v1/admin/rollup/build`; the server cuts each into slices sized by the
/// rows they read), with a progress bar in days on stderr; then merges the files the
/// slices left (`POST /api/v1/admin/rollup/compact`), so that queries read one sorted file
/// per partition.
///
/// # Errors
/// A message naming the request that failed and the server's answer; the days before it
/// stay built.
pub async fn backfill(
    base_url: &str,
    tier: &str,
    from_ms: i64,
    to_ms: i64,
    tenant: &crate::tenants::TenantHeaders,
) -> Result<Backfilled, String> {
    const DAY: i64 = 86_400_000;
    const CHUNK: i64 = BACKFILL_CHUNK_DAYS * DAY;
    if from_ms >= to_ms {
        return Err(format!(
            "empty range: from {from_ms} ms is not before to {to_ms} ms"
        ));
    }
    let days = (to_ms - from_ms + DAY - 1) / DAY;
    let bar = indicatif::ProgressBar::new(days as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} days, {elapsed_precise} (eta {eta}) {msg}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("tier {tier}"));
    let client = reqwest::Client::builder()
        .default_headers(tenant.headers()?)
        .build()
        .map_err(|e| e.to_string())?;
    let mut total = Backfilled::default();
    let mut start = from_ms;
    while start < to_ms {
        let end = ((start.div_euclid(DAY) * DAY) + CHUNK).min(to_ms);
        let url = format!(
            "{}/api/v1/admin/rollup/build?tier={tier}&from={}&to={}",
            base_url.trim_end_matches('/'),
            start as f64 / 1000.0,
            end as f64 / 1000.0
        );
        let body = match post_json(&client, &url).await {
            Ok(b) => b,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        let d = &body["data"];
        let n = |k: &str| d[k].as_u64().unwrap_or(0);
        total.source_rows += n("source_rows");
        total.rows_written += n("rows_written");
        total.commits += n("commits");
        bar.set_message(format!("{} series-buckets", total.rows_written));
        bar.set_position(((end - from_ms + DAY - 1) / DAY) as u64);
        start = end;
    }
    bar.finish();
    let url = format!(
        "{}/api/v1/admin/rollup/compact",
        base_url.trim_end_matches('/')
    );
    let body = post_json(&client, &url).await?;
    total.files_compacted = body["data"]["files_removed"].as_u64().unwrap_or(0);
    Ok(total)
}

/// `POST url` and its JSON answer.
///
/// # Errors
/// A message naming the request: a transport error, a body that is not JSON, or a
/// non-2xx status with the server's `error`.
async fn post_json(client: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let resp = client
        .post(url)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| format!("POST {url}: {status}, {e}"))?;
    if !status.is_success() {
        return Err(format!("POST {url}: {status}: {}", body["error"]));
    }
    Ok(body)
}
