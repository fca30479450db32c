//! Helpers for the services' tests (feature `test-support`).

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, ToSocketAddrs},
};

pub use log_hygiene::testing::CapturedLogs;

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) from `socket`,
/// which may stay open (kept alive); a panic when it has not come whole within
/// `within`, or the connection closed first.
pub async fn whole_response(socket: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.trim().parse::<usize>().unwrap()))
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => panic!("the connection closed before a whole response: {text:?}"),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.unwrap_or_else(|_| panic!("no whole response within {within:?}: {:?}", String::from_utf8_lossy(&received)))
}

/// A connection to `addr` that asked `GET /health/live`, was answered, and stays open,
/// idle on keep-alive: it holds one of the listener's places under its cap.
pub async fn held_connection(addr: impl ToSocketAddrs) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = whole_response(&mut socket, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    socket
}
