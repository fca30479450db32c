//! One keep-alive HTTP/1.1 connection with one request in flight, reconnecting after
//! a transport error. Raw `hyper::client::conn` keeps the client's own cost low, since
//! it shares the cores with the service it measures.

use std::net::SocketAddr;

use anyhow::Context;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Body = Full<Bytes>;

pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Body>>,
}

/// A response whose body has been read in full.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        let host = HeaderValue::from_str(&addr.to_string()).expect("a socket address is a valid header value");
        Self { addr, host, sender: None }
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Body>> {
        let stream = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the socket; ends when the sender is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends `request` and reads the whole answer. After a transport error the
    /// connection is dropped and the next call opens a new one.
    pub async fn send(&mut self, mut request: Request<Body>) -> anyhow::Result<Reply> {
        request.headers_mut().insert(header::HOST, self.host.clone());
        let result = self.try_send(request).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_send(&mut self, request: Request<Body>) -> anyhow::Result<Reply> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }
}

pub fn post_json(path: &str, body: Bytes) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "loadgen")
        .body(Full::new(body))
        .expect("a valid path")
}

pub fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).header(header::USER_AGENT, "loadgen").body(Full::new(Bytes::new())).expect("a valid path")
}

pub fn get_with_bearer(path: &str, authorization: &HeaderValue) -> Request<Body> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::AUTHORIZATION, authorization.clone())
        .header(header::USER_AGENT, "loadgen")
        .body(Full::new(Bytes::new()))
        .expect("a valid path")
}

pub fn post_json_with_bearer(path: &str, body: Bytes, authorization: &HeaderValue) -> Request<Body> {
    let mut request = post_json(path, body);
    request.headers_mut().insert(header::AUTHORIZATION, authorization.clone());
    request
}
