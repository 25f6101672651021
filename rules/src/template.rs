//! Label and annotation templates of alerting rules, as Prometheus expands them
//! (`template/template.go`, `rules/alerting.go`): Go `text/template` (the `gtmpl` crate)
//! over `.Labels`, `.ExternalLabels`, `.ExternalURL` and `.Value`, with the variables
//! `$labels`, `$externalLabels`, `$externalURL` and `$value` defined first. Functions:
//! Go's built-ins (`printf`, `eq`, `index`, ...) and Prometheus's `toUpper`, `toLower`,
//! `title`, `humanize`, `humanize1024`, `humanizeDuration`, `humanizePercentage`,
//! `match`, `reReplaceAll` and `stripPort`. A template that fails expands to `<error expanding
//! template: ...>`, as in Prometheus.
//!
//! Differences: Prometheus's query functions (`query`, `first`, `value`, ...),
//! `humanizeTimestamp`, `toTime`, `graphLink`, `tableLink`, `safeHtml`, `args` and
//! `parseDuration` are not there (a
//! template using one expands to the error text); numbers print as Rust prints `f64`
//! (`1000000`, where Go's `%v` prints `1e+06`).

use std::collections::HashMap;

use gtmpl::{Context, FuncError, Template, Value};

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
}
