//! The saga engine on the memory store: every compensation path, timeouts,
//! idempotence under redelivery and crashes, correlation and causation,
//! resuming an interrupted compensation, and restarts (with and without the
//! runtime) that resume from the persisted state and still fire timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::runtime::{ConsumerConfig, Runtime};
use orchestrix::saga::{
    self, HandleOutcome, ManualClock, Saga, SagaConfig, SagaContext, SagaEngine, SagaStatus,
    SagaStep,
};
use orchestrix::store::memory::MemoryStore;
use orchestrix::store::{AppendRequest, AppendResult, Backend, Direction, EventStore, Filter};
use orchestrix::{Aggregate, Application, Command, Error, Event, RecordedEvent, Store, StreamId};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// A small domain: requests that hold resources.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "test.booking.request")]
enum RequestEvent {
    Requested { resources: Vec<String> },
    Confirmed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum RequestCommand {
    Request {
        order: String,
        resources: Vec<String>,
    },
    Confirm {
        order: String,
    },
}

impl Command for RequestCommand {
    fn aggregate_id(&self) -> String {
        match self {
            Self::Request { order, .. } | Self::Confirm { order } => order.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request refused")]
struct RequestError;

#[derive(Default, Serialize, Deserialize)]
struct Request {
    requested: bool,
}

impl Aggregate for Request {
    const CATEGORY: &'static str = "request";
    type Command = RequestCommand;
    type Event = RequestEvent;
    type Error = RequestError;

    fn handle(&self, c: &RequestCommand) -> Result<Vec<RequestEvent>, RequestError> {
        match c {
            RequestCommand::Request { resources, .. } if !self.requested => {
                Ok(vec![RequestEvent::Requested {
                    resources: resources.clone(),
                }])
            }
            RequestCommand::Confirm { .. } if self.requested => Ok(vec![RequestEvent::Confirmed]),
            _ => Err(RequestError),
        }
    }

    fn apply(&mut self, e: &RequestEvent) {
        if let RequestEvent::Requested { .. } = e {
            self.requested = true;
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "test.booking.resource")]
enum ResourceEvent {
    Held { order: String },
    Freed { order: String },
    Broken,
    Locked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ResourceCommand {
    Hold { resource: String, order: String },
    Free { resource: String, order: String },
    Break { resource: String },
    Lock { resource: String },
}

impl Command for ResourceCommand {
    fn aggregate_id(&self) -> String {
        match self {
            Self::Hold { resource, .. }
            | Self::Free { resource, .. }
            | Self::Break { resource }
            | Self::Lock { resource } => resource.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ResourceError {
    #[error("the resource is broken")]
    Broken,
    #[error("the resource is locked")]
    Locked,
    #[error("the resource is not held by {0}")]
    NotHeld(String),
}

#[derive(Default, Serialize, Deserialize)]
struct Resource {
    holder: Option<String>,
    broken: bool,
    locked: bool,
}

impl Aggregate for Resource {
    const CATEGORY: &'static str = "resource";
    type Command = ResourceCommand;
    type Event = ResourceEvent;
    type Error = ResourceError;

    fn handle(&self, c: &ResourceCommand) -> Result<Vec<ResourceEvent>, ResourceError> {
        match c {
            ResourceCommand::Hold { .. } if self.broken => Err(ResourceError::Broken),
            ResourceCommand::Hold { order, .. } => Ok(vec![ResourceEvent::Held {
                order: order.clone(),
            }]),
            ResourceCommand::Free { .. } if self.locked => Err(ResourceError::Locked),
            ResourceCommand::Free { order, .. } if self.holder.as_ref() == Some(order) => {
                Ok(vec![ResourceEvent::Freed {
                    order: order.clone(),
                }])
            }
            ResourceCommand::Free { order, .. } => Err(ResourceError::NotHeld(order.clone())),
            ResourceCommand::Break { .. } => Ok(vec![ResourceEvent::Broken]),
            ResourceCommand::Lock { .. } => Ok(vec![ResourceEvent::Locked]),
        }
    }

    fn apply(&mut self, e: &ResourceEvent) {
        match e {
            ResourceEvent::Held { order } => self.holder = Some(order.clone()),
            ResourceEvent::Freed { .. } => self.holder = None,
            ResourceEvent::Broken => self.broken = true,
            ResourceEvent::Locked => self.locked = true,
        }
    }
}

// ---------------------------------------------------------------------------
// The saga: hold every requested resource, complete on confirmation, release
// everything on failure or when the deadline passes.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "test.booking.saga")]
enum BookingEvent {
    Started { resources: Vec<String> },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BookingState {
    resources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum BookingCommand {
    Resource(ResourceCommand),
}

impl saga::SagaCommand for BookingCommand {
    fn dispatch(
        self,
        app: &Application,
        context: orchestrix::CommandContext,
    ) -> futures::future::BoxFuture<'static, orchestrix::Result<orchestrix::CommandOutcome>> {
        let app = app.clone();
        Box::pin(async move {
            match self {
                Self::Resource(c) => app.execute_with(c, context).await,
            }
        })
    }
}

impl From<ResourceCommand> for BookingCommand {
    fn from(c: ResourceCommand) -> Self {
        Self::Resource(c)
    }
}

const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Booking;

impl Saga for Booking {
    const NAME: &'static str = "booking";
    type State = BookingState;
    type Event = BookingEvent;
    type Command = BookingCommand;

    fn filter(&self) -> Filter {
        Filter::all().categories(["request"])
    }

    fn correlate(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.stream_id.entity_id().to_owned())
    }

    fn react(
        &self,
        cx: &SagaContext<'_, BookingState>,
        event: &RecordedEvent,
    ) -> orchestrix::Result<Vec<SagaStep<Self>>> {
        let order = cx.correlation.to_owned();
        Ok(match event.decode::<RequestEvent>()? {
            RequestEvent::Requested { resources } if cx.is_new => {
                let mut steps = vec![SagaStep::record(BookingEvent::Started {
                    resources: resources.clone(),
                })];
                steps.push(SagaStep::schedule("deadline", DEADLINE));
                for resource in resources {
                    steps.push(SagaStep::send_compensable(
                        ResourceCommand::Hold {
                            resource: resource.clone(),
                            order: order.clone(),
                        },
                        ResourceCommand::Free {
                            resource,
                            order: order.clone(),
                        },
                    ));
                }
                steps
            }
            RequestEvent::Confirmed => vec![SagaStep::complete()],
            RequestEvent::Requested { .. } => vec![],
        })
    }

    fn apply(state: &mut BookingState, event: &BookingEvent) {
        let BookingEvent::Started { resources } = event;
        state.resources.clone_from(resources);
    }
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// An event store that fails the next `n` appends to one category, with a
/// transient error, to simulate a crash or an outage at that point.
#[derive(Debug)]
struct Flaky {
    inner: Arc<MemoryStore>,
    category: &'static str,
    /// Appends to the category that pass before the failures start.
    skip: AtomicU32,
    failures: AtomicU32,
}

#[async_trait]
impl EventStore for Flaky {
    fn backend(&self) -> &'static str {
        "flaky"
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> orchestrix::Result<Vec<orchestrix::Result<AppendResult>>> {
        let ours = requests
            .iter()
            .any(|r| r.stream_id.category() == self.category);
        let skipped = ours
            && self
                .skip
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if ours
            && !skipped
            && self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(Error::backend("flaky", "append", true, "injected failure"));
        }
        self.inner.append_batch(requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> orchestrix::Result<Vec<RecordedEvent>> {
        self.inner.read_stream(stream, from, direction, limit).await
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> orchestrix::Result<Vec<RecordedEvent>> {
        self.inner.read_all(after, limit, filter).await
    }

    async fn stream_revision(&self, stream: &StreamId) -> orchestrix::Result<Option<u64>> {
        self.inner.stream_revision(stream).await
    }

    async fn head_position(&self) -> orchestrix::Result<u64> {
        self.inner.head_position().await
    }

    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.notifications()
    }
}

fn app_on(store: Store) -> Application {
    Application::builder(store)
        .aggregate::<Request>()
        .aggregate::<Resource>()
        .build()
        .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(
        chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .to_utc(),
    )
}

fn engine(app: &Application, clock: &ManualClock) -> SagaEngine<Booking> {
    SagaEngine::with_config(
        Booking,
        app,
        SagaConfig::default().with_clock(clock.clone()),
    )
    .unwrap()
}

async fn request(app: &Application, order: &str, resources: &[&str]) {
    let resources = resources.iter().map(|r| (*r).to_owned()).collect();
    app.execute(RequestCommand::Request {
        order: order.into(),
        resources,
    })
    .await
    .unwrap();
}

async fn resource_events(store: &Store, resource: &str) -> Vec<String> {
    let stream = StreamId::new("resource", resource).unwrap();
    let events = store.read_stream_forward(&stream, 0, 100).await.unwrap();
    events
        .iter()
        .map(|e| match e.decode::<ResourceEvent>().unwrap() {
            ResourceEvent::Held { order } => format!("held by {order}"),
            ResourceEvent::Freed { order } => format!("freed by {order}"),
            ResourceEvent::Broken => "broken".to_owned(),
            ResourceEvent::Locked => "locked".to_owned(),
        })
        .collect()
}

async fn saga_event_types(store: &Store, order: &str) -> Vec<String> {
    let stream = StreamId::new("saga_booking", order).unwrap();
    store
        .read_stream_forward(&stream, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type().to_owned())
        .collect()
}

async fn pending_timers(store: &Store, clock: &ManualClock) -> usize {
    let far = clock.now_plus(Duration::from_secs(365 * 24 * 3600));
    store
        .backend()
        .timers
        .due_timers("booking", far, 100)
        .await
        .unwrap()
        .len()
}

trait NowPlus {
    fn now_plus(&self, by: Duration) -> chrono::DateTime<chrono::Utc>;
}

impl NowPlus for ManualClock {
    fn now_plus(&self, by: Duration) -> chrono::DateTime<chrono::Utc> {
        use orchestrix::saga::Clock as _;
        self.now() + chrono::Duration::from_std(by).unwrap()
    }
}

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took too long"))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn completes_and_cancels_its_timeout() {
    let app = app_on(Store::memory());
    let clock = clock();
    let engine = engine(&app, &clock);
    request(&app, "o1", &["a", "b"]).await;
    assert_eq!(engine.catch_up().await.unwrap(), 1);
    assert_eq!(
        engine.status("o1").await.unwrap(),
        Some(SagaStatus::Running)
    );
    let instance = engine.instance("o1").await.unwrap().unwrap();
    assert_eq!(instance.state.resources, ["a", "b"]);
    assert_eq!(instance.commands_sent, 2);
    assert_eq!(instance.compensations.len(), 2);
    assert!(instance.timeouts.contains_key("deadline"));
    assert_eq!(pending_timers(app.store(), &clock).await, 1);

    app.execute(RequestCommand::Confirm { order: "o1".into() })
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        engine.status("o1").await.unwrap(),
        Some(SagaStatus::Completed)
    );
    assert_eq!(
        pending_timers(app.store(), &clock).await,
        0,
        "completion cancels the deadline"
    );
    assert_eq!(resource_events(app.store(), "a").await, ["held by o1"]);
    assert_eq!(resource_events(app.store(), "b").await, ["held by o1"]);

    // A deadline that would have passed changes nothing now.
    clock.advance(DEADLINE * 2);
    assert_eq!(engine.fire_due_timers().await.unwrap(), 0);
    assert_eq!(
        engine.status("o1").await.unwrap(),
        Some(SagaStatus::Completed)
    );
    assert_eq!(engine.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_rejected_command_compensates_the_completed_steps_in_reverse_order() {
    let app = app_on(Store::memory());
    let clock = clock();
    let engine = engine(&app, &clock);
    app.execute(ResourceCommand::Break {
        resource: "c".into(),
    })
    .await
    .unwrap();
    request(&app, "o2", &["a", "b", "c", "d"]).await;
    engine.catch_up().await.unwrap();

    let instance = engine.instance("o2").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Compensated);
    assert!(
        instance
            .reason
            .as_deref()
            .unwrap()
            .contains("the resource is broken"),
        "{:?}",
        instance.reason
    );
    assert_eq!(
        resource_events(app.store(), "a").await,
        ["held by o2", "freed by o2"]
    );
    assert_eq!(
        resource_events(app.store(), "b").await,
        ["held by o2", "freed by o2"]
    );
    assert_eq!(resource_events(app.store(), "c").await, ["broken"]);
    assert!(
        resource_events(app.store(), "d").await.is_empty(),
        "steps after the rejection are skipped"
    );
    assert_eq!(
        pending_timers(app.store(), &clock).await,
        0,
        "failure cancels the deadline"
    );

    // Reverse order: b was freed before a.
    let freed: Vec<_> = app
        .store()
        .read_all(
            0,
            100,
            &Filter::all().event_types(["test.booking.resource.Freed"]),
        )
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_id.entity_id().to_owned())
        .collect();
    assert_eq!(freed, ["b", "a"]);

    let types = saga_event_types(app.store(), "o2").await;
    let tail: Vec<_> = types
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "orchestrix.saga.CompensationStarted",
            "orchestrix.saga.CompensationSent",
            "orchestrix.saga.CompensationSent",
            "orchestrix.saga.Compensated"
        ]
    );
}

#[tokio::test]
async fn a_timeout_compensates() {
    let app = app_on(Store::memory());
    let clock = clock();
    let engine = engine(&app, &clock);
    request(&app, "o3", &["a"]).await;
    engine.catch_up().await.unwrap();
    assert_eq!(engine.fire_due_timers().await.unwrap(), 0, "not due yet");

    clock.advance(DEADLINE + Duration::from_secs(1));
    assert_eq!(engine.fire_due_timers().await.unwrap(), 1);
    let instance = engine.instance("o3").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Compensated);
    assert_eq!(
        instance.reason.as_deref(),
        Some("timeout `deadline` expired")
    );
    assert_eq!(
        resource_events(app.store(), "a").await,
        ["held by o3", "freed by o3"]
    );
    assert_eq!(pending_timers(app.store(), &clock).await, 0);
    assert_eq!(
        engine.fire_due_timers().await.unwrap(),
        0,
        "a timer fires once"
    );

    // A late confirmation is ignored.
    app.execute(RequestCommand::Confirm { order: "o3".into() })
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(
        engine.status("o3").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
}

#[tokio::test]
async fn a_rejected_compensation_leaves_the_saga_failed() {
    let app = app_on(Store::memory());
    let clock = clock();
    let engine = engine(&app, &clock);
    request(&app, "o4", &["a", "b"]).await;
    engine.catch_up().await.unwrap();
    app.execute(ResourceCommand::Lock {
        resource: "a".into(),
    })
    .await
    .unwrap();
    clock.advance(DEADLINE * 2);
    engine.fire_due_timers().await.unwrap();

    let instance = engine.instance("o4").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Failed);
    let reason = instance.reason.unwrap();
    assert!(
        reason.starts_with("timeout `deadline` expired; then compensation #0"),
        "{reason}"
    );
    assert!(reason.contains("the resource is locked"), "{reason}");
    assert_eq!(
        resource_events(app.store(), "b").await,
        ["held by o4", "freed by o4"],
        "b was compensated first"
    );
    assert_eq!(
        resource_events(app.store(), "a").await,
        ["held by o4", "locked"]
    );
    let listed = engine.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, SagaStatus::Failed);
}

#[tokio::test]
async fn redelivered_events_do_not_duplicate_commands() {
    let app = app_on(Store::memory());
    let clock = clock();
    let engine = engine(&app, &clock);
    request(&app, "o5", &["a"]).await;
    let events = app
        .store()
        .read_all(0, 10, &Filter::all().categories(["request"]))
        .await
        .unwrap();
    let requested = &events[0];
    assert!(matches!(
        engine.handle_event(requested).await.unwrap(),
        HandleOutcome::Handled { commands: 1, .. }
    ));
    assert_eq!(
        engine.handle_event(requested).await.unwrap(),
        HandleOutcome::Duplicate
    );
    // Even a second engine (another process) sees it as handled.
    let other = engine_on_same_app(&app, &clock);
    assert_eq!(
        other.handle_event(requested).await.unwrap(),
        HandleOutcome::Duplicate
    );
    assert_eq!(resource_events(app.store(), "a").await, ["held by o5"]);
    assert_eq!(
        engine.instance("o5").await.unwrap().unwrap().commands_sent,
        1
    );
}

fn engine_on_same_app(app: &Application, clock: &ManualClock) -> SagaEngine<Booking> {
    engine(app, clock)
}

#[tokio::test]
async fn a_crash_before_the_saga_records_its_step_resends_the_same_command_ids() {
    let memory = Arc::new(MemoryStore::new());
    let flaky = Arc::new(Flaky {
        inner: memory.clone(),
        category: "saga_booking",
        // The write-ahead record of the commands passes; the record of
        // their outcome fails.
        skip: AtomicU32::new(1),
        failures: AtomicU32::new(1),
    });
    let backend = Backend {
        events: flaky,
        ..Backend::from_all(memory)
    };
    let app = app_on(Store::new(backend));
    let clock = clock();
    let engine = engine(&app, &clock);
    request(&app, "o6", &["a", "b"]).await;

    // The commands go out, then recording the transition fails: as if the
    // process died between the two.
    let err = engine.catch_up().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(resource_events(app.store(), "a").await, ["held by o6"]);
    let instance = engine.instance("o6").await.unwrap().unwrap();
    assert_eq!(instance.commands_sent, 0, "no outcome recorded");
    assert_eq!(instance.in_doubt.len(), 2, "both commands in doubt");

    // Redelivery: the same command ids are sent again and the aggregates drop them.
    engine.catch_up().await.unwrap();
    assert_eq!(resource_events(app.store(), "a").await, ["held by o6"]);
    assert_eq!(resource_events(app.store(), "b").await, ["held by o6"]);
    let instance = engine.instance("o6").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Running);
    assert_eq!(instance.commands_sent, 2);
}

#[tokio::test]
async fn commands_carry_the_correlation_and_the_trigger() {
    let app = app_on(Store::memory());
    let clock = clock();
    let engine = engine(&app, &clock);
    request(&app, "o7", &["a"]).await;
    engine.catch_up().await.unwrap();
    let trigger = app
        .store()
        .read_all(0, 10, &Filter::all().categories(["request"]))
        .await
        .unwrap()[0]
        .id();
    let held = &app
        .store()
        .read_stream_forward(&StreamId::new("resource", "a").unwrap(), 0, 1)
        .await
        .unwrap()[0];
    let meta = &held.record.metadata;
    assert_eq!(meta.correlation_id.as_deref(), Some("o7"));
    assert_eq!(
        meta.extensions
            .get(saga::TRIGGER_EXTENSION)
            .map(String::as_str),
        Some(trigger.to_string().as_str())
    );
    let command_id = meta.causation_id.as_deref().unwrap();
    assert!(
        command_id.starts_with(&format!("booking:o7:{trigger}:2:")),
        "{command_id}"
    );
    // The saga's own stream records the trigger as causation.
    let saga_stream = StreamId::new("saga_booking", "o7").unwrap();
    let first = &app
        .store()
        .read_stream_forward(&saga_stream, 0, 1)
        .await
        .unwrap()[0];
    assert_eq!(
        first.record.metadata.causation_id.as_deref(),
        Some(trigger.to_string().as_str())
    );
    assert_eq!(first.record.metadata.correlation_id.as_deref(), Some("o7"));
}

#[tokio::test]
async fn an_interrupted_compensation_is_finished_by_recover() {
    let memory = Arc::new(MemoryStore::new());
    let flaky = Arc::new(Flaky {
        inner: memory.clone(),
        category: "resource",
        skip: AtomicU32::new(0),
        failures: AtomicU32::new(0),
    });
    let backend = Backend {
        events: flaky.clone(),
        ..Backend::from_all(memory)
    };
    let app = app_on(Store::new(backend));
    let clock = clock();
    let engine = engine(&app, &clock);
    request(&app, "o8", &["a"]).await;
    engine.catch_up().await.unwrap();

    // The deadline fires, but the compensation cannot reach the resource.
    flaky.failures.store(1, Ordering::SeqCst);
    clock.advance(DEADLINE * 2);
    assert!(engine.fire_due_timers().await.unwrap_err().is_transient());
    assert_eq!(
        engine.status("o8").await.unwrap(),
        Some(SagaStatus::Compensating)
    );
    assert_eq!(
        engine.list().await.unwrap()[0].status,
        SagaStatus::Compensating
    );

    assert_eq!(engine.recover().await.unwrap(), 1);
    assert_eq!(
        engine.status("o8").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
    assert_eq!(
        resource_events(app.store(), "a").await,
        ["held by o8", "freed by o8"]
    );
    assert_eq!(engine.recover().await.unwrap(), 0);
}

#[tokio::test]
async fn events_without_steps_record_nothing() {
    let app = app_on(Store::memory());
    let clock = clock();
    let engine = engine(&app, &clock);
    // Another `Requested` for a running instance yields no steps: nothing is
    // recorded.
    request(&app, "o9", &["a"]).await;
    engine.catch_up().await.unwrap();
    let before = saga_event_types(app.store(), "o9").await.len();
    let events = app
        .store()
        .read_all(0, 10, &Filter::all().categories(["request"]))
        .await
        .unwrap();
    let mut replayed = events[0].clone();
    replayed.record.id = uuid::Uuid::now_v7(); // a different event of the same shape
    assert_eq!(
        engine.handle_event(&replayed).await.unwrap(),
        HandleOutcome::Ignored
    );
    assert_eq!(saga_event_types(app.store(), "o9").await.len(), before);
    assert!(engine.stream_id("not a valid id").is_err());
}

#[tokio::test]
async fn a_restarted_engine_resumes_from_the_persisted_state_and_fires_the_pending_timeout() {
    let memory = Arc::new(MemoryStore::new());
    let clock = clock();
    {
        // First "process": takes the request, holds a and b, then dies.
        let app = app_on(Store::new(Backend::from_all(memory.clone())));
        let engine = engine(&app, &clock);
        request(&app, "r1", &["a", "b"]).await;
        request(&app, "r2", &["c"]).await;
        engine.catch_up().await.unwrap();
    }
    clock.advance(DEADLINE + Duration::from_secs(5));
    // Second "process" on the same backend: new application, new engine.
    let app = app_on(Store::new(Backend::from_all(memory.clone())));
    let engine = engine(&app, &clock);
    let instance = engine.instance("r1").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Running);
    assert_eq!(instance.state.resources, ["a", "b"]);
    assert_eq!(
        engine.catch_up().await.unwrap(),
        0,
        "the checkpoint was kept"
    );
    // r2 is confirmed meanwhile; r1 is not and its deadline has passed.
    app.execute(RequestCommand::Confirm { order: "r2".into() })
        .await
        .unwrap();
    engine.catch_up().await.unwrap();
    assert_eq!(engine.fire_due_timers().await.unwrap(), 1);
    assert_eq!(
        engine.status("r1").await.unwrap(),
        Some(SagaStatus::Compensated)
    );
    assert_eq!(
        engine.status("r2").await.unwrap(),
        Some(SagaStatus::Completed)
    );
    assert_eq!(
        resource_events(app.store(), "a").await,
        ["held by r1", "freed by r1"]
    );
    assert_eq!(resource_events(app.store(), "c").await, ["held by r2"]);
}

fn runtime_app(
    memory: &Arc<MemoryStore>,
    clock: &ManualClock,
) -> (Application, SagaEngine<Booking>) {
    let config = SagaConfig::default()
        .with_clock(clock.clone())
        .with_timer_interval(Duration::from_millis(10));
    let consumer = ConsumerConfig::default().partitions(4).checkpoint_every(1);
    let app = Application::builder(Store::new(Backend::from_all(memory.clone())))
        .aggregate::<Request>()
        .aggregate::<Resource>()
        .saga_with(Booking, config, consumer)
        .build()
        .unwrap();
    let engine = app.saga::<Booking>().unwrap();
    (app, engine)
}

async fn wait_for_status(engine: &SagaEngine<Booking>, order: &str, status: SagaStatus) {
    bounded(&format!("saga {order} reaching {status}"), async {
        while engine.status(order).await.unwrap() != Some(status) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_the_runtime_a_dropped_runtime_resumes_and_its_pending_timeout_fires() {
    let memory = Arc::new(MemoryStore::new());
    let clock = clock();
    {
        let (app, engine) = runtime_app(&memory, &clock);
        let running = Runtime::start(&app).await.unwrap();
        request(&app, "k1", &["a", "b"]).await;
        request(&app, "k2", &["c"]).await;
        wait_for_status(&engine, "k1", SagaStatus::Running).await;
        wait_for_status(&engine, "k2", SagaStatus::Running).await;
        bounded("catch-up", running.catch_up()).await.unwrap();
        // Dropped, not shut down: as a crash would.
        drop(running);
    }
    let (app, engine) = runtime_app(&memory, &clock);
    // Events that arrive while no runtime runs.
    app.execute(RequestCommand::Confirm { order: "k2".into() })
        .await
        .unwrap();
    request(&app, "k3", &["d"]).await;
    clock.advance(DEADLINE + Duration::from_secs(1));
    let running = Runtime::start(&app).await.unwrap();
    wait_for_status(&engine, "k1", SagaStatus::Compensated).await;
    wait_for_status(&engine, "k2", SagaStatus::Completed).await;
    bounded("catch-up", running.catch_up()).await.unwrap();
    assert_eq!(
        resource_events(app.store(), "a").await,
        ["held by k1", "freed by k1"]
    );
    assert_eq!(
        resource_events(app.store(), "b").await,
        ["held by k1", "freed by k1"]
    );
    assert_eq!(resource_events(app.store(), "c").await, ["held by k2"]);
    // k3 started after the clock moved: its deadline is still ahead.
    wait_for_status(&engine, "k3", SagaStatus::Running).await;
    assert_eq!(resource_events(app.store(), "d").await, ["held by k3"]);
    bounded("shutdown", running.shutdown()).await.unwrap();
}

// ---------------------------------------------------------------------------
// Two processes on one instance: appends conflict, and are retried.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "test.poll")]
enum VoteEvent {
    Cast { ballot: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "test.poll.saga")]
enum TallyEvent {
    Counted { ballot: u32 },
}

#[derive(Debug)]
struct Tally;

impl Saga for Tally {
    const NAME: &'static str = "tally";
    type State = Vec<u32>;
    type Event = TallyEvent;
    type Command = ResourceCommand;

    fn filter(&self) -> Filter {
        Filter::all().categories(["vote"])
    }

    fn correlate(&self, _: &RecordedEvent) -> Option<String> {
        Some("poll".to_owned())
    }

    fn react(
        &self,
        _: &SagaContext<'_, Vec<u32>>,
        event: &RecordedEvent,
    ) -> orchestrix::Result<Vec<SagaStep<Self>>> {
        let VoteEvent::Cast { ballot } = event.decode()?;
        Ok(vec![SagaStep::record(TallyEvent::Counted { ballot })])
    }

    fn apply(state: &mut Vec<u32>, event: &TallyEvent) {
        let TallyEvent::Counted { ballot } = event;
        state.push(*ballot);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_on_one_instance_retry_their_conflicts() {
    let app = app_on(Store::memory());
    for ballot in 0..24 {
        let stream = StreamId::new("vote", &ballot.to_string()).unwrap();
        let payload = VoteEvent::Cast { ballot }.to_payload().unwrap();
        let record = orchestrix::EventRecord::json("test.poll.Cast", 1, &payload);
        app.store()
            .append(
                &stream,
                orchestrix::ExpectedRevision::NoStream,
                vec![record],
            )
            .await
            .unwrap();
    }
    let events = app.store().read_all(0, 100, &Tally.filter()).await.unwrap();
    // Separate engines have separate in-process locks, like two processes.
    let config = SagaConfig {
        conflict_attempts: 50,
        ..SagaConfig::default()
    };
    let engines = [
        SagaEngine::with_config(Tally, &app, config.clone()).unwrap(),
        SagaEngine::with_config(Tally, &app, config).unwrap(),
    ];
    let mut tasks = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let engine = engines[i % 2].clone();
        tasks.push(tokio::spawn(
            async move { engine.handle_event(&event).await },
        ));
    }
    for task in tasks {
        bounded("handling", task).await.unwrap().unwrap();
    }
    let instance = engines[0].instance("poll").await.unwrap().unwrap();
    let mut counted = instance.state.clone();
    counted.sort_unstable();
    assert_eq!(
        counted,
        (0..24).collect::<Vec<_>>(),
        "every vote counted once"
    );
    assert_eq!(instance.handled.len(), 24);
}
