//! NATS JetStream passes the bus conformance suite
//! (`orchestrix_testkit::bus`) against the server of `ORCHESTRIX_NATS_URL`.

mod common;

use std::sync::Arc;

use futures::future::BoxFuture;
use orchestrix::bus::Bus;
use orchestrix_nats::NatsBus;
use orchestrix_testkit::bus::BusFactory;
use orchestrix_testkit::services::{Service, require};

struct Nats;

impl BusFactory for Nats {
    fn bus<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Arc<dyn Bus>> {
        Box::pin(async move {
            let mut config = common::config(4);
            config.stream.name = format!("ORX_{}", app.to_ascii_uppercase());
            config.stream.subject_prefix = format!("it.{app}.events");
            config.leases.bucket = format!("{app}_leases");
            Arc::new(NatsBus::connect(config).await.expect("nats bus")) as Arc<dyn Bus>
        })
    }
}

async fn nats() -> Option<Arc<dyn BusFactory>> {
    require(Service::Nats)?;
    Some(Arc::new(Nats))
}

orchestrix_testkit::bus_conformance!(nats);
