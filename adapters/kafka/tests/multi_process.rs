//! Three worker processes (`orchestrix-kafka-test-worker`) share a consumer
//! group on a 6-partition topic and project 10,000 events of 500 streams into
//! PostgreSQL, storing consumed offsets in the read-model transaction. One is
//! killed with SIGKILL midway and a fourth joins. Afterwards the read model
//! equals the expected state exactly: every (stream, revision) applied once
//! (primary key), revisions applied in order (checked inside each
//! transaction), no redelivery applied (the survivors started at the stored
//! offsets, not at the group's lagging commits), and the remaining workers
//! stop cleanly on SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_kafka::KafkaPublisher;
use serde_json::json;
use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};

const STREAMS: u64 = 500;
const REVISIONS: u64 = 20;
const TOTAL: i64 = 10_000;
const BUDGET: Duration = Duration::from_secs(150);

fn amount(stream: u64, revision: u64) -> i64 {
    i64::try_from((stream * 7 + revision * 13) % 100 + 1).unwrap()
}

struct Workers {
    env: Vec<(&'static str, String)>,
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Workers {
    fn spawn(&mut self, name: &str) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orchestrix-kafka-test-worker"))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("WORKER_NAME", name)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the test worker");
        self.children.push((name.to_owned(), child));
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            out.push_str(&format!("\n--- {name} (last lines) ---\n"));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Fails with the workers' logs when one of them exited.
    fn check_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let name = name.clone();
                panic!(
                    "worker {name} exited unexpectedly ({status}){}",
                    self.logs()
                );
            }
        }
    }
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

async fn publish_revisions(
    publisher: &KafkaPublisher,
    revisions: std::ops::Range<u64>,
    position: &mut u64,
) {
    let mut batch = Vec::with_capacity(500);
    for revision in revisions {
        for s in 0..STREAMS {
            *position += 1;
            batch.push(RecordedEvent {
                stream_id: StreamId::new("account", &s.to_string()).unwrap(),
                revision,
                position: *position,
                record: EventRecord::json(
                    "com.acme.bank.Deposited",
                    1,
                    &json!({ "amount": amount(s, revision) }),
                ),
            });
            if batch.len() == 500 {
                publisher.publish_events(&batch).await.expect("publish");
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        publisher.publish_events(&batch).await.expect("publish");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_multi_process_workers_survive_kill_and_apply_every_event_once() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let Some(pg_url) = common::postgres_url() else {
        return;
    };
    let started = Instant::now();
    let deadline = started + BUDGET;

    let schema = common::unique("kafka_mp").replace('-', "_");
    let (db, connection) = tokio_postgres::connect(&pg_url, NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         SET search_path TO {schema};
         CREATE TABLE balances (stream text PRIMARY KEY, last_revision bigint NOT NULL, total bigint NOT NULL);
         CREATE TABLE applied (stream text, revision bigint, amount bigint NOT NULL, worker text NOT NULL, PRIMARY KEY (stream, revision));
         CREATE TABLE offsets (topic text, partition int, next_offset bigint NOT NULL, PRIMARY KEY (topic, partition));
         CREATE TABLE skipped (stream text, revision bigint, worker text);
         CREATE TABLE violations (stream text, expected bigint, got bigint, worker text);"
    ))
    .await
    .unwrap();

    let mut config = common::test_config(&brokers);
    config.topics.partitions = 6;
    let topic = config.topics.topic_for_category("account");
    let publisher = KafkaPublisher::new(config).unwrap();
    let mut position = 0;
    publish_revisions(&publisher, 0..REVISIONS / 2, &mut position).await;

    let dir = std::env::temp_dir().join(&schema);
    std::fs::create_dir_all(&dir).unwrap();
    let mut workers = Workers {
        env: vec![
            ("ORCHESTRIX_KAFKA_BROKERS", brokers.clone()),
            ("ORCHESTRIX_POSTGRES_URL", pg_url.clone()),
            ("WORKER_TOPIC", topic.clone()),
            ("WORKER_GROUP", common::unique("mp-group")),
            ("WORKER_SCHEMA", schema.clone()),
        ],
        dir,
        children: Vec::new(),
    };
    for name in ["w1", "w2", "w3"] {
        workers.spawn(name);
    }

    // Kill one worker midway through the first half.
    let mut applied_at_kill = 0;
    while applied_at_kill < 1_500 {
        assert!(
            Instant::now() < deadline,
            "no progress before the kill: {applied_at_kill} applied{}",
            workers.logs()
        );
        workers.check_alive();
        tokio::time::sleep(Duration::from_millis(50)).await;
        applied_at_kill = count(&db, "SELECT count(*) FROM applied").await;
    }
    let (_, victim) = &mut workers.children[0];
    victim.start_kill().unwrap(); // SIGKILL
    victim.wait().await.unwrap();
    let killed = workers.children.remove(0);
    eprintln!(
        "killed w1 (SIGKILL) with {applied_at_kill} of {TOTAL} applied, after {:?}",
        started.elapsed()
    );
    workers.spawn("w4");
    publish_revisions(&publisher, REVISIONS / 2..REVISIONS, &mut position).await;

    let mut applied = 0;
    while applied < TOTAL {
        workers.check_alive();
        assert!(
            Instant::now() < deadline,
            "only {applied} of {TOTAL} events applied within {BUDGET:?}{}",
            workers.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        applied = count(&db, "SELECT count(*) FROM applied").await;
    }
    eprintln!("all {TOTAL} applied after {:?}", started.elapsed());

    // The read model equals the expected state exactly.
    let violations = db
        .query(
            "SELECT stream, expected, got, worker FROM violations LIMIT 5",
            &[],
        )
        .await
        .unwrap();
    let shown: Vec<String> = violations
        .iter()
        .map(|r| {
            format!(
                "{}: expected {} got {} ({})",
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2),
                r.get::<_, String>(3)
            )
        })
        .collect();
    assert!(shown.is_empty(), "per-stream order broken: {shown:?}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM applied").await,
        TOTAL,
        "no event applied twice"
    );
    let rows = db
        .query("SELECT stream, last_revision, total FROM balances", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        usize::try_from(STREAMS).unwrap(),
        "every stream projected"
    );
    for row in rows {
        let stream: String = row.get(0);
        let s: u64 = stream.strip_prefix("account-").unwrap().parse().unwrap();
        let expected: i64 = (0..REVISIONS).map(|r| amount(s, r)).sum();
        assert_eq!(
            row.get::<_, i64>(1),
            i64::try_from(REVISIONS).unwrap() - 1,
            "{stream} last revision"
        );
        assert_eq!(row.get::<_, i64>(2), expected, "{stream} total");
    }
    let skipped = count(&db, "SELECT count(*) FROM skipped").await;
    assert_eq!(
        skipped, 0,
        "redeliveries reached the handler: partitions did not start at the offsets stored with the read model"
    );
    let by_worker = db
        .query(
            "SELECT worker, count(*) FROM applied GROUP BY worker ORDER BY worker",
            &[],
        )
        .await
        .unwrap();
    let by_worker: Vec<(String, i64)> = by_worker.iter().map(|r| (r.get(0), r.get(1))).collect();
    eprintln!("applied per worker: {by_worker:?}");
    assert!(
        by_worker.iter().any(|(w, n)| w == "w1" && *n > 0),
        "the killed worker had applied events: {by_worker:?}"
    );
    assert!(
        by_worker.iter().any(|(w, n)| w == "w4" && *n > 0),
        "the new worker took over partitions: {by_worker:?}"
    );

    // SIGTERM: the survivors drain, commit, leave the group and exit 0.
    for (_, child) in &workers.children {
        let pid = child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for (name, child) in &mut workers.children {
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        let ok = matches!(status, Ok(Ok(s)) if s.success());
        assert!(
            ok,
            "worker {name} did not stop cleanly on SIGTERM: {status:?}{}",
            workers_logs(&workers.dir, name)
        );
    }
    drop(killed);
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&workers.dir);
    eprintln!("done in {:?}", started.elapsed());
}

fn workers_logs(dir: &std::path::Path, name: &str) -> String {
    format!(
        "\n--- {name} ---\n{}",
        std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
    )
}
