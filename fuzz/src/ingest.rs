//! The checks of the ingest paths, shared by the fuzz targets (through `crate::`) and the
//! bounded pass in `tests/it/fuzz.rs` (which includes this file by path): a body goes the
//! way a client's request goes through Strata and must give an answer or a client error
//! (400/413), never a panic. Only `strata_ingest` and `snap` are used here.

use std::collections::HashSet;

use strata_ingest::receive::exposition::{self, Format};
use strata_ingest::receive::remote_write::{self, Validated};
use strata_ingest::{IngestError, Labels, Limits, Sample};

/// The newest sample of the PromQL target's data, and its evaluation time (ms).
pub const T: i64 = 1_700_000_000_000;
/// The clock given to validation.
pub const NOW: i64 = T + 60_000;
/// Most bytes a remote-write body may decompress to here (the server allows 8x its
/// request size limit).
const MAX_DECODED: usize = 1 << 20;

/// Snappy block compression, as remote-write senders compress bodies.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compresses any buffer")
}

/// What validation kept goes through the WAL's record format (as `Ingester::write` logs
/// it) and decodes again (as the WAL replay reads it), series for series.
fn wal_round_trip(v: &Validated) {
    let record = remote_write::encode(&remote_write::to_request(&v.series));
    // The write path's own encoder writes the same bytes.
    assert_eq!(remote_write::encode_series(&v.series), record);
    let back = remote_write::decode_received(&record, usize::MAX)
        .unwrap_or_else(|e| panic!("a WAL record of valid series does not decode: {e}"));
    assert_eq!(back.series.len(), v.series.len());
}

/// A malformed or oversized request: what a client is told (400 or 413).
fn assert_client_error(e: &IngestError) {
    assert!(
        matches!(e, IngestError::BadRequest(m) | IngestError::TooLarge(m) if !m.is_empty()),
        "not a client error: {e:?}"
    );
}

/// A remote-write body (snappy-compressed protobuf) through decoding and validation,
/// without and with the "known series" shortcut the ingester takes for series it has
/// seen (here: those the first pass accepted); the prost decoder too.
pub fn remote_write(body: &[u8]) {
    let limits = Limits::default();
    match remote_write::decode_received(body, MAX_DECODED) {
        Ok(req) => {
            let all = remote_write::validate(req.clone(), &limits, NOW, |f| vec![false; f.len()]);
            let seen: HashSet<u64> = all.series.iter().map(|s| s.labels.fingerprint()).collect();
            let known = remote_write::validate(req, &limits, NOW, |f| {
                f.iter().map(|x| seen.contains(x)).collect()
            });
            wal_round_trip(&all);
            wal_round_trip(&known);
        }
        Err(e) => assert_client_error(&e),
    }
    if let Err(e) = remote_write::decode(body, MAX_DECODED) {
        assert_client_error(&e);
    }
}

/// A remote write 2.0 body (snappy-compressed `io.prometheus.write.v2.Request`) through
/// decoding and translation, with created-timestamp zero samples off and on: what is kept
/// goes through the WAL's record format, and the `*-Written` counts never exceed what was
/// sent.
pub fn remote_write_v2(body: &[u8]) {
    use remote_write::v2;
    match v2::decode(body, MAX_DECODED) {
        Ok(req) => {
            let sent: (usize, usize) = req.timeseries.iter().fold((0, 0), |(s, h), t| {
                (s + t.samples.len(), h + t.histograms.len())
            });
            for ct in [false, true] {
                let t = v2::translate(&req, &Limits::default(), NOW, ct, |f| vec![false; f.len()]);
                assert!(t.written.samples <= sent.0 && t.written.histograms <= sent.1);
                assert_eq!(t.written.exemplars, 0);
                wal_round_trip(&t.validated);
            }
        }
        Err(e) => assert_client_error(&e),
    }
}

/// A JSON push body (`POST /api/v1/metrics`).
pub fn json_push(body: &[u8]) {
    match strata_ingest::receive::json::parse(body, &Limits::default(), NOW) {
        Ok(v) => wal_round_trip(&v),
        Err(e) => assert!(
            matches!(&e, IngestError::BadRequest(m) if !m.is_empty()),
            "not a 400: {e:?}"
        ),
    }
}

/// An InfluxDB line protocol body (`POST /write`, `/api/v2/write`), in every precision,
/// with and without a `db`.
pub fn influx(body: &[u8]) {
    use strata_ingest::receive::influx::{Options, Precision, parse};
    for (precision, db) in [
        (Precision::Nanoseconds, None),
        (Precision::Hours, Some("db".to_string())),
    ] {
        match parse(body, &Options { precision, db }, &Limits::default(), NOW) {
            Ok(p) => wal_round_trip(&p.validated),
            Err(e) => assert!(
                matches!(&e, IngestError::BadRequest(m) if !m.is_empty()),
                "not a 400: {e:?}"
            ),
        }
    }
}

/// An OTLP body as protobuf and as JSON (`POST /v1/metrics`, the gRPC service): decoding,
/// then the translation under every naming strategy and both delta modes, with the
/// running totals of delta series; what it keeps goes through the WAL round trip.
pub fn otlp(body: &[u8]) {
    use strata_ingest::receive::otlp::{
        DeltaState, DeltaTemporality, Encoding, OtlpConfig, TranslationStrategy, decode_request,
        translate,
    };
    let limits = Limits::default();
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        let req = match decode_request(body, encoding) {
            Ok(r) => r,
            Err(e) => {
                assert_client_error(&e);
                continue;
            }
        };
        for (strategy, delta) in [
            (
                TranslationStrategy::UnderscoreEscapingWithSuffixes,
                DeltaTemporality::Cumulative,
            ),
            (
                TranslationStrategy::UnderscoreEscapingWithoutSuffixes,
                DeltaTemporality::Raw,
            ),
            (
                TranslationStrategy::NoUTF8EscapingWithSuffixes,
                DeltaTemporality::Cumulative,
            ),
            (TranslationStrategy::NoTranslation, DeltaTemporality::Raw),
        ] {
            let cfg = OtlpConfig {
                translation_strategy: strategy,
                delta_temporality: delta,
                promote_resource_attributes: vec!["host.name".into(), String::new()],
                keep_identifying_resource_attributes: true,
                ..OtlpConfig::default()
            };
            let mut t = translate(&req, &cfg, &limits, NOW);
            let state = DeltaState::default();
            let unknown = state.unknown(&t);
            state.resume(unknown.into_iter().map(|l| (l, (T, 1.0))));
            let undo = state.apply(&mut t, &limits, NOW);
            wal_round_trip(&t.validated);
            state.undo(undo);
        }
    }
}

/// A StatsD packet: every non-empty line parsed or refused with a reason, its metrics
/// aggregated and flushed, and what the flush writes validated (a series' label names
/// distinct, each name legal after escaping) and through the WAL encoding.
pub fn statsd(packet: &[u8]) {
    use strata_ingest::receive::otlp::DeltaState;
    use strata_ingest::receive::statsd::{Aggregator, parse_packet};
    let limits = Limits::default();
    let (ok, bad) = parse_packet(packet);
    let lines = packet
        .split(|b| *b == b'\n')
        .filter(|l| !l.strip_suffix(b"\r").unwrap_or(l).is_empty())
        .count();
    assert_eq!(
        ok.len() + bad.len(),
        lines,
        "a line neither parsed nor refused"
    );
    let mut agg = Aggregator::new(T);
    for m in &ok {
        agg.add(m);
    }
    let flush = agg.flush(NOW);
    let mut v = Validated::default();
    for (labels, sample) in &flush.samples {
        let names: HashSet<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names.len(),
            labels.len(),
            "duplicate label names in {labels:?}"
        );
        v.push(labels, vec![*sample], &limits, NOW);
    }
    let state = DeltaState::default();
    let mut t = strata_ingest::receive::otlp::Translated {
        validated: v,
        deltas: flush.deltas,
        ..Default::default()
    };
    state.apply(&mut t, &limits, NOW);
    wal_round_trip(&t.validated);
}

/// A rule group as Mimir's ruler API receives it: checked or refused with a message; a
/// group that passes builds its rules, and its label and annotation templates expand
/// (to text or to Prometheus's `<error expanding template: ...>`) for a sample.
pub fn rule_group(body: &str) {
    let Ok(g) = strata_rules::file::parse_group("fuzz", body) else {
        return;
    };
    let group = strata_rules::group::Group::new("fuzz", &g, std::time::Duration::from_secs(60));
    assert_eq!(group.rules.len(), g.rules.len());
    let labels = vec![("instance".to_string(), "a:9100".to_string())];
    let data = strata_rules::template::TemplateData {
        labels: &labels,
        external_labels: &[],
        external_url: "",
        value: 1.5,
    };
    for r in &g.rules {
        for text in r.labels.values().chain(r.annotations.values()) {
            let _ = strata_rules::template::expand("__alert_fuzz", text, &data);
        }
    }
}

/// A scraped body in both text formats, and what the scraper then does with its samples.
pub fn exposition(body: &str) {
    let limits = Limits::default();
    let _ = Format::from_content_type(body);
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        match exposition::parse(body, format) {
            Ok(e) => {
                let mut v = Validated::default();
                for s in &e.samples {
                    let _ = e.type_of(&s.name);
                    let mut names: Vec<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
                    names.sort_unstable();
                    assert!(
                        names.windows(2).all(|w| w[0] != w[1]),
                        "duplicate label names in {s:?}"
                    );
                    let mut pairs = s.labels.clone();
                    pairs.push(("__name__".to_string(), s.name.clone()));
                    let _ = Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                        .fingerprint();
                    v.push(
                        &pairs,
                        vec![Sample {
                            timestamp_ms: s.timestamp_ms.unwrap_or(NOW),
                            value: s.value,
                        }],
                        &limits,
                        NOW,
                    );
                }
                wal_round_trip(&v);
            }
            Err(e) => {
                let lines = body.matches('\n').count();
                assert!(
                    (1..=lines + 2).contains(&e.line) && !e.message.is_empty(),
                    "{format:?}: a bad error {e:?} for a body of {lines} newlines"
                );
            }
        }
    }
}
