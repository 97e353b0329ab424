//! Table maintenance: compaction (`optimize`) and `vacuum`.
//!
//! The `deltalake` crate's own `optimize` needs DataFusion, which this crate
//! does not build (it would double the build time); [`optimize`] compacts
//! with the Parquet reader and the Delta writer instead: per partition, the
//! small live files are read, rewritten as one file, and swapped in one
//! commit (`remove` + `add` with `dataChange: false`), so readers and the
//! sink's transaction identifiers are unaffected.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use orchestrix::{Error, Result};

use crate::read::{LiveFile, files_of, read_file, table_schema};
use crate::table::{delta_error, open_table, table_url};

/// What [`optimize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptimizeReport {
    /// Partitions compacted.
    pub partitions: usize,
    /// Files removed (replaced).
    pub files_removed: usize,
    /// Files added.
    pub files_added: usize,
    /// Rows rewritten.
    pub rows: usize,
}

/// Compacts the table at `dir`: in every partition with more than one live
/// file smaller than `target_size` bytes, those files are rewritten as one.
/// Returns what it did; a table with nothing to compact gets no commit.
///
/// # Errors
/// [`Error::Backend`] when the table cannot be read or the commit fails
/// (a concurrent writer: run it again).
pub async fn optimize(dir: &Path, target_size: u64) -> Result<OptimizeReport> {
    let mut table = open_table(dir).await?;
    let schema = Arc::new(table_schema(&table)?);
    let snapshot = table.snapshot().map_err(|e| delta_error("snapshot", e))?;
    let partitions: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let small = i64::try_from(target_size).unwrap_or(i64::MAX);
    let mut groups: BTreeMap<Vec<(String, Option<String>)>, Vec<LiveFile>> = BTreeMap::new();
    for file in files_of(&table)? {
        if file.size < small {
            groups
                .entry(file.partition_values.clone())
                .or_default()
                .push(file);
        }
    }
    groups.retain(|_, files| files.len() > 1);
    let mut report = OptimizeReport::default();
    if groups.is_empty() {
        return Ok(report);
    }
    let url = table_url(dir)?;
    let mut writer =
        RecordBatchWriter::try_new(url.as_str(), schema.clone(), Some(partitions.clone()), None)
            .map_err(|e| delta_error("open writer", e))?
            .with_target_file_size(target_size);
    let removing: Vec<String> = groups.values().flatten().map(|f| f.path.clone()).collect();
    for files in groups.values() {
        report.partitions += 1;
        for file in files {
            for batch in read_file(&table, file, &schema).await? {
                report.rows += batch.num_rows();
                // The writer wants the table's nullability back.
                let batch = deltalake::arrow::record_batch::RecordBatch::try_new(
                    schema.clone(),
                    batch.columns().to_vec(),
                )
                .map_err(|e| Error::Backend {
                    backend: "delta",
                    operation: "optimize",
                    transient: false,
                    source: Box::new(e),
                })?;
                writer
                    .write(batch)
                    .await
                    .map_err(|e| delta_error("write parquet", e))?;
            }
        }
    }
    let adds = writer
        .flush()
        .await
        .map_err(|e| delta_error("flush parquet", e))?;
    report.files_added = adds.len();
    report.files_removed = removing.len();
    let snapshot = table.snapshot().map_err(|e| delta_error("snapshot", e))?;
    let mut actions: Vec<Action> = snapshot
        .log_data()
        .into_iter()
        .filter(|f| removing.iter().any(|p| p.as_str() == f.path()))
        .map(|f| Action::Remove(f.remove_action(false)))
        .collect();
    actions.extend(adds.into_iter().map(|mut add| {
        add.data_change = false;
        Action::Add(add)
    }));
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: i64::try_from(target_size).unwrap_or(i64::MAX),
    };
    CommitBuilder::default()
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(|e| delta_error("commit optimize", e))?;
    table
        .update_state()
        .await
        .map_err(|e| delta_error("reload table", e))?;
    Ok(report)
}

/// Deletes the data files of the table at `dir` that its current version no
/// longer references and that are older than `retention`: files replaced by
/// [`optimize`], and files a crashed sink wrote but never committed. Returns
/// the deleted paths. Keep `retention` longer than a sink's batch takes to
/// commit, or vacuum may delete files a running sink is about to commit.
///
/// # Errors
/// [`Error::Backend`] when the table cannot be read or a file not deleted.
pub async fn vacuum(dir: &Path, retention: std::time::Duration) -> Result<Vec<String>> {
    let table = open_table(dir).await?;
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| Error::invalid("vacuum retention", e.to_string()))?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await
        .map_err(|e| delta_error("vacuum", e))?;
    Ok(metrics.files_deleted)
}
