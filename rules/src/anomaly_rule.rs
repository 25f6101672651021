//! Anomaly rules (`anomaly:` in a rule file): an alerting rule whose condition is a
//! departure from each series' seasonal baseline ([`crate::anomaly`]) rather than a
//! threshold.
//!
//! At each evaluation the rule's `expr` is queried as any rule's is. Each result series
//! with a baseline gets four series written at the query time, labelled with the series'
//! labels (no `__name__`) and `anomaly="<rule name>"`:
//! - `anomaly_score`: `(value - baseline) / sigma`;
//! - `anomaly_baseline`: the expected value;
//! - `anomaly_lower` and `anomaly_upper`: `baseline ∓ sensitivity × sigma`.
//!
//! Series whose `|score| >= sensitivity` are the input of an [`AlertingRule`] named after
//! the rule, with `for` as the anomaly's minimum duration (default
//! [`DEFAULT_MIN_DURATION`]) and `keep_firing_for` (default [`DEFAULT_DEDUP`]) as the window within which consecutive anomalies stay one event:
//! the alert keeps firing through a gap shorter than it. `$value` in templates is the
//! score. Alerts, `ALERTS`, `ALERTS_FOR_STATE`, restore and delivery are the alerting
//! rule's.
//!
//! **Baselines.** Fitted from a range query of `expr` over `history` at steps of
//! `resolution` (the query engine reads the rollup tiers for the older part), one per
//! series, and kept in a [`crate::BaselineStore`] (the server's Delta table) under the
//! rule's key, which changes with its expression, resolution or history. A rule loads
//! its baselines from the store at its first evaluation and fits only when:
//! - it has none (a failed fit is retried after one `resolution`);
//! - a refit slot has passed since its fit: slots are every `refit_interval`, offset by
//!   a hash of the rule's key, so that rules loaded together refit at different times;
//! - its expression returned series without a baseline, and its last fit is an hour old.
//!
//! Fits run in the background (on one blocking thread) and replace the baselines when
//! done; until a rule's first fit is done it scores nothing; series a refit finds
//! too little history for ([`crate::anomaly::MIN_POINTS`]) keep no baseline and are
//! counted in [`AnomalyRule::status`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::alerting::AlertingRule;
use crate::anomaly::Baseline;
use crate::{Env, Labels, RulesError, Sample};

/// The default sensitivity, in sigmas.
pub const DEFAULT_SENSITIVITY: f64 = 3.0;
/// The default resolution of baselines.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(15 * 60);
/// The default history a baseline is fitted from.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(28 * 86_400);
/// The default time between refits.
pub const DEFAULT_REFIT_INTERVAL: Duration = Duration::from_secs(7 * 86_400);
/// The default minimum duration of an anomaly before its alert fires (`for`): at the
/// default sensitivity it took precision on the synthetic bench from 0.12 (no minimum)
/// to 0.95 for a recall of 0.87 (`benches/README.md`, "Anomaly detection").
pub const DEFAULT_MIN_DURATION: Duration = Duration::from_secs(120);
/// The default window within which consecutive anomalies are one event.
pub const DEFAULT_DEDUP: Duration = Duration::from_secs(5 * 60);
/// How old a fit must be before series it lacks trigger another.
const NEW_SERIES_REFIT_MS: i64 = 3_600_000;

/// How an anomaly rule's baselines stand, for `/api/v1/rules`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FitStatus {
    /// Series with a baseline.
    pub series: usize,
    /// Series the last evaluation saw without one.
    pub unfitted: usize,
    /// When the oldest baseline was fitted (ms since the epoch).
    pub fitted_at_ms: Option<i64>,
    /// Whether a fit is running.
    pub running: bool,
    /// The last fit's error, if it failed.
    pub last_error: Option<String>,
    /// How many baselines of each method (`mstl_weekly`, `mstl_daily`, `median_mad`).
    pub methods: Vec<(&'static str, usize)>,
}

#[derive(Debug, Default)]
struct FitState {
    baselines: HashMap<Labels, Baseline>,
    /// The oldest of `baselines`' fit times, kept as they are installed.
    fitted_at_ms: Option<i64>,
    loaded: bool,
    running: bool,
    last_attempt_ms: Option<i64>,
    last_error: Option<String>,
    unfitted: usize,
}

/// An anomaly rule.
#[derive(Debug, Clone)]
pub struct AnomalyRule {
    /// Its name (the alerts' `alertname`, the output's `anomaly` label).
    pub name: String,
    /// Its PromQL expression: the series watched.
    pub expr: String,
    /// How many sigmas from the baseline is anomalous.
    pub sensitivity: f64,
    /// The baselines' slot length.
    pub resolution: Duration,
    /// How far back a fit reads.
    pub history: Duration,
    /// How often baselines are refitted.
    pub refit_interval: Duration,
    /// The alerting rule its anomalies feed.
    pub alert: AlertingRule,
    /// The baselines' key in the store: `<file>;<group>;<name>;<hash>`.
    pub key: String,
    state: Arc<Mutex<FitState>>,
}

/// `labels` without `__name__`.
fn without_name(labels: Labels) -> Labels {
    labels
        .into_iter()
        .filter(|(n, _)| n != "__name__")
        .collect()
}

impl AnomalyRule {
    /// A rule of the group `group_key` (`<file>;<group>`); `alert` carries its name,
    /// minimum duration, dedup window, labels and annotations.
    pub fn new(
        group_key: &str,
        alert: AlertingRule,
        sensitivity: f64,
        resolution: Duration,
        history: Duration,
        refit_interval: Duration,
    ) -> AnomalyRule {
        let hash = xxhash_rust::xxh64::xxh64(
            format!(
                "{}\0{}\0{}",
                alert.expr,
                resolution.as_millis(),
                history.as_millis()
            )
            .as_bytes(),
            0,
        );
        AnomalyRule {
            name: alert.name.clone(),
            expr: alert.expr.clone(),
            sensitivity,
            resolution,
            history,
            refit_interval,
            key: format!("{group_key};{};{hash:016x}", alert.name),
            alert,
            state: Arc::default(),
        }
    }

    /// The baselines' state.
    pub fn status(&self) -> FitStatus {
        let s = self.state.lock();
        let mut methods: Vec<(&'static str, usize)> = vec![];
        for b in s.baselines.values() {
            match methods.iter_mut().find(|(m, _)| *m == b.method.as_str()) {
                Some((_, n)) => *n += 1,
                None => methods.push((b.method.as_str(), 1)),
            }
        }
        methods.sort();
        FitStatus {
            series: s.baselines.len(),
            unfitted: s.unfitted,
            fitted_at_ms: s.fitted_at_ms,
            running: s.running,
            last_error: s.last_error.clone(),
            methods,
        }
    }

    /// The start of the refit slot at or before `t_ms`.
    fn refit_slot(&self, t_ms: i64) -> i64 {
        let every = (self.refit_interval.as_millis() as i64).max(1);
        let offset = (xxhash_rust::xxh64::xxh64(self.key.as_bytes(), 1) % every as u64) as i64;
        let adj = t_ms - offset;
        adj - adj.rem_euclid(every) + offset
    }

    /// Loads the baselines from the store at the first call, and starts a fit in the
    /// background when one is due (see the module's doc) at the query time `t_ms`. The
    /// evaluation never waits for a fit: a rule without baselines scores nothing until
    /// its first fit is done (fitting takes about 64 ms per series of 28 days at 15
    /// minutes on one core: `benches/README.md`).
    pub async fn refresh(&self, t_ms: i64, env: &Env) {
        let load = !self.state.lock().loaded;
        if load {
            let loaded = match &env.baselines {
                Some(store) => store.load(&self.key).await,
                None => Ok(vec![]),
            };
            let mut s = self.state.lock();
            s.loaded = true;
            match loaded {
                // A fit that ran meanwhile is newer.
                Ok(_) if !s.baselines.is_empty() => {}
                Ok(v) => {
                    // The fit that made them was the last attempt.
                    s.last_attempt_ms = v.iter().map(|(_, b)| b.fitted_at_ms).max();
                    s.fitted_at_ms = v.iter().map(|(_, b)| b.fitted_at_ms).min();
                    s.baselines = v.into_iter().collect();
                }
                Err(e) => s.last_error = Some(format!("loading baselines: {e}")),
            }
        }
        let due = {
            let s = self.state.lock();
            let oldest = s.fitted_at_ms;
            let since_attempt = s.last_attempt_ms.map_or(i64::MAX, |a| t_ms - a);
            !s.running
                && match oldest {
                    None => since_attempt >= self.resolution.as_millis() as i64,
                    Some(f) => {
                        f < self.refit_slot(t_ms)
                            || (s.unfitted > 0 && since_attempt >= NEW_SERIES_REFIT_MS)
                    }
                }
        };
        if due {
            tokio::spawn(self.fit(t_ms, env));
        }
    }

    /// Fits every series' baseline at the query time `t_ms` now, and saves them, before
    /// returning (`strata bench-anomaly` fits so before its first evaluation).
    pub async fn fit_now(&self, t_ms: i64, env: &Env) {
        self.fit(t_ms, env).await;
    }

    /// The fit at `t_ms`, marked as running from now.
    fn fit(&self, t_ms: i64, env: &Env) -> impl Future<Output = ()> + Send + 'static {
        {
            let mut s = self.state.lock();
            s.running = true;
            s.last_attempt_ms = Some(t_ms);
        }
        fit_all(
            env.querier.clone(),
            env.baselines.clone(),
            self.key.clone(),
            self.expr.clone(),
            self.resolution.as_millis() as i64,
            self.history.as_millis() as i64,
            t_ms,
            self.state.clone(),
        )
    }

    /// One evaluation at `ts_ms` over the query result `result`, asked at `query_ts_ms`;
    /// returns the score, baseline and band series and the alerting rule's `ALERTS` and
    /// `ALERTS_FOR_STATE`.
    ///
    /// # Errors
    /// The alerting rule's ([`AlertingRule::eval`]).
    pub fn eval(
        &mut self,
        ts_ms: i64,
        query_ts_ms: i64,
        result: Vec<Sample>,
        limit: usize,
        external_labels: &Labels,
        external_url: &str,
    ) -> Result<Vec<Sample>, RulesError> {
        let mut out = Vec::with_capacity(result.len() * 4);
        let mut anomalous = vec![];
        {
            let mut s = self.state.lock();
            let mut unfitted = 0;
            for (labels, v) in result {
                let series = without_name(labels);
                let Some(b) = s.baselines.get(&series) else {
                    unfitted += 1;
                    continue;
                };
                let j = b.judge(query_ts_ms, v, self.sensitivity);
                let mut l: std::collections::BTreeMap<String, String> =
                    series.iter().cloned().collect();
                l.insert("anomaly".into(), self.name.clone());
                for (name, value) in [
                    ("anomaly_score", j.score),
                    ("anomaly_baseline", j.expected),
                    ("anomaly_lower", j.lower),
                    ("anomaly_upper", j.upper),
                ] {
                    l.insert("__name__".into(), name.into());
                    out.push((
                        l.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                        value,
                    ));
                }
                if j.anomalous {
                    anomalous.push((series, j.score));
                }
            }
            s.unfitted = unfitted;
        }
        out.extend(
            self.alert
                .eval(ts_ms, anomalous, limit, external_labels, external_url)?,
        );
        Ok(out)
    }

    /// Takes `old`'s baselines and alerts when it is the same rule (same key), as a
    /// reload does.
    pub fn copy_state_from(&mut self, old: &AnomalyRule) {
        if old.key == self.key {
            self.state = old.state.clone();
        }
        self.alert.copy_state_from(&old.alert);
    }
}

/// Fits every series of `expr` over `[t - history, t]` at `step_ms` steps, saves the
/// baselines in `store` and installs them in `state`.
#[allow(clippy::too_many_arguments)]
async fn fit_all(
    querier: Arc<dyn crate::Querier>,
    store: Option<Arc<dyn crate::BaselineStore>>,
    key: String,
    expr: String,
    step_ms: i64,
    history_ms: i64,
    t_ms: i64,
    state: Arc<Mutex<FitState>>,
) {
    let end = t_ms.div_euclid(step_ms) * step_ms;
    let result: Result<Vec<(Labels, Baseline)>, String> = async {
        let series = querier
            .query_range(&expr, end - history_ms, end, step_ms)
            .await?;
        let asked = series.len();
        let (fitted, first_error) = tokio::task::spawn_blocking(move || {
            let mut first_error = None;
            let fitted: Vec<(Labels, Baseline)> = series
                .into_iter()
                .filter_map(
                    |(labels, points)| match crate::anomaly::fit(&points, step_ms, t_ms) {
                        Ok(b) => Some((without_name(labels), b)),
                        Err(e) => {
                            first_error.get_or_insert(e);
                            None
                        }
                    },
                )
                .collect();
            (fitted, first_error)
        })
        .await
        .map_err(|e| e.to_string())?;
        if fitted.is_empty() {
            return Err(match first_error {
                Some(e) => format!("no series could be fitted ({asked} tried): {e}"),
                None => "the expression returned no series over the history".into(),
            });
        }
        if let Some(store) = &store {
            store.save(&key, &fitted).await?;
        }
        Ok(fitted)
    }
    .await;
    let mut s = state.lock();
    s.running = false;
    s.loaded = true;
    match result {
        Ok(fitted) => {
            s.last_error = None;
            s.fitted_at_ms = Some(t_ms);
            s.baselines = fitted.into_iter().collect();
        }
        Err(e) => {
            tracing::warn!(rule = %key, error = %e, "fitting anomaly baselines failed");
            s.last_error = Some(e);
        }
    }
}
