//! Upcasters: transform stored payloads from schema version n to n+1.
//!
//! Chained, and applied by [`crate::Store`] on every read path (aggregate load,
//! subscriptions, projections, relays, exports), so no reader ever sees an old
//! version of a payload.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::event::EventRecord;

type UpcastFn = Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value> + Send + Sync>;

struct Step {
    to_type: String,
    upcast: UpcastFn,
}

/// A chain of upcasters keyed by `(event type, from version)`.
///
/// ```
/// use orchestrix::Upcasters;
/// use serde_json::json;
///
/// let upcasters = Upcasters::new()
///     // v1 had `amount` in euros as a float; v2 stores cents.
///     .add("com.acme.bank.MoneyDeposited", 1, |mut v| {
///         let euros = v["amount"].as_f64().unwrap_or_default();
///         v["amount"] = json!((euros * 100.0).round() as u64);
///         Ok(v)
///     })
///     // v2 → v3 added a currency.
///     .add("com.acme.bank.MoneyDeposited", 2, |mut v| {
///         v["currency"] = json!("EUR");
///         Ok(v)
///     });
/// let (ty, version, value) = upcasters.upcast_value("com.acme.bank.MoneyDeposited", 1, json!({"amount": 1.5}))?;
/// assert_eq!((ty.as_str(), version), ("com.acme.bank.MoneyDeposited", 3));
/// assert_eq!(value, json!({"amount": 150, "currency": "EUR"}));
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Default, Clone)]
pub struct Upcasters {
    steps: Arc<HashMap<(String, u32), Arc<Step>>>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.steps.keys().collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

/// Longest chain followed before the chain is declared cyclic.
const MAX_CHAIN: u32 = 1_000;

impl Upcasters {
    /// No upcasters.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the step `event_type` v`from_version` → v`from_version + 1`.
    #[must_use]
    pub fn add(
        self,
        event_type: &str,
        from_version: u32,
        upcast: impl Fn(serde_json::Value) -> Result<serde_json::Value> + Send + Sync + 'static,
    ) -> Self {
        self.add_renaming(event_type, from_version, event_type, upcast)
    }

    /// Adds a step that also renames the event type (the new type starts at
    /// version `from_version + 1`).
    #[must_use]
    pub fn add_renaming(
        mut self,
        event_type: &str,
        from_version: u32,
        new_type: &str,
        upcast: impl Fn(serde_json::Value) -> Result<serde_json::Value> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.steps).insert(
            (event_type.to_owned(), from_version),
            Arc::new(Step {
                to_type: new_type.to_owned(),
                upcast: Arc::new(upcast),
            }),
        );
        self
    }

    /// Whether no upcaster is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether a stored `(type, version)` needs upcasting.
    #[must_use]
    pub fn applies_to(&self, event_type: &str, version: u32) -> bool {
        !self.steps.is_empty() && self.steps.contains_key(&(event_type.to_owned(), version))
    }

    /// Runs the chain on a decoded payload; returns the final type, version and payload.
    ///
    /// # Errors
    /// The first upcaster's error, or [`Error::Corrupted`] for a cyclic chain.
    pub fn upcast_value(
        &self,
        event_type: &str,
        version: u32,
        mut value: serde_json::Value,
    ) -> Result<(String, u32, serde_json::Value)> {
        let mut ty = event_type.to_owned();
        for v in version..version.saturating_add(MAX_CHAIN) {
            let Some(step) = self.steps.get(&(ty.clone(), v)) else {
                return Ok((ty, v, value));
            };
            value = (step.upcast)(value)?;
            ty.clone_from(&step.to_type);
        }
        Err(Error::corrupted(
            format!("upcaster chain for `{event_type}`"),
            "longer than 1000 steps (cyclic?)",
        ))
    }

    /// Upcasts a stored record: decode with `codec`, run the chain, re-encode.
    /// Records that need no upcasting are returned untouched, without decoding.
    ///
    /// # Errors
    /// A decode, upcast or encode failure.
    pub fn upcast_record(&self, codec: &dyn Codec, record: &mut EventRecord) -> Result<()> {
        if !self.applies_to(&record.event_type, record.schema_version) {
            return Ok(());
        }
        let value = codec.decode(&record.event_type, record.schema_version, &record.data)?;
        let (ty, version, value) =
            self.upcast_value(&record.event_type, record.schema_version, value)?;
        record.data = codec.encode(&ty, version, &value)?;
        record.event_type = ty;
        record.schema_version = version;
        codec.content_type().clone_into(&mut record.content_type);
        Ok(())
    }
}
