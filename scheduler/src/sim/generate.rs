//! Synthetic workloads, seedable, after the model of Lublin and Feitelson ("The workload on
//! parallel supercomputers: modeling the characteristics of rigid jobs", 2003): a quarter of
//! the jobs serial, parallel sizes log-uniform in two stages and often powers of two; the
//! logarithm of the run time hyper-gamma distributed, with bigger jobs more often in the long
//! component. Arrivals are gamma-distributed gaps with a daily cycle, scaled so the offered
//! load reaches a target; users over-estimate run times and round their requests up, as
//! users do. Same seed, same workload.

use std::f64::consts::PI;

use super::swf::{Swf, SwfJob};

/// Probability that a job is serial.
const SERIAL: f64 = 0.244;
/// Probability that a parallel job's size is a power of two.
const POWER_OF_TWO: f64 = 0.576;
/// Probability that log2(size) comes from the lower of the two uniform stages.
const LOWER_STAGE: f64 = 0.86;
/// Lowest log2(size) of a parallel job.
const LOG_LOW: f64 = 0.8;
/// The short run-time component: gamma(shape, scale) of ln(seconds).
const SHORT: (f64, f64) = (4.2, 0.94);
/// The long component.
const LONG: (f64, f64) = (312.0, 0.03);
/// Probability of the short component: `PA * size + PB`, size in nodes of a 128-node machine.
const PA: f64 = -0.0054;
const PB: f64 = 0.78;
/// Round values users ask for, seconds.
const ROUND_LIMITS: [u64; 13] =
    [300, 600, 900, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400, 172_800, 345_600, 604_800];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneratorConfig {
    /// Number of jobs.
    pub jobs: usize,
    /// Processors of the machine (largest job size).
    pub processors: u64,
    /// Random seed.
    pub seed: u64,
    /// Offered load: work submitted over capacity across the submission span.
    pub load: f64,
    /// Number of users (activity falls off as 1/rank).
    pub users: u32,
}

impl GeneratorConfig {
    /// `jobs` jobs for a machine of `processors`, load 0.85, 32 users, seed 1.
    pub fn new(jobs: usize, processors: u64) -> Self {
        Self { jobs, processors, seed: 1, load: 0.85, users: 32 }
    }
}

/// A small, fast, seedable generator (SplitMix64): the same numbers on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in (a, b).
    pub fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.unit()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        (-2.0 * self.unit().ln()).sqrt() * (2.0 * PI * self.unit()).cos()
    }

    /// Gamma(shape, scale) (Marsaglia and Tsang; shapes below 1 boosted).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape < 1.0 {
            let g = self.gamma(shape + 1.0, scale);
            return g * self.unit().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * scale;
            }
        }
    }
}

fn size(rng: &mut Rng, processors: u64) -> u64 {
    if processors <= 1 || rng.unit() < SERIAL {
        return 1;
    }
    let high = (processors as f64).log2();
    let middle = (high - 2.5).max(LOG_LOW);
    let u = if rng.unit() < LOWER_STAGE {
        rng.uniform(LOG_LOW, middle)
    } else {
        rng.uniform(middle, high.max(middle))
    };
    let s = if rng.unit() < POWER_OF_TWO { u.round().exp2() } else { u.exp2().round() };
    (s as u64).clamp(1, processors)
}

fn runtime(rng: &mut Rng, size: u64, processors: u64) -> f64 {
    let nodes = size as f64 * 128.0 / processors.max(1) as f64;
    let p = (PA * nodes + PB).clamp(0.0, 1.0);
    let (shape, scale) = if rng.unit() < p { SHORT } else { LONG };
    rng.gamma(shape, scale).exp().clamp(1.0, 7.0 * 86_400.0)
}

fn request(rng: &mut Rng, run: f64) -> f64 {
    let guess = run * rng.uniform(0.0, 5f64.ln()).exp();
    ROUND_LIMITS.iter().map(|&l| l as f64).find(|&l| l >= guess).unwrap_or(guess.ceil())
}

/// Arrival rate over the day, relative to the mean: busiest early afternoon.
fn daily(t: f64) -> f64 {
    let hour = (t / 3600.0) % 24.0;
    1.0 + 0.6 * (2.0 * PI * (hour - 8.0) / 24.0).sin()
}

/// Generates a workload as an SWF trace.
pub fn generate(config: &GeneratorConfig) -> Swf {
    let mut rng = Rng::new(config.seed);
    let p = config.processors.max(1);
    let users = config.users.max(1);
    let weights: Vec<f64> = (1..=users).map(|k| 1.0 / f64::from(k)).collect();
    let total_weight: f64 = weights.iter().sum();
    let mut jobs: Vec<SwfJob> = (0..config.jobs)
        .map(|i| {
            let size = size(&mut rng, p);
            let run = runtime(&mut rng, size, p);
            let mut pick = rng.unit() * total_weight;
            let user = weights.iter().position(|w| {
                pick -= w;
                pick <= 0.0
            });
            let user = user.unwrap_or(0) as u64 + 1;
            SwfJob {
                id: i as u64 + 1,
                run: Some(run.round()),
                allocated: Some(size),
                requested: Some(size),
                requested_time: Some(request(&mut rng, run.round())),
                status: Some(1),
                user: Some(user),
                group: Some(user % 4 + 1),
                ..SwfJob::default()
            }
        })
        .collect();
    // Gaps scaled so the work arrives at `load` times the machine's capacity.
    let work: f64 =
        jobs.iter().map(|j| j.run.unwrap_or(0.0) * j.allocated.unwrap_or(1) as f64).sum();
    let span = work / (config.load.max(0.01) * p as f64);
    let mean_gap = span / config.jobs.max(1) as f64;
    let mut t = 0.0f64;
    for j in &mut jobs {
        j.submit = t.round();
        t += rng.gamma(0.7, mean_gap / 0.7) / daily(t);
    }
    let header = vec![
        "Version: 2.2".to_owned(),
        format!(
            "Note: synthetic, after Lublin & Feitelson (2003); gangway simulate --generate {} (seed {}, load {})",
            config.jobs, config.seed, config.load
        ),
        format!("MaxJobs: {}", config.jobs),
        format!("MaxProcs: {p}"),
        "UnixStartTime: 0".to_owned(),
    ];
    Swf { header, jobs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_workload() {
        let c = GeneratorConfig::new(500, 256);
        assert_eq!(generate(&c), generate(&c));
        let other = GeneratorConfig { seed: 2, ..c };
        assert_ne!(generate(&c), generate(&other));
    }

    #[test]
    fn sizes_runs_and_requests_are_sane() {
        let swf = generate(&GeneratorConfig::new(2000, 256));
        let serial = swf.jobs.iter().filter(|j| j.requested == Some(1)).count();
        assert!((350..650).contains(&serial), "about a quarter serial: {serial}");
        for j in &swf.jobs {
            let (run, limit) = (j.run.unwrap(), j.requested_time.unwrap());
            assert!(run >= 1.0 && limit >= run, "{j:?}");
            assert!((1..=256).contains(&j.requested.unwrap()));
        }
        assert!(swf.jobs.windows(2).all(|w| w[0].submit <= w[1].submit));
        let text = swf.to_text();
        assert_eq!(Swf::parse(&text).unwrap().jobs.len(), 2000);
    }

    #[test]
    fn gamma_has_its_mean() {
        let mut rng = Rng::new(7);
        let n = 20_000;
        let mean = (0..n).map(|_| rng.gamma(4.2, 0.94)).sum::<f64>() / f64::from(n);
        assert!((mean - 4.2 * 0.94).abs() < 0.1, "{mean}");
        let small = (0..n).map(|_| rng.gamma(0.7, 2.0)).sum::<f64>() / f64::from(n);
        assert!((small - 1.4).abs() < 0.1, "{small}");
    }
}
