//! Traces (SPEC §5): with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! set, the App's spans go to an OpenTelemetry collector over OTLP/HTTP (protobuf); unset, no
//! exporter is built and nothing leaves.
//!
//! **One trace per delivery.** The intake stores a delivery and a worker, perhaps on another
//! replica, processes it later; the relay sends its actions later still. Nothing is stored to join
//! them: a delivery's trace id and its root span id are derived from its id (SHA-256 of the
//! delivery id: bytes 0..16 the trace id, 16..24 the root's span id), so every replica arrives at
//! the same ones. The intake's span is the root ([`mark_root`], once the delivery is stored); the
//! worker's and the relay's spans are its children ([`continue_delivery`]); a delivery the App
//! makes itself (a recheck, a notification's follow-up) has no intake, so its first worker span
//! is the root. GitHub calls are children of whichever span makes them (the tracing span tree).
//! The trace id of a delivery is `printf %s "$GUID" | sha256sum | cut -c1-32`.
//!
//! Only spans and events of the App itself are exported (target `shipgate`, info and above,
//! whatever `RUST_LOG` says); spans meant for traces only (the GitHub calls) use [`TRACE_ONLY`] as
//! their target and stay out of the logs.

use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use sha2::{Digest, Sha256};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of spans that go to traces only, never to the logs (`RUST_LOG` cannot enable them).
pub const TRACE_ONLY: &str = "shipgate::otel";

/// The service name when neither `OTEL_SERVICE_NAME` nor `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "shipgate";

/// The attribute by which a span asks to be its delivery's root (read and removed by the tracer).
const ROOT_MARK: &str = "shipgate.trace_root";

/// What the environment asks of the exporter. The endpoint, headers, timeout and batching
/// variables are read by the OpenTelemetry crates themselves, as the specification says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Time-out of one export request (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, then
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, in ms; default 10 s).
    pub timeout: Duration,
    /// Set when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names the service.
    pub default_service_name: bool,
}

impl Settings {
    /// None: traces are off (no endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
    /// An error names the variable.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Settings>, String> {
        let get = |k: &str| get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if endpoint.is_none() || get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match get("OTEL_TRACES_EXPORTER").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(format!("OTEL_TRACES_EXPORTER={other}: only `otlp` (or `none`) is supported"));
            }
        }
        for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(p) = get(var) {
                if p != "http/protobuf" {
                    return Err(format!("{var}={p}: only http/protobuf is supported"));
                }
                break; // the signal's own variable wins
            }
        }
        let mut timeout = Duration::from_secs(10);
        for var in ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"] {
            if let Some(t) = get(var) {
                let ms: u64 = t.parse().map_err(|_| format!("{var}={t}: expected milliseconds"))?;
                timeout = Duration::from_millis(ms.max(1));
                break;
            }
        }
        let named = get("OTEL_SERVICE_NAME").is_some()
            || get("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")));
        Ok(Some(Settings { timeout, default_service_name: !named }))
    }

    pub fn from_env() -> Result<Option<Settings>, String> {
        Settings::from_lookup(&|k| std::env::var(k).ok())
    }
}

/// The running exporter: flush it with [`Traces::shutdown`] before the runtime stops.
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: DeliveryTracer,
}

impl Traces {
    /// Builds the exporter, its batch processor (a task on the current tokio runtime: call this
    /// inside it) and the tracer. Fails on an invalid endpoint (the error names the variable).
    pub fn start(settings: &Settings) -> Result<Traces, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(ExportClient::new(settings.timeout)?)
            .build()
            .map_err(|e| e.to_string())?;
        let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let resource = if settings.default_service_name {
            Resource::builder().with_service_name(DEFAULT_SERVICE_NAME).build()
        } else {
            Resource::builder().build()
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .with_id_generator(DeliveryIds::default())
            .build();
        let tracer = DeliveryTracer(provider.tracer("shipgate"));
        Ok(Traces { provider, tracer })
    }

    /// The layer that turns the App's spans into OpenTelemetry spans. Spans are built lazily
    /// (context activation off): at their end, or when a child needs them. So the intake can
    /// decide, once it knows whether the delivery was stored, whether its span is the
    /// delivery's root.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer;
        let only_ours = tracing_subscriber::filter::Targets::new().with_target("shipgate", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_context_activation(false)
            .with_filter(only_ours)
    }

    /// Exports what is left and stops the exporter. Call it outside the runtime's tasks (it
    /// blocks until the batch task, which runs on the runtime, has sent the last spans).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "traces: the last spans could not be exported");
        }
    }
}

/// A delivery's trace id and its root span's id (see the module's notes). None for an empty id.
pub fn delivery_ids(delivery_id: &str) -> Option<(TraceId, SpanId)> {
    if delivery_id.is_empty() {
        return None;
    }
    let h = Sha256::digest(delivery_id.as_bytes());
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&h[..16]);
    let mut span = [0u8; 8];
    span.copy_from_slice(&h[16..24]);
    let (trace, span) = (TraceId::from_bytes(trace), SpanId::from_bytes(span));
    (trace != TraceId::INVALID && span != SpanId::INVALID).then_some((trace, span))
}

/// Makes `span` (not entered yet, or entered but with no child span yet) the root of the trace of
/// `delivery_id`. Without the OpenTelemetry layer (traces off) it does nothing.
pub fn mark_root(span: &tracing::Span, delivery_id: &str) {
    if delivery_ids(delivery_id).is_some() {
        span.set_attribute(ROOT_MARK, delivery_id.to_string());
    }
}

/// Makes `span` (not entered yet) a child of the root of the trace of `delivery_id`.
pub fn continue_delivery(span: &tracing::Span, delivery_id: &str) {
    let Some((trace, root)) = delivery_ids(delivery_id) else { return };
    let parent = SpanContext::new(trace, root, TraceFlags::SAMPLED, true, TraceState::default());
    // Off (no layer) or already started: the span stays where it is.
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
}

/// The SDK's tracer, except that a span marked with [`ROOT_MARK`] and without a parent gets its
/// delivery's trace id and root span id.
#[derive(Clone, Debug)]
struct DeliveryTracer(SdkTracer);

impl Tracer for DeliveryTracer {
    type Span = <SdkTracer as Tracer>::Span;

    fn build_with_context(&self, mut builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        let delivery = take_root_mark(&mut builder);
        let has_parent = parent_cx.has_active_span() && parent_cx.span().span_context().is_valid();
        match delivery.as_deref().and_then(delivery_ids) {
            Some(ids) if !has_parent => {
                let _forced = Forced::set(ids);
                self.0.build_with_context(builder, parent_cx)
            }
            _ => self.0.build_with_context(builder, parent_cx),
        }
    }
}

fn take_root_mark(builder: &mut SpanBuilder) -> Option<String> {
    let attrs = builder.attributes.as_mut()?;
    let key = Key::from_static_str(ROOT_MARK);
    let at = attrs.iter().rposition(|kv| kv.key == key)?;
    let KeyValue { value, .. } = attrs.remove(at);
    attrs.retain(|kv| kv.key != key);
    match value {
        Value::String(s) => Some(s.to_string()),
        _ => None,
    }
}

thread_local! {
    /// The ids the SDK's next span on this thread gets (set only around one `build_with_context`).
    static FORCED: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Sets [`FORCED`] for as long as it lives (also when the build panics).
struct Forced;

impl Forced {
    fn set(ids: (TraceId, SpanId)) -> Forced {
        FORCED.with(|f| f.set(Some(ids)));
        Forced
    }
}

impl Drop for Forced {
    fn drop(&mut self) {
        FORCED.with(|f| f.set(None));
    }
}

/// Random ids, except while [`DeliveryTracer`] builds a delivery's root span. (The SDK's span
/// builder takes no ids: its id generator is the one place they can be chosen.)
#[derive(Debug, Default)]
struct DeliveryIds(RandomIdGenerator);

impl IdGenerator for DeliveryIds {
    fn new_trace_id(&self) -> TraceId {
        FORCED.with(|f| f.get()).map_or_else(|| self.0.new_trace_id(), |(t, _)| t)
    }

    fn new_span_id(&self) -> SpanId {
        FORCED.with(|f| f.get()).map_or_else(|| self.0.new_span_id(), |(_, s)| s)
    }
}

/// The exporter's HTTP client: hyper's, with rustls (ring, webpki roots) for an `https://`
/// endpoint, HTTP/1.1 only (the crates octocrab already brings), on the tokio runtime.
#[derive(Debug, Clone)]
struct ExportClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// The largest answer read from the collector (the OpenTelemetry clients' own limit).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

impl ExportClient {
    fn new(timeout: Duration) -> Result<ExportClient, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("traces: TLS set-up failed: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(ExportClient { client, timeout })
    }

    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout).into()),
        };
        // Outside every span: this warning is a log line only, never a span event.
        match &result {
            Ok(r) if !r.status().is_success() => {
                tracing::warn!(status = r.status().as_u16(), "traces: the collector refused a batch of spans")
            }
            Err(e) => tracing::warn!(error = %e, "traces: a batch of spans could not be exported"),
            Ok(_) => {}
        }
        result
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        self.send(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(settings(&[]), Ok(None));
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        assert_eq!(settings(&[("OTEL_SERVICE_NAME", "x"), ("OTEL_EXPORTER_OTLP_HEADERS", "a=b")]), Ok(None));
        let on = Settings { timeout: Duration::from_secs(10), default_service_name: true };
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]), Ok(Some(on.clone())));
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")]), Ok(Some(on)));
        for off in [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")] {
            assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]), Ok(None), "{off:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_do_naming_the_variable() {
        let e = "OTEL_EXPORTER_OTLP_ENDPOINT";
        let err = settings(&[(e, "http://c"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
        // The signal's own variable wins over the generic one.
        let ok = settings(&[
            (e, "http://c"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert!(matches!(ok, Ok(Some(_))), "{ok:?}");
        assert!(settings(&[(e, "http://c"), ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err().contains("zipkin"));
        let err = settings(&[(e, "http://c"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]).unwrap_err();
        assert!(err.contains("OTEL_EXPORTER_OTLP_TIMEOUT"), "{err}");
        let t = settings(&[(e, "http://c"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")]).unwrap().unwrap();
        assert_eq!(t.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn the_service_is_named_shipgate_unless_the_environment_names_it() {
        let e = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c");
        assert!(settings(&[e]).unwrap().unwrap().default_service_name);
        assert!(!settings(&[e, ("OTEL_SERVICE_NAME", "gate-eu")]).unwrap().unwrap().default_service_name);
        let attrs = ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod, service.name=gate");
        assert!(!settings(&[e, attrs]).unwrap().unwrap().default_service_name);
        let other = ("OTEL_RESOURCE_ATTRIBUTES", "service.namespace=ci");
        assert!(settings(&[e, other]).unwrap().unwrap().default_service_name);
    }

    #[test]
    fn a_delivery_always_gets_the_same_ids() {
        let (t, s) = delivery_ids("72d3162e-cc78-11e3-81ab-4c9367dc0958").expect("ids");
        // `printf %s 72d3162e-cc78-11e3-81ab-4c9367dc0958 | sha256sum`, cut at 32 and 48 digits.
        let hex = hex::encode(Sha256::digest(b"72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert_eq!(t.to_string(), hex[..32]);
        assert_eq!(s.to_string(), hex[32..48]);
        assert_eq!(delivery_ids("72d3162e-cc78-11e3-81ab-4c9367dc0958"), Some((t, s)));
        assert_ne!(delivery_ids("72d3162e-cc78-11e3-81ab-4c9367dc0959").map(|i| i.0), Some(t));
        assert_eq!(delivery_ids(""), None);
    }

    #[test]
    fn a_marked_root_gets_its_deliverys_ids_and_nothing_else_does() {
        use opentelemetry::trace::Span as _;
        let provider = SdkTracerProvider::builder().with_id_generator(DeliveryIds::default()).build();
        let tracer = DeliveryTracer(provider.tracer("test"));
        let (trace, root) = delivery_ids("d-7").expect("ids");
        let marked = SpanBuilder::from_name("webhook").with_attributes([KeyValue::new(ROOT_MARK, "d-7")]);
        let span = tracer.build_with_context(marked, &Context::new());
        assert_eq!((span.span_context().trace_id(), span.span_context().span_id()), (trace, root));
        // The next span, unmarked, is random again.
        let other = tracer.build_with_context(SpanBuilder::from_name("x"), &Context::new());
        assert_ne!(other.span_context().trace_id(), trace);
        assert_ne!(other.span_context().span_id(), root);
        // A marked span that has a parent stays its parent's child.
        let parent_cx = Context::new().with_span(other);
        let marked = SpanBuilder::from_name("webhook").with_attributes([KeyValue::new(ROOT_MARK, "d-7")]);
        let child = tracer.build_with_context(marked, &parent_cx);
        assert_eq!(child.span_context().trace_id(), parent_cx.span().span_context().trace_id());
        assert_ne!(child.span_context().span_id(), root);
    }

    #[test]
    fn the_root_mark_is_taken_off_the_span() {
        let mut b = SpanBuilder::from_name("webhook")
            .with_attributes([KeyValue::new("delivery_id", "d-1"), KeyValue::new(ROOT_MARK, "d-1")]);
        assert_eq!(take_root_mark(&mut b).as_deref(), Some("d-1"));
        assert_eq!(b.attributes.as_ref().map(Vec::len), Some(1));
        assert_eq!(take_root_mark(&mut b), None);
    }
}
