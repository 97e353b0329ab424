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
    // A short session, so that a member that dies hands its partitions on quickly.
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
    /// Texts the console's Dead letters page must contain (where the bus
    /// keeps them).
    pub dead_letters_in: &'static [&'static str],
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

    // The worker's console lists every partition of its groups, owned by
    // this worker (the only member), and catches up to no lag.
    let (status, page) = get(port, "/console/consumers").await.unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<table id=\"consumers\">"), "{page}");
    // Its Dead letters page reads the bus's dead letters, not the store's.
    let (status, page) = get(port, "/console/dlq").await.unwrap();
    assert_eq!(status, 200, "{page}");
    for part in scenario.dead_letters_in {
        assert!(page.contains(part), "dead letters on the bus: {page}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(port, "/console/api/consumers").await.unwrap();
        assert_eq!(status, 200, "{body}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let on_bus: Vec<&serde_json::Value> =
            rows.iter().filter(|r| !r["partition"].is_null()).collect();
        let mut partitions: Vec<u64> = on_bus
            .iter()
            .filter(|r| r["consumer"] == "bank-balances")
            .map(|r| r["partition"].as_u64().unwrap())
            .collect();
        partitions.sort_unstable();
        assert_eq!(partitions, [0, 1, 2, 3], "{body}");
        let owned = on_bus.iter().all(|r| r["owner"].is_string());
        let caught_up = on_bus.iter().all(|r| r["lag_events"] == 0);
        if owned && caught_up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions not all owned by the worker or not caught up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
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

/// A `postgres://` store URL on a fresh schema, or `None` (skip) when
/// PostgreSQL cannot be reached outside CI.
pub fn postgres_store_url() -> Option<String> {
    use orchestrix_testkit::services::{Service, require};
    let base = require(Service::Postgres)?;
    let schema = format!("bank_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}schema={schema}"))
}

/// Runs the banking demo binary on `store` with `--bus bus`; asserts that it
/// exits 0 within `limit` and returns what it printed.
pub async fn run_demo(store: &str, bus: &str, limit: Duration) -> String {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrix-demo-banking"))
        .args(["--store", store, "--bus", bus])
        .env_remove("ORCHESTRIX_STORE")
        .env_remove("ORCHESTRIX_BUS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the banking demo did not finish within {limit:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the banking demo exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// Asserts the demo's final balances (projection and aggregate) and
/// transfers are the walk-through's.
pub fn assert_demo_correct(printed: &str) {
    let finals = printed
        .split_once("Final balances")
        .unwrap_or_else(|| panic!("no final balances:\n{printed}"))
        .1;
    for (name, balance) in [("alice", "70.00"), ("bob", "60.00"), ("carol", "0.00")] {
        let line = finals
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no final balance of {name}:\n{printed}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (words[1], words[3]),
            (balance, balance),
            "{name}: projection | aggregate\n{printed}"
        );
    }
    for (transfer, expected) in [
        ("t1", "transfer Completed, saga completed"),
        ("t2", "transfer Cancelled, saga compensated"),
        ("t3", "transfer Cancelled, saga compensated"),
        ("t4", "transfer Cancelled, saga compensated"),
    ] {
        assert!(
            finals.contains(&format!("{transfer}  {expected}")),
            "{transfer}: {expected}\n{printed}"
        );
    }
}

/// The banking demo, run twice in a row on one PostgreSQL store and one
/// bus, ends right both times (the second run used to wait for positions
/// its consumer groups had committed in the first one, and time out).
pub async fn the_demo_runs_twice(bus: &str) {
    let Some(store) = postgres_store_url() else {
        return;
    };
    for run in 1..=2 {
        let printed = run_demo(&store, bus, Duration::from_secs(150)).await;
        eprintln!("run {run} passed");
        assert_demo_correct(&printed);
    }
}

/// Two applications on one broker, both with the default bus names (taken
/// from their names, `bank` and `shop`): the banking demo binary on one
/// store, then the e-commerce walk-through on another. Both end right (the
/// shop used to see the bank's events as its own progress and exit with
/// every order still Pending).
pub async fn two_applications_on_one_broker(bus: &str) {
    use orchestrix_demo_ecommerce::walkthrough::{self, Failure};
    use orchestrix_demo_ecommerce::{OrderStatus, PaymentStatus};
    let dir = tempfile::tempdir().unwrap();
    let bank_store = format!("sqlite://{}", dir.path().join("bank.db").display());
    let printed = run_demo(&bank_store, bus, Duration::from_secs(150)).await;
    assert_demo_correct(&printed);

    let shop_store = format!("sqlite://{}", dir.path().join("shop.db").display());
    let store = orchestrix_backends::open_store(&shop_store).await.unwrap();
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut out = Vec::new();
    let report = tokio::time::timeout(
        Duration::from_secs(150),
        walkthrough::run_on(store, Some(bus), run, Failure::None, &mut out),
    )
    .await
    .expect("the e-commerce walk-through took too long")
    .unwrap();
    let printed = String::from_utf8_lossy(&out);
    for order in ["o1", "o2", "o3"] {
        let o = &report.orders[order];
        assert_eq!(
            (o.status, o.payment, o.saga),
            (
                OrderStatus::Confirmed,
                PaymentStatus::Charged,
                SagaStatus::Completed
            ),
            "{order}\n{printed}"
        );
    }
}

/// The worker binary on a bus, relaying its own demo traffic and one
/// undecodable account event: its `/metrics`, parsed as Prometheus text,
/// has the consumer series the embedded runtime exports (events consumed,
/// handler duration, dead letters), the lag of every consumer per partition
/// of the bus (4), and the relay's lag, all with sane values.
pub async fn worker_exports_bus_metrics(bus: &str) {
    use orchestrix::EventRecord;
    use orchestrix::store::ExpectedRevision;
    use prometheus_parse::{Scrape, Value};

    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("bank.db").display());
    let store = orchestrix_backends::open_store(&store_url).await.unwrap();
    // Not an `Opened` the projection can read: a dead letter.
    let poison = EventRecord::json(
        "com.orchestrix.bank.account.Opened",
        1,
        &serde_json::json!({ "not": "an account" }),
    );
    let stream = orchestrix::StreamId::parse("account-poison").unwrap();
    store
        .append(&stream, ExpectedRevision::NoStream, vec![poison])
        .await
        .unwrap();

    let port = free_port();
    let mut worker =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrix-demo-banking-worker"))
            .args(["--store", &store_url, "--bus", bus, "--relay"])
            .args(["--traffic-every-ms", "100"])
            .env_remove("ORCHESTRIX_CONFIG")
            .env("ORCHESTRIX_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("ORCHESTRIX_LOG_FORMAT", "text")
            .env("ORCHESTRIX_LOG_FILTER", "error")
            .env("OTEL_SDK_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();

    let value = |v: &Value| match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => Some(*x),
        Value::Histogram(b) => Some(b.iter().map(|b| b.count).fold(0.0, f64::max)),
        Value::Summary(_) => None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    let mut missing = Vec::new();
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            panic!("the worker exited early: {status}");
        }
        if let Some((200, body)) = get(port, "/metrics").await {
            let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
            let series = |name: &str| -> Vec<(std::collections::HashMap<String, String>, f64)> {
                scrape
                    .samples
                    .iter()
                    .filter(|s| s.metric == name)
                    .filter_map(|s| Some(((*s.labels).clone(), value(&s.value)?)))
                    .collect()
            };
            let consumers = |name: &str| -> std::collections::BTreeSet<String> {
                series(name)
                    .into_iter()
                    .filter(|(_, v)| *v > 0.0)
                    .filter_map(|(l, _)| l.get("consumer").cloned())
                    .collect()
            };
            for (_, v) in series("orchestrix_consumer_lag_events")
                .into_iter()
                .chain(series("orchestrix_consumer_lag_seconds"))
                .chain(series("orchestrix_relay_lag_events"))
            {
                assert!(v.is_finite() && v >= 0.0, "a negative lag:\n{body}");
            }
            let lag_partitions: std::collections::BTreeSet<(String, String)> =
                series("orchestrix_consumer_lag_events")
                    .into_iter()
                    .filter_map(|(l, _)| {
                        Some((l.get("consumer")?.clone(), l.get("partition")?.clone()))
                    })
                    .collect();
            let consumed = consumers("orchestrix_events_consumed_total");
            missing.clear();
            if consumed.len() < 2 {
                missing.push("orchestrix_events_consumed_total of both consumers");
            }
            if consumers("orchestrix_handler_duration_seconds").len() < 2 {
                missing.push("orchestrix_handler_duration_seconds of both consumers");
            }
            if consumers("orchestrix_dead_letters_total").is_empty() {
                missing.push("orchestrix_dead_letters_total");
            }
            // Every consumer, each of the bus's 4 partitions.
            if consumed.len() < 2
                || consumed
                    .iter()
                    .any(|c| (0..4).any(|p| !lag_partitions.contains(&(c.clone(), p.to_string()))))
            {
                missing.push("orchestrix_consumer_lag_events per partition");
            }
            if series("orchestrix_consumer_lag_seconds").len() < lag_partitions.len()
                || lag_partitions.is_empty()
            {
                missing.push("orchestrix_consumer_lag_seconds per partition");
            }
            if series("orchestrix_relay_lag_events").is_empty() {
                missing.push("orchestrix_relay_lag_events");
            }
            if missing.is_empty() {
                break;
            }
            last = body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in /metrics:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let pid = worker.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(40), worker.wait())
        .await
        .expect("the worker did not stop after SIGTERM")
        .unwrap();
    assert!(exit.success(), "the worker exited with {exit}");
}
