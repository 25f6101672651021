//! `strata sql`: run SQL against a running server (Flight SQL) or a data directory.

use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use std::sync::Arc;

/// Runs `query` over Flight SQL at `url` (e.g. `http://127.0.0.1:50051`) on a server
/// without tenants.
///
/// # Errors
/// A message naming the connection or query problem as the server reported it.
pub async fn over_flight(url: &str, query: &str) -> Result<Vec<RecordBatch>, String> {
    over_flight_as(url, query, &Default::default()).await
}

/// [`over_flight`] as the tenant `tenant` names, on a server with tenants.
///
/// # Errors
/// A message naming the connection or query problem as the server reported it (401 and
/// 403 as `Unauthenticated` and `PermissionDenied`).
pub async fn over_flight_as(
    url: &str,
    query: &str,
    tenant: &crate::tenants::TenantHeaders,
) -> Result<Vec<RecordBatch>, String> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad URL {url}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let mut client = FlightSqlServiceClient::new(channel);
    tenant.apply_to_flight(&mut client);
    let info = client
        .execute(query.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = vec![];
    for ep in info.endpoint {
        let Some(ticket) = ep.ticket else { continue };
        let stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| e.to_string())?;
        out.extend(batches);
    }
    Ok(out)
}

/// Runs `query` directly on the Delta tables of a data directory (no server, no head).
///
/// # Errors
/// Storage errors or the query's error.
pub async fn on_data_dir(dir: &str, query: &str) -> Result<Vec<RecordBatch>, String> {
    let dd = strata_ingest::storage::DataDir::parse(dir).map_err(|e| e.to_string())?;
    let src = strata_engine::StaticSource::open(&dd)
        .await
        .map_err(|e| e.to_string())?;
    let engine = strata_engine::Engine::new(Arc::new(src))
        .await
        .map_err(|e| e.to_string())?;
    strata_promql::sql_functions::register(&engine.context());
    engine.sql(query).await.map_err(|e| e.to_string())
}
