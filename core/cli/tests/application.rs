//! The commands that run an application's code (`projections rebuild`,
//! `dlq replay`), through the CLI library as an application's own binary
//! embeds it.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clap::Parser as _;
use orchestrix::runtime::{Delivery, EventHandler, Projection, dead_letter_for};
use orchestrix::store::{AppendRequest, ExpectedRevision};
use orchestrix::{Application, Error, EventRecord, Filter, RecordedEvent, Result, Store, StreamId};
use orchestrix_cli::{Cli, Context, Out};
use orchestrix_ops::Operations;

/// Sum of `amount` and event count per stream.
#[derive(Debug, Default)]
struct Totals {
    name: String,
    rows: Mutex<HashMap<String, (u64, i64)>>,
}

impl Totals {
    fn named(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            rows: Mutex::default(),
        })
    }

    fn fold(event: &RecordedEvent, rows: &mut HashMap<String, (u64, i64)>) {
        let amount = serde_json::from_slice::<serde_json::Value>(&event.record.data)
            .ok()
            .and_then(|v| v["amount"].as_i64())
            .unwrap_or(0);
        let row = rows.entry(event.stream_id.to_string()).or_default();
        // Idempotent on the revision: a redelivery lands on the same row.
        if event.revision + 1 > row.0 {
            row.0 = event.revision + 1;
            row.1 += amount;
        }
    }

    fn snapshot(&self) -> HashMap<String, (u64, i64)> {
        self.rows.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Projection for Totals {
    fn name(&self) -> &str {
        &self.name
    }
    fn filter(&self) -> Filter {
        Filter::all().categories(["acct"])
    }
    async fn apply(&self, event: &RecordedEvent) -> Result<()> {
        Self::fold(event, &mut self.rows.lock().unwrap());
        Ok(())
    }
    async fn reset(&self) -> Result<()> {
        self.rows.lock().unwrap().clear();
        Ok(())
    }
}

/// Counts deliveries per event id.
#[derive(Debug, Default)]
struct Mailer {
    delivered: Mutex<HashMap<uuid::Uuid, u32>>,
}

#[async_trait::async_trait]
impl EventHandler for Mailer {
    fn name(&self) -> &str {
        "mailer"
    }
    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> Result<()> {
        *self
            .delivered
            .lock()
            .unwrap()
            .entry(event.id())
            .or_default() += 1;
        Ok(())
    }
}

async fn run(context: &Context, url: &str, args: &[&str]) -> (u8, String) {
    let mut argv = vec!["orchestrix", "--store", url];
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

fn context(totals: Arc<Totals>, v2: Arc<Totals>, mailer: Arc<Mailer>) -> Context {
    Context::with(Box::new(move |store: Store| {
        let (totals, v2, mailer) = (totals.clone(), v2.clone(), mailer.clone());
        Box::pin(async move {
            let app = Application::builder(store)
                .projection(totals)
                .handler(mailer)
                .build()?;
            let versions: orchestrix_ops::operate::VersionFactory =
                Arc::new(move |name: &str, version: &str| {
                    (name == "totals" && version == "v2").then(|| v2.clone() as Arc<dyn Projection>)
                });
            Ok(Operations::application(app).versions(versions))
        })
    }))
}

/// 100,000 events in 1,000 streams, appended in batches.
async fn append_many(store: &Store, streams: u64, per_stream: u64) {
    for chunk in (0..streams).collect::<Vec<_>>().chunks(50) {
        let requests = chunk
            .iter()
            .map(|s| {
                let events = (0..per_stream)
                    .map(|i| {
                        EventRecord::json(
                            "com.acme.bank.Deposited",
                            1,
                            &serde_json::json!({"amount": (s * 7 + i) % 13}),
                        )
                    })
                    .collect();
                AppendRequest::new(
                    StreamId::parse(format!("acct-{s}")).unwrap(),
                    ExpectedRevision::Any,
                    events,
                )
            })
            .collect();
        for r in store.append_batch(requests).await.unwrap() {
            r.unwrap();
        }
    }
}

async fn fresh_build(store: &Store) -> HashMap<String, (u64, i64)> {
    let mut rows = HashMap::new();
    let filter = Filter::all().categories(["acct"]);
    let mut after = 0;
    loop {
        let page = store.read_all(after, 5000, &filter).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in &page {
            Totals::fold(e, &mut rows);
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_of_100_000_events_shows_progress_and_equals_a_fresh_build() {
    let db = support::sqlite();
    let store = orchestrix_backends::open_store(&db.url).await.unwrap();
    append_many(&store, 1000, 100).await;
    assert_eq!(store.head_position().await.unwrap(), 100_000);

    let (totals, v2) = (Totals::named("totals"), Totals::named("totals_v2"));
    // A stale model: the rebuild must clear it.
    totals
        .rows
        .lock()
        .unwrap()
        .insert("acct-stale".into(), (1, 999));
    let ctx = context(totals.clone(), v2.clone(), Arc::new(Mailer::default()));

    let (code, out) = run(&ctx, &db.url, &["projections", "rebuild", "totals"]).await;
    assert_eq!(code, 0, "{out}");
    let progress: Vec<&str> = out.lines().filter(|l| l.starts_with("rebuilt ")).collect();
    assert!(progress.len() >= 2, "{out}");
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("rebuilt 100000/100000 events (")),
        "{out}"
    );
    assert!(out.contains("/s, ETA "), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("rebuilt `totals` up to position 100000"),
        "{out}"
    );
    let expected = fresh_build(&store).await;
    assert_eq!(expected.len(), 1000);
    assert_eq!(totals.snapshot(), expected);

    // The checkpoint is at the head now.
    let (code, out) = run(&ctx, &db.url, &["projections", "ls", "--json"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "totals")
        .unwrap();
    assert_eq!(row["lag_events"], 0, "{v}");

    // Into a new version, built side by side and switched to.
    let (code, out) = run(
        &ctx,
        &db.url,
        &[
            "projections",
            "rebuild",
            "totals",
            "--into",
            "v2",
            "--switch",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["projection"], "totals_v2");
    assert_eq!(v["replaced"], "totals");
    assert_eq!(v2.snapshot(), expected);
    let (code, _) = run(
        &ctx,
        &db.url,
        &["projections", "rebuild", "totals", "--into", "v9"],
    )
    .await;
    assert_eq!(code, 3);
    let (code, _) = run(&ctx, &db.url, &["projections", "rebuild", "nope"]).await;
    assert_eq!(code, 3);
}

async fn replay_delivers_once(url: &str) {
    let store = orchestrix_backends::open_store(url).await.unwrap();
    let stream = StreamId::parse("order-7").unwrap();
    let records: Vec<EventRecord> = (0..3)
        .map(|i| EventRecord::json("com.acme.shop.Placed", 1, &serde_json::json!({"i": i})))
        .collect();
    store
        .append(&stream, ExpectedRevision::NoStream, records)
        .await
        .unwrap();
    let events = store.read_stream_forward(&stream, 0, 10).await.unwrap();
    for e in &events {
        let letter = dead_letter_for("mailer", e, &Error::invalid("smtp", "down"), 5);
        store
            .backend()
            .dead_letters
            .put_dead_letter(letter)
            .await
            .unwrap();
    }
    let other = dead_letter_for("other", &events[0], &Error::invalid("x", "y"), 1);
    store
        .backend()
        .dead_letters
        .put_dead_letter(other)
        .await
        .unwrap();

    let mailer = Arc::new(Mailer::default());
    let ctx = context(
        Totals::named("totals"),
        Totals::named("totals_v2"),
        mailer.clone(),
    );
    let (code, out) = run(
        &ctx,
        url,
        &["dlq", "replay", "--consumer", "mailer", "--dry-run"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(mailer.delivered.lock().unwrap().is_empty());
    let (code, out) = run(&ctx, url, &["dlq", "replay", "--consumer", "mailer"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replayed 3 letter(s), 0 failed"), "{out}");
    assert!(out.contains("replayed 3/3 letters ("), "{out}");
    let delivered = mailer.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 3);
    for e in &events {
        assert_eq!(delivered.get(&e.id()), Some(&1), "{delivered:?}");
    }
    // Replayed letters are gone: a second replay delivers nothing.
    let (code, out) = run(
        &ctx,
        url,
        &["dlq", "replay", "--consumer", "mailer", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "[]");
    assert!(mailer.delivered.lock().unwrap().values().all(|n| *n == 1));
    // A letter whose consumer the application lacks is not found.
    let (code, _) = run(&ctx, url, &["dlq", "replay", "--consumer", "other"]).await;
    assert_eq!(code, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_replay_delivers_each_letter_to_the_handler_once_sqlite() {
    let db = support::sqlite();
    replay_delivers_once(&db.url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_replay_delivers_each_letter_to_the_handler_once_postgres() {
    let Some(db) = support::postgres() else {
        return;
    };
    replay_delivers_once(&db.url).await;
}
