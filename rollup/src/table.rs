//! The tier tables' layout: one Delta table per tier, `rollup_<name>` under the data
//! directory, one row per series and bucket (`docs/rollups.md` documents it for users).
//!
//! Columns: `metric_name` (string), `series_id` (long, the series fingerprint, as in
//! `samples`), `bucket_end` (timestamp, µs, UTC: the bucket is `(bucket_end - resolution,
//! bucket_end]`), then the [`Bucket`] fields: `count` (long), `sum`, `min`, `max`
//! (double), `first_ts` (timestamp), `first` (double), `last_ts` (timestamp), `last`,
//! `mean`, `m2`, `increase` (double: `last - first + reset_sum`), `reset_sum` (double: the
//! values before the counter's resets), `resets`, `changes` (long), then `sketch` (binary,
//! null where the tier has no sketches or the bucket only NaN values: a KLL doubles
//! sketch, [`crate::sketch`]), then `p50`, `p90`, `p95`, `p99` (double, null where
//! `sketch` is: that sketch's quantiles, [`crate::sketch::STORED_QUANTILES`], so that a
//! dashboard's `quantile_over_time` reads 8 bytes a bucket, not a sketch); partitioned by `date` (the UTC date of the bucket's first
//! instant, `bucket_end - 1 µs`; for tiers of an hour or more the first day of its month,
//! of a day or more of its year: [`crate::tier::partition_day`]) and `metric_family`,
//! like `samples`, and written sorted by metric name, series and bucket, so that a
//! selector's series prune files and pages the same way.
//!
//! Beside each, `rollup_<name>_series`: one row per metric and bucket, `metric_name`,
//! `bucket_end`, `series` (long: the number of distinct series with samples in the
//! bucket) and `hll` (binary: an HLL sketch of their `series_id`s), partitioned the same.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringDictionaryBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType as ArrowType, Float64Type, Int32Type, Int64Type, SchemaRef};
use deltalake::kernel::{DataType, StructField};
use strata_ingest::storage::date_of_ms;

use crate::bucket::Bucket;
use crate::error::{Result, RollupError};
use crate::tier::partition_day;

/// The Parquet settings of the tier tables: those of `samples`
/// ([`strata_ingest::storage::samples_writer_properties`]: delta-encoded ids and times,
/// zstd values, small pages), without min/max statistics for the sketch columns (nothing
/// prunes by sketch bytes, and delta-rs warns on every file whose binary column has them).
pub fn writer_properties() -> parquet::file::properties::WriterProperties {
    use parquet::file::properties::EnabledStatistics;
    use parquet::schema::types::ColumnPath;
    strata_ingest::storage::samples_writer_properties()
        .into_builder()
        .set_column_statistics_enabled(ColumnPath::from("sketch"), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("hll"), EnabledStatistics::None)
        .set_column_dictionary_enabled(ColumnPath::from("bucket_end"), false)
        .set_column_encoding(
            ColumnPath::from("bucket_end"),
            parquet::basic::Encoding::DELTA_BINARY_PACKED,
        )
        .build()
}

/// The partition columns of a tier table.
pub const PARTITIONS: [&str; 2] = ["date", "metric_family"];

/// The Delta columns of a tier table, in order.
pub fn columns() -> Vec<StructField> {
    let mut c = vec![
        StructField::new("metric_name", DataType::STRING, false),
        StructField::new("series_id", DataType::LONG, false),
        StructField::new("bucket_end", DataType::TIMESTAMP, false),
        StructField::new("count", DataType::LONG, false),
    ];
    for f in ["sum", "min", "max"] {
        c.push(StructField::new(f, DataType::DOUBLE, true));
    }
    c.push(StructField::new("first_ts", DataType::TIMESTAMP, false));
    c.push(StructField::new("first", DataType::DOUBLE, true));
    c.push(StructField::new("last_ts", DataType::TIMESTAMP, false));
    for f in ["last", "mean", "m2", "increase", "reset_sum"] {
        c.push(StructField::new(f, DataType::DOUBLE, true));
    }
    c.push(StructField::new("resets", DataType::LONG, false));
    c.push(StructField::new("changes", DataType::LONG, false));
    c.push(StructField::new("sketch", DataType::BINARY, true));
    c.extend(quantile_columns());
    c.push(StructField::new("date", DataType::DATE, false));
    c.push(StructField::new("metric_family", DataType::STRING, false));
    c
}

/// The stored-quantile columns ([`crate::sketch::STORED_QUANTILES`]): tables made before
/// they existed get them added when opened (their older files read them as null).
pub fn quantile_columns() -> Vec<StructField> {
    crate::sketch::STORED_QUANTILES
        .iter()
        .map(|(_, name)| StructField::new(*name, DataType::DOUBLE, true))
        .collect()
}

/// `table` (a tier table) with the columns of [`columns`] it lacks added (a table made
/// by an older Strata): a Delta schema change, no file rewritten.
///
/// # Errors
/// Delta errors committing the change.
pub async fn with_new_columns(table: deltalake::DeltaTable) -> Result<deltalake::DeltaTable> {
    let schema = table.snapshot()?.snapshot().arrow_schema();
    let missing: Vec<StructField> = columns()
        .into_iter()
        .filter(|f| schema.field_with_name(f.name()).is_err())
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    tracing::info!(
        columns = ?missing.iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
        "adding columns to a rollup table"
    );
    Ok(table.add_columns().with_fields(missing).await?)
}

/// A series as the tier tables key it; ordered as the tables are sorted (family, metric
/// name, series).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// The metric family (partition column).
    pub family: Arc<str>,
    /// The metric name.
    pub metric_name: Arc<str>,
    /// The series fingerprint, as stored in `samples.series_id`.
    pub series_id: i64,
}

/// Builds [`SeriesKey`]s for rows read in series order: the names are interned (one
/// allocation per distinct name), and a row of the same series as the one before reuses
/// its key.
#[derive(Default)]
pub(crate) struct Keys {
    names: HashMap<String, Arc<str>>,
    last: Option<SeriesKey>,
}

impl Keys {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(s.to_string(), a.clone());
        a
    }

    /// The key of series `series_id` of `metric_name` in `family`.
    pub(crate) fn key(&mut self, family: &str, metric_name: &str, series_id: i64) -> SeriesKey {
        if let Some(k) = &self.last
            && k.series_id == series_id
            && *k.metric_name == *metric_name
            && *k.family == *family
        {
            return k.clone();
        }
        let k = SeriesKey {
            family: self.intern(family),
            metric_name: self.intern(metric_name),
            series_id,
        };
        self.last = Some(k.clone());
        k
    }
}

/// One row of a tier table: a series' bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The series.
    pub key: SeriesKey,
    /// The bucket's end, ms since the epoch, UTC.
    pub end_ms: i64,
    /// The aggregates.
    pub bucket: Bucket,
    /// The serialized KLL sketch of the values, if the tier keeps sketches.
    pub sketch: Option<Vec<u8>>,
    /// The sketch's [`crate::sketch::STORED_QUANTILES`], where there is a sketch (to write;
    /// [`rows`] does not read them back).
    pub quantiles: Option<[f64; crate::sketch::STORED_QUANTILES.len()]>,
}

impl Row {
    /// The row of `bucket` (ending at `end_ms`, ms UTC) of series `key`, with the sketch
    /// columns of `kll` (none for `None` or an empty sketch).
    pub fn new(
        key: SeriesKey,
        end_ms: i64,
        bucket: Bucket,
        kll: Option<&crate::sketch::Kll>,
    ) -> Row {
        Row {
            key,
            end_ms,
            bucket,
            sketch: kll.and_then(crate::sketch::kll_bytes),
            quantiles: kll.and_then(crate::sketch::kll_stored_quantiles),
        }
    }
}

/// The Delta columns of a tier's series table (`rollup_<name>_series`), in order.
pub fn series_columns() -> Vec<StructField> {
    vec![
        StructField::new("metric_name", DataType::STRING, false),
        StructField::new("bucket_end", DataType::TIMESTAMP, false),
        StructField::new("series", DataType::LONG, false),
        StructField::new("hll", DataType::BINARY, false),
        StructField::new("date", DataType::DATE, false),
        StructField::new("metric_family", DataType::STRING, false),
    ]
}

/// Builds the series-table batch (in `schema`) of the `rows` of a tier of resolution
/// `resolution_ms` (sorted by family, metric name, series, bucket, as [`batch`] takes
/// them): per metric and bucket, the number of series and an HLL sketch of their ids.
///
/// # Errors
/// [`RollupError::Arrow`] if `schema` is not a series table's (a broken invariant).
pub fn series_batch(schema: &SchemaRef, rows: &[Row], resolution_ms: i64) -> Result<RecordBatch> {
    let mut groups: std::collections::BTreeMap<(&str, &str, i64), Vec<i64>> = Default::default();
    // A metric's rows are one run when sorted: grouped by bucket within the run, the map
    // keyed by strings then sees one entry per metric and bucket, not one per row.
    for run in
        rows.chunk_by(|a, b| a.key.family == b.key.family && a.key.metric_name == b.key.metric_name)
    {
        let mut by_end: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
        for r in run {
            by_end.entry(r.end_ms).or_default().push(r.key.series_id);
        }
        let k = &run[0].key;
        for (e, ids) in by_end {
            groups
                .entry((&k.family, &k.metric_name, e))
                .or_default()
                .extend(ids);
        }
    }
    let n = groups.len();
    let mut name = StringDictionaryBuilder::<Int32Type>::new();
    let mut fam = StringDictionaryBuilder::<Int32Type>::new();
    let mut end = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut series = Int64Builder::with_capacity(n);
    let mut hll = arrow::array::BinaryBuilder::new();
    let mut date = Date32Builder::with_capacity(n);
    for ((f, m, e), ids) in groups {
        let mut sketch = crate::sketch::new_hll();
        let mut distinct = ids;
        distinct.sort_unstable();
        distinct.dedup();
        for id in &distinct {
            sketch.update(*id);
        }
        name.append_value(m);
        fam.append_value(f);
        end.append_value(e * 1000);
        series.append_value(distinct.len() as i64);
        hll.append_value(sketch.serialize());
        date.append_value(partition_day(resolution_ms, date_of_ms(e - 1)));
    }
    let by_name: HashMap<&str, ArrayRef> = [
        ("metric_name", Arc::new(name.finish()) as ArrayRef),
        ("bucket_end", Arc::new(end.finish())),
        ("series", Arc::new(series.finish())),
        ("hll", Arc::new(hll.finish())),
        ("date", Arc::new(date.finish())),
        ("metric_family", Arc::new(fam.finish())),
    ]
    .into_iter()
    .collect();
    in_schema(schema, by_name)
}

/// The arrays of `by_name` in `schema`'s order and types.
fn in_schema(schema: &SchemaRef, by_name: HashMap<&str, ArrayRef>) -> Result<RecordBatch> {
    let arrays = schema
        .fields()
        .iter()
        .map(|f| {
            let a = by_name.get(f.name().as_str()).ok_or_else(|| {
                RollupError::Invariant(format!("rollup table column {} unknown", f.name()))
            })?;
            Ok(cast(a, f.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// Builds a batch of the `rows` of a tier of resolution `resolution_ms` in `schema` (the
/// tier table's Arrow schema); the `date` partition as [`partition_day`] gives it.
///
/// # Errors
/// [`RollupError::Arrow`] if `schema` is not a tier table's (a broken invariant).
pub fn batch(schema: &SchemaRef, rows: &[Row], resolution_ms: i64) -> Result<RecordBatch> {
    let n = rows.len();
    let mut name = StringDictionaryBuilder::<Int32Type>::new();
    let mut fam = StringDictionaryBuilder::<Int32Type>::new();
    let mut sid = Int64Builder::with_capacity(n);
    let ts = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut end, mut first_ts, mut last_ts) = (ts(), ts(), ts());
    let mut longs: [Int64Builder; 3] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let mut doubles: [Float64Builder; 9] =
        std::array::from_fn(|_| Float64Builder::with_capacity(n));
    let mut date = Date32Builder::with_capacity(n);
    let mut sketch = arrow::array::BinaryBuilder::new();
    let mut quantiles: [Float64Builder; crate::sketch::STORED_QUANTILES.len()] =
        std::array::from_fn(|_| Float64Builder::with_capacity(n));
    for r in rows {
        let b = &r.bucket;
        sketch.append_option(r.sketch.as_deref());
        for (k, q) in quantiles.iter_mut().enumerate() {
            q.append_option(r.quantiles.map(|v| v[k]));
        }
        name.append_value(r.key.metric_name.as_ref());
        fam.append_value(r.key.family.as_ref());
        sid.append_value(r.key.series_id);
        end.append_value(r.end_ms * 1000);
        first_ts.append_value(b.first_ts * 1000);
        last_ts.append_value(b.last_ts * 1000);
        for (builder, v) in longs.iter_mut().zip([b.count, b.resets, b.changes]) {
            builder.append_value(v as i64);
        }
        for (builder, v) in doubles.iter_mut().zip([
            b.sum,
            b.min,
            b.max,
            b.first,
            b.last,
            b.mean,
            b.m2,
            b.increase(),
            b.reset_sum,
        ]) {
            builder.append_value(v);
        }
        date.append_value(partition_day(resolution_ms, date_of_ms(r.end_ms - 1)));
    }
    let [count, resets, changes] = longs.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [sum, min, max, first, last, mean, m2, increase, reset_sum] =
        doubles.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut by_name: HashMap<&str, ArrayRef> = [
        ("metric_name", Arc::new(name.finish()) as ArrayRef),
        ("series_id", Arc::new(sid.finish())),
        ("bucket_end", Arc::new(end.finish())),
        ("count", count),
        ("sum", sum),
        ("min", min),
        ("max", max),
        ("first_ts", Arc::new(first_ts.finish())),
        ("first", first),
        ("last_ts", Arc::new(last_ts.finish())),
        ("last", last),
        ("mean", mean),
        ("m2", m2),
        ("increase", increase),
        ("reset_sum", reset_sum),
        ("resets", resets),
        ("changes", changes),
        ("sketch", Arc::new(sketch.finish())),
        ("date", Arc::new(date.finish())),
        ("metric_family", Arc::new(fam.finish())),
    ]
    .into_iter()
    .collect();
    for ((_, c), mut q) in crate::sketch::STORED_QUANTILES.iter().zip(quantiles) {
        by_name.insert(c, Arc::new(q.finish()));
    }
    in_schema(schema, by_name)
}

/// A column of `b` by name, cast to `to`.
///
/// # Errors
/// [`RollupError::Invariant`] if `b` has no such column; Arrow cast errors.
pub(crate) fn column(b: &RecordBatch, name: &str, to: &ArrowType) -> Result<ArrayRef> {
    let a = b
        .column_by_name(name)
        .ok_or_else(|| RollupError::Invariant(format!("no column {name} in a tier scan")))?;
    Ok(cast(a, to)?)
}

/// Column `c` of the first row of `batches` as an i64 (timestamps as their µs), `None`
/// for no row or a null: the answer of a one-row aggregate.
///
/// # Errors
/// Arrow cast errors.
pub(crate) fn first_i64(batches: &[RecordBatch], c: usize) -> Result<Option<i64>> {
    let Some(b) = batches.first() else {
        return Ok(None);
    };
    let a = cast(b.column(c), &ArrowType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((!a.is_empty() && !a.is_null(0)).then(|| a.value(0)))
}

/// Reads tier-table rows back from batches holding at least the tier columns (any string
/// or timestamp encoding DataFusion's scans give), without their stored quantiles.
///
/// # Errors
/// [`RollupError::Invariant`] if a column is missing, Arrow cast errors.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut out = vec![];
    let mut keys = Keys::default();
    for b in batches {
        let utf8 = |n: &str| column(b, n, &ArrowType::Utf8);
        let (fam, name) = (utf8("metric_family")?, utf8("metric_name")?);
        let (fam, name) = (fam.as_string::<i32>(), name.as_string::<i32>());
        let cols = BucketColumns::of(b, true)?;
        for i in 0..b.num_rows() {
            let (series_id, end_ms, bucket) = cols.row(i)?;
            out.push(Row {
                key: keys.key(fam.value(i), name.value(i), series_id),
                end_ms,
                bucket,
                sketch: cols.sketch(i).map(<[u8]>::to_vec),
                // Not read back: a tier built from these rows stores the quantiles
                // of its own merged sketches ([`Row::new`]).
                quantiles: None,
            });
        }
    }
    Ok(out)
}

/// The bucket columns of a batch of tier-table rows (`series_id`, `bucket_end`, `count`,
/// whichever other [`Bucket`] fields the batch has, and, if asked, `sketch`), cast to
/// plain types once per batch, read row by row with [`BucketColumns::row`]. A field the
/// batch lacks reads as 0 (the PromQL read path reads only the fields its function
/// needs: [`BUCKET_FIELDS`]).
pub(crate) struct BucketColumns {
    /// `series_id`, `bucket_end`, `count`, `first_ts`, `last_ts` (µs), `resets`,
    /// `changes`.
    longs: Vec<Option<arrow::array::PrimitiveArray<Int64Type>>>,
    /// `sum`, `min`, `max`, `first`, `last`, `mean`, `m2`, `reset_sum`.
    doubles: Vec<Option<arrow::array::PrimitiveArray<Float64Type>>>,
    sketch: Option<arrow::array::BinaryArray>,
    /// The stored-quantile column asked for, if the batch has it.
    quantile: Option<arrow::array::PrimitiveArray<Float64Type>>,
    /// Whether any of `longs` has a null (checked per row only then).
    long_nulls: bool,
}

/// The key columns of a tier-table row, always read.
const KEY_COLUMNS: [&str; 2] = ["series_id", "bucket_end"];

/// The [`Bucket`] fields of a tier table (its columns besides the key, the sketch and
/// the derived `increase`): the first [`LONG_FIELDS`] are integers (timestamps in µs),
/// the others floats.
pub const BUCKET_FIELDS: [&str; 13] = [
    "count",
    "first_ts",
    "last_ts",
    "resets",
    "changes",
    "sum",
    "min",
    "max",
    "first",
    "last",
    "mean",
    "m2",
    "reset_sum",
];

/// How many of [`BUCKET_FIELDS`] are integers.
const LONG_FIELDS: usize = 5;

impl BucketColumns {
    /// The columns of `b`, with `sketch` when `with_sketch` (and the stored-quantile
    /// column `quantile`, when the batch has it).
    ///
    /// # Errors
    /// [`RollupError::Invariant`] if `series_id`, `bucket_end` or `count` is missing (or
    /// `sketch`, when asked); Arrow cast errors.
    pub(crate) fn of(b: &RecordBatch, with_sketch: bool) -> Result<BucketColumns> {
        Self::with_quantile(b, with_sketch, None)
    }

    /// [`BucketColumns::of`], with the stored-quantile column named `quantile` when the
    /// batch has it.
    ///
    /// # Errors
    /// As [`BucketColumns::of`].
    pub(crate) fn with_quantile(
        b: &RecordBatch,
        with_sketch: bool,
        quantile: Option<&str>,
    ) -> Result<BucketColumns> {
        let long = |n: &str| -> Result<_> {
            match b.column_by_name(n) {
                Some(_) => Ok(Some(
                    column(b, n, &ArrowType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                )),
                None if KEY_COLUMNS.contains(&n) || n == "count" => Err(RollupError::Invariant(
                    format!("no column {n} in a tier scan"),
                )),
                None => Ok(None),
            }
        };
        let double = |n: &str| -> Result<_> {
            b.column_by_name(n)
                .map(|_| {
                    column(b, n, &ArrowType::Float64)
                        .map(|a| a.as_primitive::<Float64Type>().clone())
                })
                .transpose()
        };
        let longs: Vec<_> = KEY_COLUMNS
            .iter()
            .chain(&BUCKET_FIELDS[..LONG_FIELDS])
            .map(|n| long(n))
            .collect::<Result<_>>()?;
        Ok(BucketColumns {
            long_nulls: longs.iter().flatten().any(|a| a.null_count() > 0),
            longs,
            doubles: BUCKET_FIELDS[LONG_FIELDS..]
                .iter()
                .map(|n| double(n))
                .collect::<Result<_>>()?,
            sketch: if with_sketch {
                Some(
                    column(b, "sketch", &ArrowType::Binary)?
                        .as_binary::<i32>()
                        .clone(),
                )
            } else {
                None
            },
            quantile: quantile
                .filter(|q| b.column_by_name(q).is_some())
                .map(|q| column(b, q, &ArrowType::Float64))
                .transpose()?
                .map(|a| a.as_primitive::<Float64Type>().clone()),
        })
    }

    /// The columns of `buckets` (`(end ms, bucket)`), as a read of every bucket field and
    /// no sketch column would give them (series id 0).
    pub(crate) fn of_buckets(buckets: &[(i64, Bucket)]) -> BucketColumns {
        let long = |f: &dyn Fn(&(i64, Bucket)) -> i64| {
            Some(arrow::array::PrimitiveArray::<Int64Type>::from_iter_values(
                buckets.iter().map(f),
            ))
        };
        let double = |f: &dyn Fn(&Bucket) -> f64| {
            Some(
                arrow::array::PrimitiveArray::<Float64Type>::from_iter_values(
                    buckets.iter().map(|(_, b)| f(b)),
                ),
            )
        };
        BucketColumns {
            longs: vec![
                long(&|_| 0),
                long(&|(e, _)| e * 1000),
                long(&|(_, b)| b.count as i64),
                long(&|(_, b)| b.first_ts * 1000),
                long(&|(_, b)| b.last_ts * 1000),
                long(&|(_, b)| b.resets as i64),
                long(&|(_, b)| b.changes as i64),
            ],
            doubles: vec![
                double(&|b| b.sum),
                double(&|b| b.min),
                double(&|b| b.max),
                double(&|b| b.first),
                double(&|b| b.last),
                double(&|b| b.mean),
                double(&|b| b.m2),
                double(&|b| b.reset_sum),
            ],
            sketch: None,
            quantile: None,
            long_nulls: false,
        }
    }

    /// Row `i`'s stored quantile, `None` for a null (no sketch) or when not read.
    pub(crate) fn quantile(&self, i: usize) -> Option<f64> {
        self.quantile
            .as_ref()
            .filter(|q| !q.is_null(i))
            .map(|q| q.value(i))
    }

    fn long(&self, k: usize, i: usize) -> i64 {
        self.longs[k].as_ref().map_or(0, |a| a.value(i))
    }

    fn double(&self, k: usize, i: usize) -> f64 {
        self.doubles[k].as_ref().map_or(0.0, |a| a.value(i))
    }

    /// The series id of row `i`.
    pub(crate) fn series_id(&self, i: usize) -> i64 {
        self.long(0, i)
    }

    /// The bucket end of row `i`, ms since the epoch, UTC.
    pub(crate) fn end_ms(&self, i: usize) -> i64 {
        self.long(1, i) / 1000
    }

    /// Row `i`: its series id, bucket end (ms) and bucket (fields the batch lacks 0).
    ///
    /// # Errors
    /// [`RollupError::Invariant`] for a null in the row's key or counts.
    pub(crate) fn row(&self, i: usize) -> Result<(i64, i64, Bucket)> {
        if self.long_nulls && self.longs.iter().flatten().any(|a| a.is_null(i)) {
            return Err(RollupError::Invariant(
                "a null in a tier table's key".into(),
            ));
        }
        let (l, d) = (|k| self.long(k, i), |k| self.double(k, i));
        Ok((
            l(0),
            l(1) / 1000,
            Bucket {
                count: l(2) as u64,
                sum: d(0),
                min: d(1),
                max: d(2),
                first_ts: l(3) / 1000,
                first: d(3),
                last_ts: l(4) / 1000,
                last: d(4),
                mean: d(5),
                m2: d(6),
                reset_sum: d(7),
                resets: l(5) as u64,
                changes: l(6) as u64,
            },
        ))
    }

    /// Row `i`'s sketch bytes, `None` for a null or when not asked for.
    pub(crate) fn sketch(&self, i: usize) -> Option<&[u8]> {
        self.sketch
            .as_ref()
            .filter(|s| !s.is_null(i))
            .map(|s| s.value(i))
    }
}
