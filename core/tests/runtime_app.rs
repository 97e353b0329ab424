//! Registration with the application and the runtime that starts it all.

mod runtime_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrix::runtime::{
    BackgroundTask, ConsumerConfig, Delivery, EventHandler, Projection, Runtime, Shutdown,
};
use orchestrix::{Application, ApplicationBuilder, Error, Module, RecordedEvent, Result, Store};
use runtime_support::{append, stream, within};
use serde_json::json;

#[derive(Debug, Default)]
struct Count {
    name: String,
    applied: AtomicU64,
}

#[async_trait]
impl Projection for Count {
    fn name(&self) -> &str {
        &self.name
    }
    async fn apply(&self, _: &RecordedEvent) -> Result<()> {
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn reset(&self) -> Result<()> {
        self.applied.store(0, Ordering::SeqCst);
        Ok(())
    }
}

/// A handler built from the application at start (as a saga would be).
#[derive(Debug)]
struct Notifier {
    modules: Vec<String>,
    seen: AtomicU64,
}

#[async_trait]
impl EventHandler for Notifier {
    fn name(&self) -> &str {
        "notifier"
    }
    async fn handle(&self, _: &RecordedEvent, delivery: &Delivery) -> Result<()> {
        assert!(delivery.partition < 2);
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Ticker {
    started: AtomicBool,
    stopped: AtomicBool,
}

#[async_trait]
impl BackgroundTask for Ticker {
    fn name(&self) -> &str {
        "ticker"
    }
    async fn run(&self, _app: Application, shutdown: Shutdown) -> Result<()> {
        self.started.store(true, Ordering::SeqCst);
        shutdown.triggered().await;
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }
}

struct Shop {
    count: Arc<Count>,
    ticker: Arc<Ticker>,
    notifier: Arc<Mutex<Option<Arc<Notifier>>>>,
}

impl Module for Shop {
    fn name(&self) -> &str {
        "shop"
    }

    fn register(&self, app: ApplicationBuilder) -> ApplicationBuilder {
        let slot = self.notifier.clone();
        app.projection_with(self.count.clone(), ConsumerConfig::default().partitions(4))
            .task(self.ticker.clone())
            .handler_with(
                ConsumerConfig::default().partitions(2),
                move |app: &Application| {
                    let notifier = Arc::new(Notifier {
                        modules: app.modules().to_vec(),
                        seen: AtomicU64::new(0),
                    });
                    *slot.lock().unwrap() = Some(notifier.clone());
                    Ok(notifier as Arc<dyn EventHandler>)
                },
            )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_register_projections_handlers_and_tasks_and_the_runtime_runs_them() {
    let count = Arc::new(Count {
        name: "count".into(),
        ..Default::default()
    });
    let ticker = Arc::new(Ticker::default());
    let notifier = Arc::new(Mutex::new(None));
    let app = Application::builder(Store::memory())
        .module(Shop {
            count: count.clone(),
            ticker: ticker.clone(),
            notifier: notifier.clone(),
        })
        .build()
        .unwrap();
    assert_eq!(
        app.registrations().names(),
        vec!["count".to_owned(), "ticker".to_owned()]
    );

    let running = Runtime::start(&app).await.unwrap();
    let notifier = notifier.lock().unwrap().clone().unwrap();
    assert_eq!(notifier.modules, vec!["shop".to_owned()]);
    let s = stream("order");
    for _ in 0..10 {
        append(app.store(), &s, "com.acme.Placed", json!({})).await;
    }
    let head = within("catch-up", running.catch_up()).await.unwrap();
    assert_eq!(head, 10);
    assert_eq!(count.applied.load(Ordering::SeqCst), 10);
    assert_eq!(notifier.seen.load(Ordering::SeqCst), 10);
    assert!(ticker.started.load(Ordering::SeqCst));
    assert!(
        running
            .monitor("notifier")
            .unwrap()
            .lag()
            .await
            .unwrap()
            .is_caught_up()
    );
    assert_eq!(running.monitors().len(), 2);

    // Registered projections can be rebuilt through the handle.
    let projection = running.projection("count").unwrap();
    within("rebuild", projection.rebuild()).await.unwrap();
    assert_eq!(count.applied.load(Ordering::SeqCst), 10);

    within("shutdown", running.shutdown()).await.unwrap();
    assert!(ticker.stopped.load(Ordering::SeqCst));
    let checkpoints = &app.store().backend().checkpoints;
    assert_eq!(
        checkpoints.load_checkpoint("count").await.unwrap(),
        Some(10)
    );
    assert_eq!(
        checkpoints.load_checkpoint("notifier").await.unwrap(),
        Some(10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_must_be_unique() {
    let count = Arc::new(Count {
        name: "dup".into(),
        ..Default::default()
    });
    let err = Application::builder(Store::memory())
        .projection(count.clone())
        .projection(count.clone())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(err.to_string().contains("dup"), "{err}");

    // Several errors are collected and returned together by `build`.
    let err = Application::builder(Store::memory())
        .projection(count.clone())
        .projection(count.clone())
        .task(Arc::new(Ticker::default()))
        .task(Arc::new(Ticker::default()))
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("2 registration errors"), "{text}");
    assert!(
        text.contains("`dup`") && text.contains("`ticker`"),
        "{text}"
    );

    // A factory-built handler is checked at start.
    let notifier = |_: &Application| {
        Ok(Arc::new(Notifier {
            modules: Vec::new(),
            seen: AtomicU64::new(0),
        }) as Arc<dyn EventHandler>)
    };
    let app = Application::builder(Store::memory())
        .projection(count.clone())
        .handler_with(ConsumerConfig::default(), notifier)
        .handler_with(ConsumerConfig::default(), notifier)
        .build()
        .unwrap();
    let err = Runtime::start(&app).await.unwrap_err();
    assert!(err.to_string().contains("notifier"), "{err}");

    // A factory registered under a name: the clash is found at build, the
    // catalog lists it, and a factory that builds another name fails at start.
    let err = Application::builder(Store::memory())
        .handler_factory(
            "notifier",
            orchestrix::store::Filter::all(),
            ConsumerConfig::default(),
            notifier,
        )
        .handler_factory(
            "notifier",
            orchestrix::store::Filter::all(),
            ConsumerConfig::default(),
            notifier,
        )
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`notifier`"), "{err}");
    let app = Application::builder(Store::memory())
        .handler_factory(
            "mailer",
            orchestrix::store::Filter::all().categories(["account"]),
            ConsumerConfig::default(),
            notifier,
        )
        .build()
        .unwrap();
    let catalog = orchestrix::catalog::Catalog::of(&app);
    assert_eq!(catalog.handlers.len(), 1);
    assert_eq!(catalog.handlers[0].name, "mailer");
    let err = Runtime::start(&app).await.unwrap_err();
    assert!(
        err.to_string().contains("`mailer`") && err.to_string().contains("`notifier`"),
        "{err}"
    );
    let err = Runtime::handlers(&app).unwrap_err();
    assert!(err.to_string().contains("`mailer`"), "{err}");

    // An application with nothing registered starts an empty runtime.
    let empty = Runtime::start(&Application::builder(Store::memory()).build().unwrap())
        .await
        .unwrap();
    assert!(empty.monitors().is_empty());
    empty.shutdown().await.unwrap();
}
