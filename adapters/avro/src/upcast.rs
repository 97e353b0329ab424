//! [`ResolutionChain`]: core upcasters built from the schema catalog.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use orchestrix::Upcasters;
use serde_json::Value;

use crate::codec::AvroCodec;

type StepFn = Arc<dyn Fn(Value) -> orchestrix::Result<Value> + Send + Sync>;

/// Builds the [`Upcasters`] that bring every stored payload to the latest
/// schema of its type, one version at a time: each step `n → n+1` is Avro
/// schema resolution (new fields take their defaults, fields renamed with an
/// alias are carried over, removed fields dropped, numbers promoted, unknown
/// enum symbols mapped to the enum's default) unless you give an explicit
/// upcaster for it, for what resolution cannot express (a field renamed
/// without an alias, a unit change, a value computed from others).
///
/// Resolution runs step by step rather than from the stored version straight
/// to the latest, so that an explicit step sees the payload in the shape of
/// the version it was written for, with nothing dropped yet.
///
/// ```
/// use orchestrix_avro::{AvroCodec, AvroSchemas};
/// use serde_json::json;
///
/// let t = "com.acme.Deposited";
/// let codec = AvroCodec::new(AvroSchemas::new()
///     .with(t, 1, r#"{"type":"record","name":"Deposited","fields":[{"name":"euros","type":"double"}]}"#)?
///     .with(t, 2, r#"{"type":"record","name":"Deposited","fields":[{"name":"euros","type":"double"},
///         {"name":"currency","type":"string","default":"EUR"}]}"#)?
///     .with(t, 3, r#"{"type":"record","name":"Deposited","fields":[{"name":"cents","type":"long"},
///         {"name":"currency","type":"string","default":"EUR"}]}"#)?);
/// let upcasters = codec
///     .upcasters()
///     .step(t, 2, |v| Ok(json!({"cents": (v["euros"].as_f64().unwrap_or(0.0) * 100.0).round() as i64, "currency": v["currency"]})))
///     .build();
/// let (_, version, value) = upcasters.upcast_value(t, 1, json!({"euros": 1.5}))?;
/// assert_eq!((version, value), (3, json!({"cents": 150, "currency": "EUR"})));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ResolutionChain {
    codec: AvroCodec,
    explicit: HashMap<(String, u32), StepFn>,
}

impl fmt::Debug for ResolutionChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.explicit.keys().collect();
        keys.sort();
        f.debug_struct("ResolutionChain")
            .field("explicit", &keys)
            .finish_non_exhaustive()
    }
}

impl ResolutionChain {
    /// A chain over a codec's catalog with no explicit step yet.
    #[must_use]
    pub fn new(codec: AvroCodec) -> Self {
        Self {
            codec,
            explicit: HashMap::new(),
        }
    }

    /// Uses `upcast` for `event_type` v`from_version` → v`from_version + 1`
    /// instead of resolution. It receives the payload in the shape of
    /// `from_version` and returns it in the shape of the next version.
    #[must_use]
    pub fn step(
        mut self,
        event_type: &str,
        from_version: u32,
        upcast: impl Fn(Value) -> orchestrix::Result<Value> + Send + Sync + 'static,
    ) -> Self {
        self.explicit
            .insert((event_type.to_owned(), from_version), Arc::new(upcast));
        self
    }

    /// The upcasters: explicit steps, and resolution for every other pair of
    /// consecutive registered versions.
    #[must_use]
    pub fn build(self) -> Upcasters {
        let mut upcasters = Upcasters::new();
        for ((event_type, from), f) in &self.explicit {
            let f = Arc::clone(f);
            upcasters = upcasters.add(event_type, *from, move |v| f(v));
        }
        let schemas = self.codec.schemas();
        for event_type in schemas.event_types() {
            for from in schemas.versions(event_type) {
                let key = (event_type.to_owned(), from);
                if self.explicit.contains_key(&key) || schemas.get(event_type, from + 1).is_none() {
                    continue;
                }
                let codec = self.codec.clone();
                let ty = event_type.to_owned();
                upcasters = upcasters.add(event_type, from, move |v| {
                    codec.resolve_value(&ty, from, from + 1, &v).map_err(|e| {
                        orchestrix::Error::decode(
                            format!("event `{ty}` v{from} resolved to v{}", from + 1),
                            e,
                        )
                    })
                });
            }
        }
        upcasters
    }
}
