//! The quickstart: an order module on the embedded default store.
//!
//! `cargo run -p orchestrix-quickstart` (optionally `-- sqlite://other.db` or `-- memory://`).

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
#[derive(Debug)]
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

impl Command for OrderCommand {
    fn aggregate_id(&self) -> String {
        match self {
            Self::CreateOrder { order_id, .. }
            | Self::PayOrder { order_id }
            | Self::CancelOrder { order_id, .. } => order_id.clone(),
        }
    }
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

    fn register(&self, app: &mut ApplicationBuilder) -> orchestrix::Result<()> {
        app.aggregate::<Order>()?;
        Ok(())
    }
}

// ---- wiring and a walk-through ----

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://quickstart.db".to_owned());
    let store = orchestrix_backends::open_store(&url).await?;
    let app = Application::builder(store).module(OrderModule)?.build();

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
        .unwrap_err();

    println!("store: {url}");
    for id in [&first, &second] {
        let order = app.load::<Order>(id).await?;
        println!(
            "{id}: {:?}, {} cents, revision {:?}",
            order.state.status, order.state.total_cents, order.revision
        );
    }
    println!("paying a cancelled order is refused: {refused}");
    for event in app
        .store()
        .read_stream_forward(&orchestrix::StreamId::new("order", &first)?, 0, 10)
        .await?
    {
        let ce = orchestrix::CloudEvent::from_recorded(&event)?;
        println!("  {} {} {}", event.revision, ce.ty(), ce.to_json()["data"]);
    }
    Ok(())
}
