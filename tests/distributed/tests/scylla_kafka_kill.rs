//! The ScyllaDB store feeding Kafka, with every process killed mid-run:
//! writer processes append to the store (a CQL server), relay processes move
//! the all-stream to Kafka with the transactional publisher. One writer and
//! two relays are killed with SIGKILL while they work (a writer may die with
//! a claimed position in flight, which the store fences after its lease), and
//! replacements are started. Afterwards the topic holds exactly the store's
//! all-stream: every event once, none missing, each stream in revision order
//! on its partition, and the balances folded from the topic equal those from
//! the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestrix::store::Filter;
use orchestrix::{RecordedEvent, Store};
use orchestrix_kafka::KafkaRecord;
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use orchestrix_kafka::rdkafka::error::KafkaError;
use orchestrix_kafka::rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use orchestrix_testkit::services::{Service, require};
use tokio::process::{Child, Command};

const BUDGET: Duration = Duration::from_secs(180);

fn spawn(bin: &str, name: &str, dir: &Path, env: &[(&str, String)]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(bin)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"))
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!("\n--- {} ---\n", e.file_name().to_string_lossy()));
        for line in tail.iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn wait_until<F, Fut>(what: &str, dir: &Path, started: Instant, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while !check().await {
        assert!(
            started.elapsed() < BUDGET,
            "timed out waiting for {what}{}",
            logs(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every committed record of `topic`, read to the end of each partition.
fn read_topic(brokers: &str, topic: &str) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    assert!(!partitions.is_empty(), "{topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at_end = std::collections::BTreeSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions.len() {
        assert!(Instant::now() < deadline, "reading {topic} back timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => records.push(KafkaRecord::from_message(&m)),
        }
    }
    records
}

fn balances<'a>(events: impl Iterator<Item = &'a RecordedEvent>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in events {
        let payload: serde_json::Value = serde_json::from_slice(&e.record.data).unwrap();
        let amount = payload["amount"].as_i64().unwrap();
        *out.entry(e.stream_id.to_string()).or_insert(0) += amount;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_store_to_kafka_with_writers_and_relays_killed_stays_exact() {
    let (Some(cql), Some(brokers)) = (require(Service::Cql), require(Service::Kafka)) else {
        return;
    };
    let started = Instant::now();
    let run = format!("{:08x}", std::process::id() ^ rand_u32());
    let keyspace = format!("t_{}_dist{run}", unix_now());
    // A short claim lease: a writer killed with a claim in flight stalls the
    // all-stream for about this long.
    let url = format!("{cql}/{keyspace}?claim_lease_ms=2000");
    // Schema first, once, so that the processes do not race to create it.
    let store = Store::new(
        orchestrix_scylla::ScyllaStore::connect_url(&url)
            .await
            .unwrap()
            .backend(),
    );
    let prefix = format!("dist{run}");
    let topic = format!("{prefix}.account");
    let dir = tempfile_dir(&run);
    let writer_env = |name: &str, count: u64| {
        vec![
            ("STORE_URL", url.clone()),
            ("WRITER", name.to_owned()),
            ("COUNT", count.to_string()),
            ("STREAMS", "40".to_owned()),
        ]
    };
    let relay_env = vec![
        ("STORE_URL", url.clone()),
        ("BROKERS", brokers.clone()),
        ("PREFIX", prefix.clone()),
        ("TXID", format!("{prefix}-relay")),
    ];
    let writer_bin = env!("CARGO_BIN_EXE_dist-writer");
    let relay_bin = env!("CARGO_BIN_EXE_dist-relay");

    let mut a = spawn(writer_bin, "writer-a", &dir, &writer_env("a", 1_200));
    let mut b = spawn(writer_bin, "writer-b", &dir, &writer_env("b", 1_200));
    let mut relay1 = spawn(relay_bin, "relay-1", &dir, &relay_env);

    let head = || async { store.head_position().await.unwrap_or(0) };
    let relayed = || async {
        store
            .backend()
            .checkpoints
            .load_checkpoint("relay:kafka")
            .await
            .unwrap()
            .unwrap_or(0)
    };
    wait_until(
        "400 events and a relay in progress",
        &dir,
        started,
        || async { head().await >= 400 && relayed().await > 0 },
    )
    .await;
    a.start_kill().unwrap();
    relay1.start_kill().unwrap();
    a.wait().await.unwrap();
    relay1.wait().await.unwrap();

    let mut c = spawn(writer_bin, "writer-c", &dir, &writer_env("c", 800));
    let mut relay2 = spawn(relay_bin, "relay-2", &dir, &relay_env);
    let at_second_kill = head().await + 600;
    wait_until("600 more events", &dir, started, || async {
        head().await >= at_second_kill
    })
    .await;
    relay2.start_kill().unwrap();
    relay2.wait().await.unwrap();
    let mut relay3 = spawn(relay_bin, "relay-3", &dir, &relay_env);

    for (name, child) in [("writer-b", &mut b), ("writer-c", &mut c)] {
        let status = tokio::time::timeout(BUDGET, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish{}", logs(&dir)))
            .unwrap();
        assert!(status.success(), "{name} failed: {status}{}", logs(&dir));
    }
    // The store's truth, read once every writer is done (a killed writer's
    // claim is fenced after its lease, so the head settles).
    let truth: Vec<RecordedEvent> = {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = store.read_all(after, 1_000, &Filter::all()).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.position;
            all.extend(page);
        }
        all
    };
    let last = truth.last().map_or(0, |e| e.position);
    assert!(truth.len() >= 2_000, "only {} events stored", truth.len());
    wait_until("the relay to publish everything", &dir, started, || async {
        relayed().await >= last
    })
    .await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &relay3.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(30), relay3.wait())
        .await
        .expect("the relay stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "relay-3 exit: {status}{}", logs(&dir));

    let records = read_topic(&brokers, &topic);
    let published: Vec<RecordedEvent> = records
        .iter()
        .map(|r| r.decode_event().expect("an Orchestrix CloudEvent"))
        .collect();
    assert_eq!(
        published.len(),
        truth.len(),
        "{} records for {} stored events: duplicates or losses{}",
        published.len(),
        truth.len(),
        logs(&dir)
    );
    let mut positions: Vec<u64> = published.iter().map(|e| e.position).collect();
    positions.sort_unstable();
    let expected: Vec<u64> = truth.iter().map(|e| e.position).collect();
    assert_eq!(
        positions, expected,
        "the topic holds each stored event once"
    );
    // Per-stream order: the records of one stream, in partition-offset order.
    let mut ordered: Vec<(&KafkaRecord, &RecordedEvent)> = records.iter().zip(&published).collect();
    ordered.sort_by_key(|(r, _)| (r.partition, r.offset));
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for (_, e) in &ordered {
        let n = next.entry(e.stream_id.to_string()).or_insert(0);
        assert_eq!(e.revision, *n, "{}: revisions in order", e.stream_id);
        *n += 1;
    }
    assert_eq!(balances(published.iter()), balances(truth.iter()));
    eprintln!(
        "{} events from 3 writers (1 killed) relayed by 3 relays (2 killed) in {:?}: exact",
        truth.len(),
        started.elapsed()
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos.rotate_left(13)
}

fn tempfile_dir(run: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("orchestrix-dist-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
