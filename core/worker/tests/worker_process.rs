//! Worker processes: one trace from a command in this process to the
//! projection in a worker process, and SIGTERM mid-stream (drain, commit,
//! exit 0 within the grace period; a restarted worker loses nothing and
//! applies nothing twice).
//!
//! The worker processes are this test binary run again in child mode
//! ([`child_worker`]), so that they need no separate binary.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use orchestrix::runtime::ConsumerConfig;
use orchestrix_worker::{LogFormat, Telemetry, Worker, WorkerConfig, open_store, shutdown_signal};
use serde_json::json;
use support::{Add, Ledger};

/// Child mode (only with `ORCHESTRIX_WORKER_TEST_CHILD` set): a worker of the
/// test application until SIGTERM. Reads its store, HTTP address and grace
/// period from the `ORCHESTRIX_*` variables, and from `TEST_LEDGER`,
/// `TEST_DELAY_MS`, `TEST_ADDR_FILE` and `TEST_SPANS_FILE` where to write
/// the ledger, how slow a handler is, where to tell its address and where to
/// write the spans it exported.
#[test]
fn child_worker() {
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
    let var = |name: &str| std::env::var(name).ok();
    let config = WorkerConfig::default().apply_env(std::env::vars())?;
    let exporter = InMemorySpanExporter::default();
    let telemetry = Telemetry::builder("test-worker")
        .log(config.log.clone())
        .span_exporter(exporter.clone())
        .init()?;
    let signal = shutdown_signal()?;
    let store = open_store(&config.store.url).await?;
    let delay = Duration::from_millis(var("TEST_DELAY_MS").map_or(0, |d| d.parse().unwrap()));
    // Small batches and buffers: at SIGTERM little is in flight, so the
    // drain is short and the stream is cut in the middle.
    let consumer = ConsumerConfig::default()
        .partitions(2)
        .buffer(2)
        .batch_size(4)
        .checkpoint_interval(Duration::from_millis(100));
    let app = support::app(
        store,
        Ledger {
            path: var("TEST_LEDGER").map(PathBuf::from),
            delay,
        },
        consumer,
    );
    let handle = Worker::new(app).config(config).start().await?;
    if let Some(path) = var("TEST_ADDR_FILE") {
        std::fs::write(path, handle.local_addr().to_string())?;
    }
    let name = signal.await;
    tracing::info!(signal = name, "child stopping");
    let result = handle.shutdown().await;
    telemetry.flush();
    if let Some(path) = var("TEST_SPANS_FILE") {
        let lines: Vec<String> = exporter
            .get_finished_spans()?
            .iter()
            .map(|s| span_json(s).to_string())
            .collect();
        std::fs::write(path, lines.join("\n"))?;
    }
    Ok(result?)
}

fn span_json(span: &SpanData) -> serde_json::Value {
    json!({
        "name": span.name,
        "trace_id": span.span_context.trace_id().to_string(),
        "span_id": span.span_context.span_id().to_string(),
        "parent_span_id": span.parent_span_id.to_string(),
    })
}

fn read_spans(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_here_and_its_projection_in_a_worker_process_share_one_trace() {
    let Some(url) = support::postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exporter = InMemorySpanExporter::default();
    let mut log = orchestrix_worker::config::LogConfig::default();
    log.format = LogFormat::Text;
    log.filter = "warn".into(); // spans are traced whatever the log filter
    let telemetry = Telemetry::builder("test-commands")
        .log(log)
        .span_exporter(exporter.clone())
        .init()
        .unwrap();

    // The command, in this process, on the shared PostgreSQL store.
    let store = open_store(&url).await.unwrap();
    let app = support::app(
        store.clone(),
        Ledger {
            path: None,
            delay: Duration::ZERO,
        },
        ConsumerConfig::default(),
    );
    let outcome = app.execute(Add("traced".into())).await.unwrap();
    telemetry.flush();
    let spans = exporter.get_finished_spans().unwrap();
    let command = spans
        .iter()
        .find(|s| s.name == "orchestrix.command")
        .expect("the command span");
    let trace_id = command.span_context.trace_id().to_string();
    let command_span = command.span_context.span_id().to_string();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "orchestrix.append" && s.parent_span_id.to_string() == command_span)
    );
    let event = store
        .read_stream_forward(&outcome.stream_id, 0, 1)
        .await
        .unwrap()
        .remove(0);
    let traceparent = event
        .record
        .metadata
        .traceparent
        .clone()
        .expect("the event records the trace context");
    assert_eq!(traceparent, format!("00-{trace_id}-{command_span}-01"));
    println!("command process: trace {trace_id}, command span {command_span}");

    // The projection, in a worker process.
    let (ledger, spans_file, addr_file) = (
        dir.path().join("ledger"),
        dir.path().join("spans"),
        dir.path().join("addr"),
    );
    let mut child = support::spawn_child(
        "child_worker",
        &[
            ("ORCHESTRIX_STORE_URL", url.clone()),
            ("ORCHESTRIX_HTTP_LISTEN", "127.0.0.1:0".into()),
            ("ORCHESTRIX_LOG_FILTER", "info".into()),
            ("TEST_LEDGER", ledger.display().to_string()),
            ("TEST_SPANS_FILE", spans_file.display().to_string()),
            ("TEST_ADDR_FILE", addr_file.display().to_string()),
        ],
    );
    support::child_addr(&addr_file, &mut child).await;
    support::eventually(
        "the worker to project the event",
        Duration::from_secs(60),
        || !support::ledger_lines(&ledger).is_empty(),
    )
    .await;
    support::sigterm(&child);
    let (status, _) = support::wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "the worker exits 0 after SIGTERM: {status}"
    );

    let lines = support::ledger_lines(&ledger);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0].2, trace_id,
        "the handler ran in the command's trace"
    );
    let handle = read_spans(&spans_file)
        .into_iter()
        .find(|s| s["name"] == "orchestrix.handle")
        .expect("the worker exported its handle span");
    println!(
        "worker process: trace {}, handle span {} (parent {})",
        handle["trace_id"], handle["span_id"], handle["parent_span_id"]
    );
    assert_eq!(
        handle["trace_id"],
        trace_id.as_str(),
        "one trace across both processes"
    );
    assert_eq!(
        handle["parent_span_id"],
        command_span.as_str(),
        "the handle span is a child of the command span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_drains_and_a_restarted_worker_loses_and_repeats_nothing() {
    const EVENTS: usize = 200;
    const GRACE: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    {
        let store = open_store(&url).await.unwrap();
        let app = support::app(
            store,
            Ledger {
                path: None,
                delay: Duration::ZERO,
            },
            ConsumerConfig::default(),
        );
        support::add(&app, EVENTS, 16).await;
    }
    let ledger = dir.path().join("ledger");
    let env = |addr: &str| {
        vec![
            ("ORCHESTRIX_STORE_URL", url.clone()),
            ("ORCHESTRIX_HTTP_LISTEN", "127.0.0.1:0".to_owned()),
            (
                "ORCHESTRIX_SHUTDOWN_GRACE_PERIOD_MS",
                GRACE.as_millis().to_string(),
            ),
            ("TEST_DELAY_MS", "10".to_owned()),
            ("TEST_LEDGER", ledger.display().to_string()),
            (
                "TEST_ADDR_FILE",
                dir.path().join(addr).display().to_string(),
            ),
        ]
    };

    // First worker: SIGTERM once it is well into the stream.
    let mut first = support::spawn_child("child_worker", &env("addr1"));
    support::child_addr(&dir.path().join("addr1"), &mut first).await;
    support::eventually(
        "the first worker to handle 40 events",
        Duration::from_secs(60),
        || support::ledger_lines(&ledger).len() >= 40,
    )
    .await;
    support::sigterm(&first);
    let (status, took) = support::wait_exit(&mut first, GRACE + Duration::from_secs(5)).await;
    assert!(status.success(), "exit 0 after SIGTERM: {status}");
    assert!(took < GRACE, "exited within the grace period: {took:?}");
    let handled = support::ledger_lines(&ledger).len();
    assert!(
        handled < EVENTS,
        "SIGTERM came mid-stream ({handled} of {EVENTS} handled)"
    );
    println!("first worker: {handled} events, exited {took:?} after SIGTERM");

    // Second worker: from the committed checkpoint to the end.
    let mut second = support::spawn_child("child_worker", &env("addr2"));
    support::child_addr(&dir.path().join("addr2"), &mut second).await;
    support::eventually(
        "the second worker to finish",
        Duration::from_secs(60),
        || support::ledger_lines(&ledger).len() >= EVENTS,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // a duplicate would show now
    support::sigterm(&second);
    let (status, _) = support::wait_exit(&mut second, GRACE + Duration::from_secs(5)).await;
    assert!(status.success(), "exit 0 after SIGTERM: {status}");

    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (position, _, _) in support::ledger_lines(&ledger) {
        *seen.entry(position).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "applied twice: {twice:?}");
    let expected: Vec<u64> = (1..=u64::try_from(EVENTS).unwrap()).collect();
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        expected,
        "nothing lost"
    );
}
