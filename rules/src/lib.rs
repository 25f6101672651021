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
//! **Semantics.** Prometheus's rule manager (`rules/group.go`, `rules/alerting.go`,
//! `rules/recording.go`, `rules/manager.go`), followed function by function; each module
//! says where it differs.

pub mod alerting;
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
    /// `$externalLabels` of templates.
    pub external_labels: Labels,
    /// `$externalURL` of templates.
    pub external_url: String,
    /// How often a firing alert is sent again (Prometheus's default: 1 minute).
    pub resend_delay: std::time::Duration,
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
