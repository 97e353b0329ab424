//! Logical types: dates, times, timestamps, decimals and durations between
//! their wire form and their JSON form.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Timelike as _};
use serde_json::Value;

/// A time-like logical type and its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeKind {
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalMillis,
    LocalMicros,
    LocalNanos,
}

impl TimeKind {
    pub(crate) fn of(schema: &apache_avro::Schema) -> Option<Self> {
        use apache_avro::Schema as S;
        Some(match schema {
            S::Date => Self::Date,
            S::TimeMillis => Self::TimeMillis,
            S::TimeMicros => Self::TimeMicros,
            S::TimestampMillis => Self::TimestampMillis,
            S::TimestampMicros => Self::TimestampMicros,
            S::TimestampNanos => Self::TimestampNanos,
            S::LocalTimestampMillis => Self::LocalMillis,
            S::LocalTimestampMicros => Self::LocalMicros,
            S::LocalTimestampNanos => Self::LocalNanos,
            _ => return None,
        })
    }

    /// Renders a wire number as a string.
    pub(crate) fn render(self, n: i64) -> Option<String> {
        const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        match self {
            Self::Date => EPOCH
                .checked_add_signed(chrono::TimeDelta::try_days(n)?)
                .map(|d| d.format("%Y-%m-%d").to_string()),
            Self::TimeMillis | Self::TimeMicros => {
                let per_sec = if self == Self::TimeMillis {
                    1_000
                } else {
                    1_000_000
                };
                let secs = u32::try_from(n.div_euclid(per_sec)).ok()?;
                let frac = u32::try_from(n.rem_euclid(per_sec)).ok()?
                    * (1_000_000_000 / u32::try_from(per_sec).ok()?);
                NaiveTime::from_num_seconds_from_midnight_opt(secs, frac)
                    .map(|t| t.format("%H:%M:%S%.f").to_string())
            }
            Self::TimestampMillis => DateTime::from_timestamp_millis(n)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::TimestampMicros => DateTime::from_timestamp_micros(n)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::TimestampNanos => {
                Some(DateTime::from_timestamp_nanos(n).to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Self::LocalMillis => DateTime::from_timestamp_millis(n).map(|t| local(&t.naive_utc())),
            Self::LocalMicros => DateTime::from_timestamp_micros(n).map(|t| local(&t.naive_utc())),
            Self::LocalNanos => Some(local(&DateTime::from_timestamp_nanos(n).naive_utc())),
        }
    }

    /// Parses the string form into the wire number.
    pub(crate) fn parse(self, s: &str) -> Result<i64, String> {
        let bad = |what: &str| format!("`{s}` is not {what}");
        match self {
            Self::Date => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| bad("a date (YYYY-MM-DD)"))?;
                Ok(d.signed_duration_since(
                    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date"),
                )
                .num_days())
            }
            Self::TimeMillis | Self::TimeMicros => {
                let t: NaiveTime = s.parse().map_err(|_| bad("a time (HH:MM:SS.f)"))?;
                let micros = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                    + i64::from(t.nanosecond() / 1_000);
                Ok(if self == Self::TimeMillis {
                    micros / 1_000
                } else {
                    micros
                })
            }
            Self::TimestampMillis | Self::TimestampMicros | Self::TimestampNanos => {
                let t =
                    DateTime::parse_from_rfc3339(s).map_err(|_| bad("an RFC 3339 timestamp"))?;
                match self {
                    Self::TimestampMillis => Ok(t.timestamp_millis()),
                    Self::TimestampMicros => Ok(t.timestamp_micros()),
                    _ => t
                        .timestamp_nanos_opt()
                        .ok_or_else(|| bad("a timestamp representable in nanoseconds")),
                }
            }
            Self::LocalMillis | Self::LocalMicros | Self::LocalNanos => {
                let t: NaiveDateTime = s
                    .parse()
                    .map_err(|_| bad("a local date-time (YYYY-MM-DDTHH:MM:SS.f)"))?;
                let t = t.and_utc();
                match self {
                    Self::LocalMillis => Ok(t.timestamp_millis()),
                    Self::LocalMicros => Ok(t.timestamp_micros()),
                    _ => t
                        .timestamp_nanos_opt()
                        .ok_or_else(|| bad("a date-time representable in nanoseconds")),
                }
            }
        }
    }
}

fn local(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

/// Parses a decimal given as a JSON string or number into its unscaled value.
pub(crate) fn decimal_from_json(value: &Value, scale: usize) -> Result<i128, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(format!(
                "expected a decimal as a string or number, got {}",
                crate::mapping::kind(other)
            ));
        }
    };
    let bad = || format!("`{text}` is not a decimal number");
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > scale {
        return Err(format!(
            "`{text}` has more fractional digits than the schema's scale {scale}"
        ));
    }
    let mut unscaled: i128 = 0;
    for b in int
        .bytes()
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', scale - frac.len()))
    {
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|u| u.checked_add(i128::from(b - b'0')))
            .ok_or_else(|| format!("`{text}` is too large (more than 38 digits)"))?;
    }
    Ok(if neg { -unscaled } else { unscaled })
}

/// Renders an unscaled decimal with `scale` fractional digits.
pub(crate) fn decimal_to_string(unscaled: i128, scale: usize) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// Two's-complement big-endian bytes of `n`, minimal (for `bytes`) or
/// sign-extended to `size` (for `fixed`).
pub(crate) fn decimal_bytes(n: i128, size: Option<usize>) -> Result<Vec<u8>, String> {
    let full = n.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (full[start], full[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    let minimal = &full[start..];
    match size {
        None => Ok(minimal.to_vec()),
        Some(size) if minimal.len() <= size => {
            let fill = if n < 0 { 0xFF } else { 0 };
            let mut out = vec![fill; size - minimal.len()];
            out.extend_from_slice(minimal);
            Ok(out)
        }
        Some(size) => Err(format!("decimal {n} does not fit in fixed({size})")),
    }
}

/// The value of two's-complement big-endian bytes.
pub(crate) fn decimal_from_bytes(bytes: &[u8]) -> Result<i128, String> {
    let Some(first) = bytes.first() else {
        return Ok(0);
    };
    let fill = if first & 0x80 != 0 { 0xFF } else { 0 };
    let (head, tail) = bytes.split_at(bytes.len().saturating_sub(16));
    if head.iter().any(|b| *b != fill)
        || (!head.is_empty() && (tail[0] & 0x80 != 0) != (fill == 0xFF))
    {
        return Err(format!("decimal of {} bytes exceeds 128 bits", bytes.len()));
    }
    let mut buf = [fill; 16];
    buf[16 - tail.len()..].copy_from_slice(tail);
    Ok(i128::from_be_bytes(buf))
}

/// A `duration` (fixed 12: months, days, milliseconds, little-endian u32s) as JSON.
pub(crate) fn duration_to_json(b: &[u8]) -> Value {
    let n = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    serde_json::json!({ "months": n(0), "days": n(4), "millis": n(8) })
}

/// A JSON `duration` object as its 12 bytes.
pub(crate) fn duration_from_json(value: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(12);
    for key in ["months", "days", "millis"] {
        let n = value
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("a duration needs `{key}` as an unsigned 32-bit number"))?;
        out.extend_from_slice(&n.to_le_bytes());
    }
    Ok(out)
}
