//! Shared pieces of the benchmarks: a small account aggregate and a timer.

use std::time::{Duration, Instant};

use orchestrix::{Aggregate, Command, Event};
use serde::{Deserialize, Serialize};

/// Events of the benchmark account.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.bench.account")]
pub enum AccountEvent {
    /// Money came in.
    Deposited {
        /// Amount in cents.
        amount: u64,
    },
}

/// Deposit into an account.
#[derive(Debug)]
pub struct Deposit {
    /// Account id.
    pub id: String,
    /// Amount in cents.
    pub amount: u64,
}

impl Command for Deposit {
    fn aggregate_id(&self) -> String {
        self.id.clone()
    }
}

/// Never raised; the benchmark account accepts every deposit below a limit.
#[derive(Debug, thiserror::Error)]
#[error("limit exceeded")]
pub struct Limit;

/// The benchmark aggregate.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    /// Balance in cents.
    pub balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = Deposit;
    type Event = AccountEvent;
    type Error = Limit;

    fn handle(&self, c: &Deposit) -> Result<Vec<AccountEvent>, Limit> {
        if self.balance > u64::MAX / 2 {
            return Err(Limit);
        }
        Ok(vec![AccountEvent::Deposited { amount: c.amount }])
    }

    fn apply(&mut self, e: &AccountEvent) {
        let AccountEvent::Deposited { amount } = e;
        self.balance += amount;
    }
}

/// Runs `f` and returns operations per second for `ops` operations.
pub async fn rate<F: std::future::Future<Output = anyhow::Result<()>>>(
    ops: u64,
    f: F,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    f.await?;
    Ok(per_second(ops, start.elapsed()))
}

/// Operations per second.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn per_second(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// One row of a result table.
pub fn row(name: &str, value: f64, unit: &str, baseline: Option<f64>) {
    match baseline {
        Some(b) => println!(
            "| {name:<58} | {value:>12.0} {unit:<9} | {:>6.2}x of baseline |",
            value / b
        ),
        None => println!("| {name:<58} | {value:>12.0} {unit:<9} | baseline           |"),
    }
}
