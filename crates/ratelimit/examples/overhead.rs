//! What the rate-limit layer adds to a request's latency, at a fixed request rate.
//!
//! Two copies of one trivial axum service run in this process: one bare, one behind
//! `ClientIpLayer` + `RateLimitLayer` checking every request against Redis (one
//! policy per client address, 1,000 addresses sent through a trusted proxy's
//! `X-Forwarded-For`, a limit never reached, the default deadline). The load
//! is open-loop: each of `--connections` keep-alive HTTP/1.1 connections sends its
//! share of `--rate` requests per second on a fixed schedule, whatever the answers.
//! Rounds alternate between the two services so background load hits both alike.
//! Latency is from sending a request to its whole answer, in microseconds.
//!
//! Run by `scripts/bench-ratelimit.sh` on a release build:
//! `cargo run --release -p ratelimit --example overhead -- --rate 5000`.
//! Prints one JSON object.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ratelimit::{Backend, Check, ClientIp, ClientIpLayer, Limiter, LimiterConfig, Policy, RateLimitLayer, RedisTarget, TrustedProxies};

struct Args {
    rate: u64,
    connections: u64,
    rounds: u32,
    round_seconds: u64,
    warmup_seconds: u64,
    server_threads: usize,
    redis_url: String,
}

fn args() -> Args {
    let mut a = Args {
        rate: 5_000,
        connections: 32,
        rounds: 6,
        round_seconds: 3,
        warmup_seconds: 2,
        server_threads: 2,
        redis_url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let value = pair.get(1).unwrap_or_else(|| panic!("{} needs a value", pair[0]));
        let number = || value.parse::<u64>().unwrap_or_else(|_| panic!("{}: not a number", pair[0]));
        match pair[0].as_str() {
            "--rate" => a.rate = number(),
            "--connections" => a.connections = number(),
            "--rounds" => a.rounds = number() as u32,
            "--round-seconds" => a.round_seconds = number(),
            "--warmup-seconds" => a.warmup_seconds = number(),
            "--server-threads" => a.server_threads = number() as usize,
            "--redis-url" => a.redis_url = value.clone(),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap() });
    addr
}

/// Sends `rate` requests per second for `duration` over `connections` connections;
/// returns the latencies of the successful ones and the count of failures.
async fn load(addr: SocketAddr, rate: u64, connections: u64, duration: Duration) -> (Histogram<u64>, u64) {
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let total = rate * duration.as_secs();
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut failures = 0;
            let mut i = c;
            while i < total {
                // Each request has a fixed slot: a slow answer does not slow the schedule.
                tokio::time::sleep_until(start + Duration::from_nanos(i * 1_000_000_000 / rate)).await;
                let client = format!("198.51.{}.{}", (i / 250) % 4, i % 250);
                let request = hyper::Request::get("/").header("host", "bench").header("x-forwarded-for", client).body(Empty::<Bytes>::new()).unwrap();
                let sent = Instant::now();
                match sender.send_request(request).await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.into_body().collect().await;
                        histogram.record(sent.elapsed().as_micros() as u64).unwrap();
                    }
                    _ => failures += 1,
                }
                i += connections;
            }
            (histogram, failures)
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut failures = 0;
    for task in tasks {
        let (h, f) = task.await.unwrap();
        histogram.add(h).unwrap();
        failures += f;
    }
    (histogram, failures)
}

fn summary(h: &Histogram<u64>) -> String {
    format!(
        r#"{{"requests": {}, "p50_us": {}, "p90_us": {}, "p99_us": {}, "p999_us": {}, "max_us": {}}}"#,
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

fn main() {
    let args = args();
    // The services on their own runtime (as many workers as cores by default, like the
    // services), the load generator on this thread.
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(args.server_threads).enable_all().build().unwrap();
    let (plain, limited, limiter) = server.block_on(async {
        let config = LimiterConfig::new(format!("bench:{}", std::process::id()), Some(RedisTarget::Single(args.redis_url.clone())));
        let limiter = Limiter::new(config).expect("a valid Redis URL");
        let policy = Policy::new("bench-ip", "1000000/s".parse().unwrap());
        let classify = move |parts: &mut http::request::Parts| {
            let ip: Option<IpAddr> = ClientIp::of(&parts.extensions);
            vec![Check::new(&policy, format_args!("ip:{}", ip.map(|i| i.to_string()).unwrap_or_default()))]
        };
        let limited =
            app().layer(RateLimitLayer::new(limiter.clone(), classify)).layer(ClientIpLayer::new("127.0.0.1".parse::<TrustedProxies>().unwrap()));
        (serve(app()).await, serve(limited).await, limiter)
    });
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut bare, mut with_layer) = (Histogram::<u64>::new(3).unwrap(), Histogram::<u64>::new(3).unwrap());
    let mut failures = 0;
    client.block_on(async {
        // Warm up both (connections, the script in Redis, caches).
        let warm = Duration::from_secs(args.warmup_seconds);
        load(plain, args.rate, args.connections, warm).await;
        load(limited, args.rate, args.connections, warm).await;
        for _ in 0..args.rounds {
            let round = Duration::from_secs(args.round_seconds);
            let (h, f) = load(plain, args.rate, args.connections, round).await;
            bare.add(h).unwrap();
            failures += f;
            let (h, f) = load(limited, args.rate, args.connections, round).await;
            with_layer.add(h).unwrap();
            failures += f;
        }
    });
    let added = |q: f64| with_layer.value_at_quantile(q) as i64 - bare.value_at_quantile(q) as i64;
    println!(
        r#"{{"rate": {}, "connections": {}, "server_threads": {}, "rounds": {}, "round_seconds": {}, "failures": {}, "fallbacks": {}, "backend_at_end": "{}", "without_layer": {}, "with_layer": {}, "added_p50_us": {}, "added_p99_us": {}}}"#,
        args.rate,
        args.connections,
        args.server_threads,
        args.rounds,
        args.round_seconds,
        failures,
        limiter.fallbacks(),
        if limiter.backend() == Backend::Redis { "redis" } else { "local" },
        summary(&bare),
        summary(&with_layer),
        added(0.5),
        added(0.99),
    );
}
