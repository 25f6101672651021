//! The Apache DataSketches (<https://datasketches.apache.org>) sketches Strata makes: KLL
//! quantile sketches of values and HLL sketches of distinct items, with the parameters
//! every producer shares (the rollup tiers' sketch columns, `strata-rollup`'s `sketch`
//! module, which documents their error bounds and format; StatsD's timers and sets,
//! [`crate::receive::statsd`]).

use datasketches::hll::{HllSketch, HllType};
use datasketches::kll::{KllFloat, KllSketch};

use crate::model::is_stale_nan;

/// The KLL sketches' `k` (accuracy against size: rank error about 1.65%).
pub const KLL_K: u16 = 200;

/// The HLL sketches' log2 of the number of registers.
pub const HLL_LG_K: u8 = 12;

/// A KLL sketch of floats.
pub type Kll = KllSketch<KllFloat<f32>>;

/// A new empty KLL sketch with `k` = [`KLL_K`].
pub fn new_kll() -> Kll {
    Kll::new(KLL_K).expect("KLL_K is a valid k")
}

/// A new empty HLL sketch (`lg_k` = [`HLL_LG_K`], HLL_8).
pub fn new_hll() -> HllSketch {
    HllSketch::new(HLL_LG_K, HllType::Hll8).expect("HLL_LG_K is a valid lg_k")
}

/// Adds `v` to `sketch` unless it is NaN (a staleness marker included).
pub fn kll_update(sketch: &mut Kll, v: f64) {
    if !is_stale_nan(v)
        && let Ok(x) = KllFloat::<f32>::new(v as f32)
    {
        sketch.update(x);
    }
}
