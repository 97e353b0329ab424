//! Metric names, labels and the functions that record them.
//!
//! Everything goes through the `metrics` facade: without an
//! installed recorder each call is a cheap no-op. Names follow the Prometheus
//! conventions (`_total` counters, base units in `_seconds`, no unit in a
//! label). The dispatch layers call these functions; a bus adapter that runs
//! handlers or publishes by itself calls them too, so that every transport
//! reports alike.
//!
//! | metric | type | labels | recorded by |
//! |---|---|---|---|
//! | `orchestrix_commands_total` | counter | `command`, `aggregate`, `outcome` | the command executor |
//! | `orchestrix_command_duration_seconds` | histogram | `command`, `aggregate` | the command executor |
//! | `orchestrix_appends_total` | counter | `backend`, `outcome` | [`Store`](crate::Store) |
//! | `orchestrix_append_duration_seconds` | histogram | `backend` | [`Store`](crate::Store) |
//! | `orchestrix_events_appended_total` | counter | `backend` | [`Store`](crate::Store) |
//! | `orchestrix_publishes_total` | counter | `publisher`, `outcome` | the relay (one per publish call) |
//! | `orchestrix_events_published_total` | counter | `publisher` | the relay |
//! | `orchestrix_events_consumed_total` | counter | `consumer`, `outcome` (`ok`, `dead_lettered`) | the runtime's handler call site and dead-letter writer |
//! | `orchestrix_handler_duration_seconds` | histogram | `consumer` | the runtime's handler call site (every attempt) |
//! | `orchestrix_consumer_lag_events` | gauge | `consumer`, `partition` | [`ConsumerMonitor::record_lag`](crate::runtime::ConsumerMonitor::record_lag) |
//! | `orchestrix_consumer_lag_seconds` | gauge | `consumer`, `partition` | [`ConsumerMonitor::record_lag`](crate::runtime::ConsumerMonitor::record_lag) |
//! | `orchestrix_dead_letters_total` | counter | `consumer`, `kind` (the error kind) | the runtime's dead-letter writer |
//! | `orchestrix_saga_instances` | gauge | `saga`, `status` | [`SagaMetrics`](super::SagaMetrics) |
//! | `orchestrix_relay_lag_events` | gauge | `publisher` | [`Relay::record_lag`](crate::relay::Relay::record_lag) |
//!
//! `outcome` is `ok`, `duplicate` (a command id seen before) or the
//! [`Error::kind`](crate::Error::kind) of the failure (`conflict`,
//! `rejected`, `backend`, ...). The embedded consumer reads one all-stream,
//! so its lag has one series with `partition="all"`; bus consumers report one
//! series per partition.

use std::time::Duration;

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

/// `orchestrix_commands_total`
pub const COMMANDS_TOTAL: &str = "orchestrix_commands_total";
/// `orchestrix_command_duration_seconds`
pub const COMMAND_DURATION_SECONDS: &str = "orchestrix_command_duration_seconds";
/// `orchestrix_appends_total`
pub const APPENDS_TOTAL: &str = "orchestrix_appends_total";
/// `orchestrix_append_duration_seconds`
pub const APPEND_DURATION_SECONDS: &str = "orchestrix_append_duration_seconds";
/// `orchestrix_events_appended_total`
pub const EVENTS_APPENDED_TOTAL: &str = "orchestrix_events_appended_total";
/// `orchestrix_publishes_total`
pub const PUBLISHES_TOTAL: &str = "orchestrix_publishes_total";
/// `orchestrix_events_published_total`
pub const EVENTS_PUBLISHED_TOTAL: &str = "orchestrix_events_published_total";
/// `orchestrix_events_consumed_total`
pub const EVENTS_CONSUMED_TOTAL: &str = "orchestrix_events_consumed_total";
/// `orchestrix_handler_duration_seconds`
pub const HANDLER_DURATION_SECONDS: &str = "orchestrix_handler_duration_seconds";
/// `orchestrix_consumer_lag_events`
pub const CONSUMER_LAG_EVENTS: &str = "orchestrix_consumer_lag_events";
/// `orchestrix_consumer_lag_seconds`
pub const CONSUMER_LAG_SECONDS: &str = "orchestrix_consumer_lag_seconds";
/// `orchestrix_dead_letters_total`
pub const DEAD_LETTERS_TOTAL: &str = "orchestrix_dead_letters_total";
/// `orchestrix_saga_instances`
pub const SAGA_INSTANCES: &str = "orchestrix_saga_instances";
/// `orchestrix_relay_lag_events`
pub const RELAY_LAG_EVENTS: &str = "orchestrix_relay_lag_events";

/// The `partition` label of a consumer that reads the whole all-stream.
pub const ALL_PARTITIONS: &str = "all";

/// The `outcome` label of a success.
pub const OK: &str = "ok";

/// Registers the help text and unit of every metric with the installed
/// recorder (call once, after installing it).
pub fn describe() {
    describe_counter!(
        COMMANDS_TOTAL,
        Unit::Count,
        "Commands executed, by command type, aggregate and outcome."
    );
    describe_histogram!(
        COMMAND_DURATION_SECONDS,
        Unit::Seconds,
        "Time to execute a command (load, decide, append, retries)."
    );
    describe_counter!(
        APPENDS_TOTAL,
        Unit::Count,
        "Appends to the event store, by backend and outcome."
    );
    describe_histogram!(
        APPEND_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one append to the event store."
    );
    describe_counter!(
        EVENTS_APPENDED_TOTAL,
        Unit::Count,
        "Events appended to the event store."
    );
    describe_counter!(
        PUBLISHES_TOTAL,
        Unit::Count,
        "Publish calls of the outbox relay, by publisher and outcome."
    );
    describe_counter!(
        EVENTS_PUBLISHED_TOTAL,
        Unit::Count,
        "Events the outbox relay published and checkpointed."
    );
    describe_counter!(
        EVENTS_CONSUMED_TOTAL,
        Unit::Count,
        "Events consumers finished, by consumer and outcome (ok or dead_lettered)."
    );
    describe_histogram!(
        HANDLER_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one handler call (every attempt)."
    );
    describe_gauge!(
        CONSUMER_LAG_EVENTS,
        Unit::Count,
        "Events between a consumer's processed position and the head, per partition."
    );
    describe_gauge!(
        CONSUMER_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event a consumer has not finished, per partition."
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        Unit::Count,
        "Events put in the dead letters, by consumer and error kind."
    );
    describe_gauge!(
        SAGA_INSTANCES,
        Unit::Count,
        "Saga instances by saga and status."
    );
    describe_gauge!(
        RELAY_LAG_EVENTS,
        Unit::Count,
        "Events appended but not yet published by the outbox relay."
    );
}

/// The outcome label of a result.
#[must_use]
pub fn outcome<T>(result: &crate::Result<T>) -> &'static str {
    match result {
        Ok(_) => OK,
        Err(e) => e.kind(),
    }
}

/// One executed command.
pub fn record_command(
    command: &'static str,
    aggregate: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    counter!(COMMANDS_TOTAL, "command" => command, "aggregate" => aggregate, "outcome" => outcome)
        .increment(1);
    histogram!(COMMAND_DURATION_SECONDS, "command" => command, "aggregate" => aggregate)
        .record(took.as_secs_f64());
}

/// One append (of `events` events when it succeeded).
pub fn record_append(backend: &'static str, outcome: &'static str, events: usize, took: Duration) {
    counter!(APPENDS_TOTAL, "backend" => backend, "outcome" => outcome).increment(1);
    histogram!(APPEND_DURATION_SECONDS, "backend" => backend).record(took.as_secs_f64());
    if outcome == OK {
        counter!(EVENTS_APPENDED_TOTAL, "backend" => backend)
            .increment(u64::try_from(events).unwrap_or(u64::MAX));
    }
}

/// One publish call (of `events` events when it succeeded).
pub fn record_publish(publisher: &str, outcome: &'static str, events: usize) {
    counter!(PUBLISHES_TOTAL, "publisher" => publisher.to_owned(), "outcome" => outcome)
        .increment(1);
    if outcome == OK {
        counter!(EVENTS_PUBLISHED_TOTAL, "publisher" => publisher.to_owned())
            .increment(u64::try_from(events).unwrap_or(u64::MAX));
    }
}

/// One handler call (an attempt) that took `took`.
pub fn record_handler_call(consumer: &str, took: Duration) {
    histogram!(HANDLER_DURATION_SECONDS, "consumer" => consumer.to_owned())
        .record(took.as_secs_f64());
}

/// `events` events a consumer finished with `outcome` (`ok` or `dead_lettered`).
pub fn record_consumed(consumer: &str, outcome: &'static str, events: usize) {
    counter!(EVENTS_CONSUMED_TOTAL, "consumer" => consumer.to_owned(), "outcome" => outcome)
        .increment(u64::try_from(events).unwrap_or(u64::MAX));
}

/// One event put in the dead letters; also counts it as consumed with
/// outcome `dead_lettered`.
pub fn record_dead_letter(consumer: &str, kind: &str) {
    counter!(DEAD_LETTERS_TOTAL, "consumer" => consumer.to_owned(), "kind" => kind.to_owned())
        .increment(1);
    record_consumed(consumer, "dead_lettered", 1);
}

/// A consumer's lag on one partition.
pub fn set_consumer_lag(consumer: &str, partition: &str, events: u64, behind: Duration) {
    #[allow(clippy::cast_precision_loss)] // a gauge is an f64; lag is far below 2^53
    gauge!(CONSUMER_LAG_EVENTS, "consumer" => consumer.to_owned(), "partition" => partition.to_owned()).set(events as f64);
    gauge!(CONSUMER_LAG_SECONDS, "consumer" => consumer.to_owned(), "partition" => partition.to_owned())
        .set(behind.as_secs_f64());
}

/// How many instances of `saga` have `status`.
pub fn set_saga_instances(saga: &str, status: &'static str, count: usize) {
    #[allow(clippy::cast_precision_loss)]
    gauge!(SAGA_INSTANCES, "saga" => saga.to_owned(), "status" => status).set(count as f64);
}

/// The relay's lag.
pub fn set_relay_lag(publisher: &str, events: u64) {
    #[allow(clippy::cast_precision_loss)]
    gauge!(RELAY_LAG_EVENTS, "publisher" => publisher.to_owned()).set(events as f64);
}
