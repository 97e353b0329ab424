//! Results of lightweight transactions: applied, or not applied with the
//! current values of the columns the condition named.

use std::collections::HashMap;

use orchestrix::Result;
use scylla::response::query_result::QueryResult;
use scylla::value::{CqlValue, Row};

use crate::error::{corrupted, from_driver};

/// The current values returned by a failed condition.
#[derive(Debug, Default)]
pub(crate) struct Current(HashMap<String, CqlValue>);

impl Current {
    pub(crate) fn i64(&self, column: &str) -> Option<i64> {
        match self.0.get(column) {
            Some(CqlValue::BigInt(v)) => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn bool(&self, column: &str) -> Option<bool> {
        match self.0.get(column) {
            Some(CqlValue::Boolean(v)) => Some(*v),
            _ => None,
        }
    }
}

/// What a conditional statement or batch did.
#[derive(Debug)]
pub(crate) enum LwtOutcome {
    Applied,
    NotApplied(Current),
}

impl LwtOutcome {
    pub(crate) fn parse(result: QueryResult, operation: &'static str) -> Result<Self> {
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver(operation, false, e))?;
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let first: Option<Row> = rows
            .maybe_first_row()
            .map_err(|e| from_driver(operation, false, e))?;
        let Some(row) = first else {
            return Err(corrupted(operation, "a conditional write returned no row"));
        };
        let mut current = HashMap::new();
        let mut applied = None;
        for (name, value) in names.into_iter().zip(row.columns) {
            if name == "[applied]" {
                applied = match value {
                    Some(CqlValue::Boolean(b)) => Some(b),
                    _ => None,
                };
            } else if let Some(v) = value {
                current.insert(name, v);
            }
        }
        match applied {
            Some(true) => Ok(Self::Applied),
            Some(false) => Ok(Self::NotApplied(Current(current))),
            None => Err(corrupted(
                operation,
                "a conditional write returned no [applied] column",
            )),
        }
    }
}
