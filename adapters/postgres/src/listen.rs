//! The LISTEN task behind [`EventStore::notifications`](orchestrix::store::EventStore::notifications),
//! and the task that announces this process's commits with NOTIFY.
//!
//! After an append commits, the announcing task sends
//! `pg_notify(channel, last_position)` in a transaction of its own: NOTIFY
//! inside the append transaction would make PostgreSQL serialize the
//! commits (and their WAL flushes) of every appending transaction, while a
//! NOTIFY-only transaction has no xid and commits without a flush. While one
//! is in flight, newer positions collapse into the next. (An append inside a
//! caller's transaction, [`PostgresStore::append_in`], notifies in that
//! transaction.) Local commits also wake the LISTEN task directly.
//!
//! On a notification the LISTEN task reads the safe
//! head (the highest position readers can see, which may lag the notified
//! one while an older transaction is still running) and publishes it on the
//! watch channel; while the safe head is below the highest notified
//! position it re-checks with a short backoff, so subscribers wake as soon
//! as the events become readable rather than at their next poll. A lost
//! connection is re-opened with backoff; meanwhile subscribers poll.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::{Inner, PostgresStore};

const RECHECK_MIN: Duration = Duration::from_millis(2);
const RECHECK_MAX: Duration = Duration::from_millis(100);
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

pub(crate) async fn run(weak: Weak<Inner>) {
    let mut reconnect = RECONNECT_MIN;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let connector = inner.connector.clone();
        let pg = inner.config.pg_config();
        let channel = inner.schema.channel();
        drop(inner);
        let Ok(pg) = pg else { return };
        let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
        let connected = connector
            .connect(&pg, move |message| match message {
                tokio_postgres::AsyncMessage::Notification(n) => {
                    tx.send(n.payload().parse::<u64>().unwrap_or(0)).is_ok()
                }
                _ => true,
            })
            .await;
        let (client, driver) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?reconnect, "postgres LISTEN connection failed");
                tokio::time::sleep(reconnect).await;
                reconnect = (reconnect * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        // The channel is derived from a validated schema name.
        if let Err(e) = client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
            tracing::warn!(error = %e, "postgres LISTEN failed");
            driver.abort();
            tokio::time::sleep(reconnect).await;
            reconnect = (reconnect * 2).min(RECONNECT_MAX);
            continue;
        }
        reconnect = RECONNECT_MIN;
        // Commits of this process wake the task directly, without the
        // NOTIFY round trip.
        let mut local = match weak.upgrade() {
            Some(inner) => inner.committed.subscribe(),
            None => return,
        };
        // Catch up with whatever was committed while not listening.
        let mut target = 0;
        let mut recheck = RECHECK_MIN;
        let mut pending = true;
        loop {
            if pending {
                let Some(inner) = weak.upgrade() else {
                    driver.abort();
                    return;
                };
                let store = PostgresStore { inner };
                match store.safe_head().await {
                    Ok(head) => {
                        store.inner.head.send_if_modified(|h| {
                            let changed = head > *h;
                            if changed {
                                *h = head;
                            }
                            changed
                        });
                        if head >= target {
                            pending = false;
                            recheck = RECHECK_MIN;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot read the head position"),
                }
            }
            let wait = if pending {
                recheck
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                message = rx.recv() => match message {
                    Some(position) => {
                        target = target.max(position);
                        while let Ok(p) = rx.try_recv() {
                            target = target.max(p);
                        }
                        pending = true;
                        recheck = RECHECK_MIN;
                    }
                    None => break,
                },
                Ok(()) = local.changed() => {
                    target = target.max(*local.borrow_and_update());
                    pending = true;
                    recheck = RECHECK_MIN;
                }
                () = tokio::time::sleep(wait) => {
                    if pending {
                        recheck = (recheck * 2).min(RECHECK_MAX);
                    }
                }
            }
        }
        tracing::debug!("postgres LISTEN connection closed; reconnecting");
        drop(client);
        driver.abort();
    }
}

/// Sends `pg_notify(channel, position)` for the newest committed position,
/// one at a time (positions committed meanwhile collapse into the next).
pub(crate) async fn announce(weak: Weak<Inner>, mut committed: tokio::sync::watch::Receiver<u64>) {
    while committed.changed().await.is_ok() {
        let position = *committed.borrow_and_update();
        let Some(inner) = weak.upgrade() else { return };
        // The channel is derived from a validated schema name; the payload
        // is a number.
        let sql = format!(
            "SELECT pg_notify('{}', '{position}')",
            inner.schema.channel()
        );
        match inner.pool.get().await {
            Ok(client) => {
                if let Err(e) = client.batch_execute(&sql).await {
                    tracing::debug!(error = %e, "cannot NOTIFY; subscribers elsewhere will poll");
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot NOTIFY; subscribers elsewhere will poll"),
        }
    }
}
