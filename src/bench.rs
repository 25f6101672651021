//! `strata bench-load`: a remote-write load generator for TSBS-like `cpu` data (10 fields
//! per host, 7 host tags, 10 s interval), sent to one or more remote-write URLs in turn
//! (Strata, VictoriaMetrics, Prometheus) so their throughputs are measured in one run.

use std::time::Instant;

use futures::StreamExt;
use strata_ingest::remote_write::{Label, PbSample, TimeSeries, WriteRequest, encode};

/// The ten `cpu` fields of TSBS's devops use case.
pub const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// Load shape.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Number of hosts (series = hosts x 10).
    pub hosts: usize,
    /// Number of 10 s intervals of data per series.
    pub intervals: usize,
    /// Series per remote-write request (each with one sample per interval of its batch).
    pub series_per_request: usize,
    /// Intervals per request (samples per series per request).
    pub intervals_per_request: usize,
    /// Start of the data, ms since the epoch (UTC).
    pub start_ms: i64,
}

/// Host tags, TSBS style: 7 tags per host.
fn host_labels(h: usize) -> Vec<(String, String)> {
    let regions = ["us-east-1", "us-west-1", "eu-west-1", "ap-south-1"];
    vec![
        ("hostname".into(), format!("host_{h}")),
        ("region".into(), regions[h % 4].into()),
        (
            "datacenter".into(),
            format!("{}{}", regions[h % 4], ["a", "b", "c"][h % 3]),
        ),
        ("rack".into(), format!("{}", h % 100)),
        (
            "os".into(),
            ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"][h % 3].into(),
        ),
        ("arch".into(), ["x64", "x86"][h % 2].into()),
        ("team".into(), ["SF", "NYC", "LON", "CHI"][h % 4].into()),
    ]
}

/// A deterministic random walk in [0, 100], integral like TSBS's values.
fn value(series: usize, i: usize) -> f64 {
    let x = (series as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 / 6);
    ((x >> 11) % 101) as f64
}

/// Builds the snappy-compressed request bodies and the number of samples they carry.
pub fn payloads(spec: &LoadSpec) -> (Vec<Vec<u8>>, usize) {
    let mut series: Vec<Vec<Label>> = vec![];
    for h in 0..spec.hosts {
        let tags = host_labels(h);
        for f in FIELDS {
            let mut l: Vec<Label> = tags
                .iter()
                .map(|(n, v)| Label {
                    name: n.clone().into(),
                    value: v.clone().into(),
                })
                .collect();
            l.push(Label {
                name: "__name__".into(),
                value: format!("cpu_{f}").into(),
            });
            l.sort_by(|a, b| a.name.cmp(&b.name));
            series.push(l);
        }
    }
    let mut out = vec![];
    let mut n = 0;
    let mut i0 = 0;
    while i0 < spec.intervals {
        let i1 = (i0 + spec.intervals_per_request).min(spec.intervals);
        for chunk in series.chunks(spec.series_per_request) {
            let ts = chunk
                .iter()
                .enumerate()
                .map(|(k, labels)| TimeSeries {
                    labels: labels.clone(),
                    samples: (i0..i1)
                        .map(|i| PbSample {
                            value: value(k, i),
                            timestamp: spec.start_ms + i as i64 * 10_000,
                        })
                        .collect(),
                })
                .collect::<Vec<_>>();
            n += ts.len() * (i1 - i0);
            out.push(encode(&WriteRequest {
                timeseries: ts,
                metadata: vec![],
            }));
        }
        i0 = i1;
    }
    (out, n)
}

/// Sends every payload to `url` with `concurrency` requests in flight; returns the
/// elapsed seconds. Requests are sent in interval order, as a Prometheus shard would.
///
/// # Errors
/// The first non-2xx answer other than 429/503 (retried after `Retry-After`), or a
/// transport error.
pub async fn send_all(url: &str, bodies: &[Vec<u8>], concurrency: usize) -> Result<f64, String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut stream = futures::stream::iter(bodies.iter().cloned())
        .map(|b| {
            let client = client.clone();
            async move {
                loop {
                    let r = client
                        .post(url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(b.clone())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = r.status();
                    if status.is_success() {
                        return Ok(());
                    }
                    // Overload (429/503) is retried after `Retry-After` (default 1 s), as a
                    // Prometheus remote-write shard does; the wait counts in the time.
                    if status.as_u16() == 429 || status.as_u16() == 503 {
                        let wait = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(1);
                        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                        continue;
                    }
                    return Err(format!(
                        "{url}: {status} {}",
                        r.text().await.unwrap_or_default()
                    ));
                }
            }
        })
        .buffer_unordered(concurrency);
    while let Some(r) = stream.next().await {
        r?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One query of the PromQL bench: a range query over the last `range_s` seconds.
#[derive(Debug, Clone)]
pub struct QueryCase {
    /// TSBS-style name.
    pub name: &'static str,
    /// The PromQL query.
    pub query: String,
    /// Range, seconds (ending at the bench's end time).
    pub range_s: i64,
    /// Step, seconds.
    pub step_s: i64,
}

/// The PromQL bench's queries over TSBS cpu data (the devops queries, as the
/// VictoriaMetrics fork of TSBS writes them in PromQL).
pub fn promql_cases() -> Vec<QueryCase> {
    let one = r#"hostname="host_1""#;
    let eight = r#"hostname=~"host_(1|2|3|4|5|6|7|8)""#;
    let c = |name, query: String, range_s, step_s| QueryCase {
        name,
        query,
        range_s,
        step_s,
    };
    vec![
        c(
            "single-groupby-1-1-1",
            format!("max(max_over_time(cpu_usage_user{{{one}}}[1m]))"),
            3600,
            60,
        ),
        c(
            "single-groupby-1-1-12",
            format!("max(max_over_time(cpu_usage_user{{{one}}}[1m]))"),
            12 * 3600,
            60,
        ),
        c(
            "single-groupby-1-8-1",
            format!("max(max_over_time(cpu_usage_user{{{eight}}}[1m]))"),
            3600,
            60,
        ),
        c(
            "single-groupby-1-8-12",
            format!("max(max_over_time(cpu_usage_user{{{eight}}}[1m]))"),
            12 * 3600,
            60,
        ),
        // Per field: label_replace keeps the fields apart (a bare `max_over_time` over
        // several metric names gives equal label sets, which PromQL rejects); the
        // subquery at the data's 10 s resolution reads every sample.
        c(
            "cpu-max-all-8",
            format!(
                r#"max by (field) (max_over_time(label_replace({{__name__=~"cpu_usage_.*",{eight}}}, "field", "$1", "__name__", "cpu_(.*)")[1h:10s]))"#
            ),
            8 * 3600,
            3600,
        ),
        c(
            "double-groupby-1",
            "avg by (hostname) (avg_over_time(cpu_usage_user[1h]))".into(),
            12 * 3600,
            3600,
        ),
        c(
            "double-groupby-all",
            r#"avg by (hostname, field) (avg_over_time(label_replace({__name__=~"cpu_usage_.*"}, "field", "$1", "__name__", "cpu_(.*)")[1h:10s]))"#.into(),
            12 * 3600,
            3600,
        ),
        c(
            "rate-1-host-24h",
            format!("rate(cpu_usage_user{{{one}}}[5m])"),
            24 * 3600,
            60,
        ),
        c(
            "rate-sum-all-1h",
            "sum(rate(cpu_usage_user[5m]))".into(),
            3600,
            60,
        ),
        c(
            "dashboard-24h",
            format!("avg_over_time(cpu_usage_user{{{eight}}}[5m])"),
            24 * 3600,
            300,
        ),
    ]
}

/// Runs `q` against the Prometheus API at each of `bases` (`http://host:port`),
/// interleaved: `warmup` unmeasured rounds, then `repeat` measured ones, each round one
/// request to every base in turn (so that a slow spell of the shared machine, such as
/// another system's background compaction, falls on all of them alike). The range ends
/// at `end_s` (Unix seconds). Returns, per base, the median latency in ms and the number
/// of series in the answer, or the first error.
///
/// # Errors
/// Per base: a non-2xx answer or a transport error.
pub async fn time_queries(
    bases: &[&str],
    q: &QueryCase,
    end_s: i64,
    repeat: usize,
    warmup: usize,
) -> Vec<Result<(f64, usize), String>> {
    let client = reqwest::Client::new();
    let params = [
        ("query", q.query.clone()),
        ("start", (end_s - q.range_s).to_string()),
        ("end", end_s.to_string()),
        ("step", q.step_s.to_string()),
        ("timeout", "60s".to_string()),
    ];
    let mut out: Vec<Result<(Vec<f64>, usize), String>> =
        bases.iter().map(|_| Ok((vec![], 0))).collect();
    for round in 0..warmup + repeat.max(1) {
        for (base, slot) in bases.iter().zip(out.iter_mut()) {
            let Ok((times, series)) = slot else { continue };
            let t = Instant::now();
            let answer = async {
                let r = client
                    .post(format!("{base}/api/v1/query_range"))
                    .form(&params)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status();
                let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{base}: {}: {status} {body}", q.name));
                }
                Ok(body)
            }
            .await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            match answer {
                Ok(body) => {
                    *series = body["data"]["result"]
                        .as_array()
                        .map(|a| a.len())
                        .unwrap_or(0);
                    if round >= warmup {
                        times.push(ms);
                    }
                }
                Err(e) => *slot = Err(e),
            }
        }
    }
    out.into_iter()
        .map(|r| {
            r.map(|(mut times, series)| {
                times.sort_by(|a, b| a.total_cmp(b));
                (times[times.len() / 2], series)
            })
        })
        .collect()
}
