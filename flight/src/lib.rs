//! Strata's Arrow Flight SQL endpoint: a stateless [Flight SQL] server over a
//! DataFusion [`SessionContext`].
//!
//! **What it does.** It answers the Flight SQL RPCs that ADBC
//! (`adbc-driver-flightsql`), `pyarrow.flight`, the Arrow Flight SQL JDBC
//! driver and BI tools use: handshake (no credentials checked here:
//! the token sent is returned; the server's tenants check it in front), ad-hoc statement
//! queries, prepared statements (including positional parameters bound via
//! `DoPut`), update statements, and the catalog metadata calls (catalogs,
//! schemas, tables with their Arrow schemas, table types, `SqlInfo`, XDBC type
//! info, and empty primary/foreign key listings).
//!
//! **What a client may do.** By default SQL over Flight is read-only: DDL (`CREATE`,
//! `DROP`), DML (`INSERT`, `COPY ... TO`) and statements that change the session (`SET`,
//! `PREPARE`) are refused with `PERMISSION_DENIED` (DataFusion's `SQLOptions`), so no
//! client can drop a table, write or read a file outside Strata's tables, or change
//! another client's configuration; [`SqlPolicy::allow_writes`] opts in for admin use.
//! Each request is planned in its own copy of the session state, so nothing one client
//! sets reaches another. Queries share one memory budget
//! ([`SqlPolicy::memory_limit_bytes`], a DataFusion `FairSpillPool`: sorts, aggregations
//! and joins spill to disk where they can, and a query that still needs more fails with
//! `RESOURCE_EXHAUSTED`) and each has a timeout ([`SqlPolicy::timeout`],
//! `DEADLINE_EXCEEDED`).
//!
//! **What it does not do.** No authentication of its own (see above) or TLS, no transactions,
//! no query cancellation, no Substrait, no bulk ingestion, no `PollFlightInfo`
//! / `GetSchema`. The server keeps no per-client state: statement tickets and
//! prepared statement handles carry the SQL text itself (and, once bound, the
//! parameter values), so any server instance can answer any ticket.
//!
//! **Where data enters and leaves.** SQL text enters through
//! `GetFlightInfo`/`DoAction`/`DoPut` commands and is planned by the
//! [`SessionContext`] handed to [`service`], [`serve`] or [`serve_listener`];
//! the tables it can see are whatever that context's catalog list holds.
//! Results leave as Arrow IPC record batches over `DoGet`. Dictionary columns
//! are sent hydrated and view types (`Utf8View`, `BinaryView`) are sent as
//! `Utf8`/`Binary` for client compatibility; the schemas announced in
//! `FlightInfo`, prepared statement results and `GetTables` say the same.
//!
//! [Flight SQL]: https://arrow.apache.org/docs/format/FlightSql.html

mod metadata;
mod query;
mod service;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use arrow::error::ArrowError;
use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use tonic::Status;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

pub use query::{MAX_SQL_OPERATORS, check_sql_size};
pub use service::StrataFlightSqlService;

/// Largest gRPC message the server accepts (parameter batches, commands).
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// What SQL over Flight may do, and the resources one query may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlPolicy {
    /// Allow DDL (`CREATE`/`DROP`, `CREATE EXTERNAL TABLE`), DML (`INSERT`, `COPY ... TO`)
    /// and session statements (`SET`). Off by default: those are refused with
    /// `PERMISSION_DENIED`. On, they act on the server's shared catalog and files (admin
    /// use only); a `SET` still only changes the request's own session state.
    pub allow_writes: bool,
    /// Memory all SQL queries together may hold in their operators, bytes (a DataFusion
    /// `FairSpillPool`); `None` for no limit. Default 2 GiB.
    pub memory_limit_bytes: Option<usize>,
    /// Longest a query may run, planning and streaming its result included; `None` for
    /// no limit. Default 2 minutes, as PromQL's.
    pub timeout: Option<Duration>,
}

impl Default for SqlPolicy {
    fn default() -> Self {
        SqlPolicy {
            allow_writes: false,
            memory_limit_bytes: Some(2 << 30),
            timeout: Some(Duration::from_secs(120)),
        }
    }
}

/// The crate's error type.
///
/// Converted into a gRPC [`Status`] at the RPC boundary (`From<FlightError> for Status`):
/// client mistakes (bad SQL, planning errors, malformed handles or parameters) become
/// `InvalidArgument`, statements the [`SqlPolicy`] refuses `PermissionDenied`, a query
/// past the memory budget `ResourceExhausted`, past its timeout `DeadlineExceeded`,
/// everything else `Internal`.
#[derive(Debug, thiserror::Error)]
pub enum FlightError {
    /// The request was malformed (bad handle, unusable parameters, ...).
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The statement changes the server (DDL, DML, `SET`), and the [`SqlPolicy`] does not
    /// allow writes.
    #[error(
        "{0}: SQL over Flight is read-only on this server (an operator can allow writes with `[sql] allow_writes = true`)"
    )]
    ReadOnly(String),
    /// The query ran past [`SqlPolicy::timeout`].
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    /// DataFusion failed to plan or execute a query. Planning errors (SQL syntax,
    /// unknown tables or columns, type errors, unsupported SQL) map to
    /// `InvalidArgument`, the rest to `Internal`.
    #[error("{}", .0.strip_backtrace())]
    DataFusion(#[from] DataFusionError),
    /// Arrow failed to encode or convert data.
    #[error("arrow error: {0}")]
    Arrow(#[from] ArrowError),
    /// Arrow Flight failed to encode or decode a stream.
    #[error("flight error: {0}")]
    Flight(#[from] arrow_flight::error::FlightError),
    /// The gRPC server failed (bind, accept, serve).
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl From<FlightError> for Status {
    fn from(err: FlightError) -> Self {
        match err {
            FlightError::InvalidArgument(msg) => Status::invalid_argument(msg),
            e @ FlightError::ReadOnly(_) => Status::permission_denied(e.to_string()),
            e @ FlightError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
            FlightError::DataFusion(e) => {
                let msg = e.strip_backtrace();
                if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
                    Status::resource_exhausted(msg)
                } else if query::is_planning_error(&e) {
                    Status::invalid_argument(msg)
                } else {
                    Status::internal(msg)
                }
            }
            FlightError::Arrow(e) => Status::internal(format!("arrow error: {e}")),
            FlightError::Flight(arrow_flight::error::FlightError::Tonic(status)) => *status,
            FlightError::Flight(e) => Status::internal(format!("flight error: {e}")),
            FlightError::Transport(e) => Status::internal(format!("transport error: {e}")),
        }
    }
}

/// Builds the tonic service answering Flight SQL over `ctx` under `policy`.
///
/// The returned server accepts requests of up to 64 MiB and can be added to any
/// [`tonic::transport::Server`]; [`serve`] and [`serve_listener`] do exactly that.
///
/// # Errors
/// [`FlightError::DataFusion`] if the memory budget's runtime cannot be built.
pub fn service(
    ctx: SessionContext,
    policy: SqlPolicy,
) -> Result<FlightServiceServer<StrataFlightSqlService>, FlightError> {
    Ok(
        FlightServiceServer::new(StrataFlightSqlService::new(ctx, policy)?)
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE),
    )
}

/// Serves Flight SQL on `addr` until `shutdown` resolves.
///
/// # Errors
/// [`FlightError::Transport`] if the address cannot be bound or the server fails.
pub async fn serve(
    addr: SocketAddr,
    ctx: SessionContext,
    policy: SqlPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FlightError> {
    tracing::info!(%addr, "serving Arrow Flight SQL");
    Server::builder()
        .add_service(service(ctx, policy)?)
        .serve_with_shutdown(addr, shutdown)
        .await?;
    Ok(())
}

/// Serves Flight SQL on an already-bound `listener` until `shutdown` resolves
/// (tests bind `127.0.0.1:0` first and read the port from the listener).
///
/// # Errors
/// [`FlightError::Transport`] if the server fails.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    ctx: SessionContext,
    policy: SqlPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FlightError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving Arrow Flight SQL");
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(service(ctx, policy)?)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
