//! Connection threads: one writer connection and a small pool of readers, each
//! owned by its own OS thread, fed with jobs over channels.
//!
//! SQLite calls block, so no connection is ever touched from an async task:
//! an async caller sends a closure to the thread that owns the connection and
//! awaits its reply on a oneshot channel. The writer is the only connection
//! that writes, which serializes commits and makes positions gap-safe.

use std::any::Any;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;

use orchestrix::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::config::SqliteConfig;
use crate::error::{SqliteError, backend};
use crate::schema;

type WriteJob = Box<dyn FnOnce(&mut Connection) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

const WRITER: &str = "sqlite writer";
const READERS: &str = "sqlite reader pool";

/// The writer thread's queue and, unless reads share the writer, the readers'.
#[derive(Debug)]
pub(crate) struct Connections {
    writer: mpsc::Sender<WriteJob>,
    readers: Option<mpsc::Sender<ReadJob>>,
    reader_count: usize,
}

impl Connections {
    /// Opens the writer (creating and migrating the database), then the readers.
    pub(crate) async fn open(config: &SqliteConfig) -> Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (writer, jobs) = mpsc::channel::<WriteJob>();
        let cfg = config.clone();
        thread::Builder::new()
            .name("orchestrix-sqlite-writer".into())
            .spawn(move || {
                let mut conn = match open_writer(&cfg) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = jobs.recv() {
                    job(&mut conn);
                    if !conn.is_autocommit() {
                        // A job left a transaction open (a panic inside raw
                        // `BEGIN` ... `COMMIT`): never let it leak into the next job.
                        tracing::error!(
                            "a job left a transaction open on the SQLite writer; rolling it back"
                        );
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
            })
            .map_err(|e| backend("open", SqliteError::Thread(e)))?;
        ready_rx
            .await
            .map_err(|_| Error::Shutdown { component: WRITER })??;

        let reader_count = if config.is_in_memory() {
            0
        } else {
            config.read_pool_size
        };
        let readers = if reader_count == 0 {
            None
        } else {
            Some(spawn_readers(config, reader_count).await?)
        };
        Ok(Self {
            writer,
            readers,
            reader_count,
        })
    }

    /// Number of reader connections (0 when reads use the writer).
    pub(crate) fn reader_count(&self) -> usize {
        self.reader_count
    }

    /// Runs `f` on the writer connection and returns its result.
    pub(crate) async fn write<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let _ = reply.send(guarded("writer", operation, || f(conn)));
        });
        self.writer
            .send(job)
            .map_err(|_| Error::Shutdown { component: WRITER })?;
        result
            .await
            .map_err(|_| Error::Shutdown { component: WRITER })?
    }

    /// Runs `f` on a read-only connection (the writer when there are no readers).
    pub(crate) async fn read<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.write(operation, move |conn| f(conn)).await;
        };
        let (reply, result) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(guarded("reader", operation, || f(conn)));
        });
        readers
            .send(job)
            .map_err(|_| Error::Shutdown { component: READERS })?;
        result
            .await
            .map_err(|_| Error::Shutdown { component: READERS })?
    }
}

/// Runs a job, turning a panic into an error so that the thread survives it.
fn guarded<T>(
    thread: &'static str,
    operation: &'static str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(backend(
            operation,
            SqliteError::Panicked {
                thread,
                message: panic_message(&*panic),
            },
        ))
    })
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

async fn spawn_readers(config: &SqliteConfig, count: usize) -> Result<mpsc::Sender<ReadJob>> {
    let (sender, jobs) = mpsc::channel::<ReadJob>();
    let jobs = Arc::new(Mutex::new(jobs));
    let mut ready = Vec::with_capacity(count);
    for i in 0..count {
        let (ready_tx, ready_rx) = oneshot::channel();
        ready.push(ready_rx);
        let jobs = jobs.clone();
        let cfg = config.clone();
        thread::Builder::new()
            .name(format!("orchestrix-sqlite-reader-{i}"))
            .spawn(move || {
                let conn = match open_reader(&cfg) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    // Hold the lock only while waiting for a job, not while running it.
                    let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(&conn),
                        Err(_) => return,
                    }
                    if !conn.is_autocommit() {
                        // A `query` closure left a read transaction open: it
                        // would pin an old snapshot and block checkpoints.
                        tracing::error!(
                            "a job left a transaction open on a SQLite reader; rolling it back"
                        );
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
            })
            .map_err(|e| backend("open", SqliteError::Thread(e)))?;
    }
    for r in ready {
        r.await
            .map_err(|_| Error::Shutdown { component: READERS })??;
    }
    Ok(sender)
}

fn open_writer(config: &SqliteConfig) -> Result<Connection> {
    let driver = |e| backend("open", e);
    let mut conn = if config.is_in_memory() {
        Connection::open_in_memory().map_err(driver)?
    } else {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if config.create_if_missing {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
            if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                if !config.create_dirs {
                    return Err(backend(
                        "open",
                        SqliteError::MissingDirectory {
                            path: dir.display().to_string(),
                        },
                    ));
                }
                fs::create_dir_all(dir).map_err(|source| {
                    backend(
                        "open",
                        SqliteError::CreateDir {
                            path: dir.display().to_string(),
                            source,
                        },
                    )
                })?;
            }
        }
        Connection::open_with_flags(&config.path, flags).map_err(driver)?
    };
    configure(&conn, config).map_err(driver)?;
    if !config.is_in_memory() {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(driver)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %config.path.display(), journal_mode = %mode, "SQLite refused WAL mode; readers and the writer will block each other");
        }
    }
    conn.pragma_update(None, "wal_autocheckpoint", config.wal_autocheckpoint_pages)
        .map_err(driver)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

fn open_reader(config: &SqliteConfig) -> Result<Connection> {
    let driver = |e| backend("open", e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&config.path, flags).map_err(driver)?;
    configure(&conn, config).map_err(driver)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(driver)?;
    Ok(conn)
}

/// Per-connection settings (journal mode is per database, set by the writer).
fn configure(conn: &Connection, config: &SqliteConfig) -> rusqlite::Result<()> {
    conn.busy_timeout(config.busy_timeout())?;
    conn.set_prepared_statement_cache_capacity(config.statement_cache_capacity);
    conn.pragma_update(None, "synchronous", config.synchronous.as_str())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -i64::from(config.cache_size_kib))?;
    conn.pragma_update(
        None,
        "mmap_size",
        i64::try_from(config.mmap_size_bytes).unwrap_or(i64::MAX),
    )?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}
