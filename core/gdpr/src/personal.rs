//! [`Personal<T>`]: a personal field's value, or the marker that it was erased.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, SerializeMap as _, Serializer};
use serde_json::Value;

use crate::crypto::{ERASED_TOKEN, TOKEN_PREFIX};

/// The key of the erased marker `{"$erased": true}`: what a personal field
/// decodes to once its data subject was forgotten.
pub const ERASED_KEY: &str = "$erased";

/// The erased marker as a JSON value: `{"$erased": true}`.
#[must_use]
pub fn erased_marker() -> Value {
    serde_json::json!({ ERASED_KEY: true })
}

/// Whether `value` is the erased marker.
#[must_use]
pub fn is_erased(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.len() == 1 && m.get(ERASED_KEY) == Some(&Value::Bool(true)))
}

/// The type of a personal field in an event (or in state built from events):
/// its value while the data subject's key exists, [`Erased`](Personal::Erased)
/// once the subject was forgotten.
///
/// It serializes as `T` does, or as the marker `{"$erased": true}`, and
/// deserializes from either, so events and snapshots with personal fields
/// keep loading after a forget.
///
/// ```
/// use orchestrix_gdpr::Personal;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct CustomerRegistered { customer_id: String, email: Personal<String> }
///
/// let known: CustomerRegistered = serde_json::from_value(serde_json::json!(
///     {"customer_id": "c-1", "email": "ada@example.com"}))?;
/// assert_eq!(known.email, Personal::Known("ada@example.com".to_owned()));
///
/// let erased: CustomerRegistered = serde_json::from_value(serde_json::json!(
///     {"customer_id": "c-1", "email": {"$erased": true}}))?;
/// assert!(erased.email.is_erased());
/// assert_eq!(erased.email.as_known().map(String::as_str).unwrap_or("<erased>"), "<erased>");
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// A value that is still encrypted (an `orx-pii:v1:` token: the event was
/// decoded as plain JSON, e.g. by `RecordedEvent::decode`, instead of with the
/// store's codec) is a deserialization error that says so, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Personal<T> {
    /// The value.
    Known(T),
    /// Erased: the data subject was forgotten.
    Erased,
}

impl<T> Personal<T> {
    /// The value, unless erased.
    #[must_use]
    pub fn as_known(&self) -> Option<&T> {
        match self {
            Self::Known(v) => Some(v),
            Self::Erased => None,
        }
    }

    /// The value, unless erased.
    #[must_use]
    pub fn into_known(self) -> Option<T> {
        match self {
            Self::Known(v) => Some(v),
            Self::Erased => None,
        }
    }

    /// Whether the value was erased.
    #[must_use]
    pub fn is_erased(&self) -> bool {
        matches!(self, Self::Erased)
    }

    /// Maps the value, keeping an erasure.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Personal<U> {
        match self {
            Self::Known(v) => Personal::Known(f(v)),
            Self::Erased => Personal::Erased,
        }
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Self::Known(value)
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Known(v) => v.serialize(serializer),
            Self::Erased => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(ERASED_KEY, &true)?;
                map.end()
            }
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if is_erased(&value) || value.as_str() == Some(ERASED_TOKEN) {
            return Ok(Self::Erased);
        }
        if value.as_str().is_some_and(|s| s.starts_with(TOKEN_PREFIX)) {
            return Err(D::Error::custom(
                "personal field is still encrypted: decode the event with the store's codec \
                 (Store::decode or PersonalDataCodec), not as plain JSON",
            ));
        }
        T::deserialize(value)
            .map(Self::Known)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trips_values_and_the_marker() {
        let known = Personal::Known(3u8);
        assert_eq!(serde_json::to_value(&known).unwrap(), json!(3));
        let erased: Personal<u8> = Personal::Erased;
        assert_eq!(serde_json::to_value(&erased).unwrap(), erased_marker());
        let back: Personal<u8> = serde_json::from_value(erased_marker()).unwrap();
        assert!(back.is_erased());
        let back: Option<Personal<String>> = serde_json::from_value(json!(null)).unwrap();
        assert_eq!(back, None);
    }

    #[test]
    fn an_encrypted_token_is_an_error_not_a_value() {
        let err =
            serde_json::from_value::<Personal<String>>(json!("orx-pii:v1:a:b:c")).unwrap_err();
        assert!(err.to_string().contains("still encrypted"), "{err}");
        let erased: Personal<String> = serde_json::from_value(json!(ERASED_TOKEN)).unwrap();
        assert!(erased.is_erased());
    }
}
