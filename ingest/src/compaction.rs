//! Sorted compaction of the `samples` table: small files of one partition are merged into
//! files sorted by `metric_name`, 2-hour time window ([`WINDOW_MS`]), `series_id`,
//! `timestamp`.
//!
//! Delta's `optimize` (bin-packing) concatenates the files it merges, so a merged file holds
//! one run of every series per input file. Row groups and pages then span the whole
//! `series_id` range, and their min/max statistics no longer prune: in the PromQL bench,
//! queries after one background compaction read 5 to 7 times more rows. Z-order, delta-rs's
//! other `optimize` mode, interleaves the bits of its columns and does not give a series-major
//! order either.
//!
//! So Strata compacts itself, with the same building blocks: DataFusion reads the chosen
//! files through the table's own provider and sorts them (spilling to disk past
//! [`SORT_MEMORY_BYTES`]), delta-rs's [`RecordBatchWriter`] writes the sorted stream with
//! the samples table's Parquet settings and computes the file statistics, and one Delta
//! commit (operation `OPTIMIZE`, `dataChange: false`, as `optimize` writes it) adds the new
//! file and removes the old ones. Readers of older versions keep their files until vacuum.
//!
//! The time window keeps what the persisted files had by construction: each covers the few
//! hours its head held, so a query over the last hour of every series skips the pages of
//! older hours. Sorted by series alone, a day-long file makes that query decode a whole page
//! per series (4,096 rows for 360 samples; 4x slower on the bench's `rate-sum-all-1h`).
//! Within a window, series are sorted, so a selector's series ids still prune pages.
//!
//! The merge keeps one sample per series and timestamp ([`Compaction::duplicates_dropped`]
//! counts the others): queries answer with one anyway, and a store that took the same
//! samples twice read them twice (the PromQL bench's double-groupby-1 read 9.08 M rows for
//! 5.07 M samples on a store loaded twice).

use std::collections::BTreeMap;

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::{SessionContext, cast, col, lit};
use deltalake::delta_datafusion::{FileSelection, create_session_state_with_spill_config};
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;

use crate::error::Result;
use crate::storage;

/// Files of at least this size (bytes) are left as they are (delta-rs `optimize`'s default
/// target size, 100 MiB).
pub const TARGET_FILE_BYTES: u64 = 100 * 1024 * 1024;

/// The time window compacted files are ordered by before the series (ms): 2 hours, the
/// block range of Prometheus's head.
pub const WINDOW_MS: i64 = 2 * 3600 * 1000;

/// Memory the merge sort of one partition may hold before it spills to disk (bytes); an
/// eighth of it is kept for merging the spilled runs.
pub const SORT_MEMORY_BYTES: usize = 1024 * 1024 * 1024;

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// Partitions rewritten.
    pub partitions: usize,
    /// Files removed (merged into new ones).
    pub files_removed: u64,
    /// Files added.
    pub files_added: u64,
    /// Samples dropped as duplicates: the same series and timestamp in more than one of
    /// the merged files (a remote-write retry, data loaded twice).
    pub duplicates_dropped: u64,
}

impl std::ops::AddAssign for Compaction {
    fn add_assign(&mut self, c: Compaction) {
        self.partitions += c.partitions;
        self.files_removed += c.files_removed;
        self.files_added += c.files_added;
        self.duplicates_dropped += c.duplicates_dropped;
    }
}

/// How the files of a table are merged by [`compact`].
#[derive(Debug, Clone)]
pub struct Layout {
    /// The order of the merged rows.
    pub sort: Vec<deltalake::datafusion::logical_expr::SortExpr>,
    /// A row whose values in these two columns (an Int64 and a µs timestamp, e.g.
    /// `series_id` and `timestamp`) equal the row before it in `sort`'s order is dropped as
    /// a duplicate; `None`: every row is kept.
    pub unique: Option<[&'static str; 2]>,
    /// The Parquet settings of the merged files.
    pub properties: deltalake::parquet::file::properties::WriterProperties,
    /// A partition is merged when it has at least this many files under
    /// [`TARGET_FILE_BYTES`] (at least 2).
    pub min_files: usize,
}

impl Layout {
    /// The `samples` table's: sorted by `metric_name`, 2-hour window, `series_id`,
    /// `timestamp`, one sample per series and timestamp (module doc), merged from two
    /// files.
    pub fn samples() -> Layout {
        let window = cast(col("timestamp"), DataType::Int64) / lit(WINDOW_MS * 1000);
        Layout {
            sort: vec![
                col("metric_name").sort(true, false),
                window.sort(true, false),
                col("series_id").sort(true, false),
                col("timestamp").sort(true, false),
            ],
            unique: Some(["series_id", "timestamp"]),
            properties: storage::samples_writer_properties(),
            min_files: 2,
        }
    }
}

/// `batch` (sorted as the merge writes it) without the rows whose `key` columns (an
/// Int64 and a µs timestamp: `series_id` and `timestamp` in `samples`) equal the row
/// before them (`last`: the previous batch's last row, updated), and how many were
/// dropped. Queries already answer with one sample per series and timestamp; the merged
/// file keeps one of them (which one, when their values differ, is not defined, as it is
/// not for queries of the files before).
///
/// # Errors
/// The batch lacks a key column, or has it in another type.
fn without_duplicates(
    batch: deltalake::arrow::array::RecordBatch,
    [id_col, ts_col]: [&str; 2],
    last: &mut Option<(i64, i64)>,
) -> Result<(deltalake::arrow::array::RecordBatch, usize)> {
    use deltalake::arrow::array::{AsArray, BooleanArray};
    use deltalake::arrow::datatypes::{ArrowPrimitiveType, Int64Type, TimestampMicrosecondType};
    fn values<T: ArrowPrimitiveType>(
        batch: &deltalake::arrow::array::RecordBatch,
        name: &str,
    ) -> Result<deltalake::arrow::buffer::ScalarBuffer<T::Native>> {
        Ok(batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<T>())
            .ok_or_else(|| DeltaTableError::Generic(format!("merged rows have no {name}")))?
            .values()
            .clone())
    }
    let ids = values::<Int64Type>(&batch, id_col)?;
    let ts = values::<TimestampMicrosecondType>(&batch, ts_col)?;
    let mut prev = *last;
    let keep: Vec<bool> = ids
        .iter()
        .zip(ts.iter())
        .map(|(i, t)| {
            let row = (*i, *t);
            let new = prev != Some(row);
            prev = Some(row);
            new
        })
        .collect();
    *last = prev;
    let dropped = keep.iter().filter(|k| !**k).count();
    if dropped == 0 {
        return Ok((batch, 0));
    }
    let mask = BooleanArray::from(keep);
    let kept = deltalake::arrow::compute::filter_record_batch(&batch, &mask)
        .map_err(|e| DeltaTableError::Generic(format!("dropping duplicate samples: {e}")))?;
    Ok((kept, dropped))
}

/// [`compact`] with the `samples` table's [`Layout::samples`].
///
/// # Errors
/// Delta or DataFusion errors reading, writing or committing.
pub async fn compact_samples(table: &DeltaTable) -> Result<(DeltaTable, Compaction)> {
    compact(table, &Layout::samples()).await
}

/// Merges, in each partition of `table`, the files smaller than [`TARGET_FILE_BYTES`]
/// when there are at least `layout.min_files`, into one file sorted as `layout` says
/// (`samples`: see the module doc; several files, each a sorted range, when the merge is
/// larger than the target). Returns the table after the commit (or `table` itself when
/// nothing was to be merged) and what was done.
///
/// Not safe against concurrent writers of the same files: callers hold the ingester's
/// persist lock. A conflicting commit from elsewhere fails the compaction (Delta's
/// conflict check) and leaves the table as it was; the written files are then orphans
/// that vacuum removes.
///
/// # Errors
/// Delta or DataFusion errors reading, writing or committing.
pub async fn compact(table: &DeltaTable, layout: &Layout) -> Result<(DeltaTable, Compaction)> {
    let snapshot = table.snapshot()?;
    let mut partitions: BTreeMap<String, Vec<LogicalFileView>> = BTreeMap::new();
    for f in snapshot.log_data().iter() {
        if (f.size() as u64) < TARGET_FILE_BYTES {
            let mut key: Vec<_> = f.partition_values_map().into_iter().collect();
            key.sort();
            partitions.entry(format!("{key:?}")).or_default().push(f);
        }
    }
    partitions.retain(|_, files| files.len() >= layout.min_files.max(2));
    let mut done = Compaction::default();
    if partitions.is_empty() {
        return Ok((table.clone(), done));
    }

    // One sorter with the whole memory budget, and room reserved for merging its spills:
    // with a 512 MB pool shared by two sorters and DataFusion's 10 MB merge reservation,
    // merging a day's 43 M rows (the PromQL bench's data) ran out of memory.
    let mut state = create_session_state_with_spill_config(Some(SORT_MEMORY_BYTES), None);
    let options = state.config_mut().options_mut();
    options.execution.target_partitions = 1;
    options.execution.sort_spill_reservation_bytes = SORT_MEMORY_BYTES / 8;
    let ctx = SessionContext::new_with_state(state);
    table.update_datafusion_session(&ctx.state())?;
    let mut actions = vec![];
    for files in partitions.values() {
        let partition_values = files[0]
            .partition_values()
            .ok_or_else(|| DeltaTableError::Generic("a data file has no partition".into()))?;
        let partition_values: indexmap::IndexMap<_, _> = partition_values
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .zip(partition_values.values().iter().cloned())
            .collect();
        let provider = table
            .table_provider()
            .with_file_selection(FileSelection::from_file_paths(
                files.iter().map(|f| f.path().into_owned()),
            ))
            .await?;
        // Past the target size the writer starts a new file; each covers a sorted range.
        let mut writer = RecordBatchWriter::for_table(table)?
            .with_writer_properties(layout.properties.clone())
            .with_target_file_size(TARGET_FILE_BYTES);
        // The scan reads strings as views; the writer wants the table's own types.
        let as_table = writer
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| cast(col(f.name()), f.data_type().clone()).alias(f.name()))
            .collect::<Vec<_>>();
        let sorted = ctx
            .read_table(provider)?
            .select(as_table)?
            .sort(layout.sort.clone())?;
        let mut stream = sorted.execute_stream().await?;
        let mut last: Option<(i64, i64)> = None;
        while let Some(batch) = stream.next().await {
            let (batch, dropped) = match layout.unique {
                Some(key) => without_duplicates(batch?, key, &mut last)?,
                None => (batch?, 0),
            };
            done.duplicates_dropped += dropped as u64;
            if batch.num_rows() > 0 {
                writer
                    .write_partition(batch, &partition_values, WriteMode::Default)
                    .await?;
            }
        }
        let adds = writer.flush().await?;
        done.partitions += 1;
        done.files_added += adds.len() as u64;
        done.files_removed += files.len() as u64;
        actions.extend(adds.into_iter().map(|mut a| {
            a.data_change = false;
            Action::Add(a)
        }));
        actions.extend(files.iter().map(|f| Action::Remove(f.remove_action(false))));
    }
    let committed = CommitBuilder::default()
        .with_actions(actions)
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Optimize {
                predicate: None,
                target_size: TARGET_FILE_BYTES as i64,
            },
        )
        .await?;
    let mut table = table.clone();
    table.update_incremental(Some(committed.version())).await?;
    Ok((table, done))
}
