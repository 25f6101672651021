//! Prometheus remote write 1.0: the protobuf messages (`prompb/remote.proto` and
//! `prompb/types.proto` of the Prometheus repository, the fields remote write 1.0 uses) and
//! decoding of a snappy-compressed request body.
//!
//! Spec: <https://prometheus.io/docs/specs/prw/remote_write_spec/>. Native histograms
//! (field 4 of `TimeSeries`) and exemplars are not stored: protobuf decoding skips them.

use prost::Message;

use crate::error::IngestError;
use crate::model::{Sample, SeriesSamples};
use crate::validate::{Limits, Rejection, validate_labels, validate_samples};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series, each with its labels and samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata (type, help, unit); accepted and not stored.
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

/// Decompresses (snappy block format, as the spec requires) and decodes a request body.
/// `max_decoded_bytes` caps the decompressed size, checked before allocating.
///
/// # Errors
/// [`IngestError::BadRequest`] naming the problem: bad snappy data, a decompressed size over
/// the limit, or malformed protobuf.
pub fn decode(body: &[u8], max_decoded_bytes: usize) -> Result<WriteRequest, IngestError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| IngestError::BadRequest(format!("invalid snappy-compressed body: {e}")))?;
    if len > max_decoded_bytes {
        return Err(IngestError::TooLarge(format!(
            "decompressed body of {len} bytes exceeds the limit of {max_decoded_bytes} bytes"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| IngestError::BadRequest(format!("invalid snappy-compressed body: {e}")))?;
    WriteRequest::decode(bytes::Bytes::from(raw))
        .map_err(|e| IngestError::BadRequest(format!("invalid protobuf WriteRequest: {e}")))
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
        let raw = pairs
            .iter()
            .map(|(n, v)| (bytes::Bytes::from(n.clone()), bytes::Bytes::from(v.clone())))
            .collect();
        self.push_raw(raw, samples, limits, now_ms);
    }

    /// Validates one series given as raw pairs and samples, keeping it or recording why not.
    pub fn push_raw(
        &mut self,
        pairs: Vec<(bytes::Bytes, bytes::Bytes)>,
        samples: Vec<Sample>,
        limits: &Limits,
        now_ms: i64,
    ) {
        let n = samples.len();
        match validate_labels(pairs, limits) {
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

/// Validates every series of a decoded request (see [`crate::validate`]).
pub fn validate(req: WriteRequest, limits: &Limits, now_ms: i64) -> Validated {
    let mut out = Validated::default();
    for ts in req.timeseries {
        if ts.samples.is_empty() {
            continue;
        }
        let pairs: Vec<(bytes::Bytes, bytes::Bytes)> =
            ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let samples = ts
            .samples
            .iter()
            .map(|s| Sample {
                timestamp_ms: s.timestamp,
                value: s.value,
            })
            .collect();
        out.push_raw(pairs, samples, limits, now_ms);
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
                    .raw()
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.clone(),
                        value: v.clone(),
                    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
