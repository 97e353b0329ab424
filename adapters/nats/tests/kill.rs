//! The multi-process kill test: 3 worker processes consume 10,000 events of
//! 500 streams into a PostgreSQL read model; one is killed with SIGKILL
//! midway and another started. The read model must end exactly right: every
//! event applied once (a primary key on (stream, revision) proves it), every
//! stream in order (each worker checks revision == last + 1 in its
//! transaction).
//!
//! Exactly-once effects come from the JetStream stream sequence: the read
//! model stores the last applied sequence per partition in the same
//! transaction as its rows and skips a redelivered message whose sequence is
//! not above it. To exercise that path deterministically, the read model
//! also "loses" the acknowledgement of 50 committed events (revision 10 of
//! every stream ending in 0, first delivery): they come back and must be
//! skipped.
//!
//! The worker processes are this test binary, started again with
//! `nats_kill_test_read_model_exact_after_sigkill --exact` and a job in an
//! environment variable (with it set, the test runs as a worker); closing
//! their stdin asks them to shut down gracefully.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::relay::{Relay, RelayConfig};
use orchestrix::store::ExpectedRevision;
use orchestrix::{Error, EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_nats::{NatsConfig, NatsConsumer, NatsDelivery, NatsHandler, NatsPublisher};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

const WORKER_ENV: &str = "ORCHESTRIX_NATS_KILL_TEST_WORKER";
const STREAMS: u64 = 500;
const EVENTS_PER_STREAM: u64 = 20;
const TOTAL: u64 = STREAMS * EVENTS_PER_STREAM;
const PARTITIONS: u32 = 8;
const GROUP: &str = "readmodel";

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    config: NatsConfig,
    postgres_url: String,
    schema: String,
    worker: String,
}

// ---------------------------------------------------------------- worker --

/// The read model: one transaction per event, sequence checkpoint per
/// partition in the same transaction.
struct ReadModel {
    pool: Vec<Mutex<tokio_postgres::Client>>,
    schema: String,
    worker: String,
}

impl std::fmt::Debug for ReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn pg_error(e: tokio_postgres::Error) -> Error {
    Error::backend("postgres", "read model", true, e)
}

#[async_trait]
impl NatsHandler for ReadModel {
    fn name(&self) -> &str {
        GROUP
    }

    async fn handle(
        &self,
        event: &RecordedEvent,
        delivery: &NatsDelivery,
    ) -> orchestrix::Result<()> {
        let s = &self.schema;
        let mut client = self.pool[delivery.partition as usize % self.pool.len()]
            .lock()
            .await;
        let tx = client.transaction().await.map_err(pg_error)?;
        let partition = i32::try_from(delivery.partition).unwrap();
        let sequence = i64::try_from(delivery.stream_sequence).unwrap();
        let stored: i64 = tx
            .query_one(
                &format!("SELECT seq FROM {s}.checkpoints WHERE partition = $1 FOR UPDATE"),
                &[&partition],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if sequence <= stored {
            // Applied before (committed, then the ack was lost or the worker died).
            tx.execute(
                &format!("INSERT INTO {s}.skipped (seq, worker) VALUES ($1, $2)"),
                &[&sequence, &self.worker],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            return Ok(());
        }
        let stream = event.stream_id.as_str();
        let revision = i64::try_from(event.revision).unwrap();
        let last: Option<i64> = tx
            .query_opt(
                &format!("SELECT last_revision FROM {s}.streams WHERE stream = $1"),
                &[&stream],
            )
            .await
            .map_err(pg_error)?
            .map(|r| r.get(0));
        let expected = last.map_or(0, |l| l + 1);
        if revision != expected {
            drop(tx);
            let what = format!(
                "{stream}: revision {revision} arrived when {expected} was expected (seq {sequence}, worker {})",
                self.worker
            );
            client
                .execute(
                    &format!("INSERT INTO {s}.violations (what) VALUES ($1)"),
                    &[&what],
                )
                .await
                .map_err(pg_error)?;
            return Err(Error::invalid("event order", what));
        }
        tx.execute(
            &format!(
                "INSERT INTO {s}.applied (stream, revision, seq, worker) VALUES ($1, $2, $3, $4)"
            ),
            &[&stream, &revision, &sequence, &self.worker],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            &format!(
                "INSERT INTO {s}.streams (stream, count, last_revision) VALUES ($1, 1, $2)
                 ON CONFLICT (stream) DO UPDATE SET count = {s}.streams.count + 1, last_revision = $2"
            ),
            &[&stream, &revision],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            &format!("UPDATE {s}.checkpoints SET seq = $2 WHERE partition = $1"),
            &[&partition, &sequence],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        if event.revision == 10 && delivery.attempt == 1 && stream.ends_with('0') {
            // Committed, but the acknowledgement is "lost": the message comes
            // back and the sequence check must skip it.
            return Err(Error::Timeout {
                operation: "simulated lost ack after commit".into(),
                after: Duration::ZERO,
            });
        }
        Ok(())
    }
}

async fn run_worker(job: Job) -> anyhow::Result<()> {
    let mut pool = Vec::new();
    for _ in 0..4 {
        let (client, connection) =
            tokio_postgres::connect(&job.postgres_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        pool.push(Mutex::new(client));
    }
    let model = Arc::new(ReadModel {
        pool,
        schema: job.schema.clone(),
        worker: job.worker.clone(),
    });
    let mut config = job.config;
    config.leases.worker_id = Some(job.worker.clone());
    let worker = NatsConsumer::builder(config)
        .nats_handler(model)
        .group(GROUP)
        .start()
        .await?;
    eprintln!("worker {} started", job.worker);
    // Shut down gracefully when the parent closes stdin.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = closed_tx.send(());
    });
    let _ = closed_rx.await;
    let stats = worker.stats();
    worker.shutdown().await?;
    eprintln!("worker {} left: {stats:?}", job.worker);
    Ok(())
}

/// The worker process: this test binary started again by
/// `nats_kill_test_read_model_exact_after_sigkill` with a job in
/// `WORKER_ENV`.
async fn nats_kill_worker_process(job: &str) {
    let job: Job = serde_json::from_str(job).expect("worker job");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "orchestrix_nats=info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    run_worker(job).await.expect("worker failed");
}

// ---------------------------------------------------------------- parent --

struct Workers {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Workers {
    fn spawn(&mut self, job: &Job) {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", job.worker))).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "nats_kill_test_read_model_exact_after_sigkill",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER_ENV, serde_json::to_string(job).unwrap())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a worker process");
        self.children.push((job.worker.clone(), child));
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            out.push_str(&format!("\n---- {name} (last lines) ----\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

async fn setup_schema(pg: &tokio_postgres::Client, schema: &str) {
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.applied (stream text NOT NULL, revision bigint NOT NULL, seq bigint NOT NULL, worker text NOT NULL,
                                        PRIMARY KEY (stream, revision));
         CREATE TABLE {schema}.streams (stream text PRIMARY KEY, count bigint NOT NULL, last_revision bigint NOT NULL);
         CREATE TABLE {schema}.checkpoints (partition int PRIMARY KEY, seq bigint NOT NULL);
         CREATE TABLE {schema}.violations (what text NOT NULL);
         CREATE TABLE {schema}.skipped (seq bigint NOT NULL, worker text NOT NULL);
         INSERT INTO {schema}.checkpoints SELECT p, 0 FROM generate_series(0, {}) p;",
        PARTITIONS - 1
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kill_test_read_model_exact_after_sigkill() {
    if let Ok(job) = std::env::var(WORKER_ENV) {
        // Started by this test as one of its worker processes.
        return nats_kill_worker_process(&job).await;
    }
    if !common::nats_available("nats_kill_test").await
        || !common::postgres_available("nats_kill_test").await
    {
        return;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut config = common::config(PARTITIONS);
    config.consumer.max_deliver = 20;
    let id = common::suffix();
    let schema = format!("nats_kill_{id}");
    let (pg, connection) = tokio_postgres::connect(&common::postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    setup_schema(&pg, &schema).await;

    let dir = std::env::temp_dir().join(format!("orchestrix-nats-kill-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut workers = Workers {
        dir: dir.clone(),
        children: Vec::new(),
    };
    let job = |worker: &str| Job {
        config: config.clone(),
        postgres_url: common::postgres_url(),
        schema: schema.clone(),
        worker: worker.to_owned(),
    };
    // Streams and bucket exist before the workers race to create them.
    let publisher = Arc::new(NatsPublisher::connect(config.clone()).await.unwrap());
    for w in ["w1", "w2", "w3"] {
        workers.spawn(&job(w));
    }

    // 10,000 events over 500 streams, appended in rounds through the relay.
    let store = Store::memory().with_poll_interval(Duration::from_millis(20));
    let relay = Relay::start(
        store.clone(),
        publisher.clone(),
        RelayConfig {
            batch: 500,
            ..RelayConfig::default()
        },
    )
    .await
    .unwrap();
    let appender = {
        let store = store.clone();
        tokio::spawn(async move {
            let streams: Vec<StreamId> = (0..STREAMS)
                .map(|i| StreamId::parse(format!("account-{i}")).unwrap())
                .collect();
            for round in 0..EVENTS_PER_STREAM {
                for s in &streams {
                    let e = EventRecord::json(
                        "com.acme.bank.Deposited",
                        1,
                        &serde_json::json!({ "round": round }),
                    );
                    store
                        .append(s, ExpectedRevision::Any, vec![e])
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    let applied_sql = format!("SELECT count(*) FROM {schema}.applied");
    let violations_sql = format!("SELECT count(*) FROM {schema}.violations");
    let fail = |workers: &Workers, what: String| -> ! {
        panic!(
            "{what}\nworker logs in {}:{}",
            dir.display(),
            workers.logs()
        )
    };
    let check_violations = async |workers: &Workers| {
        if count(&pg, &violations_sql).await > 0 {
            let rows = pg
                .query(
                    &format!("SELECT what FROM {schema}.violations LIMIT 10"),
                    &[],
                )
                .await
                .unwrap();
            let what: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            fail(workers, format!("per-stream order violated: {what:?}"));
        }
    };

    // Midway: kill -9 one worker, start another.
    loop {
        check_violations(&workers).await;
        let applied = count(&pg, &applied_sql).await;
        if applied >= i64::try_from(TOTAL / 3).unwrap() {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &workers,
                format!(
                    "only {applied} of {TOTAL} events applied before the kill; the workers are not consuming"
                ),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (victim, child) = &mut workers.children[0];
    child.kill().expect("SIGKILL a worker");
    child.wait().unwrap();
    let killed_at = count(&pg, &applied_sql).await;
    println!(
        "killed {victim} with SIGKILL at {killed_at} applied events ({:?} in)",
        started.elapsed()
    );
    workers.spawn(&job("w4"));

    appender.await.unwrap();
    let head = store.head_position().await.unwrap();
    assert_eq!(head, TOTAL);
    tokio::time::timeout_at(deadline, relay.wait_for(head))
        .await
        .expect("the relay published everything in time")
        .unwrap();
    relay.shutdown().await.unwrap();

    loop {
        check_violations(&workers).await;
        let applied = count(&pg, &applied_sql).await;
        if applied == i64::try_from(TOTAL).unwrap() {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &workers,
                format!("only {applied} of {TOTAL} events applied within 120 s"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("all {TOTAL} events applied after {:?}", started.elapsed());

    // The read model is exact.
    let per_stream = pg
        .query(&format!("SELECT count(*), min(count), max(count), min(last_revision), max(last_revision) FROM {schema}.streams"), &[])
        .await
        .unwrap();
    let row = &per_stream[0];
    let (streams, min_count, max_count, min_last, max_last): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let per = i64::try_from(EVENTS_PER_STREAM).unwrap();
    assert_eq!(
        streams,
        i64::try_from(STREAMS).unwrap(),
        "every stream present"
    );
    assert_eq!(
        (min_count, max_count),
        (per, per),
        "every stream counted {per} events"
    );
    assert_eq!(
        (min_last, max_last),
        (per - 1, per - 1),
        "every stream at its last revision"
    );
    let mismatched = count(
        &pg,
        &format!(
            "SELECT count(*) FROM {schema}.streams s
             WHERE s.count <> (SELECT count(*) FROM {schema}.applied a WHERE a.stream = s.stream)
                OR (SELECT min(revision) FROM {schema}.applied a WHERE a.stream = s.stream) <> 0"
        ),
    )
    .await;
    assert_eq!(
        mismatched, 0,
        "the applied table (primary key stream, revision) matches the counts"
    );
    let by_w4 = count(
        &pg,
        &format!("SELECT count(*) FROM {schema}.applied WHERE worker = 'w4'"),
    )
    .await;
    let by_w1_after = count(
        &pg,
        &format!("SELECT count(*) FROM {schema}.applied WHERE worker = 'w1'"),
    )
    .await;
    let skipped = count(&pg, &format!("SELECT count(*) FROM {schema}.skipped")).await;
    println!(
        "w1 applied {by_w1_after} before it died; w4 applied {by_w4} after joining; \
         {skipped} redeliveries of applied events skipped by sequence"
    );
    assert!(by_w4 > 0, "the replacement worker took partitions over");
    assert!(
        skipped >= 50,
        "the 50 deliveries whose ack was \"lost\" after commit came back and were skipped"
    );

    // Graceful stop of the survivors: close stdin, wait for a clean exit.
    for (name, child) in &mut workers.children[1..] {
        drop(child.stdin.take());
        let exit = wait_child(child, Duration::from_secs(20));
        assert!(
            exit.is_some_and(|s| s.success()),
            "worker {name} did not shut down cleanly: {exit:?}{}",
            workers_logs_hint(&dir)
        );
    }
    let _ = pg
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
    common::cleanup(&config).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn workers_logs_hint(dir: &Path) -> String {
    format!(" (logs in {})", dir.display())
}

fn wait_child(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
