use proptest::prelude::*;
use strata_ingest::model::stale_nan;

use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

#[test]
fn a_counter_bucket_by_hand() {
    // 1, 3, reset to 2, 5, 5: increase (5 - 1) + 3 (the value before the reset) = 7,
    // like Prometheus's increase without extrapolation; one reset; changes 1->3->2->5 = 3.
    let b = Bucket::from_samples([(1, 1.0), (2, 3.0), (3, 2.0), (4, 5.0), (5, 5.0)]).unwrap();
    assert_eq!(b.count, 5);
    assert_eq!(b.sum, 16.0);
    assert_eq!((b.min, b.max), (1.0, 5.0));
    assert_eq!((b.first_ts, b.first, b.last_ts, b.last), (1, 1.0, 5, 5.0));
    assert_eq!(b.increase(), 7.0);
    assert_eq!(b.reset_sum, 3.0);
    assert_eq!(b.resets, 1);
    assert_eq!(b.changes, 3);
    // Mean 3.2; squared deviations 4.84 + 0.04 + 1.44 + 3.24 + 3.24 = 12.8.
    assert!((b.mean - 3.2).abs() < 1e-12);
    assert!((b.m2 - 12.8).abs() < 1e-12, "{}", b.m2);
    assert!((b.variance() - 2.56).abs() < 1e-12);
}

#[test]
fn staleness_markers_are_not_values_and_nan_follows_prometheus() {
    assert_eq!(Bucket::from_samples([(1, stale_nan())]), None);
    let b = Bucket::from_samples([(1, 2.0), (2, stale_nan()), (3, 4.0)]).unwrap();
    assert_eq!((b.count, b.sum, b.changes), (2, 6.0, 1));
    // NaN: the sum is NaN, min and max ignore it (funcMinOverTime / funcMaxOverTime).
    let b = Bucket::from_samples([(1, f64::NAN), (2, 4.0), (3, f64::NAN), (4, 1.0)]).unwrap();
    assert!(b.sum.is_nan());
    assert_eq!((b.min, b.max), (1.0, 4.0));
    assert_eq!(b.count, 4);
    let b = Bucket::from_samples([(1, f64::NAN), (2, f64::NAN)]).unwrap();
    assert!(b.min.is_nan() && b.max.is_nan());
    assert_eq!(b.changes, 0, "NaN after NaN is no change");
    let b = Bucket::from_samples([(1, f64::INFINITY), (2, 1.0)]).unwrap();
    assert_eq!((b.min, b.max, b.sum), (1.0, f64::INFINITY, f64::INFINITY));
}

#[test]
fn buckets_are_left_open_right_closed() {
    assert_eq!(bucket_end(0, MIN), 0);
    assert_eq!(bucket_end(1, MIN), MIN);
    assert_eq!(bucket_end(MIN, MIN), MIN);
    assert_eq!(bucket_end(MIN + 1, MIN), 2 * MIN);
    assert_eq!(bucket_end(-1, MIN), 0);
    assert_eq!(bucket_end(-MIN, MIN), -MIN);
    let b = bucketize([(0, 1.0), (1, 2.0), (MIN, 3.0), (MIN + 1, 4.0)], MIN);
    let ends: Vec<(i64, u64)> = b.iter().map(|(e, b)| (*e, b.count)).collect();
    assert_eq!(ends, vec![(0, 1), (MIN, 2), (2 * MIN, 1)]);
}

/// One series' samples: increasing timestamps over about three hours (gaps included),
/// integer values (so sums are exact in any order), some NaN, infinities and staleness
/// markers.
fn series() -> impl Strategy<Value = Vec<(i64, f64)>> {
    prop::collection::vec(
        (
            1i64..200_000,
            prop_oneof![
                20 => (-50i32..1000).prop_map(f64::from),
                1 => Just(f64::NAN),
                1 => Just(f64::INFINITY),
                1 => Just(stale_nan()),
            ],
        ),
        0..400,
    )
    .prop_map(|steps| {
        let mut t = 7 * HOUR - 3 * MIN;
        steps
            .into_iter()
            .map(|(dt, v)| {
                t += dt;
                (t, v)
            })
            .collect()
    })
}

/// Equal as the module doc promises: bit for bit (NaN equal to NaN) for the exact
/// columns; the variance state within rounding.
fn assert_same(a: &[(i64, Bucket)], b: &[(i64, Bucket)]) {
    let same = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    assert_eq!(a.len(), b.len());
    for ((ea, x), (eb, y)) in a.iter().zip(b) {
        assert_eq!(ea, eb);
        assert_eq!(
            (x.count, x.first_ts, x.last_ts, x.resets, x.changes),
            (y.count, y.first_ts, y.last_ts, y.resets, y.changes)
        );
        for (p, q) in [
            (x.sum, y.sum),
            (x.min, y.min),
            (x.max, y.max),
            (x.first, y.first),
            (x.last, y.last),
            (x.increase(), y.increase()),
            (x.reset_sum, y.reset_sum),
        ] {
            assert!(same(p, q), "{x:?} != {y:?}");
        }
        for (p, q) in [(x.mean, y.mean), (x.m2, y.m2)] {
            let tol = 1e-9 * p.abs().max(q.abs()).max(1.0);
            assert!(same(p, q) || (p - q).abs() <= tol, "{x:?} != {y:?}");
        }
    }
}

proptest! {
    /// Each tier built from the one below equals the tier built from raw samples:
    /// raw -> 1m -> 1h -> 1d against raw -> 1h and raw -> 1d.
    #[test]
    fn a_tier_built_from_the_tier_below_equals_one_built_from_raw(s in series()) {
        let m = bucketize(s.iter().copied(), MIN);
        let h_from_m = coarsen(m.iter().copied(), HOUR);
        let h = bucketize(s.iter().copied(), HOUR);
        assert_same(&h_from_m, &h);
        let d_from_h = coarsen(h_from_m.iter().copied(), 24 * HOUR);
        let d = bucketize(s.iter().copied(), 24 * HOUR);
        assert_same(&d_from_h, &d);
        // And a whole bucket equals Bucket::from_samples over its samples.
        for (end, b) in &h {
            let inside = s.iter().copied().filter(|(t, _)| *t > end - HOUR && *t <= *end);
            assert_same(&[(*end, Bucket::from_samples(inside).unwrap())], &[(*end, *b)]);
        }
    }
}
