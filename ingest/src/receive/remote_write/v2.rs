//! Prometheus remote write 2.0: `io.prometheus.write.v2.Request` (Prometheus's
//! `prompb/io/prometheus/write/v2/types.proto`), sent with `Content-Type:
//! application/x-protobuf;proto=io.prometheus.write.v2.Request`, snappy-compressed like 1.0.
//!
//! Spec: <https://prometheus.io/docs/specs/prw/remote_write_spec_2_0/>. What each part
//! becomes:
//! - `symbols` and `labels_refs`: the series' labels. A reference outside the table or an
//!   odd number of references rejects that series ([`Rejection::Malformed`]), not the
//!   request.
//! - `samples`: float samples, as in 1.0.
//! - `histograms` (native histograms, integer or float, exponential schemas -4..8 and custom
//!   buckets -53): stored as classic histograms, as Strata stores OTLP's exponential ones
//!   (`docs/ingest.md`): `<name>_bucket{le}` with the cumulative count up to each bucket's
//!   upper bound (every bucket the spans name, at the schema it was sent in), `le="+Inf"`,
//!   `<name>_count` and `<name>_sum`. A histogram whose sum is the staleness marker writes
//!   staleness markers to those series.
//! - `metadata`: type, help and unit, recorded per metric family
//!   ([`crate::metadata::MetadataStore`]).
//! - `created_timestamp`: with `ct_zero_ingestion`, a zero sample at that time before the
//!   series' first sample when the head does not hold the series yet (Prometheus's
//!   `created-timestamp-zero-ingestion` feature, `AppendCTZeroSample`, does the same and
//!   ignores the out-of-order case); otherwise not stored.
//! - `exemplars`: not stored (`X-Prometheus-Remote-Write-Exemplars-Written: 0`).

use prost::{Message, Oneof};

use super::{PbSample, Validated, decompress};
use crate::error::IngestError;
use crate::metadata::{MetricMetadata, MetricType};
use crate::model::{
    FloatText, LabelSpan, METRIC_NAME_LABEL, RawLabels, Sample, SeriesSamples, is_stale_nan,
    sort_spans, sorted_spans_fingerprint, stale_nan,
};
use crate::validate::{Limits, Rejection};

/// `io.prometheus.write.v2.Request`.
#[derive(Clone, PartialEq, Message)]
pub struct Request {
    /// Every string the request uses, deduplicated; the first is `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// The series.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Label name and value references into [`Request::symbols`], in pairs.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Float samples (a series has these or histograms, not both).
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
    /// Native histogram samples.
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    /// Exemplars (not stored).
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    /// Type, help and unit.
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// When the counter started counting, ms since the epoch; 0 when not given.
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// Label references, in pairs.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// ms since the epoch (0: not given).
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, PartialEq, Message)]
pub struct Metadata {
    /// `MetricType` (0 unspecified, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5
    /// summary, 6 info, 7 stateset).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Help text reference.
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// Unit reference.
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// `io.prometheus.write.v2.Histogram`: a native histogram sample.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// Observations counted (integer or float histogram).
    #[prost(oneof = "Count", tags = "1, 2")]
    pub count: Option<Count>,
    /// Sum of the observations; the staleness marker makes the whole sample one.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket schema: -4..=8 exponential (bucket boundaries `2^(i * 2^-schema)`), -53
    /// custom bounds ([`Histogram::custom_values`]).
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Half-width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    #[prost(oneof = "ZeroCount", tags = "6, 7")]
    pub zero_count: Option<ZeroCount>,
    /// Negative buckets' spans.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative buckets' counts, each as the difference to the previous bucket's (integer
    /// histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative buckets' counts (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Positive buckets' spans.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive buckets' count deltas (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive buckets' counts (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// `ResetHint` (not used: classic buckets are counters and `rate` finds resets).
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// ms since the epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Upper bounds of the custom buckets (schema -53), increasing.
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// `Histogram.count`.
#[derive(Clone, PartialEq, Oneof)]
pub enum Count {
    /// Integer histogram.
    #[prost(uint64, tag = "1")]
    CountInt(u64),
    /// Float histogram.
    #[prost(double, tag = "2")]
    CountFloat(f64),
}

/// `Histogram.zero_count`.
#[derive(Clone, PartialEq, Oneof)]
pub enum ZeroCount {
    /// Integer histogram.
    #[prost(uint64, tag = "6")]
    ZeroCountInt(u64),
    /// Float histogram.
    #[prost(double, tag = "7")]
    ZeroCountFloat(f64),
}

/// `io.prometheus.write.v2.BucketSpan`.
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    /// Gap to the previous span's end (for the first span: its first bucket's index).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// A series to write: its labels (as pairs) and samples.
type PairSeries = (Vec<(String, String)>, Vec<Sample>);

/// The custom-buckets schema.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Decompresses (snappy block format) and decodes a remote write 2.0 body.
///
/// # Errors
/// [`IngestError::BadRequest`] for bad snappy data or malformed protobuf (a symbol that is
/// not UTF-8 included), [`IngestError::TooLarge`] over `max_decoded_bytes`.
pub fn decode(body: &[u8], max_decoded_bytes: usize) -> Result<Request, IngestError> {
    let raw = decompress(body, max_decoded_bytes)?;
    Request::decode(raw.as_slice()).map_err(|e| {
        IngestError::BadRequest(format!(
            "invalid protobuf io.prometheus.write.v2.Request: {e}"
        ))
    })
}

/// Snappy-compressed encoding of `req` (for clients, tests and benches).
pub fn encode(req: &Request) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compression of an in-memory buffer cannot fail")
}

/// What the `X-Prometheus-Remote-Write-*-Written` response headers report: the request's
/// float samples, histogram samples and exemplars that were stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Float samples of series that were stored (zero samples added at created timestamps
    /// are not counted).
    pub samples: usize,
    /// Histogram samples whose every classic series was stored.
    pub histograms: usize,
    /// Always 0: exemplars are not stored.
    pub exemplars: usize,
}

/// A translated request.
#[derive(Debug, Default)]
pub struct Translated {
    /// Series to write, and the rejected ones.
    pub validated: Validated,
    /// Metadata per metric family, as received (duplicates included).
    pub metadata: Vec<(String, MetricMetadata)>,
    /// What will have been stored once `validated` is written.
    pub written: Written,
}

/// Translates a decoded request into series validated under `limits` at `now_ms` (see the
/// module's doc). With `ct_zero_ingestion`, `known` is asked which fingerprints the head
/// holds (as in [`super::validate`]), for the series that carry a created timestamp.
pub fn translate(
    req: &Request,
    limits: &Limits,
    now_ms: i64,
    ct_zero_ingestion: bool,
    known: impl Fn(&[u64]) -> Vec<bool>,
) -> Translated {
    let mut out = Translated::default();
    // The symbols, concatenated: float series' labels are spans of it (no copy per series).
    let (symbols_buf, symbol_spans) = {
        let mut buf = Vec::with_capacity(req.symbols.iter().map(String::len).sum());
        let mut spans = Vec::with_capacity(req.symbols.len());
        for sym in &req.symbols {
            let start = buf.len() as u32;
            buf.extend_from_slice(sym.as_bytes());
            spans.push((start, buf.len() as u32));
        }
        (bytes::Bytes::from(buf), spans)
    };
    // Float series: label spans of `symbols_buf` (sorted), fingerprint, samples, request
    // series index.
    let mut floats: Vec<(Vec<LabelSpan>, u64, Vec<Sample>, usize)> = vec![];
    // Histogram series: label pairs, samples, request series index.
    let mut pending: Vec<(PairSeries, usize)> = vec![];
    // `floats` indexes of series with a created timestamp before their samples.
    let mut ct: Vec<(usize, i64)> = vec![];
    let mut failed = vec![false; req.timeseries.len()];
    for (i, ts) in req.timeseries.iter().enumerate() {
        let n = ts.samples.len() + ts.histograms.len();
        if let Err(why) = check_refs(req.symbols.len(), &ts.labels_refs) {
            out.validated
                .rejected
                .push((Rejection::Malformed(format!("series {i}: {why}")), n));
            failed[i] = true;
            continue;
        }
        let name = ts
            .labels_refs
            .chunks(2)
            .find(|p| symbol(&req.symbols, p[0]) == METRIC_NAME_LABEL)
            .map(|p| symbol(&req.symbols, p[1]));
        if let (Some(m), Some(family)) = (&ts.metadata, name) {
            let (help, unit) = (
                symbol(&req.symbols, m.help_ref),
                symbol(&req.symbols, m.unit_ref),
            );
            if m.r#type != 0 || !help.is_empty() || !unit.is_empty() {
                let t = MetricType::of_proto(m.r#type);
                out.metadata.push((
                    family_of(family, t, !ts.histograms.is_empty()),
                    MetricMetadata {
                        metric_type: t,
                        help: help.to_string(),
                        unit: unit.to_string(),
                    },
                ));
            }
        }
        if n == 0 {
            continue;
        }
        if !ts.samples.is_empty() && !ts.histograms.is_empty() {
            out.validated.rejected.push((
                Rejection::Malformed(format!(
                    "series {i}: has both samples and histograms (the spec requires separate series)"
                )),
                n,
            ));
            failed[i] = true;
            continue;
        }
        if !ts.samples.is_empty() {
            let samples: Vec<Sample> = ts
                .samples
                .iter()
                .map(|s| Sample {
                    timestamp_ms: s.timestamp,
                    value: s.value,
                })
                .collect();
            if ts.created_timestamp != 0 && ts.created_timestamp < samples[0].timestamp_ms {
                ct.push((floats.len(), ts.created_timestamp));
            }
            let mut spans: Vec<LabelSpan> = ts
                .labels_refs
                .chunks(2)
                .map(|p| LabelSpan {
                    name: symbol_spans[p[0] as usize],
                    value: symbol_spans[p[1] as usize],
                })
                .collect();
            sort_spans(&symbols_buf, &mut spans);
            let fingerprint = sorted_spans_fingerprint(&symbols_buf, &spans);
            floats.push((spans, fingerprint, samples, i));
            continue;
        }
        let labels = match labels_of(&req.symbols, &ts.labels_refs) {
            Ok(l) => l,
            Err(why) => {
                out.validated
                    .rejected
                    .push((Rejection::Malformed(format!("series {i}: {why}")), n));
                failed[i] = true;
                continue;
            }
        };
        match histogram_series(&labels, name, &ts.histograms) {
            Ok(series) => pending.extend(series.into_iter().map(|s| (s, i))),
            Err(why) => {
                out.validated
                    .rejected
                    .push((Rejection::Malformed(format!("series {i}: {why}")), n));
                failed[i] = true;
            }
        }
    }
    // Which float series the head holds: they skip label validation (as in
    // `super::validate`), and get no zero sample at their created timestamp.
    let fingerprints: Vec<u64> = floats.iter().map(|f| f.1).collect();
    let utf8 = limits.metric_name_escaping_scheme == crate::validate::NameEscaping::AllowUtf8;
    let mut held = if utf8 || (ct_zero_ingestion && !ct.is_empty()) {
        known(&fingerprints)
    } else {
        vec![]
    };
    held.resize(fingerprints.len(), false);
    if ct_zero_ingestion {
        for &(f, t) in &ct {
            if !held[f] {
                floats[f].2.insert(
                    0,
                    Sample {
                        timestamp_ms: t,
                        value: 0.0,
                    },
                );
            }
        }
    }
    for ((spans, fingerprint, samples, i), held) in floats.into_iter().zip(held) {
        let before = out.validated.rejected.len();
        if held && utf8 {
            let s = SeriesSamples {
                labels: RawLabels::from_sorted_spans_fingerprinted(
                    symbols_buf.clone(),
                    spans,
                    fingerprint,
                ),
                samples,
            };
            let n = s.samples.len();
            match crate::validate::validate_samples(&s, limits, now_ms) {
                Ok(()) => out.validated.series.push(s),
                Err(r) => out.validated.rejected.push((r, n)),
            }
        } else {
            out.validated
                .push_raw(symbols_buf.clone(), spans, samples, limits, now_ms);
        }
        if out.validated.rejected.len() > before {
            failed[i] = true;
        }
    }
    for ((labels, samples), i) in pending {
        let before = out.validated.rejected.len();
        out.validated.push(&labels, samples, limits, now_ms);
        if out.validated.rejected.len() > before {
            failed[i] = true;
        }
    }
    for (ts, failed) in req.timeseries.iter().zip(failed) {
        if !failed {
            out.written.samples += ts.samples.len();
            out.written.histograms += ts.histograms.len();
        }
    }
    out
}

/// The string at `r`, or `""` outside the table (metadata references are optional).
fn symbol(symbols: &[String], r: u32) -> &str {
    symbols.get(r as usize).map(String::as_str).unwrap_or("")
}

/// A series' labels from its references.
/// Checks that `refs` are pairs of references into a symbols table of `symbols` entries.
fn check_refs(symbols: usize, refs: &[u32]) -> Result<(), String> {
    if !refs.len().is_multiple_of(2) {
        return Err(format!(
            "labels_refs has {} references, not a multiple of two",
            refs.len()
        ));
    }
    match refs.iter().find(|r| **r as usize >= symbols) {
        Some(r) => Err(format!(
            "label reference {r} is outside the symbols table ({symbols} symbols)"
        )),
        None => Ok(()),
    }
}

fn labels_of(symbols: &[String], refs: &[u32]) -> Result<Vec<(String, String)>, String> {
    if !refs.len().is_multiple_of(2) {
        return Err(format!(
            "labels_refs has {} references, not a multiple of two",
            refs.len()
        ));
    }
    let get = |r: u32| {
        symbols.get(r as usize).cloned().ok_or_else(|| {
            format!(
                "label reference {r} is outside the symbols table ({} symbols)",
                symbols.len()
            )
        })
    };
    refs.chunks(2)
        .map(|p| Ok((get(p[0])?, get(p[1])?)))
        .collect()
}

/// The family a series' metadata describes: the metric name, without the `_bucket`,
/// `_sum`, `_count` or `_created` suffix of a classic histogram's or summary's float series
/// (the family name Prometheus's text format and `/api/v1/metadata` use).
fn family_of(name: &str, t: MetricType, native: bool) -> String {
    if native
        || !matches!(
            t,
            MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary
        )
    {
        return name.to_string();
    }
    ["_bucket", "_sum", "_count", "_created"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|f| !f.is_empty())
        .unwrap_or(name)
        .to_string()
}

/// The classic series of a native histogram series `labels` (named `name`): see the module
/// doc.
fn histogram_series(
    labels: &[(String, String)],
    name: Option<&str>,
    histograms: &[Histogram],
) -> Result<Vec<PairSeries>, String> {
    let name = name.unwrap_or("");
    let base: Vec<(String, String)> = labels
        .iter()
        .filter(|(n, _)| n != METRIC_NAME_LABEL && n != "le")
        .cloned()
        .collect();
    // Series by (suffix, le), in first-seen order.
    let mut series: indexmap::IndexMap<(&'static str, String), Vec<Sample>> =
        indexmap::IndexMap::new();
    for h in histograms {
        let stale = is_stale_nan(h.sum);
        let value = |v: f64| if stale { stale_nan() } else { v };
        let mut push = |suffix: &'static str, le: String, v: f64| {
            series.entry((suffix, le)).or_default().push(Sample {
                timestamp_ms: h.timestamp,
                value: value(v),
            });
        };
        let mut cumulative = 0.0;
        for (bound, count) in buckets(h)? {
            cumulative += count;
            if bound.is_finite() {
                push("_bucket", FloatText(bound).to_string(), cumulative);
            }
        }
        let count = match h.count {
            Some(Count::CountInt(c)) => c as f64,
            Some(Count::CountFloat(c)) => c,
            None => 0.0,
        };
        push("_bucket", "+Inf".to_string(), count);
        push("_count", String::new(), count);
        push("_sum", String::new(), h.sum);
    }
    Ok(series
        .into_iter()
        .map(|((suffix, le), samples)| {
            let mut l = base.clone();
            l.push((METRIC_NAME_LABEL.to_string(), format!("{name}{suffix}")));
            if !le.is_empty() {
                l.push(("le".to_string(), le));
            }
            (l, samples)
        })
        .collect())
}

/// A native histogram's buckets as `(upper bound, count)` in increasing order of bounds:
/// negative buckets (bucket `i` holds `[-2^(i s), -2^((i-1) s))`, `s = 2^-schema`, so its
/// upper bound is `-2^((i-1) s)`), the zero bucket (`zero_threshold`), positive buckets
/// (bucket `i` holds `(2^((i-1) s), 2^(i s)]`); for custom buckets, `custom_values[i]`, and
/// `+Inf` past the last. (Prometheus `model/histogram/generic.go`, `getBound`.)
fn buckets(h: &Histogram) -> Result<Vec<(f64, f64)>, String> {
    let float = matches!(h.count, Some(Count::CountFloat(_)));
    let upper = |i: i64| super::super::otlp::exponential_upper_bound(i - 1, h.schema);
    let mut out = vec![];
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        for (i, c) in side(
            &h.positive_spans,
            &h.positive_deltas,
            &h.positive_counts,
            float,
        )? {
            let bound = usize::try_from(i)
                .ok()
                .and_then(|i| {
                    if i == h.custom_values.len() {
                        Some(f64::INFINITY)
                    } else {
                        h.custom_values.get(i).copied()
                    }
                })
                .ok_or_else(|| format!("custom bucket {i} has no bound in custom_values"))?;
            out.push((bound, c));
        }
        return Ok(out);
    }
    if !(-4..=8).contains(&h.schema) {
        return Err(format!(
            "histogram schema {} is not supported (-4 to 8, or -53 for custom buckets)",
            h.schema
        ));
    }
    let negative = side(
        &h.negative_spans,
        &h.negative_deltas,
        &h.negative_counts,
        float,
    )?;
    for (i, c) in negative.into_iter().rev() {
        out.push((-upper(i - 1), c));
    }
    let zero = match h.zero_count {
        Some(ZeroCount::ZeroCountInt(c)) => c as f64,
        Some(ZeroCount::ZeroCountFloat(c)) => c,
        None => 0.0,
    };
    out.push((h.zero_threshold, zero));
    for (i, c) in side(
        &h.positive_spans,
        &h.positive_deltas,
        &h.positive_counts,
        float,
    )? {
        out.push((upper(i), c));
    }
    Ok(out)
}

/// One side's buckets as `(index, count)`: integer histograms give each count as the
/// difference to the previous bucket's, float histograms the counts themselves.
fn side(
    spans: &[BucketSpan],
    deltas: &[i64],
    counts: &[f64],
    float: bool,
) -> Result<Vec<(i64, f64)>, String> {
    let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    let given = if float { counts.len() } else { deltas.len() };
    if total != given as u64 {
        return Err(format!(
            "bucket spans cover {total} buckets but {given} {} are given",
            if float { "counts" } else { "deltas" }
        ));
    }
    let mut out = Vec::with_capacity(given);
    let (mut index, mut k, mut running) = (0i64, 0usize, 0i64);
    for s in spans {
        index += i64::from(s.offset);
        for _ in 0..s.length {
            let c = if float {
                counts[k]
            } else {
                running = running.wrapping_add(deltas[k]);
                running as f64
            };
            out.push((index, c));
            index += 1;
            k += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(series: Vec<TimeSeries>, symbols: &[&str]) -> Request {
        Request {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            timeseries: series,
        }
    }

    /// `name{a="b",...} value @ms` per sample, sorted; staleness markers as `stale`.
    fn lines(t: &Translated) -> Vec<String> {
        let mut out: Vec<String> = t
            .validated
            .series
            .iter()
            .flat_map(|s| {
                let l: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|(n, _)| *n != METRIC_NAME_LABEL)
                    .map(|(n, v)| format!("{n}=\"{v}\""))
                    .collect();
                let name = s.labels.get(METRIC_NAME_LABEL).unwrap_or("").to_string();
                s.samples.iter().map(move |x| {
                    let v = if is_stale_nan(x.value) {
                        "stale".to_string()
                    } else {
                        FloatText(x.value).to_string()
                    };
                    format!("{name}{{{}}} {v} @{}", l.join(","), x.timestamp_ms)
                })
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn float_series_metadata_and_written_counts() {
        let syms = [
            "",
            "__name__",
            "http_requests_total",
            "job",
            "api",
            "Requests.",
            "x",
        ];
        let req = request(
            vec![
                TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![
                        PbSample {
                            value: 5.0,
                            timestamp: 1000,
                        },
                        PbSample {
                            value: 7.0,
                            timestamp: 2000,
                        },
                    ],
                    metadata: Some(Metadata {
                        r#type: 1,
                        help_ref: 5,
                        unit_ref: 0,
                    }),
                    exemplars: vec![Exemplar {
                        labels_refs: vec![],
                        value: 1.0,
                        timestamp: 1000,
                    }],
                    ..Default::default()
                },
                // A reference outside the table: this series alone is rejected.
                TimeSeries {
                    labels_refs: vec![1, 99],
                    samples: vec![PbSample {
                        value: 1.0,
                        timestamp: 1000,
                    }],
                    ..Default::default()
                },
                // An odd number of references.
                TimeSeries {
                    labels_refs: vec![1, 6, 3],
                    samples: vec![PbSample {
                        value: 1.0,
                        timestamp: 1000,
                    }],
                    ..Default::default()
                },
            ],
            &syms,
        );
        let t = translate(&req, &Limits::default(), 10_000, false, |f| {
            vec![false; f.len()]
        });
        // Series the head holds skip label validation and come out the same, fingerprints
        // included.
        let held = translate(&req, &Limits::default(), 10_000, false, |f| {
            vec![true; f.len()]
        });
        assert_eq!(lines(&held), lines(&t));
        let fps = |t: &Translated| -> Vec<u64> {
            t.validated
                .series
                .iter()
                .map(|s| s.labels.fingerprint())
                .collect()
        };
        assert_eq!(fps(&held), fps(&t));
        assert_eq!(held.written, t.written);
        assert_eq!(
            lines(&t),
            [
                "http_requests_total{job=\"api\"} 5 @1000",
                "http_requests_total{job=\"api\"} 7 @2000"
            ]
        );
        assert_eq!(
            t.written,
            Written {
                samples: 2,
                histograms: 0,
                exemplars: 0
            }
        );
        let why: Vec<String> = t
            .validated
            .rejected
            .iter()
            .map(|r| r.0.to_string())
            .collect();
        assert_eq!(
            why,
            [
                "series 1: label reference 99 is outside the symbols table (7 symbols)",
                "series 2: labels_refs has 3 references, not a multiple of two"
            ]
        );
        assert_eq!(
            t.metadata,
            [(
                "http_requests_total".to_string(),
                MetricMetadata {
                    metric_type: MetricType::Counter,
                    help: "Requests.".into(),
                    unit: String::new()
                }
            )]
        );
    }

    #[test]
    fn created_timestamp_adds_a_zero_sample_for_a_new_series_only() {
        let syms = ["", "__name__", "c_total", "x", "a", "b"];
        let series = |v: u32| TimeSeries {
            labels_refs: vec![1, 2, 3, v],
            samples: vec![PbSample {
                value: 3.0,
                timestamp: 5000,
            }],
            created_timestamp: 4000,
            ..Default::default()
        };
        let req = request(vec![series(4), series(5)], &syms);
        let t = translate(&req, &Limits::default(), 10_000, true, |f| {
            assert_eq!(f.len(), 2);
            vec![true, false]
        });
        assert_eq!(
            lines(&t),
            [
                "c_total{x=\"a\"} 3 @5000",
                "c_total{x=\"b\"} 0 @4000",
                "c_total{x=\"b\"} 3 @5000"
            ]
        );
        assert_eq!(
            t.written.samples, 2,
            "the zero samples are not the sender's"
        );
        let off = translate(&req, &Limits::default(), 10_000, false, |f| {
            vec![false; f.len()]
        });
        assert_eq!(lines(&off).len(), 2);
    }

    /// An integer histogram at schema 0 (bucket `i` is `(2^(i-1), 2^i]`): 2 observations in
    /// the zero bucket (within 0.001); positive buckets 0, 1 and 3 (upper bounds 1, 2, 8)
    /// with 1, 3 and 2; negative bucket 1 (`[-2, -1)`, upper bound -1) with 1. Bounds and
    /// cumulative counts worked by hand.
    #[test]
    fn native_histograms_become_classic_buckets() {
        let syms = ["", "__name__", "rpc_seconds", "job", "a"];
        let h = Histogram {
            count: Some(Count::CountInt(9)),
            sum: 12.5,
            schema: 0,
            zero_threshold: 0.001,
            zero_count: Some(ZeroCount::ZeroCountInt(2)),
            negative_spans: vec![BucketSpan {
                offset: 1,
                length: 1,
            }],
            negative_deltas: vec![1],
            positive_spans: vec![
                BucketSpan {
                    offset: 0,
                    length: 2,
                },
                BucketSpan {
                    offset: 1,
                    length: 1,
                },
            ],
            // Counts 1, 3, 2 as deltas.
            positive_deltas: vec![1, 2, -1],
            timestamp: 1000,
            ..Default::default()
        };
        let req = request(
            vec![TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                histograms: vec![h.clone()],
                ..Default::default()
            }],
            &syms,
        );
        let t = translate(&req, &Limits::default(), 10_000, false, |f| {
            vec![false; f.len()]
        });
        assert_eq!(
            lines(&t),
            [
                "rpc_seconds_bucket{job=\"a\",le=\"+Inf\"} 9 @1000",
                "rpc_seconds_bucket{job=\"a\",le=\"-1\"} 1 @1000",
                "rpc_seconds_bucket{job=\"a\",le=\"0.001\"} 3 @1000",
                "rpc_seconds_bucket{job=\"a\",le=\"1\"} 4 @1000",
                "rpc_seconds_bucket{job=\"a\",le=\"2\"} 7 @1000",
                "rpc_seconds_bucket{job=\"a\",le=\"8\"} 9 @1000",
                "rpc_seconds_count{job=\"a\"} 9 @1000",
                "rpc_seconds_sum{job=\"a\"} 12.5 @1000",
            ]
        );
        assert_eq!(t.written.histograms, 1);

        // The same as a float histogram, and at schema 1 (bounds sqrt(2) apart).
        let float = Histogram {
            count: Some(Count::CountFloat(9.0)),
            zero_count: Some(ZeroCount::ZeroCountFloat(2.0)),
            negative_deltas: vec![],
            negative_counts: vec![1.0],
            positive_deltas: vec![],
            positive_counts: vec![1.0, 3.0, 2.0],
            ..h.clone()
        };
        let req2 = request(
            vec![TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                histograms: vec![float],
                ..Default::default()
            }],
            &syms,
        );
        assert_eq!(
            lines(&translate(
                &req2,
                &Limits::default(),
                10_000,
                false,
                |_| vec![]
            )),
            lines(&t)
        );
        let s1 = buckets(&Histogram { schema: 1, ..h }).unwrap();
        let bounds: Vec<f64> = s1.iter().map(|b| b.0).collect();
        let want = [-1.0, 0.001, 1.0, 2f64.sqrt(), 2.0 * 2f64.sqrt()];
        assert_eq!(bounds.len(), want.len());
        for (b, w) in bounds.iter().zip(want) {
            assert!((b - w).abs() < 1e-12, "{bounds:?}");
        }
    }

    #[test]
    fn custom_buckets_stale_histograms_and_malformed_spans() {
        let syms = ["", "__name__", "lat", "job", "a"];
        let custom = Histogram {
            count: Some(Count::CountInt(5)),
            sum: 3.0,
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 3,
            }],
            positive_deltas: vec![1, 1, 0],
            custom_values: vec![0.1, 0.5],
            timestamp: 1000,
            ..Default::default()
        };
        let stale = Histogram {
            sum: stale_nan(),
            timestamp: 2000,
            ..custom.clone()
        };
        let bad = Histogram {
            positive_deltas: vec![1],
            timestamp: 3000,
            ..custom.clone()
        };
        let ts = |h: Vec<Histogram>| TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            histograms: h,
            ..Default::default()
        };
        let req = request(vec![ts(vec![custom, stale]), ts(vec![bad])], &syms);
        let t = translate(&req, &Limits::default(), 10_000, false, |_| vec![]);
        let l = lines(&t);
        assert!(l.contains(&"lat_bucket{job=\"a\",le=\"0.1\"} 1 @1000".to_string()));
        assert!(l.contains(&"lat_bucket{job=\"a\",le=\"0.5\"} 3 @1000".to_string()));
        assert!(l.contains(&"lat_bucket{job=\"a\",le=\"+Inf\"} 5 @1000".to_string()));
        // Staleness markers at 2000 for all five series.
        assert_eq!(l.iter().filter(|x| x.ends_with("stale @2000")).count(), 5);
        assert_eq!(l.iter().filter(|x| x.ends_with("@2000")).count(), 5);
        assert_eq!(t.written.histograms, 2);
        assert_eq!(
            t.validated.rejected[0].0.to_string(),
            "series 1: bucket spans cover 3 buckets but 1 deltas are given"
        );
    }

    #[test]
    fn a_v1_body_decodes_to_an_empty_v2_request() {
        // Fields 1 to 3 are reserved in v2 so that a 1.0 body read as 2.0 is empty.
        let v1 = super::super::WriteRequest {
            timeseries: vec![super::super::TimeSeries {
                labels: vec![],
                samples: vec![PbSample {
                    value: 1.0,
                    timestamp: 1,
                }],
            }],
            metadata: vec![],
        };
        let req = decode(&super::super::encode(&v1), 1 << 20).unwrap();
        assert!(req.timeseries.is_empty() && req.symbols.is_empty());
    }
}
