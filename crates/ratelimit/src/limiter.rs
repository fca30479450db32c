//! The limiter: checks go to Redis within a short deadline, else to the in-process
//! store, and come back to Redis once it answers again.

use std::{
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use log_hygiene::Outage;

use crate::{
    gcra::{Outcome, Params},
    local::LocalStore,
    policy::Policy,
    redis_store::{RedisStore, RedisTarget},
};

/// One limit a request counts against: a policy and whom it counts.
#[derive(Debug, Clone)]
pub struct Check {
    policy: Arc<Policy>,
    subject: String,
    detail: Option<String>,
}

impl Check {
    /// Counts against `policy` for `subject`, for example `ip:203.0.113.7` or
    /// `user:0190…`. The subject is the key's hash tag: every check of one subject
    /// lives in one Redis Cluster slot and can be decided in one script call.
    pub fn new(policy: &Arc<Policy>, subject: impl fmt::Display) -> Self {
        Self { policy: Arc::clone(policy), subject: sanitize(subject.to_string()), detail: None }
    }

    /// Narrows the key within the subject, for example a per-account limit per client IP.
    pub fn within(mut self, detail: impl fmt::Display) -> Self {
        self.detail = Some(sanitize(detail.to_string()));
        self
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// `<prefix>:rl:{<subject>}:<policy>[:<detail>]`.
    fn key(&self, prefix: &str) -> String {
        let mut key = format!("{prefix}:rl:{{{}}}:{}", self.subject, self.policy.name());
        if let Some(detail) = &self.detail {
            key.push(':');
            key.push_str(detail);
        }
        key
    }
}

/// Braces would change the hash tag; keys stay printable and bounded.
fn sanitize(raw: String) -> String {
    if raw.len() <= 200 && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}') {
        return raw;
    }
    raw.chars().take(200).map(|c| if c.is_ascii_graphic() && c != '{' && c != '}' { c } else { '_' }).collect()
}

/// The state of one check after a request.
#[derive(Debug, Clone)]
pub struct Status {
    pub policy: Arc<Policy>,
    pub allowed: bool,
    /// Requests still allowed now.
    pub remaining: u64,
    /// Until the whole burst is available again.
    pub reset: Duration,
    /// Until this request would be allowed; zero when it is.
    pub retry_after: Duration,
}

/// The answer to a request: allowed only when every check allows it.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub statuses: Vec<Status>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.statuses.iter().all(|s| s.allowed)
    }

    /// How long to wait before the request can succeed; None when it is allowed.
    pub fn retry_after(&self) -> Option<Duration> {
        self.statuses.iter().filter(|s| !s.allowed).map(|s| s.retry_after).max()
    }

    /// Policies that refused the request.
    pub fn refused_by(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.statuses.iter().filter(|s| !s.allowed).map(|s| &s.policy)
    }
}

/// The `outcome` label values of `ratelimit_requests_total`: allowed, then limited.
pub(crate) const OUTCOMES: [&str; 2] = ["allowed", "limited"];

/// Which store is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Shared by every instance.
    Redis,
    /// This instance only: Redis is not configured, down or too slow.
    Local,
}

#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Prefix of every Redis key, as in the service's other keys.
    pub key_prefix: String,
    /// None: in-process limits only (one instance, tests, development).
    pub redis: Option<RedisTarget>,
    /// A check slower than this is decided locally, and the limiter switches to the
    /// in-process store until Redis answers a probe in time again. The default, 25 ms,
    /// only holds up the checks that wait for Redis (near a limit, the sign-in rules);
    /// 5 ms made a busy 2-core host fall back often, which loosens every limit to one
    /// instance's view for a second each time.
    pub redis_timeout: Duration,
    /// How often Redis is probed while the limiter is on the in-process store.
    pub probe_interval: Duration,
    /// Bound on the keys the in-process store holds.
    pub max_local_keys: usize,
    /// Policies with at least this burst are decided optimistically: when this
    /// instance's copy of a key, synced with every Redis answer, shows more than half
    /// the burst left, the request is allowed at once and charged to Redis in the
    /// background. Closer to the limit, and for smaller bursts (the sign-in rules),
    /// every request waits for Redis. `u64::MAX` turns it off.
    pub optimistic_min_burst: u64,
    /// How often, at most, an outage of Redis (the switch to the in-process store) is
    /// logged, with its end: a minute ([`log_hygiene::ONCE_A_MINUTE`]).
    pub outage_log_interval: Duration,
}

impl LimiterConfig {
    pub fn new(key_prefix: impl Into<String>, redis: Option<RedisTarget>) -> Self {
        Self {
            key_prefix: key_prefix.into(),
            redis,
            redis_timeout: Duration::from_millis(25),
            probe_interval: Duration::from_secs(1),
            max_local_keys: 1_000_000,
            optimistic_min_burst: 20,
            outage_log_interval: log_hygiene::ONCE_A_MINUTE,
        }
    }
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    redis: Option<RedisStore>,
    local: LocalStore,
    /// This instance's copy of the Redis state of the keys it decides optimistically.
    shadow: LocalStore,
    optimistic_min_burst: u64,
    timeout: Duration,
    probe_interval: Duration,
    on_local: AtomicBool,
    /// Redis's outages: the switch to the in-process store and each failed probe after
    /// it report a failure, a return to Redis the end. Logged at most once a minute
    /// (with their end), however often a slow Redis makes the limiter switch; an outage
    /// that starts within a minute of a logged one is logged at a later failed probe.
    outage: Outage,
    fallbacks: AtomicU64,
    optimistic: AtomicU64,
}

impl Inner {
    /// The key that probes whether Redis takes writes (it expires within a second).
    fn probe_key(&self) -> String {
        format!("{}:rl:{{probe}}", self.prefix)
    }
}

impl Limiter {
    /// Connects lazily: a Redis that is down at start-up only means starting on the
    /// in-process store. Must be called inside a Tokio runtime when Redis is configured.
    pub fn new(config: LimiterConfig) -> redis::RedisResult<Self> {
        let redis = config.redis.as_ref().map(|target| RedisStore::connect(target, Duration::from_millis(500))).transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                prefix: config.key_prefix,
                on_local: AtomicBool::new(redis.is_none()),
                redis,
                local: LocalStore::new(config.max_local_keys),
                shadow: LocalStore::new(config.max_local_keys),
                optimistic_min_burst: config.optimistic_min_burst,
                timeout: config.redis_timeout,
                probe_interval: config.probe_interval,
                outage: Outage::new(config.outage_log_interval),
                fallbacks: AtomicU64::new(0),
                optimistic: AtomicU64::new(0),
            }),
        })
    }

    /// In-process limits only.
    pub fn local(key_prefix: impl Into<String>) -> Self {
        Self::new(LimiterConfig::new(key_prefix, None)).expect("no Redis to configure")
    }

    pub fn backend(&self) -> Backend {
        if self.inner.on_local.load(Ordering::Relaxed) { Backend::Local } else { Backend::Redis }
    }

    /// How many times the limiter has fallen back from Redis to the in-process store.
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// Connects to Redis and loads the scripts, waiting at most `within`, so that the
    /// first requests find the connection open instead of falling back while it opens.
    /// Returns whether Redis answered; if not, the limiter starts on the in-process store
    /// and probes Redis as usual.
    pub async fn warm_up(&self, within: Duration) -> bool {
        let Some(redis) = self.redis_if_up() else { return false };
        let ready = tokio::time::timeout(within, async {
            redis.load_scripts().await?;
            redis.probe_write(&self.inner.probe_key()).await
        })
        .await;
        match ready {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.fall_back(&e.to_string());
                false
            }
            Err(_) => {
                self.fall_back("timeout");
                false
            }
        }
    }

    /// How many checks were decided optimistically (charged to Redis in the background).
    pub fn optimistic_decisions(&self) -> u64 {
        self.inner.optimistic.load(Ordering::Relaxed)
    }

    /// Counts one request against every check. Checks of one subject are decided
    /// together, all or nothing, in one round trip; checks of different subjects
    /// concurrently.
    pub async fn acquire(&self, checks: &[Check]) -> Verdict {
        self.acquire_n(checks, 1).await
    }

    pub async fn acquire_n(&self, checks: &[Check], cost: u64) -> Verdict {
        let groups = self.groups(checks);
        let outcomes = if groups.len() == 1 {
            vec![self.acquire_group(&groups[0], cost).await]
        } else {
            futures::future::join_all(groups.iter().map(|g| self.acquire_group(g, cost))).await
        };
        // Groups decide independently; when one refuses, the request is not served, so
        // the groups that charged it get it back (one more round trip, on refusals only).
        let refused = outcomes.iter().any(|o| o.iter().any(|o| !o.allowed));
        let mut statuses: Vec<Option<Status>> = vec![None; checks.len()];
        for (group, outcomes) in groups.iter().zip(outcomes) {
            if refused && outcomes.iter().all(|o| o.allowed) {
                self.refund_group(group, cost).await;
            }
            for (&index, outcome) in group.indices.iter().zip(outcomes) {
                let policy = &checks[index].policy;
                // A refused request charged no key: one that allowed it (in this group,
                // which was then not charged, or in another, refunded above) reports
                // its state before the charge.
                let outcome = if refused { outcome.uncharged(policy.params().interval_us, cost) } else { outcome };
                statuses[index] = Some(status(policy, outcome));
            }
        }
        let statuses: Vec<Status> = statuses.into_iter().flatten().collect();
        for s in &statuses {
            let outcome = if s.allowed { OUTCOMES[0] } else { OUTCOMES[1] };
            metrics::counter!("ratelimit_requests_total", "policy" => s.policy.name().to_owned(), "outcome" => outcome).increment(1);
        }
        Verdict { statuses }
    }

    /// Gives one request back to each check, for example a sign-in attempt that succeeded.
    pub async fn refund(&self, checks: &[Check]) {
        for group in self.groups(checks) {
            self.refund_group(&group, 1).await;
        }
    }

    async fn refund_group(&self, group: &Group, cost: u64) {
        if self.is_optimistic(group) {
            self.inner.shadow.refund(&group.subject, &group.keys, cost);
        }
        if let Some(redis) = self.redis_if_up() {
            match tokio::time::timeout(self.inner.timeout, redis.refund(&group.keys, cost)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => self.fall_back(&e.to_string()),
                Err(_) => self.fall_back("timeout"),
            }
        }
        self.inner.local.refund(&group.subject, &group.keys, cost);
    }

    /// Forgets the state of each check: its full burst is available again.
    pub async fn reset(&self, checks: &[Check]) {
        for group in self.groups(checks) {
            let keys: Vec<String> = group.keys.iter().map(|(k, _)| k.clone()).collect();
            self.inner.shadow.reset(&group.subject, &keys);
            if let Some(redis) = self.redis_if_up() {
                match tokio::time::timeout(self.inner.timeout, redis.reset(&keys)).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => self.fall_back(&e.to_string()),
                    Err(_) => self.fall_back("timeout"),
                }
            }
            self.inner.local.reset(&group.subject, &keys);
        }
    }

    fn groups(&self, checks: &[Check]) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::with_capacity(1);
        for (index, check) in checks.iter().enumerate() {
            let key = (check.key(&self.inner.prefix), check.policy.params());
            match groups.iter_mut().find(|g| g.subject == check.subject) {
                Some(group) => {
                    group.keys.push(key);
                    group.indices.push(index);
                }
                None => groups.push(Group { subject: check.subject.clone(), keys: vec![key], indices: vec![index] }),
            }
        }
        groups
    }

    async fn acquire_group(&self, group: &Group, cost: u64) -> Vec<Outcome> {
        if let Some(redis) = self.redis_if_up() {
            let optimistic = self.is_optimistic(group);
            if optimistic && let Some(outcomes) = self.inner.shadow.acquire_if_far(&group.subject, &group.keys, cost) {
                // Far from every limit: the answer cannot change; Redis is charged in
                // the background, on the same connection, so a later synchronous check
                // of this instance sees this charge.
                self.inner.optimistic.fetch_add(1, Ordering::Relaxed);
                let (limiter, group) = (self.clone(), group.clone());
                tokio::spawn(async move { limiter.charge_in_background(&group, cost).await });
                return outcomes;
            }
            if optimistic {
                // This instance's own background charges reach Redis first, so that
                // near the limit one instance's count is exact.
                self.settle(group).await;
            }
            match tokio::time::timeout(self.inner.timeout, redis.acquire(&group.keys, cost)).await {
                Ok(Ok(outcomes)) => {
                    if optimistic {
                        self.inner.shadow.sync(&group.subject, &group.keys, &outcomes, false);
                    }
                    return outcomes;
                }
                Ok(Err(e)) => self.fall_back(&e.to_string()),
                Err(_) => self.fall_back("timeout"),
            }
        }
        self.inner.local.acquire(&group.subject, &group.keys, cost)
    }

    async fn charge_in_background(&self, group: &Group, cost: u64) {
        let Some(redis) = self.redis_if_up() else {
            let keys: Vec<String> = group.keys.iter().map(|(k, _)| k.clone()).collect();
            return self.inner.shadow.reset(&group.subject, &keys);
        };
        match tokio::time::timeout(self.inner.timeout, redis.acquire(&group.keys, cost)).await {
            // Redis's state includes every other instance's charges: the next decision
            // of this instance starts from it.
            Ok(Ok(outcomes)) => return self.inner.shadow.sync(&group.subject, &group.keys, &outcomes, true),
            Ok(Err(e)) => self.fall_back(&e.to_string()),
            Err(_) => self.fall_back("timeout"),
        }
        // Not charged: forget the copy, so that the next request asks Redis (or the
        // in-process store, now) rather than trust it.
        let keys: Vec<String> = group.keys.iter().map(|(k, _)| k.clone()).collect();
        self.inner.shadow.reset(&group.subject, &keys);
    }

    /// Waits, at most the Redis deadline, until the group's background charges are answered.
    async fn settle(&self, group: &Group) {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        while self.inner.shadow.pending(&group.subject, &group.keys) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    fn is_optimistic(&self, group: &Group) -> bool {
        group.keys.iter().all(|(_, params)| params.burst >= self.inner.optimistic_min_burst)
    }

    fn redis_if_up(&self) -> Option<&RedisStore> {
        self.inner.redis.as_ref().filter(|_| !self.inner.on_local.load(Ordering::Relaxed))
    }

    /// Switches to the in-process store, once, and probes Redis until it answers in time.
    fn fall_back(&self, reason: &str) {
        if self.inner.on_local.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return;
        }
        self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("ratelimit_fallbacks_total").increment(1);
        metrics::gauge!("ratelimit_fallback_active").set(1.0);
        if self.inner.outage.failed() {
            tracing::warn!(reason, "rate limits: Redis unavailable or slow; each instance now limits on its own until Redis answers again");
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(probe_until_back(weak));
    }
}

/// Stops when Redis has the scripts loaded and takes a write within the check deadline
/// (a full Redis that refuses writes answers a PING, and would be left at the next
/// check, every probe interval), or when the limiter is gone.
async fn probe_until_back(weak: Weak<Inner>) {
    loop {
        let Some(interval) = weak.upgrade().map(|inner| inner.probe_interval) else { return };
        tokio::time::sleep(interval).await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(redis) = inner.redis.as_ref() else { return };
        let loaded = tokio::time::timeout(Duration::from_secs(1), redis.load_scripts()).await;
        if matches!(loaded, Ok(Ok(())))
            && let Ok(Ok(())) = tokio::time::timeout(inner.timeout.max(Duration::from_millis(1)), redis.probe_write(&inner.probe_key())).await
        {
            inner.on_local.store(false, Ordering::Release);
            metrics::gauge!("ratelimit_fallback_active").set(0.0);
            if let Some(failures) = inner.outage.succeeded() {
                tracing::info!(failures, "rate limits: Redis answers again; limits are shared again");
            }
            return;
        }
        // Still down: an outage whose switch came within a minute of a logged one is
        // logged here, once that minute has passed.
        if inner.outage.failed() {
            tracing::warn!("rate limits: Redis unavailable or slow; each instance now limits on its own until Redis answers again");
        }
    }
}

#[derive(Clone)]
struct Group {
    subject: String,
    keys: Vec<(String, Params)>,
    indices: Vec<usize>,
}

fn status(policy: &Arc<Policy>, o: Outcome) -> Status {
    Status {
        policy: Arc::clone(policy),
        allowed: o.allowed,
        remaining: o.remaining,
        reset: Duration::from_micros(o.reset_us),
        retry_after: Duration::from_micros(o.retry_after_us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_subject_as_hash_tag_and_cannot_be_steered_by_braces() {
        let policy = Policy::new("login-account-ip", "5/15m".parse().unwrap());
        let check = Check::new(&policy, "acct:42").within("ip:2001:db8::1");
        assert_eq!(check.key("auth"), "auth:rl:{acct:42}:login-account-ip:ip:2001:db8::1");
        let hostile = Check::new(&policy, "user:}x{y").within("a b");
        assert_eq!(hostile.key("auth"), "auth:rl:{user:_x_y}:login-account-ip:a_b");
    }

    #[tokio::test]
    async fn the_local_limiter_reports_per_policy_state_and_refuses_past_the_burst() {
        let limiter = Limiter::local("t");
        let api = Policy::new("api", "2/s".parse().unwrap());
        let login = Policy::new("login", "1/m".parse().unwrap());
        let checks = [Check::new(&api, "ip:1"), Check::new(&login, "ip:1")];
        let first = limiter.acquire(&checks).await;
        assert!(first.allowed());
        assert_eq!(first.statuses.iter().map(|s| s.remaining).collect::<Vec<_>>(), [1, 0]);
        let second = limiter.acquire(&checks).await;
        assert!(!second.allowed());
        assert_eq!(second.refused_by().map(|p| p.name()).collect::<Vec<_>>(), ["login"]);
        assert!(second.retry_after().unwrap() > Duration::from_secs(59));
        assert_eq!(limiter.backend(), Backend::Local);
        // The refused request did not charge "api" (same subject, all or nothing).
        assert_eq!(limiter.acquire(&checks[..1]).await.statuses[0].remaining, 0);
    }

    #[tokio::test]
    async fn a_request_refused_for_one_subject_is_given_back_to_the_others() {
        let limiter = Limiter::local("t");
        let per_user = Policy::new("user", "1/h burst 3".parse().unwrap());
        let per_ip = Policy::new("ip", "1/h".parse().unwrap());
        let checks = [Check::new(&per_user, "user:1"), Check::new(&per_ip, "ip:1")];
        assert!(limiter.acquire(&checks).await.allowed());
        let refused = limiter.acquire(&checks).await;
        assert!(!refused.allowed());
        assert_eq!(refused.statuses[0].remaining, 2, "reported as given back");
        assert_eq!(limiter.acquire(&checks[..1]).await.statuses[0].remaining, 1, "only the served request counted");
    }

    /// Keys of one subject decided together: when one refuses, the others were not
    /// charged, and their `RateLimit` state says so (it reported one request fewer).
    #[tokio::test]
    async fn a_refusal_reports_the_other_keys_of_its_subject_uncharged() {
        let limiter = Limiter::local("t");
        let per_account_ip = Policy::new("login-account-ip", "1/h".parse().unwrap());
        let per_account = Policy::new("login-account", "1/h burst 5".parse().unwrap());
        let checks = [Check::new(&per_account_ip, "acct:1").within("ip:1"), Check::new(&per_account, "acct:1")];
        let served = limiter.acquire(&checks).await;
        assert_eq!(served.statuses[1].remaining, 4);
        for _ in 0..2 {
            let refused = limiter.acquire(&checks).await;
            assert!(!refused.allowed());
            assert_eq!(refused.statuses[1].remaining, 4, "the refused attempts were not counted");
            assert!(refused.statuses[1].reset <= served.statuses[1].reset);
        }
    }
}
