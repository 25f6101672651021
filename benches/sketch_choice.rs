//! Which quantile sketch the rollup tiers carry: accuracy on latency-like, heavy-tailed
//! data against bytes per series-bucket, measured (`cargo bench --bench sketch_choice`;
//! figures in benches/README.md, "Sketch choice").
//!
//! Candidates, all Apache DataSketches formats the Python `datasketches` package reads:
//! KLL of doubles and of floats at k = 200 and 100, REQ of floats (k = 12, high-rank
//! accuracy: relative error shrinking toward p99), t-digest (k = 100). Per distribution
//! (log-normal latencies, Pareto alpha 1.5, a bimodal mix of fast and slow requests, and
//! a constant) and per bucket size (12 values: an hour of 5-minute samples; 360: an hour
//! of 10-second samples; 8,640: a day of them), each sketch is built per bucket, then
//! 24 of them merged (a day from hours, as the 1d tier merges the 1h tier's), and
//! compared with the exact quantiles of the values (Prometheus's `quantile`
//! interpolation is not what a rank sketch estimates; the exact rank of the answer is):
//! for p50, p95, p99 the rank error `|rank(estimate) - q|` (worst over 20 seeds), and
//! the serialized bytes per bucket, raw and zstd-compressed (level 3: Parquet's column
//! compression of the `sketch` column).

use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};
use datasketches::req::{ReqFloat, ReqSketch};
use datasketches::tdigest::TDigestMut;
use rand::{Rng, SeedableRng};

const QS: [f64; 3] = [0.5, 0.95, 0.99];

trait Candidate {
    fn name(&self) -> String;
    fn build(&self, values: &[f64]) -> Vec<u8>;
    /// Merges serialized sketches and answers quantiles `qs`.
    fn merged_quantiles(&self, parts: &[Vec<u8>], qs: &[f64]) -> Vec<f64>;
}

struct Kll64(u16);
struct Kll32(u16);
struct Req32;
struct TDigest(u16);

impl Candidate for Kll64 {
    fn name(&self) -> String {
        format!("KLL doubles k={}", self.0)
    }
    fn build(&self, values: &[f64]) -> Vec<u8> {
        let mut k = KllSketch::<KllFloat<f64>>::new(self.0).unwrap();
        for v in values {
            k.update(KllFloat::<f64>::new(*v).unwrap());
        }
        k.serialize()
    }
    fn merged_quantiles(&self, parts: &[Vec<u8>], qs: &[f64]) -> Vec<f64> {
        let mut k = KllSketch::<KllFloat<f64>>::new(self.0).unwrap();
        for p in parts {
            k.merge(&KllSketch::deserialize(p).unwrap()).unwrap();
        }
        qs.iter()
            .map(|q| *k.quantile(*q, SearchCriteria::Inclusive).unwrap().unwrap())
            .collect()
    }
}

impl Candidate for Kll32 {
    fn name(&self) -> String {
        format!("KLL floats k={}", self.0)
    }
    fn build(&self, values: &[f64]) -> Vec<u8> {
        let mut k = KllSketch::<KllFloat<f32>>::new(self.0).unwrap();
        for v in values {
            k.update(KllFloat::<f32>::new(*v as f32).unwrap());
        }
        k.serialize()
    }
    fn merged_quantiles(&self, parts: &[Vec<u8>], qs: &[f64]) -> Vec<f64> {
        let mut k = KllSketch::<KllFloat<f32>>::new(self.0).unwrap();
        for p in parts {
            k.merge(&KllSketch::deserialize(p).unwrap()).unwrap();
        }
        qs.iter()
            .map(|q| *k.quantile(*q, SearchCriteria::Inclusive).unwrap().unwrap() as f64)
            .collect()
    }
}

impl Candidate for Req32 {
    fn name(&self) -> String {
        "REQ floats k=12 high-rank".into()
    }
    fn build(&self, values: &[f64]) -> Vec<u8> {
        let mut r = ReqSketch::<ReqFloat<f32>>::default();
        for v in values {
            r.update(ReqFloat::<f32>::new(*v as f32).unwrap());
        }
        r.serialize()
    }
    fn merged_quantiles(&self, parts: &[Vec<u8>], qs: &[f64]) -> Vec<f64> {
        let mut r = ReqSketch::<ReqFloat<f32>>::default();
        for p in parts {
            r.merge(&ReqSketch::deserialize(p).unwrap()).unwrap();
        }
        qs.iter()
            .map(|q| *r.quantile(*q, SearchCriteria::Inclusive).unwrap().unwrap() as f64)
            .collect()
    }
}

impl Candidate for TDigest {
    fn name(&self) -> String {
        format!("t-digest k={}", self.0)
    }
    fn build(&self, values: &[f64]) -> Vec<u8> {
        let mut t = TDigestMut::new(self.0).unwrap();
        for v in values {
            t.update(*v);
        }
        t.serialize()
    }
    fn merged_quantiles(&self, parts: &[Vec<u8>], qs: &[f64]) -> Vec<f64> {
        let mut t = TDigestMut::new(self.0).unwrap();
        for p in parts {
            t.merge(&TDigestMut::deserialize(p).unwrap());
        }
        qs.iter()
            .map(|q| t.quantile(*q).unwrap().unwrap())
            .collect()
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A value of distribution `d`, seconds.
fn draw(d: &str, rng: &mut impl Rng) -> f64 {
    match d {
        // Median 100 ms, a long right tail (p99 about 1 s).
        "log-normal" => (0.1f64.ln() + normal(rng)).exp(),
        // Pareto alpha 1.5 from 10 ms: infinite variance.
        "pareto" => 0.01 / (1.0 - rng.random::<f64>()).powf(1.0 / 1.5),
        // 90% fast (20 ms), 10% slow (2 s), each log-normal.
        "bimodal" => {
            let m: f64 = if rng.random::<f64>() < 0.9 { 0.02 } else { 2.0 };
            (m.ln() + 0.3 * normal(rng)).exp()
        }
        _ => 0.25,
    }
}

/// The fraction of `sorted` at or below `x` (the inclusive rank of `x`).
fn rank(sorted: &[f64], x: f64) -> f64 {
    sorted.partition_point(|v| *v <= x) as f64 / sorted.len() as f64
}

fn main() {
    let candidates: Vec<Box<dyn Candidate>> = vec![
        Box::new(Kll64(200)),
        Box::new(Kll32(200)),
        Box::new(Kll32(100)),
        Box::new(Req32),
        Box::new(TDigest(100)),
    ];
    println!(
        "{:<26} {:<11} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "sketch", "data", "n", "B/bucket", "zstd B", "p50 err", "p95 err", "p99 err"
    );
    for n in [12usize, 360, 8640] {
        for d in ["log-normal", "pareto", "bimodal", "constant"] {
            for c in &candidates {
                let (mut bytes, mut zbytes, mut buckets) = (0usize, 0usize, 0usize);
                let mut worst = [0.0f64; 3];
                for seed in 0..20u64 {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                    let mut all = vec![];
                    let mut parts = vec![];
                    for _ in 0..24 {
                        let values: Vec<f64> = (0..n).map(|_| draw(d, &mut rng)).collect();
                        let s = c.build(&values);
                        bytes += s.len();
                        zbytes += zstd::bulk::compress(&s, 3).unwrap().len();
                        buckets += 1;
                        all.extend(values);
                        parts.push(s);
                    }
                    all.sort_by(f64::total_cmp);
                    let est = c.merged_quantiles(&parts, &QS);
                    for (i, (q, e)) in QS.iter().zip(est).enumerate() {
                        // The estimate's rank interval [rank below, rank at]: zero error
                        // when q falls in it (ties, a constant).
                        let lo = all.partition_point(|v| *v < e) as f64 / all.len() as f64;
                        let hi = rank(&all, e);
                        let err = if *q < lo {
                            lo - q
                        } else if *q > hi {
                            q - hi
                        } else {
                            0.0
                        };
                        worst[i] = worst[i].max(err);
                    }
                }
                println!(
                    "{:<26} {:<11} {:>6} {:>9.0} {:>9.0} {:>7.2}% {:>7.2}% {:>7.2}%",
                    c.name(),
                    d,
                    n,
                    bytes as f64 / buckets as f64,
                    zbytes as f64 / buckets as f64,
                    worst[0] * 100.0,
                    worst[1] * 100.0,
                    worst[2] * 100.0
                );
            }
        }
    }
}
