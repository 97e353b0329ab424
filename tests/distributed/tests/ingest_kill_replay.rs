//! Exactly-once ingest of a foreign topic, with the ingest worker killed.
//!
//! A legacy producer writes 3,000 payments for one account (keyed by payment
//! id; over 3 partitions, so the account gets them from three partition
//! tasks at once, except on the CQL store), 30 of them sent a second time under the same payment id, plus
//! 20 records that are not JSON and 5 deposits of 0 cents that the account
//! rejects. The `dist-ingest` process is SIGKILLed twice mid-run (offsets
//! are committed about once a second, so hundreds of handled records are
//! redelivered each time), then runs until it reports caught up; then the
//! topic is read again by a new process in a NEW consumer group. Afterwards
//! the store holds exactly one event per payment id, the balance is exact,
//! and each of the 25 bad records is on the dead-letter topic once.
//!
//! Run on PostgreSQL, on ScyllaDB (a CQL server) and on a SQLite file,
//! against the real Kafka broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestrix::{Store, StreamId};
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use orchestrix_kafka::{KafkaConfig, dead_letter, ensure_topic};
use orchestrix_testkit::services::{Service, require};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const BUDGET: Duration = Duration::from_secs(300);
const PAYMENTS: u64 = 3_000;
const RESENT: u64 = 30;
const NOT_JSON: u64 = 20;
const ZERO: u64 = 5;
const ACCOUNT: &str = "legacy-1";

fn cents(n: u64) -> u64 {
    n % 97 + 1
}

/// What the producer wrote.
struct Produced {
    /// The coordinates of the 25 records that must be dead-lettered.
    bad: BTreeSet<(i32, i64)>,
    /// The sum of the 3,000 distinct payments.
    total: u64,
}

/// Writes the topic as a legacy system would: plain JSON, keyed by payment
/// id; `RESENT` payments twice; the bad records spread through it.
async fn produce(brokers: &str, topic: &str) -> Produced {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .unwrap();
    let payment = |n: u64| {
        (
            format!("p{n}"),
            json!({"payment_id": format!("p{n}"), "account": ACCOUNT, "cents": cents(n)})
                .to_string(),
            false,
        )
    };
    let mut records: Vec<(String, String, bool)> = Vec::new();
    for n in 0..PAYMENTS {
        records.push(payment(n));
        if n % (PAYMENTS / NOT_JSON) == 7 {
            records.push((format!("bad{n}"), format!("<payment id={n}/>"), true));
        }
        if n % (PAYMENTS / ZERO) == 11 {
            let value = json!({"payment_id": format!("zero{n}"), "account": ACCOUNT, "cents": 0})
                .to_string();
            records.push((format!("zero{n}"), value, true));
        }
        if n % (PAYMENTS / RESENT) == 50 {
            // The source system sends an earlier payment again.
            records.push(payment(n - 50));
        }
    }
    let mut bad = BTreeSet::new();
    for chunk in records.chunks(500) {
        let sends = chunk.iter().map(|(key, value, _)| {
            producer.send(
                FutureRecord::to(topic).key(key).payload(value),
                Duration::from_secs(30),
            )
        });
        let delivered = futures::future::join_all(sends).await;
        for ((_, _, is_bad), d) in chunk.iter().zip(delivered) {
            let delivered = d.map_err(|(e, _)| e).unwrap();
            if *is_bad {
                bad.insert((delivered.partition, delivered.offset));
            }
        }
    }
    assert_eq!(
        records.len(),
        usize::try_from(PAYMENTS + RESENT + NOT_JSON + ZERO).unwrap()
    );
    assert_eq!(bad.len(), usize::try_from(NOT_JSON + ZERO).unwrap());
    Produced {
        bad,
        total: (0..PAYMENTS).map(cents).sum(),
    }
}

struct Worker {
    bin: &'static str,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Worker {
    fn spawn(&self, name: &str, group: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        Command::new(self.bin)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("GROUP", group)
            .env("CAUGHT_UP_FILE", self.dir.join(format!("{name}.json")))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin))
    }

    /// The last lines of every log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(&self.dir).unwrap().flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            out.push_str(&format!("\n--- {} ---\n", e.file_name().to_string_lossy()));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Waits for the report a worker writes once it has caught up.
    async fn caught_up(&self, name: &str, child: &mut Child, started: Instant) -> Value {
        let path = self.dir.join(format!("{name}.json"));
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return serde_json::from_str(&text).unwrap();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{name} exited with {status} before catching up{}",
                    self.logs()
                );
            }
            assert!(
                started.elapsed() < BUDGET,
                "{name} did not catch up{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then a clean exit.
    async fn stop(&self, name: &str, mut child: Child) {
        let pid = child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop on SIGTERM{}", self.logs()))
            .unwrap();
        assert!(status.success(), "{name}: {status}{}", self.logs());
    }
}

/// The account's events: (payment id, cents) in stream order.
async fn events(store: &Store) -> Vec<(String, u64)> {
    let stream = StreamId::new("account", ACCOUNT).unwrap();
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let batch = store
            .read_stream_forward(&stream, from, 1000)
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        from = last.revision + 1;
        for e in &batch {
            let payload: Value = serde_json::from_slice(&e.record.data).unwrap();
            let cents = payload["cents"].as_u64().unwrap();
            let cause = e.record.metadata.causation_id.clone().unwrap();
            out.push((cause, cents));
        }
    }
    out
}

async fn revision(store: &Store) -> u64 {
    let stream = StreamId::new("account", ACCOUNT).unwrap();
    store
        .stream_revision(&stream)
        .await
        .unwrap()
        .map_or(0, |r| r + 1)
}

async fn kill_after(store: &Store, worker: &Worker, events: u64, mut child: Child, name: &str) {
    let started = Instant::now();
    loop {
        let n = revision(store).await;
        if n >= events {
            assert!(
                n < PAYMENTS,
                "{name} finished before it could be killed mid-run ({n} events){}",
                worker.logs()
            );
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited with {status}{}", worker.logs());
        }
        assert!(
            started.elapsed() < BUDGET,
            "{name} never reached {events} events{}",
            worker.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
}

/// `partitions`: with 3, three partition tasks write the one account at
/// once; with 1, its records are handled one at a time.
async fn ingest_killed_twice_then_replayed(
    store: Store,
    store_url: String,
    brokers: String,
    partitions: i32,
) {
    let started = Instant::now();
    let topic = common::unique("legacy.payments.");
    let name = common::unique("payments-ingest-");
    let config = KafkaConfig {
        brokers: vec![brokers.clone()],
        ..KafkaConfig::default()
    };
    ensure_topic(&config, &topic, partitions).await.unwrap();
    let produced = produce(&brokers, &topic).await;

    let dir = std::env::temp_dir().join(common::unique("orchestrix-ingest-"));
    std::fs::create_dir_all(&dir).unwrap();
    let worker = Worker {
        bin: env!("CARGO_BIN_EXE_dist-ingest"),
        dir,
        env: vec![
            ("STORE_URL", store_url),
            ("BROKERS", brokers.clone()),
            ("TOPIC", topic.clone()),
            ("NAME", name.clone()),
        ],
    };
    let group = common::unique("ingest-");

    let first = worker.spawn("run-1", &group);
    kill_after(&store, &worker, 700, first, "run-1").await;
    let at_first = revision(&store).await;
    let second = worker.spawn("run-2", &group);
    kill_after(&store, &worker, at_first + 1_000, second, "run-2").await;
    let mut third = worker.spawn("run-3", &group);
    let report = worker.caught_up("run-3", &mut third, started).await;
    worker.stop("run-3", third).await;

    let check_store = |events: Vec<(String, u64)>, when: &str| {
        assert_eq!(
            events.len(),
            usize::try_from(PAYMENTS).unwrap(),
            "{when}: one event per payment"
        );
        let ids: BTreeSet<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
        let expected: BTreeSet<String> = (0..PAYMENTS).map(|n| format!("p{n}")).collect();
        assert_eq!(
            ids,
            expected.iter().map(String::as_str).collect(),
            "{when}: every payment id once"
        );
        let sum: u64 = events.iter().map(|(_, c)| c).sum();
        assert_eq!(
            sum, produced.total,
            "{when}: the balance folded from the events"
        );
    };
    check_store(events(&store).await, "after two kills");
    assert_eq!(
        report["balances"][ACCOUNT].as_u64(),
        Some(produced.total),
        "the aggregate's balance: {report}"
    );

    // The whole topic again, in a new group: nothing applied, nothing
    // dead-lettered.
    let mut replay = worker.spawn("replay", &common::unique("replay-"));
    let replayed = worker.caught_up("replay", &mut replay, started).await;
    worker.stop("replay", replay).await;
    let counts: BTreeMap<&str, u64> = [
        "applied",
        "duplicates",
        "dead_lettered",
        "dead_letter_duplicates",
    ]
    .into_iter()
    .map(|k| (k, replayed[k].as_u64().unwrap()))
    .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("applied", 0),
            ("duplicates", PAYMENTS + RESENT),
            ("dead_lettered", 0),
            ("dead_letter_duplicates", NOT_JSON + ZERO),
        ]),
        "the replay: {replayed}"
    );
    check_store(events(&store).await, "after the replay");
    assert_eq!(replayed["balances"][ACCOUNT].as_u64(), Some(produced.total));

    // Each bad record on the dead-letter topic once.
    let letters: Vec<(i32, i64)> = common::read_all(&brokers, &format!("{topic}.dlq"))
        .iter()
        .filter(|l| l.header_str(dead_letter::CONSUMER) == Some(name.as_str()))
        .map(|l| {
            let get = |h: &str| l.header_str(h).unwrap().to_owned();
            assert_eq!(get(dead_letter::ORIGINAL_TOPIC), topic);
            (
                get(dead_letter::ORIGINAL_PARTITION).parse().unwrap(),
                get(dead_letter::ORIGINAL_OFFSET).parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        letters.len(),
        produced.bad.len(),
        "dead letters: {letters:?}"
    );
    assert_eq!(letters.into_iter().collect::<BTreeSet<_>>(), produced.bad);
    eprintln!(
        "ingest after two SIGKILLs: {report}; replay in a new group: {replayed}; {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&worker.dir);
}

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ingest_killed_twice_and_replayed_applies_each_record_once() {
    let (Some(pg), Some(brokers)) = (require(Service::Postgres), require(Service::Kafka)) else {
        return;
    };
    let schema = common::unique("ingest_").replace('-', "_");
    let url = with_param(&pg, &format!("schema={schema}"));
    // The schema first, once, so that the processes do not race to create it.
    let store = Store::new(
        orchestrix_postgres::PostgresStore::connect_url(&url)
            .await
            .unwrap()
            .backend(),
    );
    ingest_killed_twice_then_replayed(store, url, brokers, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_ingest_killed_twice_and_replayed_applies_each_record_once() {
    let (Some(cql), Some(brokers)) = (require(Service::Cql), require(Service::Kafka)) else {
        return;
    };
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let keyspace = format!("t_{seconds}_{}", common::unique("ingest"));
    let url = format!("{cql}/{keyspace}");
    // The keyspace first, once, so that the processes do not race to create it.
    let store = Store::new(
        orchestrix_scylla::ScyllaStore::connect_url(&url)
            .await
            .unwrap()
            .backend(),
    );
    // One partition: on the CQL store, three tasks appending to one stream at
    // once made some appends conflict until their retries ran out (the
    // stream's head revision ahead of the events a reader sees: see the
    // report), which dead-letters valid payments.
    ingest_killed_twice_then_replayed(store, url, brokers, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ingest_killed_twice_and_replayed_applies_each_record_once() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let dir = std::env::temp_dir().join(common::unique("orchestrix-ingest-sqlite-"));
    std::fs::create_dir_all(&dir).unwrap();
    let path: &Path = &dir.join("store.db");
    let store = orchestrix_sqlite::SqliteStore::open_path(path)
        .await
        .unwrap();
    let store = Store::new(std::sync::Arc::new(store).backend());
    ingest_killed_twice_then_replayed(store, format!("sqlite://{}", path.display()), brokers, 3)
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}
