//! StatsD and DogStatsD: the line format ([`parse_packet`]) and the per-flush-interval
//! aggregation of its metrics into samples ([`Aggregator`]).
//!
//! # Lines
//! `<name>:<value>[:<value>...]|<type>[|@<sample rate>][|#<tag>:<value>,...][|c:<container
//! id>][|T<unix seconds>]`, several lines a packet separated by `\n` (the DogStatsD
//! datagram format, `https://docs.datadoghq.com/developers/dogstatsd/datagram_shell`, v1.3,
//! which is Etsy StatsD's with tags, several values a line, container ids and timestamps).
//! Types: `c` counter, `g` gauge (a value with a sign, `+3` or `-3`, changes the gauge
//! rather than setting it, as Etsy StatsD and `statsd_exporter` do), `ms` timer, `h`
//! histogram, `d` distribution, `s` set. Other fields (the agent's `e:` and `card:`) are
//! ignored. Events (`_e{...}`) and service checks (`_sc|...`) are refused. A malformed line is refused with its [`Malformed`] reason and the other
//! lines of its packet still count; a malformed tag (no `:`) is left out of its line and
//! counted, as `statsd_exporter` does.
//!
//! # Names
//! As `statsd_exporter` names them without a mapping (`mapper/escape.go`, `EscapeMetricName`):
//! each character outside `[a-zA-Z0-9_]` becomes `_`, and a leading digit gets a `_` before
//! it; tag names likewise. Tags become labels; a container id becomes the label
//! `container_id`.
//!
//! # What a flush writes ([`Aggregator::flush`], every `flush_interval`)
//! - A counter: its increase over the interval, each value divided by its sample rate, as a
//!   [`DeltaPoint`] (made a running total by [`super::otlp::DeltaState`], as OTLP delta sums
//!   are), named as sent.
//! - A gauge: its value, every flush once set (as `statsd_exporter` exposes a gauge until
//!   it restarts).
//! - A timer, histogram or distribution: a summary of the interval's values (a timer's
//!   milliseconds as seconds, as `statsd_exporter` observes them): `<name>_count` and
//!   `<name>_sum` (delta points, so running totals; each value counted as 1 / its sample
//!   rate), and `<name>{quantile="φ"}` for φ = 0 (the minimum), 0.5, 0.9, 0.99 (from a KLL
//!   sketch of the interval's values, [`crate::sketch`]: rank error about 1.65%) and 1 (the
//!   maximum; the `quantile` label replaces a tag of that name).
//! - A set: the number of distinct values sent in the interval, estimated by an HLL sketch
//!   ([`crate::sketch::new_hll`]; exact below a few hundred).
//! - A line with a timestamp (`|T`, counters and gauges only) is not aggregated with
//!   lines without one: its value is written at that time (a counter's values at one time
//!   summed; its running total refuses a time not after the series' last point).

use std::collections::HashMap;

use datasketches::common::SearchCriteria;
use datasketches::hll::HllSketch;

use super::otlp::{DeltaPoint, LabelSet};
use crate::model::Sample;
use crate::sketch::{Kll, kll_update, new_hll, new_kll};

/// A metric's type, from its line's type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `c`.
    Counter,
    /// `g`.
    Gauge,
    /// `ms`: values in milliseconds.
    Timer,
    /// `h`.
    Histogram,
    /// `d`.
    Distribution,
    /// `s`: values are members, counted distinct.
    Set,
}

/// One value of a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Number(f64),
    /// A gauge's change (`+x` or `-x`).
    GaugeDelta(f64),
    /// A set member.
    Member(String),
}

/// A parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The name as sent.
    pub name: String,
    /// Its values (at least one).
    pub values: Vec<Value>,
    /// The type.
    pub kind: Kind,
    /// The sample rate, in (0, 1]; 1 when not sent.
    pub rate: f64,
    /// Tags as `(name, value)`, as sent.
    pub tags: Vec<(String, String)>,
    /// The container id (`|c:`).
    pub container: Option<String>,
    /// The timestamp (`|T`), Unix seconds.
    pub timestamp_s: Option<i64>,
    /// Tags left out for having no `:`.
    pub bad_tags: u32,
}

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not UTF-8.
    NotUtf8,
    /// No `:` between name and value, or no `|type`.
    Line,
    /// An empty name.
    EmptyName,
    /// A value that is not a number (or an empty one).
    Value,
    /// A type other than `c`, `g`, `ms`, `h`, `d`, `s`.
    Type,
    /// A negative counter increment.
    NegativeCounter,
    /// A sample rate that is not a number in (0, 1].
    SampleRate,
    /// A timestamp that is not a whole number of seconds, or on a type other than a
    /// counter or a gauge.
    Timestamp,
    /// A DogStatsD event or service check.
    Event,
}

impl Malformed {
    /// The reason as `/metrics` counts it.
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::NotUtf8 => "not_utf8",
            Malformed::Line => "malformed_line",
            Malformed::EmptyName => "empty_name",
            Malformed::Value => "malformed_value",
            Malformed::Type => "unknown_type",
            Malformed::NegativeCounter => "illegal_negative_counter",
            Malformed::SampleRate => "invalid_sample_rate",
            Malformed::Timestamp => "invalid_timestamp",
            Malformed::Event => "events_unsupported",
        }
    }
}

/// Parses one line (without its `\n`).
///
/// # Errors
/// The [`Malformed`] reason of a line that is not a metric.
pub fn parse_line(line: &str) -> Result<Metric, Malformed> {
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(Malformed::Event);
    }
    let mut fields = line.split('|');
    let head = fields.next().unwrap_or_default();
    let (name, values) = head.split_once(':').ok_or(Malformed::Line)?;
    if name.is_empty() {
        return Err(Malformed::EmptyName);
    }
    let kind = match fields.next().ok_or(Malformed::Line)? {
        "c" => Kind::Counter,
        "g" => Kind::Gauge,
        "ms" => Kind::Timer,
        "h" => Kind::Histogram,
        "d" => Kind::Distribution,
        "s" => Kind::Set,
        _ => return Err(Malformed::Type),
    };
    let values = values
        .split(':')
        .map(|v| value(v, kind))
        .collect::<Result<Vec<_>, _>>()?;
    let mut m = Metric {
        name: name.to_string(),
        values,
        kind,
        rate: 1.0,
        tags: vec![],
        container: None,
        timestamp_s: None,
        bad_tags: 0,
    };
    for f in fields.filter(|f| !f.is_empty()) {
        if let Some(r) = f.strip_prefix('@') {
            m.rate = r
                .parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0 && *r <= 1.0)
                .ok_or(Malformed::SampleRate)?;
        } else if let Some(tags) = f.strip_prefix('#') {
            for t in tags.split(',').filter(|t| !t.is_empty()) {
                match t.split_once(':') {
                    Some((k, v)) if !k.is_empty() => m.tags.push((k.into(), v.into())),
                    _ => m.bad_tags += 1,
                }
            }
        } else if let Some(c) = f.strip_prefix("c:") {
            m.container = Some(c.to_string());
        } else if let Some(t) = f.strip_prefix('T') {
            if !matches!(kind, Kind::Counter | Kind::Gauge) {
                return Err(Malformed::Timestamp);
            }
            m.timestamp_s = Some(t.parse().map_err(|_| Malformed::Timestamp)?);
        }
        // Other fields (the agent's own: `e:` external data, `card:` tag cardinality) do not
        // change what is stored.
    }
    Ok(m)
}

fn value(v: &str, kind: Kind) -> Result<Value, Malformed> {
    if kind == Kind::Set {
        return if v.is_empty() {
            Err(Malformed::Value)
        } else {
            Ok(Value::Member(v.to_string()))
        };
    }
    let x: f64 = v.parse().map_err(|_| Malformed::Value)?;
    if kind == Kind::Gauge && (v.starts_with('+') || v.starts_with('-')) {
        return Ok(Value::GaugeDelta(x));
    }
    if kind == Kind::Counter && x < 0.0 {
        return Err(Malformed::NegativeCounter);
    }
    Ok(Value::Number(x))
}

/// Parses a packet (lines separated by `\n`; empty lines and a trailing `\r` ignored):
/// its metrics, and the reasons of the lines refused.
pub fn parse_packet(packet: &[u8]) -> (Vec<Metric>, Vec<Malformed>) {
    let (mut ok, mut bad) = (vec![], vec![]);
    for line in packet.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match std::str::from_utf8(line) {
            Ok(l) => match parse_line(l) {
                Ok(m) => ok.push(m),
                Err(e) => bad.push(e),
            },
            Err(_) => bad.push(Malformed::NotUtf8),
        }
    }
    (ok, bad)
}

/// `name` with each character outside `[a-zA-Z0-9_]` replaced by `_`, and `_` before a
/// leading digit (`statsd_exporter`'s `EscapeMetricName`).
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The quantiles a summary of timer values gets, besides its minimum (0) and maximum (1).
pub const SUMMARY_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// A timer's, histogram's or distribution's values in the current interval.
struct Observed {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    kll: Kll,
}

/// The metrics received since the last flush, and the gauges' values.
pub struct Aggregator {
    counters: HashMap<LabelSet, f64>,
    observed: HashMap<LabelSet, Observed>,
    sets: HashMap<LabelSet, HllSketch>,
    gauges: HashMap<LabelSet, f64>,
    /// Lines with their own timestamp, by series and time (ms): `(value, is a counter)`,
    /// a counter's values summed, a gauge's last kept.
    stamped: HashMap<(LabelSet, i64), (f64, bool)>,
    last_flush_ms: i64,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("counters", &self.counters.len())
            .field("observed", &self.observed.len())
            .field("sets", &self.sets.len())
            .field("gauges", &self.gauges.len())
            .finish_non_exhaustive()
    }
}

/// What a flush writes: samples, and delta points to make running totals of.
#[derive(Debug, Default)]
pub struct Flush {
    /// `(labels, sample)`.
    pub samples: Vec<(LabelSet, Sample)>,
    /// Counter increases and summary counts and sums over the interval.
    pub deltas: Vec<DeltaPoint>,
}

/// The series' labels: the escaped name (with `suffix`), the escaped tags, and the
/// container id; sorted. A later tag of the same name wins.
fn labels(m: &Metric, suffix: &str) -> LabelSet {
    let mut out: std::collections::BTreeMap<String, String> = Default::default();
    for (k, v) in &m.tags {
        if !v.is_empty() {
            out.insert(escape_name(k), v.clone());
        }
    }
    if let Some(c) = m.container.as_ref().filter(|c| !c.is_empty()) {
        out.insert("container_id".into(), c.clone());
    }
    out.insert(
        "__name__".into(),
        format!("{}{suffix}", escape_name(&m.name)),
    );
    out.into_iter().collect()
}

impl Aggregator {
    /// An aggregator whose first interval starts at `now_ms` (ms since the epoch).
    pub fn new(now_ms: i64) -> Self {
        Aggregator {
            counters: HashMap::new(),
            observed: HashMap::new(),
            sets: HashMap::new(),
            gauges: HashMap::new(),
            stamped: HashMap::new(),
            last_flush_ms: now_ms,
        }
    }

    /// Adds `m` to the current interval.
    pub fn add(&mut self, m: &Metric) {
        let key = labels(m, "");
        if let Some(t) = m.timestamp_s {
            let counter = m.kind == Kind::Counter;
            for v in &m.values {
                if let Value::Number(x) | Value::GaugeDelta(x) = v {
                    let at = self
                        .stamped
                        .entry((key.clone(), t.saturating_mul(1000)))
                        .or_insert((0.0, counter));
                    at.0 = if counter { at.0 + x / m.rate } else { *x };
                }
            }
            return;
        }
        match m.kind {
            Kind::Counter => {
                let c = self.counters.entry(key).or_insert(0.0);
                for v in &m.values {
                    if let Value::Number(x) = v {
                        *c += x / m.rate;
                    }
                }
            }
            Kind::Gauge => {
                let g = self.gauges.entry(key).or_insert(0.0);
                for v in &m.values {
                    match v {
                        Value::Number(x) => *g = *x,
                        Value::GaugeDelta(d) => *g += d,
                        Value::Member(_) => {}
                    }
                }
            }
            Kind::Timer | Kind::Histogram | Kind::Distribution => {
                let scale = if m.kind == Kind::Timer { 1e-3 } else { 1.0 };
                let o = self.observed.entry(key).or_insert_with(|| Observed {
                    count: 0.0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    kll: new_kll(),
                });
                for v in &m.values {
                    if let Value::Number(x) = v {
                        let x = x * scale;
                        o.count += 1.0 / m.rate;
                        o.sum += x / m.rate;
                        o.min = o.min.min(x);
                        o.max = o.max.max(x);
                        kll_update(&mut o.kll, x);
                    }
                }
            }
            Kind::Set => {
                let s = self.sets.entry(key).or_insert_with(new_hll);
                for v in &m.values {
                    if let Value::Member(x) = v {
                        s.update(x.as_str());
                    }
                }
            }
        }
    }

    /// Ends the current interval at `now_ms`: what it writes (see the module doc), the
    /// samples at `now_ms`, the delta points over `(last flush, now_ms]`.
    pub fn flush(&mut self, now_ms: i64) -> Flush {
        let start_ms = self.last_flush_ms;
        self.last_flush_ms = now_ms;
        let mut out = Flush::default();
        let delta = |labels: LabelSet, value: f64| DeltaPoint {
            labels,
            start_ms,
            t_ms: now_ms,
            value,
            stale: false,
        };
        let sample = |value: f64| Sample {
            timestamp_ms: now_ms,
            value,
        };
        for (l, v) in self.counters.drain() {
            out.deltas.push(delta(l, v));
        }
        for (l, o) in self.observed.drain() {
            let with_name = |suffix: &str| {
                let mut l = l.clone();
                if let Some((_, n)) = l.iter_mut().find(|(k, _)| k == "__name__") {
                    n.push_str(suffix);
                }
                l
            };
            out.deltas.push(delta(with_name("_count"), o.count));
            out.deltas.push(delta(with_name("_sum"), o.sum));
            let mut quantiles = vec![(0.0, o.min)];
            for q in SUMMARY_QUANTILES {
                if let Ok(Some(x)) = o.kll.quantile(q, SearchCriteria::Inclusive) {
                    quantiles.push((q, f64::from(x.into_inner())));
                }
            }
            quantiles.push((1.0, o.max));
            for (q, v) in quantiles {
                // The summary's label replaces a tag of that name.
                let mut l: LabelSet = l.iter().filter(|(k, _)| k != "quantile").cloned().collect();
                l.push(("quantile".into(), crate::model::FloatText(q).to_string()));
                l.sort();
                out.samples.push((l, sample(v)));
            }
        }
        for (l, s) in self.sets.drain() {
            out.samples.push((l, sample(s.estimate().round())));
        }
        for (l, v) in &self.gauges {
            out.samples.push((l.clone(), sample(*v)));
        }
        for ((l, t), (v, counter)) in self.stamped.drain() {
            if counter {
                out.deltas.push(DeltaPoint {
                    labels: l,
                    start_ms: t,
                    t_ms: t,
                    value: v,
                    stale: false,
                });
            } else {
                out.samples.push((
                    l,
                    Sample {
                        timestamp_ms: t,
                        value: v,
                    },
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> LabelSet {
        let mut v: LabelSet = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn lines_parse_with_every_field() {
        let m =
            parse_line("api.latency:12.5:7|ms|@0.5|#env:prod,region:eu,flag|c:abc123|").unwrap();
        assert_eq!(m.name, "api.latency");
        assert_eq!(m.values, vec![Value::Number(12.5), Value::Number(7.0)]);
        assert_eq!((m.kind, m.rate), (Kind::Timer, 0.5));
        assert_eq!(
            m.tags,
            vec![
                ("env".into(), "prod".into()),
                ("region".into(), "eu".into())
            ]
        );
        assert_eq!((m.container.as_deref(), m.bad_tags), (Some("abc123"), 1));
        let g = parse_line("temp:-2|g|T1700000000").unwrap();
        assert_eq!(g.values, vec![Value::GaugeDelta(-2.0)]);
        assert_eq!(g.timestamp_s, Some(1_700_000_000));
        assert_eq!(
            parse_line("users:alice|s").unwrap().values,
            vec![Value::Member("alice".into())]
        );
        for (t, k) in [
            ("h", Kind::Histogram),
            ("d", Kind::Distribution),
            ("c", Kind::Counter),
        ] {
            assert_eq!(parse_line(&format!("x:1|{t}")).unwrap().kind, k);
        }
        // The agent's own fields change nothing.
        let plain = parse_line("x:1|c|#a:b").unwrap();
        assert_eq!(
            parse_line("x:1|c|#a:b|e:it-false,cn-x|card:high").unwrap(),
            plain
        );
    }

    #[test]
    fn malformed_lines_are_refused_with_their_reason() {
        for (line, why) in [
            ("nocolon|c", Malformed::Line),
            ("a:1", Malformed::Line),
            (":1|c", Malformed::EmptyName),
            ("a:x|c", Malformed::Value),
            ("a:|g", Malformed::Value),
            ("a:|s", Malformed::Value),
            ("a:1|q", Malformed::Type),
            ("a:-1|c", Malformed::NegativeCounter),
            ("a:1|c|@0", Malformed::SampleRate),
            ("a:1|c|@2", Malformed::SampleRate),
            ("a:1|c|@x", Malformed::SampleRate),
            ("a:1|ms|T123", Malformed::Timestamp),
            ("a:1|c|T1.5", Malformed::Timestamp),
            ("_e{5,4}:title|text", Malformed::Event),
            ("_sc|check|0", Malformed::Event),
        ] {
            assert_eq!(parse_line(line), Err(why), "{line}");
        }
        let (ok, bad) = parse_packet(b"a:1|c\n\nb:2|g\r\nbad\n\xff:1|c\nc:3|c");
        assert_eq!(
            ok.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(bad, [Malformed::Line, Malformed::NotUtf8]);
    }

    #[test]
    fn names_are_escaped_as_statsd_exporter_escapes_them() {
        assert_eq!(escape_name("http.request-latency"), "http_request_latency");
        assert_eq!(escape_name("1abc"), "_1abc");
        assert_eq!(escape_name("h\u{e9}llo"), "h_llo");
        assert_eq!(escape_name("ok_Name9"), "ok_Name9");
    }

    fn add(a: &mut Aggregator, lines: &str) {
        let (ok, bad) = parse_packet(lines.as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        for m in &ok {
            a.add(m);
        }
    }

    #[test]
    fn a_flush_writes_each_type_as_documented() {
        let mut a = Aggregator::new(1_000);
        add(
            &mut a,
            "req.count:1|c|#code:200\nreq.count:2|c|@0.5|#code:200\n\
             temp:10|g\ntemp:+3|g\ntemp:-1|g\n\
             lat:250|ms\nlat:500|ms|@0.5\n\
             users:a|s\nusers:b|s\nusers:a|s\n\
             q:5|g|T1700000000\nhits:1|c|T1700000000\nhits:2|c|T1700000000",
        );
        for i in 1..=100 {
            add(&mut a, &format!("size:{i}|h"));
        }
        let f = a.flush(11_000);
        let deltas: HashMap<LabelSet, (i64, i64, f64)> = f
            .deltas
            .iter()
            .map(|d| (d.labels.clone(), (d.start_ms, d.t_ms, d.value)))
            .collect();
        // 1 + 2 / 0.5.
        assert_eq!(
            deltas[&l(&[("__name__", "req_count"), ("code", "200")])],
            (1_000, 11_000, 5.0)
        );
        // Timer milliseconds as seconds: 0.25 and 0.5 at rate 0.5 (counted twice).
        assert_eq!(
            deltas[&l(&[("__name__", "lat_count")])],
            (1_000, 11_000, 3.0)
        );
        assert_eq!(
            deltas[&l(&[("__name__", "lat_sum")])],
            (1_000, 11_000, 1.25)
        );
        assert_eq!(deltas[&l(&[("__name__", "size_count")])].2, 100.0);
        assert_eq!(deltas[&l(&[("__name__", "size_sum")])].2, 5050.0);
        // The two timestamped counter lines at one time, summed, at that time.
        let t = 1_700_000_000_000;
        assert_eq!(deltas[&l(&[("__name__", "hits")])], (t, t, 3.0));
        assert_eq!(deltas.len(), 6);

        let samples: HashMap<LabelSet, (i64, f64)> = f
            .samples
            .iter()
            .map(|(l, s)| (l.clone(), (s.timestamp_ms, s.value)))
            .collect();
        let at = |pairs: &[(&str, &str)]| samples[&l(pairs)];
        assert_eq!(at(&[("__name__", "temp")]), (11_000, 12.0));
        assert_eq!(at(&[("__name__", "users")]), (11_000, 2.0));
        assert_eq!(at(&[("__name__", "q")]), (t, 5.0));
        // Fewer values than the sketch's k: its quantiles are exact (inclusive ranks).
        for (q, want) in [
            ("0", 0.25),
            ("0.5", 0.25),
            ("0.9", 0.5),
            ("0.99", 0.5),
            ("1", 0.5),
        ] {
            assert_eq!(
                at(&[("__name__", "lat"), ("quantile", q)]),
                (11_000, want),
                "{q}"
            );
        }
        for (q, want) in [
            ("0", 1.0),
            ("0.5", 50.0),
            ("0.9", 90.0),
            ("0.99", 99.0),
            ("1", 100.0),
        ] {
            assert_eq!(at(&[("__name__", "size"), ("quantile", q)]).1, want, "{q}");
        }
        assert_eq!(samples.len(), 3 + 10);

        // The next interval: the gauge again, nothing else; a tag becomes a label and a
        // container id `container_id`.
        add(&mut a, "jobs.done:4|c|#queue.name:emails|c:abc");
        let f = a.flush(21_000);
        assert_eq!(f.samples.len(), 1);
        assert_eq!(f.samples[0].1.value, 12.0);
        assert_eq!(f.deltas.len(), 1);
        assert_eq!(
            f.deltas[0].labels,
            l(&[
                ("__name__", "jobs_done"),
                ("container_id", "abc"),
                ("queue_name", "emails")
            ])
        );
        assert_eq!((f.deltas[0].start_ms, f.deltas[0].value), (11_000, 4.0));
    }
}
