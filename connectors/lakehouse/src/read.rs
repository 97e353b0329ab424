//! Reading a lake table back: the live files of its current version, read
//! with the Parquet crate's Arrow reader, conformed to the table's schema
//! (files written before a schema evolution get `null` in the new columns),
//! with the partition values put back as columns.

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use deltalake::arrow::datatypes::{DataType, Schema as ArrowSchema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::{DeltaTable, DeltaTableError};
use orchestrix::codec::Codec;
use orchestrix::{Error, Result};
use serde_json::{Map, Value};

use crate::schema::{ATTRIBUTE_COLUMNS, COL_SCHEMA_VERSION, COL_TYPE, JSON_COLUMN_META};
use crate::table::{delta_error, open_table};

fn arrow_error(
    operation: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Backend {
        backend: "delta",
        operation,
        transient: false,
        source: Box::new(e),
    }
}

/// One live data file of a table's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// The path relative to the table directory, as in the log.
    pub path: String,
    /// The partition values (`date`, and `tenant` when enabled).
    pub partition_values: Vec<(String, Option<String>)>,
    /// Rows, from the file's statistics in the log.
    pub num_records: Option<usize>,
    /// Bytes.
    pub size: i64,
}

/// The live data files of the table at `dir`, from its Delta log.
///
/// # Errors
/// [`Error::Backend`] when the table cannot be read.
pub async fn live_files(dir: &Path) -> Result<Vec<LiveFile>> {
    let table = open_table(dir).await?;
    files_of(&table)
}

pub(crate) fn files_of(table: &DeltaTable) -> Result<Vec<LiveFile>> {
    let snapshot = table.snapshot().map_err(|e| delta_error("snapshot", e))?;
    let mut files: Vec<LiveFile> = snapshot
        .log_data()
        .into_iter()
        .map(|f| {
            let mut partition_values: Vec<(String, Option<String>)> =
                f.partition_values_map().into_iter().collect();
            partition_values.sort();
            LiveFile {
                path: f.path().to_string(),
                partition_values,
                num_records: f.num_records(),
                size: f.size(),
            }
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The table's current Arrow schema (partition columns included).
pub(crate) fn table_schema(table: &DeltaTable) -> Result<ArrowSchema> {
    let snapshot = table.snapshot().map_err(|e| delta_error("snapshot", e))?;
    snapshot
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e: deltalake::arrow::error::ArrowError| {
            delta_error("read schema", DeltaTableError::from(e))
        })
}

/// Reads one data file, conformed to `schema`.
pub(crate) async fn read_file(
    table: &DeltaTable,
    file: &LiveFile,
    schema: &Arc<ArrowSchema>,
) -> Result<Vec<RecordBatch>> {
    let store = table.object_store();
    let location = deltalake::Path::from_url_path(&file.path)
        .map_err(|e| arrow_error("parse file path", e))?;
    let bytes = store
        .get(&location)
        .await
        .map_err(|e| delta_error("read data file", e.into()))?
        .bytes()
        .await
        .map_err(|e| delta_error("read data file", e.into()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| arrow_error("open parquet file", e))?
        .with_batch_size(8192)
        .build()
        .map_err(|e| arrow_error("open parquet file", e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| arrow_error("read parquet file", e))?;
        out.push(conform(&batch, schema, &file.partition_values)?);
    }
    Ok(out)
}

/// Puts `batch` into `schema`: columns by name, `null` for missing ones, the
/// partition values as constant columns.
fn conform(
    batch: &RecordBatch,
    schema: &Arc<ArrowSchema>,
    partition_values: &[(String, Option<String>)],
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if let Some((_, value)) = partition_values.iter().find(|(k, _)| k == field.name()) {
            columns.push(Arc::new(StringArray::from(vec![value.clone(); n])));
            continue;
        }
        match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => columns.push(column.clone()),
            Some(column) => columns.push(
                deltalake::arrow::compute::cast(column, field.data_type())
                    .map_err(|e| arrow_error("cast column", e))?,
            ),
            None => columns.push(new_null_array(field.data_type(), n)),
        }
    }
    let relaxed = Arc::new(ArrowSchema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(relaxed, columns).map_err(|e| arrow_error("conform batch", e))
}

/// Every row of the table at `dir` (its current version) as Arrow batches in
/// the table's schema, partition columns included.
///
/// # Errors
/// [`Error::Backend`] when the table or a file cannot be read.
pub async fn read_batches(dir: &Path) -> Result<Vec<RecordBatch>> {
    let table = open_table(dir).await?;
    let schema = Arc::new(table_schema(&table)?);
    let mut out = Vec::new();
    for file in files_of(&table)? {
        out.extend(read_file(&table, &file, &schema).await?);
    }
    Ok(out)
}

/// Every row of the table at `dir` as a JSON object, sorted by global
/// position: attribute columns (`ce_*`), payload columns (JSON-text columns
/// parsed back), partition columns.
///
/// # Errors
/// [`Error::Backend`] when the table or a file cannot be read.
pub async fn read_rows(dir: &Path) -> Result<Vec<Map<String, Value>>> {
    let mut rows = Vec::new();
    for batch in read_batches(dir).await? {
        rows.extend(batch_to_json(&batch));
    }
    rows.sort_by_key(|r| r.get(crate::schema::COL_POSITION).and_then(Value::as_i64));
    Ok(rows)
}

/// As [`read_rows`], with each row's payload decoded through `codec` (say,
/// the GDPR personal-data codec): personal columns stored as ciphertext
/// tokens come back in clear, or as `{"$erased": true}` once their subject
/// was forgotten.
///
/// # Errors
/// As [`read_rows`], and the codec's errors.
pub async fn read_rows_with(dir: &Path, codec: &dyn Codec) -> Result<Vec<Map<String, Value>>> {
    let mut rows = read_rows(dir).await?;
    for row in &mut rows {
        let event_type = row
            .get(COL_TYPE)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let version = row
            .get(COL_SCHEMA_VERSION)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1);
        let payload: Map<String, Value> = row
            .iter()
            .filter(|(k, v)| !ATTRIBUTE_COLUMNS.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let bytes = serde_json::to_vec(&Value::Object(payload))
            .map_err(|e| Error::decode("lake row", e))?;
        if let Value::Object(revealed) = codec.decode(&event_type, version, &bytes)? {
            for (k, v) in revealed {
                row.insert(k, v);
            }
        }
    }
    Ok(rows)
}

/// Converts a batch of the sink's column types into JSON objects.
#[must_use]
pub fn batch_to_json(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    let schema = batch.schema();
    let mut rows = vec![Map::new(); batch.num_rows()];
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let json_text = field
            .metadata()
            .get("comment")
            .is_some_and(|c| c == JSON_COLUMN_META)
            || field.metadata().contains_key(JSON_COLUMN_META);
        for (i, row) in rows.iter_mut().enumerate() {
            row.insert(field.name().clone(), cell(column, i, json_text));
        }
    }
    rows
}

fn cell(column: &ArrayRef, i: usize, json_text: bool) -> Value {
    if column.is_null(i) {
        return Value::Null;
    }
    let any = column.as_any();
    match column.data_type() {
        DataType::Utf8 => {
            let s = any.downcast_ref::<StringArray>().map_or("", |a| a.value(i));
            if json_text {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
            } else {
                Value::String(s.to_owned())
            }
        }
        DataType::Int64 => any
            .downcast_ref::<Int64Array>()
            .map_or(Value::Null, |a| Value::from(a.value(i))),
        DataType::Float64 => any
            .downcast_ref::<Float64Array>()
            .map_or(Value::Null, |a| Value::from(a.value(i))),
        DataType::Boolean => any
            .downcast_ref::<BooleanArray>()
            .map_or(Value::Null, |a| Value::from(a.value(i))),
        DataType::Timestamp(_, _) => any
            .downcast_ref::<TimestampMicrosecondArray>()
            .and_then(|a| chrono::DateTime::from_timestamp_micros(a.value(i)))
            .map_or(Value::Null, |t| Value::String(t.to_rfc3339())),
        _ => Value::Null,
    }
}
