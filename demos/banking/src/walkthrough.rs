//! The demo's walk-through: a few accounts, transfers that complete, one to a
//! closed account that is reversed, and ones that are refused.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;
use orchestrix::saga::SagaStatus;
use orchestrix::{Store, StreamId};

use crate::account::{Account, AccountCommand, AccountStatus};
use crate::bank::{Bank, BankOptions};
use crate::money;
use crate::transfer::{Transfer, TransferStatus};

/// How one transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The transfer aggregate's status.
    pub status: TransferStatus,
    /// The saga's status.
    pub saga: SagaStatus,
    /// Why the saga failed, if it did.
    pub reason: Option<String>,
}

/// What the walk-through ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Balances (cents) by account name, from the balances projection.
    pub balances: BTreeMap<String, i128>,
    /// Balances (cents) by account name, loaded from the account aggregates.
    pub ledger: BTreeMap<String, i128>,
    /// Statuses by account name.
    pub statuses: BTreeMap<String, AccountStatus>,
    /// Transfers by name.
    pub transfers: BTreeMap<String, TransferOutcome>,
}

struct Walk<'a> {
    bank: Bank,
    run: &'a str,
    out: &'a mut (dyn Write + Send),
}

impl Walk<'_> {
    fn id(&self, name: &str) -> String {
        format!("{name}-{}", self.run)
    }

    async fn account(&mut self, command: AccountCommand, what: &str) -> anyhow::Result<()> {
        match self.bank.execute(command).await {
            Ok(_) => writeln!(self.out, "  ok       {what}")?,
            Err(e) => writeln!(self.out, "  refused  {what}: {e}")?,
        }
        Ok(())
    }

    async fn transfer(
        &mut self,
        name: &str,
        from: &str,
        to: &str,
        amount: u64,
    ) -> anyhow::Result<()> {
        let (id, from_id, to_id) = (self.id(name), self.id(from), self.id(to));
        let status = self.bank.transfer(&id, &from_id, &to_id, amount).await?;
        let instance = self
            .bank
            .transfers()
            .instance(&id)
            .await?
            .context("the saga instance is missing")?;
        let line = format!("{name}: {from} -> {to} {}", money(i128::from(amount)));
        match instance.reason {
            Some(reason) => writeln!(
                self.out,
                "  {status:<12} {line}\n               because {reason}"
            )?,
            None => writeln!(self.out, "  {status:<12} {line}")?,
        }
        Ok(())
    }

    async fn balances(&mut self, names: &[&str]) -> anyhow::Result<()> {
        let mut line = String::from("  balances:");
        for name in names {
            let row = self
                .bank
                .balances()
                .get(&self.id(name))
                .await?
                .unwrap_or_default();
            line.push_str(&format!(
                " {name} {} ({:?})",
                money(row.balance),
                row.status
            ));
        }
        writeln!(self.out, "{line}")?;
        Ok(())
    }
}

/// Runs the walk-through on `store`, naming every account and transfer
/// `{name}-{run}` so that runs on the same store do not meet, printing to
/// `out`, and returns the final state.
///
/// # Errors
/// A store or runtime error, or a saga that did not settle.
pub async fn run(store: Store, run: &str, out: &mut (dyn Write + Send)) -> anyhow::Result<Report> {
    run_with(store, BankOptions::default(), run, out).await
}

/// [`run`] with these options, e.g. a [`BankOptions::bus`] to run the saga
/// and the projection from.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    store: Store,
    options: BankOptions,
    run: &str,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Report> {
    let bank = Bank::start(store, options).await?;
    let mut w = Walk { bank, run, out };
    let all = ["alice", "bob", "carol"];

    writeln!(w.out, "1. Open three accounts and pay in")?;
    for name in all {
        let owner = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
        w.account(
            AccountCommand::Open {
                account: w.id(name),
                owner,
            },
            &format!("open {name}"),
        )
        .await?;
    }
    w.account(
        AccountCommand::Deposit {
            account: w.id("alice"),
            amount: 100_00,
        },
        "deposit 100.00 to alice",
    )
    .await?;
    w.account(
        AccountCommand::Deposit {
            account: w.id("bob"),
            amount: 50_00,
        },
        "deposit 50.00 to bob",
    )
    .await?;
    w.bank.settle().await?;
    w.balances(&all).await?;

    writeln!(
        w.out,
        "\n2. A transfer that completes: debit alice, credit bob"
    )?;
    w.transfer("t1", "alice", "bob", 30_00).await?;
    w.balances(&all).await?;

    writeln!(
        w.out,
        "\n3. Bob withdraws; then his account is suspended, so no money leaves it"
    )?;
    w.account(
        AccountCommand::Withdraw {
            account: w.id("bob"),
            amount: 20_00,
        },
        "withdraw 20.00 from bob",
    )
    .await?;
    let suspend = AccountCommand::Suspend {
        account: w.id("bob"),
        reason: "fraud check".into(),
    };
    w.account(suspend, "suspend bob (fraud check)").await?;
    w.account(
        AccountCommand::Withdraw {
            account: w.id("bob"),
            amount: 5_00,
        },
        "withdraw 5.00 from bob",
    )
    .await?;
    w.transfer("t2", "bob", "alice", 5_00).await?;
    w.account(
        AccountCommand::Reactivate {
            account: w.id("bob"),
        },
        "reactivate bob",
    )
    .await?;
    w.bank.settle().await?;
    w.balances(&all).await?;

    writeln!(
        w.out,
        "\n4. Carol closes her account; a transfer to it is debited, refused, and reversed"
    )?;
    w.account(
        AccountCommand::Close {
            account: w.id("carol"),
        },
        "close carol",
    )
    .await?;
    w.transfer("t3", "alice", "carol", 25_00).await?;
    w.balances(&all).await?;
    let stream = StreamId::new(&orchestrix::saga::category("transfer"), &w.id("t3"))?;
    let audit = w
        .bank
        .app()
        .store()
        .read_stream_forward(&stream, 0, 100)
        .await?;
    writeln!(w.out, "  the saga's stream {stream} (its audit trail):")?;
    for e in &audit {
        writeln!(w.out, "    {:>2} {}", e.revision, e.event_type())?;
    }

    writeln!(
        w.out,
        "\n5. A transfer larger than the balance is refused at the debit"
    )?;
    w.transfer("t4", "bob", "alice", 500_00).await?;
    w.bank.settle().await?;

    let mut report = Report {
        balances: BTreeMap::new(),
        ledger: BTreeMap::new(),
        statuses: BTreeMap::new(),
        transfers: BTreeMap::new(),
    };
    writeln!(w.out, "\nFinal balances (projection | aggregate):")?;
    for name in all {
        let row = w
            .bank
            .balances()
            .get(&w.id(name))
            .await?
            .unwrap_or_default();
        let account = w.bank.app().load::<Account>(&w.id(name)).await?.state;
        let line = format!(
            "  {name:<6} {:>8} | {:>8}  {:?}",
            money(row.balance),
            money(i128::from(account.balance)),
            account.status
        );
        writeln!(w.out, "{line}")?;
        report.balances.insert(name.to_owned(), row.balance);
        report
            .ledger
            .insert(name.to_owned(), i128::from(account.balance));
        report.statuses.insert(name.to_owned(), account.status);
    }
    let total: i128 = report.balances.values().sum();
    writeln!(
        w.out,
        "  total  {:>8}  (paid in 150.00, withdrawn 20.00)",
        money(total)
    )?;
    writeln!(w.out, "\nTransfers:")?;
    for name in ["t1", "t2", "t3", "t4"] {
        let id = w.id(name);
        let status = w.bank.app().load::<Transfer>(&id).await?.state.status;
        let instance = w
            .bank
            .transfers()
            .instance(&id)
            .await?
            .context("the saga instance is missing")?;
        writeln!(
            w.out,
            "  {name}  transfer {status:?}, saga {}",
            instance.status
        )?;
        report.transfers.insert(
            name.to_owned(),
            TransferOutcome {
                status,
                saga: instance.status,
                reason: instance.reason,
            },
        );
    }
    w.bank.shutdown().await?;
    Ok(report)
}
