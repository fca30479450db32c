//! The services' HTTP server: the accept loop with its connection cap, the timeouts
//! on reading a request's headers and on writing an answer, and a graceful stop on
//! SIGINT or SIGTERM. The same loop serves a service's operations listener
//! ([`crate::ops`]), with a cap of its own.

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

/// How long a write to a client may wait for the client to take bytes: a connection
/// whose answer makes no progress for this long is closed. The request timeout ends
/// when the handler returns its response, not when the body has been sent, so a
/// client that stopped reading (a full receive window) held its connection, and its
/// place under the connection cap, forever; four such clients took every place of a
/// service capped at four. A slow client that keeps reading is not cut off: the time
/// runs only while nothing is taken. (An idle kept-alive connection is bounded by
/// [`HEADER_READ_TIMEOUT`]; a body being received by the request timeout.)
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The timeouts of each accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read: std::time::Duration,
    /// See [`WRITE_TIMEOUT`].
    pub write: std::time::Duration,
}

impl Default for ConnectionTimeouts {
    fn default() -> Self {
        Self { header_read: HEADER_READ_TIMEOUT, write: WRITE_TIMEOUT }
    }
}

/// Serves `router` over HTTP/1.1 until `stop` resolves, then shuts down gracefully:
/// the listener is closed at once (new connections are refused), idle keep-alive
/// connections are closed, and the requests in flight get up to `drain` to finish;
/// what is still running after that is abandoned, so a stuck request cannot hold a
/// deployment. Returns whether everything finished in time. Each request carries its
/// peer's address as axum's `ConnectInfo<SocketAddr>`; a client slower than
/// [`HEADER_READ_TIMEOUT`] with its headers, or that takes nothing of an answer for
/// [`WRITE_TIMEOUT`], is disconnected.
///
/// At most `cap.max` connections are open at once. At the cap the loop stops
/// accepting: new connections wait in the kernel's listen backlog (they are not
/// reset) until an open one closes. Without it, enough clients exhausted the open-file
/// limit, and then `accept` failed with EMFILE and the pool could not reach PostgreSQL.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
    cap: crate::connections::ConnectionCap,
) -> std::io::Result<Drained> {
    cap.log();
    serve_with(listener, router, stop, drain, ConnectionTimeouts::default(), cap.max).await
}

/// [`serve`] with other connection timeouts and a bare cap (tests).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
    timeouts: ConnectionTimeouts,
    max_connections: usize,
) -> std::io::Result<Drained> {
    serve_listener(Listener::Api, listener, router, stop, drain, timeouts, max_connections).await
}

/// Which of a service's listeners an accept loop serves. The connection series on
/// `/metrics` (`http_server_connections_open`, `_max`, `_cap_reached_total`) are the
/// API listener's: the operations listener's few connections, under a cap of their
/// own, are not counted in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The service's API (`AUTH_LISTEN`, `MOVIES_LISTEN`).
    Api,
    /// The probes and `/metrics` only (`AUTH_OPS_LISTEN`, `MOVIES_OPS_LISTEN`; [`crate::ops`]).
    Operations,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Operations => "operations",
        }
    }
}

/// [`serve_with`] for either listener of a service.
pub(crate) async fn serve_listener(
    kind: Listener,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
    timeouts: ConnectionTimeouts,
    max_connections: usize,
) -> std::io::Result<Drained> {
    use axum::extract::ConnectInfo;
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        server::graceful::GracefulShutdown,
        service::TowerToHyperService,
    };

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(timeouts.header_read);
    let connections = GracefulShutdown::new();
    let mut slots = ConnectionSlots::new(kind, max_connections);
    let mut stop = std::pin::pin!(stop);
    'serve: loop {
        // A place first, then the connection: at the cap nothing is accepted.
        let place = tokio::select! {
            place = slots.next() => place,
            () = &mut stop => break,
        };
        let (stream, peer) = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => break accepted,
                    Err(e) => accept_failed(e).await,
                },
                () = &mut stop => break 'serve,
            }
        };
        let open = OpenConnection::new(kind, place);
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = tower::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), request.map(axum::body::Body::new))
        });
        let stream = WriteTimeout::new(stream, timeouts.write);
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            // Held until the connection ends, however it ends.
            let _open = open;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(listener = kind.name(), drain_seconds = drain.as_secs_f64(), "not accepting new connections; finishing the requests in flight");
    tokio::select! {
        () = connections.shutdown() => Ok(Drained::Completely),
        () = tokio::time::sleep(drain) => {
            let in_flight = crate::metrics::in_flight();
            tracing::warn!(
                listener = kind.name(),
                drain_seconds = drain.as_secs_f64(),
                in_flight,
                "requests still running at the shutdown deadline are abandoned"
            );
            Ok(Drained::DeadlinePassed)
        }
    }
}

/// The permits of the connection cap, and the metrics and the warning that go with it.
struct ConnectionSlots {
    kind: Listener,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    max: usize,
    /// The warning that the cap is reached, at most once a minute: a service held at
    /// its cap would otherwise log at every connection that closes.
    cap_warning: log_hygiene::AtMostEvery,
}

impl ConnectionSlots {
    fn new(kind: Listener, max: usize) -> Self {
        if kind == Listener::Api {
            metrics::gauge!(crate::metrics::MAX_CONNECTIONS).set(max as f64);
            // Listed from the start, so an alert can tell "never reached" from "missing".
            metrics::counter!(crate::metrics::CONNECTION_CAP_REACHED).increment(0);
        }
        Self { kind, permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max)), max, cap_warning: log_hygiene::AtMostEvery::default() }
    }

    /// A place for one more connection, waiting for one to close when all are open.
    async fn next(&mut self) -> tokio::sync::OwnedSemaphorePermit {
        match self.permits.clone().try_acquire_owned() {
            Ok(place) => place,
            Err(_) => {
                self.cap_reached();
                self.permits.clone().acquire_owned().await.expect("the semaphore is never closed")
            }
        }
    }

    fn cap_reached(&self) {
        if self.kind == Listener::Api {
            metrics::counter!(crate::metrics::CONNECTION_CAP_REACHED).increment(1);
        }
        // Tokio's clock, which a test may pause and advance.
        if let Some(times_reached) = self.cap_warning.happened_at(tokio::time::Instant::now().into_std()) {
            tracing::warn!(
                listener = self.kind.name(),
                max_connections = self.max,
                times_reached,
                "connection cap reached: new connections wait in the listen backlog until one closes (logged at most once a minute)"
            );
        }
    }
}

/// An accepted connection's place under the cap, counted as open (on the API
/// listener); dropping it frees the place.
struct OpenConnection {
    counted: bool,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(kind: Listener, place: tokio::sync::OwnedSemaphorePermit) -> Self {
        let counted = kind == Listener::Api;
        if counted {
            metrics::gauge!(crate::metrics::OPEN_CONNECTIONS).increment(1.0);
        }
        Self { counted, _place: place }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.counted {
            metrics::gauge!(crate::metrics::OPEN_CONNECTIONS).decrement(1.0);
        }
    }
}

/// A connection whose writes must make progress: a write, flush or shutdown that the
/// socket has not taken within `timeout` fails with `TimedOut`, which ends hyper's
/// connection (and frees its place). The time runs from the first write the socket
/// could not take and restarts at every one it takes. Written here rather than taken
/// from a crate: the workspace has none that wraps a server's stream (hyper-timeout's
/// streams are private to its client connector), and this is all it takes.
struct WriteTimeout<S> {
    inner: S,
    timeout: std::time::Duration,
    /// Allocated at the first stalled write, then reset for each later stall.
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Whether the last write was not taken (the timer runs).
    stalled: bool,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, timeout: std::time::Duration) -> Self {
        Self { inner, timeout, timer: None, stalled: false }
    }

    /// What a write-side poll of the inner stream means once the timeout is applied.
    fn guard<T>(&mut self, cx: &mut std::task::Context<'_>, polled: std::task::Poll<std::io::Result<T>>) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if polled.is_ready() {
            self.stalled = false;
            return polled;
        }
        if !self.stalled {
            self.stalled = true;
            let deadline = tokio::time::Instant::now() + self.timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.timer.as_mut().expect("set when the write stalled");
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client took nothing for the write timeout"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<S> {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard(cx, polled)
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
pub(crate) mod tests {
    use std::{net::SocketAddr, time::Duration};

    use axum::{Router, extract::ConnectInfo, routing::get};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A server under test. `GET /peer` answers the client's address; `GET /wait`
    /// reports on `started` that it runs, then answers once `release` is sent true.
    /// Dropping it stops the server.
    struct TestServer {
        addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        served: tokio::task::JoinHandle<std::io::Result<Drained>>,
        started: tokio::sync::mpsc::UnboundedReceiver<()>,
        release: tokio::sync::watch::Sender<bool>,
    }

    async fn server(header_read_timeout: Duration, max_connections: usize) -> TestServer {
        server_with(ConnectionTimeouts { header_read: header_read_timeout, ..ConnectionTimeouts::default() }, max_connections).await
    }

    /// More than the kernel buffers of both ends of a loopback connection hold.
    const BIG_BODY: usize = 32 << 20;

    /// [`server`] with both timeouts chosen; `GET /big` answers [`BIG_BODY`] bytes.
    async fn server_with(timeouts: ConnectionTimeouts, max_connections: usize) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started_tx, started) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = tokio::sync::watch::channel(false);
        let wait = move || {
            let started = started_tx.clone();
            let mut released = released.clone();
            async move {
                let _ = started.send(());
                let _ = released.wait_for(|released| *released).await;
                "released"
            }
        };
        let router = Router::new()
            .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
            .route("/wait", get(wait))
            .route("/big", get(|| async { axum::body::Bytes::from(vec![b'x'; BIG_BODY]) }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stop_signal = async move {
            let _ = stopped.await;
        };
        let served = tokio::spawn(serve_with(listener, router, stop_signal, Duration::from_secs(5), timeouts, max_connections));
        TestServer { addr, stop, served, started, release }
    }

    /// A request is answered on a connection being served within microseconds here:
    /// one not answered in this time is waiting to be accepted. (A bounded wait, as
    /// what it shows is that something does not happen.)
    const NOT_ANSWERED_WITHIN: Duration = Duration::from_millis(300);

    /// Whether the server sent anything on `socket` within [`NOT_ANSWERED_WITHIN`].
    pub(crate) async fn answered_soon(socket: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1];
        tokio::time::timeout(NOT_ANSWERED_WITHIN, socket.peek(&mut buf)).await.is_ok()
    }

    /// The value of an unlabelled series on the process's `/metrics`.
    fn metric(name: &str) -> f64 {
        let text = crate::metrics::install().expect("no other recorder in this test process").render();
        text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap())).unwrap_or(0.0)
    }

    /// Reads until the server closes the connection; what it sent before, or a panic
    /// if it is still open after `within`.
    pub(crate) async fn until_closed(socket: &mut TcpStream, within: Duration) -> String {
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
        let server = server(Duration::from_millis(300), 100).await;
        let addr = server.addr;
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
        let server = server(Duration::from_secs(5), 100).await;
        let addr = server.addr;
        let mut socket = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            socket.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.unwrap().unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        }
    }

    #[tokio::test]
    async fn at_the_cap_a_new_connection_waits_until_an_open_one_closes() {
        const CAP: usize = 3;
        crate::metrics::install();
        let server = server(Duration::from_secs(30), CAP).await;
        // CAP connections, each answered, then idle on keep-alive.
        let mut open = Vec::new();
        for _ in 0..CAP {
            let mut socket = TcpStream::connect(server.addr).await.unwrap();
            socket.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            assert!(crate::testing::whole_response(&mut socket, Duration::from_secs(5)).await.starts_with("HTTP/1.1 200"));
            open.push(socket);
        }
        // Other tests of this process serve connections too: the gauge is at least ours.
        assert!(metric(crate::metrics::OPEN_CONNECTIONS) >= CAP as f64);
        // One more: the kernel completes its handshake, the server does not accept it.
        let mut waiting = TcpStream::connect(server.addr).await.unwrap();
        waiting.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(!answered_soon(&mut waiting).await, "a connection over the cap was served");
        assert!(metric(crate::metrics::CONNECTION_CAP_REACHED) >= 1.0);
        // A client closes one of its connections: the waiting one is served.
        drop(open.pop());
        assert!(crate::testing::whole_response(&mut waiting, Duration::from_secs(5)).await.starts_with("HTTP/1.1 200"));
        // The others were kept open all along.
        for socket in &mut open {
            socket.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            assert!(crate::testing::whole_response(socket, Duration::from_secs(5)).await.starts_with("HTTP/1.1 200"));
        }
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_header_timeout_frees_its_place() {
        const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
        let server = server(HEADER_TIMEOUT, 1).await;
        let silent_since = std::time::Instant::now();
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut waiting = TcpStream::connect(server.addr).await.unwrap();
        waiting.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(crate::testing::whole_response(&mut waiting, Duration::from_secs(10)).await.starts_with("HTTP/1.1 200"));
        // Served only once the silent connection was closed, which the server does no
        // sooner than the header timeout after accepting it.
        let waited = silent_since.elapsed();
        assert!(waited >= HEADER_TIMEOUT, "served after {waited:?}, before the silent connection timed out");
        until_closed(&mut silent, Duration::from_secs(1)).await;
    }

    /// A client that asks for a large answer and stops reading: its connection is
    /// closed once nothing has been taken for the write timeout, and its place goes to
    /// the next client. (Before, it kept both forever: the request timeout ends with
    /// the handler, not with the body.)
    #[tokio::test]
    async fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
        const WRITE: Duration = Duration::from_secs(1);
        let server = server_with(ConnectionTimeouts { header_read: Duration::from_secs(30), write: WRITE }, 1).await;
        // A small receive window, so the server's writes stall soon.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stalled = socket.connect(server.addr).await.unwrap();
        let stalled_since = std::time::Instant::now();
        stalled.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        // Waits for the only place, which the stalled connection holds until it is closed.
        let mut waiting = TcpStream::connect(server.addr).await.unwrap();
        waiting.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(crate::testing::whole_response(&mut waiting, Duration::from_secs(10)).await.starts_with("HTTP/1.1 200"));
        let waited = stalled_since.elapsed();
        assert!(waited >= WRITE, "served after {waited:?}, before the stalled connection could time out");
        // The stalled client gets what the kernel had already taken, then the end: never the whole answer.
        let received = until_closed(&mut stalled, Duration::from_secs(10)).await;
        assert!(received.starts_with("HTTP/1.1 200") && received.len() < BIG_BODY, "{} bytes", received.len());
    }

    /// The write timeout counts only time without progress: a client that reads gets
    /// an answer that takes many times the timeout's worth of socket buffers. (Server and
    /// client on their own threads, and a timeout of seconds: a busy machine that stalls
    /// the reader for a moment must not make the test fail.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_keeps_reading_gets_a_large_answer_whole() {
        let server = server_with(ConnectionTimeouts { header_read: Duration::from_secs(30), write: Duration::from_secs(2) }, 1).await;
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut received)).await.expect("the answer within 30 s").unwrap();
        assert!(received.starts_with(b"HTTP/1.1 200") && received.ends_with(&vec![b'x'; 1024]), "{} bytes", received.len());
        let head = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(received.len() - head, BIG_BODY);
    }

    #[tokio::test]
    async fn a_connection_the_client_closes_before_any_request_frees_its_place() {
        let server = server(Duration::from_secs(30), 1).await;
        let silent = TcpStream::connect(server.addr).await.unwrap();
        let mut waiting = TcpStream::connect(server.addr).await.unwrap();
        waiting.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(!answered_soon(&mut waiting).await, "a connection over the cap was served");
        drop(silent);
        assert!(crate::testing::whole_response(&mut waiting, Duration::from_secs(5)).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn shutdown_at_the_cap_drains_the_requests_in_flight_and_serves_no_waiting_connection() {
        let TestServer { addr, stop, served, mut started, release } = server(Duration::from_secs(30), 1).await;
        let mut in_flight = TcpStream::connect(addr).await.unwrap();
        in_flight.write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), started.recv()).await.expect("the request started").unwrap();
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(!answered_soon(&mut waiting).await, "a connection over the cap was served");

        stop.send(()).unwrap();
        // The connection waiting for a place is never accepted: the listener closes.
        let answer = until_closed(&mut waiting, Duration::from_secs(5)).await;
        assert_eq!(answer, "", "a connection that was waiting for a place was served during shutdown");
        // The request in flight finishes, and then the server returns.
        release.send(true).unwrap();
        let answer = until_closed(&mut in_flight, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("released"), "{answer}");
        let drained = tokio::time::timeout(Duration::from_secs(5), served).await.expect("the server returned").unwrap().unwrap();
        assert_eq!(drained, Drained::Completely);
    }
}
