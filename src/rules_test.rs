//! `strata rules test FILE...`: rule unit tests in `promtool test rules` format
//! (Prometheus's `cmd/promtool/unittest.go`), run against Strata's rule engine and PromQL.
//!
//! A test file names `rule_files` (relative to itself), an `evaluation_interval` (default
//! 1m) and `tests`. Each test group loads its `input_series` (the promqltest value
//! notation: `1+2x3`, `_`, `stale`, ...; one value per `interval`, default 1m, from time 0)
//! into a fresh temporary storage, then evaluates every rule group at 0,
//! `evaluation_interval`, ... up to the largest `eval_time` of its tests, as promtool does:
//! - `alert_rule_test`: at each `eval_time`, the firing alerts of `alertname` (from the
//!   evaluation at or just before it) must be `exp_alerts` exactly (labels, `alertname`
//!   added, and annotations);
//! - `promql_expr_test`: after the evaluations, `expr` at `eval_time` must give
//!   `exp_samples` (labels as a series selector, value) in any order.
//!
//! Rules are marked restored from the start (promtool does so, so that `ALERTS` is
//! written at once). Differences: `group_eval_order`, `fuzzy_compare` and native
//! histograms in `input_series` are refused with a message; `exp_samples` values compare
//! exactly, as promtool's do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    name: String,
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// A duration in Prometheus's notation, ms.
fn duration_ms(what: &str, s: &str) -> Result<i64, String> {
    promql_parser::util::duration::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| format!("{what} {s:?}: {e}"))
}

/// Runs every test file; prints promtool's report to stdout. Returns whether all passed.
pub async fn run(files: &[PathBuf]) -> bool {
    let mut ok = true;
    for f in files {
        println!("Unit Testing:  {}", f.display());
        match run_file(f).await {
            Ok(errors) if errors.is_empty() => println!("  SUCCESS\n"),
            Ok(errors) => {
                ok = false;
                println!("  FAILED:");
                for e in errors {
                    println!("{e}");
                }
                println!();
            }
            Err(e) => {
                ok = false;
                println!("  FAILED:\n    {e}\n");
            }
        }
    }
    ok
}

/// The failures of one test file (empty: all passed).
///
/// # Errors
/// A message when the file or its rule files cannot be read or are not valid.
pub async fn run_file(path: &Path) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let file: TestFile =
        yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if !file.group_eval_order.is_empty() {
        return Err("group_eval_order is not supported: groups run in file order".into());
    }
    if file.fuzzy_compare {
        return Err("fuzzy_compare is not supported: values compare exactly".into());
    }
    let interval = match &file.evaluation_interval {
        Some(s) => duration_ms("evaluation_interval", s)?,
        None => 60_000,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut rule_files = vec![];
    let named: Vec<std::path::PathBuf> = file.rule_files.iter().map(|rf| dir.join(rf)).collect();
    for p in crate::ruler::expand_globs(&named)? {
        let t = std::fs::read_to_string(&p)
            .map_err(|e| format!("reading rule file {}: {e}", p.display()))?;
        let parsed = strata_rules::file::RuleFile::parse(&p.display().to_string(), &t)
            .map_err(|e| e.to_string())?;
        rule_files.push((p.display().to_string(), parsed));
    }
    let mut errors = vec![];
    for tg in &file.tests {
        match run_group(tg, &rule_files, interval).await {
            Ok(e) => errors.extend(e),
            Err(e) => errors.push(format!(
                "    {}{e}",
                if tg.name.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", tg.name)
                }
            )),
        }
    }
    Ok(errors)
}

async fn run_group(
    tg: &TestGroup,
    rule_files: &[(String, strata_rules::file::RuleFile)],
    eval_interval: i64,
) -> Result<Vec<String>, String> {
    let input_interval = match &tg.interval {
        Some(s) => duration_ms("interval", s)?,
        None => 60_000,
    };
    let env = crate::promqltest::Env::open().await?;
    // The input series.
    let mut v = strata_ingest::receive::remote_write::Validated::default();
    let limits = env.ingester.limits().clone();
    for s in &tg.input_series {
        let (labels, values) =
            crate::promqltest::parse::parse_series_line(&format!("{} {}", s.series, s.values))
                .map_err(|e| format!("input series {:?}: {e}", s.series))?;
        let mut samples = vec![];
        for (i, val) in values.iter().enumerate() {
            match val {
                crate::promqltest::parse::SeqValue::Float(f) => {
                    samples.push(strata_ingest::Sample {
                        timestamp_ms: i as i64 * input_interval,
                        value: *f,
                    })
                }
                crate::promqltest::parse::SeqValue::Omitted => {}
                crate::promqltest::parse::SeqValue::Histogram => {
                    return Err(format!(
                        "input series {:?}: native histograms are not supported",
                        s.series
                    ));
                }
            }
        }
        if !samples.is_empty() {
            v.push(&labels, samples, &limits, crate::server::now_ms());
        }
    }
    if let Some((r, _)) = v.rejected.first() {
        return Err(format!("input series: {r}"));
    }
    env.ingester
        .write(v, "rules_test", None)
        .await
        .map_err(|e| e.to_string())?;
    // The groups, restored from the start as promtool marks them.
    let mut groups: Vec<strata_rules::group::Group> = rule_files
        .iter()
        .flat_map(|(name, f)| {
            f.groups.iter().map(move |g| {
                strata_rules::group::Group::new(
                    name,
                    g,
                    std::time::Duration::from_millis(eval_interval as u64),
                )
            })
        })
        .collect();
    let external: strata_rules::Labels = tg
        .external_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let rules_env = strata_rules::Env {
        querier: Arc::new(crate::rules_api::EngineQuerier(
            strata_promql::prom_session(&env.ctx),
            None,
        )),
        appender: Arc::new(crate::rules_api::IngesterAppender(env.ingester.clone())),
        notifier: None,
        baselines: None,
        external_labels: external,
        external_url: tg.external_url.clone(),
        resend_delay: std::time::Duration::from_secs(60),
        metrics: None,
        slots: None,
    };
    // The alert tests by evaluation time.
    let mut alert_tests: Vec<(i64, &AlertTest)> = vec![];
    for t in &tg.alert_rule_test {
        alert_tests.push((duration_ms("eval_time", &t.eval_time)?, t));
    }
    alert_tests.sort_by_key(|(t, _)| *t);
    let mut max_t = alert_tests.last().map_or(0, |(t, _)| *t);
    for t in &tg.promql_expr_test {
        max_t = max_t.max(duration_ms("eval_time", &t.eval_time)?);
    }
    let mut errors = vec![];
    let mut next_test = 0;
    let mut ts = 0;
    while ts <= max_t {
        for g in &mut groups {
            g.eval(ts, &rules_env).await;
            for (r, h) in g.rules.iter().zip(&g.health) {
                if let Some(e) = &h.last_error {
                    errors.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.name(),
                        crate::rules_test::fmt_ms(ts)
                    ));
                }
            }
        }
        // Alert tests whose eval_time is in [ts, ts + interval).
        while next_test < alert_tests.len() && alert_tests[next_test].0 < ts + eval_interval {
            let (t, test) = alert_tests[next_test];
            let mut got: Vec<(strata_rules::Labels, strata_rules::Labels)> = vec![];
            for g in &groups {
                for r in &g.rules {
                    if let Some(a) = r.alerting()
                        && a.name == test.alertname
                    {
                        got.extend(
                            a.alerts()
                                .into_iter()
                                .filter(|a| a.state == strata_rules::alerting::AlertState::Firing)
                                .map(|a| (a.labels, a.annotations)),
                        );
                    }
                }
            }
            let mut exp: Vec<(strata_rules::Labels, strata_rules::Labels)> = test
                .exp_alerts
                .iter()
                .map(|a| {
                    let mut l = a.exp_labels.clone();
                    l.insert("alertname".into(), test.alertname.clone());
                    (
                        l.into_iter().collect(),
                        a.exp_annotations.clone().into_iter().collect(),
                    )
                })
                .collect();
            got.sort();
            exp.sort();
            if got != exp {
                errors.push(format!(
                    "    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    test.alertname,
                    fmt_ms(t),
                    show_alerts(&exp),
                    show_alerts(&got)
                ));
            }
            next_test += 1;
        }
        ts += eval_interval;
    }
    // The PromQL tests, over the input and everything the rules wrote.
    let querier = crate::rules_api::EngineQuerier(strata_promql::prom_session(&env.ctx), None);
    for t in &tg.promql_expr_test {
        use strata_rules::Querier;
        let at = duration_ms("eval_time", &t.eval_time)?;
        let mut got: Vec<(strata_rules::Labels, f64)> = match querier.query(&t.expr, at).await {
            Ok(r) => r
                .into_iter()
                .map(|(mut l, v)| {
                    l.sort();
                    (l, v)
                })
                .collect(),
            Err(e) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: {e}",
                    t.expr,
                    fmt_ms(at)
                ));
                continue;
            }
        };
        let mut exp = vec![];
        for s in &t.exp_samples {
            let mut l = if s.labels.trim().is_empty() {
                vec![]
            } else {
                crate::promqltest::parse::parse_descriptor(&s.labels)
                    .map_err(|e| format!("exp_samples labels {:?}: {e}", s.labels))?
            };
            l.sort();
            exp.push((l, s.value));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.0 == e.0 && (g.1 == e.1 || (g.1.is_nan() && e.1.is_nan())));
        if !same {
            errors.push(format!(
                "    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                t.expr,
                fmt_ms(at),
                show_samples(&exp),
                show_samples(&got)
            ));
        }
    }
    Ok(errors)
}

/// A time since 0 as Go prints a `time.Duration` (`5m0s`), as promtool reports it.
pub(crate) fn fmt_ms(ms: i64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let frac = ms % 1000;
    let secs = if frac == 0 {
        format!("{sec}s")
    } else {
        format!("{sec}.{frac:03}s")
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

fn show_labels(l: &strata_rules::Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn show_alerts(a: &[(strata_rules::Labels, strata_rules::Labels)]) -> String {
    let items: Vec<String> = a
        .iter()
        .map(|(l, ann)| {
            format!(
                "{{Labels:{} Annotations:{}}}",
                show_labels(l),
                show_labels(ann)
            )
        })
        .collect();
    format!("[{}]", items.join(" "))
}

fn show_samples(s: &[(strata_rules::Labels, f64)]) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|(l, v)| format!("{{Labels:{} Value:{v}}}", show_labels(l)))
        .collect();
    format!("[{}]", items.join(" "))
}
