//! A collector that is down never fails or delays a request.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[allow(dead_code)]
mod otlp;

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

/// A collector that is down is logged when exports start failing (one warning) and when
/// they work again (one info line), not at every failed export: the SDK's own ERROR per
/// failed batch (`BatchSpanProcessor.ExportError`, about every second) paged whoever
/// alerts on ERROR. The real Auth binary, its log read from its stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_outage_is_logged_when_it_starts_and_when_it_ends_not_per_export() {
    let port = helpers::free_port();
    let log = std::env::temp_dir().join(format!("auth-otlp-down-{}.log", uuid::Uuid::new_v4().simple()));
    let auth = helpers::Auth::process_with(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{port}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
        // Each failed export at debug: the test counts them.
        ("RUST_LOG".into(), "info,platform::telemetry=debug".into()),
        ("AUTH_TEST_LOG_FILE".into(), log.display().to_string()),
    ])
    .await;
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log).unwrap_or_default().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    };
    let message = |line: &serde_json::Value| line["fields"]["message"].as_str().unwrap_or_default().to_owned();
    let count = |lines: &[serde_json::Value], text: &str| lines.iter().filter(|l| message(l) == text).count();
    // Requests make spans; every batch of them fails to export.
    let traffic = || async {
        for _ in 0..5 {
            let _ = auth.client.get(format!("{}/health/live", auth.url)).send().await;
        }
    };
    // A failed export: this service's debug line, or the SDK's own ERROR (before
    // 2026-11-26, one per failed batch).
    let failed_exports = |lines: &[serde_json::Value]| {
        count(lines, "trace export failed") + lines.iter().filter(|l| l["fields"]["name"] == "BatchSpanProcessor.ExportError").count()
    };
    helpers::eventually("several failed exports", Duration::from_secs(60), || async {
        traffic().await;
        failed_exports(&lines()) >= 4
    })
    .await;
    let seen = lines();
    let errors: Vec<_> = seen.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "no ERROR while the collector is down: {errors:#?}");
    let failing = "trace export failing: spans are dropped until the collector answers again (logged again when it does)";
    assert_eq!(count(&seen, failing), 1, "one warning for the outage: {seen:#?}");
    assert!(seen.iter().any(|l| message(l) == failing && l["level"] == "WARN"));

    // The collector comes back on that port: one info line says so.
    let receiver = otlp::Receiver::grpc_on(port);
    helpers::eventually("the end of the outage logged", Duration::from_secs(60), || async {
        traffic().await;
        count(&lines(), "trace export working again") == 1
    })
    .await;
    receiver.wait_for("a span of Auth", |s| s.service == "auth").await;
    let seen = lines();
    assert_eq!(count(&seen, failing), 1, "{seen:#?}");
    assert!(seen.iter().all(|l| l["level"] != "ERROR"), "{seen:#?}");
    drop(auth);
    let _ = std::fs::remove_file(&log);
}
