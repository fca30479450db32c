//! Logs and traces.
//!
//! Logs: JSON lines on stdout (a one-off command's on stderr), level by `RUST_LOG` (default `info`; a value that does not
//! parse is a configuration error); the fields of the
//! enclosing spans are flattened into each line, so every line of a request carries
//! its `request_id`, `trace_id` and `span_id`.
//!
//! Traces: OpenTelemetry over OTLP, configured by the standard variables
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` or `http/protobuf`, the default),
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`. Without an
//! endpoint nothing is exported and no span is built for export. Spans are exported
//! in batches from a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048 by default) by a
//! background thread: a collector that is down or slow never fails or delays a
//! request; when the queue is full spans are dropped and the SDK counts them.
//!
//! Export failures are logged when they start (a warning, at most once a minute) and
//! when exporting works again (info), by [`ReportedExporter`], not at every failed
//! batch: the SDK's own `BatchSpanProcessor.ExportError`, an ERROR every half second
//! or so while the collector is down, is kept out of the log.

use std::time::Duration;

use log_hygiene::{Outage, without_userinfo};
use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter},
};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, filter_fn},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

/// Where and how to export traces, from the standard OpenTelemetry variables.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The URL spans are sent to, used as given: over HTTP the full `…/v1/traces` URL.
    pub endpoint: String,
    pub protocol: ExportProtocol,
    pub service_name: String,
    pub sampling: Sampling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportProtocol {
    Grpc,
    HttpProtobuf,
}

/// Which traces are recorded: `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, read
/// here rather than by the SDK, which falls back to sampling everything on a bad value
/// with a warning sent before any log is set up, so nobody sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Sampling {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    #[default]
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl Sampling {
    const NAMES: &str = "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio";

    /// The samplers of the OpenTelemetry specification that the SDK implements; the
    /// remote ones (`jaeger_remote`, `xray`, …) are refused: they would need a sampling
    /// server we do not run, and the SDK would silently sample everything instead.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let ratio = || -> Result<f64, String> {
            let Some(arg) = var("OTEL_TRACES_SAMPLER_ARG") else {
                return Ok(1.0); // the specification's default
            };
            match arg.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(format!("OTEL_TRACES_SAMPLER_ARG: {arg:?} is not a sampling ratio; expected a number from 0 to 1, e.g. 0.1")),
            }
        };
        let Some(name) = var("OTEL_TRACES_SAMPLER") else {
            return Ok(Self::default());
        };
        Ok(match name.as_str() {
            "always_on" => Self::AlwaysOn,
            "always_off" => Self::AlwaysOff,
            "traceidratio" => Self::TraceIdRatio(ratio()?),
            "parentbased_always_on" => Self::ParentBasedAlwaysOn,
            "parentbased_always_off" => Self::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => Self::ParentBasedTraceIdRatio(ratio()?),
            "jaeger_remote" | "parentbased_jaeger_remote" | "xray" => {
                return Err(format!("OTEL_TRACES_SAMPLER: {name:?} is not supported; use {}", Self::NAMES));
            }
            _ => return Err(format!("OTEL_TRACES_SAMPLER: unknown sampler {name:?}; use {}", Self::NAMES)),
        })
    }

    fn sampler(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))),
        }
    }
}

impl TraceExport {
    /// `None` when no endpoint is configured: tracing is off.
    pub fn from_lookup(default_service: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        // Checked even when nothing is exported: a bad value is a mistake either way.
        let sampling = Sampling::from_lookup(&lookup)?;
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        // The per-signal variable wins, and an error names the one that was set.
        let (protocol_variable, protocol) = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(value) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(value)),
            None => ("OTEL_EXPORTER_OTLP_PROTOCOL", var("OTEL_EXPORTER_OTLP_PROTOCOL")),
        };
        let protocol = match protocol.as_deref() {
            None | Some("http/protobuf") => ExportProtocol::HttpProtobuf,
            Some("grpc") => ExportProtocol::Grpc,
            Some(other) => return Err(format!("{protocol_variable}: {other:?} is not supported; use grpc or http/protobuf")),
        };
        // The OTLP specification: the per-signal variable is the URL itself; the generic
        // one is a base to which HTTP appends the signal's path (gRPC has no path).
        let endpoint = if let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            url
        } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = base.trim_end_matches('/');
            match protocol {
                ExportProtocol::HttpProtobuf => format!("{base}/v1/traces"),
                ExportProtocol::Grpc => base.to_owned(),
            }
        } else {
            return Ok(None);
        };
        let service_name = var("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_owned());
        Ok(Some(Self { endpoint, protocol, service_name, sampling }))
    }
}

/// Keeps the exporter alive; flushes and stops it when dropped or shut down.
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is queued, waiting at most a few seconds (from a blocking thread,
    /// as the exporter runs on its own thread).
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Where the log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// A service: its lines are its output.
    Stdout,
    /// A one-off command (`migrate`, `create-superuser`, …): standard output is for its
    /// result, which its log lines would otherwise be mixed into.
    Stderr,
}

/// Installs logging to `output`, and trace export when configured by the environment.
pub fn init(default_service: &str, output: LogOutput) -> Result<Telemetry, String> {
    let export = TraceExport::from_lookup(default_service, |name| std::env::var(name).ok())?;
    init_to(export, output)
}

/// Installs logging on standard output, and trace export to `export` when given. Call
/// once per process.
pub fn init_with(export: Option<TraceExport>) -> Result<Telemetry, String> {
    init_to(export, LogOutput::Stdout)
}

fn init_to(export: Option<TraceExport>, output: LogOutput) -> Result<Telemetry, String> {
    // Every HTTP client of the process (the OTLP/HTTP exporter among them) uses it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = log_filter(std::env::var_os("RUST_LOG"))?;
    let writer = match output {
        LogOutput::Stdout => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        LogOutput::Stderr => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let logs = json_subscriber::fmt::layer()
        .with_current_span(false)
        .with_span_list(false)
        .flatten_span_list_on_top_level(true)
        .with_target(true)
        .with_writer(writer);
    let provider = export.map(provider).transpose()?;
    // Without the per-span busy/idle timing (a clock read at every poll of every span),
    // thread names and source locations: attributes no dashboard of ours reads, and a
    // third of the bytes exported per span (docs/observability.md).
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("cinema"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(AskEveryTime(tracing_subscriber::filter::LevelFilter::INFO))
    });
    global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(p) = &provider {
        global::set_tracer_provider(p.clone());
    }
    // Per-layer filters: RUST_LOG sets what is logged, never what is traced. The SDK's
    // error at every failed export is left out: `ReportedExporter` logs the outage.
    // The Redis client's own lines are let through at most once a minute.
    let filter = filter.and(filter_fn(|meta| !is_sdk_export_error(meta))).and(RedisClientLines::default());
    tracing_subscriber::registry().with(otel).with(logs.with_filter(AskEveryTime(filter))).try_init().map_err(|e| e.to_string())?;
    Ok(Telemetry { provider })
}

/// The event the SDK's batch processor emits, at ERROR, at every export that fails.
fn is_sdk_export_error(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "opentelemetry_sdk" && meta.name() == "BatchSpanProcessor.ExportError"
}

/// A span exporter that logs its outages: a warning when exports start failing (at
/// most once a minute), an info line when one works again (only when its start was
/// logged): the rules of [`Outage`]. Each failure is logged at debug. The SDK's error
/// per failed export is filtered out of the log (`is_sdk_export_error`).
#[derive(Debug)]
struct ReportedExporter<E> {
    inner: E,
    /// The collector as configured, to strip from error texts.
    configured: String,
    /// The collector without any password, for the log lines.
    endpoint: String,
    health: Outage,
}

impl<E: SpanExporter> SpanExporter for ReportedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                if let Some(failed_exports) = self.health.succeeded() {
                    tracing::info!(endpoint = %self.endpoint, failed_exports, "trace export working again");
                }
            }
            Err(e) => {
                let error = e.to_string().replace(&self.configured, &self.endpoint);
                tracing::debug!(endpoint = %self.endpoint, error, spans, "trace export failed");
                if self.health.failed() {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error,
                        "trace export failing: spans are dropped until the collector answers again (logged again when it does)"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E> ReportedExporter<E> {
    fn new(inner: E, endpoint: &str) -> Self {
        Self { inner, configured: endpoint.to_owned(), endpoint: without_userinfo(endpoint), health: Outage::default() }
    }
}

/// The Redis cluster client's own log lines (its `log` records under `redis::cluster…`,
/// through the bridge to tracing), at most one a minute. It logs every attempt to
/// reconnect to a node it cannot reach, with warnings and errors: about six lines a
/// second while a Redis Cluster of the rate limiter is unreachable, which the limiter
/// itself reports (`ratelimit::limiter`, falling back to the in-process store and
/// back). One line a minute keeps the client's details (which node, what error). The
/// single-node client's lines (the cache's, the sessions') are not touched.
#[derive(Debug, Default)]
struct RedisClientLines(log_hygiene::AtMostEvery);

impl<S> tracing_subscriber::layer::Filter<S> for RedisClientLines {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        !is_redis_client_line(event) || self.0.happened().is_some()
    }
}

/// Whether an event is a `log` record of the Redis cluster client: the bridge's events
/// have the target `log`, and the record's own in the field `log.target`.
fn is_redis_client_line(event: &tracing::Event<'_>) -> bool {
    struct LogTarget(bool);
    impl tracing::field::Visit for LogTarget {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "log.target" {
                self.0 = value.starts_with("redis::cluster");
            }
        }
        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    }
    if event.metadata().target() != "log" {
        return false;
    }
    let mut target = LogTarget(false);
    event.record(&mut target);
    target.0
}

/// A per-layer filter whose callsites are never cached as always enabled, so it is
/// asked about every span and event.
///
/// Works around tokio-rs/tracing#2519 (tracing-subscriber 0.3.23): a per-layer filter
/// passes its verdict to the layer through a thread-local, and for a callsite cached as
/// always enabled the verdict is never asked, so the layer reads what the last question
/// on that thread left there. sqlx asks `log::log_enabled!` after every query (through
/// the `log` bridge, with metadata of its own), so the next request span on that
/// thread was dropped from the log layer: its lines lost `request_id`, `trace_id` and
/// every other field of the request (seen on a worker's first request after a
/// query). Asking every time costs one filter lookup per span and event.
struct AskEveryTime<F>(F);

impl<S, F: tracing_subscriber::layer::Filter<S>> tracing_subscriber::layer::Filter<S> for AskEveryTime<F> {
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() { tracing::subscriber::Interest::sometimes() } else { interest }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, cx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx);
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, cx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_record(id, values, cx);
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_enter(id, cx);
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_exit(id, cx);
    }

    fn on_close(&self, id: tracing::span::Id, cx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_close(id, cx);
    }
}

/// What is logged: `RUST_LOG`, or `info` when it is unset or blank. A value that does
/// not parse is a configuration error: falling back to `info` hid the typo, and with it
/// the debug logs the operator asked for.
pub fn log_filter(value: Option<std::ffi::OsString>) -> Result<EnvFilter, String> {
    let Some(value) = value else {
        return Ok(EnvFilter::new("info"));
    };
    let value = value.into_string().map_err(|_| "RUST_LOG: not valid UTF-8".to_owned())?;
    if value.trim().is_empty() {
        return Ok(EnvFilter::new("info"));
    }
    EnvFilter::builder().parse(value.trim()).map_err(|e| format!("RUST_LOG: {e}"))
}

fn provider(export: TraceExport) -> Result<SdkTracerProvider, String> {
    let exporter = match export.protocol {
        ExportProtocol::Grpc => {
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(&export.endpoint).with_timeout(Duration::from_secs(3)).build()
        }
        ExportProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&export.endpoint)
            .with_timeout(Duration::from_secs(3))
            .build(),
    }
    // The exporter's error quotes the URL: never with a password in it.
    .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {}", e.to_string().replace(&export.endpoint, &without_userinfo(&export.endpoint))))?;
    let batch = BatchSpanProcessor::builder(ReportedExporter::new(exporter, &export.endpoint))
        .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(500)).build())
        .build();
    let resource = Resource::builder().with_service_name(export.service_name).with_attribute(KeyValue::new("service.namespace", "cinema")).build();
    Ok(SdkTracerProvider::builder().with_sampler(export.sampling.sampler()).with_span_processor(batch).with_resource(resource).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable_set_and_never_echo_a_password() {
        let error = TraceExport::from_lookup("svc", |name| {
            [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")]
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap_err();
        assert!(error.starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: \"http/json\""), "{error}");
        let export = TraceExport {
            endpoint: "http://user:tok3n@ex ample:4318/v1/traces".into(),
            protocol: ExportProtocol::HttpProtobuf,
            service_name: "svc".into(),
            sampling: Sampling::default(),
        };
        let Err(error) = provider(export) else { panic!("an invalid endpoint was accepted") };
        assert!(error.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT: ") && !error.contains("tok3n"), "{error}");
    }

    fn from(vars: &[(&str, &str)]) -> Result<Option<TraceExport>, String> {
        TraceExport::from_lookup("svc", |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn export_follows_the_standard_variables() {
        assert_eq!(from(&[]).unwrap(), None, "no endpoint, no export");
        let grpc = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "auth-eu"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            grpc,
            TraceExport {
                endpoint: "http://jaeger:4317".into(),
                protocol: ExportProtocol::Grpc,
                service_name: "auth-eu".into(),
                sampling: Sampling::ParentBasedAlwaysOn
            }
        );
        let http = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")]).unwrap().unwrap();
        assert_eq!((http.protocol, http.service_name.as_str()), (ExportProtocol::HttpProtobuf, "svc"));
        assert!(
            from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "x"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")])
                .unwrap_err()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL")
        );
    }

    #[test]
    fn only_the_generic_endpoint_gets_the_signal_path_appended() {
        let endpoint = |vars: &[(&str, &str)]| from(vars).unwrap().unwrap().endpoint;
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]), "http://collector:4318/v1/traces");
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp")]), "http://collector:4318/otlp/v1/traces");
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")]), "http://collector:4318/v1/traces");
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom")]), "http://collector:4318/custom");
        assert_eq!(
            endpoint(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/v1/traces"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318")]),
            "http://traces:4318/v1/traces",
            "the per-signal variable wins"
        );
        assert_eq!(endpoint(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]), "http://jaeger:4317");
    }

    /// An unreachable Redis Cluster: its client logs each reconnection attempt (about six
    /// lines a second, through the `log` bridge, whose events look like these). One
    /// line a minute is kept; every other line, the single-node client's too, is not
    /// touched.
    #[test]
    fn the_redis_clients_own_lines_are_logged_at_most_once_a_minute() {
        use tracing_subscriber::layer::SubscriberExt;
        let logs = crate::testing::CapturedLogs::default();
        let writer = logs.clone();
        let layer = tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false);
        let filter = log_filter(Some("info".into())).unwrap().and(RedisClientLines::default());
        let subscriber = tracing_subscriber::registry().with(layer.with_filter(AskEveryTime(filter)));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..60 {
                tracing::event!(target: "log", tracing::Level::WARN, log.target = "redis::cluster_handling::async_connection", "Failed to connect to node: 127.0.0.1:1");
                tracing::event!(target: "log", tracing::Level::ERROR, log.target = "redis::cluster_handling::async_connection", "async cluster client recovery: slot refresh failed");
                tracing::event!(target: "log", tracing::Level::WARN, log.target = "sqlx::query", "slow statement");
                tracing::event!(target: "log", tracing::Level::ERROR, log.target = "redis::aio::connection_manager", "single node unreachable");
                tracing::warn!(target: "ratelimit::limiter", "rate limits: Redis unavailable or slow");
            }
        });
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
        assert_eq!(count("async cluster client") + count("Failed to connect to node"), 1, "{text}");
        assert_eq!(count("slow statement"), 60);
        assert_eq!(count("single node unreachable"), 60, "the single-node client's lines are all kept");
        assert_eq!(count("rate limits: Redis unavailable"), 60);
    }

    #[test]
    fn a_log_filter_that_does_not_parse_is_refused() {
        let filter = |v: Option<&str>| log_filter(v.map(Into::into)).map(|f| f.to_string());
        assert_eq!(filter(None).unwrap(), "info");
        assert_eq!(filter(Some("  ")).unwrap(), "info");
        assert_eq!(filter(Some("warn,auth=debug")).unwrap(), "auth=debug,warn");
        for bad in ["auth=loud", "info,[", "auth=debug,x=y=z"] {
            let error = filter(Some(bad)).unwrap_err();
            assert!(error.starts_with("RUST_LOG: ") && !error.contains('\n'), "{bad:?}: {error}");
        }
    }

    #[test]
    fn samplers_follow_the_specification_and_bad_values_are_refused() {
        let sampling = |vars: &[(&str, &str)]| Sampling::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()));
        assert_eq!(sampling(&[]).unwrap(), Sampling::ParentBasedAlwaysOn);
        assert_eq!(sampling(&[("OTEL_TRACES_SAMPLER", "always_off"), ("OTEL_TRACES_SAMPLER_ARG", "junk")]).unwrap(), Sampling::AlwaysOff);
        assert_eq!(sampling(&[("OTEL_TRACES_SAMPLER", "traceidratio")]).unwrap(), Sampling::TraceIdRatio(1.0));
        assert_eq!(
            sampling(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", " 0.1 ")]).unwrap(),
            Sampling::ParentBasedTraceIdRatio(0.1)
        );
        for arg in ["0,0", "10%", "1.5", "-0.1", "NaN", "inf"] {
            let error = sampling(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", arg)]).unwrap_err();
            assert!(error.starts_with("OTEL_TRACES_SAMPLER_ARG: "), "{arg:?}: {error}");
        }
        for name in ["always", "AlwaysOn", "jaeger_remote", "parentbased_jaeger_remote", "xray"] {
            let error = sampling(&[("OTEL_TRACES_SAMPLER", name)]).unwrap_err();
            assert!(error.starts_with("OTEL_TRACES_SAMPLER: "), "{name:?}: {error}");
        }
        let refused = from(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "10%")]);
        assert!(refused.unwrap_err().starts_with("OTEL_TRACES_SAMPLER_ARG: "), "refused without an endpoint too");
    }
}
