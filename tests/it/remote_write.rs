//! Remote write 2.0 beside 1.0 on `/api/v1/write`, and the metadata both carry.

use strata_ingest::receive::remote_write::v2::{
    BucketSpan, Count, Exemplar, Histogram, Metadata, Request, TimeSeries, ZeroCount, encode,
};
use strata_ingest::receive::remote_write::{
    Label, MetricMetadata, PbSample, TimeSeries as V1Series, WriteRequest,
};

use crate::common::{instant_result, now_ms, post_write, server, server_with};

const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// POSTs a body with these headers; returns status, the three `*-Written` headers (None
/// when absent) and the body text.
async fn post(
    addr: std::net::SocketAddr,
    content_type: &str,
    encoding: &str,
    body: Vec<u8>,
) -> (u16, [Option<usize>; 3], String) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Encoding", encoding)
        .header("Content-Type", content_type)
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(body)
        .send()
        .await
        .unwrap();
    let h = |kind: &str| {
        r.headers()
            .get(format!("X-Prometheus-Remote-Write-{kind}-Written"))
            .map(|v| v.to_str().unwrap().parse().unwrap())
    };
    let written = [h("Samples"), h("Histograms"), h("Exemplars")];
    (r.status().as_u16(), written, r.text().await.unwrap())
}

async fn metadata(addr: std::net::SocketAddr, query: &str) -> serde_json::Value {
    let v: serde_json::Value = reqwest::get(format!("http://{addr}/api/v1/metadata{query}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

fn value_of(result: &[serde_json::Value]) -> f64 {
    assert_eq!(result.len(), 1, "{result:?}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn remote_write_2_samples_histograms_metadata_and_written_headers() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let addr = srv.http_addr;
    let t0 = now_ms() - 60_000;
    let symbols = [
        "",
        "__name__",
        "http_requests_total",
        "job",
        "api",
        "Requests served.",
        "rpc_seconds",
        "RPC latency.",
        "seconds",
        "trace_id",
        "abc",
    ];
    let req = Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: vec![
            // A counter with metadata and an exemplar (not stored).
            TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    PbSample {
                        value: 10.0,
                        timestamp: t0,
                    },
                    PbSample {
                        value: 25.0,
                        timestamp: t0 + 15_000,
                    },
                ],
                exemplars: vec![Exemplar {
                    labels_refs: vec![9, 10],
                    value: 0.3,
                    timestamp: t0,
                }],
                metadata: Some(Metadata {
                    r#type: 1,
                    help_ref: 5,
                    unit_ref: 0,
                }),
                ..Default::default()
            },
            // A native histogram at schema 0: buckets (0.5, 1] with 2 and (1, 2] with 2
            // observations, none in the zero bucket (threshold 0).
            TimeSeries {
                labels_refs: vec![1, 6, 3, 4],
                histograms: vec![Histogram {
                    count: Some(Count::CountInt(4)),
                    sum: 5.0,
                    schema: 0,
                    zero_threshold: 0.0,
                    zero_count: Some(ZeroCount::ZeroCountInt(0)),
                    positive_spans: vec![BucketSpan {
                        offset: 0,
                        length: 2,
                    }],
                    positive_deltas: vec![2, 0],
                    timestamp: t0 + 15_000,
                    ..Default::default()
                }],
                metadata: Some(Metadata {
                    r#type: 3,
                    help_ref: 7,
                    unit_ref: 8,
                }),
                ..Default::default()
            },
            // A label reference outside the table: rejected alone.
            TimeSeries {
                labels_refs: vec![1, 42],
                samples: vec![PbSample {
                    value: 1.0,
                    timestamp: t0,
                }],
                ..Default::default()
            },
        ],
    };
    let (status, written, body) = post(addr, V2, "snappy", encode(&req)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("label reference 42 is outside the symbols table"),
        "{body}"
    );
    assert_eq!(written, [Some(2), Some(1), Some(0)]);

    // Without the bad series: 204, everything written.
    let mut good = req.clone();
    good.timeseries.pop();
    for ts in &mut good.timeseries {
        for s in &mut ts.samples {
            s.timestamp += 30_000;
            s.value += 100.0;
        }
        for h in &mut ts.histograms {
            h.timestamp += 30_000;
        }
    }
    let (status, written, body) = post(addr, V2, "snappy", encode(&good)).await;
    assert_eq!(
        (status, written),
        (204, [Some(2), Some(1), Some(0)]),
        "{body}"
    );

    let at = (t0 + 15_000) as f64 / 1000.0;
    let q = |e: &'static str| async move { value_of(&instant_result(addr, e, at).await) };
    assert_eq!(q("http_requests_total{job=\"api\"}").await, 25.0);
    assert_eq!(q("rpc_seconds_count").await, 4.0);
    assert_eq!(q("rpc_seconds_sum").await, 5.0);
    // Classic buckets le=0 (zero bucket): 0, le=1: 2, le=2: 4, +Inf: 4. The 0.75 quantile
    // is rank 3, the middle of (1, 2]: 1.5 by linear interpolation (worked by hand).
    assert_eq!(
        q("histogram_quantile(0.75, rpc_seconds_bucket{job=\"api\"})").await,
        1.5
    );
    assert_eq!(q("rpc_seconds_bucket{le=\"1\"}").await, 2.0);
    assert_eq!(q("rpc_seconds_bucket{le=\"0\"}").await, 0.0);

    // Metadata from 2.0, and from a 1.0 request that carries only metadata.
    let v1 = WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: 2,
            metric_family_name: "room_temp".into(),
            help: "Room temperature.".into(),
            unit: "celsius".into(),
        }],
    };
    let (status, _) = post_write(addr, strata_ingest::receive::remote_write::encode(&v1)).await;
    assert_eq!(status, 204);
    let all = metadata(addr, "").await;
    assert_eq!(
        all,
        serde_json::json!({
            "http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}],
            "rpc_seconds": [{"type": "histogram", "help": "RPC latency.", "unit": "seconds"}],
            "room_temp": [{"type": "gauge", "help": "Room temperature.", "unit": "celsius"}],
        })
    );
    assert_eq!(
        metadata(addr, "?metric=room_temp").await,
        serde_json::json!({"room_temp": [{"type": "gauge", "help": "Room temperature.", "unit": "celsius"}]})
    );
    assert_eq!(
        metadata(addr, "?limit=1").await.as_object().unwrap().len(),
        1
    );
    assert_eq!(metadata(addr, "?limit=0").await, serde_json::json!({}));

    // What is neither 1.0 nor 2.0, or not snappy: 415, naming it.
    let (status, _, body) = post(
        addr,
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        "snappy",
        encode(&good),
    )
    .await;
    assert_eq!(status, 415);
    assert!(body.contains("io.prometheus.write.v3.Request"), "{body}");
    let (status, _, body) = post(addr, V2, "zstd", encode(&good)).await;
    assert_eq!(status, 415);
    assert!(body.contains("zstd"), "{body}");
    // A 2.0 body that is not protobuf: 400, with the headers saying nothing was written.
    let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 16]).unwrap();
    let (status, written, _) = post(addr, V2, "snappy", garbage).await;
    assert_eq!((status, written), (400, [Some(0), Some(0), Some(0)]));

    // Metadata survives a restart (the `metadata` table).
    srv.shutdown().await;
    let srv = server(dir.path()).await;
    assert_eq!(metadata(srv.http_addr, "").await, all);
    srv.shutdown().await;
}

#[tokio::test]
async fn created_timestamps_add_a_zero_sample_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server_with(dir.path(), |c| {
        c.remote_write.created_timestamp_zero_ingestion = true
    })
    .await;
    let addr = srv.http_addr;
    let t0 = now_ms() - 60_000;
    let series = |value: f64, ts: i64| TimeSeries {
        labels_refs: vec![1, 2],
        samples: vec![PbSample {
            value,
            timestamp: ts,
        }],
        created_timestamp: t0,
        ..Default::default()
    };
    let symbols = vec![String::new(), "__name__".into(), "jobs_total".into()];
    let req = |ts| Request {
        symbols: symbols.clone(),
        timeseries: vec![ts],
    };
    // A new counter started at t0 and counted 6 by t0 + 10 s; then 9 at t0 + 20 s.
    let (status, written, _) =
        post(addr, V2, "snappy", encode(&req(series(6.0, t0 + 10_000)))).await;
    assert_eq!((status, written[0]), (204, Some(1)));
    let (status, _, _) = post(addr, V2, "snappy", encode(&req(series(9.0, t0 + 20_000)))).await;
    assert_eq!(status, 204);
    let at = (t0 + 20_000) as f64 / 1000.0;
    // Samples 0 @t0, 6 @t0+10s, 9 @t0+20s: the 30 s window holds all three (without the
    // zero sample: two, and a spread of 3).
    let r = instant_result(addr, "count_over_time(jobs_total[30s])", at).await;
    assert_eq!(value_of(&r), 3.0);
    let r = instant_result(
        addr,
        "max_over_time(jobs_total[30s]) - min_over_time(jobs_total[30s])",
        at,
    )
    .await;
    assert_eq!(value_of(&r), 9.0);
    srv.shutdown().await;
}

/// A 1.0 request sent the way Prometheus 2.x sends it (`application/x-protobuf`, no
/// `proto=`), and with `proto=prometheus.WriteRequest`: both are 1.0.
#[tokio::test]
async fn remote_write_1_content_types_stay_1() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let t = now_ms();
    let body = |v: f64| {
        strata_ingest::receive::remote_write::encode(&WriteRequest {
            timeseries: vec![V1Series {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "one_total".into(),
                }],
                samples: vec![PbSample {
                    value: v,
                    timestamp: t,
                }],
            }],
            metadata: vec![],
        })
    };
    let (status, written, _) =
        post(srv.http_addr, "application/x-protobuf", "snappy", body(1.0)).await;
    assert_eq!((status, written), (204, [None, None, None]));
    let (status, _, _) = post(
        srv.http_addr,
        "application/x-protobuf; proto=prometheus.WriteRequest",
        "snappy",
        body(1.0),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, body) = post(srv.http_addr, "application/json", "snappy", body(1.0)).await;
    assert_eq!(status, 415, "{body}");
    srv.shutdown().await;
}
