//! The order saga: charge the payment, then reserve the stock, then confirm.
//! A declined payment cancels the order; missing stock refunds the payment and
//! cancels the order.

use futures::future::BoxFuture;
use orchestrix::catalog::CommandSet;
use orchestrix::saga::{Saga, SagaCommand, SagaContext, SagaStep};
use orchestrix::store::Filter;
use orchestrix::{Application, CommandContext, CommandOutcome, Event, RecordedEvent, Result};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Cents, InventoryCommand, InventoryEvent, OrderCommand, OrderEvent, PaymentCommand, PaymentEvent,
};

/// The commands the order saga sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShopCommand {
    /// To an order.
    Order(OrderCommand),
    /// To a payment.
    Payment(PaymentCommand),
    /// To a product's stock.
    Inventory(InventoryCommand),
}

impl From<OrderCommand> for ShopCommand {
    fn from(c: OrderCommand) -> Self {
        Self::Order(c)
    }
}

impl From<PaymentCommand> for ShopCommand {
    fn from(c: PaymentCommand) -> Self {
        Self::Payment(c)
    }
}

impl From<InventoryCommand> for ShopCommand {
    fn from(c: InventoryCommand) -> Self {
        Self::Inventory(c)
    }
}

impl SagaCommand for ShopCommand {
    fn dispatch(
        self,
        app: &Application,
        context: CommandContext,
    ) -> BoxFuture<'static, Result<CommandOutcome>> {
        let app = app.clone();
        Box::pin(async move {
            match self {
                Self::Order(c) => app.execute_with(c, context).await,
                Self::Payment(c) => app.execute_with(c, context).await,
                Self::Inventory(c) => app.execute_with(c, context).await,
            }
        })
    }

    fn commands() -> Vec<CommandSet> {
        vec![
            CommandSet::of::<OrderCommand>().only(["Confirm", "Cancel"]),
            CommandSet::of::<PaymentCommand>().only(["Charge", "Refund"]),
            CommandSet::of::<InventoryCommand>().only(["Reserve", "Release"]),
        ]
    }
}

/// The saga's own record of an order's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.shop.ordersaga")]
pub enum OrderSagaEvent {
    /// The saga took the order on.
    Started {
        /// What.
        sku: String,
        /// How many.
        quantity: u32,
        /// The total.
        total: Cents,
    },
    /// The payment confirmed the charge.
    PaymentConfirmed,
    /// The stock confirmed the reservation.
    StockConfirmed,
}

/// How far an order got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Step {
    /// Not started.
    #[default]
    New,
    /// Charging the card.
    Paying,
    /// Reserving the stock.
    Reserving,
    /// Confirming the order.
    Confirming,
}

/// The order saga's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSagaState {
    /// Progress.
    pub step: Step,
    /// What.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// Fulfils an order; correlation id = order id.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderSaga;

impl Saga for OrderSaga {
    const NAME: &'static str = "order";
    type State = OrderSagaState;
    type Event = OrderSagaEvent;
    type Command = ShopCommand;

    fn filter(&self) -> Filter {
        Filter::all()
            .categories(["order", "payment", "inventory"])
            .event_types([
                "com.orchestrix.shop.order.Placed",
                "com.orchestrix.shop.payment.Charged",
                "com.orchestrix.shop.inventory.Reserved",
            ])
    }

    fn correlate(&self, event: &RecordedEvent) -> Option<String> {
        match event.stream_id.category() {
            // Payments share the order's id.
            "order" | "payment" => Some(event.stream_id.entity_id().to_owned()),
            "inventory" => match event.decode::<InventoryEvent>().ok()? {
                InventoryEvent::Reserved { order, .. } => Some(order),
                _ => None,
            },
            _ => None,
        }
    }

    fn react(
        &self,
        cx: &SagaContext<'_, OrderSagaState>,
        event: &RecordedEvent,
    ) -> Result<Vec<SagaStep<Self>>> {
        let order = cx.correlation.to_owned();
        let state = cx.state;
        Ok(match event.stream_id.category() {
            "order" => match event.decode::<OrderEvent>()? {
                OrderEvent::Placed {
                    sku,
                    quantity,
                    total,
                    card,
                    ..
                } if state.step == Step::New => vec![
                    SagaStep::record(OrderSagaEvent::Started {
                        sku,
                        quantity,
                        total,
                    }),
                    // Whatever fails later, the order ends cancelled.
                    SagaStep::compensation(OrderCommand::Cancel {
                        order: order.clone(),
                    }),
                    SagaStep::send_compensable(
                        PaymentCommand::Charge {
                            payment: order.clone(),
                            amount: total,
                            card,
                        },
                        PaymentCommand::Refund { payment: order },
                    ),
                ],
                _ => vec![],
            },
            "payment" => match event.decode::<PaymentEvent>()? {
                PaymentEvent::Charged { .. } if state.step == Step::Paying => vec![
                    SagaStep::record(OrderSagaEvent::PaymentConfirmed),
                    SagaStep::send_compensable(
                        InventoryCommand::Reserve {
                            sku: state.sku.clone(),
                            order: order.clone(),
                            quantity: state.quantity,
                        },
                        InventoryCommand::Release {
                            sku: state.sku.clone(),
                            order: order.clone(),
                        },
                    ),
                ],
                _ => vec![],
            },
            "inventory" => match event.decode::<InventoryEvent>()? {
                InventoryEvent::Reserved { .. } if state.step == Step::Reserving => vec![
                    SagaStep::record(OrderSagaEvent::StockConfirmed),
                    SagaStep::send(OrderCommand::Confirm { order }),
                    SagaStep::complete(),
                ],
                _ => vec![],
            },
            _ => vec![],
        })
    }

    fn apply(state: &mut OrderSagaState, event: &OrderSagaEvent) {
        match event {
            OrderSagaEvent::Started { sku, quantity, .. } => {
                *state = OrderSagaState {
                    step: Step::Paying,
                    sku: sku.clone(),
                    quantity: *quantity,
                };
            }
            OrderSagaEvent::PaymentConfirmed => state.step = Step::Reserving,
            OrderSagaEvent::StockConfirmed => state.step = Step::Confirming,
        }
    }
}
