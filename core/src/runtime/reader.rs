//! Reads a consumer's events from the all-stream: catch-up, then live.
//!
//! Like [`Store::subscribe`] (no gap, no duplicate), and in addition it
//! reports how far it has *scanned*: when a read comes back short, every
//! matching event up to the head seen before the read has been returned, so a
//! filtered consumer's position moves past events it does not want.
//!
//! A read that fails permanently (typically an upcaster that cannot upcast one
//! stored payload) is retried on the raw backend, upcasting event by event, so
//! that only the bad events are marked poisoned and go to the dead letters.

use std::time::Duration;

use tracing::Instrument as _;

use super::shutdown::Shutdown;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::store::{Filter, Store};

/// One event to deliver, or a poisoned one to dead-letter right away.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) event: RecordedEvent,
    /// Why the event cannot be delivered (it failed to upcast).
    pub(crate) poison: Option<Error>,
}

/// The result of one read.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) items: Vec<Item>,
    /// Every matching event at or below this position is in this batch or an
    /// earlier one.
    pub(crate) scanned: u64,
}

#[derive(Debug)]
pub(crate) struct Reader {
    store: Store,
    filter: Filter,
    batch: usize,
    after: u64,
    notify: Option<tokio::sync::watch::Receiver<u64>>,
    idle: bool,
    name: String,
}

impl Reader {
    pub(crate) fn new(
        store: Store,
        filter: Filter,
        batch: usize,
        after: u64,
        name: String,
    ) -> Self {
        let notify = store.backend().events.notifications();
        Self {
            store,
            filter,
            batch: batch.max(1),
            after,
            notify,
            idle: false,
            name,
        }
    }

    /// The next batch (possibly empty, when only the scanned position moved);
    /// waits for new events after an empty one and retries failed reads with
    /// backoff. `None` once shutdown is asked for.
    pub(crate) async fn next(&mut self, shutdown: &Shutdown) -> Option<Batch> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_triggered() {
                return None;
            }
            if self.idle {
                self.idle = false;
                self.wait(shutdown).await;
                continue;
            }
            match self.read().await {
                Ok(batch) => {
                    self.idle = batch.items.is_empty();
                    return Some(batch);
                }
                Err(error) => {
                    tracing::error!(consumer = %self.name, after = self.after, error = %error, ?backoff, "read failed; retrying");
                    if !shutdown.sleep(backoff).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn read(&mut self) -> Result<Batch> {
        // Mark the current head as seen before reading, so a commit that lands
        // during the read wakes us again.
        if let Some(rx) = &mut self.notify {
            rx.borrow_and_update();
        }
        let head = self.store.head_position().await?;
        let items: Vec<Item> = match self
            .store
            .read_all(self.after, self.batch, &self.filter)
            .await
        {
            Ok(events) => events
                .into_iter()
                .map(|event| Item {
                    event,
                    poison: None,
                })
                .collect(),
            Err(error) if !error.is_transient() => {
                tracing::warn!(consumer = %self.name, after = self.after, error = %error, "read failed permanently; isolating the bad events");
                self.read_raw().await?
            }
            Err(error) => return Err(error),
        };
        let last = items.last().map_or(self.after, |i| i.event.position);
        let scanned = if items.len() < self.batch {
            last.max(head)
        } else {
            last
        };
        self.after = scanned.max(self.after);
        Ok(Batch {
            items,
            scanned: self.after,
        })
    }

    /// Reads without upcasting, then upcasts each event alone.
    async fn read_raw(&self) -> Result<Vec<Item>> {
        let span = tracing::debug_span!(
            "orchestrix.read_all",
            backend = self.store.backend_name(),
            after = self.after,
            limit = self.batch,
            raw = true
        );
        let raw = self
            .store
            .backend()
            .events
            .read_all(self.after, self.batch, &self.filter)
            .instrument(span)
            .await?;
        let codec = self.store.codec().clone();
        Ok(raw
            .into_iter()
            .map(|event| {
                let mut upcast = event.clone();
                match self
                    .store
                    .upcasters()
                    .upcast_record(&*codec, &mut upcast.record)
                {
                    Ok(()) => Item {
                        event: upcast,
                        poison: None,
                    },
                    Err(error) => Item {
                        event,
                        poison: Some(error),
                    },
                }
            })
            .collect())
    }

    async fn wait(&mut self, shutdown: &Shutdown) {
        let poll = self.store.poll_interval();
        match &mut self.notify {
            Some(rx) => {
                tokio::select! {
                    // The poll bounds the wait even if a notification is lost.
                    changed = tokio::time::timeout(poll, rx.changed()) => {
                        if let Ok(Err(_)) = changed {
                            // The backend dropped its notifier: poll from now on.
                            self.notify = None;
                        }
                    }
                    () = shutdown.triggered() => {}
                }
            }
            None => {
                shutdown.sleep(poll).await;
            }
        }
    }
}
