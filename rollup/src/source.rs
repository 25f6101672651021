//! Raw samples as the first tier's job reads them from the engine's `samples` table.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::error::{Result, RollupError};
use crate::table::{Keys, SeriesKey, column};

/// One raw sample with its series.
#[derive(Debug, Clone)]
pub struct RawSample {
    /// The series.
    pub key: SeriesKey,
    /// The timestamp, ms since the epoch, UTC.
    pub t_ms: i64,
    /// The value (may be a staleness marker).
    pub value: f64,
}

/// Reads batches of `metric_family, metric_name, series_id, timestamp (µs), value`.
///
/// # Errors
/// [`RollupError::Invariant`] for a missing column or a null key; Arrow cast errors.
pub fn samples(batches: &[RecordBatch]) -> Result<Vec<RawSample>> {
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    let mut keys = Keys::default();
    for b in batches {
        let get = |n: &str, to: &DataType| column(b, n, to);
        let fam = get("metric_family", &DataType::Utf8)?;
        let name = get("metric_name", &DataType::Utf8)?;
        let sid = get("series_id", &DataType::Int64)?;
        let ts = get("timestamp", &DataType::Int64)?;
        let val = get("value", &DataType::Float64)?;
        let (fam, name) = (fam.as_string::<i32>(), name.as_string::<i32>());
        let (sid, ts) = (
            sid.as_primitive::<Int64Type>(),
            ts.as_primitive::<Int64Type>(),
        );
        let val = val.as_primitive::<Float64Type>();
        if fam.null_count() + name.null_count() + sid.null_count() + ts.null_count() > 0 {
            return Err(RollupError::Invariant("a null key in samples".into()));
        }
        for i in 0..b.num_rows() {
            out.push(RawSample {
                key: keys.key(fam.value(i), name.value(i), sid.value(i)),
                t_ms: ts.value(i).div_euclid(1000),
                // A null value (never written by Strata) reads as a staleness marker.
                value: if val.is_null(i) {
                    strata_ingest::model::stale_nan()
                } else {
                    val.value(i)
                },
            });
        }
    }
    Ok(out)
}
