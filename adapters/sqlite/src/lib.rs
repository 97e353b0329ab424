#![doc = include_str!("../README.md")]

mod config;
mod conn;
mod convert;
mod error;
mod events;
mod read_models;
mod records;
pub mod schema;
mod store;

pub use config::{MEMORY_PATH, SqliteConfig, Synchronous};
pub use error::{SqliteError, is_transient};
pub use read_models::SqliteReadModels;
pub use records::{load_checkpoint_in, save_checkpoint_in};
/// The `rusqlite` version this crate uses, for code that works inside
/// [`SqliteStore::transaction`].
pub use rusqlite;
pub use store::SqliteStore;
