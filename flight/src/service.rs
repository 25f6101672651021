//! [`StrataFlightSqlService`]: the [`FlightSqlService`] implementation.

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Schema, SchemaRef, UInt64Type};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    Ticket,
};
use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::metadata;
use crate::query::{self, Handle, conform_batch, flight_schema, schema_to_ipc};
use crate::{FlightError, SqlPolicy};

type DoGetStream = <StrataFlightSqlService as FlightService>::DoGetStream;
type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

/// Token the handshake returns to a client that sent no credentials.
const ANONYMOUS_TOKEN: &str = "strata-anonymous";

/// Flight SQL over a DataFusion [`SessionContext`].
///
/// Stateless apart from the context: statement tickets and prepared statement
/// handles carry the SQL text (UTF-8 bytes), and a handle with bound
/// parameters carries those too. Cheap to clone (the context and the static
/// metadata are shared). Build one with [`crate::service`], which wraps it in
/// a tonic `FlightServiceServer`.
#[derive(Clone)]
pub struct StrataFlightSqlService {
    ctx: SessionContext,
    /// What SQL may do ([`SqlPolicy::allow_writes`] as DataFusion's options).
    options: SQLOptions,
    policy: SqlPolicy,
    /// `ctx`'s runtime with the memory budget of [`SqlPolicy::memory_limit_bytes`]:
    /// every request's session runs in it.
    runtime: Arc<RuntimeEnv>,
    sql_info: Arc<SqlInfoData>,
    xdbc_type_info: Arc<XdbcTypeInfoData>,
}

impl std::fmt::Debug for StrataFlightSqlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrataFlightSqlService")
            .field("session_id", &self.ctx.session_id())
            .finish_non_exhaustive()
    }
}

impl StrataFlightSqlService {
    /// A service answering queries and metadata calls from `ctx`, under `policy`.
    ///
    /// # Errors
    /// [`FlightError::DataFusion`] if the runtime with the memory budget cannot be built.
    pub fn new(ctx: SessionContext, policy: SqlPolicy) -> Result<Self, FlightError> {
        // Both are built from constants; failing would be a bug in this crate.
        let sql_info = metadata::sql_info().expect("static SqlInfo is valid");
        let xdbc_type_info = metadata::xdbc_type_info().expect("static XDBC type info is valid");
        let mut runtime = RuntimeEnvBuilder::from_runtime_env(&ctx.runtime_env());
        if let Some(bytes) = policy.memory_limit_bytes {
            // The five largest consumers are named in the error of a query past the budget.
            runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(bytes),
                NonZeroUsize::new(5).expect("not zero"),
            )));
        }
        let options = SQLOptions::new()
            .with_allow_ddl(policy.allow_writes)
            .with_allow_dml(policy.allow_writes)
            .with_allow_statements(policy.allow_writes);
        Ok(Self {
            ctx,
            options,
            policy,
            runtime: runtime.build_arc()?,
            sql_info: Arc::new(sql_info),
            xdbc_type_info: Arc::new(xdbc_type_info),
        })
    }

    /// A request's own session: a copy of the server's session state (so that nothing a
    /// request changes reaches another), running in the budgeted runtime. The catalog is
    /// shared: the tables are the server's.
    fn session(&self) -> SessionContext {
        SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(self.ctx.state())
                .with_runtime_env(Arc::clone(&self.runtime))
                .build(),
        )
    }

    /// Plans `handle`'s SQL (with its bound parameters) and returns the result
    /// schema as clients will receive it.
    async fn result_schema(&self, handle: &Handle) -> Result<Schema, FlightError> {
        let plan = query::plan_sql(
            &self.session(),
            &self.options,
            &handle.sql,
            handle.params.as_ref(),
        )
        .await?;
        Ok(flight_schema(plan.schema().as_arrow()))
    }

    /// Runs `handle`'s SQL and streams the result as Flight data, within
    /// [`SqlPolicy::timeout`] (planning included; the stream ends with
    /// `DEADLINE_EXCEEDED` when the time runs out).
    async fn run(&self, handle: &Handle) -> Result<DoGetStream, FlightError> {
        tracing::debug!(sql = %handle.sql, bound = handle.params.is_some(), "Flight SQL query");
        let deadline = self.deadline();
        let session = self.session();
        let start =
            query::execute_sql(&session, &self.options, &handle.sql, handle.params.as_ref());
        let stream = until(deadline, start).await?;
        Ok(encode_stream(stream, deadline))
    }

    /// Runs `sql` once (or once per parameter row) and returns the affected row count.
    async fn run_update(&self, sql: &str, params: Option<RecordBatch>) -> Result<i64, FlightError> {
        tracing::debug!(%sql, bound = params.is_some(), "Flight SQL update");
        let Some(params) = params else {
            return self.update_once(sql, None).await;
        };
        let mut total = 0;
        for row in 0..params.num_rows() {
            total += self.update_once(sql, Some(&params.slice(row, 1))).await?;
        }
        Ok(total)
    }

    async fn update_once(
        &self,
        sql: &str,
        params: Option<&RecordBatch>,
    ) -> Result<i64, FlightError> {
        let run = async {
            let stream = query::execute_sql(&self.session(), &self.options, sql, params).await?;
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            Ok(update_count(&batches))
        };
        until(self.deadline(), run).await
    }

    /// When a request starting now runs out of [`SqlPolicy::timeout`], and the timeout.
    fn deadline(&self) -> Option<(tokio::time::Instant, std::time::Duration)> {
        self.policy
            .timeout
            .map(|t| (tokio::time::Instant::now() + t, t))
    }
}

/// `f`, or [`FlightError::Timeout`] when `deadline` (an instant and the timeout it ends)
/// passes first.
async fn until<T>(
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    f: impl std::future::Future<Output = Result<T, FlightError>>,
) -> Result<T, FlightError> {
    match deadline {
        None => f.await,
        Some((at, t)) => tokio::time::timeout_at(at, f)
            .await
            .map_err(|_| FlightError::Timeout(t))?,
    }
}

/// Affected rows of a DataFusion statement: the sum of a single `count` column
/// (what DML returns), else the number of rows produced (0 for DDL).
fn update_count(batches: &[RecordBatch]) -> i64 {
    let mut total: i64 = 0;
    for batch in batches {
        let count = match batch.columns() {
            [col]
                if batch.schema().field(0).name() == "count"
                    && col.data_type() == &DataType::UInt64 =>
            {
                col.as_primitive::<UInt64Type>()
                    .iter()
                    .flatten()
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
                    .fold(0i64, i64::saturating_add)
            }
            _ => i64::try_from(batch.num_rows()).unwrap_or(i64::MAX),
        };
        total = total.saturating_add(count);
    }
    total
}

/// Encodes a DataFusion stream as Flight data, converting each batch to the
/// [`flight_schema`] of the stream. Errors keep their gRPC status code. Past `deadline`
/// (an instant and the timeout it ends) the stream ends with [`FlightError::Timeout`]
/// and the query is dropped (cancelled).
fn encode_stream(
    stream: SendableRecordBatchStream,
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
) -> DoGetStream {
    let target: SchemaRef = Arc::new(flight_schema(&stream.schema()));
    let batch_target = Arc::clone(&target);
    let stream: futures::stream::BoxStream<'static, Result<RecordBatch, FlightError>> =
        match deadline {
            None => stream.map_err(FlightError::from).boxed(),
            Some((at, t)) => futures::stream::unfold(Some(stream), move |s| async move {
                let mut s = s?;
                match tokio::time::timeout_at(at, s.next()).await {
                    Ok(Some(b)) => Some((b.map_err(FlightError::from), Some(s))),
                    Ok(None) => None,
                    Err(_) => Some((Err(FlightError::Timeout(t)), None)),
                }
            })
            .boxed(),
        };
    let batches = stream.map(move |batch| {
        batch
            .and_then(|b| conform_batch(b, &batch_target))
            .map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(to_status(e))))
    });
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(target)
        .build(batches)
        .map_err(Status::from);
    Box::pin(flight)
}

/// Encodes one in-memory batch as Flight data.
fn encode_batch(batch: RecordBatch) -> DoGetStream {
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Box::pin(flight)
}

/// Converts an error into the status returned to the client, logging server-side failures.
fn to_status(err: FlightError) -> Status {
    let status = Status::from(err);
    if status.code() == tonic::Code::Internal {
        tracing::warn!(message = %status.message(), "Flight SQL request failed");
    } else {
        tracing::debug!(code = ?status.code(), message = %status.message(), "Flight SQL request rejected");
    }
    status
}

/// A single-endpoint `FlightInfo` whose ticket is `ticket` (an encoded `Any`) on this server.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| to_status(e.into()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1)
        .with_ordered(false);
    Ok(Response::new(info))
}

/// A `FlightInfo` for a metadata command that `DoGet` answers from the same command.
fn command_info<C: ProstMessageExt>(
    cmd: &C,
    schema: &Schema,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(schema, cmd.as_any().encode_to_vec(), request.into_inner())
}

/// Reads the parameter batches of a `DoPut` (skipping descriptor-only
/// messages) into one batch; `None` when no rows were sent.
async fn read_parameters(
    request: Request<PeekableFlightDataStream>,
) -> Result<Option<RecordBatch>, FlightError> {
    let data = request
        .into_inner()
        .try_filter(|fd| futures::future::ready(!fd.data_header.is_empty()))
        .map_err(arrow_flight::error::FlightError::from);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
        .try_collect()
        .await?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = concat_batches(&first.schema(), &batches)?;
    Ok((batch.num_rows() > 0).then_some(batch))
}

#[tonic::async_trait]
impl FlightSqlService for StrataFlightSqlService {
    type FlightService = StrataFlightSqlService;

    /// Answers the handshake with a bearer token: the one of the request's `Bearer`
    /// header, or a fixed anonymous token without one. This service checks no
    /// credentials: a server with tenants checks them in front of it (the binary's
    /// `tenants::TenantGrpc`, which also turns ADBC's `Basic` username/password into
    /// `Bearer <password>`), so that a client reaching here acts for the tenant its token
    /// names, and keeps that token for its next calls.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| ANONYMOUS_TOKEN.to_string());
        let bearer = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::from(token.into_bytes()),
        };
        let stream: HandshakeStream = Box::pin(futures::stream::iter([Ok(reply)]));
        let mut response = Response::new(stream);
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    /// Plans the query (without running it); the ticket carries the SQL text.
    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = Handle {
            sql: query.query,
            params: None,
        };
        let schema = self.result_schema(&handle).await.map_err(to_status)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.sql.into_bytes().into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    /// Plans the prepared statement with its bound parameters, if any.
    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = Handle::decode(&cmd.prepared_statement_handle).map_err(to_status)?;
        let schema = self.result_schema(&handle).await.map_err(to_status)?;
        flight_info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::catalogs_schema(), request)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::schemas_schema(), request)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::tables_schema(query.include_schema);
        command_info(&query, &schema, request)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::table_types_schema(), request)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &self.sql_info.schema(), request)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::primary_keys_schema(), request)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &self.xdbc_type_info.schema(), request)
    }

    /// Runs the SQL carried by the ticket.
    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = Handle::decode(&ticket.statement_handle).map_err(to_status)?;
        let stream = self.run(&handle).await.map_err(to_status)?;
        Ok(Response::new(stream))
    }

    /// Runs the prepared statement's SQL with its bound parameters, if any.
    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = Handle::decode(&query.prepared_statement_handle).map_err(to_status)?;
        let stream = self.run(&handle).await.map_err(to_status)?;
        Ok(Response::new(stream))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::catalogs_batch(&self.ctx, query).map_err(to_status)?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::schemas_batch(&self.ctx, &query).map_err(to_status)?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::tables_batch(&self.ctx, &query)
            .await
            .map_err(to_status)?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::table_types_batch(query).map_err(to_status)?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(encode_batch(batch)))
    }

    /// Always empty: DataFusion tables have no primary keys.
    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = RecordBatch::new_empty(metadata::primary_keys_schema());
        Ok(Response::new(encode_batch(batch)))
    }

    /// Always empty: DataFusion tables have no foreign keys.
    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = RecordBatch::new_empty(metadata::foreign_keys_schema());
        Ok(Response::new(encode_batch(batch)))
    }

    /// Always empty: DataFusion tables have no foreign keys.
    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = RecordBatch::new_empty(metadata::foreign_keys_schema());
        Ok(Response::new(encode_batch(batch)))
    }

    /// Always empty: DataFusion tables have no foreign keys.
    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = RecordBatch::new_empty(metadata::foreign_keys_schema());
        Ok(Response::new(encode_batch(batch)))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&self.xdbc_type_info)
            .build()
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(encode_batch(batch)))
    }

    /// Runs an SQL statement (DataFusion DML/DDL, when the [`SqlPolicy`] allows writes)
    /// and returns the affected row count.
    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.run_update(&cmd.query, None).await.map_err(to_status)
    }

    /// Binds parameters to a prepared statement.
    ///
    /// The server keeps no state, so the values (exactly one row) travel in the
    /// returned handle, which clients must use from then on; Flight SQL clients
    /// that ignore the updated handle (pre-2024 drivers) cannot use parameters.
    /// A `DoPut` without rows leaves the statement unbound. The parameters are
    /// checked by planning the statement with them.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = Handle::decode(&query.prepared_statement_handle).map_err(to_status)?;
        let params = read_parameters(request).await.map_err(to_status)?;
        let new_handle = match params {
            None => Bytes::from(handle.sql.into_bytes()),
            Some(params) => {
                query::plan_sql(&self.session(), &self.options, &handle.sql, Some(&params))
                    .await
                    .map_err(to_status)?;
                Handle::encode_bound(&handle.sql, &params).map_err(to_status)?
            }
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(new_handle),
        })
    }

    /// Runs a prepared statement as an update, once per parameter row if
    /// parameters are sent (else with the handle's bound parameters, if any).
    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let handle = Handle::decode(&query.prepared_statement_handle).map_err(to_status)?;
        let params = read_parameters(request).await.map_err(to_status)?;
        self.run_update(&handle.sql, params.or(handle.params))
            .await
            .map_err(to_status)
    }

    /// Plans the query and returns its result and parameter schemas; the handle is the SQL text.
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let result = async {
            let plan = query::plan_sql(&self.session(), &self.options, &query.query, None).await?;
            let dataset_schema = schema_to_ipc(&flight_schema(plan.schema().as_arrow()))?;
            let params = query::parameter_schema(&plan)?;
            let parameter_schema = if params.fields().is_empty() {
                Bytes::new()
            } else {
                schema_to_ipc(&params)?
            };
            Ok::<_, FlightError>(ActionCreatePreparedStatementResult {
                prepared_statement_handle: query.query.into_bytes().into(),
                dataset_schema,
                parameter_schema,
            })
        };
        result.await.map_err(to_status)
    }

    /// Nothing to release: handles are self-contained.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    /// `SqlInfo` is fixed at construction; registration is ignored.
    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
