//! A real OTLP trace receiver for tests: the collector's gRPC service
//! (`opentelemetry.proto.collector.trace.v1.TraceService`) or its HTTP/protobuf
//! endpoint (`POST /v1/traces`), keeping every span it is sent.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
};

#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// 2 = server, 3 = client (OTLP `SpanKind`).
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    /// The attributes exported as integers (also in `attributes`, as text).
    pub integers: HashMap<String, i64>,
    /// 2 = error (OTLP `StatusCode`).
    pub status_code: i32,
}

impl ExportedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.integers.get(key).copied()
    }
}

type Store = Arc<Mutex<Vec<ExportedSpan>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keep(store: &Store, request: ExportTraceServiceRequest) {
    let mut spans = store.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(value_text)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let attributes =
                    span.attributes.iter().filter_map(|a| Some((a.key.clone(), value_text(a.value.as_ref()?.value.as_ref()?)))).collect();
                let integers = span
                    .attributes
                    .iter()
                    .filter_map(|a| match a.value.as_ref()?.value.as_ref()? {
                        Value::IntValue(i) => Some((a.key.clone(), *i)),
                        _ => None,
                    })
                    .collect();
                spans.push(ExportedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes,
                    integers,
                    status_code: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(&self, request: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

pub struct Receiver {
    /// The OTLP endpoint to configure, e.g. `http://127.0.0.1:43170`.
    pub endpoint: String,
    store: Store,
}

impl Receiver {
    /// Runs on a thread of its own, so it outlives any one test's runtime.
    fn spawn(serve: impl FnOnce(tokio::net::TcpListener, Store) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static) -> Self {
        Self::spawn_on(0, serve)
    }

    fn spawn_on(
        port: u16,
        serve: impl FnOnce(tokio::net::TcpListener, Store) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static,
    ) -> Self {
        let store: Store = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_store = store.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, thread_store).await;
            });
        });
        let addr = rx.recv().unwrap();
        Self { endpoint: format!("http://{addr}"), store }
    }

    pub fn grpc() -> Self {
        Self::grpc_on(0)
    }

    /// A gRPC receiver on this port of 127.0.0.1 (0: any), e.g. a collector coming back.
    pub fn grpc_on(port: u16) -> Self {
        Self::spawn_on(port, |listener, store| {
            Box::pin(async move {
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(Grpc(store)))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await
                    .unwrap();
            })
        })
    }

    pub fn http() -> Self {
        Self::spawn(|listener, store| {
            Box::pin(async move {
                let app = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let store = store.clone();
                        async move {
                            let request = <ExportTraceServiceRequest as prost::Message>::decode(body).expect("an OTLP protobuf body");
                            keep(&store, request);
                            ([(axum::http::header::CONTENT_TYPE, "application/x-protobuf")], Vec::new())
                        }
                    }),
                );
                axum::serve(listener, app).await.unwrap();
            })
        })
    }

    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.store.lock().unwrap().clone()
    }

    /// Waits until a span matching `predicate` has arrived.
    pub async fn wait_for(&self, what: &str, predicate: impl Fn(&ExportedSpan) -> bool) -> ExportedSpan {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(span) = self.spans().into_iter().find(|s| predicate(s)) {
                return span;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no exported span: {what}; got {:#?}",
                self.spans().iter().map(|s| (&s.service, &s.name)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
