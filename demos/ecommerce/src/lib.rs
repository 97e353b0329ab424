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

/// Where the demo runs, for its first line: the store URL and the bus URL,
/// passwords replaced by `***`.
///
/// ```
/// let on = orchestrix_demo_ecommerce::running_on("postgres://bank:s3cret@db:5432/test", Some("nats://127.0.0.1:4222"));
/// assert_eq!(on, "postgres://bank:***@db:5432/test, bus nats://127.0.0.1:4222");
/// ```
#[must_use]
pub fn running_on(store: &str, bus: Option<&str>) -> String {
    let store = orchestrix::url::redact(store);
    match bus {
        Some(bus) => format!("{store}, bus {}", orchestrix::url::redact(bus)),
        None => store,
    }
}

#[cfg(test)]
mod tests {
    /// The store's password is not printed (it used to be).
    #[test]
    fn the_banner_hides_passwords() {
        let on = super::running_on(
            "postgres://user:hunter2@127.0.0.1:5432/test?schema=demo",
            Some("kafka://127.0.0.1:9092"),
        );
        assert!(!on.contains("hunter2"), "{on}");
        assert!(
            on.starts_with("postgres://user:***@127.0.0.1:5432/test"),
            "{on}"
        );
        assert_eq!(
            super::running_on("sqlite://demo.db", None),
            "sqlite://demo.db"
        );
    }
}
