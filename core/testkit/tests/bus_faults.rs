//! The bus suite is not vacuous: buses with one deliberate defect each fail
//! the case that covers it.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrix::bus::{Bus, MemoryBus, Subscribe, Subscription};
use orchestrix::dead_letter::DeadLetterQueue;
use orchestrix::relay::Publisher;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::{RecordedEvent, Result};
use orchestrix_testkit::__run_case;
use orchestrix_testkit::bus::{self, BusFactory};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No defect.
    None,
    /// The broker stores what it is given to publish in reverse.
    Reorder,
    /// Every message reaches the handler twice (a transport that bypasses
    /// the handler driver's duplicate check).
    DeliverTwice,
    /// Every group member gets every partition: a stream is handled by two
    /// members at once.
    EveryoneOwnsAll,
}

#[derive(Debug, Clone)]
struct Faulty {
    inner: MemoryBus,
    fault: Fault,
}

#[async_trait]
impl Publisher for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }

    async fn publish(&self, events: &[RecordedEvent]) -> Result<()> {
        let mut events = events.to_vec();
        if self.fault == Fault::Reorder {
            events.reverse();
        }
        self.inner.publisher().publish(&events).await
    }
}

#[async_trait]
impl Bus for Faulty {
    fn kind(&self) -> &'static str {
        "faulty"
    }
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }
    fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(self.clone())
    }
    async fn subscribe(&self, options: Subscribe) -> Result<Box<dyn Subscription>> {
        if self.fault == Fault::EveryoneOwnsAll {
            // Each member in a group of its own: all partitions each.
            let mut own = options.clone();
            own.group = format!("{}-{}", options.group, uuid::Uuid::new_v4().simple());
            return self.inner.subscribe(own).await;
        }
        if self.fault == Fault::DeliverTwice {
            let mut twice = options.clone();
            twice.handler = Arc::new(Twice(options.handler));
            return self.inner.subscribe(twice).await;
        }
        self.inner.subscribe(options).await
    }
    fn dead_letters(&self, group: &str) -> Arc<dyn DeadLetterQueue> {
        self.inner.dead_letters(group)
    }
}

#[derive(Debug)]
struct Twice(Arc<dyn EventHandler>);

#[async_trait]
impl EventHandler for Twice {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> Result<()> {
        self.0.handle(event, delivery).await?;
        self.0.handle(event, delivery).await
    }
}

struct Factory {
    broker: MemoryBus,
    fault: Fault,
}

impl BusFactory for Factory {
    fn bus<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Arc<dyn Bus>> {
        Box::pin(async move {
            Arc::new(Faulty {
                inner: self.broker.for_app(app),
                fault: self.fault,
            }) as Arc<dyn Bus>
        })
    }
}

fn factory(fault: Fault) -> Arc<dyn BusFactory> {
    Arc::new(Factory {
        broker: MemoryBus::new("unused", 4),
        fault,
    })
}

#[test]
#[should_panic(expected = "per-stream order broken")]
fn a_bus_that_reorders_is_caught() {
    __run_case(bus::per_stream_order_under_parallel_partitions(factory(
        Fault::Reorder,
    )));
}

#[test]
#[should_panic(expected = "published twice was handled 2 times")]
fn a_bus_that_delivers_twice_is_caught() {
    __run_case(bus::duplicate_publish_is_dropped(factory(
        Fault::DeliverTwice,
    )));
}

#[test]
#[should_panic(expected = "an event was handled by two members")]
fn a_bus_that_gives_every_member_every_partition_is_caught() {
    __run_case(bus::rebalance_when_members_join_and_leave(factory(
        Fault::EveryoneOwnsAll,
    )));
}

/// The faultless wrapper passes, so the faults above are what the cases
/// catch.
#[test]
fn a_faultless_wrapper_passes() {
    __run_case(bus::per_stream_order_under_parallel_partitions(factory(
        Fault::None,
    )));
    __run_case(bus::duplicate_publish_is_dropped(factory(Fault::None)));
    __run_case(bus::rebalance_when_members_join_and_leave(factory(
        Fault::None,
    )));
}
