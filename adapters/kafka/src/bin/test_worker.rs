//! A projection worker for the multi-process test (`tests/multi_process.rs`).
//!
//! It applies `{"amount": n}` events to a PostgreSQL read model and stores the
//! consumed offsets in the same transaction, then seeks to them when
//! partitions are assigned. Inside the transaction it checks that each
//! stream's revisions arrive in order: a revision already applied is skipped
//! and counted, a gap is recorded as a violation. It stops on SIGTERM.
//!
//! Settings come from the environment: `ORCHESTRIX_KAFKA_BROKERS`,
//! `ORCHESTRIX_POSTGRES_URL`, `WORKER_TOPIC`, `WORKER_GROUP`, `WORKER_SCHEMA`
//! (tables `balances`, `applied`, `offsets`, `skipped`, `violations`, created
//! by the test) and `WORKER_NAME`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::RecordedEvent;
use orchestrix::runtime::Delivery;
use orchestrix_kafka::config::RetryConfig;
use orchestrix_kafka::{ConsumerWorker, KafkaConfig, KafkaPosition, OffsetHandler};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is required").into())
}

#[derive(Debug)]
struct ReadModel {
    url: String,
    schema: String,
    worker: String,
    clients: Mutex<HashMap<i32, Arc<Mutex<Option<Client>>>>>,
}

fn pg_error(operation: &'static str, e: tokio_postgres::Error) -> orchestrix::Error {
    use tokio_postgres::error::SqlState;
    let transient = e.is_closed()
        || e.code().is_none_or(|c| {
            [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::UNIQUE_VIOLATION,
            ]
            .contains(c)
        });
    orchestrix::Error::backend("postgres", operation, transient, e)
}

impl ReadModel {
    async fn client(&self, partition: i32) -> Arc<Mutex<Option<Client>>> {
        self.clients
            .lock()
            .await
            .entry(partition)
            .or_default()
            .clone()
    }

    async fn connect(&self) -> orchestrix::Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|e| pg_error("connect", e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .await
            .map_err(|e| pg_error("connect", e))?;
        Ok(client)
    }

    async fn apply(
        &self,
        client: &mut Client,
        event: &RecordedEvent,
        at: &KafkaPosition,
    ) -> orchestrix::Result<()> {
        let amount = serde_json::from_slice::<serde_json::Value>(&event.record.data)
            .ok()
            .and_then(|v| v["amount"].as_i64())
            .ok_or_else(|| orchestrix::Error::invalid("payload", "no integer `amount`"))?;
        let stream = event.stream_id.as_str();
        let revision = i64::try_from(event.revision)
            .map_err(|_| orchestrix::Error::invalid("revision", "too large"))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("begin", e))?;
        let last: Option<i64> = tx
            .query_opt(
                "SELECT last_revision FROM balances WHERE stream = $1 FOR UPDATE",
                &[&stream],
            )
            .await
            .map_err(|e| pg_error("read", e))?
            .map(|r| r.get(0));
        let expected = last.map_or(0, |l| l + 1);
        if revision < expected {
            tx.execute(
                "INSERT INTO skipped (stream, revision, worker) VALUES ($1, $2, $3)",
                &[&stream, &revision, &self.worker],
            )
            .await
            .map_err(|e| pg_error("write", e))?;
        } else if revision > expected {
            tx.execute(
                "INSERT INTO violations (stream, expected, got, worker) VALUES ($1, $2, $3, $4)",
                &[&stream, &expected, &revision, &self.worker],
            )
            .await
            .map_err(|e| pg_error("write", e))?;
        } else {
            tx.execute(
                "INSERT INTO applied (stream, revision, amount, worker) VALUES ($1, $2, $3, $4)",
                &[&stream, &revision, &amount, &self.worker],
            )
            .await
            .map_err(|e| pg_error("write", e))?;
            tx.execute(
                "INSERT INTO balances (stream, last_revision, total) VALUES ($1, $2, $3)
                 ON CONFLICT (stream) DO UPDATE SET last_revision = EXCLUDED.last_revision, total = balances.total + EXCLUDED.total",
                &[&stream, &revision, &amount],
            )
            .await
            .map_err(|e| pg_error("write", e))?;
        }
        tx.execute(
            "INSERT INTO offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = GREATEST(offsets.next_offset, EXCLUDED.next_offset)",
            &[&at.topic, &at.partition, &at.next_offset()],
        )
        .await
        .map_err(|e| pg_error("write", e))?;
        tx.commit().await.map_err(|e| pg_error("commit", e))
    }
}

#[async_trait]
impl OffsetHandler for ReadModel {
    fn name(&self) -> &str {
        "multi-process-read-model"
    }

    async fn handle(
        &self,
        event: &RecordedEvent,
        at: &KafkaPosition,
        _: &Delivery,
    ) -> orchestrix::Result<()> {
        let slot = self.client(at.partition).await;
        let mut guard = slot.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.connect().await?);
        }
        let client = guard
            .as_mut()
            .ok_or_else(|| orchestrix::Error::invalid("client", "absent"))?;
        self.apply(client, event, at).await
    }

    async fn load_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> orchestrix::Result<HashMap<i32, i64>> {
        let client = self.connect().await?;
        let rows = client
            .query("SELECT partition, next_offset FROM offsets WHERE topic = $1 AND partition = ANY($2)", &[&topic, &partitions])
            .await
            .map_err(|e| pg_error("load offsets", e))?;
        let offsets: HashMap<i32, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        eprintln!(
            "[{}] assigned {topic} {partitions:?}; stored offsets {offsets:?}",
            self.worker
        );
        Ok(offsets)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let worker = env("WORKER_NAME")?;
    let mut config = KafkaConfig {
        brokers: vec![env("ORCHESTRIX_KAFKA_BROKERS")?],
        client_id: worker.clone(),
        ..KafkaConfig::default()
    };
    config.consumer.session_timeout_ms = 6_000;
    config.consumer.heartbeat_interval_ms = 1_000;
    // Kafka commits lag on purpose: after a kill -9 the stored offsets, not
    // the group's, must be what the next owner starts from.
    config.consumer.commit_interval_ms = 5_000;
    config.consumer.retry = RetryConfig::Fixed {
        max_attempts: 20,
        delay_ms: 50,
    };
    config.topics.create = false;
    let model = Arc::new(ReadModel {
        url: env("ORCHESTRIX_POSTGRES_URL")?,
        schema: env("WORKER_SCHEMA")?,
        worker: worker.clone(),
        clients: Mutex::new(HashMap::new()),
    });
    let consumer = ConsumerWorker::builder(config)
        .topic(env("WORKER_TOPIC")?)
        .group_id(env("WORKER_GROUP")?)
        .start_with_offsets(model)
        .await?;
    eprintln!("[{worker}] started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let stats = consumer.stats();
    consumer.shutdown().await?;
    eprintln!("[{worker}] stopped cleanly: {stats:?}");
    Ok(())
}
