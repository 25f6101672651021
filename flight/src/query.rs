//! Planning and running SQL for Flight SQL: statement handles, placeholder
//! rewriting, parameter binding, and the Arrow shape of results on the wire.

use std::borrow::Cow;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_flight::{IpcMessage, SchemaAsIpc};
use bytes::Bytes;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::FlightError;

/// Marks a prepared statement handle that carries bound parameters. `0xFF` never
/// occurs in UTF-8, so it cannot be confused with a plain SQL handle.
const BOUND_MAGIC: &[u8] = b"\xffSTRATA-BOUND-1\0";

/// True for DataFusion errors that are the client's fault: SQL syntax, planning
/// (unknown table/column, type mismatch), schema errors and unsupported SQL.
pub(crate) fn is_planning_error(err: &DataFusionError) -> bool {
    matches!(
        err.find_root(),
        DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
    )
}

/// A decoded statement handle: the SQL text and, once bound through `DoPut`,
/// the single row of parameter values.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) sql: String,
    pub(crate) params: Option<RecordBatch>,
}

impl Handle {
    /// Decodes a statement ticket or prepared statement handle: either the UTF-8
    /// SQL text, or [`BOUND_MAGIC`] + u32 BE SQL length + SQL + IPC stream of parameters.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, FlightError> {
        let Some(rest) = bytes.strip_prefix(BOUND_MAGIC) else {
            let sql = std::str::from_utf8(bytes).map_err(|e| {
                FlightError::InvalidArgument(format!("statement handle is not UTF-8 SQL: {e}"))
            })?;
            return Ok(Self {
                sql: sql.to_owned(),
                params: None,
            });
        };
        let bad = |what: &str| FlightError::InvalidArgument(format!("bad bound handle: {what}"));
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(bad("truncated SQL"));
        }
        let (sql, ipc) = rest.split_at(len);
        let sql = std::str::from_utf8(sql).map_err(|_| bad("SQL is not UTF-8"))?;
        let reader = StreamReader::try_new(Cursor::new(ipc), None)
            .map_err(|e| bad(&format!("parameters: {e}")))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&format!("parameters: {e}")))?;
        let params = concat_batches(&schema, &batches)?;
        Ok(Self {
            sql: sql.to_owned(),
            params: Some(params),
        })
    }

    /// Encodes `sql` with one row of bound `params` (see [`Handle::decode`]).
    pub(crate) fn encode_bound(sql: &str, params: &RecordBatch) -> Result<Bytes, FlightError> {
        let len = u32::try_from(sql.len())
            .map_err(|_| FlightError::InvalidArgument("SQL text too long".into()))?;
        let mut out = Vec::with_capacity(BOUND_MAGIC.len() + 4 + sql.len() + 256);
        out.extend_from_slice(BOUND_MAGIC);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(sql.as_bytes());
        let mut writer = StreamWriter::try_new(&mut out, &params.schema())?;
        writer.write(params)?;
        writer.finish()?;
        drop(writer);
        Ok(out.into())
    }
}

/// Rewrites JDBC/ODBC-style `?` placeholders into DataFusion's positional `$1`, `$2`, ...
///
/// Uses the SQL tokenizer of `dialect`, so `?` inside string literals, quoted
/// identifiers and comments is left alone, as are dialects where `?` is an
/// operator (PostgreSQL). Returns the input unchanged when there is nothing to
/// rewrite or the text does not tokenize (the planner will then report the error).
pub(crate) fn rewrite_question_placeholders<'a>(sql: &'a str, dialect: &str) -> Cow<'a, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let Some(dialect) = dialect_from_str(dialect) else {
        return Cow::Borrowed(sql);
    };
    let Ok(tokens) = Tokenizer::new(dialect.as_ref(), sql).tokenize_with_location() else {
        return Cow::Borrowed(sql);
    };
    let mut positions: Vec<(u64, u64)> = tokens
        .iter()
        .filter(|t| matches!(&t.token, Token::Placeholder(p) if p == "?"))
        .map(|t| (t.span.start.line, t.span.start.column))
        .collect();
    if positions.is_empty() {
        return Cow::Borrowed(sql);
    }
    positions.sort_unstable();

    // Walk the text with the tokenizer's line/column bookkeeping.
    let mut out = String::with_capacity(sql.len() + 2 * positions.len());
    let (mut line, mut col) = (1u64, 1u64);
    let mut next = 0usize;
    for ch in sql.chars() {
        if ch == '?' && positions.get(next) == Some(&(line, col)) {
            next += 1;
            out.push('$');
            out.push_str(&next.to_string());
        } else {
            out.push(ch);
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    Cow::Owned(out)
}

/// The most operators one SQL statement may have (`+`, `AND`, comparisons, `NOT`, `CASE`,
/// `SELECT`, opening parentheses, ...).
///
/// DataFusion's planner, optimizer and expression evaluation recurse once per operator of
/// an expression; sqlparser reads a chain `1 + 1 + ...` without recursing (its own limit
/// catches nested parentheses), and a chain of 5,000 terms overflowed a 2 MiB worker
/// stack, aborting the server.
pub const MAX_SQL_OPERATORS: usize = 1_000;

/// Refuses a statement with more than [`MAX_SQL_OPERATORS`] operators, counted on its
/// tokens (the tokenizer does not recurse), before anything parses or plans it.
///
/// # Errors
/// [`FlightError::InvalidArgument`] naming the count and the limit.
pub fn check_sql_size(sql: &str) -> Result<(), FlightError> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        // The planner reports the text's problem.
        return Ok(());
    };
    let operators = tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(
                w.keyword,
                Keyword::AND
                    | Keyword::OR
                    | Keyword::NOT
                    | Keyword::CASE
                    | Keyword::WHEN
                    | Keyword::SELECT
                    | Keyword::BETWEEN
                    | Keyword::LIKE
                    | Keyword::IS
                    | Keyword::IN
            ),
            Token::LParen
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::StringConcat
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::Arrow
            | Token::LongArrow => true,
            _ => false,
        })
        .count();
    if operators > MAX_SQL_OPERATORS {
        return Err(FlightError::InvalidArgument(format!(
            "the statement has {operators} operators, more than the limit of {MAX_SQL_OPERATORS}"
        )));
    }
    Ok(())
}

/// Plans `sql` (without executing it) in `ctx` (a request's own session), checks it
/// against `options` (what the [`crate::SqlPolicy`] allows), then binds `params` if given.
///
/// # Errors
/// DataFusion planning errors; [`FlightError::ReadOnly`] for a statement `options`
/// refuses (DDL, DML, `COPY`, `SET`), anywhere in the plan (inside `EXPLAIN` too);
/// [`FlightError::InvalidArgument`] for a statement past [`check_sql_size`] or unusable
/// parameters.
pub(crate) async fn plan_sql(
    ctx: &SessionContext,
    options: &SQLOptions,
    sql: &str,
    params: Option<&RecordBatch>,
) -> Result<LogicalPlan, FlightError> {
    check_sql_size(sql)?;
    let state: SessionState = ctx.state();
    let dialect = state.config_options().sql_parser.dialect;
    let sql = rewrite_question_placeholders(sql, dialect.as_ref());
    let plan = state.create_logical_plan(&sql).await?;
    options.verify_plan(&plan).map_err(|e| {
        let msg = e.find_root().strip_backtrace();
        FlightError::ReadOnly(
            msg.strip_prefix("Error during planning: ")
                .unwrap_or(&msg)
                .to_string(),
        )
    })?;
    match params {
        None => Ok(plan),
        Some(batch) => bind_parameters(plan, batch),
    }
}

/// Plans (as [`plan_sql`]) and executes `sql` in `ctx`, returning DataFusion's record
/// batch stream.
///
/// # Errors
/// As [`plan_sql`], and DataFusion's errors starting the execution.
pub(crate) async fn execute_sql(
    ctx: &SessionContext,
    options: &SQLOptions,
    sql: &str,
    params: Option<&RecordBatch>,
) -> Result<SendableRecordBatchStream, FlightError> {
    let plan = plan_sql(ctx, options, sql, params).await?;
    let df = ctx.execute_logical_plan(plan).await?;
    Ok(df.execute_stream().await?)
}

/// Substitutes the single row of `params` for the plan's placeholders.
///
/// Positional placeholders (`$1`, `$2`, ...) take the columns in order; if the
/// plan uses named placeholders (`$name`) the columns are matched by field name
/// (with or without the leading `$`).
fn bind_parameters(plan: LogicalPlan, params: &RecordBatch) -> Result<LogicalPlan, FlightError> {
    if params.num_rows() != 1 {
        return Err(FlightError::InvalidArgument(format!(
            "expected exactly one row of parameters, got {}",
            params.num_rows()
        )));
    }
    let values = params
        .columns()
        .iter()
        .map(|col| ScalarValue::try_from_array(col, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let names = plan.get_parameter_names()?;
    let named = names.iter().any(|n| positional_index(n).is_none());
    let param_values: ParamValues = if named {
        params
            .schema()
            .fields()
            .iter()
            .zip(values)
            .map(|(f, v)| (f.name().trim_start_matches('$').to_owned(), v))
            .collect::<Vec<_>>()
            .into()
    } else {
        values.into()
    };
    Ok(plan.with_param_values(param_values)?)
}

/// `$3` -> `Some(3)`; named placeholders -> `None`.
fn positional_index(name: &str) -> Option<usize> {
    name.strip_prefix('$')?.parse().ok()
}

/// The parameter schema of a planned statement: one nullable field per
/// placeholder, positional ones first in order (`$1`, `$2`, ...), then named ones
/// alphabetically. Types DataFusion could not infer are `Null`.
pub(crate) fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, FlightError> {
    let mut params: Vec<(String, Option<FieldRef>)> =
        plan.get_parameter_fields()?.into_iter().collect();
    params.sort_by(
        |(a, _), (b, _)| match (positional_index(a), positional_index(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(b),
        },
    );
    let fields: Vec<Field> = params
        .into_iter()
        .map(|(name, field)| {
            let data_type = field.map_or(DataType::Null, |f| f.data_type().clone());
            Field::new(name, flight_type(&data_type), true)
        })
        .collect();
    Ok(Schema::new(fields))
}

/// IPC-encodes a schema as Flight SQL expects in prepared statement results.
pub(crate) fn schema_to_ipc(schema: &Schema) -> Result<Bytes, FlightError> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into()?;
    Ok(bytes)
}

/// The schema as clients receive it: dictionaries hydrated to their value type,
/// `Utf8View`/`BinaryView` as `Utf8`/`Binary`, recursively through nested types.
pub(crate) fn flight_schema(schema: &Schema) -> Schema {
    let fields: Fields = schema.fields().iter().map(flight_field).collect();
    Schema::new(fields).with_metadata(schema.metadata().clone())
}

fn flight_field(field: &FieldRef) -> FieldRef {
    let data_type = flight_type(field.data_type());
    if &data_type == field.data_type() {
        Arc::clone(field)
    } else {
        Arc::new(field.as_ref().clone().with_data_type(data_type))
    }
}

fn flight_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, value) => flight_type(value),
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(flight_field(f)),
        DataType::LargeList(f) => DataType::LargeList(flight_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(flight_field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(flight_field).collect()),
        DataType::Map(f, sorted) => DataType::Map(flight_field(f), *sorted),
        other => other.clone(),
    }
}

/// Casts `batch` to `target` (a [`flight_schema`] of the batch's schema) where types differ.
pub(crate) fn conform_batch(
    batch: RecordBatch,
    target: &SchemaRef,
) -> Result<RecordBatch, FlightError> {
    let unchanged = batch
        .columns()
        .iter()
        .zip(target.fields())
        .all(|(c, f)| c.data_type() == f.data_type());
    if unchanged {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(target),
        columns,
        &options,
    )?)
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn rewrites_only_real_placeholders() {
        let sql = "SELECT '?' AS q, \"a?\" FROM t -- why?\nWHERE x = ? AND y = ?";
        let out = rewrite_question_placeholders(sql, "generic");
        assert_eq!(
            out,
            "SELECT '?' AS q, \"a?\" FROM t -- why?\nWHERE x = $1 AND y = $2"
        );
        assert!(matches!(
            rewrite_question_placeholders("SELECT $1", "generic"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn bound_handle_round_trips() {
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ])
        .unwrap();
        let bytes = Handle::encode_bound("SELECT $1, $2", &batch).unwrap();
        let handle = Handle::decode(&bytes).unwrap();
        assert_eq!(handle.sql, "SELECT $1, $2");
        assert_eq!(handle.params.unwrap(), batch);

        let plain = Handle::decode(b"SELECT 1").unwrap();
        assert_eq!(plain.sql, "SELECT 1");
        assert!(plain.params.is_none());
        assert!(Handle::decode(b"\xff\xfe").is_err());
        assert!(Handle::decode(&bytes[..BOUND_MAGIC.len() + 2]).is_err());
    }

    #[test]
    fn flight_schema_hydrates_dictionaries_and_views() {
        let schema = Schema::new(vec![
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("v", DataType::Utf8View, false),
            Field::new("n", DataType::Int64, false),
        ]);
        let out = flight_schema(&schema);
        assert_eq!(out.field(0).data_type(), &DataType::Utf8);
        assert_eq!(out.field(1).data_type(), &DataType::Utf8);
        assert!(!out.field(1).is_nullable());
        assert_eq!(out.field(2).data_type(), &DataType::Int64);
    }
}
