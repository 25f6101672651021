//! InfluxDB line protocol: `POST /write` (InfluxDB 1.x: `db`, `precision`) and
//! `POST /api/v2/write` (InfluxDB 2.x: `org`, `bucket`, `precision`), parsed by
//! InfluxData's own parser (the `influxdb-line-protocol` crate of InfluxDB IOx, a port of
//! the Go parser: every escaping rule and field type of the line protocol reference,
//! <https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/>).
//!
//! # Mapping (as VictoriaMetrics maps it)
//! Each field of a line is one sample:
//! - metric name `{measurement}_{field}` (`cpu,host=a usage_user=1.5` is
//!   `cpu_usage_user{host="a"}`); names keep the characters they came with (UTF-8 names,
//!   `docs/ingest.md`), or are translated by `metric_name_escaping_scheme`;
//! - tags are labels; the `db` parameter (v1) or `bucket` (v2) is the label `db`
//!   unless the line has a `db` tag;
//! - values: floats as they are, integers (`1i`) and unsigned integers (`1u`) as floats
//!   (exact up to 2^53), booleans as 1 and 0; a string field whose text is a number
//!   (some agents quote numbers) is that number; other string fields are not samples:
//!   they are skipped and counted ([`Parsed::skipped_strings`]);
//! - the timestamp in the request's precision (nanoseconds by default), stored in ms
//!   (rounded down); a line without one takes the server's time.
//!
//! A body with one line that does not parse is rejected whole, with the line's number
//! and the parser's message, so that a client's retry of a fixed body never writes a
//! line twice.

use influxdb_line_protocol::FieldValue;

use crate::error::{IngestError, Result};
use crate::model::{METRIC_NAME_LABEL, Sample};
use crate::receive::remote_write::Validated;
use crate::validate::Limits;

/// The unit of a request's timestamps (the `precision` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (`n`, `ns`; the default).
    Nanoseconds,
    /// Microseconds (`u`, `us`, `µ`).
    Microseconds,
    /// Milliseconds (`ms`).
    Milliseconds,
    /// Seconds (`s`).
    Seconds,
    /// Minutes (`m`, v1 only).
    Minutes,
    /// Hours (`h`, v1 only).
    Hours,
}

impl Precision {
    /// The precision named `s` as InfluxDB 1.x (`n`, `u`, `ms`, `s`, `m`, `h`) or 2.x
    /// (`ns`, `us`, `ms`, `s`) names it; empty is nanoseconds.
    ///
    /// # Errors
    /// [`IngestError::BadRequest`] for another name.
    pub fn parse(s: &str) -> Result<Precision> {
        Ok(match s {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => {
                return Err(IngestError::BadRequest(format!(
                    "invalid precision {other:?}: expected one of ns, us, ms, s (v1 also n, u, m, h)"
                )));
            }
        })
    }

    /// A timestamp `t` in this precision, in ms (rounded down; saturating).
    pub fn to_ms(self, t: i64) -> i64 {
        match self {
            Precision::Nanoseconds => t.div_euclid(1_000_000),
            Precision::Microseconds => t.div_euclid(1_000),
            Precision::Milliseconds => t,
            Precision::Seconds => t.saturating_mul(1_000),
            Precision::Minutes => t.saturating_mul(60_000),
            Precision::Hours => t.saturating_mul(3_600_000),
        }
    }
}

/// What a request says besides its lines.
#[derive(Debug, Clone)]
pub struct Options {
    /// The unit of the lines' timestamps.
    pub precision: Precision,
    /// The database (v1 `db`) or bucket (v2 `bucket`), stored as the label `db`.
    pub db: Option<String>,
}

/// A parsed request.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The samples, validated (those that failed validation are in its `rejected`).
    pub validated: Validated,
    /// String fields that are not numbers: not stored.
    pub skipped_strings: usize,
}

/// The label holding the request's database or bucket.
pub const DB_LABEL: &str = "db";

/// Parses and validates a line protocol body (UTF-8 text, lines separated by `\n`) at
/// server time `now_ms` (ms, UTC: the time of lines without a timestamp).
///
/// # Errors
/// [`IngestError::BadRequest`] when the body is not UTF-8 or a line does not parse
/// (naming the line, counting from 1, and what is wrong with it); nothing of the body is
/// kept then.
pub fn parse(body: &[u8], opts: &Options, limits: &Limits, now_ms: i64) -> Result<Parsed> {
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestError::BadRequest(format!("line protocol body is not UTF-8: {e}")))?;
    let mut out = Parsed::default();
    for (n, line) in influxdb_line_protocol::parse_lines(text).enumerate() {
        let line = line.map_err(|e| {
            IngestError::BadRequest(format!(
                "unable to parse line protocol: line {} (counting non-empty lines): {e}",
                n + 1
            ))
        })?;
        let t = line.timestamp.map_or(now_ms, |t| opts.precision.to_ms(t));
        let mut labels: Vec<(String, String)> = vec![];
        let mut has_db = false;
        if let Some(tags) = &line.series.tag_set {
            for (k, v) in tags {
                has_db |= k.as_str() == DB_LABEL;
                labels.push((k.to_string(), v.to_string()));
            }
        }
        if let (Some(db), false) = (&opts.db, has_db) {
            labels.push((DB_LABEL.to_string(), db.clone()));
        }
        let measurement = line.series.measurement.as_str();
        // The name is the last pair, rewritten for each field (no copy of the tags).
        let name_at = labels.len();
        labels.push((METRIC_NAME_LABEL.to_string(), String::new()));
        for (field, value) in &line.field_set {
            let v = match value {
                FieldValue::F64(v) => *v,
                FieldValue::I64(v) => *v as f64,
                FieldValue::U64(v) => *v as f64,
                FieldValue::Boolean(b) => f64::from(u8::from(*b)),
                FieldValue::String(s) => match s.as_str().trim().parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => {
                        out.skipped_strings += 1;
                        continue;
                    }
                },
            };
            let name = &mut labels[name_at].1;
            name.clear();
            name.push_str(measurement);
            name.push('_');
            name.push_str(field.as_str());
            out.validated.push(
                &labels,
                vec![Sample {
                    timestamp_ms: t,
                    value: v,
                }],
                limits,
                now_ms,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn opts(precision: Precision, db: Option<&str>) -> Options {
        Options {
            precision,
            db: db.map(str::to_string),
        }
    }

    /// `(labels as name=value strings sorted, ms, value)` of each sample.
    fn samples(p: &Parsed) -> Vec<(Vec<String>, i64, f64)> {
        let mut out: Vec<_> = p
            .validated
            .series
            .iter()
            .flat_map(|s| {
                let mut l: Vec<String> = s.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
                l.sort();
                s.samples
                    .iter()
                    .map(move |x| (l.clone(), x.timestamp_ms, x.value))
            })
            .collect();
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_are_samples_named_measurement_underscore_field() {
        let body = b"cpu,host=a,region=west usage_user=1.5,usage_system=2i 1700000000000000000\n\
                     cpu,host=b usage_user=-3e2,up=true,down=F,big=18446744073709551615u 1700000001000000000";
        let p = parse(
            body,
            &opts(Precision::Nanoseconds, Some("telegraf")),
            &Limits::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(p.validated.rejected.len(), 0);
        let t = 1_700_000_000_000;
        assert_eq!(
            samples(&p),
            vec![
                (
                    l(&["__name__=cpu_big", "db=telegraf", "host=b"]),
                    t + 1000,
                    18446744073709551615.0
                ),
                (
                    l(&["__name__=cpu_down", "db=telegraf", "host=b"]),
                    t + 1000,
                    0.0
                ),
                (
                    l(&["__name__=cpu_up", "db=telegraf", "host=b"]),
                    t + 1000,
                    1.0
                ),
                (
                    l(&[
                        "__name__=cpu_usage_system",
                        "db=telegraf",
                        "host=a",
                        "region=west"
                    ]),
                    t,
                    2.0
                ),
                (
                    l(&[
                        "__name__=cpu_usage_user",
                        "db=telegraf",
                        "host=a",
                        "region=west"
                    ]),
                    t,
                    1.5
                ),
                (
                    l(&["__name__=cpu_usage_user", "db=telegraf", "host=b"]),
                    t + 1000,
                    -300.0
                ),
            ]
        );
    }

    #[test]
    fn escapes_follow_the_line_protocol_reference() {
        // From the reference's "Special characters" section: commas, spaces and equal
        // signs escaped in measurements, tag keys, tag values and field keys; double
        // quotes and backslashes in string fields.
        let body =
            br#"my\ meas\,ure,tag\ key\,1=tag\ val\=ue\,2 field\ k\=ey=1,s="a \"q\" \\ b" 10"#;
        let p = parse(
            body,
            &opts(Precision::Seconds, None),
            &Limits::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            samples(&p),
            vec![(
                l(&["__name__=my meas,ure_field k=ey", "tag key,1=tag val=ue,2"]),
                10_000,
                1.0
            )]
        );
        assert_eq!(p.skipped_strings, 1);
    }

    #[test]
    fn string_fields_that_are_numbers_are_kept_and_the_db_tag_wins() {
        let body = b"m,db=own v=\"42.5\",name=\"ok\"";
        let p = parse(
            body,
            &opts(Precision::Nanoseconds, Some("q")),
            &Limits::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            samples(&p),
            vec![(l(&["__name__=m_v", "db=own"]), NOW, 42.5)]
        );
        assert_eq!(p.skipped_strings, 1);
    }

    #[test]
    fn precisions_convert_to_ms_rounding_down() {
        let cases = [
            ("ns", 1_700_000_000_123_456_789, 1_700_000_000_123),
            ("n", -1, -1),
            ("us", 1_700_000_000_123_456, 1_700_000_000_123),
            ("ms", 1_700_000_000_123, 1_700_000_000_123),
            ("s", 1_700_000_000, 1_700_000_000_000),
            ("m", 2, 120_000),
            ("h", 1, 3_600_000),
        ];
        for (name, t, ms) in cases {
            assert_eq!(Precision::parse(name).unwrap().to_ms(t), ms, "{name}");
        }
        let e = Precision::parse("d").unwrap_err();
        assert!(e.to_string().contains("invalid precision"), "{e}");
    }

    #[test]
    fn one_bad_line_rejects_the_body_naming_the_line() {
        let body = b"ok v=1 1\n\n# a comment\nbad,host=a\nok v=2 2";
        let e = parse(
            body,
            &opts(Precision::Seconds, None),
            &Limits::default(),
            NOW,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, IngestError::BadRequest(_)));
        assert!(msg.contains("line 2"), "{msg}");
        for bad in [
            &b"m v=1i2"[..],
            b"m v=\"open",
            b"m v=1 notatime",
            b"m",
            b"\xff v=1",
        ] {
            assert!(
                parse(
                    bad,
                    &opts(Precision::Seconds, None),
                    &Limits::default(),
                    NOW
                )
                .is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Empty bodies and comments only: nothing, no error.
        let p = parse(
            b"\n# nothing\n",
            &opts(Precision::Seconds, None),
            &Limits::default(),
            NOW,
        )
        .unwrap();
        assert!(p.validated.series.is_empty());
    }
}
