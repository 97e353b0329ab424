//! Trace context through the core, with a stand-in propagator (the real one,
//! backed by OpenTelemetry, is in `orchestrix-worker`): a command's events
//! record the command span's context, the `orchestrix.handle` span of each
//! event continues it, an explicit context becomes the command's parent, and
//! publish spans link to the traces they carry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix::runtime::{Consumer, Delivery, EventHandler};
use orchestrix::telemetry::{self, TraceContext, TracePropagator};
use orchestrix::{Aggregate, Application, Command, CommandContext, Event, RecordedEvent, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.test.telemetry")]
enum PingEvent {
    Pinged,
}

#[derive(Debug)]
struct Ping(String);

impl Command for Ping {
    fn aggregate_id(&self) -> String {
        self.0.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pinger;

impl Aggregate for Pinger {
    const CATEGORY: &'static str = "pinger";
    type Command = Ping;
    type Event = PingEvent;
    type Error = Never;
    fn handle(&self, _: &Ping) -> Result<Vec<PingEvent>, Never> {
        Ok(vec![PingEvent::Pinged, PingEvent::Pinged])
    }
    fn apply(&mut self, _: &PingEvent) {}
}

/// Gives every span a context: a child of the parent set on it, or a new
/// trace; records what the core asked for.
#[derive(Debug, Default)]
struct Fake {
    next: AtomicU64,
    parents: Mutex<HashMap<u64, TraceContext>>,
    calls: Mutex<Vec<(String, &'static str, String)>>,
}

impl Fake {
    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn calls(&self, span: &str, op: &str) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(s, o, _)| s == span && *o == op)
            .map(|(_, _, tp)| tp.clone())
            .collect()
    }
}

impl TracePropagator for Fake {
    fn inject(&self, span: &tracing::Span) -> Option<TraceContext> {
        // Span ids are recycled, so nothing is cached per id; the core asks
        // once per span.
        let key = span.id()?.into_u64();
        let trace = match self.parents.lock().unwrap().get(&key) {
            Some(parent) => parent.trace_id().to_owned(),
            None => format!("{:032x}", self.id()),
        };
        Some(
            TraceContext::parse(&format!("00-{trace}-{:016x}-01", self.id()), Some("fake=1"))
                .unwrap(),
        )
    }

    fn set_parent(&self, span: &tracing::Span, parent: &TraceContext) {
        let name = span.metadata().map_or("?", |m| m.name()).to_owned();
        self.calls
            .lock()
            .unwrap()
            .push((name, "parent", parent.traceparent.clone()));
        if let Some(id) = span.id() {
            self.parents
                .lock()
                .unwrap()
                .insert(id.into_u64(), parent.clone());
        }
    }

    fn add_link(&self, span: &tracing::Span, to: &TraceContext) {
        let name = span.metadata().map_or("?", |m| m.name()).to_owned();
        self.calls
            .lock()
            .unwrap()
            .push((name, "link", to.traceparent.clone()));
    }
}

/// Records the trace context it runs in.
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<(u64, Option<TraceContext>)>>);

#[async_trait]
impl EventHandler for Seen {
    fn name(&self) -> &str {
        "seen"
    }
    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        let context = telemetry::inject(&tracing::Span::current());
        self.0.lock().unwrap().push((event.position, context));
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Sink;

#[async_trait]
impl Publisher for Sink {
    fn name(&self) -> &str {
        "sink"
    }
    async fn publish(&self, _: &[RecordedEvent]) -> orchestrix::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_command_to_handler_and_publish() {
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    let fake = Arc::new(Fake::default());
    assert!(telemetry::install_propagator(fake.clone()));
    assert!(
        !telemetry::install_propagator(Arc::new(Fake::default())),
        "installed once"
    );

    let store = Store::memory();
    let app = Application::builder(store.clone())
        .aggregate::<Pinger>()
        .build()
        .unwrap();

    // A command outside any trace starts one; its events record the command
    // span's context.
    app.execute(Ping("a".into())).await.unwrap();
    // An explicit context becomes the command span's parent.
    let caller = TraceContext::parse(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        None,
    )
    .unwrap();
    let context = CommandContext {
        traceparent: Some(caller.traceparent.clone()),
        ..CommandContext::default()
    };
    app.execute_with(Ping("b".into()), context).await.unwrap();

    let events = store
        .read_all(0, 10, &orchestrix::Filter::all())
        .await
        .unwrap();
    assert_eq!(events.len(), 4);
    let contexts: Vec<TraceContext> = events
        .iter()
        .map(|e| {
            let md = &e.record.metadata;
            TraceContext::parse(md.traceparent.as_deref().unwrap(), md.tracestate.as_deref())
                .unwrap()
        })
        .collect();
    assert_eq!(contexts[0], contexts[1], "one command, one span");
    assert_eq!(contexts[0].tracestate.as_deref(), Some("fake=1"));
    assert_eq!(
        contexts[2].trace_id(),
        caller.trace_id(),
        "continues the caller's trace"
    );
    assert_ne!(contexts[2].span_id(), caller.span_id(), "as a child span");
    assert_ne!(contexts[0].trace_id(), contexts[2].trace_id());
    assert_eq!(
        fake.calls("orchestrix.command", "parent"),
        vec![caller.traceparent.clone()]
    );

    // Each handled event's span is a child of the event's context.
    let seen = Arc::new(Seen::default());
    let consumer = Consumer::builder(store.clone(), seen.clone())
        .partitions(2)
        .start()
        .await
        .unwrap();
    consumer.wait_until_caught_up(4).await.unwrap();
    consumer.shutdown().await.unwrap();
    let mut parents = fake.calls("orchestrix.handle", "parent");
    parents.sort();
    let mut expected: Vec<String> = contexts.iter().map(|c| c.traceparent.clone()).collect();
    expected.sort();
    assert_eq!(parents, expected);
    for (position, context) in seen.0.lock().unwrap().iter() {
        let index = usize::try_from(*position - 1).unwrap();
        let context = context.as_ref().expect("the handler runs in a trace");
        assert_eq!(
            context.trace_id(),
            contexts[index].trace_id(),
            "event {position}"
        );
    }

    // A publish span links to the distinct traces of its batch.
    let relay = Relay::start(store.clone(), Arc::new(Sink), RelayConfig::default())
        .await
        .unwrap();
    relay.wait_for(4).await.unwrap();
    assert_eq!(relay.lag().await.unwrap(), 0);
    relay.shutdown().await.unwrap();
    let mut links = fake.calls("orchestrix.publish", "link");
    links.sort();
    links.dedup();
    let mut distinct = expected.clone();
    distinct.dedup();
    assert_eq!(links, distinct);
}
