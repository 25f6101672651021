//! Raw samples as the first tier's job reads them from the engine's `samples` table.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::error::{Result, RollupError};

/// One raw sample with its series.
#[derive(Debug, Clone)]
pub struct RawSample {
    /// The metric family.
    pub family: Arc<str>,
    /// The metric name.
    pub metric_name: Arc<str>,
    /// The series fingerprint (`samples.series_id`).
    pub series_id: i64,
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
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: &str| -> Arc<str> {
        names
            .entry(s.to_string())
            .or_insert_with(|| Arc::from(s))
            .clone()
    };
    for b in batches {
        let get = |n: &str, to: &DataType| -> Result<Arc<dyn Array>> {
            let a = b
                .column_by_name(n)
                .ok_or_else(|| RollupError::Invariant(format!("no column {n} in samples")))?;
            Ok(cast(a, to)?)
        };
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
        let mut last: Option<(i64, Arc<str>, Arc<str>)> = None;
        for i in 0..b.num_rows() {
            let id = sid.value(i);
            let (f, m) = match &last {
                Some((l, f, m)) if *l == id => (f.clone(), m.clone()),
                _ => {
                    let (f, m) = (intern(fam.value(i)), intern(name.value(i)));
                    last = Some((id, f.clone(), m.clone()));
                    (f, m)
                }
            };
            out.push(RawSample {
                family: f,
                metric_name: m,
                series_id: id,
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
