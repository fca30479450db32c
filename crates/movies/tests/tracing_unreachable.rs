//! A collector that is down never fails or delays a request.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::Duration;

use platform::telemetry::{ExportProtocol, TraceExport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_leaves_requests_unaffected() {
    // Nothing listens there.
    let port = helpers::free_port();
    let telemetry = platform::telemetry::init_with(Some(TraceExport {
        endpoint: format!("http://127.0.0.1:{port}"),
        protocol: ExportProtocol::Grpc,
        service_name: "movies".into(),
        sampling: Default::default(),
    }))
    .unwrap();
    let auth = helpers::Auth::in_process().await;
    let movies = helpers::Movies::start(&auth.url).await;
    for i in 0..200 {
        let request = movies.client.get(movies.url("/api/v1/films")).header("x-request-id", format!("r-{i}")).send();
        // A hang bound, not a speed target: export failures must not block requests.
        let response = tokio::time::timeout(Duration::from_secs(5), request).await.expect("a request hung on the exporter").unwrap();
        assert!(response.status().is_success());
        assert_eq!(response.headers()["x-request-id"], format!("r-{i}").as_str());
    }
    // Shutting down with spans it cannot deliver does not hang either.
    tokio::time::timeout(Duration::from_secs(30), telemetry.shutdown()).await.expect("shutdown hung");
}
