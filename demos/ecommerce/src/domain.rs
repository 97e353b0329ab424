//! Orders, payments and inventory: three aggregates the order saga drives.

use orchestrix::{Aggregate, Command, Event};
use serde::{Deserialize, Serialize};

/// Amounts are in cents.
pub type Cents = u64;

/// The test card number that the payment provider always declines.
pub const DECLINED_CARD: &str = "4000-0000-0000-0002";

// --- Orders -----------------------------------------------------------------

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.shop.order")]
pub enum OrderEvent {
    /// The customer placed the order.
    Placed {
        /// Who.
        customer: String,
        /// What.
        sku: String,
        /// How many.
        quantity: u32,
        /// The total in cents.
        total: Cents,
        /// The card to charge.
        card: String,
    },
    /// Paid and reserved: it will ship.
    Confirmed,
    /// Called off.
    Cancelled,
}

/// What can be asked of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(id = order)]
pub enum OrderCommand {
    /// Places an order.
    Place {
        /// The order id.
        order: String,
        /// Who.
        customer: String,
        /// What.
        sku: String,
        /// How many.
        quantity: u32,
        /// Price per item in cents.
        unit_price: Cents,
        /// The card to charge.
        card: String,
    },
    /// Confirms it.
    Confirm {
        /// The order id.
        order: String,
    },
    /// Cancels it.
    Cancel {
        /// The order id.
        order: String,
    },
}

/// Why an order refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Place on an existing order.
    #[error("the order already exists")]
    Exists,
    /// Anything on an unknown order.
    #[error("no such order")]
    Unknown,
    /// Confirm or cancel on a finished order.
    #[error("the order is already {0:?}")]
    Finished(OrderStatus),
    /// A quantity of zero.
    #[error("the quantity must be positive")]
    ZeroQuantity,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Not placed.
    #[default]
    New,
    /// Placed, being processed.
    Pending,
    /// Will ship.
    Confirmed,
    /// Called off.
    Cancelled,
}

/// An order's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Order {
    /// Status.
    pub status: OrderStatus,
    /// Total in cents.
    pub total: Cents,
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match (command, self.status) {
            (OrderCommand::Place { quantity: 0, .. }, OrderStatus::New) => {
                Err(OrderError::ZeroQuantity)
            }
            (
                OrderCommand::Place {
                    customer,
                    sku,
                    quantity,
                    unit_price,
                    card,
                    ..
                },
                OrderStatus::New,
            ) => Ok(vec![OrderEvent::Placed {
                customer: customer.clone(),
                sku: sku.clone(),
                quantity: *quantity,
                total: unit_price.saturating_mul(Cents::from(*quantity)),
                card: card.clone(),
            }]),
            (OrderCommand::Place { .. }, _) => Err(OrderError::Exists),
            (_, OrderStatus::New) => Err(OrderError::Unknown),
            (OrderCommand::Confirm { .. }, OrderStatus::Pending) => Ok(vec![OrderEvent::Confirmed]),
            (OrderCommand::Cancel { .. }, OrderStatus::Pending) => Ok(vec![OrderEvent::Cancelled]),
            (_, finished) => Err(OrderError::Finished(finished)),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { total, .. } => {
                self.status = OrderStatus::Pending;
                self.total = *total;
            }
            OrderEvent::Confirmed => self.status = OrderStatus::Confirmed,
            OrderEvent::Cancelled => self.status = OrderStatus::Cancelled,
        }
    }
}

// --- Payments ---------------------------------------------------------------

/// What happened to a payment (one per order, same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.shop.payment")]
pub enum PaymentEvent {
    /// The card was charged.
    Charged {
        /// How much.
        amount: Cents,
    },
    /// The charge was paid back.
    Refunded {
        /// How much.
        amount: Cents,
    },
}

/// What can be asked of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(id = payment)]
pub enum PaymentCommand {
    /// Charges a card.
    Charge {
        /// The payment id (the order id).
        payment: String,
        /// How much.
        amount: Cents,
        /// The card.
        card: String,
    },
    /// Pays a charge back.
    Refund {
        /// The payment id.
        payment: String,
    },
}

/// Why a payment refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The provider declined the card.
    #[error("card {0} was declined")]
    Declined(String),
    /// Charge twice.
    #[error("already charged")]
    AlreadyCharged,
    /// Refund without a charge, or twice.
    #[error("nothing to refund")]
    NothingToRefund,
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// Nothing charged.
    #[default]
    None,
    /// Charged.
    Charged,
    /// Charged and paid back.
    Refunded,
}

/// A payment's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Payment {
    /// Status.
    pub status: PaymentStatus,
    /// The amount charged.
    pub amount: Cents,
}

impl Aggregate for Payment {
    const CATEGORY: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn handle(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        match command {
            PaymentCommand::Charge { card, .. } if card == DECLINED_CARD => {
                Err(PaymentError::Declined(card.clone()))
            }
            PaymentCommand::Charge { amount, .. } if self.status == PaymentStatus::None => {
                Ok(vec![PaymentEvent::Charged { amount: *amount }])
            }
            PaymentCommand::Charge { .. } => Err(PaymentError::AlreadyCharged),
            PaymentCommand::Refund { .. } if self.status == PaymentStatus::Charged => {
                Ok(vec![PaymentEvent::Refunded {
                    amount: self.amount,
                }])
            }
            PaymentCommand::Refund { .. } => Err(PaymentError::NothingToRefund),
        }
    }

    fn apply(&mut self, event: &PaymentEvent) {
        match event {
            PaymentEvent::Charged { amount } => {
                self.status = PaymentStatus::Charged;
                self.amount = *amount;
            }
            PaymentEvent::Refunded { .. } => self.status = PaymentStatus::Refunded,
        }
    }
}

// --- Inventory --------------------------------------------------------------

/// What happened to a product's stock (one stream per SKU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.shop.inventory")]
pub enum InventoryEvent {
    /// Items arrived.
    Restocked {
        /// How many.
        quantity: u32,
    },
    /// Items were set aside for an order.
    Reserved {
        /// The order.
        order: String,
        /// How many.
        quantity: u32,
    },
    /// An order's items went back to stock.
    Released {
        /// The order.
        order: String,
        /// How many.
        quantity: u32,
    },
}

/// What can be asked of a product's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(id = sku)]
pub enum InventoryCommand {
    /// Adds items.
    Restock {
        /// The SKU.
        sku: String,
        /// How many.
        quantity: u32,
    },
    /// Sets items aside for an order.
    Reserve {
        /// The SKU.
        sku: String,
        /// The order.
        order: String,
        /// How many.
        quantity: u32,
    },
    /// Puts an order's items back.
    Release {
        /// The SKU.
        sku: String,
        /// The order.
        order: String,
    },
}

/// Why the stock refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Not enough items.
    #[error("only {available} in stock, {asked} asked")]
    OutOfStock {
        /// In stock.
        available: u32,
        /// Asked for.
        asked: u32,
    },
    /// Release for an order without a reservation.
    #[error("nothing reserved for order {0}")]
    NotReserved(String),
    /// A quantity of zero.
    #[error("the quantity must be positive")]
    ZeroQuantity,
}

/// A product's stock.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// Items free to sell.
    pub available: u32,
    /// Reservations by order.
    pub reserved: std::collections::BTreeMap<String, u32>,
}

impl Aggregate for Inventory {
    const CATEGORY: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;

    fn handle(&self, command: &InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        match command {
            InventoryCommand::Restock { quantity: 0, .. }
            | InventoryCommand::Reserve { quantity: 0, .. } => Err(InventoryError::ZeroQuantity),
            InventoryCommand::Restock { quantity, .. } => Ok(vec![InventoryEvent::Restocked {
                quantity: *quantity,
            }]),
            InventoryCommand::Reserve { quantity, .. } if *quantity > self.available => {
                Err(InventoryError::OutOfStock {
                    available: self.available,
                    asked: *quantity,
                })
            }
            InventoryCommand::Reserve {
                order, quantity, ..
            } => Ok(vec![InventoryEvent::Reserved {
                order: order.clone(),
                quantity: *quantity,
            }]),
            InventoryCommand::Release { order, .. } => match self.reserved.get(order) {
                Some(quantity) => Ok(vec![InventoryEvent::Released {
                    order: order.clone(),
                    quantity: *quantity,
                }]),
                None => Err(InventoryError::NotReserved(order.clone())),
            },
        }
    }

    fn apply(&mut self, event: &InventoryEvent) {
        match event {
            InventoryEvent::Restocked { quantity } => self.available += quantity,
            InventoryEvent::Reserved { order, quantity } => {
                self.available = self.available.saturating_sub(*quantity);
                self.reserved.insert(order.clone(), *quantity);
            }
            InventoryEvent::Released { order, quantity } => {
                self.available += quantity;
                self.reserved.remove(order);
            }
        }
    }
}
