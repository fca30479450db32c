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

/// How long a client may take to send a request's headers, from the moment the
/// connection is ready for them (a new connection, or a kept-alive one after its last
/// answer): a connection that sends them more slowly, or sends nothing, is closed.
/// axum's own `serve` sets no timer, so hyper's header timeout never ran and a client
/// could hold a connection, and a file descriptor, forever (slowloris). nginx closes
/// its idle upstream connections sooner (`keepalive_timeout` in its upstreams), so it
/// never sends a request on a connection this is closing.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `router` over HTTP/1.1 until `stop` resolves, then shuts down gracefully:
/// the listener is closed at once (new connections are refused), idle keep-alive
/// connections are closed, and the requests in flight get up to `drain` to finish;
/// what is still running after that is abandoned, so a stuck request cannot hold a
/// deployment. Returns whether everything finished in time. Each request carries its
/// peer's address as axum's `ConnectInfo<SocketAddr>`; a client slower than
/// [`HEADER_READ_TIMEOUT`] with its headers is disconnected.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
) -> std::io::Result<Drained> {
    serve_with(listener, router, stop, drain, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another header timeout (tests).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
    header_read_timeout: std::time::Duration,
) -> std::io::Result<Drained> {
    use axum::extract::ConnectInfo;
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = tower::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), request.map(axum::body::Body::new))
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(drain_seconds = drain.as_secs_f64(), "not accepting new connections; finishing the requests in flight");
    tokio::select! {
        () = connections.shutdown() => Ok(Drained::Completely),
        () = tokio::time::sleep(drain) => {
            let in_flight = crate::metrics::in_flight();
            tracing::warn!(drain_seconds = drain.as_secs_f64(), in_flight, "requests still running at the shutdown deadline are abandoned");
            Ok(Drained::DeadlinePassed)
        }
    }
}

/// After a failed `accept`: a connection the client gave up on is nothing; anything
/// else (out of file descriptors, above all) is logged and waited out for a second,
/// as axum's `serve` does, rather than spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
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

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use axum::{Router, extract::ConnectInfo, routing::get};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    async fn server(header_read_timeout: Duration) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stop_signal = async move {
            let _ = stopped.await;
        };
        tokio::spawn(serve_with(listener, router, stop_signal, Duration::from_secs(1), header_read_timeout));
        (addr, stop)
    }

    /// Reads until the server closes the connection; what it sent before, or a panic
    /// if it is still open after `within`.
    async fn until_closed(socket: &mut TcpStream, within: Duration) -> String {
        let mut received = Vec::new();
        let read = tokio::time::timeout(within, async {
            let mut buf = [0u8; 1024];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the connection was still open after {within:?}");
        String::from_utf8_lossy(&received).into_owned()
    }

    #[tokio::test]
    async fn a_client_slow_with_its_headers_or_idle_is_disconnected() {
        let (addr, _stop) = server(Duration::from_millis(300)).await;
        // Sends nothing.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        until_closed(&mut silent, Duration::from_secs(10)).await;
        // Sends half its headers, then a line every 100 ms, never the end.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let dripping = async {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if slow.write_all(b"X-Drip: 1\r\n").await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), dripping).await;
        until_closed(&mut slow, Duration::from_secs(10)).await;
        // Asks once, is answered with its own address, then stays idle on keep-alive.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let local = idle.local_addr().unwrap();
        idle.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answered = until_closed(&mut idle, Duration::from_secs(10)).await;
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        assert!(answered.ends_with(&local.to_string()), "ConnectInfo is the peer's address: {answered}");
    }

    #[tokio::test]
    async fn a_prompt_client_keeps_its_connection_for_several_requests() {
        let (addr, _stop) = server(Duration::from_secs(5)).await;
        let mut socket = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            socket.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.unwrap().unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        }
    }
}
