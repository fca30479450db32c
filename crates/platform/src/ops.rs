//! The operations listener: a second, small listener of a service, for the probes and
//! `/metrics` only (`AUTH_OPS_LISTEN`, `MOVIES_OPS_LISTEN`), as Kubernetes' management
//! ports, Spring's management port or Envoy's admin listener do it.
//!
//! It has its own accept loop and its own cap of [`MAX_CONNECTIONS`], with the API
//! listener's connection timeouts: a burst or an attack that holds every place of the
//! API listener (`*_MAX_CONNECTIONS`) does not hold the probes and the scrapes, so the
//! orchestrator does not restart a service that was only busy, and Prometheus keeps
//! the minutes it should record. Once it is set, `/metrics` is served there only (a 404
//! on the API's port, which is published); the probes stay on the API listener too (the
//! API contract lists them, and a load balancer may ask them there). Unset, nothing
//! changes: the probes and `/metrics` are the API listener's.

use std::net::SocketAddr;

use axum::{Router, http::StatusCode, routing::MethodRouter};
use tokio::net::TcpListener;

use crate::{
    env::{ConfigError, Env},
    http::HttpSettings,
    server::{ConnectionTimeouts, Drained, Listener},
};

/// Connections the operations listener serves at once: probes and scrapes are a few
/// an interval, from the orchestrator and Prometheus; more wait in its listen backlog.
pub const MAX_CONNECTIONS: usize = 32;

/// Where Prometheus scrapes a service.
pub const METRICS_PATH: &str = "/metrics";

/// Reads the operations listener's address from the variable `name`: `None` when unset
/// or blank. An address that is not `ip:port`, or one whose port is the API's
/// (`api`, read from `api_name`) on the same or an overlapping address (a wildcard on
/// either side), is an error naming the variable. Port 0 (any free port) is allowed on
/// both.
pub fn listen_setting(env: &Env, name: &str, api_name: &str, api: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(raw) = env.optional(name) else { return Ok(None) };
    let error = |reason: String| ConfigError { name: name.to_owned(), reason };
    let ops: SocketAddr = raw.trim().parse().map_err(|e| error(format!("cannot parse {raw:?}: {e}")))?;
    let overlapping = ops.ip() == api.ip() || ops.ip().is_unspecified() || api.ip().is_unspecified();
    if ops.port() != 0 && ops.port() == api.port() && overlapping {
        return Err(error(format!("must differ from {api_name} ({api}): the operations listener needs a port of its own")));
    }
    Ok(Some(ops))
}

/// A service's finished routers: its API's, and its operations listener's when it has one.
pub struct Routers {
    pub api: Router,
    pub ops: Option<Router>,
}

/// Places a service's operations endpoints: `probes` (its `/health/*` routes, already
/// among `api`'s) and `metrics` (`GET /metrics`). Without an operations listener,
/// `/metrics` is mounted on `api` and `None` returned; with one (`separate`), `api` is
/// returned as it is, and the operations listener's router is the probes and
/// `/metrics` (state not yet applied; finish it with [`router`]).
pub fn place<S>(api: Router<S>, probes: Router<S>, metrics: MethodRouter<S>, separate: bool) -> (Router<S>, Option<Router<S>>)
where
    S: Clone + Send + Sync + 'static,
{
    if separate { (api, Some(probes.route(METRICS_PATH, metrics))) } else { (api.route(METRICS_PATH, metrics), None) }
}

/// The operations listener's finished router: what [`place`] returned, with its state,
/// a 404 problem for every other path (405 for another method), in the standard
/// middleware (spans, metrics, the request timeout). No request id is ever required
/// there: only the orchestrator and Prometheus call it, never through nginx.
pub fn router(ops: Router, http: HttpSettings) -> Router {
    let ops = ops
        .fallback(|| async {
            problem::problem_response(StatusCode::NOT_FOUND, "not_found", "Not found", Some("No such resource.".into()), Vec::new())
        })
        .method_not_allowed_fallback(|| async {
            problem::problem_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed", None, Vec::new())
        });
    crate::http::standard_layers(ops, HttpSettings { require_request_id: false, ..http })
}

/// Binds a service's listener on `addr`, read from the variable `variable`; a failure
/// names both.
pub async fn bind(addr: SocketAddr, variable: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr).await.with_context(|| format!("binding {addr} ({variable})"))
}

/// [`bind`] for the operations listener, when one is set (`addr`).
pub async fn bind_optional(addr: Option<SocketAddr>, variable: &str) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(bind(addr, variable).await?)),
        None => Ok(None),
    }
}

/// Serves the API on `api` and, when there is one, the operations listener (its
/// listener and [`router`]), until `stop` resolves: both stop accepting then, and each
/// drains as [`crate::server::serve`] does, within the same `drain`. The API listener
/// is capped by `cap`, the operations listener by [`MAX_CONNECTIONS`]. Returns
/// [`Drained::DeadlinePassed`] when either did not finish in time.
pub async fn serve(
    api: (TcpListener, Router),
    ops: Option<(TcpListener, Router)>,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
    cap: crate::connections::ConnectionCap,
) -> std::io::Result<Drained> {
    let Some((ops_listener, ops_router)) = ops else {
        return crate::server::serve(api.0, api.1, stop, drain, cap).await;
    };
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let stopped_signal = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    let served_api = crate::server::serve(api.0, api.1, stopped_signal(stopped.clone()), drain, cap);
    let served_ops = crate::server::serve_listener(
        Listener::Operations,
        ops_listener,
        ops_router,
        stopped_signal(stopped),
        drain,
        ConnectionTimeouts::default(),
        MAX_CONNECTIONS,
    );
    let signal = async move {
        stop.await;
        let _ = stopping.send(true);
    };
    let (served_api, served_ops, ()) = tokio::join!(served_api, served_ops, signal);
    match (served_api?, served_ops?) {
        (Drained::Completely, Drained::Completely) => Ok(Drained::Completely),
        _ => Ok(Drained::DeadlinePassed),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::{io::AsyncWriteExt, net::TcpStream};

    use super::*;
    use crate::{
        server::tests::{answered_soon, until_closed},
        testing::{held_connection, whole_response},
    };

    fn setting(value: Option<&str>, api: &str) -> Result<Option<SocketAddr>, String> {
        let lookup = |name: &str| if name == "X_OPS_LISTEN" { value.map(str::to_owned) } else { None };
        listen_setting(&Env::new(&lookup), "X_OPS_LISTEN", "X_LISTEN", api.parse().unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_operations_listener_is_off_unless_set() {
        assert_eq!(setting(None, "127.0.0.1:8000"), Ok(None));
        assert_eq!(setting(Some("  "), "127.0.0.1:8000"), Ok(None));
        assert_eq!(setting(Some("0.0.0.0:9000"), "0.0.0.0:8000"), Ok(Some("0.0.0.0:9000".parse().unwrap())));
        assert_eq!(setting(Some(" [::1]:9000 "), "[::1]:8000"), Ok(Some("[::1]:9000".parse().unwrap())));
        // Another interface may use the same port; any free port (0) on both is no clash.
        assert_eq!(setting(Some("127.0.0.1:8000"), "10.0.0.1:8000"), Ok(Some("127.0.0.1:8000".parse().unwrap())));
        assert_eq!(setting(Some("127.0.0.1:0"), "127.0.0.1:0"), Ok(Some("127.0.0.1:0".parse().unwrap())));
    }

    #[test]
    fn a_bad_address_or_the_apis_own_is_refused_naming_the_variable() {
        assert_eq!(setting(Some("9000"), "127.0.0.1:8000").unwrap_err(), "X_OPS_LISTEN: cannot parse \"9000\": invalid socket address syntax");
        assert_eq!(
            setting(Some("localhost:9000"), "127.0.0.1:8000").unwrap_err(),
            "X_OPS_LISTEN: cannot parse \"localhost:9000\": invalid socket address syntax"
        );
        assert_eq!(
            setting(Some("127.0.0.1:99999"), "127.0.0.1:8000").unwrap_err(),
            "X_OPS_LISTEN: cannot parse \"127.0.0.1:99999\": invalid socket address syntax"
        );
        for (ops, api) in [
            ("127.0.0.1:8000", "127.0.0.1:8000"),
            ("0.0.0.0:8000", "127.0.0.1:8000"),
            ("127.0.0.1:8000", "0.0.0.0:8000"),
            ("[::]:8000", "127.0.0.1:8000"),
        ] {
            assert_eq!(
                setting(Some(ops), api).unwrap_err(),
                format!("X_OPS_LISTEN: must differ from X_LISTEN ({api}): the operations listener needs a port of its own"),
                "{ops} beside {api}"
            );
        }
    }

    /// An operations router as a service builds it: `/health/live` and `/metrics`.
    fn operations_router() -> Router {
        let probes = Router::new().route("/health/live", get(|| async { "alive" }));
        let (_, ops) = place(Router::new(), probes, crate::metrics::endpoint(|| {}), true);
        router(ops.expect("a separate operations router"), HttpSettings { request_timeout: Duration::from_secs(5), require_request_id: true })
    }

    async fn ask(addr: SocketAddr, path: &str) -> String {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        whole_response(&mut socket, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn metrics_go_to_the_operations_router_only_when_there_is_one() {
        let probes = || Router::<()>::new().route("/health/live", get(|| async { "alive" }));
        let api = || Router::<()>::new().route("/health/live", get(|| async { "alive" }));
        let (together, none) = place(api(), probes(), crate::metrics::endpoint(|| {}), false);
        assert!(none.is_none());
        let (apart, ops) = place(api(), probes(), crate::metrics::endpoint(|| {}), true);
        let status = |router: Router, path: &'static str| async move {
            use tower::ServiceExt;
            router.oneshot(axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap()).await.unwrap().status()
        };
        assert_eq!(status(together, "/metrics").await, StatusCode::OK);
        assert_eq!(status(apart.clone(), "/metrics").await, StatusCode::NOT_FOUND);
        assert_eq!(status(apart, "/health/live").await, StatusCode::OK);
        let ops = ops.unwrap();
        assert_eq!(status(ops.clone(), "/metrics").await, StatusCode::OK);
        assert_eq!(status(ops, "/health/live").await, StatusCode::OK);
    }

    /// The API listener at its cap of 2, both places held by idle kept-alive
    /// connections: the operations listener still answers at once, and a stop closes
    /// both listeners.
    #[tokio::test]
    async fn the_operations_listener_answers_while_the_api_listener_is_at_its_cap_and_stops_with_it() {
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (api_addr, ops_addr) = (api_listener.local_addr().unwrap(), ops_listener.local_addr().unwrap());
        let api_router = Router::new().route("/health/live", get(|| async { "alive" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            (api_listener, api_router),
            Some((ops_listener, operations_router())),
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
            crate::connections::ConnectionCap::exactly(2),
        ));
        let held = vec![held_connection(api_addr).await, held_connection(api_addr).await];
        let mut waiting = TcpStream::connect(api_addr).await.unwrap();
        waiting.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(!answered_soon(&mut waiting).await, "the API listener served a connection over its cap");

        assert!(ask(ops_addr, "/health/live").await.starts_with("HTTP/1.1 200"));
        let metrics = ask(ops_addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200") && metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        // Anything else is a 404 problem, even without the request id the settings require.
        let other = ask(ops_addr, "/api").await;
        assert!(other.starts_with("HTTP/1.1 404") && other.contains("application/problem+json") && other.contains("not_found"), "{other}");

        stop.send(()).unwrap();
        assert_eq!(until_closed(&mut waiting, Duration::from_secs(5)).await, "", "a connection that waited for a place was served during shutdown");
        drop(held);
        let drained = tokio::time::timeout(Duration::from_secs(10), served).await.expect("both listeners stopped").unwrap().unwrap();
        assert_eq!(drained, Drained::Completely);
        for addr in [api_addr, ops_addr] {
            let refused = TcpStream::connect(addr).await.unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{addr} still listening");
        }
    }
}
