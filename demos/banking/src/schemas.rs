//! The bank's events as Avro schemas, one file per event type and version in
//! `demos/banking/schemas/` (`{event type}.v{version}.avsc`), compiled in.
//!
//! They are what the bank writes on a bus URL with `format=avro`
//! (`kafka://...?format=avro&registry=http://...`): each event in the
//! Confluent wire format under its record-name subject. A change to a file
//! is checked against what the registry has with
//! `orchestrix schema check --registry URL demos/banking/schemas`.
//!
//! ```
//! let schemas = orchestrix_demo_banking::schemas::avro_schemas();
//! assert_eq!(schemas.latest_version("com.orchestrix.bank.account.Opened"), Some(1));
//! ```

use orchestrix_avro::AvroSchemas;

macro_rules! schema {
    ($event_type:literal, $version:literal) => {
        (
            $event_type,
            $version,
            include_str!(concat!(
                "../schemas/",
                $event_type,
                ".v",
                stringify!($version),
                ".avsc"
            )),
        )
    };
}

/// `(event type, version, schema text)` of every file in `schemas/`.
pub const FILES: [(&str, u32, &str); 16] = [
    schema!("com.orchestrix.bank.account.Opened", 1),
    schema!("com.orchestrix.bank.account.Deposited", 1),
    schema!("com.orchestrix.bank.account.Withdrawn", 1),
    schema!("com.orchestrix.bank.account.Suspended", 1),
    schema!("com.orchestrix.bank.account.Reactivated", 1),
    schema!("com.orchestrix.bank.account.Closed", 1),
    schema!("com.orchestrix.bank.account.Debited", 1),
    schema!("com.orchestrix.bank.account.Credited", 1),
    schema!("com.orchestrix.bank.account.DebitReversed", 1),
    schema!("com.orchestrix.bank.account.CreditReversed", 1),
    schema!("com.orchestrix.bank.transfer.Requested", 1),
    schema!("com.orchestrix.bank.transfer.Completed", 1),
    schema!("com.orchestrix.bank.transfer.Cancelled", 1),
    schema!("com.orchestrix.bank.transfersaga.Started", 1),
    schema!("com.orchestrix.bank.transfersaga.DebitConfirmed", 1),
    schema!("com.orchestrix.bank.transfersaga.CreditConfirmed", 1),
];

/// The catalog of [`FILES`].
///
/// # Panics
/// Never for the files shipped (a unit test parses them all).
#[must_use]
pub fn avro_schemas() -> AvroSchemas {
    FILES.iter().fold(
        AvroSchemas::new(),
        |schemas, (event_type, version, text)| {
            schemas
                .with(event_type, *version, text)
                .unwrap_or_else(|e| panic!("schemas/{event_type}.v{version}.avsc: {e}"))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountEvent, TransferEvent, TransferSagaEvent};

    /// Every event type the bank writes has a schema at its current version,
    /// every file is compiled in, and each schema takes what the event
    /// serializes to and gives back the same event.
    #[test]
    fn every_event_has_its_schema_and_round_trips() {
        let schemas = avro_schemas();
        schemas.verify::<AccountEvent>().unwrap();
        schemas.verify::<TransferEvent>().unwrap();
        schemas.verify::<TransferSagaEvent>().unwrap();
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
            .unwrap()
            .count();
        assert_eq!(on_disk, FILES.len(), "a schema file is not in FILES");

        let codec = orchestrix_avro::AvroCodec::new(schemas);
        let t = || "t1".to_owned();
        let accounts = [
            AccountEvent::Opened {
                owner: "Ada".into(),
            },
            AccountEvent::Deposited { amount: 1 },
            AccountEvent::Withdrawn { amount: 2 },
            AccountEvent::Suspended { reason: "r".into() },
            AccountEvent::Reactivated,
            AccountEvent::Closed,
            AccountEvent::Debited {
                amount: 3,
                transfer: t(),
            },
            AccountEvent::Credited {
                amount: 4,
                transfer: t(),
            },
            AccountEvent::DebitReversed {
                amount: 5,
                transfer: t(),
            },
            AccountEvent::CreditReversed {
                amount: u64::try_from(i64::MAX).unwrap(),
                transfer: t(),
            },
        ];
        for e in accounts {
            assert_eq!(round_trip(&codec, &e), e);
        }
        for e in [
            TransferEvent::Requested {
                from: "a".into(),
                to: "b".into(),
                amount: 6,
            },
            TransferEvent::Completed,
            TransferEvent::Cancelled,
        ] {
            assert_eq!(round_trip(&codec, &e), e);
        }
        for e in [
            TransferSagaEvent::Started {
                from: "a".into(),
                to: "b".into(),
                amount: 7,
            },
            TransferSagaEvent::DebitConfirmed,
            TransferSagaEvent::CreditConfirmed,
        ] {
            assert_eq!(round_trip(&codec, &e), e);
        }
    }

    fn round_trip<E: orchestrix::Event>(codec: &orchestrix_avro::AvroCodec, e: &E) -> E {
        use orchestrix::codec::Codec as _;
        let payload = e.to_payload().unwrap();
        let bytes = codec
            .encode(e.event_type(), e.schema_version(), &payload)
            .unwrap();
        let back = codec
            .decode(e.event_type(), e.schema_version(), &bytes)
            .unwrap();
        E::from_payload(e.event_type(), back).unwrap()
    }
}
