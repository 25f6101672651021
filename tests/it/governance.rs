//! Write-path governance: relabeling of pushed and scraped series, cardinality limits, and
//! `/api/v1/status/tsdb`.

use std::time::Duration;

use axum::routing::get;
use strata_ingest::policy::relabel::RelabelConfig;
use strata_ingest::receive::scrape::{ScrapeConfig, StaticConfig};

use crate::common::*;

fn relabel(yaml: &str) -> Vec<RelabelConfig> {
    yaml_serde::from_str(yaml).unwrap()
}

/// `(labels, value)` of each series `q` selects now, labels as sorted `name=value`.
async fn series_now(addr: std::net::SocketAddr, q: &str) -> Vec<(Vec<String>, f64)> {
    let now = now_ms() as f64 / 1000.0;
    let mut out: Vec<(Vec<String>, f64)> = instant_result(addr, q, now)
        .await
        .iter()
        .map(|r| {
            let mut l: Vec<String> = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(n, v)| format!("{n}={}", v.as_str().unwrap()))
                .collect();
            l.sort();
            (l, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn metric_value(addr: std::net::SocketAddr, line_prefix: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One server with top-level `metric_relabel_configs` and cardinality limits: what a
/// remote-write client sends is relabeled, refused past the limits with the label named,
/// and counted; `/api/v1/status/tsdb` counts what the head holds.
#[tokio::test]
async fn pushed_series_are_relabeled_limited_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.metric_relabel_configs = relabel(
            r#"
- source_labels: [__name__]
  regex: debug_.*
  action: drop
- source_labels: [environment]
  target_label: env
- regex: environment
  action: labeldrop
- source_labels: [host]
  target_label: shard
  modulus: 1000
  action: hashmod
- source_labels: [region]
  target_label: region
  action: uppercase
"#,
        );
        c.cardinality.max_label_values_per_metric = 3;
        c.cardinality.overrides = vec![strata_ingest::policy::cardinality::MetricLimits {
            metric: "jobs".into(),
            max_series: Some(2),
            max_label_values: None,
        }];
    })
    .await;
    let addr = srv.http_addr;
    let t = now_ms() - 1000;
    let (status, body) = post_write(
        addr,
        request(&[
            (
                &[
                    ("__name__", "temp"),
                    ("environment", "prod"),
                    ("host", "baz"),
                    ("region", "eu"),
                ],
                &[(t, 21.5)],
            ),
            (
                &[("__name__", "debug_info"), ("x", "1")],
                &[(t, 1.0), (t + 1, 2.0)],
            ),
        ]),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    // `environment` became `env`; hashmod of "baz" modulo 1000 is 976 (Prometheus's own
    // test value); `eu` upper-cased; debug_info dropped.
    assert_eq!(
        series_now(addr, "temp").await,
        [(
            vec![
                "__name__=temp".to_string(),
                "env=prod".into(),
                "host=baz".into(),
                "region=EU".into(),
                "shard=976".into()
            ],
            21.5
        )]
    );
    assert!(series_now(addr, "debug_info").await.is_empty());
    assert_eq!(
        metric_value(addr, "strata_samples_dropped_total{reason=\"relabel\"}").await,
        Some(2.0)
    );

    // Three request ids are admitted; the fourth is refused, naming the label; the other
    // series of the request are written.
    let rid = |id: &'static str| -> [(&'static str, &'static str); 2] {
        [("__name__", "http_hits"), ("request_id", id)]
    };
    let (a, b, c, d) = (rid("a"), rid("b"), rid("c"), rid("d"));
    let (status, body) = post_write(
        addr,
        request(&[(&a, &[(t, 1.0)]), (&b, &[(t, 1.0)]), (&c, &[(t, 1.0)])]),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = post_write(
        addr,
        request(&[(&d, &[(t, 1.0)]), (&[("__name__", "other")], &[(t, 5.0)])]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("label \"request_id\" of metric http_hits already has 3 distinct values")
            && body.contains("request_id=\"d\""),
        "{body}"
    );
    assert_eq!(series_now(addr, "other").await.len(), 1);
    // Samples of admitted series are never refused.
    let (status, body) = post_write(addr, request(&[(&a, &[(t + 500, 2.0)])])).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(series_now(addr, "count(http_hits)").await[0].1, 3.0);
    assert_eq!(
        metric_value(
            addr,
            "strata_samples_rejected_total{reason=\"label_values_limit\"}"
        )
        .await,
        Some(1.0)
    );
    // The override: at most two series of `jobs`.
    let jobs =
        |k: &'static str| -> [(&'static str, &'static str); 2] { [("__name__", "jobs"), ("k", k)] };
    let (j1, j2, j3) = (jobs("1"), jobs("2"), jobs("3"));
    let (status, body) = post_write(
        addr,
        request(&[(&j1, &[(t, 1.0)]), (&j2, &[(t, 1.0)]), (&j3, &[(t, 1.0)])]),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("a new series of jobs would exceed 2 active series of this metric"),
        "{body}"
    );

    // /api/v1/status/tsdb: the head holds temp (1 series), http_hits (3), other (1),
    // jobs (2): 7 series.
    let v: serde_json::Value = reqwest::get(format!("http://{addr}/api/v1/status/tsdb?limit=2"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    let d = &v["data"];
    assert_eq!(d["headStats"]["numSeries"], 7);
    assert_eq!(
        d["seriesCountByMetricName"],
        serde_json::json!([{"name": "http_hits", "value": 3}, {"name": "jobs", "value": 2}])
    );
    // __name__ has 4 values; request_id 3 (shard, k: 2).
    assert_eq!(
        d["labelValueCountByLabelName"],
        serde_json::json!([{"name": "__name__", "value": 4}, {"name": "request_id", "value": 3}])
    );
    // hashmod set `shard` on every series, host or not: 958 is MD5("") modulo 1000, on
    // all six series without a host.
    assert_eq!(
        d["seriesCountByLabelValuePair"],
        serde_json::json!([{"name": "shard=958", "value": 6}, {"name": "__name__=http_hits", "value": 3}])
    );
    // __name__'s values: temp, http_hits, other, jobs: 4 + 9 + 5 + 4 bytes.
    assert_eq!(
        d["memoryInBytesByLabelName"][0],
        serde_json::json!({"name": "__name__", "value": 22})
    );
    let r = reqwest::get(format!("http://{addr}/api/v1/status/tsdb?limit=0"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    srv.shutdown().await;
}

/// A scrape job's `relabel_configs` choose the path and add a label; its
/// `metric_relabel_configs` drop a family and rename another; a target dropped by relabeling
/// is not scraped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_relabeling_shapes_targets_and_series() {
    let app = axum::Router::new().route(
        "/custom",
        get(|| async { "# TYPE keep_me gauge\nkeep_me 1\n# TYPE go_gc gauge\ngo_gc 2\n# TYPE old_name gauge\nold_name 3\n" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let t = target.clone();
    let srv = server_with(dir.path(), move |c| {
        c.scrape_configs = vec![ScrapeConfig {
            job_name: "app".into(),
            scrape_interval: Duration::from_millis(200),
            scrape_timeout: Duration::from_millis(150),
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            honor_labels: false,
            static_configs: vec![StaticConfig {
                // The second target is dropped by relabeling (it would fail to scrape).
                targets: vec![t, "127.0.0.1:1".into()],
                labels: Default::default(),
            }],
            relabel_configs: relabel(
                r#"
- source_labels: [__address__]
  regex: 127.0.0.1:1
  action: drop
- target_label: __metrics_path__
  replacement: /custom
- source_labels: [__scrape_interval__]
  target_label: interval
"#,
            ),
            metric_relabel_configs: relabel(
                r#"
- source_labels: [__name__]
  regex: go_.*
  action: drop
- source_labels: [__name__]
  regex: old_(.*)
  target_label: __name__
  replacement: new_$1
"#,
            ),
        }]
    })
    .await;
    let addr = srv.http_addr;
    let mut got = vec![];
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = series_now(addr, "{job=\"app\"}").await;
        if got
            .iter()
            .any(|(l, _)| l.contains(&"__name__=scrape_samples_post_metric_relabeling".to_string()))
        {
            break;
        }
    }
    let names: Vec<&str> = got
        .iter()
        .map(|(l, _)| l[0].trim_start_matches("__name__="))
        .collect();
    assert_eq!(
        names,
        [
            "keep_me",
            "new_name",
            "scrape_duration_seconds",
            "scrape_samples_post_metric_relabeling",
            "scrape_samples_scraped",
            "scrape_series_added",
            "up"
        ],
        "{got:?}"
    );
    let (labels, _) = &got[0];
    assert_eq!(
        labels,
        &vec![
            "__name__=keep_me".to_string(),
            format!("instance={target}"),
            "interval=200ms".into(),
            "job=app".into()
        ]
    );
    let value = |name: &str| {
        got.iter()
            .find(|(l, _)| l[0] == format!("__name__={name}"))
            .unwrap()
            .1
    };
    assert_eq!(value("scrape_samples_scraped"), 3.0);
    assert_eq!(value("scrape_samples_post_metric_relabeling"), 2.0);
    // Only one target: no `up` of the dropped one.
    assert_eq!(series_now(addr, "up{job=\"app\"}").await.len(), 1);
    // The target's `# TYPE` lines are its families' metadata (as Prometheus serves its
    // targets'), relabeled-away families included.
    let m: serde_json::Value = reqwest::get(format!("http://{addr}/api/v1/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["data"]["keep_me"],
        serde_json::json!([{"type": "gauge", "help": "", "unit": ""}])
    );
    assert_eq!(m["data"]["go_gc"][0]["type"], "gauge");
    srv.shutdown().await;
}
/// Sampling through the server: a rate limit of one sample per 10 s keeps every tenth of a
/// series' per-second samples; OTLP delta points sampled with p = 0.5 carry weight 2, so the
/// running total estimates the true total (400) within 4 standard errors
/// (sqrt(400 x (1 - p) / p) = 20), while about half the points are kept.
#[tokio::test]
async fn sampling_policies_limit_and_keep_delta_totals_unbiased() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric, number_data_point,
    };
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.sampling = yaml_serde::from_str(
            r#"
seed: 42
policies:
- regex: limited_.*
  policy: rate_limit
  max_samples_per_second: 0.1
- regex: jobs_done.*
  policy: probabilistic
  probability: 0.5
"#,
        )
        .unwrap();
    })
    .await;
    let addr = srv.http_addr;
    // On a 10 s boundary: the rate limit's slots of 10 s are aligned to the epoch.
    let t0 = (now_ms() - 600_000) / 10_000 * 10_000;
    let samples: Vec<(i64, f64)> = (0..100).map(|i| (t0 + i * 1000, i as f64)).collect();
    let (status, body) = post_write(
        addr,
        request(&[(&[("__name__", "limited_gauge")], &samples)]),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let at = (t0 + 100_000) as f64 / 1000.0;
    let r = instant_result(addr, "count_over_time(limited_gauge[2m])", at).await;
    assert_eq!(r[0]["value"][1], "10");
    let r = instant_result(addr, "max_over_time(limited_gauge[2m])", at).await;
    assert_eq!(r[0]["value"][1], "90", "samples at 0, 10, ..., 90 s kept");

    let points: Vec<NumberDataPoint> = (0..400u64)
        .map(|i| NumberDataPoint {
            start_time_unix_nano: (t0 as u64 + i * 1000) * 1_000_000,
            time_unix_nano: (t0 as u64 + (i + 1) * 1000) * 1_000_000,
            value: Some(number_data_point::Value::AsInt(1)),
            ..Default::default()
        })
        .collect();
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "jobs_done".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/metrics"))
        .header("Content-Type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let at = (t0 + 401_000) as f64 / 1000.0;
    let total: f64 =
        instant_result(addr, "last_over_time(jobs_done_total[10m])", at).await[0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    assert!(
        (total - 400.0).abs() < 4.0 * 20.0,
        "estimated total {total}"
    );
    assert_eq!(total % 2.0, 0.0, "each kept point counts 2");
    let kept: f64 =
        instant_result(addr, "count_over_time(jobs_done_total[10m])", at).await[0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    // Binomial(400, 0.5): standard deviation 10.
    assert!((kept - 200.0).abs() < 40.0, "kept {kept}");
    let dropped = metric_value(
        addr,
        "strata_samples_dropped_total{reason=\"sampling_probabilistic\"}",
    )
    .await
    .unwrap();
    assert_eq!(dropped + kept, 400.0);
    assert_eq!(
        metric_value(
            addr,
            "strata_samples_dropped_total{reason=\"sampling_rate_limit\"}"
        )
        .await,
        Some(90.0)
    );
    srv.shutdown().await;
}

/// The adaptive policy under a synthetic overload: an ingester whose head is over its
/// persist threshold (no persistence running) tightens each second, keeps fewer samples,
/// and returns to full once a persist empties the head.
#[tokio::test]
async fn adaptive_sampling_tightens_under_overload_and_recovers() {
    use strata_ingest::receive::remote_write::Validated;
    let dir = tempfile::tempdir().unwrap();
    let ingester = strata_ingest::Ingester::open(
        strata_ingest::storage::DataDir::Local(dir.path().join("data")),
        &dir.path().join("wal"),
        strata_ingest::Limits::default(),
        strata_ingest::PersistConfig {
            max_head_samples: 1000,
            ..Default::default()
        },
        strata_ingest::metrics::IngestMetrics::new(),
    )
    .await
    .unwrap();
    ingester.set_sampling(
        &yaml_serde::from_str("seed: 3\npolicies:\n- policy: adaptive\n  min_probability: 0.05\n")
            .unwrap(),
    );
    let t0 = now_ms() - 60_000;
    let mut next = 0i64;
    let mut write = |n: i64| {
        let mut v = Validated::default();
        let samples = (next..next + n)
            .map(|i| strata_ingest::Sample {
                timestamp_ms: t0 + i,
                value: 1.0,
            })
            .collect();
        next += n;
        v.push(
            &[("__name__".to_string(), "load".to_string())],
            samples,
            &strata_ingest::Limits::default(),
            now_ms(),
        );
        v
    };
    // Healthy: everything kept, up to 1,200 samples (over the threshold of 1,000).
    let out = ingester.write(write(600), "test", None).await.unwrap();
    assert_eq!(out.accepted, 600);
    let out = ingester.write(write(600), "test", None).await.unwrap();
    assert_eq!(out.accepted, 600);
    // Behind for 2 s: the probability is about 1/4; a write of 400 keeps about 100.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = ingester.write(write(400), "test", None).await.unwrap();
    let p = ingester.sampler().adaptive_probability();
    assert!((0.2..0.3).contains(&p), "{p}");
    // Binomial(400, ~0.25): sd ~9.
    assert!((50..150).contains(&out.accepted), "{}", out.accepted);
    assert_eq!(ingester.metrics().sampling_adaptive_probability.get(), p);
    // A persist empties the head: 3 s later (more than the 2 s behind) the probability is
    // back at 1.
    ingester.persist().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = ingester.write(write(400), "test", None).await.unwrap();
    assert_eq!(out.accepted, 400);
    assert_eq!(ingester.sampler().adaptive_probability(), 1.0);
}
