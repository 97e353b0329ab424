//! `/readyz` of a worker consuming from Kafka while its broker (this case's
//! own) is SIGKILLed and restarted (issue 18: it answered 200 throughout).
//! Checked: ready before, unready (503, "kafka disconnected") within 30 s
//! of the kill, ready again after the broker's return. Measured: how long
//! each transition took.

use std::time::{Duration, Instant};

use orchestrix::Application;
use orchestrix_chaos::services::Kafka;
use orchestrix_chaos::workload::{Counter, Recorder};
use orchestrix_chaos::{http_get, missing, poll};
use orchestrix_worker::{Worker, WorkerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_readyz_follows_the_broker() -> anyhow::Result<()> {
    if !Kafka::available()
        && missing(
            "kafka_readyz_follows_the_broker",
            "no `java` to run Apache Kafka",
        )
    {
        return Ok(());
    }
    let mut kafka = Kafka::start().await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("readyz.db").display());
    let store = orchestrix_worker::open_store(&store_url).await?;
    let app = Application::builder(store)
        .aggregate::<Counter>()
        .handler(Recorder::new())
        .build()?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let mut config = WorkerConfig::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.bus.url = format!(
        "kafka://{}?prefix=readyz-{run}&partitions=2&session.timeout.ms=6000&heartbeat.interval.ms=1000",
        kafka.brokers()
    );
    let worker = Worker::new(app).config(config).start().await?;
    let port = worker.local_addr().port();
    let status = |want: u16| {
        move || async move { http_get(port, "/readyz").await.filter(|(s, _)| *s == want) }
    };

    poll(
        "/readyz ready with the broker up",
        Duration::from_secs(60),
        Duration::from_millis(50),
        status(200),
    )
    .await?;

    kafka.kill()?;
    let killed = Instant::now();
    let (_, body) = poll(
        "/readyz unready after the broker's SIGKILL",
        Duration::from_secs(30),
        Duration::from_millis(50),
        status(503),
    )
    .await?;
    let unready_after = killed.elapsed();
    assert!(body.contains("[-] kafka disconnected"), "{body}");
    // Stays unready while the broker is away.
    let mut samples = Vec::new();
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(3) {
        if let Some((s, _)) = http_get(port, "/readyz").await {
            samples.push(s);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(samples.iter().all(|s| *s == 503), "{samples:?}");

    kafka.restart().await?;
    let back = Instant::now();
    poll(
        "/readyz ready again after the broker's return",
        Duration::from_secs(120),
        Duration::from_millis(50),
        status(200),
    )
    .await?;
    let ready_after = back.elapsed();
    println!(
        "CHAOS kafka-readyz: unready {unready_after:?} after the SIGKILL, 503 in {}/{} samples while down, ready again {ready_after:?} after the broker was back (down {:?})",
        samples.len(),
        samples.len(),
        back.duration_since(killed),
    );
    worker.shutdown().await?;
    Ok(())
}
