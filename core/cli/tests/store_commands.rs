//! Every store command of the `orchestrix` binary against a real store,
//! SQLite and PostgreSQL, text and `--json`.

mod support;

use support::{TestStore, orchestrix, seed};

async fn exercise(db: TestStore) {
    let url = db.url.as_str();
    let store = orchestrix_backends::open_store(url).await.unwrap();
    let seeded = seed(&store).await;

    // streams ls
    let r = orchestrix(url, &["streams", "ls"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("STREAM"), "{}", r.stdout);
    for s in ["account-1", "order-1", "account-2", "saga_transfer-t1"] {
        assert!(r.stdout.contains(s), "{s} missing: {}", r.stdout);
    }
    assert!(r.stdout.contains("5 stream(s)"), "{}", r.stdout);
    let r = orchestrix(url, &["streams", "ls", "--category", "account", "--json"]);
    let v = r.json();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["account-1", "account-2"]);
    assert_eq!(v[0]["events"], 3);
    assert_eq!(v[0]["revision"], 2);
    let r = orchestrix(url, &["streams", "ls", "--categories", "--json"]);
    let v = r.json();
    assert_eq!(v[0]["category"], "account");
    assert_eq!(v[0]["streams"], 2);
    assert_eq!(v[0]["events"], 4);

    // streams read
    let r = orchestrix(url, &["streams", "read", "account-1", "--from", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[1].starts_with("1 ") && lines[1].contains("com.acme.bank.Deposited"));
    assert!(lines[1].contains(r#"{"amount":100}"#), "{}", lines[1]);
    let v = orchestrix(
        url,
        &["streams", "read", "account-1", "--limit", "1", "--json"],
    )
    .json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["type"], "com.acme.bank.Opened");
    assert_eq!(v[0]["data"]["owner"], "ada");
    assert_eq!(v[0]["attributes"]["specversion"], "1.0");
    assert_eq!(v[0]["attributes"]["subject"], "account-1");
    let r = orchestrix(url, &["streams", "read", "account-404"]);
    assert_eq!(r.code, 3, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("stream `account-404` not found"),
        "{}",
        r.stderr
    );
    let r = orchestrix(url, &["streams", "read", "no category"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // events tail (bounded) and show
    let v = orchestrix(url, &["events", "tail", "--limit", "2", "--json"]).json();
    let types: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "orchestrix.saga.CompensationStarted",
            "orchestrix.saga.Compensated"
        ]
    );
    let r = orchestrix(url, &["events", "tail", "--category", "order"]);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    assert!(r.stdout.lines().next().unwrap().starts_with("POSITION"));
    let id = seeded.account_event.to_string();
    let r = orchestrix(url, &["events", "show", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with(&format!("event {id}")), "{}", r.stdout);
    assert!(
        r.stdout.contains("type: com.acme.bank.Opened"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(r#""owner": "ada""#), "{}", r.stdout);
    let v = orchestrix(url, &["events", "show", &id, "--json"]).json();
    assert_eq!(v["stream"], "account-1");
    assert_eq!(v["position"], 1);
    assert_eq!(v["attributes"]["id"], id.as_str());
    let v = orchestrix(url, &["events", "show", "@4", "--json"]).json();
    assert_eq!(v["type"], "com.acme.shop.Placed");
    let r = orchestrix(url, &["events", "show", &uuid::Uuid::now_v7().to_string()]);
    assert_eq!(r.code, 3);

    // events tail --follow: live events, bounded by --limit.
    let follow = {
        let url = url.to_owned();
        std::thread::spawn(move || {
            orchestrix(
                &url,
                &[
                    "events",
                    "tail",
                    "--follow",
                    "--limit",
                    "2",
                    "--category",
                    "live",
                    "--json",
                ],
            )
        })
    };
    // Appends until the follower has seen two (it starts at the head).
    let live = orchestrix::StreamId::parse("live-1").unwrap();
    for i in 0..200 {
        if follow.is_finished() {
            break;
        }
        let e = orchestrix::EventRecord::json("com.acme.Tick", 1, &serde_json::json!({"i": i}));
        store
            .append(&live, orchestrix::ExpectedRevision::Any, vec![e])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = follow.join().unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines.iter().all(|e| e["type"] == "com.acme.Tick"));

    // projections ls: checkpoints named on the command line.
    store
        .backend()
        .checkpoints
        .save_checkpoint("balances", 2)
        .await
        .unwrap();
    let r = orchestrix(url, &["projections", "ls", "balances", "never-ran"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("NAME"), "{}", r.stdout);
    let v = orchestrix(
        url,
        &["projections", "ls", "balances", "never-ran", "--json"],
    )
    .json();
    let head = store.head_position().await.unwrap();
    assert_eq!(v[0]["name"], "balances");
    assert_eq!(v[0]["checkpoint"], 2);
    assert_eq!(v[0]["head"], head);
    assert_eq!(v[0]["lag_events"], head - 2);
    assert!(v[0]["lag_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(v[1]["checkpoint"], serde_json::Value::Null);
    // Rebuilding needs the application's code.
    let r = orchestrix(url, &["projections", "rebuild", "balances"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("needs the projection's code"),
        "{}",
        r.stderr
    );

    // dlq ls / show / replay --dry-run / delete
    let r = orchestrix(url, &["dlq", "ls"]);
    assert!(r.stdout.contains("3 dead letter(s)"), "{}", r.stdout);
    assert!(r.stdout.contains("negative balance"), "{}", r.stdout);
    let v = orchestrix(url, &["dlq", "ls", "--consumer", "balances", "--json"]).json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["consumer"], "balances");
    assert_eq!(v[0]["data"]["amount"], 100);
    let v = orchestrix(url, &["dlq", "ls", "--reason", "no address", "--json"]).json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["consumer"], "mailer");
    let v = orchestrix(url, &["dlq", "ls", "--since", "1h", "--json"]).json();
    assert_eq!(v.as_array().unwrap().len(), 3);
    let v = orchestrix(
        url,
        &["dlq", "ls", "--since", "2999-01-01T00:00:00Z", "--json"],
    )
    .json();
    assert_eq!(v.as_array().unwrap().len(), 0);
    let r = orchestrix(url, &["dlq", "ls", "--since", "yesterday"]);
    assert_eq!(r.code, 2);
    let letter = seeded.letters[2].to_string();
    let r = orchestrix(url, &["dlq", "show", &letter]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("consumer   mailer"), "{}", r.stdout);
    assert!(
        r.stdout.contains("type: com.acme.shop.Placed"),
        "{}",
        r.stdout
    );
    let v = orchestrix(url, &["dlq", "show", &letter, "--json"]).json();
    assert_eq!(v["attempts"], 3);
    assert_eq!(v["headers"]["subject"], "order-1");
    let r = orchestrix(
        url,
        &["dlq", "replay", "--consumer", "balances", "--dry-run"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("would replay 2 letter(s), 0 failed"),
        "{}",
        r.stdout
    );
    let r = orchestrix(url, &["dlq", "replay", "--consumer", "balances"]);
    assert_eq!(r.code, 2, "replaying needs the handler: {}", r.stderr);
    let r = orchestrix(url, &["dlq", "replay"]);
    assert_eq!(r.code, 2);
    let v = orchestrix(url, &["dlq", "delete", &letter, "--dry-run", "--json"]).json();
    assert_eq!(v["deleted"][0], letter.as_str());
    let r = orchestrix(url, &["dlq", "delete", &letter]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert_eq!(lines[1], format!("deleted {letter}"));
    assert!(
        lines[0].starts_with("deleted 1/1 letters ("),
        "{}",
        r.stdout
    );
    let r = orchestrix(url, &["dlq", "delete", &letter]);
    assert_eq!(r.code, 3);
    assert_eq!(
        orchestrix(url, &["dlq", "ls", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // sagas ls / show
    let r = orchestrix(url, &["sagas", "ls"]);
    assert!(r.stdout.contains("transfer/t1  running"), "{}", r.stdout);
    assert!(
        r.stdout.contains("transfer/t2  compensated"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("account-9 is closed"), "{}", r.stdout);
    let v = orchestrix(url, &["sagas", "ls", "--status", "compensated", "--json"]).json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], "transfer/t2");
    let r = orchestrix(url, &["sagas", "show", "transfer/t1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("status   running"), "{}", r.stdout);
    assert!(r.stdout.contains("CommandSent"), "{}", r.stdout);
    assert!(r.stdout.contains("expire due"), "{}", r.stdout);
    assert!(r.stdout.contains("durable"), "{}", r.stdout);
    let v = orchestrix(url, &["sagas", "show", "saga_transfer-t1", "--json"]).json();
    assert_eq!(v["status"], "running");
    assert_eq!(
        v["pending_timeouts"][0]["timer_id"],
        seeded.timer_id.as_str()
    );
    assert_eq!(v["pending_timeouts"][0]["durable"], true);
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["saga_events"][0]["type"],
        "com.acme.bank.transfer.Debited"
    );
    assert_eq!(v["trail"].as_array().unwrap().len(), 4);
    assert_eq!(orchestrix(url, &["sagas", "show", "transfer/none"]).code, 3);
    assert_eq!(orchestrix(url, &["sagas", "show", "account-1"]).code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_command_on_sqlite() {
    exercise(support::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_store_command_on_postgres() {
    let Some(db) = support::postgres() else {
        return;
    };
    exercise(db).await;
}

#[test]
fn no_store_is_a_usage_error_and_the_config_file_names_one() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .args(["streams", "ls"])
        .env_remove("ORCHESTRIX_STORE_URL")
        .env_remove("ORCHESTRIX_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("worker.toml");
    let db = dir.path().join("x.db");
    std::fs::write(
        &config,
        format!(
            "service_name = \"w\"\n[store]\nurl = \"sqlite://{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            db.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .args(["streams", "ls", "--json", "--config"])
        .arg(&config)
        .env_remove("ORCHESTRIX_STORE_URL")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}
