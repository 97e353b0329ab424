//! Orchestrix e-commerce demo: an order saga that charges the payment,
//! reserves the stock and confirms the order; a declined payment cancels the
//! order, missing stock refunds the payment and cancels the order.
//!
//! `cargo run -p orchestrix-demo-ecommerce -- --fail inventory` runs
//! [`walkthrough::run`] with a failure injected, so the compensation shows.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

pub mod domain;
pub mod saga;
pub mod shop;
pub mod walkthrough;

pub use domain::{
    DECLINED_CARD, Inventory, InventoryCommand, InventoryEvent, Order, OrderCommand, OrderEvent,
    OrderStatus, Payment, PaymentCommand, PaymentEvent, PaymentStatus,
};
pub use saga::{OrderSaga, OrderSagaEvent, OrderSagaState, ShopCommand, Step};
pub use shop::{Shop, ShopModule};
pub use walkthrough::{Failure, Report};
