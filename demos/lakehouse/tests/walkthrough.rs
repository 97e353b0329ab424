//! The lakehouse demo as a user runs it: the binary twice in a row on one
//! SQLite store and lake (the README command's shape), and twice on one
//! PostgreSQL schema. The printed report is parsed and checked against what
//! the demo put in: every event either in the lake or quarantined, the
//! expected quarantine per rule, the forgotten customer erased in the lake
//! with the rest of the row intact; then the lake is read independently.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use orchestrix_demo_lakehouse::{CUSTOMERS, FORGOTTEN, ORDERS};
use orchestrix_lakehouse::{optimize, read_rows};
use orchestrix_testkit::services::{Service, require};

const CUSTOMER_COUNT: usize = 12;
const ORDER_COUNT: usize = 60;

/// `dataset -> [events, in lake, quarantined, erased]` from the report table.
fn parse(report: &str) -> BTreeMap<String, [usize; 4]> {
    let mut out = BTreeMap::new();
    for line in report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| dataset"))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let n = |i: usize| cells[i].parse::<usize>().unwrap();
        out.insert(cells[0].to_owned(), [n(2), n(3), n(4), n(5)]);
    }
    out
}

async fn run_binary(store: &str, dir: &Path, run: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrix-demo-lakehouse"))
        .args(["--store", store, "--run", run, "--lake"])
        .arg(dir.join("lake"))
        .arg("--keys")
        .arg(dir.join("keys.db"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("the demo finishes within 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn check_report(report: &str, run: &str) {
    let table = parse(report);
    // Orders: j % 20 in {5, 10, 15, 19} are bad (negative amount, unknown
    // currency, no item, an amount that breaks the contract).
    let bad_orders = (1..=ORDER_COUNT)
        .filter(|j| [5, 10, 15, 19].contains(&(j % 20)))
        .count();
    // Customers: every 7th has a country that is not a code.
    let bad_customers = (1..=CUSTOMER_COUNT).filter(|i| i % 7 == 0).count();
    assert_eq!(
        table[CUSTOMERS],
        [
            CUSTOMER_COUNT,
            CUSTOMER_COUNT - bad_customers,
            bad_customers,
            1
        ],
        "{report}"
    );
    assert_eq!(
        table[ORDERS],
        [ORDER_COUNT, ORDER_COUNT - bad_orders, bad_orders, 0],
        "{report}"
    );
    assert_eq!(table[FORGOTTEN], [1, 1, 0, 0], "{report}");
    assert!(
        report.contains(&format!(
            "forgotten {run}-c1: personal columns erased, rest intact: yes"
        )),
        "{report}"
    );
    assert!(
        report.contains("other customers still readable: yes"),
        "{report}"
    );
    assert!(
        report.contains("contract change refused: com.shop.CustomerRegistered v3")
            && report.contains("vat_id"),
        "{report}"
    );
    assert!(
        report.contains("quarantined 3: field `amount` does not hold a double value"),
        "{report}"
    );
    assert!(
        report.contains("quarantined 3: quality check failed: currency must be EUR, USD or GBP"),
        "{report}"
    );
}

/// The lake as a reader without the keys sees it: both runs' rows, no clear
/// personal data.
async fn check_lake(dir: &Path, runs: usize) {
    let customers = read_rows(&dir.join("lake").join(CUSTOMERS)).await.unwrap();
    let bad = (1..=CUSTOMER_COUNT).filter(|i| i % 7 == 0).count();
    assert_eq!(customers.len(), runs * (CUSTOMER_COUNT - bad));
    for row in &customers {
        let email = row["email"].as_str().unwrap();
        assert!(email.starts_with("orx-pii:v1:"), "{email}");
        assert!(row["country"].as_str().is_some_and(|c| c.len() == 2));
    }
    // v2's optional column: null for the v1 rows.
    assert!(customers.iter().any(|r| r["newsletter"].is_boolean()));
    assert!(customers.iter().any(|r| r["newsletter"].is_null()));
    let orders = read_rows(&dir.join("lake").join(ORDERS)).await.unwrap();
    let bad = (1..=ORDER_COUNT)
        .filter(|j| [5, 10, 15, 19].contains(&(j % 20)))
        .count();
    assert_eq!(orders.len(), runs * (ORDER_COUNT - bad));
    // Compaction keeps every row.
    optimize(&dir.join("lake").join(ORDERS), 128 << 20)
        .await
        .unwrap();
    assert_eq!(
        read_rows(&dir.join("lake").join(ORDERS)).await.unwrap(),
        orders
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_twice_on_one_sqlite_store_and_lake() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("lakehouse.db").display());
    for run in ["first", "second"] {
        let report = run_binary(&store, dir.path(), run).await;
        check_report(&report, run);
    }
    check_lake(dir.path(), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_twice_on_one_postgres_store() {
    let Some(base) = require(Service::Postgres) else {
        return;
    };
    let unique = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = format!("{base}{sep}schema=lakehouse_{unique}");
    let dir = tempfile::tempdir().unwrap();
    for run in [format!("{unique}a"), format!("{unique}b")] {
        let report = run_binary(&store, dir.path(), &run).await;
        check_report(&report, &run);
    }
    check_lake(dir.path(), 2).await;
}
