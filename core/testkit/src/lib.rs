#![doc = include_str!("../README.md")]

pub mod bus;
#[cfg(feature = "containers")]
pub mod containers;
pub mod fixture;
pub mod random;
pub mod read_models;
pub mod saga_fixture;
pub mod services;
pub mod store;

pub use fixture::AggregateFixture;
pub use saga_fixture::{SagaFixture, SagaThen};
pub use services::{Service, require};

/// The Tokio the generated tests run on; not a public API.
#[doc(hidden)]
pub use tokio;

/// Runs one conformance case on a fresh multi-threaded runtime with four
/// workers; used by [`store_conformance!`]. Not a public API.
///
/// # Panics
/// When the case panics, or when the runtime cannot be built.
#[doc(hidden)]
pub fn __run_case<F: std::future::Future<Output = ()>>(case: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("cannot build the Tokio runtime for a conformance case")
        .block_on(case);
}

/// What a [`store_conformance!`] factory returns: a backend, or `None` to
/// skip the case. Not a public API.
#[doc(hidden)]
pub trait __CaseBackend {
    #[doc(hidden)]
    fn __into_backend(self) -> Option<orchestrix::store::Backend>;
}

impl __CaseBackend for orchestrix::store::Backend {
    fn __into_backend(self) -> Option<orchestrix::store::Backend> {
        Some(self)
    }
}

impl __CaseBackend for Option<orchestrix::store::Backend> {
    fn __into_backend(self) -> Option<orchestrix::store::Backend> {
        self
    }
}

/// Expands to one `#[test]` per case of [`store`], each running
/// `store::<case>(factory().await)` on a multi-threaded Tokio runtime with four
/// workers, so every case is reported on its own.
///
/// `factory` is a path to an `async fn() -> orchestrix::store::Backend`, or
/// to an `async fn() -> Option<Backend>` for a store behind a service: `None`
/// skips the case (the factory prints why, and under `CI=true` fails
/// instead, as [`services::require`] does). It is called once per case. Cases
/// use random names for everything they touch, so the factory may hand every
/// case the same database.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix::store::{Backend, memory::MemoryStore};
///
/// async fn memory() -> Backend {
///     Backend::from_all(Arc::new(MemoryStore::new()))
/// }
///
/// orchestrix_testkit::store_conformance!(memory);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($factory:path) => {
        $crate::__with_store_cases!(__store_conformance_tests!($factory));
    };
}

/// Generates the tests of [`store_conformance!`]; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    (($factory:path) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__run_case(async {
                    if let Some(backend) = $crate::__CaseBackend::__into_backend($factory().await) {
                        $crate::store::$case(backend).await;
                    }
                });
            }
        )*
    };
}

/// Generates [`store::CASES`]; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_case_names {
    (() $($case:ident),* $(,)?) => {
        /// The name of every case, in the order [`store_conformance!`](crate::store_conformance) runs them.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];
    };
}

/// Checks at compile time that every case future is `Send + 'static`, so
/// that callers may spawn cases; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases_are_send {
    (() $($case:ident),* $(,)?) => {
        #[allow(dead_code)]
        fn __cases_are_send(backend: ::orchestrix::store::Backend) {
            fn send<T: Send + 'static>(_: T) {}
            $( send($crate::store::$case(backend.clone())); )*
        }
    };
}

/// The one list of store cases: calls `$callback!(($args) case, case, ...)`.
/// Not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_store_cases {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            revisions_start_at_zero_without_gaps,
            read_stream_from_revision_with_limits,
            nonexistent_stream_reads_empty,
            expected_revision_any,
            expected_revision_no_stream,
            expected_revision_stream_exists,
            expected_revision_exact,
            empty_append_is_rejected,
            duplicate_event_ids_in_one_append_are_rejected,
            find_event_locates_an_event_in_its_stream,
            multi_event_append_is_atomic,
            append_batch_results_are_independent,
            concurrent_appenders_one_winner_per_revision,
            all_stream_positions_strictly_increase,
            read_all_honours_after_limit_and_filters,
            head_position_tracks_appends,
            read_all_never_skips_under_concurrent_appends,
            subscription_catches_up_then_stays_live,
            subscription_with_filter,
            metadata_round_trip,
            binary_data_round_trip,
            snapshots_keep_the_highest_revision,
            checkpoints_load_save_overwrite_delete,
            dead_letters_put_list_get_delete,
            timers_schedule_due_cancel,
            large_stream_round_trip,
            upcasting_on_every_read_path,
        }
    };
}

/// Expands to one `#[test]` per case of [`read_models`], each running
/// `read_models::<case>(store)` on a multi-threaded Tokio runtime with four
/// workers.
///
/// `factory` is a path to an
/// `async fn() -> Option<Arc<dyn orchestrix::runtime::ReadModelStore>>`,
/// called once per case; `None` skips the case (a factory that needs a
/// service returns it after [`require`], which fails under `CI=true` instead).
/// Cases use random view and stream names, so the factory may hand every
/// case the same database.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix::runtime::{MemoryReadModels, ReadModelStore};
///
/// async fn memory() -> Option<Arc<dyn ReadModelStore>> {
///     Some(Arc::new(MemoryReadModels::new()))
/// }
///
/// orchestrix_testkit::read_model_conformance!(memory);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! read_model_conformance {
    ($factory:path) => {
        $crate::__with_read_model_cases!(__read_model_conformance_tests!($factory));
    };
}

/// Generates the tests of [`read_model_conformance!`]; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __read_model_conformance_tests {
    (($factory:path) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__run_case(async {
                    if let Some(store) = $factory().await {
                        $crate::read_models::$case(store).await;
                    }
                });
            }
        )*
    };
}

/// Generates [`read_models::CASES`]; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __read_model_case_names {
    (() $($case:ident),* $(,)?) => {
        /// The name of every case, in the order [`read_model_conformance!`](crate::read_model_conformance) runs them.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];
    };
}

/// The one list of read-model cases: calls `$callback!(($args) case, ...)`.
/// Not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_read_model_cases {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            load_and_load_all_ordered_by_key,
            apply_replaces_the_row,
            applied_or_older_revisions_are_skipped,
            streams_are_independent,
            views_are_isolated,
            clear_wipes_rows_and_revisions,
            failing_change_changes_nothing,
            concurrent_applies_of_one_revision_apply_once,
        }
    };
}

/// Expands to one `#[test]` per case of [`bus`], each running
/// `bus::<case>(factory)` on a multi-threaded Tokio runtime with four
/// workers.
///
/// `factory` is a path to an
/// `async fn() -> Option<std::sync::Arc<dyn orchestrix_testkit::bus::BusFactory>>`,
/// called once per case; `None` skips the case (a factory that needs a
/// service returns it after [`require`], which fails under `CI=true`
/// instead). Cases name their applications, groups and streams randomly,
/// so every case may share one broker.
///
/// ```
/// use std::sync::Arc;
/// use futures::future::BoxFuture;
/// use orchestrix::bus::{Bus, MemoryBus};
/// use orchestrix_testkit::bus::BusFactory;
///
/// struct Memory(MemoryBus);
/// impl BusFactory for Memory {
///     fn bus<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Arc<dyn Bus>> {
///         Box::pin(async move { Arc::new(self.0.for_app(app)) as Arc<dyn Bus> })
///     }
/// }
///
/// async fn memory() -> Option<Arc<dyn BusFactory>> {
///     Some(Arc::new(Memory(MemoryBus::new("unused", 4))))
/// }
///
/// orchestrix_testkit::bus_conformance!(memory);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! bus_conformance {
    ($factory:path) => {
        $crate::__with_bus_cases!(__bus_conformance_tests!($factory));
    };
}

/// Generates the tests of [`bus_conformance!`]; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __bus_conformance_tests {
    (($factory:path) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__run_case(async {
                    if let Some(factory) = $factory().await {
                        $crate::bus::$case(factory).await;
                    }
                });
            }
        )*
    };
}

/// Generates [`bus::CASES`]; not a public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __bus_case_names {
    (() $($case:ident),* $(,)?) => {
        /// The name of every case, in the order [`bus_conformance!`](crate::bus_conformance) runs them.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];
    };
}

/// The one list of bus cases: calls `$callback!(($args) case, ...)`. Not a
/// public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_bus_cases {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            per_stream_order_under_parallel_partitions,
            at_least_once_redelivery_after_a_crash,
            rebalance_when_members_join_and_leave,
            poison_message_is_dead_lettered_and_later_events_flow,
            dead_letter_replay,
            exactly_once_read_model_through_the_stored_position,
            resume_after_restart_from_the_committed_position,
            duplicate_publish_is_dropped,
            applications_on_one_broker_are_isolated,
            pause_and_resume,
        }
    };
}
