//! An Apache Cassandra node of this case's own (its own ports, its own data
//! directory; started from the Maven artifacts `tests/scripts/services.sh`
//! resolves) killed with SIGKILL mid-run under the ScyllaDB store, then
//! started again on the same data directory.
//!
//! Writers append to several streams with exact expected revisions (an LWT
//! each); a catch-up reader follows the all-stream. Checked: appends during
//! the outage fail with typed transient errors (no panic); the writers go on
//! after the restart; every acknowledged append is in its stream exactly
//! once at the revision it was acknowledged with; an append that failed is
//! there at most once; every stream's revisions are gap-free; the
//! all-stream holds every stream event once, in increasing positions, each
//! stream in revision order; the reader saw exactly that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::{Error, EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_chaos::{free_port, missing, poll, scale};
use orchestrix_scylla::{ScyllaConfig, ScyllaStore};
use uuid::Uuid;

const CASE: &str = "cql_node_killed_and_restarted_under_the_scylla_store";
const WRITERS: usize = 4;
const STREAMS_PER_WRITER: usize = 2;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Cassandra classpath `tests/scripts/services.sh` resolves (in
/// `ORCHESTRIX_SERVICES_HOME`, default `~/.cache/orchestrix/services`),
/// resolved here the same way when missing.
fn cql_classpath() -> anyhow::Result<String> {
    let home = std::env::var("ORCHESTRIX_SERVICES_HOME").map_or_else(
        |_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
            PathBuf::from(home).join(".cache/orchestrix/services")
        },
        PathBuf::from,
    );
    let dir = home.join("cql");
    let out = dir.join("classpath.txt");
    let usable = std::fs::read_to_string(&out).ok().filter(|cp| {
        cp.split(':')
            .next()
            .is_some_and(|first| !first.trim().is_empty() && Path::new(first.trim()).exists())
    });
    if let Some(cp) = usable {
        return Ok(cp.trim().to_owned());
    }
    std::fs::create_dir_all(&dir)?;
    let pom = repo_root().join("tests/scripts/maven/cql/pom.xml");
    let status = Command::new("mvn")
        .args(["-q", "-B", "-f"])
        .arg(&pom)
        .arg("dependency:build-classpath")
        .arg(format!("-Dmdep.outputFile={}", out.display()))
        .stdout(Stdio::null())
        .status()
        .context("running mvn")?;
    if !status.success() {
        bail!("mvn dependency:build-classpath of {} failed", pom.display());
    }
    Ok(std::fs::read_to_string(&out)?.trim().to_owned())
}

/// One Cassandra 5 node of this case's own: free native-transport and
/// storage ports (JMX stays off, as for the shared node), a temporary data
/// directory, a 512 MiB heap, and the commit log synced before a write is
/// acknowledged.
struct Cassandra {
    dir: tempfile::TempDir,
    port: u16,
    classpath: String,
    child: Option<Child>,
    starts: u32,
}

impl Cassandra {
    fn available() -> bool {
        Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    async fn start() -> anyhow::Result<Self> {
        let classpath = cql_classpath()?;
        let dir = tempfile::Builder::new()
            .prefix("orx-chaos-cql")
            .tempdir_in("/tmp")?;
        let (port, storage) = (free_port()?, free_port()?);
        let template =
            std::fs::read_to_string(repo_root().join("tests/scripts/cql/cassandra.yaml"))?;
        let yaml = template
            .replace("@DATA@", &dir.path().join("data").display().to_string())
            .replace("127.0.0.1:7000", &format!("127.0.0.1:{storage}"))
            .replace("storage_port: 7000", &format!("storage_port: {storage}"))
            .replace(
                "native_transport_port: 9042",
                &format!("native_transport_port: {port}"),
            )
            // The shared node syncs its commit log every 10 s (`periodic`):
            // a SIGKILL then loses the writes acknowledged since the last
            // sync (replay stops at the last sync marker; measured: the last
            // 10 acknowledged appends). A node that must survive its own
            // SIGKILL acknowledges after the sync (`batch`).
            .replace("commitlog_sync: periodic", "commitlog_sync: batch")
            .replace("commitlog_sync_period: 10000ms\n", "");
        std::fs::write(dir.path().join("cassandra.yaml"), yaml)?;
        let mut node = Self {
            dir,
            port,
            classpath,
            child: None,
            starts: 0,
        };
        node.restart().await?;
        Ok(node)
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the node (again) on the same ports and data directory;
    /// returns once it listens for CQL clients.
    async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.starts += 1;
        let log_path = self
            .dir
            .path()
            .join(format!("cassandra-{}.log", self.starts));
        let log = std::fs::File::create(&log_path)?;
        let options = std::fs::read_to_string(repo_root().join("tests/scripts/cql/jvm17.options"))?;
        let data = self.dir.path().join("data");
        let child = Command::new("java")
            .args(["-Xms256m", "-Xmx512m", "-Xss512k", "-XX:+UseG1GC"])
            .args(
                options
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#')),
            )
            .arg(format!(
                "-Dcassandra.config=file://{}",
                self.dir.path().join("cassandra.yaml").display()
            ))
            .args([
                "-Dcassandra-foreground=yes",
                "-Dcassandra.skip_wait_for_gossip_to_settle=0",
                "-Dcassandra.ring_delay_ms=0",
            ])
            .arg(format!("-Dcassandra.storagedir={}", data.display()))
            .arg(format!(
                "-Dlogback.configurationFile={}",
                repo_root().join("tests/scripts/cql/logback.xml").display()
            ))
            .args(["-cp", &self.classpath])
            .arg("org.apache.cassandra.service.CassandraDaemon")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting Cassandra")?;
        self.child = Some(child);
        orchestrix_chaos::wait_started(
            "the Cassandra node listening for CQL clients",
            &log_path,
            "Starting listening for CQL clients",
            self.port,
            Duration::from_secs(150),
        )
        .await
    }
}

impl Drop for Cassandra {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// An append that returned `Ok`.
#[derive(Debug, Clone)]
struct Acked {
    id: Uuid,
    stream: StreamId,
    revision: u64,
    at: Instant,
}

/// An append that returned an error.
#[derive(Debug, Clone)]
struct Failed {
    id: Uuid,
    transient: bool,
    conflict: bool,
    text: String,
    at: Instant,
}

#[derive(Debug, Default)]
struct Log {
    acked: Vec<Acked>,
    failed: Vec<Failed>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One writer: `count` acknowledged appends spread over its streams, each
/// with the exact revision it last knew; after an error it reads the
/// stream's revision again (when the node answers) and goes on with a new
/// event.
async fn writer(
    store: Store,
    streams: Vec<StreamId>,
    count: u64,
    log: Arc<Mutex<Log>>,
    acked_total: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut known: Vec<Option<u64>> = vec![None; streams.len()];
    let mut done = 0;
    let mut attempt = 0_usize;
    while done < count {
        let i = attempt % streams.len();
        attempt += 1;
        let stream = &streams[i];
        let mut record = EventRecord::json(
            "com.orchestrix.chaos.Appended",
            1,
            &serde_json::json!({ "stream": stream.as_str(), "attempt": attempt }),
        );
        let id = Uuid::new_v4();
        record.id = id;
        let expected = ExpectedRevision::from_current(known[i]);
        match store.append(stream, expected, vec![record]).await {
            Ok(result) => {
                known[i] = Some(result.last_revision);
                done += 1;
                acked_total.fetch_add(1, Ordering::Relaxed);
                lock(&log).acked.push(Acked {
                    id,
                    stream: stream.clone(),
                    revision: result.last_revision,
                    at: Instant::now(),
                });
            }
            Err(e) => {
                lock(&log).failed.push(Failed {
                    id,
                    transient: e.is_transient(),
                    conflict: matches!(e, Error::Conflict { .. }),
                    text: e.to_string(),
                    at: Instant::now(),
                });
                // Learn where the stream stands; while the node is down,
                // try again with what is known (that fails too, typed).
                match store.stream_revision(stream).await {
                    Ok(current) => known[i] = current,
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
    }
    Ok(())
}

/// The all-stream as a catch-up reader sees it, until `stop` and the head.
async fn reader(
    store: Store,
    seen: Arc<Mutex<Vec<(u64, Uuid)>>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
    let mut after = 0;
    let mut errors = 0;
    loop {
        match store.read_all(after, 500, &Filter::all()).await {
            Ok(events) if events.is_empty() => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(errors);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(events) => {
                let mut seen = lock(&seen);
                for e in &events {
                    if e.position <= after {
                        bail!("read_all after {after} returned position {}", e.position);
                    }
                    after = e.position;
                    seen.push((e.position, e.id()));
                }
            }
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_all(store: &Store) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let events = store.read_all(after, 1000, &Filter::all()).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(out);
        };
        out.extend(events);
        after = last;
    }
}

async fn connect(port: u16) -> anyhow::Result<Store> {
    let mut config = ScyllaConfig::from_url(&format!("scylla://127.0.0.1:{port}/chaos"))?;
    config.connect_timeout_ms = 2_000;
    config.request_timeout_ms = 5_000;
    config.claim_lease_ms = 2_000;
    Ok(Store::new(ScyllaStore::connect(config).await?.backend()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cql_node_killed_and_restarted_under_the_scylla_store() -> anyhow::Result<()> {
    if !Cassandra::available() && missing(CASE, "no `java` to run Apache Cassandra") {
        return Ok(());
    }
    let per_writer = scale(150, 1_500);
    let started = Instant::now();
    let mut node = Cassandra::start().await?;
    let first_start = started.elapsed();
    let store = connect(node.port).await?;
    let run = &Uuid::new_v4().simple().to_string()[..8];

    let log = Arc::new(Mutex::new(Log::default()));
    let acked_total = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    let mut all_streams = Vec::new();
    for w in 0..WRITERS {
        let streams: Vec<StreamId> = (0..STREAMS_PER_WRITER)
            .map(|s| StreamId::parse(format!("chaos-{run}w{w}s{s}")))
            .collect::<Result<_, _>>()?;
        all_streams.extend(streams.clone());
        writers.push(tokio::spawn(writer(
            store.clone(),
            streams,
            per_writer,
            log.clone(),
            acked_total.clone(),
        )));
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reading = tokio::spawn(reader(store.clone(), seen.clone(), stop.clone()));

    let total = per_writer * WRITERS as u64;
    poll(
        "a third of the appends acknowledged",
        Duration::from_secs(120),
        Duration::from_millis(10),
        || {
            let n = acked_total.load(Ordering::Relaxed);
            async move { (n >= total / 3).then_some(()) }
        },
    )
    .await?;
    node.kill()?;
    let killed = Instant::now();
    let acked_at_kill = acked_total.load(Ordering::Relaxed);
    // The outage: the writers keep trying (and must fail, typed).
    poll(
        "failed appends while the node is down",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let failed = lock(&log).failed.len();
            async move {
                (failed >= WRITERS && killed.elapsed() >= Duration::from_secs(3)).then_some(())
            }
        },
    )
    .await?;
    let acked_while_down = acked_total.load(Ordering::Relaxed) - acked_at_kill;
    node.restart().await?;
    let back = Instant::now();
    let first_ack_after = poll(
        "an append acknowledged after the restart",
        Duration::from_secs(120),
        Duration::from_millis(10),
        || {
            let first = lock(&log)
                .acked
                .iter()
                .find(|a| a.at > back)
                .map(|a| a.at - back);
            async move { first }
        },
    )
    .await?;
    for w in writers {
        w.await.context("a writer panicked")??;
    }
    let writing_done = back.elapsed();

    // The reader catches up with the head, then stops.
    let head = store.head_position().await?;
    let caught_up = poll(
        "the reader catching up with the head",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let last = lock(&seen).last().map_or(0, |(p, _)| *p);
            async move { (last >= head).then(|| back.elapsed()) }
        },
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    let reader_errors = reading.await.context("the reader panicked")??;

    // The truth, through a second session (as another process would read).
    let fresh = connect(node.port).await?;
    let log = std::mem::take(&mut *lock(&log));
    let acked: HashMap<Uuid, &Acked> = log.acked.iter().map(|a| (a.id, a)).collect();
    let failed: HashSet<Uuid> = log.failed.iter().map(|f| f.id).collect();
    let mut in_streams: HashMap<Uuid, (StreamId, u64)> = HashMap::new();
    let mut failed_but_stored = 0;
    for stream in &all_streams {
        let events = fresh.read_stream_forward(stream, 0, 100_000).await?;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e.revision, i as u64,
                "{stream}: revisions not gap-free from 0"
            );
            let previous = in_streams.insert(e.id(), (stream.clone(), e.revision));
            assert!(previous.is_none(), "{stream}: event {} twice", e.id());
            if let Some(a) = acked.get(&e.id()) {
                assert_eq!(
                    (&a.stream, a.revision),
                    (stream, e.revision),
                    "acknowledged at another place"
                );
            } else {
                assert!(
                    failed.contains(&e.id()),
                    "{stream}: event {} neither acknowledged nor failed",
                    e.id()
                );
                failed_but_stored += 1;
            }
        }
    }
    let lost: Vec<_> = log
        .acked
        .iter()
        .filter(|a| !in_streams.contains_key(&a.id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert_eq!(log.acked.len() as u64, total);

    let all = read_all(&fresh).await?;
    let mut last_revision: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ids = HashSet::new();
    for pair in all.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "all-stream out of order"
        );
    }
    for e in &all {
        assert!(ids.insert(e.id()), "all-stream: {} twice", e.id());
        assert_eq!(
            in_streams.get(&e.id()).map(|(s, r)| (s.as_str(), *r)),
            Some((e.stream_id.as_str(), e.revision)),
            "all-stream event not in its stream"
        );
        if let Some(prev) = last_revision.insert(e.stream_id.as_str(), e.revision) {
            assert_eq!(e.revision, prev + 1, "{}: all-stream skips", e.stream_id);
        }
    }
    assert_eq!(all.len(), in_streams.len(), "all-stream vs streams");
    let read: Vec<(u64, Uuid)> = all.iter().map(|e| (e.position, e.id())).collect();
    assert_eq!(*lock(&seen), read, "the reader's view vs a fresh read");

    let during_outage: Vec<&Failed> = log
        .failed
        .iter()
        .filter(|f| f.at >= killed && f.at <= back)
        .collect();
    let permanent: Vec<&Failed> = log.failed.iter().filter(|f| !f.transient).collect();
    let conflicts = log.failed.iter().filter(|f| f.conflict).count();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for f in &log.failed {
        let kind: String = f.text.chars().take(110).collect();
        *kinds.entry(kind).or_default() += 1;
    }
    let last_position = all.last().map_or(0, |e| e.position);
    println!(
        "CHAOS cql-kill: streams {} acknowledged {} failed {} (during outage {}, conflicts {}, permanent {}) failed_but_stored {failed_but_stored} events {} lost 0 doubled 0 skipped_positions {} acked_while_down {acked_while_down} first_start {first_start:?} down {:?} first_ack_after_return {first_ack_after:?} writers_done {writing_done:?} reader_caught_up {caught_up:?} reader_errors {reader_errors}",
        all_streams.len(),
        log.acked.len(),
        log.failed.len(),
        during_outage.len(),
        conflicts,
        permanent.len(),
        all.len(),
        last_position - all.len() as u64,
        back.duration_since(killed),
    );
    println!("CHAOS cql-kill: errors seen: {kinds:#?}");
    assert!(
        !during_outage.is_empty(),
        "no append failed while the node was down"
    );
    assert!(
        permanent.is_empty(),
        "appends failed with permanent errors: {permanent:?}"
    );
    drop(node);
    Ok(())
}
