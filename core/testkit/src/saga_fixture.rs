//! Given/when/then fixtures for sagas: pure and synchronous, like
//! [`AggregateFixture`](crate::AggregateFixture).
//!
//! `given` past events (the saga reacts to each, its commands accepted),
//! `when` an event arrives or a timeout fires, `then` expect the commands
//! sent, the timeouts set, the compensations run, the status and the state.
//! No store, application or clock is involved: the fixture plays the
//! [`SagaEngine`](orchestrix::SagaEngine)'s rules on one instance. Steps run
//! in order; a `send` whose command is rejected
//! ([`rejecting`](SagaFixture::rejecting)) or a `fail` stops the list and
//! unwinds the compensation stack newest first; `complete` and `fail` cancel
//! the pending timeouts; an instance that completed or failed ignores further
//! events; an event the saga does not correlate, or reacts to with no steps,
//! changes nothing.
//!
//! Commands and events are compared by their serialized form, so they need
//! no `PartialEq`. A failed expectation panics with both sides; the `then_*`
//! methods are `#[track_caller]`.
//!
//! ```
//! use std::time::Duration;
//! use orchestrix::saga::{Saga, SagaContext, SagaStatus, SagaStep};
//! use orchestrix::store::Filter;
//! use orchestrix::{Command, Event, RecordedEvent};
//! use orchestrix_testkit::SagaFixture;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(prefix = "com.acme.shop")]
//! enum OrderEvent { Placed { sku: String }, Reserved, OutOfStock }
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Command)]
//! #[command(id = order)]
//! enum ShopCommand { Reserve { order: String, sku: String }, Release { order: String }, Confirm { order: String } }
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(prefix = "com.acme.shop.checkout")]
//! enum CheckoutEvent { Started }
//!
//! #[derive(Debug)]
//! struct Checkout;
//! impl Saga for Checkout {
//!     const NAME: &'static str = "checkout";
//!     type State = bool;
//!     type Event = CheckoutEvent;
//!     type Command = ShopCommand;
//!     fn filter(&self) -> Filter { Filter::all().categories(["order"]) }
//!     fn correlate(&self, e: &RecordedEvent) -> Option<String> { Some(e.stream_id.entity_id().to_owned()) }
//!     fn react(&self, cx: &SagaContext<'_, bool>, e: &RecordedEvent) -> orchestrix::Result<Vec<SagaStep<Self>>> {
//!         let order = cx.correlation.to_owned();
//!         Ok(match e.decode::<OrderEvent>()? {
//!             OrderEvent::Placed { sku } => vec![
//!                 SagaStep::record(CheckoutEvent::Started),
//!                 SagaStep::schedule("payment", Duration::from_secs(600)),
//!                 SagaStep::send_compensable(
//!                     ShopCommand::Reserve { order: order.clone(), sku },
//!                     ShopCommand::Release { order },
//!                 ),
//!             ],
//!             OrderEvent::Reserved => vec![SagaStep::send(ShopCommand::Confirm { order }), SagaStep::complete()],
//!             OrderEvent::OutOfStock => vec![SagaStep::fail("out of stock")],
//!         })
//!     }
//!     fn apply(started: &mut bool, _: &CheckoutEvent) { *started = true }
//! }
//!
//! let placed = OrderEvent::Placed { sku: "mouse".into() };
//!
//! SagaFixture::new(Checkout)
//!     .given_no_previous_events()
//!     .when("order-o1", placed.clone())
//!     .then_records(vec![CheckoutEvent::Started])
//!     .then_sends(vec![ShopCommand::Reserve { order: "o1".into(), sku: "mouse".into() }])
//!     .then_schedules(&[("payment", Duration::from_secs(600))])
//!     .then_status(SagaStatus::Running)
//!     .then_state(|started| assert!(*started));
//!
//! // The deadline passes: the default `on_timeout` fails the saga, which
//! // releases the reservation.
//! SagaFixture::new(Checkout)
//!     .given("order-o1", placed.clone())
//!     .when_timeout("payment")
//!     .then_sends_nothing()
//!     .then_compensates(vec![ShopCommand::Release { order: "o1".into() }])
//!     .then_status(SagaStatus::Compensated);
//!
//! // A rejected reservation leaves nothing to compensate.
//! SagaFixture::new(Checkout)
//!     .rejecting(|c| matches!(c, ShopCommand::Reserve { .. }))
//!     .when("order-o1", placed)
//!     .then_sends(vec![ShopCommand::Reserve { order: "o1".into(), sku: "mouse".into() }])
//!     .then_compensates(Vec::<ShopCommand>::new())
//!     .then_fails_with("rejected");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrix::saga::{Saga, SagaCommand, SagaContext, SagaStatus, SagaStep};
use orchestrix::{Event, EventRecord, RecordedEvent, StreamId};

type Rejection<C> = Box<dyn Fn(&C) -> bool + Send + Sync>;

/// Starts a given/when/then test of saga `S` (one instance).
pub struct SagaFixture<S: Saga> {
    saga: S,
    now: DateTime<Utc>,
    rejections: Vec<Rejection<S::Command>>,
    instance: Instance<S>,
    revisions: BTreeMap<String, u64>,
    position: u64,
}

/// One instance as the engine would keep it.
struct Instance<S: Saga> {
    correlation: Option<String>,
    state: S::State,
    exists: bool,
    status: SagaStatus,
    reason: Option<String>,
    compensations: Vec<S::Command>,
    timeouts: BTreeMap<String, Duration>,
}

impl<S: Saga> Default for Instance<S> {
    fn default() -> Self {
        Self {
            correlation: None,
            state: S::State::default(),
            exists: false,
            status: SagaStatus::Running,
            reason: None,
            compensations: Vec::new(),
            timeouts: BTreeMap::new(),
        }
    }
}

impl<S: Saga> fmt::Debug for SagaFixture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaFixture")
            .field("saga", &S::NAME)
            .field("correlation", &self.instance.correlation)
            .field("status", &self.instance.status)
            .field("state", &self.instance.state)
            .field("timeouts", &self.instance.timeouts)
            .finish_non_exhaustive()
    }
}

/// What one trigger did.
struct Outcome<S: Saga> {
    /// `false` when the trigger was ignored (no correlation, no steps, a
    /// finished instance).
    handled: bool,
    recorded: Vec<S::Event>,
    sent: Vec<S::Command>,
    scheduled: Vec<(String, Duration)>,
    compensated: Vec<S::Command>,
}

impl<S: Saga> Default for Outcome<S> {
    fn default() -> Self {
        Self {
            handled: false,
            recorded: Vec::new(),
            sent: Vec::new(),
            scheduled: Vec::new(),
            compensated: Vec::new(),
        }
    }
}

enum Trigger<'a> {
    Event(&'a RecordedEvent),
    Timeout(&'a str),
}

impl<S: Saga> SagaFixture<S> {
    /// A fixture of `saga` with no past, at 2030-01-01T00:00:00Z, every
    /// command accepted.
    #[must_use]
    pub fn new(saga: S) -> Self {
        Self {
            saga,
            now: DateTime::from_timestamp(1_893_456_000, 0).unwrap_or_default(),
            rejections: Vec::new(),
            instance: Instance::default(),
            revisions: BTreeMap::new(),
            position: 0,
        }
    }

    /// The time [`SagaContext::now`] shows.
    #[must_use]
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    /// From now on, commands (and compensations) for which `reject` returns
    /// `true` are rejected by their aggregate, as a business rule would.
    #[must_use]
    pub fn rejecting(
        mut self,
        reject: impl Fn(&S::Command) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rejections.push(Box::new(reject));
        self
    }

    /// States that the instance has no past (reads better than nothing).
    #[must_use]
    pub fn given_no_previous_events(self) -> Self {
        self
    }

    /// An event of stream `stream` (`{category}-{id}`) that the saga already
    /// handled: it reacts, its commands are sent (and accepted unless
    /// [`rejecting`](Self::rejecting) says otherwise).
    ///
    /// # Panics
    /// When `stream` is not a valid stream id, the event does not encode,
    /// or the saga returns an error.
    #[must_use]
    #[track_caller]
    pub fn given(mut self, stream: &str, event: impl Event) -> Self {
        let recorded = self.record(stream, &event);
        if let Err(e) = self.handle(&Trigger::Event(&recorded)) {
            panic!(
                "saga `{}`: given event `{}` on `{stream}` failed: {e}",
                S::NAME,
                recorded.event_type()
            );
        }
        self
    }

    /// A timeout that already fired.
    ///
    /// # Panics
    /// When no timeout of that name is pending, or the saga returns an error.
    #[must_use]
    #[track_caller]
    pub fn given_timeout(mut self, name: &str) -> Self {
        if let Err(e) = self.handle(&Trigger::Timeout(name)) {
            panic!("saga `{}`: given timeout `{name}` failed: {e}", S::NAME);
        }
        self
    }

    /// An event of stream `stream` arrives.
    ///
    /// # Panics
    /// When `stream` is not a valid stream id or the event does not encode.
    #[must_use]
    #[track_caller]
    pub fn when(mut self, stream: &str, event: impl Event) -> SagaThen<S> {
        let recorded = self.record(stream, &event);
        let what = format!("event `{}` on `{stream}`", recorded.event_type());
        let result = self.handle(&Trigger::Event(&recorded));
        SagaThen {
            fixture: self,
            what,
            result,
        }
    }

    /// The pending timeout `name` fires.
    ///
    /// # Panics
    /// When no timeout of that name is pending.
    #[must_use]
    #[track_caller]
    pub fn when_timeout(mut self, name: &str) -> SagaThen<S> {
        let result = self.handle(&Trigger::Timeout(name));
        SagaThen {
            fixture: self,
            what: format!("timeout `{name}`"),
            result,
        }
    }

    #[track_caller]
    fn record(&mut self, stream: &str, event: &impl Event) -> RecordedEvent {
        let stream_id = StreamId::parse(stream)
            .unwrap_or_else(|e| panic!("`{stream}` is not a stream id: {e}"));
        let payload = event
            .to_payload()
            .unwrap_or_else(|e| panic!("event `{}` does not encode: {e}", event.event_type()));
        let revision = self.revisions.entry(stream.to_owned()).or_insert(0);
        let this = *revision;
        *revision += 1;
        self.position += 1;
        RecordedEvent {
            stream_id,
            revision: this,
            position: self.position,
            record: EventRecord::json(event.event_type(), event.schema_version(), &payload),
        }
    }

    fn rejected(&self, command: &S::Command) -> bool {
        self.rejections.iter().any(|r| r(command))
    }

    /// The engine's rules for one trigger.
    #[track_caller]
    fn handle(&mut self, trigger: &Trigger<'_>) -> orchestrix::Result<Outcome<S>> {
        let mut outcome = Outcome::default();
        let correlation = match trigger {
            Trigger::Event(e) => match self.saga.correlate(e) {
                Some(c) => c,
                None => return Ok(outcome),
            },
            Trigger::Timeout(name) => {
                assert!(
                    self.instance.timeouts.contains_key(*name),
                    "saga `{}`: no timeout `{name}` is pending (pending: {:?})",
                    S::NAME,
                    self.instance.timeouts.keys().collect::<Vec<_>>()
                );
                self.instance.correlation.clone().unwrap_or_default()
            }
        };
        if let Some(known) = &self.instance.correlation {
            assert!(
                known == &correlation,
                "saga `{}`: the event belongs to instance `{correlation}`, the fixture follows `{known}`",
                S::NAME
            );
        }
        if self.instance.status != SagaStatus::Running {
            return Ok(outcome);
        }
        let steps = {
            let cx = SagaContext::new(
                &correlation,
                &self.instance.state,
                !self.instance.exists,
                self.now,
            );
            match trigger {
                Trigger::Event(e) => self.saga.react(&cx, e)?,
                Trigger::Timeout(name) => self.saga.on_timeout(&cx, name)?,
            }
        };
        if let Trigger::Timeout(name) = trigger {
            self.instance.timeouts.remove(*name);
        } else if steps.is_empty() {
            return Ok(outcome);
        }
        outcome.handled = true;
        self.instance.exists = true;
        self.instance.correlation = Some(correlation);
        let mut failure = None;
        let mut finished = false;
        for step in steps {
            match step {
                SagaStep::Record(e) => {
                    S::apply(&mut self.instance.state, &e);
                    outcome.recorded.push(e);
                }
                SagaStep::Send {
                    command,
                    compensation,
                } => {
                    let rejected = self.rejected(&command);
                    outcome.sent.push(command);
                    if rejected {
                        failure = Some("a command was rejected".to_owned());
                        break;
                    }
                    self.instance.compensations.extend(compensation);
                }
                SagaStep::Compensation(c) => self.instance.compensations.push(c),
                SagaStep::Schedule { name, after } => {
                    self.instance.timeouts.insert(name.clone(), after);
                    outcome.scheduled.push((name, after));
                }
                SagaStep::Cancel { name } => {
                    self.instance.timeouts.remove(&name);
                }
                SagaStep::Complete => {
                    finished = true;
                    break;
                }
                SagaStep::Fail { reason } => {
                    failure = Some(reason);
                    break;
                }
            }
        }
        if finished || failure.is_some() {
            self.instance.timeouts.clear();
        }
        if finished {
            self.instance.status = SagaStatus::Completed;
        }
        if let Some(reason) = failure {
            self.instance.reason = Some(reason);
            self.instance.status = SagaStatus::Compensated;
            while let Some(command) = self.instance.compensations.pop() {
                let rejected = self.rejected(&command);
                outcome.compensated.push(command);
                if rejected {
                    self.instance.status = SagaStatus::Failed;
                    break;
                }
            }
        }
        Ok(outcome)
    }
}

/// The outcome of [`SagaFixture::when`] or [`SagaFixture::when_timeout`]:
/// expectations on it panic with both sides when they fail, and return it
/// for more expectations.
pub struct SagaThen<S: Saga> {
    fixture: SagaFixture<S>,
    what: String,
    result: orchestrix::Result<Outcome<S>>,
}

impl<S: Saga> fmt::Debug for SagaThen<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaThen")
            .field("saga", &S::NAME)
            .field("trigger", &self.what)
            .field("instance", &self.fixture)
            .finish_non_exhaustive()
    }
}

impl<S: Saga> SagaThen<S> {
    fn context(&self) -> String {
        format!("saga `{}`, {}", S::NAME, self.what)
    }

    #[track_caller]
    fn outcome(&self) -> &Outcome<S> {
        match &self.result {
            Ok(o) => o,
            Err(e) => panic!("{}: the saga returned an error: {e}", self.context()),
        }
    }

    /// Expects the trigger to change nothing: not correlated, no steps, or a
    /// finished instance.
    ///
    /// # Panics
    /// When the saga handled it.
    #[track_caller]
    pub fn then_ignores(self) -> Self {
        let outcome = self.outcome();
        assert!(
            !outcome.handled,
            "{}: expected the trigger to be ignored, but the saga handled it (sent {:?})",
            self.context(),
            outcome.sent
        );
        self
    }

    /// Expects exactly these commands to be sent by the reaction, in order
    /// (compensations are [`then_compensates`](Self::then_compensates)); a
    /// rejected command counts as sent.
    ///
    /// # Panics
    /// When other commands were sent.
    #[track_caller]
    pub fn then_sends<C: Into<S::Command>>(self, expected: Vec<C>) -> Self {
        let expected: Vec<S::Command> = expected.into_iter().map(Into::into).collect();
        compare(
            &self.context(),
            "commands sent",
            &expected,
            &self.outcome().sent,
        );
        self
    }

    /// Expects no command to be sent by the reaction.
    ///
    /// # Panics
    /// When a command was sent.
    #[track_caller]
    pub fn then_sends_nothing(self) -> Self {
        self.then_sends(Vec::<S::Command>::new())
    }

    /// Expects exactly these compensations to run, in the order they run
    /// (newest first).
    ///
    /// # Panics
    /// When other compensations ran.
    #[track_caller]
    pub fn then_compensates<C: Into<S::Command>>(self, expected: Vec<C>) -> Self {
        let expected: Vec<S::Command> = expected.into_iter().map(Into::into).collect();
        compare(
            &self.context(),
            "compensations run",
            &expected,
            &self.outcome().compensated,
        );
        self
    }

    /// Expects exactly these saga events to be recorded, in order.
    ///
    /// # Panics
    /// When other events were recorded.
    #[track_caller]
    pub fn then_records(self, expected: Vec<S::Event>) -> Self {
        let render = |events: &[S::Event]| -> Vec<String> {
            events
                .iter()
                .map(|e| match e.to_payload() {
                    Ok(p) => format!("{} {p}", e.event_type()),
                    Err(err) => format!("{} <cannot encode: {err}>", e.event_type()),
                })
                .collect()
        };
        let (want, got) = (render(&expected), render(&self.outcome().recorded));
        assert!(
            want == got,
            "{}: other saga events were recorded\n  expected: {want:#?}\n  actual:   {got:#?}",
            self.context()
        );
        self
    }

    /// Expects exactly these timeouts (name, delay) to be scheduled by the
    /// reaction, in order.
    ///
    /// # Panics
    /// When other timeouts were scheduled.
    #[track_caller]
    pub fn then_schedules(self, expected: &[(&str, Duration)]) -> Self {
        let want: Vec<(String, Duration)> = expected
            .iter()
            .map(|(n, d)| ((*n).to_owned(), *d))
            .collect();
        let got = &self.outcome().scheduled;
        assert!(
            &want == got,
            "{}: other timeouts were scheduled\n  expected: {want:?}\n  actual:   {got:?}",
            self.context()
        );
        self
    }

    /// Expects exactly these timeouts to be pending afterwards.
    ///
    /// # Panics
    /// When others are pending.
    #[track_caller]
    pub fn then_pending_timeouts(self, expected: &[&str]) -> Self {
        let got: Vec<&str> = self
            .fixture
            .instance
            .timeouts
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert!(
            want == got,
            "{}: other timeouts are pending\n  expected: {want:?}\n  actual:   {got:?}",
            self.context()
        );
        self
    }

    /// Expects the instance's status afterwards.
    ///
    /// # Panics
    /// When it differs.
    #[track_caller]
    pub fn then_status(self, expected: SagaStatus) -> Self {
        let _ = self.outcome();
        let got = self.fixture.instance.status;
        assert!(
            got == expected,
            "{}: expected status {expected:?}, got {got:?} (reason: {:?})",
            self.context(),
            self.fixture.instance.reason
        );
        self
    }

    /// Expects the saga to have failed with a reason containing `text`
    /// (compensated or not).
    ///
    /// # Panics
    /// When it did not fail, or the reason differs.
    #[track_caller]
    pub fn then_fails_with(self, text: &str) -> Self {
        let _ = self.outcome();
        let reason = self.fixture.instance.reason.as_deref().unwrap_or_else(|| {
            panic!(
                "{}: expected the saga to fail ({text:?}), but it is {:?}",
                self.context(),
                self.fixture.instance.status
            )
        });
        assert!(
            reason.contains(text),
            "{}: the saga failed for another reason\n  expected to contain: {text:?}\n  actual: {reason:?}",
            self.context()
        );
        self
    }

    /// Checks the instance's state afterwards.
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&S::State)) -> Self {
        let _ = self.outcome();
        check(&self.fixture.instance.state);
        self
    }

    /// Expects the saga to return an error for which `check` returns `true`.
    ///
    /// # Panics
    /// When the saga returned no error, or `check` returned `false`.
    #[track_caller]
    pub fn then_expect_error(self, check: impl FnOnce(&orchestrix::Error) -> bool) -> Self {
        match &self.result {
            Err(e) => assert!(
                check(e),
                "{}: the saga returned another error: {e}",
                self.context()
            ),
            Ok(_) => panic!(
                "{}: expected an error, but the saga handled the trigger",
                self.context()
            ),
        }
        self
    }

    /// Goes on from here: the instance as it is now, for a further `when`.
    #[must_use]
    pub fn and(self) -> SagaFixture<S> {
        self.fixture
    }
}

#[track_caller]
fn compare<C: SagaCommand>(context: &str, what: &str, expected: &[C], actual: &[C]) {
    let render = |cs: &[C]| -> Vec<String> {
        cs.iter()
            .map(|c| serde_json::to_string(c).unwrap_or_else(|_| format!("{c:?}")))
            .collect()
    };
    let (want, got) = (render(expected), render(actual));
    assert!(
        want == got,
        "{context}: other {what} than expected\n  expected: {expected:#?}\n  actual:   {actual:#?}"
    );
}
