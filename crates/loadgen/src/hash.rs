//! The single-hash time that bounds login throughput, measured in the same run.
//!
//! The bound is timed on the service's own routine
//! (`auth::domain::PasswordHasher::verify_blocking`: Argon2id, m=19456 KiB, t=2, p=1,
//! on the service's hashing thread, in its reused buffer), one verification at a time. With one hash per
//! core at a time, logins per second cannot exceed cores / (time of one verification).
//! For comparison it also times the `argon2` crate's own `verify_password`, which
//! allocates and zeroes the 19 MiB on every call; the two alternate, so both see the
//! machine in the same state.
//!
//! Then it measures what the bound assumes, that every core hashes as fast as one
//! alone: `cores` verifications at a time through the service's own threads, for
//! `PARALLEL_SECONDS`. On this 2-core VM two concurrent Argon2 runs, 19 MiB each, no
//! longer fit the shared 32 MiB L3 cache together, so each is often slower than one
//! alone; the hashes per second they reach are the ceiling no login rate can pass.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use auth::domain::PasswordHasher;
use secrecy::SecretString;

use crate::{procstat, record::HashResult};

/// Untimed verifications first, so page faults of the first allocation do not count.
const WARMUP: usize = 2;

/// How long every core hashes at once.
const PARALLEL_SECONDS: f64 = 4.0;

pub fn measure(samples: usize, watch: &procstat::Watch) -> anyhow::Result<HashResult> {
    anyhow::ensure!(samples > 0, "--samples must be positive");
    let params = Params::new(PasswordHasher::MEMORY_KIB, PasswordHasher::ITERATIONS, PasswordHasher::LANES, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = crate::scenario::PASSWORD;
    let hash =
        argon2.hash_password_with_salt(password.as_bytes(), b"loadgen-fixed-salt").map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?.to_string();
    let service = PasswordHasher::new(1)?;
    let secret = SecretString::from(password);
    let by_service = || {
        anyhow::ensure!(service.verify_blocking(&secret, &hash)?, "the service's routine refused the password");
        Ok(())
    };
    let by_crate = || argon2.verify_password(password.as_bytes(), hash.as_str()).map_err(|e| anyhow::anyhow!("argon2 verify: {e}"));
    for _ in 0..WARMUP {
        by_service()?;
        by_crate()?;
    }
    let time = |call: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<Duration> {
        let started = Instant::now();
        call()?;
        Ok(started.elapsed())
    };
    let mut times: Vec<Duration> = Vec::with_capacity(samples);
    let mut crate_times: Vec<Duration> = Vec::with_capacity(samples);
    let before = procstat::snapshot(watch);
    for i in 0..samples {
        if i % 2 == 0 {
            times.push(time(&by_service)?);
            crate_times.push(time(&by_crate)?);
        } else {
            crate_times.push(time(&by_crate)?);
            times.push(time(&by_service)?);
        }
    }
    let cpu = before.zip(procstat::snapshot(watch)).map(|(before, after)| procstat::cores_used(&before, &after));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let parallel_per_s = parallel_rate(cores, &secret, &hash)?;
    times.sort();
    crate_times.sort();
    let median = median(&times);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(HashResult {
        cores,
        samples,
        memory_kib: PasswordHasher::MEMORY_KIB,
        iterations: PasswordHasher::ITERATIONS,
        lanes: PasswordHasher::LANES,
        median_ms: ms(median),
        min_ms: ms(times[0]),
        max_ms: ms(times[samples - 1]),
        p10_ms: ms(times[samples / 10]),
        p90_ms: ms(times[(samples * 9 / 10).min(samples - 1)]),
        crate_call_median_ms: Some(ms(self::median(&crate_times))),
        parallel_per_s: Some(parallel_per_s),
        bound_per_s: cores as f64 / median.as_secs_f64(),
        cpu_cores: cpu.as_ref().map(|c| c.groups.clone()).unwrap_or_default(),
        cpu_other_processes: cpu.map(|c| c.others).unwrap_or_default(),
    })
}

/// Verifications per second with `cores` of them running at once on the service's own
/// hashing threads (one caller per thread, each waiting for its answer).
fn parallel_rate(cores: usize, secret: &SecretString, hash: &str) -> anyhow::Result<f64> {
    let service = PasswordHasher::new(cores)?;
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(PARALLEL_SECONDS);
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    while Instant::now() < deadline {
                        anyhow::ensure!(service.verify_blocking(secret, hash)?, "the service's routine refused the password");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        callers.into_iter().try_for_each(|caller| caller.join().map_err(|_| anyhow::anyhow!("a hashing caller panicked"))?)
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2 }
}
