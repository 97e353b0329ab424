//! Shutdown of a worker whose group is still joining (issue 12).
//!
//! The broker answers a group member's requests on its coordinator
//! connection in order. While it holds the member's JoinGroup (a rebalance
//! that waits for another member to rejoin), the LeaveGroup that closing the
//! consumer sends queues behind it; librdkafka's close waited 5 s for it per
//! worker, so a process with two groups needed ~10.4 s to stop. Now
//! `ConsumerWorker::shutdown` waits for the commit and the leave at most
//! `LEAVE_WAIT` after its handlers drained.
//!
//! Asserted: shutdown returns within a bound for a hang (4 s),
//! whether the broker holds the join or the join is merely in flight; a
//! worker stopped right after its start leaves the group, so the next member
//! gets its partitions long before a member left behind would expire; a
//! member whose join the broker held (it cannot leave) no longer blocks the
//! group once its session timeout passes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{kafka_brokers, test_config, unique};
use orchestrix::RecordedEvent;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use orchestrix_kafka::{ConsumerWorker, KafkaConfig, ensure_topic};

/// What a hang is: above the ~2 s measured with a held join, below the 5 s
/// librdkafka's close waited for the LeaveGroup before.
const HANG: Duration = Duration::from_secs(4);
const ROUNDS: usize = 3;

#[derive(Debug)]
struct Idle;

#[async_trait]
impl EventHandler for Idle {
    fn name(&self) -> &str {
        "idle"
    }

    async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        Ok(())
    }
}

async fn start(config: &KafkaConfig, topic: &str, group: &str) -> ConsumerWorker {
    ConsumerWorker::builder(config.clone())
        .topic(topic)
        .group_id(group)
        .start(Arc::new(Idle))
        .await
        .expect("worker starts")
}

/// The group's state as the broker tells it (`PreparingRebalance`, ...).
fn group_state(brokers: &str, group: &str) -> Option<String> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .ok()?;
    let list = client
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .ok()?;
    list.groups().first().map(|g| g.state().to_owned())
}

async fn wait_group_state(brokers: &str, group: &str, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (b, g) = (brokers.to_owned(), group.to_owned());
        let state = tokio::task::spawn_blocking(move || group_state(&b, &g))
            .await
            .expect("group state");
        if state.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} not {want} within {limit:?} (now {state:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn timed_shutdown(worker: ConsumerWorker, what: &str) -> Duration {
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), worker.shutdown())
        .await
        .unwrap_or_else(|_| panic!("{what}: shutdown did not return at all"))
        .unwrap_or_else(|e| panic!("{what}: shutdown failed: {e}"));
    let took = began.elapsed();
    println!("{what}: shutdown took {took:?}");
    assert!(took < HANG, "{what}: shutdown took {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_right_after_start_leaves_the_group_for_the_next_member() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let mut config = test_config(&brokers);
    // A member left behind would block the next join for this long.
    config.consumer.session_timeout_ms = 30_000;
    let topic = unique("joining");
    ensure_topic(&config, &topic, 3).await.expect("topic");
    let group = unique("g");
    let live = start(&config, &topic, &group).await;
    live.wait_for_assignment(Duration::from_secs(30))
        .await
        .expect("first member assigned");
    for round in 0..ROUNDS {
        // Stopped while its JoinGroup (and the live member's rejoin) is in
        // flight.
        let joining = start(&config, &topic, &group).await;
        timed_shutdown(joining, &format!("round {round}")).await;
    }
    let began = Instant::now();
    let next = start(&config, &topic, &group).await;
    next.wait_for_assignment(Duration::from_secs(10))
        .await
        .expect("the next member gets partitions long before a left-behind member would expire");
    println!("next member assigned after {:?}", began.elapsed());
    timed_shutdown(next, "next member").await;
    timed_shutdown(live, "first member").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_while_the_broker_holds_the_join_is_bounded() {
    let Some(brokers) = kafka_brokers() else {
        return;
    };
    let mut config = test_config(&brokers);
    config.consumer.session_timeout_ms = 10_000;
    let topic = unique("held");
    ensure_topic(&config, &topic, 3).await.expect("topic");
    let group = unique("g");
    // A member that joined and then stopped polling: the broker waits up to
    // its rebalance timeout (max.poll.interval.ms) for it to rejoin, holding
    // every other member's JoinGroup meanwhile.
    let stuck: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "60000")
        .set("max.poll.interval.ms", "60000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .expect("stuck member");
    stuck.subscribe(&[topic.as_str()]).expect("subscribe");
    let stuck = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while stuck.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
            assert!(
                Instant::now() < deadline,
                "the stuck member got no partitions"
            );
            let _ = stuck.poll(Duration::from_millis(100));
        }
        stuck
    })
    .await
    .expect("stuck member assigned");
    let mut took = Vec::new();
    for round in 0..ROUNDS {
        let joining = start(&config, &topic, &group).await;
        wait_group_state(
            &brokers,
            &group,
            "PreparingRebalance",
            Duration::from_secs(20),
        )
        .await;
        took.push(timed_shutdown(joining, &format!("held round {round}")).await);
    }
    // Released: the stuck member leaves. The members whose join the broker
    // held could not leave; the group is usable again once their session
    // timeout passes (not forever blocked).
    tokio::task::spawn_blocking(move || drop(stuck))
        .await
        .expect("stuck member closed");
    let began = Instant::now();
    let next = start(&config, &topic, &group).await;
    next.wait_for_assignment(Duration::from_secs(45))
        .await
        .expect("the group recovers after the held members' session timeout");
    println!(
        "held shutdowns {took:?}; next member assigned after {:?}",
        began.elapsed()
    );
    timed_shutdown(next, "next member").await;
}
