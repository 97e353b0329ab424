//! The quickstart: an order module on the embedded default store.
//!
//! `cargo run -p orchestrix-quickstart` (optionally `-- sqlite://other.db` or `-- memory://`;
//! `-- --help` for help).

use clap::Parser;
use orchestrix::{Aggregate, Application, ApplicationBuilder, Command, Event, Module};
use serde::{Deserialize, Serialize};

// ---- the order module: about 80 lines of user code ----

// Names as in the original framework's order example: `OrderCreated` is the event type.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.orders")]
enum OrderEvent {
    OrderCreated {
        customer_name: String,
        total_cents: u64,
    },
    OrderPaid,
    OrderCancelled {
        reason: String,
    },
}

#[allow(clippy::enum_variant_names)]
#[derive(Debug, Command)]
#[command(id = order_id)]
enum OrderCommand {
    CreateOrder {
        order_id: String,
        customer_name: String,
        total_cents: u64,
    },
    PayOrder {
        order_id: String,
    },
    CancelOrder {
        order_id: String,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order already exists")]
    AlreadyExists,
    #[error("order does not exist")]
    Missing,
    #[error("order is {0:?}")]
    WrongStatus(Status),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
enum Status {
    #[default]
    New,
    Pending,
    Paid,
    Cancelled,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    status: Status,
    total_cents: u64,
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderCommand::*;
        match (command, self.status) {
            (
                CreateOrder {
                    customer_name,
                    total_cents,
                    ..
                },
                Status::New,
            ) => Ok(vec![OrderEvent::OrderCreated {
                customer_name: customer_name.clone(),
                total_cents: *total_cents,
            }]),
            (CreateOrder { .. }, _) => Err(OrderError::AlreadyExists),
            (_, Status::New) => Err(OrderError::Missing),
            (PayOrder { .. }, Status::Pending) => Ok(vec![OrderEvent::OrderPaid]),
            (CancelOrder { reason, .. }, Status::Pending) => Ok(vec![OrderEvent::OrderCancelled {
                reason: reason.clone(),
            }]),
            (_, status) => Err(OrderError::WrongStatus(status)),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderCreated { total_cents, .. } => {
                (self.status, self.total_cents) = (Status::Pending, *total_cents)
            }
            OrderEvent::OrderPaid => self.status = Status::Paid,
            OrderEvent::OrderCancelled { .. } => self.status = Status::Cancelled,
        }
    }
}

struct OrderModule;

impl Module for OrderModule {
    fn name(&self) -> &str {
        "orders"
    }

    fn register(&self, app: ApplicationBuilder) -> ApplicationBuilder {
        app.aggregate::<Order>()
    }
}

/// The Orchestrix quickstart: an order module, a few commands, and the
/// stored events.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where events are stored: `sqlite://PATH` (embedded file), `memory://`,
    /// or `postgres://...`.
    #[arg(default_value = "sqlite://quickstart.db")]
    store: String,
}

/// One line per order: `ORD-1: Paid, 14999 cents, revision 1`.
fn describe_order(id: &str, order: &Order, revision: Option<u64>) -> String {
    let revision = revision.map_or_else(|| "none (no events)".to_owned(), |r| r.to_string());
    format!(
        "{id}: {:?}, {} cents, revision {revision}",
        order.status, order.total_cents
    )
}

/// One line per stored event: revision, type, and the data when there is any.
fn describe_event(revision: u64, event_type: &str, data: &serde_json::Value) -> String {
    match data {
        serde_json::Value::Null => format!("  {revision} {event_type}"),
        data => format!("  {revision} {event_type} {data}"),
    }
}

// ---- wiring and a walk-through ----

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { store: url } = Args::parse();
    let store = orchestrix_backends::open_store(&url).await?;
    let app = Application::builder(store).module(OrderModule).build()?;

    // A fresh order id per run, so the walk-through works on an existing file too.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let (first, second) = (format!("ORD-{run}-1"), format!("ORD-{run}-2"));
    let create = |order_id: &str, customer_name: &str, total_cents| OrderCommand::CreateOrder {
        order_id: order_id.to_owned(),
        customer_name: customer_name.to_owned(),
        total_cents,
    };

    app.execute(create(&first, "Alice", 14_999)).await?;
    app.execute(OrderCommand::PayOrder {
        order_id: first.clone(),
    })
    .await?;
    app.execute(create(&second, "Bob", 2_500)).await?;
    app.execute(OrderCommand::CancelOrder {
        order_id: second.clone(),
        reason: "changed mind".into(),
    })
    .await?;
    let refused = app
        .execute(OrderCommand::PayOrder {
            order_id: second.clone(),
        })
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("paying a cancelled order was accepted"))?;

    println!("store: {}", orchestrix::url::redact(&url));
    for id in [&first, &second] {
        let order = app.load::<Order>(id).await?;
        println!("{}", describe_order(id, &order.state, order.revision));
    }
    println!("paying a cancelled order is refused: {refused}");
    for event in app
        .store()
        .read_stream_forward(&orchestrix::StreamId::new("order", &first)?, 0, 10)
        .await?
    {
        let ce = orchestrix::CloudEvent::from_recorded(&event)?;
        println!(
            "{}",
            describe_event(event.revision, ce.ty(), &ce.to_json()["data"])
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--help` prints help; it used to be taken for a store URL.
    #[test]
    fn help_is_help_and_the_store_is_positional() {
        let err = Args::try_parse_from(["orchestrix-quickstart", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(err.to_string().contains("Usage"), "{err}");
        let args = Args::try_parse_from(["orchestrix-quickstart"]).unwrap();
        assert_eq!(args.store, "sqlite://quickstart.db");
        let args = Args::try_parse_from(["orchestrix-quickstart", "memory://"]).unwrap();
        assert_eq!(args.store, "memory://");
        assert!(Args::try_parse_from(["orchestrix-quickstart", "--store-url", "x"]).is_err());
    }

    /// Revisions print as numbers and events without data print no `null`
    /// (it used to print `revision Some(1)` and `null`).
    #[test]
    fn output_is_readable() {
        let order = Order {
            status: Status::Paid,
            total_cents: 14_999,
        };
        assert_eq!(
            describe_order("ORD-1", &order, Some(1)),
            "ORD-1: Paid, 14999 cents, revision 1"
        );
        assert!(!describe_order("ORD-1", &order, None).contains("None"));
        let paid = describe_event(1, "com.acme.orders.OrderPaid", &serde_json::Value::Null);
        assert_eq!(paid, "  1 com.acme.orders.OrderPaid");
        let created = describe_event(
            0,
            "com.acme.orders.OrderCreated",
            &serde_json::json!({"total_cents": 1}),
        );
        assert_eq!(
            created,
            r#"  0 com.acme.orders.OrderCreated {"total_cents":1}"#
        );
    }
}
