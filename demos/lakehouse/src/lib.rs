//! The lakehouse demo: datasets under Avro data contracts (registered in the
//! project's schema registry, compatibility checked), personal fields
//! encrypted per customer (GDPR crypto-shredding), quality checks with a
//! quarantine (dead letters), publication to Delta tables by the lakehouse
//! sink, a forget request end to end, and a report.
//!
//! [`run`] does one walkthrough; every run uses fresh ids (`{run}-c1`, ...),
//! so runs on the same store and lake add up, and the report counts this
//! run's rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use orchestrix::runtime::ProjectionRunner;
use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_gdpr::keystore::KeyStore;
use orchestrix_gdpr::{ForgetRequest, Gdpr, PersonalFields, Vault, is_erased};
use orchestrix_lakehouse::schema::AvroSchemas;
use orchestrix_lakehouse::{
    LakehouseSink, QualityCheck, live_files, read_rows_with, table_dir_name,
};
use orchestrix_schema_registry::{
    CompatibilityLevel, EmbeddedRegistry, SchemaRegistry, VersionSpec,
};
use serde_json::{Map, Value, json};

/// The customers dataset.
pub const CUSTOMERS: &str = "com.shop.CustomerRegistered";
/// The orders dataset.
pub const ORDERS: &str = "com.shop.OrderPlaced";
/// The GDPR audit trail (appended by a forget).
pub const FORGOTTEN: &str = "orchestrix.gdpr.SubjectForgotten";
/// The sink's name: its Delta app id and its dead-letter consumer.
pub const SINK: &str = "lakehouse-demo";

const CUSTOMER_V1: &str = include_str!("../contracts/customer_registered_v1.avsc");
const CUSTOMER_V2: &str = include_str!("../contracts/customer_registered_v2.avsc");
const CUSTOMER_V3: &str = include_str!("../contracts/customer_registered_v3_incompatible.avsc");
const ORDER_V1: &str = include_str!("../contracts/order_placed_v1.avsc");

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The event store URL (for the report).
    pub store_url: String,
    /// The lake's root directory.
    pub lake: PathBuf,
    /// This run's id (a prefix of every id).
    pub run: String,
    /// Customers registered (the first two thirds under contract v1, the rest v2).
    pub customers: usize,
    /// Orders placed (a few of them bad on purpose).
    pub orders: usize,
}

/// One dataset's line of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetLine {
    /// The contract versions events were written with.
    pub versions: Vec<u32>,
    /// Events appended in this run.
    pub events: usize,
    /// This run's rows in the lake table.
    pub in_lake: usize,
    /// This run's events quarantined (dead letters).
    pub quarantined: usize,
    /// This run's rows whose personal fields read as erased.
    pub erased: usize,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per dataset (event type).
    pub datasets: BTreeMap<String, DatasetLine>,
    /// The contract change the registry refused, with its reason.
    pub refused_contract: String,
    /// Quarantine reasons of this run, with counts.
    pub reasons: BTreeMap<String, usize>,
    /// The forgotten subject.
    pub forgotten: String,
    /// Whether every lake row of the forgotten subject reads erased in its
    /// personal columns while its other columns are intact.
    pub forgotten_erased_rest_intact: bool,
    /// Another customer's email still reads in clear.
    pub others_readable: bool,
    /// Tables in the lake and their live files.
    pub tables: BTreeMap<String, usize>,
}

impl Report {
    /// The report as printed.
    #[must_use]
    pub fn render(&self, options: &Options) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Lakehouse demo: run {}, store {}, lake {}",
            options.run,
            orchestrix::url::redact(&options.store_url),
            options.lake.display()
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| dataset | contract versions | events | in lake | quarantined | personal erased |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
        for (name, d) in &self.datasets {
            let mut versions: Vec<String> = d.versions.iter().map(|v| format!("v{v}")).collect();
            if versions.is_empty() {
                versions.push("-".to_owned());
            }
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} |",
                versions.join(","),
                d.events,
                d.in_lake,
                d.quarantined,
                d.erased
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "contract change refused: {}", self.refused_contract);
        for (reason, n) in &self.reasons {
            let _ = writeln!(out, "quarantined {n}: {reason}");
        }
        let _ = writeln!(
            out,
            "forgotten {}: personal columns erased, rest intact: {}",
            self.forgotten,
            if self.forgotten_erased_rest_intact {
                "yes"
            } else {
                "NO"
            }
        );
        let _ = writeln!(
            out,
            "other customers still readable: {}",
            if self.others_readable { "yes" } else { "NO" }
        );
        for (table, files) in &self.tables {
            let _ = writeln!(out, "table {table}: {files} live files");
        }
        out
    }
}

/// The data contracts: registers them in `registry` (backward compatible),
/// tries an incompatible change (refused: returns the reason), and returns
/// the lake's column schemas and the personal fields they mark.
///
/// # Errors
/// When a contract cannot be registered or parsed.
pub async fn contracts(
    registry: &dyn SchemaRegistry,
) -> anyhow::Result<(AvroSchemas, PersonalFields, String)> {
    for subject in [CUSTOMERS, ORDERS] {
        registry
            .set_config(Some(subject), CompatibilityLevel::Backward)
            .await?;
    }
    registry.register(CUSTOMERS, CUSTOMER_V1).await?;
    registry.register(CUSTOMERS, CUSTOMER_V2).await?;
    registry.register(ORDERS, ORDER_V1).await?;
    let refused = match registry.register(CUSTOMERS, CUSTOMER_V3).await {
        Ok(id) => anyhow::bail!("the registry accepted an incompatible contract (id {id})"),
        Err(e) => format!("{CUSTOMERS} v3 (new required field `vat_id`): {e}"),
    };
    let mut schemas = AvroSchemas::new();
    let mut personal = PersonalFields::new();
    for subject in [CUSTOMERS, ORDERS] {
        for version in registry.versions(subject).await? {
            let v = registry
                .version(subject, VersionSpec::Number(version))
                .await?;
            schemas.add(subject, version, &v.schema)?;
            if let Some((subject_field, fields)) = personal_fields(&v.schema)? {
                personal = personal.event_version(subject, version, &subject_field, fields)?;
            }
        }
    }
    Ok((schemas, personal, refused))
}

/// The subject field and the personal fields an Avro contract marks
/// (`"subject": true`, `"personal": true`), as JSON pointers.
fn personal_fields(schema: &str) -> anyhow::Result<Option<(String, Vec<String>)>> {
    let value: Value = serde_json::from_str(schema)?;
    let fields = value["fields"].as_array().context("a record schema")?;
    let mut subject = None;
    let mut personal = Vec::new();
    for f in fields {
        let name = f["name"].as_str().context("a field name")?;
        if f["subject"] == true {
            subject = Some(format!("/{name}"));
        }
        if f["personal"] == true {
            personal.push(format!("/{name}"));
        }
    }
    Ok(match subject {
        Some(s) if !personal.is_empty() => Some((s, personal)),
        _ => None,
    })
}

/// Orders: a positive amount, a known currency, at least one item.
#[derive(Debug)]
pub struct OrderRules;

impl QualityCheck for OrderRules {
    fn check(&self, event: &RecordedEvent, payload: &Map<String, Value>) -> Result<(), String> {
        if event.event_type() != ORDERS {
            return Ok(());
        }
        if let Some(amount) = payload.get("amount").and_then(Value::as_f64)
            && amount <= 0.0
        {
            return Err(format!("amount must be positive (got {amount})"));
        }
        if let Some(c) = payload.get("currency").and_then(Value::as_str)
            && !["EUR", "USD", "GBP"].contains(&c)
        {
            return Err("currency must be EUR, USD or GBP".to_owned());
        }
        if payload
            .get("items")
            .and_then(Value::as_i64)
            .is_some_and(|n| n < 1)
        {
            return Err("an order needs at least one item".to_owned());
        }
        Ok(())
    }
}

/// Customers: a two-letter country code.
#[derive(Debug)]
pub struct CustomerRules;

impl QualityCheck for CustomerRules {
    fn check(&self, event: &RecordedEvent, payload: &Map<String, Value>) -> Result<(), String> {
        if event.event_type() != CUSTOMERS {
            return Ok(());
        }
        match payload.get("country").and_then(Value::as_str) {
            Some(c) if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_uppercase()) => Ok(()),
            Some(other) => Err(format!(
                "country must be an ISO 3166 alpha-2 code (got `{other}`)"
            )),
            None => Err("country is missing".to_owned()),
        }
    }
}

fn field<'a>(row: &'a Map<String, Value>, name: &str) -> &'a Value {
    row.get(name).unwrap_or(&Value::Null)
}

async fn append(
    store: &Store,
    gdpr: &Gdpr,
    stream: &StreamId,
    event_type: &str,
    version: u32,
    payload: &Value,
) -> anyhow::Result<()> {
    let mut record = EventRecord::json(event_type, version, payload);
    // Encrypts the personal fields, as an application's `execute` does.
    record.data = gdpr.codec().encode(event_type, version, payload)?;
    store
        .append(stream, ExpectedRevision::NoStream, vec![record])
        .await?;
    Ok(())
}

async fn run_sink(store: &Store, sink: Arc<LakehouseSink>) -> anyhow::Result<()> {
    let runner = ProjectionRunner::transactional(store.clone(), sink)
        .batch_size(1000)
        .start()
        .await?;
    let head = store.head_position().await?;
    tokio::time::timeout(Duration::from_secs(120), runner.wait_until_caught_up(head))
        .await
        .context("the lake sink did not catch up within 120 s")??;
    runner.shutdown().await?;
    Ok(())
}

/// Runs the walkthrough on `store`, with keys in `keys`.
///
/// # Errors
/// When a step fails.
pub async fn run(
    store: Store,
    keys: Arc<dyn KeyStore>,
    options: &Options,
) -> anyhow::Result<Report> {
    let registry = EmbeddedRegistry::memory();
    let (schemas, personal, refused) = contracts(&registry).await?;
    let gdpr = Gdpr::new(Vault::from_arc(keys)?, personal);
    let run = &options.run;
    let mut report = Report {
        refused_contract: refused,
        ..Report::default()
    };

    // Ingest: customers (v1, then v2 with the new optional field) and orders,
    // a few of them bad on purpose.
    let customers = options.customers.max(2);
    for i in 1..=customers {
        let id = format!("{run}-c{i}");
        let v2 = i > customers * 2 / 3;
        let country = if i % 7 == 0 {
            "Germany"
        } else {
            ["NL", "BE", "FR", "DE"][i % 4]
        };
        let plan = if i % 3 == 0 { "pro" } else { "basic" };
        let mut payload = json!({
            "customer_id": id,
            "email": format!("customer{i}@example.com"),
            "name": format!("Customer {i}"),
            "country": country,
            "plan": plan,
        });
        if v2 {
            payload["newsletter"] = json!(i % 2 == 0);
        }
        let version = if v2 { 2 } else { 1 };
        append(
            &store,
            &gdpr,
            &StreamId::new("customer", &id)?,
            CUSTOMERS,
            version,
            &payload,
        )
        .await?;
        let line = report.datasets.entry(CUSTOMERS.to_owned()).or_default();
        line.events += 1;
        if !line.versions.contains(&version) {
            line.versions.push(version);
        }
    }
    for j in 1..=options.orders {
        let id = format!("{run}-o{j}");
        let customer = format!("{run}-c{}", 1 + j % customers);
        let amount = 10.0 + f64::from(u32::try_from(j % 50).unwrap_or(0));
        let currency = ["EUR", "USD", "GBP"][j % 3];
        let mut payload = json!({
            "order_id": id, "customer_id": customer,
            "amount": amount, "currency": currency, "items": 1 + (j % 4),
        });
        match j % 20 {
            5 => payload["amount"] = json!(-5.0),
            10 => payload["currency"] = json!("XYZ"),
            15 => payload["items"] = json!(0),
            19 => payload["amount"] = json!("12.50"), // breaks the contract
            _ => {}
        }
        append(
            &store,
            &gdpr,
            &StreamId::new("order", &id)?,
            ORDERS,
            1,
            &payload,
        )
        .await?;
        let line = report.datasets.entry(ORDERS.to_owned()).or_default();
        line.events += 1;
        if !line.versions.contains(&1) {
            line.versions.push(1);
        }
    }

    // Publication: the sink, with the contracts' columns and the checks.
    let sink = || {
        Arc::new(
            LakehouseSink::builder(store.clone(), SINK, &options.lake)
                .filter(Filter::all().event_types([CUSTOMERS, ORDERS, FORGOTTEN]))
                .schemas(Arc::new(schemas.clone()))
                .check(Arc::new(OrderRules))
                .check(Arc::new(CustomerRules))
                // One lake per store: another store's positions are refused.
                .source(orchestrix::url::redact(&options.store_url))
                .build(),
        )
    };
    run_sink(&store, sink()).await?;

    // A forget request, end to end: key destroyed, audit event, lake re-read.
    let subject = format!("{run}-c1");
    gdpr.forget(
        &store,
        ForgetRequest::new(&subject)
            .requested_by("dpo@shop.example")
            .reason("GDPR Art. 17 request"),
    )
    .await?;
    run_sink(&store, sink()).await?;
    report.forgotten = subject.clone();
    report
        .datasets
        .entry(FORGOTTEN.to_owned())
        .or_default()
        .events += 1;

    // Read the lake back through the GDPR codec.
    let codec = gdpr.codec();
    let mut forgotten_ok = true;
    let mut forgotten_rows = 0;
    let mut others_ok = true;
    for (dataset, line) in &mut report.datasets {
        let table = options.lake.join(table_dir_name(dataset));
        let rows = read_rows_with(&table, &*codec).await?;
        for row in rows.iter().filter(|r| {
            field(r, "ce_subject")
                .as_str()
                .is_some_and(|s| s.contains(run.as_str()))
        }) {
            line.in_lake += 1;
            let erased = is_erased(field(row, "email")) && is_erased(field(row, "name"));
            if erased {
                line.erased += 1;
            }
            if dataset == CUSTOMERS {
                if field(row, "customer_id") == subject.as_str() {
                    forgotten_rows += 1;
                    forgotten_ok &= erased
                        && field(row, "country").is_string()
                        && field(row, "plan").is_string()
                        && field(row, "ce_id").is_string();
                } else {
                    others_ok &= field(row, "email")
                        .as_str()
                        .is_some_and(|e| e.contains('@'));
                }
            }
        }
        report
            .tables
            .insert(dataset.clone(), live_files(&table).await?.len());
    }
    report.forgotten_erased_rest_intact = forgotten_ok && forgotten_rows == 1;
    report.others_readable = others_ok;

    // The quarantine of this run.
    let letters = store
        .backend()
        .dead_letters
        .list_dead_letters(Some(SINK), 100_000)
        .await?;
    for letter in letters.iter().filter(|l| {
        l.stream_id
            .as_deref()
            .is_some_and(|s| s.contains(run.as_str()))
    }) {
        if let Some(line) = letter
            .event_type
            .as_ref()
            .and_then(|t| report.datasets.get_mut(t))
        {
            line.quarantined += 1;
        }
        let reason = letter
            .reason
            .split_once(": ")
            .map_or(letter.reason.as_str(), |(_, r)| r)
            .to_owned();
        *report.reasons.entry(reason).or_default() += 1;
    }
    Ok(report)
}
