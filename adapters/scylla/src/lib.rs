#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod schema;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

mod alloc;
mod allstream;
mod append;
mod lwt;
mod ports;
mod rows;
mod tls;

#[cfg(feature = "testing")]
pub use append::PendingAppend;
pub use config::{ConsistencyLevel, RetryConfig, ScyllaConfig, TlsMode};
pub use error::ScyllaError;
pub use schema::KeyspaceName;
pub use store::ScyllaStore;
