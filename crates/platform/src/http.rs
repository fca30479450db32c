//! The middleware every HTTP service of the cinema runs, outermost first:
//!
//! 1. `X-Request-Id`: taken from the request when well formed (at most 128 of
//!    letters, digits, `-`, `_`, `.`), replaced when not (never logged raw), generated
//!    when absent, and returned on every response, errors and 429s included. When the
//!    deployment requires one, a request without it is refused with 400 (except on the
//!    probes and `/metrics`, which are called by the orchestrator and Prometheus, not
//!    through nginx), inside 2 and 3 so the refusal is traced and counted. A service's
//!    gate (`standard_layers_with_gate`: Auth's CORS) answers between 3 and that
//!    refusal.
//! 2. The server span, one per request, following the OpenTelemetry HTTP conventions:
//!    named `METHOD /route/{template}`, never the raw path; parented on an incoming W3C
//!    `traceparent`; the request id as `http.request_id`; 5xx marks it an error. The
//!    response carries its `traceparent`. What the client chose (path, Host,
//!    User-Agent) goes into it bounded, cut with a marker; a method other than the
//!    nine standard ones is `_OTHER` and names the span `HTTP /route/{template}`.
//! 3. Metrics: requests counted by route template and status, and timed
//!    (`crate::metrics`), whatever the answer: 429s, timeouts and panics included.
//! 4. Panics become a fixed 500 problem; a request over the timeout a 503 problem, or
//!    a 408 one (`request_timeout`, and the connection closed) when it was waiting for
//!    the client to send its body: a slow client is not a server error.
//!
//! And one a service applies itself, inside its rate limits so that the refusal counts
//! against them like any other answer: [`refuse_undecodable_query`], a query string
//! that is not UTF-8 once percent-decoded is a 400 problem (`malformed_query`): the
//! query extractors would replace the bytes with U+FFFD and go on with a text the
//! client never sent.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::Response,
};
use opentelemetry::{global, trace::TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use problem::problem_response;
use tower_http::{catch_panic::CatchPanicLayer, sensitive_headers::SetSensitiveRequestHeadersLayer};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    /// Refuse requests without `X-Request-Id` (behind nginx, which always sets one).
    pub require_request_id: bool,
}

/// Wraps a finished router (state applied) in the standard middleware. Installs the
/// process's metrics recorder on first use.
pub fn standard_layers(router: Router, settings: HttpSettings) -> Router {
    standard_layers_with_gate(router, settings, |router| router)
}

/// [`standard_layers`] with `gate` applied between the metrics and the request-id
/// requirement: what it answers itself has a request id, a span and a count, and is
/// never refused for want of a request id. Auth's CORS answers browsers' preflights
/// there (they carry no `X-Request-Id`); the rate limits, inside the router, are past it.
pub fn standard_layers_with_gate(router: Router, settings: HttpSettings, gate: impl FnOnce(Router) -> Router) -> Router {
    let timeout = settings.request_timeout;
    crate::metrics::install();
    let router = router
        .layer(middleware::from_fn(move |req, next| with_timeout(req, next, timeout)))
        .layer(CatchPanicLayer::custom(|_| {
            problem_response(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error", None, Vec::new())
        }))
        .layer(middleware::from_fn(refuse_without_request_id));
    gate(router)
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(middleware::from_fn(traced))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(middleware::from_fn(move |req, next| ensure_request_id(req, next, settings.require_request_id)))
}

/// Whether a client-sent request id may be used as it is.
pub fn is_valid_request_id(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 128 && value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The request id of a request that went through [`standard_layers`].
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID).and_then(|v| v.to_str().ok())
}

/// Marks a request that came without the `X-Request-Id` the deployment requires. The
/// refusal is made inside the span and the metrics ([`refuse_without_request_id`]),
/// so that it is counted and traced like any other answer; the id is assigned out
/// here all the same, so the refusal carries one too.
#[derive(Debug, Clone, Copy)]
struct RequestIdMissing;

async fn ensure_request_id(mut req: Request, next: Next, required: bool) -> Response {
    let given = req.headers().get(REQUEST_ID).map(|v| v.as_bytes());
    let id = match given {
        Some(value) if is_valid_request_id(value) => req.headers()[REQUEST_ID].clone(),
        Some(_) => {
            tracing::debug!("malformed X-Request-Id replaced");
            generated()
        }
        None if required && !is_operational(req.uri().path()) => {
            req.extensions_mut().insert(RequestIdMissing);
            generated()
        }
        None => generated(),
    };
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let mut response = next.run(req).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

async fn refuse_without_request_id(req: Request, next: Next) -> Response {
    if req.extensions().get::<RequestIdMissing>().is_none() {
        return next.run(req).await;
    }
    problem_response(
        StatusCode::BAD_REQUEST,
        "request_id_required",
        "Malformed request",
        Some("Send an X-Request-Id header (letters, digits, '-', '_', '.'; at most 128).".into()),
        Vec::new(),
    )
}

/// Probes and metrics: called directly by the orchestrator and Prometheus, which send
/// no request id, never through nginx; and never rate-limited, since they must answer
/// whatever the load. One list for both services and both rules.
pub fn is_operational(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

fn generated() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value")
}

/// The most of a client-chosen text the request span keeps: the span is repeated in
/// every log line and exported span of the request, so a 60 KB `User-Agent` made each
/// of them 60 KB. The User-Agent as sessions keep it (512 characters); a host name is
/// at most 253; our paths are far shorter than 1024.
const SPAN_USER_AGENT_CHARS: usize = 512;
const SPAN_HOST_CHARS: usize = 256;
const SPAN_PATH_CHARS: usize = 1024;
/// Ends a text that was cut, so a reader knows there was more.
const CUT_MARKER: &str = "…[cut]";

/// `text`, or its first `max_chars` characters followed by [`CUT_MARKER`].
fn bounded(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}{CUT_MARKER}", &text[..end])),
    }
}

/// The method's name when it is one of the nine HTTP defines (RFC 9110 and PATCH),
/// else `None`: HTTP lets a client send any token as a method, so a method is only
/// ever named, in a metric's label or a span, from this list.
pub(crate) fn standard_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => return None,
    })
}

/// The most of a method of the client's making the span keeps (as
/// `http.request.method_original`): real extension methods (WebDAV's `PROPFIND`,
/// say) are short.
const SPAN_METHOD_CHARS: usize = 32;

/// A header's value when it is visible ASCII, else empty.
fn header_text(headers: &HeaderMap, name: HeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

async fn traced(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    // The OpenTelemetry HTTP conventions for a method of the client's making: `_OTHER`
    // and a span named `HTTP /route`, so it adds no operation to Jaeger and no bytes to
    // every log line; the original goes in bounded.
    let (method, name_prefix) = match standard_method(req.method()) {
        Some(method) => (method, method),
        None => ("_OTHER", "HTTP"),
    };
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{name_prefix} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.request.method_original = Empty,
        http.route = %route,
        url.path = &*bounded(req.uri().path(), SPAN_PATH_CHARS),
        url.scheme = "http",
        server.address = &*bounded(header_text(req.headers(), header::HOST), SPAN_HOST_CHARS),
        user_agent.original = &*bounded(header_text(req.headers(), header::USER_AGENT), SPAN_USER_AGENT_CHARS),
        http.request_id = request_id(req.headers()).unwrap_or_default(),
        http.response.status_code = Empty,
        request_id = request_id(req.headers()).unwrap_or_default(),
        trace_id = Empty,
        span_id = Empty,
    );
    if method == "_OTHER" {
        span.record("http.request.method_original", &*bounded(req.method().as_str(), SPAN_METHOD_CHARS));
    }
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(req.headers())));
    let _ = span.set_parent(parent);
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
        span.record("span_id", span_context.span_id().to_string());
    }
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    // As i64: tracing-opentelemetry has no u64 visitor and would export the number as
    // a string, which the conventions (and a Jaeger search `>= 500`) do not expect.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if span_context.is_valid() {
        global::get_text_map_propagator(|p| p.inject_context(&context, &mut HeaderInjector(response.headers_mut())));
    }
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "answered with a server error"));
    } else {
        span.in_scope(|| tracing::debug!(status = status.as_u16(), "answered"));
    }
    response
}

/// Refuses with 400 `malformed_query` a request whose query string is not UTF-8 once
/// percent-decoded, on any route. Not one of [`standard_layers`]: a service applies it
/// (`axum::middleware::from_fn(refuse_undecodable_query)`) inside its rate-limit
/// layer, so that such requests count against the limits like any other (they were
/// refused before the limiter, uncounted, a way around every limit).
pub async fn refuse_undecodable_query(req: Request, next: Next) -> Response {
    let decodable = req.uri().query().is_none_or(|query| percent_encoding::percent_decode_str(query).decode_utf8().is_ok());
    if decodable {
        return next.run(req).await;
    }
    problem_response(
        StatusCode::BAD_REQUEST,
        "malformed_query",
        "Malformed query string",
        Some("The query string is not UTF-8 once percent-decoded.".into()),
        Vec::new(),
    )
}

async fn with_timeout(req: Request, next: Next, limit: Duration) -> Response {
    use http_body::Body as _;
    // Requests without a body (most of them: GETs) are passed on as they are.
    let (req, awaiting_client) = if req.body().is_end_stream() {
        (req, None)
    } else {
        let (parts, body) = req.into_parts();
        let (body, awaiting_client) = ClientBody::wrap(body);
        (Request::from_parts(parts, axum::body::Body::new(body)), Some(awaiting_client))
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        // The handler was waiting for bytes the client had not sent.
        Err(_) if awaiting_client.is_some_and(|waiting| waiting.load(Ordering::Acquire)) => {
            let mut response = problem_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timed out",
                Some("The request body did not arrive in time.".into()),
                Vec::new(),
            );
            // RFC 9110 §15.5.9: the server closes the connection after a 408.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Err(_) => problem_response(StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request timed out", None, Vec::new()),
    }
}

/// A request body that tells whether its reader is waiting for the client: true while
/// the last read found no bytes yet. Whether the body was all read would not do: a
/// handler held up before it reads its body (a slow database in an extractor) has not
/// read it either, and that is the server's slowness.
struct ClientBody {
    inner: axum::body::Body,
    awaiting_client: Arc<AtomicBool>,
}

impl ClientBody {
    fn wrap(inner: axum::body::Body) -> (Self, Arc<AtomicBool>) {
        let awaiting_client = Arc::new(AtomicBool::new(false));
        (Self { inner, awaiting_client: awaiting_client.clone() }, awaiting_client)
    }
}

impl http_body::Body for ClientBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        self.awaiting_client.store(polled.is_pending(), Ordering::Release);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The `field` of a query-string error that concerns no one parameter: a name no
/// parameter has, so a client cannot mistake it for one (a search's `query`).
pub const QUERY_STRING_FIELD: &str = "(query string)";

/// The field error for a query string the query extractor refused (axum's
/// `QueryRejection` body text). The parameter is named in serde's path prefix
/// (`page[size]: invalid digit found in string`) or, for errors about the whole set
/// of parameters, inside the message (``duplicate field `page[size]` ``, `unknown
/// field`, `missing field`); otherwise [`QUERY_STRING_FIELD`].
pub fn query_field_error(rejection_text: &str) -> problem::FieldError {
    let detail = rejection_text.strip_prefix("Failed to deserialize query string: ").unwrap_or(rejection_text);
    let (field, message) = match detail.split_once(": ") {
        Some((field, message)) if !field.is_empty() && !field.contains(' ') => (field, message),
        _ => (named_in_message(detail).unwrap_or(QUERY_STRING_FIELD), detail),
    };
    // A name serde quotes may be the client's own (an unknown parameter): bounded too.
    let field = if field.chars().count() > 64 { QUERY_STRING_FIELD } else { field };
    // Bound what we echo: the input can be large.
    problem::FieldError::new(field, message.chars().take(200).collect::<String>())
}

/// The parameter serde names in ``duplicate field `X` ``, ``unknown field `X`, expected ...``
/// or ``missing field `X` ``.
fn named_in_message(message: &str) -> Option<&str> {
    ["duplicate field `", "unknown field `", "missing field `"].iter().find_map(|prefix| {
        let rest = message.strip_prefix(prefix)?;
        rest.split_once('`').map(|(name, _)| name).filter(|name| !name.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::post};
    use futures::StreamExt;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn query_errors_name_the_parameter_or_no_parameter() {
        let cases = [
            ("Failed to deserialize query string: page[size]: invalid digit found in string", "page[size]"),
            ("Failed to deserialize query string: duplicate field `page[size]`", "page[size]"),
            ("Failed to deserialize query string: missing field `email`", "email"),
            ("Failed to deserialize query string: unknown field `x`, expected `query`", "x"),
            ("Failed to deserialize query string: something else went wrong", QUERY_STRING_FIELD),
        ];
        let long = format!("Failed to deserialize query string: unknown field `{}`, expected `query`", "x".repeat(65));
        assert_eq!(query_field_error(&long).field, QUERY_STRING_FIELD, "a client's name is echoed only when short");
        for (text, field) in cases {
            assert_eq!(query_field_error(text).field, field, "{text}");
        }
    }

    async fn answer(router: &Router, body: Body) -> (StatusCode, String) {
        let response = router.clone().oneshot(Request::post("/").body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The timeout is the client's (408) only while the handler waits for its body:
    /// a handler held up before it reads the body, with the body all sent, is the
    /// server's slowness (503).
    #[tokio::test]
    async fn a_timeout_is_a_408_only_while_the_body_is_awaited() {
        let settings = HttpSettings { request_timeout: Duration::from_millis(300), require_request_id: false };
        let reads_its_body = standard_layers(Router::new().route("/", post(|body: String| async move { body })), settings);
        let slow_before_reading = standard_layers(
            Router::new().route(
                "/",
                post(|req: Request| async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    axum::body::to_bytes(req.into_body(), 1024).await.map(|b| b.len().to_string()).unwrap_or_default()
                }),
            ),
            settings,
        );
        // The body's first bytes, then nothing more.
        let stalled = || Body::from_stream(futures::stream::once(async { Ok::<_, std::io::Error>("{\"half\"") }).chain(futures::stream::pending()));
        let (status, body) = answer(&reads_its_body, stalled()).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
        assert!(body.contains("request_timeout"), "{body}");
        let (status, body) = answer(&slow_before_reading, Body::from("all of it")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"timeout\""), "{body}");
        assert_eq!(answer(&reads_its_body, Body::from("all of it")).await, (StatusCode::OK, "all of it".to_owned()));
    }

    #[test]
    fn bounded_texts_are_cut_on_a_character_boundary_with_a_marker() {
        assert!(matches!(bounded("short", 5), std::borrow::Cow::Borrowed("short")));
        assert_eq!(bounded("abcdef", 3), format!("abc{CUT_MARKER}"));
        // Two bytes a character: the cut falls between characters, never inside one.
        assert_eq!(bounded(&"é".repeat(600), 512), format!("{}{CUT_MARKER}", "é".repeat(512)));
    }

    /// The request span is repeated in every log line and exported span of the request:
    /// what the client chooses (path, Host, User-Agent) goes into it bounded, and cut
    /// visibly.
    #[tokio::test]
    async fn the_request_span_keeps_a_bounded_part_of_what_the_client_chose() {
        let (logs, _guard) = crate::testing::CapturedLogs::capture(tracing::Level::DEBUG);
        let settings = HttpSettings { request_timeout: Duration::from_secs(5), require_request_id: false };
        let router = standard_layers(Router::new().fallback(|| async { "ok" }), settings);
        // Another test's thread may have registered the span's callsite while no
        // subscriber listened, and cached "never" past this one's start: a first request
        // completes the registration, then the interest is computed again with ours.
        router.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        tracing::callsite::rebuild_interest_cache();
        let request = Request::get(format!("/{}", "p".repeat(60_000)))
            .header(header::USER_AGENT, "u".repeat(60_000))
            .header(header::HOST, format!("{}.example", "h".repeat(60_000)))
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = logs.text();
        let line = text.lines().rfind(|line| line.contains("answered")).unwrap_or_else(|| panic!("no line of the request: {text:.2000}"));
        assert!(line.len() < 4096, "a log line of {} bytes: {:.300}", line.len(), line);
        assert!(line.contains(&format!("user_agent.original=\"{}{CUT_MARKER}\"", "u".repeat(SPAN_USER_AGENT_CHARS))), "{line}");
        assert!(line.contains(&format!("server.address=\"{}{CUT_MARKER}\"", "h".repeat(SPAN_HOST_CHARS))), "{line}");
        assert!(line.contains(&format!("url.path=\"/{}{CUT_MARKER}\"", "p".repeat(SPAN_PATH_CHARS - 1))), "{line}");
    }

    /// A span exporter that keeps what it is given, to look at the spans as a
    /// collector gets them (names, attributes and their types).
    #[derive(Debug, Clone, Default)]
    struct KeptSpans(Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for KeptSpans {
        async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    impl KeptSpans {
        fn server_spans(&self) -> Vec<opentelemetry_sdk::trace::SpanData> {
            self.0.lock().unwrap().iter().filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Server).cloned().collect()
        }
    }

    fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<opentelemetry::Value> {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
    }

    /// This thread's spans exported (each as it ends) and its log lines, DEBUG and up,
    /// captured, while the guard lives.
    fn traced_and_logged() -> (KeptSpans, crate::testing::CapturedLogs, tracing::subscriber::DefaultGuard) {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let spans = KeptSpans::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        let logs = crate::testing::CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        (spans, logs, tracing::subscriber::set_default(subscriber))
    }

    /// A router in the standard layers answering `GET /films`, after one request has
    /// gone through it: another test's thread may have registered the span's callsite
    /// while no subscriber listened, and cached "never" past this one's start; the first
    /// request completes the registration, then the interest is computed again with ours.
    async fn films_router() -> Router {
        let settings = HttpSettings { request_timeout: Duration::from_secs(5), require_request_id: false };
        let router = standard_layers(Router::new().route("/films", axum::routing::get(|| async { "ok" })), settings);
        router.clone().oneshot(Request::get("/films").body(Body::empty()).unwrap()).await.unwrap();
        tracing::callsite::rebuild_interest_cache();
        router
    }

    /// HTTP lets a client send any token as a method: one of its making must add no
    /// operation to Jaeger nor its length to the spans and log lines (a 20,000-character
    /// method made 20 KB span names and 40 KB log lines). The OpenTelemetry HTTP
    /// conventions: `_OTHER`, the span named `HTTP /route`, the original bounded.
    #[tokio::test]
    async fn a_method_of_the_clients_making_is_other_in_spans_and_logs() {
        let (spans, logs, _guard) = traced_and_logged();
        let router = films_router().await;
        let long = "M".repeat(20_000);
        for method in ["GET", "FOO1", &long] {
            let request = Request::builder().method(method).uri("/films").body(Body::empty()).unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let spans = spans.server_spans();
        let named: Vec<_> = spans.iter().rev().take(3).rev().map(|s| s.name.to_string()).collect();
        assert_eq!(named, ["GET /films", "HTTP /films", "HTTP /films"]);
        let (standard, foo, long_one) = (&spans[spans.len() - 3], &spans[spans.len() - 2], &spans[spans.len() - 1]);
        assert_eq!(attribute(standard, "http.request.method"), Some("GET".into()));
        assert_eq!(attribute(standard, "http.request.method_original"), None, "only a method of the client's making has one");
        assert_eq!(attribute(foo, "http.request.method"), Some("_OTHER".into()));
        assert_eq!(attribute(foo, "http.request.method_original"), Some("FOO1".into()));
        assert_eq!(attribute(long_one, "http.request.method"), Some("_OTHER".into()));
        let cut = format!("{}{CUT_MARKER}", "M".repeat(SPAN_METHOD_CHARS));
        assert_eq!(attribute(long_one, "http.request.method_original"), Some(cut.into()));
        let text = logs.text();
        assert!(text.lines().filter(|line| line.contains("answered")).count() >= 3, "{text:.2000}");
        for line in text.lines() {
            assert!(line.len() < 4096, "a log line of {} bytes: {:.300}", line.len(), line);
        }
    }

    /// `http.response.status_code` is an int in the OpenTelemetry conventions.
    #[tokio::test]
    async fn the_status_code_is_exported_as_an_integer() {
        let (spans, _logs, _guard) = traced_and_logged();
        let router = films_router().await;
        router.oneshot(Request::get("/films").header(REQUEST_ID, "status-1").body(Body::empty()).unwrap()).await.unwrap();
        let spans = spans.server_spans();
        let span = spans.iter().find(|s| attribute(s, "http.request_id") == Some("status-1".into())).expect("the request's span");
        assert_eq!(attribute(span, "http.response.status_code"), Some(opentelemetry::Value::I64(200)));
    }

    /// A request refused for want of the `X-Request-Id` the deployment requires is
    /// answered inside the span and the metrics like any other: it was neither
    /// counted, traced nor logged, so a client missing the header was invisible.
    #[tokio::test]
    async fn a_request_refused_for_lacking_a_request_id_is_traced_and_counted() {
        let (spans, logs, _guard) = traced_and_logged();
        let settings = HttpSettings { request_timeout: Duration::from_secs(5), require_request_id: true };
        let router = standard_layers(Router::new().route("/required", axum::routing::get(|| async { "ok" })), settings);
        router.clone().oneshot(Request::get("/required").header(REQUEST_ID, "warm-up").body(Body::empty()).unwrap()).await.unwrap();
        tracing::callsite::rebuild_interest_cache();
        let response = router.oneshot(Request::get("/required").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let id = request_id(response.headers()).expect("the refusal carries a request id").to_owned();
        let spans = spans.server_spans();
        let span = spans.iter().find(|s| attribute(s, "http.request_id") == Some(id.clone().into())).expect("the refusal's span");
        assert_eq!(span.name, "GET /required");
        assert_eq!(attribute(span, "http.response.status_code"), Some(opentelemetry::Value::I64(400)));
        let text = logs.text();
        assert!(text.lines().any(|line| line.contains("answered") && line.contains(&id)), "no log line of the refusal: {text:.2000}");
        let metrics = crate::metrics::install().expect("the recorder of this test process").render();
        assert!(metrics.contains(r#"http_server_requests_total{method="GET",route="/required",status="400"} 1"#), "{metrics}");
    }

    #[test]
    fn request_ids_are_validated() {
        for ok in ["abc-123", "A.b_c-9", &"x".repeat(128)] {
            assert!(is_valid_request_id(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "has space", "new\nline", "semi;colon", "ümlaut", &"x".repeat(129), "<script>"] {
            assert!(!is_valid_request_id(bad.as_bytes()), "{bad:?}");
        }
    }
}
