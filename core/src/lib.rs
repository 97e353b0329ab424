#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod app;
pub mod bus;
pub mod catalog;
pub mod cloudevent;
pub mod coalesce;
pub mod codec;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod executor;
pub mod id;
pub mod relay;
pub mod runtime;
pub mod saga;
pub mod store;
pub mod telemetry;
pub mod upcast;
pub mod url;
pub mod wire;

pub use aggregate::Aggregate;
pub use app::{Application, ApplicationBuilder, IntoProjection, Module};
pub use cloudevent::CloudEvent;
pub use error::{BoxError, Error, ErrorClass, Result};
pub use event::{Command, Event, EventRecord, EventTypeInfo, Metadata, RecordedEvent};
pub use executor::{CommandContext, CommandExecutor, CommandOutcome, ExecutorConfig};
pub use id::StreamId;
pub use runtime::{
    Consumer, ConsumerConfig, DeadLetters, EventHandler, Projection, ProjectionRunner, ReadModel,
    Runtime, View,
};
pub use saga::{Saga, SagaEngine, SagaStatus, SagaStep};
pub use store::dispatch::Store;
pub use store::{Direction, ExpectedRevision, Filter};
pub use upcast::Upcasters;

#[cfg(feature = "derive")]
pub use orchestrix_macros::{Command, Event};

/// Support for the derive macros; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    pub use crate::event::{__retag as retag, __unknown as unknown, __untag as untag};

    #[must_use]
    pub fn encode_error(what: String, err: serde_json::Error) -> crate::Error {
        crate::Error::encode(what, err)
    }

    #[must_use]
    pub fn decode_error(what: String, err: serde_json::Error) -> crate::Error {
        crate::Error::decode(what, err)
    }
}
