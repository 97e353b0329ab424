//! 100,000 events of 3 types into Delta tables by the `orchestrix-lakehouse`
//! binary, killed with SIGKILL twice mid-run, then aborted once between
//! writing a batch's files and committing them, then run to the end: every
//! event is in its table exactly once, read back from the Delta log (the
//! `deltalake` crate) and from the live Parquet files with the `parquet`
//! crate's own reader. Then `optimize` compacts and `vacuum` removes the
//! crash's orphan files without changing a row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, StreamId};
use orchestrix_lakehouse::deltalake::arrow::array::{Array, Int64Array, StringArray};
use orchestrix_lakehouse::deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use orchestrix_lakehouse::{live_files, optimize, read_rows, vacuum};
use serde_json::json;
use tokio::process::{Child, Command};

const TYPES: [&str; 3] = [
    "com.acme.OrderPlaced",
    "com.acme.PaymentTaken",
    "com.acme.ItemShipped",
];
const STREAMS: usize = 1000;
const PER_STREAM: usize = 100;
const TOTAL: usize = STREAMS * PER_STREAM;

fn spawn(store: &str, lake: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orchestrix-lakehouse"))
        .args(["run", "--store", store, "--lake"])
        .arg(lake)
        .args(["--batch", "2500", "--exit-when-caught-up"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the sink")
}

/// Commits in all tables' logs.
fn commits(lake: &Path) -> usize {
    let Ok(tables) = std::fs::read_dir(lake) else {
        return 0;
    };
    tables
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path().join("_delta_log")).ok())
        .map(|log| {
            log.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .sum()
}

/// Waits until the lake has at least `n` commits, the child still running.
async fn wait_for_commits(child: &mut Child, lake: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while commits(lake) < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sink exited before {n} commits"
        );
        assert!(Instant::now() < deadline, "no {n} commits within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn kill(mut child: Child) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sink finished before it was killed"
    );
    child.kill().await.unwrap(); // SIGKILL
}

fn parquet_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("_delta_log") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(p);
            }
        }
    }
    out
}

/// Positions and ids of every row in the table's live files, read with the
/// parquet crate directly from the files the Delta log lists.
async fn read_with_parquet(table: &Path) -> Vec<(i64, String)> {
    let mut rows = Vec::new();
    for file in live_files(table).await.unwrap() {
        let f = std::fs::File::open(table.join(&file.path)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let pos = batch
                .column_by_name("ce_globalposition")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone();
            let ids = batch
                .column_by_name("ce_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            for i in 0..pos.len() {
                rows.push((pos.value(i), ids.value(i).to_owned()));
            }
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sink_writes_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let url = format!("sqlite://{}", db.display());
    let lake = dir.path().join("lake");

    // 100,000 events of 3 types, in 1,000 streams.
    let store = orchestrix_backends::open_store(&url).await.unwrap();
    let mut expected: BTreeMap<&str, BTreeMap<i64, String>> = BTreeMap::new();
    for s in 0..STREAMS {
        let stream = StreamId::new("order", &format!("o{s}")).unwrap();
        let events: Vec<EventRecord> = (0..PER_STREAM)
            .map(|i| {
                let n = s * PER_STREAM + i;
                EventRecord::json(
                    TYPES[n % 3],
                    1,
                    &json!({"n": n, "amount": n % 97, "note": "x".repeat(n % 13)}),
                )
            })
            .collect();
        let ids: Vec<(String, &str)> = events
            .iter()
            .map(|e| {
                (
                    e.id.to_string(),
                    TYPES.iter().find(|t| **t == e.event_type).copied().unwrap(),
                )
            })
            .collect();
        let appended = store
            .append(&stream, ExpectedRevision::NoStream, events)
            .await
            .unwrap();
        let first = appended.first_position;
        for (k, (id, ty)) in ids.into_iter().enumerate() {
            let pos = i64::try_from(first + k as u64).unwrap();
            expected.entry(ty).or_default().insert(pos, id);
        }
    }
    assert_eq!(store.head_position().await.unwrap(), TOTAL as u64);
    drop(store);

    // Two SIGKILLs mid-run.
    let mut child = spawn(&url, &lake, &[]);
    wait_for_commits(&mut child, &lake, 8).await;
    kill(child).await;
    let after_first = commits(&lake);
    let mut child = spawn(&url, &lake, &[]);
    wait_for_commits(&mut child, &lake, after_first + 8).await;
    kill(child).await;

    // An abort after the files of a commit are written, before the commit.
    let before_abort = parquet_files(&lake);
    let mut child = spawn(&url, &lake, &["--crash-before-commit", "4"]);
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the sink aborts within 120 s")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let mut orphans = BTreeSet::new();
    for ty in TYPES {
        let table = lake.join(ty);
        let live: BTreeSet<PathBuf> = live_files(&table)
            .await
            .unwrap()
            .into_iter()
            .map(|f| table.join(f.path))
            .collect();
        orphans.extend(parquet_files(&table).difference(&live).cloned());
    }
    let new_orphans: Vec<&PathBuf> = orphans.difference(&before_abort).collect();
    assert!(
        !new_orphans.is_empty(),
        "the abort left written but uncommitted files"
    );

    // To the end.
    let child = spawn(&url, &lake, &[]);
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the sink finishes within 300 s")
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Exactly once, by the Delta log and by the parquet crate.
    let mut total = 0;
    for ty in TYPES {
        let table = lake.join(ty);
        let want = &expected[ty];
        let files = live_files(&table).await.unwrap();
        let logged: usize = files.iter().map(|f| f.num_records.unwrap()).sum();
        assert_eq!(logged, want.len(), "{ty}: rows per the Delta log");
        let rows = read_with_parquet(&table).await;
        assert_eq!(rows.len(), want.len(), "{ty}: rows per the parquet files");
        let got: BTreeMap<i64, String> = rows.into_iter().collect();
        assert_eq!(got.len(), want.len(), "{ty}: no position twice");
        assert_eq!(&got, want, "{ty}: every event, with its id");
        total += got.len();
    }
    assert_eq!(total, TOTAL);

    // Compaction and vacuum change no row; vacuum deletes the orphans.
    let table = lake.join(TYPES[0]);
    let before = read_rows(&table).await.unwrap();
    let files_before = live_files(&table).await.unwrap().len();
    let report = optimize(&table, 128 << 20).await.unwrap();
    assert!(report.files_removed > 1, "{report:?}");
    let files_after = live_files(&table).await.unwrap().len();
    assert!(
        files_after < files_before,
        "{files_before} -> {files_after}"
    );
    assert_eq!(read_rows(&table).await.unwrap(), before);
    let deleted = vacuum(&table, Duration::ZERO).await.unwrap();
    assert!(deleted.len() >= files_before - files_after, "{deleted:?}");
    let left = parquet_files(&table);
    let live: BTreeSet<PathBuf> = live_files(&table)
        .await
        .unwrap()
        .into_iter()
        .map(|f| table.join(f.path))
        .collect();
    assert_eq!(left, live, "only live files remain");
    assert_eq!(read_rows(&table).await.unwrap(), before);
}
