//! How Avro values are represented as JSON values (the payload form of core's
//! [`orchestrix::codec::Codec`]).

use base64::Engine as _;
use serde_json::Value;

/// How `bytes` and `fixed` values appear in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BytesAs {
    /// An array of numbers 0–255, what serde writes for `Vec<u8>` (the default).
    #[default]
    Array,
    /// A standard base64 string.
    Base64,
}

/// How timestamp, date and time logical types appear in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeAs {
    /// Strings in the forms `chrono`'s serde uses: RFC 3339 with `Z` for
    /// timestamps, `YYYY-MM-DDTHH:MM:SS.f` for local timestamps, `YYYY-MM-DD` for
    /// dates, `HH:MM:SS.f` for times (the default).
    #[default]
    Strings,
    /// The numbers stored on the wire (days, milliseconds, microseconds...).
    Numbers,
}

/// The JSON representation choices of the codec. Encoding accepts both forms
/// whatever is chosen; decoding produces the chosen one.
///
/// Fixed choices: a nullable union (`["null", T]`) is JSON `null` or the bare
/// `T` value; other unions take the bare value (the branch is picked by its
/// JSON kind) or the tagged form `{"branch type name": value}`; enums are their
/// symbol as a string; maps are JSON objects; decimals are decimal strings
/// (`"12.34"`, numbers accepted on encode); `duration` is
/// `{"months": m, "days": d, "millis": ms}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JsonMapping {
    /// Representation of `bytes` and `fixed`.
    pub bytes: BytesAs,
    /// Representation of date, time and timestamp logical types.
    pub time: TimeAs,
}

pub(crate) fn bytes_to_json(bytes: &[u8], mapping: BytesAs) -> Value {
    match mapping {
        BytesAs::Array => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
        BytesAs::Base64 => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

/// Reads bytes from either JSON form.
pub(crate) fn json_to_bytes(value: &Value) -> Result<Vec<u8>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| format!("byte array item {v} is not 0..=255"))
            })
            .collect(),
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("bytes given as a string must be base64: {e}")),
        other => Err(format!(
            "expected bytes (array of numbers or base64 string), got {}",
            kind(other)
        )),
    }
}

/// A JSON value's kind, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a floating-point number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
