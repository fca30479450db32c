//! Prometheus metrics: one process-wide recorder (the `metrics` crate's facade with
//! its Prometheus exporter), the per-request middleware that [`crate::http::standard_layers`]
//! runs, and the `GET /metrics` endpoint each service mounts.
//!
//! What every service exposes (the services and the shared crates add their own):
//!
//! | Series | Kind | Labels |
//! |---|---|---|
//! | `http_server_requests_total` | counter | `method` (one of the nine standard methods, or `other`), `route` (the template, never the raw path), `status` |
//! | `http_server_request_duration_seconds` | histogram | `method`, `route` |
//! | `http_server_requests_in_flight` | gauge | |
//! | `db_pool_connections` | gauge, read at scrape time | `pool`, `state` = `idle` or `in_use` |
//! | `db_pool_max_connections` | gauge | `pool` |
//! | `http_server_connections_open` | gauge | |
//! | `http_server_connections_max` | gauge | |
//! | `http_server_connection_cap_reached_total` | counter | |
//!
//! (The three connection series are the API listener's; a service's operations
//! listener, [`crate::ops`], is not counted in them.)
//!
//! Requests that match no route count under `route="unmatched"`, and requests with a
//! method of their own making (HTTP lets a client send any token) under
//! `method="other"`, so a scan of random paths or methods cannot grow the number of
//! series.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

pub const REQUESTS: &str = "http_server_requests_total";
pub const DURATION: &str = "http_server_request_duration_seconds";
pub const IN_FLIGHT: &str = "http_server_requests_in_flight";
pub const POOL_CONNECTIONS: &str = "db_pool_connections";
pub const POOL_MAX_CONNECTIONS: &str = "db_pool_max_connections";
pub const OPEN_CONNECTIONS: &str = "http_server_connections_open";
pub const MAX_CONNECTIONS: &str = "http_server_connections_max";
pub const CONNECTION_CAP_REACHED: &str = "http_server_connection_cap_reached_total";

/// Upper bounds of the latency buckets, seconds: from a cached read to the request timeout.
const DURATION_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often histogram buckets are drained when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Requests being answered by this process now, for the shutdown log.
static IN_FLIGHT_NOW: AtomicUsize = AtomicUsize::new(0);

/// The number of requests being answered now (all services of the process).
pub fn in_flight() -> usize {
    IN_FLIGHT_NOW.load(Ordering::Relaxed)
}

/// Installs the process-wide recorder on first use and returns its handle; later calls
/// return the same handle. `None` when another recorder was installed first (a test
/// harness, say): the services then serve an empty `/metrics` rather than fail.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), DURATION_BUCKETS)
                .expect("the bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    // Without the exporter's own HTTP listener nobody drains the
                    // histograms; a thread does, whatever runtime the caller has.
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_INTERVAL);
                            upkeep.run_upkeep();
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics upkeep thread not started");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "HTTP requests answered, by route template and status.");
    describe_histogram!(DURATION, Unit::Seconds, "Time to answer an HTTP request, by route template.");
    describe_gauge!(IN_FLIGHT, "HTTP requests being answered now.");
    describe_gauge!(POOL_CONNECTIONS, "PostgreSQL pool connections, idle or in use, read at scrape time.");
    describe_gauge!(POOL_MAX_CONNECTIONS, "Configured size of the PostgreSQL pool.");
    describe_gauge!(OPEN_CONNECTIONS, "Client connections open now.");
    describe_gauge!(MAX_CONNECTIONS, "Client connections served at once (the connection cap); more wait in the listen backlog.");
    describe_counter!(CONNECTION_CAP_REACHED, "Times every connection allowed was open and accepting stopped until one closed.");
    // Emitted by the shared crates (ratelimit, auth-client); described here so every
    // series on /metrics has its help text.
    describe_counter!("ratelimit_requests_total", "Rate-limit checks by policy and outcome (allowed or limited).");
    describe_counter!("ratelimit_fallbacks_total", "Switches from the shared Redis limits to the in-process fallback.");
    describe_gauge!("ratelimit_fallback_active", "1 while limits are kept in-process because Redis is down or slow.");
    describe_gauge!("auth_client_breaker_open", "1 while the circuit breaker in front of Auth is open (or half-open).");
    describe_counter!("auth_client_degraded_total", "Viewers resolved without Auth's confirmation (degraded answers).");
}

/// The method as a label: the standard ones by name, any other as `other`.
fn method_label(method: &Method) -> &'static str {
    crate::http::standard_method(method).unwrap_or("other")
}

/// Counts and times every request; the route is the matched template, so the
/// middleware must run inside the router (as `Router::layer` does).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = method_label(req.method());
    let in_flight = metrics::gauge!(IN_FLIGHT);
    in_flight.increment(1.0);
    IN_FLIGHT_NOW.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    // Decremented even when the request is cancelled (client gone, shutdown deadline).
    let _in_flight = scopeguard(move || {
        in_flight.decrement(1.0);
        IN_FLIGHT_NOW.fetch_sub(1, Ordering::Relaxed);
    });
    let response = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(DURATION, "method" => method, "route" => route).record(elapsed);
    response
}

struct Guard<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Guard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

fn scopeguard<F: FnOnce()>(f: F) -> Guard<F> {
    Guard(Some(f))
}

/// Sets the pool gauges from the pool's current state.
pub fn record_pool(name: &'static str, pool: &PgPool) {
    let size = f64::from(pool.size());
    let idle = pool.num_idle() as f64;
    metrics::gauge!(POOL_CONNECTIONS, "pool" => name, "state" => "idle").set(idle);
    metrics::gauge!(POOL_CONNECTIONS, "pool" => name, "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!(POOL_MAX_CONNECTIONS, "pool" => name).set(f64::from(pool.options().get_max_connections()));
}

/// `GET /metrics` in the Prometheus text format. `sample` runs first, to set the
/// gauges read at scrape time (pool usage, breaker state).
pub fn endpoint<S>(sample: impl Fn() + Clone + Send + Sync + 'static) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(move || {
        let sample = sample.clone();
        async move {
            sample();
            let body = install().map(PrometheusHandle::render).unwrap_or_default();
            ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], body).into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::StatusCode};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_timed() {
        install().expect("the first recorder of this test process");
        let app: Router = Router::new()
            .route("/films/{id}", get(|| async { "film" }))
            .route("/metrics", endpoint(|| metrics::gauge!("sampled_at_scrape").set(7.0)))
            .layer(axum::middleware::from_fn(track));
        for path in ["/films/1", "/films/2", "/nowhere/3"] {
            app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        }
        for method in ["FOOA", "FOOB"] {
            let request = Request::builder().method(method).uri("/films/1").body(Body::empty()).unwrap();
            assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
        }
        let response = app.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains(r#"http_server_requests_total{method="GET",route="/films/{id}",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"http_server_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
        assert!(!text.contains("/films/1"), "raw paths never become labels: {text}");
        assert!(text.contains(r#"http_server_requests_total{method="other",route="/films/{id}",status="405"} 2"#), "{text}");
        assert!(!text.contains("FOO"), "methods of a client's making never become labels: {text}");
        assert!(text.contains(r#"http_server_request_duration_seconds_bucket{method="GET",route="/films/{id}",le="+Inf"} 2"#), "{text}");
        assert!(text.contains(r#"http_server_request_duration_seconds_count{method="GET",route="/films/{id}"} 2"#), "{text}");
        assert!(text.contains("sampled_at_scrape 7"), "{text}");
        assert!(text.contains("# HELP http_server_requests_total"), "{text}");
    }
}
