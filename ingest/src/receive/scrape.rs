//! Prometheus-style scraping: `scrape_configs` with static targets, as in Prometheus's
//! configuration (`scrape/scrape.go` is the reference behaviour).
//!
//! Each target runs its own loop. Its first scrape is delayed by a per-target offset (a hash
//! of job and URL, modulo the interval) so targets spread over the interval, as Prometheus
//! does. Every scrape writes the target's samples (target labels `job`, `instance` and
//! static labels added; clashing exposed labels renamed `exported_<name>` unless
//! `honor_labels`), the report series `up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling` and
//! `scrape_series_added`, and a staleness marker for every series of the previous scrape
//! that is gone (all of them when the scrape fails).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::ingester::Ingester;
use crate::model::{Labels, METRIC_NAME_LABEL, Sample, stale_nan};
use crate::receive::exposition::{self, Format};
use crate::receive::remote_write::Validated;

/// One `scrape_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label of every series scraped.
    pub job_name: String,
    /// Time between scrapes (default 1m).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// Timeout of one scrape (default 10s; capped at the interval).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub scrape_timeout: Duration,
    /// HTTP path (default `/metrics`).
    #[serde(default = "default_path")]
    pub metrics_path: String,
    /// `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Keep exposed labels that clash with target labels (default false: rename them
    /// `exported_<name>`).
    #[serde(default)]
    pub honor_labels: bool,
    /// Static targets.
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    /// Relabeling of each target before it is scraped ([`crate::policy::relabel`]): it starts with
    /// `__address__`, `__scheme__`, `__metrics_path__`, `__scrape_interval__`,
    /// `__scrape_timeout__`, `job` and the static labels; a dropped target is not scraped;
    /// afterwards `instance` defaults to `__address__` and labels starting with `__` are
    /// removed, as in Prometheus's `scrape/target.go` (`PopulateLabels`).
    #[serde(default)]
    pub relabel_configs: Vec<crate::policy::relabel::RelabelConfig>,
    /// Relabeling of each scraped series (target labels included) before it is written.
    #[serde(default)]
    pub metric_relabel_configs: Vec<crate::policy::relabel::RelabelConfig>,
}

/// A duration as Prometheus prints one (`model.Duration.String`: `1m30s`, `15s`, `500ms`).
fn prometheus_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

/// The scrape URL and labels of `address` in `cfg` with the static labels `static_labels`,
/// after `relabel_configs`; `None` when relabeling drops it or leaves no address.
fn target_of(
    cfg: &ScrapeConfig,
    address: &str,
    static_labels: &BTreeMap<String, String>,
) -> Option<(String, BTreeMap<String, String>)> {
    let mut l = static_labels.clone();
    l.insert("job".into(), cfg.job_name.clone());
    l.insert("__address__".into(), address.to_string());
    l.insert("__scheme__".into(), cfg.scheme.clone());
    l.insert("__metrics_path__".into(), cfg.metrics_path.clone());
    l.insert(
        "__scrape_interval__".into(),
        prometheus_duration(cfg.scrape_interval),
    );
    l.insert(
        "__scrape_timeout__".into(),
        prometheus_duration(cfg.scrape_timeout),
    );
    if !crate::policy::relabel::process(&mut l, &cfg.relabel_configs) {
        tracing::info!(job = %cfg.job_name, target = %address, "target dropped by relabel_configs");
        return None;
    }
    let Some(addr) = l.get("__address__").filter(|a| !a.is_empty()).cloned() else {
        tracing::warn!(job = %cfg.job_name, target = %address, "relabel_configs left no __address__: not scraped");
        return None;
    };
    let get = |n: &str| l.get(n).cloned().unwrap_or_default();
    let url = format!("{}://{addr}{}", get("__scheme__"), get("__metrics_path__"));
    l.entry("instance".into()).or_insert(addr);
    l.retain(|n, _| !n.starts_with("__"));
    Some((url, l))
}

/// A group of targets with common labels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels added to every series of these targets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}

/// The `Accept` header Prometheus sends: OpenMetrics preferred, then the text format.
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// Starts one scrape loop per target; they run until `shutdown` fires.
pub fn spawn(
    configs: &[ScrapeConfig],
    ingester: Arc<Ingester>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("Strata/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client");
    let mut handles = vec![];
    for cfg in configs {
        for sc in &cfg.static_configs {
            for t in &sc.targets {
                let Some((url, labels)) = target_of(cfg, t, &sc.labels) else {
                    continue;
                };
                let target = Target {
                    cfg: cfg.clone(),
                    url,
                    labels,
                };
                handles.push(tokio::spawn(run_target(
                    target,
                    client.clone(),
                    ingester.clone(),
                    shutdown.clone(),
                )));
            }
        }
    }
    handles
}

struct Target {
    cfg: ScrapeConfig,
    url: String,
    labels: BTreeMap<String, String>,
}

async fn run_target(
    t: Target,
    client: reqwest::Client,
    ingester: Arc<Ingester>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let interval = t.cfg.scrape_interval.max(Duration::from_millis(100));
    let offset_ms = xxhash_rust::xxh64::xxh64(format!("{}{}", t.cfg.job_name, t.url).as_bytes(), 0)
        % interval.as_millis() as u64;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(offset_ms)) => {}
        _ = shutdown.changed() => return,
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: HashMap<u64, Vec<(String, String)>> = HashMap::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let started = Instant::now();
        let result = scrape_once(&client, &t, interval).await;
        let duration = started.elapsed().as_secs_f64();
        // The families' `# TYPE` and `# HELP`, for `/api/v1/metadata` (as Prometheus
        // serves its targets' metadata).
        let result = match result {
            Ok((samples, metadata)) => {
                if let Err(e) = ingester.metadata().record(metadata).await {
                    tracing::warn!(url = %t.url, error = %e, "recording scraped metadata failed");
                }
                Ok(samples)
            }
            Err(e) => Err(e),
        };
        let mut current: HashMap<u64, Vec<(String, String)>> = HashMap::new();
        let mut v = Validated::default();
        let limits = ingester.limits().clone();
        let (up, scraped, kept) = match &result {
            Ok(samples) => {
                let mut kept = 0usize;
                for (pairs, s) in samples {
                    let relabeled;
                    let pairs = if t.cfg.metric_relabel_configs.is_empty() {
                        pairs
                    } else {
                        let mut m: BTreeMap<String, String> = pairs.iter().cloned().collect();
                        if !crate::policy::relabel::process(&mut m, &t.cfg.metric_relabel_configs) {
                            continue;
                        }
                        relabeled = m.into_iter().collect::<Vec<_>>();
                        &relabeled
                    };
                    kept += 1;
                    let fp =
                        Labels::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())))
                            .fingerprint();
                    current.insert(fp, pairs.clone());
                    v.push(
                        pairs,
                        vec![Sample {
                            timestamp_ms: s.timestamp_ms.unwrap_or(now_ms),
                            value: s.value,
                        }],
                        &limits,
                        now_ms,
                    );
                }
                (1.0, samples.len(), kept)
            }
            Err(e) => {
                tracing::debug!(url = %t.url, error = %e, "scrape failed");
                (0.0, 0, 0)
            }
        };
        ingester
            .metrics()
            .scrapes
            .with_label_values(&[
                t.cfg.job_name.as_str(),
                if up == 1.0 { "success" } else { "failure" },
            ])
            .inc();
        let added = current.keys().filter(|k| !previous.contains_key(k)).count();
        // Staleness markers for series that disappeared (all of them if the scrape failed).
        for (fp, pairs) in &previous {
            if !current.contains_key(fp) {
                v.push(
                    pairs,
                    vec![Sample {
                        timestamp_ms: now_ms,
                        value: stale_nan(),
                    }],
                    &limits,
                    now_ms,
                );
            }
        }
        for (name, value) in [
            ("up", up),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", scraped as f64),
            ("scrape_samples_post_metric_relabeling", kept as f64),
            ("scrape_series_added", added as f64),
        ] {
            let mut pairs: Vec<(String, String)> = t
                .labels
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect();
            pairs.push((METRIC_NAME_LABEL.into(), name.into()));
            v.push(
                &pairs,
                vec![Sample {
                    timestamp_ms: now_ms,
                    value,
                }],
                &limits,
                now_ms,
            );
        }
        if let Err(e) = ingester.write(v, "scrape", None).await {
            tracing::warn!(url = %t.url, error = %e, "writing scraped samples failed");
        }
        previous = current;
    }
}

/// A scrape's samples with their full label pairs (target labels applied), and its
/// families' metadata.
type Scraped = (
    Vec<(Vec<(String, String)>, exposition::ParsedSample)>,
    Vec<(String, crate::metadata::MetricMetadata)>,
);

/// Scrapes one target; returns each sample's full label pairs (target labels applied) and
/// the metadata of its families (`# TYPE`, `# HELP`).
async fn scrape_once(
    client: &reqwest::Client,
    t: &Target,
    interval: Duration,
) -> Result<Scraped, String> {
    let timeout = t.cfg.scrape_timeout.min(interval);
    let resp = client
        .get(&t.url)
        .header("Accept", ACCEPT)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        )
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let format = resp
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .map(Format::from_content_type)
        .unwrap_or(Format::PrometheusText);
    let body = resp.text().await.map_err(|e| e.to_string())?;
    let parsed = exposition::parse(&body, format).map_err(|e| e.to_string())?;
    let mut families: Vec<&String> = parsed.types.keys().chain(parsed.help.keys()).collect();
    families.sort_unstable();
    families.dedup();
    let metadata = families
        .into_iter()
        .map(|f| {
            (
                f.clone(),
                crate::metadata::MetricMetadata {
                    metric_type: parsed
                        .types
                        .get(f)
                        .copied()
                        .unwrap_or(exposition::MetricType::Unknown),
                    help: parsed.help.get(f).cloned().unwrap_or_default(),
                    unit: String::new(),
                },
            )
        })
        .collect();
    let samples = parsed
        .samples
        .into_iter()
        .map(|s| {
            let mut pairs: Vec<(String, String)> = Vec::with_capacity(s.labels.len() + 4);
            for (n, v) in &s.labels {
                if !t.cfg.honor_labels && t.labels.contains_key(n) {
                    pairs.push((format!("exported_{n}"), v.clone()));
                } else {
                    pairs.push((n.clone(), v.clone()));
                }
            }
            for (n, v) in &t.labels {
                if !(t.cfg.honor_labels && s.labels.iter().any(|(x, _)| x == n)) {
                    pairs.push((n.clone(), v.clone()));
                }
            }
            pairs.push((METRIC_NAME_LABEL.into(), s.name.clone()));
            (pairs, s)
        })
        .collect();
    Ok((samples, metadata))
}
