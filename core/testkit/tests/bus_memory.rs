//! The in-memory bus passes the bus conformance suite.

use std::sync::Arc;

use futures::future::BoxFuture;
use orchestrix::bus::{Bus, MemoryBus};
use orchestrix_testkit::bus::BusFactory;

struct Memory(MemoryBus);

impl BusFactory for Memory {
    fn bus<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Arc<dyn Bus>> {
        Box::pin(async move { Arc::new(self.0.for_app(app)) as Arc<dyn Bus> })
    }
}

async fn memory() -> Option<Arc<dyn BusFactory>> {
    Some(Arc::new(Memory(MemoryBus::new("unused", 4))))
}

orchestrix_testkit::bus_conformance!(memory);
