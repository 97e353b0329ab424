//! # The Orchestrix guide
//!
//! From a first aggregate to a service in production, one chapter per
//! module. The chapters are the Markdown files in `docs/guide/chapters/`
//! (readable on their own); this crate includes each as a module's
//! documentation, so `cargo test -p orchestrix-guide --doc` compiles and runs
//! every code block (`no_run` where a service is needed). A book that lives
//! next to the code it shows and fails CI when the code moves: that is why
//! the guide is a crate and not an mdBook whose snippets nobody compiles.
//!
//! 1. [`first_aggregate`]: events, commands, an aggregate, an application.
//! 2. [`stores_by_url`]: memory, SQLite, PostgreSQL, chosen by URL.
//! 3. [`projections`]: typed read models, transactional ones, rebuilds.
//! 4. [`sagas`]: long-running processes with compensation and timeouts.
//! 5. [`running_on_a_bus`]: Kafka or NATS JetStream between the store and
//!    the consumers.
//! 6. [`avro_contracts`]: schemas per version, compatibility, the wire format.
//! 7. [`operations`]: the worker, metrics, tracing, the CLI.
//! 8. [`testing`]: fixtures for aggregates and sagas, the conformance suite.
//!
//! The chapters share a small bank, [`domain`].

pub mod domain;

#[doc = include_str!("../chapters/01-first-aggregate.md")]
pub mod first_aggregate {}

#[doc = include_str!("../chapters/02-stores-by-url.md")]
pub mod stores_by_url {}

#[doc = include_str!("../chapters/03-projections.md")]
pub mod projections {}

#[doc = include_str!("../chapters/04-sagas.md")]
pub mod sagas {}

#[doc = include_str!("../chapters/05-running-on-a-bus.md")]
pub mod running_on_a_bus {}

#[doc = include_str!("../chapters/06-avro-contracts.md")]
pub mod avro_contracts {}

#[doc = include_str!("../chapters/07-operations.md")]
pub mod operations {}

#[doc = include_str!("../chapters/08-testing.md")]
pub mod testing {}
