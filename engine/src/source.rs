//! Where the engine's tables get their data: the running write path (head + Delta), or the
//! Delta tables alone (reading a data directory without a server).

use std::collections::HashSet;
use std::sync::Arc;

use deltalake::DeltaTable;
use strata_ingest::Ingester;
use strata_ingest::head::SeriesMeta;
use strata_ingest::storage::DataDir;

pub use strata_ingest::head::HeadSamples;

/// A consistent view of Strata's data for one scan.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The samples: the Delta table as of now and the head's samples of the series whose
    /// metric name is in `names` (all series with `None`), with no sample in both.
    fn samples(&self, names: Option<&HashSet<String>>) -> (DeltaTable, HeadSamples);
    /// As [`Source::samples`], the head's samples only those with `lo <= t <= hi` (ms,
    /// UTC), and only those of the series `ids` (sorted series ids) when it is `Some`: a
    /// scan whose filters bound the time or name its series copies that window of those
    /// series from the head, not all of it. By default, all of them (the scan's filters
    /// still apply).
    fn samples_of(
        &self,
        names: Option<&HashSet<String>>,
        ids: Option<&[u64]>,
        lo_ms: i64,
        hi_ms: i64,
    ) -> (DeltaTable, HeadSamples) {
        let _ = (ids, lo_ms, hi_ms);
        self.samples(names)
    }
    /// The Delta samples table as of now and the earliest sample time (ms, UTC) among
    /// the samples not in it (the head's), `None` without any: one consistent view. This
    /// default copies the head ([`Source::samples`]).
    fn oldest_in_head(&self) -> (DeltaTable, Option<i64>) {
        let (table, head) = self.samples(None);
        let t = head
            .iter()
            .filter_map(|(_, v)| v.first().map(|s| s.timestamp_ms))
            .min();
        (table, t)
    }
    /// The series catalog: the Delta table and the head's series not yet in it.
    fn series(&self) -> (DeltaTable, Vec<Arc<SeriesMeta>>);

    /// As [`Source::series`], the head's series only those whose metric name is one of
    /// `names` (all with `None`); this default returns them all.
    fn series_named(&self, names: Option<&[String]>) -> (DeltaTable, Vec<Arc<SeriesMeta>>) {
        let _ = names;
        self.series()
    }

    /// As [`Source::series_named`], the head's series only those `keep` accepts, and how
    /// many head series of `names` there are, accepted or not.
    fn series_where(
        &self,
        names: Option<&[String]>,
        keep: &dyn Fn(&SeriesMeta) -> bool,
    ) -> (DeltaTable, Vec<Arc<SeriesMeta>>, usize) {
        let (table, mut series) = self.series_named(names);
        let named = series.len();
        series.retain(|m| keep(m));
        (table, series, named)
    }
}

/// The running write path as a source.
pub struct IngesterSource(pub Arc<Ingester>);

impl std::fmt::Debug for IngesterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngesterSource")
    }
}

impl Source for IngesterSource {
    fn samples(&self, names: Option<&HashSet<String>>) -> (DeltaTable, HeadSamples) {
        self.0.read_samples(names)
    }
    fn samples_of(
        &self,
        names: Option<&HashSet<String>>,
        ids: Option<&[u64]>,
        lo_ms: i64,
        hi_ms: i64,
    ) -> (DeltaTable, HeadSamples) {
        self.0.read_samples_of(names, ids, Some((lo_ms, hi_ms)))
    }
    fn oldest_in_head(&self) -> (DeltaTable, Option<i64>) {
        self.0.oldest_in_head()
    }
    fn series(&self) -> (DeltaTable, Vec<Arc<SeriesMeta>>) {
        self.0.read_series()
    }
    fn series_named(&self, names: Option<&[String]>) -> (DeltaTable, Vec<Arc<SeriesMeta>>) {
        self.0.read_series_named(names)
    }
    fn series_where(
        &self,
        names: Option<&[String]>,
        keep: &dyn Fn(&SeriesMeta) -> bool,
    ) -> (DeltaTable, Vec<Arc<SeriesMeta>>, usize) {
        self.0.read_series_where(names, keep)
    }
}

/// The Delta tables of a data directory, read as they are (no head, no WAL).
#[derive(Debug)]
pub struct StaticSource {
    samples: DeltaTable,
    series: DeltaTable,
}

impl StaticSource {
    /// Opens the tables of `dir` (creating empty ones if missing).
    ///
    /// # Errors
    /// Storage or Delta errors.
    pub async fn open(dir: &DataDir) -> crate::Result<StaticSource> {
        Ok(StaticSource {
            samples: dir.open_samples().await?,
            series: dir.open_series().await?,
        })
    }
}

impl Source for StaticSource {
    fn samples(&self, _names: Option<&HashSet<String>>) -> (DeltaTable, HeadSamples) {
        (self.samples.clone(), vec![])
    }
    fn series(&self) -> (DeltaTable, Vec<Arc<SeriesMeta>>) {
        (self.series.clone(), vec![])
    }
}
