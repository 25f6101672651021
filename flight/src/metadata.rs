//! Flight SQL metadata responses: catalogs, schemas, tables, table types,
//! `SqlInfo`, XDBC type info and (always empty) key listings, all read from the
//! [`SessionContext`]'s catalog list.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo,
    XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, Nullable,
    Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, SqlTransactionIsolationLevel, SupportedSqlGrammar, XdbcDataType,
    XdbcDatetimeSubcode,
};
use datafusion::catalog::CatalogProvider;
use datafusion::logical_expr::TableType;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;

use crate::FlightError;
use crate::query::flight_schema;

/// The table types this server reports.
const TABLE_TYPES: [&str; 2] = ["TABLE", "VIEW"];

/// Flight SQL table type of a DataFusion table: views are `VIEW`, everything else `TABLE`.
fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::View => "VIEW",
        TableType::Base | TableType::Temporary => "TABLE",
    }
}

/// A SQL `LIKE` pattern as used by the Flight SQL metadata filters: `%` matches
/// any run of characters, `_` exactly one, `\` escapes the next character.
/// Matching is case-sensitive.
#[derive(Debug, Clone)]
pub(crate) struct LikePattern(Vec<LikeToken>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum LikeToken {
    Any,
    One,
    Char(char),
}

impl LikePattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '%' => LikeToken::Any,
                '_' => LikeToken::One,
                '\\' => LikeToken::Char(chars.next().unwrap_or('\\')),
                c => LikeToken::Char(c),
            });
        }
        Self(tokens)
    }

    /// Whether `text` matches; linear backtracking on the last `%`, so O(n·m) worst case.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let pat = &self.0;
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pat.get(p) {
                Some(LikeToken::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(LikeToken::One) => {
                    p += 1;
                    t += 1;
                }
                Some(LikeToken::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pat[p..].iter().all(|tok| *tok == LikeToken::Any)
    }
}

fn like_matches(pattern: Option<&LikePattern>, text: &str) -> bool {
    pattern.is_none_or(|p| p.matches(text))
}

/// The catalogs of `ctx`, restricted to `catalog` (exact name) if given.
fn catalogs(
    ctx: &SessionContext,
    catalog: Option<&str>,
) -> Vec<(String, Arc<dyn CatalogProvider>)> {
    ctx.catalog_names()
        .into_iter()
        .filter(|name| catalog.is_none_or(|c| c == name))
        .filter_map(|name| ctx.catalog(&name).map(|c| (name, c)))
        .collect()
}

/// `CommandGetCatalogs` result: every catalog name, sorted.
pub(crate) fn catalogs_batch(
    ctx: &SessionContext,
    cmd: CommandGetCatalogs,
) -> Result<RecordBatch, FlightError> {
    let mut builder = cmd.into_builder();
    for name in ctx.catalog_names() {
        builder.append(name);
    }
    Ok(builder.build()?)
}

/// The result schema of `CommandGetCatalogs`.
pub(crate) fn catalogs_schema() -> SchemaRef {
    CommandGetCatalogs {}.into_builder().schema()
}

/// `CommandGetDbSchemas` result: (catalog, schema) pairs matching the exact
/// catalog filter and the `LIKE` schema pattern, sorted.
pub(crate) fn schemas_batch(
    ctx: &SessionContext,
    cmd: &CommandGetDbSchemas,
) -> Result<RecordBatch, FlightError> {
    let pattern = cmd
        .db_schema_filter_pattern
        .as_deref()
        .map(LikePattern::new);
    let mut builder = GetDbSchemasBuilder::new(None::<String>, None::<String>);
    for (catalog_name, catalog) in catalogs(ctx, cmd.catalog.as_deref()) {
        for schema_name in catalog.schema_names() {
            if like_matches(pattern.as_ref(), &schema_name) {
                builder.append(&catalog_name, &schema_name);
            }
        }
    }
    Ok(builder.build()?)
}

/// The result schema of `CommandGetDbSchemas`.
pub(crate) fn schemas_schema() -> SchemaRef {
    GetDbSchemasBuilder::new(None::<String>, None::<String>).schema()
}

/// `CommandGetTables` result: tables matching the exact catalog filter, the
/// `LIKE` schema and table name patterns and the table type list (empty = all,
/// compared case-insensitively), sorted; with `include_schema`, each table's
/// Arrow schema (as clients will receive it) IPC-encoded.
///
/// Tables that fail to load are logged and skipped rather than failing the listing.
pub(crate) async fn tables_batch(
    ctx: &SessionContext,
    cmd: &CommandGetTables,
) -> Result<RecordBatch, FlightError> {
    let schema_pattern = cmd
        .db_schema_filter_pattern
        .as_deref()
        .map(LikePattern::new);
    let table_pattern = cmd
        .table_name_filter_pattern
        .as_deref()
        .map(LikePattern::new);
    let mut builder = GetTablesBuilder::new(
        None::<String>,
        None::<String>,
        None::<String>,
        Vec::<String>::new(),
        cmd.include_schema,
    );
    let empty = Schema::empty();
    for (catalog_name, catalog) in catalogs(ctx, cmd.catalog.as_deref()) {
        for schema_name in catalog.schema_names() {
            if !like_matches(schema_pattern.as_ref(), &schema_name) {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut table_names = schema.table_names();
            table_names.retain(|t| like_matches(table_pattern.as_ref(), t));
            for table_name in table_names {
                let table_type = match schema.table_type(&table_name).await {
                    Ok(Some(t)) => table_type_name(t),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(
                            catalog = %catalog_name, schema = %schema_name, table = %table_name,
                            error = %e, "GetTables: skipping table that failed to load"
                        );
                        continue;
                    }
                };
                if !cmd.table_types.is_empty()
                    && !cmd
                        .table_types
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(table_type))
                {
                    continue;
                }
                if cmd.include_schema {
                    let table_schema = match schema.table(&table_name).await {
                        Ok(Some(t)) => flight_schema(&t.schema()),
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(
                                catalog = %catalog_name, schema = %schema_name, table = %table_name,
                                error = %e, "GetTables: skipping table that failed to load"
                            );
                            continue;
                        }
                    };
                    builder.append(
                        &catalog_name,
                        &schema_name,
                        &table_name,
                        table_type,
                        &table_schema,
                    )?;
                } else {
                    builder.append(&catalog_name, &schema_name, &table_name, table_type, &empty)?;
                }
            }
        }
    }
    Ok(builder.build()?)
}

/// The result schema of `CommandGetTables` (depends on `include_schema`).
pub(crate) fn tables_schema(include_schema: bool) -> SchemaRef {
    GetTablesBuilder::new(
        None::<String>,
        None::<String>,
        None::<String>,
        Vec::<String>::new(),
        include_schema,
    )
    .schema()
}

/// `CommandGetTableTypes` result: `TABLE` and `VIEW`.
pub(crate) fn table_types_batch(cmd: CommandGetTableTypes) -> Result<RecordBatch, FlightError> {
    let mut builder = cmd.into_builder();
    for t in TABLE_TYPES {
        builder.append(t);
    }
    Ok(builder.build()?)
}

/// The result schema of `CommandGetTableTypes`.
pub(crate) fn table_types_schema() -> SchemaRef {
    CommandGetTableTypes {}.into_builder().schema()
}

/// Result schema of `CommandGetPrimaryKeys` (this server never has primary keys).
pub(crate) fn primary_keys_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("catalog_name", DataType::Utf8, true),
            Field::new("db_schema_name", DataType::Utf8, true),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("column_name", DataType::Utf8, false),
            Field::new("key_name", DataType::Utf8, true),
            Field::new("key_sequence", DataType::Int32, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// Result schema of `CommandGetExportedKeys`, `CommandGetImportedKeys` and
/// `CommandGetCrossReference` (this server never has foreign keys).
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("pk_catalog_name", DataType::Utf8, true),
            Field::new("pk_db_schema_name", DataType::Utf8, true),
            Field::new("pk_table_name", DataType::Utf8, false),
            Field::new("pk_column_name", DataType::Utf8, false),
            Field::new("fk_catalog_name", DataType::Utf8, true),
            Field::new("fk_db_schema_name", DataType::Utf8, true),
            Field::new("fk_table_name", DataType::Utf8, false),
            Field::new("fk_column_name", DataType::Utf8, false),
            Field::new("key_sequence", DataType::Int32, false),
            Field::new("fk_key_name", DataType::Utf8, true),
            Field::new("pk_key_name", DataType::Utf8, true),
            Field::new("update_rule", DataType::UInt8, false),
            Field::new("delete_rule", DataType::UInt8, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// The `SqlInfo` this server reports.
pub(crate) fn sql_info() -> Result<SqlInfoData, FlightError> {
    let mut b = SqlInfoDataBuilder::new();
    // Server.
    b.append(SqlInfo::FlightSqlServerName, "Strata");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, arrow::ARROW_VERSION);
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    // SQL language.
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, ALL_KEYWORDS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    // Bitmask: SQL_GROUP_BY_UNRELATED | SQL_GROUP_BY_BEYOND_SELECT.
    b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        (1 << SupportedSqlGrammar::SqlMinimumGrammar as i32)
            | (1 << SupportedSqlGrammar::SqlCoreGrammar as i32),
    );
    // Bitmask: ANSI92_ENTRY_SQL (the enum is not re-exported by arrow-flight).
    b.append(SqlInfo::SqlAnsi92SupportedLevel, 0b1i32);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    // Bitmask: subqueries in comparisons, EXISTS, IN and quantified comparisons.
    b.append(SqlInfo::SqlSupportedSubqueries, 0b1111i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    // Bitmask: UNION | UNION ALL.
    b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
    b.append(
        SqlInfo::SqlDefaultTransactionIsolation,
        SqlTransactionIsolationLevel::SqlTransactionNone as i32,
    );
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    Ok(b.build()?)
}

/// The XDBC type info this server reports: the SQL types DataFusion understands.
pub(crate) fn xdbc_type_info() -> Result<XdbcTypeInfoData, FlightError> {
    fn info(
        name: &str,
        data_type: XdbcDataType,
        column_size: Option<i32>,
        radix: Option<i32>,
    ) -> XdbcTypeInfo {
        XdbcTypeInfo {
            type_name: name.to_owned(),
            data_type,
            column_size,
            nullable: Nullable::NullabilityNullable,
            searchable: Searchable::Full,
            local_type_name: Some(name.to_owned()),
            sql_data_type: data_type,
            num_prec_radix: radix,
            ..Default::default()
        }
    }
    fn integer(name: &str, data_type: XdbcDataType, digits: i32) -> XdbcTypeInfo {
        XdbcTypeInfo {
            unsigned_attribute: Some(false),
            auto_increment: Some(false),
            fixed_prec_scale: true,
            minimum_scale: Some(0),
            maximum_scale: Some(0),
            ..info(name, data_type, Some(digits), Some(10))
        }
    }
    fn quoted(mut info: XdbcTypeInfo, prefix: &str) -> XdbcTypeInfo {
        info.literal_prefix = Some(prefix.to_owned());
        info.literal_suffix = Some("'".to_owned());
        info
    }
    fn datetime(mut info: XdbcTypeInfo, subcode: XdbcDatetimeSubcode) -> XdbcTypeInfo {
        info.sql_data_type = XdbcDataType::XdbcDatetime;
        info.datetime_subcode = Some(subcode);
        info
    }

    let mut b = XdbcTypeInfoDataBuilder::new();
    b.append(info("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None));
    b.append(integer("TINYINT", XdbcDataType::XdbcTinyint, 3));
    b.append(integer("SMALLINT", XdbcDataType::XdbcSmallint, 5));
    b.append(integer("INTEGER", XdbcDataType::XdbcInteger, 10));
    b.append(integer("BIGINT", XdbcDataType::XdbcBigint, 19));
    b.append(info("REAL", XdbcDataType::XdbcReal, Some(24), Some(2)));
    b.append(info("DOUBLE", XdbcDataType::XdbcDouble, Some(53), Some(2)));
    b.append(XdbcTypeInfo {
        create_params: Some(vec!["precision".to_owned(), "scale".to_owned()]),
        fixed_prec_scale: true,
        minimum_scale: Some(0),
        maximum_scale: Some(38),
        ..info("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), Some(10))
    });
    b.append(XdbcTypeInfo {
        case_sensitive: true,
        ..quoted(
            info("VARCHAR", XdbcDataType::XdbcVarchar, Some(i32::MAX), None),
            "'",
        )
    });
    b.append(quoted(
        info(
            "VARBINARY",
            XdbcDataType::XdbcVarbinary,
            Some(i32::MAX),
            None,
        ),
        "X'",
    ));
    b.append(datetime(
        quoted(
            info("DATE", XdbcDataType::XdbcDate, Some(10), None),
            "DATE '",
        ),
        XdbcDatetimeSubcode::XdbcSubcodeUnknown,
    ));
    b.append(datetime(
        quoted(
            info("TIME", XdbcDataType::XdbcTime, Some(18), None),
            "TIME '",
        ),
        XdbcDatetimeSubcode::XdbcSubcodeTime,
    ));
    b.append(datetime(
        quoted(
            info("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(29), None),
            "TIMESTAMP '",
        ),
        XdbcDatetimeSubcode::XdbcSubcodeTimestamp,
    ));
    Ok(b.build()?)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn like_patterns() {
        let m = |p: &str, t: &str| LikePattern::new(p).matches(t);
        assert!(m("%", ""));
        assert!(m("%", "anything"));
        assert!(m("met%", "metrics"));
        assert!(!m("met%", "xmetrics"));
        assert!(m("%ric%", "metrics"));
        assert!(m("m_trics", "metrics"));
        assert!(!m("m_trics", "mtrics"));
        assert!(m("a%b%c", "aXXbYYc"));
        assert!(!m("a%b%c", "aXXbYY"));
        assert!(m("samples\\_1", "samples_1"));
        assert!(!m("samples\\_1", "samplesX1"));
        assert!(m("100\\%", "100%"));
        assert!(!m("Metrics", "metrics"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn static_metadata_builds() {
        let info = sql_info().unwrap();
        let batch = info
            .record_batch([SqlInfo::FlightSqlServerName as u32])
            .unwrap();
        assert_eq!(batch.num_rows(), 1);
        let types = xdbc_type_info().unwrap();
        assert_eq!(types.record_batch(None).unwrap().num_rows(), 13);
    }
}
