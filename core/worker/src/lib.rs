#![doc = include_str!("../README.md")]

pub mod config;
mod error;
mod http;
pub mod metrics;
mod signal;
mod store;
pub mod telemetry;
mod worker;

pub use config::{BusConfig, LogFormat, WorkerConfig};
pub use error::{Error, Result};
pub use http::PROMETHEUS_CONTENT_TYPE;
pub use signal::shutdown_signal;
pub use store::open_store;
pub use telemetry::{OtelPropagator, Telemetry, TelemetryBuilder};
pub use worker::{Worker, WorkerHandle};
