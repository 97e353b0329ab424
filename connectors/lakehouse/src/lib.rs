//! Lakehouse sink for Orchestrix: events into **Delta Lake** tables
//! (Parquet data files), exactly once.
//!
//! See the crate README for the design: [`LakehouseSink`] (the sink, a
//! transactional projection), [`schema`] (columns, Avro schemas, evolution
//! rules), [`optimize`] and [`vacuum`] (maintenance), [`read_rows`] and
//! [`read_rows_with`] (reading a table back, optionally through the GDPR
//! codec).
#![doc = include_str!("../README.md")]

mod maintenance;
mod read;
pub mod schema;
mod sink;
mod table;

pub use maintenance::{OptimizeReport, optimize, vacuum};
pub use read::{LiveFile, batch_to_json, live_files, read_batches, read_rows, read_rows_with};
pub use sink::{
    BeforeCommit, LakehouseSink, QualityCheck, SinkBuilder, SinkConfig, SinkStats, TableLayout,
    table_dir_name,
};
pub use table::{is_table, open_table};

/// The `deltalake` crate this sink is built on (with its `arrow` and
/// `parquet` re-exports), for readers of the tables.
pub use deltalake;
