//! Label and annotation templates of alerting rules, as Prometheus expands them
//! (`template/template.go`, `rules/alerting.go`): Go `text/template` (the `gtmpl` crate)
//! over `.Labels`, `.ExternalLabels`, `.ExternalURL` and `.Value`, with the variables
//! `$labels`, `$externalLabels`, `$externalURL` and `$value` defined first. Functions:
//! Go's built-ins (`printf`, `eq`, `index`, ...) and Prometheus's `toUpper`, `toLower`,
//! `humanize` and `humanizePercentage`. A template that fails expands to `<error expanding
//! template: ...>`, as in Prometheus.
//!
//! Differences: Prometheus's query functions (`query`, `first`, `value`, ...),
//! `humanizeDuration`, `humanize1024`, `reReplaceAll` and the rest are not there (a
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

/// Expands `text` for `data`; a template error expands to `<error expanding template:
/// ...>`. `name` names the template in errors (`__alert_<rule>`).
pub fn expand(name: &str, text: &str, data: &TemplateData<'_>) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let mut t = Template::with_name(name.to_string());
    t.add_funcs(&[
        ("toUpper", to_upper as gtmpl::Func),
        ("toLower", to_lower as gtmpl::Func),
        ("humanize", humanize as gtmpl::Func),
        ("humanizePercentage", humanize_percentage as gtmpl::Func),
    ]);
    let defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";
    if let Err(e) = t.parse(format!("{defs}{text}")) {
        return format!("<error expanding template: {e}>");
    }
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
        assert!(
            e("{{ nosuch }}").starts_with("<error expanding template:"),
            "{}",
            e("{{ nosuch }}")
        );
    }
}
