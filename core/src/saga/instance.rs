//! One saga instance, as folded from its stream.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Saga;
use super::record::{EngineRecord, Entry};

/// Where a saga instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SagaStatus {
    /// Reacting to events.
    Running,
    /// Finished successfully.
    Completed,
    /// Failed; compensations are being sent.
    Compensating,
    /// Failed, and every completed step was compensated.
    Compensated,
    /// Failed, and a compensation was rejected: needs a person.
    Failed,
}

impl SagaStatus {
    /// Whether the instance will do nothing more.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Failed)
    }

    /// A lowercase name for logs and metrics labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A timeout that has not fired or been cancelled yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTimeout {
    /// The timer's id in the [`TimerStore`](crate::store::TimerStore).
    pub timer_id: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
}

/// A compensation on the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCompensation<C> {
    /// The command that undoes a completed step.
    pub command: C,
    /// Whether it has been executed.
    pub done: bool,
}

/// A saga instance: its status, state and bookkeeping, folded from its stream.
pub struct SagaInstance<S: Saga> {
    /// The correlation id.
    pub correlation: String,
    /// The status.
    pub status: SagaStatus,
    /// The saga's state.
    pub state: S::State,
    /// The stream's revision (`None`: the instance does not exist).
    pub revision: Option<u64>,
    /// Why it failed, once it has.
    pub reason: Option<String>,
    /// Pending timeouts by name.
    pub timeouts: BTreeMap<String, PendingTimeout>,
    /// The compensation stack, oldest first (unwound newest first).
    pub compensations: Vec<PendingCompensation<S::Command>>,
    /// Commands sent (including duplicates recognised by their aggregate).
    pub commands_sent: usize,
    /// Ids of handled triggers (event ids and timer ids).
    pub handled: HashSet<String>,
    /// Commands recorded as planned whose outcome is not recorded (the
    /// process stopped between sending and recording), by command id, with
    /// their compensation.
    pub in_doubt: BTreeMap<String, (S::Command, Option<S::Command>)>,
}

impl<S: Saga> fmt::Debug for SagaInstance<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaInstance")
            .field("saga", &S::NAME)
            .field("correlation", &self.correlation)
            .field("status", &self.status)
            .field("state", &self.state)
            .field("revision", &self.revision)
            .field("reason", &self.reason)
            .field("timeouts", &self.timeouts)
            .field("compensations", &self.compensations)
            .field("commands_sent", &self.commands_sent)
            .finish_non_exhaustive()
    }
}

impl<S: Saga> Clone for SagaInstance<S> {
    fn clone(&self) -> Self {
        Self {
            correlation: self.correlation.clone(),
            status: self.status,
            state: self.state.clone(),
            revision: self.revision,
            reason: self.reason.clone(),
            timeouts: self.timeouts.clone(),
            compensations: self.compensations.clone(),
            commands_sent: self.commands_sent,
            handled: self.handled.clone(),
            in_doubt: self.in_doubt.clone(),
        }
    }
}

impl<S: Saga> SagaInstance<S> {
    pub(crate) fn new(correlation: &str) -> Self {
        Self {
            correlation: correlation.to_owned(),
            status: SagaStatus::Running,
            state: S::State::default(),
            revision: None,
            reason: None,
            timeouts: BTreeMap::new(),
            compensations: Vec::new(),
            commands_sent: 0,
            handled: HashSet::new(),
            in_doubt: BTreeMap::new(),
        }
    }

    /// Whether the instance exists (has a stream).
    #[must_use]
    pub fn exists(&self) -> bool {
        self.revision.is_some()
    }

    /// Compensations not executed yet, in the order they will run (newest first).
    pub fn pending_compensations(&self) -> impl Iterator<Item = (usize, &S::Command)> {
        self.compensations
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, c)| !c.done)
            .map(|(i, c)| (i, &c.command))
    }

    /// Folds one entry.
    pub(crate) fn apply(&mut self, entry: &Entry<S>) {
        match entry {
            Entry::Saga(e) => S::apply(&mut self.state, e),
            Entry::Engine(r) => self.apply_engine(r),
        }
    }

    fn apply_engine(&mut self, record: &EngineRecord<S::Command>) {
        match record {
            EngineRecord::Started { .. } => self.status = SagaStatus::Running,
            EngineRecord::TriggerHandled { trigger, .. } => {
                self.handled.insert(trigger.clone());
            }
            EngineRecord::CommandPlanned {
                command_id,
                command,
                compensation,
            } => {
                self.in_doubt
                    .insert(command_id.clone(), (command.clone(), compensation.clone()));
            }
            EngineRecord::CommandSkipped { command_id } => {
                self.in_doubt.remove(command_id);
            }
            EngineRecord::CommandSent {
                command_id,
                compensation,
                ..
            } => {
                self.in_doubt.remove(command_id);
                self.commands_sent += 1;
                if let Some(c) = compensation {
                    self.compensations.push(PendingCompensation {
                        command: c.clone(),
                        done: false,
                    });
                }
            }
            EngineRecord::CommandRejected {
                command_id, reason, ..
            } => {
                self.in_doubt.remove(command_id);
                self.reason.get_or_insert_with(|| reason.clone());
            }
            EngineRecord::CompensationRegistered { compensation } => {
                self.compensations.push(PendingCompensation {
                    command: compensation.clone(),
                    done: false,
                });
            }
            EngineRecord::TimeoutScheduled {
                name,
                timer_id,
                due_at,
            } => {
                self.timeouts.insert(
                    name.clone(),
                    PendingTimeout {
                        timer_id: timer_id.clone(),
                        due_at: *due_at,
                    },
                );
            }
            EngineRecord::TimeoutCancelled { name, timer_id }
            | EngineRecord::TimeoutFired { name, timer_id } => {
                if self
                    .timeouts
                    .get(name)
                    .is_some_and(|t| &t.timer_id == timer_id)
                {
                    self.timeouts.remove(name);
                }
            }
            EngineRecord::Completed => self.status = SagaStatus::Completed,
            EngineRecord::CompensationStarted { reason } => {
                self.status = SagaStatus::Compensating;
                self.reason = Some(reason.clone());
            }
            EngineRecord::CompensationSent { index, .. } => {
                if let Some(c) = self.compensations.get_mut(*index) {
                    c.done = true;
                }
            }
            EngineRecord::CompensationRejected { .. } => {}
            EngineRecord::Compensated => self.status = SagaStatus::Compensated,
            EngineRecord::Failed { reason } => {
                self.status = SagaStatus::Failed;
                self.reason = Some(reason.clone());
            }
        }
    }
}

/// One instance in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaSummary {
    /// The correlation id.
    pub correlation: String,
    /// The status.
    pub status: SagaStatus,
    /// Why it failed, once it has.
    pub reason: Option<String>,
}
