#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod projection;
pub mod readmodel;
pub mod schema;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod view_store;

mod append;
mod listen;
mod rows;
mod tls;

pub use config::{PostgresConfig, RetryConfig, TlsMode};
pub use projection::{PostgresProjection, ReadModel};
pub use readmodel::{ReadModelTx, delete_checkpoint_in, load_checkpoint_in, save_checkpoint_in};
pub use schema::SchemaName;
pub use store::PostgresStore;
pub use view_store::PostgresReadModels;
