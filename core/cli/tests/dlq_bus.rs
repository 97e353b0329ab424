//! `orchestrix dlq ls|show|replay|delete --bus URL` on the dead letters of a
//! real Kafka topic and a real NATS JetStream stream: a worker dead-letters
//! poison events, the generic binary lists and shows them (text and JSON),
//! the application's own command replays them through its fixed handler
//! exactly once, and they are gone afterwards.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser as _;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::store::ExpectedRevision;
use orchestrix::{Application, Error, EventRecord, RecordedEvent, Result, Store, StreamId};
use orchestrix_backends::BusOptions;
use orchestrix_cli::{Cli, Context, Out};
use orchestrix_ops::Operations;
use orchestrix_testkit::services::{Service, require};
use uuid::Uuid;

/// Fails permanently on `{"poison": true}` until fixed; counts deliveries.
#[derive(Debug, Default)]
struct Mailer {
    fixed: AtomicBool,
    delivered: Mutex<HashMap<Uuid, u32>>,
}

#[async_trait::async_trait]
impl EventHandler for Mailer {
    fn name(&self) -> &str {
        "mailer"
    }
    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> Result<()> {
        let poison = serde_json::from_slice::<serde_json::Value>(&event.record.data)
            .ok()
            .and_then(|v| v["poison"].as_bool())
            .unwrap_or(false);
        if poison && !self.fixed.load(Ordering::SeqCst) {
            return Err(Error::invalid("email", "no address on file"));
        }
        *self
            .delivered
            .lock()
            .unwrap()
            .entry(event.id())
            .or_default() += 1;
        Ok(())
    }
}

fn app(store: Store, name: &str, mailer: Arc<Mailer>) -> Application {
    Application::builder(store)
        .name(name)
        .handler(mailer)
        .build()
        .unwrap()
}

/// The generic `orchestrix` binary (no application) on `bus`.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn orchestrix(bus: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .arg("--bus")
        .arg(bus)
        .args(args)
        .env_remove("ORCHESTRIX_STORE_URL")
        .env_remove("ORCHESTRIX_BUS_URL")
        .env_remove("ORCHESTRIX_CONFIG")
        .output()
        .expect("run orchestrix");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The application's own command (its handlers known) on `bus`.
async fn own(context: &Context, bus: &str, args: &[&str]) -> (u8, String) {
    let mut argv = vec!["orchestrix", "--bus", bus];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut buf = Vec::new();
    let code = {
        let mut out = Out {
            w: &mut buf,
            json: cli.global.json,
            tty: false,
        };
        match orchestrix_cli::run(cli, context, &mut out).await {
            Ok(()) => 0,
            Err(f) => {
                eprintln!("error: {:#}", f.error);
                f.code
            }
        }
    };
    (code, String::from_utf8(buf).unwrap())
}

fn ids(json: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs the whole story on one bus. `base` is the bus URL the worker uses
/// (names from the application), `named` the same bus with its names in the
/// URL, for the generic binary.
async fn exercise(base: &str, named: &str, name: &str) {
    // A worker dead-letters 3 poison events out of 5.
    let store = Store::memory();
    let mailer = Arc::new(Mailer::default());
    let application = app(store.clone(), name, mailer.clone());
    let runtime = orchestrix_backends::start_on_bus(&application, base, BusOptions::default())
        .await
        .unwrap();
    let stream = StreamId::parse("order-1").unwrap();
    let records: Vec<EventRecord> = (0..5)
        .map(|i| {
            EventRecord::json(
                "com.acme.shop.Placed",
                1,
                &serde_json::json!({"i": i, "poison": i % 2 == 0}),
            )
        })
        .collect();
    store
        .append(&stream, ExpectedRevision::NoStream, records)
        .await
        .unwrap();
    let events = store.read_stream_forward(&stream, 0, 10).await.unwrap();
    let poison: Vec<Uuid> = events.iter().step_by(2).map(RecordedEvent::id).collect();
    tokio::time::timeout(std::time::Duration::from_secs(120), runtime.catch_up())
        .await
        .expect("caught up in time")
        .unwrap();
    runtime.shutdown().await.unwrap();
    assert_eq!(mailer.delivered.lock().unwrap().len(), 2);

    // ls, text and JSON, with the reasons; the same ids every time.
    let r = orchestrix(named, &["dlq", "ls"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("3 dead letter(s) on "), "{}", r.stdout);
    assert!(r.stdout.contains("no address on file"), "{}", r.stdout);
    assert!(r.stdout.contains("mailer"), "{}", r.stdout);
    let r = orchestrix(named, &["dlq", "ls", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed = ids(&r.stdout);
    assert_eq!(listed.len(), 3, "{}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for l in v.as_array().unwrap() {
        assert_eq!(l["consumer"], "mailer");
        assert_eq!(l["error_kind"], "invalid_input");
        assert!(
            l["reason"].as_str().unwrap().contains("no address on file"),
            "{l}"
        );
        assert!(l["data"]["poison"].as_bool().unwrap(), "{l}");
    }
    let listed_events: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event_id"].as_str().unwrap().to_owned())
        .collect();
    for id in &poison {
        assert!(listed_events.contains(&id.to_string()), "{listed_events:?}");
    }
    let again = orchestrix(named, &["dlq", "ls", "--json"]);
    assert_eq!(ids(&again.stdout), listed, "ids are stable across listings");
    // Filters.
    let r = orchestrix(named, &["dlq", "ls", "--json", "--consumer", "other"]);
    assert_eq!(ids(&r.stdout).len(), 0, "{}", r.stdout);
    let r = orchestrix(named, &["dlq", "ls", "--json", "--reason", "ADDRESS"]);
    assert_eq!(ids(&r.stdout).len(), 3, "{}", r.stdout);
    let r = orchestrix(named, &["dlq", "ls", "--json", "--until", "1h"]);
    assert_eq!(ids(&r.stdout).len(), 0, "{}", r.stdout);

    // show
    let r = orchestrix(named, &["dlq", "show", &listed[0]]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("dead letter {}", listed[0])),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("no address on file (invalid_input)"),
        "{}",
        r.stdout
    );
    let r = orchestrix(named, &["dlq", "show", &Uuid::new_v4().to_string()]);
    assert_eq!(r.code, 3, "{}", r.stderr);

    // The generic binary cannot replay: it has no handlers.
    let r = orchestrix(named, &["dlq", "replay", "--all"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // delete one
    let r = orchestrix(named, &["dlq", "delete", &listed[0]]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("deleted {}", listed[0])),
        "{}",
        r.stdout
    );
    let r = orchestrix(named, &["dlq", "ls", "--json"]);
    assert_eq!(ids(&r.stdout), listed[1..].to_vec());
    let r = orchestrix(named, &["dlq", "delete", &listed[0]]);
    assert_eq!(r.code, 3, "a deleted letter is gone: {}", r.stdout);

    // The application's own command, its handler fixed: dry run, then replay.
    mailer.fixed.store(true, Ordering::SeqCst);
    let context = {
        let (name, mailer) = (name.to_owned(), mailer.clone());
        Context::with(Box::new(move |store: Store| {
            let (name, mailer) = (name.clone(), mailer.clone());
            Box::pin(async move { Ok(Operations::application(app(store, &name, mailer))) })
        }))
    };
    let (code, out) = own(&context, base, &["dlq", "replay", "--all", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would replay 2 letter(s), 0 failed"), "{out}");
    assert_eq!(
        mailer.delivered.lock().unwrap().len(),
        2,
        "a dry run delivers nothing"
    );
    let r = orchestrix(named, &["dlq", "ls", "--json"]);
    assert_eq!(ids(&r.stdout).len(), 2, "a dry run resolves nothing");

    let (code, out) = own(&context, base, &["dlq", "replay", "--consumer", "mailer"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replayed 2 letter(s), 0 failed"), "{out}");
    assert!(out.contains("replayed 2/2 letters ("), "{out}");
    let delivered = mailer.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 4, "{delivered:?}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    let deleted_event = &listed_events[0];
    assert!(
        !delivered.keys().any(|k| &k.to_string() == deleted_event),
        "the deleted letter is never replayed"
    );

    // Afterwards nothing is listed, and replaying again delivers nothing.
    let r = orchestrix(named, &["dlq", "ls"]);
    assert!(r.stdout.contains("0 dead letter(s)"), "{}", r.stdout);
    let (code, out) = own(&context, base, &["dlq", "replay", "--all", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "[]");
    assert_eq!(mailer.delivered.lock().unwrap().len(), 4);
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..10])
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_commands_on_kafka_dead_letters() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let name = unique("dlqk");
    let base = format!("kafka://{brokers}?partitions=2");
    let named = format!("kafka://{brokers}?prefix=orchestrix.{name}");
    exercise(&base, &named, &name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_commands_on_nats_dead_letters() {
    let Some(url) = require(Service::Nats) else {
        return;
    };
    let name = unique("dlqn");
    let base = format!("{url}?partitions=2");
    let named = format!(
        "{url}?stream=ORX_{}&prefix=orchestrix.{name}.events",
        name.to_ascii_uppercase()
    );
    exercise(&base, &named, &name).await;
}
