//! A stand-in trace collector for the tracing-overhead benchmark. It speaks OTLP/HTTP
//! as far as an exporter can tell: it reads each export in full and answers 200 with
//! an empty protobuf `Export…ServiceResponse` (zero bytes: no partial success). It
//! decodes nothing, so its own cost stays small and the same whatever the spans hold.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{Response, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    bytes: AtomicU64,
}

pub async fn serve(listen: SocketAddr, stats: PathBuf) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let tally = Arc::new(Tally::default());
    let writer = tally.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let line = serde_json::json!({
                "requests": writer.requests.load(Ordering::Relaxed),
                "bytes": writer.bytes.load(Ordering::Relaxed),
            });
            let _ = tokio::fs::write(&stats, line.to_string()).await;
        }
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let tally = tally.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let tally = tally.clone();
                async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    tally.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    let response = Response::builder().header(header::CONTENT_TYPE, "application/x-protobuf").body(Full::new(Bytes::new()));
                    Ok::<_, hyper::Error>(response.expect("a static response is valid"))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
