//! The sketch columns: a KLL quantile sketch of each series-bucket's values and an HLL
//! sketch of each metric-bucket's series, both Apache DataSketches
//! (<https://datasketches.apache.org>) in their compact serialized layouts, which the
//! Java, C++ and Python (`datasketches`) libraries, Spark and Druid read.
//!
//! - KLL (Karnin, Lang, Liberty, "Optimal Quantile Approximation in Streams", FOCS 2016)
//!   of floats (`f32`: values keep 24 bits of mantissa, about 7 significant digits;
//!   beyond +-3.4e38 they become infinite) with `k` = [`KLL_K`]: a quantile's rank is
//!   within about 1.65% of the true rank with 99% confidence, whatever the distribution
//!   (the library's `normalized_rank_error(false)` for k = 200). Sketches merge without
//!   further loss of that bound, so a tier built from the one below has the same error as
//!   one built from raw. NaN values (and staleness markers) are not sketched; infinities
//!   are. Floats rather than doubles, by measurement (`benches/sketch_choice.rs`,
//!   benches/README.md "Sketch choice"): half the bytes per bucket at the same measured
//!   rank error on log-normal, Pareto and bimodal latencies.
//! - HLL (Flajolet et al., "HyperLogLog", 2007; the DataSketches HLL_8 layout) with
//!   `lg_k` = [`HLL_LG_K`]: relative standard error about 1.6% (1.04 / sqrt(4096)), and
//!   exact up to a few hundred distinct series (its list and set modes). The union of two
//!   buckets' sketches is the sketch of the union of their series, so "distinct series
//!   over a month" is a union of daily sketches, not a sum.

use datasketches::common::SearchCriteria;
use datasketches::hll::{HllSketch, HllUnion};
pub use strata_ingest::sketch::{HLL_LG_K, KLL_K, Kll, kll_update, new_hll, new_kll};

use crate::error::{Result, RollupError};

fn kll_error(e: datasketches::error::Error) -> RollupError {
    RollupError::Invariant(format!("KLL sketch: {e}"))
}

/// The serialized sketch, `None` if it holds no value.
pub fn kll_bytes(sketch: &Kll) -> Option<Vec<u8>> {
    (!sketch.is_empty()).then(|| sketch.serialize())
}

/// Reads a serialized KLL floats sketch.
///
/// # Errors
/// [`RollupError::Invariant`] if the bytes are not one.
pub fn kll_read(bytes: &[u8]) -> Result<Kll> {
    Kll::deserialize(bytes).map_err(kll_error)
}

/// Merges `other` (serialized) into `into`.
///
/// # Errors
/// [`RollupError::Invariant`] if the bytes are not a KLL floats sketch.
pub fn kll_merge(into: &mut Kll, other: &[u8]) -> Result<()> {
    into.merge(&kll_read(other)?).map_err(kll_error)
}

/// The `q`-quantile (0 <= q <= 1) of a sketch, `None` if empty: the smallest retained
/// value whose inclusive rank is at least `q` (DataSketches' `INCLUSIVE` search, the Java
/// library's default; Python's `get_quantile` needs `inclusive=True` to agree).
///
/// # Errors
/// [`RollupError::BadRequest`] for `q` outside [0, 1].
pub fn kll_quantile(sketch: &Kll, q: f64) -> Result<Option<f64>> {
    if !(0.0..=1.0).contains(&q) {
        return Err(RollupError::BadRequest(format!(
            "quantile {q} is not between 0 and 1"
        )));
    }
    Ok(sketch
        .quantile(q, SearchCriteria::Inclusive)
        .map_err(kll_error)?
        .map(|x| f64::from(x.into_inner())))
}

/// The quantiles each sketched bucket also stores as plain columns (`φ`, column name):
/// the ones dashboards ask for. A PromQL `quantile_over_time` whose windows are one
/// bucket each and whose `φ` is one of these reads the column instead of deserializing
/// the sketch (the same value: [`kll_stored_quantiles`] takes it from the same sketch).
pub const STORED_QUANTILES: [(f64, &str); 4] =
    [(0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")];

/// The index in [`STORED_QUANTILES`] of `phi`, if it is stored.
pub fn stored_quantile(phi: f64) -> Option<usize> {
    STORED_QUANTILES.iter().position(|(q, _)| *q == phi)
}

/// The [`STORED_QUANTILES`] of a sketch ([`kll_quantile`] of each, one sorted view for
/// all), `None` if it is empty.
pub fn kll_stored_quantiles(sketch: &Kll) -> Option<[f64; STORED_QUANTILES.len()]> {
    let ranks = STORED_QUANTILES.map(|(q, _)| q);
    let got = sketch.quantiles(&ranks, SearchCriteria::Inclusive).ok()??;
    let mut out = [f64::NAN; STORED_QUANTILES.len()];
    for (o, x) in out.iter_mut().zip(got) {
        *o = f64::from(x.into_inner());
    }
    Some(out)
}

/// A new HLL union of up to `lg_k` = [`HLL_LG_K`].
pub fn new_hll_union() -> HllUnion {
    HllUnion::new(HLL_LG_K).expect("HLL_LG_K is a valid lg_k")
}

/// Reads a serialized HLL sketch.
///
/// # Errors
/// [`RollupError::Invariant`] if the bytes are not one.
pub fn hll_read(bytes: &[u8]) -> Result<HllSketch> {
    HllSketch::deserialize(bytes).map_err(|e| RollupError::Invariant(format!("HLL sketch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kll_quantiles_of_merged_sketches_are_within_the_bound() {
        // 100,000 values 0..99,999 in 100 sketches of 1,000, merged: the p50, p95 and p99
        // ranks within 1.65% of the truth.
        let mut all = new_kll();
        for part in 0..100 {
            let mut s = new_kll();
            for i in 0..1000 {
                kll_update(&mut s, (i * 100 + part) as f64);
            }
            kll_merge(&mut all, &kll_bytes(&s).unwrap()).unwrap();
        }
        assert_eq!(all.n(), 100_000);
        for q in [0.5, 0.95, 0.99] {
            let got = kll_quantile(&all, q).unwrap().unwrap();
            let rank = got / 100_000.0;
            assert!((rank - q).abs() < 0.0165, "q {q}: {got}");
        }
        assert!(kll_quantile(&all, 1.5).is_err());
        let mut empty = new_kll();
        kll_update(&mut empty, f64::NAN);
        assert_eq!(kll_bytes(&empty), None);
        assert_eq!(kll_quantile(&empty, 0.5).unwrap(), None);
        assert_eq!(kll_stored_quantiles(&empty), None);
        // The stored columns are the sketch's own quantiles.
        let stored = kll_stored_quantiles(&all).unwrap();
        for (i, (q, _)) in STORED_QUANTILES.iter().enumerate() {
            assert_eq!(stored[i], kll_quantile(&all, *q).unwrap().unwrap());
            assert_eq!(stored_quantile(*q), Some(i));
        }
        assert_eq!(stored_quantile(0.98), None);
    }

    #[test]
    fn hll_unions_count_distinct_series_not_their_sum() {
        // Two buckets of 3,000 series each, 1,000 in both: 5,000 distinct.
        let (mut a, mut b) = (new_hll(), new_hll());
        for id in 0i64..3000 {
            a.update(id);
        }
        for id in 2000i64..5000 {
            b.update(id);
        }
        let mut u = new_hll_union();
        u.update(&hll_read(&a.serialize()).unwrap());
        u.update(&hll_read(&b.serialize()).unwrap());
        let est = u.estimate();
        assert!((est - 5000.0).abs() < 5000.0 * 0.05, "{est}");
        // Small sets are exact.
        let mut small = new_hll();
        for id in 0i64..100 {
            small.update(id);
        }
        assert_eq!(small.estimate().round(), 100.0);
    }
}
