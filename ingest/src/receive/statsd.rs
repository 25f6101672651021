//! StatsD and DogStatsD: the line format ([`parse_packet`]) and the per-flush-interval
//! aggregation of its metrics into samples ([`Aggregator`]).
//!
//! # Lines
//! `<name>:<value>[:<value>...]|<type>[|@<sample rate>][|#<tag>:<value>,...][|c:<container
//! id>][|T<unix seconds>]`, several lines a packet separated by `\n` (the DogStatsD
//! datagram format, `https://docs.datadoghq.com/developers/dogstatsd/datagram_shell`, v1.3,
//! which is Etsy StatsD's with tags, several values a line, container ids and timestamps);
//! tags may also be written into the name as InfluxDB (`name,k=v`), Librato (`name#k=v`)
//! and SignalFx (`name[k=v]`) clients do.
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
    let (name, name_tags, name_bad_tags) = name_tags(name);
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
        name,
        values,
        kind,
        rate: 1.0,
        tags: name_tags,
        container: None,
        timestamp_s: None,
        bad_tags: name_bad_tags,
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

/// The name and the tags of the dialects that write them into it, as `statsd_exporter`
/// reads them: SignalFx `name[k=v,...]` (anywhere in the name), Librato `name#k=v,...`,
/// InfluxDB `name,k=v,...`. Returns the bare name, the tags, and the number of tags
/// without `=`.
fn name_tags(name: &str) -> (String, Vec<(String, String)>, u32) {
    let (bare, list) = match (name.find('['), name.find(']')) {
        (Some(a), Some(z)) if a < z => {
            (format!("{}{}", &name[..a], &name[z + 1..]), &name[a + 1..z])
        }
        _ => match name.split_once('#').or_else(|| name.split_once(',')) {
            Some((n, l)) => (n.to_string(), l),
            None => return (name.to_string(), vec![], 0),
        },
    };
    let (mut tags, mut bad) = (vec![], 0);
    for t in list.split(',').filter(|t| !t.is_empty()) {
        match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => tags.push((k.to_string(), v.to_string())),
            _ => bad += 1,
        }
    }
    (bare, tags, bad)
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
    mapper: Mapper,
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

/// The series' labels: the escaped tags, the container id, then the mapped name and
/// labels (`mapped`, [`Mapper::map`]) or else the escaped name; sorted. A later tag of the
/// same name wins, and a mapping's label over a tag.
fn labels(m: &Metric, mapped: Option<(String, Vec<(String, String)>)>) -> LabelSet {
    let mut out: std::collections::BTreeMap<String, String> = Default::default();
    for (k, v) in &m.tags {
        if !v.is_empty() {
            out.insert(escape_name(k), v.clone());
        }
    }
    if let Some(c) = m.container.as_ref().filter(|c| !c.is_empty()) {
        out.insert("container_id".into(), c.clone());
    }
    let name = match mapped {
        Some((name, pairs)) => {
            for (k, v) in pairs {
                if v.is_empty() {
                    out.remove(&k);
                } else {
                    out.insert(k, v);
                }
            }
            name
        }
        None => escape_name(&m.name),
    };
    out.insert("__name__".into(), name);
    out.into_iter().collect()
}

/// `statsd_exporter`'s mapping configuration (its `--statsd.mapping-config` YAML, the
/// part Strata reads): `mappings`, each with `match` (a glob whose `*` matches one
/// dot-separated component, `([^.]*)`, or with `match_type: regex` an anchored regular
/// expression), `name` and `labels` (which may use the match's groups as `$1` or `${1}`),
/// optionally `match_metric_type` (`counter`, `gauge` or `observer`: timers, histograms
/// and distributions) and `action: drop`; and `defaults.match_type`. The first rule that
/// matches a line's name and type applies; a name no rule matches is escaped
/// ([`escape_name`]). Other keys (`buckets`, `quantiles`, `ttl`, `observer_type`, ...)
/// are accepted and not used: Strata's summaries are its own.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MappingConfig {
    /// Settings of every rule.
    #[serde(default)]
    pub defaults: MappingDefaults,
    /// The rules, in order.
    #[serde(default)]
    pub mappings: Vec<MappingRule>,
}

/// `defaults` of a [`MappingConfig`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct MappingDefaults {
    /// How rules without their own `match_type` match.
    #[serde(default)]
    pub match_type: MatchType,
}

/// How a rule's `match` matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// `*` matches one dot-separated component.
    #[default]
    Glob,
    /// A regular expression, anchored at both ends.
    Regex,
}

/// The types a rule's `match_metric_type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// `c`.
    Counter,
    /// `g`.
    Gauge,
    /// `ms`, `h`, `d`.
    Observer,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Rename and label.
    #[default]
    Map,
    /// Drop the line.
    Drop,
}

/// One rule of a [`MappingConfig`].
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MappingRule {
    /// The pattern.
    #[serde(rename = "match")]
    pub pattern: String,
    /// The series name (required unless `action: drop`).
    #[serde(default)]
    pub name: String,
    /// Labels added (an empty value removes a tag's label).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Overrides `defaults.match_type`.
    #[serde(default)]
    pub match_type: Option<MatchType>,
    /// Only lines of this type.
    #[serde(default)]
    pub match_metric_type: Option<MetricType>,
    /// `map` (default) or `drop`.
    #[serde(default)]
    pub action: Action,
}

/// A [`MappingConfig`] ready to match.
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    rules: Vec<(regex::Regex, MappingRule)>,
}

/// What [`Mapper::map`] decides for a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// No rule matched.
    Unmapped,
    /// A rule drops it.
    Drop,
    /// A rule names it: `(name, labels)`.
    To(String, Vec<(String, String)>),
}

impl Mapper {
    /// Reads a mapping configuration (YAML).
    ///
    /// # Errors
    /// A message naming the problem: YAML that is not a mapping configuration, a pattern
    /// that does not compile, a mapping rule without a name. (A name that is not valid
    /// once its groups are filled in is found when a line matches: validation refuses
    /// that series.)
    pub fn parse(yaml: &str) -> Result<Mapper, String> {
        let cfg: MappingConfig =
            yaml_serde::from_str(yaml).map_err(|e| format!("StatsD mapping: {e}"))?;
        let mut rules = vec![];
        for r in cfg.mappings {
            let re = match r.match_type.unwrap_or(cfg.defaults.match_type) {
                MatchType::Glob => {
                    format!("^{}$", regex::escape(&r.pattern).replace(r"\*", "([^.]*)"))
                }
                MatchType::Regex => format!("^(?:{})$", r.pattern),
            };
            let re = regex::Regex::new(&re)
                .map_err(|e| format!("StatsD mapping: match {:?}: {e}", r.pattern))?;
            if r.action == Action::Map && r.name.is_empty() {
                return Err(format!("StatsD mapping: match {:?} has no name", r.pattern));
            }
            rules.push((re, r));
        }
        Ok(Mapper { rules })
    }

    /// The first rule's decision for a line named `name` of type `kind`.
    pub fn map(&self, name: &str, kind: Kind) -> Mapped {
        let ty = match kind {
            Kind::Counter => Some(MetricType::Counter),
            Kind::Gauge => Some(MetricType::Gauge),
            Kind::Timer | Kind::Histogram | Kind::Distribution => Some(MetricType::Observer),
            Kind::Set => None,
        };
        for (re, r) in &self.rules {
            if r.match_metric_type.is_some_and(|t| Some(t) != ty) {
                continue;
            }
            let Some(caps) = re.captures(name) else {
                continue;
            };
            if r.action == Action::Drop {
                return Mapped::Drop;
            }
            let fill = |t: &str| {
                let mut out = String::new();
                caps.expand(t, &mut out);
                out
            };
            let labels = r.labels.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
            return Mapped::To(fill(&r.name), labels);
        }
        Mapped::Unmapped
    }
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
            mapper: Mapper::default(),
        }
    }

    /// The same, naming series by `mapper`.
    pub fn with_mapper(now_ms: i64, mapper: Mapper) -> Self {
        Aggregator {
            mapper,
            ..Aggregator::new(now_ms)
        }
    }

    /// Adds `m` to the current interval; `false` when the mapping drops it.
    pub fn add(&mut self, m: &Metric) -> bool {
        let key = match self.mapper.map(&m.name, m.kind) {
            Mapped::Drop => return false,
            Mapped::Unmapped => labels(m, None),
            Mapped::To(name, pairs) => labels(m, Some((name, pairs))),
        };
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
            return true;
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
        true
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
            // The summary's label replaces a tag of that name.
            let base: LabelSet = l.iter().filter(|(k, _)| k != "quantile").cloned().collect();
            for (q, v) in quantiles {
                let mut l = base.clone();
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
        // Tags written into the name (statsd_exporter's other dialects), then DogStatsD's.
        for line in [
            "req,code=200,bad:1|c|#env:prod",
            "req#code=200,bad:1|c|#env:prod",
            "r[code=200,bad]eq:1|c|#env:prod",
        ] {
            let m = parse_line(line).unwrap();
            assert_eq!(m.name, "req", "{line}");
            assert_eq!(
                m.tags,
                vec![("code".into(), "200".into()), ("env".into(), "prod".into())],
                "{line}"
            );
            assert_eq!(m.bad_tags, 1, "{line}");
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
    fn mapping_rules_rename_label_and_drop_as_statsd_exporter_documents() {
        // The README's examples of `statsd_exporter` (glob with `$n`, regex with `${n}`,
        // a type filter, drop), with a key Strata does not use.
        let m = Mapper::parse(
            r#"
defaults:
  ttl: 0
mappings:
- match: "test.dispatcher.*.*.*"
  name: "dispatcher_events_total"
  labels:
    processor: "$1"
    action: "$2"
    outcome: "$3"
    job: "test_dispatcher"
- match: '(.*)\.(.*)--(.*)\.status\.(.*)\.count'
  match_type: regex
  name: "request_total"
  labels:
    hostname: "${1}"
    exec: "${2}"
    code: "${4}"
- match: "*.timing"
  match_metric_type: observer
  name: "timing_seconds"
  labels:
    service: "$1"
- match: "noisy.*"
  action: drop
"#,
        )
        .unwrap();
        let to = |n: &str, l: &[(&str, &str)]| {
            let mut l: Vec<(String, String)> = l
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            l.sort();
            Mapped::To(n.into(), l)
        };
        assert_eq!(
            m.map("test.dispatcher.FooProcessor.send.success", Kind::Counter),
            to(
                "dispatcher_events_total",
                &[
                    ("action", "send"),
                    ("job", "test_dispatcher"),
                    ("outcome", "success"),
                    ("processor", "FooProcessor")
                ]
            )
        );
        // `*` is one component: four of them after the prefix do not match.
        assert_eq!(
            m.map("test.dispatcher.a.b.c.d", Kind::Counter),
            Mapped::Unmapped
        );
        assert_eq!(
            m.map("foo-host.bar--baz.status.200.count", Kind::Counter),
            to(
                "request_total",
                &[("code", "200"), ("exec", "bar"), ("hostname", "foo-host")]
            )
        );
        assert_eq!(
            m.map("api.timing", Kind::Timer),
            to("timing_seconds", &[("service", "api")])
        );
        assert_eq!(m.map("api.timing", Kind::Gauge), Mapped::Unmapped);
        assert_eq!(m.map("noisy.debug", Kind::Gauge), Mapped::Drop);
        assert!(Mapper::parse("mappings:\n- match: a.*\n").is_err());
        assert!(
            Mapper::parse("mappings:\n- match: '('\n  match_type: regex\n  name: x\n").is_err()
        );

        // In an aggregator: a mapped series, a dropped line, a mapping label over a tag.
        let mut a = Aggregator::with_mapper(0, m);
        let (ok, _) = parse_packet(
            b"test.dispatcher.P.send.ok:2|c|#action:other,env:dev\nnoisy.x:1|g\nplain.name:1|g",
        );
        let kept: Vec<bool> = ok.iter().map(|x| a.add(x)).collect();
        assert_eq!(kept, [true, false, true]);
        let f = a.flush(10);
        assert_eq!(
            f.deltas[0].labels,
            l(&[
                ("__name__", "dispatcher_events_total"),
                ("action", "send"),
                ("env", "dev"),
                ("job", "test_dispatcher"),
                ("outcome", "ok"),
                ("processor", "P")
            ])
        );
        assert_eq!(f.samples.len(), 1);
        assert_eq!(f.samples[0].0, l(&[("__name__", "plain_name")]));
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
            assert!(a.add(m));
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
