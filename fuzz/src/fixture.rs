//! The engine the PromQL and SQL fuzzing runs on, shared by the fuzz targets and the
//! bounded pass in `tests/it/fuzz.rs` (which includes this file by path): a few series
//! (counters with resets and staleness markers, gauges with NaNs, histogram buckets), a
//! point every 15 s for the 30 minutes up to `T`, half in the Delta tables, half in the
//! head.

use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use strata_engine::Engine;
use strata_engine::source::IngesterSource;
use strata_ingest::metrics::IngestMetrics;
use strata_ingest::receive::remote_write::Validated;
use strata_ingest::storage::DataDir;
use strata_ingest::{Ingester, Limits, PersistConfig, Sample};

use super::{NOW, T};

/// The fixture's series (label pairs); their values are [`value`].
pub const SERIES: &[&[(&str, &str)]] = &[
    &[
        ("__name__", "http_requests_total"),
        ("job", "api"),
        ("instance", "a"),
        ("code", "200"),
    ],
    &[
        ("__name__", "http_requests_total"),
        ("job", "api"),
        ("instance", "a"),
        ("code", "500"),
    ],
    &[
        ("__name__", "http_requests_total"),
        ("job", "api"),
        ("instance", "b"),
        ("code", "200"),
    ],
    &[
        ("__name__", "http_requests_total"),
        ("job", "api"),
        ("instance", "b"),
        ("code", "500"),
    ],
    &[("__name__", "temperature"), ("room", "a")],
    &[("__name__", "temperature"), ("room", "b")],
    &[("__name__", "temperature"), ("room", "c")],
    &[
        ("__name__", "req_seconds_bucket"),
        ("job", "api"),
        ("le", "0.1"),
    ],
    &[
        ("__name__", "req_seconds_bucket"),
        ("job", "api"),
        ("le", "0.5"),
    ],
    &[
        ("__name__", "req_seconds_bucket"),
        ("job", "api"),
        ("le", "1"),
    ],
    &[
        ("__name__", "req_seconds_bucket"),
        ("job", "api"),
        ("le", "+Inf"),
    ],
    &[("__name__", "req_seconds_count"), ("job", "api")],
    &[("__name__", "req_seconds_sum"), ("job", "api")],
    &[("__name__", "up"), ("job", "api"), ("instance", "a")],
    &[("__name__", "up"), ("job", "api"), ("instance", "b")],
    &[
        ("__name__", "info_metric"),
        ("version", "1.0"),
        ("host", "x"),
    ],
];

/// The value of series `k` of [`SERIES`] at point `i` (0 to 120, every 15 s up to `T`):
/// counters (one with resets, one with staleness markers), gauges (one with NaNs),
/// histogram buckets.
fn value(k: usize, i: i64) -> f64 {
    let x = i as f64;
    match k {
        0 => 10.0 * x,
        1 => (i % 40) as f64,
        2 => 20.0 * x,
        3 if i % 7 == 3 => strata_ingest::model::stale_nan(),
        3 => 0.5 * x,
        4 => 20.0 + (i % 10) as f64,
        5 => 0.1 * x - 5.5,
        6 if i % 3 == 1 => f64::NAN,
        6 => x,
        7 => x,
        8 => 3.0 * x,
        9 => 4.0 * x,
        10 | 11 => 5.0 * x,
        12 => 2.5 * x,
        14 => (i % 2) as f64,
        _ => 1.0,
    }
}

/// Writes the fixture's series: the first half persisted to the Delta tables, the second
/// half left in the head.
async fn load(ingester: &Ingester) {
    let limits = Limits::default();
    for first_half in [true, false] {
        let mut batch = Validated::default();
        for (k, labels) in SERIES.iter().enumerate() {
            let pairs: Vec<(String, String)> = labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let samples = (0..=120i64)
                .filter(|i| (*i <= 60) == first_half)
                .map(|i| Sample {
                    timestamp_ms: T - (120 - i) * 15_000,
                    value: value(k, i),
                })
                .collect();
            batch.push(&pairs, samples, &limits, NOW);
        }
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        ingester
            .write(batch, "test", None)
            .await
            .expect("the fixture's samples are written");
        if first_half {
            ingester.persist().await.expect("the first half persists");
        }
    }
}

/// A write path over `data_dir` with its WAL in `wal` (with the fixture's series when
/// `data`) and the engine's session over it, with PromQL's SQL functions registered, as
/// the server sets them up.
pub async fn open(data_dir: DataDir, wal: &Path, data: bool) -> (Arc<Ingester>, SessionContext) {
    let ingester = Ingester::open(
        data_dir,
        wal,
        Limits::default(),
        PersistConfig::default(),
        IngestMetrics::new(),
    )
    .await
    .expect("the storage opens");
    if data {
        load(&ingester).await;
    }
    let engine = Engine::new(Arc::new(IngesterSource(ingester.clone())))
        .await
        .expect("the engine starts");
    let ctx = engine.context();
    strata_promql::sql_functions::register(&ctx);
    (ingester, ctx)
}
