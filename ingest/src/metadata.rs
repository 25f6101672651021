//! Metric metadata (type, help, unit per metric family), as senders describe their metrics:
//! remote write 1.0's `WriteRequest.metadata`, remote write 2.0's per-series `Metadata`.
//!
//! Kept in the Delta table `metadata` under the data directory (`metric_family`, `type`,
//! `help`, `unit` strings, `updated` timestamp in µs UTC; unpartitioned), one row per
//! distinct `(family, type, help, unit)`, appended when first seen, and in memory for
//! `/api/v1/metadata`. A family may have several entries (two senders disagreeing on its
//! help text, or a help text that changed): Prometheus's `/api/v1/metadata` answers a list
//! per metric for the same reason (its targets may disagree). Entries are never removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder};
use deltalake::DeltaTable;
use deltalake::kernel::{DataType, StructField};
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;

use crate::error::{IngestError, Result};
use crate::storage::DataDir;

/// Name of the metadata table (a directory under the data directory).
pub const METADATA_TABLE: &str = "metadata";

/// A metric type: the exposition formats' (`# TYPE`), also numbered as remote write's
/// `MetricType` enums are ([`MetricType::of_proto`]).
pub use crate::receive::exposition::MetricType;

/// One description of a metric family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricMetadata {
    /// Its type.
    pub metric_type: MetricType,
    /// Help text (may be empty).
    pub help: String,
    /// Unit (may be empty), e.g. `seconds`.
    pub unit: String,
}

/// The metadata of every family, in memory and in the `metadata` table.
pub struct MetadataStore {
    known: parking_lot::RwLock<BTreeMap<String, BTreeSet<MetricMetadata>>>,
    /// The table; held across an append so that appends commit one at a time.
    table: tokio::sync::Mutex<DeltaTable>,
}

impl MetadataStore {
    /// Opens (or creates) the `metadata` table under `data_dir` and loads every entry.
    ///
    /// # Errors
    /// Storage, Delta or query errors.
    pub async fn open(data_dir: &DataDir) -> Result<MetadataStore> {
        let table = data_dir
            .open_table(
                METADATA_TABLE,
                vec![
                    StructField::new("metric_family", DataType::STRING, false),
                    StructField::new("type", DataType::STRING, false),
                    StructField::new("help", DataType::STRING, false),
                    StructField::new("unit", DataType::STRING, false),
                    StructField::new("updated", DataType::TIMESTAMP, false),
                ],
                &[],
            )
            .await?;
        let mut known: BTreeMap<String, BTreeSet<MetricMetadata>> = BTreeMap::new();
        if table.version().unwrap_or(0) > 0 {
            let ctx = deltalake::datafusion::prelude::SessionContext::new();
            table.update_datafusion_session(&ctx.state())?;
            let df = ctx
                .read_table(table.table_provider().await?)?
                .select_columns(&["metric_family", "type", "help", "unit"])?;
            let mut stream = df.execute_stream().await?;
            while let Some(b) = stream.try_next().await? {
                let col = |i: usize| {
                    arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                        .map_err(IngestError::from)
                };
                let (f, t, h, u) = (col(0)?, col(1)?, col(2)?, col(3)?);
                let s = |a: &arrow::array::ArrayRef, r: usize| {
                    a.as_any()
                        .downcast_ref::<StringArray>()
                        .map(|a| a.value(r).to_string())
                        .unwrap_or_default()
                };
                for r in 0..b.num_rows() {
                    known.entry(s(&f, r)).or_default().insert(MetricMetadata {
                        metric_type: MetricType::of_str(&s(&t, r)),
                        help: s(&h, r),
                        unit: s(&u, r),
                    });
                }
            }
        }
        Ok(MetadataStore {
            known: parking_lot::RwLock::new(known),
            table: tokio::sync::Mutex::new(table),
        })
    }

    /// Records `entries` (family, metadata): those not known yet are appended to the table in
    /// one commit, durably, before this returns. Returns how many were new. Entries with an
    /// empty family name are ignored.
    ///
    /// # Errors
    /// Delta or storage errors; nothing new is then kept in memory either, so a retry of the
    /// same request records them.
    pub async fn record(
        &self,
        entries: impl IntoIterator<Item = (String, MetricMetadata)>,
    ) -> Result<usize> {
        let is_new =
            |known: &BTreeMap<String, BTreeSet<MetricMetadata>>, f: &str, m: &MetricMetadata| {
                !f.is_empty() && !known.get(f).is_some_and(|s| s.contains(m))
            };
        let mut fresh: BTreeSet<(String, MetricMetadata)> = {
            let known = self.known.read();
            entries
                .into_iter()
                .filter(|(f, m)| is_new(&known, f, m))
                .collect()
        };
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut table = self.table.lock().await;
        // Another request may have recorded some meanwhile.
        {
            let known = self.known.read();
            fresh.retain(|(f, m)| is_new(&known, f, m));
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let (mut f, mut t, mut h, mut u) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut updated = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for (family, m) in &fresh {
            f.append_value(family);
            t.append_value(m.metric_type.as_str());
            h.append_value(&m.help);
            u.append_value(&m.unit);
            updated.append_value(now_us);
        }
        let schema = table.snapshot()?.snapshot().arrow_schema();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(f.finish()),
                Arc::new(t.finish()),
                Arc::new(h.finish()),
                Arc::new(u.finish()),
                Arc::new(updated.finish()),
            ],
        )?;
        let next = table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .await?;
        *table = next;
        let n = fresh.len();
        let mut known = self.known.write();
        for (family, m) in fresh {
            known.entry(family).or_default().insert(m);
        }
        Ok(n)
    }

    /// The metadata of `metric` (every family when `None`), as `/api/v1/metadata` lists
    /// it: at most `limit` families (in name order) and `limit_per_metric` entries each
    /// (`None`: no limit).
    pub fn get(
        &self,
        metric: Option<&str>,
        limit: Option<usize>,
        limit_per_metric: Option<usize>,
    ) -> BTreeMap<String, Vec<MetricMetadata>> {
        let known = self.known.read();
        let per = |s: &BTreeSet<MetricMetadata>| {
            s.iter()
                .take(limit_per_metric.unwrap_or(usize::MAX))
                .cloned()
                .collect::<Vec<_>>()
        };
        match metric {
            Some(m) => known
                .get(m)
                .map(|s| BTreeMap::from([(m.to_string(), per(s))]))
                .unwrap_or_default(),
            None => known
                .iter()
                .take(limit.unwrap_or(usize::MAX))
                .map(|(f, s)| (f.clone(), per(s)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(t: MetricType, help: &str) -> MetricMetadata {
        MetricMetadata {
            metric_type: t,
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn type_names_round_trip() {
        for v in 0..8 {
            let t = MetricType::of_proto(v);
            assert_eq!(MetricType::of_str(t.as_str()), t);
        }
        assert_eq!(MetricType::of_proto(3).as_str(), "histogram");
        assert_eq!(MetricType::of_proto(99), MetricType::Unknown);
    }

    #[tokio::test]
    async fn entries_survive_a_reopen_and_are_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let dd = DataDir::Local(dir.path().to_path_buf());
        let store = MetadataStore::open(&dd).await.unwrap();
        let up = ("up".to_string(), meta(MetricType::Gauge, "Up."));
        let req = (
            "req_total".to_string(),
            meta(MetricType::Counter, "Requests."),
        );
        assert_eq!(store.record([up.clone(), req.clone()]).await.unwrap(), 2);
        assert_eq!(store.record([up.clone()]).await.unwrap(), 0);
        let other = ("up".to_string(), meta(MetricType::Gauge, "Another help."));
        assert_eq!(store.record([other.clone(), up.clone()]).await.unwrap(), 1);
        drop(store);
        let store = MetadataStore::open(&dd).await.unwrap();
        let all = store.get(None, None, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all["up"], vec![other.1.clone(), up.1.clone()]);
        assert_eq!(all["req_total"], vec![req.1.clone()]);
        assert_eq!(store.get(Some("up"), None, Some(1))["up"].len(), 1);
        assert_eq!(store.get(None, Some(1), None).len(), 1);
        assert!(store.get(Some("nope"), None, None).is_empty());
    }
}
