//! How samples arrive: one module per protocol, each turning what a client sends into
//! validated series ([`remote_write::Validated`]) for [`crate::Ingester::write`]. What
//! happens to them next (WAL, head, Delta tables) is the rest of this crate.
//!
//! - [`remote_write`]: Prometheus remote write 1.0 (snappy protobuf), `POST /api/v1/write`.
//! - [`json`]: JSON push, `POST /api/v1/metrics`.
//! - [`influx`]: InfluxDB line protocol, `POST /write` (v1) and `/api/v2/write` (v2).
//! - [`otlp`]: OpenTelemetry metrics (OTLP over HTTP and gRPC; the server binds them).
//! - [`statsd`]: StatsD and DogStatsD lines, aggregated per flush interval.
//! - [`scrape`]: the scrape loops, reading targets' [`exposition`] formats.

pub mod exposition;
pub mod influx;
pub mod json;
pub mod otlp;
pub mod remote_write;
pub mod scrape;
pub mod statsd;

use crate::error::{IngestError, Result};

/// `body` decoded by its `Content-Encoding` (`gzip` or none; `identity` is none), up to
/// `max_bytes` bytes decoded.
///
/// # Errors
/// [`IngestError::BadRequest`] for another encoding or a body that is not gzip;
/// [`IngestError::TooLarge`] when it decodes to more than `max_bytes`.
pub fn decode_content(
    body: bytes::Bytes,
    encoding: Option<&str>,
    max_bytes: usize,
) -> Result<bytes::Bytes> {
    use std::io::Read;
    match encoding.map(str::trim) {
        None | Some("") | Some("identity") => Ok(body),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = vec![];
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(max_bytes as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| IngestError::BadRequest(format!("invalid gzip body: {e}")))?;
            if out.len() > max_bytes {
                return Err(IngestError::TooLarge(format!(
                    "gzip body decodes to more than {max_bytes} bytes"
                )));
            }
            Ok(out.into())
        }
        Some(e) => Err(IngestError::BadRequest(format!(
            "unsupported Content-Encoding {e:?}: send gzip or no encoding"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_decode_within_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
        gz.write_all(&[b'a'; 1000]).unwrap();
        let body = bytes::Bytes::from(gz.finish().unwrap());
        assert_eq!(
            decode_content(body.clone(), Some("gzip"), 1000)
                .unwrap()
                .len(),
            1000
        );
        assert!(matches!(
            decode_content(body, Some("GZIP"), 999),
            Err(IngestError::TooLarge(_))
        ));
        assert!(matches!(
            decode_content("plain".into(), Some("gzip"), 10),
            Err(IngestError::BadRequest(_))
        ));
        assert!(matches!(
            decode_content("x".into(), Some("br"), 10),
            Err(IngestError::BadRequest(_))
        ));
        assert_eq!(decode_content("x".into(), None, 10).unwrap(), "x");
    }
}
