//! Step 3 of the write path: the head, an in-memory store of recent samples that queries see
//! as soon as a write is acknowledged.
//!
//! Series are spread over shards by fingerprint so that concurrent writes rarely contend.
//! Samples may arrive out of order: they are sorted, and duplicates of one timestamp
//! collapsed to the last one written, when the head is read or persisted (as
//! VictoriaMetrics accepts out-of-order samples; Prometheus rejects them by default).
//!
//! Persistence ([`crate::persist`]) *freezes* the head: the samples written so far move to a
//! frozen part, still visible to queries, until their Delta commit is visible too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::model::{Labels, RawLabels, Sample, SeriesSamples, metric_family};

const SHARDS: usize = 16;

/// What the head knows of one series.
#[derive(Debug)]
pub struct SeriesMeta {
    /// The series fingerprint ([`Labels::fingerprint`]).
    pub id: u64,
    /// Its labels, `__name__` included.
    pub labels: Labels,
    /// Its metric family ([`metric_family`]).
    pub family: Arc<str>,
    /// Whether the series is already in the Delta series catalog.
    pub in_catalog: AtomicBool,
}

#[derive(Default)]
struct Entry {
    samples: Vec<Sample>,
    sorted: bool,
    /// Persist cycles since the series last received a sample.
    idle_cycles: u8,
}

/// Keys are fingerprints, already well-mixed hashes: FxHash is enough (SipHash, std's
/// default, costs more and protects against nothing here).
#[derive(Default)]
struct Shard {
    series: rustc_hash::FxHashMap<u64, (Arc<SeriesMeta>, Entry)>,
    /// The fingerprints of `series` by metric name, so that a scan of some metrics visits
    /// only their series (the head holds every active series).
    by_name: rustc_hash::FxHashMap<Arc<str>, rustc_hash::FxHashSet<u64>>,
}

impl Shard {
    fn index(&mut self, m: &SeriesMeta) {
        self.by_name
            .entry(m.labels.metric_name_shared())
            .or_default()
            .insert(m.id);
    }
}

/// Removes `m` from a shard's name index.
fn unindex(
    by_name: &mut rustc_hash::FxHashMap<Arc<str>, rustc_hash::FxHashSet<u64>>,
    m: &SeriesMeta,
) {
    if let Some(ids) = by_name.get_mut(m.labels.metric_name()) {
        ids.remove(&m.id);
        if ids.is_empty() {
            by_name.remove(m.labels.metric_name());
        }
    }
}

/// Series with their samples (each ascending by time, unique timestamps), as the head
/// hands them out.
pub type HeadSamples = Vec<(Arc<SeriesMeta>, Vec<Sample>)>;

/// Samples taken out of the head by [`Head::freeze`], sorted by time and de-duplicated,
/// one entry per series with samples.
#[derive(Debug, Default)]
pub struct Frozen {
    /// Each series with its samples, ascending by timestamp, unique timestamps.
    pub series: HeadSamples,
    /// Indexes of `series` by metric name.
    by_name: HashMap<Arc<str>, Vec<usize>>,
}

impl Frozen {
    /// Total samples.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|(_, s)| s.len()).sum()
    }
}

/// The in-memory head. See the module doc.
pub struct Head {
    shards: Vec<Mutex<Shard>>,
    frozen: RwLock<Option<Arc<Frozen>>>,
    interner: Mutex<HashSet<Arc<str>>>,
    catalog_ids: Mutex<HashSet<u64>>,
    samples: AtomicU64,
    /// Series in the head not yet in the Delta catalog.
    uncataloged: AtomicUsize,
    /// Raised by one when samples start moving between the frozen and the active part (a
    /// freeze, an unfreeze) and by one when they are done: odd while they move. Readers of
    /// both parts check it ([`Head::consistently`]).
    moves: AtomicU64,
}

/// Sorts by timestamp (stable) and keeps the last written sample of each timestamp.
fn sort_dedup(v: &mut Vec<Sample>) {
    v.sort_by_key(|s| s.timestamp_ms);
    // After a stable sort, equal timestamps keep write order: keep the last of each run.
    let mut out: Vec<Sample> = Vec::with_capacity(v.len());
    for s in v.drain(..) {
        match out.last_mut() {
            Some(l) if l.timestamp_ms == s.timestamp_ms => *l = s,
            _ => out.push(s),
        }
    }
    *v = out;
}

impl Head {
    /// An empty head. `catalog_ids` are the fingerprints already in the Delta series catalog.
    pub fn new(catalog_ids: HashSet<u64>) -> Head {
        Head {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            frozen: RwLock::new(None),
            interner: Mutex::new(HashSet::new()),
            catalog_ids: Mutex::new(catalog_ids),
            samples: AtomicU64::new(0),
            uncataloged: AtomicUsize::new(0),
            moves: AtomicU64::new(0),
        }
    }

    /// Copies a new series' labels into the head, sharing equal strings across series.
    fn intern(&self, labels: &RawLabels) -> Labels {
        let mut i = self.interner.lock();
        let mut get = |s: &str| -> Arc<str> {
            if let Some(x) = i.get(s) {
                x.clone()
            } else {
                let a: Arc<str> = Arc::from(s);
                i.insert(a.clone());
                a
            }
        };
        Labels::from_sorted(labels.iter().map(|(n, v)| (get(n), get(v))).collect())
    }

    /// Appends validated series. Returns the number of series created.
    pub fn append(&self, batch: Vec<SeriesSamples>) -> usize {
        let mut by_shard: Vec<Vec<(u64, SeriesSamples)>> = (0..SHARDS).map(|_| vec![]).collect();
        for s in batch {
            let id = s.labels.fingerprint();
            by_shard[(id % SHARDS as u64) as usize].push((id, s));
        }
        let mut created = 0;
        let mut added = 0u64;
        for (i, items) in by_shard.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let mut guard = self.shards[i].lock();
            let shard = &mut *guard;
            for (id, s) in items {
                let (_, e) = shard.series.entry(id).or_insert_with(|| {
                    created += 1;
                    let labels = self.intern(&s.labels);
                    let family: Arc<str> = metric_family(labels.metric_name()).into();
                    let in_catalog = self.catalog_ids.lock().contains(&id);
                    if !in_catalog {
                        self.uncataloged.fetch_add(1, Ordering::Relaxed);
                    }
                    let meta = Arc::new(SeriesMeta {
                        id,
                        labels,
                        family,
                        in_catalog: AtomicBool::new(in_catalog),
                    });
                    shard
                        .by_name
                        .entry(meta.labels.metric_name_shared())
                        .or_default()
                        .insert(id);
                    (
                        meta,
                        Entry {
                            sorted: true,
                            ..Default::default()
                        },
                    )
                });
                e.idle_cycles = 0;
                for x in s.samples {
                    if e.sorted
                        && let Some(l) = e.samples.last()
                        && l.timestamp_ms >= x.timestamp_ms
                    {
                        e.sorted = false;
                    }
                    e.samples.push(x);
                    added += 1;
                }
            }
        }
        self.samples.fetch_add(added, Ordering::Relaxed);
        created
    }

    /// For each fingerprint, whether the head holds that series (so it passed validation
    /// when it was created). Locks each shard once.
    pub fn known(&self, fingerprints: &[u64]) -> Vec<bool> {
        let mut out = vec![false; fingerprints.len()];
        let mut by_shard: Vec<Vec<usize>> = (0..SHARDS).map(|_| vec![]).collect();
        for (i, f) in fingerprints.iter().enumerate() {
            by_shard[(f % SHARDS as u64) as usize].push(i);
        }
        for (shard, idx) in self.shards.iter().zip(by_shard) {
            if idx.is_empty() {
                continue;
            }
            let shard = shard.lock();
            for i in idx {
                out[i] = shard.series.contains_key(&fingerprints[i]);
            }
        }
        out
    }

    /// Moves every sample written so far into the frozen part and returns it. Fails (returns
    /// `None`) if a frozen part is still there (a persist in progress).
    pub fn freeze(&self) -> Option<Arc<Frozen>> {
        let mut frozen = self.frozen.write();
        if frozen.is_some() {
            return None;
        }
        self.moves.fetch_add(1, Ordering::SeqCst);
        let mut out = Frozen::default();
        let mut taken = 0u64;
        for shard in &self.shards {
            let mut guard = shard.lock();
            let Shard { series, by_name } = &mut *guard;
            series.retain(|_, (meta, e)| {
                if e.samples.is_empty() {
                    e.idle_cycles = e.idle_cycles.saturating_add(1);
                    // Series idle for two persist cycles leave the head (they are in the
                    // catalog by then).
                    let stays = e.idle_cycles < 2 || !meta.in_catalog.load(Ordering::Relaxed);
                    if !stays {
                        unindex(by_name, meta);
                    }
                    return stays;
                }
                let mut v = std::mem::take(&mut e.samples);
                taken += v.len() as u64;
                if !e.sorted {
                    sort_dedup(&mut v);
                } else {
                    v.dedup_by(|b, a| {
                        // Sorted input with equal neighbours only from repeated timestamps.
                        if a.timestamp_ms == b.timestamp_ms {
                            *a = *b;
                            true
                        } else {
                            false
                        }
                    });
                }
                e.sorted = true;
                out.series.push((meta.clone(), v));
                true
            });
        }
        self.samples.fetch_sub(taken, Ordering::Relaxed);
        for (i, (m, _)) in out.series.iter().enumerate() {
            out.by_name
                .entry(m.labels.metric_name_shared())
                .or_default()
                .push(i);
        }
        let out = Arc::new(out);
        *frozen = Some(out.clone());
        self.moves.fetch_add(1, Ordering::SeqCst);
        Some(out)
    }

    /// Drops the frozen part once its samples are visible in Delta, and records its series
    /// as being in the catalog.
    pub fn release_frozen(&self) {
        let f = self.frozen.write().take();
        if let Some(f) = f {
            let mut ids = self.catalog_ids.lock();
            for (m, _) in &f.series {
                if !m.in_catalog.swap(true, Ordering::Relaxed) {
                    self.uncataloged.fetch_sub(1, Ordering::Relaxed);
                }
                ids.insert(m.id);
            }
        }
    }

    /// Puts the frozen part back as if it had not been frozen (persistence failed; its
    /// samples stay queryable and will be persisted next time).
    pub fn unfreeze(&self) {
        let mut frozen = self.frozen.write();
        if let Some(f) = frozen.take() {
            self.moves.fetch_add(1, Ordering::SeqCst);
            let f = Arc::try_unwrap(f).unwrap_or_else(|a| Frozen {
                series: a.series.clone(),
                by_name: HashMap::new(),
            });
            let mut n = 0;
            for (meta, samples) in f.series {
                n += samples.len();
                let mut guard = self.shards[(meta.id % SHARDS as u64) as usize].lock();
                let shard = &mut *guard;
                if !shard.series.contains_key(&meta.id) {
                    shard.index(&meta);
                }
                let (_, e) = shard.series.entry(meta.id).or_insert_with(|| {
                    (
                        meta.clone(),
                        Entry {
                            sorted: true,
                            ..Default::default()
                        },
                    )
                });
                let mut merged = samples;
                merged.append(&mut e.samples);
                e.samples = merged;
                e.sorted = false;
            }
            self.samples.fetch_add(n as u64, Ordering::Relaxed);
            self.moves.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A consistent copy of the samples in the head (frozen part first, then the active
    /// one) of the series whose metric name is in `names` (every series with `None`), per
    /// series sorted by time with unique timestamps. Only those series are visited (an
    /// index by metric name), not every series of the head.
    pub fn snapshot(&self, names: Option<&HashSet<String>>) -> HeadSamples {
        self.snapshot_between(names, None)
    }

    /// As [`Head::snapshot`], only the samples with `lo <= t <= hi` (ms) when `range` is
    /// `Some((lo, hi))`: a scan of a time window copies that window, not the whole head.
    pub fn snapshot_between(
        &self,
        names: Option<&HashSet<String>>,
        range: Option<(i64, i64)>,
    ) -> HeadSamples {
        self.snapshot_of(names, None, range)
    }

    /// As [`Head::snapshot_between`], only the series whose fingerprint (series id) is in
    /// `ids` when it is `Some` (sorted, as a scan's `series_id IN (...)` filter gives
    /// them): a rule's query of one series of a metric with thousands copies that series,
    /// found by its fingerprint, not all of the metric's.
    ///
    /// A freeze (or an unfreeze) moving samples between the frozen and the active part
    /// while the copy runs would hide them from it (read from neither part) or show them
    /// twice: the copy is then taken again ([`Head::consistently`]).
    pub fn snapshot_of(
        &self,
        names: Option<&HashSet<String>>,
        ids: Option<&[u64]>,
        range: Option<(i64, i64)>,
    ) -> HeadSamples {
        self.consistently(|| self.copy_of(names, ids, range))
    }

    /// Runs `read` (of both parts) until no freeze or unfreeze ran during it: a seqlock
    /// over [`Head::moves`]. Freezes come once per persist, so a retry is rare; neither a
    /// freeze nor the write path waits for a reader.
    fn consistently<T>(&self, read: impl Fn() -> T) -> T {
        loop {
            let before = self.moves.load(Ordering::SeqCst);
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let out = read();
            if self.moves.load(Ordering::SeqCst) == before {
                return out;
            }
        }
    }

    /// [`Head::snapshot_of`]'s copy, without the check.
    fn copy_of(
        &self,
        names: Option<&HashSet<String>>,
        ids: Option<&[u64]>,
        range: Option<(i64, i64)>,
    ) -> HeadSamples {
        // The samples of `v` (sorted by time) in the range.
        let window = |v: &[Sample]| -> Vec<Sample> {
            match range {
                None => v.to_vec(),
                Some((lo, hi)) => {
                    let a = v.partition_point(|s| s.timestamp_ms < lo);
                    let b = v.partition_point(|s| s.timestamp_ms <= hi);
                    v[a..b.max(a)].to_vec()
                }
            }
        };
        let wanted = |m: &SeriesMeta| {
            ids.is_none_or(|ids| ids.binary_search(&m.id).is_ok())
                && names.is_none_or(|n| n.contains(m.labels.metric_name()))
        };
        let mut out = vec![];
        let mut push = |m: &Arc<SeriesMeta>, v: Vec<Sample>| {
            if !v.is_empty() {
                out.push((m.clone(), v));
            }
        };
        if let Some(f) = self.frozen.read().as_ref() {
            match names {
                None => f
                    .series
                    .iter()
                    .filter(|(m, _)| wanted(m))
                    .for_each(|(m, v)| push(m, window(v))),
                Some(names) => {
                    for n in names {
                        for i in f.by_name.get(n.as_str()).into_iter().flatten() {
                            let (m, v) = &f.series[*i];
                            if wanted(m) {
                                push(m, window(v));
                            }
                        }
                    }
                }
            }
        }
        let take = |m: &Arc<SeriesMeta>,
                    e: &Entry,
                    push: &mut dyn FnMut(&Arc<SeriesMeta>, Vec<Sample>)| {
            if e.samples.is_empty() {
                return;
            }
            let v = if e.sorted {
                window(&e.samples)
            } else {
                let mut v = e.samples.clone();
                sort_dedup(&mut v);
                window(&v)
            };
            push(m, v);
        };
        if let Some(ids) = ids {
            // Each series straight from its shard.
            for id in ids {
                let shard = self.shards[(id % SHARDS as u64) as usize].lock();
                if let Some((m, e)) = shard.series.get(id)
                    && wanted(m)
                {
                    take(m, e, &mut push);
                }
            }
            return out;
        }
        for shard in &self.shards {
            let Some(names) = names else {
                // Every series: one at a time, so that a long copy (a rollup build's hour
                // of every series, on lower-priority threads) never holds a shard, which
                // every write to it needs, for longer than one series' window.
                let ids: Vec<u64> = shard.lock().series.keys().copied().collect();
                for id in ids {
                    if let Some((m, e)) = shard.lock().series.get(&id) {
                        take(m, e, &mut push);
                    }
                }
                continue;
            };
            let shard = shard.lock();
            for n in names {
                for id in shard.by_name.get(n.as_str()).into_iter().flatten() {
                    if let Some((m, e)) = shard.series.get(id) {
                        take(m, e, &mut push);
                    }
                }
            }
        }
        out
    }

    /// Series not yet in the Delta catalog (active and frozen parts).
    pub fn uncataloged_series(&self) -> Vec<Arc<SeriesMeta>> {
        self.uncataloged_series_named(None)
    }

    /// Series not yet in the Delta catalog whose metric name is one of `names` (all with
    /// `None`): through the by-name indexes, so that a query of some metrics visits only
    /// their series, however many new series other writers (rules) keep creating.
    pub fn uncataloged_series_named(&self, names: Option<&[String]>) -> Vec<Arc<SeriesMeta>> {
        self.uncataloged_series_where(names, &|_| true).0
    }

    /// As [`Head::uncataloged_series_named`], only the series `keep` accepts (a
    /// selector's label matchers: a rule's query of one host among thousands of new
    /// series gets that host's, not a copy of all of them to match and sort); also
    /// returns how many series of `names` not yet in the catalog there are, accepted or
    /// not (what the names alone pick).
    pub fn uncataloged_series_where(
        &self,
        names: Option<&[String]>,
        keep: &dyn Fn(&SeriesMeta) -> bool,
    ) -> (Vec<Arc<SeriesMeta>>, usize) {
        // Usually none: then no series is visited.
        if self.uncataloged.load(Ordering::Relaxed) == 0 {
            return (vec![], 0);
        }
        let frozen = self.frozen.read().clone();
        // A series is in the frozen part and the active one at most once each: only with
        // a frozen part can one be seen twice.
        let mut seen = rustc_hash::FxHashSet::default();
        let mut out = vec![];
        let mut named = 0;
        let dedup = frozen.is_some();
        let mut take = |m: &Arc<SeriesMeta>| {
            if m.in_catalog.load(Ordering::Relaxed) || (dedup && !seen.insert(m.id)) {
                return;
            }
            named += 1;
            if keep(m) {
                out.push(m.clone());
            }
        };
        if let Some(f) = frozen.as_ref() {
            match names {
                None => f.series.iter().for_each(|(m, _)| take(m)),
                Some(names) => {
                    for i in names
                        .iter()
                        .filter_map(|n| f.by_name.get(n.as_str()))
                        .flatten()
                    {
                        take(&f.series[*i].0);
                    }
                }
            }
        }
        for shard in &self.shards {
            let shard = shard.lock();
            match names {
                None => shard.series.values().for_each(|(m, _)| take(m)),
                Some(names) => {
                    for id in names
                        .iter()
                        .filter_map(|n| shard.by_name.get(n.as_str()))
                        .flatten()
                    {
                        if let Some((m, _)) = shard.series.get(id) {
                            take(m);
                        }
                    }
                }
            }
        }
        (out, named)
    }

    /// Samples in the active part (not frozen).
    pub fn active_samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// The series in the active part (the active series).
    pub fn active_series(&self) -> Vec<Arc<SeriesMeta>> {
        let mut out = vec![];
        for shard in &self.shards {
            out.extend(shard.lock().series.values().map(|(m, _)| m.clone()));
        }
        out
    }

    /// The earliest and latest sample times (ms) in the active part, if it has samples.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut out: Option<(i64, i64)> = None;
        for shard in &self.shards {
            for (_, e) in shard.lock().series.values() {
                for s in &e.samples {
                    let t = s.timestamp_ms;
                    out = Some(out.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
                }
            }
        }
        out
    }

    /// The earliest sample time (ms) in the head, frozen and active parts together (one
    /// consistent view, as [`Head::snapshot_of`]'s), staleness markers included; `None`
    /// when the head holds no sample. Reads each series' first sample (its minimum where
    /// its samples arrived out of order): no copy.
    pub fn oldest_sample_ms(&self) -> Option<i64> {
        self.consistently(|| self.oldest_of_parts())
    }

    /// [`Head::oldest_sample_ms`] without the check.
    fn oldest_of_parts(&self) -> Option<i64> {
        let mut out = self.frozen.read().as_ref().and_then(|f| {
            f.series
                .iter()
                .filter_map(|(_, v)| v.first().map(|s| s.timestamp_ms))
                .min()
        });
        for shard in &self.shards {
            for (_, e) in shard.lock().series.values() {
                let t = if e.sorted {
                    e.samples.first().map(|s| s.timestamp_ms)
                } else {
                    e.samples.iter().map(|s| s.timestamp_ms).min()
                };
                out = out.into_iter().chain(t).min();
            }
        }
        out
    }

    /// Series currently in the head (the active series).
    pub fn series_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().series.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ss(name: &str, samples: &[(i64, f64)]) -> SeriesSamples {
        SeriesSamples {
            labels: RawLabels::from_pairs([("__name__", name.to_string())]),
            samples: samples
                .iter()
                .map(|&(t, v)| Sample {
                    timestamp_ms: t,
                    value: v,
                })
                .collect(),
        }
    }

    #[test]
    fn a_snapshot_taken_while_the_head_freezes_sees_every_sample() {
        // One thread freezes and unfreezes the head over and over (a persist, and one that
        // failed); another copies it and counts: a sample moving between the frozen and
        // the active part while a copy runs is still in the copy, exactly once.
        let h = Arc::new(Head::new(HashSet::new()));
        let batch: Vec<SeriesSamples> = (0..2000)
            .map(|i| ss(&format!("m{i}"), &[(i, 1.0), (i + 5000, 2.0)]))
            .collect();
        h.append(batch);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mover = {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let pause = std::time::Duration::from_micros(300);
                while !stop.load(Ordering::Relaxed) {
                    if h.freeze().is_some() {
                        std::thread::sleep(pause);
                        h.unfreeze();
                    }
                    std::thread::sleep(pause);
                }
            })
        };
        for _ in 0..300 {
            let n: usize = h.snapshot(None).iter().map(|(_, v)| v.len()).sum();
            assert_eq!(n, 4000);
            assert_eq!(h.oldest_sample_ms(), Some(0));
        }
        stop.store(true, Ordering::Relaxed);
        mover.join().unwrap();
    }

    #[test]
    fn a_snapshot_of_series_ids_copies_those_series_only() {
        let h = Head::new(HashSet::new());
        let mk = |host: &str, t: i64| SeriesSamples {
            labels: RawLabels::from_pairs([
                ("__name__", "cpu".to_string()),
                ("host", host.to_string()),
            ]),
            samples: vec![Sample {
                timestamp_ms: t,
                value: t as f64,
            }],
        };
        h.append((0..50).map(|i| mk(&format!("h{i}"), i)).collect());
        let all = h.snapshot(None);
        assert_eq!(all.len(), 50);
        let id_of = |host: &str| {
            all.iter()
                .find(|(m, _)| m.labels.get("host") == Some(host))
                .map(|(m, _)| m.id)
                .unwrap()
        };
        let mut ids = vec![id_of("h7"), id_of("h31"), 12345];
        ids.sort_unstable();
        let mut got: Vec<i64> = h
            .snapshot_of(None, Some(&ids), Some((0, 100)))
            .into_iter()
            .map(|(_, v)| v[0].timestamp_ms)
            .collect();
        got.sort_unstable();
        assert_eq!(got, [7, 31]);
        // The metric name still applies, and so does the time range.
        let other: HashSet<String> = ["mem".to_string()].into();
        assert!(h.snapshot_of(Some(&other), Some(&ids), None).is_empty());
        assert!(h.snapshot_of(None, Some(&ids), Some((8, 30))).is_empty());
        // In the frozen part as well.
        let _ = h.freeze();
        assert_eq!(h.snapshot_of(None, Some(&ids), None).len(), 2);
    }

    #[test]
    fn uncataloged_series_where_keeps_what_passes_and_counts_all_of_the_names() {
        let h = Head::new(HashSet::new());
        let mk = |name: &str, host: &str| SeriesSamples {
            labels: RawLabels::from_pairs([
                ("__name__", name.to_string()),
                ("host", host.to_string()),
            ]),
            samples: vec![Sample {
                timestamp_ms: 1,
                value: 1.0,
            }],
        };
        h.append(
            (0..20)
                .map(|i| mk("cpu", &format!("h{i}")))
                .chain([mk("mem", "h3")])
                .collect(),
        );
        let names = ["cpu".to_string()];
        let h3 = |m: &SeriesMeta| m.labels.get("host") == Some("h3");
        let (got, named) = h.uncataloged_series_where(Some(&names), &h3);
        assert_eq!(named, 20);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels.metric_name(), "cpu");
        // Every name, frozen and active parts, each series once.
        let _ = h.freeze();
        h.append(vec![mk("cpu", "h3")]);
        let (got, named) = h.uncataloged_series_where(None, &h3);
        assert_eq!((got.len(), named), (2, 21));
        assert_eq!(h.uncataloged_series_named(Some(&names)).len(), 20);
    }

    #[test]
    fn a_snapshot_between_copies_the_window_only() {
        let h = Head::new(HashSet::new());
        h.append(vec![ss("w", &[(30, 3.0), (10, 1.0), (20, 2.0), (40, 4.0)])]);
        let ts = |snap: HeadSamples| -> Vec<i64> {
            snap.into_iter()
                .flat_map(|(_, v)| v.into_iter().map(|s| s.timestamp_ms))
                .collect()
        };
        // Unsorted in the head: sorted, then cut to [15, 30].
        assert_eq!(ts(h.snapshot_between(None, Some((15, 30)))), [20, 30]);
        assert_eq!(ts(h.snapshot_between(None, None)), [10, 20, 30, 40]);
        assert!(h.snapshot_between(None, Some((50, 60))).is_empty());
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let h = Head::new(HashSet::new());
        assert_eq!(h.append(vec![ss("a", &[(3, 3.0), (1, 1.0)])]), 1);
        assert_eq!(h.append(vec![ss("a", &[(2, 2.0), (3, 30.0)])]), 0);
        let snap = h.snapshot(None);
        let ts: Vec<_> = snap[0]
            .1
            .iter()
            .map(|s| (s.timestamp_ms, s.value))
            .collect();
        assert_eq!(ts, vec![(1, 1.0), (2, 2.0), (3, 30.0)]);
        let f = h.freeze().unwrap();
        assert_eq!(f.sample_count(), 3);
        assert_eq!(h.active_samples(), 0);
        // Frozen samples stay visible until released.
        assert_eq!(h.snapshot(None)[0].1.len(), 3);
        assert_eq!(h.uncataloged_series().len(), 1);
        h.release_frozen();
        assert!(h.snapshot(None).is_empty());
        assert!(h.uncataloged_series().is_empty());
    }

    #[test]
    fn a_snapshot_of_some_metrics_gets_only_their_series() {
        let h = Head::new(HashSet::new());
        h.append(vec![ss("a", &[(1, 1.0)]), ss("b", &[(2, 2.0)])]);
        let names = |n: &[&str]| -> HashSet<String> { n.iter().map(|x| x.to_string()).collect() };
        let got = |snap: HeadSamples| -> Vec<(String, usize)> {
            let mut v: Vec<_> = snap
                .iter()
                .map(|(m, s)| (m.labels.metric_name().to_string(), s.len()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(got(h.snapshot(Some(&names(&["a"])))), [("a".into(), 1)]);
        assert!(h.snapshot(Some(&names(&["c"]))).is_empty());
        assert_eq!(got(h.snapshot(None)).len(), 2);
        // Frozen samples are found by name too.
        h.freeze().unwrap();
        assert_eq!(got(h.snapshot(Some(&names(&["b"])))), [("b".into(), 1)]);
        assert_eq!(h.uncataloged_series().len(), 2);
        let named = |n: &[&str]| -> Vec<String> {
            let v: Vec<String> = n.iter().map(|x| x.to_string()).collect();
            let mut got: Vec<String> = h
                .uncataloged_series_named(Some(&v))
                .iter()
                .map(|m| m.labels.metric_name().to_string())
                .collect();
            got.sort();
            got
        };
        // Frozen and active parts, by name.
        h.append(vec![ss("c", &[(3, 3.0)])]);
        assert_eq!(named(&["b"]), ["b"]);
        assert_eq!(named(&["a", "c", "x"]), ["a", "c"]);
        assert!(named(&["x"]).is_empty());
        h.release_frozen();
        assert!(named(&["a", "b"]).is_empty());
        assert_eq!(named(&["c"]), ["c"]);
        assert_eq!(h.uncataloged_series().len(), 1);
        h.freeze().unwrap();
        h.release_frozen();
        assert!(h.uncataloged_series().is_empty());
        assert!(h.snapshot(Some(&names(&["a", "b"]))).is_empty());
        // Idle for two persist cycles, the series leave the head; back, they are found once.
        for _ in 0..2 {
            h.freeze().unwrap();
            h.release_frozen();
        }
        assert_eq!(h.series_count(), 0);
        h.append(vec![ss("a", &[(3, 3.0)])]);
        assert_eq!(got(h.snapshot(Some(&names(&["a"])))), [("a".into(), 1)]);
        // A series put back by a failed persist is found by name.
        h.freeze().unwrap();
        h.release_frozen();
        h.freeze().unwrap();
        h.release_frozen();
        h.freeze().unwrap();
        h.release_frozen();
        assert_eq!(h.series_count(), 0);
        h.append(vec![ss("b", &[(4, 4.0)])]);
        h.freeze().unwrap();
        h.unfreeze();
        assert_eq!(got(h.snapshot(Some(&names(&["b"])))), [("b".into(), 1)]);
    }

    #[test]
    fn unfreeze_keeps_samples() {
        let h = Head::new(HashSet::new());
        h.append(vec![ss("a", &[(1, 1.0)])]);
        h.freeze().unwrap();
        h.append(vec![ss("a", &[(2, 2.0)])]);
        h.unfreeze();
        let snap = h.snapshot(None);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].1.len(), 2);
        assert_eq!(h.active_samples(), 2);
    }
}
