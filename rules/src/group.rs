//! Rule groups and their evaluation loop: Prometheus's `rules/group.go` and
//! `rules/manager.go`.
//!
//! - **Slots.** A group is evaluated every `interval` at times offset from the interval's
//!   multiples by a hash of its file and name (`Group.EvalTimestamp`), so that groups
//!   spread over the interval; the first evaluation is the first slot one interval after
//!   the start. When an evaluation overruns slots, the missed ones are counted and
//!   skipped.
//! - **Order.** Rules run one after another. Each rule's output is appended before the next
//!   rule is queried, so a later rule sees an earlier one's result of the same cycle.
//! - **Staleness.** A series a rule wrote in its last evaluation and not in this one gets a
//!   staleness marker at this evaluation's query time.
//! - **Restart.** A group loaded at start restores its alerting rules' `for` state after its
//!   second evaluation (Prometheus waits one more evaluation for recording rules and
//!   scrapes to catch up): each pending alert's last `ALERTS_FOR_STATE` within
//!   [`crate::alerting::FOR_OUTAGE_TOLERANCE`] gives its active time
//!   ([`crate::alerting::restored_active_at`]). Rules with `for` under the grace period
//!   are not restored.
//! - **Health.** Each rule keeps its health (`ok`, `err`, `unknown` before its first
//!   evaluation), last error, last evaluation time and duration, for `/api/v1/rules`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alerting::AlertingRule;
use crate::anomaly_rule::{self, AnomalyRule};
use crate::file::GroupConfig;
use crate::recording::RecordingRule;
use crate::{Env, Labels, RulesError};

/// Prometheus's staleness marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A rule of a group.
#[derive(Debug, Clone)]
pub enum Rule {
    /// A recording rule.
    Recording(RecordingRule),
    /// An alerting rule.
    Alerting(AlertingRule),
    /// An anomaly rule.
    Anomaly(AnomalyRule),
}

impl Rule {
    /// The rule's name: `record` or `alert`.
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.record,
            Rule::Alerting(r) => &r.name,
            Rule::Anomaly(r) => &r.name,
        }
    }

    /// The alerting rule of an alerting or anomaly rule.
    pub fn alerting(&self) -> Option<&AlertingRule> {
        match self {
            Rule::Recording(_) => None,
            Rule::Alerting(r) => Some(r),
            Rule::Anomaly(r) => Some(&r.alert),
        }
    }

    fn alerting_mut(&mut self) -> Option<&mut AlertingRule> {
        match self {
            Rule::Recording(_) => None,
            Rule::Alerting(r) => Some(r),
            Rule::Anomaly(r) => Some(&mut r.alert),
        }
    }

    /// The rule's PromQL expression.
    pub fn expr(&self) -> &str {
        match self {
            Rule::Recording(r) => &r.expr,
            Rule::Alerting(r) => &r.expr,
            Rule::Anomaly(r) => &r.expr,
        }
    }
}

/// How a rule's last evaluation went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleHealth {
    /// When it last ran (evaluation time, ms since the epoch); `None` before the first.
    pub last_evaluation_ms: Option<i64>,
    /// How long it took, s.
    pub evaluation_seconds: f64,
    /// Its error, if it failed.
    pub last_error: Option<String>,
}

impl RuleHealth {
    /// `ok`, `err`, or `unknown` before the first evaluation (Prometheus's names).
    pub fn as_str(&self) -> &'static str {
        match (&self.last_evaluation_ms, &self.last_error) {
            (None, _) => "unknown",
            (_, Some(_)) => "err",
            _ => "ok",
        }
    }
}

/// A group: its rules, their state and health.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// How often it is evaluated.
    pub interval: Duration,
    /// How far before each evaluation time its rules query.
    pub query_offset: Duration,
    /// At most this many series or alerts per rule (0: none).
    pub limit: usize,
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// Each rule's health.
    pub health: Vec<RuleHealth>,
    /// The series each rule wrote in its last evaluation (for staleness markers).
    written: Vec<HashSet<Labels>>,
    /// When the group last ran (evaluation time, ms) and how long it took (s).
    pub last_evaluation_ms: Option<i64>,
    /// See `last_evaluation_ms`.
    pub evaluation_seconds: f64,
    /// Slots skipped because an evaluation overran them.
    pub missed_iterations: u64,
    /// Whether its alerting rules' state is to be restored (groups loaded at start).
    pub should_restore: bool,
}

/// `labels` as sorted pairs, with `extra` (a rule's own) winning over the group's.
fn merged(
    group: &std::collections::BTreeMap<String, String>,
    own: &std::collections::BTreeMap<String, String>,
) -> Labels {
    let mut m = group.clone();
    m.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    m.into_iter().collect()
}

impl Group {
    /// The group `cfg` of `file`, evaluated every `cfg.interval` or `default_interval`.
    pub fn new(file: &str, cfg: &GroupConfig, default_interval: Duration) -> Group {
        let group_key = format!("{file};{}", cfg.name);
        let rules: Vec<Rule> = cfg
            .rules
            .iter()
            .map(|r| {
                let alert = |name: &Option<String>, hold: Duration, keep_firing_for: Duration| {
                    AlertingRule::new(
                        name.clone().unwrap_or_default(),
                        r.expr.clone(),
                        r.for_.unwrap_or(hold),
                        r.keep_firing_for.unwrap_or(keep_firing_for),
                        merged(&cfg.labels, &r.labels),
                        r.annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                };
                match (&r.record, &r.anomaly) {
                    (Some(record), _) => Rule::Recording(RecordingRule {
                        record: record.clone(),
                        expr: r.expr.clone(),
                        labels: merged(&cfg.labels, &r.labels),
                    }),
                    (None, Some(_)) => Rule::Anomaly(AnomalyRule::new(
                        &group_key,
                        alert(
                            &r.anomaly,
                            anomaly_rule::DEFAULT_MIN_DURATION,
                            anomaly_rule::DEFAULT_DEDUP,
                        ),
                        r.sensitivity.unwrap_or(anomaly_rule::DEFAULT_SENSITIVITY),
                        r.resolution.unwrap_or(anomaly_rule::DEFAULT_RESOLUTION),
                        r.history.unwrap_or(anomaly_rule::DEFAULT_HISTORY),
                        r.refit_interval
                            .unwrap_or(anomaly_rule::DEFAULT_REFIT_INTERVAL),
                    )),
                    (None, None) => Rule::Alerting(alert(&r.alert, Duration::ZERO, Duration::ZERO)),
                }
            })
            .collect();
        Group {
            name: cfg.name.clone(),
            file: file.to_string(),
            interval: cfg.interval.unwrap_or(default_interval),
            query_offset: cfg.query_offset.unwrap_or_default(),
            limit: cfg.limit,
            health: vec![RuleHealth::default(); rules.len()],
            written: vec![HashSet::new(); rules.len()],
            rules,
            last_evaluation_ms: None,
            evaluation_seconds: 0.0,
            missed_iterations: 0,
            should_restore: false,
        }
    }

    /// Marks the group as loaded at start: its alerting rules write no `ALERTS` until
    /// [`Group::restore_for_state`] has run.
    pub fn restore_at_start(&mut self) {
        self.should_restore = true;
        for r in &mut self.rules {
            if let Some(a) = r.alerting_mut() {
                a.restored = false;
            }
        }
    }

    /// Restores the active times of the alerting rules' alerts at `ts_ms` from the last
    /// `ALERTS_FOR_STATE` sample of each within the outage tolerance (Prometheus's
    /// `Group.RestoreForState`). A query that fails leaves the alert as it is.
    pub async fn restore_for_state(&mut self, ts_ms: i64, env: &Env) {
        use crate::alerting::{FOR_GRACE_PERIOD, FOR_OUTAGE_TOLERANCE, restored_active_at};
        self.should_restore = false;
        let range = format!("{}s", FOR_OUTAGE_TOLERANCE.as_secs());
        for r in &mut self.rules {
            let Some(rule) = r.alerting_mut() else {
                continue;
            };
            if rule.hold < FOR_GRACE_PERIOD {
                rule.restored = true;
                continue;
            }
            for a in rule.alerts() {
                let matchers: Vec<String> = a
                    .labels
                    .iter()
                    .map(|(n, v)| format!("{n}={}", serde_json::Value::String(v.clone())))
                    .collect();
                let sel = format!("ALERTS_FOR_STATE{{{}}}[{range}]", matchers.join(","));
                let value = env
                    .querier
                    .query(&format!("last_over_time({sel})"), ts_ms)
                    .await;
                let at = env
                    .querier
                    .query(&format!("ts_of_last_over_time({sel})"), ts_ms)
                    .await;
                let (Ok(value), Ok(at)) = (value, at) else {
                    continue;
                };
                let (Some((_, was)), Some((_, down))) = (value.first(), at.first()) else {
                    continue;
                };
                let active = restored_active_at(
                    ts_ms,
                    (*down * 1000.0) as i64,
                    (*was * 1000.0) as i64,
                    rule.hold,
                    FOR_GRACE_PERIOD,
                );
                rule.set_active_at(&a.labels, active);
            }
            rule.restored = true;
        }
    }

    /// Takes the state of `old`'s rules that are unchanged in this group (Prometheus's
    /// `Group.CopyState` on a reload): alerts of alerting rules with the same name,
    /// expression, labels and `for`, and what each same-named rule wrote last (so that
    /// its staleness markers still come), matched in order among same-named rules.
    pub fn copy_state_from(&mut self, old: &Group) {
        let mut used = vec![false; old.rules.len()];
        for (i, r) in self.rules.iter_mut().enumerate() {
            let Some(j) = (0..old.rules.len()).find(|&j| {
                !used[j] && old.rules[j].name() == r.name() && old.rules[j].expr() == r.expr()
            }) else {
                continue;
            };
            used[j] = true;
            self.written[i] = old.written[j].clone();
            self.health[i] = old.health[j].clone();
            match (r, &old.rules[j]) {
                (Rule::Alerting(new), Rule::Alerting(o)) => new.copy_state_from(o),
                (Rule::Anomaly(new), Rule::Anomaly(o)) => new.copy_state_from(o),
                _ => {}
            }
        }
    }

    /// The group's evaluation slot at or before `now_ms` (Prometheus's
    /// `Group.EvalTimestamp`: offset from the interval's multiples by the FNV-1a hash of
    /// `name;file`, modulo the interval).
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        let interval = (self.interval.as_millis() as i64).max(1);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("{};{}", self.name, self.file).bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let offset = (h % interval as u64) as i64;
        let adj = now_ms - offset;
        adj - adj.rem_euclid(interval) + offset
    }

    /// Evaluates every rule at `ts_ms` (ms since the epoch), in order, appending each one's
    /// output before the next is queried. A rule that fails keeps its error in its health;
    /// the others run.
    pub async fn eval(&mut self, ts_ms: i64, env: &Env) {
        let (external_labels, external_url) = (&env.external_labels, env.external_url.as_str());
        let started = Instant::now();
        let query_ts = ts_ms - self.query_offset.as_millis() as i64;
        let query = template_query(env, query_ts);
        for i in 0..self.rules.len() {
            let rule_started = Instant::now();
            let expr = self.rules[i].expr().to_string();
            if let Rule::Anomaly(a) = &self.rules[i] {
                a.refresh(query_ts, env).await;
            }
            let result = match env.querier.query(&expr, query_ts).await {
                Ok(r) => Ok(r),
                Err(e) => Err(RulesError::Eval(e)),
            };
            let limit = self.limit;
            let out = result.and_then(|r| match &mut self.rules[i] {
                Rule::Recording(rule) => rule.eval(r, limit),
                // Templates' `query` calls, made while the alerts are expanded (no await
                // while the scope lasts: it is this thread's).
                Rule::Alerting(rule) => {
                    let _query = crate::template::with_query(query.clone());
                    rule.eval(ts_ms, r, limit, external_labels, external_url)
                }
                Rule::Anomaly(rule) => {
                    let _query = crate::template::with_query(query.clone());
                    rule.eval(ts_ms, query_ts, r, limit, external_labels, external_url)
                }
            });
            let mut samples: Vec<(Labels, i64, f64)> = vec![];
            let error = match out {
                Ok(out) => {
                    let now: HashSet<Labels> = out.iter().map(|(l, _)| l.clone()).collect();
                    for l in self.written[i].difference(&now) {
                        samples.push((l.clone(), query_ts, f64::from_bits(STALE_NAN_BITS)));
                    }
                    samples.extend(out.into_iter().map(|(l, v)| (l, query_ts, v)));
                    self.written[i] = now;
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            let error = match (error, samples.is_empty()) {
                (None, false) => env.appender.append(samples).await.err(),
                (e, _) => e,
            };
            if let Some(e) = &error {
                tracing::warn!(group = %self.name, rule = %self.rules[i].name(), error = %e, "rule evaluation failed");
            }
            // Alerts go out after a successful evaluation (Prometheus's `sendAlerts`).
            if error.is_none()
                && let (Some(n), Some(rule)) = (&env.notifier, self.rules[i].alerting_mut())
            {
                let alerts = rule.to_send(ts_ms, env.resend_delay, self.interval);
                if !alerts.is_empty() {
                    n.notify(&expr, alerts).await;
                }
            }
            self.health[i] = RuleHealth {
                last_evaluation_ms: Some(ts_ms),
                evaluation_seconds: rule_started.elapsed().as_secs_f64(),
                last_error: error,
            };
        }
        self.last_evaluation_ms = Some(ts_ms);
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        if let Some(m) = &env.metrics {
            let key = self.key();
            let n = self.rules.len() as u64;
            m.evaluations.with_label_values(&[&key]).inc_by(n);
            let failed = self
                .health
                .iter()
                .filter(|h| h.last_error.is_some())
                .count();
            m.failures.with_label_values(&[&key]).inc_by(failed as u64);
            m.last_duration
                .with_label_values(&[&key])
                .set(self.evaluation_seconds);
            m.rules.with_label_values(&[&key]).set(n as i64);
        }
    }

    /// The group's `rule_group` label: `<file>;<name>`, as Prometheus's.
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }
}

/// The query function of templates expanded in an evaluation at `query_ts` (ms): the
/// group's querier, run to completion on a thread of its own with a one-thread runtime
/// (template expansion is synchronous, as in Prometheus, and this task's runtime cannot
/// be blocked on from within). Built once per group evaluation and set around each
/// alerting rule's evaluation; only templates that call `query` use it.
fn template_query(env: &Env, query_ts: i64) -> crate::template::QueryFn {
    let querier = env.querier.clone();
    Arc::new(move |q: &str| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("a runtime for the template's query: {e}"))?;
                rt.block_on(querier.query(q, query_ts))
            })
            .join()
            .unwrap_or_else(|_| Err("the template's query panicked".into()))
        })
    })
}

/// Runs `group` on its slots until `stop` turns true: the first evaluation at the first
/// slot one interval after now, then one per interval; slots an evaluation overran are
/// skipped and counted in `missed_iterations`. `now_ms` is the clock (ms since the
/// epoch).
pub async fn run(
    group: Arc<tokio::sync::Mutex<Group>>,
    env: Arc<Env>,
    now_ms: fn() -> i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (interval, mut next) = {
        let g = group.lock().await;
        let i = g.interval.as_millis() as i64;
        (i.max(1), g.eval_timestamp(now_ms()) + i.max(1))
    };
    loop {
        let wait = Duration::from_millis((next - now_ms()).max(0) as u64);
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let restore_now = {
            // Waiting for a slot ends at `stop` too, so that a stopping server does not
            // wait for every queued evaluation.
            let _slot = match &env.slots {
                Some(s) => tokio::select! {
                    _ = stop.wait_for(|v| *v) => return,
                    slot = s.clone().acquire_owned() => slot.ok(),
                },
                None => None,
            };
            let mut g = group.lock().await;
            let evaluated_before = g.last_evaluation_ms.is_some();
            g.eval(next, &env).await;
            // Restore after the second evaluation.
            g.should_restore && evaluated_before
        };
        if restore_now {
            group.lock().await.restore_for_state(now_ms(), &env).await;
        }
        next += interval;
        let behind = now_ms() - next;
        if behind >= interval {
            let missed = behind / interval;
            next += missed * interval;
            let mut g = group.lock().await;
            g.missed_iterations += missed as u64;
            if let Some(m) = &env.metrics {
                m.missed
                    .with_label_values(&[&g.key()])
                    .inc_by(missed as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::RuleFile;
    use crate::{Appender, Querier};
    use parking_lot::Mutex;

    /// A querier over a fixed table of results per expression; records what it was asked.
    struct Fixed {
        answers: Mutex<std::collections::HashMap<String, Vec<crate::Sample>>>,
        asked: Mutex<Vec<(String, i64)>>,
        store: Arc<Store>,
    }

    #[derive(Default)]
    struct Store(Mutex<Vec<(Labels, i64, f64)>>);

    #[async_trait::async_trait]
    impl Appender for Store {
        async fn append(&self, samples: Vec<(Labels, i64, f64)>) -> Result<(), String> {
            self.0.lock().extend(samples);
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl Querier for Fixed {
        async fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<crate::Sample>, String> {
            self.asked.lock().push((expr.to_string(), t_ms));
            if expr == "recorded" {
                // What the store holds of the first rule's output at t: a later rule sees it.
                return Ok(self
                    .store
                    .0
                    .lock()
                    .iter()
                    .filter(|(l, t, _)| {
                        *t == t_ms && l.iter().any(|(n, v)| n == "__name__" && v == "job:x:sum")
                    })
                    .map(|(l, _, v)| (l.clone(), *v))
                    .collect());
            }
            self.answers
                .lock()
                .get(expr)
                .cloned()
                .ok_or_else(|| format!("no answer for {expr}"))
        }
    }

    #[tokio::test]
    async fn rules_run_in_order_see_earlier_results_and_leave_stale_markers() {
        let f = RuleFile::parse(
            "r.yml",
            "groups:\n- name: g\n  interval: 1m\n  query_offset: 10s\n  labels: {team: db}\n  rules:\n  - record: job:x:sum\n    expr: sum(x)\n  - alert: Seen\n    expr: recorded\n  - record: broken\n    expr: nosuch\n",
        )
        .unwrap();
        let mut g = Group::new("r.yml", &f.groups[0], Duration::from_secs(15));
        assert_eq!(g.interval, Duration::from_secs(60));
        let store = Arc::new(Store::default());
        let q = Arc::new(Fixed {
            answers: Mutex::new([("sum(x)".to_string(), vec![(vec![], 3.0)])].into()),
            asked: Mutex::new(vec![]),
            store: store.clone(),
        });
        let env = Env::bare(q.clone(), store.clone());
        g.eval(60_000, &env).await;
        // Queried at the evaluation time less the offset, in rule order.
        assert_eq!(
            q.asked.lock().clone(),
            vec![
                ("sum(x)".to_string(), 50_000),
                ("recorded".to_string(), 50_000),
                ("nosuch".to_string(), 50_000)
            ]
        );
        let l = |p: &[(&str, &str)]| -> Labels {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let written = store.0.lock().clone();
        assert!(written.contains(&(l(&[("__name__", "job:x:sum"), ("team", "db")]), 50_000, 3.0)));
        // The alert saw the recorded series of the same cycle.
        assert!(written.contains(&(
            l(&[
                ("__name__", "ALERTS"),
                ("alertname", "Seen"),
                ("alertstate", "firing"),
                ("team", "db")
            ]),
            50_000,
            1.0
        )));
        assert_eq!(g.health[0].as_str(), "ok");
        assert_eq!(g.health[2].as_str(), "err");
        assert_eq!(
            g.health[2].last_error.as_deref(),
            Some("no answer for nosuch")
        );
        // Next cycle: sum(x) is empty, so its series gets a staleness marker.
        q.answers.lock().insert("sum(x)".into(), vec![]);
        g.eval(120_000, &env).await;
        let stale: Vec<_> = store
            .0
            .lock()
            .iter()
            .filter(|(_, t, v)| *t == 110_000 && v.to_bits() == STALE_NAN_BITS)
            .map(|(l, _, _)| l.clone())
            .collect();
        assert!(
            stale.contains(&l(&[("__name__", "job:x:sum"), ("team", "db")])),
            "{stale:?}"
        );
    }

    /// A template's `query` runs through the group's querier at the query's time.
    #[tokio::test]
    async fn alert_templates_query_through_the_group_querier() {
        let f = RuleFile::parse(
            "r.yml",
            "groups:\n- name: g\n  query_offset: 10s\n  rules:\n  - alert: High\n    expr: x > 1\n    annotations:\n      total: '{{ with query \"sum(x)\" }}{{ . | first | value | humanize }}{{ end }}'\n",
        )
        .unwrap();
        let mut g = Group::new("r.yml", &f.groups[0], Duration::from_secs(15));
        let store = Arc::new(Store::default());
        let q = Arc::new(Fixed {
            answers: Mutex::new(
                [
                    ("x > 1".to_string(), vec![(vec![], 3.0)]),
                    ("sum(x)".to_string(), vec![(vec![], 1234567.0)]),
                ]
                .into(),
            ),
            asked: Mutex::new(vec![]),
            store: store.clone(),
        });
        let env = Env::bare(q.clone(), store.clone());
        g.eval(60_000, &env).await;
        let Rule::Alerting(r) = &g.rules[0] else {
            panic!("not an alerting rule")
        };
        let a = r.alerts();
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].annotations,
            vec![("total".to_string(), "1.235M".to_string())]
        );
        assert!(q.asked.lock().contains(&("sum(x)".to_string(), 50_000)));
    }

    #[test]
    fn a_reloaded_group_keeps_the_alerts_of_unchanged_rules() {
        let cfg = |expr: &str| {
            RuleFile::parse(
                "r.yml",
                &format!(
                    "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: {expr}\n    for: 1h\n"
                ),
            )
            .unwrap()
            .groups
            .remove(0)
        };
        let mut old = Group::new("r.yml", &cfg("x > 1"), Duration::from_secs(60));
        if let Rule::Alerting(r) = &mut old.rules[0] {
            r.eval(0, vec![(vec![], 2.0)], 0, &vec![], "").unwrap();
        }
        let alerts = |g: &Group| match &g.rules[0] {
            Rule::Alerting(r) => r.alerts().len(),
            _ => 0,
        };
        let mut same = Group::new("r.yml", &cfg("x > 1"), Duration::from_secs(60));
        same.copy_state_from(&old);
        assert_eq!(
            alerts(&same),
            1,
            "the pending alert and its active time survive"
        );
        let mut changed = Group::new("r.yml", &cfg("x > 2"), Duration::from_secs(60));
        changed.copy_state_from(&old);
        assert_eq!(alerts(&changed), 0);
    }

    #[test]
    fn slots_are_offset_by_the_group_hash_within_the_interval() {
        let f = RuleFile::parse("r.yml", "groups:\n- name: g\n  interval: 1m\n").unwrap();
        let g = Group::new("r.yml", &f.groups[0], Duration::from_secs(60));
        let t = g.eval_timestamp(1_000_000_000);
        assert!(t <= 1_000_000_000 && 1_000_000_000 - t < 60_000);
        // The same slot from anywhere in it; the next one an interval later.
        assert_eq!(g.eval_timestamp(t + 59_999), t);
        assert_eq!(g.eval_timestamp(t + 60_000), t + 60_000);
    }
}
