//! The parser of Prometheus's PromQL test scripts (`promql/promqltest`, format described in
//! its README): `load`, `load_with_nhcb`, `clear` and `eval` commands with their expected
//! results and `expect` lines.
//!
//! It follows Prometheus's `promqltest/test.go` (command and `expect` syntax, durations,
//! expected scalars) and its parser's `ParseSeriesDesc` (the series notation: `a+bxN`,
//! `a-bxN`, `axN`, `_`, `_xN`, `stale`, `Inf`, `NaN`). Series descriptors
//! (`metric{a="b"}`, `{__name__="x"}`) are parsed with `promql-parser` as vector selectors.
//! Native-histogram values (`{{...}}`) are recognised and counted as points but not decoded.
//!
//! Unlike Prometheus, which rejects a whole file at its first syntax error, this parser
//! records the error with its line and goes on with the next command, so that one odd line
//! costs one case, not a file.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, token};

/// A label set: `(name, value)` pairs sorted by name, no empty values.
pub type Labels = Vec<(String, String)>;

/// A parsed test script.
#[derive(Debug, Default)]
pub struct Script {
    /// The commands in file order.
    pub commands: Vec<Command>,
    /// Syntax errors, each with its 1-based line; the commands they broke are left out
    /// (an `eval` that failed to parse is kept as [`Command::Broken`]).
    pub errors: Vec<ParseError>,
}

/// A syntax error in a script.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One command of a script.
#[derive(Debug)]
pub enum Command {
    /// `load <interval>` (or `load_with_nhcb`) with its series.
    Load(Load),
    /// `clear`: drop all data.
    Clear {
        /// 1-based line number.
        line: usize,
    },
    /// `eval ...` with its expectations.
    Eval(Box<Eval>),
    /// An `eval` command that could not be parsed: counts as one failed case.
    Broken {
        /// 1-based line number.
        line: usize,
        /// The command line as written.
        text: String,
        /// The parse error.
        message: String,
    },
}

/// A `load` command.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// 1-based line number of the `load` line.
    pub line: usize,
    /// Step between consecutive points, ms.
    pub interval_ms: i64,
    /// `load_with_nhcb`: classic histograms are also loaded as native histograms with
    /// custom buckets (which Strata cannot store).
    pub with_nhcb: bool,
    /// The series, in file order.
    pub series: Vec<SeriesLine>,
}

/// One `<series> <points>` line.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLine {
    /// 1-based line number.
    pub line: usize,
    /// The series' labels (`__name__` included when given).
    pub labels: Labels,
    /// The expanded points: the i-th is at `start + i * step`.
    pub values: Vec<SeqValue>,
}

/// One point of an expanded series notation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    /// `_`: no point at this step.
    Omitted,
    /// A float (the staleness marker is the NaN with bits `0x7ff0000000000002`).
    Float(f64),
    /// A native histogram (`{{...}}`), not decoded.
    Histogram,
}

impl SeqValue {
    /// The float Prometheus's test runner compares with: an omitted point is 0 there, a
    /// histogram has no float value (NaN here, never compared).
    pub fn float(self) -> f64 {
        match self {
            SeqValue::Omitted => 0.0,
            SeqValue::Float(v) => v,
            SeqValue::Histogram => f64::NAN,
        }
    }
}

/// What an `eval` evaluates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalKind {
    /// `eval instant at <time>`.
    Instant {
        /// Evaluation time, ms since the epoch.
        at_ms: i64,
    },
    /// `eval range from <start> to <end> step <step>`.
    Range {
        /// First step, ms.
        start_ms: i64,
        /// Last step (inclusive bound), ms.
        end_ms: i64,
        /// Step, ms.
        step_ms: i64,
    },
}

/// The kind of an `expect` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectKind {
    /// `expect ordered`.
    Ordered,
    /// `expect fail`.
    Fail,
    /// `expect warn`.
    Warn,
    /// `expect no_warn`.
    NoWarn,
    /// `expect info`.
    Info,
    /// `expect no_info`.
    NoInfo,
}

/// How an `expect` line matches a message.
#[derive(Debug, Clone)]
pub enum MessageMatch {
    /// No `msg:`/`regex:` part: any message.
    Any,
    /// `msg: <text>`: the message must equal the text (trimmed).
    Exact(String),
    /// `regex: <re>`: the pattern must match somewhere in the message (Go's
    /// `regexp.MatchString`, unanchored).
    Regex(RegexMatch),
}

/// A compiled unanchored regular expression (through `promql-parser`'s matcher, which
/// wraps the `regex` crate).
#[derive(Debug, Clone)]
pub struct RegexMatch {
    /// The pattern as written.
    pub pattern: String,
    matcher: Matcher,
}

impl RegexMatch {
    /// Compiles `pattern` for an unanchored search.
    ///
    /// # Errors
    /// The pattern is not a valid regular expression.
    pub fn new(pattern: &str) -> Result<RegexMatch, String> {
        // promql-parser anchors matcher regexes as ^(?:...)$; padding with (?s:.*) on both
        // sides turns that into a search anywhere in the text.
        let wrapped = format!("(?s:.*)(?:{pattern})(?s:.*)");
        let matcher = Matcher::new_matcher(token::T_EQL_REGEX, "m".into(), wrapped)
            .map_err(|_| format!("invalid regex {pattern}"))?;
        Ok(RegexMatch {
            pattern: pattern.to_string(),
            matcher,
        })
    }

    /// Whether the pattern matches somewhere in `s`.
    pub fn is_match(&self, s: &str) -> bool {
        self.matcher.is_match(s)
    }
}

impl MessageMatch {
    /// Whether `s` satisfies this expectation.
    pub fn check(&self, s: &str) -> bool {
        match self {
            MessageMatch::Any => true,
            MessageMatch::Exact(m) => m == s,
            MessageMatch::Regex(r) => r.is_match(s),
        }
    }

    /// `message "..."` or `pattern "..."`, for failure reports.
    pub fn describe(&self) -> String {
        match self {
            MessageMatch::Any => "pattern \"^.*$\"".into(),
            MessageMatch::Exact(m) => format!("message {m:?}"),
            MessageMatch::Regex(r) => format!("pattern {:?}", r.pattern),
        }
    }
}

/// One `expect` line.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The kind.
    pub kind: ExpectKind,
    /// The message part.
    pub message: MessageMatch,
}

/// One expected series of an `eval`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedSeries {
    /// 1-based position among the expected series (for `expect ordered`).
    pub pos: usize,
    /// The labels.
    pub labels: Labels,
    /// The expected points (one for an instant vector).
    pub values: Vec<SeqValue>,
}

/// The expected result of an `eval`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A bare number line: a scalar.
    Scalar(f64),
    /// Series lines (possibly none: an empty result).
    Series(Vec<ExpectedSeries>),
}

/// An `eval` command.
#[derive(Debug, Clone)]
pub struct Eval {
    /// 1-based line number of the `eval` line.
    pub line: usize,
    /// The PromQL query as written.
    pub query: String,
    /// Instant or range.
    pub kind: EvalKind,
    /// Old-style `eval_fail`.
    pub old_fail: bool,
    /// Old-style `eval_warn`.
    pub old_warn: bool,
    /// Old-style `eval_info`.
    pub old_info: bool,
    /// Old-style `eval_ordered`.
    pub old_ordered: bool,
    /// Old-style `expected_fail_message <text>` (with `eval_fail`).
    pub expected_fail_message: Option<String>,
    /// Old-style `expected_fail_regexp <re>` (with `eval_fail`).
    pub expected_fail_regexp: Option<RegexMatch>,
    /// The `expect` lines.
    pub expects: Vec<Expect>,
    /// `expect range vector from A to B step S` (instant queries returning a matrix):
    /// `(start_ms, end_ms, step_ms)`.
    pub range_vector: Option<(i64, i64, i64)>,
    /// `expect string "..."`.
    pub expected_string: Option<String>,
    /// The expected result.
    pub expected: Expected,
}

impl Eval {
    /// Whether the query must fail (`eval_fail` or `expect fail`).
    pub fn is_fail(&self) -> bool {
        self.old_fail || self.expects_of(ExpectKind::Fail).next().is_some()
    }

    /// Whether the result order matters (`eval_ordered` or `expect ordered`).
    pub fn is_ordered(&self) -> bool {
        self.old_ordered || self.expects_of(ExpectKind::Ordered).next().is_some()
    }

    /// The `expect` lines of one kind.
    pub fn expects_of(&self, kind: ExpectKind) -> impl Iterator<Item = &Expect> {
        self.expects.iter().filter(move |e| e.kind == kind)
    }

    /// Whether an instant eval is kept out of the range-mode re-run (Prometheus's
    /// `excludeFromRangeQuery`: `expect range vector` or `expect string`).
    pub fn exclude_from_range_query(&self) -> bool {
        self.range_vector.is_some() || self.expected_string.is_some()
    }

    /// Whether any expected value is a native histogram.
    pub fn expects_histograms(&self) -> bool {
        match &self.expected {
            Expected::Scalar(_) => false,
            Expected::Series(s) => s
                .iter()
                .any(|s| s.values.iter().any(|v| matches!(v, SeqValue::Histogram))),
        }
    }
}

/// Parses a Prometheus duration as `model.ParseDuration` does: units `y` (365 days),
/// `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and in that order (`5m30s`,
/// `10s53ms`), or a bare `0`. Returns milliseconds.
///
/// # Errors
/// Anything else (empty, unknown unit, wrong order, negative).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bad = || format!("not a valid duration string: {s:?}");
    let b = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let n: i64 = s[start..i].parse().map_err(|_| bad())?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let k = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .map(|k| k + next_unit)
            .ok_or_else(bad)?;
        next_unit = k + 1;
        total = n
            .checked_mul(UNITS[k].1)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b` prefixes, a leading
/// `0` for octal, `_` between digits.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    // Underscores: only between digits (or right after a base prefix).
    let db = digits.as_bytes();
    if db.is_empty() || db[db.len() - 1] == b'_' || (!prefixed && db[0] == b'_') {
        return None;
    }
    if digits.contains("__") {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(&clean, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Go's `strconv.ParseFloat(s, 64)` for the forms the test scripts use: decimal and
/// scientific notation, `Inf`/`+Inf`/`-Inf`/`Infinity`, `NaN` (case-insensitive).
fn go_parse_float(s: &str) -> Option<f64> {
    let (sign, body) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    let l = body.to_ascii_lowercase();
    if l == "inf" || l == "infinity" {
        return Some(sign * f64::INFINITY);
    }
    if l == "nan" {
        return Some(f64::NAN);
    }
    let ok = !l.is_empty()
        && l.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
        && l.bytes().any(|c| c.is_ascii_digit());
    if !ok {
        return None;
    }
    l.parse::<f64>().ok().map(|v| sign * v)
}

/// A number as Prometheus's test runner and parser read one: `ParseInt(s, 0, 64)` first,
/// then `ParseFloat`.
pub fn parse_number(s: &str) -> Option<f64> {
    go_parse_int(s)
        .map(|v| v as f64)
        .or_else(|| go_parse_float(s))
}

/// Scans a NUMBER token of the series notation at the start of `s` (Prometheus's lexer in
/// series-description mode: digits, optional fraction and exponent, no hex; `inf` and
/// `nan` as words). Returns the value and the rest.
fn scan_number(s: &str) -> Result<(f64, &str), String> {
    let b = s.as_bytes();
    if b.first().is_some_and(|c| c.is_ascii_alphabetic()) {
        let end = b
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b':'))
            .unwrap_or(b.len());
        let word = &s[..end];
        return match word.to_ascii_lowercase().as_str() {
            "inf" => Ok((f64::INFINITY, &s[end..])),
            "nan" => Ok((f64::NAN, &s[end..])),
            _ => Err(format!("unexpected identifier {word:?} in series values")),
        };
    }
    let mut i = 0;
    let digits = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(&mut i);
    if i < b.len() && b[i] == b'.' {
        i += 1;
        digits(&mut i);
    }
    if i == 0 || (i == 1 && b[0] == b'.') {
        return Err(format!("expected a number in series values at {s:?}"));
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        digits(&mut i);
    }
    // The next character must not be alphanumeric, except the repetition's `x`.
    if i < b.len() && b[i] != b'x' && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        return Err(format!("bad number syntax: {s:?}"));
    }
    let text = &s[..i];
    let v = parse_number(text).ok_or_else(|| format!("error parsing number: {text:?}"))?;
    Ok((v, &s[i..]))
}

/// Scans a possibly signed number (`+1`, `-Inf`, `2.5`).
fn scan_signed(s: &str) -> Result<(f64, &str), String> {
    match s.as_bytes().first() {
        Some(b'+') => scan_number(&s[1..]),
        Some(b'-') => scan_number(&s[1..]).map(|(v, r)| (-v, r)),
        _ => scan_number(s),
    }
}

/// A repetition count (`ParseUint(s, 10, 64)`).
fn parse_count(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("invalid repetition in series values: {s:?}"));
    }
    s.parse()
        .map_err(|e| format!("invalid repetition in series values: {e}"))
}

/// Expands one item of the series notation (no whitespace inside): `_`, `_xN` (N omitted
/// points), `v`, `vxN` (N+1 points), `v+dxN` / `v-dxN` (N+1 points, each the previous plus
/// `d`, accumulated as Prometheus does), where `v` is a signed number, `Inf`, `NaN` or
/// `stale`.
pub fn expand_item(item: &str) -> Result<Vec<SeqValue>, String> {
    if item == "_" {
        return Ok(vec![SeqValue::Omitted]);
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n = parse_count(n)?;
        return Ok(vec![SeqValue::Omitted; n as usize]);
    }
    // `stale` is an identifier to Prometheus's lexer: it must stand alone (`stalex2` is one
    // unknown identifier there), though an increment may follow it.
    let (mut v, rest) = if let Some(rest) = item.strip_prefix("stale") {
        if rest
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        {
            return Err(format!("unexpected identifier in series values: {item:?}"));
        }
        (f64::from_bits(STALE_NAN_BITS), rest)
    } else {
        scan_signed(item)?
    };
    if rest.is_empty() {
        return Ok(vec![SeqValue::Float(v)]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n = parse_count(n)?;
        return Ok(vec![SeqValue::Float(v); n as usize + 1]);
    }
    if rest.starts_with('+') || rest.starts_with('-') {
        let (d, rest2) = scan_signed(rest)?;
        let n = rest2
            .strip_prefix('x')
            .ok_or_else(|| format!("expected xN after the increment in {item:?}"))?;
        let n = parse_count(n)?;
        let mut out = Vec::with_capacity(n as usize + 1);
        for _ in 0..=n {
            out.push(SeqValue::Float(v));
            v += d;
        }
        return Ok(out);
    }
    Err(format!("unexpected {rest:?} in series value {item:?}"))
}

/// Prometheus's staleness marker bits (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Position right after the `}}` closing the histogram that starts at `s[start..]`
/// (`{{`).
fn histogram_end(s: &str, start: usize) -> Result<usize, String> {
    s[start + 2..]
        .find("}}")
        .map(|k| start + 2 + k + 2)
        .ok_or_else(|| format!("unterminated histogram in {s:?}"))
}

/// Expands the points part of a series line (everything after the descriptor).
pub fn expand_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if s[i..].starts_with("{{") {
            // {{h}}, {{h}}xN, {{h}}+{{d}}xN, {{h}}-{{d}}xN: one or N+1 histogram points.
            let mut j = histogram_end(s, i)?;
            let mut count = 1u64;
            if s[j..].starts_with("+{{") || s[j..].starts_with("-{{") {
                j = histogram_end(s, j + 1)?;
                if !s[j..].starts_with('x') {
                    return Err(format!("expected xN after a histogram increment in {s:?}"));
                }
            }
            if let Some(rest) = s[j..].strip_prefix('x') {
                let end = rest
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(rest.len());
                count = parse_count(&rest[..end])? + 1;
                j += 1 + end;
            }
            if j < b.len() && !b[j].is_ascii_whitespace() {
                return Err(format!("unexpected {:?} after a histogram", &s[j..]));
            }
            out.extend(std::iter::repeat_n(SeqValue::Histogram, count as usize));
            i = j;
            continue;
        }
        let end = s[i..]
            .find(|c: char| c.is_ascii_whitespace())
            .map(|k| i + k)
            .unwrap_or(b.len());
        out.extend(expand_item(&s[i..end])?);
        i = end;
    }
    Ok(out)
}

/// Splits a series line into its descriptor (`metric{...}`, `{...}`, `metric`) and the
/// rest, honouring quotes inside the braces.
fn split_descriptor(line: &str) -> Result<(&str, &str), String> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    if i < b.len() && b[i] == b'{' {
        let mut quote: Option<u8> = None;
        i += 1;
        loop {
            let Some(&c) = b.get(i) else {
                return Err(format!("unterminated label set in {line:?}"));
            };
            match quote {
                Some(q) if c == b'\\' && q != b'`' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'"' || c == b'\'' || c == b'`' => quote = Some(c),
                None if c == b'}' => {
                    i += 1;
                    break;
                }
                None => {}
            }
            i += 1;
        }
    }
    if i == 0 {
        return Err(format!("expected a series descriptor at {line:?}"));
    }
    if i < b.len() && !b[i].is_ascii_whitespace() {
        return Err(format!(
            "unexpected {:?} after the series descriptor",
            &line[i..]
        ));
    }
    Ok((&line[..i], &line[i..]))
}

/// The labels of a series descriptor, parsed by `promql-parser` as a vector selector whose
/// matchers must all be equalities.
pub fn parse_descriptor(desc: &str) -> Result<Labels, String> {
    let compact: String = desc.chars().filter(|c| !c.is_whitespace()).collect();
    if compact == "{}" || compact == "{,}" {
        return Ok(vec![]);
    }
    let expr = promql_parser::parser::parse(desc)
        .map_err(|e| format!("invalid series descriptor {desc:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "invalid series descriptor {desc:?}: not a selector"
        ));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!(
            "invalid series descriptor {desc:?}: `or` in a label set"
        ));
    }
    let mut labels: Labels = vec![];
    if let Some(n) = vs.name {
        labels.push(("__name__".into(), n));
    }
    for m in vs.matchers.matchers {
        if !matches!(m.op, MatchOp::Equal) {
            return Err(format!(
                "invalid series descriptor {desc:?}: only `=` is allowed in a label set"
            ));
        }
        labels.push((m.name, m.value));
    }
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "invalid series descriptor {desc:?}: duplicate label"
        ));
    }
    Ok(labels)
}

/// Parses a `<series> <points>` line.
pub fn parse_series_line(line: &str) -> Result<(Labels, Vec<SeqValue>), String> {
    let (desc, rest) = split_descriptor(line)?;
    let labels = parse_descriptor(desc)?;
    let values = expand_values(rest)?;
    Ok((labels, values))
}

/// Go's `strconv.Unquote` for `"..."` (with escapes), `` `...` `` and `'c'`.
pub fn go_unquote(s: &str) -> Result<String, String> {
    let bad = || format!("invalid quoted string {s:?}");
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b[b.len() - 1] {
        return Err(bad());
    }
    let inner = &s[1..s.len() - 1];
    match b[0] {
        b'`' => {
            if inner.contains('`') {
                return Err(bad());
            }
            Ok(inner.replace('\r', ""))
        }
        b'"' | b'\'' => {
            let q = b[0] as char;
            let mut out = String::new();
            let mut it = inner.chars().peekable();
            while let Some(c) = it.next() {
                if c == q || c == '\n' {
                    return Err(bad());
                }
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let e = it.next().ok_or_else(bad)?;
                let hex = |it: &mut std::iter::Peekable<std::str::Chars>, n: usize| {
                    let h: String = it.by_ref().take(n).collect();
                    if h.len() != n {
                        return None;
                    }
                    u32::from_str_radix(&h, 16).ok()
                };
                match e {
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '"' | '\'' if e == q => out.push(e),
                    'x' => {
                        // A byte; only ASCII bytes make valid UTF-8 on their own.
                        let v = hex(&mut it, 2).ok_or_else(bad)?;
                        out.push(char::from_u32(v).filter(|c| c.is_ascii()).ok_or_else(bad)?);
                    }
                    'u' => {
                        let v = hex(&mut it, 4).ok_or_else(bad)?;
                        out.push(char::from_u32(v).ok_or_else(bad)?);
                    }
                    'U' => {
                        let v = hex(&mut it, 8).ok_or_else(bad)?;
                        out.push(char::from_u32(v).ok_or_else(bad)?);
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let d = it.next().and_then(|c| c.to_digit(8)).ok_or_else(bad)?;
                            v = v * 8 + d;
                        }
                        out.push(char::from_u32(v).filter(|c| c.is_ascii()).ok_or_else(bad)?);
                    }
                    _ => return Err(bad()),
                }
            }
            if q == '\'' && out.chars().count() != 1 {
                return Err(bad());
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// Parses one `expect` line (already trimmed).
fn parse_expect(line: &str) -> Result<Expect, String> {
    let bad = || {
        "invalid expect statement, must match `expect <type> <match_type>: <string>` format"
            .to_string()
    };
    let rest = line.strip_prefix("expect").ok_or_else(bad)?;
    if !rest.starts_with(|c: char| c.is_whitespace()) {
        return Err(bad());
    }
    let rest = rest.trim_start();
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let kind = match &rest[..end] {
        "ordered" => ExpectKind::Ordered,
        "fail" => ExpectKind::Fail,
        "warn" => ExpectKind::Warn,
        "no_warn" => ExpectKind::NoWarn,
        "info" => ExpectKind::Info,
        "no_info" => ExpectKind::NoInfo,
        _ => return Err(bad()),
    };
    let tail = rest[end..].trim_start();
    let message = if tail.is_empty() {
        MessageMatch::Any
    } else if let Some(m) = tail.strip_prefix("msg:").filter(|m| !m.is_empty()) {
        MessageMatch::Exact(m.trim().to_string())
    } else if let Some(r) = tail.strip_prefix("regex:").filter(|r| !r.is_empty()) {
        MessageMatch::Regex(RegexMatch::new(r.trim())?)
    } else {
        return Err(bad());
    };
    Ok(Expect { kind, message })
}

/// The eval header: kind, old-style modifier, query.
struct EvalHeader {
    kind: EvalKind,
    modifier: String,
    query: String,
}

/// Splits off the first whitespace-delimited word of `s` (after leading whitespace).
fn word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(|c: char| c.is_whitespace()).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

/// Parses `eval[_mod] instant at <t> <query>` or
/// `eval[_mod] range from <a> to <b> step <s> <query>`.
fn parse_eval_header(line: &str) -> Result<EvalHeader, String> {
    let bad = || {
        "invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered|_info] instant \
         [at <offset:duration>] <query>' or 'eval[_fail|_warn|_info] range from <from> to <to> \
         step <step> <query>'"
            .to_string()
    };
    let (cmd, rest) = word(line).ok_or_else(bad)?;
    let modifier = match cmd.strip_prefix("eval") {
        Some("") => "",
        Some(m) => m.strip_prefix('_').ok_or_else(bad)?,
        None => return Err(bad()),
    };
    let (kind_word, rest) = word(rest).ok_or_else(bad)?;
    match kind_word {
        "instant" => {
            if !matches!(modifier, "" | "fail" | "warn" | "ordered" | "info") {
                return Err(bad());
            }
            let (at, rest) = word(rest).ok_or_else(bad)?;
            if at != "at" {
                return Err(bad());
            }
            let (t, rest) = word(rest).ok_or_else(bad)?;
            let query = rest.trim();
            if query.is_empty() {
                return Err(bad());
            }
            let at_ms = parse_duration_ms(t)
                .map_err(|e| format!("invalid timestamp definition {t:?}: {e}"))?;
            Ok(EvalHeader {
                kind: EvalKind::Instant { at_ms },
                modifier: modifier.into(),
                query: query.into(),
            })
        }
        "range" => {
            if !matches!(modifier, "" | "fail" | "warn" | "info") {
                return Err(bad());
            }
            let mut parts = vec![];
            let mut rest = rest;
            for expect in ["from", "", "to", "", "step", ""] {
                let (w, r) = word(rest).ok_or_else(bad)?;
                if !expect.is_empty() && w != expect {
                    return Err(bad());
                }
                if expect.is_empty() {
                    parts.push(w);
                }
                rest = r;
            }
            let query = rest.trim();
            if query.is_empty() {
                return Err(bad());
            }
            let (start_ms, end_ms, step_ms) = parse_range(parts[0], parts[1], parts[2])?;
            Ok(EvalHeader {
                kind: EvalKind::Range {
                    start_ms,
                    end_ms,
                    step_ms,
                },
                modifier: modifier.into(),
                query: query.into(),
            })
        }
        _ => Err(bad()),
    }
}

/// Parses `from`, `to` and `step` durations (Prometheus's `parseDurations`).
fn parse_range(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let a = parse_duration_ms(from)
        .map_err(|e| format!("invalid start timestamp definition {from:?}: {e}"))?;
    let b = parse_duration_ms(to)
        .map_err(|e| format!("invalid end timestamp definition {to:?}: {e}"))?;
    if b < a {
        return Err(format!(
            "invalid test definition, end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let s =
        parse_duration_ms(step).map_err(|e| format!("invalid step definition {step:?}: {e}"))?;
    Ok((a, b, s))
}

/// Parses an `expect range vector from A to B step S` line.
fn parse_expect_range_vector(line: &str) -> Result<(i64, i64, i64), String> {
    let bad = || format!("invalid range vector definition {line:?}");
    let rest = line.strip_prefix("expect range vector").ok_or_else(bad)?;
    let mut parts = vec![];
    let mut rest = rest;
    for expect in ["from", "", "to", "", "step", ""] {
        let (w, r) = word(rest).ok_or_else(bad)?;
        if !expect.is_empty() && w != expect {
            return Err(bad());
        }
        if expect.is_empty() {
            parts.push(w);
        }
        rest = r;
    }
    if !rest.trim().is_empty() {
        return Err(bad());
    }
    parse_range(parts[0], parts[1], parts[2])
}

/// Parses `expect string "..."`.
fn parse_expect_string(line: &str) -> Result<String, String> {
    let bad =
        || "expected string literal not valid - a quoted string literal is required".to_string();
    let s = line.strip_prefix("expect string ").ok_or_else(bad)?;
    if s.is_empty() {
        return Err(bad());
    }
    go_unquote(s).map_err(|_| {
        "expected string literal not valid - check that the string is correctly quoted".into()
    })
}

/// The script's lines, trimmed, comment lines (`#` first) blanked.
fn get_lines(input: &str) -> Vec<String> {
    input
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Parses a whole script.
pub fn parse_script(input: &str) -> Script {
    let lines = get_lines(input);
    let mut script = Script::default();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let first = l
            .split([' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if first == "clear" {
            script.commands.push(Command::Clear { line: i + 1 });
            i += 1;
        } else if first.starts_with("load") {
            match parse_load(&lines, i) {
                Ok((next, load)) => {
                    script.commands.push(Command::Load(load));
                    i = next;
                }
                Err((next, e)) => {
                    script.errors.push(e);
                    i = next;
                }
            }
        } else if first.starts_with("eval") {
            match parse_eval(&lines, i) {
                Ok((next, ev)) => {
                    script.commands.push(Command::Eval(Box::new(ev)));
                    i = next;
                }
                Err((next, e)) => {
                    script.commands.push(Command::Broken {
                        line: i + 1,
                        text: lines[i].clone(),
                        message: e.message.clone(),
                    });
                    script.errors.push(e);
                    i = next;
                }
            }
        } else {
            script.errors.push(ParseError {
                line: i + 1,
                message: format!("invalid command {l:?}"),
            });
            i += 1;
        }
    }
    script
}

/// The index of the first blank line after `i` (the end of `i`'s block).
fn skip_block(lines: &[String], i: usize) -> usize {
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        j += 1;
    }
    j
}

type Parsed<T> = Result<(usize, T), (usize, ParseError)>;

/// Parses the `load` block starting at line index `i`; returns the index after it.
fn parse_load(lines: &[String], i: usize) -> Parsed<Load> {
    let err = |line: usize, message: String| (skip_block(lines, i), ParseError { line, message });
    let l = &lines[i];
    let (cmd, rest) = word(l).unwrap_or_default();
    let with_nhcb = match cmd {
        "load" => false,
        "load_with_nhcb" => true,
        _ => {
            return Err(err(
                i + 1,
                "invalid load command. (load[_with_nhcb] <step:duration>)".into(),
            ));
        }
    };
    let step = rest.trim();
    let interval_ms = parse_duration_ms(step)
        .map_err(|e| err(i + 1, format!("invalid step definition {step:?}: {e}")))?;
    let mut load = Load {
        line: i + 1,
        interval_ms,
        with_nhcb,
        series: vec![],
    };
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let def = &lines[j];
        let first = def.split([' ', '\t']).next().unwrap_or_default();
        if first.ends_with("@st") {
            return Err(err(
                j + 1,
                "start-timestamp (@st) lines are not supported".into(),
            ));
        }
        let (labels, values) = parse_series_line(def).map_err(|e| err(j + 1, e))?;
        load.series.push(SeriesLine {
            line: j + 1,
            labels,
            values,
        });
        j += 1;
    }
    Ok((j, load))
}

/// Parses the `eval` block starting at line index `i`; returns the index after it.
fn parse_eval(lines: &[String], i: usize) -> Parsed<Eval> {
    let err = |line: usize, message: String| (skip_block(lines, i), ParseError { line, message });
    let header = parse_eval_header(&lines[i]).map_err(|e| err(i + 1, e))?;
    let is_instant = matches!(header.kind, EvalKind::Instant { .. });
    let mut ev = Eval {
        line: i + 1,
        query: header.query,
        kind: header.kind,
        old_fail: header.modifier == "fail",
        old_warn: header.modifier == "warn",
        old_info: header.modifier == "info",
        old_ordered: header.modifier == "ordered",
        expected_fail_message: None,
        expected_fail_regexp: None,
        expects: vec![],
        range_vector: None,
        expected_string: None,
        expected: Expected::Series(vec![]),
    };
    let mut series: Vec<ExpectedSeries> = vec![];
    let mut scalar = None;
    let mut pos = 0;
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let def = lines[j].as_str();
        j += 1;
        let line = j; // 1-based number of `def`
        if ev.old_fail
            && let Some(m) = def.strip_prefix("expected_fail_message")
        {
            ev.expected_fail_message = Some(m.trim().to_string());
            break;
        }
        if ev.old_fail
            && let Some(r) = def.strip_prefix("expected_fail_regexp")
        {
            let r = r.trim();
            ev.expected_fail_regexp = Some(RegexMatch::new(r).map_err(|_| {
                err(
                    line,
                    format!("invalid regexp '{r}' for expected_fail_regexp"),
                )
            })?);
            break;
        }
        if def.starts_with("expect range vector") {
            ev.range_vector = Some(parse_expect_range_vector(def).map_err(|e| err(line, e))?);
            continue;
        }
        if def.starts_with("expect string") {
            ev.expected_string = Some(parse_expect_string(def).map_err(|e| err(line, e))?);
            continue;
        }
        if def.split(' ').next() == Some("expect") {
            let e = parse_expect(def).map_err(|e| err(line, e))?;
            ev.expects.push(e);
            let has = |k| ev.expects.iter().any(|e| e.kind == k);
            let n_fail = ev
                .expects
                .iter()
                .filter(|e| e.kind == ExpectKind::Fail)
                .count();
            if has(ExpectKind::Info) && has(ExpectKind::NoInfo) {
                return Err(err(
                    line,
                    "invalid expect lines, info and no_info cannot be used together".into(),
                ));
            }
            if has(ExpectKind::Warn) && has(ExpectKind::NoWarn) {
                return Err(err(
                    line,
                    "invalid expect lines, warn and no_warn cannot be used together".into(),
                ));
            }
            if n_fail > 1 {
                return Err(err(
                    line,
                    "invalid expect lines, multiple expect fail lines are not allowed".into(),
                ));
            }
            continue;
        }
        if let Some(v) = parse_number(def) {
            scalar = Some(v);
            break;
        }
        let (labels, values) = parse_series_line(def).map_err(|e| err(line, e))?;
        if values.len() > 1 && is_instant && ev.range_vector.is_none() {
            return Err(err(
                line,
                "expecting multiple values in instant evaluation not allowed. consider using \
                 'expect range vector' directive to enable a range vector result for an instant \
                 query"
                    .into(),
            ));
        }
        pos += 1;
        // A series given twice: the later line wins (Prometheus keys them by label hash).
        series.retain(|s| s.labels != labels);
        series.push(ExpectedSeries {
            pos,
            labels,
            values,
        });
    }
    ev.expected = match scalar {
        Some(v) => Expected::Scalar(v),
        None => Expected::Series(series),
    };
    Ok((j, ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(v: &[SeqValue]) -> Vec<Option<f64>> {
        v.iter()
            .map(|x| match x {
                SeqValue::Float(f) => Some(*f),
                SeqValue::Omitted => None,
                SeqValue::Histogram => Some(-12345.0),
            })
            .collect()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        let mut v: Labels = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        assert_eq!(parse_duration_ms("1ms"), Ok(1));
        assert_eq!(parse_duration_ms("5m59s"), Ok(359_000));
        assert_eq!(parse_duration_ms("10s53ms"), Ok(10_053));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("1w"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("1y"), Ok(31_536_000_000));
        assert_eq!(parse_duration_ms("20010s"), Ok(20_010_000));
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("1s1m").is_err());
        assert!(parse_duration_ms("1.5m").is_err());
        assert!(parse_duration_ms("-1m").is_err());
        assert!(parse_duration_ms("1m1m").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("12340000"), Some(12_340_000.0));
        assert_eq!(parse_number("0.00001234"), Some(0.00001234));
        assert_eq!(parse_number("-0.0000002"), Some(-0.0000002));
        assert_eq!(parse_number("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_number("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_number("inf"), Some(f64::INFINITY));
        assert!(parse_number("NaN").unwrap().is_nan());
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number("2."), Some(2.0));
        assert_eq!(parse_number(".5"), Some(0.5));
        // Go's ParseInt(s, 0, 64): hex, octal.
        assert_eq!(parse_number("0x10"), Some(16.0));
        assert_eq!(parse_number("010"), Some(8.0));
        assert_eq!(parse_number("09"), Some(9.0)); // not octal: falls back to ParseFloat
        assert_eq!(parse_number("1_000"), Some(1000.0));
        assert_eq!(parse_number("{} 3"), None);
        assert_eq!(parse_number("metric 3"), None);
        assert_eq!(parse_number("expect fail"), None);
    }

    #[test]
    fn series_notation() {
        let e = |s: &str| floats(&expand_values(s).unwrap());
        assert_eq!(e("1 2 3"), vec![Some(1.0), Some(2.0), Some(3.0)]);
        // a+bxN: N+1 points.
        assert_eq!(
            e("0+10x3"),
            vec![Some(0.0), Some(10.0), Some(20.0), Some(30.0)]
        );
        assert_eq!(e("10-2x2"), vec![Some(10.0), Some(8.0), Some(6.0)]);
        assert_eq!(e("-1-1x2"), vec![Some(-1.0), Some(-2.0), Some(-3.0)]);
        // `+-` is not Prometheus syntax (the increment is ADD number or SUB number).
        assert!(expand_values("1+-1x1").is_err());
    }

    #[test]
    fn series_notation_more() {
        let e = |s: &str| floats(&expand_values(s).unwrap());
        // axN: N+1 copies.
        assert_eq!(e("1x3"), vec![Some(1.0); 4]);
        assert_eq!(e("0x0"), vec![Some(0.0)]);
        // _ and _xN (N omitted points, not N+1).
        assert_eq!(
            e("_ 1 _x3 2"),
            vec![None, Some(1.0), None, None, None, Some(2.0)]
        );
        assert_eq!(e("_x0"), Vec::<Option<f64>>::new());
        // Scientific notation, signs, Inf, NaN.
        assert_eq!(
            e("1e3 -2.5e-1 +3 .5"),
            vec![Some(1000.0), Some(-0.25), Some(3.0), Some(0.5)]
        );
        assert_eq!(
            e("Inf -Inf +inf"),
            vec![
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                Some(f64::INFINITY)
            ]
        );
        assert!(e("NaN")[0].unwrap().is_nan());
        // Prometheus lexes `Infx2` as one identifier: an error there too.
        assert!(expand_values("Infx2").is_err());
        assert_eq!(e("-Inf+1x1"), vec![Some(f64::NEG_INFINITY); 2]);
        assert_eq!(e("1e2x1"), vec![Some(100.0), Some(100.0)]);
        assert_eq!(e("0.1+0.1x2").len(), 3);
        // Accumulated like Prometheus (v += d), not v + i*d.
        let acc = e("0.1+0.1x2");
        assert_eq!(acc[2], Some(0.1 + 0.1 + 0.1));
        // Stale markers keep their bits.
        let v = expand_values("1 stale 2").unwrap();
        match v[1] {
            SeqValue::Float(f) => assert_eq!(f.to_bits(), STALE_NAN_BITS),
            _ => panic!("not a float"),
        }
        assert!(expand_values("stalex2").is_err());
        // Histograms count as points at their positions.
        let h = expand_values("1 {{schema:1 sum:3 count:22 buckets:[5 10 7]}} 2").unwrap();
        assert_eq!(
            h,
            vec![
                SeqValue::Float(1.0),
                SeqValue::Histogram,
                SeqValue::Float(2.0)
            ]
        );
        let h = expand_values("{{count:0}}+{{count:1}}x4 7").unwrap();
        assert_eq!(h.len(), 6);
        assert_eq!(h[5], SeqValue::Float(7.0));
        let h = expand_values("{{schema:0 sum:1 count:1}}x2").unwrap();
        assert_eq!(h, vec![SeqValue::Histogram; 3]);
        // Errors.
        assert!(expand_values("foo").is_err());
        assert!(expand_values("1+2").is_err());
        assert!(expand_values("1x").is_err());
        assert!(expand_values("1a").is_err());
        assert!(expand_values("{{count:1").is_err());
    }

    #[test]
    fn series_lines() {
        let (labels, v) = parse_series_line(r#"my_metric{env="prod"} 5 2+3x2 _ stale"#).unwrap();
        assert_eq!(labels, l(&[("__name__", "my_metric"), ("env", "prod")]));
        assert_eq!(v.len(), 6);
        assert_eq!(v[4], SeqValue::Omitted);
        let (labels, _) = parse_series_line(r#"{__name__="x", a="b c", d="{q} }"} 1"#).unwrap();
        assert_eq!(
            labels,
            l(&[("__name__", "x"), ("a", "b c"), ("d", "{q} }")])
        );
        let (labels, v) = parse_series_line("{} 3").unwrap();
        assert!(labels.is_empty());
        assert_eq!(v, vec![SeqValue::Float(3.0)]);
        let (labels, _) = parse_series_line("metric{} 1 _ 3").unwrap();
        assert_eq!(labels, l(&[("__name__", "metric")]));
        let (labels, _) = parse_series_line("up\t1").unwrap();
        assert_eq!(labels, l(&[("__name__", "up")]));
        let (labels, _) = parse_series_line(r#"x{a="é\n", b=""} 1"#).unwrap();
        assert_eq!(labels, l(&[("__name__", "x"), ("a", "é\n")]));
        assert!(parse_series_line(r#"x{a=~"b"} 1"#).is_err());
        assert!(parse_series_line(r#"x {a="b"} 1"#).is_err());
    }

    #[test]
    fn eval_headers() {
        let h = parse_eval_header("eval instant at 50m sum by (x) (foo)").unwrap();
        assert_eq!(h.kind, EvalKind::Instant { at_ms: 3_000_000 });
        assert_eq!(h.query, "sum by (x) (foo)");
        assert_eq!(h.modifier, "");
        let h = parse_eval_header("eval_ordered instant at 0 sort(foo)").unwrap();
        assert_eq!(h.modifier, "ordered");
        assert_eq!(h.kind, EvalKind::Instant { at_ms: 0 });
        let h = parse_eval_header("eval range from 0 to 2m step 1m foo > 2 or bar").unwrap();
        assert_eq!(
            h.kind,
            EvalKind::Range {
                start_ms: 0,
                end_ms: 120_000,
                step_ms: 60_000
            }
        );
        assert_eq!(h.query, "foo > 2 or bar");
        let h = parse_eval_header("eval_fail range from 10s to 50s step 10s  rate(x[1m])").unwrap();
        assert_eq!(h.modifier, "fail");
        assert_eq!(h.query, "rate(x[1m])");
        assert!(parse_eval_header("eval_ordered range from 0 to 1m step 1m x").is_err());
        assert!(parse_eval_header("eval instant at 1x foo").is_err());
        assert!(parse_eval_header("eval range from 2m to 1m step 1m foo").is_err());
        assert!(parse_eval_header("eval instant at 1m").is_err());
    }

    #[test]
    fn expects() {
        let e = parse_expect("expect fail msg: Parameter value is NaN").unwrap();
        assert_eq!(e.kind, ExpectKind::Fail);
        assert!(e.message.check("Parameter value is NaN"));
        assert!(!e.message.check("Parameter value is NaN!"));
        let e = parse_expect(r#"expect fail msg:invalid label name "a\xc5z""#).unwrap();
        assert!(e.message.check(r#"invalid label name "a\xc5z""#));
        let e = parse_expect(
            r"expect warn regex: PromQL warning: quantile value should be between 0 and 1, got NaN \([0-9]+:[0-9]+\)",
        )
        .unwrap();
        assert_eq!(e.kind, ExpectKind::Warn);
        assert!(
            e.message
                .check("PromQL warning: quantile value should be between 0 and 1, got NaN (1:12)")
        );
        assert!(
            !e.message
                .check("PromQL warning: quantile value should be between 0 and 1")
        );
        // Unanchored like Go's MatchString.
        let e = parse_expect("expect info regex: might not").unwrap();
        assert!(
            e.message
                .check("PromQL info: metric might not be a counter")
        );
        let e = parse_expect("expect no_warn").unwrap();
        assert_eq!(e.kind, ExpectKind::NoWarn);
        assert!(e.message.check("anything"));
        assert!(parse_expect("expect warn foo").is_err());
        assert!(parse_expect("expect bogus").is_err());
        assert!(parse_expect("expect fail msg:").is_err());
    }

    #[test]
    fn unquote() {
        assert_eq!(go_unquote("`Foo`").unwrap(), "Foo");
        assert_eq!(go_unquote("\" Foo \"").unwrap(), " Foo ");
        assert_eq!(go_unquote("\"\"").unwrap(), "");
        assert_eq!(go_unquote(r#""a\"b\n\u00e9\x41""#).unwrap(), "a\"b\néA");
        assert!(go_unquote("\"abc").is_err());
        assert!(go_unquote("abc").is_err());
    }

    #[test]
    fn scripts() {
        let s = parse_script(
            "# comment\n\
             load 1m\n\
             \x20 metric{a=\"1\"} 0+1x2\n\
             \x20 metric{a=\"2\"} 1 _ stale\n\
             \n\
             eval instant at 1m metric\n\
             \x20 expect no_warn\n\
             \x20 metric{a=\"1\"} 1\n\
             \n\
             eval instant at 1m scalar(metric{a=\"1\"})\n\
             \x201\n\
             \n\
             eval_fail instant at 1m foo(\n\
             \x20 expected_fail_message unknown function\n\
             \n\
             eval range from 0 to 2m step 1m metric\n\
             \x20 metric{a=\"1\"} 0 1 2\n\
             \x20 metric{a=\"2\"} 1 _ _\n\
             \n\
             eval instant at 1m x[1m]\n\
             \x20 expect range vector from 0 to 1m step 1m\n\
             \x20 x 1 2\n\
             \n\
             eval instant at 1m \"Foo\"\n\
             \x20 expect string \"Foo\"\n\
             \n\
             eval instant at 1m metric\n\
             \x20 metric 1 2\n\
             \n\
             clear\n\
             bogus\n\
             load_with_nhcb 5m\n\
             \x20 h_bucket{le=\"1\"} 0+1x2\n",
        );
        assert_eq!(s.errors.len(), 2, "{:?}", s.errors);
        assert_eq!(s.errors[0].line, 28); // two values in an instant eval
        assert_eq!(s.errors[1].line, 31); // `bogus`
        let evals: Vec<&Eval> = s
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Eval(e) => Some(e.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(evals.len(), 6);
        let Command::Load(load) = &s.commands[0] else {
            panic!("not a load")
        };
        assert_eq!(load.interval_ms, 60_000);
        assert_eq!(load.series.len(), 2);
        assert_eq!(load.series[1].line, 4);
        assert_eq!(evals[0].line, 6);
        assert_eq!(evals[0].expects.len(), 1);
        assert_eq!(
            evals[0].expected,
            Expected::Series(vec![ExpectedSeries {
                pos: 1,
                labels: l(&[("__name__", "metric"), ("a", "1")]),
                values: vec![SeqValue::Float(1.0)],
            }])
        );
        assert_eq!(evals[1].expected, Expected::Scalar(1.0));
        assert!(evals[2].is_fail());
        assert_eq!(
            evals[2].expected_fail_message.as_deref(),
            Some("unknown function")
        );
        assert!(matches!(evals[3].kind, EvalKind::Range { .. }));
        assert_eq!(evals[4].range_vector, Some((0, 60_000, 60_000)));
        assert!(evals[4].exclude_from_range_query());
        assert_eq!(evals[5].expected_string.as_deref(), Some("Foo"));
        assert!(matches!(s.commands[7], Command::Broken { line: 27, .. }));
        assert!(matches!(s.commands[8], Command::Clear { line: 30 }));
        let Command::Load(nhcb) = &s.commands[9] else {
            panic!("not a load")
        };
        assert!(nhcb.with_nhcb);
        assert_eq!(nhcb.interval_ms, 300_000);
    }

    /// Every script of Prometheus's test suite parses without error, when the suite is at
    /// hand (`/work/shared/promqltest` or `$PROMQLTEST_DIR`).
    #[test]
    fn prometheus_scripts_parse() {
        let dir = std::env::var("PROMQLTEST_DIR").unwrap_or("/work/shared/promqltest".into());
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        for f in rd.flatten() {
            let p = f.path();
            if p.extension().is_none_or(|e| e != "test") {
                continue;
            }
            let s = parse_script(&std::fs::read_to_string(&p).unwrap());
            assert!(s.errors.is_empty(), "{}: {:?}", p.display(), s.errors);
        }
    }
}
