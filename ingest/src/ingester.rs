//! The write path as one pipeline: validated series -> WAL (synced) -> head -> acknowledged;
//! and, in the background, head -> Delta tables -> WAL truncated.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use serde::Deserialize;

use crate::error::{IngestError, Result};
use crate::head::{Head, HeadSamples, SeriesMeta};
use crate::metrics::IngestMetrics;
use crate::model::{RawLabels, Sample, SeriesSamples};
use crate::receive::remote_write::{self, Validated};
use crate::storage::{self, DataDir, WAL_APP_ID};
use crate::wal::Wal;

/// When the head is persisted and compacted.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistConfig {
    /// Persist the head at least this often (default 5m).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Persist as soon as the head holds this many samples (default 20,000,000, about
    /// 320 MB). Writes are refused with 503 while the head holds twice as many.
    pub max_head_samples: u64,
    /// Compact the samples table (small files merged, sorted, see [`crate::compaction`])
    /// this often (default 1h; 0s disables).
    #[serde(with = "humantime_serde")]
    pub compact_interval: Duration,
    /// Vacuum the samples and series tables this often (default 24h; 0s disables):
    /// data files that compaction or retention removed from the tables more than
    /// `vacuum_retention` ago are deleted from storage.
    #[serde(with = "humantime_serde")]
    pub vacuum_interval: Duration,
    /// How long removed data files are kept before a vacuum deletes them (default 7
    /// days, Delta's default `deletedFileRetentionDuration`).
    #[serde(with = "humantime_serde")]
    pub vacuum_retention: Duration,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            interval: Duration::from_secs(300),
            max_head_samples: 20_000_000,
            compact_interval: Duration::from_secs(3600),
            vacuum_interval: Duration::from_secs(86_400),
            vacuum_retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// What a write did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteOutcome {
    /// Samples acknowledged (durable).
    pub accepted: usize,
    /// Samples rejected.
    pub rejected: usize,
    /// The message of the first rejection, if any.
    pub first_error: Option<String>,
}

/// What a persistence run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PersistReport {
    /// Samples written to the samples table.
    pub samples: usize,
    /// Series added to the catalog.
    pub new_series: usize,
    /// The samples table's version after the commit (None when nothing was written).
    pub version: Option<u64>,
}

struct Tables {
    samples: DeltaTable,
    series: DeltaTable,
}

/// The write path. See the module doc. Create with [`Ingester::open`]; share as `Arc`.
pub struct Ingester {
    limits: crate::validate::Limits,
    persist_cfg: PersistConfig,
    wal: Wal,
    head: Arc<Head>,
    /// Writers hold it shared across WAL append + head apply; a persist holds it exclusive
    /// while it rotates the WAL and freezes the head, so both cut at the same point.
    gate: tokio::sync::RwLock<()>,
    /// The runtime [`Ingester::open`] ran on (the server's, where the writes run): the
    /// one place the gate is taken exclusively from outside the write path
    /// ([`Ingester::raise_late_watermark`]).
    runtime: tokio::runtime::Handle,
    /// One persist or compaction at a time.
    persist_lock: tokio::sync::Mutex<()>,
    /// The Delta table versions queries see, swapped together with releasing the frozen
    /// head so that no sample is seen twice or not at all.
    tables: parking_lot::RwLock<Tables>,
    metrics: IngestMetrics,
    data_dir: DataDir,
    /// Samples written into time the rollup tiers have built ([`crate::late`]).
    late: crate::late::LateMarks,
    /// Metric metadata (type, help, unit), in the `metadata` table.
    metadata: Arc<crate::metadata::MetadataStore>,
    /// The top-level `metric_relabel_configs`, applied to every write but scrapes'.
    relabel: parking_lot::RwLock<Arc<Vec<crate::policy::relabel::RelabelConfig>>>,
    /// What relabeling made of each series seen, by fingerprint (relabeling is a function
    /// of the label set alone); cleared past [`RELABEL_CACHE_ENTRIES`] and on a new config.
    relabel_cache: parking_lot::Mutex<rustc_hash::FxHashMap<u64, Relabeled>>,
    /// The cardinality limits' counts, when limits are set.
    cardinality: parking_lot::Mutex<Option<crate::policy::cardinality::Tracker>>,
    /// The sampling policies.
    sampler: parking_lot::RwLock<Arc<crate::policy::sampling::Sampler>>,
    /// The tenant's ingestion rate limit, when one is set.
    rate_limit: parking_lot::RwLock<Option<Arc<crate::policy::ingestion_rate::RateLimiter>>>,
    /// The last WAL append's duration, ms (the adaptive sampling policy watches it).
    last_wal_append_ms: std::sync::atomic::AtomicU64,
}

/// What relabeling makes of a series.
enum Relabeled {
    /// Kept as it is.
    Same,
    /// Dropped.
    Dropped,
    /// Kept with these labels, packed and validated once (or refused by validation).
    To(Result<RawLabels, crate::validate::Rejection>),
}

/// Most series whose relabeling outcome is remembered (about 100 bytes each, more for
/// changed ones).
const RELABEL_CACHE_ENTRIES: usize = 1 << 20;

/// The wall clock, ms since the epoch (UTC); 0 before 1970.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The times (ms) of every sample of `series`.
fn sample_times(series: &[SeriesSamples]) -> impl Iterator<Item = i64> + '_ {
    series
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.timestamp_ms))
}

/// Converts a decoded request to series without validation (WAL replay: the records were
/// validated before they were logged).
fn request_to_series(req: remote_write::Received) -> Vec<SeriesSamples> {
    req.series
        .into_iter()
        .filter(|t| !t.samples.is_empty())
        .map(|t| SeriesSamples {
            labels: RawLabels::from_spans(req.buf.clone(), t.labels),
            samples: t.samples,
        })
        .collect()
}

impl Ingester {
    /// Opens the tables (creating them if missing), reads the series catalog's fingerprints,
    /// opens the WAL in `wal_dir`, and replays every record not yet persisted into the head.
    ///
    /// # Errors
    /// Storage, Delta or WAL I/O errors.
    pub async fn open(
        data_dir: DataDir,
        wal_dir: &std::path::Path,
        limits: crate::validate::Limits,
        persist_cfg: PersistConfig,
        metrics: IngestMetrics,
    ) -> Result<Arc<Ingester>> {
        let samples = data_dir.open_samples().await?;
        let series = data_dir.open_series().await?;
        let persisted_upto = samples
            .snapshot()?
            .transaction_version(samples.log_store().as_ref(), WAL_APP_ID)
            .await?
            .unwrap_or(0)
            .max(0) as u64;
        let catalog_ids = load_catalog_ids(&series).await?;
        let metadata = Arc::new(crate::metadata::MetadataStore::open(&data_dir).await?);
        let head = Arc::new(Head::new(catalog_ids));
        let (wal, replay) = Wal::open(wal_dir, persisted_upto)?;
        let mut replayed = 0usize;
        let late = crate::late::LateMarks::default();
        for rec in replay {
            let req = remote_write::decode_received(&rec.payload, usize::MAX)?;
            let series = request_to_series(req);
            replayed += series.iter().map(|s| s.samples.len()).sum::<usize>();
            // Whether these were late is not known any more: all are marked.
            late.mark(sample_times(&series), i64::MAX);
            head.append(series);
        }
        if replayed > 0 {
            tracing::info!(samples = replayed, "replayed the WAL into the head");
        }
        Ok(Arc::new(Ingester {
            limits,
            persist_cfg,
            wal,
            head,
            gate: tokio::sync::RwLock::new(()),
            runtime: tokio::runtime::Handle::current(),
            persist_lock: tokio::sync::Mutex::new(()),
            tables: parking_lot::RwLock::new(Tables { samples, series }),
            metrics,
            data_dir,
            late,
            metadata,
            relabel: parking_lot::RwLock::new(Arc::new(vec![])),
            relabel_cache: parking_lot::Mutex::new(Default::default()),
            cardinality: parking_lot::Mutex::new(None),
            sampler: parking_lot::RwLock::new(Arc::new(crate::policy::sampling::Sampler::new(
                &Default::default(),
            ))),
            rate_limit: parking_lot::RwLock::new(None),
            last_wal_append_ms: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Sets the ingestion rate limit ([`crate::policy::ingestion_rate`]), its bucket
    /// full; a rate of 0 removes it.
    ///
    /// # Errors
    /// [`IngestError::Config`] for a negative or non-finite rate.
    pub fn set_ingestion_rate(
        &self,
        rate: crate::policy::ingestion_rate::IngestionRate,
    ) -> Result<()> {
        let limiter = crate::policy::ingestion_rate::RateLimiter::new(rate)?;
        *self.rate_limit.write() = limiter.map(Arc::new);
        Ok(())
    }

    /// Sets the sampling policies ([`crate::policy::sampling`]).
    pub fn set_sampling(&self, cfg: &crate::policy::sampling::SamplingConfig) {
        *self.sampler.write() = Arc::new(crate::policy::sampling::Sampler::new(cfg));
    }

    /// The sampling policies, for writers of delta points ([`crate::policy::sampling::Sampler::sample_deltas`]).
    pub fn sampler(&self) -> Arc<crate::policy::sampling::Sampler> {
        self.sampler.read().clone()
    }

    /// Counts samples dropped by sampling.
    pub fn count_sampled_out(&self, dropped: &crate::policy::sampling::Dropped) {
        for (why, n) in dropped {
            self.metrics
                .samples_dropped
                .with_label_values(&[why])
                .inc_by(*n);
        }
    }

    /// Sets the relabeling applied to every written series except scraped ones (scrapes
    /// have their own `metric_relabel_configs`): the top-level `metric_relabel_configs`.
    pub fn set_relabel_configs(&self, configs: Vec<crate::policy::relabel::RelabelConfig>) {
        *self.relabel.write() = Arc::new(configs);
        self.relabel_cache.lock().clear();
    }

    /// Sets the cardinality limits ([`crate::policy::cardinality`]), counting the head's series.
    pub fn set_cardinality_limits(&self, cfg: crate::policy::cardinality::CardinalityConfig) {
        let mut t = self.cardinality.lock();
        if !cfg.enabled() {
            *t = None;
            return;
        }
        let mut tracker = crate::policy::cardinality::Tracker::new(cfg);
        tracker.rebuild(&self.head.active_series());
        *t = Some(tracker);
    }

    /// The head's active series (for `/api/v1/status/tsdb`) and their samples' time range
    /// (ms), if any.
    pub fn active_series(&self) -> (Vec<Arc<SeriesMeta>>, Option<(i64, i64)>) {
        (self.head.active_series(), self.head.time_range())
    }

    /// Relabels `v`'s series (Prometheus semantics, [`crate::policy::relabel`]): dropped series are
    /// counted in `strata_samples_dropped_total{reason="relabel"}`, changed ones validated
    /// again (and rejected if the result is invalid). Returns whether anything changed.
    fn relabel_series(
        &self,
        v: &mut Validated,
        configs: &[crate::policy::relabel::RelabelConfig],
    ) -> bool {
        let mut changed = false;
        let mut dropped = 0u64;
        let mut cache = self.relabel_cache.lock();
        if cache.len() > RELABEL_CACHE_ENTRIES {
            cache.clear();
        }
        for mut s in std::mem::take(&mut v.series) {
            let outcome = cache.entry(s.labels.fingerprint()).or_insert_with(|| {
                let before: std::collections::BTreeMap<String, String> = s
                    .labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                let mut after = before.clone();
                if !crate::policy::relabel::process(&mut after, configs) {
                    Relabeled::Dropped
                } else if after == before {
                    Relabeled::Same
                } else {
                    let (buf, spans) = crate::model::pack_pairs(after.iter());
                    Relabeled::To(crate::validate::validate_labels(buf, spans, &self.limits))
                }
            });
            match outcome {
                Relabeled::Same => v.series.push(s),
                Relabeled::Dropped => {
                    dropped += s.samples.len() as u64;
                    changed = true;
                }
                Relabeled::To(Ok(labels)) => {
                    // The samples were validated with the series as it arrived; their
                    // checks do not depend on the labels.
                    changed = true;
                    s.labels = labels.clone();
                    v.series.push(s);
                }
                Relabeled::To(Err(r)) => {
                    changed = true;
                    v.rejected.push((r.clone(), s.samples.len()));
                }
            }
        }
        drop(cache);
        if dropped > 0 {
            self.metrics
                .samples_dropped
                .with_label_values(&["relabel"])
                .inc_by(dropped);
        }
        changed
    }

    /// Checks the series the head does not hold against the cardinality limits, moving the
    /// refused ones to `v.rejected`. Returns whether any was refused.
    fn admit_new_series(&self, v: &mut Validated) -> bool {
        let mut guard = self.cardinality.lock();
        let Some(tracker) = guard.as_mut() else {
            return false;
        };
        let fingerprints: Vec<u64> = v.series.iter().map(|s| s.labels.fingerprint()).collect();
        let known = self.head.known(&fingerprints);
        let mut admitted = HashSet::new();
        let mut refused = false;
        for ((s, fp), known) in std::mem::take(&mut v.series)
            .into_iter()
            .zip(fingerprints)
            .zip(known)
        {
            if known || admitted.contains(&fp) {
                v.series.push(s);
                continue;
            }
            match tracker.admit(&s.labels) {
                Ok(()) => {
                    admitted.insert(fp);
                    v.series.push(s);
                }
                Err(r) => {
                    refused = true;
                    let n = s.samples.len();
                    v.rejected.push((r, n));
                }
            }
        }
        refused
    }

    /// Recounts the cardinality limits' series from the head (after it dropped idle ones).
    fn rebuild_cardinality(&self) {
        if let Some(t) = self.cardinality.lock().as_mut() {
            t.rebuild(&self.head.active_series());
        }
    }

    /// Metric metadata as senders described it ([`crate::metadata`]).
    pub fn metadata(&self) -> &Arc<crate::metadata::MetadataStore> {
        &self.metadata
    }

    /// Raises the late watermark to `ms` (ms, UTC): from now on a sample written with a
    /// timestamp at or before it is marked late ([`crate::late`]). The rollup jobs call it
    /// before they read a range to build; it waits for the writes in flight.
    ///
    /// The gate is taken by a task on the writers' runtime, whatever runtime the caller
    /// runs on: tokio's lock is fair, so the writes queue behind a waiting exclusive
    /// holder, and a caller on lower-priority threads (the rollup builds,
    /// `src/background.rs`) descheduled while it waits or holds would stall every write
    /// (a priority inversion, `benches/README.md`). Taken here instead when that runtime
    /// is gone (shutting down).
    pub async fn raise_late_watermark(self: &Arc<Self>, ms: i64) {
        let this = self.clone();
        let raised = self
            .runtime
            .spawn(async move { this.raise_under_gate(ms).await })
            .await;
        if raised.is_err() {
            self.raise_under_gate(ms).await;
        }
    }

    /// [`Ingester::raise_late_watermark`] on the calling task.
    async fn raise_under_gate(&self, ms: i64) {
        let _g = self.gate.write().await;
        self.late.raise(ms);
    }

    /// The tiers' event time ([`crate::late`]): the newest sample time written (ms, UTC,
    /// at most the wall clock of its write) and the wall-clock time (ms, UTC) it last
    /// rose; `None` before the first write since the process started.
    pub fn event_time(&self) -> Option<(i64, i64)> {
        self.late.event_time()
    }

    /// The late ranges recorded by the samples table's commits after version `version`
    /// (`-1`: all), and the table's latest version: `(latest version, ranges)`. Commits
    /// whose log entry is gone (expired logs) are skipped.
    ///
    /// # Errors
    /// Delta errors reading the log.
    pub async fn late_since(&self, version: i64) -> Result<(i64, crate::late::Ranges)> {
        let table = self.tables.read().samples.clone();
        let mut out = crate::late::Ranges::default();
        let Some(latest) = table.version() else {
            return Ok((-1, out));
        };
        let log = table.log_store();
        for v in (version + 1).max(0) as u64..=latest {
            let Some(bytes) = log.read_commit_entry(v).await? else {
                continue;
            };
            for action in deltalake::logstore::get_actions(v, &bytes)? {
                if let deltalake::kernel::Action::CommitInfo(ci) = action
                    && let Some(r) = ci.info.get(crate::late::COMMIT_KEY)
                {
                    out.add_json(r);
                }
            }
        }
        Ok((latest as i64, out))
    }

    /// Validates a decoded remote-write request; series the head already holds skip label
    /// validation (see [`remote_write::validate`]). `now_ms`: the server clock, ms since
    /// the epoch (UTC).
    pub fn validate_remote_write(&self, req: remote_write::Received, now_ms: i64) -> Validated {
        remote_write::validate(req, &self.limits, now_ms, |f| self.validated_before(f))
    }

    /// For each fingerprint, whether its labels passed validation before: the head holds
    /// the series, or relabeling has an outcome for it (with relabeling, the head holds the
    /// relabeled series, under another fingerprint). Label validation is a function of
    /// the labels and the limits alone, so such series skip it.
    fn validated_before(&self, fingerprints: &[u64]) -> Vec<bool> {
        let mut known = self.head.known(fingerprints);
        if known.iter().all(|k| *k) || self.relabel.read().is_empty() {
            return known;
        }
        let cache = self.relabel_cache.lock();
        for (k, f) in known.iter_mut().zip(fingerprints) {
            *k = *k || cache.contains_key(f);
        }
        known
    }

    /// Translates and validates a remote write 2.0 request ([`remote_write::v2::translate`];
    /// with `ct_zero_ingestion`, the series the head does not hold get a zero sample at their
    /// created timestamp). `now_ms`: the server clock, ms since the epoch.
    pub fn translate_remote_write_v2(
        &self,
        req: &remote_write::v2::Request,
        now_ms: i64,
        ct_zero_ingestion: bool,
    ) -> remote_write::v2::Translated {
        remote_write::v2::translate(req, &self.limits, now_ms, ct_zero_ingestion, |f| {
            self.head.known(f)
        })
    }

    /// The validation limits.
    pub fn limits(&self) -> &crate::validate::Limits {
        &self.limits
    }

    /// The metrics registry holder.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// Writes validated series: logs them to the WAL (synced), applies them to the head,
    /// and only then returns. `raw` is the snappy-compressed protobuf body to log when
    /// nothing was rejected (avoids re-encoding a remote-write request).
    ///
    /// # Errors
    /// [`IngestError::Overloaded`] when persistence is behind (nothing written);
    /// [`IngestError::RateLimited`] past the ingestion rate limit (nothing written);
    /// [`IngestError::Wal`] when the WAL could not be synced (nothing acknowledged).
    /// Rejected series are not errors: they are counted in the outcome.
    pub async fn write(
        &self,
        v: Validated,
        protocol: &str,
        raw: Option<Vec<u8>>,
    ) -> Result<WriteOutcome> {
        self.write_with(v, protocol, raw, true).await
    }

    /// [`Ingester::write`], applying the sampling policies only when `sample` (a writer
    /// that sampled its series itself, as the delta writer does, passes false).
    ///
    /// # Errors
    /// As [`Ingester::write`].
    pub async fn write_with(
        &self,
        mut v: Validated,
        protocol: &str,
        mut raw: Option<Vec<u8>>,
        sample: bool,
    ) -> Result<WriteOutcome> {
        let sampler = self.sampler();
        if sampler.enabled() {
            sampler.observe(
                self.head.active_samples() > self.persist_cfg.max_head_samples,
                self.last_wal_append_ms.load(Ordering::Relaxed),
            );
            self.metrics
                .sampling_adaptive_probability
                .set(sampler.adaptive_probability());
        }
        if protocol != "scrape" {
            let configs = self.relabel.read().clone();
            if !configs.is_empty() && self.relabel_series(&mut v, &configs) {
                raw = None;
            }
        }
        if sample && sampler.enabled() {
            let dropped = sampler.thin(&mut v);
            if !dropped.is_empty() {
                raw = None;
                self.count_sampled_out(&dropped);
            }
        }
        let limiter = self.rate_limit.read().clone();
        if let Some(l) = limiter {
            let n = v.sample_count();
            if let Err(e) = l.take(n) {
                self.metrics
                    .samples_rejected
                    .with_label_values(&["rate_limited"])
                    .inc_by(n as u64);
                return Err(e);
            }
        }
        if self.admit_new_series(&mut v) {
            raw = None;
        }
        let mut out = WriteOutcome::default();
        for (r, n) in &v.rejected {
            self.metrics
                .samples_rejected
                .with_label_values(&[r.reason()])
                .inc_by(*n as u64);
            out.rejected += n;
        }
        out.first_error = v.rejected.first().map(|(r, _)| r.to_string());
        if v.series.is_empty() {
            return Ok(out);
        }
        let head_samples = self.head.active_samples();
        if head_samples > 2 * self.persist_cfg.max_head_samples {
            return Err(IngestError::Overloaded {
                reason: format!(
                    "the head holds {head_samples} samples not yet persisted (limit {})",
                    2 * self.persist_cfg.max_head_samples
                ),
                retry_after_s: 5,
            });
        }
        let n = v.sample_count();
        let payload = match raw {
            Some(r) if v.rejected.is_empty() => r,
            _ => remote_write::encode_series(&v.series),
        };
        {
            let _g = self.gate.read().await;
            let started = Instant::now();
            self.wal.append(payload).await?;
            self.last_wal_append_ms
                .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            self.late.on_write(sample_times(&v.series), wall_clock_ms());
            self.head.append(v.series);
        }
        self.metrics
            .samples_ingested
            .with_label_values(&[protocol])
            .inc_by(n as u64);
        out.accepted = n;
        Ok(out)
    }

    /// Persists the head into the Delta tables now: new series into the catalog, then all
    /// samples into the samples table in one commit that records the WAL segment it covers;
    /// then truncates the WAL. Returns once the commit is visible to queries.
    ///
    /// # Errors
    /// Delta or WAL errors; on error the samples stay in the head and the WAL, and the
    /// next run retries them.
    pub async fn persist(&self) -> Result<PersistReport> {
        let _p = self.persist_lock.lock().await;
        let started = Instant::now();
        let (sealed, frozen, late) = {
            let _g = self.gate.write().await;
            let sealed = self.wal.rotate().await?;
            let frozen = self
                .head
                .freeze()
                .expect("no frozen part outside a persist (persist_lock held)");
            (sealed, frozen, self.late.take())
        };
        // The freeze dropped the series idle for two cycles.
        self.rebuild_cardinality();
        if frozen.series.is_empty() {
            self.head.release_frozen();
            self.late.restore(&late);
            self.wal.truncate(sealed).await?;
            return Ok(PersistReport::default());
        }
        match self.write_frozen(&frozen.series, sealed, &late).await {
            Ok((tables, report)) => {
                {
                    let mut t = self.tables.write();
                    *t = tables;
                    self.head.release_frozen();
                }
                self.wal.truncate(sealed).await?;
                self.metrics
                    .persist_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.persisted_samples.inc_by(report.samples as u64);
                tracing::info!(
                    samples = report.samples,
                    new_series = report.new_series,
                    version = ?report.version,
                    ms = started.elapsed().as_millis() as u64,
                    "persisted the head"
                );
                Ok(report)
            }
            Err(e) => {
                self.head.unfreeze();
                self.late.restore(&late);
                self.metrics.persist_failures.inc();
                tracing::error!(error = %e, "persisting the head failed; will retry");
                Err(e)
            }
        }
    }

    async fn write_frozen(
        &self,
        frozen: &[(Arc<SeriesMeta>, Vec<Sample>)],
        sealed: u64,
        late: &crate::late::Ranges,
    ) -> Result<(Tables, PersistReport)> {
        let (samples_t, series_t) = {
            let t = self.tables.read();
            (t.samples.clone(), t.series.clone())
        };
        let mut report = PersistReport::default();
        // 1. New series into the catalog.
        let new_series: Vec<Arc<SeriesMeta>> = frozen
            .iter()
            .filter(|(m, _)| !m.in_catalog.load(Ordering::Relaxed))
            .map(|(m, _)| m.clone())
            .collect();
        let series_t = if new_series.is_empty() {
            series_t
        } else {
            report.new_series = new_series.len();
            let schema = series_t.snapshot()?.snapshot().arrow_schema();
            let batch = storage::series_batch(&schema, &new_series)?;
            series_t
                .write(vec![batch])
                .with_save_mode(SaveMode::Append)
                .with_partition_columns(["metric_family"])
                .with_writer_properties(storage::series_writer_properties())
                .await?
        };
        // 2. Samples, sorted by family, metric name, series, time, in one commit. Series
        // sort by the stored (signed) `series_id`, so that Parquet's min/max statistics of
        // row groups and pages stay narrow and a selector's series ids prune them.
        let mut order: Vec<&(Arc<SeriesMeta>, Vec<Sample>)> = frozen.iter().collect();
        order.sort_by(|a, b| {
            (a.0.family.as_ref(), a.0.labels.metric_name(), a.0.id as i64).cmp(&(
                b.0.family.as_ref(),
                b.0.labels.metric_name(),
                b.0.id as i64,
            ))
        });
        let schema = samples_t.snapshot()?.snapshot().arrow_schema();
        let mut batches = vec![];
        // Batches of about 1 Mi rows, built from references into the frozen head (no copy
        // of the samples before the Arrow arrays).
        let mut chunk: Vec<&(Arc<SeriesMeta>, Vec<Sample>)> = vec![];
        let mut rows = 0;
        for entry in order {
            rows += entry.1.len();
            report.samples += entry.1.len();
            chunk.push(entry);
            if rows >= 1 << 20 {
                batches.push(storage::samples_batch(&schema, &chunk)?);
                chunk.clear();
                rows = 0;
            }
        }
        if !chunk.is_empty() {
            batches.push(storage::samples_batch(&schema, &chunk)?);
        }
        let samples_t = samples_t
            .write(batches)
            .with_session_state(ordered_write_session()?)
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(["date", "metric_family"])
            .with_writer_properties(storage::samples_writer_properties())
            .with_commit_properties({
                let props = CommitProperties::default()
                    .with_application_transaction(Transaction::new(WAL_APP_ID, sealed as i64));
                if late.is_empty() {
                    props
                } else {
                    props.with_metadata([(crate::late::COMMIT_KEY.to_string(), late.to_json())])
                }
            })
            .await?;
        report.version = samples_t.version();
        Ok((
            Tables {
                samples: samples_t,
                series: series_t,
            },
            report,
        ))
    }

    /// Compacts the samples table: in each partition, small files are merged into one
    /// file sorted by metric name, 2-hour window, series and time ([`crate::compaction`];
    /// Delta's own optimize would lose that order). Returns the number of files removed.
    ///
    /// # Errors
    /// Delta or DataFusion errors (the table is unchanged).
    pub async fn compact(&self) -> Result<u64> {
        let _p = self.persist_lock.lock().await;
        let t = self.tables.read().samples.clone();
        match crate::compaction::compact_samples(&t).await {
            Ok((t, done)) => {
                if done.partitions > 0 {
                    tracing::info!(
                        partitions = done.partitions,
                        files_removed = done.files_removed,
                        files_added = done.files_added,
                        duplicates_dropped = done.duplicates_dropped,
                        version = t.version(),
                        "compacted the samples table"
                    );
                }
                self.tables.write().samples = t;
                self.metrics
                    .compactions
                    .with_label_values(&["success"])
                    .inc();
                Ok(done.files_removed)
            }
            Err(e) => {
                self.metrics
                    .compactions
                    .with_label_values(&["failure"])
                    .inc();
                Err(e)
            }
        }
    }

    /// Vacuums the samples and series tables ([`storage::vacuum`]) with the configured
    /// retention; returns the number of files deleted.
    ///
    /// # Errors
    /// Delta or storage errors.
    pub async fn vacuum(&self) -> Result<u64> {
        let _p = self.persist_lock.lock().await;
        let (samples, series) = {
            let t = self.tables.read();
            (t.samples.clone(), t.series.clone())
        };
        let retention = self.persist_cfg.vacuum_retention;
        let (samples, a) = storage::vacuum(&samples, retention).await?;
        let (series, b) = storage::vacuum(&series, retention).await?;
        {
            let mut t = self.tables.write();
            t.samples = samples;
            t.series = series;
        }
        if a + b > 0 {
            tracing::info!(
                files_deleted = a + b,
                "vacuumed the samples and series tables"
            );
        }
        Ok(a + b)
    }

    /// Deletes the samples of the UTC days before `keep_from` (days since the epoch):
    /// whole `date` partitions of the `samples` table ([`storage::delete_days_before`]).
    /// Raw retention: the caller decides which days are safe to drop (the rollup tiers
    /// must have them). Returns the number of files removed.
    ///
    /// # Errors
    /// Delta errors (the table is unchanged).
    pub async fn expire_days_before(&self, keep_from: i32) -> Result<u64> {
        let _p = self.persist_lock.lock().await;
        let samples = self.tables.read().samples.clone();
        let (samples, n) = storage::delete_days_before(&samples, keep_from).await?;
        self.tables.write().samples = samples;
        if n > 0 {
            tracing::info!(
                files_removed = n,
                keep_from,
                "raw retention removed old days"
            );
        }
        Ok(n)
    }

    /// A consistent view for queries of the samples: the Delta table as of now and a copy
    /// of the head's samples of the series whose metric name is in `names` (all series
    /// with `None`).
    pub fn read_samples(
        &self,
        names: Option<&std::collections::HashSet<String>>,
    ) -> (DeltaTable, HeadSamples) {
        self.read_samples_of(names, None, None)
    }

    /// As [`Ingester::read_samples`], the head's samples only those with `lo <= t <= hi`
    /// (ms) when `range` is `Some((lo, hi))`, and only those of the series `ids` (sorted
    /// series ids) when it is `Some`.
    pub fn read_samples_of(
        &self,
        names: Option<&std::collections::HashSet<String>>,
        ids: Option<&[u64]>,
        range: Option<(i64, i64)>,
    ) -> (DeltaTable, HeadSamples) {
        let t = self.tables.read();
        (t.samples.clone(), self.head.snapshot_of(names, ids, range))
    }

    /// The Delta samples table as of now and the earliest sample time (ms) in the head
    /// ([`crate::head::Head::oldest_sample_ms`]), one consistent view (as
    /// [`Ingester::read_samples`]'s: no sample in both): the oldest sample overall is the
    /// smaller of the head's and the table's.
    pub fn oldest_in_head(&self) -> (DeltaTable, Option<i64>) {
        let t = self.tables.read();
        (t.samples.clone(), self.head.oldest_sample_ms())
    }

    /// A consistent view of the series catalog: the Delta table and the head's series not
    /// yet in it.
    pub fn read_series(&self) -> (DeltaTable, Vec<Arc<SeriesMeta>>) {
        self.read_series_named(None)
    }

    /// As [`Ingester::read_series`], the head's series only those whose metric name is
    /// one of `names` (all with `None`).
    pub fn read_series_named(
        &self,
        names: Option<&[String]>,
    ) -> (DeltaTable, Vec<Arc<SeriesMeta>>) {
        let t = self.tables.read();
        (t.series.clone(), self.head.uncataloged_series_named(names))
    }

    /// As [`Ingester::read_series_named`], the head's series only those `keep` accepts,
    /// with how many of `names` there are accepted or not
    /// ([`crate::head::Head::uncataloged_series_where`]).
    pub fn read_series_where(
        &self,
        names: Option<&[String]>,
        keep: &dyn Fn(&SeriesMeta) -> bool,
    ) -> (DeltaTable, Vec<Arc<SeriesMeta>>, usize) {
        let t = self.tables.read();
        let (series, named) = self.head.uncataloged_series_where(names, keep);
        (t.series.clone(), series, named)
    }

    /// Updates the gauges of `/metrics` from the WAL and head.
    pub fn refresh_gauges(&self) {
        let s = self.wal.stats();
        let m = &self.metrics;
        m.wal_bytes_written
            .set(s.bytes_written.load(Ordering::Relaxed) as i64);
        m.wal_bytes
            .set(s.bytes_on_disk.load(Ordering::Relaxed) as i64);
        m.wal_syncs.set(s.syncs.load(Ordering::Relaxed) as i64);
        m.head_series.set(self.head.series_count() as i64);
        m.head_samples.set(self.head.active_samples() as i64);
    }

    /// Series in the head (active series).
    pub fn head_series(&self) -> usize {
        self.head.series_count()
    }

    /// Runs persistence and compaction on their schedules until `shutdown` resolves, then
    /// persists once more.
    pub async fn run_background(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_persist = Instant::now();
        let mut last_compact = Instant::now();
        let mut last_vacuum = Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if last_persist.elapsed() >= self.persist_cfg.interval
                || self.head.active_samples() >= self.persist_cfg.max_head_samples
            {
                let _ = self.persist().await;
                last_persist = Instant::now();
            }
            if !self.persist_cfg.compact_interval.is_zero()
                && last_compact.elapsed() >= self.persist_cfg.compact_interval
            {
                if let Err(e) = self.compact().await {
                    tracing::warn!(error = %e, "compaction failed");
                }
                last_compact = Instant::now();
            }
            if !self.persist_cfg.vacuum_interval.is_zero()
                && last_vacuum.elapsed() >= self.persist_cfg.vacuum_interval
            {
                if let Err(e) = self.vacuum().await {
                    tracing::warn!(error = %e, "vacuum failed");
                }
                last_vacuum = Instant::now();
            }
        }
        if let Err(e) = self.persist().await {
            tracing::error!(error = %e, "final persist failed; the WAL keeps the samples");
        }
    }
}

/// Reads every fingerprint in the series catalog.
async fn load_catalog_ids(series: &DeltaTable) -> Result<HashSet<u64>> {
    let mut ids = HashSet::new();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    series.update_datafusion_session(&ctx.state())?;
    let provider = series.table_provider().await?;
    let df = ctx
        .read_table(provider)
        .and_then(|d| d.select_columns(&["series_id"]))?;
    let mut stream = df.execute_stream().await?;
    while let Some(b) = stream.try_next().await? {
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .ok_or_else(|| IngestError::Config("series_id is not a long".into()))?;
        ids.extend(col.values().iter().map(|v| *v as u64));
    }
    Ok(ids)
}

/// A DataFusion session with one target partition for Delta writes: with more, the
/// writer's plan repartitions the input batches and interleaves them, and files lose the
/// (metric, series, time) order that row-group and page statistics prune by. Otherwise
/// delta-rs's own defaults (its planner included). The rollup tiers write through it too.
///
/// # Errors
/// DataFusion errors building the session (a broken invariant).
pub fn ordered_write_session() -> Result<Arc<dyn deltalake::datafusion::catalog::Session>> {
    let overrides = std::collections::HashMap::from([(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]);
    let ctx =
        deltalake::delta_datafusion::DeltaSessionContext::new_with_session_overrides(&overrides)?;
    Ok(Arc::new(ctx.state()))
}
