//! Validated identifiers: stream ids and categories.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest accepted stream id, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 200;
/// Longest accepted category, in bytes.
pub const MAX_CATEGORY_LEN: usize = 64;

/// The id of one stream: `{category}-{id}`, e.g. `account-42`.
///
/// The category (the aggregate type) is ASCII letters, digits and `_`; the part
/// after the first `-` is ASCII letters, digits and `-_.:@~+=`. These characters
/// are safe as Kafka keys, NATS header values, URL path segments and SQL values,
/// so a stream id never needs escaping anywhere.
///
/// ```
/// use orchestrix::StreamId;
/// let id = StreamId::new("account", "42")?;
/// assert_eq!(id.as_str(), "account-42");
/// assert_eq!(id.category(), "account");
/// assert_eq!(id.entity_id(), "42");
/// assert!("account 42".parse::<StreamId>().is_err());
/// assert!("no_dash".parse::<StreamId>().is_err());
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StreamId {
    value: String,
    #[serde(skip)]
    dash: usize,
}

impl StreamId {
    /// Builds `{category}-{id}`, validating both parts.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when a part is empty, too long or has a forbidden
    /// character.
    pub fn new(category: &str, id: &str) -> Result<Self> {
        validate_category(category)?;
        Self::parse(format!("{category}-{id}"))
    }

    /// Parses and validates a full stream id.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] as for [`StreamId::new`].
    pub fn parse(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let invalid = |reason: String| {
            Error::invalid(format!("stream id `{}`", value.escape_debug()), reason)
        };
        if value.len() > MAX_STREAM_ID_LEN {
            return Err(invalid(format!("longer than {MAX_STREAM_ID_LEN} bytes")));
        }
        let Some(dash) = value.find('-') else {
            return Err(invalid("must be `{category}-{id}`".into()));
        };
        validate_category(&value[..dash]).map_err(|e| match e {
            Error::InvalidInput { reason, .. } => invalid(format!("category: {reason}")),
            other => other,
        })?;
        let entity = &value[dash + 1..];
        if entity.is_empty() {
            return Err(invalid("the id after the category is empty".into()));
        }
        if let Some(c) = entity.chars().find(|c| !is_id_char(*c)) {
            return Err(invalid(format!(
                "character {c:?} is not allowed (allowed: ASCII letters, digits and -_.:@~+=)"
            )));
        }
        Ok(Self { value, dash })
    }

    /// The whole id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The category: the aggregate type.
    #[must_use]
    pub fn category(&self) -> &str {
        &self.value[..self.dash]
    }

    /// The entity id within the category.
    #[must_use]
    pub fn entity_id(&self) -> &str {
        &self.value[self.dash + 1..]
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '~' | '+' | '=')
}

/// Checks a category name: 1 to 64 ASCII letters, digits or `_`.
///
/// # Errors
/// [`Error::InvalidInput`] when it is not.
pub fn validate_category(category: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::invalid(
            format!("category `{}`", category.escape_debug()),
            reason,
        ))
    };
    if category.is_empty() {
        return invalid("empty");
    }
    if category.len() > MAX_CATEGORY_LEN {
        return invalid("longer than 64 bytes");
    }
    if !category
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return invalid("only ASCII letters, digits and `_` are allowed");
    }
    Ok(())
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.value)
    }
}

impl FromStr for StreamId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_forbidden_characters_with_a_typed_error() {
        for bad in [
            "",
            "-1",
            "order-",
            "order 1",
            "ord er-1",
            "order-a b",
            "order-ä",
            "order-a/b",
            "order-*",
            "order-a>",
        ] {
            let err = StreamId::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad}: {err}");
        }
        let long = format!("a-{}", "x".repeat(MAX_STREAM_ID_LEN));
        assert!(StreamId::parse(long).is_err());
    }

    #[test]
    fn splits_at_the_first_dash() {
        let id = StreamId::parse("order-0191-abc").unwrap();
        assert_eq!(id.category(), "order");
        assert_eq!(id.entity_id(), "0191-abc");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"order-0191-abc\"");
        let back: StreamId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<StreamId>("\"bad id\"").is_err());
    }
}
