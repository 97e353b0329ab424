//! `#[derive(Command)]`: a rejected command is reported under its variant's
//! name (it used to read "command `OrderCommand` rejected").

use orchestrix::{Aggregate, Application, Command, Error, Event, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.orders")]
enum OrderEvent {
    Created,
    Paid,
}

#[derive(Debug, Command)]
#[command(id = order_id)]
enum OrderCommand {
    CreateOrder { order_id: String },
    PayOrder { order_id: String },
}

#[derive(Debug, Command)]
struct Archive(String);

#[derive(Debug, thiserror::Error)]
#[error("the order is already paid")]
struct AlreadyPaid;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    paid: bool,
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = AlreadyPaid;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, AlreadyPaid> {
        match command {
            OrderCommand::CreateOrder { .. } => Ok(vec![OrderEvent::Created]),
            OrderCommand::PayOrder { .. } if self.paid => Err(AlreadyPaid),
            OrderCommand::PayOrder { .. } => Ok(vec![OrderEvent::Paid]),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        self.paid |= matches!(event, OrderEvent::Paid);
    }
}

#[tokio::test]
async fn a_rejected_command_is_named_after_its_variant() {
    let app = Application::builder(Store::memory())
        .aggregate::<Order>()
        .build()
        .unwrap();
    let pay = || OrderCommand::PayOrder {
        order_id: "ORD-1".into(),
    };
    app.execute(OrderCommand::CreateOrder {
        order_id: "ORD-1".into(),
    })
    .await
    .unwrap();
    app.execute(pay()).await.unwrap();
    let err = app.execute(pay()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { command, .. } if command == "PayOrder"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "command `PayOrder` rejected: the order is already paid"
    );
}

#[test]
fn derived_ids_and_names() {
    let c = OrderCommand::CreateOrder {
        order_id: "o-7".into(),
    };
    assert_eq!(
        (c.aggregate_id().as_str(), c.command_type()),
        ("o-7", "CreateOrder")
    );
    let a = Archive("o-8".into());
    assert_eq!(
        (a.aggregate_id().as_str(), a.command_type()),
        ("o-8", "Archive")
    );
}
