//! Every path of the order saga, driven by `catch_up` and by hand.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use orchestrix::saga::{HandleOutcome, SagaEngine, SagaStatus};
use orchestrix::store::Filter;
use orchestrix::{Application, Store, StreamId};
use orchestrix_demo_ecommerce::{
    DECLINED_CARD, Inventory, InventoryCommand, Order, OrderCommand, OrderSaga, OrderStatus,
    Payment, PaymentEvent, PaymentStatus,
};

struct Fixture {
    app: Application,
    engine: SagaEngine<OrderSaga>,
}

impl Fixture {
    async fn new() -> Self {
        let app = Application::builder(Store::memory())
            .aggregate::<Order>()
            .aggregate::<Payment>()
            .aggregate::<Inventory>()
            .build()
            .unwrap();
        let engine = SagaEngine::new(OrderSaga, &app).unwrap();
        app.execute(InventoryCommand::Restock {
            sku: "mouse".into(),
            quantity: 3,
        })
        .await
        .unwrap();
        Self { app, engine }
    }

    async fn place(&self, order: &str, quantity: u32, card: &str) {
        let place = OrderCommand::Place {
            order: order.into(),
            customer: "bob".into(),
            sku: "mouse".into(),
            quantity,
            unit_price: 25_00,
            card: card.into(),
        };
        self.app.execute(place).await.unwrap();
    }

    /// Runs the saga until nothing new happens.
    async fn settle(&self) {
        for _ in 0..10 {
            if self.engine.catch_up().await.unwrap() == 0 {
                return;
            }
        }
        panic!("the saga does not settle");
    }

    async fn outcome(&self, order: &str) -> (OrderStatus, PaymentStatus, SagaStatus, u32) {
        let status = self.app.load::<Order>(order).await.unwrap().state.status;
        let payment = self.app.load::<Payment>(order).await.unwrap().state.status;
        let saga = self.engine.status(order).await.unwrap().unwrap();
        let stock = self
            .app
            .load::<Inventory>("mouse")
            .await
            .unwrap()
            .state
            .available;
        (status, payment, saga, stock)
    }
}

#[tokio::test]
async fn payment_then_stock_then_confirmation() {
    let f = Fixture::new().await;
    f.place("o1", 2, "4242").await;
    f.settle().await;
    assert_eq!(
        f.outcome("o1").await,
        (
            OrderStatus::Confirmed,
            PaymentStatus::Charged,
            SagaStatus::Completed,
            1
        )
    );
    let instance = f.engine.instance("o1").await.unwrap().unwrap();
    assert_eq!(instance.commands_sent, 3);
    assert_eq!(
        instance.compensations.len(),
        3,
        "cancel, refund, release: kept, never run"
    );
    assert!(instance.compensations.iter().all(|c| !c.done));
}

#[tokio::test]
async fn a_declined_payment_cancels_the_order_and_refunds_nothing() {
    let f = Fixture::new().await;
    f.place("o2", 1, DECLINED_CARD).await;
    f.settle().await;
    assert_eq!(
        f.outcome("o2").await,
        (
            OrderStatus::Cancelled,
            PaymentStatus::None,
            SagaStatus::Compensated,
            3
        )
    );
    let reason = f
        .engine
        .instance("o2")
        .await
        .unwrap()
        .unwrap()
        .reason
        .unwrap();
    assert!(reason.contains("was declined"), "{reason}");
    let payments = StreamId::new("payment", "o2").unwrap();
    assert!(
        f.app
            .store()
            .read_stream_forward(&payments, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn missing_stock_refunds_the_payment_then_cancels_the_order() {
    let f = Fixture::new().await;
    f.place("o3", 5, "4242").await;
    f.settle().await;
    assert_eq!(
        f.outcome("o3").await,
        (
            OrderStatus::Cancelled,
            PaymentStatus::Refunded,
            SagaStatus::Compensated,
            3
        )
    );
    let reason = f
        .engine
        .instance("o3")
        .await
        .unwrap()
        .unwrap()
        .reason
        .unwrap();
    assert!(reason.contains("only 3 in stock, 5 asked"), "{reason}");
    // Reverse order: the refund (step 2) before the cancellation (step 1).
    let filter = Filter::all().event_types([
        "com.orchestrix.shop.payment.Refunded",
        "com.orchestrix.shop.order.Cancelled",
    ]);
    let order: Vec<_> = f
        .app
        .store()
        .read_all(0, 100, &filter)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "com.orchestrix.shop.payment.Refunded",
            "com.orchestrix.shop.order.Cancelled"
        ]
    );
    let refunded = &f.app.store().read_all(0, 100, &filter).await.unwrap()[0];
    assert_eq!(
        refunded.decode::<PaymentEvent>().unwrap(),
        PaymentEvent::Refunded { amount: 125_00 }
    );
}

#[tokio::test]
async fn a_redelivered_payment_confirmation_reserves_once() {
    let f = Fixture::new().await;
    f.place("o4", 1, "4242").await;
    let placed = f
        .app
        .store()
        .read_all(0, 100, &Filter::all().categories(["order"]))
        .await
        .unwrap()
        .remove(0);
    f.engine.handle_event(&placed).await.unwrap(); // charge
    let charged = f
        .app
        .store()
        .read_all(0, 100, &Filter::all().categories(["payment"]))
        .await
        .unwrap()
        .remove(0);
    assert!(matches!(
        f.engine.handle_event(&charged).await.unwrap(),
        HandleOutcome::Handled { commands: 1, .. }
    ));
    assert_eq!(
        f.engine.handle_event(&charged).await.unwrap(),
        HandleOutcome::Duplicate
    );
    f.settle().await;
    assert_eq!(
        f.outcome("o4").await,
        (
            OrderStatus::Confirmed,
            PaymentStatus::Charged,
            SagaStatus::Completed,
            2
        )
    );
    let listed = f.engine.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, SagaStatus::Completed);
}
