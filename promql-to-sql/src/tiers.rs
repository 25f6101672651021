//! PromQL over the rollup tiers (`strata-rollup`): which source answers each step of a
//! selector, and range functions evaluated from a tier's buckets.
//!
//! # Routing (`docs/rollups.md`, "PromQL across tiers")
//! Each step of a range function `f(v[r])` (evaluated at `e`: the step, moved by `offset`
//! and `@`) reads the window `(e - r, e]`. A tier of resolution `R` holds buckets `(end -
//! R, end]`, so it answers the window **exactly** when `r` and `e` are multiples of `R`
//! (the window is then a whole number of buckets), `f` is one it can compute
//! ([`answerable`]), the window ends at or before the tier's watermark and starts at or
//! after its retention horizon. The step reads, in this order:
//! 1. the coarsest tier that answers it exactly (no coarser than `max_source_resolution`);
//! 2. else raw samples (the Delta table and the head), when raw retention still covers the
//!    window;
//! 3. else (raw expired) the finest tier with buckets there, the window snapped to whole
//!    buckets: it ends at the last bucket end at or before `e` and spans `r` rounded to a
//!    whole number of buckets (at least one). This answer is approximate, and the query's
//!    `infos` say so.
//!
//! Steps that choose the same source form one [`Route`]; each step is evaluated from one
//! source only, so a query spanning a tier's watermark or a retention boundary is
//! stitched with no gap and no step counted twice. Plain selectors (`v`) read raw samples
//! while raw retention covers their lookback window; where it does not, the last value of
//! the latest bucket of the finest tier within `max(lookback, R)` (approximate: buckets do
//! not keep staleness markers).
//!
//! This is "exact first" rather than Thanos's `step / 5` rule: a tier is used whenever it
//! gives the raw answer, whatever the step, and only then.

use datafusion::prelude::SessionContext;
use strata_rollup::TierView;
use strata_rollup::bucket::Bucket;
use strata_rollup::catalog::SeriesBuckets;
use strata_rollup::sketch;

use crate::exec::{At, Steps};
use crate::kernels::{self, RangeFn, Summary};

/// Where a route's steps read their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Raw samples (the `samples` table: Delta and head).
    Raw,
    /// Tier `tier` (an index into the [`Routing`]'s views); `exact` when every window of
    /// the route is a whole number of its buckets.
    Tier {
        /// Index of the tier.
        tier: usize,
        /// Whether the windows align with the buckets.
        exact: bool,
    },
}

/// Consecutive steps read from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The source.
    pub source: Source,
    /// The steps (a contiguous part of the query's steps, same interval).
    pub steps: Steps,
}

/// The sources one query may read, as of the query's planning.
#[derive(Debug, Clone)]
pub struct Routing {
    /// The tiers, finest first.
    pub views: Vec<TierView>,
    /// Raw samples ending at or before this time (ms) may be gone.
    pub raw_horizon_ms: Option<i64>,
    /// The coarsest resolution a query may read (ms), from `max_source_resolution`;
    /// `None` for `auto`.
    pub max_resolution_ms: Option<i64>,
    /// The catalog the views come from, which reads the tiers' buckets.
    pub catalog: std::sync::Arc<strata_rollup::TierCatalog>,
}

/// Whether `f` can be computed from a tier's bucket columns: the `*_over_time` functions
/// with a matching column, `rate` / `increase` / `delta` from the first and last samples
/// and the reset-aware increase, `resets` and `changes` from their counts, and
/// `quantile_over_time` from the KLL sketch (only where the tier has sketches).
/// `irate`, `idelta`, `deriv`, `predict_linear`, `mad_over_time`,
/// `double_exponential_smoothing`, `ts_of_min/max_over_time` need individual samples.
pub fn answerable(f: RangeFn, tier: &TierView) -> bool {
    use RangeFn::*;
    match f {
        Rate | Increase | Delta | AvgOverTime | MinOverTime | MaxOverTime | SumOverTime
        | CountOverTime | LastOverTime | FirstOverTime | StddevOverTime | StdvarOverTime
        | PresentOverTime | AbsentOverTime | Changes | Resets | TsOfLastOverTime
        | TsOfFirstOverTime => true,
        QuantileOverTime => tier.sketch,
        Irate
        | Idelta
        | MadOverTime
        | Deriv
        | PredictLinear
        | DoubleExponentialSmoothing
        | TsOfMinOverTime
        | TsOfMaxOverTime => false,
    }
}

/// The bucket fields (`strata_rollup::table::BUCKET_FIELDS`) [`eval_range`] reads for
/// `f` (`None`: a plain selector, [`eval_select`]), besides `count`: what [`value`] reads
/// and what merging buckets needs for it (a reset or a change at a bucket boundary
/// compares one bucket's `last` with the next one's `first`).
pub fn fields(f: Option<RangeFn>) -> &'static [&'static str] {
    use RangeFn::*;
    let Some(f) = f else {
        return &["last_ts", "last"];
    };
    match f {
        Rate | Increase | Delta => &["first_ts", "first", "last_ts", "last", "reset_sum"],
        AvgOverTime | SumOverTime => &["sum"],
        MinOverTime => &["min"],
        MaxOverTime => &["max"],
        LastOverTime => &["last"],
        FirstOverTime => &["first"],
        TsOfLastOverTime => &["last_ts"],
        TsOfFirstOverTime => &["first_ts"],
        StddevOverTime | StdvarOverTime => &["mean", "m2"],
        Changes => &["changes", "first", "last"],
        Resets => &["resets", "first", "last"],
        CountOverTime | PresentOverTime | AbsentOverTime | QuantileOverTime => &[],
        // Not answered from buckets ([`answerable`]): everything.
        _ => &strata_rollup::table::BUCKET_FIELDS,
    }
}

impl Routing {
    /// The routing of a query planned in `ctx` at `now_ms` (ms, UTC), reading tiers no
    /// coarser than `max_resolution_ms` (`None`: any); `None` when the session has no
    /// tiers or the query reads raw samples only (`Some(0)`).
    pub fn of(
        ctx: &SessionContext,
        now_ms: i64,
        max_resolution_ms: Option<i64>,
    ) -> Option<Routing> {
        if max_resolution_ms == Some(0) {
            return None;
        }
        let catalog = strata_rollup::TierCatalog::of(ctx)?;
        let views = catalog.views(now_ms);
        if views.iter().all(|v| v.watermark_ms.is_none()) {
            return None;
        }
        Some(Routing {
            views,
            raw_horizon_ms: catalog.raw_horizon_ms(now_ms),
            max_resolution_ms,
            catalog,
        })
    }

    fn allowed(&self, v: &TierView) -> bool {
        v.watermark_ms.is_some() && self.max_resolution_ms.is_none_or(|m| v.resolution_ms <= m)
    }

    fn raw_covers(&self, from: i64) -> bool {
        self.raw_horizon_ms.is_none_or(|h| from >= h)
    }

    /// The source of a window `(e - r, e]` of range function `f`, or of a plain
    /// selector's lookback window of length `r` when `f` is `None`.
    pub fn choose(&self, f: Option<RangeFn>, e: i64, r: i64) -> Source {
        if let Some(f) = f {
            for (i, v) in self.views.iter().enumerate().rev() {
                let res = v.resolution_ms;
                if self.allowed(v)
                    && answerable(f, v)
                    && r % res == 0
                    && e.rem_euclid(res) == 0
                    && v.watermark_ms.is_some_and(|w| e <= w)
                    && v.horizon_ms.is_none_or(|h| e - r >= h)
                {
                    return Source::Tier {
                        tier: i,
                        exact: true,
                    };
                }
            }
        }
        if self.raw_covers(e - r) {
            return Source::Raw;
        }
        // Raw expired: the finest tier with buckets there, approximately.
        for (i, v) in self.views.iter().enumerate() {
            let (lo, hi) = window(e, r, v.resolution_ms, false);
            if self.allowed(v)
                && f.is_none_or(|f| answerable(f, v))
                && v.watermark_ms.is_some_and(|w| hi <= w)
                && v.horizon_ms.is_none_or(|h| lo >= h)
            {
                return Source::Tier {
                    tier: i,
                    exact: false,
                };
            }
        }
        Source::Raw
    }

    /// The routes of the steps `steps` of `f` (`None`: a plain selector) over windows of
    /// `r` ms moved by `at`.
    pub fn routes(&self, f: Option<RangeFn>, steps: Steps, at: At, r: i64) -> Vec<Route> {
        let mut out: Vec<Route> = vec![];
        for t in steps.iter() {
            let source = self.choose(f, at.eval_time(t), r);
            match out.last_mut() {
                Some(last) if last.source == source => last.steps.end = t,
                _ => out.push(Route {
                    source,
                    steps: Steps {
                        start: t,
                        end: t,
                        step: steps.step,
                    },
                }),
            }
        }
        out
    }
}

/// The largest multiple of `r` at or before `t`.
fn snap_down(t: i64, r: i64) -> i64 {
    t.div_euclid(r) * r
}

/// The window `(lo, hi]` (ms) a tier of resolution `res` reads for evaluation time `e`
/// and range `r`: `(e - r, e]` when exact, else snapped to whole buckets (module docs).
pub fn window(e: i64, r: i64, res: i64, exact: bool) -> (i64, i64) {
    if exact {
        return (e - r, e);
    }
    let hi = snap_down(e, res);
    let buckets = ((r + res / 2) / res).max(1);
    (hi - buckets * res, hi)
}

/// The index of the first of the bucket ends `ends` (ascending) after `t`, searched from
/// `from` forward (galloping: a window one bucket on from the last costs two
/// comparisons), or over the whole series when the bucket before `from` already ends
/// after `t`.
fn seek(ends: &[i64], from: usize, t: i64) -> usize {
    if from > 0 && ends[from - 1] > t {
        return ends[..from].partition_point(|e| *e <= t);
    }
    let rest = &ends[from..];
    let mut hi = 1;
    while hi < rest.len() && rest[hi - 1] <= t {
        hi *= 2;
    }
    from + rest[..hi.min(rest.len())].partition_point(|e| *e <= t)
}

/// The buckets `window` of `series` (those ending in a window), merged (`None` when
/// there are none), with their sketches merged when `with_sketch`.
fn merged(
    series: &SeriesBuckets,
    window: std::ops::Range<usize>,
    with_sketch: bool,
) -> Result<Option<(Bucket, Option<sketch::Kll>)>, strata_rollup::RollupError> {
    if window.is_empty() {
        return Ok(None);
    }
    let mut acc = series.bucket(window.start)?;
    for i in window.start + 1..window.end {
        acc.merge(&series.bucket(i)?);
    }
    let kll = if with_sketch {
        // The first bucket's sketch, the others merged into it (a one-bucket window, the
        // common case, reads its sketch as it is).
        let mut k: Option<sketch::Kll> = None;
        for bytes in window.filter_map(|i| series.sketch(i)) {
            match &mut k {
                Some(k) => sketch::kll_merge(k, bytes)?,
                None => k = Some(sketch::kll_read(bytes)?),
            }
        }
        Some(k.unwrap_or_else(sketch::new_kll))
    } else {
        None
    };
    Ok(Some((acc, kll)))
}

/// `f` over the merged bucket `b` of the window `(lo, hi]` (ms), as
/// [`kernels::eval_range`] gives it over the window's raw samples; for
/// `quantile_over_time` (whose `params[0]` is φ), `stored` is the window's one bucket's
/// stored φ-quantile if it was read, else `kll` the merged sketch.
fn value(
    f: RangeFn,
    b: &Bucket,
    kll: Option<&sketch::Kll>,
    stored: Option<f64>,
    (lo, hi): (i64, i64),
    params: &[f64],
) -> Option<f64> {
    let n = b.count as f64;
    let summary = |result| Summary {
        count: b.count,
        first: (b.first_ts, b.first),
        last_t: b.last_ts,
        result,
    };
    use RangeFn::*;
    Some(match f {
        Rate | Increase if b.count >= 2 => {
            kernels::extrapolate(summary(b.increase()), lo, hi, true, f == Rate)
        }
        Delta if b.count >= 2 => {
            kernels::extrapolate(summary(b.last - b.first), lo, hi, false, false)
        }
        Rate | Increase | Delta => return None,
        AvgOverTime => b.sum / n,
        MinOverTime => b.min,
        MaxOverTime => b.max,
        SumOverTime => b.sum,
        CountOverTime => n,
        LastOverTime => b.last,
        FirstOverTime => b.first,
        StddevOverTime => b.variance().sqrt(),
        StdvarOverTime => b.variance(),
        PresentOverTime | AbsentOverTime => 1.0,
        Changes => b.changes as f64,
        Resets => b.resets as f64,
        TsOfLastOverTime => b.last_ts as f64 / 1000.0,
        TsOfFirstOverTime => b.first_ts as f64 / 1000.0,
        QuantileOverTime => {
            let phi = *params.first()?;
            if phi.is_nan() {
                f64::NAN
            } else if phi < 0.0 {
                f64::NEG_INFINITY
            } else if phi > 1.0 {
                f64::INFINITY
            } else {
                stored
                    .or_else(|| kll.and_then(|k| sketch::kll_quantile(k, phi).ok().flatten()))
                    .unwrap_or(f64::NAN)
            }
        }
        // Not answerable from buckets ([`answerable`]).
        _ => return None,
    })
}

/// `f(v[r])` of one series at `route`'s steps from its tier buckets `series` (resolution
/// `res`): `(step ms, value)` pairs, steps without a value left out.
///
/// # Errors
/// A sketch that does not deserialize, or a null in a bucket's key or counts (broken
/// invariants of the tier table).
pub fn eval_range(
    f: RangeFn,
    series: &SeriesBuckets,
    route: &Route,
    at: At,
    (r, res): (i64, i64),
    params: &[f64],
) -> Result<Vec<(i64, f64)>, strata_rollup::RollupError> {
    let exact = matches!(route.source, Source::Tier { exact: true, .. });
    let Steps { start, end, step } = route.steps;
    let n = if step > 0 && end >= start {
        ((end - start) / step + 1) as usize
    } else {
        1
    };
    let mut out = Vec::with_capacity(n);
    // The windows move forward with the steps: each one's buckets are found from the
    // last one's.
    let (mut a, mut z) = (0, 0);
    let ends = series.ends();
    for t in route.steps.iter() {
        let w = window(at.eval_time(t), r, res, exact);
        (a, z) = (seek(ends, a, w.0), seek(ends, z, w.1));
        let buckets = a..z.max(a);
        // A one-bucket window whose stored quantile was read needs no sketch.
        let stored = match buckets.len() {
            1 if f == RangeFn::QuantileOverTime => series.quantile(a),
            _ => None,
        };
        let quantile = f == RangeFn::QuantileOverTime && stored.is_none();
        if let Some((b, kll)) = merged(series, buckets, quantile)?
            && let Some(v) = value(f, &b, kll.as_ref(), stored, w, params)
        {
            out.push((t, v));
        }
    }
    Ok(out)
}

/// A sample: `(sample ms, value)`.
pub type SamplePoint = (i64, f64);

/// A plain selector of one series at `route`'s steps from its tier buckets (resolution
/// `res`), where raw samples have expired: at each step, the last sample of the latest
/// bucket ending within `max(lookback, res)` before it (`(step ms, (sample ms, value))`).
///
/// # Errors
/// A null in a bucket's key or counts (a broken invariant of the tier table).
pub fn eval_select(
    series: &SeriesBuckets,
    route: &Route,
    at: At,
    lookback: i64,
    res: i64,
) -> Result<Vec<(i64, SamplePoint)>, strata_rollup::RollupError> {
    let mut out = vec![];
    let ends = series.ends();
    for t in route.steps.iter() {
        let (lo, hi) = window(at.eval_time(t), lookback.max(res), res, false);
        let z = ends.partition_point(|e| *e <= hi);
        if z > 0 && ends[z - 1] > lo {
            let b = series.bucket(z - 1)?;
            out.push((t, (b.last_ts, b.last)));
        }
    }
    Ok(out)
}

/// What [`eval_series`] evaluates: `func(v[range])` (`None`: the plain selector `v`,
/// its sample timestamps when `sample_ts`) at `route`'s steps moved by `at`, over buckets
/// of resolution `res` (ms).
#[derive(Debug, Clone)]
pub struct Eval {
    /// The range function, `None` for a plain selector.
    pub func: Option<RangeFn>,
    /// The steps and their source.
    pub route: Route,
    /// `offset` and `@`.
    pub at: At,
    /// Window (range functions) or lookback delta (selectors), ms.
    pub range: i64,
    /// The tier's resolution, ms.
    pub res: i64,
    /// The function's scalar parameters (`quantile_over_time`'s φ).
    pub params: Vec<f64>,
    /// A plain selector's answer is its samples' timestamps (s), not their values.
    pub sample_ts: bool,
}

/// One series' answer at its steps: `(step ms, value)` pairs.
pub type Points = Vec<(i64, f64)>;

/// Below this many buckets, [`eval_series`] evaluates on the calling task.
const PARALLEL_BUCKETS: usize = 16_384;

/// [`eval_range`] (or [`eval_select`]) of each series of `buckets`: `(series id, (step
/// ms, value) points)`, by series id. Many buckets are split by series into up to
/// `partitions` tasks (a sketch's quantile costs microseconds per bucket: 73,000 of them
/// for two years of 100 series at step 1d).
///
/// # Errors
/// A sketch that does not deserialize.
pub async fn eval_series(
    buckets: std::collections::HashMap<i64, SeriesBuckets>,
    eval: Eval,
    partitions: usize,
) -> Result<Vec<(i64, Points)>, strata_rollup::RollupError> {
    let mut all: Vec<(i64, SeriesBuckets)> = buckets.into_iter().collect();
    all.sort_unstable_by_key(|(id, _)| *id);
    let one = |eval: &Eval, (id, b): &(i64, SeriesBuckets)| {
        let points = match eval.func {
            Some(f) => eval_range(
                f,
                b,
                &eval.route,
                eval.at,
                (eval.range, eval.res),
                &eval.params,
            )?,
            None => eval_select(b, &eval.route, eval.at, eval.range, eval.res)?
                .into_iter()
                .map(|(t, (st, sv))| {
                    (
                        t,
                        if eval.sample_ts {
                            st as f64 / 1000.0
                        } else {
                            sv
                        },
                    )
                })
                .collect(),
        };
        Ok((*id, points))
    };
    let total: usize = all.iter().map(|(_, b)| b.len()).sum();
    let parts = partitions.clamp(1, (total / PARALLEL_BUCKETS).max(1));
    if parts == 1 || tokio::runtime::Handle::try_current().is_err() {
        return all.iter().map(|s| one(&eval, s)).collect();
    }
    let per = all.len().div_ceil(parts);
    let eval = std::sync::Arc::new(eval);
    let mut tasks = vec![];
    while !all.is_empty() {
        let rest = all.split_off(per.min(all.len()));
        let chunk = std::mem::replace(&mut all, rest);
        let eval = eval.clone();
        tasks.push(tokio::spawn(async move {
            chunk
                .iter()
                .map(|s| one(&eval, s))
                .collect::<Result<Vec<_>, strata_rollup::RollupError>>()
        }));
    }
    let mut out = vec![];
    for t in tasks {
        let part = t
            .await
            .map_err(|e| strata_rollup::RollupError::Invariant(format!("a tier task: {e}")))?;
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;
    const H: i64 = 3_600_000;
    const D: i64 = 86_400_000;

    fn view(name: &str, res: i64, watermark: i64, horizon: Option<i64>) -> TierView {
        TierView {
            name: name.into(),
            table: format!("rollup_{name}"),
            resolution_ms: res,
            sketch: res >= H,
            watermark_ms: Some(watermark),
            horizon_ms: horizon,
        }
    }

    fn routing(raw_horizon: Option<i64>, cap: Option<i64>) -> Routing {
        Routing {
            views: vec![
                view("1m", M, 100 * D + 10 * M, Some(10 * D)),
                view("1h", H, 100 * D, Some(0)),
                view("1d", D, 99 * D, None),
            ],
            raw_horizon_ms: raw_horizon,
            max_resolution_ms: cap,
            catalog: std::sync::Arc::new(strata_rollup::TierCatalog::new(vec![], vec![])),
        }
    }

    #[test]
    fn the_coarsest_exact_tier_wins_then_raw_then_an_approximate_tier() {
        let r = routing(Some(50 * D), None);
        let tier = |tier, exact| Source::Tier { tier, exact };
        // A day window at midnight: the 1d tier, up to its watermark.
        assert_eq!(r.choose(Some(RangeFn::Rate), 99 * D, D), tier(2, true));
        // Past it: the 1h tier.
        assert_eq!(r.choose(Some(RangeFn::Rate), 100 * D, D), tier(1, true));
        // Not on an hour: the 1m tier; past its watermark: raw.
        assert_eq!(
            r.choose(Some(RangeFn::Rate), 100 * D + 5 * M, 5 * M),
            tier(0, true)
        );
        assert_eq!(
            r.choose(Some(RangeFn::Rate), 100 * D + 11 * M, 5 * M),
            Source::Raw
        );
        // irate needs raw samples; quantile_over_time a tier with sketches.
        assert_eq!(r.choose(Some(RangeFn::Irate), 99 * D, D), Source::Raw);
        assert_eq!(
            r.choose(Some(RangeFn::QuantileOverTime), 100 * D + 5 * M, 5 * M),
            Source::Raw
        );
        assert_eq!(
            r.choose(Some(RangeFn::QuantileOverTime), 99 * D, D),
            tier(2, true)
        );
        // Unaligned, raw kept: raw.
        assert_eq!(
            r.choose(Some(RangeFn::Rate), 60 * D + 30_000, 5 * M),
            Source::Raw
        );
        // Raw expired (before day 50), 1m expired (before day 10): the 1h tier,
        // approximately; a window reaching past the 1m horizon is not the 1m tier's.
        assert_eq!(
            r.choose(Some(RangeFn::Rate), 5 * D + 30_000, 5 * M),
            tier(1, false)
        );
        assert_eq!(
            r.choose(Some(RangeFn::Rate), 10 * D + 2 * M, 5 * M),
            tier(1, false)
        );
        assert_eq!(
            r.choose(Some(RangeFn::Rate), 20 * D + 30_000, 5 * M),
            tier(0, false)
        );
        assert_eq!(
            r.choose(Some(RangeFn::Rate), 20 * D + 5 * M, 5 * M),
            tier(0, true)
        );
        // Plain selectors read raw while it lasts, then the finest tier.
        assert_eq!(r.choose(None, 60 * D, 5 * M), Source::Raw);
        assert_eq!(r.choose(None, 20 * D, 5 * M), tier(0, false));
        // max_source_resolution caps the tiers.
        let capped = routing(Some(50 * D), Some(H));
        assert_eq!(capped.choose(Some(RangeFn::Rate), 99 * D, D), tier(1, true));
    }

    #[test]
    fn routes_cut_the_steps_where_the_source_changes() {
        let r = routing(None, None);
        let steps = Steps {
            start: 97 * D,
            end: 101 * D,
            step: D,
        };
        let at = At {
            offset: 0,
            at: None,
        };
        let routes = r.routes(Some(RangeFn::SumOverTime), steps, at, D);
        let got: Vec<(Source, i64, i64)> = routes
            .iter()
            .map(|r| (r.source, r.steps.start / D, r.steps.end / D))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Source::Tier {
                        tier: 2,
                        exact: true
                    },
                    97,
                    99
                ),
                (
                    Source::Tier {
                        tier: 1,
                        exact: true
                    },
                    100,
                    100
                ),
                (Source::Raw, 101, 101),
            ]
        );
        // `offset 1d` moves every window a day back: one more step from the 1d tier.
        let at = At {
            offset: D,
            at: None,
        };
        let routes = r.routes(Some(RangeFn::SumOverTime), steps, at, D);
        assert_eq!(routes[0].steps.end, 100 * D);
    }

    #[test]
    fn seeking_from_the_last_window_finds_what_a_search_finds() {
        // Bucket ends every 10 ms from 10 to 1,000; targets moving forward by small and
        // large jumps, staying, and moving back.
        let series = SeriesBuckets::from_buckets(&strata_rollup::bucket::bucketize(
            (1..=100).map(|i| (i * 10, 1.0)),
            10,
        ));
        let ends = series.ends();
        assert_eq!((ends[0], ends[99]), (10, 1000));
        let mut at = 0;
        for t in [
            -5, 0, 10, 11, 19, 20, 20, 35, 400, 401, 990, 1000, 1001, 5000, 500, 9, 10,
        ] {
            let want = ends.partition_point(|e| *e <= t);
            at = seek(ends, at, t);
            assert_eq!(at, want, "t = {t}");
        }
        assert_eq!(seek(&[], 0, 5), 0);
    }

    #[test]
    fn approximate_windows_snap_to_whole_buckets() {
        assert_eq!(window(10 * H + 7 * M, 5 * M, H, false), (9 * H, 10 * H));
        assert_eq!(window(10 * H + 7 * M, 90 * M, H, false), (8 * H, 10 * H));
        assert_eq!(window(10 * H, 3 * H, H, true), (7 * H, 10 * H));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_buckets_are_evaluated_in_tasks_with_every_series_once_in_order() {
        // 40 series of 1,000 minutes (40,000 buckets: split over 2 tasks) against each
        // series evaluated alone; sum_over_time over 5 minutes, so each value is
        // 5 * (series + minute offset) sums that can be checked by hand at one step.
        let mut all = std::collections::HashMap::new();
        for id in 0..40i64 {
            let samples: Vec<(i64, f64)> = (1..=1000).map(|m| (m * M, (id + m) as f64)).collect();
            let b = SeriesBuckets::from_buckets(&strata_rollup::bucket::bucketize(samples, M));
            all.insert(id * 7919 % 1000, b);
        }
        let eval = Eval {
            func: Some(RangeFn::SumOverTime),
            route: Route {
                source: Source::Tier {
                    tier: 0,
                    exact: true,
                },
                steps: Steps {
                    start: 5 * M,
                    end: 1000 * M,
                    step: M,
                },
            },
            at: At {
                offset: 0,
                at: None,
            },
            range: 5 * M,
            res: M,
            params: vec![],
            sample_ts: false,
        };
        let parallel = eval_series(all.clone(), eval.clone(), 2).await.unwrap();
        let ids: Vec<i64> = parallel.iter().map(|(id, _)| *id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "every series once, by id");
        assert_eq!(ids.len(), 40);
        for (id, points) in &parallel {
            let alone = eval_range(
                RangeFn::SumOverTime,
                &all[id],
                &eval.route,
                eval.at,
                (5 * M, M),
                &[],
            )
            .unwrap();
            assert_eq!(points, &alone);
            assert_eq!(points.len(), 996);
        }
        // Series 0 (id 0): at minute 10, minutes 6..=10 of values 0 + m: 40.
        assert_eq!(parallel[0].1[5], (10 * M, 40.0));
    }

    #[test]
    fn rate_from_buckets_equals_rate_from_samples() {
        // A counter every 15 s over 3 minutes with a reset inside the second minute and
        // one exactly at the third minute's first sample.
        let mut samples = vec![];
        let mut v = 0.0;
        for i in 1..=12 {
            v += 3.0;
            if i == 6 {
                v = 1.0;
            }
            if i == 9 {
                v = 0.5;
            }
            samples.push((i * 15_000, v));
        }
        let buckets =
            SeriesBuckets::from_buckets(&strata_rollup::bucket::bucketize(samples.clone(), M));
        let route = Route {
            source: Source::Tier {
                tier: 0,
                exact: true,
            },
            steps: Steps {
                start: 3 * M,
                end: 3 * M,
                step: M,
            },
        };
        let at = At {
            offset: 0,
            at: None,
        };
        for f in [
            RangeFn::Rate,
            RangeFn::Increase,
            RangeFn::Delta,
            RangeFn::Resets,
            RangeFn::Changes,
            RangeFn::CountOverTime,
            RangeFn::SumOverTime,
            RangeFn::MinOverTime,
            RangeFn::MaxOverTime,
            RangeFn::LastOverTime,
            RangeFn::FirstOverTime,
        ] {
            let tier = eval_range(f, &buckets, &route, at, (3 * M, M), &[]).unwrap();
            let raw = kernels::eval_range(f, &samples, 0, 3 * M, 3 * M, &[]);
            assert_eq!(tier, vec![(3 * M, raw.unwrap())], "{f:?}");
        }
    }
}
