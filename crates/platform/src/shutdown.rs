//! Waiting for the signal to stop.

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}

/// Serves `router` until `stop` resolves, then shuts down gracefully: the listener is
/// closed at once (new connections are refused), idle keep-alive connections are
/// closed, and the requests in flight get up to `drain` to finish; what is still
/// running after that is abandoned, so a stuck request cannot hold a deployment.
/// Returns whether everything finished in time.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
) -> std::io::Result<Drained> {
    use std::net::SocketAddr;

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let stop = async move {
        stop.await;
        tracing::info!(drain_seconds = drain.as_secs_f64(), "not accepting new connections; finishing the requests in flight");
        let _ = stopping_tx.send(tokio::time::Instant::now());
    };
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(stop).into_future();
    let deadline = async move {
        match stopping_rx.await {
            Ok(since) => tokio::time::sleep_until(since + drain).await,
            // The server ended without being told to stop.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served.map(|()| Drained::Completely),
        () = deadline => {
            let in_flight = crate::metrics::in_flight();
            tracing::warn!(drain_seconds = drain.as_secs_f64(), in_flight, "requests still running at the shutdown deadline are abandoned");
            Ok(Drained::DeadlinePassed)
        }
    }
}

/// How a graceful shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every request in flight finished.
    Completely,
    /// The drain time ran out; the remaining requests were abandoned.
    DeadlinePassed,
}

/// Closes a pool after serving: idle connections at once, checked-out ones as they
/// come back, waiting at most `within` (requests abandoned at the drain deadline may
/// still hold some). PostgreSQL then sees orderly disconnects, not broken sockets.
pub async fn close_pool(pool: &sqlx::PgPool, within: std::time::Duration) {
    if tokio::time::timeout(within, pool.close()).await.is_err() {
        tracing::warn!("database connections still in use after the drain; leaving them to the exit");
    } else {
        tracing::info!("database pool closed");
    }
}
