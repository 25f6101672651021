//! Anomaly detection: a seasonal baseline per series, and scores against it.
//!
//! **Fit** ([`fit`]). A series' history, sampled every `step` ms (the rule's
//! `resolution`), is decomposed with MSTL (Bandara, Hyndman and Bergmeir, "MSTL: A
//! Seasonal-Trend Decomposition Algorithm for Time Series with Multiple Seasonal Patterns",
//! 2021, arXiv:2107.13462) through the `augurs` crate, with robust inner STL loops
//! (Cleveland et al., "STL: A Seasonal-Trend Decomposition Procedure Based on Loess",
//! 1990, section 3.3), so that spikes inside the history do not bend the baseline:
//! - a daily period once the history holds three whole days, and a weekly one once it
//!   holds two whole weeks and a day (one day is held out to measure sigma) (UTC: slots are counted from the Unix epoch, so a profile's slot `k`
//!   is the same time of day, or of the week, in every cycle);
//! - the baseline's **profile** is the sum of the seasonal components over the history's
//!   last cycle of its longest period, one value per slot;
//! - its **level** is the trend's last value (a flat forecast of the trend until the next
//!   refit);
//! - its **sigma**, the scale of the residuals, is 1.4826 times the median absolute
//!   deviation of the errors that a fit of the history without its last day makes on that
//!   day (a robust standard deviation of forecast errors: Rousseeuw and Croux,
//!   "Alternatives to the Median Absolute Deviation", 1993; in-sample residuals would be
//!   smaller, as the seasonal components take part of the noise in); where that is 0 (more
//!   than half the errors equal), 1.2533 times the mean absolute deviation.
//!
//! Gaps in the history (steps with no point) are filled by linear interpolation, as MSTL
//! takes no missing values. A history shorter than three days has no seasonal profile: the
//! **fallback** baseline is the median of its points with 1.4826 MAD as sigma. A history
//! of fewer than [`MIN_POINTS`] points has no baseline.
//!
//! **Score** ([`Baseline::score`]): `(value - expected(t)) / sigma`, where `expected(t)`
//! is the level plus the profile at `t`'s slot, linearly interpolated between slots. The
//! band is `expected ± sensitivity × sigma`; a point outside it is anomalous. Sigma is
//! the residuals' scale over the fit's history, which rolls forward at each refit (weekly
//! by default): a series whose variance grows after a fit scores high until the next fit
//! takes the new variance in.

/// The fewest points a baseline is fitted from.
pub const MIN_POINTS: usize = 12;

/// One day, ms.
pub const DAY_MS: i64 = 86_400_000;

/// One week, ms.
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// How a baseline was fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// MSTL with a daily and a weekly period.
    MstlWeekly,
    /// MSTL with a daily period (history of three days to two weeks and a day).
    MstlDaily,
    /// Median and MAD of the history (under three days).
    MedianMad,
}

impl Method {
    /// Its name, as stored and shown: `mstl_weekly`, `mstl_daily`, `median_mad`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::MstlWeekly => "mstl_weekly",
            Method::MstlDaily => "mstl_daily",
            Method::MedianMad => "median_mad",
        }
    }

    /// The method named `s` ([`Method::as_str`]).
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "mstl_weekly" => Some(Method::MstlWeekly),
            "mstl_daily" => Some(Method::MstlDaily),
            "median_mad" => Some(Method::MedianMad),
            _ => None,
        }
    }
}

/// A series' baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// How it was fitted.
    pub method: Method,
    /// When (ms since the epoch, UTC).
    pub fitted_at_ms: i64,
    /// The profile's slot length, ms (the rule's resolution).
    pub step_ms: i64,
    /// The trend's level, in the series' unit.
    pub level: f64,
    /// The seasonal profile, one value per slot of the longest period (empty for
    /// [`Method::MedianMad`]); slot `k` covers times `t` with `(t / step_ms) mod len == k`.
    pub profile: Vec<f64>,
    /// The residuals' robust standard deviation, in the series' unit; > 0.
    pub sigma: f64,
    /// How many points the fit saw.
    pub points: usize,
}

impl Baseline {
    /// The expected value at `t_ms` (ms since the epoch).
    pub fn expected(&self, t_ms: i64) -> f64 {
        if self.profile.is_empty() {
            return self.level;
        }
        let len = self.profile.len() as i64;
        let slot = t_ms.div_euclid(self.step_ms);
        let frac = t_ms.rem_euclid(self.step_ms) as f64 / self.step_ms as f64;
        let a = self.profile[slot.rem_euclid(len) as usize];
        let b = self.profile[(slot + 1).rem_euclid(len) as usize];
        self.level + a + (b - a) * frac
    }

    /// How many sigmas `value` at `t_ms` is from the expected value (signed).
    pub fn score(&self, t_ms: i64, value: f64) -> f64 {
        (value - self.expected(t_ms)) / self.sigma
    }

    /// `value` at `t_ms` judged at `sensitivity` sigmas: the expected value, the band
    /// and the score.
    pub fn judge(&self, t_ms: i64, value: f64, sensitivity: f64) -> Judgement {
        let expected = self.expected(t_ms);
        let score = (value - expected) / self.sigma;
        let band = sensitivity * self.sigma;
        Judgement {
            expected,
            lower: expected - band,
            upper: expected + band,
            score,
            anomalous: score.abs() >= sensitivity,
        }
    }
}

/// A value judged against its baseline ([`Baseline::judge`]), in the series' unit except
/// `score` (sigmas).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// The baseline at the value's time.
    pub expected: f64,
    /// `expected - sensitivity × sigma`.
    pub lower: f64,
    /// `expected + sensitivity × sigma`.
    pub upper: f64,
    /// `(value - expected) / sigma`.
    pub score: f64,
    /// `|score| >= sensitivity`.
    pub anomalous: bool,
}

/// The median of `v` (sorts it); NaN for an empty slice.
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The robust scale of `residuals` (see the module's doc), floored so that it is > 0.
fn robust_sigma(residuals: &[f64], level: f64) -> f64 {
    let mut r: Vec<f64> = residuals.to_vec();
    let m = median(&mut r);
    let mut dev: Vec<f64> = r.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&mut dev);
    let sigma = if mad > 0.0 {
        1.4826 * mad
    } else {
        1.2533 * dev.iter().sum::<f64>() / dev.len().max(1) as f64
    };
    // A constant series: anything else is anomalous, but the score stays finite.
    let floor = (level.abs() * 1e-9).max(1e-12);
    if sigma.is_finite() {
        sigma.max(floor)
    } else {
        floor
    }
}

/// Fits a baseline at `now_ms` to `points` (`(ms, value)`, increasing time, NaN and ±Inf
/// ignored), sampled every `step_ms` ms. `step_ms` must divide a day.
///
/// # Errors
/// A message when the points are too few ([`MIN_POINTS`]), `step_ms` does not divide a
/// day, or MSTL fails.
pub fn fit(points: &[(i64, f64)], step_ms: i64, now_ms: i64) -> Result<Baseline, String> {
    if step_ms <= 0 || DAY_MS % step_ms != 0 {
        return Err(format!("resolution {step_ms}ms does not divide a day"));
    }
    let pts: Vec<(i64, f64)> = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    if pts.len() < MIN_POINTS {
        return Err(format!(
            "too little history: {} points, {MIN_POINTS} needed",
            pts.len()
        ));
    }
    // A dense grid from the first point's slot to the last's, gaps interpolated.
    let first = pts[0].0.div_euclid(step_ms);
    let last = pts[pts.len() - 1].0.div_euclid(step_ms);
    let n = (last - first + 1) as usize;
    let mut y = vec![f64::NAN; n];
    for (t, v) in &pts {
        y[(t.div_euclid(step_ms) - first) as usize] = *v;
    }
    let mut prev: Option<usize> = None;
    for i in 0..n {
        if y[i].is_nan() {
            continue;
        }
        if let Some(p) = prev
            && i > p + 1
        {
            let (a, b) = (y[p], y[i]);
            for (j, slot) in y.iter_mut().enumerate().take(i).skip(p + 1) {
                *slot = a + (b - a) * (j - p) as f64 / (i - p) as f64;
            }
        }
        prev = Some(i);
    }
    let (day, week) = ((DAY_MS / step_ms) as usize, (WEEK_MS / step_ms) as usize);
    let (method, periods) = if n >= 2 * week + day {
        (Method::MstlWeekly, vec![day, week])
    } else if n >= 3 * day {
        (Method::MstlDaily, vec![day])
    } else {
        let level = median(&mut y.clone());
        return Ok(Baseline {
            method: Method::MedianMad,
            fitted_at_ms: now_ms,
            step_ms,
            level,
            profile: vec![],
            sigma: robust_sigma(&y, level),
            points: pts.len(),
        });
    };
    // Sigma from the errors of a fit without the last day on that day: in-sample
    // residuals are smaller than a forecast's errors, as the seasonal components take
    // part of the noise in.
    let held = decompose(&y[..n - day], first, &periods)?;
    let errors: Vec<f64> = (n - day..n)
        .map(|i| y[i] - held.expected((first + i as i64) * step_ms))
        .collect();
    let mut b = decompose(&y, first, &periods)?;
    b.sigma = robust_sigma(&errors, b.level);
    b.method = method;
    b.fitted_at_ms = now_ms;
    b.points = pts.len();
    Ok(b)
}

/// MSTL of the dense series `y` whose first point is in slot `first` (of `step_ms` ms,
/// counted from the epoch), as a baseline with the remainder's scale as sigma.
fn decompose(y: &[f64], first: i64, periods: &[usize]) -> Result<Baseline, String> {
    use augurs::Fit;
    let mut stl = augurs::mstl::stlrs::StlParams::new();
    stl.robust(true);
    let mut params = augurs::mstl::stlrs::MstlParams::new();
    params.stl_params(stl);
    let model = augurs::mstl::MSTLModel::naive(periods.to_vec()).mstl_params(params);
    let fitted = model.fit(y).map_err(|e| e.to_string())?;
    let mstl = fitted.fit();
    let (n, len) = (y.len(), *periods.iter().max().expect("a period"));
    let mut profile = vec![0.0; len];
    for i in n - len..n {
        let slot = (first + i as i64).rem_euclid(len as i64) as usize;
        profile[slot] = mstl.seasonal().iter().map(|s| s[i] as f64).sum();
    }
    let level = mstl.trend()[n - 1] as f64;
    let residuals: Vec<f64> = mstl.remainder().iter().map(|r| *r as f64).collect();
    let step_ms = DAY_MS / periods[0] as i64;
    Ok(Baseline {
        method: Method::MstlDaily,
        fitted_at_ms: 0,
        step_ms,
        level,
        profile,
        sigma: robust_sigma(&residuals, level),
        points: n,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A series with a daily and a weekly cycle around 100 (no noise).
    pub(crate) fn seasonal(t_ms: i64) -> f64 {
        use std::f64::consts::TAU;
        let d = (t_ms.rem_euclid(DAY_MS)) as f64 / DAY_MS as f64;
        let w = (t_ms.rem_euclid(WEEK_MS)) as f64 / WEEK_MS as f64;
        100.0 + 20.0 * (TAU * d).sin() + 10.0 * (TAU * w).cos()
    }

    const STEP: i64 = 15 * 60_000;

    fn history(from: i64, to: i64, noise: f64, seed: u64) -> Vec<(i64, f64)> {
        let mut n = crate::anomaly_eval::Rng::new(seed);
        (from / STEP..to / STEP)
            .map(|i| {
                let t = i * STEP;
                (t, seasonal(t) + noise * n.normal())
            })
            .collect()
    }

    #[test]
    fn four_weeks_of_history_give_a_weekly_baseline_that_follows_both_cycles() {
        let now = 100 * WEEK_MS;
        let b = fit(&history(now - 4 * WEEK_MS, now, 1.0, 7), STEP, now).unwrap();
        assert_eq!(b.method, Method::MstlWeekly);
        assert_eq!(b.profile.len(), (WEEK_MS / STEP) as usize);
        // The noise's standard deviation is 1: the robust scale finds it.
        assert!((0.7..1.3).contains(&b.sigma), "sigma {}", b.sigma);
        // Every point of the next day, between slots too, is expected within 2 sigma.
        let mut worst = 0f64;
        for m in (0..DAY_MS).step_by(60_000 * 7) {
            let t = now + m;
            worst = worst.max((b.expected(t) - seasonal(t)).abs());
        }
        assert!(worst < 2.0, "worst error {worst}");
        assert!((b.score(now, b.expected(now) + 3.0 * b.sigma) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn shorter_histories_fall_back_to_a_daily_fit_then_to_median_and_mad() {
        let now = 100 * WEEK_MS;
        let b = fit(&history(now - 3 * DAY_MS, now, 1.0, 3), STEP, now).unwrap();
        assert_eq!(b.method, Method::MstlDaily);
        assert_eq!(b.profile.len(), (DAY_MS / STEP) as usize);
        let b = fit(&history(now - 6 * 3_600_000, now, 1.0, 3), STEP, now).unwrap();
        assert_eq!(b.method, Method::MedianMad);
        assert!(b.profile.is_empty());
        let mut v: Vec<f64> = history(now - 6 * 3_600_000, now, 1.0, 3)
            .iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(b.level, median(&mut v));
        let e = fit(&history(now - 3_600_000, now, 1.0, 3), STEP, now).unwrap_err();
        assert!(e.contains("too little history: 4 points"), "{e}");
        assert!(
            fit(&history(now - DAY_MS, now, 1.0, 3), 7 * 60_000, now)
                .unwrap_err()
                .contains("does not divide a day")
        );
    }

    #[test]
    fn gaps_spikes_and_constants_do_not_break_a_fit() {
        let now = 100 * WEEK_MS;
        let mut h = history(now - 4 * WEEK_MS, now, 1.0, 11);
        // Six hours missing, and ten spikes of +50 inside the history.
        h.retain(|(t, _)| !(now - 5 * DAY_MS..now - 5 * DAY_MS + 6 * 3_600_000).contains(t));
        for i in 0..10 {
            h[100 + i * 97].1 += 50.0;
        }
        let b = fit(&h, STEP, now).unwrap();
        assert!((0.7..1.5).contains(&b.sigma), "sigma {}", b.sigma);
        let t = now + 3 * 3_600_000;
        assert!((b.expected(t) - seasonal(t)).abs() < 2.0);
        // A constant: its own value scores 0, anything else far off.
        let c: Vec<(i64, f64)> = (0..50).map(|i| (i * STEP, 5.0)).collect();
        let b = fit(&c, STEP, 50 * STEP).unwrap();
        assert_eq!(b.score(60 * STEP, 5.0), 0.0);
        assert!(b.score(60 * STEP, 5.1) > 1e6);
    }

    #[test]
    fn the_same_history_gives_the_same_baseline() {
        let now = 100 * WEEK_MS;
        let h = history(now - 15 * DAY_MS, now, 2.0, 5);
        assert_eq!(fit(&h, STEP, now).unwrap(), fit(&h, STEP, now).unwrap());
    }
}
