#![doc = include_str!("../README.md")]

mod catalog;
mod codec;
pub mod compat;
mod decode;
mod default;
mod encode;
mod error;
mod logical;
mod mapping;
mod path;
mod schema;
mod upcast;
pub mod wire;

pub use apache_avro;
pub use catalog::AvroSchemas;
pub use codec::{AVRO_CONTENT_TYPE, AvroCodec, avro_error};
pub use error::{AvroError, Result};
pub use mapping::{BytesAs, JsonMapping, TimeAs};
pub use schema::{ParsedSchema, normalize_json};
pub use upcast::ResolutionChain;
