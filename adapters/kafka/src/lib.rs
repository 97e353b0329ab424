#![doc = include_str!("../README.md")]

pub mod admin;
pub mod bus;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod dead_letter_queue;
pub mod error;
pub mod ingest;
pub mod message;
pub mod publisher;
pub mod transactional;

pub use admin::ensure_topic;
pub use bus::KafkaBus;
pub use config::KafkaConfig;
pub use consumer::{
    ConsumerBuilder, ConsumerStats, ConsumerWorker, LagProbe, OffsetHandler, PartitionLag,
};
pub use dead_letter_queue::KafkaDeadLetters;
pub use error::{Error, Result};
#[cfg(feature = "avro")]
pub use ingest::{AvroIngestBuilder, AvroIngestMapper};
pub use ingest::{IngestAction, IngestBuilder, IngestStats, IngestWorker};
pub use message::{KafkaPosition, KafkaRecord};
pub use publisher::{Delivered, KafkaPublisher};
pub use transactional::TransactionalPublisher;

/// The Kafka client this crate is built on, for settings and types it does
/// not wrap.
pub use rdkafka;

/// The schema registry crate the Avro ingest reads with (feature `avro`):
/// [`ConfluentReader`](orchestrix_schema_registry::ConfluentReader),
/// [`RegistryClient`](orchestrix_schema_registry::RegistryClient).
#[cfg(feature = "avro")]
pub use orchestrix_schema_registry;
