//! Traces exported over OTLP HTTP/protobuf to a real receiver started by the test.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[allow(dead_code)]
mod otlp;

use platform::telemetry::{ExportProtocol, TraceExport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_http_protobuf() {
    let receiver = otlp::Receiver::http();
    let telemetry = platform::telemetry::init_with(Some(TraceExport {
        endpoint: format!("{}/v1/traces", receiver.endpoint),
        protocol: ExportProtocol::HttpProtobuf,
        service_name: "movies".into(),
        sampling: Default::default(),
    }))
    .unwrap();
    let auth = helpers::Auth::in_process().await;
    let movies = helpers::Movies::start(&auth.url).await;
    let response = movies.client.get(movies.url("/api/v1/genres")).header("x-request-id", "over-http-1").send().await.unwrap();
    assert!(response.status().is_success());
    let span = receiver.wait_for("the server span", |s| s.attr("http.request_id") == Some("over-http-1")).await;
    assert_eq!((span.service.as_str(), span.name.as_str()), ("movies", "GET /api/v1/genres"));
    telemetry.shutdown().await;
}
