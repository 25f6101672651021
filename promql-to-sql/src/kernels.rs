//! Pure numeric kernels for PromQL, ported from the Prometheus 3 reference implementation.
//!
//! Everything here is plain `std` Rust over `f64`s and millisecond timestamps: no DataFusion,
//! no Arrow, no allocation beyond the scratch vectors a few functions need. The planner feeds
//! these functions the samples of one series (range functions), one value (instant math and
//! date functions) or a stream of values (aggregations), and turns `None` into "no output
//! sample".
//!
//! Sources followed, all in the `prometheus/prometheus` repository (Prometheus 3.x, `main`
//! as of 2025/2026):
//!
//! * `promql/functions.go` — range functions (`extrapolatedRate`, `instantValue`,
//!   `funcAvgOverTime`, `varianceOverTime`, `linearRegression`, …), instant math, dates.
//! * `promql/quantile.go` — `quantile`, `BucketQuantile`, `BucketFraction`,
//!   `coalesceBuckets`, `ensureMonotonicAndIgnoreSmallDeltas`.
//! * `promql/engine.go` — `(*evaluator).aggregation` (`sum`, `avg`, `min`, `max`, `count`,
//!   `group`, `stddev`, `stdvar`).
//! * `util/kahansum/kahansum.go` — `kahansum.Inc` (formerly `kahanSumInc` in
//!   `functions.go`).
//! * `util/almost/almost.go` — `almost.Equal`.
//! * Go's `math` and `time` packages where Prometheus leans on their exact behaviour
//!   (`math.Max`/`math.Min` special cases, `math.Log`/`Log2`/`Log10`, `time.Unix` with the
//!   Go 1.23+ absolute epoch).
//!
//! Floating-point operations are performed in the same order as in Go and never fused
//! (Go on amd64 does not emit FMA for these expressions; on arm64 Go fuses a handful of them,
//! which Prometheus's own tests tolerate). Transcendental functions other than `ln`, `log2`
//! and `log10` use Rust's `std`, which can differ from Go's pure-Go implementations in the
//! last ulp.
//!
//! Things that are deliberately out of scope: native histograms, the experimental `anchored`
//! / `smoothed` selector modifiers, and start-timestamp-based counter reset detection (all
//! of which need data Strata does not store). With none of those present, the ported code
//! paths are exactly the float paths of the Go functions.

use std::cmp::Ordering;

/// A sample: (timestamp ms since epoch, value).
pub type Point = (i64, f64);

// ---------------------------------------------------------------------------------------------
// Small Go-compatibility helpers.
// ---------------------------------------------------------------------------------------------

/// Kahan (Neumaier) summation increment, exactly as Go's `kahansum.Inc`
/// (`util/kahansum/kahansum.go`; `kahanSumInc` in older `promql/functions.go`).
///
/// Adds `inc` to the running `sum` whose compensation term is `c`; returns the new
/// `(sum, c)`. The compensation is reset to 0 once the sum becomes infinite. Callers add the
/// final `c` to the final `sum` (unitless: whatever unit the summed values have).
pub fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        // Neumaier improvement: swap if the next term is larger than the sum.
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Go's `math.Max(x, y)` (`math/dim.go`; the amd64/arm64 assembly versions share these
/// special cases): `+Inf` wins over everything (even NaN), then NaN propagates, then
/// `Max(+0, -0) = +0`.
pub fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        return f64::INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { y } else { x };
    }
    if x > y { x } else { y }
}

/// Go's `math.Min(x, y)` (`math/dim.go`): `-Inf` wins over everything (even NaN), then NaN
/// propagates, then `Min(+0, -0) = -0`.
pub fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { x } else { y };
    }
    if x < y { x } else { y }
}

/// Go's `math.Frexp`: splits `f` into a fraction in `[0.5, 1)` and a power of two. Zero,
/// infinities and NaN are returned unchanged with exponent 0.
fn go_frexp(f: f64) -> (f64, i32) {
    if f == 0.0 || f.is_infinite() || f.is_nan() {
        return (f, 0);
    }
    let (mut f, mut exp) = (f, 0i32);
    if f.abs() < f64::MIN_POSITIVE {
        // normalize: scale subnormals up by 2^52.
        f *= (1u64 << 52) as f64;
        exp = -52;
    }
    let mut x = f.to_bits();
    exp += ((x >> 52) & 0x7ff) as i32 - 1023 + 1;
    x &= !(0x7ffu64 << 52);
    x |= 1022u64 << 52;
    (f64::from_bits(x), exp)
}

/// Go's pure-Go `math.log` (FreeBSD `e_log.c`), which Go's amd64 assembly mirrors.
fn go_log(x: f64) -> f64 {
    let ln2_hi = f64::from_bits(0x3fe6_2e42_fee0_0000);
    let ln2_lo = f64::from_bits(0x3dea_39ef_3579_3c76);
    let l1 = f64::from_bits(0x3fe5_5555_5555_5593);
    let l2 = f64::from_bits(0x3fd9_9999_9997_fa04);
    let l3 = f64::from_bits(0x3fd2_4924_9422_9359);
    let l4 = f64::from_bits(0x3fcc_71c5_1d8e_78af);
    let l5 = f64::from_bits(0x3fc7_4664_96cb_03de);
    let l6 = f64::from_bits(0x3fc3_9a09_d078_c69f);
    let l7 = f64::from_bits(0x3fc2_f112_df3e_5244);

    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = go_frexp(x);
    if f1 < std::f64::consts::FRAC_1_SQRT_2 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (l1 + s4 * (l3 + s4 * (l5 + s4 * l7)));
    let t2 = s4 * (l2 + s4 * (l4 + s4 * l6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * ln2_hi - ((hfsq - (s * (hfsq + r) + k * ln2_lo)) - f)
}

/// Go's `math.Log2`: exact for powers of two, otherwise `Log(frac)*(1/Ln2) + exp`.
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = go_frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    go_log(frac) * std::f64::consts::LOG2_E + f64::from(exp)
}

/// Go's `math.Log10`: `Log(x) * (1/Ln10)`.
fn go_log10(x: f64) -> f64 {
    go_log(x) * std::f64::consts::LOG10_E
}

/// Go's `time.Duration.Seconds()` for a duration of `ms` milliseconds:
/// `float64(sec) + float64(nsec)/1e9`.
fn go_duration_seconds(ms: i64) -> f64 {
    let sec = ms / 1000;
    let nsec = (ms % 1000) * 1_000_000;
    sec as f64 + nsec as f64 / 1e9
}

/// Go's `sort.Search(n, f)`: the smallest index in `[0, n)` for which `f` is true, assuming
/// `f` is false then true; `n` if there is none. Binary search exactly as Go does it.
fn go_search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0usize, n);
    while i < j {
        let h = (i + j) >> 1;
        if !f(h) {
            i = h + 1;
        } else {
            j = h;
        }
    }
    i
}

/// Go's `almost.Equal(a, b, epsilon)` (`util/almost/almost.go`).
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Sorts as Prometheus's `vectorByValueHeap` does (`promql/functions.go`): NaN first, then
/// ascending.
fn sort_by_value_nan_first(values: &mut [f64]) {
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
}

// ---------------------------------------------------------------------------------------------
// Quantiles.
// ---------------------------------------------------------------------------------------------

/// Prometheus `quantile` (`promql/quantile.go` `quantile`), used by the `quantile`
/// aggregation, `quantile_over_time` and `mad_over_time`.
///
/// Linear interpolation between the two closest ranks (`rank = phi * (n - 1)`). Special
/// cases: empty input or NaN `phi` → NaN; `phi < 0` → `-Inf`; `phi > 1` → `+Inf`. NaN values
/// sort below everything (Go's `vectorByValueHeap`), so e.g. the 0.8-quantile of
/// `[0, 1, NaN]` is 0.6 while its 0.2-quantile is NaN. Sorts `values` in place. The result
/// has the unit of the values; `phi` is a fraction in `[0, 1]`.
pub fn quantile(phi: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    sort_by_value_nan_first(values);
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lower_index = go_max(0.0, rank.floor());
    let upper_index = go_min(n - 1.0, lower_index + 1.0);
    let weight = rank - rank.floor();
    values[lower_index as usize] * (1.0 - weight) + values[upper_index as usize] * weight
}

/// Relative tolerance below which `histogram_quantile` treats bucket count differences as
/// floating point noise (`smallDeltaTolerance` in `promql/quantile.go`).
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// Classic-histogram quantile over `(upper bound le, cumulative count)` buckets, as
/// `BucketQuantile` in `promql/quantile.go` (the classic-histogram path of
/// `histogram_quantile`).
///
/// Steps, exactly as Go: `q` NaN → NaN, `q < 0` → `-Inf`, `q > 1` → `+Inf`; sort buckets by
/// upper bound; the highest bound must be `+Inf` (else NaN); merge buckets with equal bounds
/// (`coalesceBuckets`); ignore relative count differences ≤ 1e-12 and force monotonic
/// counts (`ensureMonotonicAndIgnoreSmallDeltas`); fewer than 2 buckets or 0 observations →
/// NaN; if the rank falls into the `+Inf` bucket, the second-highest bound is returned; if
/// it falls into the lowest bucket and that bucket's bound is ≤ 0, that bound is returned;
/// otherwise linear interpolation within the bucket (lower edge 0 for the lowest bucket).
///
/// `buckets` may be unsorted on input; it is sorted and coalesced in place (so it may be
/// shorter afterwards). Returns `(value, forced_monotonic)`; `forced_monotonic` is what
/// Prometheus reports as the "input to histogram_quantile needed to be fixed for
/// monotonicity" info annotation. An empty `buckets` returns `(NaN, false)` (Go never calls
/// `BucketQuantile` with no buckets). The value has the unit of the `le` bounds.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    if buckets.is_empty() {
        return (f64::NAN, false);
    }
    // We don't expect the bucket boundary to be a NaN (Go's comparator returns 0 then).
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if buckets[buckets.len() - 1].0 != f64::INFINITY {
        return (f64::NAN, false);
    }

    coalesce_buckets(buckets);
    let (forced_monotonic, _fixed_precision) =
        ensure_monotonic_and_ignore_small_deltas(buckets, SMALL_DELTA_TOLERANCE);

    if buckets.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let b = go_search(buckets.len() - 1, |i| buckets[i].1 >= rank);

    if b == buckets.len() - 1 {
        return (buckets[buckets.len() - 2].0, forced_monotonic);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return (buckets[0].0, forced_monotonic);
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    (
        bucket_start + (bucket_end - bucket_start) * (rank / count),
        forced_monotonic,
    )
}

/// Go's `coalesceBuckets`: merges adjacent buckets with the same upper bound (input sorted).
fn coalesce_buckets(buckets: &mut Vec<(f64, f64)>) {
    // `dedup_by` hands over (later, earlier retained) pairs of adjacent elements, exactly
    // the pairs Go's loop merges, and sums in the same order.
    buckets.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 += later.1;
            true
        } else {
            false
        }
    });
}

/// Go's `ensureMonotonicAndIgnoreSmallDeltas`: returns `(forced_monotonic, fixed_precision)`.
fn ensure_monotonic_and_ignore_small_deltas(
    buckets: &mut [(f64, f64)],
    tolerance: f64,
) -> (bool, bool) {
    let (mut forced_monotonic, mut fixed_precision) = (false, false);
    let mut prev = buckets[0].1;
    for bucket in buckets.iter_mut().skip(1) {
        let curr = bucket.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, tolerance) {
            // Silently correct numerically insignificant differences, either direction.
            bucket.1 = prev;
            fixed_precision = true;
            continue;
        }
        if curr < prev {
            // Force monotonicity by removing any decreases regardless of magnitude.
            bucket.1 = prev;
            forced_monotonic = true;
            continue;
        }
        prev = curr;
    }
    (forced_monotonic, fixed_precision)
}

/// Classic-histogram fraction of observations in `[lower, upper]` over `(upper bound le,
/// cumulative count)` buckets, as `BucketFraction` in `promql/quantile.go` (the classic-histogram
/// path of `histogram_fraction`, called by `funcHistogramFraction` in `promql/functions.go` once
/// per group of `_bucket` series that share all labels but `le`).
///
/// Steps, exactly as Go:
///
/// * empty `buckets` → NaN (Go's guard for empty input);
/// * sort by upper bound; the highest bound must be `+Inf`, else NaN;
/// * merge buckets with equal bounds (`coalesceBuckets`);
/// * the total count is the `+Inf` bucket's count; a total of 0, or a NaN `lower` or `upper`,
///   → NaN; then `lower >= upper` → 0;
/// * the lowest bucket's lower edge is 0 if its upper bound is > 0 (positive buckets only),
///   else `-Inf`; every other bucket's lower edge is the previous bucket's upper bound;
/// * walking the buckets upwards, each of `lower` / `upper` gets the cumulative count below
///   the first bucket whose lower edge is ≥ it, or, if it lies strictly inside a bucket, the
///   linear interpolation `rank + (count - rank) * (v - lowerEdge) / (upperEdge - lowerEdge)`
///   (`rank` = cumulative count below the bucket). In the `-Inf`-edged lowest bucket the
///   interpolation yields that bucket's whole count; in the `+Inf` bucket it adds nothing
///   (finite / `+Inf` = 0), so no observations are attributed to an infinitely wide bucket;
/// * a bound never reached, or a rank above the total, becomes the total; the result is
///   `(upperRank - lowerRank) / total`.
///
/// Unlike `BucketQuantile`, Go's `BucketFraction` does **not** call
/// `ensureMonotonicAndIgnoreSmallDeltas`: non-monotonic counts are used as they are (an
/// interpolation inside a decreasing bucket can then land below the previous bucket's count).
///
/// `buckets` may be unsorted on input; it is sorted and coalesced in place (so it may be
/// shorter afterwards). Go's sort comparator calls bucket bounds "not expected to be NaN" and
/// leaves their placement to the sort algorithm; here NaN bounds sort last, so such input
/// yields NaN. The result is a unitless fraction (normally in `[0, 1]`).
pub fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if buckets.is_empty() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
        (false, false) => a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal),
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    });
    if buckets[buckets.len() - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    coalesce_buckets(buckets);

    let count = buckets[buckets.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }

    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);

    // If the upper bound of the first bucket is greater than 0, we assume we are dealing with
    // positive buckets only and the first bucket's lower bound is 0; otherwise it is -Inf.
    let mut lower_bound = if buckets[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };

    for (i, &(upper_bound, bucket_count)) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].0;
        }
        // Go's `interpolateLinearly` closure. Counts are cumulative, so the bucket's own
        // weight is `bucket_count - rank`. A -Inf lower bound cannot be interpolated (it would
        // be Inf/Inf = NaN), so the whole bucket counts as below `v`.
        let interpolate_linearly = |v: f64| -> f64 {
            if lower_bound == f64::NEG_INFINITY {
                return bucket_count;
            }
            rank + (bucket_count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
        };

        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate_linearly(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate_linearly(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        // Assignment, not accumulation: classic bucket counts are cumulative.
        rank = bucket_count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

// ---------------------------------------------------------------------------------------------
// Range functions.
// ---------------------------------------------------------------------------------------------

/// A PromQL function over a range vector (one series' samples in a window), evaluated by
/// [`eval_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeFn {
    /// `rate(v[r])`: per-second extrapolated increase of a counter (`extrapolatedRate`).
    Rate,
    /// `increase(v[r])`: extrapolated increase of a counter (`extrapolatedRate`).
    Increase,
    /// `delta(v[r])`: extrapolated difference of a gauge (`extrapolatedRate`).
    Delta,
    /// `irate(v[r])`: per-second rate from the last two samples (`instantValue`).
    Irate,
    /// `idelta(v[r])`: difference of the last two samples (`instantValue`).
    Idelta,
    /// `avg_over_time(v[r])` (`funcAvgOverTime`).
    AvgOverTime,
    /// `min_over_time(v[r])` (`funcMinOverTime`).
    MinOverTime,
    /// `max_over_time(v[r])` (`funcMaxOverTime`).
    MaxOverTime,
    /// `sum_over_time(v[r])` (`funcSumOverTime`).
    SumOverTime,
    /// `count_over_time(v[r])` (`funcCountOverTime`).
    CountOverTime,
    /// `last_over_time(v[r])` (`funcLastOverTime`).
    LastOverTime,
    /// `first_over_time(v[r])` (`funcFirstOverTime`).
    FirstOverTime,
    /// `stddev_over_time(v[r])` (`varianceOverTime` + `math.Sqrt`).
    StddevOverTime,
    /// `stdvar_over_time(v[r])` (`varianceOverTime`).
    StdvarOverTime,
    /// `quantile_over_time(phi, v[r])` (`funcQuantileOverTime`).
    QuantileOverTime,
    /// `mad_over_time(v[r])`: median absolute deviation (`funcMadOverTime`).
    MadOverTime,
    /// `present_over_time(v[r])`: 1 for every series with a sample (`funcPresentOverTime`).
    PresentOverTime,
    /// `absent_over_time(v[r])`: the per-series kernel yields 1 when the series has samples
    /// (`funcAbsentOverTime`); the "absent" semantics (1 when *no* series matched) are the
    /// planner's job.
    AbsentOverTime,
    /// `changes(v[r])` (`funcChanges`).
    Changes,
    /// `resets(v[r])` (`funcResets`).
    Resets,
    /// `deriv(v[r])`: least-squares slope per second (`funcDeriv`).
    Deriv,
    /// `predict_linear(v[r], t)` (`funcPredictLinear`).
    PredictLinear,
    /// `double_exponential_smoothing(v[r], sf, tf)`, formerly `holt_winters`
    /// (`funcDoubleExponentialSmoothing`).
    DoubleExponentialSmoothing,
    /// `ts_of_min_over_time(v[r])`: timestamp (seconds) of the last minimum
    /// (`funcTsOfMinOverTime`).
    TsOfMinOverTime,
    /// `ts_of_max_over_time(v[r])`: timestamp (seconds) of the last maximum
    /// (`funcTsOfMaxOverTime`).
    TsOfMaxOverTime,
    /// `ts_of_last_over_time(v[r])`: timestamp (seconds) of the last sample
    /// (`funcTsOfLastOverTime`).
    TsOfLastOverTime,
    /// `ts_of_first_over_time(v[r])`: timestamp (seconds) of the first sample
    /// (`funcTsOfFirstOverTime`).
    TsOfFirstOverTime,
}

impl RangeFn {
    /// Every range function, in declaration order.
    pub const ALL: [RangeFn; 27] = [
        RangeFn::Rate,
        RangeFn::Increase,
        RangeFn::Delta,
        RangeFn::Irate,
        RangeFn::Idelta,
        RangeFn::AvgOverTime,
        RangeFn::MinOverTime,
        RangeFn::MaxOverTime,
        RangeFn::SumOverTime,
        RangeFn::CountOverTime,
        RangeFn::LastOverTime,
        RangeFn::FirstOverTime,
        RangeFn::StddevOverTime,
        RangeFn::StdvarOverTime,
        RangeFn::QuantileOverTime,
        RangeFn::MadOverTime,
        RangeFn::PresentOverTime,
        RangeFn::AbsentOverTime,
        RangeFn::Changes,
        RangeFn::Resets,
        RangeFn::Deriv,
        RangeFn::PredictLinear,
        RangeFn::DoubleExponentialSmoothing,
        RangeFn::TsOfMinOverTime,
        RangeFn::TsOfMaxOverTime,
        RangeFn::TsOfLastOverTime,
        RangeFn::TsOfFirstOverTime,
    ];

    /// Looks up a range function by its PromQL name (the keys of Go's `FunctionCalls` map in
    /// `promql/functions.go`), e.g. `"rate"`, `"quantile_over_time"`,
    /// `"double_exponential_smoothing"`. `"holt_winters"` (the pre-3.0 name, removed from
    /// Prometheus 3) is accepted as an alias of `double_exponential_smoothing`.
    pub fn from_name(name: &str) -> Option<RangeFn> {
        if name == "holt_winters" {
            return Some(RangeFn::DoubleExponentialSmoothing);
        }
        RangeFn::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The PromQL name of the function (the canonical one: `double_exponential_smoothing`,
    /// not `holt_winters`).
    pub fn name(&self) -> &'static str {
        match self {
            RangeFn::Rate => "rate",
            RangeFn::Increase => "increase",
            RangeFn::Delta => "delta",
            RangeFn::Irate => "irate",
            RangeFn::Idelta => "idelta",
            RangeFn::AvgOverTime => "avg_over_time",
            RangeFn::MinOverTime => "min_over_time",
            RangeFn::MaxOverTime => "max_over_time",
            RangeFn::SumOverTime => "sum_over_time",
            RangeFn::CountOverTime => "count_over_time",
            RangeFn::LastOverTime => "last_over_time",
            RangeFn::FirstOverTime => "first_over_time",
            RangeFn::StddevOverTime => "stddev_over_time",
            RangeFn::StdvarOverTime => "stdvar_over_time",
            RangeFn::QuantileOverTime => "quantile_over_time",
            RangeFn::MadOverTime => "mad_over_time",
            RangeFn::PresentOverTime => "present_over_time",
            RangeFn::AbsentOverTime => "absent_over_time",
            RangeFn::Changes => "changes",
            RangeFn::Resets => "resets",
            RangeFn::Deriv => "deriv",
            RangeFn::PredictLinear => "predict_linear",
            RangeFn::DoubleExponentialSmoothing => "double_exponential_smoothing",
            RangeFn::TsOfMinOverTime => "ts_of_min_over_time",
            RangeFn::TsOfMaxOverTime => "ts_of_max_over_time",
            RangeFn::TsOfLastOverTime => "ts_of_last_over_time",
            RangeFn::TsOfFirstOverTime => "ts_of_first_over_time",
        }
    }

    /// How many scalar arguments the function takes besides the range vector (the length of
    /// `params` that [`eval_range`] expects): 1 for `quantile_over_time` (phi) and
    /// `predict_linear` (t, seconds), 2 for `double_exponential_smoothing` (sf, tf), else 0.
    pub fn num_params(&self) -> usize {
        match self {
            RangeFn::QuantileOverTime | RangeFn::PredictLinear => 1,
            RangeFn::DoubleExponentialSmoothing => 2,
            _ => 0,
        }
    }

    /// Whether the scalar arguments make the whole query fail in Prometheus. Only
    /// `double_exponential_smoothing` can fail: Go panics (→ query error, HTTP 422
    /// `execution`) with `invalid smoothing factor. Expected: 0 < sf < 1, got: %f` when
    /// `sf <= 0 || sf >= 1`, and likewise `invalid trend factor…` for `tf`. NaN passes the
    /// check (and makes the result NaN), exactly as in Go. Returns the Go error text.
    pub fn validate_params(&self, params: &[f64]) -> Result<(), String> {
        if *self != RangeFn::DoubleExponentialSmoothing || params.len() < 2 {
            return Ok(());
        }
        let (sf, tf) = (params[0], params[1]);
        if sf <= 0.0 || sf >= 1.0 {
            return Err(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                go_format_f(sf)
            ));
        }
        if tf <= 0.0 || tf >= 1.0 {
            return Err(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                go_format_f(tf)
            ));
        }
        Ok(())
    }
}

/// Go's `fmt` `%f` for a float64 (6 decimals, `+Inf`/`-Inf`/`NaN`).
fn go_format_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v:.6}")
    }
}

/// Evaluates a range function over the points of one series in the window
/// `(range_start_ms, range_end_ms]` (left-open; `points` are already restricted to it,
/// sorted by time, staleness markers removed). `eval_ts_ms` is the evaluation timestamp
/// (only used as `predict_linear`'s intercept time, which Go takes from `enh.Ts`, i.e. the
/// step time even under `@`/`offset`). `params` are the scalar arguments in PromQL order
/// (`quantile_over_time`: `[phi]`; `predict_linear`: `[t seconds]`;
/// `double_exponential_smoothing`: `[sf, tf]`).
///
/// Returns `None` when Prometheus produces no output sample: an empty window; fewer than two
/// samples for `rate`/`increase`/`delta`/`irate`/`idelta`/`deriv`/`predict_linear`/
/// `double_exponential_smoothing`; two last samples with the same timestamp for
/// `irate`/`idelta`; a missing scalar parameter; or `double_exponential_smoothing` with
/// `sf`/`tf` outside `(0, 1)` — which is a query *error* in Prometheus, see
/// [`RangeFn::validate_params`].
///
/// Units of the result: `rate`, `irate`, `deriv` per second; `increase`, `delta`, `idelta`,
/// `predict_linear` and the `*_over_time` value functions in the sample unit;
/// `stdvar_over_time` in unit²; `count_over_time`, `changes`, `resets` counts;
/// `ts_of_*_over_time` seconds since the epoch; `present_over_time`/`absent_over_time` 1.
pub fn eval_range(
    f: RangeFn,
    points: &[Point],
    range_start_ms: i64,
    range_end_ms: i64,
    eval_ts_ms: i64,
    params: &[f64],
) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    match f {
        RangeFn::Rate => extrapolated_rate(points, range_start_ms, range_end_ms, true, true),
        RangeFn::Increase => extrapolated_rate(points, range_start_ms, range_end_ms, true, false),
        RangeFn::Delta => extrapolated_rate(points, range_start_ms, range_end_ms, false, false),
        RangeFn::Irate => instant_value(points, true),
        RangeFn::Idelta => instant_value(points, false),
        RangeFn::AvgOverTime => Some(avg_over_time(points)),
        RangeFn::MinOverTime => Some(compare_over_time(points, |cur, m| cur < m || m.is_nan()).1),
        RangeFn::MaxOverTime => Some(compare_over_time(points, |cur, m| cur > m || m.is_nan()).1),
        RangeFn::SumOverTime => Some(sum_over_time(points)),
        RangeFn::CountOverTime => Some(points.len() as f64),
        RangeFn::LastOverTime => Some(points[points.len() - 1].1),
        RangeFn::FirstOverTime => Some(points[0].1),
        RangeFn::StddevOverTime => Some(variance_over_time(points).sqrt()),
        RangeFn::StdvarOverTime => Some(variance_over_time(points)),
        RangeFn::QuantileOverTime => {
            let phi = *params.first()?;
            let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
            Some(quantile(phi, &mut values))
        }
        RangeFn::MadOverTime => Some(mad_over_time(points)),
        RangeFn::PresentOverTime | RangeFn::AbsentOverTime => Some(1.0),
        RangeFn::Changes => Some(changes(points)),
        RangeFn::Resets => Some(resets(points)),
        RangeFn::Deriv => {
            if points.len() < 2 {
                return None;
            }
            // Go passes the first sample's time as intercept time to avoid floating point
            // accuracy issues (prometheus/prometheus#2674); only the slope is used.
            Some(linear_regression(points, points[0].0).0)
        }
        RangeFn::PredictLinear => {
            let duration = *params.first()?;
            if points.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(points, eval_ts_ms);
            Some(slope * duration + intercept)
        }
        RangeFn::DoubleExponentialSmoothing => {
            if params.len() < 2 {
                return None;
            }
            double_exponential_smoothing(points, params[0], params[1])
        }
        RangeFn::TsOfMinOverTime => {
            let ts = compare_over_time(points, |cur, m| cur <= m || m.is_nan()).0;
            Some(ts as f64 / 1000.0)
        }
        RangeFn::TsOfMaxOverTime => {
            let ts = compare_over_time(points, |cur, m| cur >= m || m.is_nan()).0;
            Some(ts as f64 / 1000.0)
        }
        RangeFn::TsOfLastOverTime => Some(points[points.len() - 1].0 as f64 / 1000.0),
        RangeFn::TsOfFirstOverTime => Some(points[0].0 as f64 / 1000.0),
    }
}

/// `extrapolatedRate` (float path) from `promql/functions.go`: rate/increase/delta with
/// counter-reset correction, extrapolation to the range boundaries when the first/last
/// sample is within 1.1× the average sample interval (else by half an interval), and the
/// zero-point limit for counters.
fn extrapolated_rate(
    points: &[Point],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    extrapolated_rate_scanning(points, range_start, range_end, is_counter, is_rate, true)
}

/// `rate(v[r])` (`is_rate`) or `increase(v[r])` of `points` known to hold no counter reset
/// (no value below the one before it): [`eval_range`]'s result, without its scan for
/// resets, which would add nothing. A caller that counts each series' resets once (a
/// prefix count) answers each window in constant time instead of a pass over it.
pub fn counter_increase_without_resets(
    points: &[Point],
    range_start_ms: i64,
    range_end_ms: i64,
    is_rate: bool,
) -> Option<f64> {
    extrapolated_rate_scanning(points, range_start_ms, range_end_ms, true, is_rate, false)
}

fn extrapolated_rate_scanning(
    points: &[Point],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
    scan_resets: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let num_samples_minus_one = points.len() - 1;
    let mut result = points[num_samples_minus_one].1 - points[0].1;
    if is_counter && scan_resets {
        // Handle counter resets.
        for w in points.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    Some(extrapolate(
        Summary {
            count: points.len() as u64,
            first: points[0],
            last_t: points[num_samples_minus_one].0,
            result,
        },
        range_start,
        range_end,
        is_counter,
        is_rate,
    ))
}

/// What `extrapolatedRate` reads of a window's samples: their number (at least 2), the
/// first sample `(ms, value)`, the last sample's time (ms) and the difference to
/// extrapolate (`last - first`, plus the value before each counter reset for counters).
/// A rollup tier's merged buckets give exactly these (`strata_rollup::bucket::Bucket`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// The first sample, `(ms, value)`.
    pub first: Point,
    /// The last sample's time, ms.
    pub last_t: i64,
    /// The increase (counters) or difference (gauges) from the first to the last sample.
    pub result: f64,
}

/// The second half of `extrapolatedRate` (`promql/functions.go`): `s.result` extrapolated
/// to the window `(range_start, range_end]` (ms) when the first/last sample is within
/// 1.1x the average sample interval of its boundary (else by half an interval), not past
/// a counter's zero point, and per second for `rate`. `s.count` must be at least 2.
pub fn extrapolate(
    s: Summary,
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> f64 {
    let num_samples_minus_one = s.count - 1;
    let (first_t, first_v) = s.first;
    let last_t = s.last_t;
    let result = s.result;

    // Duration between first/last samples and boundary of range.
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last_t) as f64 / 1000.0;

    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average_duration_between_samples = sampled_interval / num_samples_minus_one as f64;
    let extrapolation_threshold = average_duration_between_samples * 1.1;

    if duration_to_start >= extrapolation_threshold {
        duration_to_start = average_duration_between_samples / 2.0;
    }
    if is_counter {
        // Counters cannot be negative: don't extrapolate past the zero point.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first_v >= 0.0 {
            duration_to_zero = sampled_interval * (first_v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= extrapolation_threshold {
        duration_to_end = average_duration_between_samples / 2.0;
    }

    let mut factor = 1.0;
    if sampled_interval != 0.0 {
        factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    }
    if is_rate {
        factor /= go_duration_seconds(range_end - range_start);
    }
    result * factor
}

/// `instantValue` (float path) from `promql/functions.go`: irate/idelta from the last two
/// samples. For irate a decrease is a counter reset and the last value is the increase.
fn instant_value(points: &[Point], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (t0, v0) = points[points.len() - 2];
    let (t1, v1) = points[points.len() - 1];
    let sampled_interval = t1 - t0;
    if sampled_interval == 0 {
        // Avoid dividing by 0.
        return None;
    }
    // Gauge, or counter without reset, or counter with NaN value: the difference. In case
    // of a counter reset, the result is the last value.
    let mut result = if is_rate && v1 < v0 { v1 } else { v1 - v0 };
    if is_rate {
        // Convert to per-second.
        result /= sampled_interval as f64 / 1000.0;
    }
    Some(result)
}

/// `funcAvgOverTime` (float path): Kahan-compensated direct mean, switching to the
/// Kahan-compensated incremental mean once the running sum would overflow.
fn avg_over_time(points: &[Point]) -> f64 {
    let mut sum = points[0].1;
    let mut count = 1.0;
    let mut mean = 0.0;
    let mut kahan_c = 0.0;
    let mut incremental_mean = false;
    for (i, &(_, v)) in points[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental_mean {
            let (new_sum, new_c) = kahan_sum_inc(v, sum, kahan_c);
            // Perform regular mean calculation as long as the sum doesn't overflow.
            if !new_sum.is_infinite() {
                sum = new_sum;
                kahan_c = new_c;
                continue;
            }
            // Handle overflow by reverting to incremental calculation of the mean value.
            incremental_mean = true;
            mean = sum / (count - 1.0);
            kahan_c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, kahan_c) = kahan_sum_inc(v / count, q * mean, q * kahan_c);
    }
    if incremental_mean {
        mean + kahan_c
    } else {
        sum / count + kahan_c / count
    }
}

/// `funcSumOverTime` (float path): Kahan sum; the compensation is dropped if the sum is
/// infinite.
fn sum_over_time(points: &[Point]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &(_, v) in points {
        (sum, c) = kahan_sum_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// `compareOverTime` from `promql/functions.go`: returns `(timestamp, value)` of the sample
/// selected by `compare(current, best)` (a NaN best is always replaced).
fn compare_over_time(points: &[Point], compare: impl Fn(f64, f64) -> bool) -> (i64, f64) {
    let mut best = points[0].1;
    let mut ts = points[0].0;
    for &(t, v) in points {
        if compare(v, best) {
            best = v;
            ts = t;
        }
    }
    (ts, best)
}

/// `varianceOverTime` from `promql/functions.go`: Welford's algorithm with Kahan-compensated
/// mean and sum of squares; returns the population variance.
fn variance_over_time(points: &[Point]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// `funcMadOverTime`: median of absolute deviations from the median. A NaN sample makes the
/// result NaN (current Prometheus; older versions sorted NaN first instead).
fn mad_over_time(points: &[Point]) -> f64 {
    if points.iter().any(|p| p.1.is_nan()) {
        return f64::NAN;
    }
    let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let median = quantile(0.5, &mut values);
    for v in values.iter_mut() {
        *v = (*v - median).abs();
    }
    quantile(0.5, &mut values)
}

/// `funcChanges` (float path): number of times the value changed; NaN → NaN is no change.
fn changes(points: &[Point]) -> f64 {
    let mut n = 0u64;
    for w in points.windows(2) {
        let (prev, cur) = (w[0].1, w[1].1);
        if cur != prev && !(cur.is_nan() && prev.is_nan()) {
            n += 1;
        }
    }
    n as f64
}

/// `funcResets` (float path): number of decreases.
fn resets(points: &[Point]) -> f64 {
    points.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64
}

/// `linearRegression` from `promql/functions.go`: least-squares fit with Kahan sums; `x` is
/// seconds relative to `intercept_time_ms`. Returns `(slope per second, intercept at
/// intercept time)`. A constant series yields slope 0 (or NaN for a constant ±Inf).
fn linear_regression(points: &[Point], intercept_time_ms: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        // Set const_y to false if any new y values are encountered.
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time_ms) as f64 / 1e3;
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;

    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;

    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// `calcTrendValue` from `promql/functions.go`.
fn calc_trend_value(i: usize, tf: f64, s0: f64, s1: f64, b: f64) -> f64 {
    if i == 0 {
        return b;
    }
    let x = tf * (s1 - s0);
    let y = (1.0 - tf) * b;
    x + y
}

/// `funcDoubleExponentialSmoothing` from `promql/functions.go`. `None` for invalid factors
/// (a query error in Go, see [`RangeFn::validate_params`]) or fewer than two samples.
fn double_exponential_smoothing(points: &[Point], sf: f64, tf: f64) -> Option<f64> {
    if sf <= 0.0 || sf >= 1.0 || tf <= 0.0 || tf >= 1.0 {
        return None;
    }
    let l = points.len();
    // Can't do the smoothing operation with less than two points.
    if l < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = points[0].1;
    let mut b = points[1].1 - points[0].1;
    for (i, &(_, v)) in points.iter().enumerate().skip(1) {
        // Scale the raw value against the smoothing factor.
        let x = sf * v;
        // Scale the last smoothed value with the trend at this point.
        b = calc_trend_value(i - 1, tf, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

// ---------------------------------------------------------------------------------------------
// Instant math functions.
// ---------------------------------------------------------------------------------------------

/// Instant math functions that take one value and optional scalar args, as in
/// `promql/functions.go` (`simpleFloatFunc` users, `funcRound`, `clamp`):
///
/// `abs ceil floor exp ln log2 log10 sqrt sgn round clamp clamp_min clamp_max sin cos tan
/// asin acos atan sinh cosh tanh asinh acosh atanh deg rad`, plus the scalar functions
/// `max_of`/`min_of` (`math.Max`/`math.Min` of `v` and `params[0]`).
///
/// * `round(v, to_nearest = 1)`: `floor(v * (1/to_nearest) + 0.5) / (1/to_nearest)` (ties
///   round up).
/// * `clamp(v, min, max)`: `math.Max(min, math.Min(max, v))` with Go's NaN/±Inf rules;
///   `max < min` drops the sample (`Some(None)`). `clamp_min(v, m)` is
///   `clamp(v, m, +Inf)`, `clamp_max(v, m)` is `clamp(v, -Inf, m)`.
/// * `sgn`: -1, 1, or the input itself (0, -0, NaN).
/// * `ln`, `log2`, `log10`: Go's algorithms (`log10(x) = ln(x) * (1/ln 10)`, `log2` exact on
///   powers of two). `deg`: `v * 180 / π`; `rad`: `v * π / 180`. Trigonometric and
///   hyperbolic functions use Rust's `std` (may differ from Go in the last ulp).
///
/// Returns `None` if the name is unknown or a required scalar argument is missing,
/// `Some(None)` if Prometheus drops the sample, else `Some(Some(result))`. Units: as the
/// input (angles in radians for the trigonometric functions, degrees for `deg`'s result).
pub fn eval_math(name: &str, v: f64, params: &[f64]) -> Option<Option<f64>> {
    let r = match name {
        "abs" => v.abs(),
        "ceil" => v.ceil(),
        "floor" => v.floor(),
        "exp" => v.exp(),
        "ln" => go_log(v),
        "log2" => go_log2(v),
        "log10" => go_log10(v),
        "sqrt" => v.sqrt(),
        "sgn" => {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }
        "round" => {
            let to_nearest = params.first().copied().unwrap_or(1.0);
            // Invert as it seems to cause fewer floating point accuracy issues.
            let to_nearest_inverse = 1.0 / to_nearest;
            (v * to_nearest_inverse + 0.5).floor() / to_nearest_inverse
        }
        "clamp" => {
            if params.len() < 2 {
                return None;
            }
            return Some(clamp(v, params[0], params[1]));
        }
        "clamp_min" => return Some(clamp(v, *params.first()?, f64::INFINITY)),
        "clamp_max" => return Some(clamp(v, f64::NEG_INFINITY, *params.first()?)),
        "max_of" => go_max(v, *params.first()?),
        "min_of" => go_min(v, *params.first()?),
        "sin" => v.sin(),
        "cos" => v.cos(),
        "tan" => v.tan(),
        "asin" => v.asin(),
        "acos" => v.acos(),
        "atan" => v.atan(),
        "sinh" => v.sinh(),
        "cosh" => v.cosh(),
        "tanh" => v.tanh(),
        "asinh" => v.asinh(),
        "acosh" => v.acosh(),
        "atanh" => v.atanh(),
        "deg" => v * 180.0 / std::f64::consts::PI,
        "rad" => v * std::f64::consts::PI / 180.0,
        _ => return None,
    };
    Some(Some(r))
}

/// Go's `clamp` helper in `promql/functions.go`.
fn clamp(v: f64, min_val: f64, max_val: f64) -> Option<f64> {
    if max_val < min_val {
        return None;
    }
    Some(go_max(min_val, go_min(max_val, v)))
}

// ---------------------------------------------------------------------------------------------
// Date functions.
// ---------------------------------------------------------------------------------------------

const SECONDS_PER_DAY: i64 = 86_400;
/// Go 1.23+ `time` package: years subtracted to reach the absolute epoch (March 1).
const GO_ABSOLUTE_YEARS: i64 = 292_277_022_400;
/// Go 1.23+ `time` package: days from March 1 through the end of the year.
const GO_MARCH_THRU_DECEMBER: i64 = 306;
/// Go's `internalToAbsolute` (seconds).
const GO_INTERNAL_TO_ABSOLUTE: i64 =
    (GO_ABSOLUTE_YEARS * 365 + GO_ABSOLUTE_YEARS / 400 * 97 + GO_MARCH_THRU_DECEMBER)
        * SECONDS_PER_DAY;
/// Go's `unixToInternal` (seconds).
const GO_UNIX_TO_INTERNAL: i64 =
    (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * SECONDS_PER_DAY;
/// Go's `unixToAbsolute` (seconds).
const GO_UNIX_TO_ABSOLUTE: i64 = GO_UNIX_TO_INTERNAL + GO_INTERNAL_TO_ABSOLUTE;

/// Go's `int64(f)` conversion as compiled for amd64 (`CVTTSD2SQ`): truncation toward zero;
/// NaN, ±Inf and anything outside the int64 range become `math.MinInt64` (the "integer
/// indefinite" value). (arm64 would saturate instead; Prometheus's reference platform is
/// amd64.)
pub fn go_float_to_int64(f: f64) -> i64 {
    // -2^63 is exactly representable; 2^63 is the first value above i64::MAX.
    const LOW: f64 = -9_223_372_036_854_775_808.0;
    const HIGH: f64 = 9_223_372_036_854_775_808.0;
    if (LOW..HIGH).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

/// The UTC civil date/time Go's `time.Unix(sec, 0).UTC()` reports for `sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GoCivil {
    year: i64,
    month: u32,
    day: u32,
    /// 1-based day of the year.
    yday: u32,
    hour: u32,
    minute: u32,
    /// 0 = Sunday.
    weekday: u32,
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → proleptic Gregorian
/// (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Howard Hinnant's `days_from_civil`: proleptic Gregorian date → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// Go's `time.Unix(sec, 0).UTC()` calendar fields. Go computes them from the unsigned
/// "absolute" seconds `uint64(sec + unixToAbsolute)` (wrapping int64 addition), so times
/// before the absolute epoch (only reachable with `sec` near `math.MinInt64`) wrap around
/// by 2^64 seconds; this reproduces that.
fn go_unix_civil(sec: i64) -> GoCivil {
    let abs = sec.wrapping_add(GO_UNIX_TO_ABSOLUTE) as u64;
    let effective = i128::from(abs) - i128::from(GO_UNIX_TO_ABSOLUTE);
    let days = effective.div_euclid(i128::from(SECONDS_PER_DAY)) as i64;
    let sod = effective.rem_euclid(i128::from(SECONDS_PER_DAY)) as i64;
    let (year, month, day) = civil_from_days(days);
    let yday = (days - days_from_civil(year, 1, 1) + 1) as u32;
    GoCivil {
        year,
        month,
        day,
        yday,
        hour: (sod / 3600) as u32,
        minute: (sod % 3600 / 60) as u32,
        // 1970-01-01 was a Thursday (4).
        weekday: (days + 4).rem_euclid(7) as u32,
    }
}

/// Date functions on a timestamp in seconds since the epoch (UTC), as `dateWrapper` and
/// `funcYear` … `funcDaysInMonth` in `promql/functions.go`:
/// `day_of_month` (1–31), `day_of_week` (0 = Sunday … 6), `day_of_year` (1–366),
/// `days_in_month` (28–31), `hour` (0–23), `minute` (0–59), `month` (1–12), `year`.
/// Returns `None` for an unknown name.
///
/// The input is converted as Go's `time.Unix(int64(v), 0).UTC()`: fractional seconds are
/// truncated toward zero; NaN, ±Inf and values outside the int64 range become
/// `math.MinInt64` (amd64 semantics, see [`go_float_to_int64`]), which Go's calendar code
/// wraps to the instant 2^63 s after the epoch — so e.g. `year(NaN)` is `292277026596`,
/// `month(NaN)` 12, `day_of_month(NaN)` 4, `hour(NaN)` 15, `minute(NaN)` 30. The
/// no-argument forms (`year()` = year of the evaluation time) are the caller's job: pass
/// `eval_ts_ms / 1000` (Go uses integer division there).
pub fn eval_date(name: &str, t_seconds: f64) -> Option<f64> {
    let c = go_unix_civil(go_float_to_int64(t_seconds));
    let r = match name {
        "day_of_month" => f64::from(c.day),
        "day_of_week" => f64::from(c.weekday),
        "day_of_year" => f64::from(c.yday),
        "days_in_month" => f64::from(days_in_month(c.year, c.month)),
        "hour" => f64::from(c.hour),
        "minute" => f64::from(c.minute),
        "month" => f64::from(c.month),
        "year" => c.year as f64,
        _ => return None,
    };
    Some(r)
}

// ---------------------------------------------------------------------------------------------
// Aggregations.
// ---------------------------------------------------------------------------------------------

/// An aggregation operator handled by [`AggState`] (`parser.SUM`, … in
/// `promql/engine.go` `(*evaluator).aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggKind {
    /// `sum`: Kahan sum.
    Sum,
    /// `avg`: Kahan-compensated direct mean, switching to the incremental mean on overflow.
    Avg,
    /// `min`: NaN is replaced by any later value; NaN only if all inputs are NaN.
    Min,
    /// `max`: NaN is replaced by any later value; NaN only if all inputs are NaN.
    Max,
    /// `count`: number of inputs.
    Count,
    /// `group`: always 1.
    Group,
    /// `stddev`: population standard deviation (Welford).
    Stddev,
    /// `stdvar`: population variance (Welford).
    Stdvar,
}

impl AggKind {
    /// Looks up an aggregation by its PromQL operator name (`sum`, `avg`, `min`, `max`,
    /// `count`, `group`, `stddev`, `stdvar`; lower case as the parser normalises them).
    pub fn from_name(name: &str) -> Option<AggKind> {
        Some(match name {
            "sum" => AggKind::Sum,
            "avg" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "count" => AggKind::Count,
            "group" => AggKind::Group,
            "stddev" => AggKind::Stddev,
            "stdvar" => AggKind::Stdvar,
            _ => return None,
        })
    }
}

/// Accumulator for one output group of an aggregation at one step, mirroring Go's
/// `groupedAggregation` float fields and the per-operator code in
/// `(*evaluator).aggregation` (`promql/engine.go`). Feed the group's values in input-series
/// order with [`AggState::push`] (the order matters in the last bits, as in Prometheus),
/// then call [`AggState::finish`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggState {
    kind: AggKind,
    seen: bool,
    float_value: f64,
    float_mean: f64,
    float_kahan_c: f64,
    group_count: f64,
    incremental_mean: bool,
}

impl AggState {
    /// An empty accumulator for `kind`.
    pub fn new(kind: AggKind) -> AggState {
        AggState {
            kind,
            seen: false,
            float_value: 0.0,
            float_mean: 0.0,
            float_kahan_c: 0.0,
            group_count: 0.0,
            incremental_mean: false,
        }
    }

    /// The aggregation this accumulator computes.
    pub fn kind(&self) -> AggKind {
        self.kind
    }

    /// True until the first [`push`](AggState::push): Prometheus emits no sample for a group
    /// without inputs.
    pub fn is_empty(&self) -> bool {
        !self.seen
    }

    /// Adds one input value (a float sample; histograms are not supported here).
    pub fn push(&mut self, f: f64) {
        if !self.seen {
            // Initialize this group the first time we see it.
            *self = AggState {
                kind: self.kind,
                seen: true,
                float_value: f,
                float_mean: f,
                float_kahan_c: 0.0,
                group_count: 1.0,
                incremental_mean: false,
            };
            match self.kind {
                AggKind::Stddev | AggKind::Stdvar => {
                    self.float_value = if f.is_nan() || f.is_infinite() {
                        f64::NAN
                    } else {
                        0.0
                    };
                }
                AggKind::Group => self.float_value = 1.0,
                _ => {}
            }
            return;
        }
        match self.kind {
            AggKind::Sum => {
                (self.float_value, self.float_kahan_c) =
                    kahan_sum_inc(f, self.float_value, self.float_kahan_c);
            }
            AggKind::Avg => {
                self.group_count += 1.0;
                if !self.incremental_mean {
                    let (new_v, new_c) = kahan_sum_inc(f, self.float_value, self.float_kahan_c);
                    if !new_v.is_infinite() {
                        // The sum doesn't overflow: continue with the direct mean.
                        self.float_value = new_v;
                        self.float_kahan_c = new_c;
                        return;
                    }
                    // The sum would overflow: revert to incremental calculation of the mean.
                    self.incremental_mean = true;
                    self.float_mean = self.float_value / (self.group_count - 1.0);
                    self.float_kahan_c /= self.group_count - 1.0;
                }
                let q = (self.group_count - 1.0) / self.group_count;
                (self.float_mean, self.float_kahan_c) = kahan_sum_inc(
                    f / self.group_count,
                    q * self.float_mean,
                    q * self.float_kahan_c,
                );
            }
            AggKind::Group => {}
            AggKind::Max => {
                if self.float_value < f || self.float_value.is_nan() {
                    self.float_value = f;
                }
            }
            AggKind::Min => {
                if self.float_value > f || self.float_value.is_nan() {
                    self.float_value = f;
                }
            }
            AggKind::Count => self.group_count += 1.0,
            AggKind::Stddev | AggKind::Stdvar => {
                self.group_count += 1.0;
                let delta = f - self.float_mean;
                self.float_mean += delta / self.group_count;
                self.float_value += delta * (f - self.float_mean);
            }
        }
    }

    /// The aggregated value (unit of the inputs; count for `count`, unit² for `stdvar`).
    /// Returns NaN for an empty group — check [`is_empty`](AggState::is_empty) first, as
    /// Prometheus outputs nothing then.
    pub fn finish(&self) -> f64 {
        if !self.seen {
            return f64::NAN;
        }
        match self.kind {
            AggKind::Avg => {
                if self.incremental_mean {
                    self.float_mean + self.float_kahan_c
                } else {
                    self.float_value / self.group_count + self.float_kahan_c / self.group_count
                }
            }
            AggKind::Count => self.group_count,
            AggKind::Stdvar => self.float_value / self.group_count,
            AggKind::Stddev => (self.float_value / self.group_count).sqrt(),
            AggKind::Sum => self.float_value + self.float_kahan_c,
            AggKind::Min | AggKind::Max | AggKind::Group => self.float_value,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    //! Expected values come from Prometheus's own test scripts
    //! (`/work/shared/promqltest/*.test`, `promql/promqltest/testdata` upstream) unless
    //! marked as hand-computed.

    use super::*;

    const S: i64 = 1000;
    const M: i64 = 60 * S;

    /// promqltest's `a+bxn` expansion: n+1 values `a, a+b, …, a+n*b`.
    fn seq(start: f64, step: f64, n: usize) -> Vec<Option<f64>> {
        (0..=n).map(|i| Some(start + step * i as f64)).collect()
    }

    fn vals(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|x| Some(*x)).collect()
    }

    /// promqltest's `load <interval>`: value i at time i*interval; `None` is `_`.
    fn load(interval_ms: i64, values: &[Option<f64>]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as i64 * interval_ms, v)))
            .collect()
    }

    fn cat(parts: &[Vec<Option<f64>>]) -> Vec<Option<f64>> {
        parts.iter().flatten().copied().collect()
    }

    /// `f(series[range] offset offset)` evaluated at `eval_ms`.
    fn at_offset(
        f: RangeFn,
        series: &[Point],
        eval_ms: i64,
        range_ms: i64,
        offset_ms: i64,
        params: &[f64],
    ) -> Option<f64> {
        let end = eval_ms - offset_ms;
        let start = end - range_ms;
        let pts: Vec<Point> = series
            .iter()
            .filter(|p| p.0 > start && p.0 <= end)
            .copied()
            .collect();
        eval_range(f, &pts, start, end, eval_ms, params)
    }

    fn at(
        f: RangeFn,
        series: &[Point],
        eval_ms: i64,
        range_ms: i64,
        params: &[f64],
    ) -> Option<f64> {
        at_offset(f, series, eval_ms, range_ms, 0, params)
    }

    /// Like promqltest: NaN equals NaN, otherwise relative difference below `eps`
    /// (exactness demanded around zero).
    fn close(got: f64, want: f64, eps: f64) -> bool {
        if got.is_nan() || want.is_nan() {
            return got.is_nan() && want.is_nan();
        }
        if got == want {
            return true;
        }
        if want == 0.0 {
            return got.abs() < eps;
        }
        ((got - want) / want).abs() < eps
    }

    #[track_caller]
    fn assert_close(got: Option<f64>, want: f64) {
        let got = got.expect("expected a sample, got none");
        assert!(close(got, want, 1e-12), "got {got:?}, want {want:?}");
    }

    #[track_caller]
    fn assert_exact(got: Option<f64>, want: f64) {
        let got = got.expect("expected a sample, got none");
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "got {got:?}, want exactly {want:?}"
        );
    }

    #[test]
    fn names_round_trip() {
        for f in RangeFn::ALL {
            assert_eq!(RangeFn::from_name(f.name()), Some(f));
        }
        assert_eq!(
            RangeFn::from_name("holt_winters"),
            Some(RangeFn::DoubleExponentialSmoothing)
        );
        assert_eq!(
            RangeFn::from_name("ts_of_max_over_time"),
            Some(RangeFn::TsOfMaxOverTime)
        );
        assert_eq!(RangeFn::from_name("nope"), None);
        assert_eq!(RangeFn::QuantileOverTime.num_params(), 1);
        assert_eq!(RangeFn::DoubleExponentialSmoothing.num_params(), 2);
        assert_eq!(RangeFn::Rate.num_params(), 0);
        assert_eq!(AggKind::from_name("stdvar"), Some(AggKind::Stdvar));
        assert_eq!(AggKind::from_name("quantile"), None);
    }

    #[test]
    fn kahan() {
        // 1 + 1e100 + 1 - 1e100 = 2 (functions.test "very big intermediate values").
        let (mut s, mut c) = (0.0, 0.0);
        for v in [1.0, 1e100, 1.0, -1e100] {
            (s, c) = kahan_sum_inc(v, s, c);
        }
        assert_eq!(s + c, 2.0);
        // Overflow resets the compensation.
        assert_eq!(kahan_sum_inc(f64::MAX, f64::MAX, 5.0), (f64::INFINITY, 0.0));
    }

    #[test]
    fn go_min_max() {
        assert!(go_max(f64::NAN, 3.0).is_nan());
        assert!(go_min(3.0, f64::NAN).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert!(go_min(0.0, -0.0).is_sign_negative());
        assert_eq!(go_max(-2.0, -5.0), -2.0);
        assert_eq!(go_min(-2.0, -5.0), -5.0);
        // functions.test min_of / max_of.
        assert_exact(eval_math("min_of", 3.0, &[5.0]).unwrap(), 3.0);
        assert_exact(eval_math("max_of", 3.0, &[5.0]).unwrap(), 5.0);
        assert_exact(eval_math("max_of", f64::NAN, &[3.0]).unwrap(), f64::NAN);
    }

    // --- rate / increase / delta -------------------------------------------------------

    #[test]
    fn increase_extrapolation() {
        let foo = load(5 * M, &seq(0.0, 10.0, 10));
        let bar = load(5 * M, &cat(&[seq(0.0, 18.0, 5), seq(0.0, 18.0, 5)]));
        let dings = load(5 * M, &seq(10.0, 10.0, 10));
        let bumms = load(5 * M, &seq(1.0, 10.0, 10));
        let inc = RangeFn::Increase;
        assert_close(at(inc, &foo, 50 * M, 50 * M, &[]), 100.0);
        assert_close(at(inc, &bar, 50 * M, 50 * M, &[]), 160.0);
        assert_close(at(inc, &dings, 50 * M, 50 * M, &[]), 100.0);
        assert_close(at(inc, &bumms, 50 * M, 50 * M, &[]), 100.0);
        assert_close(at(inc, &foo, 50 * M, 100 * M, &[]), 100.0);
        assert_close(at(inc, &bar, 50 * M, 100 * M, &[]), 162.0);
        assert_close(at(inc, &dings, 50 * M, 100 * M, &[]), 105.0);
        assert_close(at(inc, &bumms, 50 * M, 100 * M, &[]), 101.0);

        // Counter reset: 0 1 2 3 2 3 4 → 7.
        let reset = load(5 * M, &vals(&[0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0]));
        assert_close(at(inc, &reset, 30 * M, 30 * M, &[]), 7.0);
    }

    #[test]
    fn a_window_without_resets_rates_the_same_without_the_scan() {
        // Counters rising by 1.5 every 10 s (jittered), windows of 60 s at several ends.
        let points: Vec<Point> = (0..40)
            .map(|i| (i * 10_000 + (i * 7919) % 900, 100.0 + i as f64 * 1.5))
            .collect();
        for end in [60_000, 95_000, 200_000, 391_000] {
            let start = end - 60_000;
            let lo = points.partition_point(|p| p.0 <= start);
            let hi = points.partition_point(|p| p.0 <= end);
            let w = &points[lo..hi];
            for (f, is_rate) in [(RangeFn::Rate, true), (RangeFn::Increase, false)] {
                let scanned = eval_range(f, w, start, end, end, &[]).unwrap();
                let direct = counter_increase_without_resets(w, start, end, is_rate).unwrap();
                assert_eq!(scanned.to_bits(), direct.to_bits(), "{f:?} at {end}");
            }
        }
        // With a reset the scan adds the value before it: the two differ, so callers use
        // this only for windows they know hold none.
        let reset = [(0, 5.0), (10_000, 8.0), (20_000, 1.0), (30_000, 4.0)];
        let scanned = eval_range(RangeFn::Increase, &reset, 0, 30_000, 30_000, &[]).unwrap();
        let direct = counter_increase_without_resets(&reset, 0, 30_000, false).unwrap();
        assert!(scanned > direct, "{scanned} {direct}");
    }

    #[test]
    fn rate_cases() {
        let rate = RangeFn::Rate;
        let middle = load(5 * M, &cat(&[seq(0.0, 27.0, 4), seq(0.0, 27.0, 5)]));
        assert_close(at(rate, &middle, 50 * M, 50 * M, &[]), 0.08);

        let end = load(5 * M, &cat(&[seq(0.0, 10.0, 9), vals(&[0.0, 10.0])]));
        assert_eq!(at(rate, &end, 50 * M, 5 * M, &[]), None);
        assert_close(at(rate, &end, 50 * M, 6 * M, &[]), 0.0);

        let window = load(5 * M, &seq(0.0, 80.0, 10));
        assert_close(at(rate, &window, 50 * M, 50 * M, &[]), 0.26666666666666666);

        let a = load(5 * M, &seq(0.0, 10.0, 10));
        let b = load(5 * M, &seq(0.0, 20.0, 10));
        assert_close(
            at_offset(rate, &a, 50 * M, 10 * M, 5 * M, &[]),
            0.03333333333333333,
        );
        assert_close(
            at_offset(rate, &b, 50 * M, 10 * M, 5 * M, &[]),
            0.06666666666666667,
        );
    }

    #[test]
    fn rate_zero_cutoff() {
        let want_10m = [0.5, 0.55, 0.6, 0.6, 0.6, 0.6];
        for (i, want) in want_10m.iter().enumerate() {
            let s = load(4 * M, &seq(60.0 * i as f64, 240.0, 10));
            assert_close(at(RangeFn::Rate, &s, 10 * M, 20 * M, &[]), *want);
            assert_close(at(RangeFn::Rate, &s, 50 * M, 20 * M, &[]), 0.6);
        }
    }

    #[test]
    fn delta_cases() {
        let foo = load(5 * M, &vals(&[0.0, 50.0, 100.0, 150.0, 200.0]));
        let bar = load(5 * M, &vals(&[200.0, 150.0, 100.0, 50.0, 0.0]));
        assert_close(at(RangeFn::Delta, &foo, 20 * M, 20 * M, &[]), 200.0);
        assert_close(at(RangeFn::Delta, &bar, 20 * M, 20 * M, &[]), -200.0);
        // One sample: no output.
        assert_eq!(at(RangeFn::Delta, &foo, 20 * M, 5 * M, &[]), None);
    }

    #[test]
    fn duration_seconds_like_go() {
        assert_eq!(go_duration_seconds(90_500), 90.5);
        assert_eq!(go_duration_seconds(1), 0.001);
        assert_eq!(go_duration_seconds(-1500), -1.5);
    }

    // --- irate / idelta ------------------------------------------------------------------

    #[test]
    fn irate_idelta() {
        let foo = load(5 * M, &seq(0.0, 10.0, 10));
        let bar = load(5 * M, &cat(&[seq(0.0, 10.0, 5), seq(0.0, 10.0, 5)]));
        assert_close(at(RangeFn::Irate, &foo, 50 * M, 50 * M, &[]), 10.0 / 300.0);
        assert_close(at(RangeFn::Irate, &bar, 50 * M, 50 * M, &[]), 10.0 / 300.0);
        assert_close(at(RangeFn::Irate, &bar, 30 * M, 50 * M, &[]), 0.0);

        // range from 0 to 20m step 5m irate(http_requests_nan[15m1s]) → _ NaN NaN NaN 0.02
        let nan = load(5 * M, &vals(&[1.0, f64::NAN, f64::NAN, 5.0, 11.0]));
        let r = 15 * M + S;
        assert_eq!(at(RangeFn::Irate, &nan, 0, r, &[]), None);
        assert!(at(RangeFn::Irate, &nan, 5 * M, r, &[]).unwrap().is_nan());
        assert!(at(RangeFn::Irate, &nan, 10 * M, r, &[]).unwrap().is_nan());
        assert!(at(RangeFn::Irate, &nan, 15 * M, r, &[]).unwrap().is_nan());
        assert_close(at(RangeFn::Irate, &nan, 20 * M, r, &[]), 0.02);
        // idelta of the same: _ NaN NaN NaN 6
        assert!(at(RangeFn::Idelta, &nan, 15 * M, r, &[]).unwrap().is_nan());
        assert_close(at(RangeFn::Idelta, &nan, 20 * M, r, &[]), 6.0);

        let a = load(5 * M, &vals(&[0.0, 50.0, 100.0, 150.0]));
        let b = load(5 * M, &vals(&[0.0, 50.0, 100.0, 50.0]));
        assert_close(at(RangeFn::Idelta, &a, 20 * M, 20 * M, &[]), 50.0);
        assert_close(at(RangeFn::Idelta, &b, 20 * M, 20 * M, &[]), -50.0);

        // Same timestamp: no output.
        assert_eq!(
            eval_range(RangeFn::Irate, &[(5, 1.0), (5, 2.0)], 0, 10, 10, &[]),
            None
        );
    }

    // --- resets / changes ----------------------------------------------------------------

    #[test]
    fn resets_and_changes() {
        let foo = load(
            5 * M,
            &vals(&[1.0, 2.0, 3.0, 0.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.0]),
        );
        let bar = load(
            5 * M,
            &vals(&[1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
        );
        let biz = load(
            5 * M,
            &vals(&[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        );
        let r = RangeFn::Resets;
        assert_eq!(at(r, &foo, 50 * M, 5 * M, &[]), None);
        for range in [10 * M, 600 * S] {
            assert_eq!(at(r, &foo, 50 * M, range, &[]), Some(0.0));
        }
        assert_eq!(at(r, &foo, 50 * M, 20 * M, &[]), Some(1.0));
        assert_eq!(at(r, &foo, 50 * M, 30 * M, &[]), Some(1.0));
        assert_eq!(at(r, &foo, 50 * M, 32 * M, &[]), Some(2.0));
        assert_eq!(at(r, &bar, 50 * M, 32 * M, &[]), Some(1.0));
        assert_eq!(at(r, &biz, 50 * M, 32 * M, &[]), Some(0.0));
        assert_eq!(at(r, &foo, 50 * M, 50 * M, &[]), Some(3.0));
        assert_eq!(at(r, &bar, 50 * M, 50 * M, &[]), Some(1.0));

        let c = RangeFn::Changes;
        assert_eq!(at(c, &foo, 50 * M, 5 * M, &[]), None);
        assert_eq!(at(c, &foo, 50 * M, 6 * M, &[]), Some(0.0));
        assert_eq!(at(c, &foo, 50 * M, 20 * M, &[]), Some(2.0));
        assert_eq!(at(c, &bar, 50 * M, 20 * M, &[]), Some(2.0));
        assert_eq!(at(c, &foo, 50 * M, 30 * M, &[]), Some(3.0));
        assert_eq!(at(c, &bar, 50 * M, 30 * M, &[]), Some(4.0));
        assert_eq!(at(c, &foo, 50 * M, 50 * M, &[]), Some(7.0));
        assert_eq!(at(c, &bar, 50 * M, 50 * M, &[]), Some(8.0));
        assert_eq!(at(c, &biz, 50 * M, 50 * M, &[]), Some(1.0));

        let nan = f64::NAN;
        let xb = load(5 * M, &vals(&[nan, nan, nan]));
        let xc = load(5 * M, &vals(&[0.0, nan, 0.0]));
        assert_eq!(at(c, &xb, 15 * M, 20 * M, &[]), Some(0.0));
        assert_eq!(at(c, &xc, 15 * M, 20 * M, &[]), Some(2.0));
    }

    // --- deriv / predict_linear ----------------------------------------------------------

    #[test]
    fn deriv_and_predict_linear() {
        let middle = load(5 * M, &cat(&[seq(0.0, 10.0, 4), seq(0.0, 10.0, 5)]));
        let reqs = load(5 * M, &seq(0.0, 80.0, 10));
        assert_close(
            at(RangeFn::Deriv, &reqs, 50 * M, 50 * M, &[]),
            0.26666666666666666,
        );
        assert_close(
            at(RangeFn::Deriv, &middle, 50 * M, 100 * M, &[]),
            0.010606060606060607,
        );

        let pl = RangeFn::PredictLinear;
        assert_close(at(pl, &middle, 50 * M, 50 * M, &[3600.0]), 70.0);
        // `@ 3000`: the window ends at 3000 s; the intercept is at the evaluation time.
        let at3000 = |eval_ms: i64| {
            let end = 3000 * S;
            let start = end - 55 * M;
            let pts: Vec<Point> = middle
                .iter()
                .filter(|p| p.0 > start && p.0 <= end)
                .copied()
                .collect();
            eval_range(pl, &pts, start, end, eval_ms, &[3600.0])
        };
        assert_close(at3000(50 * M), 76.81818181818181);
        assert_close(at3000(10 * M), 51.36363636363637);
        assert_close(at3000(70 * M), 89.54545454545455);
        // No parameter → no output.
        assert_eq!(at(pl, &middle, 50 * M, 50 * M, &[]), None);

        // ±Inf samples → NaN.
        let inf = load(
            5 * M,
            &cat(&[
                vals(&[f64::NEG_INFINITY]),
                seq(0.0, 80.0, 10),
                vals(&[f64::INFINITY]),
            ]),
        );
        assert!(
            at(RangeFn::Deriv, &inf, 100 * M, 100 * M, &[])
                .unwrap()
                .is_nan()
        );
        assert!(at(pl, &inf, 100 * M, 100 * M, &[6000.0]).unwrap().is_nan());

        // predict_linear(x[50m], 3600) - (x + deriv(x[50m]) * 3600) == 0 (hand-checked
        // identity from functions.test).
        let p = at(pl, &reqs, 50 * M, 50 * M, &[3600.0]).unwrap();
        let d = at(RangeFn::Deriv, &reqs, 50 * M, 50 * M, &[]).unwrap();
        assert!((p - (800.0 + d * 3600.0)).abs() < 1e-9);

        // Constant series: slope 0; a single sample: nothing.
        assert_exact(
            eval_range(
                RangeFn::Deriv,
                &[(0, 3.0), (1000, 3.0)],
                -1,
                1000,
                1000,
                &[],
            ),
            0.0,
        );
        assert_eq!(
            eval_range(RangeFn::Deriv, &[(0, 3.0)], -1, 1000, 1000, &[]),
            None
        );
    }

    // --- double_exponential_smoothing ------------------------------------------------------

    #[test]
    fn double_exponential_smoothing_cases() {
        let des = RangeFn::DoubleExponentialSmoothing;
        let p = [0.01, 0.1];
        let positive = [
            (cat(&[seq(0.0, 10.0, 1000), seq(100.0, 30.0, 1000)]), 8000.0),
            (
                cat(&[seq(0.0, 20.0, 1000), seq(200.0, 30.0, 1000)]),
                16000.0,
            ),
            (
                cat(&[seq(0.0, 30.0, 1000), seq(300.0, 80.0, 1000)]),
                24000.0,
            ),
            (seq(0.0, 40.0, 2000), 32000.0),
        ];
        for (v, want) in &positive {
            let s = load(10 * S, v);
            let got = at(des, &s, 8000 * S, M, &p).unwrap();
            assert!(close(got, *want, 1e-6), "got {got}, want {want}");
        }
        // After the switch to the second segment (http_requests_mix at 20010s).
        let positive_late = [30100.0, 30200.0, 80300.0, 80000.0];
        for ((v, _), want) in positive.iter().zip(positive_late) {
            let s = load(10 * S, v);
            let got = at(des, &s, 20010 * S, M, &p).unwrap();
            assert!(close(got, want, 1e-6), "got {got}, want {want}");
        }
        let negative = [
            (seq(8000.0, -10.0, 1000), 0.0),
            (seq(0.0, -20.0, 1000), -16000.0),
            (
                cat(&[seq(0.0, 30.0, 1000), seq(300.0, -80.0, 1000)]),
                24000.0,
            ),
            (
                cat(&[seq(0.0, -40.0, 1000), seq(0.0, 40.0, 1000)]),
                -32000.0,
            ),
        ];
        for (v, want) in &negative {
            let s = load(10 * S, v);
            let got = at(des, &s, 8000 * S, M, &p).unwrap();
            assert!(close(got, *want, 1e-6), "got {got}, want {want}");
        }

        // Invalid factors: no sample here, and an error from validate_params.
        let s = load(10 * S, &seq(0.0, 10.0, 10));
        for bad in [[0.0, 0.5], [1.0, 0.5], [0.5, 0.0], [0.5, 1.5]] {
            assert_eq!(at(des, &s, 100 * S, M, &bad), None);
            assert!(des.validate_params(&bad).is_err());
        }
        assert_eq!(
            des.validate_params(&[1.0, 0.5]).unwrap_err(),
            "invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"
        );
        assert_eq!(
            des.validate_params(&[0.5, f64::INFINITY]).unwrap_err(),
            "invalid trend factor. Expected: 0 < tf < 1, got: +Inf"
        );
        // NaN passes Go's check and poisons the result.
        assert!(des.validate_params(&[f64::NAN, 0.5]).is_ok());
        assert!(at(des, &s, 100 * S, M, &[f64::NAN, 0.5]).unwrap().is_nan());
        assert!(RangeFn::Rate.validate_params(&[]).is_ok());
        // Fewer than two samples.
        assert_eq!(eval_range(des, &[(0, 1.0)], -1, 0, 0, &p), None);
    }

    // --- *_over_time -----------------------------------------------------------------------

    #[test]
    fn avg_and_sum_over_time() {
        let inf = f64::INFINITY;
        let ninf = f64::NEG_INFINITY;
        let nan = f64::NAN;
        let big = 9.98846567431158e307;
        let cases: [(&[f64], f64, f64); 14] = [
            // (values, avg_over_time, sum/count)
            (&[1.0, 2.0, 3.0, 4.0, 5.0], 3.0, 3.0),
            (&[1.0, 2.0, 3.0, 4.0, inf], inf, inf),
            (&[1.0, 2.0, 3.0, 4.0, ninf], ninf, ninf),
            (&[1.0, 2.0, 3.0, inf, ninf], nan, nan),
            (&[inf, 0.0, inf], inf, inf),
            (&[inf, inf, inf, ninf], nan, nan),
            (&[1.0, 2.0, 3.0, ninf, ninf], ninf, ninf),
            (&[ninf, 0.0, ninf], ninf, ninf),
            (&[ninf, ninf, ninf, inf], nan, nan),
            (&[1.0, 2.0, ninf, ninf, inf], nan, nan),
            (&[big, big], big, inf),
            (&[-big, -big, -big], -big, ninf),
            (&[-big, big], 0.0, 0.0),
            (&[1.0, 2.0, 3.0, nan, nan], nan, nan),
        ];
        for (v, want_avg, want_sum_count) in &cases {
            let s = load(10 * S, &vals(v));
            let avg = at(RangeFn::AvgOverTime, &s, 55 * S, M, &[]);
            assert_close(avg, *want_avg);
            let sum = at(RangeFn::SumOverTime, &s, 55 * S, M, &[]).unwrap();
            let count = at(RangeFn::CountOverTime, &s, 55 * S, M, &[]).unwrap();
            assert_close(Some(sum / count), *want_sum_count);
        }
        let m = load(10 * S, &vals(&[1.0, 2.0, 3.0, 4.0, 5.0]));
        assert_eq!(at(RangeFn::AvgOverTime, &m, 55 * S, 10 * S, &[]), None);
        assert_close(at(RangeFn::AvgOverTime, &m, 55 * S, 20 * S, &[]), 5.0);
        let m11 = load(10 * S, &vals(&[1.0, 2.0, 3.0, nan, nan]));
        assert_close(at(RangeFn::AvgOverTime, &m11, 20 * S, M, &[]), 2.0);
        assert_close(at(RangeFn::AvgOverTime, &m11, 30 * S, M, &[]), nan);

        let big_small = load(10 * S, &vals(&[1.0, 1e100, 1.0, -1e100]));
        assert_exact(at(RangeFn::SumOverTime, &big_small, M, 2 * M, &[]), 2.0);
        assert_exact(at(RangeFn::AvgOverTime, &big_small, M, 2 * M, &[]), 0.5);

        // Extreme values (load 5s, eval at 55s over 1m).
        let extreme: [(&[f64], f64); 11] = [
            (&[1e10, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6], 1.6666666666666675e9),
            (
                &[
                    5.30921651659898,
                    0.961118537914768,
                    1.62091361305318,
                    0.865089463758091,
                    0.323055185914577,
                    0.951811357687154,
                ],
                1.67186744582113,
            ),
            (
                &[1.78264e50, 0.76342771, 1.9592258, 7.69805412, 458.90154],
                3.56528e49,
            ),
            (
                &[0.76342771, 1.9592258, 7.69805412, 1.78264e50, 458.90154],
                3.56528e49,
            ),
            (
                &[
                    1.78264e50, 0.76342771, 1.9592258, 2.258e220, 7.69805412, 458.90154,
                ],
                3.76333333333333e219,
            ),
            (
                &[
                    -1.78264e50,
                    0.76342771,
                    1.9592258,
                    2.258e220,
                    7.69805412,
                    -458.90154,
                ],
                3.76333333333333e219,
            ),
            (
                &[
                    -1.78264e50,
                    0.76342771,
                    1.9592258,
                    -2.258e220,
                    7.69805412,
                    -458.90154,
                ],
                -3.76333333333333e219,
            ),
            (
                &[
                    -1.78264e215,
                    0.76342771,
                    1.9592258,
                    2.258e220,
                    7.69805412,
                    -458.90154,
                ],
                3.76330362266667e219,
            ),
            (
                &[
                    -1.78264e215,
                    0.76342771,
                    1.9592258,
                    2.258e220,
                    7.69805412,
                    1.78264e215,
                    -458.90154,
                ],
                3.225714285714286e219,
            ),
            (
                &[
                    -1.78264e219,
                    0.76342771,
                    1.9592258,
                    2.3757689e217,
                    -2.3757689e217,
                    2.258e220,
                    7.69805412,
                    1.78264e219,
                    -458.90154,
                ],
                2.5088888888888888e219,
            ),
            // Kahan cannot cope here; Prometheus documents the result 0.
            (
                &[
                    -2.258e220,
                    -1.78264e219,
                    0.76342771,
                    1.9592258,
                    2.3757689e217,
                    -2.3757689e217,
                    2.258e220,
                    7.69805412,
                    1.78264e219,
                    -458.90154,
                ],
                0.0,
            ),
        ];
        for (v, want) in extreme {
            let s = load(5 * S, &vals(v));
            let got = at(RangeFn::AvgOverTime, &s, 55 * S, M, &[]).unwrap();
            assert!(close(got, want, 1e-13), "got {got:e}, want {want:e}");
        }

        // 52+0x100: the mean is exactly 52.
        let foo = load(10 * S, &seq(52.0, 0.0, 100));
        for r in [100 * S, 110 * S, 120 * S, 130 * S] {
            assert_exact(at(RangeFn::AvgOverTime, &foo, 10 * M, r, &[]), 52.0);
        }

        // Dense samples: 1+0x4000 at 1ms.
        let dense = load(1, &seq(1.0, 0.0, 4000));
        for r in [
            1000, 1001, 1002, 1003, 2000, 2001, 2002, 2003, 3000, 3001, 3002, 3003,
        ] {
            assert_exact(at(RangeFn::SumOverTime, &dense, 4 * S, r, &[]), r as f64);
        }
    }

    #[test]
    fn min_max_first_last_count_over_time() {
        let nan = f64::NAN;
        let data = [
            (&[2.0, 0.0, 3.0], 0.0, 3.0, 2.0, 3.0),
            (&[2.0, 0.0, nan], 0.0, 2.0, 2.0, nan),
            (&[2.0, nan, 1.0], 1.0, 2.0, 2.0, 1.0),
            (&[nan, 0.0, 1.0], 0.0, 1.0, nan, 1.0),
            (&[nan, nan, nan], nan, nan, nan, nan),
        ];
        for (v, min, max, first, last) in data {
            let s = load(10 * S, &vals(v));
            assert_close(at(RangeFn::MinOverTime, &s, M, 2 * M, &[]), min);
            assert_close(at(RangeFn::MaxOverTime, &s, M, 2 * M, &[]), max);
            assert_close(at(RangeFn::FirstOverTime, &s, M, 2 * M, &[]), first);
            assert_close(at(RangeFn::LastOverTime, &s, M, 2 * M, &[]), last);
            assert_eq!(at(RangeFn::CountOverTime, &s, M, 2 * M, &[]), Some(3.0));
            assert_eq!(at(RangeFn::PresentOverTime, &s, M, 2 * M, &[]), Some(1.0));
        }
        let sparse = load(10 * S, &[None, Some(5.0), Some(2.0), None, Some(4.0), None]);
        assert_eq!(at(RangeFn::MinOverTime, &sparse, M, 2 * M, &[]), Some(2.0));
        assert_eq!(at(RangeFn::MaxOverTime, &sparse, M, 2 * M, &[]), Some(5.0));
        assert_eq!(at(RangeFn::LastOverTime, &sparse, M, 2 * M, &[]), Some(4.0));
        assert_eq!(
            at(RangeFn::FirstOverTime, &sparse, M, 2 * M, &[]),
            Some(5.0)
        );
        assert_eq!(
            at(RangeFn::CountOverTime, &sparse, M, 2 * M, &[]),
            Some(3.0)
        );
        assert_eq!(at(RangeFn::PresentOverTime, &sparse, M, 10 * S, &[]), None);
        assert_eq!(
            at(RangeFn::AbsentOverTime, &sparse, M, 2 * M, &[]),
            Some(1.0)
        );
    }

    #[test]
    fn stddev_stdvar_over_time() {
        let s = load(10 * S, &vals(&[0.0, 8.0, 8.0, 2.0, 3.0]));
        assert_close(at(RangeFn::StdvarOverTime, &s, M, 2 * M, &[]), 10.56);
        let sd = at(RangeFn::StddevOverTime, &s, M, 2 * M, &[]).unwrap();
        assert!(close(sd, 3.249615, 1e-6), "{sd}");

        // #4927: identical values give exactly 0.
        let v = 1.5990505637277868;
        let c = load(10 * S, &vals(&[v, v, v]));
        assert_exact(at(RangeFn::StdvarOverTime, &c, 55 * S, M, &[]), 0.0);
        assert_exact(at(RangeFn::StddevOverTime, &c, 55 * S, M, &[]), 0.0);

        // The float part of a mixed range: 1 1 1 → 0.
        let ones = load(10 * S, &vals(&[1.0, 1.0, 1.0]));
        assert_exact(at(RangeFn::StddevOverTime, &ones, M, 2 * M, &[]), 0.0);
    }

    #[test]
    fn quantile_over_time_cases() {
        let two = load(10 * S, &vals(&[0.0, 1.0]));
        let three = load(10 * S, &vals(&[0.0, 1.0, 2.0]));
        let uneven = load(10 * S, &vals(&[0.0, 1.0, 4.0]));
        let q = RangeFn::QuantileOverTime;
        let table = [
            (0.0, [0.0, 0.0, 0.0]),
            (0.5, [0.5, 1.0, 1.0]),
            (0.75, [0.75, 1.5, 2.5]),
            (0.8, [0.8, 1.6, 2.8]),
            (1.0, [1.0, 2.0, 4.0]),
            (-1.0, [f64::NEG_INFINITY; 3]),
            (2.0, [f64::INFINITY; 3]),
        ];
        for (phi, want) in table {
            for (s, w) in [&two, &three, &uneven].into_iter().zip(want) {
                assert_close(at(q, s, M, 2 * M, &[phi]), w);
            }
        }
        assert!(at(q, &two, M, 2 * M, &[f64::NAN]).unwrap().is_nan());
        assert_eq!(at(q, &two, M, 2 * M, &[]), None);
        // Mixed range: only the floats 0 1 2 count.
        assert_close(at(q, &three, M, 2 * M, &[0.5]), 1.0);
    }

    #[test]
    fn mad_over_time_cases() {
        let mad = RangeFn::MadOverTime;
        let m = load(10 * S, &vals(&[4.0, 6.0, 2.0, 1.0, 999.0, 1.0, 2.0]));
        assert_exact(at(mad, &m, 70 * S, 70 * S, &[]), 1.0);
        let odd = load(10 * S, &vals(&[1.0, 2.0, 3.0, 4.0, 5.0]));
        assert_exact(at(mad, &odd, 40 * S, 50 * S, &[]), 1.0);
        let equal = load(10 * S, &vals(&[7.0; 5]));
        assert_exact(at(mad, &equal, 40 * S, 50 * S, &[]), 0.0);
        let single = load(10 * S, &vals(&[5.0]));
        assert_exact(at(mad, &single, 0, 10 * S, &[]), 0.0);
        let nan = load(10 * S, &vals(&[1.0, 2.0, f64::NAN, 4.0]));
        assert!(at(mad, &nan, 30 * S, 40 * S, &[]).unwrap().is_nan());
    }

    #[test]
    fn ts_of_functions() {
        // load 10s53ms: odd interval to catch rounding bugs.
        let iv = 10 * S + 53;
        let m = load(iv, &vals(&[1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 2.0, 1.0, 4.0]));
        assert_exact(
            at(RangeFn::TsOfMinOverTime, &m, 90 * S, 90 * S, &[]),
            30.159,
        );
        assert_exact(
            at(RangeFn::TsOfMaxOverTime, &m, 90 * S, 90 * S, &[]),
            50.265,
        );

        let last = load(iv, &[Some(1.0), Some(2.0), Some(3.0), None, None]);
        assert_exact(
            at(RangeFn::TsOfLastOverTime, &last, 90 * S, 90 * S, &[]),
            20.106,
        );
        assert_exact(
            at(RangeFn::TsOfLastOverTime, &last, 95 * S, 90 * S, &[]),
            20.106,
        );

        let first = load(
            iv,
            &[None, None, Some(1.0), Some(2.0), Some(3.0), None, None],
        );
        assert_exact(
            at(RangeFn::TsOfFirstOverTime, &first, 90 * S, 90 * S, &[]),
            20.106,
        );
        assert_exact(
            at(RangeFn::TsOfFirstOverTime, &first, 95 * S, 90 * S, &[]),
            20.106,
        );
        assert_eq!(
            at(RangeFn::TsOfFirstOverTime, &first, 15 * S, 90 * S, &[]),
            None
        );

        // Ties: ts_of_max/min pick the *last* extreme (>= / <=); hand-checked.
        let ties = [(1000, 5.0), (2000, 1.0), (3000, 5.0), (4000, 1.0)];
        assert_exact(
            eval_range(RangeFn::TsOfMaxOverTime, &ties, 0, 4000, 4000, &[]),
            3.0,
        );
        assert_exact(
            eval_range(RangeFn::TsOfMinOverTime, &ties, 0, 4000, 4000, &[]),
            4.0,
        );
    }

    // --- quantile / histogram_quantile -------------------------------------------------------

    #[test]
    fn quantile_function() {
        // aggregators.test: quantile without(point)(…, data).
        let cases: [(&[f64], [f64; 2]); 4] = [
            (&[0.0, 1.0], [0.8, 0.2]),
            (&[0.0, 1.0, 2.0], [1.6, 0.4]),
            (&[0.0, 1.0, 4.0], [2.8, 0.4]),
            (&[0.0, 1.0, f64::NAN], [0.6, f64::NAN]),
        ];
        for (v, [q80, q20]) in cases {
            assert_close(Some(quantile(0.8, &mut v.to_vec())), q80);
            assert_close(Some(quantile(0.2, &mut v.to_vec())), q20);
            assert!(quantile(f64::NAN, &mut v.to_vec()).is_nan());
        }
        assert!(quantile(0.5, &mut []).is_nan());
        assert_eq!(quantile(-0.1, &mut [1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(1.1, &mut [1.0]), f64::INFINITY);
        let mut v = [3.0, 1.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.0);
        assert_eq!(v, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn bucket_quantile_function() {
        let inf = f64::INFINITY;
        // Hand-computed: 100 observations; 0.5 → rank 50 in (0.1, 0.5]: 0.1 + 0.4*(20/40).
        let base = vec![(0.1, 30.0), (0.5, 70.0), (1.0, 90.0), (inf, 100.0)];
        let mut b = base.clone();
        assert_eq!(bucket_quantile(0.5, &mut b), (0.30000000000000004, false));
        // Unsorted input gives the same result.
        let mut b = vec![(inf, 100.0), (1.0, 90.0), (0.1, 30.0), (0.5, 70.0)];
        assert_eq!(bucket_quantile(0.5, &mut b).0, 0.30000000000000004);
        // Lowest bucket interpolates from 0.
        let mut b = base.clone();
        assert_close(Some(bucket_quantile(0.15, &mut b).0), 0.05);
        // Rank in the +Inf bucket → the second-highest bound.
        let mut b = base.clone();
        assert_eq!(bucket_quantile(0.99, &mut b).0, 1.0);
        // Lowest bound ≤ 0 is returned as is.
        let mut b = vec![(-1.0, 10.0), (1.0, 20.0), (inf, 20.0)];
        assert_eq!(bucket_quantile(0.1, &mut b).0, -1.0);
        // Special cases.
        let mut b = base.clone();
        assert!(bucket_quantile(f64::NAN, &mut b).0.is_nan());
        assert_eq!(bucket_quantile(-1.0, &mut b.clone()).0, f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, &mut b.clone()).0, f64::INFINITY);
        let mut no_inf = vec![(0.1, 1.0), (1.0, 2.0)];
        assert!(bucket_quantile(0.5, &mut no_inf).0.is_nan());
        let mut only_inf = vec![(inf, 5.0)];
        assert!(bucket_quantile(0.5, &mut only_inf).0.is_nan());
        let mut empty_obs = vec![(1.0, 0.0), (inf, 0.0)];
        assert!(bucket_quantile(0.5, &mut empty_obs).0.is_nan());
        assert!(bucket_quantile(0.5, &mut Vec::new()).0.is_nan());
        // Duplicate bounds are coalesced: (1, 5) + (1, 5) → (1, 10).
        let mut dup = vec![(1.0, 5.0), (1.0, 5.0), (inf, 10.0)];
        assert_eq!(bucket_quantile(0.5, &mut dup), (0.5, false));
        assert_eq!(dup.len(), 2);
        // Non-monotonic counts are fixed and reported.
        let mut nm = vec![(1.0, 10.0), (2.0, 5.0), (inf, 10.0)];
        assert_eq!(bucket_quantile(0.5, &mut nm), (0.5, true));
        // Tiny relative differences are ignored without being reported.
        let mut tiny = vec![(1.0, 10.0), (2.0, 10.0 - 1e-14), (inf, 10.0)];
        assert_eq!(bucket_quantile(0.5, &mut tiny), (0.5, false));
    }

    // --- instant math ------------------------------------------------------------------------

    fn math(name: &str, v: f64, params: &[f64]) -> f64 {
        eval_math(name, v, params).unwrap().unwrap()
    }

    #[test]
    fn abs_ceil_floor_round() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let inputs = [2.5, 2.0, -2.5, -2.0, 0.0, -0.0, inf, -inf, nan];
        let abs = [2.5, 2.0, 2.5, 2.0, 0.0, 0.0, inf, inf, nan];
        let ceil = [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, inf, -inf, nan];
        let floor = [2.0, 2.0, -3.0, -2.0, 0.0, 0.0, inf, -inf, nan];
        let round = [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, inf, -inf, nan];
        for (i, v) in inputs.iter().enumerate() {
            assert_close(Some(math("abs", *v, &[])), abs[i]);
            assert_close(Some(math("ceil", *v, &[])), ceil[i]);
            assert_close(Some(math("floor", *v, &[])), floor[i]);
            assert_close(Some(math("round", *v, &[])), round[i]);
        }
        // round(v, to_nearest), hand-computed with Go's formula.
        assert_eq!(math("round", 1.24, &[0.1]), 1.2);
        assert_eq!(math("round", 1.25, &[0.5]), 1.5);
        assert_eq!(math("round", 17.0, &[5.0]), 15.0);
        assert_eq!(math("round", -2.5, &[1.0]), -2.0);
    }

    #[test]
    fn clamp_family() {
        let nan = f64::NAN;
        let data = [-50.0, 0.0, 100.0];
        let clamp_max = [-50.0, 0.0, 75.0];
        let clamp_min = [-25.0, 0.0, 100.0];
        let clamp = [-25.0, 0.0, 75.0];
        for (i, v) in data.into_iter().enumerate() {
            assert_eq!(math("clamp_max", v, &[75.0]), clamp_max[i]);
            assert_eq!(math("clamp_min", v, &[-25.0]), clamp_min[i]);
            assert_eq!(math("clamp", v, &[-25.0, 75.0]), clamp[i]);
            assert!(math("clamp", v, &[0.0, nan]).is_nan());
            assert!(math("clamp", v, &[nan, 0.0]).is_nan());
            // min > max drops the sample.
            assert_eq!(eval_math("clamp", v, &[5.0, -5.0]), Some(None));
        }
        assert_eq!(eval_math("clamp", 1.0, &[0.0]), None);
        assert_eq!(eval_math("clamp_min", 1.0, &[]), None);
        assert_eq!(eval_math("nope", 1.0, &[]), None);
    }

    #[test]
    fn sgn_and_trig() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let inputs = [-inf, inf, nan, -50.0, 0.0, 100.0];
        let want = [-1.0, 1.0, nan, -1.0, 0.0, 1.0];
        for (v, w) in inputs.iter().zip(want) {
            assert_close(Some(math("sgn", *v, &[])), w);
        }
        assert!(math("sgn", -0.0, &[]).is_sign_negative());
        assert_close(Some(math("deg", std::f64::consts::PI, &[])), 180.0);
        assert_close(Some(math("rad", 180.0, &[])), std::f64::consts::PI);
        assert_close(Some(math("sin", 0.0, &[])), 0.0);
        assert_close(Some(math("cos", 0.0, &[])), 1.0);
        assert_close(Some(math("atanh", 0.0, &[])), 0.0);
        assert!(math("acosh", 0.0, &[]).is_nan());
        for name in [
            "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh",
        ] {
            assert!(eval_math(name, 0.5, &[]).unwrap().is_some(), "{name}");
        }
    }

    #[test]
    fn exp_ln_log() {
        let ln10 = std::f64::consts::LN_10;
        assert_close(Some(math("exp", 10.0, &[])), 22026.465794806718);
        assert_close(Some(math("exp", 20.0, &[])), 485165195.4097903);
        assert_close(Some(math("exp", -10.0, &[])), 4.5399929762484854e-5);
        assert_eq!(math("exp", 0.0, &[]), 1.0);
        assert_close(Some(math("ln", 10.0, &[])), ln10);
        assert_close(Some(math("ln", 20.0, &[])), 2.995732273553991);
        assert_eq!(math("ln", 0.0, &[]), f64::NEG_INFINITY);
        assert!(math("ln", -10.0, &[]).is_nan());
        assert_close(Some(math("exp", math("ln", 20.0, &[]), &[])), 20.0);
        assert_close(Some(math("sqrt", 10.0, &[])), 3.1622776601683795);
        assert_close(Some(math("sqrt", 20.0, &[])), 4.47213595499958);
        assert_close(Some(math("log2", 10.0, &[])), std::f64::consts::LOG2_10);
        assert_close(Some(math("log2", 20.0, &[])), 4.321928094887363);
        assert_eq!(math("log2", 0.0, &[]), f64::NEG_INFINITY);
        assert!(math("log2", -10.0, &[]).is_nan());
        assert_eq!(math("log2", 1024.0, &[]), 10.0);
        assert_eq!(math("log2", 0.125, &[]), -3.0);
        assert_close(Some(math("log10", 10.0, &[])), 1.0);
        assert_close(Some(math("log10", 20.0, &[])), 1.301029995663981);
        assert_eq!(math("log10", 0.0, &[]), f64::NEG_INFINITY);
        assert!(math("log10", -10.0, &[]).is_nan());
        // Go's Log10 is Log(x)*(1/Ln10), which is not exact on every power of ten
        // (hand-computed with that formula).
        assert_eq!(math("log10", 1000.0, &[]), 3.0);
        assert_eq!(math("log10", 1e15, &[]), 14.999999999999998);
        // go_log agrees with a correctly rounded ln on simple inputs (hand-checked).
        assert_eq!(go_log(1.0), 0.0);
        assert_eq!(go_log(f64::INFINITY), f64::INFINITY);
        // Subnormal inputs go through frexp's normalisation.
        assert_eq!(go_log2(f64::from_bits(1)), -1074.0);
    }

    // --- dates ---------------------------------------------------------------------------

    #[test]
    fn date_functions() {
        let t = 1_136_239_445.0; // 2006-01-02 22:04:05 UTC, a Monday.
        assert_eq!(eval_date("year", t), Some(2006.0));
        assert_eq!(eval_date("month", t), Some(1.0));
        assert_eq!(eval_date("day_of_month", t), Some(2.0));
        assert_eq!(eval_date("day_of_year", t), Some(2.0));
        assert_eq!(eval_date("day_of_week", t), Some(1.0));
        assert_eq!(eval_date("hour", t), Some(22.0));
        assert_eq!(eval_date("minute", t), Some(4.0));
        // Epoch: Thursday.
        assert_eq!(eval_date("year", 0.0), Some(1970.0));
        assert_eq!(eval_date("day_of_week", 0.0), Some(4.0));
        assert_eq!(eval_date("day_of_year", 0.0), Some(1.0));
        assert_eq!(eval_date("year", 1_230_767_999.0), Some(2008.0));
        assert_eq!(eval_date("year", 1_230_768_000.0), Some(2009.0));
        let md =
            |t: f64| eval_date("month", t).unwrap() + eval_date("day_of_month", t).unwrap() / 100.0;
        assert_close(Some(md(1_456_790_399.0)), 2.29);
        assert_close(Some(md(1_456_790_400.0)), 3.01);
        assert_eq!(eval_date("day_of_year", 1_483_191_420.0), Some(366.0));
        assert_eq!(eval_date("day_of_year", 1_672_493_820.0), Some(365.0));
        assert_eq!(eval_date("days_in_month", 1_454_284_800.0), Some(29.0));
        assert_eq!(eval_date("days_in_month", 1_485_907_200.0), Some(28.0));
        assert_eq!(eval_date("nope", 0.0), None);

        // Hand-computed: negative times and truncation toward zero.
        assert_eq!(eval_date("year", -1.0), Some(1969.0));
        assert_eq!(eval_date("hour", -1.0), Some(23.0));
        assert_eq!(eval_date("day_of_week", -1.0), Some(3.0));
        assert_eq!(eval_date("year", -0.5), Some(1970.0));
        assert_eq!(eval_date("minute", 59.9), Some(0.0));
        assert_eq!(eval_date("year", -94_608_000_000.0), Some(-1029.0));
        assert_eq!(eval_date("day_of_year", -94_608_000_000.0), Some(363.0));

        // NaN / ±Inf: Go on amd64 turns them into math.MinInt64 seconds, which its calendar
        // code wraps to 2^63 s after the epoch: 292277026596-12-04 15:30:08 UTC, a Sunday.
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300] {
            assert_eq!(eval_date("year", v), Some(292_277_026_596.0));
            assert_eq!(eval_date("month", v), Some(12.0));
            assert_eq!(eval_date("day_of_month", v), Some(4.0));
            assert_eq!(eval_date("hour", v), Some(15.0));
            assert_eq!(eval_date("minute", v), Some(30.0));
            assert_eq!(eval_date("day_of_week", v), Some(0.0));
            assert_eq!(eval_date("day_of_year", v), Some(339.0));
            assert_eq!(eval_date("days_in_month", v), Some(31.0));
        }
        assert_eq!(go_float_to_int64(f64::NAN), i64::MIN);
        assert_eq!(go_float_to_int64(-9_223_372_036_854_775_808.0), i64::MIN);
        assert_eq!(go_float_to_int64(-1.9), -1);
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d <= days_in_month(y, m));
        }
    }

    // --- aggregations --------------------------------------------------------------------

    fn agg(kind: AggKind, values: &[f64]) -> f64 {
        let mut st = AggState::new(kind);
        for v in values {
            st.push(*v);
        }
        st.finish()
    }

    #[test]
    fn aggregations() {
        // aggregators.test http_requests at 50m: 100, 200, …, 800.
        let reqs: Vec<f64> = (1..=8).map(|i| 100.0 * i as f64).collect();
        assert_close(Some(agg(AggKind::Stddev, &reqs)), 229.12878474779);
        assert_close(Some(agg(AggKind::Stdvar, &reqs)), 52500.0);
        assert_close(
            Some(agg(AggKind::Stddev, &[100.0, 300.0, 500.0, 700.0])),
            223.60679774998,
        );
        assert_eq!(agg(AggKind::Sum, &reqs), 3600.0);
        assert_eq!(agg(AggKind::Avg, &[300.0, 400.0]), 350.0);
        assert_eq!(agg(AggKind::Count, &reqs), 8.0);
        assert_eq!(agg(AggKind::Group, &reqs), 1.0);
        assert_eq!(agg(AggKind::Min, &reqs), 100.0);
        assert_eq!(agg(AggKind::Max, &reqs), 800.0);
        // 0+1.33x10 three times: stddev exactly 0.
        let v = 13.3;
        assert_exact(Some(agg(AggKind::Stddev, &[v, v, v])), 0.0);
        assert_exact(Some(agg(AggKind::Stdvar, &[1.0, 2.0])), 0.25);
        assert_exact(Some(agg(AggKind::Stddev, &[1.0, 2.0])), 0.5);
        // A single value: variance 0; NaN/Inf first value: NaN.
        assert_exact(Some(agg(AggKind::Stdvar, &[5.0])), 0.0);
        assert!(agg(AggKind::Stdvar, &[f64::INFINITY, 1.0]).is_nan());
    }

    #[test]
    fn avg_sum_extremes() {
        let inf = f64::INFINITY;
        let ninf = f64::NEG_INFINITY;
        let big = 9.98846567431158e307;
        let cases: [(&[f64], f64); 11] = [
            (&[8.0, 10.0, 12.0], 10.0),
            (&[0.0, inf, inf, 0.0], inf),
            (&[ninf, ninf, 0.0], ninf),
            (&[inf, 0.0, inf], inf),
            (&[ninf, 0.0, ninf], ninf),
            (&[inf, inf, inf, ninf], f64::NAN),
            (&[ninf, ninf, ninf, inf], f64::NAN),
            (&[ninf, 0.0, inf], f64::NAN),
            (&[big, big, big, big], big),
            (&[-big, -big, -big, -big], -big),
            (&[-big, -big, big, big], 0.0),
        ];
        for (v, want) in cases {
            assert_close(Some(agg(AggKind::Avg, v)), want);
        }
        let ten = [2.0, 8.0, 1e100, -1e100];
        assert_exact(Some(agg(AggKind::Sum, &ten)), 10.0);
        assert_exact(Some(agg(AggKind::Avg, &ten)), 2.5);
        assert_eq!(agg(AggKind::Sum, &[inf, 2.0]), inf);
        assert!(agg(AggKind::Sum, &[inf, ninf]).is_nan());
        assert!(agg(AggKind::Sum, &[f64::NAN, 2.0]).is_nan());
        assert!(agg(AggKind::Avg, &[2.0, f64::NAN]).is_nan());
        // avg(52 × 12) == 52 exactly.
        assert_exact(Some(agg(AggKind::Avg, &[52.0; 12])), 52.0);
        for n in 8..=11 {
            assert_exact(Some(agg(AggKind::Avg, &[52.0; 11][..n])), 52.0);
        }
    }

    #[test]
    fn min_max_nan_handling() {
        let nan = f64::NAN;
        assert_eq!(agg(AggKind::Max, &[nan, 1.0, 3.0]), 3.0);
        assert_eq!(agg(AggKind::Max, &[1.0, nan, 3.0]), 3.0);
        assert_eq!(agg(AggKind::Min, &[3.0, nan]), 3.0);
        assert_eq!(agg(AggKind::Min, &[nan, 4.0, 2.0]), 2.0);
        assert!(agg(AggKind::Min, &[nan, nan]).is_nan());
        assert!(agg(AggKind::Max, &[nan]).is_nan());
        let st = AggState::new(AggKind::Sum);
        assert!(st.is_empty());
        assert!(st.finish().is_nan());
        assert_eq!(st.kind(), AggKind::Sum);
    }

    /// `histogram_fraction(lower, upper, b)` on one classic histogram given as `(le, count)`.
    fn frac(lower: f64, upper: f64, buckets: &[(f64, f64)]) -> f64 {
        bucket_fraction(lower, upper, &mut buckets.to_vec())
    }

    #[test]
    fn bucket_fraction_promqltest_histograms() {
        // The `histogram_fraction(…, *_bucket)` cases of histograms.test, evaluated at 50m
        // (load 5m, `a+bx10` → value at 50m is a+10b).
        let inf = f64::INFINITY;
        let nan = f64::NAN;

        // testhistogram2 at 50m.
        let h2 = [
            (0.0, 0.0),
            (2.0, 10.0),
            (4.0, 20.0),
            (6.0, 30.0),
            (inf, 30.0),
        ];
        assert_close(Some(frac(0.0, 4.0, &h2)), 0.6666666666666666);
        assert_close(Some(frac(0.0, 6.0, &h2)), 1.0);
        assert_close(Some(frac(0.0, 3.5, &h2)), 0.5833333333333334);

        // testhistogram3 at 50m, and rate(…[10m]) of it (every bucket's rate is its
        // per-step increment × 2 / 600: two samples in the window, extrapolated to 600s).
        let pos = [(0.0, 0.0), (0.1, 5.0), (0.2, 7.0), (1.0, 11.0), (inf, 11.0)];
        let neg = [
            (-0.25, 0.0),
            (-0.2, 1.0),
            (-0.1, 2.0),
            (0.3, 2.0),
            (inf, 2.0),
        ];
        let scales: [fn(f64) -> f64; 2] = [|n| n * 10.0, |n| n * 2.0 / 600.0];
        for scale in scales {
            let p: Vec<_> = pos.iter().map(|&(le, n)| (le, scale(n))).collect();
            let n: Vec<_> = neg.iter().map(|&(le, n)| (le, scale(n))).collect();
            assert_close(Some(frac(0.0, 0.2, &p)), 0.6363636363636364);
            assert_close(Some(frac(0.0, 0.2, &n)), 0.0);
        }

        // The dedicated fixtures (constant `a+0x10`).
        let pos4 = [(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (inf, 100.0)];
        let neg4 = [(-3.0, 10.0), (-2.0, 12.0), (-1.0, 15.0), (inf, 100.0)];
        // positive_buckets_lower_falls_in_the_first_bucket
        assert_close(Some(frac(0.0, 1.5, &pos4)), 0.02);
        // negative_buckets_lower_falls_in_the_first_bucket
        assert_close(Some(frac(-4.0, -2.0, &neg4)), 0.02);
        // lower_is_negative_Inf
        assert_close(Some(frac(-inf, -1.5, &neg4)), 0.135);
        // lower_is_negative_Inf_and_upper_is_positive_Inf (positive / negative buckets)
        assert_close(Some(frac(-inf, inf, &pos4)), 1.0);
        assert_close(Some(frac(-inf, inf, &neg4)), 1.0);
        // lower_and_upper_fall_in_last_bucket (positive / negative buckets)
        assert_close(Some(frac(4.0, 5.0, &pos4)), 0.0);
        assert_close(Some(frac(0.0, 1.0, &neg4)), 0.0);
        // upper_falls_in_last_bucket
        assert_close(Some(frac(2.0, 5.0, &pos4)), 0.03);
        // upper_is_positive_Inf
        assert_close(Some(frac(400.0, inf, &pos4)), 0.94);
        // lower_equals_upper, lower_greater_than_upper
        assert_exact(Some(frac(2.0, 2.0, &pos4)), 0.0);
        assert_exact(Some(frac(3.0, 2.0, &pos4)), 0.0);
        // single_bucket
        assert_exact(Some(frac(0.0, 1.0, &[(inf, 100.0)])), 0.0);
        // all_zero_counts
        let zeros = [(1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (inf, 0.0)];
        assert!(frac(0.0, 5.0, &zeros).is_nan());
        // lower_exactly_on_bucket_boundary
        assert_close(Some(frac(2.0, 3.5, &pos4)), 0.03);
        // upper_exactly_on_bucket_boundary
        assert_close(Some(frac(0.5, 2.0, &pos4)), 0.025);
        // both_bounds_exactly_on_bucket_boundaries
        assert_close(Some(frac(1.0, 3.0, &pos4)), 0.05);
        // fractional_bucket_bounds
        let fractional = [(0.5, 2.5), (1.0, 7.5), (inf, 100.0)];
        assert_close(Some(frac(0.1, 0.75, &fractional)), 0.045);
        // range_crosses_zero
        let crosses = [
            (-2.0, 5.0),
            (-1.0, 10.0),
            (0.0, 15.0),
            (1.0, 20.0),
            (inf, 100.0),
        ];
        assert_close(Some(frac(-1.0, 1.0, &crosses)), 0.1);
        // lower_is_NaN, upper_is_NaN
        let two = [(1.0, 1.0), (inf, 100.0)];
        assert!(frac(nan, 1.0, &two).is_nan());
        assert!(frac(0.0, nan, &two).is_nan());
        // range_entirely_below_all_buckets, range_entirely_above_all_buckets
        let three = [(1.0, 1.0), (2.0, 3.0), (inf, 10.0)];
        assert_exact(Some(frac(-10.0, -5.0, &three)), 0.0);
        assert_exact(Some(frac(5.0, 10.0, &three)), 0.0);
    }

    #[test]
    fn bucket_fraction_edge_cases() {
        // Hand-computed against Go's `BucketFraction`.
        let inf = f64::INFINITY;
        let nan = f64::NAN;
        // Unsorted input: same as sorted, and the vector ends up sorted.
        let mut b = vec![(inf, 100.0), (2.0, 3.0), (1.0, 1.0), (3.0, 6.0)];
        assert_close(Some(bucket_fraction(0.0, 1.5, &mut b)), 0.02);
        assert_eq!(b, [(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (inf, 100.0)]);
        // Duplicate bounds are coalesced by summing: (1, 1) + (1, 1) → (1, 2).
        let mut b = vec![(1.0, 1.0), (inf, 10.0), (1.0, 1.0)];
        assert_close(Some(bucket_fraction(0.0, 0.5, &mut b)), 0.1);
        assert_eq!(b, [(1.0, 2.0), (inf, 10.0)]);
        // No +Inf bucket, or no buckets at all → NaN (even with NaN or reversed bounds).
        assert!(frac(0.0, 1.0, &[(1.0, 1.0), (2.0, 3.0)]).is_nan());
        assert!(frac(1.0, 0.0, &[(1.0, 1.0), (2.0, 3.0)]).is_nan());
        assert!(frac(0.0, 1.0, &[]).is_nan());
        assert!(frac(1.0, 0.0, &[]).is_nan());
        assert!(frac(-inf, inf, &[]).is_nan());
        assert!(frac(nan, 1.0, &[]).is_nan());
        // Zero observations beat lower >= upper (NaN, not 0); only a +Inf bucket → NaN.
        assert!(frac(1.0, 0.0, &[(1.0, 0.0), (inf, 0.0)]).is_nan());
        assert!(frac(0.0, 1.0, &[(inf, 0.0)]).is_nan());
        // A NaN `le` sorts last, so the top bound is not +Inf → NaN.
        assert!(frac(0.0, 1.0, &[(1.0, 1.0), (nan, 2.0), (inf, 3.0)]).is_nan());
        // Upstream quantile_test.go `TestBucketFraction`.
        let b = [(1.0, 10.0), (inf, 30.0)];
        assert_close(Some(frac(0.0, 0.5, &b)), 5.0 / 30.0);
        assert_close(Some(frac(0.0, inf, &b)), 1.0);
        assert_exact(Some(frac(1.0, 0.0, &b)), 0.0);
        // Upper inside the -Inf-edged lowest bucket: the whole bucket counts below it.
        let neg4 = [(-3.0, 10.0), (-2.0, 12.0), (-1.0, 15.0), (inf, 100.0)];
        assert_close(Some(frac(-inf, -4.0, &neg4)), 0.1);
        assert_exact(Some(frac(-5.0, -4.0, &neg4)), 0.0);
        // le="0" lowest bucket has a -Inf lower edge: everything at or below 0 is below 0.
        let zero_first = [(0.0, 4.0), (1.0, 7.0), (2.0, 9.0), (inf, 10.0)];
        assert_close(Some(frac(-inf, 0.0, &zero_first)), 0.4);
        assert_close(Some(frac(0.0, inf, &zero_first)), 0.6);
        // No monotonicity fix (unlike bucket_quantile): (2, 3) after (1, 5) interpolates
        // downwards, 5 + (3 - 5) * 0.5 = 4.
        assert_close(
            Some(frac(0.0, 1.5, &[(1.0, 5.0), (2.0, 3.0), (inf, 10.0)])),
            0.4,
        );
        // A rank above the total is clamped to it.
        assert_close(
            Some(frac(0.0, 1.5, &[(1.0, 5.0), (2.0, 30.0), (inf, 10.0)])),
            1.0,
        );
    }
}
