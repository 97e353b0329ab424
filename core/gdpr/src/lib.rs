#![doc = include_str!("../README.md")]

pub mod codec;
pub mod crypto;
mod error;
pub mod fields;
mod gdpr;
pub mod keystore;
mod personal;
pub mod vault;

pub use codec::PersonalDataCodec;
pub use error::{Error, Result, gdpr_error};
pub use fields::{EventFields, FieldPath, PersonalFields};
pub use gdpr::{DEFAULT_AUDIT_CATEGORY, ForgetRequest, Forgotten, Gdpr, GdprEvent};
pub use keystore::{ForgottenSubject, KeyLookup, KeyStore, MemoryKeyStore};
pub use personal::{ERASED_KEY, Personal, erased_marker, is_erased};
pub use vault::Vault;
