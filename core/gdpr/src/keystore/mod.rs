//! The key store port: one key per data subject, destroyed on forget.
//!
//! A destroyed key leaves a tombstone (the subject and when it was forgotten),
//! so that a forgotten subject is told apart from one that never had a key,
//! and so that no new key is ever created for it.
//!
//! Implementations: [`MemoryKeyStore`] (tests, examples),
//! [`SqliteKeyStore`](sqlite::SqliteKeyStore) (feature `sqlite`, default) and
//! `postgres::PostgresKeyStore` (feature `postgres`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::crypto::DataKey;
use crate::error::{Error, Result};

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// What the key store knows about a data subject.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// The subject's key.
    Active(DataKey),
    /// The subject was forgotten at this time; its key is gone.
    Forgotten(DateTime<Utc>),
    /// The store has never heard of the subject.
    Missing,
}

/// A forgotten data subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenSubject {
    /// The subject id.
    pub subject: String,
    /// When its key was destroyed.
    pub forgotten_at: DateTime<Utc>,
}

/// Keeps one key per data subject.
///
/// Contract (checked for every implementation by this crate's tests):
/// - [`get_or_create`](Self::get_or_create) returns the same key for a subject
///   every time, also across concurrent callers and processes, and refuses a
///   forgotten subject with [`Error::Forgotten`];
/// - [`destroy`](Self::destroy) removes the key for good and leaves a
///   tombstone, even for a subject that never had a key; it is idempotent.
///
/// Use a key store through a [`Vault`](crate::Vault), which runs every call on
/// its own I/O thread; do not share one instance with other code (see the
/// vault's docs for why).
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug + 'static {
    /// A short name for errors and logs, e.g. `sqlite`.
    fn backend(&self) -> &'static str;

    /// The subject's key, created (from the OS random number generator) if
    /// it has none.
    ///
    /// # Errors
    /// [`Error::Forgotten`] for a forgotten subject; [`Error::KeyStore`].
    async fn get_or_create(&self, subject: &str) -> Result<DataKey>;

    /// What the store knows about the subject.
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    async fn get(&self, subject: &str) -> Result<KeyLookup>;

    /// Destroys the subject's key and leaves a tombstone. Returns whether a
    /// key existed (`false` when there was none or it was already destroyed).
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    async fn destroy(&self, subject: &str) -> Result<bool>;

    /// Every forgotten subject, oldest first.
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    async fn forgotten(&self) -> Result<Vec<ForgottenSubject>>;
}

/// Keys in memory: gone when the process ends. For tests and examples.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    entries: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Debug)]
enum Entry {
    Active(DataKey),
    Forgotten(DateTime<Utc>),
}

impl MemoryKeyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get_or_create(&self, subject: &str) -> Result<DataKey> {
        let mut entries = self.entries();
        match entries.get(subject) {
            Some(Entry::Active(key)) => Ok(key.clone()),
            Some(Entry::Forgotten(_)) => Err(Error::Forgotten {
                subject: subject.to_owned(),
            }),
            None => {
                let key = DataKey::generate()?;
                entries.insert(subject.to_owned(), Entry::Active(key.clone()));
                Ok(key)
            }
        }
    }

    async fn get(&self, subject: &str) -> Result<KeyLookup> {
        Ok(match self.entries().get(subject) {
            Some(Entry::Active(key)) => KeyLookup::Active(key.clone()),
            Some(Entry::Forgotten(at)) => KeyLookup::Forgotten(*at),
            None => KeyLookup::Missing,
        })
    }

    async fn destroy(&self, subject: &str) -> Result<bool> {
        let mut entries = self.entries();
        let had_key = matches!(entries.get(subject), Some(Entry::Active(_)));
        if had_key || !entries.contains_key(subject) {
            entries.insert(subject.to_owned(), Entry::Forgotten(Utc::now()));
        }
        Ok(had_key)
    }

    async fn forgotten(&self) -> Result<Vec<ForgottenSubject>> {
        let mut list: Vec<ForgottenSubject> = self
            .entries()
            .iter()
            .filter_map(|(subject, e)| match e {
                Entry::Forgotten(at) => Some(ForgottenSubject {
                    subject: subject.clone(),
                    forgotten_at: *at,
                }),
                Entry::Active(_) => None,
            })
            .collect();
        list.sort_by(|a, b| (a.forgotten_at, &a.subject).cmp(&(b.forgotten_at, &b.subject)));
        Ok(list)
    }
}
