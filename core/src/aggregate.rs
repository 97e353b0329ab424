//! Aggregates: pure decide (`handle`) and evolve (`apply`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{Command, Event};

/// An event-sourced aggregate: its state is the fold of its events.
///
/// `handle` decides, without I/O, which events a command causes (or why it is
/// rejected); `apply` evolves the state by one event and never fails. The state
/// is serializable so that it can be snapshotted; bump
/// [`STATE_VERSION`](Aggregate::STATE_VERSION) when its shape changes and old
/// snapshots are ignored.
///
/// ```
/// use orchestrix::{Aggregate, Command, Event};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(prefix = "com.acme.counter")]
/// enum CounterEvent { Incremented { by: u32 } }
///
/// struct Increment { id: String, by: u32 }
/// impl Command for Increment { fn aggregate_id(&self) -> String { self.id.clone() } }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("increment must be positive")]
/// struct ZeroIncrement;
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter { value: u64 }
///
/// impl Aggregate for Counter {
///     const CATEGORY: &'static str = "counter";
///     type Command = Increment;
///     type Event = CounterEvent;
///     type Error = ZeroIncrement;
///     fn handle(&self, c: &Increment) -> Result<Vec<CounterEvent>, ZeroIncrement> {
///         if c.by == 0 { return Err(ZeroIncrement) }
///         Ok(vec![CounterEvent::Incremented { by: c.by }])
///     }
///     fn apply(&mut self, e: &CounterEvent) {
///         match e { CounterEvent::Incremented { by } => self.value += u64::from(*by) }
///     }
/// }
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stream category, e.g. `account` for streams `account-{id}`.
    const CATEGORY: &'static str;
    /// Version of the state's serialized shape, for snapshots.
    const STATE_VERSION: u32 = 1;
    /// The commands it handles (usually an enum).
    type Command: Command;
    /// The events it produces (usually an enum).
    type Event: Event;
    /// Why it rejects a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides the events a command causes.
    ///
    /// # Errors
    /// The business reason for rejecting the command.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolves the state by one event.
    fn apply(&mut self, event: &Self::Event);
}
