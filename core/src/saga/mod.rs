//! Sagas (process managers): long-running business processes that react to
//! events by sending commands, compensate completed steps in reverse order when
//! they fail, and set durable timeouts.
//!
//! A saga is a state machine keyed by a correlation id. You declare it with the
//! [`Saga`] trait: which events it listens to ([`Saga::filter`]), which instance
//! an event belongs to ([`Saga::correlate`]), and what to do
//! ([`Saga::react`], [`Saga::on_timeout`]), as a list of [`SagaStep`]s. The
//! [`SagaEngine`] carries the steps out:
//!
//! - **State is an event stream.** Every transition of an instance is stored in
//!   the stream `saga_{NAME}-{correlation}`: the saga's own events
//!   ([`Saga::Event`], folded by [`Saga::apply`]) and the engine's bookkeeping
//!   (`orchestrix.saga.*`: trigger handled, command sent, timeout scheduled,
//!   compensation started, ...). The state is rebuilt by folding that stream,
//!   so it is auditable and replayable and survives restarts.
//! - **Commands** are data ([`SagaCommand`]), so that compensations recorded
//!   today can be sent after a restart tomorrow. Each command carries the
//!   saga's correlation id, the trigger in the `sagatrigger` extension, and a
//!   deterministic command id (`{saga}:{correlation}:{trigger}:{step}:{hash}`):
//!   a trigger delivered again re-sends the same ids, and the aggregate's
//!   executor drops the duplicates.
//! - **Write-ahead.** A trigger's commands are recorded as planned
//!   (`orchestrix.saga.CommandPlanned`, with their compensations) before any
//!   of them runs, and their outcomes after. A command whose outcome a crash
//!   kept from being recorded is *in doubt*; before compensating, the engine
//!   settles it by sending it again under its id (it runs now, or its
//!   aggregate recognises it), so that its compensation undoes it either way.
//! - **Compensation.** A step sent with a compensation (or a compensation
//!   registered on its own) is pushed on a stack; when the saga fails (a
//!   command is rejected, [`SagaStep::fail`], a timeout) the stack is unwound
//!   in reverse order. A rejected compensation leaves the saga
//!   [`Failed`](SagaStatus::Failed) for a person to look at.
//! - **Durable timeouts** live in the backend's [`TimerStore`](crate::store::TimerStore);
//!   [`SagaEngine::fire_due_timers`] (run by the timer loop) fires those that
//!   are due, also after a restart.
//! - **Idempotence.** Handled trigger ids are part of the state; a trigger seen
//!   again is skipped.
//!
//! The engine is an [`EventHandler`](crate::runtime::EventHandler), so the
//! partitioned consumer drives it; [`SagaEngine::catch_up`] drives it without
//! one (tests, demos, tools).
//!
//! ```
//! use orchestrix::saga::{Saga, SagaContext, SagaEngine, SagaStatus, SagaStep};
//! use orchestrix::store::Filter;
//! use orchestrix::{Aggregate, Application, Command, Event, RecordedEvent, Store};
//! use serde::{Deserialize, Serialize};
//!
//! // A tiny domain: a ticket that can be opened and closed.
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(prefix = "com.acme.desk")]
//! enum TicketEvent { Opened, Closed }
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! enum TicketCommand { Open(String), Close(String) }
//! impl Command for TicketCommand {
//!     fn aggregate_id(&self) -> String {
//!         match self { Self::Open(id) | Self::Close(id) => id.clone() }
//!     }
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("not open")]
//! struct NotOpen;
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Ticket { open: bool }
//! impl Aggregate for Ticket {
//!     const CATEGORY: &'static str = "ticket";
//!     type Command = TicketCommand;
//!     type Event = TicketEvent;
//!     type Error = NotOpen;
//!     fn handle(&self, c: &TicketCommand) -> Result<Vec<TicketEvent>, NotOpen> {
//!         match c {
//!             TicketCommand::Open(_) => Ok(vec![TicketEvent::Opened]),
//!             TicketCommand::Close(_) if self.open => Ok(vec![TicketEvent::Closed]),
//!             TicketCommand::Close(_) => Err(NotOpen),
//!         }
//!     }
//!     fn apply(&mut self, e: &TicketEvent) { self.open = matches!(e, TicketEvent::Opened) }
//! }
//!
//! // The saga: close every ticket as soon as it is opened.
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(prefix = "com.acme.desk.autoclose")]
//! enum AutoCloseEvent { Seen }
//!
//! #[derive(Debug)]
//! struct AutoClose;
//! impl Saga for AutoClose {
//!     const NAME: &'static str = "autoclose";
//!     type State = bool;
//!     type Event = AutoCloseEvent;
//!     type Command = TicketCommand;
//!     fn filter(&self) -> Filter { Filter::all().categories(["ticket"]) }
//!     fn correlate(&self, e: &RecordedEvent) -> Option<String> { Some(e.stream_id.entity_id().to_owned()) }
//!     fn react(&self, cx: &SagaContext<'_, bool>, e: &RecordedEvent) -> orchestrix::Result<Vec<SagaStep<Self>>> {
//!         Ok(match e.decode::<TicketEvent>()? {
//!             TicketEvent::Opened if !*cx.state => vec![
//!                 SagaStep::record(AutoCloseEvent::Seen),
//!                 SagaStep::send(TicketCommand::Close(cx.correlation.to_owned())),
//!             ],
//!             TicketEvent::Closed => vec![SagaStep::complete()],
//!             TicketEvent::Opened => vec![],
//!         })
//!     }
//!     fn apply(state: &mut bool, _: &AutoCloseEvent) { *state = true }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let app = Application::builder(Store::memory())
//!     .aggregate::<Ticket>()
//!     .saga(AutoClose) // run by `Runtime::start`; here driven by hand
//!     .build()?;
//! let engine: SagaEngine<AutoClose> = app.saga()?;
//! engine.bind(&app);
//! app.execute(TicketCommand::Open("t1".into())).await?;
//! // Handles `Opened` (sends `Close`), then the `Closed` it caused (completes).
//! assert_eq!(engine.catch_up().await?, 2);
//! assert_eq!(engine.status("t1").await?, Some(SagaStatus::Completed));
//! assert!(!app.load::<Ticket>("t1").await?.state.open);
//! # Ok::<(), orchestrix::Error>(()) }).unwrap();
//! ```

mod clock;
mod command;
mod engine;
mod instance;
mod locks;
mod record;
pub(crate) mod registry;
mod step;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::event::{Event, RecordedEvent};
use crate::store::Filter;

pub use clock::{Clock, ManualClock, SystemClock};
pub use command::SagaCommand;
pub use engine::{HandleOutcome, SagaConfig, SagaEngine, TimerLoop};
pub use instance::{PendingCompensation, PendingTimeout, SagaInstance, SagaStatus, SagaSummary};
pub use step::SagaStep;

/// The prefix of the event types the engine records in a saga's stream.
pub const ENGINE_EVENT_PREFIX: &str = "orchestrix.saga.";

/// The CloudEvents extension that names the trigger (event id or timer id) of
/// a command sent by a saga.
pub const TRIGGER_EXTENSION: &str = "sagatrigger";

/// A process manager: a state machine keyed by a correlation id.
///
/// `react` and `on_timeout` decide, without I/O, what to do; the
/// [`SagaEngine`] does it and records every transition. See the
/// [module documentation](self) for the guarantees.
pub trait Saga: Send + Sync + fmt::Debug + 'static {
    /// The saga's name: its stream category is `saga_{NAME}`, so ASCII letters,
    /// digits and `_`, at most 59 bytes. Never change it once instances exist.
    const NAME: &'static str;

    /// The state of one instance: the fold of its [`Event`](Saga::Event)s.
    type State: Default + Clone + Serialize + DeserializeOwned + Send + Sync + fmt::Debug + 'static;

    /// The saga's own events, recorded with [`SagaStep::record`].
    type Event: Event;

    /// The commands it sends, and their compensations (see [`SagaCommand`]).
    type Command: SagaCommand;

    /// The events it wants (its own stream category is best left out).
    fn filter(&self) -> Filter;

    /// Which instance an event belongs to; `None` ignores the event. The id
    /// must be a valid stream entity id (ASCII letters, digits and `-_.:@~+=`).
    fn correlate(&self, event: &RecordedEvent) -> Option<String>;

    /// What to do about an event, given the instance's state. For an instance
    /// that does not exist yet ([`SagaContext::is_new`]), returning no steps
    /// does not create it.
    ///
    /// # Errors
    /// An error stops the handling (nothing is recorded or sent) and goes to
    /// the consumer: a transient one is retried, a permanent one dead-lettered.
    fn react(
        &self,
        cx: &SagaContext<'_, Self::State>,
        event: &RecordedEvent,
    ) -> Result<Vec<SagaStep<Self>>>
    where
        Self: Sized;

    /// What to do when a timeout scheduled with [`SagaStep::schedule`] fires.
    /// Fails the saga (and so compensates) by default.
    ///
    /// # Errors
    /// As [`react`](Saga::react); the timer stays and fires again.
    fn on_timeout(
        &self,
        cx: &SagaContext<'_, Self::State>,
        name: &str,
    ) -> Result<Vec<SagaStep<Self>>>
    where
        Self: Sized,
    {
        let _ = cx;
        Ok(vec![SagaStep::fail(format!("timeout `{name}` expired"))])
    }

    /// Evolves the state by one of the saga's events.
    fn apply(state: &mut Self::State, event: &Self::Event);
}

/// What [`Saga::react`] and [`Saga::on_timeout`] see of an instance.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SagaContext<'a, St> {
    /// The instance's correlation id.
    pub correlation: &'a str,
    /// The instance's state.
    pub state: &'a St,
    /// Whether the instance does not exist yet.
    pub is_new: bool,
    /// The engine clock's current time.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl<'a, St> SagaContext<'a, St> {
    /// A context, for code that drives [`Saga::react`] itself (fixtures,
    /// tools); the engine builds its own.
    #[must_use]
    pub fn new(
        correlation: &'a str,
        state: &'a St,
        is_new: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            correlation,
            state,
            is_new,
            now,
        }
    }
}

/// The stream category of saga `name`.
#[must_use]
pub fn category(name: &str) -> String {
    format!("saga_{name}")
}
