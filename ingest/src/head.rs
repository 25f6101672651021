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

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
            let mut shard = self.shards[i].lock();
            for (id, s) in items {
                let (_, e) = shard.series.entry(id).or_insert_with(|| {
                    created += 1;
                    let labels = self.intern(&s.labels);
                    let family: Arc<str> = metric_family(labels.metric_name()).into();
                    let in_catalog = self.catalog_ids.lock().contains(&id);
                    (
                        Arc::new(SeriesMeta {
                            id,
                            labels,
                            family,
                            in_catalog: AtomicBool::new(in_catalog),
                        }),
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
        let mut out = Frozen::default();
        let mut taken = 0u64;
        for shard in &self.shards {
            let mut shard = shard.lock();
            shard.series.retain(|_, (meta, e)| {
                if e.samples.is_empty() {
                    e.idle_cycles = e.idle_cycles.saturating_add(1);
                    // Series idle for two persist cycles leave the head (they are in the
                    // catalog by then).
                    return e.idle_cycles < 2 || !meta.in_catalog.load(Ordering::Relaxed);
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
        let out = Arc::new(out);
        *frozen = Some(out.clone());
        Some(out)
    }

    /// Drops the frozen part once its samples are visible in Delta, and records its series
    /// as being in the catalog.
    pub fn release_frozen(&self) {
        let f = self.frozen.write().take();
        if let Some(f) = f {
            let mut ids = self.catalog_ids.lock();
            for (m, _) in &f.series {
                m.in_catalog.store(true, Ordering::Relaxed);
                ids.insert(m.id);
            }
        }
    }

    /// Puts the frozen part back as if it had not been frozen (persistence failed; its
    /// samples stay queryable and will be persisted next time).
    pub fn unfreeze(&self) {
        let f = self.frozen.write().take();
        if let Some(f) = f {
            let f = Arc::try_unwrap(f).unwrap_or_else(|a| Frozen {
                series: a.series.clone(),
            });
            let mut n = 0;
            for (meta, samples) in f.series {
                n += samples.len();
                let mut shard = self.shards[(meta.id % SHARDS as u64) as usize].lock();
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
        }
    }

    /// A consistent copy of every sample in the head (frozen part first, then the active
    /// one), per series sorted by time with unique timestamps. `keep` filters series before
    /// their samples are copied.
    pub fn snapshot(&self, keep: &dyn Fn(&SeriesMeta) -> bool) -> HeadSamples {
        let mut out = vec![];
        if let Some(f) = self.frozen.read().as_ref() {
            for (m, s) in &f.series {
                if keep(m) {
                    out.push((m.clone(), s.clone()));
                }
            }
        }
        for shard in &self.shards {
            let shard = shard.lock();
            for (m, e) in shard.series.values() {
                if e.samples.is_empty() || !keep(m) {
                    continue;
                }
                let mut v = e.samples.clone();
                if !e.sorted {
                    sort_dedup(&mut v);
                }
                out.push((m.clone(), v));
            }
        }
        out
    }

    /// Series not yet in the Delta catalog (active and frozen parts).
    pub fn uncataloged_series(&self) -> Vec<Arc<SeriesMeta>> {
        let mut seen = HashSet::new();
        let mut out = vec![];
        let mut take = |m: &Arc<SeriesMeta>| {
            if !m.in_catalog.load(Ordering::Relaxed) && seen.insert(m.id) {
                out.push(m.clone());
            }
        };
        if let Some(f) = self.frozen.read().as_ref() {
            f.series.iter().for_each(|(m, _)| take(m));
        }
        for shard in &self.shards {
            shard.lock().series.values().for_each(|(m, _)| take(m));
        }
        out
    }

    /// Samples in the active part (not frozen).
    pub fn active_samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
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
    fn out_of_order_and_duplicates() {
        let h = Head::new(HashSet::new());
        assert_eq!(h.append(vec![ss("a", &[(3, 3.0), (1, 1.0)])]), 1);
        assert_eq!(h.append(vec![ss("a", &[(2, 2.0), (3, 30.0)])]), 0);
        let snap = h.snapshot(&|_| true);
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
        assert_eq!(h.snapshot(&|_| true)[0].1.len(), 3);
        assert_eq!(h.uncataloged_series().len(), 1);
        h.release_frozen();
        assert!(h.snapshot(&|_| true).is_empty());
        assert!(h.uncataloged_series().is_empty());
    }

    #[test]
    fn unfreeze_keeps_samples() {
        let h = Head::new(HashSet::new());
        h.append(vec![ss("a", &[(1, 1.0)])]);
        h.freeze().unwrap();
        h.append(vec![ss("a", &[(2, 2.0)])]);
        h.unfreeze();
        let snap = h.snapshot(&|_| true);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].1.len(), 2);
        assert_eq!(h.active_samples(), 2);
    }
}
