//! The metrics every dispatch layer records, read back from a debugging
//! recorder: commands, appends, consumed events, handler latency, dead
//! letters, lag, publishes, relay lag and saga instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix::runtime::{Consumer, Delivery, EventHandler, RetryPolicy};
use orchestrix::telemetry::MetricsSource;
use orchestrix::{Aggregate, Application, Command, Error, Event, RecordedEvent, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.test.metrics")]
enum TallyEvent {
    Added,
}

#[derive(Debug)]
enum TallyCommand {
    Add(String),
    Refuse(String),
}

impl Command for TallyCommand {
    fn aggregate_id(&self) -> String {
        match self {
            Self::Add(id) | Self::Refuse(id) => id.clone(),
        }
    }
    fn command_type(&self) -> &'static str {
        match self {
            Self::Add(_) => "Add",
            Self::Refuse(_) => "Refuse",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally;

impl Aggregate for Tally {
    const CATEGORY: &'static str = "tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = Refused;
    fn handle(&self, c: &TallyCommand) -> Result<Vec<TallyEvent>, Refused> {
        match c {
            TallyCommand::Add(_) => Ok(vec![TallyEvent::Added]),
            TallyCommand::Refuse(_) => Err(Refused),
        }
    }
    fn apply(&mut self, _: &TallyEvent) {}
}

/// Fails permanently on the stream `tally-poison`.
#[derive(Debug, Default)]
struct Picky;

#[async_trait]
impl EventHandler for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        if event.stream_id.entity_id() == "poison" {
            return Err(Error::invalid("tally", "poison"));
        }
        Ok(())
    }
}

/// Fails its first publish.
#[derive(Debug, Default)]
struct Flaky(AtomicBool);

#[async_trait]
impl Publisher for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn publish(&self, _: &[RecordedEvent]) -> orchestrix::Result<()> {
        if self.0.swap(true, Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::backend("flaky", "publish", true, "first try fails"))
        }
    }
}

/// What the recorder saw so far. A snapshot drains the recorder (counters
/// and histograms restart, gauges reset to 0), so each one is merged in:
/// counters add up, histograms grow, gauges take the latest value (read them
/// right after they are set).
#[derive(Default)]
struct Snap(Vec<(CompositeKey, DebugValue)>);

impl Snap {
    fn update(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            match self.0.iter_mut().find(|(k, _)| *k == key) {
                None => self.0.push((key, value)),
                Some((_, old)) => match (old, value) {
                    (DebugValue::Counter(a), DebugValue::Counter(b)) => *a += b,
                    (DebugValue::Histogram(a), DebugValue::Histogram(b)) => a.extend(b),
                    (old, new) => *old = new,
                },
            }
        }
    }

    fn find(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.iter().find_map(|(key, value)| {
            let k = key.key();
            let matches = key.kind() == kind
                && k.name() == name
                && labels
                    .iter()
                    .all(|(n, v)| k.labels().any(|l| l.key() == *n && l.value() == *v));
            matches.then_some(value)
        })
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(MetricKind::Gauge, name, labels) {
            Some(DebugValue::Gauge(n)) => n.into_inner(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.find(MetricKind::Histogram, name, labels) {
            Some(DebugValue::Histogram(v)) => v.len(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layer_records_its_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();
    orchestrix::telemetry::metrics::describe();

    let store = Store::memory();
    let app = Application::builder(store.clone())
        .aggregate::<Tally>()
        .build()
        .unwrap();
    for id in ["a", "b", "poison"] {
        app.execute(TallyCommand::Add(id.into())).await.unwrap();
    }
    app.execute(TallyCommand::Refuse("a".into()))
        .await
        .unwrap_err();

    let mut s = Snap::default();
    s.update(&snapshotter);
    let add = [("command", "Add"), ("aggregate", "tally")];
    assert_eq!(
        s.counter(
            "orchestrix_commands_total",
            &[add[0], add[1], ("outcome", "ok")]
        ),
        3
    );
    assert_eq!(
        s.counter(
            "orchestrix_commands_total",
            &[("command", "Refuse"), ("outcome", "rejected")]
        ),
        1
    );
    assert_eq!(
        s.histogram_count("orchestrix_command_duration_seconds", &add),
        3
    );
    assert_eq!(
        s.counter(
            "orchestrix_appends_total",
            &[("backend", "memory"), ("outcome", "ok")]
        ),
        3
    );
    assert_eq!(
        s.counter("orchestrix_events_appended_total", &[("backend", "memory")]),
        3
    );
    assert_eq!(
        s.histogram_count(
            "orchestrix_append_duration_seconds",
            &[("backend", "memory")]
        ),
        3
    );

    // A consumer: two handled, one dead-lettered; lag sampled before and after.
    let consumer = Consumer::builder(store.clone(), Arc::new(Picky))
        .retry(RetryPolicy::fixed(1, Duration::from_millis(1)))
        .start()
        .await
        .unwrap();
    let monitor = consumer.monitor();
    monitor.pause();
    app.execute(TallyCommand::Add("c".into())).await.unwrap();
    let lag = monitor.record_lag().await.unwrap();
    assert!(
        lag.events > 0,
        "the event appended while paused is not handled"
    );
    s.update(&snapshotter);
    #[allow(clippy::cast_precision_loss)]
    let expected = lag.events as f64;
    assert_eq!(
        s.gauge(
            "orchestrix_consumer_lag_events",
            &[("consumer", "picky"), ("partition", "all")]
        ),
        expected
    );
    assert!(s.gauge("orchestrix_consumer_lag_seconds", &[("consumer", "picky")]) >= 0.0);
    monitor.resume();
    consumer.wait_until_caught_up(4).await.unwrap();
    MetricsSource::sample(&monitor).await.unwrap();
    consumer.shutdown().await.unwrap();
    s.update(&snapshotter);
    assert_eq!(
        s.gauge("orchestrix_consumer_lag_events", &[("consumer", "picky")]),
        0.0
    );
    assert_eq!(
        s.gauge("orchestrix_consumer_lag_seconds", &[("consumer", "picky")]),
        0.0
    );
    assert_eq!(
        s.counter(
            "orchestrix_events_consumed_total",
            &[("consumer", "picky"), ("outcome", "ok")]
        ),
        3
    );
    assert_eq!(
        s.counter(
            "orchestrix_events_consumed_total",
            &[("consumer", "picky"), ("outcome", "dead_lettered")]
        ),
        1
    );
    assert_eq!(
        s.counter(
            "orchestrix_dead_letters_total",
            &[("consumer", "picky"), ("kind", "invalid_input")]
        ),
        1
    );
    assert_eq!(
        s.histogram_count(
            "orchestrix_handler_duration_seconds",
            &[("consumer", "picky")]
        ),
        4
    );

    // The relay: one failed publish, then the batch; lag back to zero.
    let relay = Relay::start(
        store.clone(),
        Arc::new(Flaky::default()),
        RelayConfig::default(),
    )
    .await
    .unwrap();
    relay.wait_for(4).await.unwrap();
    assert_eq!(relay.record_lag().await.unwrap(), 0);
    relay.shutdown().await.unwrap();
    s.update(&snapshotter);
    assert_eq!(
        s.counter(
            "orchestrix_publishes_total",
            &[("publisher", "flaky"), ("outcome", "backend")]
        ),
        1
    );
    assert!(
        s.counter(
            "orchestrix_publishes_total",
            &[("publisher", "flaky"), ("outcome", "ok")]
        ) >= 1
    );
    assert_eq!(
        s.counter(
            "orchestrix_events_published_total",
            &[("publisher", "flaky")]
        ),
        4
    );
    assert_eq!(
        s.gauge("orchestrix_relay_lag_events", &[("publisher", "flaky")]),
        0.0
    );
}
