//! `strata serve` configuration: an optional TOML file, overridden by flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use strata_ingest::receive::otlp::OtlpConfig;
use strata_ingest::receive::scrape::ScrapeConfig;
use strata_ingest::{Limits, PersistConfig};

/// The whole configuration file. Every key is optional. Example:
///
/// ```toml
/// data_dir = "./data"            # or "s3://bucket/prefix" or "memory://"
/// wal_dir = "./data/wal"         # local disk; default <data_dir>/wal, or ./wal for remote data
/// http_addr = "127.0.0.1:9201"
/// flight_addr = "127.0.0.1:50051"
/// max_request_bytes = 33554432   # largest accepted request body, bytes (decoded size: 8x)
///
/// [limits]
/// max_labels_per_series = 30
/// max_label_value_length = 2048
///
/// [query]
/// file_cache_bytes = 1073741824  # the samples table's files kept in memory for PromQL
/// sample_cache_bytes = 268435456 # decoded samples of recently read series, for PromQL
///
/// [sql]                          # SQL over Arrow Flight SQL
/// allow_writes = false           # true lets clients run DDL, DML, COPY and SET (admin use)
/// memory_limit_bytes = 2147483648 # all SQL queries' operators together; 0 for no limit
/// timeout = "2m"                 # per query; "0s" for none
///
/// [persist]
/// interval = "5m"
/// max_head_samples = 20000000
/// compact_interval = "1h"
///
/// [otlp]                         # OpenTelemetry metrics (docs/ingest.md)
/// grpc_addr = "127.0.0.1:4317"   # "" for no gRPC receiver
/// translation_strategy = "UnderscoreEscapingWithSuffixes"
/// promote_resource_attributes = ["deployment.environment"]
/// delta_temporality = "cumulative"
///
/// [statsd]                       # StatsD and DogStatsD, UDP and TCP (docs/ingest.md)
/// addr = "127.0.0.1:8125"        # "" for none
/// flush_interval = "10s"
/// mapping_file = "statsd_mapping.yml"  # statsd_exporter's mapping format
///
/// [remote_write]                 # /api/v1/write, 1.0 and 2.0 (docs/ingest.md)
/// created_timestamp_zero_ingestion = false
///
/// [cardinality]                  # 0: no limit (docs/ingest.md)
/// max_series = 0                 # active series in all
/// max_series_per_metric = 0
/// max_label_values_per_metric = 0  # distinct values of one label within a metric
///
/// [[sampling.policies]]          # first match wins; unmatched series are kept in full
/// source_labels = ["__name__"]   # matched as a relabeling `keep` step
/// regex = "http_request_duration_.*"
/// policy = "probabilistic"       # full | probabilistic | rate_limit | adaptive
/// probability = 0.1              # rate_limit: max_samples_per_second; adaptive: min_probability
///
/// [[metric_relabel_configs]]     # every pushed series; Prometheus's relabel_config keys
/// source_labels = ["__name__"]
/// regex = "debug_.*"
/// action = "drop"
///
/// [[scrape_configs]]
/// job_name = "node"
/// scrape_interval = "15s"
/// scrape_timeout = "10s"
/// metrics_path = "/metrics"
/// [[scrape_configs.static_configs]]
/// targets = ["127.0.0.1:9100"]
/// labels = { env = "dev" }
/// [[scrape_configs.metric_relabel_configs]]
/// regex = "go_.*"
/// source_labels = ["__name__"]
/// action = "drop"
///
/// rule_files = ["rules/node.yml"] # Prometheus rule files (docs/alerting.md)
/// [rules]
/// evaluation_interval = "1m"
/// threads = 2                    # rule evaluation's own runtime, apart from queries
/// max_concurrent_evaluations = 64 # groups evaluated at once
/// memory_limit_bytes = 1073741824 # rules' queries together; 0 for no limit
/// query_timeout = "2m"
/// [alerting]                     # docs/alerting.md
/// resend_delay = "1m"
/// [[alerting.alertmanagers]]
/// static_configs = [{ targets = ["127.0.0.1:9093"] }]
///
/// [[tenants]]                    # none: one anonymous tenant (crate::tenants)
/// id = "team-a"                  # X-Scope-OrgID
/// tokens = ["secret-a"]          # Authorization: Bearer secret-a
/// ingestion_rate = { samples_per_second = 100000, burst = 200000 }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the Delta tables live.
    pub data_dir: String,
    /// Where the WAL lives (must be a local directory).
    pub wal_dir: Option<PathBuf>,
    /// Prometheus HTTP API, remote write, JSON push, `/metrics`.
    pub http_addr: SocketAddr,
    /// Arrow Flight SQL.
    pub flight_addr: SocketAddr,
    /// Largest request body accepted, bytes (compressed, as sent).
    pub max_request_bytes: usize,
    /// Validation limits.
    pub limits: Limits,
    /// Persistence schedule.
    pub persist: PersistConfig,
    /// Query settings.
    pub query: QueryConfig,
    /// SQL over Flight SQL: what clients may do, memory budget, timeout.
    pub sql: SqlConfig,
    /// The rollup tiers and their scheduling.
    pub rollup: RollupConfig,
    /// Scrape jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// The OTLP receivers.
    pub otlp: OtlpConfig,
    /// The StatsD receiver.
    pub statsd: StatsdConfig,
    /// Remote write (1.0 and 2.0 on `/api/v1/write`).
    pub remote_write: RemoteWriteConfig,
    /// Relabeling of every pushed series (remote write, JSON, InfluxDB, OTLP, StatsD), with
    /// Prometheus's `relabel_config` keys and actions (`[[metric_relabel_configs]]`; scrapes
    /// have their own in `[[scrape_configs]]`).
    pub metric_relabel_configs: Vec<strata_ingest::policy::relabel::RelabelConfig>,
    /// Active-series and label-value limits (`[cardinality]`).
    pub cardinality: strata_ingest::policy::cardinality::CardinalityConfig,
    /// Sampling policies per metric family (`[sampling]`, `[[sampling.policies]]`).
    pub sampling: strata_ingest::policy::sampling::SamplingConfig,
    /// The tenants (`[[tenants]]`, [`crate::tenants`]); none: one anonymous tenant, as
    /// before tenants existed.
    pub tenants: Vec<crate::tenants::TenantConfig>,
    /// Rule files in Prometheus's format (recording and alerting rules; `docs/alerting.md`).
    /// With tenants, each tenant has its own (`[[tenants]] rule_files`).
    pub rule_files: Vec<PathBuf>,
    /// How rules are evaluated (`[rules]`).
    pub rules: RulesConfig,
    /// Where alerts go (`[alerting]`: Alertmanagers, webhooks, alert relabeling).
    pub alerting: crate::notifier::AlertingConfig,
}

/// `[rules]`: what Prometheus's `global` section sets for rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// How often a group without its own `interval` is evaluated. Default 1 minute, as
    /// Prometheus's `evaluation_interval`.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: std::time::Duration,
    /// Labels templates see as `$externalLabels`.
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// The URL templates see as `$externalURL`.
    pub external_url: String,
    /// Worker threads of the tokio runtime rule evaluation runs on, apart from the one
    /// serving HTTP, Flight SQL and their queries, so that a dashboard's or SQL query's
    /// work never holds a rule's evaluation up. Default 2; at least 1.
    pub threads: usize,
    /// Groups evaluated at once (every tenant's together); others wait for a slot (the
    /// wait counts toward missed iterations, not evaluation time). Default 64: each
    /// rule's output is written to the WAL and synced before the next rule runs, and
    /// concurrent groups share those syncs (group commit). Prometheus does not limit
    /// groups at all (its `--rules.max-concurrent-evals` is about rules within a
    /// group).
    pub max_concurrent_evaluations: usize,
    /// Memory the rules' queries may hold together, bytes (a DataFusion `FairSpillPool` of
    /// their own, apart from the queries of the HTTP API and SQL); 0 for no limit.
    /// Default 1 GiB.
    pub memory_limit_bytes: usize,
    /// A rule's query (and an anomaly fit's range query) is cancelled after this long and
    /// the rule's evaluation fails. Default 2 minutes, as Prometheus's
    /// `--query.timeout`.
    #[serde(with = "humantime_serde")]
    pub query_timeout: std::time::Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            evaluation_interval: std::time::Duration::from_secs(60),
            external_labels: Default::default(),
            external_url: String::new(),
            threads: 2,
            max_concurrent_evaluations: 64,
            memory_limit_bytes: 1 << 30,
            query_timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// `[remote_write]`: how remote-written data is stored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Remote write 2.0's `created_timestamp`: when true, a series the head does not hold
    /// yet gets a zero sample at its created timestamp (ms) before its first sample, as
    /// Prometheus's `created-timestamp-zero-ingestion` feature flag does, so that `rate`
    /// and `increase` count a new counter's first increments. Default false, as in
    /// Prometheus.
    pub created_timestamp_zero_ingestion: bool,
}

/// `[statsd]`: where StatsD and DogStatsD lines are received, and how often what they
/// sent is aggregated and written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsdConfig {
    /// UDP and TCP address (`host:port`, the same port for both); empty for none. Default
    /// `127.0.0.1:8125`, StatsD's port: when it is taken (a StatsD daemon or agent on the
    /// same host), Strata logs a warning and serves without it; any other address must
    /// bind.
    pub addr: String,
    /// How long an interval's metrics are aggregated before they are written (default
    /// 10 s, the Datadog agent's flush interval; at least 10 ms).
    #[serde(with = "humantime_serde")]
    pub flush_interval: std::time::Duration,
    /// A `statsd_exporter` mapping file (YAML,
    /// [`strata_ingest::receive::statsd::MappingConfig`]): dotted names to names and
    /// labels. Without one, names are escaped.
    pub mapping_file: Option<PathBuf>,
    /// With `[[tenants]]`: the tenant StatsD writes for (StatsD has no way to name one).
    /// Without it, StatsD is not served when tenants are configured.
    pub tenant: Option<String>,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            addr: crate::statsd::DEFAULT_ADDR.to_string(),
            flush_interval: std::time::Duration::from_secs(10),
            mapping_file: None,
            tenant: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: "./data".into(),
            wal_dir: None,
            http_addr: "127.0.0.1:9201".parse().expect("static address"),
            flight_addr: "127.0.0.1:50051".parse().expect("static address"),
            max_request_bytes: 32 << 20,
            limits: Limits::default(),
            persist: PersistConfig::default(),
            query: QueryConfig::default(),
            sql: SqlConfig::default(),
            rollup: RollupConfig::default(),
            scrape_configs: vec![],
            otlp: OtlpConfig::default(),
            statsd: StatsdConfig::default(),
            remote_write: RemoteWriteConfig::default(),
            metric_relabel_configs: vec![],
            cardinality: Default::default(),
            sampling: Default::default(),
            tenants: vec![],
            rule_files: vec![],
            rules: RulesConfig::default(),
            alerting: Default::default(),
        }
    }
}

/// The `[query]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Bytes of the `samples` table's Parquet files PromQL keeps in memory, least recently
    /// used evicted first (`strata_engine::file_cache`); 0 keeps none. Default 1 GiB.
    pub file_cache_bytes: usize,
    /// Bytes of decoded samples (series runs of those files) PromQL keeps in memory, least
    /// recently used evicted first (`strata_engine::sample_cache`); 0 keeps none. Default
    /// 256 MiB.
    pub sample_cache_bytes: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let sizes = strata_engine::CacheSizes::default();
        QueryConfig {
            file_cache_bytes: sizes.file_bytes,
            sample_cache_bytes: sizes.sample_bytes,
        }
    }
}

impl QueryConfig {
    /// The engine's cache sizes this section sets.
    pub fn cache_sizes(&self) -> strata_engine::CacheSizes {
        strata_engine::CacheSizes {
            file_bytes: self.file_cache_bytes,
            sample_bytes: self.sample_cache_bytes,
        }
    }
}

/// The `[rollup]` section: the tiers built from raw samples (`docs/rollups.md`).
///
/// ```toml
/// [rollup]
/// allowed_lateness = "30s"
/// tiers = [{ name = "1m", resolution = "1m" }, { name = "1h", resolution = "1h" }]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RollupConfig {
    /// Build the tiers in the background. Default true.
    pub enabled: bool,
    /// The tiers, finest first, each a multiple of the one before and dividing a day.
    /// Default `1m`, `1h`, `1d`.
    pub tiers: Vec<strata_rollup::Tier>,
    /// How long after a first-tier bucket closes its late samples are still waited for
    /// before it is built. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: std::time::Duration,
    /// How often the tiers catch up. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub interval: std::time::Duration,
    /// Raw retention: whole UTC days of raw samples older than this are deleted from the
    /// `samples` table, but never a day the first tier has not built yet; PromQL reads the
    /// tiers there. Default 30 days; `0s` keeps raw samples forever.
    #[serde(with = "humantime_serde")]
    pub raw_retention: std::time::Duration,
    /// How often retention (the tiers' and raw) is enforced. Default 1h.
    #[serde(with = "humantime_serde")]
    pub retention_interval: std::time::Duration,
    /// A partition of a tier table is compacted (its small files merged into one, sorted
    /// by series) once builds have left this many files in it. Default 16.
    pub compact_files: usize,
    /// Threads the scheduler's builds run on (their own runtime, shared by the tenants).
    /// Default 1.
    pub threads: usize,
    /// How far below the server's OS priority those threads run (a nice value that much
    /// higher, 0 to 19; `crate::background`): under a saturating load the write path
    /// and queries get the CPU first, and the tiers lag (`strata_rollup_lag_seconds`)
    /// until the load eases. Default 10; 0 runs the builds at the server's priority.
    pub nice: i32,
}

impl Default for RollupConfig {
    fn default() -> Self {
        let s = strata_rollup::ScheduleConfig::default();
        RollupConfig {
            enabled: true,
            tiers: strata_rollup::default_tiers(),
            allowed_lateness: s.allowed_lateness,
            interval: s.interval,
            raw_retention: std::time::Duration::from_secs(30 * 86_400),
            retention_interval: std::time::Duration::from_secs(3600),
            compact_files: s.compact_files,
            threads: 1,
            nice: 10,
        }
    }
}

impl RollupConfig {
    /// The scheduler's settings this section sets.
    pub fn schedule(&self) -> strata_rollup::ScheduleConfig {
        strata_rollup::ScheduleConfig {
            allowed_lateness: self.allowed_lateness,
            interval: self.interval,
            compact_files: self.compact_files,
        }
    }
}

/// The `[sql]` section: SQL over Arrow Flight SQL (`strata_flight::SqlPolicy`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlConfig {
    /// Let clients run DDL (`CREATE`, `DROP`), DML (`INSERT`, `COPY ... TO`) and `SET`.
    /// Default false: refused with `PERMISSION_DENIED`.
    pub allow_writes: bool,
    /// Bytes all SQL queries' operators may hold together (sorts, aggregations and joins
    /// spill to disk where they can; a query that still needs more fails with
    /// `RESOURCE_EXHAUSTED`); 0 for no limit. Default 2 GiB.
    pub memory_limit_bytes: usize,
    /// Longest a query may run (`"30s"`, `"2m"`), then `DEADLINE_EXCEEDED`; `"0s"` for no
    /// limit. Default 2 minutes.
    #[serde(with = "humantime_serde")]
    pub timeout: std::time::Duration,
}

impl Default for SqlConfig {
    fn default() -> Self {
        let p = strata_flight::SqlPolicy::default();
        SqlConfig {
            allow_writes: p.allow_writes,
            memory_limit_bytes: p.memory_limit_bytes.unwrap_or(0),
            timeout: p.timeout.unwrap_or_default(),
        }
    }
}

impl SqlConfig {
    /// The Flight SQL service's policy this section sets.
    pub fn policy(&self) -> strata_flight::SqlPolicy {
        strata_flight::SqlPolicy {
            allow_writes: self.allow_writes,
            memory_limit_bytes: (self.memory_limit_bytes > 0).then_some(self.memory_limit_bytes),
            timeout: (!self.timeout.is_zero()).then_some(self.timeout),
        }
    }
}

impl Config {
    /// Reads a TOML file.
    ///
    /// # Errors
    /// A message naming the file and the TOML problem.
    pub fn from_file(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
    }

    /// The WAL directory: `wal_dir`, else `<data_dir>/wal` for a local data directory,
    /// else `./wal`.
    pub fn wal_dir(&self) -> PathBuf {
        if let Some(w) = &self.wal_dir {
            return w.clone();
        }
        match strata_ingest::storage::DataDir::parse(&self.data_dir) {
            Ok(strata_ingest::storage::DataDir::Local(p)) => p.join("wal"),
            _ => PathBuf::from("./wal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_section_sets_the_caches_and_rejects_unknown_keys() {
        let c: Config = toml::from_str("[query]\nfile_cache_bytes = 1048576\n").unwrap();
        assert_eq!(c.query.file_cache_bytes, 1 << 20);
        assert_eq!(c.query.sample_cache_bytes, 256 << 20);
        let c: Config = toml::from_str("[query]\nsample_cache_bytes = 0\n").unwrap();
        assert_eq!(c.query.cache_sizes().sample_bytes, 0);
        assert_eq!(c.query.cache_sizes().file_bytes, 1 << 30);
        // Absent, they are 1 GiB and 256 MiB.
        let c: Config = toml::from_str("data_dir = \"./d\"\n").unwrap();
        assert_eq!(c.query.file_cache_bytes, 1 << 30);
        assert_eq!(c.query.sample_cache_bytes, 256 << 20);
        let e = toml::from_str::<Config>("[query]\nfile_cache = 1\n").unwrap_err();
        assert!(e.to_string().contains("file_cache"), "{e}");
    }

    #[test]
    fn the_sql_section_sets_the_flight_policy() {
        // Absent: read-only, 2 GiB, 2 minutes.
        let p = Config::default().sql.policy();
        assert!(!p.allow_writes);
        assert_eq!(p.memory_limit_bytes, Some(2 << 30));
        assert_eq!(p.timeout, Some(std::time::Duration::from_secs(120)));
        let c: Config = toml::from_str(
            "[sql]\nallow_writes = true\nmemory_limit_bytes = 0\ntimeout = \"0s\"\n",
        )
        .unwrap();
        let p = c.sql.policy();
        assert!(p.allow_writes);
        assert_eq!((p.memory_limit_bytes, p.timeout), (None, None));
        let c: Config = toml::from_str("[sql]\ntimeout = \"30s\"\n").unwrap();
        assert_eq!(
            c.sql.policy().timeout,
            Some(std::time::Duration::from_secs(30))
        );
    }

    #[test]
    fn the_rollup_section_sets_tiers_retention_and_schedule() {
        // docs/rollups.md's example.
        let c: Config = toml::from_str(
            r#"
[rollup]
enabled = true
allowed_lateness = "30s"
interval = "10s"
raw_retention = "30d"
retention_interval = "1h"
threads = 1
nice = 10
tiers = [
  { name = "1m", resolution = "1m", retention = "90d" },
  { name = "1h", resolution = "1h", sketch = true, retention = "730d" },
  { name = "1d", resolution = "1d", sketch = true, retention = "1825d" },
]

[persist]
vacuum_interval = "24h"
vacuum_retention = "7d"
"#,
        )
        .unwrap();
        // The example is the defaults.
        let d = Config::default();
        assert_eq!(c.rollup.tiers, d.rollup.tiers);
        assert_eq!(c.rollup.tiers, strata_rollup::default_tiers());
        assert_eq!(
            c.rollup.raw_retention,
            std::time::Duration::from_secs(30 * 86_400)
        );
        assert_eq!(d.rollup.raw_retention, c.rollup.raw_retention);
        assert_eq!(c.rollup.schedule(), d.rollup.schedule());
        assert_eq!((c.rollup.threads, c.rollup.nice), (d.rollup.threads, 10));
        assert_eq!(c.persist.vacuum_retention, d.persist.vacuum_retention);
        assert_eq!(
            c.rollup.tiers[0].retention,
            Some(std::time::Duration::from_secs(90 * 86_400))
        );
        assert!(!c.rollup.tiers[0].sketch && c.rollup.tiers[2].sketch);
        let e = toml::from_str::<Config>(
            "[rollup]
tiers = [{ name = \"1m\", resolution = \"1m\", k = 1 }]
",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
