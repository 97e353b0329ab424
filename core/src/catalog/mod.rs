//! The event catalog: every command, event (with its schema version),
//! aggregate, projection and saga of an [`Application`], taken from its
//! registrations, so that a team's catalog cannot drift from the code.
//!
//! [`Catalog::of`] reads what the [`ApplicationBuilder`](crate::ApplicationBuilder)
//! recorded; [`Catalog::to_markdown`] renders it with a Mermaid flow diagram
//! (command → aggregate → event → projection/saga → command), and the
//! catalog serializes to JSON with serde.
//!
//! What each registration contributes:
//! - an aggregate: its category, the names of its commands
//!   ([`Command::command_types`], the variants' names with
//!   `#[derive(Command)]`) and its events with their current schema versions
//!   ([`Event::event_types`]);
//! - a projection: its name and [`Filter`]; a typed [`View`](crate::View)
//!   handles exactly the event types of its `Event` enum;
//! - a saga: its name, filter, own events, and the commands it sends
//!   ([`SagaCommand::commands`]);
//! - a handler registered as a value, or built at start by a factory
//!   registered with [`handler_factory`](crate::ApplicationBuilder::handler_factory):
//!   its name and filter (a factory registered with `handler_with` names its
//!   handler only at start and is not listed).
//!
//! ```
//! use orchestrix::catalog::Catalog;
//! use orchestrix::{Aggregate, Application, Command, Event, Store};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(prefix = "com.acme.counter")]
//! enum CounterEvent { Incremented { by: u32 }, #[event(version = 2)] Reset }
//! #[derive(Command)]
//! #[command(id = id)]
//! enum CounterCommand { Increment { id: String }, Reset { id: String } }
//! # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
//! # #[derive(Default, Serialize, Deserialize)] struct Counter;
//! # impl Aggregate for Counter {
//! #     const CATEGORY: &'static str = "counter";
//! #     type Command = CounterCommand; type Event = CounterEvent; type Error = Never;
//! #     fn handle(&self, _: &CounterCommand) -> Result<Vec<CounterEvent>, Never> { Ok(vec![]) }
//! #     fn apply(&mut self, _: &CounterEvent) {}
//! # }
//!
//! let app = Application::builder(Store::memory()).aggregate::<Counter>().build()?;
//! let catalog = Catalog::of(&app);
//! assert_eq!(catalog.aggregates[0].commands, ["Increment", "Reset"]);
//! assert_eq!(catalog.aggregates[0].events[1].version, 2);
//! let markdown = catalog.to_markdown();
//! assert!(markdown.contains("```mermaid\nflowchart LR"));
//! assert!(markdown.contains("com.acme.counter.Reset"));
//! # Ok::<(), orchestrix::Error>(())
//! ```

mod markdown;

use std::any::TypeId;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::app::Application;
use crate::event::{Command, Event, EventTypeInfo};
use crate::saga::{Saga, SagaCommand};
use crate::store::Filter;

/// The commands of one Rust command type that a saga may send: see
/// [`SagaCommand::commands`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSet {
    type_id: TypeId,
    names: Vec<&'static str>,
}

impl CommandSet {
    /// Every command of `C` ([`Command::command_types`]).
    #[must_use]
    pub fn of<C: Command>() -> Self {
        Self {
            type_id: TypeId::of::<C>(),
            names: C::command_types(),
        }
    }

    /// Only those of its commands named here (others are dropped, and a
    /// name `C` does not have is ignored).
    #[must_use]
    pub fn only<I: IntoIterator<Item = &'static str>>(mut self, names: I) -> Self {
        let keep: Vec<&'static str> = names.into_iter().collect();
        self.names.retain(|n| keep.contains(n));
        self
    }

    /// The command names.
    #[must_use]
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// The whole catalog of an application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Catalog {
    /// The registered modules, in registration order.
    pub modules: Vec<String>,
    /// Aggregates with their commands and events.
    pub aggregates: Vec<AggregateInfo>,
    /// Projections (typed views, untyped and transactional projections).
    pub projections: Vec<ProjectionInfo>,
    /// Sagas: what they handle, record and send.
    pub sagas: Vec<SagaInfo>,
    /// Event handlers registered as values.
    pub handlers: Vec<HandlerInfo>,
}

/// One aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AggregateInfo {
    /// Its stream category.
    pub category: String,
    /// The CloudEvents `source` of its events.
    pub source: String,
    /// The Rust type.
    pub rust_type: String,
    /// The version of its snapshot state.
    pub state_version: u32,
    /// The Rust command type.
    pub command_type: String,
    /// The command names.
    pub commands: Vec<String>,
    /// The events it produces.
    pub events: Vec<EventInfo>,
}

/// An event type and its current schema version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventInfo {
    /// The CloudEvents `type`.
    pub event_type: String,
    /// The schema version written today.
    pub version: u32,
}

impl From<&EventTypeInfo> for EventInfo {
    fn from(info: &EventTypeInfo) -> Self {
        Self {
            event_type: info.event_type.to_owned(),
            version: info.version,
        }
    }
}

/// A filter as data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FilterInfo {
    /// Only these categories (empty: all).
    pub categories: Vec<String>,
    /// Only these event types (empty: all).
    pub event_types: Vec<String>,
}

impl From<Filter> for FilterInfo {
    fn from(f: Filter) -> Self {
        Self {
            categories: f.categories,
            event_types: f.event_types,
        }
    }
}

impl FilterInfo {
    fn matches(&self, category: &str, event_type: &str) -> bool {
        (self.categories.is_empty() || self.categories.iter().any(|c| c == category))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}

/// How a projection was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProjectionKind {
    /// A typed [`View`](crate::View).
    View,
    /// An untyped [`Projection`](crate::Projection).
    Projection,
    /// A [`TransactionalProjection`](crate::runtime::TransactionalProjection).
    Transactional,
}

/// One projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProjectionInfo {
    /// Its name (checkpoint key).
    pub name: String,
    /// How it was registered.
    pub kind: ProjectionKind,
    /// Its filter.
    pub filter: FilterInfo,
    /// The event types it handles: the registered events its filter
    /// passes, and event types it names that no registered aggregate
    /// produces.
    pub handles: Vec<String>,
}

/// A command a saga sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandRef {
    /// The aggregate handling it, when registered.
    pub aggregate: Option<String>,
    /// The command name.
    pub command: String,
}

/// One saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaInfo {
    /// Its name.
    pub name: String,
    /// The stream category of its instances.
    pub category: String,
    /// Its filter.
    pub filter: FilterInfo,
    /// The event types it reacts to (as [`ProjectionInfo::handles`]).
    pub handles: Vec<String>,
    /// Its own events, recorded in its instances' streams.
    pub events: Vec<EventInfo>,
    /// The commands it sends.
    pub sends: Vec<CommandRef>,
}

/// One event handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HandlerInfo {
    /// Its name.
    pub name: String,
    /// Its filter.
    pub filter: FilterInfo,
    /// The event types it handles (as [`ProjectionInfo::handles`]).
    pub handles: Vec<String>,
}

/// A saga before its commands are resolved to aggregates.
#[derive(Debug, Clone)]
struct SagaRecord {
    info: SagaInfo,
    sends: Vec<CommandSet>,
}

/// What the builder records at each registration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder {
    aggregates: Vec<AggregateInfo>,
    command_owners: HashMap<TypeId, String>,
    projections: Vec<ProjectionInfo>,
    sagas: Vec<SagaRecord>,
    handlers: Vec<HandlerInfo>,
}

impl Recorder {
    pub(crate) fn aggregate<A: Aggregate>(&mut self, source: &str) {
        self.command_owners
            .insert(TypeId::of::<A::Command>(), A::CATEGORY.to_owned());
        self.aggregates.push(AggregateInfo {
            category: A::CATEGORY.to_owned(),
            source: source.to_owned(),
            rust_type: std::any::type_name::<A>().to_owned(),
            state_version: A::STATE_VERSION,
            command_type: std::any::type_name::<A::Command>().to_owned(),
            commands: A::Command::command_types()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            events: A::Event::event_types()
                .iter()
                .map(EventInfo::from)
                .collect(),
        });
    }

    pub(crate) fn projection(&mut self, name: &str, kind: ProjectionKind, filter: Filter) {
        self.projections.push(ProjectionInfo {
            name: name.to_owned(),
            kind,
            filter: filter.into(),
            handles: Vec::new(),
        });
    }

    pub(crate) fn saga<S: Saga>(&mut self, saga: &S) {
        self.sagas.push(SagaRecord {
            info: SagaInfo {
                name: S::NAME.to_owned(),
                category: crate::saga::category(S::NAME),
                filter: saga.filter().into(),
                handles: Vec::new(),
                events: S::Event::event_types()
                    .iter()
                    .map(EventInfo::from)
                    .collect(),
                sends: Vec::new(),
            },
            sends: <S::Command as SagaCommand>::commands(),
        });
    }

    /// Drops the last saga recorded (its registration failed).
    pub(crate) fn forget_last_saga(&mut self) {
        self.sagas.pop();
    }

    pub(crate) fn handler(&mut self, name: &str, filter: Filter) {
        self.handlers.push(HandlerInfo {
            name: name.to_owned(),
            filter: filter.into(),
            handles: Vec::new(),
        });
    }
}

impl Catalog {
    /// The catalog of an application, from its registrations.
    #[must_use]
    pub fn of(app: &Application) -> Self {
        let recorder = app.catalog_recorder();
        let aggregates = recorder.aggregates.clone();
        let handles = |filter: &FilterInfo| -> Vec<String> {
            let mut out: Vec<String> = aggregates
                .iter()
                .flat_map(|a| {
                    a.events
                        .iter()
                        .filter(|e| filter.matches(&a.category, &e.event_type))
                        .map(|e| e.event_type.clone())
                })
                .collect();
            for t in &filter.event_types {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
            out
        };
        let projections = recorder
            .projections
            .iter()
            .map(|p| ProjectionInfo {
                handles: handles(&p.filter),
                ..p.clone()
            })
            .collect();
        let handlers = recorder
            .handlers
            .iter()
            .map(|h| HandlerInfo {
                handles: handles(&h.filter),
                ..h.clone()
            })
            .collect();
        let sagas = recorder
            .sagas
            .iter()
            .map(|s| {
                let sends = s
                    .sends
                    .iter()
                    .flat_map(|set| {
                        let aggregate = recorder.command_owners.get(&set.type_id).cloned();
                        set.names.iter().map(move |name| CommandRef {
                            aggregate: aggregate.clone(),
                            command: (*name).to_owned(),
                        })
                    })
                    .collect();
                SagaInfo {
                    handles: handles(&s.info.filter),
                    sends,
                    ..s.info.clone()
                }
            })
            .collect();
        Self {
            modules: app.modules().to_vec(),
            aggregates,
            projections,
            sagas,
            handlers,
        }
    }

    /// Every event type in the catalog: the aggregates' and the sagas' own.
    #[must_use]
    pub fn event_types(&self) -> Vec<&str> {
        self.aggregates
            .iter()
            .flat_map(|a| a.events.iter())
            .chain(self.sagas.iter().flat_map(|s| s.events.iter()))
            .map(|e| e.event_type.as_str())
            .collect()
    }

    /// The catalog as Markdown: a Mermaid flow diagram and a section per
    /// aggregate, projection, saga and handler.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        markdown::render(self)
    }

    /// The Mermaid flow diagram alone (`flowchart LR`, no fence).
    #[must_use]
    pub fn to_mermaid(&self) -> String {
        markdown::mermaid(self)
    }

    /// The catalog as JSON (the serde form of [`Catalog`]).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
