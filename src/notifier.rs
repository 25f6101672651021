//! Alert delivery: what rules' alerts need sending goes to every configured Alertmanager's
//! v2 API (`POST /api/v2/alerts`) and to plain webhooks, as Prometheus's notifier
//! (`notifier/notifier.go`) sends them.
//!
//! - **What is sent.** The rule engine picks the alerts (`strata_rules`: firing alerts
//!   every `resend_delay`, resolved ones once more; Prometheus's `sendAlerts`). Each goes
//!   out with `startsAt` (when it fired), `endsAt` (when it was resolved, else its
//!   validity: four times the larger of `resend_delay` and the group interval),
//!   `generatorURL` (`<external_url>/graph?g0.expr=...&g0.tab=1`), its labels with the
//!   external labels added (the alert's own win), then `alert_relabel_configs` applied
//!   (an alert they drop is not sent).
//! - **How.** Alerts queue (at most 10,000, Prometheus's default queue capacity; the
//!   oldest are dropped past it and counted) and leave in batches of at most 256
//!   (Prometheus's `maxBatchSize`) to every Alertmanager and webhook at once. A failed
//!   POST is retried with exponential backoff (0.5 s doubling, 3 attempts in all) and then
//!   given up: the rule engine sends firing alerts again every `resend_delay` anyway.
//! - **Webhooks** receive the same JSON array as Alertmanager's v2 API.
//!
//! `/metrics`: `strata_notifications_sent_total`, `strata_notifications_errors_total`,
//! `strata_notifications_dropped_total` (per target where it applies).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_ingest::policy::relabel::RelabelConfig;
use strata_rules::Labels;
use strata_rules::alerting::Alert;

use crate::rules_api::rfc3339;

/// `[alerting]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    /// How often a firing alert is sent again (Prometheus's `--rules.alert.resend-delay`,
    /// default 1 minute).
    #[serde(with = "humantime_serde")]
    pub resend_delay: Duration,
    /// Alertmanagers (`[[alerting.alertmanagers]]`, Prometheus's `alertmanager_config`
    /// keys: `static_configs`, `scheme`, `path_prefix`, `timeout`).
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// Plain webhooks (`[[alerting.webhooks]]` with `url`): the same JSON as Alertmanager's
    /// v2 API.
    pub webhooks: Vec<WebhookConfig>,
    /// Relabeling of every alert before it is sent (Prometheus's `alert_relabel_configs`).
    pub alert_relabel_configs: Vec<RelabelConfig>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            resend_delay: Duration::from_secs(60),
            alertmanagers: vec![],
            webhooks: vec![],
            alert_relabel_configs: vec![],
        }
    }
}

/// One `[[alerting.alertmanagers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// `[{ targets = ["host:9093"] }]`.
    pub static_configs: Vec<StaticTargets>,
    /// `http` (default) or `https`.
    pub scheme: String,
    /// The path before `/api/v2/alerts` (default none).
    pub path_prefix: String,
    /// Per request (default 10 s, as Prometheus's).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            static_configs: vec![],
            scheme: "http".into(),
            path_prefix: String::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A list of `host:port` targets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTargets {
    /// The targets.
    pub targets: Vec<String>,
}

/// One `[[alerting.webhooks]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where alerts are POSTed.
    pub url: String,
}

/// An alert as Alertmanager's v2 API takes it (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// Labels, external labels included.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// When it fired (RFC 3339).
    pub starts_at: String,
    /// When it was resolved, or until when it is valid (RFC 3339).
    pub ends_at: String,
    /// A link to the rule's expression.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Largest batch one POST carries (Prometheus's `maxBatchSize`).
const MAX_BATCH: usize = 256;
/// Most alerts queued (Prometheus's default `--alertmanager.notification-queue-capacity`).
const QUEUE_CAPACITY: usize = 10_000;
/// Attempts per POST.
const ATTEMPTS: u32 = 3;

/// Sends alerts; cheap to share.
pub struct Notifier {
    targets: Vec<(String, Duration)>,
    external_labels: Labels,
    external_url: String,
    relabel: Vec<RelabelConfig>,
    queue: parking_lot::Mutex<VecDeque<PostableAlert>>,
    wake: tokio::sync::Notify,
    client: reqwest::Client,
    metrics: Metrics,
}

struct Metrics {
    sent: prometheus::IntCounterVec,
    errors: prometheus::IntCounterVec,
    dropped: prometheus::IntCounter,
}

impl Notifier {
    /// A notifier for `cfg`, registering its metrics in `registry`; `None` when no
    /// Alertmanager or webhook is configured.
    ///
    /// # Errors
    /// A message for a metric that cannot be registered.
    pub fn new(
        cfg: &AlertingConfig,
        external_labels: Labels,
        external_url: String,
        registry: &prometheus::Registry,
    ) -> Result<Option<Arc<Notifier>>, String> {
        let mut targets = vec![];
        for am in &cfg.alertmanagers {
            for s in &am.static_configs {
                for t in &s.targets {
                    let prefix = am.path_prefix.trim_end_matches('/');
                    targets.push((
                        format!("{}://{t}{prefix}/api/v2/alerts", am.scheme),
                        am.timeout,
                    ));
                }
            }
        }
        targets.extend(
            cfg.webhooks
                .iter()
                .map(|w| (w.url.clone(), Duration::from_secs(10))),
        );
        if targets.is_empty() {
            return Ok(None);
        }
        let counter = |name: &str, help: &str| -> Result<prometheus::IntCounterVec, String> {
            let c = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &["target"])
                .map_err(|e| e.to_string())?;
            registry
                .register(Box::new(c.clone()))
                .map_err(|e| e.to_string())?;
            Ok(c)
        };
        let dropped = prometheus::IntCounter::new(
            "strata_notifications_dropped_total",
            "Alerts dropped because the notification queue was full.",
        )
        .map_err(|e| e.to_string())?;
        registry
            .register(Box::new(dropped.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(Notifier {
            metrics: Metrics {
                sent: counter(
                    "strata_notifications_sent_total",
                    "Alerts sent, per Alertmanager or webhook.",
                )?,
                errors: counter(
                    "strata_notifications_errors_total",
                    "Batches that failed after every retry, per Alertmanager or webhook.",
                )?,
                dropped,
            },
            targets,
            external_labels,
            external_url,
            relabel: cfg.alert_relabel_configs.clone(),
            queue: parking_lot::Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            client: reqwest::Client::new(),
        })))
    }

    /// What an alert of the rule `expr` looks like to Alertmanager; `None` when relabeling
    /// drops it.
    pub fn postable(&self, expr: &str, a: &Alert) -> Option<PostableAlert> {
        let mut labels: std::collections::BTreeMap<String, String> =
            self.external_labels.iter().cloned().collect();
        labels.extend(a.labels.iter().cloned());
        if !strata_ingest::policy::relabel::process(&mut labels, &self.relabel) {
            return None;
        }
        let ends = a.resolved_at_ms.or(a.valid_until_ms).unwrap_or(0);
        let expr_q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        Some(PostableAlert {
            labels,
            annotations: a.annotations.iter().cloned().collect(),
            starts_at: rfc3339(a.fired_at_ms.unwrap_or(a.active_at_ms)),
            ends_at: rfc3339(ends),
            generator_url: format!(
                "{}/graph?g0.expr={expr_q}&g0.tab=1",
                self.external_url.trim_end_matches('/')
            ),
        })
    }

    /// Sends the queue in batches until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let batch: Vec<PostableAlert> = {
                let mut q = self.queue.lock();
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = stop.wait_for(|v| *v) => return,
                    _ = self.wake.notified() => continue,
                }
            }
            let body = serde_json::to_vec(&batch).unwrap_or_default();
            let this: &Notifier = &self;
            let sends = this.targets.iter().map(|(url, timeout)| {
                let body = body.clone();
                let n = batch.len() as u64;
                async move {
                    let mut delay = Duration::from_millis(500);
                    for attempt in 1..=ATTEMPTS {
                        let r = this
                            .client
                            .post(url)
                            .timeout(*timeout)
                            .header("Content-Type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => {
                                this.metrics.sent.with_label_values(&[url]).inc_by(n);
                                return;
                            }
                            Ok(r) => tracing::warn!(%url, status = %r.status(), attempt, "sending alerts failed"),
                            Err(e) => tracing::warn!(%url, error = %e, attempt, "sending alerts failed"),
                        }
                        if attempt < ATTEMPTS {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                    this.metrics.errors.with_label_values(&[url]).inc();
                }
            });
            futures::future::join_all(sends).await;
        }
    }
}

#[async_trait::async_trait]
impl strata_rules::Notifier for Notifier {
    async fn notify(&self, expr: &str, alerts: Vec<Alert>) {
        let mut out: Vec<PostableAlert> = alerts
            .iter()
            .filter_map(|a| self.postable(expr, a))
            .collect();
        if out.is_empty() {
            return;
        }
        {
            let mut q = self.queue.lock();
            let over = (q.len() + out.len()).saturating_sub(QUEUE_CAPACITY);
            if over > 0 {
                let from_queue = over.min(q.len());
                q.drain(..from_queue);
                let from_new = over - from_queue;
                out.drain(..from_new.min(out.len()));
                self.metrics.dropped.inc_by(over as u64);
            }
            q.extend(out);
        }
        self.wake.notify_one();
    }
}
