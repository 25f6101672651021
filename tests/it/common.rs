//! Shared helpers: an in-process server on free loopback ports, remote-write requests.

use std::path::Path;

use arrow::array::{Array, Float64Array, Int64Array};
use arrow::record_batch::RecordBatch;
use strata::config::Config;
use strata::server::{Running, start};
use strata_ingest::receive::remote_write::{Label, PbSample, TimeSeries, WriteRequest, encode};

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Starts a server whose data lives in `dir`, on free loopback ports.
pub async fn server(dir: &Path) -> Running {
    server_with(dir, |_| {}).await
}

/// Same, with a config tweak.
pub async fn server_with(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Running {
    let mut cfg = Config {
        data_dir: dir.to_string_lossy().into_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        flight_addr: "127.0.0.1:0".parse().unwrap(),
        otlp: strata_ingest::receive::otlp::OtlpConfig {
            grpc_addr: "127.0.0.1:0".into(),
            ..Default::default()
        },
        statsd: strata::config::StatsdConfig {
            addr: "127.0.0.1:0".into(),
            ..Default::default()
        },
        ..Config::default()
    };
    tweak(&mut cfg);
    start(cfg).await.expect("server starts")
}

/// One series for [`request`]: its label pairs and its (timestamp ms, value) samples.
pub type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

/// A remote-write request with one series per entry.
pub fn request(series: &[TestSeries<'_>]) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.to_string().into(),
                        value: v.to_string().into(),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|&(t, v)| PbSample {
                        value: v,
                        timestamp: t,
                    })
                    .collect(),
            })
            .collect(),
        metadata: vec![],
    })
}

/// POSTs a remote-write body; returns status and body text.
pub async fn post_write(addr: std::net::SocketAddr, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("request sent");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Rows of (timestamp ms, value) from a query selecting `timestamp_ms, value`.
pub fn ts_values(batches: &[RecordBatch]) -> Vec<(i64, f64)> {
    let mut out = vec![];
    for b in batches {
        let t = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let v = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((t.value(i), if v.is_null(i) { f64::NAN } else { v.value(i) }));
        }
    }
    out
}

/// The single i64 of a one-row, one-column result.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    b.column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("an i64 column")
        .value(0)
}

/// The (timestamp ms, value) samples of metric `name` in the `samples` table, by time.
pub async fn samples_of(engine: &strata_engine::Engine, name: &str) -> Vec<(i64, f64)> {
    ts_values(
        &engine
            .sql(&format!(
                "SELECT CAST(timestamp AS BIGINT) / 1000 AS t, value FROM samples \
                 WHERE metric_name = '{name}' ORDER BY t"
            ))
            .await
            .unwrap(),
    )
}

/// The `result` of the instant query `q` at `time_s` (Unix seconds) through
/// `GET /api/v1/query`, asserting that it succeeded.
pub async fn instant_result(
    addr: std::net::SocketAddr,
    q: &str,
    time_s: impl std::fmt::Display,
) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/query"))
        .query(&[("query", q), ("time", &time_s.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().unwrap().clone()
}

/// The text of `GET /metrics`.
pub async fn metrics_text(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET url`'s JSON body.
pub async fn get_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// A free loopback port (free when asked; another process may take it later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
