#![doc = include_str!("../README.md")]

pub mod console;
pub mod error;
pub mod inspect;
pub mod operate;

pub use error::{Error, Result};
pub use inspect::Inspector;
pub use operate::Operations;
