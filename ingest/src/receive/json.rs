//! JSON push: `POST /api/v1/metrics` with a list of
//! `{"metric": name, "tags": {label: value}, "timestamp": unix_seconds, "value": number}`
//! (the OpenTSDB / KairosDB style). `timestamp` may be fractional seconds; it is stored in
//! milliseconds (rounded to nearest).

use serde::Deserialize;

use crate::error::{IngestError, Result};
use crate::model::{METRIC_NAME_LABEL, Sample};
use crate::receive::remote_write::Validated;
use crate::validate::Limits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Point {
    metric: String,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
    timestamp: f64,
    value: f64,
}

/// Parses and validates a JSON push body.
///
/// # Errors
/// [`IngestError::BadRequest`] when the body is not a JSON array of points (the message
/// gives serde's line and column), when a point lacks a field, or when a tag is named
/// `__name__`. Points that parse but fail validation are returned as rejections.
pub fn parse(body: &[u8], limits: &Limits, now_ms: i64) -> Result<Validated> {
    let points: Vec<Point> = serde_json::from_slice(body).map_err(|e| {
        IngestError::BadRequest(format!(
            "invalid JSON body: {e}; expected a list of {{\"metric\", \"tags\", \"timestamp\" (Unix seconds), \"value\"}} objects"
        ))
    })?;
    let mut out = Validated::default();
    for p in points {
        if p.tags.contains_key(METRIC_NAME_LABEL) {
            return Err(IngestError::BadRequest(format!(
                "tag {METRIC_NAME_LABEL:?} is not allowed; use \"metric\""
            )));
        }
        if !p.timestamp.is_finite() {
            return Err(IngestError::BadRequest(format!(
                "invalid timestamp {} for metric {:?}",
                p.timestamp, p.metric
            )));
        }
        let mut pairs: Vec<(String, String)> = p.tags.into_iter().collect();
        pairs.push((METRIC_NAME_LABEL.to_string(), p.metric));
        out.push(
            &pairs,
            vec![Sample {
                timestamp_ms: (p.timestamp * 1000.0).round() as i64,
                value: p.value,
            }],
            limits,
            now_ms,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points() {
        let body =
            br#"[{"metric":"temp","tags":{"room":"a"},"timestamp":1700000000.5,"value":21.5},
                        {"metric":"","timestamp":1,"value":1}]"#;
        let v = parse(body, &Limits::default(), 1_800_000_000_000).unwrap();
        assert_eq!(v.series.len(), 1);
        assert_eq!(v.series[0].labels.get("room"), Some("a"));
        assert_eq!(v.series[0].samples[0].timestamp_ms, 1_700_000_000_500);
        assert_eq!(v.rejected.len(), 1);
        let e = parse(b"{not json", &Limits::default(), 0).unwrap_err();
        assert!(e.to_string().contains("invalid JSON body"), "{e}");
    }

    #[test]
    fn values_are_stored_bit_for_bit() {
        // The shortest round-trip text of a double (what Python's json, Go's and
        // JavaScript's print) reads back as that double: serde_json's default parser was
        // 1 ulp off on this one (it needs `float_roundtrip`).
        for text in [
            "0.09620354791941223",
            "2.376593413849433",
            "1e-310",
            "1.7976931348623157e308",
        ] {
            let body = format!(r#"[{{"metric":"m","timestamp":1700000000,"value":{text}}}]"#);
            let v = parse(body.as_bytes(), &Limits::default(), 1_800_000_000_000).unwrap();
            let want: f64 = text.parse().unwrap();
            assert_eq!(
                v.series[0].samples[0].value.to_bits(),
                want.to_bits(),
                "{text}"
            );
        }
    }
}
