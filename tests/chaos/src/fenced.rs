//! A checkpointed read model for Kafka consumer-group members in several
//! processes, fenced against zombies: the counter events it applies and the
//! next offset of each partition are written in one PostgreSQL transaction
//! (an [`OffsetHandler`]), and every assignment takes a fencing token.
//!
//! - [`load_offsets`](OffsetHandler::load_offsets), which the consumer
//!   worker calls on every assignment before the partition's first record,
//!   increments the partition's epoch in `owners` and remembers it.
//! - [`handle`](OffsetHandler::handle) locks the partition's `owners` row and
//!   applies a record only if the epoch is still the one this process took
//!   (else it is counted in `fenced`: a member that lost the partition, e.g.
//!   frozen by SIGSTOP or cut off the network beyond its session timeout,
//!   and still holds fetched records) and only if its offset is not behind
//!   the stored one (else it is counted in `redelivered`).
//!
//! Every applied record is a row of `applied` (no uniqueness constraint, so
//! that a record applied twice shows). Each session sets
//! `idle_in_transaction_session_timeout` (1 s): a member frozen inside a
//! transaction has its session ended by the server and its row locks
//! released, instead of blocking the member that took over. The members
//! reach the database through its Unix socket, so a member cut off the
//! network (in a network namespace) still reaches it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::RecordedEvent;
use orchestrix::runtime::Delivery;
use orchestrix_kafka::{KafkaPosition, OffsetHandler};
use tokio_postgres::{Client, NoTls};

use crate::workload::seq_of;

fn db_error(operation: &'static str, e: tokio_postgres::Error) -> orchestrix::Error {
    orchestrix::Error::backend("postgres", operation, true, e)
}

/// Connects to `url` (a `tokio_postgres` connection string).
///
/// # Errors
/// When the connection fails.
pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute("SET idle_in_transaction_session_timeout = '1s'")
        .await?;
    Ok(client)
}

/// Creates the read model's tables.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn create(url: &str) -> Result<(), tokio_postgres::Error> {
    connect(url).await?.batch_execute(
        "CREATE TABLE IF NOT EXISTS owners (topic TEXT, partition INTEGER, epoch BIGINT, owner TEXT, PRIMARY KEY (topic, partition));
         CREATE TABLE IF NOT EXISTS offsets (topic TEXT, partition INTEGER, next_offset BIGINT, PRIMARY KEY (topic, partition));
         CREATE TABLE IF NOT EXISTS applied (id BIGSERIAL PRIMARY KEY, event_id TEXT, seq BIGINT, partition INTEGER, \"offset\" BIGINT, worker TEXT, epoch BIGINT);
         CREATE TABLE IF NOT EXISTS fenced (worker TEXT, partition INTEGER, \"offset\" BIGINT, epoch BIGINT, current BIGINT, stored BIGINT);
         CREATE TABLE IF NOT EXISTS redelivered (worker TEXT, partition INTEGER, \"offset\" BIGINT);",
    ).await
}

/// The read model as one member process sees it.
#[derive(Debug)]
pub struct FencedReadModel {
    url: String,
    worker: String,
    client: tokio::sync::Mutex<Option<Client>>,
    /// The epoch this process took for each (topic, partition).
    epochs: Mutex<HashMap<(String, i32), i64>>,
    /// Simulated work per record (so that a backlog of fetched records
    /// builds up in the member).
    work: Duration,
}

impl FencedReadModel {
    /// The read model at `url` (made by [`create`]) for member `worker`,
    /// taking `work` per record.
    #[must_use]
    pub fn new(url: &str, worker: &str, work: Duration) -> Self {
        Self {
            url: url.to_owned(),
            worker: worker.to_owned(),
            client: tokio::sync::Mutex::new(None),
            epochs: Mutex::new(HashMap::new()),
            work,
        }
    }

    async fn client(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, Client>, tokio_postgres::Error> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url).await?);
        }
        Ok(tokio::sync::MutexGuard::map(guard, |c| {
            c.as_mut()
                .unwrap_or_else(|| unreachable!("connected above"))
        }))
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        at: &KafkaPosition,
    ) -> Result<(), tokio_postgres::Error> {
        let mine = self
            .epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(at.topic.clone(), at.partition))
            .copied()
            .unwrap_or(-1);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The row lock orders this against an assignment taking the
        // partition (which updates the row) in another process.
        let current: i64 = tx
            .query_opt(
                "SELECT epoch FROM owners WHERE topic = $1 AND partition = $2 FOR UPDATE",
                &[&at.topic, &at.partition],
            )
            .await?
            .map_or(-1, |r| r.get(0));
        let stored: Option<i64> = tx
            .query_opt(
                "SELECT next_offset FROM offsets WHERE topic = $1 AND partition = $2",
                &[&at.topic, &at.partition],
            )
            .await?
            .map(|r| r.get(0));
        if current != mine {
            tx.execute(
                "INSERT INTO fenced (worker, partition, \"offset\", epoch, current, stored) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&self.worker, &at.partition, &at.offset, &mine, &current, &stored],
            )
            .await?;
            return tx.commit().await;
        }
        if stored.is_some_and(|s| at.offset < s) {
            tx.execute(
                "INSERT INTO redelivered (worker, partition, \"offset\") VALUES ($1, $2, $3)",
                &[&self.worker, &at.partition, &at.offset],
            )
            .await?;
            return tx.commit().await;
        }
        let seq = seq_of(event).and_then(|s| i64::try_from(s).ok());
        tx.execute(
            "INSERT INTO applied (event_id, seq, partition, \"offset\", worker, epoch) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&event.id().to_string(), &seq, &at.partition, &at.offset, &self.worker, &mine],
        )
        .await?;
        tx.execute(
            "INSERT INTO offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            &[&at.topic, &at.partition, &at.next_offset()],
        )
        .await?;
        tx.commit().await
    }

    async fn take(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, i64>, tokio_postgres::Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut taken = HashMap::new();
        let mut offsets = HashMap::new();
        for &partition in partitions {
            let epoch: i64 = tx
                .query_one(
                    "INSERT INTO owners (topic, partition, epoch, owner) VALUES ($1, $2, 1, $3)
                     ON CONFLICT (topic, partition) DO UPDATE SET epoch = owners.epoch + 1, owner = EXCLUDED.owner
                     RETURNING epoch",
                    &[&topic, &partition, &self.worker],
                )
                .await?
                .get(0);
            taken.insert((topic.to_owned(), partition), epoch);
            if let Some(row) = tx
                .query_opt(
                    "SELECT next_offset FROM offsets WHERE topic = $1 AND partition = $2",
                    &[&topic, &partition],
                )
                .await?
            {
                offsets.insert(partition, row.get(0));
            }
        }
        tx.commit().await?;
        self.epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(taken);
        Ok(offsets)
    }
}

#[async_trait]
impl OffsetHandler for FencedReadModel {
    fn name(&self) -> &str {
        "chaos-fenced-read-model"
    }

    async fn handle(
        &self,
        event: &RecordedEvent,
        at: &KafkaPosition,
        _delivery: &Delivery,
    ) -> orchestrix::Result<()> {
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        self.apply(event, at)
            .await
            .map_err(|e| db_error("apply", e))
    }

    async fn load_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> orchestrix::Result<HashMap<i32, i64>> {
        let offsets = self
            .take(topic, partitions)
            .await
            .map_err(|e| db_error("load offsets", e))?;
        eprintln!(
            "[{}] assigned {topic} {partitions:?}, stored offsets {offsets:?}",
            self.worker
        );
        Ok(offsets)
    }
}

/// What the test reads back from the read model.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Deliveries applied per sequence number.
    pub applied: HashMap<u64, u32>,
    /// Rows of `applied` by worker.
    pub applied_by: HashMap<String, u64>,
    /// Records refused by the fence, by worker.
    pub fenced_by: HashMap<String, u64>,
    /// Of those, records at or ahead of the partition's stored next offset
    /// when refused: a read model guarded only by "offset not behind the
    /// stored one" would have applied them (and moved its offset).
    pub fenced_not_behind: u64,
    /// Records skipped as behind the stored offset, by worker.
    pub redelivered_by: HashMap<String, u64>,
    /// The current owner of each partition.
    pub owners: HashMap<i32, String>,
    /// Applied rows whose offset is not above the partition's previous
    /// applied row (a stale record applied after newer ones).
    pub out_of_order: u64,
}

/// Reads the read model through `client`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn snapshot(client: &Client) -> Result<Snapshot, tokio_postgres::Error> {
    let mut s = Snapshot::default();
    let mut last: HashMap<i32, i64> = HashMap::new();
    for r in client
        .query(
            "SELECT seq, partition, \"offset\", worker FROM applied ORDER BY id",
            &[],
        )
        .await?
    {
        let (seq, partition, offset, worker): (Option<i64>, i32, i64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if let Some(seq) = seq.and_then(|s| u64::try_from(s).ok()) {
            *s.applied.entry(seq).or_default() += 1;
        }
        *s.applied_by.entry(worker).or_default() += 1;
        if last.get(&partition).is_some_and(|&l| offset <= l) {
            s.out_of_order += 1;
        }
        last.insert(partition, offset);
    }
    for (table, into) in [
        ("fenced", &mut s.fenced_by),
        ("redelivered", &mut s.redelivered_by),
    ] {
        for r in client
            .query(
                &format!("SELECT worker, COUNT(*) FROM {table} GROUP BY worker"),
                &[],
            )
            .await?
        {
            let n: i64 = r.get(1);
            into.insert(r.get(0), u64::try_from(n).unwrap_or(0));
        }
    }
    for r in client
        .query("SELECT partition, owner FROM owners", &[])
        .await?
    {
        s.owners.insert(r.get(0), r.get(1));
    }
    Ok(s)
}

/// A read model for consumers without an assignment hook (NATS): each
/// stream's events are applied in revision order, guarded in the same
/// PostgreSQL transaction by the stream's last applied revision (row
/// locked): a revision already applied is counted in `stale` and skipped, a
/// revision beyond the next one (an event skipped, or two workers handling
/// one partition out of order) is counted in `gaps` and not applied.
#[derive(Debug)]
pub struct RevisionGuardedModel {
    url: String,
    worker: String,
    client: tokio::sync::Mutex<Option<Client>>,
    work: Duration,
}

/// Creates the tables of [`RevisionGuardedModel`].
///
/// # Errors
/// When PostgreSQL fails.
pub async fn create_guarded(url: &str) -> Result<(), tokio_postgres::Error> {
    connect(url).await?.batch_execute(
        "CREATE TABLE IF NOT EXISTS streams (stream TEXT PRIMARY KEY, last_revision BIGINT);
         CREATE TABLE IF NOT EXISTS applied (id BIGSERIAL PRIMARY KEY, event_id TEXT, seq BIGINT, partition INTEGER, \"offset\" BIGINT, worker TEXT, epoch BIGINT);
         CREATE TABLE IF NOT EXISTS stale (worker TEXT, stream TEXT, revision BIGINT, last BIGINT);
         CREATE TABLE IF NOT EXISTS gaps (worker TEXT, stream TEXT, revision BIGINT, last BIGINT);",
    ).await
}

impl RevisionGuardedModel {
    /// The read model at `url` (made by [`create_guarded`]) for `worker`,
    /// taking `work` per event.
    #[must_use]
    pub fn new(url: &str, worker: &str, work: Duration) -> Self {
        Self {
            url: url.to_owned(),
            worker: worker.to_owned(),
            client: tokio::sync::Mutex::new(None),
            work,
        }
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        partition: u32,
    ) -> Result<(), tokio_postgres::Error> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url).await?);
        }
        let Some(client) = guard.as_mut() else {
            unreachable!("connected above")
        };
        let tx = client.transaction().await?;
        let stream = event.stream_id.as_str();
        let revision = i64::try_from(event.revision).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO streams (stream, last_revision) VALUES ($1, -1) ON CONFLICT DO NOTHING",
            &[&stream],
        )
        .await?;
        let last: i64 = tx
            .query_one(
                "SELECT last_revision FROM streams WHERE stream = $1 FOR UPDATE",
                &[&stream],
            )
            .await?
            .get(0);
        if revision <= last {
            tx.execute(
                "INSERT INTO stale (worker, stream, revision, last) VALUES ($1, $2, $3, $4)",
                &[&self.worker, &stream, &revision, &last],
            )
            .await?;
        } else if revision > last + 1 {
            tx.execute(
                "INSERT INTO gaps (worker, stream, revision, last) VALUES ($1, $2, $3, $4)",
                &[&self.worker, &stream, &revision, &last],
            )
            .await?;
        } else {
            let seq = seq_of(event).and_then(|s| i64::try_from(s).ok());
            let partition = i32::try_from(partition).unwrap_or(-1);
            let position = i64::try_from(event.position).unwrap_or(-1);
            tx.execute(
                "INSERT INTO applied (event_id, seq, partition, \"offset\", worker, epoch) VALUES ($1, $2, $3, $4, $5, 0)",
                &[&event.id().to_string(), &seq, &partition, &position, &self.worker],
            )
            .await?;
            tx.execute(
                "UPDATE streams SET last_revision = $2 WHERE stream = $1",
                &[&stream, &revision],
            )
            .await?;
        }
        tx.commit().await
    }
}

#[async_trait]
impl orchestrix::runtime::EventHandler for RevisionGuardedModel {
    fn name(&self) -> &str {
        "chaos-guarded-read-model"
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> orchestrix::Result<()> {
        if !self.work.is_zero() {
            tokio::time::sleep(self.work).await;
        }
        self.apply(event, delivery.partition)
            .await
            .map_err(|e| db_error("apply", e))
    }
}

/// What the test reads back from a [`RevisionGuardedModel`].
#[derive(Debug, Default, Clone)]
pub struct GuardedSnapshot {
    /// Deliveries applied per sequence number.
    pub applied: HashMap<u64, u32>,
    /// Rows of `applied` by worker.
    pub applied_by: HashMap<String, u64>,
    /// Events already applied when they came again, by worker.
    pub stale_by: HashMap<String, u64>,
    /// Events beyond the next revision of their stream, by worker.
    pub gaps_by: HashMap<String, u64>,
}

/// Reads a [`RevisionGuardedModel`] through `client`.
///
/// # Errors
/// When PostgreSQL fails.
pub async fn guarded_snapshot(client: &Client) -> Result<GuardedSnapshot, tokio_postgres::Error> {
    let mut s = GuardedSnapshot::default();
    for r in client.query("SELECT seq, worker FROM applied", &[]).await? {
        let (seq, worker): (Option<i64>, String) = (r.get(0), r.get(1));
        if let Some(seq) = seq.and_then(|s| u64::try_from(s).ok()) {
            *s.applied.entry(seq).or_default() += 1;
        }
        *s.applied_by.entry(worker).or_default() += 1;
    }
    for (table, into) in [("stale", &mut s.stale_by), ("gaps", &mut s.gaps_by)] {
        for r in client
            .query(
                &format!("SELECT worker, COUNT(*) FROM {table} GROUP BY worker"),
                &[],
            )
            .await?
        {
            let n: i64 = r.get(1);
            into.insert(r.get(0), u64::try_from(n).unwrap_or(0));
        }
    }
    Ok(s)
}
