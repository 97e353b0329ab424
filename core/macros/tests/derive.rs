//! Compiles and runs the derive's output against a stand-in for the
//! `orchestrix` crate (this test crate names itself `orchestrix`), so the
//! macro can be tested without the core crate.

extern crate self as orchestrix;

use orchestrix_macros::Event;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Stand-in for `orchestrix::Error`.
#[derive(Debug, PartialEq)]
pub enum Error {
    Encode(String),
    Decode(String),
    Unknown(String, &'static str),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypeInfo {
    pub event_type: &'static str,
    pub version: u32,
}

pub trait Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn event_types() -> &'static [EventTypeInfo];
    fn to_payload(&self) -> Result<Value>;
    fn from_payload(event_type: &str, payload: Value) -> Result<Self>;
}

/// Stand-in for `orchestrix::__private`, with the same signatures.
pub mod __private {
    use super::{Error, Result};
    use serde::de::DeserializeOwned;
    pub use serde_json;
    use serde_json::Value;

    pub fn untag(event_type: &str, value: Value) -> Result<Value> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                Ok(map.into_iter().next().map(|(_, v)| v).unwrap_or_default())
            }
            Value::String(_) => Ok(Value::Null),
            other => Err(Error::Encode(format!(
                "event `{event_type}`: not externally tagged: {other}"
            ))),
        }
    }

    pub fn retag<E: DeserializeOwned>(
        event_type: &str,
        variant: &str,
        payload: Value,
    ) -> Result<E> {
        let tagged = match payload {
            Value::Null => Value::String(variant.to_owned()),
            other => Value::Object([(variant.to_owned(), other)].into_iter().collect()),
        };
        serde_json::from_value(tagged).map_err(|e| decode_error(format!("event `{event_type}`"), e))
    }

    pub fn unknown<T>(event_type: &str) -> Error {
        Error::Unknown(event_type.to_owned(), std::any::type_name::<T>())
    }

    pub fn encode_error(what: String, err: serde_json::Error) -> Error {
        Error::Encode(format!("{what}: {err}"))
    }

    pub fn decode_error(what: String, err: serde_json::Error) -> Error {
        Error::Decode(format!("{what}: {err}"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.bank")]
enum AccountEvent {
    Opened {
        owner: String,
    },
    #[event(name = "MoneyDeposited", version = 2)]
    Deposited {
        amount: u64,
    },
    #[event(type = "org.legacy.Renamed")]
    Renamed(String),
    Moved(u8, u8),
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(type = "com.acme.billing.InvoiceIssued", version = 3)]
struct InvoiceIssued {
    number: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.billing")]
struct InvoicePaid(u64);

/// Generic events carry their bounds on the definition; serde's own bounds
/// are then switched off so they do not clash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.generic", version = 4)]
#[serde(bound = "")]
enum Wrapped<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    Value(T),
}

/// Inherent methods and local items with the names the generated code uses
/// must not confuse it.
#[allow(dead_code)]
impl AccountEvent {
    fn event_type(&self) -> u8 {
        0
    }
}

fn round_trip<E: Event + PartialEq + std::fmt::Debug>(
    event: &E,
    event_type: &str,
    version: u32,
    payload: Value,
) {
    assert_eq!(Event::event_type(event), event_type);
    assert_eq!(event.schema_version(), version);
    let got = event.to_payload().unwrap();
    assert_eq!(got, payload);
    assert_eq!(&E::from_payload(event_type, got).unwrap(), event);
}

#[test]
fn enum_round_trips() {
    round_trip(
        &AccountEvent::Opened {
            owner: "ann".into(),
        },
        "com.acme.bank.Opened",
        1,
        json!({ "owner": "ann" }),
    );
    round_trip(
        &AccountEvent::Deposited { amount: 5 },
        "com.acme.bank.MoneyDeposited",
        2,
        json!({ "amount": 5 }),
    );
    round_trip(
        &AccountEvent::Renamed("bob".into()),
        "org.legacy.Renamed",
        1,
        json!("bob"),
    );
    round_trip(
        &AccountEvent::Moved(1, 2),
        "com.acme.bank.Moved",
        1,
        json!([1, 2]),
    );
    round_trip(
        &AccountEvent::Closed,
        "com.acme.bank.Closed",
        1,
        Value::Null,
    );
}

#[test]
fn enum_event_types() {
    let types: Vec<(&str, u32)> = AccountEvent::event_types()
        .iter()
        .map(|i| (i.event_type, i.version))
        .collect();
    assert_eq!(
        types,
        [
            ("com.acme.bank.Opened", 1),
            ("com.acme.bank.MoneyDeposited", 2),
            ("org.legacy.Renamed", 1),
            ("com.acme.bank.Moved", 1),
            ("com.acme.bank.Closed", 1),
        ]
    );
}

#[test]
fn enum_unknown_and_bad_payloads() {
    let err =
        AccountEvent::from_payload("com.acme.bank.Deposited", json!({ "amount": 5 })).unwrap_err();
    assert!(
        matches!(err, Error::Unknown(ref t, target) if t == "com.acme.bank.Deposited" && target.ends_with("AccountEvent"))
    );
    let err = AccountEvent::from_payload("com.acme.bank.MoneyDeposited", json!({ "amount": "x" }))
        .unwrap_err();
    assert!(
        matches!(err, Error::Decode(ref m) if m.starts_with("event `com.acme.bank.MoneyDeposited`")),
        "{err:?}"
    );
}

#[test]
fn struct_round_trips() {
    round_trip(
        &InvoiceIssued { number: 7 },
        "com.acme.billing.InvoiceIssued",
        3,
        json!({ "number": 7 }),
    );
    assert_eq!(
        InvoiceIssued::event_types(),
        [EventTypeInfo {
            event_type: "com.acme.billing.InvoiceIssued",
            version: 3
        }]
    );
    round_trip(&InvoicePaid(9), "com.acme.billing.InvoicePaid", 1, json!(9));
    let err = InvoicePaid::from_payload("com.acme.billing.InvoiceIssued", json!(9)).unwrap_err();
    assert!(matches!(err, Error::Unknown(ref t, _) if t == "com.acme.billing.InvoiceIssued"));
    let err = InvoicePaid::from_payload("com.acme.billing.InvoicePaid", json!("x")).unwrap_err();
    assert!(matches!(err, Error::Decode(_)));
}

#[test]
fn generic_enum() {
    round_trip(&Wrapped::Value(3_u8), "com.acme.generic.Value", 4, json!(3));
    assert_eq!(Wrapped::<String>::event_types().len(), 1);
}
