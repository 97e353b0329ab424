//! The demo's walk-through: three orders, one of which meets the injected
//! failure.

use std::collections::BTreeMap;
use std::io::Write;

use orchestrix::Store;
use orchestrix::saga::SagaStatus;

use crate::domain::{
    DECLINED_CARD, Inventory, InventoryCommand, Order, OrderCommand, OrderStatus, Payment,
    PaymentStatus,
};
use crate::shop::{Shop, ShopModule};

/// Which failure to inject into the second order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Failure {
    /// No failure: every order is confirmed.
    #[default]
    None,
    /// Bob pays with a card the provider declines: his order is cancelled.
    Payment,
    /// The mouse is out of stock: Bob's payment is refunded and his order cancelled.
    Inventory,
}

/// How one order ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderOutcome {
    /// The order's status.
    pub status: OrderStatus,
    /// The payment's status.
    pub payment: PaymentStatus,
    /// The saga's status.
    pub saga: SagaStatus,
    /// Why the saga failed, if it did.
    pub reason: Option<String>,
}

/// What the walk-through ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Orders by name.
    pub orders: BTreeMap<String, OrderOutcome>,
    /// Items available by SKU name.
    pub stock: BTreeMap<String, u32>,
}

const GOOD_CARD: &str = "4242-4242-4242-4242";

/// Runs the walk-through on `store` with `failure` injected, naming orders
/// and products `{name}-{run}`, printing to `out`.
///
/// # Errors
/// A store or runtime error, or a saga that did not settle.
pub async fn run(
    store: Store,
    run: &str,
    failure: Failure,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    run_on(store, None, run, failure, out).await
}

/// [`run`] with the saga consuming from `bus` (`nats://...`), or on the
/// embedded runtime without one.
///
/// # Errors
/// As [`run`].
pub async fn run_on(
    store: Store,
    bus: Option<&str>,
    run: &str,
    failure: Failure,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    let shop = Shop::start_on(store, ShopModule::default(), bus).await?;
    let id = |name: &str| format!("{name}-{run}");

    writeln!(out, "1. Stock the shop")?;
    let mut stock = vec![("keyboard", 10)];
    if failure == Failure::Inventory {
        writeln!(out, "  (injected failure: the mice are out of stock)")?;
    } else {
        stock.push(("mouse", 5));
    }
    for (sku, quantity) in stock {
        shop.app()
            .execute(InventoryCommand::Restock {
                sku: id(sku),
                quantity,
            })
            .await?;
        writeln!(out, "  {quantity} x {sku}")?;
    }

    writeln!(
        out,
        "\n2. Three customers order; the saga charges, reserves, confirms"
    )?;
    let bob_card = if failure == Failure::Payment {
        writeln!(out, "  (injected failure: Bob's card is declined)")?;
        DECLINED_CARD
    } else {
        GOOD_CARD
    };
    let orders = [
        ("o1", "alice", "keyboard", 2, 49_00, GOOD_CARD),
        ("o2", "bob", "mouse", 1, 25_00, bob_card),
        ("o3", "carol", "keyboard", 1, 49_00, GOOD_CARD),
    ];
    for (order, customer, sku, quantity, unit_price, card) in orders {
        let place = OrderCommand::Place {
            order: id(order),
            customer: customer.into(),
            sku: id(sku),
            quantity,
            unit_price,
            card: card.into(),
        };
        shop.app().execute(place).await?;
        shop.settle().await?;
        let instance = shop.orders().instance(&id(order)).await?;
        let (status, reason) = instance
            .map(|i| (i.status.to_string(), i.reason))
            .unwrap_or(("not started".into(), None));
        writeln!(
            out,
            "  {order}: {customer} buys {quantity} x {sku}: saga {status}"
        )?;
        if let Some(reason) = reason {
            writeln!(out, "      because {reason}")?;
        }
    }

    let mut report = Report {
        orders: BTreeMap::new(),
        stock: BTreeMap::new(),
    };
    writeln!(out, "\nFinal order statuses:")?;
    for (order, ..) in orders {
        let status = shop.app().load::<Order>(&id(order)).await?.state.status;
        let payment = shop.app().load::<Payment>(&id(order)).await?.state.status;
        let instance = shop.orders().instance(&id(order)).await?;
        let (saga, reason) = instance.map_or((SagaStatus::Running, None), |i| (i.status, i.reason));
        writeln!(
            out,
            "  {order}  order {status:?}, payment {payment:?}, saga {saga}"
        )?;
        report.orders.insert(
            order.to_owned(),
            OrderOutcome {
                status,
                payment,
                saga,
                reason,
            },
        );
    }
    writeln!(out, "\nStock left:")?;
    for sku in ["keyboard", "mouse"] {
        let available = shop
            .app()
            .load::<Inventory>(&id(sku))
            .await?
            .state
            .available;
        writeln!(out, "  {sku:<8} {available}")?;
        report.stock.insert(sku.to_owned(), available);
    }
    shop.shutdown().await?;
    Ok(report)
}
