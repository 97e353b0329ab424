//! [`Vault`]: a key store behind an in-memory key cache, usable from the
//! synchronous codec.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::crypto::DataKey;
use crate::error::{Error, Result};
use crate::keystore::{ForgottenSubject, KeyLookup, KeyStore};

/// How long a cached key is trusted before the key store is asked again, by
/// default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);

type Job = BoxFuture<'static, ()>;

#[derive(Clone)]
enum Cached {
    Key { key: DataKey, fetched: Instant },
    Forgotten,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    jobs: mpsc::UnboundedSender<Job>,
    cache: RwLock<HashMap<String, Cached>>,
}

/// The data subjects' keys, for the codec and for [`forget`](Self::forget).
///
/// [`Codec`](orchestrix::codec::Codec) is synchronous and key stores are
/// asynchronous, so the vault keeps keys in memory and runs every key store
/// call on its own I/O thread (a current-thread Tokio runtime named
/// `orchestrix-gdpr-keys`):
/// - a codec call that finds its key cached does no I/O;
/// - one that does not (first use of a subject in this process, or a key
///   older than the cache TTL) blocks its thread for one key store round
///   trip. The I/O runs on the vault's thread, so this works in any Tokio
///   runtime, current-thread included, and never deadlocks on it;
/// - a forget through this vault takes effect here at once; a forget by
///   another process is seen here when the cached key expires, so within the
///   TTL ([`DEFAULT_CACHE_TTL`], see [`with_cache_ttl`](Self::with_cache_ttl)).
///   A forgotten subject stays forgotten in the cache for good.
///
/// Hand the key store to the vault and use it only through it: a PostgreSQL
/// store's connections then live on the vault's thread.
///
/// Clones share the cache and the thread; the thread ends with the last clone.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
    ttl: Duration,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.inner.store)
            .field("cached", &self.cache().len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn stopped() -> Error {
    Error::key_store(
        "vault",
        "key store call",
        false,
        "the vault's I/O thread stopped",
    )
}

impl Vault {
    /// A vault over `store`, with its I/O thread started.
    ///
    /// # Errors
    /// [`Error::KeyStore`] when the thread or its runtime cannot start.
    pub fn new(store: impl KeyStore) -> Result<Self> {
        Self::from_arc(Arc::new(store))
    }

    /// As [`new`](Self::new), for a shared store.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_arc(store: Arc<dyn KeyStore>) -> Result<Self> {
        let start = |e: std::io::Error| Error::key_store("vault", "start", false, e);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(start)?;
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("orchestrix-gdpr-keys".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(start)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                jobs,
                cache: RwLock::new(HashMap::new()),
            }),
            ttl: DEFAULT_CACHE_TTL,
        })
    }

    /// Trusts a cached key for `ttl` before asking the key store again (zero:
    /// ask every time a key is needed).
    #[must_use]
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The key store's name.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        self.inner.store.backend()
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Cached>> {
        self.inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, subject: &str, entry: Cached) {
        self.inner
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(subject.to_owned(), entry);
    }

    fn submit<T, F>(&self, call: F) -> Result<oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn KeyStore>) -> BoxFuture<'static, Result<T>>,
    {
        let (tx, rx) = oneshot::channel();
        let fut = call(self.inner.store.clone());
        self.inner
            .jobs
            .send(Box::pin(async move {
                let _ = tx.send(fut.await);
            }))
            .map_err(|_| stopped())?;
        Ok(rx)
    }

    async fn call<T, F>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn KeyStore>) -> BoxFuture<'static, Result<T>>,
    {
        self.submit(call)?.await.map_err(|_| stopped())?
    }

    /// Blocks this thread until the I/O thread has answered.
    fn call_blocking<T, F>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn KeyStore>) -> BoxFuture<'static, Result<T>>,
    {
        futures::executor::block_on(self.submit(call)?).map_err(|_| stopped())?
    }

    /// A cached answer: `Some(Some(key))`, `Some(None)` for forgotten, `None`
    /// when the key store must be asked.
    fn cached(&self, subject: &str) -> Option<Option<DataKey>> {
        match self.cache().get(subject)? {
            Cached::Key { key, fetched } if fetched.elapsed() < self.ttl => Some(Some(key.clone())),
            Cached::Key { .. } => None,
            Cached::Forgotten => Some(None),
        }
    }

    /// The key to encrypt with, created if the subject has none.
    pub(crate) fn key_for_write(&self, subject: &str) -> Result<DataKey> {
        match self.cached(subject) {
            Some(Some(key)) => return Ok(key),
            Some(None) => {
                return Err(Error::Forgotten {
                    subject: subject.to_owned(),
                });
            }
            None => {}
        }
        let owned = subject.to_owned();
        match self.call_blocking(move |s| Box::pin(async move { s.get_or_create(&owned).await })) {
            Ok(key) => {
                self.remember(
                    subject,
                    Cached::Key {
                        key: key.clone(),
                        fetched: Instant::now(),
                    },
                );
                Ok(key)
            }
            Err(e @ Error::Forgotten { .. }) => {
                self.remember(subject, Cached::Forgotten);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The key to decrypt with; `None` when the subject was forgotten.
    ///
    /// # Errors
    /// [`Error::UnknownKey`] for a subject the key store never saw.
    pub(crate) fn key_for_read(&self, subject: &str) -> Result<Option<DataKey>> {
        if let Some(answer) = self.cached(subject) {
            return Ok(answer);
        }
        let owned = subject.to_owned();
        let lookup = self.call_blocking(move |s| Box::pin(async move { s.get(&owned).await }))?;
        self.settle(subject, lookup)
    }

    fn settle(&self, subject: &str, lookup: KeyLookup) -> Result<Option<DataKey>> {
        match lookup {
            KeyLookup::Active(key) => {
                self.remember(
                    subject,
                    Cached::Key {
                        key: key.clone(),
                        fetched: Instant::now(),
                    },
                );
                Ok(Some(key))
            }
            KeyLookup::Forgotten(_) => {
                self.remember(subject, Cached::Forgotten);
                Ok(None)
            }
            KeyLookup::Missing => Err(Error::UnknownKey {
                subject: subject.to_owned(),
            }),
        }
    }

    /// Loads the keys of `subjects` into the cache ahead of use, so that the
    /// codec finds them without blocking. Subjects without a key are skipped.
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    pub async fn preload<I, S>(&self, subjects: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for subject in subjects {
            let subject = subject.into();
            let owned = subject.clone();
            let lookup = self
                .call(move |s| Box::pin(async move { s.get(&owned).await }))
                .await?;
            if !matches!(lookup, KeyLookup::Missing) {
                self.settle(&subject, lookup)?;
            }
        }
        Ok(())
    }

    /// Destroys the subject's key in the key store and in this vault's cache;
    /// from now on its personal fields read as erased. Returns whether a key
    /// existed. Idempotent. [`Gdpr::forget`](crate::Gdpr::forget) also
    /// records the request as an event: use that in applications.
    ///
    /// # Errors
    /// [`Error::KeyStore`]; the key may then still exist, and retrying is safe.
    pub async fn forget(&self, subject: &str) -> Result<bool> {
        let owned = subject.to_owned();
        let destroyed = self
            .call(move |s| Box::pin(async move { s.destroy(&owned).await }))
            .await?;
        self.remember(subject, Cached::Forgotten);
        Ok(destroyed)
    }

    /// Whether the subject was forgotten (asks the key store).
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    pub async fn is_forgotten(&self, subject: &str) -> Result<bool> {
        let owned = subject.to_owned();
        let lookup = self
            .call(move |s| Box::pin(async move { s.get(&owned).await }))
            .await?;
        Ok(matches!(lookup, KeyLookup::Forgotten(_)))
    }

    /// Every forgotten subject, oldest first.
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    pub async fn forgotten(&self) -> Result<Vec<ForgottenSubject>> {
        self.call(|s| Box::pin(async move { s.forgotten().await }))
            .await
    }
}
