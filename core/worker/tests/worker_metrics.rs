//! `/metrics` while work flows, parsed with a Prometheus text parser:
//! counters and histograms of every layer, and consumer lag that grows
//! while the consumer is paused and returns to zero after; `/healthz` and
//! `/readyz` through a worker's life.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use orchestrix::Store;
use orchestrix::runtime::ConsumerConfig;
use orchestrix_worker::{Worker, WorkerConfig};
use prometheus_parse::{Sample, Scrape, Value};
use support::{Ledger, http_get};

async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn number(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Histogram(buckets)) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        other => panic!("{name}{labels:?} is not a histogram: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_while_work_flows_and_lag_while_paused() {
    let mut config = WorkerConfig::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let ledger = Ledger {
        path: None,
        delay: Duration::from_millis(1),
    };
    let app = support::app(
        Store::memory(),
        ledger,
        ConsumerConfig::default().partitions(2),
    );
    let worker = Worker::new(app.clone())
        .config(config)
        .start()
        .await
        .unwrap();
    let addr = worker.local_addr();
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[+] consumer `ledger` running"), "{body}");

    // Scrape while commands flow.
    let flow = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                app.execute(support::Add(format!("s{}", i % 10)))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut scrapes = 0;
    while !flow.is_finished() {
        let s = scrape(addr).await;
        scrapes += 1;
        if let Some(sample) = find(&s, "orchestrix_commands_total", &[("command", "Add")]) {
            assert!(matches!(sample.value, Value::Counter(v) if v > 0.0));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flow.await.unwrap();
    assert!(scrapes >= 2, "scraped while work flowed");
    let monitor = worker
        .monitors()
        .into_iter()
        .find(|m| m.name() == "ledger")
        .unwrap();
    monitor.catch_up().await.unwrap();

    let s = scrape(addr).await;
    let add = [
        ("command", "Add"),
        ("aggregate", "tally"),
        ("outcome", "ok"),
    ];
    assert_eq!(number(&s, "orchestrix_commands_total", &add), 150.0);
    assert_eq!(
        histogram_count(
            &s,
            "orchestrix_command_duration_seconds",
            &[("command", "Add")]
        ),
        150.0
    );
    assert_eq!(
        number(
            &s,
            "orchestrix_appends_total",
            &[("backend", "memory"), ("outcome", "ok")]
        ),
        150.0
    );
    assert_eq!(
        number(
            &s,
            "orchestrix_events_appended_total",
            &[("backend", "memory")]
        ),
        150.0
    );
    assert_eq!(
        histogram_count(
            &s,
            "orchestrix_append_duration_seconds",
            &[("backend", "memory")]
        ),
        150.0
    );
    assert_eq!(
        number(
            &s,
            "orchestrix_events_consumed_total",
            &[("consumer", "ledger"), ("outcome", "ok")]
        ),
        150.0
    );
    assert_eq!(
        histogram_count(
            &s,
            "orchestrix_handler_duration_seconds",
            &[("consumer", "ledger")]
        ),
        150.0
    );
    let lag = [("consumer", "ledger"), ("partition", "all")];
    assert_eq!(number(&s, "orchestrix_consumer_lag_events", &lag), 0.0);
    assert_eq!(number(&s, "orchestrix_consumer_lag_seconds", &lag), 0.0);
    let help: HashMap<_, _> = s
        .docs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert!(
        help.get("orchestrix_consumer_lag_events")
            .is_some_and(|h| h.contains("per partition")),
        "{help:?}"
    );

    // Paused: lag grows, in events and in seconds.
    monitor.pause();
    support::add(&app, 25, 5).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = scrape(addr).await;
    let events = number(&s, "orchestrix_consumer_lag_events", &lag);
    assert!(events >= 25.0, "lag while paused: {events}");
    let seconds = number(&s, "orchestrix_consumer_lag_seconds", &lag);
    assert!(seconds >= 1.0, "lag in seconds while paused: {seconds}");

    // Resumed: back to zero.
    monitor.resume();
    monitor.catch_up().await.unwrap();
    let s = scrape(addr).await;
    assert_eq!(number(&s, "orchestrix_consumer_lag_events", &lag), 0.0);
    assert_eq!(number(&s, "orchestrix_consumer_lag_seconds", &lag), 0.0);
    assert_eq!(
        number(
            &s,
            "orchestrix_events_consumed_total",
            &[("consumer", "ledger"), ("outcome", "ok")]
        ),
        175.0
    );

    worker.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the endpoint stopped"
    );
}
