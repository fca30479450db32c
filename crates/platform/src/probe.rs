//! `<service> healthcheck`: asks the service's own readiness probe over loopback and
//! answers with the exit code, for container healthchecks in images that have no
//! shell or curl (distroless). It asks the operations listener when the service has
//! one ([`crate::ops`]): there the probe is not held by the API listener's connection
//! cap.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::ExitCode,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Where to reach a service listening on `listen` from the same host: a wildcard
/// address is reached through loopback.
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET path` on the service; success when it answers 200 within `timeout`.
pub async fn check(listen: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let target = local_target(listen);
    let exchange = async {
        let mut stream = TcpStream::connect(target).await.map_err(|e| format!("connecting to {target}: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending: {e}"))?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') {
            let n = stream.read(&mut buf).await.map_err(|e| format!("reading: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let status_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
        match status_line.split_whitespace().nth(1) {
            Some("200") => Ok(()),
            _ => Err(format!("{path} answered {status_line:?}")),
        }
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| Err(format!("{path} did not answer within {timeout:?}")))
}

/// The `healthcheck` command: readiness of the service listening on `listen` (and on
/// `ops_listen`, its operations listener, when set), as an exit code.
pub async fn healthcheck(service: &str, listen: SocketAddr, ops_listen: Option<SocketAddr>) -> ExitCode {
    match check(ops_listen.unwrap_or(listen), "/health/ready", Duration::from_secs(3)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{service}: not ready: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_over_loopback() {
        assert_eq!(local_target("0.0.0.0:8000".parse().unwrap()), "127.0.0.1:8000".parse().unwrap());
        assert_eq!(local_target("[::]:8001".parse().unwrap()), "[::1]:8001".parse().unwrap());
        assert_eq!(local_target("10.1.2.3:80".parse().unwrap()), "10.1.2.3:80".parse().unwrap());
    }

    #[tokio::test]
    async fn the_check_passes_on_200_only() {
        use axum::{Router, http::StatusCode, routing::get};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app =
            Router::new().route("/health/ready", get(|| async { "ok" })).route("/health/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        assert_eq!(check(addr, "/health/ready", Duration::from_secs(5)).await, Ok(()));
        assert!(check(addr, "/health/down", Duration::from_secs(5)).await.unwrap_err().contains("503"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(check(closed, "/health/ready", Duration::from_secs(5)).await.is_err());
    }
}
