//! Label and annotation templates of alerting rules, as Prometheus expands them
//! (`template/template.go`, `rules/alerting.go`): Go `text/template` (the `gtmpl` crate)
//! over `.Labels`, `.ExternalLabels`, `.ExternalURL` and `.Value`, with the variables
//! `$labels`, `$externalLabels`, `$externalURL` and `$value` defined first. Functions:
//! Go's built-ins (`printf`, `eq`, `index`, ...) and Prometheus's `toUpper`, `toLower`,
//! `title`, `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`,
//! `match`, `reReplaceAll` and `stripPort`. A template that fails expands to `<error expanding
//! template: ...>`, as in Prometheus.
//!
//! Prometheus's query functions work as in its `template/template.go`: `query` runs an
//! instant query at the rule's evaluation time (through the group's querier, see
//! [`with_query`]) and gives a list of samples, each with `.Labels` and `.Value`; `first`,
//! `label`, `value`, `strvalue` and `sortByLabel` read such lists; also `args`,
//! `safeHtml`, `graphLink`, `tableLink`, `humanizeTimestamp`, `toTime`, `parseDuration`,
//! `pathPrefix` and `externalURL`.
//!
//! Differences: `toTime` gives the time's text (as `humanizeTimestamp`), not a Go
//! `time.Time` whose methods a template could call; numbers print as Rust prints `f64`
//! (`1000000`, where Go's `%v` prints `1e+06`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use gtmpl::{Context, FuncError, Template, Value};

use crate::Sample;

/// What a template's `query` runs: an instant query of PromQL text at the evaluation's
/// time, its samples or an error message.
pub type QueryFn = Arc<dyn Fn(&str) -> Result<Vec<Sample>, String> + Send + Sync>;

/// What the template functions that are not pure read: the query function and the
/// external URL of the expansion under way on this thread (`gtmpl`'s functions are plain
/// function pointers).
#[derive(Default)]
struct Ambient {
    query: Option<QueryFn>,
    external_url: String,
}

thread_local! {
    static AMBIENT: RefCell<Ambient> = RefCell::new(Ambient::default());
}

/// Until the returned guard is dropped, templates expanded on this thread run their
/// `query` calls with `query` (without one, `query` fails with a message). The group sets
/// it around each rule's evaluation, which expands that rule's templates synchronously.
pub fn with_query(query: QueryFn) -> QueryScope {
    let before = AMBIENT.with(|a| a.borrow_mut().query.replace(query));
    QueryScope(before)
}

/// Restores the query function that was set before [`with_query`] when dropped.
pub struct QueryScope(Option<QueryFn>);

impl Drop for QueryScope {
    fn drop(&mut self) {
        let before = self.0.take();
        AMBIENT.with(|a| a.borrow_mut().query = before);
    }
}

/// What a template sees.
pub struct TemplateData<'a> {
    /// The alert's labels (the query result's, before the rule's labels are added).
    pub labels: &'a [(String, String)],
    /// The server's external labels.
    pub external_labels: &'a [(String, String)],
    /// The server's external URL.
    pub external_url: &'a str,
    /// The sample's value.
    pub value: f64,
}

fn map(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn one_arg(args: &[Value]) -> Result<&Value, FuncError> {
    match args {
        [a] => Ok(a),
        _ => Err(FuncError::ExactlyXArgs("function".into(), 1)),
    }
}

fn string_arg(args: &[Value]) -> Result<String, FuncError> {
    match one_arg(args)? {
        Value::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

fn number_arg(args: &[Value]) -> Result<f64, FuncError> {
    match one_arg(args)? {
        Value::Number(n) => n
            .as_f64()
            .or_else(|| n.as_i64().map(|i| i as f64))
            .or_else(|| n.as_u64().map(|u| u as f64))
            .ok_or_else(|| FuncError::Generic("not a number".into())),
        Value::String(s) => s
            .parse()
            .map_err(|_| FuncError::Generic(format!("{s:?} is not a number"))),
        other => Err(FuncError::Generic(format!("{other} is not a number"))),
    }
}

fn to_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args)?.to_uppercase()))
}

fn to_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args)?.to_lowercase()))
}

/// Prometheus's `humanizePercentage`: `fmt.Sprintf("%.4g%%", v*100)`.
fn humanize_percentage(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(format!("{}%", g4(number_arg(args)? * 100.0))))
}

/// Prometheus's `humanize`: SI prefixes (k, M, G, ... for |v| >= 1; m, u, n, ... below),
/// four significant digits (`%.4g`).
fn humanize(args: &[Value]) -> Result<Value, FuncError> {
    let v = number_arg(args)?;
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return Ok(Value::String(g4(v)));
    }
    let (mut x, mut prefix) = (v, "");
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if x.abs() < 1000.0 {
                break;
            }
            x /= 1000.0;
            prefix = p;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if x.abs() >= 1.0 {
                break;
            }
            x *= 1000.0;
            prefix = p;
        }
    }
    Ok(Value::String(format!("{}{prefix}", g4(x))))
}

/// Prometheus's `humanize1024`: binary prefixes (ki, Mi, ...) for |v| > 1.
fn humanize_1024(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = number_arg(args)?;
    if v.abs() <= 1.0 || !v.is_finite() {
        return Ok(Value::String(g4(v)));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    Ok(Value::String(format!("{}{prefix}", g4(v))))
}

/// Prometheus's `humanizeDuration` (seconds): `1d 2h 3m 4s` from a minute up, `%.4g`
/// seconds below a minute, SI prefixes below a second (`100ms`).
fn humanize_duration(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = number_arg(args)?;
    if !v.is_finite() {
        return Ok(Value::String(g4(v)));
    }
    if v == 0.0 {
        return Ok(Value::String("0s".into()));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return Ok(Value::String(match (days, h, m) {
            (0, 0, 0) => format!("{sign}{}s", g4(v)),
            (0, 0, m) => format!("{sign}{m}m {s}s"),
            (0, h, m) => format!("{sign}{h}h {m}m {s}s"),
            (days, h, m) => format!("{sign}{days}d {h}h {m}m {s}s"),
        }));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    Ok(Value::String(format!("{}{prefix}s", g4(v))))
}

/// Go's `strings.Title`: the first letter of each space-separated word in upper case.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::String(out))
}

fn strings(args: &[Value], n: usize) -> Result<Vec<String>, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs("function".into(), n));
    }
    Ok(args
        .iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect())
}

fn regex_of(pattern: &str) -> Result<regex::Regex, FuncError> {
    regex::Regex::new(pattern).map_err(|e| FuncError::Generic(e.to_string()))
}

/// Prometheus's `match pattern text` (Go's `regexp.MatchString`: unanchored).
fn match_fn(args: &[Value]) -> Result<Value, FuncError> {
    let a = strings(args, 2)?;
    Ok(Value::Bool(regex_of(&a[0])?.is_match(&a[1])))
}

/// Prometheus's `reReplaceAll pattern replacement text` (`$1` expands a group).
fn re_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    let a = strings(args, 3)?;
    Ok(Value::String(
        regex_of(&a[0])?
            .replace_all(&a[2], a[1].as_str())
            .into_owned(),
    ))
}

/// Prometheus's `stripPort`: the host of `host:port` (`[v6]:port` too), else the text.
fn strip_port(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args)?;
    if let Some(rest) = s.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
        && !port.contains(':')
    {
        return Ok(Value::String(host.to_string()));
    }
    match s.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => Ok(Value::String(host.to_string())),
        _ => Ok(Value::String(s)),
    }
}

/// A query result's sample as templates see it (`.Labels`, `.Value`).
fn sample_value(labels: &[(String, String)], v: f64) -> Value {
    let mut o = HashMap::new();
    o.insert("Labels".to_string(), map(labels));
    o.insert("Value".to_string(), Value::from(v));
    Value::Object(o)
}

/// Prometheus's `query`: an instant query at the evaluation's time.
fn query(args: &[Value]) -> Result<Value, FuncError> {
    let q = string_arg(args)?;
    let f = AMBIENT
        .with(|a| a.borrow().query.clone())
        .ok_or_else(|| FuncError::Generic("no querier for the template's query".into()))?;
    let samples = f(&q).map_err(FuncError::Generic)?;
    Ok(Value::Array(
        samples.iter().map(|(l, v)| sample_value(l, *v)).collect(),
    ))
}

fn samples_arg(v: &Value) -> Result<&Vec<Value>, FuncError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(FuncError::Generic(format!("{other} is not a query result"))),
    }
}

/// Prometheus's `first`: a query result's first sample.
fn first(args: &[Value]) -> Result<Value, FuncError> {
    samples_arg(one_arg(args)?)?
        .first()
        .cloned()
        .ok_or_else(|| FuncError::Generic("first() called on vector with no elements".into()))
}

/// A sample's label `name` ("" when absent, as Go's map index gives).
fn label_of(sample: &Value, name: &str) -> String {
    match sample {
        Value::Object(o) => match o.get("Labels") {
            Some(Value::Object(l)) => match l.get(name) {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// Prometheus's `label name sample`.
fn label(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [name, sample] => Ok(Value::String(label_of(sample, &name.to_string()))),
        _ => Err(FuncError::ExactlyXArgs("label".into(), 2)),
    }
}

/// Prometheus's `value sample`.
fn value(args: &[Value]) -> Result<Value, FuncError> {
    match one_arg(args)? {
        Value::Object(o) => o
            .get("Value")
            .cloned()
            .ok_or_else(|| FuncError::Generic("not a sample".into())),
        other => Err(FuncError::Generic(format!("{other} is not a sample"))),
    }
}

/// Prometheus's `strvalue sample`: its `__value__` label.
fn strvalue(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(label_of(one_arg(args)?, "__value__")))
}

/// Prometheus's `sortByLabel label samples` (stable).
fn sort_by_label(args: &[Value]) -> Result<Value, FuncError> {
    let [name, samples] = args else {
        return Err(FuncError::ExactlyXArgs("sortByLabel".into(), 2));
    };
    let name = name.to_string();
    let mut v = samples_arg(samples)?.clone();
    v.sort_by_cached_key(|s| label_of(s, &name));
    Ok(Value::Array(v))
}

/// Prometheus's `args`: its arguments as `.arg0`, `.arg1`, ...
fn args_fn(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Object(
        args.iter()
            .enumerate()
            .map(|(i, a)| (format!("arg{i}"), a.clone()))
            .collect(),
    ))
}

/// Prometheus's `safeHtml`: the text as it is (text templates do not escape).
fn safe_html(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_arg(args)?))
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` as they are, space as `+`, every
/// other byte `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Prometheus's `graphLink expr` (`strutil.GraphLinkForExpression`).
fn graph_link(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(format!(
        "/graph?g0.expr={}&g0.tab=0",
        query_escape(&string_arg(args)?)
    )))
}

/// Prometheus's `tableLink expr` (`strutil.TableLinkForExpression`).
fn table_link(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(format!(
        "/graph?g0.expr={}&g0.tab=1",
        query_escape(&string_arg(args)?)
    )))
}

/// Go's `time.Time.String()` of Unix seconds `v`, in UTC: `2015-06-23 13:19:44.128 +0000
/// UTC` (the fraction without trailing zeros, none when whole); `%.4g` of NaN and
/// infinities, as Prometheus's `humanizeTimestamp` gives.
fn humanize_timestamp(args: &[Value]) -> Result<Value, FuncError> {
    let v = number_arg(args)?;
    if !v.is_finite() {
        return Ok(Value::String(g4(v)));
    }
    let ns = v * 1e9;
    if ns >= i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(FuncError::Generic(format!(
            "{v} cannot be represented as a nanoseconds timestamp since it overflows int64"
        )));
    }
    // Prometheus's `floatToTime` goes through `model.Time`: whole ms, truncated.
    let ms = (ns as i64) / 1_000_000;
    let t = chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| FuncError::Generic(format!("{v} is out of the time range")))?;
    let frac = format!("{:03}", ms.rem_euclid(1000));
    let frac = frac.trim_end_matches('0');
    let dot = if frac.is_empty() { "" } else { "." };
    Ok(Value::String(format!(
        "{}{dot}{frac} +0000 UTC",
        t.format("%Y-%m-%d %H:%M:%S")
    )))
}

/// Prometheus's `parseDuration`: a Prometheus duration (`1h2m`) in seconds.
fn parse_duration(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args)?;
    let d = crate::file::parse_duration(&s).map_err(FuncError::Generic)?;
    Ok(Value::from(d.as_secs_f64()))
}

/// Prometheus's `externalURL`.
fn external_url(_: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        AMBIENT.with(|a| a.borrow().external_url.clone()),
    ))
}

/// Prometheus's `pathPrefix`: the external URL's path.
fn path_prefix(_: &[Value]) -> Result<Value, FuncError> {
    let u = AMBIENT.with(|a| a.borrow().external_url.clone());
    Ok(Value::String(
        url::Url::parse(&u)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default(),
    ))
}

/// Go's `%.4g` for the magnitudes `humanize` leaves (and plain values otherwise).
fn g4(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return match v {
            x if x.is_nan() => "NaN".into(),
            x if x == f64::INFINITY => "+Inf".into(),
            x if x == f64::NEG_INFINITY => "-Inf".into(),
            _ => "0".into(),
        };
    }
    let exp = v.abs().log10().floor() as i32;
    if !(-4..4).contains(&exp) {
        let s = format!("{:.3e}", v);
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (3 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Refuses an action (`{{`) with no `}}` after it before `gtmpl` sees it: `gtmpl` 0.7's
/// lexer loops forever, allocating, on some unclosed actions (`{{ x } ` at the end), and
/// templates come from the network (the ruler API). Found by the `rule_group` fuzz check.
fn unclosed_action(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        match rest[i + 2..].find("}}") {
            Some(j) => rest = &rest[i + 2 + j + 2..],
            None => return true,
        }
    }
    false
}

/// Checks that `text` parses as a template, as Prometheus's `rulefmt` checks rule labels
/// and annotations.
///
/// # Errors
/// The parse error's message.
pub fn check(text: &str) -> Result<(), String> {
    if !text.contains("{{") {
        return Ok(());
    }
    template(text).map(|_| ())
}

/// `text`, after the variables' definitions, parsed with the functions.
fn template(text: &str) -> Result<Template, String> {
    if unclosed_action(text) {
        return Err("unclosed action".into());
    }
    let mut t = Template::with_name("template".to_string());
    t.add_funcs(&[
        ("toUpper", to_upper as gtmpl::Func),
        ("toLower", to_lower as gtmpl::Func),
        ("humanize", humanize as gtmpl::Func),
        ("humanizePercentage", humanize_percentage as gtmpl::Func),
        ("humanize1024", humanize_1024 as gtmpl::Func),
        ("humanizeDuration", humanize_duration as gtmpl::Func),
        ("title", title as gtmpl::Func),
        ("match", match_fn as gtmpl::Func),
        ("reReplaceAll", re_replace_all as gtmpl::Func),
        ("stripPort", strip_port as gtmpl::Func),
        ("query", query as gtmpl::Func),
        ("first", first as gtmpl::Func),
        ("label", label as gtmpl::Func),
        ("value", value as gtmpl::Func),
        ("strvalue", strvalue as gtmpl::Func),
        ("sortByLabel", sort_by_label as gtmpl::Func),
        ("args", args_fn as gtmpl::Func),
        ("safeHtml", safe_html as gtmpl::Func),
        ("graphLink", graph_link as gtmpl::Func),
        ("tableLink", table_link as gtmpl::Func),
        ("humanizeTimestamp", humanize_timestamp as gtmpl::Func),
        ("toTime", humanize_timestamp as gtmpl::Func),
        ("parseDuration", parse_duration as gtmpl::Func),
        ("externalURL", external_url as gtmpl::Func),
        ("pathPrefix", path_prefix as gtmpl::Func),
    ]);
    let defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";
    t.parse(format!("{defs}{text}"))
        .map_err(|e| e.to_string())?;
    Ok(t)
}

/// Expands `text` for `data`; a template error expands to `<error expanding template:
/// ...>`. `name` names the template in errors (`__alert_<rule>`).
pub fn expand(name: &str, text: &str, data: &TemplateData<'_>) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let t = match template(text) {
        Ok(t) => t,
        Err(e) => return format!("<error expanding template: {name}: {e}>"),
    };
    let mut ctx: HashMap<String, Value> = HashMap::new();
    ctx.insert("Labels".into(), map(data.labels));
    ctx.insert("ExternalLabels".into(), map(data.external_labels));
    ctx.insert(
        "ExternalURL".into(),
        Value::String(data.external_url.into()),
    );
    ctx.insert("Value".into(), Value::from(data.value));
    AMBIENT.with(|a| a.borrow_mut().external_url = data.external_url.to_string());
    match t.render(&Context::from(Value::Object(ctx))) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_see_labels_value_and_prometheus_functions() {
        let labels = vec![("instance".to_string(), "host:9100".to_string())];
        let ext = vec![("cluster".to_string(), "eu1".to_string())];
        let d = TemplateData {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://strata",
            value: 0.4567,
        };
        let e = |t: &str| expand("__alert_x", t, &d);
        assert_eq!(e("plain"), "plain");
        assert_eq!(
            e("{{ $labels.instance }} is at {{ $value }} in {{ $externalLabels.cluster }}"),
            "host:9100 is at 0.4567 in eu1"
        );
        assert_eq!(e("{{ .Labels.instance }}"), "host:9100");
        assert_eq!(e("{{ $value | humanizePercentage }}"), "45.67%");
        assert_eq!(e("{{ toUpper $labels.instance }}"), "HOST:9100");
        assert_eq!(e("{{ humanize 1234567 }}"), "1.235M");
        assert_eq!(e("{{ humanize 0.00123 }}"), "1.23m");
        assert_eq!(e(r#"{{ printf "%.1f" $value }}"#), "0.5");
        // An unclosed action is refused before gtmpl, whose lexer would loop forever.
        assert_eq!(
            e("{{ $value }}{{ y } "),
            "<error expanding template: __alert_x: unclosed action>"
        );
        assert!(check("{{ $labels.a }}").is_ok() && check("{{ x } ").is_err());
        assert!(
            e("{{ nosuch }}").starts_with("<error expanding template:"),
            "{}",
            e("{{ nosuch }}")
        );
    }

    /// `humanize1024` and `humanizeDuration`: the cases of Prometheus's
    /// `template/template_test.go`; the others worked out from its `template.go`.
    #[test]
    fn prometheus_template_functions_give_prometheus_answers() {
        let d = TemplateData {
            labels: &[],
            external_labels: &[],
            external_url: "",
            value: 0.0,
        };
        let e = |t: &str| expand("t", t, &d);
        for (v, want) in [("0", "0"), ("1", "1"), ("1048576", "1Mi"), ("0.12", "0.12")] {
            assert_eq!(e(&format!("{{{{ humanize1024 {v} }}}}")), want, "{v}");
        }
        for (v, want) in [
            ("0", "0s"),
            ("1", "1s"),
            ("60", "1m 0s"),
            ("3600", "1h 0m 0s"),
            ("86400", "1d 0h 0m 0s"),
            ("90000", "1d 1h 0m 0s"),
            ("-183845", "-2d 3h 4m 5s"),
            ("899.99", "14m 59s"),
            ("0.1", "100ms"),
            ("0.0001", "100us"),
            ("1.5", "1.5s"),
        ] {
            assert_eq!(e(&format!("{{{{ humanizeDuration {v} }}}}")), want, "{v}");
        }
        assert_eq!(e(r#"{{ title "aa bb CC" }}"#), "Aa Bb CC");
        assert_eq!(e(r#"{{ match "a+" "baa" }}"#), "true");
        assert_eq!(e(r#"{{ reReplaceAll "(a)b" "x$1" "ab" }}"#), "xa");
        assert_eq!(e(r#"{{ stripPort "foo.com:8080" }}"#), "foo.com");
        assert_eq!(e(r#"{{ stripPort "[::1]:9090" }}"#), "::1");
        assert_eq!(e(r#"{{ stripPort "foo.com" }}"#), "foo.com");
    }

    /// The query functions and the rest of Prometheus's list, with the cases of its
    /// `template/template_test.go` where it has them.
    #[test]
    fn query_functions_and_links_as_prometheus_gives_them() {
        let d = TemplateData {
            labels: &[],
            external_labels: &[],
            external_url: "http://testhost:9090/path/prefix",
            value: 0.0,
        };
        let e = |t: &str| expand("t", t, &d);
        // Without a querier, `query` fails with a message.
        assert!(e(r#"{{ query "up" }}"#).starts_with("<error expanding template"));
        let asked = Arc::new(parking_lot::Mutex::new(vec![]));
        let log = asked.clone();
        let _scope = with_query(Arc::new(move |q: &str| {
            log.lock().push(q.to_string());
            let l = |i: &str| {
                vec![
                    ("__name__".to_string(), "metric".to_string()),
                    ("instance".to_string(), i.to_string()),
                ]
            };
            match q {
                "1.5" => Ok(vec![(vec![], 1.5)]),
                "metric" => Ok(vec![(l("b"), 2.0), (l("a"), 11.0)]),
                "none" => Ok(vec![]),
                _ => Err(format!("bad query {q}")),
            }
        }));
        assert_eq!(e(r#"{{ query "1.5" | first | value }}"#), "1.5");
        assert_eq!(
            e(
                r#"{{ range query "metric" | sortByLabel "instance" }}{{ .Labels.instance }}:{{ .Value }} {{ end }}"#
            ),
            "a:11 b:2 "
        );
        assert_eq!(
            e(r#"{{ with query "metric" }}{{ . | first | label "instance" }}{{ end }}"#),
            "b"
        );
        assert_eq!(e(r#"{{ query "metric" | first | strvalue }}"#), "");
        assert!(
            e(r#"{{ query "none" | first }}"#)
                .contains("first() called on vector with no elements"),
            "{}",
            e(r#"{{ query "none" | first }}"#)
        );
        assert!(e(r#"{{ query "x{" }}"#).contains("bad query x{"));
        assert_eq!(asked.lock()[0], "1.5");
        assert_eq!(e(r#"{{ (args 1 "arg").arg1 }}"#), "arg");
        assert_eq!(e(r#"{{ safeHtml "<b>" }}"#), "<b>");
        assert_eq!(e(r#"{{ graphLink "up" }}"#), "/graph?g0.expr=up&g0.tab=0");
        assert_eq!(
            e(r#"{{ tableLink "rate(x[5m]) > 1" }}"#),
            "/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+1&g0.tab=1"
        );
        assert_eq!(
            e("{{ 1435065584.128 | humanizeTimestamp }}"),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(
            e("{{ 1435065584 | toTime }}"),
            "2015-06-23 13:19:44 +0000 UTC"
        );
        assert_eq!(e(r#"{{ parseDuration "1h2m10ms" }}"#), "3720.01");
        assert_eq!(e("{{ pathPrefix }}"), "/path/prefix");
        assert_eq!(e("{{ externalURL }}"), "http://testhost:9090/path/prefix");
        drop(_scope);
        assert!(e(r#"{{ query "1.5" }}"#).starts_with("<error expanding template"));
    }
}
