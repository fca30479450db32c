//! The limiter against real Redis: the machine's (`REDIS_URL`, each test with its own
//! key prefix), throwaway servers that are killed or paused mid-test, and a three-node
//! Redis Cluster started on loopback ports.

use std::time::Duration;

use ratelimit::{
    Backend, Check, Limiter, LimiterConfig, Policy, RedisTarget,
    testing::{RedisCluster, RedisServer},
};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("rltest:{}", uuid::Uuid::new_v4().simple())
}

/// Tests assert decisions, not timing: a generous deadline keeps a busy machine from
/// switching a test to the in-process store, except where that is the point.
fn config(redis: RedisTarget) -> LimiterConfig {
    let mut config = LimiterConfig::new(prefix(), Some(redis));
    config.redis_timeout = Duration::from_secs(2);
    config.probe_interval = Duration::from_millis(50);
    config
}

/// Deletes a test's keys from the machine's Redis when dropped, however the test ends:
/// some last a day or more before they expire.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        ratelimit::testing::delete_keys(&redis_url(), &self.0);
    }
}

/// [`config`] on the machine's Redis, with the guard that deletes its keys.
fn on_machine_redis() -> (LimiterConfig, Cleanup) {
    let config = config(RedisTarget::Single(redis_url()));
    let cleanup = Cleanup(config.key_prefix.clone());
    (config, cleanup)
}

async fn wait_for(deadline: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !condition().await {
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_and_the_in_process_store_give_the_same_answers() {
    let (shared, _cleanup) = on_machine_redis();
    let shared = Limiter::new(shared).unwrap();
    let local = Limiter::local(prefix());
    let policy = Policy::new("p", "3/m burst 4".parse().unwrap());
    let check = [Check::new(&policy, "ip:198.51.100.1")];
    for i in 0..6 {
        let (a, b) = (shared.acquire(&check).await, local.acquire(&check).await);
        let (a, b) = (&a.statuses[0], &b.statuses[0]);
        assert_eq!((a.allowed, a.remaining), (b.allowed, b.remaining), "request {i}");
        // Both count from their own clock: compare to the second.
        assert_eq!(a.reset.as_secs_f64().round(), b.reset.as_secs_f64().round(), "request {i}");
        assert_eq!(a.retry_after.as_secs_f64().round(), b.retry_after.as_secs_f64().round(), "request {i}");
        assert_eq!(a.allowed, i < 4);
    }
    assert_eq!(shared.backend(), Backend::Redis);
}

#[tokio::test]
async fn checks_of_one_subject_are_charged_all_or_nothing_and_can_be_refunded_or_reset() {
    let (config, _cleanup) = on_machine_redis();
    let limiter = Limiter::new(config).unwrap();
    let per_ip = Policy::new("account-ip", "2/h".parse().unwrap());
    let per_account = Policy::new("account", "10/h".parse().unwrap());
    let from = |ip: &str| [Check::new(&per_ip, "acct:7").within(ip), Check::new(&per_account, "acct:7")];
    assert!(limiter.acquire(&from("ip:a")).await.allowed());
    assert!(limiter.acquire(&from("ip:a")).await.allowed());
    let refused = limiter.acquire(&from("ip:a")).await;
    assert!(!refused.allowed());
    assert_eq!(refused.refused_by().map(|p| p.name()).collect::<Vec<_>>(), ["account-ip"]);
    // The refused attempt did not charge the account: 10 - 2 left, minus this one.
    let other = limiter.acquire(&from("ip:b")).await;
    assert_eq!(other.statuses[1].remaining, 7);

    limiter.refund(&from("ip:a")[1..]).await;
    assert_eq!(limiter.acquire(&from("ip:c")).await.statuses[1].remaining, 7, "one given back, one taken");
    limiter.reset(&from("ip:a")[..1]).await;
    assert_eq!(limiter.acquire(&from("ip:a")).await.statuses[0].remaining, 1, "ip:a starts over");
    assert_eq!(limiter.backend(), Backend::Redis);
}

#[tokio::test]
async fn warming_up_opens_the_connection_so_the_first_check_is_shared() {
    let (mut cfg, _cleanup) = on_machine_redis();
    // A deadline a first check that had to open the connection would miss.
    cfg.redis_timeout = Duration::from_millis(5);
    let limiter = Limiter::new(cfg).unwrap();
    assert!(limiter.warm_up(Duration::from_secs(5)).await);
    let policy = Policy::new("p", "1/h burst 2".parse().unwrap());
    limiter.acquire(&[Check::new(&policy, "ip:198.51.100.9")]).await;
    assert_eq!(limiter.backend(), Backend::Redis);
    assert_eq!(limiter.fallbacks(), 0);

    let down = Limiter::new(config(RedisTarget::Single("redis://127.0.0.1:1".into()))).unwrap();
    assert!(!down.warm_up(Duration::from_secs(5)).await);
    assert_eq!(down.backend(), Backend::Local, "starts on the in-process store");
}

/// Far from the limit an instance decides from its copy of the Redis state and charges
/// Redis in the background; near it, it waits for Redis. The shared limit stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_from_the_limit_redis_is_charged_in_the_background_and_the_limit_stays_exact() {
    let (first, _cleanup) = on_machine_redis();
    let mut second = config(RedisTarget::Single(redis_url()));
    second.key_prefix = first.key_prefix.clone();
    let key = format!("{}:rl:{{user:1}}:api", first.key_prefix);
    let (a, b) = (Limiter::new(first).unwrap(), Limiter::new(second).unwrap());
    let policy = Policy::new("api", "1/h burst 40".parse().unwrap());
    let check = [Check::new(&policy, "user:1")];
    for i in 0..30 {
        let verdict = a.acquire(&check).await;
        assert!(verdict.allowed(), "request {i}");
        // Decided on the copy, `remaining` may read low while answers to background
        // charges are in flight, never high: the copy never counts fewer charges than
        // were made.
        let remaining = verdict.statuses[0].remaining;
        assert!(remaining <= 39 - i && remaining + 4 >= 39 - i, "request {i}: {remaining} remaining");
    }
    // The first request asked Redis (the key was new); the next ones down to half the
    // burst need not wait for it (19 at most; a copy counting charges still in flight
    // sends some of the last of them to Redis), the rest did wait.
    let optimistic = a.optimistic_decisions();
    assert!((10..=19).contains(&optimistic), "{optimistic} optimistic decisions");
    // Every background charge reaches Redis: 30 hours of a 1/h policy.
    let mut redis = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    wait_for(Duration::from_secs(5), "the background charges", async || {
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut redis).await.unwrap();
        (pttl + 3_599_999) / 3_600_000 == 30
    })
    .await;
    // Another instance that never saw the key asks Redis: 10 left, then refused.
    for i in 0..10 {
        assert!(b.acquire(&check).await.allowed(), "second instance, request {i}");
    }
    assert!(!b.acquire(&check).await.allowed());
    assert_eq!(b.optimistic_decisions(), 0, "below half the burst, every check waits for Redis");
    // The first instance's copy said 10 left, too few to skip Redis, which refuses.
    assert!(!a.acquire(&check).await.allowed());
    assert_eq!(a.optimistic_decisions(), optimistic, "near the limit, never optimistic");
}

#[tokio::test]
async fn when_redis_dies_the_in_process_store_takes_over_until_it_is_back() {
    let mut server = RedisServer::start();
    let limiter = Limiter::new(config(RedisTarget::Single(server.url()))).unwrap();
    let policy = Policy::new("p", "2/h".parse().unwrap());
    let check = [Check::new(&policy, "ip:198.51.100.2")];
    assert!(limiter.acquire(&check).await.allowed());
    assert_eq!(limiter.backend(), Backend::Redis);
    assert!(server.command("KEYS *").contains("{ip:198.51.100.2}"), "the state is in Redis");

    server.stop();
    // Still answered, now from this process: a fresh local bucket, same policy.
    let during = limiter.acquire(&check).await;
    assert!(during.allowed());
    assert_eq!(limiter.backend(), Backend::Local);
    assert_eq!(limiter.fallbacks(), 1);
    assert!(limiter.acquire(&check).await.allowed());
    assert!(!limiter.acquire(&check).await.allowed(), "the local store enforces the same policy");

    server.restart();
    wait_for(Duration::from_secs(20), "the limiter to return to Redis", async || limiter.backend() == Backend::Redis).await;
    assert!(limiter.acquire(&check).await.allowed(), "a fresh Redis: shared state starts over");
    assert!(server.command("KEYS *").contains("{ip:198.51.100.2}"));
    assert_eq!(limiter.fallbacks(), 1);
}

/// A Redis that goes away twice within a minute: the first switch to the in-process
/// store and its return are logged, the second pair is not (a Redis slower than the
/// deadline now and then would otherwise log a pair at every switch).
#[tokio::test]
async fn switches_to_the_in_process_store_are_logged_at_most_once_a_minute() {
    let (logs, _guard) = log_hygiene::testing::CapturedLogs::capture(tracing::Level::INFO);
    let mut server = RedisServer::start();
    let limiter = Limiter::new(config(RedisTarget::Single(server.url()))).unwrap();
    // A small burst: every check asks Redis (never decided optimistically).
    let policy = Policy::new("p", "2/h".parse().unwrap());
    let check = [Check::new(&policy, "ip:198.51.100.9")];
    assert!(limiter.acquire(&check).await.allowed());
    for outage in 1..=2 {
        server.stop();
        limiter.acquire(&check).await;
        assert_eq!((limiter.backend(), limiter.fallbacks()), (Backend::Local, outage));
        server.restart();
        wait_for(Duration::from_secs(20), "the limiter to return to Redis", async || limiter.backend() == Backend::Redis).await;
    }
    let text = logs.text();
    let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
    assert_eq!((count("Redis unavailable or slow"), count("limits are shared again")), (1, 1), "{text}");
}

/// An outage that starts within the logging interval of a logged one is logged once
/// that interval has passed, at a failed probe, and then its end: a flap followed by
/// a long outage is never left out of the log (here with an interval of 5 s, which the
/// brief outage, a restart and a probe, stays well within).
#[tokio::test]
async fn an_outage_right_after_a_logged_one_is_logged_once_the_interval_has_passed() {
    let (logs, _guard) = log_hygiene::testing::CapturedLogs::capture(tracing::Level::INFO);
    let mut server = RedisServer::start();
    let mut config = config(RedisTarget::Single(server.url()));
    config.outage_log_interval = Duration::from_secs(5);
    let limiter = Limiter::new(config).unwrap();
    let policy = Policy::new("p", "2/h".parse().unwrap());
    let check = [Check::new(&policy, "ip:198.51.100.10")];
    assert!(limiter.acquire(&check).await.allowed());
    let count = |needle: &str| logs.text().lines().filter(|line| line.contains(needle)).count();
    // A brief outage, logged with its end.
    server.stop();
    limiter.acquire(&check).await;
    server.restart();
    wait_for(Duration::from_secs(20), "the limiter to return to Redis", async || limiter.backend() == Backend::Redis).await;
    assert_eq!((count("Redis unavailable or slow"), count("limits are shared again")), (1, 1));
    // At once a long one: not logged at its switch, but at a probe past the interval.
    server.stop();
    limiter.acquire(&check).await;
    assert_eq!((limiter.backend(), count("Redis unavailable or slow")), (Backend::Local, 1), "within the interval");
    wait_for(Duration::from_secs(20), "the long outage to be logged", async || count("Redis unavailable or slow") == 2).await;
    server.restart();
    wait_for(Duration::from_secs(20), "its end to be logged", async || count("limits are shared again") == 2).await;
}

/// A full Redis that refuses writes (`noeviction`, as the limits' own Redis runs) still
/// answers PING and script loads: the limiter stays on the in-process store until a
/// write goes through, rather than return to Redis at every probe and fall back again
/// at the next check (a warning and a fallback each time).
#[tokio::test]
async fn a_full_redis_keeps_the_limiter_on_the_in_process_store_until_it_takes_writes() {
    let server = RedisServer::start();
    let limiter = Limiter::new(config(RedisTarget::Single(server.url()))).unwrap();
    let policy = Policy::new("p", "1000/s burst 10".parse().unwrap());
    let check = [Check::new(&policy, "ip:198.51.100.5")];
    wait_for(Duration::from_secs(10), "a first answer from Redis", async || {
        limiter.acquire(&check).await;
        limiter.backend() == Backend::Redis
    })
    .await;
    assert!(server.command("CONFIG SET maxmemory-policy noeviction").contains("OK"));
    assert!(server.command("CONFIG SET maxmemory 1").contains("OK"));
    limiter.acquire(&check).await;
    assert_eq!((limiter.backend(), limiter.fallbacks()), (Backend::Local, 1));
    // Twenty probe intervals (50 ms each) of checks: none returns to Redis to fail again.
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(1) {
        limiter.acquire(&check).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((limiter.backend(), limiter.fallbacks()), (Backend::Local, 1), "back to a Redis that refuses writes");
    assert!(server.command("CONFIG SET maxmemory 0").contains("OK"));
    wait_for(Duration::from_secs(20), "the limiter to return to Redis", async || limiter.backend() == Backend::Redis).await;
    assert_eq!(limiter.fallbacks(), 1);
}

#[tokio::test]
async fn a_redis_slower_than_the_deadline_counts_as_down() {
    let server = RedisServer::start();
    let mut config = config(RedisTarget::Single(server.url()));
    config.redis_timeout = Duration::from_millis(50);
    let limiter = Limiter::new(config).unwrap();
    // A burst below the optimistic threshold: every check waits for Redis.
    let policy = Policy::new("p", "100/s burst 10".parse().unwrap());
    let check = [Check::new(&policy, "ip:198.51.100.3")];
    // Connect first, so the pause below is the only slowness.
    wait_for(Duration::from_secs(10), "a first answer from Redis", async || {
        limiter.acquire(&check).await;
        limiter.backend() == Backend::Redis
    })
    .await;
    // Every client's commands wait for 1.5 s: the server is up but slow.
    assert!(server.command("CLIENT PAUSE 1500 ALL").contains("OK"));
    assert!(limiter.acquire(&check).await.allowed());
    assert_eq!(limiter.backend(), Backend::Local);
    wait_for(Duration::from_secs(20), "the limiter to return to Redis", async || limiter.backend() == Backend::Redis).await;
}

/// A check decided optimistically is not delayed by a slow Redis; its background
/// charge misses the deadline and switches the limiter to the in-process store.
#[tokio::test]
async fn a_slow_redis_does_not_delay_optimistic_checks_but_still_counts_as_down() {
    let server = RedisServer::start();
    let mut config = config(RedisTarget::Single(server.url()));
    // Waiting for Redis would take the whole deadline: a second.
    config.redis_timeout = Duration::from_secs(1);
    let limiter = Limiter::new(config).unwrap();
    let policy = Policy::new("p", "100/s burst 100".parse().unwrap());
    let check = [Check::new(&policy, "ip:198.51.100.4")];
    wait_for(Duration::from_secs(10), "a first answer from Redis", async || {
        limiter.acquire(&check).await;
        limiter.backend() == Backend::Redis
    })
    .await;
    assert!(server.command("CLIENT PAUSE 3000 ALL").contains("OK"));
    let started = std::time::Instant::now();
    assert!(limiter.acquire(&check).await.allowed());
    assert!(limiter.optimistic_decisions() >= 1);
    assert!(started.elapsed() < Duration::from_millis(500), "decided without waiting: {:?}", started.elapsed());
    wait_for(Duration::from_secs(5), "the background charge to time out", async || limiter.backend() == Backend::Local).await;
}

#[tokio::test]
async fn limits_are_shared_through_a_three_node_redis_cluster() {
    let cluster = RedisCluster::start();
    let limiter = Limiter::new(config(RedisTarget::Cluster(cluster.urls()))).unwrap();
    let other_instance = Limiter::new(config(RedisTarget::Cluster(cluster.urls()))).unwrap();
    let per_ip = Policy::new("account-ip", "2/h".parse().unwrap());
    let per_account = Policy::new("account", "10/h".parse().unwrap());
    let api = Policy::new("api", "3/m".parse().unwrap());
    // Many subjects: their keys spread over every node, and multi-key checks of one
    // subject stay in one slot (no CROSSSLOT error).
    for account in 0..30 {
        let checks = [Check::new(&per_ip, format!("acct:{account}")).within("ip:a"), Check::new(&per_account, format!("acct:{account}"))];
        assert!(limiter.acquire(&checks).await.allowed());
    }
    let spread = cluster.keys_per_node("*:rl:*");
    assert_eq!(spread.iter().sum::<usize>(), 60);
    assert!(spread.iter().all(|&n| n > 0), "keys on every node: {spread:?}");

    // One limit for both instances (they share the prefix).
    let shared_prefix = LimiterConfig { key_prefix: "shared".into(), ..config(RedisTarget::Cluster(cluster.urls())) };
    let (a, b) = (Limiter::new(shared_prefix.clone()).unwrap(), Limiter::new(shared_prefix).unwrap());
    let check = [Check::new(&api, "ip:198.51.100.4")];
    assert!(a.acquire(&check).await.allowed());
    assert!(b.acquire(&check).await.allowed());
    assert!(a.acquire(&check).await.allowed());
    let refused = b.acquire(&check).await;
    assert!(!refused.allowed());
    assert_eq!(refused.retry_after().map(|d| d.as_secs_f64().round()), Some(20.0));
    for l in [&limiter, &other_instance, &a, &b] {
        assert_eq!(l.backend(), Backend::Redis);
    }
}
