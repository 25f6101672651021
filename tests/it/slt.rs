//! The SQL surface as sqllogictest files (`tests/slt/*.slt`, the format DataFusion tests
//! its SQL with): queries and expected rows side by side, run against a server's engine
//! loaded with the fixed data below, its rollup tiers built. The expected rows were worked
//! out by hand from that data (each file's comments say how).

use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

use crate::common::*;

/// 2026-01-01T00:00:00Z, ms.
const T0: i64 = 1_767_225_600_000;

struct Db(strata_engine::Engine);

#[async_trait::async_trait]
impl AsyncDB for Db {
    type Error = strata_engine::EngineError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let batches = self.0.sql(sql).await?;
        let Some(first) = batches.first() else {
            return Ok(DBOutput::Rows {
                types: vec![],
                rows: vec![],
            });
        };
        let types = first
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        let opts = FormatOptions::default().with_null("NULL");
        let mut rows = vec![];
        for b in &batches {
            let formatters: Vec<ArrayFormatter<'_>> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<_, _>>()
                .map_err(datafusion::error::DataFusionError::from)?;
            for i in 0..b.num_rows() {
                rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test]
async fn the_sql_surface_answers_as_the_slt_files_say() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| c.rollup.enabled = false).await;
    // Two hours of one sample a minute at hh:mm:30, k = 0..119: the counter
    // slt_requests_total is k, reset to 0 at k = 90 (then k - 90); the gauge slt_temp is
    // k % 10.
    let counter: Vec<(i64, f64)> = (0..120)
        .map(|k| {
            (
                T0 + 30_000 + k * 60_000,
                if k < 90 { k } else { k - 90 } as f64,
            )
        })
        .collect();
    let gauge: Vec<(i64, f64)> = (0..120)
        .map(|k| (T0 + 30_000 + k * 60_000, (k % 10) as f64))
        .collect();
    let body = request(&[
        (
            &[("__name__", "slt_requests_total"), ("job", "a")][..],
            &counter[..],
        ),
        (&[("__name__", "slt_temp"), ("job", "a")][..], &gauge[..]),
    ]);
    assert_eq!(post_write(srv.http_addr, body).await.0, 204);
    srv.ingester.persist().await.unwrap();
    for tier in 0..3 {
        srv.rollups
            .build(tier, T0, T0 + 86_400_000, |_| {})
            .await
            .unwrap();
    }
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let engine = srv.engine.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let e = engine.clone();
            async move { Ok(Db(e)) }
        });
        runner
            .run_file_async(&f)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}
