//! One series' aggregate over one bucket, built from raw samples or merged from the
//! buckets of a finer tier.
//!
//! A bucket of resolution `r` ending at `end` (ms since the epoch, UTC) holds the samples
//! with `end - r < t <= end`: left-open, right-closed, like a PromQL range window
//! `x[r]` evaluated at `end` (Prometheus `promql/engine.go`, `matrixIterSlice`: the
//! window is `(t - range, t]`). A window aligned to the buckets (`end` and `end - range`
//! both multiples of `r`) is therefore a whole number of buckets, which is what lets a
//! tier answer it exactly.
//!
//! Staleness markers ([`strata_ingest::model::is_stale_nan`]) are not values: they are
//! skipped. Other NaN and infinite values are kept and treated as Prometheus's
//! `functions.go` treats them: `sum` and the variance state propagate NaN (as
//! `funcSumOverTime` / `funcStddevOverTime` do), `min` and `max` ignore NaN unless every
//! value is NaN (`funcMinOverTime`/`funcMaxOverTime` replace a NaN running value),
//! `changes` counts a NaN after a NaN as no change (`funcChanges`), `resets` and the
//! counter increase follow `funcResets` and `extrapolatedRate` (a value lower than its
//! predecessor is a reset, and the predecessor's value is added back).
//!
//! Merging two adjacent buckets of a series gives what building the union from raw would
//! give: `count`, `min`, `max`, `first*`, `last*`, `resets` and `changes` exactly; `sum`,
//! the counter's reset sum (and so its increase) and the variance state up to floating-point rounding of the
//! additions' order (exact when the partial sums are exactly representable, as integer
//! counters and gauges below 2^53 are). The variance state is merged as Chan, Golub and
//! LeVeque, "Algorithms for computing the sample variance" (1979, eq. 2.1b): count, mean
//! and M2 (the sum of squared deviations), not a raw sum of squares.

use strata_ingest::model::is_stale_nan;

/// The aggregates of one series over one bucket. Timestamps are ms since the epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Number of samples (staleness markers excluded); at least 1.
    pub count: u64,
    /// Sum of the values (NaN if any value is NaN).
    pub sum: f64,
    /// Smallest value, NaN only if every value is NaN.
    pub min: f64,
    /// Largest value, NaN only if every value is NaN.
    pub max: f64,
    /// Timestamp of the first sample.
    pub first_ts: i64,
    /// Value of the first sample.
    pub first: f64,
    /// Timestamp of the last sample.
    pub last_ts: i64,
    /// Value of the last sample.
    pub last: f64,
    /// Mean of the values (variance state; NaN once any value is NaN or infinite).
    pub mean: f64,
    /// Sum of squared deviations from the mean (variance state): the population variance
    /// is `m2 / count`, as `stddev_over_time` squares.
    pub m2: f64,
    /// The sum of the values before each counter reset (a value lower than the one
    /// before it; NaN compares as no reset): the counter's increase from the first to the
    /// last sample is `last - first + reset_sum` ([`Bucket::increase`]), as
    /// `extrapolatedRate` computes it before extrapolating. Kept apart from `last - first`
    /// so that a NaN inside a bucket does not spoil a merged increase, as it does not
    /// spoil Prometheus's.
    pub reset_sum: f64,
    /// Number of counter resets between the first and the last sample (`resets`).
    pub resets: u64,
    /// Number of value changes between the first and the last sample (`changes`).
    pub changes: u64,
}

/// Whether `b` differs from `a` as `funcChanges` counts it (NaN after NaN is no change).
fn changed(a: f64, b: f64) -> bool {
    !(a == b || (a.is_nan() && b.is_nan()))
}

/// The larger of two values, NaN losing to any number (`funcMaxOverTime`).
fn max_nan(a: f64, b: f64) -> f64 {
    if b > a || a.is_nan() { b } else { a }
}

/// The smaller of two values, NaN losing to any number (`funcMinOverTime`).
fn min_nan(a: f64, b: f64) -> f64 {
    if b < a || a.is_nan() { b } else { a }
}

impl Bucket {
    /// A bucket of the one sample `(t, v)` (`v` not a staleness marker).
    pub fn of(t: i64, v: f64) -> Bucket {
        // A NaN or infinite value makes the variance NaN, as in `funcStddevOverTime`
        // (its running mean turns NaN); the state says so from the start, so that merges
        // in any order agree.
        let (mean, m2) = if v.is_finite() {
            (v, 0.0)
        } else {
            (f64::NAN, f64::NAN)
        };
        Bucket {
            count: 1,
            sum: v,
            min: v,
            max: v,
            first_ts: t,
            first: v,
            last_ts: t,
            last: v,
            mean,
            m2,
            reset_sum: 0.0,
            resets: 0,
            changes: 0,
        }
    }

    /// Adds the sample `(t, v)`, later than every sample so far; a staleness marker is
    /// skipped. Welford's update for the variance state.
    pub fn push(&mut self, t: i64, v: f64) {
        if is_stale_nan(v) {
            return;
        }
        self.merge(&Bucket::of(t, v));
    }

    /// Merges `next`, whose samples are all later than this bucket's, into this one.
    pub fn merge(&mut self, next: &Bucket) {
        let (a, b) = (&*self, next);
        let n = a.count + b.count;
        let (na, nb, nn) = (a.count as f64, b.count as f64, n as f64);
        let delta = b.mean - a.mean;
        let (mean, m2) = if b.count == 1 && delta.is_finite() {
            // Welford's form, for one new value: no catastrophic cancellation.
            let mean = a.mean + delta / nn;
            (mean, a.m2 + delta * (b.mean - mean))
        } else {
            (
                a.mean + delta * nb / nn,
                a.m2 + b.m2 + delta * delta * na * nb / nn,
            )
        };
        let reset = b.first < a.last;
        let merged = Bucket {
            count: n,
            sum: a.sum + b.sum,
            min: min_nan(a.min, b.min),
            max: max_nan(a.max, b.max),
            first_ts: a.first_ts,
            first: a.first,
            last_ts: b.last_ts,
            last: b.last,
            mean,
            m2,
            reset_sum: a.reset_sum + b.reset_sum + if reset { a.last } else { 0.0 },
            resets: a.resets + b.resets + reset as u64,
            changes: a.changes + b.changes + changed(a.last, b.first) as u64,
        };
        *self = merged;
    }

    /// The bucket of `samples` (time-ordered `(ms, value)` pairs); `None` if there are
    /// none but staleness markers.
    pub fn from_samples(samples: impl IntoIterator<Item = (i64, f64)>) -> Option<Bucket> {
        let mut out: Option<Bucket> = None;
        for (t, v) in samples {
            if is_stale_nan(v) {
                continue;
            }
            match &mut out {
                None => out = Some(Bucket::of(t, v)),
                Some(b) => b.push(t, v),
            }
        }
        out
    }

    /// The counter's increase from the first to the last sample, reset-aware and not
    /// extrapolated: `last - first + reset_sum`.
    pub fn increase(&self) -> f64 {
        self.last - self.first + self.reset_sum
    }

    /// Population variance (`stdvar_over_time`): `m2 / count`.
    pub fn variance(&self) -> f64 {
        self.m2 / self.count as f64
    }
}

/// The end (ms, UTC) of the bucket of resolution `resolution_ms` that holds time `t`:
/// the smallest multiple of the resolution that is `>= t` (buckets are `(end - r, end]`).
pub fn bucket_end(t: i64, resolution_ms: i64) -> i64 {
    let r = resolution_ms;
    t.div_euclid(r) * r + if t.rem_euclid(r) == 0 { 0 } else { r }
}

/// Splits one series' time-ordered samples into buckets of `resolution_ms`: `(end,
/// bucket)` pairs in time order, buckets holding only staleness markers left out.
pub fn bucketize(
    samples: impl IntoIterator<Item = (i64, f64)>,
    resolution_ms: i64,
) -> Vec<(i64, Bucket)> {
    let mut out: Vec<(i64, Bucket)> = vec![];
    for (t, v) in samples {
        if is_stale_nan(v) {
            continue;
        }
        let end = bucket_end(t, resolution_ms);
        match out.last_mut() {
            Some((e, b)) if *e == end => b.push(t, v),
            _ => out.push((end, Bucket::of(t, v))),
        }
    }
    out
}

/// Merges one series' time-ordered buckets of a finer tier into buckets of
/// `resolution_ms` (a multiple of the finer resolution, so that each finer bucket lies in
/// one coarser bucket): `(end, bucket)` pairs in time order.
pub fn coarsen(
    buckets: impl IntoIterator<Item = (i64, Bucket)>,
    resolution_ms: i64,
) -> Vec<(i64, Bucket)> {
    let mut out: Vec<(i64, Bucket)> = vec![];
    for (fine_end, b) in buckets {
        let end = bucket_end(fine_end, resolution_ms);
        match out.last_mut() {
            Some((e, acc)) if *e == end => acc.merge(&b),
            _ => out.push((end, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests;
