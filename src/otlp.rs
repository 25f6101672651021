//! Serving OTLP metrics (`strata_ingest::receive::otlp` translates them): `POST
//! /v1/metrics` and `POST /api/v1/otlp/v1/metrics` on the HTTP port (protobuf or JSON,
//! gzip), and the gRPC `MetricsService` on its own port (default 127.0.0.1:4317).
//!
//! Answers as the OTLP specification (`opentelemetry-proto` `docs/specification.md`,
//! "OTLP/HTTP Response" and "OTLP/gRPC Response") says:
//! - `200` with an `ExportMetricsServiceResponse` in the request's encoding; points that
//!   could not be stored are counted in its `partial_success` (`rejected_data_points`,
//!   `error_message`), and the client does not retry them;
//! - `400` (gRPC `INVALID_ARGUMENT`) for a body that does not decode, `413` for one too
//!   large, `415` for a `Content-Type` other than `application/x-protobuf` and
//!   `application/json`: not retried; the body a `google.rpc.Status`;
//! - `503` (gRPC `UNAVAILABLE`) with `Retry-After` when the write path is behind: retried;
//! - `429` (gRPC `RESOURCE_EXHAUSTED`) with `Retry-After` past the tenant's ingestion
//!   rate: retried.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use datafusion::prelude::SessionContext;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use strata_ingest::receive::otlp::{self, Encoding, OtlpConfig};
use strata_ingest::{IngestError, Ingester};

use crate::deltas::DeltaWriter;
use crate::server::{now_ms, status_of};

/// The OTLP receiver shared by the HTTP routes and the gRPC service.
pub(crate) struct Otlp {
    ingester: Arc<Ingester>,
    cfg: OtlpConfig,
    /// Writes, making running totals of delta points.
    writer: DeltaWriter,
    /// Largest decoded body, bytes.
    max_decoded: usize,
}

/// `google.rpc.Status`, the body of an OTLP error answer (`code`, `message`; no
/// details).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

impl Otlp {
    /// The receiver writing to `ingester`, resuming delta series' totals through the
    /// PromQL session `ctx`.
    pub(crate) fn new(
        ingester: Arc<Ingester>,
        ctx: SessionContext,
        cfg: OtlpConfig,
        max_decoded: usize,
    ) -> Otlp {
        Otlp {
            writer: DeltaWriter::new(ingester.clone(), ctx),
            ingester,
            cfg,
            max_decoded,
        }
    }

    /// Translates and writes one request; `Ok` once what was kept is durable, with the
    /// points that were not counted in `partial_success`.
    ///
    /// # Errors
    /// [`IngestError::Overloaded`] and the write path's other errors.
    async fn export(
        &self,
        req: &ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, IngestError> {
        let now = now_ms();
        let limits = self.ingester.limits();
        let mut t = otlp::translate(req, &self.cfg, limits, now);
        let out = self.writer.write(&mut t, "otlp", now).await?;
        if t.rejected_points > 0 {
            self.ingester
                .metrics()
                .samples_rejected
                .with_label_values(&["otlp_untranslatable"])
                .inc_by(t.rejected_points);
        }
        let rejected = t.rejected_points + out.rejected as u64;
        Ok(ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: rejected as i64,
                error_message: t.first_error.or(out.first_error).unwrap_or_default(),
            }),
        })
    }
}

/// The HTTP routes: `POST /v1/metrics` (OTLP/HTTP's path) and `POST
/// /api/v1/otlp/v1/metrics` (Prometheus 3's).
pub(crate) fn router(otlp: Arc<Otlp>) -> Router {
    Router::new()
        .route("/v1/metrics", post(http_export))
        .route("/api/v1/otlp/v1/metrics", post(http_export))
        .with_state(otlp)
}

/// An OTLP/HTTP answer of `status` with `body` in `encoding`.
fn reply(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    r
}

/// An OTLP/HTTP error answer: the status `IngestError` maps to, a `google.rpc.Status`
/// body in `encoding`, and `Retry-After` where the client should retry.
fn error_reply(e: IngestError, encoding: Encoding) -> Response {
    let (status, retry) = status_of(&e);
    let code = grpc_code(status);
    let status_body = RpcStatus {
        code: code as i32,
        message: e.to_string(),
    };
    let body = match encoding {
        Encoding::Protobuf => status_body.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&status_body).unwrap_or_default(),
    };
    let mut r = reply(status, encoding, body);
    if let Some(s) = retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// The gRPC code OTLP gives an HTTP status ("OTLP/gRPC Response"): `INVALID_ARGUMENT`
/// for data never accepted (400, 413), `UNAVAILABLE` for a retryable 503,
/// `RESOURCE_EXHAUSTED` for a tenant past its ingestion rate (429), `INTERNAL` otherwise.
fn grpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::InvalidArgument,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        _ => tonic::Code::Internal,
    }
}

/// `POST /v1/metrics`: one `ExportMetricsServiceRequest`.
async fn http_export(State(otlp): State<Arc<Otlp>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::of_content_type(content_type) else {
        let e = IngestError::BadRequest(format!(
            "unsupported Content-Type {content_type:?}: OTLP/HTTP takes application/x-protobuf or application/json"
        ));
        let mut r = error_reply(e, Encoding::Protobuf);
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return r;
    };
    let run = async {
        let encoding_header = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let body = strata_ingest::receive::decode_content(body, encoding_header, otlp.max_decoded)?;
        let req = otlp::decode_request(&body, encoding)?;
        otlp.export(&req).await
    };
    match run.await {
        Ok(resp) => {
            let body = match encoding {
                Encoding::Protobuf => resp.encode_to_vec(),
                // Full success is `{}`; the crate writes `"partialSuccess": null`.
                Encoding::Json => match &resp.partial_success {
                    None => b"{}".to_vec(),
                    Some(_) => serde_json::to_vec(&resp).unwrap_or_default(),
                },
            };
            reply(StatusCode::OK, encoding, body)
        }
        Err(e) => error_reply(e, encoding),
    }
}

/// The gRPC `MetricsService` over the shared receiver.
struct Grpc(Arc<Otlp>);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .export(request.get_ref())
            .await
            .map(tonic::Response::new)
            .map_err(|e| tonic::Status::new(grpc_code(status_of(&e).0), e.to_string()))
    }
}

/// Serves the gRPC `MetricsService` on `listener` until `stop` resolves (gzip requests
/// accepted; messages up to each receiver's `max_decoded` bytes): each call goes to its
/// tenant's receiver in `otlps` by its `x-scope-orgid` and `authorization` metadata
/// ([`crate::tenants::TenantGrpc`]), or to the one receiver without `auth`.
///
/// # Errors
/// A message when the server fails.
pub(crate) async fn serve_grpc(
    listener: tokio::net::TcpListener,
    otlps: std::collections::HashMap<String, Arc<Otlp>>,
    auth: Option<Arc<crate::tenants::Auth>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let services = otlps
        .into_iter()
        .map(|(id, otlp)| {
            let max = otlp.max_decoded;
            let svc = MetricsServiceServer::new(Grpc(otlp))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            (id, svc)
        })
        .collect();
    tonic::transport::Server::builder()
        .add_service(crate::tenants::TenantGrpc::new(auth, services))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop,
        )
        .await
        .map_err(|e| e.to_string())
}
