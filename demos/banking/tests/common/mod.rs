//! What the bank's bus tests share: bus URLs on fresh streams or topics (with
//! the skip-or-fail rule for a missing service) and the two-process worker
//! scenario, run over NATS and over Kafka.

// Each test file uses a part of this module.
#![allow(dead_code)]
// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::process::Stdio;
use std::time::Duration;

use orchestrix::Application;
use orchestrix::runtime::ConsumerConfig;
use orchestrix::saga::{SagaConfig, SagaStatus};
use orchestrix_backends::BusOptions;
use orchestrix_demo_banking::{AccountCommand, BankModule, TransferCommand, TransferSaga};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A `nats://` bus URL on a fresh stream, or `None` (skip) when the server
/// cannot be reached outside CI.
pub async fn nats_bus_url(test: &str) -> Option<String> {
    let base =
        std::env::var("ORCHESTRIX_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let host = base
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let reachable = matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(host.as_str())
        )
        .await,
        Ok(Ok(_))
    );
    if !reachable {
        let reason = format!("NATS is not reachable at {base} (ORCHESTRIX_NATS_URL)");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..12];
    Some(format!(
        "{}?stream=ORX_BANK_{id}&prefix=orx.bank.{id}&partitions=4",
        base.trim_end_matches('/')
    ))
}

/// A `kafka://` bus URL on a fresh topic prefix, with quick group joins, or
/// `None` (skip) when the broker cannot be reached outside CI.
pub async fn kafka_bus_url(test: &str) -> Option<String> {
    let brokers =
        std::env::var("ORCHESTRIX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let mut reachable = false;
    for broker in brokers.split(',') {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(broker.trim()),
        )
        .await
        {
            reachable = true;
            break;
        }
    }
    if !reachable {
        let reason = format!(
            "no Kafka broker reachable at {brokers} (ORCHESTRIX_KAFKA_BROKERS; `bash tests/scripts/services.sh` starts Tansu)"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..12];
    // Tansu with librdkafka's default 45 s session takes > 20 s to join.
    Some(format!(
        "kafka://{brokers}?prefix=orx-bank-{id}&partitions=4&session.timeout.ms=6000&heartbeat.interval.ms=1000"
    ))
}

/// `GET path` on `port`: status code and body.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Bus-specific expectations of [`worker_consumes_what_this_process_relays`].
#[derive(Debug, Clone, Copy)]
pub struct WorkerScenario {
    /// Texts `/readyz` must contain (the bus's group wording, handler names).
    pub ready_contains: &'static [&'static str],
    /// How long the worker's balances and the sagas may take to settle.
    pub settle: Duration,
    /// How long the worker may take to exit after SIGTERM.
    pub stop: Duration,
}

/// Two processes: the worker binary consumes from `bus` while this process
/// executes the commands on a shared SQLite file and only relays; the
/// worker's `/balances` converge, the sagas it runs settle in the shared
/// store, its `/readyz` shows its groups, and it exits 0 on SIGTERM.
pub async fn worker_consumes_what_this_process_relays(bus: &str, scenario: WorkerScenario) {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("bank.db").display());
    // Create the file before the worker opens it.
    let store = orchestrix_backends::open_store(&store_url).await.unwrap();

    let port = free_port();
    let mut worker =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrix-demo-banking-worker"))
            .args(["--store", &store_url, "--bus", bus])
            .env_remove("ORCHESTRIX_CONFIG")
            .env("ORCHESTRIX_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("ORCHESTRIX_LOG_FORMAT", "text")
            .env("ORCHESTRIX_LOG_FILTER", "warn")
            .env("OTEL_SDK_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();

    // This process: commands and the relay only.
    let module = BankModule::new(
        TransferSaga::default(),
        SagaConfig::default(),
        ConsumerConfig::default(),
    );
    let app = Application::builder(store).module(module).build().unwrap();
    let engine = app.saga::<TransferSaga>().unwrap();
    let relay = orchestrix_backends::start_on_bus(&app, bus, BusOptions::producer())
        .await
        .unwrap();

    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let id = |name: &str| format!("{name}-{run}");
    for (name, owner) in [("alice", "Alice"), ("bob", "Bob")] {
        app.execute(AccountCommand::Open {
            account: id(name),
            owner: owner.into(),
        })
        .await
        .unwrap();
    }
    for (name, amount) in [("alice", 100_00), ("bob", 50_00)] {
        app.execute(AccountCommand::Deposit {
            account: id(name),
            amount,
        })
        .await
        .unwrap();
    }
    // One transfer completes, one is larger than the balance and is refused
    // at the debit: the saga (in the worker) settles both.
    for (transfer, from, to, amount) in [
        ("t1", "alice", "bob", 30_00),
        ("t2", "bob", "alice", 500_00),
    ] {
        app.execute(TransferCommand::Request {
            transfer: id(transfer),
            from: id(from),
            to: id(to),
            amount,
        })
        .await
        .unwrap();
    }

    let expected = [(id("alice"), "70.00"), (id("bob"), "80.00")];
    let deadline = tokio::time::Instant::now() + scenario.settle;
    let mut last = String::new();
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            panic!("the worker exited early: {status}");
        }
        let settled = async {
            let (t1, t2) = (
                engine.status(&id("t1")).await.unwrap(),
                engine.status(&id("t2")).await.unwrap(),
            );
            t1 == Some(SagaStatus::Completed) && t2 == Some(SagaStatus::Compensated)
        };
        if let Some((200, body)) = get(port, "/balances").await {
            let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
            let converged = expected
                .iter()
                .all(|(account, balance)| rows[account]["balance"] == *balance);
            if converged && settled.await {
                break;
            }
            last = body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker's balances did not converge; last /balances: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (status, ready) = get(port, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{ready}");
    for part in scenario.ready_contains {
        assert!(ready.contains(part), "{ready}");
    }

    // SIGTERM: the worker leaves its groups and exits 0.
    let pid = worker.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(scenario.stop, worker.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the worker did not stop within {:?} of SIGTERM",
                scenario.stop
            )
        })
        .unwrap();
    assert!(exit.success(), "the worker exited with {exit}");
    relay.shutdown().await.unwrap();
}
