//! Password policy and hashing.
//!
//! Hashing is Argon2id at the OWASP minimum (19 MiB, 2 iterations, 1 lane). It runs on
//! a fixed set of threads, as many as the cores, that take the work from one queue, so
//! a burst of sign-ins queues for CPU instead of starving the async runtime.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordVerifier as _, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

use self::memory::Memory;
use super::Email;

mod memory;

/// The most common passwords of public breach corpora (top of the SecLists lists),
/// refused at signup and at password change.
#[rustfmt::skip]
const COMMON_PASSWORDS: &[&str] = &[
    "12345678", "123456789", "1234567890", "12345678910", "password", "password1", "password123", "passw0rd",
    "qwertyuiop", "qwerty123", "qwerty12", "qwertyui", "1q2w3e4r", "1q2w3e4r5t", "1qaz2wsx", "zaq12wsx",
    "iloveyou", "iloveyou1", "11111111", "00000000", "88888888", "87654321", "abcd1234", "abc12345",
    "sunshine", "princess", "football", "baseball", "welcome1", "welcome123", "admin123", "administrator",
    "letmein1", "trustno1", "superman", "starwars", "whatever", "computer", "internet", "michelle",
    "jennifer", "corvette", "mercedes", "1234qwer", "asdfghjkl", "asdfasdf", "zxcvbnm1", "q1w2e3r4",
    "q1w2e3r4t5", "aa123456", "a1234567", "987654321", "123123123", "123321123", "11223344", "12341234",
    "password!", "changeme", "changeme1", "football1", "monkey123", "dragon123", "master123", "shadow123",
    "qwerty1234", "1qazxsw2", "xxxxxxxx", "qazwsxedc", "samsung1", "google123", "pokemon1", "charlie1",
    "liverpool", "chelsea1", "arsenal1", "spiderman", "batman123", "matrix123", "cinema123", "kino12345",
    "parol123", "parolparol", "privet123", "nataha123", "qwertyqwerty", "ytrewq123", "zxcvbnm123", "vfhbyf123",
];

/// A password that satisfies the policy: 8 to 128 characters, not the email, not a
/// common password. The upper bound caps the work an attacker can make us hash.
pub struct NewPassword(SecretString);

impl NewPassword {
    pub fn parse(raw: &SecretString, email: &Email) -> Result<Self, String> {
        let password = normalized(raw.expose_secret());
        if password.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        let len = password.chars().count();
        if len < 8 {
            return Err("must be at least 8 characters".into());
        }
        if len > 128 {
            return Err("must be at most 128 characters".into());
        }
        let lower = password.to_lowercase();
        let local_part = email.as_ref().split('@').next().unwrap_or_default();
        if lower == email.as_ref() || lower == local_part {
            return Err("must not be your email address".into());
        }
        if COMMON_PASSWORDS.contains(&lower.as_str()) || password.chars().all(|c| password.starts_with(c)) {
            return Err("is too common; choose a less predictable password".into());
        }
        Ok(Self(raw.clone()))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// The queue of the hashing threads (see [`Self::new`]).
    jobs: crossbeam_channel::Sender<Job>,
    /// Hash of a random password, verified against when an account does not exist so
    /// that both paths cost one Argon2 run.
    dummy_hash: Arc<str>,
    /// Argon2 runs of verifications completed so far, counted by the hashing threads
    /// as each run ends: for checking that unknown accounts cost the same work as
    /// wrong passwords (a count of calls would not see a run skipped).
    verifications: Arc<AtomicU64>,
    /// Whether some account may still hold a hash from before passwords were
    /// normalised (`users.password_unnormalised`); assumed until Auth finds none (see
    /// [`Self::unnormalised_hashes_remain`]). While it holds, a password not in NFC
    /// costs two runs against every hash, so that those accounts' second run does not
    /// tell them from the others.
    unnormalised_remain: Arc<AtomicBool>,
}

impl PasswordHasher {
    pub const MEMORY_KIB: u32 = 19 * 1024;
    pub const ITERATIONS: u32 = 2;
    pub const LANES: u32 = 1;

    /// Starts `concurrency` hashing threads. Each keeps Argon2's 19 MiB of working
    /// memory from run to run, on huge pages where the kernel offers them
    /// ([`memory`]): allocating and zeroing it per run cost a tenth of the CPU of a
    /// sign-in, and Argon2 overwrites every block before reading it, so a reused buffer
    /// needs no zeroing. Every buffer is mapped at start; the first takes room at once
    /// (it makes the dummy hash), the others only once their thread first hashes. A
    /// thread that finishes a hash takes the next from the queue at once; handing each
    /// one through the async runtime instead (a semaphore permit, then
    /// `spawn_blocking`) left a core idle between hashes under load. The
    /// threads end when the last clone of the hasher is dropped.
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(concurrency > 0, "password hashing needs at least one thread");
        let params = Params::new(Self::MEMORY_KIB, Self::ITERATIONS, Self::LANES, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let mut buffers = (0..concurrency)
            .map(|_| Memory::new(params.block_count()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| anyhow::anyhow!("mapping memory for password hashing: {e}"))?;
        let random: [u8; 16] = rand::random();
        let dummy_hash = hash_with(&params, &mut buffers[0], &random)?.into();
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for (i, mut buffer) in buffers.into_iter().enumerate() {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        // A panic drops the job's reply, which its caller sees as an error.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut buffer)));
                    }
                })
                .map_err(|e| anyhow::anyhow!("starting a password hashing thread: {e}"))?;
        }
        Ok(Self { params, jobs, dummy_hash, verifications: Arc::default(), unnormalised_remain: Arc::new(AtomicBool::new(true)) })
    }

    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(move |memory| hash_with(&params, memory, normalized(password.expose_secret()).as_bytes())).await?
    }

    /// Verifies `password` against a hash made since passwords are normalised, or
    /// against the dummy hash when there is no account; returns false in that case
    /// whatever the password.
    pub async fn verify(&self, password: &SecretString, hash: Option<&str>) -> anyhow::Result<bool> {
        Ok(self.verify_stored(password, hash, Stored::Normalised).await?.found())
    }

    /// [`Self::verify`] of a stored hash that may predate normalisation, saying which
    /// form of the password matched. Only such a hash is tried as sent when the password
    /// is not in NFC; while any remain, every other hash (the dummy hash of an unknown
    /// account too) costs the same second run, its answer ignored.
    pub async fn verify_stored(&self, password: &SecretString, hash: Option<&str>, stored: Stored) -> anyhow::Result<Match> {
        let known = hash.is_some();
        let hash: Arc<str> = hash.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let stored = if known { stored } else { Stored::Normalised };
        let equal_cost = self.unnormalised_remain.load(Ordering::Relaxed);
        let (password, runs) = (password.clone(), self.verifications.clone());
        let matched = self
            .run(move |memory| {
                verify_normalised(password.expose_secret(), stored, equal_cost, |bytes| {
                    let matched = verify_with(memory, bytes, &hash);
                    runs.fetch_add(1, Ordering::Relaxed);
                    matched
                })
            })
            .await?;
        Ok(if known { matched } else { Match::No })
    }

    /// [`Self::verify`] of a known hash for a caller outside the async runtime: the
    /// same queue and threads, waited for by blocking. `loadgen hash` times it for the
    /// benchmark's bound on logins.
    pub fn verify_blocking(&self, password: &SecretString, hash: &str) -> anyhow::Result<bool> {
        let (password, hash) = (password.clone(), hash.to_owned());
        let reply = self.submit(move |memory| {
            verify_normalised(password.expose_secret(), Stored::Normalised, false, |bytes| verify_with(memory, bytes, &hash))
        })?;
        Ok(reply.blocking_recv()?.found())
    }

    /// Says whether some account may still hold a hash from before passwords were
    /// normalised (Auth asks PostgreSQL at start: [`crate::store::users::unnormalised_hashes_remain`]).
    pub fn unnormalised_hashes_remain(&self, remain: bool) {
        self.unnormalised_remain.store(remain, Ordering::Relaxed);
    }

    /// Argon2 runs of verifications completed so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut [Block]) -> T + Send + 'static) -> anyhow::Result<T> {
        Ok(self.submit(work)?.await?)
    }

    /// Queues `work` for the hashing threads. It is skipped if its caller has gone by
    /// the time a thread takes it (a client that hung up while queued).
    fn submit<T: Send + 'static>(&self, work: impl FnOnce(&mut [Block]) -> T + Send + 'static) -> anyhow::Result<oneshot::Receiver<T>> {
        let (reply, answer) = oneshot::channel();
        let span = tracing::info_span!("password_hash");
        let job: Job = Box::new(move |memory| {
            if !reply.is_closed() {
                let _ = reply.send(span.in_scope(|| work(memory)));
            }
        });
        self.jobs.send(job).map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))?;
        Ok(answer)
    }
}

/// A password in Unicode NFC, as RFC 8265's OpaqueString compares them: the same text
/// typed on another keyboard or system may arrive composed or decomposed (`é` or
/// `e` + U+0301), and must still be the same password.
fn normalized(password: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::{UnicodeNormalization as _, is_nfc};
    if is_nfc(password) { password.into() } else { password.nfc().collect::<String>().into() }
}

/// What a stored hash may be a hash of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The password in NFC: every hash made since passwords are normalised.
    Normalised,
    /// A hash made before (`users.password_unnormalised`): maybe of the bytes a client
    /// sent, decomposed.
    MaybeUnnormalised,
}

/// Which form of the password a hash matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    No,
    /// The password in NFC.
    Normalised,
    /// The password as it was sent, not in NFC: the hash is of a decomposed password.
    AsSent,
}

impl Match {
    pub fn found(self) -> bool {
        self != Self::No
    }
}

/// Verifies `password` in NFC and, for a hash that may be of a decomposed password (set
/// before passwords were normalised), as it came. With `equal_cost` (while such hashes
/// remain) every other hash gets that second run too, its answer ignored, so the time
/// of a wrong password not in NFC does not tell those accounts from the others or from
/// unknown ones. Once none remain, a guess costs one run whatever its form.
fn verify_normalised(password: &str, stored: Stored, equal_cost: bool, mut verify: impl FnMut(&[u8]) -> bool) -> Match {
    let nfc = normalized(password);
    if verify(nfc.as_bytes()) {
        return Match::Normalised;
    }
    if nfc == password {
        return Match::No;
    }
    match stored {
        Stored::MaybeUnnormalised if verify(password.as_bytes()) => Match::AsSent,
        Stored::MaybeUnnormalised => Match::No,
        Stored::Normalised => {
            if equal_cost {
                let _ = verify(password.as_bytes());
            }
            Match::No
        }
    }
}

/// Work for a hashing thread, given its buffer.
type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

fn hash_with(params: &Params, memory: &mut [Block], password: &[u8]) -> anyhow::Result<String> {
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, &mut memory[..params.block_count()])
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(hash.to_string())
}

/// Verifies a PHC-format Argon2 hash in `memory`. A hash made with more memory than the
/// pool's buffers (stronger parameters of a later release) is verified with memory of
/// its own. The comparison of outputs is constant-time (`Output`'s equality).
fn verify_with(memory: &mut [Block], password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(hash.algorithm.as_str()), Params::try_from(&hash)) else {
        return false;
    };
    let version = hash.version.map_or(Ok(Version::V0x13), Version::try_from);
    let Ok(version) = version else { return false };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    if params.block_count() > memory.len() {
        return argon2.verify_password(password, phc).is_ok();
    }
    let mut out = vec![0u8; expected.len()];
    if argon2.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..params.block_count()]).is_err() {
        return false;
    }
    Output::new(&out).is_ok_and(|actual| actual == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("ann@example.com").unwrap()
    }

    fn check(p: &str) -> Result<NewPassword, String> {
        NewPassword::parse(&SecretString::from(p), &email())
    }

    #[test]
    fn policy_refuses_short_common_and_email_passwords() {
        assert_eq!(check("short7!").err().unwrap(), "must be at least 8 characters");
        assert!(check("Password123").is_err());
        assert!(check("ann@example.com").is_err());
        assert!(check("ANN@EXAMPLE.COM").is_err());
        assert!(check("aaaaaaaaaaaa").is_err());
        // Varied characters, so that only the length can refuse them.
        let varied = |n: usize| "correct horse battery staple ".chars().cycle().take(n).collect::<String>();
        assert!(check(&varied(128)).is_ok());
        assert_eq!(check(&varied(129)).err().unwrap(), "must be at most 128 characters");
        assert!(check("correct horse battery").is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_use_owasp_parameters() {
        let hasher = PasswordHasher::new(2).unwrap();
        let secret = SecretString::from("correct horse battery");
        let hash = hasher.hash(&secret).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify(&secret, Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&SecretString::from("wrong password"), Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&secret, None).await.unwrap());
    }

    /// ASVS V2.4.2: each hash has its own random salt of 128 bits, kept in the PHC string.
    #[tokio::test]
    async fn two_hashes_of_one_password_have_different_salts() {
        let hasher = PasswordHasher::new(2).unwrap();
        let secret = SecretString::from("correct horse battery");
        let (a, b) = (hasher.hash(&secret).await.unwrap(), hasher.hash(&secret).await.unwrap());
        let salt = |hash: &str| hash.split('$').nth(4).unwrap().to_owned();
        assert_ne!(salt(&a), salt(&b));
        assert_ne!(a, b);
        use base64::Engine as _;
        assert_eq!(base64::engine::general_purpose::STANDARD_NO_PAD.decode(salt(&a)).unwrap().len(), 16);
        assert!(hasher.verify(&secret, Some(&a)).await.unwrap() && hasher.verify(&secret, Some(&b)).await.unwrap());
    }

    /// The same text composed or decomposed is one password; a hash made from the
    /// decomposed bytes before passwords were normalised still verifies, and only a
    /// hash stored as maybe unnormalised is tried a second time.
    #[tokio::test]
    async fn passwords_are_compared_in_nfc() {
        let hasher = PasswordHasher::new(1).unwrap();
        let (composed, decomposed) = (SecretString::from("caf\u{e9} caf\u{e9} caf\u{e9}"), SecretString::from("cafe\u{301} cafe\u{301} cafe\u{301}"));
        let hash = hasher.hash(&composed).await.unwrap();
        assert!(hasher.verify(&decomposed, Some(&hash)).await.unwrap());
        let hash = hasher.hash(&decomposed).await.unwrap();
        assert!(hasher.verify(&composed, Some(&hash)).await.unwrap());
        let mut memory = vec![Block::default(); hasher.params.block_count()];
        let legacy = hash_with(&hasher.params, &mut memory, decomposed.expose_secret().as_bytes()).unwrap();
        let maybe = Stored::MaybeUnnormalised;
        assert_eq!(hasher.verify_stored(&decomposed, Some(&legacy), maybe).await.unwrap(), Match::AsSent);
        assert_eq!(hasher.verify_stored(&composed, Some(&legacy), maybe).await.unwrap(), Match::No);
        assert_eq!(hasher.verify_stored(&composed, Some(&hash), maybe).await.unwrap(), Match::Normalised);
        assert!(!hasher.verify_stored(&SecretString::from("cafe cafe cafe"), Some(&legacy), maybe).await.unwrap().found());
        // A normalised hash is not tried a second time: the legacy one, stored so, fails.
        assert!(!hasher.verify(&decomposed, Some(&legacy)).await.unwrap());
        // Nor is the dummy hash of an unknown account, whatever the caller says.
        assert_eq!(hasher.verify_stored(&decomposed, None, maybe).await.unwrap(), Match::No);
    }

    /// A decomposed guess costs one run against a normalised hash, two only against a
    /// hash that may predate normalisation; a password in NFC always one.
    #[test]
    fn only_a_hash_that_may_predate_normalisation_costs_a_second_run() {
        let runs = |password: &str, stored, equal_cost| {
            let mut runs = 0;
            let matched = verify_normalised(password, stored, equal_cost, |_| {
                runs += 1;
                false
            });
            assert_eq!(matched, Match::No);
            runs
        };
        let (decomposed, composed) = ("cafe\u{301} guess", "caf\u{e9} guess");
        assert_eq!(runs(decomposed, Stored::Normalised, false), 1);
        assert_eq!(runs(decomposed, Stored::MaybeUnnormalised, false), 2);
        assert_eq!(runs(composed, Stored::MaybeUnnormalised, false), 1);
        // While hashes from before normalisation remain, every hash costs the same.
        assert_eq!(runs(decomposed, Stored::Normalised, true), 2);
        assert_eq!(runs(decomposed, Stored::MaybeUnnormalised, true), 2);
        assert_eq!(runs(composed, Stored::Normalised, true), 1);
    }

    #[test]
    fn passwords_with_control_characters_are_refused() {
        let email = Email::parse("ann@example.com").unwrap();
        let err = NewPassword::parse(&SecretString::from("\u{0}a\u{0}a\u{0}a\u{0}a"), &email).err().unwrap();
        assert_eq!(err, "must not contain control characters");
        assert!(NewPassword::parse(&SecretString::from("tab\tinside password"), &email).is_err());
    }

    #[tokio::test]
    async fn a_queue_longer_than_the_threads_is_worked_through_in_full() {
        let hasher = PasswordHasher::new(2).unwrap();
        let secret = SecretString::from("correct horse battery");
        let hash = hasher.hash(&secret).await.unwrap();
        let wrong = SecretString::from("wrong horse battery");
        let checks = (0..7).map(|i| {
            let (hasher, hash) = (hasher.clone(), hash.clone());
            let password = if i % 2 == 0 { secret.clone() } else { wrong.clone() };
            tokio::spawn(async move { hasher.verify(&password, Some(&hash)).await.unwrap() })
        });
        let results: Vec<bool> = futures::future::join_all(checks).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, [true, false, true, false, true, false, true]);
        assert!(tokio::task::spawn_blocking(move || hasher.verify_blocking(&secret, &hash).unwrap()).await.unwrap());
    }

    /// No timing involved: the one thread is held by a gate until the queue is set up,
    /// and takes jobs in order, so once the last job has answered it has passed the
    /// abandoned one.
    #[test]
    fn queued_work_whose_caller_has_hung_up_is_skipped() {
        use std::sync::mpsc;
        let hasher = PasswordHasher::new(1).unwrap();
        let (started, has_started) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let gate = hasher
            .submit(move |_| {
                started.send(()).unwrap();
                released.recv().unwrap();
            })
            .unwrap();
        has_started.recv_timeout(std::time::Duration::from_secs(30)).expect("the hashing thread takes the first job");
        let ran = |flag: &Arc<AtomicBool>| {
            let flag = flag.clone();
            move |_: &mut [Block]| flag.store(true, Ordering::SeqCst)
        };
        let (abandoned, awaited) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        drop(hasher.submit(ran(&abandoned)).unwrap());
        let kept = hasher.submit(ran(&awaited)).unwrap();
        release.send(()).unwrap();
        gate.blocking_recv().unwrap();
        kept.blocking_recv().unwrap();
        assert!(awaited.load(Ordering::SeqCst), "a job whose caller waits runs");
        assert!(!abandoned.load(Ordering::SeqCst), "a job whose caller hung up while it was queued is skipped");
    }

    #[test]
    fn reused_memory_agrees_with_the_argon2_crate_both_ways() {
        use argon2::PasswordHasher as _;
        let params = Params::new(PasswordHasher::MEMORY_KIB, 2, 1, None).unwrap();
        let mut memory = Memory::new(params.block_count()).unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        for password in ["first password", "second password", "third password"] {
            let ours = hash_with(&params, &mut memory, password.as_bytes()).unwrap();
            reference.verify_password(password.as_bytes(), ours.as_str()).expect("the crate accepts our hash");
            let theirs = reference.hash_password(password.as_bytes()).unwrap().to_string();
            assert!(verify_with(&mut memory, password.as_bytes(), &theirs));
            assert!(!verify_with(&mut memory, b"not the password", &theirs));
        }
    }

    #[test]
    fn hashes_with_more_memory_or_malformed_still_verify_safely() {
        use argon2::PasswordHasher as _;
        let mut small = Memory::new(Params::new(8 * 1024, 1, 1, None).unwrap().block_count()).unwrap();
        let strong = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(16 * 1024, 1, 1, None).unwrap());
        let hash = strong.hash_password(b"correct horse").unwrap().to_string();
        assert!(verify_with(&mut small, b"correct horse", &hash));
        assert!(!verify_with(&mut small, b"wrong horse", &hash));
        for garbage in ["", "$argon2id$", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$", "$scrypt$ln=1,r=8,p=1$c2FsdHNhbHQ$aGFzaA"] {
            assert!(!verify_with(&mut small, b"x", garbage), "{garbage}");
        }
    }
}
