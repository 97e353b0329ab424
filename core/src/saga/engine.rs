//! [`SagaEngine`]: carries out what a saga decides, and records it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::clock::{Clock, SystemClock};
use super::instance::{SagaInstance, SagaStatus, SagaSummary};
use super::locks::InstanceLocks;
use super::record::{self, EngineRecord, Entry, STATUS_TYPES};
use super::{Saga, SagaCommand, SagaContext, SagaStep, TRIGGER_EXTENSION};
use crate::app::Application;
use crate::error::{Error, Result};
use crate::event::{Metadata, RecordedEvent};
use crate::executor::CommandContext;
use crate::id::StreamId;
use crate::runtime::{Delivery, EventHandler};
use crate::store::{ExpectedRevision, Filter, Store, Timer};

/// Saga engine settings.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// The clock timeouts are scheduled and fired by.
    pub clock: Arc<dyn Clock>,
    /// How often the timer loop looks for due timeouts.
    pub timer_interval: Duration,
    /// Due timers fired per look.
    pub timer_batch: usize,
    /// Attempts in all when another process changed the same instance
    /// concurrently (each attempt reloads the instance).
    pub conflict_attempts: u32,
    /// How long a trigger waits for the engine to be bound to its
    /// [`Application`] before failing with a transient timeout.
    pub bind_timeout: Duration,
    /// Events read per round trip.
    pub read_batch: usize,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            timer_interval: Duration::from_millis(500),
            timer_batch: 100,
            conflict_attempts: 5,
            bind_timeout: Duration::from_secs(30),
            read_batch: 512,
        }
    }
}

impl SagaConfig {
    /// Uses another clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Looks for due timeouts this often.
    #[must_use]
    pub fn with_timer_interval(mut self, interval: Duration) -> Self {
        self.timer_interval = interval;
        self
    }
}

/// What handling one event or timer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleOutcome {
    /// [`Saga::correlate`] returned `None`.
    Uncorrelated,
    /// Nothing to do: no steps, a finished instance, or a stale timer.
    Ignored,
    /// The trigger had been handled before; nothing was done again.
    Duplicate,
    /// Steps were carried out and recorded.
    Handled {
        /// Commands sent (forward steps; compensations not counted).
        commands: usize,
        /// The instance's status afterwards.
        status: SagaStatus,
    },
}

/// What started a handling: an event or a timeout.
enum Trigger<'a> {
    Event(&'a RecordedEvent),
    Timer { name: String, timer_id: String },
}

impl Trigger<'_> {
    fn id(&self) -> String {
        match self {
            Self::Event(e) => e.id().to_string(),
            Self::Timer { timer_id, .. } => timer_id.clone(),
        }
    }
}

/// Runs one [`Saga`]: handles its events and timeouts, persists every
/// transition in the instance's stream, sends commands and compensations.
/// Cheap to clone.
///
/// Create it bound to an application ([`new`](Self::new)), or unbound while the
/// application is being built ([`unbound`](Self::unbound), or
/// [`ApplicationBuilder::saga`](crate::ApplicationBuilder::saga)) and [`bind`](Self::bind) it once built.
pub struct SagaEngine<S: Saga> {
    inner: Arc<Inner<S>>,
}

struct Inner<S: Saga> {
    saga: S,
    store: Store,
    app: watch::Sender<Option<Application>>,
    config: SagaConfig,
    locks: InstanceLocks,
    category: String,
    handler_name: String,
}

impl<S: Saga> Clone for SagaEngine<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Saga> fmt::Debug for SagaEngine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaEngine")
            .field("saga", &self.inner.saga)
            .field("store", &self.inner.store)
            .field("bound", &self.inner.app.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl<S: Saga> SagaEngine<S> {
    /// An engine bound to `app`, with default settings.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when [`Saga::NAME`] is not a valid category part.
    pub fn new(saga: S, app: &Application) -> Result<Self> {
        Self::with_config(saga, app, SagaConfig::default())
    }

    /// An engine bound to `app`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_config(saga: S, app: &Application, config: SagaConfig) -> Result<Self> {
        let engine = Self::unbound(saga, app.store().clone(), config)?;
        engine.bind(app);
        Ok(engine)
    }

    /// An engine not bound to an application yet: it handles nothing until
    /// [`bind`](Self::bind) is called (triggers wait up to
    /// [`SagaConfig::bind_timeout`]).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn unbound(saga: S, store: Store, config: SagaConfig) -> Result<Self> {
        let category = super::category(S::NAME);
        crate::id::validate_category(&category)?;
        Ok(Self {
            inner: Arc::new(Inner {
                saga,
                store,
                app: watch::channel(None).0,
                config,
                locks: InstanceLocks::default(),
                handler_name: format!("saga-{}", S::NAME),
                category,
            }),
        })
    }

    /// Binds the engine to the application whose commands it sends.
    pub fn bind(&self, app: &Application) {
        self.inner.app.send_replace(Some(app.clone()));
    }

    /// Forgets the application (the application may hold the engine, so this
    /// breaks the reference cycle at shutdown).
    pub fn unbind(&self) {
        self.inner.app.send_replace(None);
    }

    /// The saga.
    #[must_use]
    pub fn saga(&self) -> &S {
        &self.inner.saga
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &SagaConfig {
        &self.inner.config
    }

    /// The stream of an instance: `saga_{NAME}-{correlation}`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a correlation id that is not a valid
    /// stream entity id.
    pub fn stream_id(&self, correlation: &str) -> Result<StreamId> {
        StreamId::new(&self.inner.category, correlation)
    }

    async fn app(&self) -> Result<Application> {
        let after = self.inner.config.bind_timeout;
        let mut rx = self.inner.app.subscribe();
        match tokio::time::timeout(after, rx.wait_for(Option::is_some)).await {
            Ok(Ok(app)) => app.as_ref().cloned().ok_or(Error::Shutdown {
                component: "saga engine",
            }),
            Ok(Err(_)) => Err(Error::Shutdown {
                component: "saga engine",
            }),
            Err(_) => Err(Error::Timeout {
                operation: format!(
                    "saga `{}` waiting to be bound to its application (`SagaEngine::bind` or `saga::start`)",
                    S::NAME
                ),
                after,
            }),
        }
    }

    /// Loads an instance (a fresh one, not yet existing, when its stream is empty).
    ///
    /// # Errors
    /// A store or decode error, or an invalid correlation id.
    pub async fn load(&self, correlation: &str) -> Result<SagaInstance<S>> {
        let stream = self.stream_id(correlation)?;
        self.load_stream(&stream, correlation).await
    }

    async fn load_stream(&self, stream: &StreamId, correlation: &str) -> Result<SagaInstance<S>> {
        let mut instance = SagaInstance::new(correlation);
        let batch = self.inner.config.read_batch.max(1);
        let mut from = 0;
        loop {
            let events = self
                .inner
                .store
                .read_stream_forward(stream, from, batch)
                .await?;
            for e in &events {
                let entry = record::decode::<S>(&self.inner.store, e)?;
                instance.apply(&entry);
                instance.revision = Some(e.revision);
            }
            match events.last() {
                Some(last) if events.len() == batch => from = last.revision + 1,
                _ => break,
            }
        }
        Ok(instance)
    }

    /// An instance, if it exists.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn instance(&self, correlation: &str) -> Result<Option<SagaInstance<S>>> {
        let instance = self.load(correlation).await?;
        Ok(instance.exists().then_some(instance))
    }

    /// An instance's status, if it exists.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub async fn status(&self, correlation: &str) -> Result<Option<SagaStatus>> {
        Ok(self.instance(correlation).await?.map(|i| i.status))
    }

    /// Every instance with its status, by correlation id.
    ///
    /// # Errors
    /// A store or decode error.
    pub async fn list(&self) -> Result<Vec<SagaSummary>> {
        let filter = Filter::all()
            .categories([self.inner.category.as_str()])
            .event_types(STATUS_TYPES);
        let batch = self.inner.config.read_batch.max(1);
        let mut all: BTreeMap<String, SagaSummary> = BTreeMap::new();
        let mut after = 0;
        loop {
            let events = self.inner.store.read_all(after, batch, &filter).await?;
            let Some(last) = events.last() else { break };
            after = last.position;
            for e in &events {
                let correlation = e.stream_id.entity_id().to_owned();
                let summary = all.entry(correlation.clone()).or_insert(SagaSummary {
                    correlation,
                    status: SagaStatus::Running,
                    reason: None,
                });
                if let Entry::Engine(r) = record::decode::<S>(&self.inner.store, e)? {
                    match r {
                        EngineRecord::Started { .. } => summary.status = SagaStatus::Running,
                        EngineRecord::Completed => summary.status = SagaStatus::Completed,
                        EngineRecord::CompensationStarted { reason } => {
                            summary.status = SagaStatus::Compensating;
                            summary.reason = Some(reason);
                        }
                        EngineRecord::Compensated => summary.status = SagaStatus::Compensated,
                        EngineRecord::Failed { reason } => {
                            summary.status = SagaStatus::Failed;
                            summary.reason = Some(reason);
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(all.into_values().collect())
    }

    /// Handles one event: correlates it, and (unless its instance handled it
    /// already) reacts to it.
    ///
    /// # Errors
    /// A store error or a transient command failure (retry), or a permanent
    /// error from [`Saga::react`] or a command that fails for another reason
    /// than a rejection (dead-letter). Nothing is recorded then; a redelivery
    /// re-sends the same command ids.
    pub async fn handle_event(&self, event: &RecordedEvent) -> Result<HandleOutcome> {
        let Some(correlation) = self.inner.saga.correlate(event) else {
            return Ok(HandleOutcome::Uncorrelated);
        };
        self.handle_trigger(&correlation, Trigger::Event(event))
            .await
    }

    async fn handle_trigger(
        &self,
        correlation: &str,
        trigger: Trigger<'_>,
    ) -> Result<HandleOutcome> {
        let stream = self.stream_id(correlation)?;
        let span = tracing::info_span!(
            "orchestrix.saga",
            otel.kind = "internal",
            saga = S::NAME,
            correlation = %correlation,
            trigger = %trigger.id(),
            outcome = tracing::field::Empty,
        );
        let fut = async {
            let _guard = self.inner.locks.lock(correlation).await;
            let attempts = self.inner.config.conflict_attempts.max(1);
            let mut attempt = 0;
            let result = loop {
                attempt += 1;
                match self.try_trigger(&stream, correlation, &trigger).await {
                    Err(e @ Error::Conflict { .. }) if attempt < attempts => {
                        tracing::debug!(error = %e, attempt, "saga instance changed concurrently; reloading");
                    }
                    other => break other,
                }
            };
            let outcome = match &result {
                Ok(HandleOutcome::Handled { status, .. }) => status.as_str(),
                Ok(HandleOutcome::Duplicate) => "duplicate",
                Ok(_) => "ignored",
                Err(e) => e.kind(),
            };
            tracing::Span::current().record("outcome", outcome);
            result
        };
        fut.instrument(span).await
    }

    async fn try_trigger(
        &self,
        stream: &StreamId,
        correlation: &str,
        trigger: &Trigger<'_>,
    ) -> Result<HandleOutcome> {
        let app = self.app().await?;
        let instance = self.load_stream(stream, correlation).await?;
        let trigger_id = trigger.id();
        let stale_timer = async {
            if let Trigger::Timer { timer_id, .. } = trigger {
                self.cancel_timer(timer_id).await;
            }
        };
        if instance.handled.contains(&trigger_id) {
            if instance.status == SagaStatus::Compensating {
                self.compensate(&app, stream, instance).await?;
            }
            stale_timer.await;
            return Ok(HandleOutcome::Duplicate);
        }
        match instance.status {
            SagaStatus::Running => {}
            SagaStatus::Compensating => {
                self.compensate(&app, stream, instance).await?;
                stale_timer.await;
                return Ok(HandleOutcome::Ignored);
            }
            _ => {
                stale_timer.await;
                return Ok(HandleOutcome::Ignored);
            }
        }
        if let Trigger::Timer { name, timer_id } = trigger
            && instance
                .timeouts
                .get(name)
                .is_none_or(|t| &t.timer_id != timer_id)
        {
            stale_timer.await;
            return Ok(HandleOutcome::Ignored);
        }

        let now = self.inner.config.clock.now();
        let cx = SagaContext {
            correlation,
            state: &instance.state,
            // New until a trigger was handled: a write-ahead plan alone (a crash
            // before the first trigger was recorded) does not make it old.
            is_new: instance.handled.is_empty(),
            now,
        };
        let steps = match trigger {
            Trigger::Event(e) => self.inner.saga.react(&cx, e)?,
            Trigger::Timer { name, .. } => self.inner.saga.on_timeout(&cx, name)?,
        };
        if steps.is_empty() && matches!(trigger, Trigger::Event(_)) {
            return Ok(HandleOutcome::Ignored);
        }

        // Write ahead: the commands this trigger sends are recorded before
        // any runs, so that a crash (or a concurrent writer) between a
        // command's effect and the record of it leaves the command in doubt,
        // which compensation settles, instead of unknown.
        let mut planned = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            if let SagaStep::Send {
                command,
                compensation,
            } = step
            {
                planned.push(EngineRecord::CommandPlanned {
                    command_id: command_id::<S>(correlation, &trigger_id, index, command)?,
                    command: command.clone(),
                    compensation: compensation.clone(),
                });
            }
        }
        let instance = if planned.is_empty() {
            instance
        } else {
            let mut plan = Batch::new(instance);
            if !plan.working.exists() {
                plan.push(Entry::Engine(EngineRecord::Started {
                    saga: S::NAME.to_owned(),
                    correlation: correlation.to_owned(),
                }));
            }
            for record in planned {
                plan.push(Entry::Engine(record));
            }
            let metadata = Metadata {
                correlation_id: Some(correlation.to_owned()),
                causation_id: Some(trigger_id.clone()),
                ..Metadata::default()
            };
            let revision = self
                .append(stream, plan.base, &metadata, &plan.entries)
                .await?;
            let mut working = plan.working;
            working.revision = Some(revision);
            working
        };

        let mut batch = Batch::new(instance);
        if !batch.working.exists() {
            batch.push(Entry::Engine(EngineRecord::Started {
                saga: S::NAME.to_owned(),
                correlation: correlation.to_owned(),
            }));
        }
        if let Trigger::Timer { name, timer_id } = trigger {
            batch.push(Entry::Engine(EngineRecord::TimeoutFired {
                name: name.clone(),
                timer_id: timer_id.clone(),
            }));
            batch.cancel_after.insert(timer_id.clone());
        }
        let traceparent = match trigger {
            Trigger::Event(e) => e.record.metadata.traceparent.clone(),
            Trigger::Timer { .. } => None,
        };
        let mut failure = None;
        let mut finished = false;
        let mut commands = 0;
        // The planned commands not attempted yet (skipped if the loop stops).
        let mut unattempted: BTreeSet<String> = batch.working.in_doubt.keys().cloned().collect();
        for (index, step) in steps.into_iter().enumerate() {
            match step {
                SagaStep::Record(e) => batch.push(Entry::Saga(e)),
                SagaStep::Send {
                    command,
                    compensation,
                } => {
                    let command_id = command_id::<S>(correlation, &trigger_id, index, &command)?;
                    unattempted.remove(&command_id);
                    let mut context = self.context(correlation, &trigger_id, &command_id);
                    context.traceparent.clone_from(&traceparent);
                    match command.clone().dispatch(&app, context).await {
                        Ok(outcome) => {
                            commands += 1;
                            batch.push(Entry::Engine(EngineRecord::CommandSent {
                                command_id,
                                command,
                                compensation,
                                stream_id: outcome.stream_id.to_string(),
                                revision: outcome.revision,
                                duplicate: outcome.duplicate,
                            }));
                        }
                        Err(e @ Error::Rejected { .. }) => {
                            let reason = e.to_string();
                            tracing::info!(command = ?command, %reason, "saga command rejected; compensating");
                            batch.push(Entry::Engine(EngineRecord::CommandRejected {
                                command_id,
                                command,
                                reason: reason.clone(),
                            }));
                            failure = Some(reason);
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                SagaStep::Compensation(c) => {
                    batch.push(Entry::Engine(EngineRecord::CompensationRegistered {
                        compensation: c,
                    }));
                }
                SagaStep::Schedule { name, after } => {
                    let due_at =
                        now + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
                    let timer_id = format!("{}:{correlation}:{name}:{trigger_id}", S::NAME);
                    if let Some(old) = batch.working.timeouts.get(&name).cloned()
                        && old.timer_id != timer_id
                    {
                        batch.cancel_after.insert(old.timer_id.clone());
                        batch.push(Entry::Engine(EngineRecord::TimeoutCancelled {
                            name: name.clone(),
                            timer_id: old.timer_id,
                        }));
                    }
                    // Stored before the transition: a crash in between leaves a
                    // timer that no instance expects, which is ignored when due.
                    self.inner
                        .store
                        .backend()
                        .timers
                        .schedule_timer(Timer {
                            id: timer_id.clone(),
                            owner: S::NAME.to_owned(),
                            key: correlation.to_owned(),
                            due_at,
                            payload: serde_json::json!({ "name": name }),
                        })
                        .await?;
                    batch.push(Entry::Engine(EngineRecord::TimeoutScheduled {
                        name,
                        timer_id,
                        due_at,
                    }));
                }
                SagaStep::Cancel { name } => {
                    if let Some(old) = batch.working.timeouts.get(&name).cloned() {
                        batch.cancel_after.insert(old.timer_id.clone());
                        batch.push(Entry::Engine(EngineRecord::TimeoutCancelled {
                            name,
                            timer_id: old.timer_id,
                        }));
                    }
                }
                SagaStep::Complete => {
                    batch.push(Entry::Engine(EngineRecord::Completed));
                    finished = true;
                    break;
                }
                SagaStep::Fail { reason } => {
                    failure = Some(reason);
                    break;
                }
            }
        }
        for command_id in unattempted {
            // Only this trigger's plan: in doubt from an earlier trigger stays.
            if command_id.starts_with(&format!("{}:{correlation}:{trigger_id}:", S::NAME)) {
                batch.push(Entry::Engine(EngineRecord::CommandSkipped { command_id }));
            }
        }
        if finished || failure.is_some() {
            let pending: Vec<_> = batch
                .working
                .timeouts
                .iter()
                .map(|(n, t)| (n.clone(), t.timer_id.clone()))
                .collect();
            for (name, timer_id) in pending {
                batch.cancel_after.insert(timer_id.clone());
                batch.push(Entry::Engine(EngineRecord::TimeoutCancelled {
                    name,
                    timer_id,
                }));
            }
        }
        let (event_type, stream_id, position) = match trigger {
            Trigger::Event(e) => (
                Some(e.event_type().to_owned()),
                Some(e.stream_id.to_string()),
                Some(e.position),
            ),
            Trigger::Timer { .. } => (None, None, None),
        };
        batch.push(Entry::Engine(EngineRecord::TriggerHandled {
            trigger: trigger_id.clone(),
            event_type,
            stream_id,
            position,
        }));
        if let Some(reason) = failure.clone() {
            batch.push(Entry::Engine(EngineRecord::CompensationStarted { reason }));
        }
        let metadata = Metadata {
            correlation_id: Some(correlation.to_owned()),
            causation_id: Some(trigger_id),
            ..Metadata::default()
        };
        let Batch {
            entries,
            mut working,
            cancel_after,
            base,
        } = batch;
        working.revision = Some(self.append(stream, base, &metadata, &entries).await?);
        for timer_id in cancel_after {
            self.cancel_timer(&timer_id).await;
        }
        if failure.is_some() {
            working = self.compensate(&app, stream, working).await?;
        }
        Ok(HandleOutcome::Handled {
            commands,
            status: working.status,
        })
    }

    fn context(&self, correlation: &str, trigger: &str, command_id: &str) -> CommandContext {
        let mut context = CommandContext::with_id(command_id).correlated(correlation);
        context
            .extensions
            .insert(TRIGGER_EXTENSION.to_owned(), trigger.to_owned());
        context
    }

    async fn append(
        &self,
        stream: &StreamId,
        base: Option<u64>,
        metadata: &Metadata,
        entries: &[Entry<S>],
    ) -> Result<u64> {
        let records = record::encode::<S>(&self.inner.store, metadata, entries)?;
        let result = self
            .inner
            .store
            .append(stream, ExpectedRevision::from_current(base), records)
            .await?;
        Ok(result.last_revision)
    }

    async fn cancel_timer(&self, timer_id: &str) {
        if let Err(e) = self
            .inner
            .store
            .backend()
            .timers
            .cancel_timer(timer_id)
            .await
        {
            // A timer left behind is ignored when it comes due.
            tracing::warn!(saga = S::NAME, timer = timer_id, error = %e, "cannot cancel a saga timer");
        }
    }

    /// Sends the pending compensations, newest first, and records each. A
    /// rejected one leaves the saga failed; any other error is returned after
    /// recording the progress so far.
    async fn compensate(
        &self,
        app: &Application,
        stream: &StreamId,
        instance: SagaInstance<S>,
    ) -> Result<SagaInstance<S>> {
        let correlation = instance.correlation.clone();
        let original = instance
            .reason
            .clone()
            .unwrap_or_else(|| "the saga failed".to_owned());
        let in_doubt: Vec<(String, S::Command, Option<S::Command>)> = instance
            .in_doubt
            .iter()
            .map(|(id, (c, comp))| (id.clone(), c.clone(), comp.clone()))
            .collect();
        let mut batch = Batch::new(instance);
        let mut error = None;
        let mut rejected = false;
        // Settle the commands in doubt first: sent again under their own ids,
        // each runs now or is recognised as already applied, so that its
        // compensation (pushed last, run first) undoes it either way.
        for (command_id, command, compensation) in in_doubt {
            let context = self.context(&correlation, "settle", &command_id);
            match command.clone().dispatch(app, context).await {
                Ok(outcome) => batch.push(Entry::Engine(EngineRecord::CommandSent {
                    command_id,
                    command,
                    compensation,
                    stream_id: outcome.stream_id.to_string(),
                    revision: outcome.revision,
                    duplicate: outcome.duplicate,
                })),
                Err(e @ Error::Rejected { .. }) => {
                    batch.push(Entry::Engine(EngineRecord::CommandRejected {
                        command_id,
                        command,
                        reason: e.to_string(),
                    }));
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let pending: Vec<(usize, S::Command)> = if error.is_some() {
            Vec::new()
        } else {
            batch
                .working
                .pending_compensations()
                .map(|(i, c)| (i, c.clone()))
                .collect()
        };
        for (index, command) in pending {
            let command_id = format!("{}:{correlation}:compensate:{index}", S::NAME);
            let context = self.context(&correlation, "compensation", &command_id);
            match command.clone().dispatch(app, context).await {
                Ok(outcome) => batch.push(Entry::Engine(EngineRecord::CompensationSent {
                    index,
                    command_id,
                    stream_id: outcome.stream_id.to_string(),
                    duplicate: outcome.duplicate,
                })),
                Err(e @ Error::Rejected { .. }) => {
                    let reason = e.to_string();
                    tracing::warn!(saga = S::NAME, correlation = %correlation, command = ?command, %reason, "saga compensation rejected");
                    batch.push(Entry::Engine(EngineRecord::CompensationRejected {
                        index,
                        command_id,
                        reason: reason.clone(),
                    }));
                    batch.push(Entry::Engine(EngineRecord::Failed {
                        reason: format!("{original}; then compensation #{index} ({command:?}) was rejected: {reason}"),
                    }));
                    rejected = true;
                    break;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if error.is_none() && !rejected {
            batch.push(Entry::Engine(EngineRecord::Compensated));
        }
        let metadata = Metadata {
            correlation_id: Some(correlation),
            ..Metadata::default()
        };
        let Batch {
            entries,
            mut working,
            base,
            ..
        } = batch;
        if !entries.is_empty() {
            working.revision = Some(self.append(stream, base, &metadata, &entries).await?);
        }
        match error {
            Some(e) => Err(e),
            None => Ok(working),
        }
    }

    /// Fires the timeouts that are due by the engine's clock.
    ///
    /// # Errors
    /// A store error listing timers, or the first error of a timeout handling
    /// (the others are still tried; a failed timer stays and fires again).
    pub async fn fire_due_timers(&self) -> Result<usize> {
        let now = self.inner.config.clock.now();
        let due = self
            .inner
            .store
            .backend()
            .timers
            .due_timers(S::NAME, now, self.inner.config.timer_batch.max(1))
            .await?;
        let mut fired = 0;
        let mut first_error = None;
        for timer in due {
            let Some(name) = timer
                .payload
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
            else {
                tracing::warn!(saga = S::NAME, timer = %timer.id, "dropping a saga timer without a name");
                self.cancel_timer(&timer.id).await;
                continue;
            };
            match self
                .handle_trigger(
                    &timer.key,
                    Trigger::Timer {
                        name,
                        timer_id: timer.id.clone(),
                    },
                )
                .await
            {
                Ok(HandleOutcome::Handled { .. }) => fired += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(saga = S::NAME, timer = %timer.id, error = %e, "saga timeout failed; it fires again");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(fired),
        }
    }

    /// Finishes the compensation of instances left compensating (by a crash
    /// between recording a failure and sending its compensations).
    ///
    /// # Errors
    /// A store error, or the first compensation error.
    pub async fn recover(&self) -> Result<usize> {
        let mut recovered = 0;
        let mut first_error = None;
        for summary in self.list().await? {
            if summary.status != SagaStatus::Compensating {
                continue;
            }
            let stream = self.stream_id(&summary.correlation)?;
            let _guard = self.inner.locks.lock(&summary.correlation).await;
            let result = async {
                let app = self.app().await?;
                let instance = self.load_stream(&stream, &summary.correlation).await?;
                if instance.status == SagaStatus::Compensating {
                    self.compensate(&app, &stream, instance).await?;
                }
                Ok::<_, Error>(())
            }
            .await;
            match result {
                Ok(()) => recovered += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(recovered),
        }
    }

    /// Handles every stored event after this engine's own checkpoint (kept in
    /// the [`CheckpointStore`](crate::store::CheckpointStore) as
    /// `saga-catchup-{NAME}`), one at a time in global order, including the
    /// events its own commands cause, until none is left; returns how many it
    /// handled. For tests, demos and single-process tools; services run the
    /// engine under the partitioned consumer instead
    /// ([`ApplicationBuilder::saga`](crate::ApplicationBuilder::saga)).
    ///
    /// # Errors
    /// The first handling error; the checkpoint stays before that event.
    pub async fn catch_up(&self) -> Result<usize> {
        let key = format!("saga-catchup-{}", S::NAME);
        let checkpoints = &self.inner.store.backend().checkpoints;
        let mut after = checkpoints.load_checkpoint(&key).await?.unwrap_or(0);
        let filter = self.inner.saga.filter();
        let mut handled = 0;
        loop {
            let events = self
                .inner
                .store
                .read_all(after, self.inner.config.read_batch.max(1), &filter)
                .await?;
            if events.is_empty() {
                return Ok(handled);
            }
            for e in &events {
                self.handle_event(e).await?;
                after = e.position;
                checkpoints.save_checkpoint(&key, after).await?;
                handled += 1;
            }
        }
    }

    /// Spawns the timer loop ([`run_timers`](Self::run_timers)); it stops
    /// when the returned handle is stopped or dropped. Under the runtime,
    /// [`ApplicationBuilder::saga`](crate::ApplicationBuilder::saga) runs it instead.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    #[must_use]
    pub fn spawn_timers(&self) -> TimerLoop {
        let engine = self.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = stopped => {}
                () = engine.run_timers() => {}
            }
        });
        TimerLoop {
            name: S::NAME,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The timer loop, forever: [`recover`](Self::recover) once, then
    /// [`fire_due_timers`](Self::fire_due_timers) every
    /// [`SagaConfig::timer_interval`]. Errors are logged and retried.
    pub async fn run_timers(&self) {
        if let Err(e) = self.recover().await {
            tracing::warn!(saga = S::NAME, error = %e, "saga recovery failed; retried with the next event");
        }
        let every = self
            .inner
            .config
            .timer_interval
            .max(Duration::from_millis(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Errors are logged per timer; a failed timer fires again.
            let _ = self.fire_due_timers().await;
        }
    }
}

/// Entries to append, folded as they are pushed.
struct Batch<S: Saga> {
    base: Option<u64>,
    working: SagaInstance<S>,
    entries: Vec<Entry<S>>,
    cancel_after: BTreeSet<String>,
}

impl<S: Saga> Batch<S> {
    fn new(instance: SagaInstance<S>) -> Self {
        Self {
            base: instance.revision,
            working: instance,
            entries: Vec::new(),
            cancel_after: BTreeSet::new(),
        }
    }

    fn push(&mut self, entry: Entry<S>) {
        self.working.apply(&entry);
        self.entries.push(entry);
    }
}

/// The deterministic id of the command sent at step `index` for `trigger`:
/// the same trigger re-sends the same id, and a different command at the same
/// step (after the state changed under a concurrent writer) gets another one.
fn command_id<S: Saga>(
    correlation: &str,
    trigger: &str,
    index: usize,
    command: &S::Command,
) -> Result<String> {
    let bytes = serde_json::to_vec(command).map_err(|e| Error::encode("saga command", e))?;
    Ok(format!(
        "{}:{correlation}:{trigger}:{index}:{:016x}",
        S::NAME,
        fnv1a(&bytes)
    ))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[async_trait]
impl<S: Saga> EventHandler for SagaEngine<S> {
    fn name(&self) -> &str {
        &self.inner.handler_name
    }

    fn filter(&self) -> Filter {
        self.inner.saga.filter()
    }

    async fn handle(&self, event: &RecordedEvent, _delivery: &Delivery) -> Result<()> {
        self.handle_event(event).await.map(|_| ())
    }
}

/// A running timer loop ([`SagaEngine::spawn_timers`]); aborted when dropped.
#[derive(Debug)]
pub struct TimerLoop {
    name: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TimerLoop {
    /// The saga's name.
    #[must_use]
    pub fn saga(&self) -> &'static str {
        self.name
    }

    /// Stops the loop after the timer it is firing, if any.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TimerLoop {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
