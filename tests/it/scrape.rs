//! Scraping: a target served on loopback, its samples with target labels, `up` and the
//! report series, and staleness markers when a series or the target disappears.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use arrow::array::{Array, Float64Array};
use axum::routing::get;
use strata_ingest::receive::scrape::{ScrapeConfig, StaticConfig};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_writes_samples_up_and_staleness_markers() {
    // 0: both series, 1: one series gone, 2: target answers 500.
    let phase = Arc::new(AtomicU8::new(0));
    let p = phase.clone();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let p = p.clone();
            async move {
                match p.load(Ordering::SeqCst) {
                    0 => (
                        axum::http::StatusCode::OK,
                        "# TYPE app_items gauge\napp_items{kind=\"a,b\"} 7\napp_items{kind=\"c\"} 3\n",
                    ),
                    1 => (axum::http::StatusCode::OK, "# TYPE app_items gauge\napp_items{kind=\"a,b\"} 8\n"),
                    _ => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down\n"),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let t = target.clone();
    let srv = server_with(dir.path(), move |c| {
        c.scrape_configs = vec![ScrapeConfig {
            job_name: "app".into(),
            scrape_interval: Duration::from_millis(300),
            scrape_timeout: Duration::from_millis(250),
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            honor_labels: false,
            static_configs: vec![StaticConfig {
                targets: vec![t],
                labels: [("env".to_string(), "test".to_string())].into(),
            }],
            relabel_configs: vec![],
            metric_relabel_configs: vec![],
        }]
    })
    .await;
    let q = |sql: String| {
        let e = srv.engine.clone();
        async move { e.sql(&sql).await.unwrap() }
    };
    let values = |b: Vec<arrow::record_batch::RecordBatch>| -> Vec<f64> {
        b.iter()
            .flat_map(|b| {
                let v = b.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
                (0..v.len()).map(|i| v.value(i)).collect::<Vec<_>>()
            })
            .collect()
    };
    // Phase 0: wait for two scrapes.
    let mut ok = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = values(
            q(format!(
                "SELECT value FROM metrics WHERE metric_name = 'up' AND labels['instance'] = '{target}' \
                 AND labels['job'] = 'app' AND labels['env'] = 'test'"
            ))
            .await,
        );
        if v.len() >= 2 {
            assert!(v.iter().all(|x| *x == 1.0), "{v:?}");
            ok = true;
            break;
        }
    }
    assert!(ok, "no scrape happened");
    let v = values(
        q("SELECT value FROM metrics WHERE metric_name = 'app_items' AND labels['kind'] = 'a,b' LIMIT 1".into())
            .await,
    );
    assert_eq!(v, vec![7.0]);
    for m in [
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_series_added",
    ] {
        let v = values(
            q(format!(
                "SELECT value FROM metrics WHERE metric_name = '{m}'"
            ))
            .await,
        );
        assert!(!v.is_empty(), "no {m}");
    }
    let scraped = values(
        q("SELECT value FROM metrics WHERE metric_name = 'scrape_samples_scraped'".into()).await,
    );
    assert!(scraped.iter().all(|x| *x == 2.0), "{scraped:?}");

    // Phase 1: series kind="c" disappears -> one staleness marker for it.
    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let c = values(
        q("SELECT value FROM metrics WHERE metric_name = 'app_items' AND labels['kind'] = 'c' ORDER BY timestamp".into())
            .await,
    );
    let last = *c.last().unwrap();
    assert!(
        strata_ingest::model::is_stale_nan(last),
        "last value {last} is not a staleness marker"
    );
    assert_eq!(c.iter().filter(|x| x.is_nan()).count(), 1);

    // Phase 2: the target fails -> up = 0 and the remaining series is marked stale.
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let up = values(
        q("SELECT value FROM metrics WHERE metric_name = 'up' ORDER BY timestamp".into()).await,
    );
    assert_eq!(*up.last().unwrap(), 0.0);
    let ab = values(
        q("SELECT value FROM metrics WHERE metric_name = 'app_items' AND labels['kind'] = 'a,b' ORDER BY timestamp".into())
            .await,
    );
    assert!(strata_ingest::model::is_stale_nan(*ab.last().unwrap()));
    srv.shutdown().await;
}
