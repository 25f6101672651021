//! Parser for the text bodies a Prometheus-style scrape returns: the Prometheus
//! text exposition format (version 0.0.4) and OpenMetrics 1.0 text.
//!
//! [`parse`] turns a whole body into [`ParsedSample`]s, in body order, plus the
//! per-family `# TYPE` and `# HELP` metadata, collected in an [`Exposition`].
//! The accepted syntax follows Prometheus' `model/textparse/promparse.go` (with
//! its lexer `promlex.l`) and `openmetricsparse.go` (with `openmetricslex.l`),
//! and the OpenMetrics 1.0 specification, section "Text format". The parser works
//! by hand over the bytes of each line (no regexes) and allocates only the
//! strings it returns.

use std::collections::HashMap;

/// Bit pattern of the NaN that [`parse`] stores for a sample value written as
/// `NaN`: Prometheus' `value.NormalNaN` (`0x7ff8000000000001`), which is distinct
/// from the staleness marker `value.StaleNaN` (`0x7ff0000000000002`).
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Which text format a scrape body is in, chosen from the scrape response's
/// `Content-Type` header (see [`Format::from_content_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format 0.0.4 (`text/plain; version=0.0.4`),
    /// as parsed by Prometheus' `promparse.go`.
    PrometheusText,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`), as
    /// parsed by Prometheus' `openmetricsparse.go`.
    OpenMetrics,
}

impl Format {
    /// Picks the format from a `Content-Type` header value: a media type of
    /// `application/openmetrics-text` (compared ASCII case-insensitively, any
    /// parameters such as `; version=1.0.0` ignored) gives
    /// [`Format::OpenMetrics`]; anything else, including an empty or missing
    /// header, gives [`Format::PrometheusText`], as Prometheus falls back to.
    #[must_use]
    pub fn from_content_type(ct: &str) -> Format {
        const OPENMETRICS: &[u8] = b"application/openmetrics-text";
        let b = ct.trim_start().as_bytes();
        let prefix_matches = b
            .get(..OPENMETRICS.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(OPENMETRICS));
        let media_type_ends = matches!(b.get(OPENMETRICS.len()), None | Some(b';' | b' ' | b'\t'));
        if prefix_matches && media_type_ends {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// The metric type a `# TYPE name type` line declares for the family `name`.
///
/// Prometheus text allows `counter`, `gauge`, `histogram`, `summary` and
/// `untyped` (mapped to [`MetricType::Unknown`]); OpenMetrics allows `counter`,
/// `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` and
/// `unknown`. Any other word is a [`ParseError`], as in Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricType {
    /// `counter`: samples `name` (Prometheus text, where the name usually ends
    /// in `_total`) or `name_total` and `name_created` (OpenMetrics).
    Counter,
    /// `gauge`: samples `name`.
    Gauge,
    /// `histogram`: samples `name_bucket` (with an `le` label), `name_sum`,
    /// `name_count` and, in OpenMetrics, `name_created`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics only): samples `name_bucket`,
    /// `name_gsum` and `name_gcount`.
    GaugeHistogram,
    /// `summary`: samples `name` (with a `quantile` label), `name_sum`,
    /// `name_count` and, in OpenMetrics, `name_created`.
    Summary,
    /// `info` (OpenMetrics only): samples `name_info` with value 1.
    Info,
    /// `stateset` (OpenMetrics only): samples `name`, one per state.
    StateSet,
    /// `untyped` (Prometheus text) or `unknown` (OpenMetrics).
    Unknown,
}

impl MetricType {
    /// The type of protobuf enum value `v`, numbered as `prometheus.MetricMetadata.MetricType`
    /// (remote write 1.0) and `io.prometheus.write.v2.Metadata.MetricType` (2.0) number
    /// them: 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5 summary, 6
    /// info, 7 stateset; any other value is `Unknown`.
    pub fn of_proto(v: i32) -> MetricType {
        match v {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    /// The name Prometheus's `/api/v1/metadata` gives it (`model/textparse`'s `MetricType`
    /// strings: `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`,
    /// `stateset`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }

    /// The inverse of [`MetricType::as_str`]; anything else is `Unknown`.
    pub fn of_str(s: &str) -> MetricType {
        (0..8)
            .map(MetricType::of_proto)
            .find(|t| t.as_str() == s)
            .unwrap_or(MetricType::Unknown)
    }
}

/// One sample line of a body, e.g. `http_requests_total{code="200"} 1027 1395066363000`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// The sample's metric name exactly as written (for a quoted UTF-8 name,
    /// `{"my.metric"}`, without the quotes and unescaped). In OpenMetrics this
    /// carries the sample suffix, e.g. `foo_total` in the family `foo`.
    pub name: String,
    /// The labels in the order the line writes them, names and values
    /// unescaped (`\\`, `\"` and `\n` resolved; any other backslash sequence
    /// kept as written, as Prometheus does), without `__name__`. Label names
    /// are unique within a sample.
    pub labels: Vec<(String, String)>,
    /// The sample value. `NaN` is stored with the bits [`NORMAL_NAN_BITS`];
    /// `+Inf`, `-Inf` and `Inf` are the IEEE infinities.
    pub value: f64,
    /// The sample's own timestamp, in milliseconds since the Unix epoch (UTC),
    /// if the line has one. Prometheus text writes integer milliseconds;
    /// OpenMetrics writes float seconds, converted here to the nearest
    /// millisecond.
    pub timestamp_ms: Option<i64>,
}

/// A parsed body: every sample line in body order, plus the metadata of the
/// metric families.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// The sample lines, in the order of the body. OpenMetrics `_created`
    /// samples are kept as ordinary samples; exemplars are dropped.
    pub samples: Vec<ParsedSample>,
    /// Family name (as written in `# TYPE`, so `foo` for the OpenMetrics
    /// counter whose samples are `foo_total`) to its declared type. If a name
    /// is declared twice, the last line wins.
    pub types: HashMap<String, MetricType>,
    /// Family name (as written in `# HELP`) to its help text, unescaped
    /// (`\\` and `\n`; in OpenMetrics also `\"`). If a name has two `# HELP`
    /// lines, the last one wins.
    pub help: HashMap<String, String>,
}

impl Exposition {
    /// The type that this body's `# TYPE` lines give the sample named
    /// `sample_name`: the family's own entry if the name is a family name, or
    /// else the entry of the family obtained by removing a suffix that family's
    /// type uses (`_total`/`_created` for counters; `_bucket`, `_sum`, `_count`
    /// and `_created` for histograms; `_bucket`, `_gsum` and `_gcount` for gauge
    /// histograms; `_sum`, `_count` and `_created` for summaries; `_info` for
    /// info). [`MetricType::Unknown`] when no `# TYPE` line covers the name.
    #[must_use]
    pub fn type_of(&self, sample_name: &str) -> MetricType {
        if let Some(t) = self.types.get(sample_name) {
            return *t;
        }
        const SUFFIXES: [&str; 8] = [
            "_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info",
        ];
        for suffix in SUFFIXES {
            let Some(family) = sample_name.strip_suffix(suffix) else {
                continue;
            };
            let Some(&t) = self.types.get(family) else {
                continue;
            };
            let allowed: &[&str] = match t {
                MetricType::Counter => &["_total", "_created"],
                MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
                MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
                MetricType::Summary => &["_sum", "_count", "_created"],
                MetricType::Info => &["_info"],
                MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[],
            };
            if allowed.contains(&suffix) {
                return t;
            }
        }
        MetricType::Unknown
    }
}

/// A malformed body: the first offending line and what is wrong with it.
/// Displays as `line 12: invalid value "abc"`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number in the body (lines are separated by `\n`). For an
    /// OpenMetrics body without `# EOF`, the line after the last one.
    pub line: usize,
    /// What is wrong, e.g. `unterminated label value for "path"`,
    /// `invalid metric name "1abc"`, `invalid value "abc"`.
    pub message: String,
}

/// Parses a whole scrape body in the given format.
///
/// Follows Prometheus' `promparse.go` for [`Format::PrometheusText`]: tokens
/// separated by any run of spaces and tabs, blank lines and comments other than
/// `# HELP`/`# TYPE` ignored, timestamps integer milliseconds. Follows
/// `openmetricsparse.go` and the OpenMetrics 1.0 "Text format" for
/// [`Format::OpenMetrics`]: single spaces, no blank lines or free comments,
/// `# UNIT` accepted and ignored, exemplars (` # {labels} value [timestamp]`)
/// validated and dropped, timestamps float seconds, and `# EOF` required as the
/// last line. In both formats a line may end in `\r\n`, label values may hold
/// any UTF-8 (including `,`, `=`, `}`, `#` and spaces), a trailing comma in a
/// label set is allowed, and Prometheus 3's quoted UTF-8 names
/// (`{"my.metric", "my.label"="x"}`) are accepted.
///
/// Returns the samples in body order with the family metadata.
///
/// # Errors
///
/// The first malformed line, as a [`ParseError`] with its 1-based line number;
/// for OpenMetrics also a missing `# EOF` or data after it.
pub fn parse(body: &str, format: Format) -> Result<Exposition, ParseError> {
    let om = format == Format::OpenMetrics;
    let mut out = Exposition::default();
    // At most one sample a line: reserving for every line avoids regrowing the
    // sample vector on large scrapes.
    out.samples
        .reserve(body.bytes().filter(|&b| b == b'\n').count() + 1);

    // A final '\n' ends the last line; it does not start another one.
    let content = body.strip_suffix('\n').unwrap_or(body);
    let mut lines = content.split('\n');
    let mut line_no = 0usize;
    if !body.is_empty() {
        while let Some(raw) = lines.next() {
            line_no += 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let result = if om {
                om_line(line, &mut out)
            } else {
                prom_line(line, &mut out).map(|()| false)
            };
            match result {
                Ok(false) => {}
                Ok(true) => {
                    if lines.next().is_some() {
                        return Err(ParseError {
                            line: line_no + 1,
                            message: "unexpected data after \"# EOF\"".to_owned(),
                        });
                    }
                    return Ok(out);
                }
                Err(message) => {
                    return Err(ParseError {
                        line: line_no,
                        message,
                    });
                }
            }
        }
    }
    if om {
        return Err(ParseError {
            line: line_no + 1,
            message: "missing \"# EOF\" at end of OpenMetrics body".to_owned(),
        });
    }
    Ok(out)
}

/// One line of Prometheus text.
fn prom_line(line: &str, out: &mut Exposition) -> Result<(), String> {
    let mut c = Cursor::new(line, false);
    c.skip_ws();
    match c.peek() {
        None => Ok(()),
        Some(b'#') => {
            c.i += 1;
            prom_comment(c, out)
        }
        Some(_) => {
            out.samples.push(sample(&mut c)?);
            Ok(())
        }
    }
}

/// The rest of a Prometheus text line after its `#`: `# HELP` and `# TYPE`
/// (the keyword after whitespace, followed by whitespace) are metadata, any
/// other comment is ignored, as `promlex.l` does.
fn prom_comment(mut c: Cursor<'_>, out: &mut Exposition) -> Result<(), String> {
    if !matches!(c.peek(), Some(b' ' | b'\t')) {
        return Ok(());
    }
    c.skip_ws();
    let meta = if c.eat_keyword("HELP") {
        Meta::Help
    } else if c.eat_keyword("TYPE") {
        Meta::Type
    } else {
        return Ok(());
    };
    c.skip_ws();
    let name = c.meta_name(meta)?;
    // The text starts after the one separator following the name.
    let text = c.rest().get(1..).unwrap_or("");
    match meta {
        Meta::Help => {
            out.help.insert(name, unescape(text, false));
        }
        Meta::Type => {
            let word = text.trim_matches([' ', '\t']);
            let t = match word {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                "summary" => MetricType::Summary,
                "untyped" => MetricType::Unknown,
                _ => return Err(format!("invalid metric type {word:?}")),
            };
            out.types.insert(name, t);
        }
        Meta::Unit => {}
    }
    Ok(())
}

/// One line of OpenMetrics text; `Ok(true)` for the `# EOF` line.
fn om_line(line: &str, out: &mut Exposition) -> Result<bool, String> {
    match line.as_bytes().first() {
        None => Err("blank line (not allowed in OpenMetrics)".to_owned()),
        Some(b'#') => {
            if line == "# EOF" {
                return Ok(true);
            }
            let mut c = Cursor::new(line, true);
            let meta = if c.eat_prefix("# HELP ") {
                Meta::Help
            } else if c.eat_prefix("# TYPE ") {
                Meta::Type
            } else if c.eat_prefix("# UNIT ") {
                Meta::Unit
            } else {
                return Err(format!(
                    "invalid comment {line:?} (OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF)"
                ));
            };
            let name = c.meta_name(meta)?;
            let Some(text) = c.rest().strip_prefix(' ') else {
                return Err(format!(
                    "expected a space and the {} after metric name {name:?}",
                    meta.what()
                ));
            };
            match meta {
                Meta::Help => {
                    out.help.insert(name, unescape(text, true));
                }
                Meta::Type => {
                    let t = match text {
                        "counter" => MetricType::Counter,
                        "gauge" => MetricType::Gauge,
                        "histogram" => MetricType::Histogram,
                        "gaugehistogram" => MetricType::GaugeHistogram,
                        "summary" => MetricType::Summary,
                        "info" => MetricType::Info,
                        "stateset" => MetricType::StateSet,
                        "unknown" => MetricType::Unknown,
                        _ => return Err(format!("invalid metric type {text:?}")),
                    };
                    out.types.insert(name, t);
                }
                Meta::Unit => {}
            }
            Ok(false)
        }
        Some(_) => {
            let mut c = Cursor::new(line, true);
            out.samples.push(sample(&mut c)?);
            Ok(false)
        }
    }
}

/// Parses a sample line from its first token (the cursor is on it).
fn sample(c: &mut Cursor<'_>) -> Result<ParsedSample, String> {
    let mut name: Option<String> = None;
    let mut labels: Vec<(String, String)> = Vec::new();

    if c.peek() != Some(b'{') {
        let start = c.i;
        if !c.peek().is_some_and(is_metric_start) {
            return Err(format!("invalid metric name {:?}", c.bad_token(start)));
        }
        c.i += 1;
        c.skip_while(is_metric_char);
        match c.peek() {
            None | Some(b' ' | b'{') => {}
            Some(b'\t') if !c.om => {}
            Some(_) => return Err(format!("invalid metric name {:?}", c.bad_token(start))),
        }
        name = Some(c.s[start..c.i].to_owned());
        c.skip_ws();
    }

    let had_labels = c.peek() == Some(b'{');
    if had_labels {
        c.i += 1;
        c.label_set(|item| match item {
            Item::Name(raw) => {
                if name.is_some() {
                    return Err(format!(
                        "metric name set twice (second time as {:?})",
                        raw.s
                    ));
                }
                let n = raw.unescape();
                if n.is_empty() {
                    return Err("invalid metric name \"\"".to_owned());
                }
                name = Some(n);
                Ok(())
            }
            Item::Label(raw_name, raw_value) => {
                let n = raw_name.unescape();
                if n.is_empty() {
                    return Err("invalid label name \"\"".to_owned());
                }
                if n == "__name__" {
                    return Err(
                        "label name \"__name__\" is reserved for the metric name".to_owned()
                    );
                }
                if labels.iter().any(|(k, _)| *k == n) {
                    return Err(format!("duplicate label name {n:?}"));
                }
                labels.push((n, raw_value.unescape()));
                Ok(())
            }
        })?;
    }
    let Some(name) = name else {
        return Err("missing metric name".to_owned());
    };

    let (value, timestamp_ms) = if c.om {
        om_value_and_timestamp(c)?
    } else {
        prom_value_and_timestamp(c)?
    };
    Ok(ParsedSample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Prometheus text: `value [timestamp_ms]` after the name and labels.
fn prom_value_and_timestamp(c: &mut Cursor<'_>) -> Result<(f64, Option<i64>), String> {
    c.skip_ws();
    let tok = c.token();
    if tok.is_empty() {
        return Err("missing value".to_owned());
    }
    let value = parse_go_float(tok).ok_or_else(|| format!("invalid value {tok:?}"))?;
    c.skip_ws();
    if c.at_end() {
        return Ok((value, None));
    }
    let tok = c.token();
    // promlex.l: a timestamp is `[0-9]+`.
    let ts = if tok.bytes().all(|b| b.is_ascii_digit()) {
        tok.parse::<i64>().ok()
    } else {
        None
    }
    .ok_or_else(|| format!("invalid timestamp {tok:?}"))?;
    c.skip_ws();
    if !c.at_end() {
        return Err(format!("unexpected text after timestamp: {:?}", c.rest()));
    }
    Ok((value, Some(ts)))
}

/// OpenMetrics: ` value [timestamp_s] [# {exemplar labels} value [timestamp_s]]`
/// after the name and labels, each part after exactly one space.
fn om_value_and_timestamp(c: &mut Cursor<'_>) -> Result<(f64, Option<i64>), String> {
    match c.peek() {
        None => return Err("missing value".to_owned()),
        Some(b' ') => c.i += 1,
        Some(_) => {
            return Err(format!(
                "expected a space before the value, found {:?}",
                c.rest()
            ));
        }
    }
    let tok = c.token();
    if tok.is_empty() {
        return Err("expected a single space before the value".to_owned());
    }
    let value = parse_go_float(tok).ok_or_else(|| format!("invalid value {tok:?}"))?;
    if c.at_end() {
        return Ok((value, None));
    }
    c.i += 1; // the space that ended the value
    if c.eat_prefix("# {") {
        exemplar(c)?;
        return Ok((value, None));
    }
    let tok = c.token();
    if tok.is_empty() {
        return Err(if c.at_end() {
            "unexpected trailing space".to_owned()
        } else {
            "expected a single space before the timestamp".to_owned()
        });
    }
    let ts = om_timestamp_ms(tok).ok_or_else(|| format!("invalid timestamp {tok:?}"))?;
    if c.at_end() {
        return Ok((value, Some(ts)));
    }
    if c.eat_prefix(" # {") {
        exemplar(c)?;
        return Ok((value, Some(ts)));
    }
    Err(format!("unexpected text after timestamp: {:?}", c.rest()))
}

/// Checks and skips an OpenMetrics exemplar; the cursor is after its `{`.
fn exemplar(c: &mut Cursor<'_>) -> Result<(), String> {
    c.label_set(|item| match item {
        Item::Name(raw) => Err(format!(
            "expected '=' after exemplar label name {:?}",
            raw.s
        )),
        Item::Label(..) => Ok(()),
    })?;
    if !c.eat_prefix(" ") {
        return Err("expected a space and a value after exemplar labels".to_owned());
    }
    let tok = c.token();
    if parse_go_float(tok).is_none() {
        return Err(format!("invalid exemplar value {tok:?}"));
    }
    if c.at_end() {
        return Ok(());
    }
    c.i += 1;
    let tok = c.token();
    if om_timestamp_ms(tok).is_none() {
        return Err(format!("invalid exemplar timestamp {tok:?}"));
    }
    if !c.at_end() {
        return Err(format!(
            "unexpected text after exemplar timestamp: {:?}",
            c.rest()
        ));
    }
    Ok(())
}

/// Parses a float as Go's `strconv.ParseFloat(s, 64)` does for the decimal
/// forms Prometheus accepts: optional sign, digits with optional `.` and
/// exponent, `Inf`/`Infinity` with optional sign and `NaN` without one (both
/// ASCII case-insensitive). Out-of-range finite literals (`1e400`) are
/// rejected, as Go reports them with `ErrRange`. NaN comes back with the bits
/// [`NORMAL_NAN_BITS`].
fn parse_go_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("nan") {
        // Go accepts no sign before NaN.
        return (unsigned.len() == s.len()).then(|| f64::from_bits(NORMAL_NAN_BITS));
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite()
        && !(unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity"))
    {
        return None;
    }
    Some(v)
}

/// An OpenMetrics timestamp (float seconds since the epoch) as the nearest
/// whole millisecond; `None` if it is not a float, not finite, or outside `i64`.
fn om_timestamp_ms(s: &str) -> Option<i64> {
    let secs = parse_go_float(s)?;
    if !secs.is_finite() {
        return None;
    }
    let ms = (secs * 1000.0).round();
    // i64::MIN as f64 is exactly -2^63 and i64::MAX as f64 rounds to 2^63.
    if ms < i64::MIN as f64 || ms >= i64::MAX as f64 {
        return None;
    }
    Some(ms as i64)
}

/// Resolves the escapes of a label value, a quoted name or (with `quote`
/// false) a Prometheus text `# HELP` text, as Prometheus' `strings.Replacer`s
/// do: `\\` to `\`, `\n` to a newline and, if `quote`, `\"` to `"`; any other
/// backslash sequence stays as written.
fn unescape(s: &str, quote: bool) -> String {
    if !s.as_bytes().contains(&b'\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `[a-zA-Z_:]`
fn is_metric_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

/// `[a-zA-Z0-9_:]`
fn is_metric_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// `[a-zA-Z_]`
fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// `[a-zA-Z0-9_]`
fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Which metadata comment a line is.
#[derive(Clone, Copy)]
enum Meta {
    Help,
    Type,
    Unit,
}

impl Meta {
    fn keyword(self) -> &'static str {
        match self {
            Meta::Help => "HELP",
            Meta::Type => "TYPE",
            Meta::Unit => "UNIT",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Meta::Help => "help text",
            Meta::Type => "metric type",
            Meta::Unit => "unit",
        }
    }
}

/// The contents of a quoted string, still escaped.
#[derive(Clone, Copy)]
struct Raw<'a> {
    s: &'a str,
    escaped: bool,
}

impl Raw<'_> {
    fn unescape(self) -> String {
        if self.escaped {
            unescape(self.s, true)
        } else {
            self.s.to_owned()
        }
    }
}

/// One entry of a label set.
enum Item<'a> {
    /// A quoted string standing alone: the metric name (`{"my.metric"}`).
    Name(Raw<'a>),
    /// A label name (bare or quoted) and its value.
    Label(Raw<'a>, Raw<'a>),
}

/// A position in one line (without its line break).
struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// OpenMetrics rules: single spaces only, no tabs, commas required.
    om: bool,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str, om: bool) -> Self {
        Cursor {
            s,
            b: s.as_bytes(),
            i: 0,
            om,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn is_sep(&self, b: u8) -> bool {
        b == b' ' || (b == b'\t' && !self.om)
    }

    /// Prometheus text: skips spaces and tabs. OpenMetrics: no-op, since its
    /// separators are single spaces that the callers consume themselves.
    fn skip_ws(&mut self) {
        if !self.om {
            while self.peek().is_some_and(|b| b == b' ' || b == b'\t') {
                self.i += 1;
            }
        }
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    /// Consumes `p` if the rest starts with it.
    fn eat_prefix(&mut self, p: &str) -> bool {
        if self.rest().starts_with(p) {
            self.i += p.len();
            true
        } else {
            false
        }
    }

    /// Consumes `kw` if the rest starts with it followed by a separator.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        let next = self.b.get(self.i + kw.len()).copied();
        if self.rest().starts_with(kw) && next.is_some_and(|b| self.is_sep(b)) {
            self.i += kw.len();
            true
        } else {
            false
        }
    }

    /// Consumes the token up to the next separator (or end of line).
    fn token(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(|b| !self.is_sep(b)) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// The text from `start` up to a separator or `{`, for error messages.
    fn bad_token(&self, start: usize) -> &'a str {
        let end = self.b[start..]
            .iter()
            .position(|&b| self.is_sep(b) || b == b'{')
            .map_or(self.b.len(), |n| start + n);
        &self.s[start..end]
    }

    /// The text from `start` up to a character that ends a label name, for
    /// error messages.
    fn bad_label_token(&self, start: usize) -> &'a str {
        let end = self.b[start..]
            .iter()
            .position(|&b| matches!(b, b'=' | b',' | b'}' | b'"' | b' ' | b'\t'))
            .map_or(self.b.len(), |n| start + n);
        &self.s[start..end]
    }

    /// A quoted string starting at the cursor's `"`; `None` if it does not end
    /// on this line. Leaves the cursor after the closing quote.
    fn quoted(&mut self) -> Option<Raw<'a>> {
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        while j < self.b.len() {
            match self.b[j] {
                b'"' => {
                    self.i = j + 1;
                    return Some(Raw {
                        s: &self.s[start..j],
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
        None
    }

    /// The metric name of a `# HELP`/`# TYPE`/`# UNIT` line (bare or quoted),
    /// which must be followed by a separator or the end of the line.
    fn meta_name(&mut self, meta: Meta) -> Result<String, String> {
        let start = self.i;
        let name = match self.peek() {
            None => {
                return Err(format!("expected metric name after {}", meta.keyword()));
            }
            Some(b'"') => {
                let raw = self.quoted().ok_or_else(|| {
                    format!("unterminated quoted metric name after {}", meta.keyword())
                })?;
                let name = raw.unescape();
                if name.is_empty() {
                    return Err("invalid metric name \"\"".to_owned());
                }
                name
            }
            Some(b) if is_metric_start(b) => {
                self.i += 1;
                self.skip_while(is_metric_char);
                self.s[start..self.i].to_owned()
            }
            Some(_) => String::new(),
        };
        if name.is_empty() || self.peek().is_some_and(|b| !self.is_sep(b)) {
            let end = self.b[start..]
                .iter()
                .position(|&b| self.is_sep(b))
                .map_or(self.b.len(), |n| start + n);
            return Err(format!("invalid metric name {:?}", &self.s[start..end]));
        }
        Ok(name)
    }

    /// The entries of a label set, the cursor after its `{`; leaves the cursor
    /// after the closing `}`. Prometheus text allows spaces and tabs around
    /// every token and, like `promparse.go`, a missing comma between pairs;
    /// OpenMetrics allows neither. Both allow a trailing comma.
    fn label_set(
        &mut self,
        mut sink: impl FnMut(Item<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            self.skip_ws();
            let label = match self.peek() {
                None => return Err("unterminated label set (missing '}')".to_owned()),
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'"') => {
                    let raw = self
                        .quoted()
                        .ok_or_else(|| "unterminated quoted name in label set".to_owned())?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            sink(Item::Name(raw))?;
                            continue;
                        }
                        Some(b'}') => {
                            sink(Item::Name(raw))?;
                            continue;
                        }
                        _ => raw,
                    }
                }
                Some(b) if is_label_start(b) => {
                    let start = self.i;
                    self.i += 1;
                    self.skip_while(is_label_char);
                    match self.peek() {
                        None | Some(b'=' | b',' | b'}' | b' ') => {}
                        Some(b'\t') if !self.om => {}
                        Some(_) => {
                            return Err(format!(
                                "invalid label name {:?}",
                                self.bad_label_token(start)
                            ));
                        }
                    }
                    Raw {
                        s: &self.s[start..self.i],
                        escaped: false,
                    }
                }
                Some(_) => {
                    let tok = self.bad_label_token(self.i);
                    return Err(if tok.is_empty() {
                        format!("expected label name, found {:?}", self.rest())
                    } else {
                        format!("invalid label name {tok:?}")
                    });
                }
            };
            self.skip_ws();
            if self.peek() != Some(b'=') {
                return Err(format!("expected '=' after label name {:?}", label.s));
            }
            self.i += 1;
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(format!("expected quoted label value for {:?}", label.s));
            }
            let value = self
                .quoted()
                .ok_or_else(|| format!("unterminated label value for {:?}", label.s))?;
            sink(Item::Label(label, value))?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                None => return Err("unterminated label set (missing '}')".to_owned()),
                Some(_) if !self.om => {}
                Some(_) => {
                    return Err(format!(
                        "expected ',' or '}}' after label value, found {:?}",
                        self.rest()
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
