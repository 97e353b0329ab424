//! The embedded SQLite store on a 2 MiB tmpfs: appends until the disk is
//! full. Checked: the failing append returns an error (not a panic, not a
//! hang) that names the cause; no acknowledged event is lost; the file
//! passes `PRAGMA integrity_check`; after space returns, the same store
//! handle appends again; a fresh open reads every acknowledged event.

use std::process::Command;

use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::{EventRecord, StreamId};
use orchestrix_chaos::missing;

/// Mounts a tmpfs of `size` on a fresh directory; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (root needed): {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Self { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_fails_typed_keeps_the_file_and_recovers() -> anyhow::Result<()> {
    let fs = match Tmpfs::mount("2m") {
        Ok(fs) => fs,
        Err(reason) => {
            if missing(
                "sqlite_disk_full_fails_typed_keeps_the_file_and_recovers",
                &reason,
            ) {
                return Ok(());
            }
            unreachable!()
        }
    };
    let path = fs.dir.path().join("store.db");
    let filler = fs.dir.path().join("filler");
    let url = format!("sqlite://{}", path.display());
    let store = orchestrix_worker::open_store(&url).await?;
    // Space to give back later.
    std::fs::write(&filler, vec![0u8; 512 * 1024])?;

    let stream = StreamId::new("blob", "disk-full")?;
    let payload = serde_json::json!({ "pad": "x".repeat(8 * 1024) });
    let mut acknowledged = 0u64;
    let error = loop {
        let record = EventRecord::json("com.orchestrix.chaos.Blob", 1, &payload);
        match store
            .append(&stream, ExpectedRevision::Any, vec![record])
            .await
        {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
        anyhow::ensure!(acknowledged < 10_000, "2 MiB never filled up");
    };
    let text = error.to_string();
    println!(
        "CHAOS sqlite-disk-full: acknowledged {acknowledged} before the error; transient {}; error: {text}",
        error.is_transient()
    );
    assert!(
        matches!(
            error,
            orchestrix::Error::Backend {
                backend: "sqlite",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(text.to_lowercase().contains("full"), "{text}");

    // No corruption, nothing acknowledged lost, while still full.
    let check = || -> anyhow::Result<String> {
        let conn = rusqlite::Connection::open(&path)?;
        Ok(conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    };
    assert_eq!(check()?, "ok");
    let read = store.read_stream_forward(&stream, 0, 100_000).await?;
    assert_eq!(read.len() as u64, acknowledged);

    // Space returns: the same handle appends again.
    std::fs::remove_file(&filler)?;
    let mut after = 0;
    for _ in 0..5 {
        let record = EventRecord::json("com.orchestrix.chaos.Blob", 1, &payload);
        store
            .append(&stream, ExpectedRevision::Any, vec![record])
            .await?;
        after += 1;
    }
    drop(store);
    assert_eq!(check()?, "ok");
    let reopened = orchestrix_worker::open_store(&url).await?;
    let all = reopened.read_all(0, 100_000, &Filter::all()).await?;
    assert_eq!(all.len() as u64, acknowledged + after);
    println!(
        "CHAOS sqlite-disk-full: after space returned: {after} more appends; reopened: {} events; integrity ok",
        all.len()
    );
    Ok(())
}
