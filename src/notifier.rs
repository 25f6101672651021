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
    /// keys: `static_configs`, `file_sd_configs`, `scheme`, `path_prefix`, `timeout`,
    /// `basic_auth`, `authorization`).
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
    /// `[{ files = ["am/*.json"] }]`: Prometheus's file service discovery. Each file (a
    /// glob pattern) holds a JSON or YAML list of `{targets: [...], labels: {...}}`
    /// groups; the labels are not used. Files are read again when they change, checked
    /// before each send, so a change takes effect with the next batch.
    pub file_sd_configs: Vec<FileSdConfig>,
    /// HTTP basic authentication on every request to these Alertmanagers.
    pub basic_auth: Option<BasicAuth>,
    /// An `Authorization` header on every request (`type` default `Bearer`).
    pub authorization: Option<Authorization>,
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
            file_sd_configs: vec![],
            basic_auth: None,
            authorization: None,
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

/// A `file_sd_configs` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files or glob patterns (`*`, `?`, `[...]` in the last path element, as Prometheus
    /// takes them).
    pub files: Vec<String>,
    /// Accepted as Prometheus has it; the files are read again whenever they change.
    #[serde(default, with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
}

/// Prometheus's `basic_auth`: `username` and `password` or `password_file` (read at
/// each send, so that a rotated password is picked up).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (a trailing newline is dropped).
    #[serde(default)]
    pub password_file: Option<String>,
}

/// Prometheus's `authorization`: `type` (default `Bearer`) and `credentials` or
/// `credentials_file` (read at each send).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme (`Bearer` when absent).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The credentials.
    #[serde(default)]
    pub credentials: Option<String>,
    /// A file holding the credentials (a trailing newline is dropped).
    #[serde(default)]
    pub credentials_file: Option<String>,
}

/// A secret given inline or in a file; the file is read now.
fn secret(inline: &Option<String>, file: &Option<String>, what: &str) -> Result<String, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("at most one of {what} and {what}_file")),
        (Some(s), None) => Ok(s.clone()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| format!("reading {what}_file {f}: {e}")),
        (None, None) => Ok(String::new()),
    }
}

impl AlertmanagerConfig {
    /// Checks the entry (the auth settings' files are read at each send).
    ///
    /// # Errors
    /// A message naming the problem: both `basic_auth` and `authorization`, a secret
    /// given both inline and by file, a `file_sd_configs` pattern that is not a glob.
    pub fn check(&self) -> Result<(), String> {
        if self.basic_auth.is_some() && self.authorization.is_some() {
            return Err("at most one of basic_auth and authorization".into());
        }
        if let Some(b) = &self.basic_auth
            && b.password.is_some()
            && b.password_file.is_some()
        {
            return Err("basic_auth: at most one of password and password_file".into());
        }
        if let Some(a) = &self.authorization
            && a.credentials.is_some()
            && a.credentials_file.is_some()
        {
            return Err("authorization: at most one of credentials and credentials_file".into());
        }
        for f in self.file_sd_configs.iter().flat_map(|c| &c.files) {
            glob::Pattern::new(f).map_err(|e| format!("file_sd_configs: {f:?}: {e}"))?;
        }
        Ok(())
    }

    /// The `Authorization` header value for a request, if any.
    fn auth_header(&self) -> Result<Option<String>, String> {
        use base64::Engine;
        if let Some(b) = &self.basic_auth {
            let password = secret(&b.password, &b.password_file, "password")?;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", b.username));
            return Ok(Some(format!("Basic {token}")));
        }
        if let Some(a) = &self.authorization {
            let credentials = secret(&a.credentials, &a.credentials_file, "credentials")?;
            return Ok(Some(format!(
                "{} {credentials}",
                a.kind.as_deref().unwrap_or("Bearer")
            )));
        }
        Ok(None)
    }
}

/// One target group of a file_sd file.
#[derive(Debug, Deserialize)]
struct TargetGroup {
    targets: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: std::collections::BTreeMap<String, String>,
}

/// A file_sd file's targets: JSON when it ends in `.json`, else YAML (as Prometheus reads
/// `.json`, `.yml` and `.yaml`).
fn read_targets(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let groups: Vec<TargetGroup> = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    Ok(groups.into_iter().flat_map(|g| g.targets).collect())
}

/// The targets of one `file_sd_configs` pattern set, read again when a file changes.
#[derive(Default)]
struct FileTargets {
    /// Per file: its modification time when read, and its targets.
    read: std::collections::BTreeMap<std::path::PathBuf, (std::time::SystemTime, Vec<String>)>,
}

impl FileTargets {
    /// Every target of the files `patterns` match now; files whose modification time
    /// moved are read again. A file that fails to read keeps its last targets (and the
    /// failure is logged), as Prometheus keeps a target group whose file broke.
    fn targets(&mut self, patterns: &[String]) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        for pattern in patterns {
            for path in glob::glob(pattern).into_iter().flatten().flatten() {
                let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
                    continue;
                };
                seen.insert(path.clone());
                if self.read.get(&path).is_some_and(|(t, _)| *t == modified) {
                    continue;
                }
                match read_targets(&path) {
                    Ok(t) => {
                        self.read.insert(path, (modified, t));
                    }
                    Err(e) => tracing::warn!(error = %e, "reading Alertmanager targets"),
                }
            }
        }
        self.read.retain(|p, _| seen.contains(p));
        self.read.values().flat_map(|(_, t)| t.clone()).collect()
    }
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
    /// The Alertmanager entries, each with its file_sd state.
    alertmanagers: Vec<(AlertmanagerConfig, parking_lot::Mutex<FileTargets>)>,
    /// Webhook URLs.
    webhooks: Vec<String>,
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
        for am in &cfg.alertmanagers {
            am.check()?;
        }
        if cfg.alertmanagers.is_empty() && cfg.webhooks.is_empty() {
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
            alertmanagers: cfg
                .alertmanagers
                .iter()
                .map(|a| (a.clone(), parking_lot::Mutex::new(FileTargets::default())))
                .collect(),
            webhooks: cfg.webhooks.iter().map(|w| w.url.clone()).collect(),
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

    /// Where a batch goes now: `(URL, timeout, Authorization header)` per Alertmanager
    /// (static and file-discovered targets) and webhook.
    fn targets(&self) -> Vec<(String, Duration, Option<String>)> {
        let mut out = vec![];
        for (am, files) in &self.alertmanagers {
            let auth = match am.auth_header() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "Alertmanager credentials");
                    continue;
                }
            };
            let patterns: Vec<String> = am
                .file_sd_configs
                .iter()
                .flat_map(|c| c.files.iter().cloned())
                .collect();
            let discovered = if patterns.is_empty() {
                vec![]
            } else {
                files.lock().targets(&patterns)
            };
            let prefix = am.path_prefix.trim_end_matches('/');
            for t in am
                .static_configs
                .iter()
                .flat_map(|s| s.targets.iter().cloned())
                .chain(discovered)
            {
                out.push((
                    format!("{}://{t}{prefix}/api/v2/alerts", am.scheme),
                    am.timeout,
                    auth.clone(),
                ));
            }
        }
        out.extend(
            self.webhooks
                .iter()
                .map(|u| (u.clone(), Duration::from_secs(10), None)),
        );
        out
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
            let targets = this.targets();
            let sends = targets.iter().map(|(url, timeout, auth)| {
                let body = body.clone();
                let n = batch.len() as u64;
                async move {
                    let mut delay = Duration::from_millis(500);
                    for attempt in 1..=ATTEMPTS {
                        let mut req = this
                            .client
                            .post(url)
                            .timeout(*timeout)
                            .header("Content-Type", "application/json");
                        if let Some(a) = auth {
                            req = req.header("Authorization", a);
                        }
                        let r = req.body(body.clone()).send().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn am(toml_text: &str) -> AlertmanagerConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn auth_headers_follow_prometheus_settings() {
        let dir = tempfile::tempdir().unwrap();
        let basic = am("basic_auth = { username = \"admin\", password = \"test\" }");
        // base64("admin:test")
        assert_eq!(
            basic.auth_header().unwrap().as_deref(),
            Some("Basic YWRtaW46dGVzdA==")
        );
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let bearer = am(&format!(
            "authorization = {{ credentials_file = {:?} }}",
            file.display().to_string()
        ));
        assert_eq!(
            bearer.auth_header().unwrap().as_deref(),
            Some("Bearer s3cret")
        );
        // Read at each send: a rotated token is picked up.
        std::fs::write(&file, "rotated").unwrap();
        assert_eq!(
            bearer.auth_header().unwrap().as_deref(),
            Some("Bearer rotated")
        );
        assert_eq!(am("").auth_header().unwrap(), None);
        let both = am(
            "basic_auth = { username = \"a\", password = \"b\" }\nauthorization = { credentials = \"c\" }",
        );
        assert!(both.check().unwrap_err().contains("at most one"));
        let twice =
            am("basic_auth = { username = \"a\", password = \"b\", password_file = \"f\" }");
        assert!(twice.check().unwrap_err().contains("password_file"));
        assert!(
            am("file_sd_configs = [{ files = [\"[\"] }]")
                .check()
                .is_err()
        );
    }

    #[test]
    fn a_batch_goes_to_static_and_discovered_alertmanagers_and_webhooks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("am.yml"), "- targets: [sd:9093]\n").unwrap();
        let cfg: AlertingConfig = toml::from_str(&format!(
            "[[alertmanagers]]\nstatic_configs = [{{ targets = [\"st:9093\"] }}]\nfile_sd_configs = [{{ files = [{:?}], refresh_interval = \"1m\" }}]\npath_prefix = \"/am/\"\nauthorization = {{ type = \"Token\", credentials = \"t\" }}\n[[webhooks]]\nurl = \"http://hook/x\"\n",
            dir.path().join("*.yml").display().to_string()
        ))
        .unwrap();
        let n = Notifier::new(&cfg, vec![], String::new(), &prometheus::Registry::new())
            .unwrap()
            .unwrap();
        let auth = Some("Token t".to_string());
        assert_eq!(
            n.targets(),
            vec![
                (
                    "http://st:9093/am/api/v2/alerts".to_string(),
                    Duration::from_secs(10),
                    auth.clone()
                ),
                (
                    "http://sd:9093/am/api/v2/alerts".to_string(),
                    Duration::from_secs(10),
                    auth
                ),
                ("http://hook/x".to_string(), Duration::from_secs(10), None),
            ]
        );
    }

    #[test]
    fn file_sd_targets_are_read_from_json_and_yaml_and_again_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        let yaml = dir.path().join("b.yml");
        std::fs::write(
            &json,
            r#"[{"targets": ["h1:9093", "h2:9093"], "labels": {"x": "y"}}]"#,
        )
        .unwrap();
        std::fs::write(&yaml, "- targets: [h3:9093]\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "not a target file").unwrap();
        let mut t = FileTargets::default();
        let patterns = vec![
            dir.path().join("*.json").display().to_string(),
            dir.path().join("*.yml").display().to_string(),
        ];
        assert_eq!(t.targets(&patterns), ["h1:9093", "h2:9093", "h3:9093"]);
        // A changed file is read again (a later modification time), a removed one drops
        // its targets, a broken one keeps its last targets.
        std::fs::write(&json, r#"[{"targets": ["h4:9093"]}]"#).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&json)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(t.targets(&patterns), ["h4:9093", "h3:9093"]);
        std::fs::write(&yaml, "targets: [").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&yaml)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(t.targets(&patterns), ["h4:9093", "h3:9093"]);
        std::fs::remove_file(&json).unwrap();
        assert_eq!(t.targets(&patterns), ["h3:9093"]);
    }
}
