//! A customer aggregate with personal fields, a projection of it, and helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrix::runtime::Projection;
use orchestrix::store::Filter;
use orchestrix::{Aggregate, Application, Command, Event, RecordedEvent, Store};
use orchestrix_gdpr::{Gdpr, Personal, PersonalFields, Vault};
use serde::{Deserialize, Serialize};

pub const REGISTERED: &str = "com.acme.crm.CustomerRegistered";
pub const EMAIL: &str = "ada.lovelace@example.com";
pub const NAME: &str = "Ada Lovelace";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.crm")]
pub enum CustomerEvent {
    CustomerRegistered {
        customer_id: String,
        name: Personal<String>,
        email: Personal<String>,
        plan: String,
    },
    PlanChanged {
        customer_id: String,
        plan: String,
    },
}

#[derive(Debug, Command)]
#[command(id = id)]
pub enum CustomerCommand {
    Register {
        id: String,
        name: String,
        email: String,
    },
    ChangePlan {
        id: String,
        plan: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Customer {
    pub name: Option<Personal<String>>,
    pub email: Option<Personal<String>>,
    pub plan: String,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

impl Aggregate for Customer {
    const CATEGORY: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = Never;

    fn handle(&self, command: &CustomerCommand) -> Result<Vec<CustomerEvent>, Never> {
        Ok(vec![match command {
            CustomerCommand::Register { id, name, email } => CustomerEvent::CustomerRegistered {
                customer_id: id.clone(),
                name: name.clone().into(),
                email: email.clone().into(),
                plan: "basic".into(),
            },
            CustomerCommand::ChangePlan { id, plan } => CustomerEvent::PlanChanged {
                customer_id: id.clone(),
                plan: plan.clone(),
            },
        }])
    }

    fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::CustomerRegistered {
                name, email, plan, ..
            } => {
                self.name = Some(name.clone());
                self.email = Some(email.clone());
                plan.clone_into(&mut self.plan);
            }
            CustomerEvent::PlanChanged { plan, .. } => plan.clone_into(&mut self.plan),
        }
    }
}

pub fn fields() -> PersonalFields {
    PersonalFields::new()
        .event(REGISTERED, "/customer_id", ["/name", "/email"])
        .unwrap()
}

/// A unique customer id per test run.
pub fn customer_id() -> String {
    format!("c{}", uuid::Uuid::new_v4().simple())
}

pub fn app(gdpr: &Gdpr) -> Application {
    Application::builder(Store::memory().with_codec(gdpr.codec()))
        .aggregate::<Customer>()
        .build()
        .unwrap()
}

pub fn gdpr(vault: Vault) -> Gdpr {
    Gdpr::new(vault, fields())
}

/// The raw bytes of every stored event, read past the codec.
pub async fn raw_bytes(store: &Store) -> Vec<String> {
    store
        .backend()
        .events
        .read_all(0, 10_000, &Filter::all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.record.data).into_owned())
        .collect()
}

/// Customer e-mails by id, decoded with the store's codec.
#[derive(Debug)]
pub struct Directory {
    pub store: Store,
    pub rows: Mutex<BTreeMap<String, Personal<String>>>,
}

impl Directory {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            rows: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn email(&self, id: &str) -> Option<Personal<String>> {
        self.rows.lock().unwrap().get(id).cloned()
    }
}

#[async_trait]
impl Projection for Directory {
    fn name(&self) -> &str {
        "directory"
    }

    fn filter(&self) -> Filter {
        Filter::all().event_types([REGISTERED])
    }

    async fn apply(&self, event: &RecordedEvent) -> orchestrix::Result<()> {
        if let CustomerEvent::CustomerRegistered {
            customer_id, email, ..
        } = self.store.decode::<CustomerEvent>(event)?
        {
            self.rows.lock().unwrap().insert(customer_id, email);
        }
        Ok(())
    }

    async fn reset(&self) -> orchestrix::Result<()> {
        self.rows.lock().unwrap().clear();
        Ok(())
    }
}
