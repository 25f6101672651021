//! End-to-end tests: a real server on 127.0.0.1:0 and the arrow-rs Flight SQL client.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandStatementQuery, ProstMessageExt, SqlInfo,
};
use arrow_flight::{FlightDescriptor, FlightInfo, IpcMessage, Ticket};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::{FlightError, SqlPolicy, serve_listener};

/// A running server plus a connected client; `stop` shuts the server down cleanly.
struct Harness {
    client: FlightSqlServiceClient<Channel>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), FlightError>>,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(SqlPolicy::default()).await
    }

    async fn start_with(policy: SqlPolicy) -> Self {
        let ctx = test_context().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(listener, ctx, policy, async {
            let _ = rx.await;
        }));
        let channel = Endpoint::new(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: FlightSqlServiceClient::new(channel),
            shutdown,
            server,
        }
    }

    async fn stop(self) {
        drop(self.client);
        self.shutdown.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }

    /// Fetches every endpoint of `info` and returns the batches.
    async fn fetch(&mut self, info: FlightInfo) -> Vec<RecordBatch> {
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.expect("endpoint has a ticket");
            let stream = self.client.do_get(ticket).await.unwrap();
            batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
        }
        batches
    }

    async fn query(&mut self, sql: &str) -> Vec<RecordBatch> {
        let info = self.client.execute(sql.to_owned(), None).await.unwrap();
        self.fetch(info).await
    }
}

/// `datafusion.public.samples` (3 rows, one dictionary column) and a view over it.
async fn test_context() -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new(
            "host",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
        Field::new("ts", DataType::Int64, false),
        Field::new("value", DataType::Float64, true),
    ]));
    let host: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["up", "up", "cpu_seconds"])) as ArrayRef,
            Arc::new(host),
            Arc::new(Int64Array::from(vec![1000, 1000, 2000])),
            Arc::new(Float64Array::from(vec![1.0, 0.0, 12.5])),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_information_schema(true),
    );
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.register_table("samples", Arc::new(table)).unwrap();
    ctx.sql("CREATE VIEW up_only AS SELECT metric, value FROM samples WHERE metric = 'up'")
        .await
        .unwrap();
    ctx
}

fn lines(batches: &[RecordBatch]) -> Vec<String> {
    pretty_format_batches(batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

const SAMPLES_SQL: &str = "SELECT metric, host, value FROM samples ORDER BY value DESC";

const SAMPLES_TABLE: [&str; 7] = [
    "+-------------+------+-------+",
    "| metric      | host | value |",
    "+-------------+------+-------+",
    "| cpu_seconds | a    | 12.5  |",
    "| up          | a    | 1.0   |",
    "| up          | b    | 0.0   |",
    "+-------------+------+-------+",
];

#[tokio::test]
async fn statement_query_returns_rows() {
    let mut h = Harness::start().await;
    let token = h.client.handshake("anyone", "anything").await.unwrap();
    assert_eq!(&token[..], b"strata-anonymous");

    let info = h
        .client
        .execute(SAMPLES_SQL.to_owned(), None)
        .await
        .unwrap();
    // The FlightInfo announces the schema as sent: the dictionary column hydrated.
    let announced = Schema::try_from(info.clone()).unwrap();
    assert_eq!(
        announced
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect::<Vec<_>>(),
        vec![
            ("metric", DataType::Utf8),
            ("host", DataType::Utf8),
            ("value", DataType::Float64),
        ]
    );
    // The ticket carries the SQL itself.
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let any = arrow_flight::sql::Any::decode(&*ticket.ticket).unwrap();
    let stmt: arrow_flight::sql::TicketStatementQuery = any.unpack().unwrap().unwrap();
    assert_eq!(&stmt.statement_handle[..], SAMPLES_SQL.as_bytes());

    let batches = h.fetch(info).await;
    assert_eq!(batches[0].schema().field(1).data_type(), &DataType::Utf8);
    assert_eq!(lines(&batches), SAMPLES_TABLE);

    let batches = h
        .query("SELECT count(*) AS n, sum(value) AS total FROM samples")
        .await;
    assert_eq!(
        lines(&batches),
        [
            "+---+-------+",
            "| n | total |",
            "+---+-------+",
            "| 3 | 13.5  |",
            "+---+-------+",
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn prepared_statement_matches_statement_query() {
    let mut h = Harness::start().await;
    let mut stmt = h
        .client
        .prepare(SAMPLES_SQL.to_owned(), None)
        .await
        .unwrap();
    let dataset_schema = stmt.dataset_schema().unwrap().clone();
    assert_eq!(
        dataset_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["metric", "host", "value"]
    );
    assert!(stmt.parameter_schema().unwrap().fields().is_empty());
    let info = stmt.execute().await.unwrap();
    let prepared = h.fetch(info).await;
    assert_eq!(lines(&prepared), SAMPLES_TABLE);
    assert_eq!(lines(&h.query(SAMPLES_SQL).await), lines(&prepared));
    // Executing twice works (handles are stateless).
    let info = stmt.execute().await.unwrap();
    assert_eq!(lines(&h.fetch(info).await), SAMPLES_TABLE);
    stmt.close().await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn prepared_statement_binds_parameters() {
    let mut h = Harness::start().await;
    let mut stmt = h
        .client
        .prepare(
            "SELECT metric, value FROM samples WHERE value > ? AND metric = ? ORDER BY value"
                .to_owned(),
            None,
        )
        .await
        .unwrap();
    let params = stmt.parameter_schema().unwrap().clone();
    assert_eq!(
        params
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect::<Vec<_>>(),
        vec![("$1", DataType::Float64), ("$2", DataType::Utf8)]
    );
    let binding = RecordBatch::try_from_iter([
        ("$1", Arc::new(Float64Array::from(vec![0.5])) as ArrayRef),
        ("$2", Arc::new(StringArray::from(vec!["up"])) as ArrayRef),
    ])
    .unwrap();
    stmt.set_parameters(binding).unwrap();
    let info = stmt.execute().await.unwrap();
    assert_eq!(
        lines(&h.fetch(info).await),
        [
            "+--------+-------+",
            "| metric | value |",
            "+--------+-------+",
            "| up     | 1.0   |",
            "+--------+-------+",
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn get_tables_lists_tables_with_schema() {
    let mut h = Harness::start().await;
    let info = h
        .client
        .get_tables(CommandGetTables {
            catalog: Some("datafusion".into()),
            db_schema_filter_pattern: Some("pub%".into()),
            table_name_filter_pattern: Some("%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let batches = h.fetch(info).await;
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(col("catalog_name"), ["datafusion", "datafusion"]);
    assert_eq!(col("db_schema_name"), ["public", "public"]);
    assert_eq!(col("table_name"), ["samples", "up_only"]);
    assert_eq!(col("table_type"), ["TABLE", "VIEW"]);
    let schemas = batch
        .column_by_name("table_schema")
        .unwrap()
        .as_any()
        .downcast_ref::<BinaryArray>()
        .unwrap();
    let samples = Schema::try_from(IpcMessage(schemas.value(0).to_vec().into())).unwrap();
    assert_eq!(
        samples
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>(),
        vec![
            ("metric", DataType::Utf8, false),
            ("host", DataType::Utf8, true),
            ("ts", DataType::Int64, false),
            ("value", DataType::Float64, true),
        ]
    );

    // Filters: LIKE on the table name, table types, exact catalog.
    let info = h
        .client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("sam_les".into()),
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap();
    let batches = h.fetch(info).await;
    assert_eq!(batches[0].num_columns(), 4);
    assert_eq!(batches[0].num_rows(), 1);
    let info = h
        .client
        .get_tables(CommandGetTables {
            table_types: vec!["VIEW".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let batches = h.fetch(info).await;
    assert_eq!(
        lines(&batches),
        [
            "+--------------+----------------+------------+------------+",
            "| catalog_name | db_schema_name | table_name | table_type |",
            "+--------------+----------------+------------+------------+",
            "| datafusion   | public         | up_only    | VIEW       |",
            "+--------------+----------------+------------+------------+",
        ]
    );
    let info = h
        .client
        .get_tables(CommandGetTables {
            catalog: Some("nope".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Empty results arrive as a schema without batches.
    let batches = h.fetch(info).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    h.stop().await;
}

#[tokio::test]
async fn catalog_metadata_and_sql_info() {
    let mut h = Harness::start().await;
    let info = h.client.get_catalogs().await.unwrap();
    let batches = h.fetch(info).await;
    assert_eq!(
        lines(&batches),
        [
            "+--------------+",
            "| catalog_name |",
            "+--------------+",
            "| datafusion   |",
            "+--------------+",
        ]
    );
    let info = h
        .client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("datafusion".into()),
            db_schema_filter_pattern: Some("p_b%".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        lines(&h.fetch(info).await),
        [
            "+--------------+----------------+",
            "| catalog_name | db_schema_name |",
            "+--------------+----------------+",
            "| datafusion   | public         |",
            "+--------------+----------------+",
        ]
    );
    let info = h.client.get_table_types().await.unwrap();
    let batches = h.fetch(info).await;
    assert_eq!(
        lines(&batches)[3..5],
        ["| TABLE      |".to_owned(), "| VIEW       |".to_owned()]
    );

    let info = h
        .client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let batches = h.fetch(info).await;
    let text = lines(&batches).join("\n");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert!(text.contains("Strata"), "{text}");
    assert!(text.contains("true"), "{text}");

    let info = h
        .client
        .get_xdbc_type_info(Default::default())
        .await
        .unwrap();
    let batches = h.fetch(info).await;
    assert_eq!(batches[0].num_rows(), 13);

    let info = h.client.get_primary_keys(Default::default()).await.unwrap();
    assert_eq!(Schema::try_from(info.clone()).unwrap().fields().len(), 6);
    let batches = h.fetch(info).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    h.stop().await;
}

#[tokio::test]
async fn bad_sql_is_invalid_argument_and_server_keeps_serving() {
    let mut h = Harness::start().await;
    let mut raw = h.client.inner().clone();
    let descriptor = |sql: &str| {
        FlightDescriptor::new_cmd(
            CommandStatementQuery {
                query: sql.to_owned(),
                transaction_id: None,
            }
            .as_any()
            .encode_to_vec(),
        )
    };

    let status = raw
        .get_flight_info(descriptor("SELEC nonsense FROM"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("SQL error"), "{status:?}");

    let status = raw
        .get_flight_info(descriptor("SELECT * FROM no_such_table"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("no_such_table"), "{status:?}");

    // A forged ticket with bad SQL fails the same way at DoGet.
    let ticket = arrow_flight::sql::TicketStatementQuery {
        statement_handle: "SELECT nope FROM samples".into(),
    };
    let status = raw
        .do_get(Ticket::new(ticket.as_any().encode_to_vec()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("nope"), "{status:?}");

    // Preparing bad SQL is rejected too.
    let err = h
        .client
        .prepare("SELECT FROM WHERE".to_owned(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid argument"), "{err}");

    // The server still answers.
    assert_eq!(lines(&h.query(SAMPLES_SQL).await), SAMPLES_TABLE);
    h.stop().await;
}

#[tokio::test]
async fn update_statements_report_counts() {
    let mut h = Harness::start_with(SqlPolicy {
        allow_writes: true,
        ..SqlPolicy::default()
    })
    .await;
    let n = h
        .client
        .execute_update(
            "INSERT INTO samples VALUES ('up', 'c', 3000, 1.0), ('up', 'd', 3000, 1.0)".to_owned(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let batches = h.query("SELECT count(*) AS n FROM samples").await;
    assert_eq!(lines(&batches)[3], "| 5 |");
    h.stop().await;
}

/// The status of running `sql` as a statement query (planning or streaming), which must fail.
async fn query_error(h: &mut Harness, sql: &str) -> tonic::Status {
    let err = match h.client.execute(sql.to_owned(), None).await {
        Err(e) => e,
        Ok(info) => {
            let ticket = info.endpoint[0].ticket.clone().unwrap();
            match h.client.do_get(ticket).await {
                Err(e) => e,
                Ok(stream) => stream
                    .try_collect::<Vec<_>>()
                    .await
                    .expect_err(&format!("{sql} must fail")),
            }
        }
    };
    match err {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => panic!("{sql}: not a gRPC status: {other}"),
    }
}

#[tokio::test]
async fn sql_is_read_only_by_default() {
    let mut h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let statements = [
        "DROP TABLE samples".to_string(),
        "DROP VIEW up_only".to_string(),
        format!("COPY (SELECT 1) TO '{}' STORED AS CSV", out.display()),
        format!(
            "EXPLAIN ANALYZE COPY (SELECT 1) TO '{}' STORED AS CSV",
            out.display()
        ),
        "CREATE EXTERNAL TABLE pw (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'".into(),
        "CREATE TABLE t AS SELECT 1".into(),
        "INSERT INTO samples VALUES ('up', 'c', 3000, 1.0)".into(),
        "SET datafusion.execution.batch_size = 1".into(),
    ];
    for sql in &statements {
        let status = query_error(&mut h, sql).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{sql}: {status:?}");
        assert!(status.message().contains("read-only"), "{sql}: {status:?}");
        // As an update and as a prepared statement too.
        let err = h
            .client
            .execute_update(sql.clone(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("read-only"), "{sql}: {err}");
        let err = h.client.prepare(sql.clone(), None).await.unwrap_err();
        assert!(err.to_string().contains("read-only"), "{sql}: {err}");
    }
    // Nothing changed: the table, the view and the configuration are as they were, and
    // no file was written.
    assert_eq!(lines(&h.query(SAMPLES_SQL).await), SAMPLES_TABLE);
    assert_eq!(h.query("SELECT * FROM up_only").await[0].num_rows(), 2);
    assert!(!out.exists());
    let batch_size = h.query("SHOW datafusion.execution.batch_size").await;
    assert!(
        lines(&batch_size).iter().any(|l| l.contains("8192")),
        "{batch_size:?}"
    );
    // A file outside the tables cannot be read as a table either.
    let status = query_error(&mut h, "SELECT * FROM '/etc/passwd'").await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    h.stop().await;
}

#[tokio::test]
async fn opted_in_writes_work_and_a_set_stays_in_its_request() {
    let mut h = Harness::start_with(SqlPolicy {
        allow_writes: true,
        ..SqlPolicy::default()
    })
    .await;
    h.client
        .execute_update("SET datafusion.execution.batch_size = 7".into(), None)
        .await
        .unwrap();
    // The next request has its own session state: the default again.
    let batch_size = h.query("SHOW datafusion.execution.batch_size").await;
    assert!(
        lines(&batch_size).iter().any(|l| l.contains("8192")),
        "{batch_size:?}"
    );
    // DDL reaches the shared catalog (admin use).
    h.client
        .execute_update("CREATE VIEW two AS SELECT 2 AS x".into(), None)
        .await
        .unwrap();
    assert_eq!(lines(&h.query("SELECT x FROM two").await)[3], "| 2 |");
    h.stop().await;
}

#[tokio::test]
async fn a_query_past_the_memory_budget_fails_and_the_server_keeps_serving() {
    let mut h = Harness::start_with(SqlPolicy {
        memory_limit_bytes: Some(32 << 20),
        ..SqlPolicy::default()
    })
    .await;
    // A hash join's build side cannot spill: 6 M rows of i64 and the hash table are more
    // than 32 MiB.
    let status = query_error(
        &mut h,
        "SELECT count(*) FROM generate_series(1, 6000000) a \
         JOIN generate_series(1, 6000000) b ON a.value = b.value",
    )
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("Resources exhausted"),
        "{status:?}"
    );
    // A grouping past the budget (a million groups) spills to disk and answers: the
    // residues of 1..=3,000,000 modulo 1,000,003 are all 1,000,003 of them.
    let groups = h
        .query(
            "SELECT count(*) AS n FROM (SELECT value % 1000003 AS k, count(*) AS c \
             FROM generate_series(1, 3000000) GROUP BY k)",
        )
        .await;
    assert_eq!(lines(&groups)[3], "| 1000003 |", "{groups:?}");
    assert_eq!(lines(&h.query(SAMPLES_SQL).await), SAMPLES_TABLE);
    h.stop().await;
}

#[tokio::test]
async fn a_query_past_its_timeout_is_deadline_exceeded() {
    let mut h = Harness::start_with(SqlPolicy {
        timeout: Some(std::time::Duration::from_millis(200)),
        ..SqlPolicy::default()
    })
    .await;
    let started = std::time::Instant::now();
    let status = query_error(
        &mut h,
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    )
    .await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("timed out"), "{status:?}");
    // It stopped at the timeout, not after counting 10^11 rows.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(lines(&h.query(SAMPLES_SQL).await), SAMPLES_TABLE);
    h.stop().await;
}

#[tokio::test]
async fn a_statement_past_the_operator_limit_is_refused_and_one_at_it_answers() {
    let mut h = Harness::start().await;
    // 5,000 terms overflowed DataFusion's planner on a 2 MiB stack, aborting the server.
    let status = query_error(&mut h, &format!("SELECT 1{}", " + 1".repeat(5_000))).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("more than the limit of 1000"),
        "{status:?}"
    );
    // At the limit (the SELECT and 999 `+`): 1,000.
    let at = format!("SELECT 1{} AS n", " + 1".repeat(999));
    assert_eq!(lines(&h.query(&at).await)[3], "| 1000 |");
    h.stop().await;
}
