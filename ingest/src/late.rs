//! Late samples: samples written into time the rollup tiers (`strata-rollup`) have
//! already built, so that the tiers can build those buckets again.
//!
//! The rollup jobs raise a **late watermark** before they read a range to build it
//! ([`crate::Ingester::raise_late_watermark`]): a sample written afterwards with a
//! timestamp at or before it is late. The write path marks its time under the same lock
//! that orders writes against the raise, so a sample is either read by the build or
//! marked, never neither. Marks are time ranges `(lo, hi]` (ms, UTC), close ones merged.
//!
//! Marks are durable: they leave memory only in the Delta commit that persists their
//! samples, as that commit's `commitInfo` field [`COMMIT_KEY`] (a JSON array of `[lo,
//! hi]` pairs), so a crash never loses one: a sample not yet persisted is replayed from
//! the WAL, and every replayed sample is marked (the watermark is not known during replay;
//! marking too much only rebuilds buckets again). [`crate::Ingester::late_since`] reads
//! the marks of the commits after a given table version.
//!
//! The write path also keeps the tiers' **event time**: the newest sample time written
//! and when (wall clock) it last rose ([`crate::Ingester::event_time`]). The first tier's
//! scheduler closes buckets by it, not by the wall clock alone, while samples keep coming,
//! so that a backfill written in time order (an hour of history in seconds) is built as
//! it arrives instead of being built ahead of it and then again as late (the event-time
//! watermark of stream processors: Akidau et al., "The Dataflow Model", VLDB 2015, and
//! Flink's bounded out-of-orderness with idleness).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

/// The `commitInfo` field of a samples-table commit listing the late ranges of the
/// samples it persists.
pub const COMMIT_KEY: &str = "strataLateRanges";

/// Marks closer than this (ms) are merged into one range: buckets are at least a second,
/// usually a minute, and a rebuild of a few extra seconds costs nothing.
pub const MERGE_GAP_MS: i64 = 60_000;

/// No late watermark yet: nothing is late.
const OFF: i64 = i64::MIN;

/// Time ranges `(lo, hi]` (ms), disjoint, sorted, ranges closer than [`MERGE_GAP_MS`]
/// merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(BTreeMap<i64, i64>);

impl Ranges {
    /// Adds `(lo, hi]`.
    pub fn add(&mut self, lo: i64, hi: i64) {
        let (mut lo, mut hi) = (lo.min(hi), hi.max(lo));
        // Every range that overlaps or nearly touches `(lo, hi]` joins it.
        let touching: Vec<(i64, i64)> = self
            .0
            .range(..=hi.saturating_add(MERGE_GAP_MS))
            .rev()
            .take_while(|(_, h)| h.saturating_add(MERGE_GAP_MS) >= lo)
            .map(|(l, h)| (*l, *h))
            .collect();
        for (l, h) in touching {
            self.0.remove(&l);
            lo = lo.min(l);
            hi = hi.max(h);
        }
        self.0.insert(lo, hi);
    }

    /// Adds every range of `other`.
    pub fn extend(&mut self, other: &Ranges) {
        for (l, h) in other.iter() {
            self.add(l, h);
        }
    }

    /// The ranges, in time order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.0.iter().map(|(l, h)| (*l, *h))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As the JSON a commit carries: `[[lo, hi], ...]`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.iter()
                .map(|(l, h)| serde_json::json!([l, h]))
                .collect(),
        )
    }

    /// Adds the ranges of a commit's JSON (anything else is ignored).
    pub fn add_json(&mut self, v: &serde_json::Value) {
        for pair in v.as_array().into_iter().flatten() {
            if let (Some(l), Some(h)) = (
                pair.get(0).and_then(|x| x.as_i64()),
                pair.get(1).and_then(|x| x.as_i64()),
            ) {
                self.add(l, h);
            }
        }
    }
}

/// The late watermark and the marks not yet persisted.
#[derive(Debug)]
pub struct LateMarks {
    watermark: AtomicI64,
    pending: parking_lot::Mutex<Ranges>,
    /// The newest sample time written (ms, UTC; no later than the wall clock of its
    /// write), [`OFF`] before the first.
    newest: AtomicI64,
    /// The wall clock (ms, UTC) when `newest` last rose.
    newest_at: AtomicI64,
}

impl Default for LateMarks {
    fn default() -> Self {
        LateMarks {
            watermark: AtomicI64::new(OFF),
            pending: Default::default(),
            newest: AtomicI64::new(OFF),
            newest_at: AtomicI64::new(OFF),
        }
    }
}

impl LateMarks {
    /// The late watermark (ms), `None` before the first raise.
    pub fn watermark(&self) -> Option<i64> {
        let w = self.watermark.load(Ordering::SeqCst);
        (w != OFF).then_some(w)
    }

    /// Raises the watermark to `ms` (never lowers it). Callers hold the write gate.
    pub(crate) fn raise(&self, ms: i64) {
        self.watermark.fetch_max(ms, Ordering::SeqCst);
    }

    /// Marks the samples at times `ts` (ms) whose times are at or before `upto`.
    pub(crate) fn mark(&self, ts: impl Iterator<Item = i64>, upto: i64) {
        let late: Vec<i64> = ts.filter(|t| *t <= upto).collect();
        self.mark_all(late);
    }

    /// Marks the samples at times `late` (ms): sorted, the times closer than
    /// [`MERGE_GAP_MS`] make one range each (what adding them one by one would merge),
    /// so a backlog of late samples costs a sort, not a map update per sample.
    fn mark_all(&self, mut late: Vec<i64>) {
        if late.is_empty() {
            return;
        }
        late.sort_unstable();
        let mut marked = Ranges::default();
        let (mut lo, mut hi) = (late[0] - 1, late[0]);
        for &t in &late[1..] {
            if t - 1 > hi.saturating_add(MERGE_GAP_MS) {
                marked.add(lo, hi);
                lo = t - 1;
            }
            hi = t;
        }
        marked.add(lo, hi);
        self.pending.lock().extend(&marked);
    }

    /// Called under the write gate with the times (ms) of a write's samples, at wall
    /// clock `now_ms`: marks the late ones, and moves the event time
    /// ([`LateMarks::event_time`]) up to the newest (a time past `now_ms` counts as
    /// `now_ms`).
    pub(crate) fn on_write(&self, ts: impl Iterator<Item = i64>, now_ms: i64) {
        let w = self.watermark.load(Ordering::SeqCst);
        let mut newest = OFF;
        let mut late = vec![];
        for t in ts {
            newest = newest.max(t);
            if w != OFF && t <= w {
                late.push(t);
            }
        }
        self.mark_all(late);
        let newest = newest.min(now_ms);
        if newest > self.newest.load(Ordering::Relaxed)
            && self.newest.fetch_max(newest, Ordering::SeqCst) < newest
        {
            self.newest_at.store(now_ms, Ordering::SeqCst);
        }
    }

    /// The event time: the newest sample time written (ms, UTC, at most the wall clock
    /// of its write) and the wall-clock time (ms, UTC) it last rose; `None` before the
    /// first write.
    pub fn event_time(&self) -> Option<(i64, i64)> {
        let t = self.newest.load(Ordering::SeqCst);
        (t != OFF).then(|| (t, self.newest_at.load(Ordering::SeqCst)))
    }

    /// Takes the pending marks (a persist takes them with the head's samples).
    pub(crate) fn take(&self) -> Ranges {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Puts marks back (the persist that took them failed).
    pub(crate) fn restore(&self, r: &Ranges) {
        self.pending.lock().extend(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_ranges_merge_and_far_ones_do_not() {
        let mut r = Ranges::default();
        r.add(0, 1);
        r.add(30_000, 30_001);
        r.add(500_000, 500_001);
        r.add(61_000, 61_001);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![(0, 61_001), (500_000, 500_001)]
        );
        // One range bridging two.
        r.add(100_000, 450_000);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 500_001)]);
        let mut back = Ranges::default();
        back.add_json(&r.to_json());
        assert_eq!(back, r);
    }

    #[test]
    fn only_samples_at_or_before_the_watermark_are_marked() {
        let m = LateMarks::default();
        m.on_write([5, 10].into_iter(), 1_000_000);
        assert!(m.take().is_empty(), "no watermark: nothing is late");
        m.raise(100);
        m.raise(50);
        assert_eq!(m.watermark(), Some(100));
        m.on_write([99, 100, 101, 200_000].into_iter(), 1_000_000);
        assert_eq!(m.take().iter().collect::<Vec<_>>(), vec![(98, 100)]);
        assert!(m.take().is_empty());
    }

    #[test]
    fn a_batch_of_late_times_marks_what_adding_them_one_by_one_does() {
        // Unsorted, with duplicates, gaps at and just over MERGE_GAP_MS (62,000 and
        // 122,002: apart by one ms more than the gap between the ranges (61,999, 62,000]
        // and (122,001, 122,002] allows).
        let times = [
            5_000,
            1_000,
            1_000,
            62_000,
            62_002 + MERGE_GAP_MS,
            300_000,
            299_999,
            420_001,
            -7,
        ];
        let mut one_by_one = Ranges::default();
        for t in times {
            one_by_one.add(t - 1, t);
        }
        let m = LateMarks::default();
        m.mark(times.into_iter(), i64::MAX);
        assert_eq!(m.take(), one_by_one);
        assert_eq!(
            one_by_one.iter().collect::<Vec<_>>(),
            vec![
                (-8, 62_000),
                (122_001, 122_002),
                (299_998, 300_000),
                (420_000, 420_001)
            ]
        );
    }

    #[test]
    fn the_event_time_is_the_newest_sample_capped_at_the_wall_clock() {
        let m = LateMarks::default();
        assert_eq!(m.event_time(), None);
        m.on_write([10, 30, 20].into_iter(), 1_000);
        assert_eq!(m.event_time(), Some((30, 1_000)));
        // Older samples do not move it, nor when it rose.
        m.on_write([25].into_iter(), 2_000);
        assert_eq!(m.event_time(), Some((30, 1_000)));
        // A sample from the future counts as now.
        m.on_write([9_999_999].into_iter(), 3_000);
        assert_eq!(m.event_time(), Some((3_000, 3_000)));
    }
}
