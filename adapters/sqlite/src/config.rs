//! [`SqliteConfig`]: where the store lives and how it trades durability for speed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrix::url::{BackendUrl, Scheme};
use orchestrix::{Error, Result};
use serde::{Deserialize, Serialize};

/// The path that selects an in-memory database instead of a file.
pub const MEMORY_PATH: &str = ":memory:";

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
///
/// The store always runs in WAL mode, where both settings keep the database
/// consistent: a crash or power loss never corrupts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Synchronous {
    /// `synchronous=NORMAL`: the WAL is synced at checkpoints, not at every
    /// commit. A process crash loses nothing; a power loss or OS crash may lose
    /// the last commits (they roll back as a whole, never half-written).
    /// Commits cost no fsync, so this is the default.
    #[default]
    #[serde(alias = "normal")]
    Normal,
    /// `synchronous=FULL`: every commit is synced before it returns, so a
    /// committed append survives a power loss. Each commit costs an fsync;
    /// write coalescing ([`orchestrix::coalesce`]) amortizes it over a batch.
    #[serde(alias = "full")]
    Full,
}

impl Synchronous {
    /// The pragma value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of a [`SqliteStore`](crate::SqliteStore).
///
/// Every field has a default, so a config file only names what it changes:
///
/// ```
/// use orchestrix_sqlite::{SqliteConfig, Synchronous};
/// let config: SqliteConfig = serde_json::from_str(r#"{ "path": "data/app.db", "synchronous": "FULL" }"#)?;
/// assert_eq!(config.synchronous, Synchronous::Full);
/// assert_eq!(config.read_pool_size, SqliteConfig::default().read_pool_size);
/// assert!(serde_json::from_str::<SqliteConfig>(r#"{ "pth": "typo.db" }"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file; created when missing and `create_if_missing` is
    /// set. Its directory must exist unless `create_dirs` is set.
    /// `:memory:` selects a private in-memory database that lives as long as
    /// the store.
    pub path: PathBuf,
    /// Whether to create the file when it does not exist; when `false`,
    /// opening a missing file fails.
    pub create_if_missing: bool,
    /// Whether to create the file's missing parent directories (URL option
    /// `?create_dirs=true`). Off by default, so that a mistyped path fails
    /// with an error naming the missing directory instead of creating a tree
    /// somewhere unexpected.
    pub create_dirs: bool,
    /// How long, in milliseconds, a statement waits for a lock held by another
    /// connection or process before failing with `SQLITE_BUSY` (reported as a
    /// transient backend error).
    pub busy_timeout_ms: u64,
    /// Durability of commits: `NORMAL` (default) or `FULL`; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// Number of read-only connections, each on its own thread, that serve
    /// reads in parallel with the writer. `0` sends reads to the writer
    /// connection. Ignored for `:memory:`, which always uses one connection.
    pub read_pool_size: usize,
    /// Prepared statements kept per connection (`prepare_cached`).
    pub statement_cache_capacity: usize,
    /// Page cache per connection, in KiB (`PRAGMA cache_size = -N`).
    pub cache_size_kib: u32,
    /// Size of the memory map SQLite may use for reads, in bytes
    /// (`PRAGMA mmap_size`); `0` disables memory-mapped I/O.
    pub mmap_size_bytes: u64,
    /// WAL size, in pages, at which a commit checkpoints the WAL back into the
    /// database file (`PRAGMA wal_autocheckpoint`); `0` disables automatic
    /// checkpoints.
    pub wal_autocheckpoint_pages: u32,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("orchestrix.db"),
            create_if_missing: true,
            create_dirs: false,
            busy_timeout_ms: 5_000,
            synchronous: Synchronous::Normal,
            read_pool_size: 4,
            statement_cache_capacity: 64,
            cache_size_kib: 16 * 1024,
            mmap_size_bytes: 0,
            wal_autocheckpoint_pages: 1_000,
        }
    }
}

impl SqliteConfig {
    /// The defaults, on the database file `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The defaults, on a private in-memory database.
    #[must_use]
    pub fn in_memory() -> Self {
        Self::new(MEMORY_PATH)
    }

    /// The config for a `sqlite://PATH[?create_dirs=true]` or
    /// `sqlite::memory:` URL.
    ///
    /// ```
    /// use orchestrix::url::BackendUrl;
    /// use orchestrix_sqlite::SqliteConfig;
    /// let c = SqliteConfig::from_url(&BackendUrl::parse("sqlite://data/app.db")?)?;
    /// assert_eq!(c.path, std::path::Path::new("data/app.db"));
    /// assert!(!c.create_dirs);
    /// let c = SqliteConfig::from_url(&BackendUrl::parse("sqlite://data/app.db?create_dirs=true")?)?;
    /// assert_eq!(c.path, std::path::Path::new("data/app.db"));
    /// assert!(c.create_dirs);
    /// assert!(SqliteConfig::from_url(&BackendUrl::parse("sqlite://x.db?nope=1")?).is_err());
    /// assert!(SqliteConfig::from_url(&BackendUrl::parse("sqlite::memory:")?)?.is_in_memory());
    /// assert!(SqliteConfig::from_url(&BackendUrl::parse("memory://")?).is_err());
    /// # Ok::<(), orchestrix::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the URL is not a `sqlite` URL or has an
    /// unknown option.
    pub fn from_url(url: &BackendUrl) -> Result<Self> {
        if url.scheme() != Scheme::Sqlite {
            return Err(Error::invalid(
                format!("backend URL `{url}`"),
                format!(
                    "the SQLite store needs a `sqlite://` URL, not `{}://`",
                    url.scheme()
                ),
            ));
        }
        let (path, query) = url.rest().split_once('?').unwrap_or((url.rest(), ""));
        let mut config = Self::new(path);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let flag = |value: &str| match value {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(Error::invalid(
                    format!("backend URL `{url}`"),
                    format!("`{key}` takes true or false, not `{other}`"),
                )),
            };
            match key {
                "create_dirs" => config.create_dirs = flag(value)?,
                other => {
                    return Err(Error::invalid(
                        format!("backend URL `{url}`"),
                        format!("unknown option `{other}` (known: create_dirs)"),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// Whether this selects an in-memory database.
    #[must_use]
    pub fn is_in_memory(&self) -> bool {
        self.path == Path::new(MEMORY_PATH)
    }

    /// The busy timeout as a [`Duration`].
    #[must_use]
    pub fn busy_timeout(&self) -> Duration {
        Duration::from_millis(self.busy_timeout_ms)
    }

    /// Sets [`synchronous`](Self::synchronous).
    #[must_use]
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets [`read_pool_size`](Self::read_pool_size).
    #[must_use]
    pub fn with_read_pool_size(mut self, size: usize) -> Self {
        self.read_pool_size = size;
        self
    }

    /// Sets [`busy_timeout_ms`](Self::busy_timeout_ms).
    #[must_use]
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }
}
