//! Prometheus remote write 1.0: the protobuf messages (`prompb/remote.proto` and
//! `prompb/types.proto` of the Prometheus repository, the fields remote write 1.0 uses) and
//! decoding of a snappy-compressed request body.
//!
//! Spec: <https://prometheus.io/docs/specs/prw/remote_write_spec/>. Native histograms
//! (field 4 of `TimeSeries`) and exemplars are not stored: protobuf decoding skips them.
//! Metadata is kept ([`Received::metadata`], [`metadata_entries`]). Remote write 2.0 is
//! [`v2`].

pub mod v2;

use prost::Message;

use crate::error::IngestError;
use crate::model::{
    LabelSpan, RawLabels, Sample, SeriesSamples, pack_pairs, sort_spans, sorted_spans_fingerprint,
};
use crate::validate::{Limits, Rejection, validate_labels, validate_samples};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series, each with its labels and samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (type, help, unit) per family.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries` (labels and float samples).
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, `__name__` included, in any order (the spec asks senders to sort them).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PbSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Label name. Declared `bytes` (wire-compatible with the proto's `string`) so that
    /// decoding slices the request buffer instead of allocating; UTF-8 is checked by
    /// validation.
    #[prost(bytes = "bytes", tag = "1")]
    pub name: bytes::Bytes,
    /// Label value (see `name`).
    #[prost(bytes = "bytes", tag = "2")]
    pub value: bytes::Bytes,
}

/// `prometheus.Sample`: a float value and a timestamp in milliseconds since the epoch.
#[derive(Clone, PartialEq, Message)]
pub struct PbSample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch, UTC.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// The metric type enum (0 unknown, 1 counter, 2 gauge, 3 histogram, ...).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

fn decompress(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<u8>, IngestError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| IngestError::BadRequest(format!("invalid snappy-compressed body: {e}")))?;
    if len > max_decoded_bytes || len > u32::MAX as usize {
        return Err(IngestError::TooLarge(format!(
            "decompressed body of {len} bytes exceeds the limit of {} bytes",
            max_decoded_bytes.min(u32::MAX as usize)
        )));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| IngestError::BadRequest(format!("invalid snappy-compressed body: {e}")))
}

/// Decompresses (snappy block format, as the spec requires) and decodes a request body
/// into the prost messages. The write path uses [`decode_received`], which does not copy
/// or reference-count each label; this is for clients and tests.
/// `max_decoded_bytes` caps the decompressed size, checked before allocating.
///
/// # Errors
/// [`IngestError::BadRequest`] naming the problem: bad snappy data or malformed protobuf;
/// [`IngestError::TooLarge`] for a decompressed size over the limit.
pub fn decode(body: &[u8], max_decoded_bytes: usize) -> Result<WriteRequest, IngestError> {
    let raw = decompress(body, max_decoded_bytes)?;
    WriteRequest::decode(bytes::Bytes::from(raw))
        .map_err(|e| IngestError::BadRequest(format!("invalid protobuf WriteRequest: {e}")))
}

/// One series of a request decoded by [`decode_received`]: its labels as received (any
/// order, not validated), as spans of [`Received::buf`], and its float samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSeries {
    /// Label name and value byte ranges in the request buffer.
    pub labels: Vec<LabelSpan>,
    /// Float samples, in request order.
    pub samples: Vec<Sample>,
}

/// A decoded remote-write request whose label strings stay in the decompressed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The decompressed protobuf body.
    pub buf: bytes::Bytes,
    /// Its series, in request order.
    pub series: Vec<ReceivedSeries>,
    /// Its metric metadata (`WriteRequest` field 3), in request order.
    pub metadata: Vec<MetricMetadata>,
}

fn pb_error(e: prost::DecodeError) -> IngestError {
    IngestError::BadRequest(format!("invalid protobuf WriteRequest: {e}"))
}

fn truncated() -> IngestError {
    IngestError::BadRequest("invalid protobuf WriteRequest: length exceeds the message".into())
}

/// Reads one length-delimited field's bytes.
fn delimited<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], IngestError> {
    let len = prost::encoding::decode_varint(b).map_err(pb_error)?;
    if len > b.len() as u64 {
        return Err(truncated());
    }
    let (head, tail) = b.split_at(len as usize);
    *b = tail;
    Ok(head)
}

/// A field's tag, and its bytes when it is length-delimited.
type Field<'a> = (u32, Option<&'a [u8]>);

/// Reads a field key, then a length-delimited field's bytes, or skips any other field.
/// Returns `None` at the end of `b`.
fn next_field<'a>(b: &mut &'a [u8]) -> Result<Option<Field<'a>>, IngestError> {
    use prost::encoding::{DecodeContext, WireType, decode_key, skip_field};
    if b.is_empty() {
        return Ok(None);
    }
    let (tag, wt) = decode_key(b).map_err(pb_error)?;
    if wt == WireType::LengthDelimited {
        return Ok(Some((tag, Some(delimited(b)?))));
    }
    skip_field(wt, tag, b, DecodeContext::default()).map_err(pb_error)?;
    Ok(Some((tag, None)))
}

/// Decompresses and decodes a request body without copying label strings: each label is
/// a pair of byte ranges into the decompressed body, which every series then shares.
/// Fields are read with prost's wire-format primitives (`prost::encoding`): `WriteRequest`
/// field 1 (`timeseries`), `TimeSeries` fields 1 (`labels`) and 2 (`samples`, decoded by
/// prost as [`PbSample`]), `Label` fields 1 and 2, field 3 (`metadata`, decoded by prost
/// as [`MetricMetadata`]); every other field (exemplars, native histograms, unknown fields)
/// is skipped, as [`decode`] does. A repeated scalar
/// field keeps its last value, as protobuf specifies.
///
/// # Errors
/// As [`decode`]: [`IngestError::BadRequest`] for bad snappy data or malformed protobuf
/// (including a known field with the wrong wire type), [`IngestError::TooLarge`] over
/// `max_decoded_bytes` (or 4 GiB).
pub fn decode_received(body: &[u8], max_decoded_bytes: usize) -> Result<Received, IngestError> {
    let raw = decompress(body, max_decoded_bytes)?;
    let base = raw.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    let wrong_type = |what: &str| {
        IngestError::BadRequest(format!(
            "invalid protobuf WriteRequest: {what} is not length-delimited"
        ))
    };
    let mut series = vec![];
    let mut metadata = vec![];
    let mut b: &[u8] = &raw;
    while let Some((tag, body)) = next_field(&mut b)? {
        if tag == 3 {
            let m = body.ok_or_else(|| wrong_type("WriteRequest.metadata"))?;
            metadata.push(MetricMetadata::decode(m).map_err(pb_error)?);
            continue;
        }
        if tag != 1 {
            continue;
        }
        let mut ts = body.ok_or_else(|| wrong_type("WriteRequest.timeseries"))?;
        let mut out = ReceivedSeries {
            labels: vec![],
            samples: vec![],
        };
        while let Some((tag, body)) = next_field(&mut ts)? {
            match tag {
                1 => {
                    let mut l = body.ok_or_else(|| wrong_type("TimeSeries.labels"))?;
                    let empty = (span(l).0, span(l).0);
                    let mut label = LabelSpan {
                        name: empty,
                        value: empty,
                    };
                    while let Some((tag, body)) = next_field(&mut l)? {
                        match (tag, body) {
                            (1, Some(n)) => label.name = span(n),
                            (2, Some(v)) => label.value = span(v),
                            (1 | 2, None) => return Err(wrong_type("a Label string")),
                            _ => {}
                        }
                    }
                    out.labels.push(label);
                }
                2 => {
                    let s = body.ok_or_else(|| wrong_type("TimeSeries.samples"))?;
                    let s = PbSample::decode(s).map_err(pb_error)?;
                    out.samples.push(Sample {
                        timestamp_ms: s.timestamp,
                        value: s.value,
                    });
                }
                _ => {}
            }
        }
        series.push(out);
    }
    Ok(Received {
        buf: bytes::Bytes::from(raw),
        series,
        metadata,
    })
}

/// The metadata of a 1.0 request as `(family, metadata)` entries for
/// [`crate::metadata::MetadataStore::record`].
pub fn metadata_entries(
    metadata: &[MetricMetadata],
) -> Vec<(String, crate::metadata::MetricMetadata)> {
    metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.clone(),
                crate::metadata::MetricMetadata {
                    metric_type: crate::metadata::MetricType::of_proto(m.r#type),
                    help: m.help.clone(),
                    unit: m.unit.clone(),
                },
            )
        })
        .collect()
}

/// Encodes and snappy-compresses a request (for clients, tests and the load bench).
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    let mut out = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compression of an in-memory buffer cannot fail");
    // `compress_vec` leaves the worst-case capacity (about 7/6 of the raw size) allocated.
    out.shrink_to_fit();
    out
}

/// The result of validating a request: the valid series, and the rejections (one per
/// rejected series) with the number of samples each carried.
#[derive(Debug, Default)]
pub struct Validated {
    /// Series that passed validation.
    pub series: Vec<SeriesSamples>,
    /// Rejected series: why, and how many samples they carried.
    pub rejected: Vec<(Rejection, usize)>,
}

impl Validated {
    /// Validates one series given as string pairs (JSON push, scrapes); see [`Self::push_raw`].
    pub fn push(
        &mut self,
        pairs: &[(String, String)],
        samples: Vec<Sample>,
        limits: &Limits,
        now_ms: i64,
    ) {
        let (buf, spans) = pack_pairs(pairs.iter().map(|(n, v)| (n, v)));
        self.push_raw(buf, spans, samples, limits, now_ms);
    }

    /// Validates one series given as label spans of `buf` (any order) and samples, keeping
    /// it or recording why not.
    pub fn push_raw(
        &mut self,
        buf: bytes::Bytes,
        spans: Vec<LabelSpan>,
        samples: Vec<Sample>,
        limits: &Limits,
        now_ms: i64,
    ) {
        let n = samples.len();
        match validate_labels(buf, spans, limits) {
            Ok(labels) => {
                let s = SeriesSamples { labels, samples };
                match validate_samples(&s, limits, now_ms) {
                    Ok(()) => self.series.push(s),
                    Err(r) => self.rejected.push((r, n)),
                }
            }
            Err(r) => self.rejected.push((r, n)),
        }
    }

    /// Total samples in valid series.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// Validates every series of a decoded request (see [`crate::validate`]); series without
/// samples are dropped.
///
/// `known` is given the fingerprints of the request's series and answers, for each, whether
/// a series with that fingerprint passed validation before (the head holds it): those
/// series skip label validation, which is a function of the label set alone. Their samples'
/// timestamps are still checked. Pass `|f| vec![false; f.len()]` to validate everything.
/// Under a name translation (`metric_name_escaping_scheme` other than `allow-utf-8`) no
/// series skips: the head holds translated names, and a received label set equal to a
/// translated one (`a__b` under `dots`) must still be translated itself.
pub fn validate(
    req: Received,
    limits: &Limits,
    now_ms: i64,
    known: impl FnOnce(&[u64]) -> Vec<bool>,
) -> Validated {
    let mut out = Validated::default();
    let mut series = req.series;
    series.retain(|s| !s.samples.is_empty());
    let fingerprints: Vec<u64> = series
        .iter_mut()
        .map(|s| {
            sort_spans(&req.buf, &mut s.labels);
            sorted_spans_fingerprint(&req.buf, &s.labels)
        })
        .collect();
    let mut known =
        if limits.metric_name_escaping_scheme == crate::validate::NameEscaping::AllowUtf8 {
            known(&fingerprints)
        } else {
            vec![]
        };
    known.resize(fingerprints.len(), false);
    for ((ts, fingerprint), known) in series.into_iter().zip(fingerprints).zip(known) {
        if known {
            let s = SeriesSamples {
                labels: RawLabels::from_sorted_spans_fingerprinted(
                    req.buf.clone(),
                    ts.labels,
                    fingerprint,
                ),
                samples: ts.samples,
            };
            let n = s.samples.len();
            match validate_samples(&s, limits, now_ms) {
                Ok(()) => out.series.push(s),
                Err(r) => out.rejected.push((r, n)),
            }
        } else {
            out.push_raw(req.buf.clone(), ts.labels, ts.samples, limits, now_ms);
        }
    }
    out
}

/// Converts validated series back to a protobuf request (the WAL's record format).
pub fn to_request(series: &[SeriesSamples]) -> WriteRequest {
    WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .pair_slices()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| PbSample {
                        value: x.value,
                        timestamp: x.timestamp_ms,
                    })
                    .collect(),
            })
            .collect(),
        metadata: vec![],
    }
}

/// The snappy-compressed protobuf `WriteRequest` of `series`, as
/// `encode(&to_request(series))` gives it byte for byte, written straight from each
/// series' label buffer: the WAL record of the protocols that do not receive remote
/// write. (Building the `WriteRequest` first cloned a `Bytes` handle per label name and
/// value, a quarter of line protocol's ingest CPU.) The fields are written with prost's
/// own encoding primitives, skipping default values as prost's generated code does.
pub fn encode_series(series: &[SeriesSamples]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
    // A length-delimited field's size: key, length, bytes.
    let delimited = |tag: u32, len: usize| key_len(tag) + encoded_len_varint(len as u64) + len;
    let bytes_field = |tag: u32, b: &[u8]| {
        if b.is_empty() {
            0
        } else {
            delimited(tag, b.len())
        }
    };
    let label_len = |n: &[u8], v: &[u8]| bytes_field(1, n) + bytes_field(2, v);
    let sample_len = |x: &Sample| {
        (if x.value != 0.0 { key_len(1) + 8 } else { 0 })
            + if x.timestamp_ms != 0 {
                key_len(2) + encoded_len_varint(x.timestamp_ms as u64)
            } else {
                0
            }
    };
    let series_len = |s: &SeriesSamples| {
        s.labels
            .pair_bytes()
            .map(|(n, v)| delimited(1, label_len(n, v)))
            .sum::<usize>()
            + s.samples
                .iter()
                .map(|x| delimited(2, sample_len(x)))
                .sum::<usize>()
    };
    let total: usize = series.iter().map(|s| delimited(1, series_len(s))).sum();
    let mut raw: Vec<u8> = Vec::with_capacity(total);
    let put_bytes = |tag: u32, b: &[u8], buf: &mut Vec<u8>| {
        if !b.is_empty() {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(b.len() as u64, buf);
            buf.extend_from_slice(b);
        }
    };
    for s in series {
        encode_key(1, WireType::LengthDelimited, &mut raw);
        encode_varint(series_len(s) as u64, &mut raw);
        for (n, v) in s.labels.pair_bytes() {
            encode_key(1, WireType::LengthDelimited, &mut raw);
            encode_varint(label_len(n, v) as u64, &mut raw);
            put_bytes(1, n, &mut raw);
            put_bytes(2, v, &mut raw);
        }
        for x in &s.samples {
            encode_key(2, WireType::LengthDelimited, &mut raw);
            encode_varint(sample_len(x) as u64, &mut raw);
            if x.value != 0.0 {
                encode_key(1, WireType::SixtyFourBit, &mut raw);
                raw.extend_from_slice(&x.value.to_le_bytes());
            }
            if x.timestamp_ms != 0 {
                encode_key(2, WireType::Varint, &mut raw);
                encode_varint(x.timestamp_ms as u64, &mut raw);
            }
        }
    }
    debug_assert_eq!(raw.len(), total);
    let mut out = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compression of an in-memory buffer cannot fail");
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_encode_as_prost_encodes_their_write_request() {
        // Empty values, zero and negative-zero values, zero and negative timestamps, NaN,
        // long labels (multi-byte lengths), a series without samples.
        let long = "x".repeat(300);
        let series: Vec<SeriesSamples> = vec![
            (
                vec![("__name__", "a"), ("empty", ""), ("long", long.as_str())],
                vec![
                    (0, 0.0),
                    (-5, -0.0),
                    (1_700_000_000_000, 1.5),
                    (7, f64::NAN),
                ],
            ),
            (vec![("__name__", "b")], vec![]),
            (
                vec![("__name__", "c"), ("z", "é")],
                vec![(i64::MIN, f64::INFINITY), (i64::MAX, -1e300)],
            ),
        ]
        .into_iter()
        .map(|(pairs, samples)| SeriesSamples {
            labels: crate::model::RawLabels::from_pairs(pairs),
            samples: samples
                .into_iter()
                .map(|(t, v)| Sample {
                    timestamp_ms: t,
                    value: v,
                })
                .collect(),
        })
        .collect();
        assert_eq!(encode_series(&series), encode(&to_request(&series)));
        assert_eq!(encode_series(&[]), encode(&to_request(&[])));
    }

    /// Label pairs, and samples as (timestamp, value bits) so that NaNs compare equal.
    type Decoded = Vec<(Vec<(Vec<u8>, Vec<u8>)>, Vec<(i64, u64)>)>;

    /// The label pairs and samples of each series, read from a prost-decoded request.
    fn from_prost(req: &WriteRequest) -> Decoded {
        req.timeseries
            .iter()
            .map(|t| {
                let labels = t
                    .labels
                    .iter()
                    .map(|l| (l.name.to_vec(), l.value.to_vec()))
                    .collect();
                let samples = t
                    .samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect();
                (labels, samples)
            })
            .collect()
    }

    fn from_received(r: &Received) -> Decoded {
        let at = |x: (u32, u32)| r.buf[x.0 as usize..x.1 as usize].to_vec();
        r.series
            .iter()
            .map(|t| {
                let labels = t.labels.iter().map(|l| (at(l.name), at(l.value))).collect();
                let samples = t
                    .samples
                    .iter()
                    .map(|s| (s.timestamp_ms, s.value.to_bits()))
                    .collect();
                (labels, samples)
            })
            .collect()
    }

    #[test]
    fn zero_copy_decoding_agrees_with_prost() {
        let label = |n: &str, v: &str| Label {
            name: n.to_string().into(),
            value: v.to_string().into(),
        };
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    // Unsorted, with an empty value and a non-ASCII value: decoding keeps
                    // them as sent (validation sorts and drops).
                    labels: vec![
                        label("job", "n\u{e9}"),
                        label("__name__", "up"),
                        label("x", ""),
                    ],
                    samples: vec![
                        PbSample {
                            value: 1.5,
                            timestamp: 1000,
                        },
                        PbSample {
                            value: f64::from_bits(crate::model::STALE_NAN_BITS),
                            timestamp: -5,
                        },
                    ],
                },
                TimeSeries {
                    labels: vec![label("__name__", "empty")],
                    samples: vec![],
                },
            ],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        };
        let mut raw = req.encode_to_vec();
        // Fields Strata does not read: an exemplar-like field 3 and a varint field 9 inside
        // a TimeSeries, and an unknown fixed32 field 7 at the top level.
        let mut extra_ts = TimeSeries {
            labels: vec![label("__name__", "extra")],
            samples: vec![PbSample {
                value: 2.0,
                timestamp: 7,
            }],
        }
        .encode_to_vec();
        extra_ts.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01, 0x48, 0x05]);
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut raw);
        prost::encoding::encode_varint(extra_ts.len() as u64, &mut raw);
        raw.extend_from_slice(&extra_ts);
        raw.extend_from_slice(&[0x3d, 1, 2, 3, 4]);
        let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let fast = decode_received(&body, 1 << 20).unwrap();
        let slow = decode(&body, 1 << 20).unwrap();
        assert_eq!(slow.timeseries.len(), 3);
        assert_eq!(from_received(&fast), from_prost(&slow));
        assert_eq!(
            fast.series[0].samples[1].value.to_bits(),
            crate::model::STALE_NAN_BITS
        );
        // Every truncation of the body is an error or a shorter valid request, never a panic,
        // and agrees with prost on which.
        for cut in 0..raw.len() {
            let body = snap::raw::Encoder::new().compress_vec(&raw[..cut]).unwrap();
            match (decode_received(&body, 1 << 20), decode(&body, 1 << 20)) {
                (Ok(f), Ok(s)) => assert_eq!(from_received(&f), from_prost(&s), "cut {cut}"),
                (Err(f), Err(_)) => assert!(f.to_string().contains("protobuf"), "{f}"),
                (f, s) => panic!("cut {cut}: zero-copy {f:?}, prost {s:?}"),
            }
        }
        // A known field with the wrong wire type: TimeSeries.labels as a varint.
        let bad = [0x0a, 0x02, 0x08, 0x01];
        let body = snap::raw::Encoder::new().compress_vec(&bad).unwrap();
        assert!(decode(&body, 1 << 20).is_err());
        let e = decode_received(&body, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("TimeSeries.labels"), "{e}");
    }

    #[test]
    fn known_series_skip_label_checks_but_not_time_checks() {
        let series = |name: &str, job: &str, ts: i64| TimeSeries {
            labels: vec![
                Label {
                    name: "job".into(),
                    value: job.to_string().into(),
                },
                Label {
                    name: "__name__".into(),
                    value: name.to_string().into(),
                },
            ],
            samples: vec![PbSample {
                value: 1.0,
                timestamp: ts,
            }],
        };
        let req = WriteRequest {
            timeseries: vec![
                series("up", "a", 1000),
                series("up", "b", 10_000_000),
                series("", "c", 1000),
            ],
            metadata: vec![],
        };
        let body = encode(&req);
        let limits = Limits::default();
        let all = validate(
            decode_received(&body, 1 << 20).unwrap(),
            &limits,
            2000,
            |f| vec![false; f.len()],
        );
        let mut asked = vec![];
        let skip = validate(
            decode_received(&body, 1 << 20).unwrap(),
            &limits,
            2000,
            |f| {
                asked = f.to_vec();
                vec![true, true, false]
            },
        );
        // Under a translation, no series skips it, even one the head says it knows.
        let dots = Limits {
            metric_name_escaping_scheme: crate::validate::NameEscaping::Dots,
            ..Limits::default()
        };
        let translated = validate(decode_received(&body, 1 << 20).unwrap(), &dots, 2000, |f| {
            vec![true; f.len()]
        });
        let names: Vec<_> = translated
            .series
            .iter()
            .map(|s| s.labels.metric_name().to_string())
            .collect();
        assert_eq!(names, vec!["up"]);
        let req_underscore = WriteRequest {
            timeseries: vec![series("my_metric", "a", 1000)],
            metadata: vec![],
        };
        let translated = validate(
            decode_received(&encode(&req_underscore), 1 << 20).unwrap(),
            &dots,
            2000,
            |f| vec![true; f.len()],
        );
        assert_eq!(translated.series[0].labels.metric_name(), "my__metric");
        // The fingerprints asked about are those of the sorted label sets.
        let want = crate::model::Labels::from_pairs([("job", "a"), ("__name__", "up")]);
        assert_eq!(asked[0], want.fingerprint());
        // Same outcome either way: the first series kept with the same labels, the second
        // rejected for its future timestamp even though it is known, the third rejected.
        for v in [&all, &skip] {
            assert_eq!(v.series.len(), 1);
            assert_eq!(v.series[0].labels.fingerprint(), want.fingerprint());
            let pairs: Vec<_> = v.series[0].labels.iter().collect();
            assert_eq!(pairs, vec![("__name__", "up"), ("job", "a")]);
            let reasons: Vec<_> = v.rejected.iter().map(|(r, _)| r.reason()).collect();
            assert_eq!(reasons, vec!["too_far_in_future", "invalid_metric_name"]);
        }
    }

    #[test]
    fn round_trip_and_errors() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![PbSample {
                    value: 1.0,
                    timestamp: 1000,
                }],
            }],
            metadata: vec![],
        };
        let body = encode(&req);
        assert_eq!(decode(&body, 1 << 20).unwrap(), req);
        let e = decode(b"not snappy at all \xff\xff\xff", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("snappy"), "{e}");
        let bad_pb = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        let e = decode(&bad_pb, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("protobuf"), "{e}");
        let e = decode(&body, 4).unwrap_err();
        assert!(matches!(e, IngestError::TooLarge(_)), "{e}");
    }
}
