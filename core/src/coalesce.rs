//! Write coalescing: concurrent appends gathered into one batch, one commit.
//!
//! A commit costs an fsync, so a store that commits once per append is capped
//! near the database's commit rate. [`Coalescer`] sits in front of any
//! [`EventStore`]: each caller queues its append and waits; a worker takes
//! everything queued at that moment (never waiting for more), hands it to
//! [`EventStore::append_batch`] as one transaction, and gives every caller its
//! own result. Under light load a lone append goes straight through; under heavy
//! load batches grow by themselves while the previous commit is in flight.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::store::{AppendRequest, AppendResult, EventStore};

/// Coalescing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceConfig {
    /// Most appends in one batch.
    pub max_batch: usize,
    /// Batches committed at the same time (1 for single-writer stores such as
    /// SQLite; a few for PostgreSQL, whose commits overlap).
    pub max_in_flight: usize,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_in_flight: 1,
        }
    }
}

type Job = (AppendRequest, oneshot::Sender<Result<AppendResult>>);

/// Gathers concurrent appends into batches. Cloning shares the queue.
#[derive(Debug, Clone)]
pub struct Coalescer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Coalescer {
    /// Starts the coalescing workers on the current Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn start(store: Arc<dyn EventStore>, config: CoalesceConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..config.max_in_flight.max(1) {
            let rx = rx.clone();
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    // Take the first job (waiting), then whatever else is queued
                    // right now, without waiting for more.
                    let batch = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { return };
                        let mut batch = vec![first];
                        while batch.len() < config.max_batch.max(1) {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    run_batch(&*store, batch).await;
                }
            });
        }
        Self { tx }
    }

    /// Queues one append and waits for its own result.
    ///
    /// # Errors
    /// The append's own error, or [`Error::Shutdown`] when the runtime is gone.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendResult> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((request, tx)).map_err(|_| Error::Shutdown {
            component: "append coalescer",
        })?;
        rx.await.map_err(|_| Error::Shutdown {
            component: "append coalescer",
        })?
    }
}

async fn run_batch(store: &dyn EventStore, batch: Vec<Job>) {
    let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let n = requests.len();
    tracing::trace!(appends = n, "coalesced append batch");
    match store.append_batch(requests).await {
        Ok(results) if results.len() == n => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Ok(results) => {
            let msg = format!("backend returned {} results for {n} appends", results.len());
            for reply in replies {
                let _ = reply.send(Err(Error::corrupted("append batch", msg.clone())));
            }
        }
        Err(e) => {
            // The whole batch failed and nothing was written: every caller gets
            // an error of the same kind (and transience) as the batch's.
            let transient = e.is_transient();
            let text = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(Error::backend(
                    store.backend(),
                    "append",
                    transient,
                    text.clone(),
                )));
            }
        }
    }
}
