//! `strata bench-load`: a remote-write load generator for TSBS-like `cpu` data (10 fields
//! per host, 7 host tags, 10 s interval) plus a classic histogram on the first 50 hosts
//! (`http_request_duration_seconds`), sent to one or more remote-write URLs in turn
//! (Strata, VictoriaMetrics, Prometheus) so their throughputs are measured in one run;
//! `strata bench-promql`'s queries over that data.

use std::time::Instant;

use futures::StreamExt;
use strata_ingest::receive::remote_write::{Label, PbSample, TimeSeries, WriteRequest, encode};

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

/// Name of the classic histogram the first [`HISTOGRAM_HOSTS`] hosts carry (series `<name>_bucket`, `_sum` in
/// seconds, `_count`), labelled `hostname` and `region` (and `le` for the buckets).
pub const HISTOGRAM: &str = "http_request_duration_seconds";

/// Upper bounds of the histogram's buckets (`le` label values, seconds), written as
/// Prometheus client libraries write them; the last is `+Inf`.
pub const HISTOGRAM_LE: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// Hosts (the first ones) that carry the histogram: enough for per-region quantiles,
/// few enough that the load stays the `cpu` data it was (50 x 14 more series).
pub const HISTOGRAM_HOSTS: usize = 50;

/// Series of a load of `hosts` hosts: ten `cpu` fields per host, and the histogram's 12
/// buckets, `_sum` and `_count` on the first `histogram_hosts` (by default
/// [`HISTOGRAM_HOSTS`]).
pub fn series_count(hosts: usize, histogram_hosts: usize) -> usize {
    hosts * FIELDS.len() + hosts.min(histogram_hosts) * (HISTOGRAM_LE.len() + 2)
}

/// The value, seconds, at which `_sum` counts each observation of a bin (the observations
/// above the previous bucket's bound and at most this bucket's): the bin's midpoint, and
/// 15 s for the bin above 10 s.
const BIN_VALUE_S: [f64; 12] = [
    0.0025, 0.0075, 0.0175, 0.0375, 0.075, 0.175, 0.375, 0.75, 1.75, 3.75, 7.5, 15.0,
];

/// Base weight of each bin: observations per 10 s interval per step of the sawtooth (most
/// requests take 50 ms to 500 ms, about 1% over 5 s); each host adds 0 to 2 to each bin.
const BIN_WEIGHT: [u64; 12] = [10, 10, 20, 40, 60, 80, 60, 30, 20, 10, 2, 1];

/// Period of the histogram's per-bin sawtooth, 10 s intervals (1 h): the bins peak at
/// different times of the hour, so the quantiles move.
const HIST_PERIOD: u64 = 360;

/// Load shape.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Number of hosts (series: [`series_count`]).
    pub hosts: usize,
    /// Number of intervals of data per series.
    pub intervals: usize,
    /// Series per remote-write request (each with one sample per interval of its batch).
    pub series_per_request: usize,
    /// Intervals per request (samples per series per request).
    pub intervals_per_request: usize,
    /// Start of the data, ms since the epoch (UTC).
    pub start_ms: i64,
    /// Time between a series' samples, ms (10,000 in the dashboards bench; 300,000 in the
    /// long-range one).
    pub interval_ms: i64,
    /// Hosts (the first ones) carrying the histogram (default [`HISTOGRAM_HOSTS`]).
    pub histogram_hosts: usize,
}

impl LoadSpec {
    /// The time of interval `i`, ms since the epoch (UTC).
    pub fn time_ms(&self, i: usize) -> i64 {
        self.start_ms + i as i64 * self.interval_ms
    }
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

/// Observations of `host`'s histogram in bin `b` (see [`BIN_VALUE_S`]) from interval 0 up
/// to and including interval `i`: per interval, the bin's weight times a sawtooth
/// `1 + (t + phase) % HIST_PERIOD`, summed in closed form. Deterministic, and
/// non-decreasing in `i` (a counter without resets).
fn bin_count(host: usize, b: usize, i: usize) -> u64 {
    let x = ((host * HISTOGRAM_LE.len() + b) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    let weight = BIN_WEIGHT[b] + x % 3;
    let phase = (x / 3) % HIST_PERIOD;
    // The sum of `u % HIST_PERIOD` over `u` in `0..m`.
    let saw = |m: u64| {
        let r = m % HIST_PERIOD;
        m / HIST_PERIOD * (HIST_PERIOD * (HIST_PERIOD - 1) / 2) + r * r.saturating_sub(1) / 2
    };
    let n = i as u64 + 1;
    weight * (n + saw(phase + n) - saw(phase))
}

/// What a generated series carries.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A `cpu` field: [`value`] of the series' place in its request.
    Cpu,
    /// A host's histogram bucket `le = HISTOGRAM_LE[le]` (cumulative over the bins).
    Bucket { host: usize, le: usize },
    /// A host's histogram `_sum`, seconds.
    Sum { host: usize },
    /// A host's histogram `_count` (equal to its `+Inf` bucket).
    Count { host: usize },
}

impl Source {
    /// The value at interval `i` of a series at place `k` of its request.
    fn value(self, k: usize, i: usize) -> f64 {
        match self {
            Source::Cpu => value(k, i),
            Source::Bucket { host, le } => {
                (0..=le).map(|b| bin_count(host, b, i)).sum::<u64>() as f64
            }
            Source::Sum { host } => BIN_VALUE_S
                .iter()
                .enumerate()
                .map(|(b, v)| bin_count(host, b, i) as f64 * v)
                .sum::<f64>(),
            Source::Count { host } => (0..HISTOGRAM_LE.len())
                .map(|b| bin_count(host, b, i))
                .sum::<u64>() as f64,
        }
    }
}

/// Builds the snappy-compressed request bodies and the number of samples they carry. The
/// `cpu` series come first, with the values they had before the histogram was added (and
/// the same requests when hosts x 10 is a multiple of `series_per_request`), then every
/// host's histogram series.
pub fn payloads(spec: &LoadSpec) -> (Vec<Vec<u8>>, usize) {
    // A series' labels: `tags`, its name, and `le` for a bucket, sorted by name.
    let series_labels = |tags: &[(String, String)], name: String, le: Option<&str>| {
        let mut l: Vec<Label> = tags
            .iter()
            .map(|(n, v)| Label {
                name: n.clone().into(),
                value: v.clone().into(),
            })
            .collect();
        l.push(Label {
            name: "__name__".into(),
            value: name.into(),
        });
        if let Some(le) = le {
            l.push(Label {
                name: "le".into(),
                value: le.to_string().into(),
            });
        }
        l.sort_by(|a, b| a.name.cmp(&b.name));
        l
    };
    let mut series: Vec<(Vec<Label>, Source)> = vec![];
    for h in 0..spec.hosts {
        let tags = host_labels(h);
        for f in FIELDS {
            series.push((series_labels(&tags, format!("cpu_{f}"), None), Source::Cpu));
        }
    }
    for h in 0..spec.hosts.min(spec.histogram_hosts) {
        let all_tags = host_labels(h);
        // hostname and region.
        let tags = &all_tags[..2];
        let labels = |name: String, le: Option<&str>| series_labels(tags, name, le);
        for (le, &bound) in HISTOGRAM_LE.iter().enumerate() {
            series.push((
                labels(format!("{HISTOGRAM}_bucket"), Some(bound)),
                Source::Bucket { host: h, le },
            ));
        }
        series.push((
            labels(format!("{HISTOGRAM}_sum"), None),
            Source::Sum { host: h },
        ));
        series.push((
            labels(format!("{HISTOGRAM}_count"), None),
            Source::Count { host: h },
        ));
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
                .map(|(k, (labels, source))| TimeSeries {
                    labels: labels.clone(),
                    samples: (i0..i1)
                        .map(|i| PbSample {
                            value: source.value(k, i),
                            timestamp: spec.time_ms(i),
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

/// The protocol a load is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Prometheus remote write 1.0 (snappy protobuf): [`payloads`].
    RemoteWrite,
    /// InfluxDB line protocol, nanosecond timestamps, uncompressed: [`influx_payloads`]
    /// (the `cpu` series only).
    Influx,
    /// OTLP metrics, uncompressed protobuf, to `/v1/metrics`: [`otlp_payloads`] (the `cpu`
    /// series only).
    Otlp,
    /// Prometheus remote write 2.0 (snappy protobuf, a symbols table per request):
    /// [`remote_write2_payloads`].
    RemoteWrite2,
    /// The JSON push API (`/api/v1/metrics`): [`json_payloads`] (the `cpu` series only).
    Json,
}

impl Protocol {
    /// The request bodies of the load `spec` in this protocol and the samples they carry.
    pub fn payloads(self, spec: &LoadSpec) -> (Vec<Vec<u8>>, usize) {
        match self {
            Protocol::RemoteWrite => payloads(spec),
            Protocol::Influx => influx_payloads(spec),
            Protocol::Otlp => otlp_payloads(spec),
            Protocol::RemoteWrite2 => remote_write2_payloads(spec),
            Protocol::Json => json_payloads(spec),
        }
    }

    /// The series the load `spec` writes in this protocol.
    pub fn series(self, spec: &LoadSpec) -> usize {
        match self {
            Protocol::RemoteWrite | Protocol::RemoteWrite2 => {
                series_count(spec.hosts, spec.histogram_hosts)
            }
            Protocol::Influx | Protocol::Otlp | Protocol::Json => series_count(spec.hosts, 0),
        }
    }

    /// How the bodies are encoded.
    pub fn encoding(self) -> &'static str {
        match self {
            Protocol::RemoteWrite | Protocol::RemoteWrite2 => "snappy",
            Protocol::Influx => "text",
            Protocol::Otlp => "protobuf",
            Protocol::Json => "JSON",
        }
    }

    /// A POST of a body in this protocol to `url`, with the protocol's headers.
    fn post(self, client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        match self {
            Protocol::RemoteWrite => client
                .post(url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
            Protocol::Influx => client
                .post(url)
                .header("Content-Type", "text/plain; charset=utf-8"),
            Protocol::Otlp => client
                .post(url)
                .header("Content-Type", "application/x-protobuf"),
            Protocol::RemoteWrite2 => client
                .post(url)
                .header("Content-Encoding", "snappy")
                .header(
                    "Content-Type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                )
                .header("X-Prometheus-Remote-Write-Version", "2.0.0"),
            Protocol::Json => client.post(url).header("Content-Type", "application/json"),
        }
    }
}

/// The requests of the `cpu`-only loads (line protocol, OTLP), in send order: `(intervals,
/// hosts)` of each, `series_per_request / 10` hosts by `intervals_per_request` intervals
/// (the samples of a remote-write request), interval batches in time order.
fn cpu_requests(
    spec: &LoadSpec,
) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> + '_ {
    let hosts_per_request = (spec.series_per_request / FIELDS.len()).max(1);
    (0..spec.intervals)
        .step_by(spec.intervals_per_request.max(1))
        .flat_map(move |i0| {
            let i1 = (i0 + spec.intervals_per_request).min(spec.intervals);
            (0..spec.hosts)
                .step_by(hosts_per_request)
                .map(move |h0| (i0..i1, h0..(h0 + hosts_per_request).min(spec.hosts)))
        })
}

/// The load's `cpu` data as InfluxDB line protocol, as TSBS writes it for InfluxDB: one
/// line per host and interval, measurement `cpu` with the host's tags and the ten
/// fields (so the series are named `cpu_usage_user`... as in [`payloads`], with values
/// from the same random walks); timestamps in ns. A request holds
/// `series_per_request / 10` hosts by `intervals_per_request` intervals, the samples of a
/// remote-write request. The histogram is not in it (line protocol has no histograms).
/// Returns the bodies and the number of samples they carry.
pub fn influx_payloads(spec: &LoadSpec) -> (Vec<Vec<u8>>, usize) {
    use std::fmt::Write;
    let tags: Vec<String> = (0..spec.hosts)
        .map(|h| {
            let mut t = host_labels(h);
            t.sort();
            t.iter().map(|(n, v)| format!(",{n}={v}")).collect()
        })
        .collect();
    let (mut out, mut n) = (vec![], 0);
    for (intervals, hosts) in cpu_requests(spec) {
        let mut body = String::new();
        for h in hosts {
            for i in intervals.clone() {
                body.push_str("cpu");
                body.push_str(&tags[h]);
                for (f, name) in FIELDS.iter().enumerate() {
                    let sep = if f == 0 { ' ' } else { ',' };
                    let _ = write!(body, "{sep}{name}={}", value(h * FIELDS.len() + f, i));
                }
                let t_ns = spec.time_ms(i) * 1_000_000;
                let _ = writeln!(body, " {t_ns}");
                n += FIELDS.len();
            }
        }
        out.push(body.into_bytes());
    }
    (out, n)
}

/// The load's `cpu` data as OTLP metrics (`ExportMetricsServiceRequest`, protobuf), as an
/// OpenTelemetry SDK or collector sends gauges: one metric per field (`cpu_usage_user`...,
/// names that translate to themselves), one data point per host and interval with the
/// host's labels as attributes (so the series are those of [`payloads`], with the same
/// values); a request holds the samples of a remote-write request. Returns the bodies and
/// the number of samples they carry.
pub fn otlp_payloads(spec: &LoadSpec) -> (Vec<Vec<u8>>, usize) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use prost::Message;
    let attrs: Vec<Vec<KeyValue>> = (0..spec.hosts)
        .map(|h| {
            host_labels(h)
                .into_iter()
                .map(|(k, v)| KeyValue {
                    key: k,
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v)),
                    }),
                    ..Default::default()
                })
                .collect()
        })
        .collect();
    let (mut out, mut n) = (vec![], 0);
    for (intervals, hosts) in cpu_requests(spec) {
        let metrics: Vec<Metric> = FIELDS
            .iter()
            .enumerate()
            .map(|(f, name)| {
                let mut data_points = vec![];
                for h in hosts.clone() {
                    for i in intervals.clone() {
                        let t_ns = spec.time_ms(i) * 1_000_000;
                        let v = value(h * FIELDS.len() + f, i);
                        data_points.push(NumberDataPoint {
                            attributes: attrs[h].clone(),
                            time_unix_nano: t_ns as u64,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        });
                    }
                }
                n += data_points.len();
                Metric {
                    name: format!("cpu_{name}"),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }
            })
            .collect();
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        out.push(req.encode_to_vec());
    }
    (out, n)
}

/// The load of [`payloads`] as remote write 2.0 (`io.prometheus.write.v2.Request`,
/// snappy), as a Prometheus 3 shard sends it: the same series and samples per request, each
/// label name and value a reference into the request's symbols table. Returns the bodies
/// and the number of samples they carry.
pub fn remote_write2_payloads(spec: &LoadSpec) -> (Vec<Vec<u8>>, usize) {
    use prost::Message;
    use strata_ingest::receive::remote_write::v2;
    let (bodies, n) = payloads(spec);
    let out = bodies
        .into_iter()
        .map(|body| {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("a payload of this module");
            let req = WriteRequest::decode(raw.as_slice()).expect("a payload of this module");
            let mut symbols = vec![String::new()];
            let mut index: std::collections::HashMap<bytes::Bytes, u32> = Default::default();
            let mut sym = |b: &bytes::Bytes| {
                *index.entry(b.clone()).or_insert_with(|| {
                    symbols.push(String::from_utf8_lossy(b).into_owned());
                    (symbols.len() - 1) as u32
                })
            };
            let timeseries = req
                .timeseries
                .into_iter()
                .map(|t| v2::TimeSeries {
                    labels_refs: t
                        .labels
                        .iter()
                        .flat_map(|l| [sym(&l.name), sym(&l.value)])
                        .collect(),
                    samples: t.samples,
                    ..Default::default()
                })
                .collect();
            v2::encode(&v2::Request {
                symbols,
                timeseries,
            })
        })
        .collect();
    (out, n)
}

/// The load's `cpu` data as the JSON push API takes it: one `{"metric", "tags",
/// "timestamp", "value"}` object per host, field and interval (the series of [`payloads`],
/// with the same values; timestamps in s); a request holds the samples of a remote-write
/// request. Returns the bodies and the number of samples they carry.
pub fn json_payloads(spec: &LoadSpec) -> (Vec<Vec<u8>>, usize) {
    let tags: Vec<serde_json::Map<String, serde_json::Value>> = (0..spec.hosts)
        .map(|h| {
            host_labels(h)
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect()
        })
        .collect();
    let (mut out, mut n) = (vec![], 0);
    for (intervals, hosts) in cpu_requests(spec) {
        let mut points = vec![];
        for h in hosts {
            for i in intervals.clone() {
                for (f, name) in FIELDS.iter().enumerate() {
                    points.push(serde_json::json!({
                        "metric": format!("cpu_{name}"),
                        "tags": tags[h],
                        "timestamp": spec.time_ms(i) as f64 / 1000.0,
                        "value": value(h * FIELDS.len() + f, i),
                    }));
                }
            }
        }
        n += points.len();
        out.push(serde_json::to_vec(&points).expect("JSON of plain values"));
    }
    (out, n)
}

/// Sends every payload to `url` in `protocol` with `concurrency` requests in flight;
/// returns the elapsed seconds. Requests are sent in interval order, as a Prometheus
/// shard would.
///
/// # Errors
/// The first non-2xx answer other than 429/503 (retried after `Retry-After`), or a
/// transport error.
pub async fn send_all(
    url: &str,
    protocol: Protocol,
    bodies: &[Vec<u8>],
    concurrency: usize,
) -> Result<f64, String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut stream = futures::stream::iter(bodies.iter().cloned())
        .map(|b| {
            let client = client.clone();
            async move {
                loop {
                    let r = protocol
                        .post(&client, url)
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
    /// Name: TSBS's for the first ten cases; then kebab-case
    /// `<class>-<hosts>-<range>` (hosts 1, 8 or `all`; range 1h, 24h or 7d), and
    /// `<op>-chain-<n>` for the chains of set and arithmetic operators; `<fn>-<range>`
    /// and `sum-<fn>-<range>` in the long-range bench.
    pub name: String,
    /// The PromQL query.
    pub query: String,
    /// Range, seconds (ending at the bench's end time).
    pub range_s: i64,
    /// Step, seconds.
    pub step_s: i64,
}

/// The PromQL bench's queries over the data of [`payloads`]: first the TSBS devops
/// queries (as the VictoriaMetrics fork of TSBS writes them in PromQL), then one or more
/// per operator and function class, each answerable alike by Strata, VictoriaMetrics and
/// Prometheus 2.42 (classic histograms only) and each answer small (8 hosts, or an
/// aggregation over all hosts). The 7-day ranges read whatever the data spans (24 h in
/// `benches/promql.sh`).
pub fn promql_cases() -> Vec<QueryCase> {
    let one = r#"hostname="host_1""#;
    let eight = r#"hostname=~"host_(1|2|3|4|5|6|7|8)""#;
    let user8 = format!("cpu_usage_user{{{eight}}}");
    let system8 = format!("cpu_usage_system{{{eight}}}");
    let idle8 = format!("cpu_usage_idle{{{eight}}}");
    let day = 24 * 3600;
    let week = 7 * day;
    // One branch of the operator chains: a field's 8-host maximum, labelled with the field.
    let branch = |f: &str| {
        format!(
            r#"label_replace(max(max_over_time(cpu_{f}{{{eight}}}[1h])), "field", "{f}", "", "")"#
        )
    };
    // The first `n` fields' branches joined by `op`.
    let chain = |op: &str, n: usize| {
        FIELDS[..n]
            .iter()
            .map(|&f| branch(f))
            .collect::<Vec<_>>()
            .join(format!(" {op} ").as_str())
    };
    let c = |name: &str, query: String, range_s, step_s| QueryCase {
        name: name.to_string(),
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
        // Counter and gauge range functions, 8 hosts.
        c("irate-8-1h", format!("irate({user8}[5m])"), 3600, 60),
        c("increase-8-24h", format!("increase({system8}[1h])"), day, 300),
        c("delta-8-1h", format!("delta({idle8}[10m])"), 3600, 60),
        c("deriv-8-1h", format!("deriv({user8}[10m])"), 3600, 60),
        c(
            "predict-linear-8-1h",
            format!("predict_linear({user8}[30m], 3600)"),
            3600,
            60,
        ),
        c("resets-8-24h", format!("resets({user8}[1h])"), day, 300),
        c("changes-8-24h", format!("changes({user8}[1h])"), day, 300),
        // The *_over_time family, 8 hosts (sum / count - min: one-to-one matching on
        // identical label sets too).
        c(
            "sum-count-min-ot-8-24h",
            format!(
                "sum_over_time({user8}[1h]) / count_over_time({user8}[1h]) - min_over_time({user8}[1h])"
            ),
            day,
            300,
        ),
        c(
            "quantile-ot-8-24h",
            format!("quantile_over_time(0.9, {user8}[1h])"),
            day,
            300,
        ),
        c(
            "stddev-ot-8-24h",
            format!("stddev_over_time({user8}[1h])"),
            day,
            300,
        ),
        c("last-ot-8-1h", format!("last_over_time({user8}[10m])"), 3600, 60),
        // Math functions and arithmetic (abs, sqrt, ^, %, round to a multiple, ln, exp),
        // and clamping.
        c(
            "math-8-1h",
            format!(
                "round(sqrt(abs({user8} - 50)) ^ 3 % 17, 0.5) + ln({user8} + 1) * exp({user8} / 100)"
            ),
            3600,
            60,
        ),
        c(
            "clamp-8-1h",
            format!("clamp({user8}, 10, 90) - clamp_min(clamp_max({system8}, 90), 10)"),
            3600,
            60,
        ),
        // Time functions: time() and timestamp(); hour() and day_of_week() of the
        // samples' times over 7 days.
        c(
            "time-age-8-1h",
            format!("time() - timestamp({user8})"),
            3600,
            60,
        ),
        c(
            "hour-dow-8-7d",
            format!("24 * day_of_week(timestamp({user8})) + hour(timestamp({user8}))"),
            week,
            3600,
        ),
        // Sorting (a no-op on a range query's order, still evaluated).
        c(
            "sort-desc-all-1h",
            "sort_desc(avg by (region) (rate(cpu_usage_user[5m])))".into(),
            3600,
            60,
        ),
        // Aggregations over all hosts: topk, bottomk by, quantile by, count_values,
        // stddev by, count of group.
        c(
            "topk-all-1h",
            "topk(3, avg_over_time(cpu_usage_user[10m]))".into(),
            3600,
            300,
        ),
        c(
            "bottomk-region-all-1h",
            "bottomk by (region) (1, avg_over_time(cpu_usage_idle[10m]))".into(),
            3600,
            300,
        ),
        c(
            "quantile-all-24h",
            "quantile by (region) (0.99, avg_over_time(cpu_usage_user[1h]))".into(),
            day,
            3600,
        ),
        c(
            "count-values-all-1h",
            r#"count_values("quarter", floor(cpu_usage_user / 25))"#.into(),
            3600,
            60,
        ),
        c(
            "stddev-all-1h",
            "stddev by (region) (cpu_usage_user)".into(),
            3600,
            60,
        ),
        c(
            "count-group-all-1h",
            "count(group by (region, datacenter) (cpu_usage_user))".into(),
            3600,
            60,
        ),
        // Nested aggregations: per region, the maximum of the hosts' averages.
        c(
            "nested-max-avg-all-24h",
            "max by (region) (avg by (hostname, region) (avg_over_time(cpu_usage_user[1h])))"
                .into(),
            day,
            3600,
        ),
        // Subqueries: over a rate (8 hosts), over an aggregation (all hosts).
        c(
            "subq-max-rate-8-24h",
            format!("max_over_time(rate({user8}[5m])[1h:1m])"),
            day,
            3600,
        ),
        c(
            "subq-agg-all-24h",
            "avg_over_time(max by (region) (cpu_usage_user)[1h:5m])".into(),
            day,
            3600,
        ),
        // absent of a missing series (its equality matchers become the answer's labels);
        // absent_over_time of present series (an empty answer, the data still read).
        c(
            "absent-missing-1h",
            r#"absent(cpu_usage_user{hostname="host_none"})"#.into(),
            3600,
            60,
        ),
        c(
            "absent-ot-8-24h",
            format!("absent_over_time({user8}[1h])"),
            day,
            300,
        ),
        // Label functions.
        c(
            "label-replace-8-1h",
            format!(r#"label_replace(rate({user8}[5m]), "host_num", "$1", "hostname", "host_(.*)")"#),
            3600,
            60,
        ),
        c(
            "label-join-all-1h",
            r#"label_join(avg by (region, datacenter) (cpu_usage_user), "where", "/", "region", "datacenter")"#.into(),
            3600,
            60,
        ),
        // scalar() of an all-host aggregate; vector() as the fallback of a missing sum.
        c(
            "scalar-8-1h",
            format!("{user8} / scalar(avg(cpu_usage_user))"),
            3600,
            60,
        ),
        c(
            "vector-or-1h",
            r#"sum(cpu_usage_steal{hostname="host_none"}) or vector(0)"#.into(),
            3600,
            60,
        ),
        // Comparisons: a filter against a scalar, bool between vectors, bool summed over
        // all hosts (hosts above a threshold per region).
        c("cmp-filter-8-24h", format!("{user8} > 90"), day, 300),
        c(
            "cmp-bool-8-24h",
            format!("{user8} > bool {system8}"),
            day,
            300,
        ),
        c(
            "cmp-bool-sum-all-1h",
            "sum by (region) (cpu_usage_user > bool 95)".into(),
            3600,
            60,
        ),
        // Set operators on per-host series, matched on hostname.
        c(
            "and-unless-8-1h",
            format!(
                "{user8} > 50 and on(hostname) {system8} < 50 unless on(hostname) {idle8} > 90"
            ),
            3600,
            60,
        ),
        // Operator chains (the reported cliff: 8 h at 1 h steps; each branch is one
        // field's 8-host maximum labelled field="<field>"): `or` of 2, 5 and 10 branches,
        // then `and on()`, `unless`, `+ on()` and `+ ignoring(field)` of 10.
        c("or-chain-2", chain("or", 2), 8 * 3600, 3600),
        c("or-chain-5", chain("or", 5), 8 * 3600, 3600),
        c("or-chain-10", chain("or", 10), 8 * 3600, 3600),
        c("and-chain-10", chain("and on()", 10), 8 * 3600, 3600),
        c("unless-chain-10", chain("unless", 10), 8 * 3600, 3600),
        c("add-on-chain-10", chain("+ on()", 10), 8 * 3600, 3600),
        c(
            "add-ignoring-chain-10",
            chain("+ ignoring(field)", 10),
            8 * 3600,
            3600,
        ),
        // Vector matching: per-host series against per-region aggregates over all hosts
        // (on + group_left, on + group_right, ignoring + group_left), and group_left
        // copying a label from an info-like series.
        c(
            "group-left-8-1h",
            format!("{user8} / on(region) group_left avg by (region) (cpu_usage_user)"),
            3600,
            60,
        ),
        c(
            "group-right-8-1h",
            format!("avg by (region) (cpu_usage_idle) - on(region) group_right {idle8}"),
            3600,
            60,
        ),
        c(
            "ignoring-group-left-1h",
            format!(
                "sum by (hostname, region) ({user8}) / ignoring(hostname) group_left sum by (region) (cpu_usage_user)"
            ),
            3600,
            60,
        ),
        c(
            "group-left-label-8-1h",
            format!(
                r#"rate({user8}[5m]) * on(hostname) group_left(owner) (0 * label_replace(max by (hostname) ({idle8}), "owner", "team_$1", "hostname", "host_(.*)") + 1)"#
            ),
            3600,
            60,
        ),
        // histogram_quantile over classic buckets: one host; per region over all hosts;
        // 8 hosts' buckets summed over 1-day windows for 7 days. And the mean from _sum
        // and _count.
        c(
            "histq-1-1h",
            format!(
                "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket{{{one}}}[5m]))"
            ),
            3600,
            60,
        ),
        c(
            "histq-region-all-1h",
            "histogram_quantile(0.9, sum by (region, le) (rate(http_request_duration_seconds_bucket[5m])))".into(),
            3600,
            60,
        ),
        c(
            "histq-8-7d",
            format!(
                "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{eight}}}[1d])))"
            ),
            week,
            3600,
        ),
        c(
            "hist-avg-8-24h",
            format!(
                "rate(http_request_duration_seconds_sum{{{eight}}}[5m]) / rate(http_request_duration_seconds_count{{{eight}}}[5m])"
            ),
            day,
            300,
        ),
        // 7-day ranges at 1 h steps: a rate summed over all hosts, 1-day maxima per host.
        c(
            "rate-sum-all-7d",
            "sum(rate(cpu_usage_user[1h]))".into(),
            week,
            3600,
        ),
        c(
            "max-1d-8-7d",
            format!("max by (hostname) (max_over_time({user8}[1d]))"),
            week,
            3600,
        ),
    ]
}

/// The long-range bench's queries (`benches/long_range.sh`, over `cpu` data every 5
/// minutes for two years): 2-year ranges at step 1d of day windows (`avg_over_time`,
/// `max_over_time`, `rate`, `quantile_over_time(0.99, ...)`, and `sum by (region)` of
/// each) over one field of every host, and 90-day ranges at step 1h of hour windows.
/// Rollup tiers answer these in Strata (windows aligned with their buckets); the other
/// systems read raw samples.
pub fn long_range_cases() -> Vec<QueryCase> {
    let day = 86_400;
    let mut out = vec![];
    let windows: [(&'static str, &'static str, i64, i64); 2] =
        [("2y", "1d", 730 * day, day), ("90d", "1h", 90 * day, 3600)];
    for (range_name, w, range_s, step_s) in windows {
        let fns: [(&'static str, String); 4] = [
            ("avg", format!("avg_over_time(cpu_usage_user[{w}])")),
            ("max", format!("max_over_time(cpu_usage_user[{w}])")),
            ("rate", format!("rate(cpu_usage_user[{w}])")),
            (
                "p99",
                format!("quantile_over_time(0.99, cpu_usage_user[{w}])"),
            ),
        ];
        for (f, q) in fns {
            out.push(QueryCase {
                name: format!("{f}-{range_name}"),
                query: q.clone(),
                range_s,
                step_s,
            });
            out.push(QueryCase {
                name: format!("sum-{f}-{range_name}"),
                query: format!("sum by (region) ({q})"),
                range_s,
                step_s,
            });
        }
    }
    out
}

/// Runs `q` against the Prometheus API at each of `bases` (`http://host:port`),
/// interleaved: `warmup` unmeasured rounds, then `repeat` measured ones, each round one
/// request to every base in turn (so that a slow spell of the shared machine, such as
/// another system's background compaction, falls on all of them alike). The range ends
/// at `end_s` (Unix seconds). Returns, per base, the median latency in ms (from sending
/// the request to the answer's last byte, before the answer is parsed) and the number of
/// series in the answer, or the first error.
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
                // A base may carry query parameters of its own
                // (`http://host:port?max_source_resolution=raw`).
                let (root, extra) = base.split_once('?').unwrap_or((base, ""));
                let r = client
                    .post(format!("{root}/api/v1/query_range?{extra}"))
                    .form(&params)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status();
                let bytes = r.bytes().await.map_err(|e| e.to_string())?;
                Ok((status, bytes))
            }
            .await;
            // The latency ends with the answer's last byte; the client's JSON parsing
            // (which costs a large answer several ms, the same for every system) is not
            // the server's.
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let answer = answer.and_then(|(status, bytes)| {
                let body: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("{base}: {e}"))?;
                if !status.is_success() {
                    return Err(format!("{base}: {}: {status} {body}", q.name));
                }
                Ok(body)
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `(sorted labels, ms, value)` of every sample kept.
    fn samples(v: &strata_ingest::receive::remote_write::Validated) -> Vec<(String, i64, f64)> {
        let mut out: Vec<_> = v
            .series
            .iter()
            .flat_map(|s| {
                let mut l: Vec<String> = s.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
                l.sort();
                let l = l.join(",");
                s.samples
                    .iter()
                    .map(move |x| (l.clone(), x.timestamp_ms, x.value))
            })
            .collect();
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }

    /// A load of 3 hosts by 5 intervals (`histogram_hosts` of them with the histogram),
    /// default limits, and a server clock an hour after its start.
    fn small_load(histogram_hosts: usize) -> (LoadSpec, strata_ingest::Limits, i64) {
        let spec = LoadSpec {
            hosts: 3,
            intervals: 5,
            series_per_request: 20,
            intervals_per_request: 2,
            start_ms: 1_700_000_000_000,
            interval_ms: 10_000,
            histogram_hosts,
        };
        let now = spec.start_ms + 3_600_000;
        (spec, strata_ingest::Limits::default(), now)
    }

    #[test]
    fn otlp_and_line_protocol_loads_carry_the_same_samples() {
        use strata_ingest::receive::{influx, otlp};
        let (spec, limits, now) = small_load(0);
        let (bodies, n) = Protocol::Otlp.payloads(&spec);
        assert_eq!(n, 3 * 5 * FIELDS.len());
        let mut from_otlp = vec![];
        for b in &bodies {
            let req = otlp::decode_request(b, otlp::Encoding::Protobuf).unwrap();
            let t = otlp::translate(&req, &otlp::OtlpConfig::default(), &limits, now);
            assert_eq!(t.rejected_points, 0);
            from_otlp.extend(samples(&t.validated));
        }
        let mut from_influx = vec![];
        let opts = influx::Options {
            precision: influx::Precision::Nanoseconds,
            db: None,
        };
        for b in &Protocol::Influx.payloads(&spec).0 {
            from_influx.extend(samples(
                &influx::parse(b, &opts, &limits, now).unwrap().validated,
            ));
        }
        let mut from_json = vec![];
        for b in &Protocol::Json.payloads(&spec).0 {
            from_json.extend(samples(
                &strata_ingest::receive::json::parse(b, &limits, now).unwrap(),
            ));
        }
        from_otlp.sort_by(|a, b| a.partial_cmp(b).unwrap());
        from_influx.sort_by(|a, b| a.partial_cmp(b).unwrap());
        from_json.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(from_otlp.len(), n);
        assert_eq!(from_otlp, from_influx);
        assert_eq!(from_json, from_influx);
    }

    #[test]
    fn remote_write_2_and_1_loads_carry_the_same_samples() {
        use strata_ingest::receive::remote_write::{self, v2};
        let (spec, limits, now) = small_load(2);
        let (mut one, mut two) = (vec![], vec![]);
        let (bodies, n) = Protocol::RemoteWrite.payloads(&spec);
        for b in &bodies {
            let req = remote_write::decode_received(b, usize::MAX).unwrap();
            one.extend(samples(&remote_write::validate(req, &limits, now, |f| {
                vec![false; f.len()]
            })));
        }
        let (bodies2, n2) = Protocol::RemoteWrite2.payloads(&spec);
        for b in &bodies2 {
            let req = v2::decode(b, usize::MAX).unwrap();
            let t = v2::translate(&req, &limits, now, false, |f| vec![false; f.len()]);
            two.extend(samples(&t.validated));
        }
        one.sort_by(|a, b| a.partial_cmp(b).unwrap());
        two.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!((n2, one.len()), (n, n));
        assert_eq!(one, two);
    }
}
