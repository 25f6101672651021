//! What the fuzz targets in `fuzz_targets/` run: each input goes the way a client's request
//! goes through Strata, and must come out as an answer or an error of the module's own
//! type, never a panic, an abort or a stack overflow. `tests/it/fuzz.rs` runs the same
//! checks, bounded, in the test suite.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datafusion::prelude::SessionContext;
use strata_ingest::storage::DataDir;
use strata_ingest::Ingester;
use strata_promql::QueryOptions;

mod fixture;
mod ingest;

pub use ingest::{NOW, T, exposition, influx, json_push, otlp, remote_write, remote_write_v2, rule_group, snappy, statsd};

/// One engine per fuzzing process, as the server sets it up.
struct Fixture {
    rt: tokio::runtime::Runtime,
    /// The PromQL session, as the HTTP API holds it.
    prom: SessionContext,
    /// The engine's session, as Flight SQL holds it.
    sql: SessionContext,
    _ingester: Arc<Ingester>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        // Tables in memory; the WAL in a directory of this process (left behind: a static
        // is never dropped).
        let wal = std::env::temp_dir().join(format!("strata-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&wal);
        let (ingester, sql) = rt.block_on(fixture::open(DataDir::Memory, &wal, true));
        let prom = strata_promql::prom_session(&sql);
        Fixture {
            rt,
            prom,
            sql,
            _ingester: ingester,
        }
    })
}

/// `r` is an answer, or an error of a known type that does not report a panic.
fn check_promql<V>(q: &str, r: Result<V, strata_promql::PromqlError>) {
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(
            matches!(e.error_type(), "bad_data" | "execution" | "timeout"),
            "{q:?}: unknown error type {}: {msg}",
            e.error_type()
        );
        assert!(
            !msg.contains("panicked"),
            "{q:?}: a panic reported as an error: {msg}"
        );
    }
}

/// A PromQL query as `/api/v1/query` runs it (parse, plan, run), at [`T`]; if it parses,
/// also as `/api/v1/query_range` over the 10 minutes up to [`T`].
pub fn promql(q: &str) {
    let e = fixture();
    let opts = QueryOptions {
        timeout: Some(Duration::from_secs(10)),
        ..QueryOptions::default()
    };
    let instant =
        e.rt.block_on(strata_promql::instant_query(&e.prom, q, T, &opts));
    let parsed = !matches!(instant, Err(strata_promql::PromqlError::BadData(_)));
    check_promql(q, instant);
    if parsed {
        let range = e.rt.block_on(strata_promql::range_query(
            &e.prom,
            q,
            T - 600_000,
            T,
            60_000,
            &opts,
        ));
        check_promql(q, range);
    }
}

/// An SQL statement planned (logical plan, then the optimizer) as Flight SQL plans it, and
/// not run: errors are fine, panics are not.
pub fn sql(sql: &str) {
    let e = fixture();
    e.rt.block_on(async {
        let state = e.sql.state();
        if let Ok(plan) = state.create_logical_plan(sql).await {
            let _ = state.optimize(&plan);
        }
    });
}
