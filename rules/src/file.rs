//! Rule files in Prometheus's format (`model/rulefmt/rulefmt.go`): `groups` with `name`,
//! `interval`, `query_offset`, `limit`, `labels` and `rules`; each rule a `record` or an
//! `alert` with `expr`, `for`, `keep_firing_for`, `labels` and `annotations`. Strata adds
//! a third kind, `anomaly` ([`crate::anomaly_rule`]), with `sensitivity`, `resolution`,
//! `history` and `refit_interval`. Checked as
//! `rulefmt.Parse` checks them: unknown keys, a group name repeated in a file, a rule with
//! both or neither of `record` and `alert`, an invalid recorded metric name, an expression
//! that does not parse, `for`/`keep_firing_for`/`annotations` on a recording rule.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::RulesError;

/// A rule file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

/// One group of a rule file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's name, unique in its file.
    pub name: String,
    /// How often the group is evaluated; the global evaluation interval when absent.
    #[serde(default, deserialize_with = "optional_duration")]
    pub interval: Option<Duration>,
    /// How far before each evaluation time the rules query (for data that arrives late).
    #[serde(default, deserialize_with = "optional_duration")]
    pub query_offset: Option<Duration>,
    /// At most this many alerts or recorded series per rule (0: no limit); past it the
    /// rule's evaluation fails and, for an alerting rule, its alerts are cleared.
    #[serde(default)]
    pub limit: usize,
    /// Labels added to every rule's output (a rule's own labels win).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The rules, evaluated in this order.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A recording rule's output metric name.
    pub record: Option<String>,
    /// An alerting rule's name (the `alertname` label).
    pub alert: Option<String>,
    /// An anomaly rule's name (its alerts' `alertname`, its series' `anomaly` label):
    /// Strata's extension, see [`crate::anomaly_rule`].
    pub anomaly: Option<String>,
    /// An anomaly rule's sensitivity in sigmas (default 3).
    pub sensitivity: Option<f64>,
    /// An anomaly rule's baseline resolution (default 15m; must divide a day).
    #[serde(default, deserialize_with = "optional_duration")]
    pub resolution: Option<Duration>,
    /// How much history an anomaly rule's baselines are fitted from (default 28d).
    #[serde(default, deserialize_with = "optional_duration")]
    pub history: Option<Duration>,
    /// How often an anomaly rule's baselines are refitted (default 7d).
    #[serde(default, deserialize_with = "optional_duration")]
    pub refit_interval: Option<Duration>,
    /// The PromQL expression.
    pub expr: String,
    /// How long an alert stays pending before it fires (an anomaly rule's minimum
    /// duration; default 2m for anomaly rules).
    #[serde(default, rename = "for", deserialize_with = "optional_duration")]
    pub for_: Option<Duration>,
    /// How long an alert keeps firing after its condition stops holding (an anomaly
    /// rule's window within which consecutive anomalies are one event; default 5m).
    #[serde(default, deserialize_with = "optional_duration")]
    pub keep_firing_for: Option<Duration>,
    /// Labels added to the output (templates for alerting rules).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// An alerting rule's annotations (templates).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A Prometheus duration (`1h30m`, `90s`, `0`), as its `model.ParseDuration` reads it.
///
/// # Errors
/// A message naming the text that is not a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // Prometheus's `model.ParseDuration` takes zero ("0", "0s", "0m"); promql-parser's
    // does not.
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.chars().all(|c| c == '0') {
        return Ok(Duration::ZERO);
    }
    promql_parser::util::duration::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Whether `name` is a valid legacy metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// One group's YAML as Mimir's ruler API takes it (a rule file's group, on its own), checked
/// as a rule file is; `namespace` names it in messages.
///
/// # Errors
/// [`RulesError::Invalid`] for YAML that does not parse or a group that is not valid.
pub fn parse_group(namespace: &str, yaml: &str) -> Result<GroupConfig, RulesError> {
    let value: yaml_serde::Value = yaml_serde::from_str(yaml)
        .map_err(|e| RulesError::Invalid(format!("invalid YAML: {e}")))?;
    let wrapped = yaml_serde::to_string(&BTreeMap::from([("groups", vec![value])]))
        .map_err(|e| RulesError::Invalid(e.to_string()))?;
    let mut f = RuleFile::parse(namespace, &wrapped)?;
    f.groups
        .pop()
        .ok_or_else(|| RulesError::Invalid("no group".into()))
}

impl RuleFile {
    /// Parses and checks the YAML text of the rule file `name` (the name is used in
    /// messages only).
    ///
    /// # Errors
    /// [`RulesError::Invalid`] naming the file, the group and the rule.
    pub fn parse(name: &str, yaml: &str) -> Result<RuleFile, RulesError> {
        let f: RuleFile =
            yaml_serde::from_str(yaml).map_err(|e| RulesError::Invalid(format!("{name}: {e}")))?;
        let mut seen = std::collections::HashSet::new();
        for g in &f.groups {
            let at =
                |msg: String| RulesError::Invalid(format!("{name}: group {:?}: {msg}", g.name));
            if g.name.is_empty() {
                return Err(RulesError::Invalid(format!("{name}: a group has no name")));
            }
            if !seen.insert(g.name.clone()) {
                return Err(at("repeated in the same file".into()));
            }
            if g.interval.is_some_and(|i| i.is_zero()) {
                return Err(at("interval must be greater than 0".into()));
            }
            for (i, r) in g.rules.iter().enumerate() {
                let at = |msg: String| at(format!("rule {}: {msg}", i + 1));
                let kinds = [&r.record, &r.alert, &r.anomaly]
                    .iter()
                    .filter(|k| k.is_some())
                    .count();
                if kinds > 1 {
                    return Err(at(
                        "only one of 'record', 'alert' and 'anomaly' must be set".into(),
                    ));
                }
                if kinds == 0 {
                    return Err(at(
                        "one of 'record', 'alert' or 'anomaly' must be set".into()
                    ));
                }
                if r.anomaly.is_none()
                    && (r.sensitivity.is_some()
                        || r.resolution.is_some()
                        || r.history.is_some()
                        || r.refit_interval.is_some())
                {
                    return Err(at(
                        "'sensitivity', 'resolution', 'history' and 'refit_interval' are for anomaly rules"
                            .into(),
                    ));
                }
                if let Some(rec) = &r.record {
                    if !valid_metric_name(rec) {
                        return Err(at(format!("invalid recording rule name: {rec}")));
                    }
                    if r.for_.is_some() || r.keep_firing_for.is_some() {
                        return Err(at(
                            "invalid field 'for' or 'keep_firing_for' in recording rule".into(),
                        ));
                    }
                    if !r.annotations.is_empty() {
                        return Err(at("invalid field 'annotations' in recording rule".into()));
                    }
                }
                if r.alert.as_ref().is_some_and(|a| a.is_empty()) {
                    return Err(at("alert name is empty".into()));
                }
                if let Some(a) = &r.anomaly {
                    if a.is_empty() {
                        return Err(at("anomaly name is empty".into()));
                    }
                    if r.sensitivity.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
                        return Err(at("sensitivity must be a positive number".into()));
                    }
                    if let Some(res) = r.resolution
                        && (res.as_millis() == 0 || 86_400_000 % res.as_millis() != 0)
                    {
                        return Err(at(format!(
                            "resolution {res:?} must divide a day (e.g. 1m, 5m, 15m, 1h)"
                        )));
                    }
                    if r.refit_interval.is_some_and(|d| d.is_zero()) {
                        return Err(at("refit_interval must be greater than 0".into()));
                    }
                    let res = r
                        .resolution
                        .unwrap_or(crate::anomaly_rule::DEFAULT_RESOLUTION);
                    let hist = r.history.unwrap_or(crate::anomaly_rule::DEFAULT_HISTORY);
                    if hist.as_millis() / res.as_millis().max(1) > 100_000 {
                        return Err(at(format!(
                            "history {hist:?} holds more than 100000 steps of resolution {res:?}"
                        )));
                    }
                }
                if r.expr.trim().is_empty() {
                    return Err(at("field 'expr' must be set in rule".into()));
                }
                promql_parser::parser::parse(&r.expr)
                    .map_err(|e| at(format!("could not parse expression: {e}")))?;
                for l in r.labels.keys() {
                    if l == "__name__" {
                        return Err(at("invalid label name: __name__".into()));
                    }
                }
                if r.record.is_none() {
                    for (k, text) in r.labels.iter().chain(&r.annotations) {
                        crate::template::check(text)
                            .map_err(|e| at(format!("template {k:?}: {e}")))?;
                    }
                }
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_rule_files_parse_and_bad_ones_are_named() {
        let f = RuleFile::parse(
            "a.yml",
            r#"
groups:
  - name: example
    interval: 30s
    query_offset: 1m
    limit: 10
    labels: {team: db}
    rules:
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total[5m]))
      - alert: HighRequestLatency
        expr: job:request_latency_seconds:mean5m{job="myjob"} > 0.5
        for: 10m
        keep_firing_for: 5m
        labels:
          severity: page
        annotations:
          summary: High request latency on {{ $labels.instance }}
"#,
        )
        .unwrap();
        let g = &f.groups[0];
        assert_eq!(g.interval, Some(Duration::from_secs(30)));
        assert_eq!(g.query_offset, Some(Duration::from_secs(60)));
        assert_eq!(g.rules[1].for_, Some(Duration::from_secs(600)));
        assert_eq!(g.rules[1].keep_firing_for, Some(Duration::from_secs(300)));
        let zero = RuleFile::parse(
            "z.yml",
            "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    for: 0s\n    keep_firing_for: 0\n",
        )
        .unwrap();
        assert_eq!(zero.groups[0].rules[0].for_, Some(Duration::ZERO));
        assert_eq!(
            zero.groups[0].rules[0].keep_firing_for,
            Some(Duration::ZERO)
        );
        for (yaml, want) in [
            (
                "groups:\n- name: g\n  rules:\n  - record: a\n    alert: b\n    expr: up\n",
                "only one of",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - expr: up\n",
                "one of 'record', 'alert' or 'anomaly'",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - record: 'a b'\n    expr: up\n",
                "invalid recording rule name",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: 'sum('\n",
                "could not parse",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    for: 1m\n",
                "'for'",
            ),
            ("groups:\n- name: g\n- name: g\n", "repeated"),
            (
                "groups:\n- name: g\n  rules:\n  - anomaly: a\n    expr: up\n    resolution: 7m\n",
                "must divide a day",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - anomaly: a\n    expr: up\n    sensitivity: -1\n",
                "positive",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    sensitivity: 2\n",
                "for anomaly rules",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - anomaly: a\n    alert: b\n    expr: up\n",
                "only one of",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    for: soon\n",
                "invalid duration",
            ),
            ("groups:\n- name: g\n  foo: 1\n", "foo"),
            (
                "groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    annotations: {s: '{{ x } '}\n",
                "unclosed action",
            ),
        ] {
            let e = RuleFile::parse("b.yml", yaml).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("b.yml"), "{yaml}: {e}");
        }
    }
}
