//! kill -9 of a process in the middle of saga steps and with saga timeouts
//! pending: the banking demo's application (`BankModule`: accounts,
//! transfers, the `TransferSaga` with a short deadline, the balances
//! projection, its rows in the same SQLite file as the events) on the
//! embedded runtime over a SQLite file, run by a child
//! process that asks for transfers at a steady pace. The child is SIGKILLed
//! at random moments several times and started again on the same file; a
//! last run asks for every transfer and waits until every saga settled.
//!
//! Checked on the store: every saga reached a terminal state (completed or
//! compensated) exactly once and its transfer ended once, consistently; no
//! account command was applied twice (one deposit per account, at most one
//! debit, credit and reversal of each per transfer); the balances read
//! model equals the sum of each account's events; money is conserved (the
//! total is the deposits, no withdrawals); no timeout fired twice for one
//! saga instance.
//!
//! The child is this test binary, started again with
//! `saga_kill_during_steps_and_timeouts --exact` and its job in an
//! environment variable: with the variable set, the test runs as the child.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use orchestrix::executor::CommandContext;
use orchestrix::runtime::{ConsumerConfig, Runtime};
use orchestrix::saga::{SagaConfig, SagaEngine, SagaStatus};
use orchestrix::store::Filter;
use orchestrix::{Application, Error, RecordedEvent, Store};
use orchestrix_chaos::{poll, scale};
use orchestrix_demo_banking::{
    AccountCommand, AccountEvent, Balances, BankModule, TransferCommand, TransferEvent,
    TransferSaga,
};
use orchestrix_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

const JOB_ENV: &str = "ORCHESTRIX_CHAOS_SAGA_KILL_JOB";
const ACCOUNTS: usize = 12;
const DEPOSIT: u64 = 1_000_00;
/// The saga's deadline: short, so that transfers in flight at a kill are
/// overdue when the process comes back, and some time out under load.
const DEADLINE: Duration = Duration::from_millis(600);
const KILLS: usize = 6;
const REQUESTERS: usize = 4;

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    /// The SQLite file.
    path: std::path::PathBuf,
    transfers: usize,
    /// Wait until every saga settled, then stop gracefully.
    finish: bool,
}

fn account(n: usize) -> String {
    format!("a{n:02}")
}

fn transfer_id(n: usize) -> String {
    format!("t{n:05}")
}

/// Transfer `n`: from, to, amount (fixed per `n`, so that a re-sent request
/// is the same request). Money goes from the first half of the accounts to
/// the second, so a payee never spends what it received: a credit reversed
/// after a timeout always finds the money. (With payees that pay on, a
/// deadline that fires after the credit, before the saga saw it, has its
/// `ReverseCredit` rejected for insufficient funds: the saga ends `Failed`,
/// for a person to settle; seen in this test's first version.) One
/// transfer in 17 asks for more than any account holds: its debit is
/// rejected and the saga compensated.
fn transfer_of(n: usize) -> (String, String, u64) {
    let half = ACCOUNTS as u64 / 2;
    let h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    let from = usize::try_from(h % half).unwrap_or(0);
    let to = usize::try_from(half + (h >> 8) % half).unwrap_or(0);
    let amount = if n % 17 == 5 {
        2 * DEPOSIT
    } else {
        1_00 + (h >> 16) % 9_00
    };
    (account(from), account(to), amount)
}

/// The bank's application on the SQLite file, the balances' rows in it too.
async fn bank_app(path: &std::path::Path) -> anyhow::Result<(Store, Application)> {
    let sqlite = Arc::new(SqliteStore::open_path(path).await?);
    let store = Store::new(sqlite.clone().backend());
    let module = BankModule::new(
        TransferSaga { deadline: DEADLINE },
        SagaConfig::default().with_timer_interval(Duration::from_millis(50)),
        ConsumerConfig::default(),
    );
    let app = Application::builder(store.clone())
        .read_models(sqlite.read_models())
        .module(module)
        .build()?;
    Ok((store, app))
}

/// Executes until accepted, recognised as done, or rejected (a transient
/// store error is retried).
async fn send<C: orchestrix::Command + Clone>(
    app: &Application,
    command: C,
    context: CommandContext,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match app.execute_with(command.clone(), context.clone()).await {
            Ok(_) | Err(Error::Rejected { .. }) => return Ok(()),
            Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The child: opens the accounts (once, by command id), asks for the
/// transfers (a request already made is recognised by its command id), and
/// with `finish` waits until every saga settled.
async fn saga_kill_child(job: &str) -> anyhow::Result<()> {
    let job: Job = serde_json::from_str(job)?;
    let (store, app) = bank_app(&job.path).await?;
    let runtime = Runtime::start(&app).await?;
    let transfers = app.saga::<TransferSaga>()?;
    for n in 0..ACCOUNTS {
        let (id, context) = (account(n), CommandContext::with_id(format!("open-{n}")));
        // Opened and paid in by an earlier run. (Not re-sent: an account
        // remembers only its last 64 command ids, and after a run's
        // transfers a re-sent deposit would be applied again.)
        let stream = orchestrix::StreamId::parse(format!("account-{id}"))?;
        if store
            .stream_revision(&stream)
            .await?
            .is_some_and(|r| r >= 1)
        {
            continue;
        }
        let open = AccountCommand::Open {
            account: id.clone(),
            owner: id.clone(),
        };
        send(&app, open, context).await?;
        let deposit = AccountCommand::Deposit {
            account: id,
            amount: DEPOSIT,
        };
        send(
            &app,
            deposit,
            CommandContext::with_id(format!("deposit-{n}")),
        )
        .await?;
    }
    println!("SAGA-KILL READY");
    // Four requesters, as fast as the store takes them: the saga and the
    // projection fall behind, so that a kill finds sagas mid-step.
    let mut requesters = tokio::task::JoinSet::new();
    for k in 0..REQUESTERS {
        let (app, count) = (app.clone(), job.transfers);
        requesters.spawn(async move {
            for n in (k..count).step_by(REQUESTERS) {
                let (from, to, amount) = transfer_of(n);
                let request = TransferCommand::Request {
                    transfer: transfer_id(n),
                    from,
                    to,
                    amount,
                };
                send(
                    &app,
                    request,
                    CommandContext::with_id(format!("request-{n}")),
                )
                .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = requesters.join_next().await {
        done??;
    }
    if job.finish {
        poll(
            "every saga settled",
            Duration::from_secs(120),
            Duration::from_millis(100),
            || async {
                let list = transfers.list().await.ok()?;
                let settled = list.iter().filter(|s| s.status.is_terminal()).count();
                (settled >= job.transfers).then_some(())
            },
        )
        .await?;
        runtime
            .wait_until_caught_up(store.head_position().await?)
            .await?;
        runtime.shutdown().await?;
        println!("SAGA-KILL DONE");
    } else {
        // Until killed.
        std::future::pending::<()>().await;
    }
    Ok(())
}

fn child(job: &Job) -> anyhow::Result<tokio::process::Child> {
    Command::new(std::env::current_exe()?)
        .args([
            "saga_kill_during_steps_and_timeouts",
            "--exact",
            "--nocapture",
        ])
        .env(JOB_ENV, serde_json::to_string(job)?)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the child")
}

/// Reads the child's output until `line`; the rest is drained in the
/// background (so the pipe never fills).
async fn wait_line(child: &mut tokio::process::Child, line: &str) -> anyhow::Result<()> {
    let out = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await? {
            if l.contains(line) {
                return Ok::<_, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .with_context(|| format!("no `{line}` from the child within 60 s"))??;
    if !found {
        bail!("the child ended before `{line}`");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(())
}

/// At a kill: sagas not settled, and how many of them had a timeout
/// pending (and overdue by the time of the look).
async fn in_flight(engine: &SagaEngine<TransferSaga>) -> anyhow::Result<(usize, usize, usize)> {
    let mut running = 0;
    let mut pending = 0;
    let mut overdue = 0;
    let now = chrono::Utc::now();
    for s in engine.list().await? {
        if s.status.is_terminal() {
            continue;
        }
        running += 1;
        let instance = engine.load(&s.correlation).await?;
        if !instance.timeouts.is_empty() {
            pending += 1;
        }
        if instance.timeouts.values().any(|t| t.due_at <= now) {
            overdue += 1;
        }
    }
    Ok((running, pending, overdue))
}

async fn read_all(store: &Store) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let events = store.read_all(after, 1000, &Filter::all()).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(out);
        };
        out.extend(events);
        after = last;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_kill_during_steps_and_timeouts() -> anyhow::Result<()> {
    if let Ok(job) = std::env::var(JOB_ENV) {
        // Started by this test as its child (see `child`).
        return saga_kill_child(&job).await;
    }
    let transfers = usize::try_from(scale(600, 6_000))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bank.db");
    let mut rng_state = u64::from(std::process::id()) | 1;
    let mut random_ms = |lo: u64, hi: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        lo + rng_state % (hi - lo)
    };

    let mut kills = Vec::new();
    let mut observer: Option<(Store, Application, SagaEngine<TransferSaga>)> = None;
    let started = Instant::now();
    for _ in 0..KILLS {
        let job = Job {
            path: path.clone(),
            transfers,
            finish: false,
        };
        let mut process = child(&job)?;
        wait_line(&mut process, "SAGA-KILL READY").await?;
        tokio::time::sleep(Duration::from_millis(random_ms(200, 1_500))).await;
        if let Some(status) = process.try_wait()? {
            bail!("the child exited before its kill: {status}");
        }
        process.start_kill()?;
        process.wait().await?;
        if observer.is_none() {
            let (store, app) = bank_app(&path).await?;
            let engine = app.saga::<TransferSaga>()?;
            observer = Some((store, app, engine));
        }
        let (_, _, engine) = observer.as_ref().context("observer")?;
        let (running, pending, overdue) = in_flight(engine).await?;
        let started_sagas = engine.list().await?.len();
        kills.push((started_sagas, running, pending, overdue));
    }
    let killing = started.elapsed();
    let job = Job {
        path: path.clone(),
        transfers,
        finish: true,
    };
    let mut process = child(&job)?;
    wait_line(&mut process, "SAGA-KILL DONE").await?;
    let status = tokio::time::timeout(Duration::from_secs(60), process.wait()).await??;
    assert!(status.success(), "the last run of the child: {status}");
    let finishing = started.elapsed() - killing;

    let (store, app, engine) = observer.context("observer")?;
    let events = read_all(&store).await?;

    // Accounts: per account, the events by kind and transfer.
    let mut applied: HashMap<(String, &'static str, String), usize> = HashMap::new();
    let mut from_events: BTreeMap<String, i128> = BTreeMap::new();
    let mut deposits: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut transfer_ends: HashMap<String, Vec<&'static str>> = HashMap::new();
    for e in &events {
        match e.stream_id.category() {
            "account" => {
                let id = e.stream_id.entity_id().to_owned();
                let event = e.decode::<AccountEvent>()?;
                *from_events.entry(id.clone()).or_default() += event.balance_change();
                let (kind, transfer) = match &event {
                    AccountEvent::Deposited { amount } => {
                        deposits.entry(id.clone()).or_default().push(*amount);
                        continue;
                    }
                    AccountEvent::Withdrawn { .. } => bail!("a withdrawal in {id}"),
                    AccountEvent::Debited { transfer, .. } => ("debited", transfer),
                    AccountEvent::Credited { transfer, .. } => ("credited", transfer),
                    AccountEvent::DebitReversed { transfer, .. } => ("debit reversed", transfer),
                    AccountEvent::CreditReversed { transfer, .. } => ("credit reversed", transfer),
                    _ => continue,
                };
                *applied.entry((id, kind, transfer.clone())).or_default() += 1;
            }
            "transfer" => match e.decode::<TransferEvent>()? {
                TransferEvent::Completed => transfer_ends
                    .entry(e.stream_id.entity_id().to_owned())
                    .or_default()
                    .push("completed"),
                TransferEvent::Cancelled => transfer_ends
                    .entry(e.stream_id.entity_id().to_owned())
                    .or_default()
                    .push("cancelled"),
                TransferEvent::Requested { .. } => {}
            },
            _ => {}
        }
    }
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "account commands applied twice: {twice:?}"
    );
    assert_eq!(deposits.len(), ACCOUNTS, "{deposits:?}");
    for (id, d) in &deposits {
        assert_eq!(d, &[DEPOSIT], "{id}: deposits");
    }

    // Sagas: terminal once, consistent with the transfer and the accounts;
    // a timeout fired at most once.
    let mut completed = 0;
    let mut compensated = 0;
    let mut by_timeout = 0;
    let mut timeouts_fired = 0;
    for n in 0..transfers {
        let t = transfer_id(n);
        let (from, to, _) = transfer_of(n);
        let instance = engine.load(&t).await?;
        let stream = store
            .read_stream_forward(&engine.stream_id(&t)?, 0, 100_000)
            .await?;
        let count = |ty: &str| stream.iter().filter(|e| e.event_type() == ty).count();
        let history = || {
            stream
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.event_type(),
                        String::from_utf8_lossy(&e.record.data)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let terminal = count("orchestrix.saga.Completed") + count("orchestrix.saga.Compensated");
        assert_eq!(terminal, 1, "{t}: terminal events {terminal}, {instance:?}");
        assert_eq!(count("orchestrix.saga.Failed"), 0, "{t}: failed");
        let fired = count("orchestrix.saga.TimeoutFired");
        assert!(fired <= 1, "{t}: timeout fired {fired} times");
        timeouts_fired += fired;
        let ends = transfer_ends.get(&t).cloned().unwrap_or_default();
        let n_of = |acc: &str, kind: &'static str| {
            applied
                .get(&(acc.to_owned(), kind, t.clone()))
                .copied()
                .unwrap_or(0)
        };
        match instance.status {
            SagaStatus::Completed => {
                completed += 1;
                assert_eq!(ends, ["completed"], "{t}");
                assert_eq!(
                    (n_of(&from, "debited"), n_of(&to, "credited")),
                    (1, 1),
                    "{t}"
                );
                assert_eq!(
                    n_of(&from, "debit reversed") + n_of(&to, "credit reversed"),
                    0,
                    "{t}"
                );
            }
            SagaStatus::Compensated => {
                compensated += 1;
                if instance
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("timeout"))
                {
                    by_timeout += 1;
                }
                assert_eq!(ends, ["cancelled"], "{t}");
                // No debit or credit is left applied: a command whose outcome
                // a kill kept from being recorded was planned first (the
                // engine's write-ahead record) and settled by compensation.
                // It used to be left applied, about once in ten runs.
                for (acc, done, undone, command) in [
                    (&from, "debited", "debit reversed", "\"Debit\""),
                    (&to, "credited", "credit reversed", "\"Credit\""),
                ] {
                    let left = n_of(acc, done) - n_of(acc, undone).min(n_of(acc, done));
                    if left == 0 {
                        continue;
                    }
                    let recorded = stream.iter().any(|e| {
                        e.event_type() == "orchestrix.saga.CommandSent"
                            && String::from_utf8_lossy(&e.record.data).contains(command)
                    });
                    panic!(
                        "{t}: {done} {left}x, not reversed (recorded as sent: {recorded}); saga stream:\n{}",
                        history()
                    );
                }
            }
            other => bail!("{t}: saga {other}, {instance:?}"),
        }
    }

    // The read model and the money.
    let balances = app.read_model::<Balances>()?.all().await?;
    for (id, sum) in &from_events {
        let row = balances
            .get(id)
            .or_else(|| balances.get(&format!("account-{id}")))
            .with_context(|| format!("{id} not in the balances: {balances:?}"))?;
        assert_eq!(row.balance, *sum, "{id}: read model vs events");
        assert!(*sum >= 0, "{id}: negative balance {sum}");
    }
    let total: i128 = from_events.values().sum();
    let deposited = i128::from(DEPOSIT) * ACCOUNTS as i128;
    assert_eq!(total, deposited, "money not conserved");
    println!(
        "CHAOS saga-kill: transfers {transfers} kills {KILLS} (sagas started / in flight / with a timeout pending / overdue at each kill: {kills:?}) completed {completed} compensated {compensated} (by timeout {by_timeout}) timeouts_fired {timeouts_fired} terminal_twice 0 applied_twice 0 unrecorded_commands_left_applied 0 total {total} = deposits {deposited} killing {killing:?} last_run {finishing:?}"
    );
    Ok(())
}
