//! The order saga and the aggregates, given/when/then: `SagaFixture` and
//! `AggregateFixture`, no store.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use orchestrix::saga::SagaStatus;
use orchestrix_demo_ecommerce::{
    Inventory, InventoryCommand, InventoryEvent, OrderCommand, OrderEvent, OrderSaga,
    OrderSagaEvent, PaymentCommand, PaymentEvent, ShopCommand,
};
use orchestrix_testkit::{AggregateFixture, SagaFixture};

fn placed() -> OrderEvent {
    OrderEvent::Placed {
        customer: "bob".into(),
        sku: "mouse".into(),
        quantity: 2,
        total: 50_00,
        card: "4242".into(),
    }
}

fn reserved() -> InventoryEvent {
    InventoryEvent::Reserved {
        order: "o1".into(),
        quantity: 2,
    }
}

#[test]
fn a_placed_order_is_charged_first() {
    SagaFixture::new(OrderSaga)
        .given_no_previous_events()
        .when("order-o1", placed())
        .then_records(vec![OrderSagaEvent::Started {
            sku: "mouse".into(),
            quantity: 2,
            total: 50_00,
        }])
        .then_sends(vec![PaymentCommand::Charge {
            payment: "o1".into(),
            amount: 50_00,
            card: "4242".into(),
        }])
        .then_status(SagaStatus::Running);
}

#[test]
fn a_charged_payment_reserves_then_a_reservation_confirms() {
    SagaFixture::new(OrderSaga)
        .given("order-o1", placed())
        .when("payment-o1", PaymentEvent::Charged { amount: 50_00 })
        .then_sends(vec![InventoryCommand::Reserve {
            sku: "mouse".into(),
            order: "o1".into(),
            quantity: 2,
        }])
        .and()
        // The reservation is on the SKU's stream; the saga finds the order in it.
        .when("inventory-mouse", reserved())
        .then_sends(vec![OrderCommand::Confirm { order: "o1".into() }])
        .then_compensates(Vec::<ShopCommand>::new())
        .then_status(SagaStatus::Completed);
}

#[test]
fn a_declined_payment_cancels_the_order() {
    SagaFixture::new(OrderSaga)
        .rejecting(|c| matches!(c, ShopCommand::Payment(PaymentCommand::Charge { .. })))
        .when("order-o1", placed())
        .then_compensates(vec![OrderCommand::Cancel { order: "o1".into() }])
        .then_status(SagaStatus::Compensated)
        .then_fails_with("rejected");
}

#[test]
fn missing_stock_refunds_and_cancels_newest_first() {
    SagaFixture::new(OrderSaga)
        .given("order-o1", placed())
        .rejecting(|c| matches!(c, ShopCommand::Inventory(InventoryCommand::Reserve { .. })))
        .when("payment-o1", PaymentEvent::Charged { amount: 50_00 })
        .then_compensates(vec![
            ShopCommand::from(PaymentCommand::Refund {
                payment: "o1".into(),
            }),
            ShopCommand::from(OrderCommand::Cancel { order: "o1".into() }),
        ])
        .then_status(SagaStatus::Compensated);
}

#[test]
fn a_finished_saga_ignores_late_events() {
    SagaFixture::new(OrderSaga)
        .given("order-o1", placed())
        .given("payment-o1", PaymentEvent::Charged { amount: 50_00 })
        .given("inventory-mouse", reserved())
        .when("payment-o1", PaymentEvent::Charged { amount: 50_00 })
        .then_ignores()
        .then_status(SagaStatus::Completed);
}

#[test]
fn inventory_reserves_what_it_has() {
    let reserve = |quantity| InventoryCommand::Reserve {
        sku: "mouse".into(),
        order: "o1".into(),
        quantity,
    };
    AggregateFixture::<Inventory>::new()
        .given(vec![InventoryEvent::Restocked { quantity: 3 }])
        .when(reserve(2))
        .then_expect_events(vec![InventoryEvent::Reserved {
            order: "o1".into(),
            quantity: 2,
        }]);
    AggregateFixture::<Inventory>::new()
        .given(vec![InventoryEvent::Restocked { quantity: 1 }])
        .when(reserve(2))
        .then_expect_error_message("only 1 in stock, 2 asked");
}
