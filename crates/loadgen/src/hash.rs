//! The single-hash time that bounds login throughput, measured in the same run.
//!
//! Parameters and calls are the service's own (`auth::domain::password`): Argon2id,
//! m=19456 KiB, t=2, p=1, one `verify_password` per sign-in. With one hash per core
//! at a time, logins per second cannot exceed cores / (time of one verification).

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};

use crate::{procstat, record::HashResult};

pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;

/// Untimed verifications first, so page faults of the first allocation do not count.
const WARMUP: usize = 2;

pub fn measure(samples: usize, watch: &procstat::Watch) -> anyhow::Result<HashResult> {
    anyhow::ensure!(samples > 0, "--samples must be positive");
    let argon2 = || {
        let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).expect("the service's parameters are valid");
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    };
    let password = crate::scenario::PASSWORD.as_bytes();
    let hash = argon2()
        .hash_password_with_salt(password, b"loadgen-fixed-salt")
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?
        .to_string();
    let verify = || {
        argon2().verify_password(password, hash.as_str()).map_err(|e| anyhow::anyhow!("argon2 verify: {e}"))
    };
    for _ in 0..WARMUP {
        verify()?;
    }
    let mut times: Vec<Duration> = Vec::with_capacity(samples);
    let before = procstat::snapshot(watch);
    for _ in 0..samples {
        let started = Instant::now();
        verify()?;
        times.push(started.elapsed());
    }
    let cpu = before.zip(procstat::snapshot(watch)).map(|(before, after)| procstat::cores_used(&before, &after));
    times.sort();
    let median = if samples % 2 == 1 { times[samples / 2] } else { (times[samples / 2 - 1] + times[samples / 2]) / 2 };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(HashResult {
        cores,
        samples,
        memory_kib: MEMORY_KIB,
        iterations: ITERATIONS,
        lanes: LANES,
        median_ms: ms(median),
        min_ms: ms(times[0]),
        max_ms: ms(times[samples - 1]),
        p10_ms: ms(times[samples / 10]),
        p90_ms: ms(times[(samples * 9 / 10).min(samples - 1)]),
        bound_per_s: cores as f64 / median.as_secs_f64(),
        cpu_cores: cpu.as_ref().map(|c| c.groups.clone()).unwrap_or_default(),
        cpu_other_processes: cpu.map(|c| c.others).unwrap_or_default(),
    })
}
