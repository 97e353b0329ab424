//! Given/when/then fixtures for aggregates: pure and synchronous.
//!
//! `given` past events, `when` a command, `then` expect events or an error.
//! No store is involved: the fixture folds the given events into
//! `A::default()` with [`Aggregate::apply`], calls [`Aggregate::handle`] and
//! compares. Events are compared by type, schema version and serialized
//! payload ([`Event::to_payload`]), so `A::Event` needs no `PartialEq`. Every
//! given and produced event must survive its payload round trip
//! (`to_payload` then `from_payload`), as it must in a real store; the fixture
//! applies the given events as decoded from their payloads.
//!
//! A mismatch panics with a readable diff; the `then_*` methods are
//! `#[track_caller]`, so the panic points at the test.
//!
//! ```
//! use orchestrix::{Aggregate, Command, Event};
//! use orchestrix_testkit::AggregateFixture;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(prefix = "com.acme.counter")]
//! enum CounterEvent { Incremented { by: u32 } }
//!
//! struct Increment { id: String, by: u32 }
//! impl Command for Increment { fn aggregate_id(&self) -> String { self.id.clone() } }
//!
//! #[derive(Debug, thiserror::Error)]
//! enum CounterError {
//!     #[error("increment must be positive")]
//!     Zero,
//!     #[error("the counter would pass {limit}")]
//!     Overflow { limit: u64 },
//! }
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { value: u64 }
//!
//! impl Aggregate for Counter {
//!     const CATEGORY: &'static str = "counter";
//!     type Command = Increment;
//!     type Event = CounterEvent;
//!     type Error = CounterError;
//!     fn handle(&self, c: &Increment) -> Result<Vec<CounterEvent>, CounterError> {
//!         if c.by == 0 { return Err(CounterError::Zero) }
//!         if self.value + u64::from(c.by) > 10 { return Err(CounterError::Overflow { limit: 10 }) }
//!         Ok(vec![CounterEvent::Incremented { by: c.by }])
//!     }
//!     fn apply(&mut self, e: &CounterEvent) {
//!         match e { CounterEvent::Incremented { by } => self.value += u64::from(*by) }
//!     }
//! }
//!
//! let inc = |by| Increment { id: "c1".into(), by };
//!
//! AggregateFixture::<Counter>::new()
//!     .given(vec![CounterEvent::Incremented { by: 4 }])
//!     .when(inc(2))
//!     .then_expect_events(vec![CounterEvent::Incremented { by: 2 }])
//!     .then_expect_state(|c| assert_eq!(c.value, 6));
//!
//! AggregateFixture::<Counter>::new()
//!     .given_no_previous_events()
//!     .when(inc(0))
//!     .then_expect_error_message("increment must be positive");
//!
//! AggregateFixture::<Counter>::new()
//!     .given(vec![CounterEvent::Incremented { by: 9 }])
//!     .when(inc(2))
//!     .then_expect_error(|e| matches!(e, CounterError::Overflow { limit: 10 }));
//! ```

use std::fmt;
use std::fmt::Write as _;

use orchestrix::{Aggregate, Event};

/// Starts a given/when/then test of aggregate `A`.
pub struct AggregateFixture<A: Aggregate> {
    given: Vec<A::Event>,
}

impl<A: Aggregate> fmt::Debug for AggregateFixture<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateFixture")
            .field("aggregate", &A::CATEGORY)
            .field("given", &render_all(&self.given))
            .finish()
    }
}

impl<A: Aggregate> Default for AggregateFixture<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> AggregateFixture<A> {
    /// A fixture with no past events.
    #[must_use]
    pub fn new() -> Self {
        Self { given: Vec::new() }
    }

    /// Adds past events, in order, to those already given.
    #[must_use]
    pub fn given(mut self, events: Vec<A::Event>) -> Self {
        self.given.extend(events);
        self
    }

    /// States that the aggregate has no past (reads better than `given(vec![])`).
    #[must_use]
    pub fn given_no_previous_events(self) -> Self {
        self
    }

    /// Folds the given events into `A::default()` and handles `command`.
    ///
    /// # Panics
    /// When a given event does not survive its payload round trip.
    #[must_use]
    #[track_caller]
    pub fn when(self, command: A::Command) -> Then<A> {
        let mut state = A::default();
        for (i, event) in self.given.iter().enumerate() {
            let decoded = round_trip(event, &format!("given event #{i}"));
            state.apply(&decoded);
        }
        let command_type = orchestrix::Command::command_type(&command);
        let result = state.handle(&command);
        if let Ok(events) = &result {
            for (i, event) in events.iter().enumerate() {
                round_trip(event, &format!("produced event #{i}"));
            }
        }
        Then {
            state,
            result,
            command_type,
            given: self.given.len(),
            applied: false,
        }
    }
}

/// The outcome of [`AggregateFixture::when`]: expectations on it panic with a
/// readable diff when they fail, and return it for more expectations.
pub struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
    command_type: &'static str,
    given: usize,
    /// Whether the produced events were applied to `state`.
    applied: bool,
}

impl<A: Aggregate> fmt::Debug for Then<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Then");
        s.field("aggregate", &A::CATEGORY)
            .field("command", &self.command_type)
            .field("given", &self.given);
        match &self.result {
            Ok(events) => s.field("events", &render_all(events)),
            Err(e) => s.field("error", e),
        };
        s.finish_non_exhaustive()
    }
}

impl<A: Aggregate> Then<A> {
    fn context(&self) -> String {
        format!(
            "aggregate `{}`, command `{}` after {} given event(s)",
            A::CATEGORY,
            self.command_type,
            self.given
        )
    }

    /// Expects the command to produce exactly these events, in order
    /// (compared by type, schema version and payload).
    ///
    /// # Panics
    /// When the command was rejected or produced other events; the message
    /// shows both lists side by side.
    #[track_caller]
    pub fn then_expect_events(self, expected: Vec<A::Event>) -> Self {
        let actual = match &self.result {
            Ok(events) => events,
            Err(e) => panic!(
                "{}: expected {} event(s), but the command was rejected: {e}\n  error: {e:?}\n  expected:\n{}",
                self.context(),
                expected.len(),
                indent(&render_all(&expected)),
            ),
        };
        let want = render_all(&expected);
        let got = render_all(actual);
        if want != got {
            panic!(
                "{}: the command produced other events than expected\n{}",
                self.context(),
                diff(&want, &got)
            );
        }
        self
    }

    /// Expects the command to be accepted without producing events.
    ///
    /// # Panics
    /// When the command was rejected or produced events.
    #[track_caller]
    pub fn then_expect_no_events(self) -> Self {
        self.then_expect_events(Vec::new())
    }

    /// Expects the command to be rejected with an error for which `check`
    /// returns `true` (e.g. `|e| matches!(e, MyError::Closed)`).
    ///
    /// # Panics
    /// When the command produced events, or `check` returned `false`.
    #[track_caller]
    pub fn then_expect_error(self, check: impl FnOnce(&A::Error) -> bool) -> Self {
        let error = self.expect_error("an error");
        if !check(error) {
            panic!(
                "{}: the command was rejected, but not with the expected error\n  error: {error}\n  debug: {error:?}",
                self.context()
            );
        }
        self
    }

    /// Expects the command to be rejected with an error whose `Display` is
    /// exactly `message`.
    ///
    /// # Panics
    /// When the command produced events, or the message differs.
    #[track_caller]
    pub fn then_expect_error_message(self, message: &str) -> Self {
        let error = self.expect_error(&format!("the error {message:?}"));
        let got = error.to_string();
        if got != message {
            panic!(
                "{}: the command was rejected with another message\n  expected: {message:?}\n  actual:   {got:?}\n  debug:    {error:?}",
                self.context()
            );
        }
        self
    }

    /// Checks the state after the produced events are applied (the state
    /// after the given events when the command was rejected); `check`
    /// asserts as it likes.
    #[track_caller]
    pub fn then_expect_state(mut self, check: impl FnOnce(&A)) -> Self {
        if !self.applied {
            if let Ok(events) = &self.result {
                for event in events {
                    self.state.apply(event);
                }
            }
            self.applied = true;
        }
        check(&self.state);
        self
    }

    /// The raw outcome, for checks the fixture does not offer.
    ///
    /// # Errors
    /// The aggregate's rejection.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }

    #[track_caller]
    fn expect_error(&self, what: &str) -> &A::Error {
        match &self.result {
            Err(e) => e,
            Ok(events) => panic!(
                "{}: expected {what}, but the command was accepted with {} event(s):\n{}",
                self.context(),
                events.len(),
                indent(&render_all(events))
            ),
        }
    }
}

/// `type vN payload`, or the encode error.
fn render<E: Event>(event: &E) -> String {
    match event.to_payload() {
        Ok(payload) => format!(
            "{} v{} {payload}",
            event.event_type(),
            event.schema_version()
        ),
        Err(e) => format!(
            "{} v{} <cannot encode: {e}>",
            event.event_type(),
            event.schema_version()
        ),
    }
}

fn render_all<E: Event>(events: &[E]) -> Vec<String> {
    events.iter().map(render).collect()
}

fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (no events)".to_owned();
    }
    lines
        .iter()
        .enumerate()
        .fold(String::new(), |mut out, (i, l)| {
            let _ = writeln!(out, "    #{i} {l}");
            out
        })
}

/// A line per index: `=` when equal, `-` expected / `+` actual when not.
fn diff(want: &[String], got: &[String]) -> String {
    let mut out = String::from("  (= same, - expected, + actual)\n");
    for i in 0..want.len().max(got.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if w == g => {
                let _ = writeln!(out, "  = #{i} {w}");
            }
            (w, g) => {
                let _ = writeln!(out, "  - #{i} {}", w.map_or("(none)", String::as_str));
                let _ = writeln!(out, "  + #{i} {}", g.map_or("(none)", String::as_str));
            }
        }
    }
    out
}

/// Encodes and decodes `event` the way a store does; panics when the result
/// differs from the original.
#[track_caller]
fn round_trip<E: Event>(event: &E, what: &str) -> E {
    let payload = event
        .to_payload()
        .unwrap_or_else(|e| panic!("{what} (`{}`) cannot be encoded: {e}", event.event_type()));
    let decoded = E::from_payload(event.event_type(), payload.clone()).unwrap_or_else(|e| {
        panic!(
            "{what} (`{}`) does not decode from its own payload {payload}: {e}",
            event.event_type()
        )
    });
    let again = decoded.to_payload().unwrap_or_else(|e| {
        panic!(
            "{what} (`{}`) cannot be encoded after decoding: {e}",
            event.event_type()
        )
    });
    assert!(
        again == payload && decoded.event_type() == event.event_type(),
        "{what} changes in its payload round trip:\n  before: {}\n  after:  {}",
        render(event),
        render(&decoded)
    );
    decoded
}
