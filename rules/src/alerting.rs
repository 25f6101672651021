//! Alerting rules: Prometheus's `rules/alerting.go` (`AlertingRule.Eval`), followed step
//! by step.
//!
//! Each evaluation at time `ts` queries at `ts - query_offset`. Every result sample
//! becomes an alert: its labels without `__name__`, plus the rule's labels (templates
//! expanded), plus `alertname`; annotations expanded. Two samples with one label set after
//! that fail the evaluation. A new alert is `pending` from `ts`; one already pending or
//! firing keeps its state and takes the new value and annotations. A pending alert fires
//! once it has been active for `for`. An alert missing from the result is deleted if it was
//! pending; a firing one becomes `inactive` (resolved at `ts`) unless `keep_firing_for`
//! keeps it firing, and a resolved one is kept for 15 minutes (for delivery), then deleted.
//! Past the group's `limit` of pending and firing alerts, the evaluation fails and every
//! alert is cleared. Outputs, at `ts - query_offset`: `ALERTS{alertstate=...}` 1 and
//! `ALERTS_FOR_STATE` (the alert's active time in s) for each pending or firing alert.
//!
//! After a restart, `for` state is restored from `ALERTS_FOR_STATE` as Prometheus's
//! `Group.RestoreForState` does (see [`restored_active_at`] and `crate::group`); until
//! then the rule writes no `ALERTS` or `ALERTS_FOR_STATE`, so that its new pending alerts
//! do not hide the old state.

use std::collections::HashMap;
use std::time::Duration;

use crate::template::{TemplateData, expand};
use crate::{Labels, RulesError, Sample};

/// How far back a restart looks for `ALERTS_FOR_STATE` (Prometheus's
/// `--rules.alert.for-outage-tolerance`, default 1 hour).
pub const FOR_OUTAGE_TOLERANCE: Duration = Duration::from_secs(3600);

/// The least time an alert restored after a restart stays pending (Prometheus's
/// `--rules.alert.for-grace-period`, default 10 minutes); rules whose `for` is shorter are
/// not restored.
pub const FOR_GRACE_PERIOD: Duration = Duration::from_secs(600);

/// When an alert restored at `ts_ms` becomes active, given the last `ALERTS_FOR_STATE`
/// sample before the restart: its time `down_at_ms` and its value, the active time then
/// (`was_active_at_ms`). Prometheus's `RestoreForState`: an alert that was already past
/// `hold` keeps its active time (it fires again at the next evaluation if its condition
/// holds); one with less than `grace` of `hold` left gets `grace` from now; otherwise its
/// pending time is shifted by the downtime, so that it pends for the rest of `hold` after
/// the restart. All times in ms since the epoch.
pub fn restored_active_at(
    ts_ms: i64,
    down_at_ms: i64,
    was_active_at_ms: i64,
    hold: Duration,
    grace: Duration,
) -> i64 {
    let (hold, grace) = (hold.as_millis() as i64, grace.as_millis() as i64);
    let remaining = hold - (down_at_ms - was_active_at_ms);
    if remaining <= 0 {
        was_active_at_ms
    } else if remaining < grace {
        ts_ms + grace - hold
    } else {
        was_active_at_ms + (ts_ms - down_at_ms)
    }
}

/// How long a resolved alert is kept (Prometheus's `resolvedRetention`).
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved (kept for [`RESOLVED_RETENTION`]).
    Inactive,
    /// Active for less than `for`.
    Pending,
    /// Active for `for` or longer.
    Firing,
}

impl AlertState {
    /// The name Prometheus gives it (`alertstate` label, APIs).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule. Times in ms since the epoch (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Its labels (`alertname` included), sorted by name.
    pub labels: Labels,
    /// Its expanded annotations, sorted by name.
    pub annotations: Labels,
    /// Its state.
    pub state: AlertState,
    /// The last value of its sample.
    pub value: f64,
    /// When it became pending.
    pub active_at_ms: i64,
    /// When it fired, if it did.
    pub fired_at_ms: Option<i64>,
    /// When it was resolved, if it was.
    pub resolved_at_ms: Option<i64>,
    /// Since when `keep_firing_for` has kept it firing.
    pub keep_firing_since_ms: Option<i64>,
    /// When it was last sent to Alertmanager.
    pub last_sent_at_ms: Option<i64>,
    /// Until when Alertmanager should consider it firing without hearing of it again
    /// (its `endsAt` while firing), set when it is sent.
    pub valid_until_ms: Option<i64>,
}

/// An alerting rule with its alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    /// The rule's name (`alertname`).
    pub name: String,
    /// Its PromQL expression.
    pub expr: String,
    /// `for`.
    pub hold: Duration,
    /// `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// Its labels (templates), sorted by name; the group's labels included.
    pub labels: Labels,
    /// Its annotations (templates), sorted by name.
    pub annotations: Labels,
    /// Its alerts, by label set.
    active: HashMap<Labels, Alert>,
    /// Whether its state was restored after a start (or needs no restoring); until then
    /// it writes no `ALERTS` and `ALERTS_FOR_STATE`.
    pub restored: bool,
}

impl AlertingRule {
    /// A rule with no alerts yet.
    pub fn new(
        name: String,
        expr: String,
        hold: Duration,
        keep_firing_for: Duration,
        labels: Labels,
        annotations: Labels,
    ) -> Self {
        AlertingRule {
            name,
            expr,
            hold,
            keep_firing_for,
            labels,
            annotations,
            active: HashMap::new(),
            restored: true,
        }
    }

    /// Sets the active time of its alert `labels` (a restore); `false` when there is no
    /// such alert.
    pub fn set_active_at(&mut self, labels: &Labels, active_at_ms: i64) -> bool {
        match self.active.get_mut(labels) {
            Some(a) => {
                a.active_at_ms = active_at_ms;
                true
            }
            None => false,
        }
    }

    /// Its alerts (pending, firing, and resolved ones still kept), sorted by labels.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.active.values().cloned().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Takes `old`'s alerts, when `old` is this rule unchanged (same name, expression,
    /// labels and `for`): Prometheus's `Group.CopyState` on a reload.
    pub fn copy_state_from(&mut self, old: &AlertingRule) {
        if old.name == self.name
            && old.expr == self.expr
            && old.labels == self.labels
            && old.hold == self.hold
        {
            self.active = old.active.clone();
        }
    }

    /// The alerts to send at `ts_ms` (Prometheus's `AlertingRule.sendAlerts` and
    /// `Alert.needsSending`): firing ones not sent within `resend_delay`, and ones resolved
    /// since they were last sent; never pending ones. Each is marked sent, valid until four
    /// times the larger of `resend_delay` and the group's `interval` from now (room for two
    /// failed evaluations or sends).
    pub fn to_send(
        &mut self,
        ts_ms: i64,
        resend_delay: Duration,
        interval: Duration,
    ) -> Vec<Alert> {
        let delta = resend_delay.max(interval).as_millis() as i64;
        let resend = resend_delay.as_millis() as i64;
        let mut out = vec![];
        for a in self.active.values_mut() {
            if a.state == AlertState::Pending {
                continue;
            }
            let resolved_since_sent = match (a.resolved_at_ms, a.last_sent_at_ms) {
                (Some(r), Some(s)) => r > s,
                (Some(_), None) => true,
                _ => false,
            };
            let due = a.last_sent_at_ms.is_none_or(|s| s + resend < ts_ms);
            if resolved_since_sent || due {
                a.last_sent_at_ms = Some(ts_ms);
                a.valid_until_ms = Some(ts_ms + 4 * delta);
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The rule's state: the most severe of its alerts' (`inactive` without any).
    pub fn state(&self) -> AlertState {
        let mut s = AlertState::Inactive;
        for a in self.active.values() {
            match a.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => s = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        s
    }

    /// One evaluation at `ts_ms` over the query result `result` (asked at `ts_ms -
    /// query_offset`), with at most `limit` pending and firing alerts (0: no limit).
    /// Returns the `ALERTS` and `ALERTS_FOR_STATE` samples, which the group writes at the
    /// query's time.
    ///
    /// # Errors
    /// [`RulesError::Eval`] for two alerts with one label set, or past `limit` (the
    /// alerts are then cleared).
    pub fn eval(
        &mut self,
        ts_ms: i64,
        result: Vec<Sample>,
        limit: usize,
        external_labels: &Labels,
        external_url: &str,
    ) -> Result<Vec<Sample>, RulesError> {
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(result.len());
        let template_name = format!("__alert_{}", self.name);
        for (metric, value) in result {
            let data = TemplateData {
                labels: &metric,
                external_labels,
                external_url,
                value,
            };
            let mut labels: std::collections::BTreeMap<String, String> = metric
                .iter()
                .filter(|(n, _)| n != "__name__")
                .cloned()
                .collect();
            for (n, v) in &self.labels {
                labels.insert(n.clone(), expand(&template_name, v, &data));
            }
            labels.insert("alertname".into(), self.name.clone());
            let annotations: Labels = self
                .annotations
                .iter()
                .map(|(n, v)| (n.clone(), expand(&template_name, v, &data)))
                .collect();
            let labels: Labels = labels.into_iter().collect();
            if fresh.contains_key(&labels) {
                return Err(RulesError::Eval(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                ));
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at_ms: ts_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                    last_sent_at_ms: None,
                    valid_until_ms: None,
                },
            );
        }
        let in_result: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (labels, a) in fresh {
            match self.active.get_mut(&labels) {
                Some(alert) if alert.state != AlertState::Inactive => {
                    alert.value = a.value;
                    alert.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(labels, a);
                }
            }
        }
        let mut out = vec![];
        let mut active_pending = 0;
        let hold = self.hold.as_millis() as i64;
        let keep_for = self.keep_firing_for.as_millis() as i64;
        let mut delete = vec![];
        for (labels, a) in self.active.iter_mut() {
            if !in_result.contains(labels) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_for > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < keep_for;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts_ms - r > RESOLVED_RETENTION.as_millis() as i64)
                {
                    delete.push(labels.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_pending += 1;
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= hold {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts_ms);
            }
            if !self.restored {
                continue;
            }
            let mut alerts = a.labels.clone();
            alerts.push(("__name__".into(), "ALERTS".into()));
            alerts.push(("alertstate".into(), a.state.as_str().into()));
            alerts.sort();
            out.push((alerts, 1.0));
            let mut for_state = a.labels.clone();
            for_state.push(("__name__".into(), "ALERTS_FOR_STATE".into()));
            for_state.sort();
            out.push((for_state, (a.active_at_ms / 1000) as f64));
        }
        for l in delete {
            self.active.remove(&l);
        }
        if limit > 0 && active_pending > limit {
            self.active.clear();
            return Err(RulesError::Eval(format!(
                "exceeded limit of {limit} with {active_pending} alerts"
            )));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)], v: f64) -> Sample {
        (
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            v,
        )
    }

    fn rule(hold_s: u64, keep_s: u64) -> AlertingRule {
        AlertingRule::new(
            "HighLoad".into(),
            "load > 1".into(),
            Duration::from_secs(hold_s),
            Duration::from_secs(keep_s),
            vec![("severity".into(), "page".into())],
            vec![(
                "summary".into(),
                "{{ $labels.instance }} at {{ $value }}".into(),
            )],
        )
    }

    fn states(out: &[Sample]) -> Vec<String> {
        out.iter()
            .filter(|(l, _)| l.iter().any(|(n, v)| n == "__name__" && v == "ALERTS"))
            .map(|(l, _)| {
                l.iter()
                    .find(|(n, _)| n == "alertstate")
                    .map(|(_, v)| v.clone())
                    .unwrap()
            })
            .collect()
    }

    /// Prometheus's timing (rules/alerting_test.go, `TestAlertingRule`): with `for: 10m`
    /// and evaluations every 5 minutes, an alert is pending at 0 and 5 min, fires at 10
    /// min, and is resolved at the first evaluation without it, then kept 15 minutes.
    #[test]
    fn pending_firing_resolved_and_kept_for_15_minutes() {
        let mut r = rule(600, 0);
        let hit = || vec![s(&[("__name__", "load"), ("instance", "a")], 2.0)];
        let m = 60_000;
        let ext = vec![];
        let ev = |r: &mut AlertingRule, t: i64, res| r.eval(t, res, 0, &ext, "").unwrap();
        assert_eq!(states(&ev(&mut r, 0, hit())), ["pending"]);
        assert_eq!(states(&ev(&mut r, 5 * m, hit())), ["pending"]);
        let out = ev(&mut r, 10 * m, hit());
        assert_eq!(states(&out), ["firing"]);
        // ALERTS_FOR_STATE is the active time in seconds; labels as Prometheus gives.
        assert!(out.contains(&s(
            &[
                ("__name__", "ALERTS_FOR_STATE"),
                ("alertname", "HighLoad"),
                ("instance", "a"),
                ("severity", "page")
            ],
            0.0
        )));
        let a = &r.alerts()[0];
        assert_eq!(
            a.annotations,
            vec![("summary".to_string(), "a at 2".to_string())]
        );
        assert_eq!((a.active_at_ms, a.fired_at_ms), (0, Some(10 * m)));
        // Gone from the result: resolved, no ALERTS sample, kept 15 minutes, then deleted.
        assert!(ev(&mut r, 15 * m, vec![]).is_empty());
        assert_eq!(r.alerts()[0].state, AlertState::Inactive);
        assert_eq!(r.alerts()[0].resolved_at_ms, Some(15 * m));
        ev(&mut r, 30 * m, vec![]);
        assert_eq!(r.alerts().len(), 1, "15 minutes exactly: still kept");
        ev(&mut r, 31 * m, vec![]);
        assert!(r.alerts().is_empty());
        // A pending alert that goes away is deleted at once.
        ev(&mut r, 40 * m, hit());
        ev(&mut r, 41 * m, vec![]);
        assert!(r.alerts().is_empty());
    }

    /// `keep_firing_for` (Prometheus's `TestKeepFiringFor`): a firing alert whose
    /// condition stops holding keeps firing until `keep_firing_for` has passed since it
    /// stopped, and a return of the condition resets that.
    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut r = rule(0, 600);
        let hit = || vec![s(&[("instance", "a")], 2.0)];
        let m = 60_000;
        let ext = vec![];
        let mut ev = |t: i64, res| r.eval(t, res, 0, &ext, "").unwrap();
        assert_eq!(states(&ev(0, hit())), ["firing"], "for: 0 fires at once");
        assert_eq!(states(&ev(5 * m, vec![])), ["firing"]);
        assert_eq!(states(&ev(14 * m, vec![])), ["firing"]);
        assert!(states(&ev(15 * m, vec![])).is_empty(), "10 minutes after 5");
    }

    /// Prometheus's resend rules: firing alerts are sent at once and then every
    /// `resend_delay`; a resolution is sent once; pending alerts never.
    #[test]
    fn firing_alerts_are_resent_and_resolutions_sent_once() {
        let mut r = rule(120, 0);
        let hit = || vec![s(&[("instance", "a")], 2.0)];
        let (m, ext) = (60_000, vec![]);
        let delay = Duration::from_secs(60);
        let every = Duration::from_secs(60);
        r.eval(0, hit(), 0, &ext, "").unwrap();
        assert!(r.to_send(0, delay, every).is_empty(), "pending");
        r.eval(2 * m, hit(), 0, &ext, "").unwrap();
        let sent = r.to_send(2 * m, delay, every);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].valid_until_ms, Some(2 * m + 4 * m));
        r.eval(3 * m, hit(), 0, &ext, "").unwrap();
        assert!(
            r.to_send(3 * m, delay, every).is_empty(),
            "sent a minute ago, not before"
        );
        r.eval(3 * m + 1, hit(), 0, &ext, "").unwrap();
        assert_eq!(r.to_send(3 * m + 1, delay, every).len(), 1);
        r.eval(4 * m, vec![], 0, &ext, "").unwrap();
        let resolved = r.to_send(4 * m, delay, every);
        assert_eq!(resolved[0].resolved_at_ms, Some(4 * m));
        assert!(
            r.to_send(4 * m + 1, delay, every).is_empty(),
            "the resolution went once"
        );
    }

    /// The three cases of Prometheus's `RestoreForState` (its `TestForStateRestore`
    /// shapes): `for` 30 min, grace 10 min, down from minute 20 to minute 30.
    #[test]
    fn restored_active_times_follow_prometheus() {
        let m = 60_000;
        let (hold, grace) = (Duration::from_secs(1800), Duration::from_secs(600));
        // Active at 0, down at 20 (10 min left, not less than the grace): pending time
        // shifted by the 10 min down, so it fires at 40, 10 min after the restart.
        assert_eq!(restored_active_at(30 * m, 20 * m, 0, hold, grace), 10 * m);
        // Active at 15, down at 20 (25 left): shifted by 10.
        assert_eq!(
            restored_active_at(30 * m, 20 * m, 15 * m, hold, grace),
            25 * m
        );
        // Active at -5, down at 20 (5 left, under the grace): fires a grace after the
        // restart, at 40.
        assert_eq!(
            restored_active_at(30 * m, 20 * m, -5 * m, hold, grace),
            10 * m
        );
        // Active at -20, down at 20: already firing, unchanged.
        assert_eq!(
            restored_active_at(30 * m, 20 * m, -20 * m, hold, grace),
            -20 * m
        );
    }

    #[test]
    fn duplicate_label_sets_and_limits_fail_the_evaluation() {
        let mut r = rule(0, 0);
        let ext = vec![];
        // Two series that differ only in __name__ collide once it is removed.
        let dup = vec![
            s(&[("__name__", "x"), ("instance", "a")], 2.0),
            s(&[("__name__", "y"), ("instance", "a")], 2.0),
        ];
        let e = r.eval(0, dup, 0, &ext, "").unwrap_err();
        assert!(e.to_string().contains("same labelset"), "{e}");
        let two = vec![s(&[("instance", "a")], 2.0), s(&[("instance", "b")], 2.0)];
        let e = r.eval(0, two, 1, &ext, "").unwrap_err();
        assert_eq!(e.to_string(), "exceeded limit of 1 with 2 alerts");
        assert!(r.alerts().is_empty());
    }
}
