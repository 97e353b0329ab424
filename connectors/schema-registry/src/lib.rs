#![doc = include_str!("../README.md")]

mod api;
mod client;
mod confluent;
mod error;
mod reader;
mod registry;
pub mod server;
pub mod storage;
mod types;
pub mod wire;

pub use api::SchemaRegistry;
pub use client::RegistryClient;
pub use confluent::ConfluentAvro;
pub use error::{RegistryError, Result};
pub use orchestrix_avro::compat::CompatibilityLevel;
pub use reader::{ConfluentReader, DecodeError, Decoded};
pub use registry::EmbeddedRegistry;
pub use types::{CONTENT_TYPE, CompatibilityResult, SubjectVersion, VersionSpec};
pub use wire::AvroWireFormat;
