//! OpenTelemetry metrics (OTLP): `ExportMetricsServiceRequest`s, from `POST /v1/metrics`
//! and `POST /api/v1/otlp/v1/metrics` (protobuf or JSON, gzip) and from the gRPC service
//! `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`, translated into
//! Prometheus series as Prometheus 3 translates them
//! (`storage/remote/otlptranslator/prometheusremotewrite`, names by the
//! `prometheus/otlptranslator` module; the OpenTelemetry specification's "Prometheus and
//! OpenMetrics Compatibility").
//!
//! # Mapping
//! - **Names** by [`TranslationStrategy`] (Prometheus 3's `otlp.translation_strategy`;
//!   default `UnderscoreEscapingWithSuffixes`): unit suffixes (`s` -> `_seconds`, `By/s`
//!   -> `_bytes_per_second`, `{packet}` -> nothing), `_total` for monotonic sums, `_ratio`
//!   for gauges of unit `1`; label names escaped to `[a-zA-Z0-9_]` (a leading digit gets
//!   `key_`, a leading single `_` gets `key`) when names are, attributes whose names
//!   collide joined with `;` in the order of their original names.
//! - **Resource**: `job` is `service.namespace/service.name` (or `service.name`),
//!   `instance` is `service.instance.id`; the other resource attributes are labels only
//!   when listed in `promote_resource_attributes`, and are the labels of a `target_info`
//!   series (value 1, every 2.5 minutes across the request's timestamps, as Prometheus's
//!   `addResourceTargetInfo`), with the three identifying ones kept too when
//!   `keep_identifying_resource_attributes`.
//! - **Points**: a gauge is one series; a sum is one series, `_total` when monotonic; an
//!   explicit-bucket histogram is the classic `_bucket{le}` (cumulative counts, `+Inf` =
//!   `count`), `_sum` (when sent) and `_count`; an exponential histogram is the same classic
//!   shape with one `_bucket` series per exponential bucket, each at its upper bound
//!   (`base^(index+1)` for positive buckets, `-base^index` for negative ones, `le` =
//!   `zero_threshold` for the zero bucket, so every bucket is kept at the scale it was sent
//!   in, and `histogram_quantile` reads it as a classic histogram); a summary is
//!   `{quantile}` series, `_sum` and `_count`. A point flagged "no recorded value" writes
//!   staleness markers. Timestamps are ns, stored in ms (rounded down).
//! - **Delta temporality** (sums and histograms): converted to cumulative by
//!   [`DeltaState`] (default; the running totals are resumed after a restart from the last
//!   stored values), or stored as sent with `delta_temporality = "raw"` (no `_total`: a
//!   raw delta is not a counter). Unspecified temporality is rejected, as the
//!   specification says.
//!
//! Points that cannot be translated (an empty name, an unspecified temporality, a delta
//! older than its series' last) are rejected and counted, the rest of the request kept:
//! OTLP's `partial_success`.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, Gauge, HistogramDataPoint,
    NumberDataPoint, Sum, SummaryDataPoint, metric, number_data_point,
};
use serde::Deserialize;

use crate::model::{FloatText, METRIC_NAME_LABEL, Sample, stale_nan};
use crate::receive::remote_write::Validated;
use crate::validate::Limits;

/// How OTLP metric and label names become Prometheus names (Prometheus 3's
/// `otlp.translation_strategy`, `prometheus/otlptranslator` `strategy.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TranslationStrategy {
    /// Names escaped to Prometheus's legacy charset, with unit and type suffixes (the
    /// default): `http.server.duration` in `s` is `http_server_duration_seconds`.
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Escaped, without suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// UTF-8 names kept, with suffixes: `http.server.duration_seconds`.
    NoUTF8EscapingWithSuffixes,
    /// Names as sent.
    NoTranslation,
}

impl TranslationStrategy {
    fn escapes(self) -> bool {
        matches!(
            self,
            Self::UnderscoreEscapingWithSuffixes | Self::UnderscoreEscapingWithoutSuffixes
        )
    }
}

/// What to do with points of delta temporality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeltaTemporality {
    /// Convert to cumulative ([`DeltaState`]; the default).
    #[default]
    Cumulative,
    /// Store each point's value as sent.
    Raw,
}

/// The `[otlp]` configuration section.
///
/// ```toml
/// [otlp]
/// grpc_addr = "127.0.0.1:4317"     # the gRPC receiver; "" for none
/// translation_strategy = "UnderscoreEscapingWithSuffixes"
/// promote_resource_attributes = ["deployment.environment", "k8s.namespace.name"]
/// keep_identifying_resource_attributes = false
/// delta_temporality = "cumulative" # or "raw"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// The gRPC receiver's address (`host:port`); empty for none. Default
    /// `127.0.0.1:4317`, OTLP's port: when that address is taken (a collector on the same
    /// host), Strata logs a warning and serves without it; any other address must bind.
    pub grpc_addr: String,
    /// How names are translated.
    pub translation_strategy: TranslationStrategy,
    /// Resource attributes that become labels of every series of their resource.
    pub promote_resource_attributes: Vec<String>,
    /// Keep `service.name`, `service.namespace` and `service.instance.id` as labels of
    /// `target_info` (they are `job` and `instance` already).
    pub keep_identifying_resource_attributes: bool,
    /// Delta sums and histograms: converted to cumulative, or kept raw.
    pub delta_temporality: DeltaTemporality,
}

/// The default gRPC address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:4317";

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            grpc_addr: DEFAULT_GRPC_ADDR.to_string(),
            translation_strategy: TranslationStrategy::default(),
            promote_resource_attributes: vec![],
            keep_identifying_resource_attributes: false,
            delta_temporality: DeltaTemporality::default(),
        }
    }
}

/// A label set: `(name, value)` pairs sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// The running totals of delta series, by label set: `(last point's time ms, total)`.
/// A point whose start time is not after the last point's time (a replay, or an
/// overlap) is rejected; the first point of a series the state does not know starts
/// from the value [`DeltaState::resume`] was given (the series' last stored value after
/// a restart), else from 0.
#[derive(Debug, Default)]
pub struct DeltaState {
    totals: parking_lot::Mutex<HashMap<LabelSet, (i64, f64)>>,
}

impl DeltaState {
    /// Label sets of `pending` the state does not know (to look up before
    /// [`DeltaState::resume`]).
    pub fn unknown(&self, pending: &Translated) -> Vec<LabelSet> {
        let totals = self.totals.lock();
        let mut out: Vec<LabelSet> = pending
            .deltas
            .iter()
            .filter(|d| !totals.contains_key(&d.labels))
            .map(|d| d.labels.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Seeds the running totals of series not yet known: `(labels, last stored sample
    /// (ms, value))`.
    pub fn resume(&self, found: impl IntoIterator<Item = (LabelSet, (i64, f64))>) {
        let mut totals = self.totals.lock();
        for (l, last) in found {
            totals.entry(l).or_insert(last);
        }
    }

    /// Adds `t`'s delta points to the running totals and their cumulative samples to its
    /// series; rejected points are counted in `t`. Returns what [`DeltaState::undo`]
    /// needs to take the additions back (when the write is not acknowledged, so that the
    /// client's retry is not rejected as an overlap).
    pub fn apply(&self, t: &mut Translated, limits: &Limits, now_ms: i64) -> Undo {
        let deltas = std::mem::take(&mut t.deltas);
        let mut totals = self.totals.lock();
        let mut undo = Undo::default();
        for d in deltas {
            if d.stale {
                let stale = vec![Sample {
                    timestamp_ms: d.t_ms,
                    value: stale_nan(),
                }];
                t.validated.push(&d.labels, stale, limits, now_ms);
                continue;
            }
            let before = totals.get(&d.labels).copied();
            let (last_ms, total) = before.unwrap_or((i64::MIN, 0.0));
            if d.start_ms < last_ms || d.t_ms <= last_ms {
                t.reject(format!(
                    "delta point at {} ms overlaps its series' last point at {last_ms} ms",
                    d.t_ms
                ));
                continue;
            }
            let now = (d.t_ms, total + d.value);
            let sample = vec![Sample {
                timestamp_ms: now.0,
                value: now.1,
            }];
            t.validated.push(&d.labels, sample, limits, now_ms);
            undo.0.push((d.labels.clone(), before));
            totals.insert(d.labels, now);
        }
        undo
    }

    /// Takes back an [`DeltaState::apply`] (in reverse order).
    pub fn undo(&self, undo: Undo) {
        let mut totals = self.totals.lock();
        for (labels, before) in undo.0.into_iter().rev() {
            match before {
                Some(b) => totals.insert(labels, b),
                None => totals.remove(&labels),
            };
        }
    }
}

/// The running totals an [`DeltaState::apply`] replaced.
#[derive(Debug, Default)]
pub struct Undo(Vec<(LabelSet, Option<(i64, f64)>)>);

/// A delta sample awaiting conversion ([`DeltaState::apply`]).
#[derive(Debug, Clone)]
pub struct DeltaPoint {
    /// Its series' labels, sorted.
    pub labels: LabelSet,
    /// Start of the point's interval, ms.
    pub start_ms: i64,
    /// End of the interval (the sample's time), ms.
    pub t_ms: i64,
    /// The increase over the interval.
    pub value: f64,
    /// Flagged "no recorded value": a staleness marker.
    pub stale: bool,
}

/// A translated request.
#[derive(Debug, Default)]
pub struct Translated {
    /// The samples, validated (those that failed validation are in its `rejected`).
    pub validated: Validated,
    /// Delta points to convert to cumulative ([`DeltaState::apply`]).
    pub deltas: Vec<DeltaPoint>,
    /// Data points (or their samples) that could not be translated.
    pub rejected_points: u64,
    /// Why the first of them was rejected.
    pub first_error: Option<String>,
}

impl Translated {
    fn reject(&mut self, why: String) {
        self.rejected_points += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }
}

/// The request encodings OTLP/HTTP defines (the request's `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`: the binary protobuf.
    Protobuf,
    /// `application/json`: OTLP/JSON (proto3 JSON with lowerCamelCase names, 64-bit
    /// integers as strings or numbers, enums as integers, hex trace ids).
    Json,
}

impl Encoding {
    /// The encoding of a `Content-Type` (parameters ignored), `None` for another.
    pub fn of_content_type(content_type: &str) -> Option<Encoding> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of this encoding (the answer's, which must be the request's).
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decodes an `ExportMetricsServiceRequest` body (already decompressed).
///
/// # Errors
/// [`crate::IngestError::BadRequest`] naming what does not decode.
pub fn decode_request(
    body: &[u8],
    encoding: Encoding,
) -> crate::Result<ExportMetricsServiceRequest> {
    match encoding {
        Encoding::Protobuf => <ExportMetricsServiceRequest as prost::Message>::decode(body)
            .map_err(|e| {
                crate::IngestError::BadRequest(format!("OTLP protobuf body does not decode: {e}"))
            }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            crate::IngestError::BadRequest(format!("OTLP JSON body does not decode: {e}"))
        }),
    }
}

/// The text of an attribute value, as Prometheus's translation writes it
/// (`pcommon.Value.AsString`): strings as they are, integers in decimal, doubles in
/// their shortest form, booleans `true`/`false`, bytes in base64, arrays and maps as
/// JSON.
pub fn value_text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => FloatText(*d).to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::BytesValue(b)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Some(any_value::Value::ArrayValue(_)) | Some(any_value::Value::KvlistValue(_)) => {
            json_value(v).to_string()
        }
        Some(any_value::Value::StringValueStrindex(_)) | None => String::new(),
    }
}

fn json_value(v: Option<&AnyValue>) -> serde_json::Value {
    use serde_json::Value as J;
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(|x| json_value(Some(x))).collect())
        }
        Some(any_value::Value::KvlistValue(m)) => J::Object(
            m.values
                .iter()
                .map(|kv| (kv.key.clone(), json_value(kv.value.as_ref())))
                .collect(),
        ),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => J::from(*d),
        Some(any_value::Value::BoolValue(b)) => J::from(*b),
        _ => J::String(value_text(v)),
    }
}

/// A label name in Prometheus's legacy charset (`otlptranslator` `sanitizeLabelName`
/// with Prometheus 3's defaults): characters outside `[a-zA-Z0-9_]` become `_`, a leading
/// digit gets the prefix `key_`, a leading single `_` the prefix `key`. `None` for a
/// name that is empty or only underscores.
pub fn escape_label_name(name: &str) -> Option<String> {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().all(|c| c == '_') {
        return None;
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    } else if s.starts_with('_') && !s.starts_with("__") {
        s.insert_str(0, "key");
    }
    Some(s)
}

/// What a metric's type adds to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A gauge (unit `1` adds `_ratio`).
    Gauge,
    /// A monotonic cumulative sum (`_total`).
    Counter,
    /// Anything else.
    Other,
}

/// The unit suffixes of UCUM unit `unit` (`otlptranslator` `unitMap`, `perUnitMap`):
/// `(main, per)`, e.g. `By/s` -> `("bytes", "per_second")`; annotations in braces and
/// the unit `1` add nothing, and units not in the table are kept as they are.
pub fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let per = parts.next().unwrap_or("").trim();
    let braces = |s: &str| s.contains('{') || s.contains('}');
    let main = if main.is_empty() || braces(main) {
        String::new()
    } else {
        match main {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "TiBy" => "tibibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "TBy" => "terabytes",
            "m" => "meters",
            "V" => "volts",
            "A" => "amperes",
            "J" => "joules",
            "W" => "watts",
            "g" => "grams",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "1" => "",
            "%" => "percent",
            other => other,
        }
        .to_string()
    };
    let per = if per.is_empty() || braces(per) {
        String::new()
    } else {
        let word = match per {
            "s" => "second",
            "m" => "minute",
            "h" => "hour",
            "d" => "day",
            "w" => "week",
            "mo" => "month",
            "y" => "year",
            other => other,
        };
        format!("per_{word}")
    };
    (main, per)
}

/// A unit suffix in the legacy charset (`cleanUpUnit`): characters outside
/// `[a-zA-Z0-9:]` become `_`, runs of `_` one, a leading `_` dropped.
fn clean_unit(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_start_matches('_').to_string()
}

/// The Prometheus name of OTLP metric `name` of unit `unit` and kind `kind` under
/// `strategy` (`otlptranslator` `MetricNamer.Build`). `None` for a name that translates
/// to nothing.
pub fn metric_name(
    name: &str,
    unit: &str,
    kind: NameKind,
    strategy: TranslationStrategy,
) -> Option<String> {
    let out = match strategy {
        TranslationStrategy::UnderscoreEscapingWithSuffixes => {
            // `normalizeName`: `_` and every invalid character separate words.
            let mut words: Vec<String> = name
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            let (main, per) = unit_suffixes(unit);
            let (main, per) = (clean_unit(&main), clean_unit(&per));
            if !main.is_empty() && !words.contains(&main) {
                words.push(main);
            }
            let per = per.trim_end_matches('_').to_string();
            if !per.is_empty() && per != "per" && !words.contains(&per) {
                words.push(per);
            }
            if kind == NameKind::Counter {
                words.retain(|w| w != "total");
                words.push("total".into());
            }
            if kind == NameKind::Gauge && unit == "1" {
                words.retain(|w| w != "ratio");
                words.push("ratio".into());
            }
            let mut s = words.join("_");
            if s.starts_with(|c: char| c.is_ascii_digit()) {
                s.insert(0, '_');
            }
            s
        }
        TranslationStrategy::UnderscoreEscapingWithoutSuffixes => {
            let mut s = name
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '_'))
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            if s.starts_with(|c: char| c.is_ascii_digit()) {
                s.insert(0, '_');
            }
            s
        }
        TranslationStrategy::NoUTF8EscapingWithSuffixes => {
            // `buildMetricName`: name[_unit][_per][_total][_ratio], each once.
            let mut s = name.to_string();
            let strip = |s: &mut String, suffix: &str| {
                if let Some(rest) = s.strip_suffix(suffix) {
                    let mut rest = rest.to_string();
                    if rest.ends_with(['_', '.', '-']) {
                        rest.pop();
                    }
                    *s = rest;
                }
            };
            let ratio = kind == NameKind::Gauge && unit == "1";
            if ratio {
                strip(&mut s, "ratio");
            }
            if kind == NameKind::Counter {
                strip(&mut s, "total");
            }
            let (main, per) = unit_suffixes(unit);
            if !per.is_empty() {
                strip(&mut s, &per);
            }
            if !main.is_empty() && !s.ends_with(&main) {
                s = format!("{s}_{main}");
            }
            if !per.is_empty() {
                s = format!("{s}_{per}");
            }
            if kind == NameKind::Counter {
                s.push_str("_total");
            }
            if ratio {
                s.push_str("_ratio");
            }
            s
        }
        TranslationStrategy::NoTranslation => name.to_string(),
    };
    (!out.is_empty() && !out.chars().all(|c| c == '_')).then_some(out)
}

/// Labels of attributes `attrs` under `strategy`: names escaped when the strategy escapes
/// names, pairs whose names collide joined with `;` in the order of their original names
/// (`createAttributes`). Attributes whose names escape to nothing are skipped.
fn attribute_labels(attrs: &[&KeyValue], escape: bool) -> Vec<(String, String)> {
    let mut sorted: Vec<&&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out: Vec<(String, String)> = vec![];
    for kv in sorted {
        let name = if escape {
            match escape_label_name(&kv.key) {
                Some(n) => n,
                None => continue,
            }
        } else if kv.key.is_empty() {
            continue;
        } else {
            kv.key.clone()
        };
        let value = value_text(kv.value.as_ref());
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(';');
                v.push_str(&value);
            }
            None => out.push((name, value)),
        }
    }
    out
}

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// `target_info`'s sample interval, ms: half the default lookback delta, as Prometheus
/// writes it (`addResourceTargetInfo`).
const TARGET_INFO_INTERVAL_MS: i64 = 150_000;

/// One resource's labels for its series: promoted attributes, then `job` and `instance`.
struct ResourceLabels {
    /// Promoted attributes (added where a point has no label of the name).
    promoted: Vec<(String, String)>,
    /// `job` and `instance`, when the resource has them (they win over attributes).
    identity: Vec<(String, String)>,
}

/// Translates `req` under `cfg`; samples at times later than `now_ms` are validated as
/// any other (the validation limits `limits` apply to every series).
pub fn translate(
    req: &ExportMetricsServiceRequest,
    cfg: &OtlpConfig,
    limits: &Limits,
    now_ms: i64,
) -> Translated {
    let mut out = Translated::default();
    let escape = cfg.translation_strategy.escapes();
    for rm in &req.resource_metrics {
        let attrs: Vec<&KeyValue> = rm
            .resource
            .as_ref()
            .map_or(vec![], |r| r.attributes.iter().collect());
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| value_text(kv.value.as_ref()))
                .filter(|v| !v.is_empty())
        };
        let mut identity = vec![];
        if let Some(name) = get(SERVICE_NAME) {
            let job = match get(SERVICE_NAMESPACE) {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            };
            identity.push(("job".to_string(), job));
        }
        if let Some(id) = get(SERVICE_INSTANCE_ID) {
            identity.push(("instance".to_string(), id));
        }
        let promoted_attrs: Vec<&KeyValue> = attrs
            .iter()
            .copied()
            .filter(|kv| cfg.promote_resource_attributes.contains(&kv.key))
            .collect();
        let resource = ResourceLabels {
            promoted: attribute_labels(&promoted_attrs, escape),
            identity,
        };
        // The earliest and latest sample of the resource.
        let mut times = (i64::MAX, i64::MIN);
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                translate_metric(m, &resource, cfg, (limits, now_ms), &mut out, &mut times);
            }
        }
        let (earliest, latest) = times;
        // target_info: the resource's other attributes, where it has any.
        let identifying = [SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID];
        let info_attrs: Vec<&KeyValue> = attrs
            .iter()
            .copied()
            .filter(|kv| {
                cfg.keep_identifying_resource_attributes || !identifying.contains(&kv.key.as_str())
            })
            .collect();
        let has_other = attrs
            .iter()
            .any(|kv| !identifying.contains(&kv.key.as_str()));
        if latest >= earliest && has_other && !resource.identity.is_empty() {
            let mut labels = attribute_labels(&info_attrs, escape);
            labels.retain(|(n, _)| !resource.identity.iter().any(|(i, _)| i == n));
            labels.extend(resource.identity.iter().cloned());
            labels.push((METRIC_NAME_LABEL.to_string(), "target_info".to_string()));
            let mut samples = vec![];
            let mut t = earliest;
            while t < latest {
                samples.push(Sample {
                    timestamp_ms: t,
                    value: 1.0,
                });
                t += TARGET_INFO_INTERVAL_MS;
            }
            samples.push(Sample {
                timestamp_ms: latest,
                value: 1.0,
            });
            out.validated.push(&labels, samples, limits, now_ms);
        }
    }
    out
}

/// ns since the epoch to ms (rounded down).
fn ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

/// The labels of a point: its attributes, the resource's promoted ones where absent,
/// `job`/`instance`, then the name (and `extra`, `le` or `quantile`).
fn point_labels(
    attrs: &[KeyValue],
    resource: &ResourceLabels,
    escape: bool,
) -> Vec<(String, String)> {
    let refs: Vec<&KeyValue> = attrs.iter().collect();
    let mut labels = attribute_labels(&refs, escape);
    for (n, v) in &resource.promoted {
        if !labels.iter().any(|(l, _)| l == n) {
            labels.push((n.clone(), v.clone()));
        }
    }
    for (n, v) in &resource.identity {
        labels.retain(|(l, _)| l != n);
        labels.push((n.clone(), v.clone()));
    }
    labels.retain(|(l, _)| l != METRIC_NAME_LABEL && l != "le" && l != "quantile");
    labels
}

/// Whether a point's flags say "no recorded value" (`DataPointFlags` bit 0).
fn no_value(flags: u32) -> bool {
    flags & 1 == 1
}

/// Where one metric's samples go: straight into the request's series, or (delta
/// temporality converted to cumulative) to the delta list; `times` follows the earliest
/// and latest sample time (ms).
struct Sink<'a> {
    out: &'a mut Translated,
    limits: &'a Limits,
    now_ms: i64,
    delta: bool,
    times: &'a mut (i64, i64),
}

impl Sink<'_> {
    /// One sample of the series `labels` + `__name__ = name` (+ `extra`).
    fn sample(
        &mut self,
        base: &[(String, String)],
        name: &str,
        extra: Option<(&str, String)>,
        (start_ms, t_ms): (i64, i64),
        value: f64,
        stale: bool,
    ) {
        let mut labels = base.to_vec();
        labels.push((METRIC_NAME_LABEL.to_string(), name.to_string()));
        if let Some((n, v)) = extra {
            labels.push((n.to_string(), v));
        }
        *self.times = (self.times.0.min(t_ms), self.times.1.max(t_ms));
        if self.delta {
            labels.sort();
            self.out.deltas.push(DeltaPoint {
                labels,
                start_ms,
                t_ms,
                value,
                stale,
            });
            return;
        }
        let value = if stale { stale_nan() } else { value };
        self.out.validated.push(
            &labels,
            vec![Sample {
                timestamp_ms: t_ms,
                value,
            }],
            self.limits,
            self.now_ms,
        );
    }
}

/// Translates one metric into `out` (validated under `limits` at `now_ms`), widening
/// `times` (earliest, latest ms) to its samples' times.
fn translate_metric(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
    resource: &ResourceLabels,
    cfg: &OtlpConfig,
    (limits, now_ms): (&Limits, i64),
    out: &mut Translated,
    times: &mut (i64, i64),
) {
    let strategy = cfg.translation_strategy;
    let escape = strategy.escapes();
    let Some(data) = &m.data else {
        return;
    };
    // Its number of points, and its temporality (gauges and summaries have none).
    let (points, temporality) = match data {
        metric::Data::Gauge(g) => (g.data_points.len(), None),
        metric::Data::Sum(s) => (s.data_points.len(), Some(s.aggregation_temporality)),
        metric::Data::Histogram(h) => (h.data_points.len(), Some(h.aggregation_temporality)),
        metric::Data::ExponentialHistogram(h) => {
            (h.data_points.len(), Some(h.aggregation_temporality))
        }
        metric::Data::Summary(s) => (s.data_points.len(), None),
    };
    let delta = temporality == Some(AggregationTemporality::Delta as i32);
    if let Some(t) = temporality
        && t != AggregationTemporality::Delta as i32
        && t != AggregationTemporality::Cumulative as i32
    {
        for _ in 0..points {
            out.reject(format!(
                "metric {:?}: aggregation temporality {t} is neither delta nor cumulative",
                m.name
            ));
        }
        return;
    }
    let convert = delta && cfg.delta_temporality == DeltaTemporality::Cumulative;
    let kind = match data {
        metric::Data::Gauge(_) => NameKind::Gauge,
        metric::Data::Sum(s) if s.is_monotonic && (!delta || convert) => NameKind::Counter,
        _ => NameKind::Other,
    };
    let Some(name) = metric_name(&m.name, &m.unit, kind, strategy) else {
        for _ in 0..points {
            out.reject(format!(
                "metric {:?}: the name translates to nothing",
                m.name
            ));
        }
        return;
    };
    let mut sink = Sink {
        out,
        limits,
        now_ms,
        delta: convert,
        times,
    };
    let number = |p: &NumberDataPoint| match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    match data {
        metric::Data::Gauge(Gauge { data_points }) | metric::Data::Sum(Sum { data_points, .. }) => {
            for p in data_points {
                let l = point_labels(&p.attributes, resource, escape);
                let span = (ms(p.start_time_unix_nano), ms(p.time_unix_nano));
                sink.sample(&l, &name, None, span, number(p), no_value(p.flags));
            }
        }
        metric::Data::Histogram(h) => {
            for p in &h.data_points {
                histogram(&mut sink, p, resource, escape, &name);
            }
        }
        metric::Data::ExponentialHistogram(h) => {
            for p in &h.data_points {
                exponential_histogram(&mut sink, p, resource, escape, &name);
            }
        }
        metric::Data::Summary(s) => {
            for p in &s.data_points {
                summary(&mut sink, p, resource, escape, &name);
            }
        }
    }
}

fn histogram(
    sink: &mut Sink<'_>,
    p: &HistogramDataPoint,
    resource: &ResourceLabels,
    escape: bool,
    name: &str,
) {
    let l = point_labels(&p.attributes, resource, escape);
    let span = (ms(p.start_time_unix_nano), ms(p.time_unix_nano));
    let stale = no_value(p.flags);
    let buckets = p
        .explicit_bounds
        .iter()
        .copied()
        .zip(p.bucket_counts.iter().copied());
    classic_histogram(sink, &l, name, (span, stale), buckets, p.count, p.sum);
}

/// Writes a classic histogram of series `l`: `{name}_bucket{le}` the cumulative counts of
/// `buckets` (`(upper bound, count)` in increasing order of bounds; an infinite bound is
/// left to the `+Inf` bucket), `{name}_bucket{le="+Inf"}` = `count`, `{name}_sum` when
/// there is a sum, `{name}_count`; all at `span` (start ms, ms), staleness markers when
/// `stale`.
fn classic_histogram(
    sink: &mut Sink<'_>,
    l: &[(String, String)],
    name: &str,
    (span, stale): ((i64, i64), bool),
    buckets: impl IntoIterator<Item = (f64, u64)>,
    count: u64,
    sum: Option<f64>,
) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    for (bound, n) in buckets {
        cumulative = cumulative.saturating_add(n);
        if bound == f64::INFINITY {
            continue;
        }
        let le = Some(("le", FloatText(bound).to_string()));
        sink.sample(l, &bucket, le, span, cumulative as f64, stale);
    }
    let le = Some(("le", "+Inf".to_string()));
    sink.sample(l, &bucket, le, span, count as f64, stale);
    if let Some(sum) = sum {
        sink.sample(l, &format!("{name}_sum"), None, span, sum, stale);
    }
    sink.sample(l, &format!("{name}_count"), None, span, count as f64, stale);
}

/// The upper bound of exponential bucket `index` at `scale`: `base^(index + 1)`, `base =
/// 2^(2^-scale)` (OpenTelemetry data model, "ExponentialHistogram": bucket `index`
/// holds `(base^index, base^(index+1)]`).
pub fn exponential_upper_bound(index: i64, scale: i32) -> f64 {
    ((index + 1) as f64 * (-(scale as f64)).exp2()).exp2()
}

fn exponential_histogram(
    sink: &mut Sink<'_>,
    p: &ExponentialHistogramDataPoint,
    resource: &ResourceLabels,
    escape: bool,
    name: &str,
) {
    let l = point_labels(&p.attributes, resource, escape);
    let span = (ms(p.start_time_unix_nano), ms(p.time_unix_nano));
    let stale = no_value(p.flags);
    // Bounds in increasing order with the count of each bucket: negative buckets from
    // the largest magnitude (bucket `i` holds `[-base^(i+1), -base^i)`, its upper bound
    // `-base^i`), the zero bucket, then the positive ones.
    let mut bounds: Vec<(f64, u64)> = vec![];
    if let Some(neg) = &p.negative {
        for (k, c) in neg.bucket_counts.iter().enumerate().rev() {
            let index = i64::from(neg.offset) + k as i64;
            bounds.push((-exponential_upper_bound(index - 1, p.scale), *c));
        }
    }
    bounds.push((p.zero_threshold, p.zero_count));
    if let Some(pos) = &p.positive {
        for (k, c) in pos.bucket_counts.iter().enumerate() {
            let index = i64::from(pos.offset) + k as i64;
            bounds.push((exponential_upper_bound(index, p.scale), *c));
        }
    }
    // Bounds beyond f64 (scales far below 0) are left to the `+Inf` bucket.
    classic_histogram(sink, &l, name, (span, stale), bounds, p.count, p.sum);
}

fn summary(
    sink: &mut Sink<'_>,
    p: &SummaryDataPoint,
    resource: &ResourceLabels,
    escape: bool,
    name: &str,
) {
    let l = point_labels(&p.attributes, resource, escape);
    let span = (ms(p.start_time_unix_nano), ms(p.time_unix_nano));
    let stale = no_value(p.flags);
    for q in &p.quantile_values {
        sink.sample(
            &l,
            name,
            Some(("quantile", FloatText(q.quantile).to_string())),
            span,
            q.value,
            stale,
        );
    }
    sink.sample(&l, &format!("{name}_sum"), None, span, p.sum, stale);
    sink.sample(
        &l,
        &format!("{name}_count"),
        None,
        span,
        p.count as f64,
        stale,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use TranslationStrategy::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum,
        Summary, exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    const T: u64 = 1_700_000_000_123_456_789;
    const T_MS: i64 = 1_700_000_000_123;

    fn kv(k: &str, v: V) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> V {
        V::StringValue(v.into())
    }

    #[test]
    fn names_follow_prometheus_otlp_translator() {
        use NameKind::*;
        // otlptranslator metric_namer_test.go's cases.
        let cases = [
            (
                "http.server.duration",
                "s",
                Other,
                "http_server_duration_seconds",
            ),
            ("requests", "1/s", Counter, "requests_per_second_total"),
            ("throughput", "By/s", Gauge, "throughput_bytes_per_second"),
            ("cpu_usage", "1", Gauge, "cpu_usage_ratio"),
            ("items", "1", Counter, "items_total"),
            ("custom_metric", "{custom}", Gauge, "custom_metric"),
            ("requests_total", "", Counter, "requests_total"),
            ("metric__with__x", "", Gauge, "metric_with_x"),
            ("_foo_", "", Gauge, "foo"),
            ("123metric", "", Gauge, "_123metric"),
            ("seconds_total_x", "s", Other, "seconds_total_x"),
            (
                "unit@with#special/chars",
                "",
                Gauge,
                "unit_with_special_chars",
            ),
            ("memory", "MiBy", Gauge, "memory_mebibytes"),
            ("temp", "Cel", Gauge, "temp_celsius"),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(
                metric_name(name, unit, kind, UnderscoreEscapingWithSuffixes).as_deref(),
                Some(want),
                "{name} {unit}"
            );
        }
        assert_eq!(
            metric_name("___", "", Gauge, UnderscoreEscapingWithSuffixes),
            None
        );
        assert_eq!(
            metric_name(
                "metric__with..x",
                "s",
                Counter,
                UnderscoreEscapingWithoutSuffixes
            )
            .as_deref(),
            Some("metric__with_x")
        );
        assert_eq!(
            metric_name(
                "http.server.duration",
                "s",
                Other,
                NoUTF8EscapingWithSuffixes
            )
            .as_deref(),
            Some("http.server.duration_seconds")
        );
        assert_eq!(
            metric_name("http.requests", "1", Counter, NoUTF8EscapingWithSuffixes).as_deref(),
            Some("http.requests_total")
        );
        assert_eq!(
            metric_name("http.requests", "s", Counter, NoTranslation).as_deref(),
            Some("http.requests")
        );
        assert_eq!(unit_suffixes("By/{x}"), ("bytes".into(), String::new()));
        assert_eq!(
            unit_suffixes("{req}/s"),
            (String::new(), "per_second".into())
        );
    }

    #[test]
    fn label_names_are_escaped_as_prometheus_3_escapes_them() {
        assert_eq!(
            escape_label_name("http.method").as_deref(),
            Some("http_method")
        );
        assert_eq!(escape_label_name("123x").as_deref(), Some("key_123x"));
        assert_eq!(escape_label_name("_foo").as_deref(), Some("key_foo"));
        assert_eq!(escape_label_name("__foo").as_deref(), Some("__foo"));
        assert_eq!(escape_label_name("a..b").as_deref(), Some("a__b"));
        assert_eq!(escape_label_name("__"), None);
        // Colliding names: values joined in the order of the original names.
        let a = [kv("a.b", s("1")), kv("a_b", s("2"))];
        let refs: Vec<&KeyValue> = a.iter().collect();
        assert_eq!(
            attribute_labels(&refs, true),
            vec![("a_b".into(), "1;2".into())]
        );
        assert_eq!(
            value_text(Some(&AnyValue {
                value: Some(V::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(V::IntValue(1))
                            },
                            AnyValue {
                                value: Some(s("x"))
                            }
                        ]
                    }
                ))
            })),
            "[1,\"x\"]"
        );
        assert_eq!(
            value_text(Some(&AnyValue {
                value: Some(V::DoubleValue(0.5))
            })),
            "0.5"
        );
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("api")),
                        kv("service.namespace", s("shop")),
                        kv("service.instance.id", s("i-1")),
                        kv("host.name", s("h1")),
                        kv("deployment.environment", s("prod")),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn number(v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: T - 60_000_000_000,
            time_unix_nano: T,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    /// `name{labels sorted} value` of every sample, sorted.
    fn lines(t: &Translated) -> Vec<String> {
        let mut out: Vec<String> = t
            .validated
            .series
            .iter()
            .flat_map(|s| {
                let mut l: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|(n, _)| *n != METRIC_NAME_LABEL)
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                l.sort();
                let name = s.labels.get(METRIC_NAME_LABEL).unwrap_or("").to_string();
                s.samples.iter().map(move |x| {
                    let v = if crate::model::is_stale_nan(x.value) {
                        "stale".to_string()
                    } else {
                        x.value.to_string()
                    };
                    format!("{name}{{{}}} {} @{}", l.join(","), v, x.timestamp_ms)
                })
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_point_type_becomes_prometheus_series() {
        let metrics = vec![
            Metric {
                name: "queue.depth".into(),
                unit: "{item}".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![number(7.0, vec![kv("queue", s("q1"))])],
                })),
                ..Default::default()
            },
            Metric {
                name: "http.requests".into(),
                unit: "1".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![
                        NumberDataPoint {
                            value: Some(number_data_point::Value::AsInt(42)),
                            ..number(
                                0.0,
                                vec![kv("http.method", s("GET")), kv("job", s("ignored"))],
                            )
                        },
                        NumberDataPoint {
                            flags: 1,
                            ..number(0.0, vec![kv("http.method", s("PUT"))])
                        },
                    ],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "latency".into(),
                unit: "ms".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: T,
                        count: 10,
                        sum: Some(123.5),
                        bucket_counts: vec![2, 3, 5],
                        explicit_bounds: vec![10.0, 100.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
            Metric {
                name: "size".into(),
                unit: "By".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        time_unix_nano: T,
                        count: 7,
                        sum: Some(3.0),
                        scale: 0,
                        zero_count: 1,
                        positive: Some(Buckets {
                            offset: 0,
                            bucket_counts: vec![1, 2],
                        }),
                        negative: Some(Buckets {
                            offset: 0,
                            bucket_counts: vec![3],
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
            Metric {
                name: "rpc.duration".into(),
                unit: "s".into(),
                data: Some(metric::Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        time_unix_nano: T,
                        count: 4,
                        sum: 2.5,
                        quantile_values: vec![
                            ValueAtQuantile {
                                quantile: 0.5,
                                value: 0.25,
                            },
                            ValueAtQuantile {
                                quantile: 0.99,
                                value: 1.5,
                            },
                        ],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
        ];
        let cfg = OtlpConfig {
            promote_resource_attributes: vec!["deployment.environment".into()],
            ..Default::default()
        };
        let t = translate(&request(metrics), &cfg, &Limits::default(), T_MS);
        assert_eq!(t.rejected_points, 0);
        let id = "deployment_environment=prod,instance=i-1,job=shop/api";
        let want: Vec<String> = [
            format!("http_requests_total{{deployment_environment=prod,http_method=GET,instance=i-1,job=shop/api}} 42 @{T_MS}"),
            format!("http_requests_total{{deployment_environment=prod,http_method=PUT,instance=i-1,job=shop/api}} stale @{T_MS}"),
            format!("latency_milliseconds_bucket{{{id},le=+Inf}} 10 @{T_MS}"),
            format!("latency_milliseconds_bucket{{{id},le=10}} 2 @{T_MS}"),
            format!("latency_milliseconds_bucket{{{id},le=100}} 5 @{T_MS}"),
            format!("latency_milliseconds_count{{{id}}} 10 @{T_MS}"),
            format!("latency_milliseconds_sum{{{id}}} 123.5 @{T_MS}"),
            format!("queue_depth{{{id},queue=q1}} 7 @{T_MS}"),
            format!("rpc_duration_seconds_count{{{id}}} 4 @{T_MS}"),
            format!("rpc_duration_seconds_sum{{{id}}} 2.5 @{T_MS}"),
            format!("rpc_duration_seconds{{{id},quantile=0.5}} 0.25 @{T_MS}"),
            format!("rpc_duration_seconds{{{id},quantile=0.99}} 1.5 @{T_MS}"),
            // Scale 0 (base 2): negative bucket 0 holds [-2, -1), the zero bucket 0,
            // positive buckets 0 and 1 hold (1, 2] and (2, 4].
            format!("size_bytes_bucket{{{id},le=+Inf}} 7 @{T_MS}"),
            format!("size_bytes_bucket{{{id},le=-1}} 3 @{T_MS}"),
            format!("size_bytes_bucket{{{id},le=0}} 4 @{T_MS}"),
            format!("size_bytes_bucket{{{id},le=2}} 5 @{T_MS}"),
            format!("size_bytes_bucket{{{id},le=4}} 7 @{T_MS}"),
            format!("size_bytes_count{{{id}}} 7 @{T_MS}"),
            format!("size_bytes_sum{{{id}}} 3 @{T_MS}"),
            // The resource's other attributes, the identifying ones as job/instance.
            format!("target_info{{deployment_environment=prod,host_name=h1,instance=i-1,job=shop/api}} 1 @{T_MS}"),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
        assert_eq!(lines(&t), want);
    }

    #[test]
    fn exponential_bounds_are_powers_of_the_base() {
        assert_eq!(exponential_upper_bound(0, 0), 2.0);
        assert_eq!(exponential_upper_bound(-1, 0), 1.0);
        assert_eq!(exponential_upper_bound(1, -1), 16.0);
        assert!((exponential_upper_bound(0, 1) - 2f64.sqrt()).abs() < 1e-15);
        assert!((exponential_upper_bound(3, 3) - 2.0f64.powf(0.5)).abs() < 1e-15);
    }

    #[test]
    fn deltas_become_running_totals_and_overlaps_are_rejected() {
        let sum = |v: f64, start_s: u64, end_s: u64| Metric {
            name: "jobs".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    start_time_unix_nano: start_s * 1_000_000_000,
                    time_unix_nano: end_s * 1_000_000_000,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let cfg = OtlpConfig::default();
        let limits = Limits::default();
        let now = 2_000_000_000_000;
        let state = DeltaState::default();
        let mut got = vec![];
        for (v, a, z) in [
            (5.0, 100, 110),
            (3.0, 110, 120),
            (9.0, 115, 125),
            (1.0, 130, 140),
        ] {
            let mut t = translate(&request(vec![sum(v, a, z)]), &cfg, &limits, now);
            assert_eq!(t.deltas.len(), 1);
            if a == 130 {
                // After a restart: resumed from the last stored value.
                let state2 = DeltaState::default();
                assert_eq!(state2.unknown(&t).len(), 1);
                state2.resume(vec![(t.deltas[0].labels.clone(), (120_000, 8.0))]);
                state2.apply(&mut t, &limits, now);
            } else {
                let undo = state.apply(&mut t, &limits, now);
                if a == 110 {
                    // Not acknowledged (the write failed): taken back, so that the
                    // client's retry counts once rather than being rejected as a replay.
                    state.undo(undo);
                    t = translate(&request(vec![sum(v, a, z)]), &cfg, &limits, now);
                    state.apply(&mut t, &limits, now);
                }
            }
            got.push((
                lines(&t)
                    .into_iter()
                    .filter(|l| l.starts_with("jobs"))
                    .collect::<Vec<_>>(),
                t.rejected_points,
            ));
        }
        let l = "instance=i-1,job=shop/api";
        assert_eq!(got[0], (vec![format!("jobs_total{{{l}}} 5 @110000")], 0));
        assert_eq!(got[1], (vec![format!("jobs_total{{{l}}} 8 @120000")], 0));
        assert_eq!(got[2], (vec![], 1), "overlaps the last point");
        assert_eq!(got[3], (vec![format!("jobs_total{{{l}}} 9 @140000")], 0));
        // Raw: the values as sent, no _total.
        let raw = OtlpConfig {
            delta_temporality: DeltaTemporality::Raw,
            ..Default::default()
        };
        let t = translate(&request(vec![sum(5.0, 100, 110)]), &raw, &limits, now);
        assert!(t.deltas.is_empty());
        assert!(lines(&t).contains(&format!("jobs{{{l}}} 5 @110000")));
        // Unspecified temporality: rejected.
        let mut m = sum(1.0, 1, 2);
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.aggregation_temporality = 0;
        }
        let t = translate(&request(vec![m]), &cfg, &limits, now);
        assert_eq!(t.rejected_points, 1);
        assert!(
            t.first_error
                .unwrap()
                .contains("neither delta nor cumulative")
        );
    }
}
