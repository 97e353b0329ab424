//! Kafka passes the bus conformance suite (`orchestrix_testkit::bus`)
//! against the broker of `ORCHESTRIX_KAFKA_BROKERS`.

mod common;

use std::sync::Arc;

use futures::future::BoxFuture;
use orchestrix::bus::Bus;
use orchestrix_kafka::KafkaBus;
use orchestrix_testkit::bus::BusFactory;

struct Kafka {
    brokers: String,
}

impl BusFactory for Kafka {
    fn bus<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Arc<dyn Bus>> {
        Box::pin(async move {
            let mut config = common::test_config(&self.brokers);
            config.topics.prefix = format!("it.{app}");
            config.topics.partitions = 4;
            Arc::new(KafkaBus::new(config).expect("kafka bus")) as Arc<dyn Bus>
        })
    }
}

async fn kafka() -> Option<Arc<dyn BusFactory>> {
    let brokers = common::kafka_brokers()?;
    Some(Arc::new(Kafka { brokers }))
}

orchestrix_testkit::bus_conformance!(kafka);
