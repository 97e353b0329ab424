//! Regression test for issue 12: the banking worker on a Kafka bus, SIGTERMed
//! while its consumer groups are still joining, needed ~10.4 s to stop (two
//! groups, each closing behind a JoinGroup the broker held: 5 s of
//! librdkafka's LeaveGroup timeout each), so a grace period of 10 s or less
//! ended in exit 1.
//!
//! Two cases, each SIGTERMed as soon as the runtime started, with a grace
//! period of 8 s: a fresh group (the join in flight), and groups whose
//! previous members were SIGKILLed (the broker holds the new members' joins
//! until the old ones' session timeout, 10 s here). Each must exit 0 within
//! its grace period.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

/// The worker's own grace period.
const GRACE: Duration = Duration::from_secs(8);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut conn = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n")?.1.to_owned()))
}

struct Worker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn spawn(bus: &str) -> Worker {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}", dir.path().join("bank.db").display());
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_orchestrix-demo-banking-worker"))
        .args(["--store", &store, "--bus", bus])
        .env_remove("ORCHESTRIX_CONFIG")
        .env_remove("ORCHESTRIX_BUS_URL")
        .env("ORCHESTRIX_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "ORCHESTRIX_SHUTDOWN_GRACE_PERIOD_MS",
            GRACE.as_millis().to_string(),
        )
        .env("ORCHESTRIX_LOG_FORMAT", "text")
        .env("ORCHESTRIX_LOG_FILTER", "warn")
        .env("OTEL_SDK_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker");
    Worker {
        child,
        port,
        _dir: dir,
    }
}

/// Polls `/readyz` until `done` holds for its body.
async fn wait_readyz(worker: &mut Worker, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((_, body)) = http_get(worker.port, "/readyz").await
            && done(&body)
        {
            return;
        }
        if let Ok(Some(status)) = worker.child.try_wait() {
            panic!("the worker exited while waiting for {what}: {status}");
        }
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn started(body: &str) -> bool {
    body.contains("[+] runtime started")
}

/// SIGTERM, then the exit status and how long it took.
async fn terminate(worker: Worker, what: &str) -> Duration {
    let pid = worker.child.id().expect("running");
    let began = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "{what}: kill -TERM failed");
    let output = tokio::time::timeout(
        GRACE + Duration::from_secs(10),
        worker.child.wait_with_output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: the worker did not exit at all after SIGTERM"))
    .expect("wait");
    let took = began.elapsed();
    println!("{what}: exited {} after {took:?}", output.status);
    assert!(
        output.status.success(),
        "{what}: exit {} after {took:?}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_kafka_groups_join_exits_0_within_the_grace_period() {
    let Some(brokers) =
        orchestrix_testkit::services::require(orchestrix_testkit::services::Service::Kafka)
    else {
        return;
    };
    let bus = |prefix: &str| {
        format!(
            "kafka://{brokers}?prefix={prefix}&partitions=4&session.timeout.ms=10000&heartbeat.interval.ms=1000"
        )
    };
    let run = uuid::Uuid::new_v4().simple().to_string();

    // A fresh group: SIGTERM while the first join is in flight.
    for round in 0..3 {
        let mut worker = spawn(&bus(&format!("orx-join-{}-{round}", &run[..8])));
        wait_readyz(&mut worker, "runtime started", started).await;
        terminate(worker, &format!("fresh group, round {round}")).await;
    }

    // Groups whose members were SIGKILLed: the broker holds the next
    // members' joins until those expire (10 s).
    let prefix = format!("orx-held-{}", &run[..8]);
    let mut first = spawn(&bus(&prefix));
    wait_readyz(&mut first, "every group assigned", |body| {
        started(body) && body.contains("partitions [") && !body.contains("none yet")
    })
    .await;
    first.child.kill().await.expect("SIGKILL");
    let mut second = spawn(&bus(&prefix));
    wait_readyz(&mut second, "runtime started", started).await;
    let took = terminate(second, "joins held by SIGKILLed members").await;
    assert!(took < GRACE, "{took:?}");
}
