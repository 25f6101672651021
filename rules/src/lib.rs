//! Strata's rule evaluation: Prometheus recording and alerting rules.
//!
//! **Where data enters and leaves.** Rule files in Prometheus's format enter through
//! [`file::RuleFile::parse`]. A [`group::Group`] evaluates its rules in order at each of its
//! evaluation slots: each rule's PromQL expression is asked of a [`Querier`] (the server
//! answers it with its PromQL engine) and what the rule produces (recorded series, `ALERTS`
//! and `ALERTS_FOR_STATE`, staleness markers for series a rule stopped producing) leaves
//! through an [`Appender`] (the server's write path) before the next rule runs, so later
//! rules of a group see earlier rules' results of the same cycle. Alert states leave as
//! [`alerting::Alert`] snapshots for `/api/v1/alerts`, `/api/v1/rules` and delivery.
//!
//! Anomaly rules ([`anomaly_rule`]) score each series of their expression against a
//! seasonal baseline ([`anomaly`]) fitted from a range query of it and kept in a
//! [`BaselineStore`]; their anomalies feed an alerting rule.
//!
//! **Semantics.** Prometheus's rule manager (`rules/group.go`, `rules/alerting.go`,
//! `rules/recording.go`, `rules/manager.go`), followed function by function; each module
//! says where it differs.

pub mod alerting;
pub mod anomaly;
pub mod anomaly_eval;
pub mod anomaly_rule;
pub mod file;
pub mod group;
pub mod recording;
pub mod template;

/// A label set as the query engine returns it: `(name, value)` pairs, `__name__`
/// included where there is one.
pub type Labels = Vec<(String, String)>;

/// One sample of an instant vector: labels and value.
pub type Sample = (Labels, f64);

/// Answers a rule's PromQL expression at an instant.
#[async_trait::async_trait]
pub trait Querier: Send + Sync {
    /// The instant vector `expr` gives at `t_ms` (ms since the epoch, UTC); a scalar result
    /// is one sample without labels.
    ///
    /// # Errors
    /// The query's error message.
    async fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<Sample>, String>;

    /// Each series `expr` gives at the steps `start_ms, start_ms + step_ms, ..., end_ms`
    /// (ms since the epoch, UTC): labels and `(ms, value)` points in time order. Anomaly
    /// rules fit their baselines from it.
    ///
    /// # Errors
    /// The query's error message; this default says range queries are not supported.
    async fn query_range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(Labels, Vec<(i64, f64)>)>, String> {
        let _ = (expr, start_ms, end_ms, step_ms);
        Err("range queries are not supported here".into())
    }
}

/// Keeps anomaly rules' baselines across restarts (the server's `anomaly_baselines` Delta
/// table).
#[async_trait::async_trait]
pub trait BaselineStore: Send + Sync {
    /// The baselines saved under the rule key `rule` (series labels without `__name__`);
    /// none when nothing was saved.
    ///
    /// # Errors
    /// The storage's error message.
    async fn load(&self, rule: &str) -> Result<Vec<(Labels, anomaly::Baseline)>, String>;

    /// Replaces the baselines saved under `rule` with `baselines`, durably, in one commit.
    ///
    /// # Errors
    /// The storage's error message; what was saved before stays.
    async fn save(
        &self,
        rule: &str,
        baselines: &[(Labels, anomaly::Baseline)],
    ) -> Result<(), String>;
}

/// Takes what rules produce.
#[async_trait::async_trait]
pub trait Appender: Send + Sync {
    /// Stores `samples` (labels with `__name__`, time in ms, value; staleness markers are
    /// Prometheus's stale NaN) durably, before returning.
    ///
    /// # Errors
    /// The write path's error message.
    async fn append(&self, samples: Vec<(Labels, i64, f64)>) -> Result<(), String>;
}

/// Delivers alerts (the server's notifier: Alertmanager, webhooks).
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Queues `alerts` of the rule whose expression is `expr` for delivery; returns at
    /// once.
    async fn notify(&self, expr: &str, alerts: Vec<alerting::Alert>);
}

/// What a group's evaluation talks to.
pub struct Env {
    /// Answers the rules' queries.
    pub querier: std::sync::Arc<dyn Querier>,
    /// Stores their output.
    pub appender: std::sync::Arc<dyn Appender>,
    /// Delivers alerts, if any destination is configured.
    pub notifier: Option<std::sync::Arc<dyn Notifier>>,
    /// Keeps anomaly rules' baselines, if anywhere (without, each start refits them).
    pub baselines: Option<std::sync::Arc<dyn BaselineStore>>,
    /// `$externalLabels` of templates.
    pub external_labels: Labels,
    /// `$externalURL` of templates.
    pub external_url: String,
    /// How often a firing alert is sent again (Prometheus's default: 1 minute).
    pub resend_delay: std::time::Duration,
    /// Where evaluations are counted, if anywhere.
    pub metrics: Option<RuleMetrics>,
    /// Evaluation slots shared by every group: a group holds one while it evaluates
    /// (`None`: no limit).
    pub slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl Env {
    /// An environment of `querier` and `appender` alone: no notifier, baseline store,
    /// external labels or URL, metrics or slot limit, and Prometheus's 1-minute resend
    /// delay (tests, `strata bench-anomaly`).
    pub fn bare(
        querier: std::sync::Arc<dyn Querier>,
        appender: std::sync::Arc<dyn Appender>,
    ) -> Env {
        Env {
            querier,
            appender,
            notifier: None,
            baselines: None,
            external_labels: vec![],
            external_url: String::new(),
            resend_delay: std::time::Duration::from_secs(60),
            metrics: None,
            slots: None,
        }
    }
}

/// The rule engine's self-metrics, Prometheus's rule manager's under Strata's prefix; the
/// `rule_group` label is `<file>;<group>` as Prometheus's.
#[derive(Clone)]
pub struct RuleMetrics {
    /// `strata_rule_evaluations_total`.
    pub evaluations: prometheus::IntCounterVec,
    /// `strata_rule_evaluation_failures_total`.
    pub failures: prometheus::IntCounterVec,
    /// `strata_rule_group_last_duration_seconds`.
    pub last_duration: prometheus::GaugeVec,
    /// `strata_rule_group_iterations_missed_total`.
    pub missed: prometheus::IntCounterVec,
    /// `strata_rule_group_rules`.
    pub rules: prometheus::IntGaugeVec,
}

impl RuleMetrics {
    /// Registers the metrics in `registry`.
    ///
    /// # Errors
    /// The registry's error message (a metric registered twice).
    pub fn register(registry: &prometheus::Registry) -> Result<RuleMetrics, String> {
        let opts = |n: &str, h: &str| prometheus::Opts::new(n, h);
        let e = |e: prometheus::Error| e.to_string();
        let m = RuleMetrics {
            evaluations: prometheus::IntCounterVec::new(
                opts(
                    "strata_rule_evaluations_total",
                    "Rule evaluations, per group.",
                ),
                &["rule_group"],
            )
            .map_err(e)?,
            failures: prometheus::IntCounterVec::new(
                opts(
                    "strata_rule_evaluation_failures_total",
                    "Rule evaluations that failed, per group.",
                ),
                &["rule_group"],
            )
            .map_err(e)?,
            last_duration: prometheus::GaugeVec::new(
                opts(
                    "strata_rule_group_last_duration_seconds",
                    "How long the group's last evaluation took, s.",
                ),
                &["rule_group"],
            )
            .map_err(e)?,
            missed: prometheus::IntCounterVec::new(
                opts(
                    "strata_rule_group_iterations_missed_total",
                    "Evaluation slots skipped because an evaluation overran them.",
                ),
                &["rule_group"],
            )
            .map_err(e)?,
            rules: prometheus::IntGaugeVec::new(
                opts("strata_rule_group_rules", "Rules in the group."),
                &["rule_group"],
            )
            .map_err(e)?,
        };
        registry
            .register(Box::new(m.evaluations.clone()))
            .map_err(e)?;
        registry.register(Box::new(m.failures.clone())).map_err(e)?;
        registry
            .register(Box::new(m.last_duration.clone()))
            .map_err(e)?;
        registry.register(Box::new(m.missed.clone())).map_err(e)?;
        registry.register(Box::new(m.rules.clone())).map_err(e)?;
        Ok(m)
    }
}

/// The crate's error type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    /// A rule file does not parse or breaks a rule of the format; the message names the
    /// file, group and rule.
    #[error("{0}")]
    Invalid(String),
    /// A rule's evaluation failed (query error, duplicate label sets, limit exceeded); the
    /// message is what `/api/v1/rules` shows as the rule's `lastError`.
    #[error("{0}")]
    Eval(String),
}
