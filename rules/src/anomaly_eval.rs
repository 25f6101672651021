//! How well anomaly rules find anomalies: synthetic series with daily and weekly cycles and
//! noise, anomalies of known kinds injected at known times, and the precision and recall
//! of the events an anomaly rule fires on them. `strata bench-anomaly` and the crate's
//! tests run it.
//!
//! **The data.** Each series is `level + daily sine + weekly cosine + noise` (level
//! 50–150, amplitudes 10–30% and 5–15% of the level, noise of 2% of the level: Gaussian,
//! but one minute in a hundred four times as wide, as real metrics have heavier tails),
//! with [`Setup::history`] of clean history before the evaluated week and, in the week,
//! two anomalies at random times a day or more apart, each one of:
//! - **spike**: `+5 sigma` for 10 minutes;
//! - **dip**: `-5 sigma` for 20 minutes;
//! - **level shift**: `+3 sigma` for 3 hours;
//! - **variance change**: noise times 3 for 3 hours.
//!
//! One series in five gets none (its events are all false). Sigma is the noise's standard
//! deviation.
//!
//! **The run.** A group with one anomaly rule (resolution [`Setup::resolution`]) is
//! evaluated every minute over the week through [`crate::group::Group::eval`], with a
//! querier that answers from the synthetic series; the baselines are fitted from the
//! history before the first evaluation.
//!
//! **Scoring.** An event is one alert from the time it fires to the time it resolves. An
//! injected anomaly is found when an event overlaps it (its window extended by the rule's
//! `for` and `keep_firing_for`, for the alert's delay and its tail); an event is true when
//! it overlaps an injected anomaly of its series so extended. Precision = true events /
//! events; recall = found anomalies / anomalies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::anomaly::{DAY_MS, WEEK_MS};
use crate::group::{Group, Rule};
use crate::{Env, Labels, Sample};

/// A kind of injected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `+5 sigma` for 10 minutes.
    Spike,
    /// `-5 sigma` for 20 minutes.
    Dip,
    /// `+3 sigma` for 3 hours.
    LevelShift,
    /// Noise times 3 for 3 hours.
    VarianceChange,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Spike,
        Kind::Dip,
        Kind::LevelShift,
        Kind::VarianceChange,
    ];

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spike => "spike",
            Kind::Dip => "dip",
            Kind::LevelShift => "level shift",
            Kind::VarianceChange => "variance change",
        }
    }

    fn duration_ms(self) -> i64 {
        match self {
            Kind::Spike => 10 * 60_000,
            Kind::Dip => 20 * 60_000,
            Kind::LevelShift | Kind::VarianceChange => 3 * 3_600_000,
        }
    }
}

/// A deterministic stream of uniform and normal variates (xorshift64*, Box–Muller).
pub(crate) struct Rng(u64);

impl Rng {
    /// The stream of `seed` (0 is taken as 1).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One synthetic series.
#[derive(Debug, Clone)]
pub struct Series {
    labels: Labels,
    level: f64,
    daily: f64,
    weekly: f64,
    phase: f64,
    sigma: f64,
    seed: u64,
    /// The injected anomalies: kind, start and end (ms).
    pub anomalies: Vec<(Kind, i64, i64)>,
}

impl Series {
    /// Its value at `t_ms`; the noise is a function of `(seed, t)`, so that a point asked
    /// twice is the same.
    pub fn value(&self, t_ms: i64) -> f64 {
        use std::f64::consts::TAU;
        let d = t_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
        let w = t_ms.rem_euclid(WEEK_MS) as f64 / WEEK_MS as f64;
        let mut rng = Rng::new(self.seed ^ (t_ms as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let wide = if rng.uniform() < 0.01 { 4.0 } else { 1.0 };
        let mut noise = wide * self.sigma * rng.normal();
        let mut v =
            self.level + self.daily * (TAU * d + self.phase).sin() + self.weekly * (TAU * w).cos();
        for (kind, from, to) in &self.anomalies {
            if (*from..*to).contains(&t_ms) {
                match kind {
                    Kind::Spike => v += 5.0 * self.sigma,
                    Kind::Dip => v -= 5.0 * self.sigma,
                    Kind::LevelShift => v += 3.0 * self.sigma,
                    Kind::VarianceChange => noise *= 3.0,
                }
            }
        }
        v + noise
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// How many series.
    pub series: usize,
    /// The seed of everything random.
    pub seed: u64,
    /// The clean history before the evaluated week.
    pub history: Duration,
    /// The baselines' resolution.
    pub resolution: Duration,
    /// The rule's sensitivity, sigmas.
    pub sensitivity: f64,
    /// The rule's `for` (minimum duration).
    pub min_duration: Duration,
    /// The rule's `keep_firing_for` (dedup window).
    pub dedup: Duration,
}

/// The evaluated week's start (ms): a Monday, 2026-01-05T00:00:00Z.
pub const WEEK_START_MS: i64 = 1_767_571_200_000;

/// The synthetic series of `setup`.
pub fn series(setup: &Setup) -> Vec<Series> {
    let mut rng = Rng::new(setup.seed);
    (0..setup.series)
        .map(|i| {
            let level = 50.0 + 100.0 * rng.uniform();
            let mut anomalies = vec![];
            if i % 5 != 4 {
                // Two anomalies, the first in the week's first half, the second a day or
                // more after it.
                for half in 0..2 {
                    let kind = Kind::ALL[(rng.uniform() * 4.0) as usize % 4];
                    let from = WEEK_START_MS
                        + half * 4 * DAY_MS
                        + (rng.uniform() * 2.5 * DAY_MS as f64) as i64 / 60_000 * 60_000
                        + 3_600_000;
                    anomalies.push((kind, from, from + kind.duration_ms()));
                }
            }
            Series {
                labels: vec![("series".into(), format!("s{i:05}"))],
                level,
                daily: level * (0.1 + 0.2 * rng.uniform()),
                weekly: level * (0.05 + 0.1 * rng.uniform()),
                phase: rng.uniform() * std::f64::consts::TAU,
                sigma: level * 0.02,
                seed: (rng.uniform() * u64::MAX as f64) as u64 | 1,
                anomalies,
            }
        })
        .collect()
}

/// Answers the rule's queries from the synthetic series.
struct Synthetic(Arc<Vec<Series>>);

#[async_trait::async_trait]
impl crate::Querier for Synthetic {
    async fn query(&self, _expr: &str, t_ms: i64) -> Result<Vec<Sample>, String> {
        Ok(self
            .0
            .iter()
            .map(|s| (s.labels.clone(), s.value(t_ms)))
            .collect())
    }

    async fn query_range(
        &self,
        _expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(Labels, Vec<(i64, f64)>)>, String> {
        Ok(self
            .0
            .iter()
            .map(|s| {
                let pts = (0..=(end_ms - start_ms) / step_ms)
                    .map(|i| start_ms + i * step_ms)
                    .filter(|t| *t < WEEK_START_MS)
                    .map(|t| (t, s.value(t)))
                    .collect();
                (s.labels.clone(), pts)
            })
            .collect())
    }
}

struct Discard;

#[async_trait::async_trait]
impl crate::Appender for Discard {
    async fn append(&self, _: Vec<(Labels, i64, f64)>) -> Result<(), String> {
        Ok(())
    }
}

/// Precision and recall of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Events fired.
    pub events: usize,
    /// Events that overlap an injected anomaly.
    pub true_events: usize,
    /// Injected anomalies.
    pub anomalies: usize,
    /// Injected anomalies an event overlaps, per kind: `(kind, found, injected)`.
    pub found: Vec<(Kind, usize, usize)>,
    /// Series with a baseline after the fit.
    pub fitted: usize,
}

impl Report {
    /// True events / events (1 when there are none).
    pub fn precision(&self) -> f64 {
        if self.events == 0 {
            1.0
        } else {
            self.true_events as f64 / self.events as f64
        }
    }

    /// Found anomalies / anomalies.
    pub fn recall(&self) -> f64 {
        let found: usize = self.found.iter().map(|f| f.1).sum();
        found as f64 / self.anomalies.max(1) as f64
    }
}

/// Runs `setup` over the week (see the module's doc).
///
/// # Errors
/// A message when the rule file does not parse (a bad setup).
pub async fn run(setup: &Setup) -> Result<Report, String> {
    let all = Arc::new(series(setup));
    let yaml = format!(
        "groups:\n- name: eval\n  interval: 1m\n  rules:\n  - anomaly: Synthetic\n    expr: synthetic\n    sensitivity: {}\n    resolution: {}s\n    history: {}s\n    for: {}s\n    keep_firing_for: {}s\n",
        setup.sensitivity,
        setup.resolution.as_secs(),
        setup.history.as_secs(),
        setup.min_duration.as_secs(),
        setup.dedup.as_secs(),
    );
    let file = crate::file::RuleFile::parse("eval.yml", &yaml).map_err(|e| e.to_string())?;
    let mut group = Group::new("eval.yml", &file.groups[0], Duration::from_secs(60));
    let env = Env::bare(Arc::new(Synthetic(all.clone())), Arc::new(Discard));
    // Events: (series, fired at) -> resolved at (or the last time seen firing).
    let mut events: HashMap<(Labels, i64), i64> = HashMap::new();
    let Rule::Anomaly(rule) = &group.rules[0] else {
        unreachable!("one anomaly rule")
    };
    rule.fit_now(WEEK_START_MS, &env).await;
    let mut fitted = 0;
    for m in 0..WEEK_MS / 60_000 {
        let ts = WEEK_START_MS + m * 60_000;
        group.eval(ts, &env).await;
        let Rule::Anomaly(rule) = &group.rules[0] else {
            unreachable!("one anomaly rule")
        };
        if m == 0 {
            fitted = rule.status().series;
        }
        for a in rule.alert.alerts() {
            if let Some(fired) = a.fired_at_ms {
                let end = a.resolved_at_ms.unwrap_or(ts);
                events.insert((a.labels.clone(), fired), end);
            }
        }
    }
    let slack = (setup.min_duration + setup.dedup).as_millis() as i64 + 60_000;
    let of = |labels: &Labels| {
        labels
            .iter()
            .find(|(n, _)| n == "series")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let by_name: HashMap<String, &Series> = all.iter().map(|s| (of(&s.labels), s)).collect();
    let overlaps = |s: &Series, from: i64, to: i64| -> Vec<usize> {
        s.anomalies
            .iter()
            .enumerate()
            .filter(|(_, (_, a, b))| from <= b + slack && to >= *a)
            .map(|(i, _)| i)
            .collect()
    };
    let mut report = Report {
        events: events.len(),
        fitted,
        ..Report::default()
    };
    let mut found: HashMap<(String, usize), ()> = HashMap::new();
    for ((labels, fired), end) in &events {
        let name = of(labels);
        let hits = by_name
            .get(&name)
            .map_or(vec![], |s| overlaps(s, *fired, *end));
        if !hits.is_empty() {
            report.true_events += 1;
        }
        for h in hits {
            found.insert((name.clone(), h), ());
        }
    }
    for kind in Kind::ALL {
        let mut injected = 0;
        let mut hit = 0;
        for s in all.iter() {
            for (i, a) in s.anomalies.iter().enumerate() {
                if a.0 == kind {
                    injected += 1;
                    hit += found.contains_key(&(of(&s.labels), i)) as usize;
                }
            }
        }
        report.anomalies += injected;
        report.found.push((kind, hit, injected));
    }
    Ok(report)
}

/// What fitting costs: `(seconds per series, baseline bytes per series)` for `n` series of
/// `setup`'s data at its resolution and history, fitted one after another on one thread
/// (the bytes are the profile's and the baseline's fixed fields, as held in memory).
///
/// # Errors
/// The first fit's error.
pub fn fit_cost(setup: &Setup, n: usize) -> Result<(f64, usize), String> {
    let step = setup.resolution.as_millis() as i64;
    let history = setup.history.as_millis() as i64;
    let all = series(&Setup {
        series: n,
        ..setup.clone()
    });
    let data: Vec<Vec<(i64, f64)>> = all
        .iter()
        .map(|s| {
            (0..history / step)
                .map(|i| WEEK_START_MS - history + i * step)
                .map(|t| (t, s.value(t)))
                .collect()
        })
        .collect();
    let started = std::time::Instant::now();
    let mut bytes = 0;
    for points in &data {
        let b = crate::anomaly::fit(points, step, WEEK_START_MS)?;
        bytes += std::mem::size_of::<crate::anomaly::Baseline>() + b.profile.len() * 8;
    }
    Ok((
        started.elapsed().as_secs_f64() / n.max(1) as f64,
        bytes / n.max(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(sensitivity: f64) -> Setup {
        Setup {
            series: 20,
            seed: 42,
            history: Duration::from_secs(28 * 86_400),
            resolution: Duration::from_secs(3600),
            sensitivity,
            min_duration: Duration::from_secs(120),
            dedup: Duration::from_secs(300),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_default_sensitivity_finds_most_anomalies_with_few_false_events() {
        let r = run(&setup(3.0)).await.unwrap();
        eprintln!("{r:?} precision {} recall {}", r.precision(), r.recall());
        assert_eq!(r.fitted, 20);
        assert_eq!(r.anomalies, 32);
        assert!(r.precision() >= 0.85, "{r:?}");
        assert!(r.recall() >= 0.75, "{r:?}");
        // Spikes and dips of 5 sigma are each found (a 3-sigma level shift sits at the
        // default sensitivity: about half its minutes cross it, so it is found less often).
        for (kind, hit, n) in &r.found {
            if matches!(kind, Kind::Spike | Kind::Dip) {
                assert!(*hit as f64 >= 0.9 * *n as f64, "{kind:?}: {hit}/{n}");
            }
        }
        // A higher sensitivity fires fewer events and finds no more.
        let strict = run(&setup(5.0)).await.unwrap();
        assert!(strict.events <= r.events, "{strict:?}");
        assert!(strict.recall() <= r.recall());
    }

    #[tokio::test]
    async fn the_same_data_gives_the_same_report() {
        let mut s = setup(3.0);
        s.series = 5;
        s.history = Duration::from_secs(4 * 86_400);
        assert_eq!(run(&s).await.unwrap(), run(&s).await.unwrap());
    }
}
