#![doc = include_str!("../README.md")]

pub mod bus;
mod config;
mod connect;
pub mod consumer;
pub mod dead_letter;
pub mod dead_letter_queue;
mod error;
mod handler;
pub mod publisher;
pub mod setup;

/// The `async-nats` version this crate uses.
pub use async_nats;
pub use bus::NatsBus;
pub use config::{
    Auth, ConsumerConfig, DeadLetterConfig, LeaseConfig, NatsConfig, PublisherConfig, Retention,
    Storage, StreamConfig, TlsConfig,
};
pub use connect::{connect, connect_options};
pub use consumer::{
    ConsumerHandle, ConsumerStats, LagProbe, NatsConsumer, NatsConsumerBuilder, PartitionLag,
};
pub use dead_letter_queue::NatsDeadLetters;
pub use error::NatsError;
pub use handler::{CoreHandler, NatsDelivery, NatsHandler};
/// The partition function shared with the in-process runtime.
pub use orchestrix::runtime::partition_for;
pub use publisher::{MSG_ID_HEADER, NatsPublisher, OutgoingMessage, PublishReport};
