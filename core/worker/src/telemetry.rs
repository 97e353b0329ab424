//! Logs and traces of a worker process: a `tracing` subscriber that writes
//! JSON (or text) logs with trace ids and feeds spans to OpenTelemetry, and
//! the [`OtelPropagator`] that lets the core carry the W3C trace context in
//! events.
//!
//! Traces follow the standard OpenTelemetry variables: `OTEL_SERVICE_NAME`
//! and `OTEL_RESOURCE_ATTRIBUTES` (resource), `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (sampling), `OTEL_SDK_DISABLED=true` (no
//! OpenTelemetry at all: no trace ids in logs, no trace context in events).
//! With the feature `otlp`, spans are exported over OTLP/HTTP (protobuf)
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set, or `OTEL_TRACES_EXPORTER=otlp` (then to `http://localhost:4318`);
//! `OTEL_TRACES_EXPORTER=none` turns export off. `OTEL_EXPORTER_OTLP_HEADERS`
//! and `OTEL_EXPORTER_OTLP_TIMEOUT` apply as usual. Without an exporter, spans
//! still get trace ids, which logs show and events carry.
//!
//! Spans reach OpenTelemetry at level INFO and above whatever the log filter
//! says, so that a quiet log level does not break traces.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter, TracerProviderBuilder};
use orchestrix::telemetry::{TraceContext, TracePropagator};
use serde_json::{Map, Value};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_opentelemetry::{OpenTelemetrySpanExt as _, OtelData};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

use crate::config::{LogConfig, LogFormat};
use crate::error::{Error, Result};

/// The core's [`TracePropagator`], backed by `tracing-opentelemetry` and the
/// W3C trace-context propagator.
#[derive(Debug, Default)]
pub struct OtelPropagator {
    propagator: TraceContextPropagator,
}

impl OtelPropagator {
    fn extract(&self, context: &TraceContext) -> opentelemetry::Context {
        let mut carrier = HashMap::from([("traceparent".to_owned(), context.traceparent.clone())]);
        if let Some(state) = &context.tracestate {
            carrier.insert("tracestate".to_owned(), state.clone());
        }
        self.propagator.extract(&carrier)
    }
}

impl TracePropagator for OtelPropagator {
    fn inject(&self, span: &tracing::Span) -> Option<TraceContext> {
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::new();
        self.propagator.inject_context(&cx, &mut carrier);
        let traceparent = carrier.remove("traceparent")?;
        let tracestate = carrier.remove("tracestate").filter(|s| !s.is_empty());
        Some(TraceContext {
            traceparent,
            tracestate,
        })
    }

    fn set_parent(&self, span: &tracing::Span, parent: &TraceContext) {
        let _ = span.set_parent(self.extract(parent));
    }

    fn add_link(&self, span: &tracing::Span, to: &TraceContext) {
        span.add_link(self.extract(to).span().span_context().clone());
    }
}

/// The tracing set-up of a process; flushes and stops the tracer provider
/// when shut down or dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("opentelemetry", &self.provider.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Starts configuring.
    pub fn builder(service_name: impl Into<String>) -> TelemetryBuilder {
        TelemetryBuilder {
            service_name: service_name.into(),
            log: LogConfig::default(),
            writer: None,
            provider: SdkTracerProvider::builder(),
            from_env: true,
        }
    }

    /// Exports what is buffered.
    pub fn flush(&self) {
        if let Some(p) = &self.provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "cannot flush spans");
        }
    }

    /// Flushes and stops the tracer provider.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Configures [`Telemetry`].
#[must_use]
pub struct TelemetryBuilder {
    service_name: String,
    log: LogConfig,
    writer: Option<BoxMakeWriter>,
    provider: TracerProviderBuilder,
    from_env: bool,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("service_name", &self.service_name)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// Log format and filter.
    pub fn log(mut self, log: LogConfig) -> Self {
        self.log = log;
        self
    }

    /// Writes logs here instead of standard error.
    pub fn writer(mut self, writer: BoxMakeWriter) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Exports every span as it ends to `exporter` (for tests, e.g.
    /// `opentelemetry_sdk`'s in-memory exporter), instead of the exporter
    /// the environment names.
    pub fn span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.provider = self.provider.with_simple_exporter(exporter);
        self.from_env = false;
        self
    }

    /// Installs the subscriber as the process's global default, and the
    /// [`OtelPropagator`] as the core's propagator.
    ///
    /// # Errors
    /// [`Error::Telemetry`] when a global subscriber is already set, the log
    /// filter is invalid or the OTLP exporter cannot be built.
    pub fn init(self) -> Result<Telemetry> {
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let filter = EnvFilter::try_new(&self.log.filter).map_err(|e| Error::Telemetry {
            what: "the log filter",
            reason: format!("`{}`: {e}", self.log.filter),
        })?;
        let writer = self
            .writer
            .unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr));
        let fmt = match self.log.format {
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonWithTrace {
                    service: self.service_name.clone(),
                })
                .with_writer(writer)
                .with_filter(filter)
                .boxed(),
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_filter(filter)
                .boxed(),
        };
        let provider = if disabled {
            None
        } else {
            let mut builder = self.provider;
            if self.from_env {
                builder = with_env_exporter(builder)?;
            }
            let mut resource = Resource::builder();
            if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                resource = resource.with_service_name(self.service_name.clone());
            }
            Some(builder.with_resource(resource.build()).build())
        };
        let otel = provider.as_ref().map(|p| {
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("orchestrix"))
                .with_filter(LevelFilter::INFO)
        });
        Registry::default()
            .with(fmt)
            .with(otel)
            .try_init()
            .map_err(|e| Error::Telemetry {
                what: "the tracing subscriber",
                reason: e.to_string(),
            })?;
        if let Some(p) = &provider {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            opentelemetry::global::set_tracer_provider(p.clone());
            if !orchestrix::telemetry::install_propagator(Arc::new(OtelPropagator::default())) {
                tracing::warn!("a trace propagator was installed already; keeping it");
            }
        }
        Ok(Telemetry { provider })
    }
}

#[cfg(feature = "otlp")]
fn with_env_exporter(builder: TracerProviderBuilder) -> Result<TracerProviderBuilder> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let wanted = match var("OTEL_TRACES_EXPORTER").map(|v| v.to_ascii_lowercase()) {
        Some(v) if v == "none" => false,
        Some(v) if v == "otlp" => true,
        Some(other) => {
            return Err(Error::Telemetry {
                what: "trace export",
                reason: format!(
                    "OTEL_TRACES_EXPORTER=`{other}`: only `otlp` and `none` are supported"
                ),
            });
        }
        None => {
            var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    };
    if !wanted {
        return Ok(builder);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| Error::Telemetry {
            what: "the OTLP exporter",
            reason: e.to_string(),
        })?;
    Ok(builder.with_batch_exporter(exporter))
}

#[cfg(not(feature = "otlp"))]
fn with_env_exporter(builder: TracerProviderBuilder) -> Result<TracerProviderBuilder> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        eprintln!(
            "orchestrix-worker: OTEL_EXPORTER_OTLP_* is set but this build has no OTLP exporter (feature `otlp`); spans are not exported"
        );
    }
    Ok(builder)
}

/// One JSON object per log line: `timestamp`, `level`, `target`, `service`,
/// `message`, `trace_id` and `span_id` (of the innermost span in a trace),
/// `span` (name and fields of the current span), `spans` (names, outermost
/// first) and `fields` (the event's other fields).
#[derive(Debug, Clone)]
pub struct JsonWithTrace {
    service: String,
}

impl JsonWithTrace {
    /// A formatter that names `service` in every line.
    #[must_use]
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("service".into(), self.service.clone().into());
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        if let Some(message) = fields.0.remove("message") {
            line.insert("message".into(), message);
        }
        if let Some(scope) = ctx.event_scope() {
            let mut trace = None;
            let mut names = Vec::new();
            for (depth, span) in scope.enumerate() {
                let extensions = span.extensions();
                if depth == 0 {
                    let mut current = Map::new();
                    current.insert("name".into(), span.name().into());
                    if let Some(formatted) = extensions.get::<FormattedFields<N>>()
                        && let Ok(Value::Object(f)) =
                            serde_json::from_str::<Value>(formatted.as_str())
                    {
                        current.extend(f);
                    }
                    line.insert("span".into(), current.into());
                }
                if trace.is_none()
                    && let Some(data) = extensions.get::<OtelData>()
                    && let (Some(t), Some(s)) = (data.trace_id(), data.span_id())
                    && t != opentelemetry::TraceId::INVALID
                {
                    trace = Some((t.to_string(), s.to_string()));
                }
                names.push(Value::from(span.name()));
            }
            if let Some((trace_id, span_id)) = trace {
                line.insert("trace_id".into(), trace_id.into());
                line.insert("span_id".into(), span_id.into());
            }
            names.reverse();
            line.insert("spans".into(), names.into());
        }
        if !fields.0.is_empty() {
            line.insert("fields".into(), fields.0.into());
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
