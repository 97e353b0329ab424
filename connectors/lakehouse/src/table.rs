//! One Delta table of the lake: its columns, its partitioning, the sink's last
//! committed position (the `txn` action of the sink's app id), and the commit
//! of a batch of rows together with that position.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, MetadataExt, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use orchestrix::{Error, Result};

use crate::schema::TableColumns;

/// Maps a Delta error into the core's error, transient when retrying may help
/// (a storage hiccup or a concurrent commit).
pub(crate) fn delta_error(operation: &'static str, e: DeltaTableError) -> Error {
    let transient = matches!(
        e,
        DeltaTableError::ObjectStore { .. }
            | DeltaTableError::Io { .. }
            | DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction { .. }
    );
    Error::Backend {
        backend: "delta",
        operation,
        transient,
        source: Box::new(e),
    }
}

/// The URL of a local table directory (created if missing).
pub(crate) fn table_url(dir: &Path) -> Result<url::Url> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Backend {
        backend: "delta",
        operation: "create table directory",
        transient: false,
        source: Box::new(e),
    })?;
    let abs = dir.canonicalize().map_err(|e| Error::Backend {
        backend: "delta",
        operation: "resolve table directory",
        transient: false,
        source: Box::new(e),
    })?;
    url::Url::from_directory_path(&abs).map_err(|()| {
        Error::invalid(
            "lake directory",
            format!("{} is not absolute", abs.display()),
        )
    })
}

/// Whether `dir` holds a Delta table (a `_delta_log` with a commit).
#[must_use]
pub fn is_table(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("_delta_log")).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json")))
    })
}

/// Opens the Delta table at `dir`.
///
/// # Errors
/// [`Error::Backend`] when it is not a table or cannot be read.
pub async fn open_table(dir: &Path) -> Result<DeltaTable> {
    let url = table_url(dir)?;
    let mut table = DeltaTableBuilder::from_url(url)
        .map_err(|e| delta_error("open table", e))?
        .build()
        .map_err(|e| delta_error("open table", e))?;
    table
        .load()
        .await
        .map_err(|e| delta_error("load table", e))?;
    Ok(table)
}

/// A table the sink writes.
#[derive(Debug)]
pub(crate) struct LakeTable {
    pub(crate) dir: PathBuf,
    pub(crate) table: Option<DeltaTable>,
    pub(crate) columns: TableColumns,
    pub(crate) partitions: Vec<String>,
    /// The sink's last committed position in this table.
    pub(crate) committed: Option<u64>,
    /// `delta.checkpointInterval` of a table this sink creates.
    pub(crate) checkpoint_interval: Option<u64>,
}

impl LakeTable {
    /// Opens the table at `dir` if it exists, reading `app_id`'s position.
    pub(crate) async fn open(dir: PathBuf, app_id: &str, partitions: Vec<String>) -> Result<Self> {
        if !is_table(&dir) {
            return Ok(Self {
                dir,
                table: None,
                columns: TableColumns::default(),
                partitions,
                committed: None,
                checkpoint_interval: None,
            });
        }
        let table = open_table(&dir).await?;
        let snapshot = table.snapshot().map_err(|e| delta_error("snapshot", e))?;
        let partitions: Vec<String> = snapshot.metadata().partition_columns().to_vec();
        let arrow: ArrowSchema = snapshot.schema().as_ref().try_into_arrow().map_err(
            |e: deltalake::arrow::error::ArrowError| {
                delta_error("read schema", DeltaTableError::from(e))
            },
        )?;
        let columns = TableColumns::from_arrow(&arrow, &partitions);
        let committed = snapshot
            .transaction_version(table.log_store().as_ref(), app_id)
            .await
            .map_err(|e| delta_error("read transaction version", e))?
            .and_then(|v| u64::try_from(v).ok());
        Ok(Self {
            dir,
            table: Some(table),
            columns,
            partitions,
            committed,
            checkpoint_interval: None,
        })
    }

    pub(crate) fn exists(&self) -> bool {
        self.table.is_some()
    }

    pub(crate) fn arrow_schema(&self) -> Arc<ArrowSchema> {
        Arc::new(self.columns.arrow_schema(&self.partitions))
    }

    /// Writes `batches` (already in [`arrow_schema`](Self::arrow_schema),
    /// whose columns may extend the table's: schema evolution) and commits
    /// them with `position` as the sink's transaction version, in one Delta
    /// commit. With no batches, commits the position alone.
    pub(crate) async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        app_id: &str,
        position: u64,
        evolved: bool,
        target_file_size: u64,
        before_commit: Option<&crate::sink::BeforeCommit>,
    ) -> Result<()> {
        let schema = self.arrow_schema();
        let url = table_url(&self.dir)?;
        let mut adds = Vec::new();
        if !batches.is_empty() {
            let mut writer = RecordBatchWriter::try_new(
                url.as_str(),
                schema.clone(),
                Some(self.partitions.clone()),
                None,
            )
            .map_err(|e| delta_error("open writer", e))?
            .with_target_file_size(target_file_size);
            for batch in batches {
                writer
                    .write(batch)
                    .await
                    .map_err(|e| delta_error("write parquet", e))?;
            }
            adds = writer
                .flush()
                .await
                .map_err(|e| delta_error("flush parquet", e))?;
        }
        if let Some(hook) = before_commit {
            hook(&self.dir, position);
        }
        let version = i64::try_from(position)
            .map_err(|_| Error::invalid("position", format!("{position} exceeds i64")))?;
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new(app_id, version));
        let kernel_schema: StructType = schema.as_ref().try_into_kernel().map_err(
            |e: deltalake::arrow::error::ArrowError| {
                delta_error("convert schema", DeltaTableError::from(e))
            },
        )?;
        match &mut self.table {
            None => {
                // Built, not loaded: there is no log yet.
                let table = DeltaTableBuilder::from_url(url)
                    .map_err(|e| delta_error("open table", e))?
                    .build()
                    .map_err(|e| delta_error("open table", e))?
                    .create()
                    .with_columns(kernel_schema.fields().cloned())
                    .with_partition_columns(self.partitions.clone())
                    .with_configuration_property(
                        TableProperty::CheckpointInterval,
                        self.checkpoint_interval.map(|n| n.to_string()),
                    )
                    .with_save_mode(SaveMode::ErrorIfExists)
                    .with_actions(adds.into_iter().map(Action::Add))
                    .with_commit_properties(props)
                    .await
                    .map_err(|e| delta_error("create table", e))?;
                self.table = Some(table);
            }
            Some(table) => {
                let mut actions: Vec<Action> = Vec::with_capacity(adds.len() + 1);
                let snapshot = table.snapshot().map_err(|e| delta_error("snapshot", e))?;
                if evolved {
                    let metadata = snapshot
                        .metadata()
                        .clone()
                        .with_schema(&kernel_schema)
                        .map_err(|e| delta_error("evolve schema", e.into()))?;
                    actions.push(Action::Metadata(metadata));
                }
                actions.extend(adds.into_iter().map(Action::Add));
                let operation = DeltaOperation::Write {
                    mode: SaveMode::Append,
                    partition_by: Some(self.partitions.clone()),
                    predicate: None,
                };
                CommitBuilder::from(props)
                    .with_actions(actions)
                    .build(Some(snapshot), table.log_store(), operation)
                    .await
                    .map_err(|e| delta_error("commit", e))?;
                table
                    .update_state()
                    .await
                    .map_err(|e| delta_error("reload table", e))?;
            }
        }
        self.committed = Some(position);
        Ok(())
    }
}
