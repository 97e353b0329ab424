//! The embedded runtime: projections, partitioned consumers, sagas, retries and
//! dead letters.

pub mod handler;
pub mod retry;

pub use handler::{Delivery, EventHandler};
pub use retry::RetryPolicy;
