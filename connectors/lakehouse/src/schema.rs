//! Columns of a lake table: the CloudEvents attributes, then the payload's
//! top-level fields, typed from a declared Avro schema ([`AvroSchemas`]) or
//! inferred from the JSON payload; plus the compatibility rules that decide
//! whether an event may join a table.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use orchestrix::{Error, Result};
use serde_json::Value;

/// Column: the event id (CloudEvents `id`).
pub const COL_ID: &str = "ce_id";
/// Column: CloudEvents `source`.
pub const COL_SOURCE: &str = "ce_source";
/// Column: CloudEvents `type`.
pub const COL_TYPE: &str = "ce_type";
/// Column: CloudEvents `subject` (the stream id).
pub const COL_SUBJECT: &str = "ce_subject";
/// Column: CloudEvents `time` (UTC, microseconds).
pub const COL_TIME: &str = "ce_time";
/// Column: the event's revision in its stream.
pub const COL_REVISION: &str = "ce_streamrevision";
/// Column: the event's global position in the store.
pub const COL_POSITION: &str = "ce_globalposition";
/// Column: the W3C trace id from the event's `traceparent` (nullable).
pub const COL_TRACE_ID: &str = "ce_traceid";
/// Column: the payload's schema version.
pub const COL_SCHEMA_VERSION: &str = "ce_schemaversion";
/// Partition column: the event's UTC date, `YYYY-MM-DD`.
pub const COL_DATE: &str = "date";
/// Partition column (when enabled): the tenant.
pub const COL_TENANT: &str = "tenant";

/// The attribute columns every table starts with, in order.
pub const ATTRIBUTE_COLUMNS: [&str; 9] = [
    COL_ID,
    COL_SOURCE,
    COL_TYPE,
    COL_SUBJECT,
    COL_TIME,
    COL_REVISION,
    COL_POSITION,
    COL_TRACE_ID,
    COL_SCHEMA_VERSION,
];

/// The type of a payload column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// `boolean`.
    Boolean,
    /// 64-bit integer (Avro `int` and `long`).
    Long,
    /// 64-bit float (Avro `float` and `double`).
    Double,
    /// UTF-8 text (Avro `string`, `enum`).
    String,
    /// Anything nested (records, arrays, maps), stored as its JSON text.
    Json,
}

impl ColumnType {
    /// The Arrow type of the column.
    #[must_use]
    pub fn arrow(self) -> DataType {
        match self {
            Self::Boolean => DataType::Boolean,
            Self::Long => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::String | Self::Json => DataType::Utf8,
        }
    }

    /// The type inferred from a JSON value; `None` for `null`.
    #[must_use]
    pub fn infer(value: &Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(Self::Boolean),
            Value::Number(n) if n.is_i64() => Some(Self::Long),
            Value::Number(_) => Some(Self::Double),
            Value::String(_) => Some(Self::String),
            Value::Array(_) | Value::Object(_) => Some(Self::Json),
        }
    }

    /// Whether `value` can be stored in a column of this type (`null` always can).
    #[must_use]
    pub fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) | (Self::Json, _) => true,
            (Self::Boolean, Value::Bool(_)) | (Self::String, Value::String(_)) => true,
            (Self::Long, Value::Number(n)) => n.is_i64(),
            (Self::Double, Value::Number(_)) => true,
            _ => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Long => "long",
            Self::Double => "double",
            Self::String => "string",
            Self::Json => "json",
        }
    }

    /// The type of an Arrow column written by the sink.
    fn from_arrow(data_type: &DataType, json: bool) -> Option<Self> {
        match data_type {
            DataType::Boolean => Some(Self::Boolean),
            DataType::Int64 | DataType::Int32 => Some(Self::Long),
            DataType::Float64 | DataType::Float32 => Some(Self::Double),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if json => Some(Self::Json),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Self::String),
            _ => None,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A payload field of an event version, as declared by its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// The field (column) name.
    pub name: String,
    /// Its column type.
    pub column_type: ColumnType,
    /// `true` when the schema requires a value: not nullable and no default.
    pub required: bool,
}

/// Declared payload schemas, by event type and schema version.
pub trait SchemaSource: Send + Sync + fmt::Debug + 'static {
    /// The fields of `event_type` at `version`, or `None` to infer them from
    /// the JSON payload.
    fn fields(&self, event_type: &str, version: u32) -> Option<Arc<Vec<FieldSpec>>>;
}

/// Avro record schemas as [`SchemaSource`]: `boolean`, `int`/`long`,
/// `float`/`double`, `string`/`enum` map to their column types, records,
/// arrays and maps to JSON text; a union with `null`, or a default, makes a
/// field optional.
///
/// ```
/// use orchestrix_lakehouse::schema::{AvroSchemas, ColumnType, SchemaSource};
///
/// let schemas = AvroSchemas::new().with(
///     "com.acme.Placed",
///     1,
///     r#"{"type": "record", "name": "Placed", "fields": [
///         {"name": "order", "type": "string"},
///         {"name": "amount", "type": "long"},
///         {"name": "coupon", "type": ["null", "string"], "default": null}]}"#,
/// )?;
/// let fields = schemas.fields("com.acme.Placed", 1).unwrap();
/// assert_eq!(fields[1].column_type, ColumnType::Long);
/// assert!(fields[1].required && !fields[2].required);
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AvroSchemas {
    by_type: BTreeMap<(String, u32), Arc<Vec<FieldSpec>>>,
}

impl AvroSchemas {
    /// No schemas: every payload is inferred.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the Avro schema (JSON text) of `event_type` at `version`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the text is not an Avro record schema.
    pub fn with(mut self, event_type: &str, version: u32, schema: &str) -> Result<Self> {
        self.add(event_type, version, schema)?;
        Ok(self)
    }

    /// As [`with`](Self::with), in place.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the text is not an Avro record schema.
    pub fn add(&mut self, event_type: &str, version: u32, schema: &str) -> Result<()> {
        let what = || format!("Avro schema of `{event_type}` v{version}");
        let value: Value =
            serde_json::from_str(schema).map_err(|e| Error::invalid(what(), e.to_string()))?;
        let fields = value
            .get("fields")
            .and_then(Value::as_array)
            .filter(|_| value.get("type").and_then(Value::as_str) == Some("record"))
            .ok_or_else(|| Error::invalid(what(), "not a record schema with `fields`"))?;
        let mut specs = Vec::with_capacity(fields.len());
        for field in fields {
            let name = field
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid(what(), "a field has no `name`"))?;
            let ty = field
                .get("type")
                .ok_or_else(|| Error::invalid(what(), format!("field `{name}` has no `type`")))?;
            let (column_type, nullable) = avro_type(ty);
            specs.push(FieldSpec {
                name: name.to_owned(),
                column_type,
                required: !nullable && field.get("default").is_none(),
            });
        }
        self.by_type
            .insert((event_type.to_owned(), version), Arc::new(specs));
        Ok(())
    }
}

impl SchemaSource for AvroSchemas {
    fn fields(&self, event_type: &str, version: u32) -> Option<Arc<Vec<FieldSpec>>> {
        self.by_type.get(&(event_type.to_owned(), version)).cloned()
    }
}

fn avro_type(ty: &Value) -> (ColumnType, bool) {
    match ty {
        Value::String(name) => (avro_named(name), name == "null"),
        Value::Array(branches) => {
            let nullable = branches.iter().any(|b| b.as_str() == Some("null"));
            let others: Vec<&Value> = branches
                .iter()
                .filter(|b| b.as_str() != Some("null"))
                .collect();
            match others.as_slice() {
                [one] => (avro_type(one).0, nullable),
                _ => (ColumnType::Json, nullable),
            }
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("enum") => (ColumnType::String, false),
            Some(name) if o.get("logicalType").is_some() => (avro_named(name), false),
            Some(name @ ("boolean" | "int" | "long" | "float" | "double" | "string")) => {
                (avro_named(name), false)
            }
            _ => (ColumnType::Json, false),
        },
        _ => (ColumnType::Json, false),
    }
}

fn avro_named(name: &str) -> ColumnType {
    match name {
        "boolean" => ColumnType::Boolean,
        "int" | "long" => ColumnType::Long,
        "float" | "double" => ColumnType::Double,
        "string" | "bytes" => ColumnType::String,
        _ => ColumnType::Json,
    }
}

/// Why an event cannot join its table. It goes to the dead letters with this
/// reason; the table is not touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatible {
    /// The payload is not a JSON object (or cannot be decoded).
    NotAnObject(String),
    /// A field's name cannot be a column (reserved or invalid characters).
    BadName(String),
    /// The field's type differs from its column's.
    TypeChange {
        /// The field.
        field: String,
        /// The column's type in the table.
        table: ColumnType,
        /// The type the event brings.
        event: ColumnType,
    },
    /// A new field without a default: the table's rows have no value for it.
    NewRequired(String),
    /// A required field is missing or `null`.
    MissingRequired(String),
    /// A value does not fit its declared type.
    BadValue {
        /// The field.
        field: String,
        /// The declared type.
        declared: ColumnType,
    },
    /// A data-quality check refused the event.
    Quality(String),
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject(why) => write!(f, "payload is not a JSON object: {why}"),
            Self::BadName(name) => write!(
                f,
                "field `{name}` cannot be a column (reserved, or not [A-Za-z0-9_])"
            ),
            Self::TypeChange {
                field,
                table,
                event,
            } => write!(
                f,
                "incompatible schema change: field `{field}` is {event} but the table's column is {table}"
            ),
            Self::NewRequired(field) => write!(
                f,
                "incompatible schema change: new required field `{field}` has no default, and the table's rows have no value for it"
            ),
            Self::MissingRequired(field) => write!(f, "required field `{field}` is missing"),
            Self::BadValue { field, declared } => {
                write!(f, "field `{field}` does not hold a {declared} value")
            }
            Self::Quality(why) => write!(f, "quality check failed: {why}"),
        }
    }
}

impl std::error::Error for Incompatible {}

/// A payload column name the sink accepts.
#[must_use]
pub fn valid_column_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("ce_")
        && name != COL_DATE
        && name != COL_TENANT
}

/// The payload columns of a table, in order, with their types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableColumns {
    columns: Vec<(String, ColumnType)>,
}

/// Arrow field metadata key marking a column as JSON text.
pub const JSON_COLUMN_META: &str = "orchestrix.json";

impl TableColumns {
    /// The payload columns, in order.
    #[must_use]
    pub fn columns(&self) -> &[(String, ColumnType)] {
        &self.columns
    }

    /// The column type of `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<ColumnType> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
    }

    pub(crate) fn push(&mut self, name: String, column_type: ColumnType) {
        self.columns.push((name, column_type));
    }

    /// Reads the payload columns back from a table's Arrow schema.
    #[must_use]
    pub fn from_arrow(schema: &Schema, partitions: &[String]) -> Self {
        let mut columns = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            if ATTRIBUTE_COLUMNS.contains(&name.as_str()) || partitions.contains(name) {
                continue;
            }
            let json = field.metadata().contains_key(JSON_COLUMN_META)
                || field
                    .metadata()
                    .get("comment")
                    .is_some_and(|c| c == JSON_COLUMN_META);
            if let Some(t) = ColumnType::from_arrow(field.data_type(), json) {
                columns.push((name.clone(), t));
            }
        }
        Self { columns }
    }

    /// The full Arrow schema: attributes, payload columns, partition columns.
    #[must_use]
    pub fn arrow_schema(&self, partitions: &[String]) -> Schema {
        let mut fields = vec![
            Field::new(COL_ID, DataType::Utf8, false),
            Field::new(COL_SOURCE, DataType::Utf8, false),
            Field::new(COL_TYPE, DataType::Utf8, false),
            Field::new(COL_SUBJECT, DataType::Utf8, false),
            Field::new(
                COL_TIME,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new(COL_REVISION, DataType::Int64, false),
            Field::new(COL_POSITION, DataType::Int64, false),
            Field::new(COL_TRACE_ID, DataType::Utf8, true),
            Field::new(COL_SCHEMA_VERSION, DataType::Int64, false),
        ];
        for (name, t) in &self.columns {
            let mut field = Field::new(name, t.arrow(), true);
            if *t == ColumnType::Json {
                field = field.with_metadata(
                    [("comment".to_owned(), JSON_COLUMN_META.to_owned())]
                        .into_iter()
                        .collect(),
                );
            }
            fields.push(field);
        }
        for p in partitions {
            fields.push(Field::new(p, DataType::Utf8, false));
        }
        Schema::new(fields)
    }
}

/// Checks one event's payload against the table's columns (plus the columns
/// this batch already added, `pending`) and its declared fields; returns the
/// new columns it brings.
pub(crate) fn check_event(
    table: &TableColumns,
    table_has_rows: bool,
    declared: Option<&[FieldSpec]>,
    payload: &serde_json::Map<String, Value>,
) -> std::result::Result<Vec<(String, ColumnType)>, Incompatible> {
    let mut new_columns = Vec::new();
    if let Some(fields) = declared {
        for spec in fields {
            if !valid_column_name(&spec.name) {
                return Err(Incompatible::BadName(spec.name.clone()));
            }
            let value = payload.get(&spec.name).unwrap_or(&Value::Null);
            if spec.required && value.is_null() {
                return Err(Incompatible::MissingRequired(spec.name.clone()));
            }
            if !spec.column_type.accepts(value) {
                return Err(Incompatible::BadValue {
                    field: spec.name.clone(),
                    declared: spec.column_type,
                });
            }
            match table.get(&spec.name) {
                Some(t) if t != spec.column_type => {
                    return Err(Incompatible::TypeChange {
                        field: spec.name.clone(),
                        table: t,
                        event: spec.column_type,
                    });
                }
                Some(_) => {}
                None => {
                    if spec.required && table_has_rows {
                        return Err(Incompatible::NewRequired(spec.name.clone()));
                    }
                    new_columns.push((spec.name.clone(), spec.column_type));
                }
            }
        }
        return Ok(new_columns);
    }
    for (name, value) in payload {
        if !valid_column_name(name) {
            return Err(Incompatible::BadName(name.clone()));
        }
        match table.get(name) {
            Some(t) if !t.accepts(value) => {
                return Err(Incompatible::TypeChange {
                    field: name.clone(),
                    table: t,
                    event: ColumnType::infer(value).unwrap_or(t),
                });
            }
            Some(_) => {}
            None => {
                if let Some(t) = ColumnType::infer(value) {
                    new_columns.push((name.clone(), t));
                }
            }
        }
    }
    Ok(new_columns)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn inference_adds_columns_and_refuses_type_changes() {
        let mut table = TableColumns::default();
        let new = check_event(&table, false, None, &object(json!({"a": 1, "b": "x"}))).unwrap();
        assert_eq!(
            new,
            vec![
                ("a".into(), ColumnType::Long),
                ("b".into(), ColumnType::String)
            ]
        );
        for (n, t) in new {
            table.push(n, t);
        }
        let err = check_event(&table, true, None, &object(json!({"a": "one"}))).unwrap_err();
        assert!(err.to_string().contains("field `a` is string"), "{err}");
        let err = check_event(&table, true, None, &object(json!({"ce_id": 1}))).unwrap_err();
        assert_eq!(err, Incompatible::BadName("ce_id".into()));
    }

    #[test]
    fn a_new_required_field_is_refused_once_the_table_has_rows() {
        let schemas = AvroSchemas::new()
            .with(
                "t",
                3,
                r#"{"type":"record","name":"T","fields":[{"name":"a","type":"long"},{"name":"z","type":"string"}]}"#,
            )
            .unwrap();
        let fields = schemas.fields("t", 3).unwrap();
        let mut table = TableColumns::default();
        table.push("a".into(), ColumnType::Long);
        let payload = object(json!({"a": 1, "z": "q"}));
        assert_eq!(
            check_event(&table, true, Some(&fields), &payload).unwrap_err(),
            Incompatible::NewRequired("z".into())
        );
        assert!(check_event(&table, false, Some(&fields), &payload).is_ok());
    }
}
