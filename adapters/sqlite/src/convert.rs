//! Conversions between Rust values and SQLite columns, and typed, checked
//! access to the columns of a stored row.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use orchestrix::{Error, Result};
use rusqlite::Row;
use rusqlite::types::ValueRef;

/// A `u64` (revision, position) as SQLite's `INTEGER`.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::invalid(
            what,
            format!("{value} is larger than SQLite's INTEGER ({})", i64::MAX),
        )
    })
}

/// A stored time: integer microseconds since the Unix epoch, UTC.
pub(crate) fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

/// Typed access to the columns of one row; every failure is
/// [`Error::Corrupted`] naming the row (`what`) and the column.
pub(crate) struct Columns<'r, 's, W> {
    row: &'r Row<'s>,
    what: W,
}

impl<'r, 's, W: Fn() -> String> Columns<'r, 's, W> {
    /// Reads `row`, described by `what` in errors (e.g. `event at position 7`).
    pub(crate) fn new(row: &'r Row<'s>, what: W) -> Self {
        Self { row, what }
    }

    /// A corruption of `column`.
    pub(crate) fn bad(&self, column: &str, reason: &dyn Display) -> Error {
        Error::corrupted((self.what)(), format!("column `{column}`: {reason}"))
    }

    fn value(&self, idx: usize, column: &str) -> Result<ValueRef<'r>> {
        self.row.get_ref(idx).map_err(|e| self.bad(column, &e))
    }

    /// A `TEXT` column.
    pub(crate) fn text(&self, idx: usize, column: &str) -> Result<&'r str> {
        match self.value(idx, column)? {
            ValueRef::Text(t) => std::str::from_utf8(t).map_err(|e| self.bad(column, &e)),
            other => Err(self.bad(
                column,
                &format!("expected text, found {}", other.data_type()),
            )),
        }
    }

    /// A nullable `TEXT` column.
    pub(crate) fn opt_text(&self, idx: usize, column: &str) -> Result<Option<&'r str>> {
        match self.value(idx, column)? {
            ValueRef::Null => Ok(None),
            _ => self.text(idx, column).map(Some),
        }
    }

    /// An `INTEGER` column.
    pub(crate) fn int(&self, idx: usize, column: &str) -> Result<i64> {
        match self.value(idx, column)? {
            ValueRef::Integer(i) => Ok(i),
            other => Err(self.bad(
                column,
                &format!("expected an integer, found {}", other.data_type()),
            )),
        }
    }

    /// A nullable `INTEGER` column.
    pub(crate) fn opt_int(&self, idx: usize, column: &str) -> Result<Option<i64>> {
        match self.value(idx, column)? {
            ValueRef::Null => Ok(None),
            _ => self.int(idx, column).map(Some),
        }
    }

    /// A non-negative `INTEGER` column.
    pub(crate) fn u64(&self, idx: usize, column: &str) -> Result<u64> {
        let v = self.int(idx, column)?;
        u64::try_from(v).map_err(|_| self.bad(column, &format!("negative value {v}")))
    }

    /// An `INTEGER` column that fits a `u32`.
    pub(crate) fn u32(&self, idx: usize, column: &str) -> Result<u32> {
        let v = self.int(idx, column)?;
        u32::try_from(v).map_err(|_| self.bad(column, &format!("{v} is out of range")))
    }

    /// A `BLOB` column (text is accepted as its bytes).
    pub(crate) fn bytes(&self, idx: usize, column: &str) -> Result<&'r [u8]> {
        match self.value(idx, column)? {
            ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b),
            other => Err(self.bad(
                column,
                &format!("expected bytes, found {}", other.data_type()),
            )),
        }
    }

    /// A time column (integer microseconds since the Unix epoch).
    pub(crate) fn time(&self, idx: usize, column: &str) -> Result<DateTime<Utc>> {
        let micros = self.int(idx, column)?;
        from_micros(micros).ok_or_else(|| {
            self.bad(
                column,
                &format!("{micros} µs since the epoch is out of range"),
            )
        })
    }

    /// A UUID column (hyphenated text).
    pub(crate) fn uuid(&self, idx: usize, column: &str) -> Result<uuid::Uuid> {
        uuid::Uuid::parse_str(self.text(idx, column)?).map_err(|e| self.bad(column, &e))
    }

    /// A nullable UUID column.
    pub(crate) fn opt_uuid(&self, idx: usize, column: &str) -> Result<Option<uuid::Uuid>> {
        self.opt_text(idx, column)?
            .map(|t| uuid::Uuid::parse_str(t).map_err(|e| self.bad(column, &e)))
            .transpose()
    }

    /// A JSON `TEXT` column.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        idx: usize,
        column: &str,
    ) -> Result<T> {
        serde_json::from_slice(self.bytes(idx, column)?).map_err(|e| self.bad(column, &e))
    }
}
