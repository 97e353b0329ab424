//! What a saga decides to do.

use std::fmt;
use std::time::Duration;

use super::Saga;

/// One thing a saga does in reaction to an event or a timeout.
///
/// Steps run in order. A [`send`](SagaStep::send) that the aggregate rejects
/// fails the saga: the remaining steps are skipped and the compensation stack
/// is unwound. [`complete`](SagaStep::complete) and [`fail`](SagaStep::fail)
/// end the list.
pub enum SagaStep<S: Saga> {
    /// Records one of the saga's own events (and folds it into the state).
    Record(S::Event),
    /// Sends a command; once it succeeds, its compensation (if any) is pushed
    /// on the compensation stack.
    Send {
        /// The command.
        command: S::Command,
        /// What undoes it when the saga fails later.
        compensation: Option<S::Command>,
    },
    /// Pushes a compensation without sending anything, e.g. "cancel the
    /// order" at the start of an order saga, or the undo of a step confirmed
    /// by an event.
    Compensation(S::Command),
    /// Schedules a durable timeout (replacing a pending one of the same name);
    /// [`Saga::on_timeout`] is called when it fires.
    Schedule {
        /// The timeout's name within the instance.
        name: String,
        /// Due this long after now (by the engine's clock).
        after: Duration,
    },
    /// Cancels a pending timeout (nothing if none is pending).
    Cancel {
        /// The timeout's name.
        name: String,
    },
    /// The saga has finished successfully; pending timeouts are cancelled.
    Complete,
    /// The saga has failed: compensate every completed step, newest first.
    Fail {
        /// Why, for a person.
        reason: String,
    },
}

impl<S: Saga> SagaStep<S> {
    /// Records a saga event.
    #[must_use]
    pub fn record(event: S::Event) -> Self {
        Self::Record(event)
    }

    /// Sends a command that needs no compensation.
    #[must_use]
    pub fn send(command: impl Into<S::Command>) -> Self {
        Self::Send {
            command: command.into(),
            compensation: None,
        }
    }

    /// Sends a command and keeps what undoes it.
    #[must_use]
    pub fn send_compensable(
        command: impl Into<S::Command>,
        compensation: impl Into<S::Command>,
    ) -> Self {
        Self::Send {
            command: command.into(),
            compensation: Some(compensation.into()),
        }
    }

    /// Pushes a compensation.
    #[must_use]
    pub fn compensation(command: impl Into<S::Command>) -> Self {
        Self::Compensation(command.into())
    }

    /// Schedules a timeout.
    #[must_use]
    pub fn schedule(name: impl Into<String>, after: Duration) -> Self {
        Self::Schedule {
            name: name.into(),
            after,
        }
    }

    /// Cancels a timeout.
    #[must_use]
    pub fn cancel(name: impl Into<String>) -> Self {
        Self::Cancel { name: name.into() }
    }

    /// Completes the saga.
    #[must_use]
    pub fn complete() -> Self {
        Self::Complete
    }

    /// Fails the saga and compensates.
    #[must_use]
    pub fn fail(reason: impl Into<String>) -> Self {
        Self::Fail {
            reason: reason.into(),
        }
    }
}

impl<S: Saga> fmt::Debug for SagaStep<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Record(e) => f
                .debug_tuple("Record")
                .field(&crate::Event::event_type(e))
                .finish(),
            Self::Send {
                command,
                compensation,
            } => f
                .debug_struct("Send")
                .field("command", command)
                .field("compensation", compensation)
                .finish(),
            Self::Compensation(c) => f.debug_tuple("Compensation").field(c).finish(),
            Self::Schedule { name, after } => f
                .debug_struct("Schedule")
                .field("name", name)
                .field("after", after)
                .finish(),
            Self::Cancel { name } => f.debug_struct("Cancel").field("name", name).finish(),
            Self::Complete => f.write_str("Complete"),
            Self::Fail { reason } => f.debug_struct("Fail").field("reason", reason).finish(),
        }
    }
}
