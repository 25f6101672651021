//! Sampling policies per metric family: what to keep when full fidelity costs too much.
//!
//! Each `[[sampling]]` policy matches series as a relabeling `keep` step does
//! (`source_labels` joined by `separator`, against `regex` anchored at both ends; by default
//! `__name__` against `.*`), and the first policy that matches a series applies:
//! - `full`: everything is kept;
//! - `probabilistic` (`probability` p): each sample is kept with probability p. Samples of
//!   cumulative counters and gauges are kept as they are (thinning a counter loses no
//!   increase: `rate` and `increase` span the gaps). Delta points (OTLP delta sums and
//!   histograms, StatsD counters; see [`Sampler::sample_deltas`]) that are kept are
//!   multiplied by 1/p, so that their sums and counts stay unbiased (the Horvitz-Thompson
//!   estimator: E[kept x / p] = x);
//! - `rate_limit` (`max_samples_per_second` N): a series keeps at most one sample per
//!   slot of 1/N s of sample time (slots aligned to the Unix epoch, as VictoriaMetrics'
//!   `-dedup.minScrapeInterval` keeps one sample per interval; Strata keeps the first to
//!   arrive, since it cannot take back what it acknowledged). Samples may arrive out of
//!   order (concurrent requests of one sender): a series remembers which of the 64 slots
//!   up to its newest kept one hold a kept sample. A sample older than that is dropped,
//!   as Prometheus drops samples out of order beyond its window;
//! - `adaptive` (`min_probability`, default 0.01): probabilistic with a probability that
//!   halves each second the write path is behind and doubles each second it is not, between
//!   `min_probability` and 1. Behind means the head holds more samples than
//!   `[persist] max_head_samples` (persistence is behind) or a WAL append took longer than
//!   `wal_slow_ms` (default 100 ms; the WAL's disk is slow).
//!
//! Dropped samples are counted in `strata_samples_dropped_total{reason}` (`sampling_probabilistic`,
//! `sampling_rate_limit`, `sampling_adaptive`); the adaptive probability is the gauge
//! `strata_sampling_adaptive_probability`.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use crate::model::RawLabels;
use crate::receive::otlp::DeltaPoint;
use crate::receive::remote_write::Validated;

/// What a policy does with the series it matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Keep everything.
    Full,
    /// Keep each sample with this probability (0 < p <= 1).
    Probabilistic {
        /// The probability.
        probability: f64,
    },
    /// Keep at most this many samples per second of each series.
    RateLimit {
        /// Samples per second (> 0).
        max_samples_per_second: f64,
    },
    /// Probabilistic, tightening while the write path is behind.
    Adaptive {
        /// The lowest probability (default 0.01).
        min_probability: f64,
    },
}

/// One `[[sampling.policies]]` entry as written: a matcher, a policy and its parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    source_labels: Option<Vec<String>>,
    separator: Option<String>,
    regex: Option<String>,
    policy: String,
    probability: Option<f64>,
    max_samples_per_second: Option<f64>,
    min_probability: Option<f64>,
}

/// A sampling policy: which series, and what to do.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPolicy")]
pub struct SamplingPolicy {
    source_labels: Vec<String>,
    separator: String,
    regex: regex::Regex,
    /// What it does.
    pub policy: Policy,
}

impl TryFrom<RawPolicy> for SamplingPolicy {
    type Error = String;

    fn try_from(raw: RawPolicy) -> Result<Self, String> {
        let src = raw.regex.unwrap_or_else(|| ".*".into());
        let regex = regex::Regex::new(&format!("^(?s:{src})$"))
            .map_err(|e| format!("invalid sampling regex {src:?}: {e}"))?;
        let need = |v: Option<f64>, what: &str| {
            v.ok_or_else(|| format!("sampling policy {:?} needs {what}", raw.policy))
        };
        let in_unit = |p: f64, what: &str| {
            if p > 0.0 && p <= 1.0 {
                Ok(p)
            } else {
                Err(format!(
                    "sampling policy: {what} must be in (0, 1], got {p}"
                ))
            }
        };
        let policy = match raw.policy.as_str() {
            "full" => Policy::Full,
            "probabilistic" => Policy::Probabilistic {
                probability: in_unit(need(raw.probability, "probability")?, "probability")?,
            },
            "rate_limit" => {
                let n = need(raw.max_samples_per_second, "max_samples_per_second")?;
                if !(n > 0.0 && n.is_finite()) {
                    return Err(format!(
                        "sampling policy: max_samples_per_second must be positive, got {n}"
                    ));
                }
                Policy::RateLimit {
                    max_samples_per_second: n,
                }
            }
            "adaptive" => Policy::Adaptive {
                min_probability: in_unit(raw.min_probability.unwrap_or(0.01), "min_probability")?,
            },
            other => {
                return Err(format!(
                    "unknown sampling policy {other:?} (full, probabilistic, rate_limit, adaptive)"
                ));
            }
        };
        Ok(SamplingPolicy {
            source_labels: raw
                .source_labels
                .unwrap_or_else(|| vec![crate::model::METRIC_NAME_LABEL.into()]),
            separator: raw.separator.unwrap_or_else(|| ";".into()),
            regex,
            policy,
        })
    }
}

impl SamplingPolicy {
    fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = self
            .source_labels
            .iter()
            .map(|n| get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&self.separator);
        self.regex.is_match(&value)
    }
}

/// `[sampling_settings]`-free configuration: the policies and the adaptive thresholds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// The policies, first match wins; a series no policy matches is kept in full.
    pub policies: Vec<SamplingPolicy>,
    /// A WAL append slower than this (ms) counts as behind for `adaptive` (default 100).
    pub wal_slow_ms: Option<u64>,
    /// The random generator's seed (tests); default: from the operating system.
    pub seed: Option<u64>,
}

/// What one series' samples go through.
enum Decision {
    Keep,
    Probability(f64, &'static str),
    RateLimit(f64),
}

/// Applies the policies. Shared by every write.
pub struct Sampler {
    policies: Vec<SamplingPolicy>,
    rng: Mutex<rand::rngs::SmallRng>,
    /// What is remembered of each series seen, by fingerprint: its policy (matching is a
    /// function of the label set alone) and its rate limit's slots. Cleared past
    /// [`DECISION_CACHE_ENTRIES`].
    series: Mutex<rustc_hash::FxHashMap<u64, SeriesState>>,
    /// The adaptive probability and when it was last updated.
    adaptive: Mutex<(f64, Instant)>,
    min_probability: f64,
    wal_slow_ms: u64,
}

/// What the sampler remembers of one series.
#[derive(Debug, Clone, Copy)]
struct SeriesState {
    /// The index of the policy that matches it, if any.
    policy: Option<usize>,
    /// The newest rate-limit slot holding a kept sample; `i64::MIN` before the first.
    newest_slot: i64,
    /// Bit `i` set: slot `newest_slot - i` holds a kept sample.
    kept: u64,
}

impl SeriesState {
    fn new(policy: Option<usize>) -> Self {
        SeriesState {
            policy,
            newest_slot: i64::MIN,
            kept: 0,
        }
    }

    /// Whether a sample in `slot` is kept under the rate limit (at most one per slot;
    /// older than the 64 slots remembered: dropped), remembering it if so.
    fn admit(&mut self, slot: i64) -> bool {
        if self.newest_slot == i64::MIN || slot > self.newest_slot {
            let ahead = if self.newest_slot == i64::MIN {
                u64::MAX
            } else {
                slot.abs_diff(self.newest_slot)
            };
            self.kept = if ahead >= 64 { 0 } else { self.kept << ahead };
            self.kept |= 1;
            self.newest_slot = slot;
            return true;
        }
        let behind = self.newest_slot.abs_diff(slot);
        if behind >= 64 || self.kept & (1 << behind) != 0 {
            return false;
        }
        self.kept |= 1 << behind;
        true
    }
}

/// The rate-limit slot of a sample at `t_ms` for slots of `gap_ms`.
fn slot_of(t_ms: i64, gap_ms: f64) -> i64 {
    (t_ms as f64 / gap_ms).floor() as i64
}

/// Most series whose matching policy is remembered.
const DECISION_CACHE_ENTRIES: usize = 1 << 20;

/// Samples dropped by a pass, by reason (`sampling_*`).
pub type Dropped = Vec<(&'static str, u64)>;

impl Sampler {
    /// A sampler with `cfg`'s policies.
    pub fn new(cfg: &SamplingConfig) -> Sampler {
        let rng = match cfg.seed {
            Some(s) => rand::rngs::SmallRng::seed_from_u64(s),
            None => rand::rngs::SmallRng::from_os_rng(),
        };
        let min_probability = cfg
            .policies
            .iter()
            .filter_map(|p| match p.policy {
                Policy::Adaptive { min_probability } => Some(min_probability),
                _ => None,
            })
            .fold(1.0, f64::min);
        Sampler {
            policies: cfg.policies.clone(),
            rng: Mutex::new(rng),
            series: Mutex::new(Default::default()),
            adaptive: Mutex::new((1.0, Instant::now())),
            min_probability,
            wal_slow_ms: cfg.wal_slow_ms.unwrap_or(100),
        }
    }

    /// Whether any policy is set.
    pub fn enabled(&self) -> bool {
        !self.policies.is_empty()
    }

    /// The adaptive policy's current probability.
    pub fn adaptive_probability(&self) -> f64 {
        self.adaptive.lock().0
    }

    /// Tells the adaptive policy how the write path is doing: `head_over` (the head holds
    /// more than its persist threshold) and the last WAL append's duration. The
    /// probability halves per second behind and doubles per second healthy.
    pub fn observe(&self, head_over: bool, wal_append_ms: u64) {
        let behind = head_over || wal_append_ms > self.wal_slow_ms;
        let mut a = self.adaptive.lock();
        let now = Instant::now();
        let dt = now.duration_since(a.1).as_secs_f64();
        a.1 = now;
        let factor = if behind { (-dt).exp2() } else { dt.exp2() };
        a.0 = (a.0 * factor).clamp(self.min_probability, 1.0);
    }

    /// What policy `index` (none: `None`) does now.
    fn decision_of(&self, index: Option<usize>) -> Decision {
        match index.map(|i| self.policies[i].policy) {
            None | Some(Policy::Full) => Decision::Keep,
            Some(Policy::Probabilistic { probability }) if probability >= 1.0 => Decision::Keep,
            Some(Policy::Probabilistic { probability }) => {
                Decision::Probability(probability, "sampling_probabilistic")
            }
            Some(Policy::RateLimit {
                max_samples_per_second,
            }) => Decision::RateLimit(1000.0 / max_samples_per_second),
            Some(Policy::Adaptive { .. }) => {
                let p = self.adaptive_probability();
                if p >= 1.0 {
                    Decision::Keep
                } else {
                    Decision::Probability(p, "sampling_adaptive")
                }
            }
        }
    }

    /// Thins `v`'s samples (cumulative counters and gauges: kept samples are not scaled).
    /// Series left without samples are removed. Returns what was dropped, by reason.
    pub fn thin(&self, v: &mut Validated) -> Dropped {
        let mut dropped: HashMap<&'static str, u64> = HashMap::new();
        let mut states = self.series.lock();
        if states.len() > DECISION_CACHE_ENTRIES {
            states.clear();
        }
        let mut any_dropped = false;
        for s in &mut v.series {
            let labels: &RawLabels = &s.labels;
            let state = states.entry(labels.fingerprint()).or_insert_with(|| {
                SeriesState::new(
                    self.policies
                        .iter()
                        .position(|p| p.matches(|n| labels.get(n))),
                )
            });
            let before = s.samples.len();
            let why = match self.decision_of(state.policy) {
                Decision::Keep => continue,
                Decision::Probability(p, why) => {
                    let mut rng = self.rng.lock();
                    s.samples.retain(|_| rng.random::<f64>() < p);
                    why
                }
                Decision::RateLimit(gap_ms) => {
                    s.samples
                        .retain(|x| state.admit(slot_of(x.timestamp_ms, gap_ms)));
                    "sampling_rate_limit"
                }
            };
            let n = (before - s.samples.len()) as u64;
            if n > 0 {
                any_dropped = true;
                *dropped.entry(why).or_default() += n;
            }
        }
        drop(states);
        if any_dropped {
            v.series.retain(|s| !s.samples.is_empty());
        }
        let mut out: Dropped = dropped.into_iter().collect();
        out.sort();
        out
    }

    /// Samples delta points (each the increase over its interval): a kept point under a
    /// probability p is multiplied by 1/p, so that sums of the running totals stay
    /// unbiased; a rate limit keeps a point only 1/N s after the last kept one of its series
    /// (its increase is then lost, not moved: use `probabilistic` for counts).
    /// Staleness markers are always kept.
    pub fn sample_deltas(&self, deltas: &mut Vec<DeltaPoint>) -> Dropped {
        let mut dropped: HashMap<&'static str, u64> = HashMap::new();
        let mut out = Vec::with_capacity(deltas.len());
        for mut d in deltas.drain(..) {
            if d.stale {
                out.push(d);
                continue;
            }
            let index = {
                let labels = &d.labels;
                let get = |n: &str| labels.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
                self.policies.iter().position(|p| p.matches(get))
            };
            let decision = self.decision_of(index);
            match decision {
                Decision::Keep => out.push(d),
                Decision::Probability(p, why) => {
                    if self.rng.lock().random::<f64>() < p {
                        d.value /= p;
                        out.push(d);
                    } else {
                        *dropped.entry(why).or_default() += 1;
                    }
                }
                Decision::RateLimit(gap_ms) => {
                    let fp = crate::model::Labels::from_pairs(
                        d.labels.iter().map(|(a, b)| (a.as_str(), b.as_str())),
                    )
                    .fingerprint();
                    let keep = self
                        .series
                        .lock()
                        .entry(fp)
                        .or_insert(SeriesState::new(index))
                        .admit(slot_of(d.t_ms, gap_ms));
                    if keep {
                        out.push(d);
                    } else {
                        *dropped.entry("sampling_rate_limit").or_default() += 1;
                    }
                }
            }
        }
        *deltas = out;
        let mut out: Dropped = dropped.into_iter().collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Limits;

    fn config(toml_policies: &str, seed: u64) -> SamplingConfig {
        let mut c: SamplingConfig = yaml_serde::from_str(toml_policies).unwrap();
        c.seed = Some(seed);
        c
    }

    fn delta(name: &str, t: i64, value: f64) -> DeltaPoint {
        DeltaPoint {
            labels: vec![("__name__".into(), name.into())],
            start_ms: t - 1000,
            t_ms: t,
            value,
            stale: false,
        }
    }

    /// Many seeded runs of p = 0.1 over 2,000 delta points of heavy-tailed sizes: every
    /// run's estimate of the sum and of the count (points of value 1) is within 4 standard
    /// errors of the truth (Horvitz-Thompson variance: sum of x^2 (1-p)/p), and so is the
    /// mean of the runs (standard error divided by the square root of the runs).
    #[test]
    fn probabilistic_delta_sums_and_counts_are_unbiased() {
        let p = 0.1;
        let values: Vec<f64> = (0..2000)
            .map(|i| {
                1.0 + ((i * 7919) % 1000) as f64 / 10.0 + if i % 97 == 0 { 500.0 } else { 0.0 }
            })
            .collect();
        let truth: f64 = values.iter().sum();
        let se = (values.iter().map(|x| x * x).sum::<f64>() * (1.0 - p) / p).sqrt();
        let count_se = (values.len() as f64 * (1.0 - p) / p).sqrt();
        let runs = 200;
        let (mut sum_of_sums, mut sum_of_counts) = (0.0, 0.0);
        for seed in 0..runs {
            let s = Sampler::new(&config(
                "policies:\n- policy: probabilistic\n  probability: 0.1\n",
                seed,
            ));
            let mut d: Vec<DeltaPoint> = values
                .iter()
                .enumerate()
                .map(|(i, v)| delta("bytes_total", i as i64 * 1000, *v))
                .collect();
            let mut c: Vec<DeltaPoint> = (0..values.len())
                .map(|i| delta("events_total", i as i64 * 1000, 1.0))
                .collect();
            s.sample_deltas(&mut d);
            s.sample_deltas(&mut c);
            let est: f64 = d.iter().map(|x| x.value).sum();
            let count: f64 = c.iter().map(|x| x.value).sum();
            assert!(
                (est - truth).abs() < 4.0 * se,
                "seed {seed}: {est} vs {truth} (se {se})"
            );
            assert!(
                (count - values.len() as f64).abs() < 4.0 * count_se,
                "seed {seed}: {count}"
            );
            sum_of_sums += est;
            sum_of_counts += count;
        }
        let runs = runs as f64;
        assert!((sum_of_sums / runs - truth).abs() < 4.0 * se / runs.sqrt());
        assert!((sum_of_counts / runs - values.len() as f64).abs() < 4.0 * count_se / runs.sqrt());
    }

    fn validated(name: &str, times: &[i64]) -> Validated {
        let mut v = Validated::default();
        v.push(
            &[("__name__".to_string(), name.to_string())],
            times
                .iter()
                .map(|&t| crate::model::Sample {
                    timestamp_ms: t,
                    value: t as f64,
                })
                .collect(),
            &Limits::default(),
            i64::MAX / 2,
        );
        v
    }

    #[test]
    fn gauges_are_thinned_unscaled_and_rate_limits_hold() {
        let s = Sampler::new(&config(
            "policies:\n- regex: fast_.*\n  policy: rate_limit\n  max_samples_per_second: 0.1\n- regex: thin_.*\n  policy: probabilistic\n  probability: 0.5\n- policy: full\n",
            7,
        ));
        // One sample per second for 100 s: 10 kept, 10 s apart, across two writes.
        let mut a = validated("fast_gauge", &(0..50).map(|i| i * 1000).collect::<Vec<_>>());
        let mut b = validated(
            "fast_gauge",
            &(50..100).map(|i| i * 1000).collect::<Vec<_>>(),
        );
        let d1 = s.thin(&mut a);
        let d2 = s.thin(&mut b);
        let kept: Vec<i64> = a.series[0]
            .samples
            .iter()
            .chain(&b.series[0].samples)
            .map(|x| x.timestamp_ms)
            .collect();
        assert_eq!(kept, (0..10).map(|i| i * 10_000).collect::<Vec<_>>());
        assert_eq!(d1, [("sampling_rate_limit", 45)]);
        assert_eq!(d2, [("sampling_rate_limit", 45)]);
        // Thinned, each kept sample unchanged (value = its time).
        let mut t = validated("thin_gauge", &(0..1000).collect::<Vec<_>>());
        s.thin(&mut t);
        let n = t.series[0].samples.len();
        assert!((400..600).contains(&n), "{n}");
        assert!(
            t.series[0]
                .samples
                .iter()
                .all(|x| x.value == x.timestamp_ms as f64)
        );
        // Full: all kept.
        let mut f = validated("other", &[1, 2, 3]);
        assert!(s.thin(&mut f).is_empty());
        assert_eq!(f.series[0].samples.len(), 3);
    }

    #[test]
    fn the_rate_limit_keeps_one_sample_per_slot_in_any_arrival_order() {
        let s = Sampler::new(&config(
            "policies:\n- policy: rate_limit\n  max_samples_per_second: 1\n",
            1,
        ));
        // Slots of 1 s. Requests of one sender arrive out of order: 5 s, then 3 s, 4 s
        // and 3.5 s. 3.5 s shares 3 s's slot: dropped; the rest each have their own.
        let kept = |ts: &[i64]| {
            let mut v = validated("g", ts);
            s.thin(&mut v);
            v.series
                .first()
                .map(|x| {
                    x.samples
                        .iter()
                        .map(|x| x.timestamp_ms)
                        .collect::<Vec<i64>>()
                })
                .unwrap_or_default()
        };
        assert_eq!(kept(&[5_000]), vec![5_000]);
        assert_eq!(kept(&[3_000, 4_000, 3_500]), vec![3_000, 4_000]);
        assert_eq!(kept(&[5_999, 6_000]), vec![6_000]);
        // 64 slots behind the newest kept one (6 s): too old to judge, dropped; 63 behind
        // is judged.
        assert_eq!(kept(&[-58_000, -57_000]), vec![-57_000]);
        // Far ahead: the remembered slots start again.
        assert_eq!(
            kept(&[1_000_000, 1_000_500, 999_000]),
            vec![1_000_000, 999_000]
        );
    }

    #[test]
    fn adaptive_tightens_while_behind_and_recovers() {
        let s = Sampler::new(&config(
            "policies:\n- policy: adaptive\n  min_probability: 0.05\n",
            1,
        ));
        assert_eq!(s.adaptive_probability(), 1.0);
        {
            // Pretend the last update was 2 s ago: behind for 2 s quarters it.
            s.adaptive.lock().1 = Instant::now() - std::time::Duration::from_secs(2);
        }
        s.observe(true, 0);
        let p = s.adaptive_probability();
        assert!((0.24..0.26).contains(&p), "{p}");
        s.adaptive.lock().1 = Instant::now() - std::time::Duration::from_secs(60);
        s.observe(false, 500);
        assert_eq!(
            s.adaptive_probability(),
            0.05,
            "a slow WAL append is behind too"
        );
        s.adaptive.lock().1 = Instant::now() - std::time::Duration::from_secs(10);
        s.observe(false, 1);
        assert_eq!(s.adaptive_probability(), 1.0);
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            "policies:\n- policy: probabilistic\n  probability: 0\n",
            "policies:\n- policy: probabilistic\n  probability: 1.5\n",
            "policies:\n- policy: rate_limit\n  max_samples_per_second: 0\n",
            "policies:\n- policy: nope\n",
            "policies:\n- policy: full\n  regex: '('\n",
        ] {
            assert!(
                yaml_serde::from_str::<SamplingConfig>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
