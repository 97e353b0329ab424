//! Publisher tests against a live NATS server: CloudEvents on the wire,
//! dedupe, relay restarts, stream setup from config.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use orchestrix::relay::{Relay, RelayConfig};
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, Store, StreamId};
use orchestrix_nats::{NatsPublisher, Retention, partition_for};

#[tokio::test]
async fn nats_publisher_writes_cloudevents_and_dedupes_a_republished_event() {
    if !common::nats_available("nats_publisher_dedupes").await {
        return;
    }
    let config = common::config(4);
    let publisher = NatsPublisher::connect(config.clone()).await.unwrap();
    let first = common::recorded("order-1", 0, 1, "com.acme.Placed");
    let second = common::recorded("order-1", 1, 2, "com.acme.Paid");

    let report = publisher
        .publish_events(std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!((report.stored, report.duplicates), (1, 0));
    let again = publisher
        .publish_events(std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(
        (again.stored, again.duplicates),
        (0, 1),
        "a republished event is a duplicate"
    );
    assert_eq!(
        again.last_sequence, report.last_sequence,
        "the duplicate points at the stored message"
    );
    let both = publisher
        .publish_events(&[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!((both.stored, both.duplicates), (1, 1));

    let js = common::jetstream(&config).await;
    let messages = common::read_stream(&js, &config.stream.name).await;
    assert_eq!(messages.len(), 2, "exactly one message per event");
    let partition = partition_for("order-1", 4);
    for (m, e) in messages.iter().zip([&first, &second]) {
        assert_eq!(
            m.subject.as_str(),
            format!("{}.{partition}", config.stream.subject_prefix)
        );
        assert_eq!(
            common::header(m, "Nats-Msg-Id").as_deref(),
            Some(e.id().to_string().as_str())
        );
        assert_eq!(
            common::header(m, "ce-id").as_deref(),
            Some(e.id().to_string().as_str())
        );
        assert_eq!(common::header(m, "ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(
            common::header(m, "ce-type").as_deref(),
            Some(e.event_type())
        );
        assert_eq!(common::header(m, "ce-subject").as_deref(), Some("order-1"));
        assert_eq!(
            common::header(m, "ce-partitionkey").as_deref(),
            Some("order-1")
        );
        assert_eq!(
            common::header(m, "ce-streamrevision"),
            Some(e.revision.to_string())
        );
        assert_eq!(
            common::header(m, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(m.payload, e.record.data);
    }
    common::cleanup(&config).await;
}

#[tokio::test]
async fn nats_relay_restart_loses_nothing_and_duplicates_nothing() {
    if !common::nats_available("nats_relay_restart").await {
        return;
    }
    let config = common::config(6);
    let store = Store::memory().with_poll_interval(Duration::from_millis(20));
    let publisher = Arc::new(NatsPublisher::connect(config.clone()).await.unwrap());
    let relay_config = || RelayConfig {
        batch: 100,
        ..RelayConfig::default()
    };
    let streams: Vec<StreamId> = (0..50)
        .map(|i| StreamId::parse(format!("account-{i}")).unwrap())
        .collect();
    let append_round = |store: Store, streams: Vec<StreamId>, rounds: std::ops::Range<u64>| async move {
        for round in rounds {
            for s in &streams {
                let e = EventRecord::json(
                    "com.acme.Deposited",
                    1,
                    &serde_json::json!({ "round": round }),
                );
                store
                    .append(s, ExpectedRevision::Any, vec![e])
                    .await
                    .unwrap();
            }
        }
    };

    // First run: publish while events are appended, stop mid-way.
    let relay = Relay::start(store.clone(), publisher.clone(), relay_config())
        .await
        .unwrap();
    append_round(store.clone(), streams.clone(), 0..30).await;
    tokio::time::timeout(Duration::from_secs(30), relay.wait_for(700))
        .await
        .expect("relay progress")
        .unwrap();
    relay.shutdown().await.unwrap();
    let saved = store
        .backend()
        .checkpoints
        .load_checkpoint("relay:nats")
        .await
        .unwrap()
        .unwrap();
    assert!(saved >= 700);
    // A crash after publishing but before the checkpoint was saved: the next
    // run republishes the last 300 events.
    store
        .backend()
        .checkpoints
        .save_checkpoint("relay:nats", saved - 300)
        .await
        .unwrap();

    // More events while the relay is down, then restart.
    append_round(store.clone(), streams.clone(), 30..60).await;
    let head = store.head_position().await.unwrap();
    assert_eq!(head, 3_000);
    let relay = Relay::start(store.clone(), publisher.clone(), relay_config())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), relay.wait_for(head))
        .await
        .expect("relay catches up")
        .unwrap();
    relay.shutdown().await.unwrap();

    let js = common::jetstream(&config).await;
    let messages = common::read_stream(&js, &config.stream.name).await;
    assert_eq!(
        messages.len(),
        3_000,
        "every event once, the 300 republished ones deduplicated"
    );
    let ids: HashSet<String> = messages
        .iter()
        .map(|m| common::header(m, "ce-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 3_000, "no event twice");
    let stored = store
        .read_all(0, 10_000, &orchestrix::Filter::all())
        .await
        .unwrap();
    assert!(
        stored.iter().all(|e| ids.contains(&e.id().to_string())),
        "no event missing"
    );
    // Per-stream order in JetStream: revisions 0, 1, 2, ... in sequence order.
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for m in &messages {
        let stream = common::header(m, "ce-subject").unwrap();
        let revision: u64 = common::header(m, "ce-streamrevision")
            .unwrap()
            .parse()
            .unwrap();
        let expected = next.entry(stream.clone()).or_insert(0);
        assert_eq!(
            revision, *expected,
            "stream {stream} out of order in JetStream"
        );
        *expected += 1;
        assert_eq!(
            m.subject.as_str(),
            config.partition_subject(partition_for(&stream, 6))
        );
    }
    common::cleanup(&config).await;
}

#[tokio::test]
async fn nats_streams_are_created_and_updated_from_config() {
    if !common::nats_available("nats_streams_from_config").await {
        return;
    }
    let mut config = common::config(3);
    let js = common::jetstream(&config).await;
    orchestrix_nats::setup::ensure_streams(&js, &config)
        .await
        .unwrap();
    let info = js
        .get_stream(&config.stream.name)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(
        info.config.subjects,
        vec![format!("{}.*", config.stream.subject_prefix)]
    );
    assert_eq!(info.config.max_age, Duration::from_secs(3_600));
    assert!(
        js.get_stream(config.dead_letter_stream()).await.is_ok(),
        "dead-letter stream created"
    );

    // Changed limits are applied on the next start.
    config.stream.max_age_secs = 7_200;
    config.stream.duplicate_window_secs = 60;
    NatsPublisher::connect(config.clone()).await.unwrap();
    let info = js
        .get_stream(&config.stream.name)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.max_age, Duration::from_secs(7_200));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(60));

    // A change the server cannot make in place is a clear error.
    config.stream.retention = Retention::Interest;
    let err = NatsPublisher::connect(config.clone()).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("retention"), "{err}");
    common::cleanup(&config).await;
}
