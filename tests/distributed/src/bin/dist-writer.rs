//! Appends `COUNT` events to `STREAMS` streams of the Scylla store at
//! `STORE_URL`, one append at a time, and exits 0. Killed midway, it leaves
//! whatever it had in flight to the store's recovery.

use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, Store, StreamId};
use orchestrix_distributed_tests::{env, init_logging};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_logging();
    let url = env("STORE_URL")?;
    let writer = env("WRITER")?;
    let count: u64 = env("COUNT")?.parse()?;
    let streams: u64 = env("STREAMS")?.parse()?;
    let store = Store::new(
        orchestrix_scylla::ScyllaStore::connect_url(&url)
            .await?
            .backend(),
    );
    for i in 0..count {
        let stream = StreamId::new("account", &format!("{writer}x{}", i % streams))?;
        let amount = (i * 7) % 100 + 1;
        let event = EventRecord::json("com.acme.bank.Deposited", 1, &json!({ "amount": amount }));
        store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await?;
        if (i + 1) % 100 == 0 {
            tracing::info!(writer, appended = i + 1, "progress");
        }
    }
    tracing::info!(writer, count, "done");
    Ok(())
}
