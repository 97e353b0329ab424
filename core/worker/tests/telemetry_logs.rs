//! JSON logs carry the trace and span ids of the span they are written in,
//! the same ids the span is exported with.

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::trace::InMemorySpanExporter;
use orchestrix_worker::Telemetry;
use orchestrix_worker::config::LogConfig;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn json_log_lines_name_their_trace() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let exporter = InMemorySpanExporter::default();
    let mut log = LogConfig::default();
    log.filter = "debug".into(); // logs debug spans; traces stop at INFO
    let telemetry = Telemetry::builder("log-test")
        .log(log)
        .writer(BoxMakeWriter::new(move || writer.clone()))
        .span_exporter(exporter.clone())
        .init()
        .unwrap();

    tracing::info!("outside any span");
    let span = tracing::info_span!("orchestrix.handle", handler = "ledger", position = 7u64);
    span.in_scope(|| {
        tracing::info!("in handle");
        let inner = tracing::debug_span!("not.traced"); // below the tracing level: the ids come from its parent
        inner.in_scope(|| tracing::warn!(answer = 42, "inside"));
    });
    drop(span);
    telemetry.flush();

    let exported = exporter.get_finished_spans().unwrap();
    let handle = exported
        .iter()
        .find(|s| s.name == "orchestrix.handle")
        .unwrap();
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    let outside = lines
        .iter()
        .find(|l| l["message"] == "outside any span")
        .unwrap();
    assert!(outside.get("trace_id").is_none());
    assert_eq!(outside["service"], "log-test");
    assert_eq!(outside["level"], "INFO");
    let inside = lines.iter().find(|l| l["message"] == "inside").unwrap();
    assert_eq!(
        inside["trace_id"],
        handle.span_context.trace_id().to_string().as_str()
    );
    assert_eq!(
        inside["span_id"],
        handle.span_context.span_id().to_string().as_str()
    );
    assert_eq!(inside["level"], "WARN");
    assert_eq!(inside["fields"]["answer"], 42);
    assert_eq!(inside["span"]["name"], "not.traced");
    let handle_line = lines.iter().find(|l| l["message"] == "in handle").unwrap();
    assert_eq!(handle_line["span"]["handler"], "ledger");
    assert_eq!(handle_line["span"]["position"], 7);
    assert_eq!(handle_line["trace_id"], inside["trace_id"]);
    assert_eq!(
        inside["spans"],
        serde_json::json!(["orchestrix.handle", "not.traced"])
    );
    assert!(inside["timestamp"].as_str().unwrap().ends_with('Z'));
}
