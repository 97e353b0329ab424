//! One trace over a real bus: a command executed in this process (which
//! relays the store's events to NATS JetStream) and the projection that
//! handles its event in another process (a NATS consumer) share one trace
//! id, and the consumer's `orchestrix.handle` span is a child of the
//! command's span.
//!
//! NATS is the server at `ORCHESTRIX_NATS_URL` (default
//! `nats://127.0.0.1:4222`), on a stream and subjects of this test's own.
//! Without a reachable server the test is skipped (it fails when `CI=true`).
//!
//! The consumer process is this test binary run again in child mode
//! ([`child_consumer`]).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_sdk::trace::InMemorySpanExporter;
use orchestrix::runtime::ConsumerConfig;
use orchestrix_backends::{BusOptions, start_runtime};
use orchestrix_worker::config::LogConfig;
use orchestrix_worker::{LogFormat, Telemetry, open_store};
use serde_json::json;
use support::{Add, Ledger};

/// How long any one step may take.
const LIMIT: Duration = Duration::from_secs(60);

/// The base NATS URL (`ORCHESTRIX_NATS_URL`).
fn nats_base() -> String {
    std::env::var("ORCHESTRIX_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A `nats://` bus URL on a fresh stream and subject prefix, or `None`
/// (after printing why) when the server is unreachable outside CI; in CI
/// that panics.
async fn bus_url() -> Option<String> {
    let base = nats_base();
    let host = base
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let reachable = matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(host.as_str())
        )
        .await,
        Ok(Ok(_))
    );
    if !reachable {
        let reason = format!("NATS is not reachable at {base} (ORCHESTRIX_NATS_URL)");
        assert!(!support::in_ci(), "CI=true and {reason}");
        eprintln!("skipping: {reason}");
        return None;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let id = format!("{:x}{:x}", std::process::id(), nanos % (1 << 40));
    Some(format!(
        "{}?stream=ORX_WTRACE_{id}&prefix=orx.wtrace.{id}&partitions=4",
        base.trim_end_matches('/')
    ))
}

fn quiet_log() -> LogConfig {
    let mut log = LogConfig::default();
    log.format = LogFormat::Text;
    log.filter = "warn".into(); // spans are traced whatever the log filter
    log
}

/// Child mode (only with `ORCHESTRIX_WORKER_TEST_CHILD` set): the ledger
/// projection as a NATS consumer of `TEST_BUS_URL`, on the store at
/// `TEST_STORE_URL`. Writes `TEST_READY_FILE` once it consumes, waits until
/// the ledger (`TEST_LEDGER`) has a line, stops, and writes the spans it
/// exported to `TEST_SPANS_FILE`.
#[test]
fn child_consumer() {
    if std::env::var_os(support::CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(child_main()).unwrap();
}

async fn child_main() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).expect(name);
    let exporter = InMemorySpanExporter::default();
    let telemetry = Telemetry::builder("test-bus-consumer")
        .log(quiet_log())
        .span_exporter(exporter.clone())
        .init()?;
    let store = open_store(&var("TEST_STORE_URL")).await?;
    let ledger = PathBuf::from(var("TEST_LEDGER"));
    let app = support::app(
        store,
        Ledger {
            path: Some(ledger.clone()),
            delay: Duration::ZERO,
        },
        ConsumerConfig::default(),
    );
    let bus = var("TEST_BUS_URL");
    let runtime = start_runtime(&app, Some(&bus), BusOptions::consumer()).await?;
    assert!(runtime.bus().is_some(), "the consumer runs on the bus");
    std::fs::write(var("TEST_READY_FILE"), "ready")?;
    support::eventually("the consumer to project the event", LIMIT, || {
        !support::ledger_lines(&ledger).is_empty()
    })
    .await;
    tokio::time::timeout(LIMIT, runtime.shutdown()).await??;
    telemetry.flush();
    let spans: Vec<String> = exporter
        .get_finished_spans()?
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "trace_id": s.span_context.trace_id().to_string(),
                "span_id": s.span_context.span_id().to_string(),
                "parent_span_id": s.parent_span_id.to_string(),
            })
            .to_string()
        })
        .collect();
    for span in &spans {
        println!("consumer span: {span}");
    }
    std::fs::write(var("TEST_SPANS_FILE"), spans.join("\n"))?;
    Ok(())
}

fn read_spans(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_here_and_its_projection_in_a_nats_consumer_process_share_one_trace() {
    let Some(bus) = bus_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
    let exporter = InMemorySpanExporter::default();
    let telemetry = Telemetry::builder("test-bus-producer")
        .log(quiet_log())
        .span_exporter(exporter.clone())
        .init()
        .unwrap();

    // This process: the command, and the relay from the store to NATS.
    let store = open_store(&store_url).await.unwrap();
    let app = support::app(
        store.clone(),
        Ledger {
            path: None,
            delay: Duration::ZERO,
        },
        ConsumerConfig::default(),
    );
    let relay = tokio::time::timeout(
        LIMIT,
        start_runtime(&app, Some(&bus), BusOptions::producer()),
    )
    .await
    .expect("the relay started in time")
    .unwrap();
    assert!(
        relay.bus().and_then(|b| b.relay()).is_some(),
        "this process relays"
    );

    // The other process: the projection as a NATS consumer, started first
    // so that the event reaches a running consumer over the bus.
    let (ledger, spans_file, ready_file) = (
        dir.path().join("ledger"),
        dir.path().join("spans"),
        dir.path().join("ready"),
    );
    let mut child = support::spawn_child(
        "child_consumer",
        &[
            ("TEST_BUS_URL", bus.clone()),
            ("TEST_STORE_URL", store_url.clone()),
            ("TEST_LEDGER", ledger.display().to_string()),
            ("TEST_SPANS_FILE", spans_file.display().to_string()),
            ("TEST_READY_FILE", ready_file.display().to_string()),
        ],
    );
    support::eventually("the consumer process to start", LIMIT, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the consumer process exited before consuming: {status}");
        }
        ready_file.exists()
    })
    .await;

    let outcome = app.execute(Add("traced".into())).await.unwrap();
    telemetry.flush();
    let spans = exporter.get_finished_spans().unwrap();
    let command = spans
        .iter()
        .find(|s| s.name == "orchestrix.command")
        .expect("the command span");
    let trace_id = command.span_context.trace_id().to_string();
    let command_span = command.span_context.span_id().to_string();
    let event = store
        .read_stream_forward(&outcome.stream_id, 0, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        event.record.metadata.traceparent.as_deref(),
        Some(format!("00-{trace_id}-{command_span}-01").as_str()),
        "the event records the command's trace context"
    );
    println!("command process: trace {trace_id}, command span {command_span}");
    let head = tokio::time::timeout(LIMIT, relay.catch_up())
        .await
        .expect("the relay published in time")
        .unwrap();
    assert!(head >= event.position, "the event was relayed to NATS");

    let (status, _) = support::wait_exit(&mut child, LIMIT).await;
    assert!(status.success(), "the consumer process exits 0: {status}");
    tokio::time::timeout(LIMIT, relay.shutdown())
        .await
        .expect("the relay stopped in time")
        .unwrap();

    let lines = support::ledger_lines(&ledger);
    assert_eq!(lines.len(), 1, "the consumer handled the one event once");
    assert_eq!(lines[0].1, event.id().to_string(), "the command's event");
    assert_eq!(
        lines[0].2, trace_id,
        "the handler ran in the command's trace"
    );
    let handle = read_spans(&spans_file)
        .into_iter()
        .find(|s| s["name"] == "orchestrix.handle")
        .expect("the consumer exported its handle span");
    println!(
        "consumer process: trace {}, handle span {} (parent {})",
        handle["trace_id"], handle["span_id"], handle["parent_span_id"]
    );
    assert_eq!(
        handle["trace_id"],
        trace_id.as_str(),
        "one trace across both processes over NATS"
    );
    assert_eq!(
        handle["parent_span_id"],
        command_span.as_str(),
        "the handle span is a child of the command span"
    );
}
