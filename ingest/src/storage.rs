//! The Delta tables that are Strata's system of record, and where they live.
//!
//! Two tables under the data directory (`docs/storage.md` documents them for users):
//! - `samples`: one row per sample — `metric_name` (string), `series_id` (long, the series
//!   fingerprint's bits), `timestamp` (timestamp, microseconds, UTC), `value` (double),
//!   partitioned by `date` (date, UTC) and `metric_family` (string). Files are sorted by
//!   metric name, series, then time.
//! - `series`: the series catalog — `series_id`, `metric_name`, `labels` (map string ->
//!   string, `__name__` excluded), partitioned by `metric_family`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Int32Type, SchemaRef};
use deltalake::kernel::{DataType, MapType, StructField};
use deltalake::{DeltaTable, DeltaTableBuilder};
use object_store::ObjectStore;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use url::Url;

use crate::error::{IngestError, Result};
use crate::head::SeriesMeta;
use crate::model::{METRIC_NAME_LABEL, Sample};

/// Name of the samples table (a directory under the data directory).
pub const SAMPLES_TABLE: &str = "samples";
/// Name of the series catalog table.
pub const SERIES_TABLE: &str = "series";
/// Delta application id under which the WAL segment persisted last is recorded (a Delta
/// `txn` action), so that a restart never replays samples already in the table.
pub const WAL_APP_ID: &str = "strata-wal";

/// Where the data directory is: a local path, `memory://`, or `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub enum DataDir {
    /// A local directory (created if missing).
    Local(std::path::PathBuf),
    /// In-process memory (tests); lost on exit.
    Memory,
    /// An S3 bucket and key prefix, with credentials from the usual AWS environment
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, ...), through `object_store`'s `AmazonS3Builder::from_env`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

impl DataDir {
    /// Parses `./data`, `/abs/path`, `file:///abs`, `memory://` or `s3://bucket/prefix`.
    ///
    /// # Errors
    /// [`IngestError::Config`] for other URL schemes.
    pub fn parse(s: &str) -> Result<DataDir> {
        if s.starts_with("memory:") {
            return Ok(DataDir::Memory);
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(DataDir::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(p) = s.strip_prefix("file://") {
            return Ok(DataDir::Local(p.into()));
        }
        if s.contains("://") {
            return Err(IngestError::Config(format!(
                "unsupported data directory {s:?}: use a local path, memory:// or s3://bucket/prefix"
            )));
        }
        Ok(DataDir::Local(s.into()))
    }

    /// The directory `sub` (one path segment or several, `/`-separated) inside this one:
    /// where a tenant's tables live (`tenants/<id>`).
    ///
    /// # Errors
    /// [`IngestError::Config`] for `memory://`, whose one in-process store has no
    /// directories.
    pub fn join(&self, sub: &str) -> Result<DataDir> {
        match self {
            DataDir::Local(p) => Ok(DataDir::Local(p.join(sub))),
            DataDir::S3 { bucket, prefix } => Ok(DataDir::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    sub.trim_matches('/').to_string()
                } else {
                    format!("{prefix}/{}", sub.trim_matches('/'))
                },
            }),
            DataDir::Memory => Err(IngestError::Config(format!(
                "memory:// cannot hold {sub:?}: use a local directory or s3://"
            ))),
        }
    }

    /// The local directory, if this is one.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            DataDir::Local(p) => Some(p),
            _ => None,
        }
    }

    /// Opens table `name` under this directory, creating it with `columns`, partitioned by
    /// `partitions`, if it does not exist yet (the rollup tiers' tables are opened so too).
    ///
    /// # Errors
    /// Storage or Delta errors.
    pub async fn open_table(
        &self,
        name: &str,
        columns: Vec<StructField>,
        partitions: &[&str],
    ) -> Result<DeltaTable> {
        let mut table = match self {
            DataDir::Local(p) => {
                let dir = p.join(name);
                std::fs::create_dir_all(&dir)?;
                let dir = dir.canonicalize()?;
                let url = Url::from_directory_path(&dir)
                    .map_err(|_| IngestError::Config(format!("bad path {}", dir.display())))?;
                DeltaTableBuilder::from_url(url)?.build()?
            }
            DataDir::Memory => {
                // One in-memory store per process, shared by both tables.
                static MEM: std::sync::OnceLock<Arc<dyn ObjectStore>> = std::sync::OnceLock::new();
                let store = MEM
                    .get_or_init(|| Arc::new(object_store::memory::InMemory::new()))
                    .clone();
                let url = Url::parse(&format!("memory:///{name}/")).expect("static URL");
                DeltaTableBuilder::from_url(url.clone())?
                    .with_storage_backend(store, Url::parse("memory:///").expect("static URL"))
                    .build()?
            }
            DataDir::S3 { bucket, prefix } => {
                register_s3_logstore();
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| IngestError::Config(format!("S3: {e}")))?;
                let key = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                let url = Url::parse(&format!("s3://{bucket}/{key}/"))
                    .map_err(|e| IngestError::Config(e.to_string()))?;
                DeltaTableBuilder::from_url(url)?
                    .with_storage_backend(
                        Arc::new(store),
                        Url::parse(&format!("s3://{bucket}/")).expect("bucket URL"),
                    )
                    .build()?
            }
        };
        // A table that does not exist yet is created without loading it first: delta-rs's
        // kernel logs a failed load ("No files in log segment") at ERROR level, which a new
        // user's first screen showed twice. Listing `_delta_log/` logs nothing.
        if table.log_store().is_delta_table_location().await? {
            table.load().await?;
            return Ok(table);
        }
        Ok(table
            .create()
            .with_table_name(name)
            .with_columns(columns)
            .with_partition_columns(partitions.iter().copied())
            .await?)
    }

    /// Opens (or creates) the samples table.
    ///
    /// # Errors
    /// Storage or Delta errors.
    pub async fn open_samples(&self) -> Result<DeltaTable> {
        self.open_table(
            SAMPLES_TABLE,
            vec![
                StructField::new("metric_name", DataType::STRING, false),
                StructField::new("series_id", DataType::LONG, false),
                StructField::new("timestamp", DataType::TIMESTAMP, false),
                StructField::new("value", DataType::DOUBLE, true),
                StructField::new("date", DataType::DATE, false),
                StructField::new("metric_family", DataType::STRING, false),
            ],
            &["date", "metric_family"],
        )
        .await
    }

    /// Opens (or creates) the series catalog table.
    ///
    /// # Errors
    /// Storage or Delta errors.
    pub async fn open_series(&self) -> Result<DeltaTable> {
        self.open_table(
            SERIES_TABLE,
            vec![
                StructField::new("series_id", DataType::LONG, false),
                StructField::new("metric_name", DataType::STRING, false),
                StructField::new(
                    "labels",
                    DataType::from(MapType::new(DataType::STRING, DataType::STRING, true)),
                    true,
                ),
                StructField::new("metric_family", DataType::STRING, false),
            ],
            &["metric_family"],
        )
        .await
    }
}

/// Lets delta-rs open `s3://` tables on a store we build ourselves (object_store's
/// `AmazonS3`), without the AWS SDK that the `deltalake-aws` crate would bring. Commits use
/// the default log store: a conditional put (`If-None-Match: *`, which S3 supports) of each
/// commit file, so concurrent writers cannot overwrite each other's commits.
fn register_s3_logstore() {
    use deltalake::logstore::{LogStore, LogStoreFactory, StorageConfig, default_logstore};
    struct S3LogStoreFactory;
    impl LogStoreFactory for S3LogStoreFactory {
        fn with_options(
            &self,
            prefixed_store: deltalake::logstore::ObjectStoreRef,
            root_store: deltalake::logstore::ObjectStoreRef,
            location: &Url,
            options: &StorageConfig,
        ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
            Ok(default_logstore(
                prefixed_store,
                root_store,
                location,
                options,
            ))
        }
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let registry = deltalake::logstore::logstore_factories();
        let scheme = Url::parse("s3://").expect("static URL");
        if !registry.contains_key(&scheme) {
            registry.insert(scheme, Arc::new(S3LogStoreFactory));
        }
    });
}

/// The Parquet settings for the samples table, chosen for time series
/// (`../shared/notes/parquet-density.md` measured them): dictionary for the metric name,
/// `DELTA_BINARY_PACKED` for the sorted series ids and the regular timestamps,
/// `BYTE_STREAM_SPLIT` for the float values. The values are compressed with zstd level 3;
/// the delta-encoded series ids and timestamps with LZ4 (raw). Delta encoding already
/// leaves those two almost nothing to compress, and a zstd column costs every query that
/// reads it a zstd context per row group: the parquet crate's codec creates a compression
/// and a decompression context for each column chunk it reads, and each asks the CPU for
/// its features (`cpuid`, slow in a virtual machine). Data pages hold at most 4,096 rows
/// (Parquet's default is 20,000) so that page statistics single out a few series: a
/// one-series query decodes about one page per file.
pub fn samples_writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_column_dictionary_enabled(ColumnPath::from("series_id"), false)
        .set_column_encoding(ColumnPath::from("series_id"), Encoding::DELTA_BINARY_PACKED)
        .set_column_compression(ColumnPath::from("series_id"), Compression::LZ4_RAW)
        .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
        .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
        .set_column_compression(ColumnPath::from("timestamp"), Compression::LZ4_RAW)
        .set_column_dictionary_enabled(ColumnPath::from("value"), false)
        .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_data_page_row_count_limit(4096)
        .build()
}

/// The Parquet settings for the series table: dictionary strings, zstd.
pub fn series_writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .build()
}

/// Days since the Unix epoch of a millisecond timestamp (UTC), for the `date` column.
pub fn date_of_ms(ms: i64) -> i32 {
    ms.div_euclid(86_400_000) as i32
}

/// Builds samples-table batches (in `schema`, the table's Arrow schema) from series with
/// samples, in the given order. Rows go out in the order given; callers sort.
///
/// # Errors
/// Arrow errors if `schema` is not the samples schema (a broken invariant).
pub fn samples_batch(
    schema: &SchemaRef,
    series: &[&(Arc<SeriesMeta>, Vec<Sample>)],
) -> Result<RecordBatch> {
    let n: usize = series.iter().map(|(_, s)| s.len()).sum();
    let mut name = StringDictionaryBuilder::<Int32Type>::new();
    let mut sid = Int64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut val = Float64Builder::with_capacity(n);
    let mut date = Date32Builder::with_capacity(n);
    let mut fam = StringDictionaryBuilder::<Int32Type>::new();
    for (m, samples) in series {
        // A series' name and family: one dictionary lookup each, not one per sample.
        name.append_values(m.labels.metric_name(), samples.len());
        fam.append_values(m.family.as_ref(), samples.len());
        sid.append_value_n(m.id as i64, samples.len());
        for s in samples {
            ts.append_value(s.timestamp_ms * 1000);
            val.append_value(s.value);
            date.append_value(date_of_ms(s.timestamp_ms));
        }
    }
    let by_name: HashMap<&str, ArrayRef> = [
        ("metric_name", Arc::new(name.finish()) as ArrayRef),
        ("series_id", Arc::new(sid.finish())),
        ("timestamp", Arc::new(ts.finish())),
        ("value", Arc::new(val.finish())),
        ("date", Arc::new(date.finish())),
        ("metric_family", Arc::new(fam.finish())),
    ]
    .into_iter()
    .collect();
    columns_for(schema, by_name)
}

/// Builds a series-catalog batch (in `schema`, the table's Arrow schema).
///
/// # Errors
/// Arrow errors if `schema` is not the series schema (a broken invariant).
pub fn series_batch(schema: &SchemaRef, series: &[Arc<SeriesMeta>]) -> Result<RecordBatch> {
    let mut sid = Int64Builder::with_capacity(series.len());
    let mut name = StringBuilder::new();
    let mut fam = StringBuilder::new();
    let map_field = schema.field_with_name("labels")?;
    let (entries, kf, vf) = match map_field.data_type() {
        arrow::datatypes::DataType::Map(entries, _) => match entries.data_type() {
            arrow::datatypes::DataType::Struct(f) if f.len() == 2 => {
                (entries.name().clone(), f[0].clone(), f[1].clone())
            }
            _ => return Err(IngestError::Config("labels is not a map of strings".into())),
        },
        _ => return Err(IngestError::Config("labels is not a map".into())),
    };
    let mut labels = MapBuilder::new(
        Some(arrow::array::MapFieldNames {
            entry: entries,
            key: kf.name().clone(),
            value: vf.name().clone(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    )
    .with_keys_field(kf)
    .with_values_field(vf);
    for m in series {
        sid.append_value(m.id as i64);
        name.append_value(m.labels.metric_name());
        fam.append_value(m.family.as_ref());
        for (n, v) in m.labels.pairs() {
            if n.as_ref() != METRIC_NAME_LABEL {
                labels.keys().append_value(n);
                labels.values().append_value(v);
            }
        }
        labels.append(true)?;
    }
    let by_name: HashMap<&str, ArrayRef> = [
        ("series_id", Arc::new(sid.finish()) as ArrayRef),
        ("metric_name", Arc::new(name.finish())),
        ("labels", Arc::new(labels.finish())),
        ("metric_family", Arc::new(fam.finish())),
    ]
    .into_iter()
    .collect();
    columns_for(schema, by_name)
}

/// Orders (and casts, e.g. dictionary to plain string) columns to match `schema`.
fn columns_for(schema: &SchemaRef, mut by_name: HashMap<&str, ArrayRef>) -> Result<RecordBatch> {
    let cols = schema
        .fields()
        .iter()
        .map(|f| {
            let a = by_name.remove(f.name().as_str()).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no column {}", f.name()))
            })?;
            if a.data_type() == f.data_type() {
                Ok(a)
            } else {
                arrow::compute::cast(&a, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Deletes the `date` partitions of `table` (`samples` or a rollup tier) before
/// `keep_from` (days since the epoch, UTC): a Delta delete on the partition column, so
/// files are removed from the table, none rewritten (their bytes go at the next
/// [`vacuum`]). Returns the table after and the number of files removed; no commit is
/// made when no file matches.
///
/// # Errors
/// Delta errors (the table is unchanged).
pub async fn delete_days_before(table: &DeltaTable, keep_from: i32) -> Result<(DeltaTable, u64)> {
    use deltalake::datafusion::prelude::{col, lit};
    use deltalake::datafusion::scalar::ScalarValue;
    let (t, m) = table
        .clone()
        .delete()
        .with_predicate(col("date").lt(lit(ScalarValue::Date32(Some(keep_from)))))
        .await?;
    Ok((t, m.num_removed_files as u64))
}

/// Vacuums `table` (Delta's `VACUUM`, lite mode): deletes from storage the data files
/// that were removed from the table (by compaction, rebuilds, retention) more than
/// `retention` ago. Queries read the table's latest version, so only a query planned on
/// a version older than `retention` could miss a file. Returns the table after and the
/// number of files deleted.
///
/// # Errors
/// Delta or storage errors; [`IngestError::Config`] for a retention beyond chrono's range.
pub async fn vacuum(
    table: &DeltaTable,
    retention: std::time::Duration,
) -> Result<(DeltaTable, u64)> {
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| IngestError::Config(format!("vacuum retention: {e}")))?;
    let (t, m) = table
        .clone()
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .await?;
    Ok((t, m.files_deleted.len() as u64))
}
