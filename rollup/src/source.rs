//! Raw samples as the first tier's job reads them: per series, in time order, from the
//! engine's [`strata_engine::Source`] — the Delta `samples` table (a DataFusion scan of
//! the time range, its files pruned by their statistics) and the head (each series'
//! sample vector as the head holds it).
//!
//! Not through the engine's `samples` table: that makes one Arrow row per sample with its
//! metric name and family strings, which the job then sorted back into series; under a
//! backlog that copying and sorting was most of the job's CPU (`benches/README.md`, the
//! rollup-ingest figures). The head already keeps each series' samples in time order, and
//! a Delta file sorted by series and time: only a series found in more than one place (a
//! file and the head, two files) has its samples sorted.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::logical_expr::col;
use datafusion::prelude::SessionContext;
use strata_engine::Engine;
use strata_ingest::model::Sample;

use crate::error::{Result, RollupError};
use crate::job::ts_lit;
use crate::table::{Keys, SeriesKey, column};

/// One series' raw samples in a time range.
#[derive(Debug, Clone)]
pub struct SeriesSamples {
    /// The series.
    pub key: SeriesKey,
    /// Its samples, ascending by time (staleness markers included).
    pub samples: Vec<Sample>,
}

/// The raw samples with `from < t <= to` (ms, UTC) of every series, series ordered as the
/// tier tables are (family, metric name, series id; [`SeriesKey`]'s order), each series'
/// samples ascending by time. The Delta table and the head are read from one consistent
/// view ([`strata_engine::Source::samples_of`]: no sample in both).
///
/// # Errors
/// DataFusion or Delta errors reading the table; [`RollupError::Invariant`] for a null
/// key in it.
pub async fn between(engine: &Engine, from: i64, to: i64) -> Result<Vec<SeriesSamples>> {
    let (table, head) = engine.source().samples_of(None, None, from + 1, to);
    let mut runs = Runs::default();
    let batches = SessionContext::new()
        .read_table(table.table_provider().await?)?
        .filter(
            col("timestamp")
                .gt(ts_lit(from))
                .and(col("timestamp").lt_eq(ts_lit(to))),
        )?
        .select_columns(&[
            "metric_family",
            "metric_name",
            "series_id",
            "timestamp",
            "value",
        ])?
        .collect()
        .await?;
    for b in &batches {
        runs.add_batch(b)?;
    }
    for (m, samples) in head {
        let key = runs
            .keys
            .key(&m.family, m.labels.metric_name(), m.id as i64);
        runs.add(key, samples);
    }
    Ok(runs.finish())
}

/// Series' samples gathered from several places: each series once, in the order found,
/// and whether its samples need sorting.
#[derive(Default)]
struct Runs {
    out: Vec<SeriesSamples>,
    /// Whether `out[i]` got samples from more than one place out of time order.
    unsorted: Vec<bool>,
    index: HashMap<i64, usize>,
    keys: Keys,
}

impl Runs {
    /// The index in `out` of `key`'s series, added if new.
    fn slot(&mut self, key: SeriesKey) -> usize {
        *self.index.entry(key.series_id).or_insert_with(|| {
            self.out.push(SeriesSamples {
                key,
                samples: vec![],
            });
            self.unsorted.push(false);
            self.out.len() - 1
        })
    }

    /// Appends `samples` (ascending by time) to `key`'s series.
    fn add(&mut self, key: SeriesKey, samples: Vec<Sample>) {
        let i = self.slot(key);
        let s = &mut self.out[i].samples;
        if s.is_empty() {
            *s = samples;
            return;
        }
        if let (Some(last), Some(first)) = (s.last(), samples.first())
            && first.timestamp_ms < last.timestamp_ms
        {
            self.unsorted[i] = true;
        }
        s.extend(samples);
    }

    /// Appends the rows of a batch of `metric_family, metric_name, series_id, timestamp
    /// (µs), value` (each series' rows ascending by time, as a file is sorted).
    fn add_batch(&mut self, b: &RecordBatch) -> Result<()> {
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
        let mut start = 0;
        while start < b.num_rows() {
            // One series' rows: a run of one series id.
            let id = sid.value(start);
            let mut end = start + 1;
            while end < b.num_rows() && sid.value(end) == id {
                end += 1;
            }
            let samples = (start..end)
                .map(|i| Sample {
                    timestamp_ms: ts.value(i).div_euclid(1000),
                    // A null value (never written by Strata) reads as a staleness marker.
                    value: if val.is_null(i) {
                        strata_ingest::model::stale_nan()
                    } else {
                        val.value(i)
                    },
                })
                .collect();
            let key = self.keys.key(fam.value(start), name.value(start), id);
            self.add(key, samples);
            start = end;
        }
        Ok(())
    }

    /// The series in [`SeriesKey`] order, each one's samples sorted by time (a stable
    /// sort: of equal times, the order found).
    fn finish(mut self) -> Vec<SeriesSamples> {
        for (s, unsorted) in self.out.iter_mut().zip(&self.unsorted) {
            if *unsorted {
                s.samples.sort_by_key(|x| x.timestamp_ms);
            }
        }
        self.out.sort_by(|a, b| a.key.cmp(&b.key));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(id: i64) -> SeriesKey {
        SeriesKey {
            family: Arc::from("f"),
            metric_name: Arc::from(if id < 10 { "b" } else { "a" }),
            series_id: id,
        }
    }

    fn samples(ts: &[i64]) -> Vec<Sample> {
        ts.iter()
            .map(|&t| Sample {
                timestamp_ms: t,
                value: t as f64,
            })
            .collect()
    }

    #[test]
    fn a_series_from_several_places_is_one_series_in_time_order() {
        let mut r = Runs::default();
        r.add(key(1), samples(&[40, 50]));
        r.add(key(11), samples(&[5]));
        r.add(key(1), samples(&[10, 20]));
        r.add(key(2), samples(&[1, 2]));
        r.add(key(2), samples(&[3]));
        let out = r.finish();
        // Key order: metric "a" (id 11) before "b" (ids 1, 2).
        let got: Vec<(i64, Vec<i64>)> = out
            .iter()
            .map(|s| {
                let ts = s.samples.iter().map(|x| x.timestamp_ms).collect();
                (s.key.series_id, ts)
            })
            .collect();
        assert_eq!(
            got,
            vec![(11, vec![5]), (1, vec![10, 20, 40, 50]), (2, vec![1, 2, 3])]
        );
    }
}
