//! The series index: the series catalog (Delta `series` table + the head's new series)
//! kept in memory with postings by label pair, so that a PromQL selector or a
//! `/api/v1/series` request finds its series without a SQL scan of the catalog.
//!
//! The Delta part is loaded once per version of the `series` table and kept until the table
//! moves on (a persistence cycle that added series commits a new version); the head's series
//! not yet in the catalog are converted once and kept by fingerprint. Prometheus keeps the
//! same kind of in-memory index over its head (`tsdb/index/postings.go`). Postings are kept
//! per label pair, `__name__` included (which gives postings by metric name). A selector's
//! matchers that need a non-empty value ([`Narrowing`]) intersect postings, as Prometheus's
//! `PostingsForMatchers` does, and the caller then evaluates every matcher on the series
//! left.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, MapArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use parking_lot::Mutex;
use strata_ingest::head::SeriesMeta;

use crate::source::Source;

/// The label holding the metric name.
const NAME: &str = "__name__";

/// One series of the catalog: its fingerprint (as stored) and its labels, `__name__`
/// included, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesLabels {
    /// The series fingerprint's bits as a signed integer (the tables' `series_id`).
    pub series_id: i64,
    /// Labels sorted by name (byte order), `__name__` included; no empty values.
    pub labels: Vec<(String, String)>,
}

impl SeriesLabels {
    /// The value of `name`, or `""` when the series has no such label.
    pub fn get(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn from_meta(m: &SeriesMeta) -> SeriesLabels {
        let mut labels: Vec<(String, String)> = m
            .labels
            .pairs()
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        labels.sort();
        SeriesLabels {
            series_id: m.id as i64,
            labels,
        }
    }
}

/// The catalog as of one version of the Delta `series` table.
#[derive(Default)]
struct Loaded {
    version: Option<u64>,
    /// Sorted by labels.
    series: Vec<Arc<SeriesLabels>>,
    /// Label name (`__name__` included: postings by metric name) -> value -> positions in
    /// `series` (ascending, so sorted by labels too).
    by_label: HashMap<String, HashMap<String, Vec<u32>>>,
    ids: HashSet<i64>,
}

/// A matcher that only picks series having `label` with a non-empty value, so that the
/// series index can narrow candidates with its postings (label `=` a non-empty value;
/// `=~` a regex that does not match the empty string).
pub enum Narrowing<'a> {
    /// `label` equals this value (non-empty).
    Equal(&'a str, &'a str),
    /// `label` has a non-empty value that the predicate accepts.
    Matching(&'a str, &'a (dyn Fn(&str) -> bool + Sync)),
}

/// The in-memory series index over a [`Source`] (see the module doc). Cheap to share;
/// registered on the engine's session as a config extension
/// (`ctx.state().config().get_extension::<SeriesIndex>()`).
pub struct SeriesIndex {
    source: Arc<dyn Source>,
    loaded: tokio::sync::Mutex<Arc<Loaded>>,
    head: Mutex<HashMap<u64, Arc<SeriesLabels>>>,
}

impl std::fmt::Debug for SeriesIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeriesIndex")
    }
}

impl SeriesIndex {
    /// An index over `source`; nothing is read until the first lookup.
    pub fn new(source: Arc<dyn Source>) -> SeriesIndex {
        SeriesIndex {
            source,
            loaded: tokio::sync::Mutex::new(Arc::new(Loaded::default())),
            head: Mutex::new(HashMap::new()),
        }
    }

    /// The series whose metric name is one of `names` (all series with `None`), sorted by
    /// labels, each once.
    ///
    /// # Errors
    /// Delta or DataFusion errors reading a new version of the `series` table.
    pub async fn series(&self, names: Option<&[String]>) -> crate::Result<Vec<Arc<SeriesLabels>>> {
        Ok(self.series_narrowed(names, &[]).await?.0)
    }

    /// As [`SeriesIndex::series`], narrowed by the postings of `narrow`: a series of the
    /// catalog, or of the head's not yet in it, is returned only if it passes every
    /// [`Narrowing`] (callers still evaluate their matchers on the result). Also returns
    /// how many series `names` alone picks.
    ///
    /// # Errors
    /// As [`SeriesIndex::series`].
    pub async fn series_narrowed(
        &self,
        names: Option<&[String]>,
        narrow: &[Narrowing<'_>],
    ) -> crate::Result<(Vec<Arc<SeriesLabels>>, usize)> {
        // The head's series not yet in the catalog have no postings: the narrowings are
        // checked on each of the names' series as the head lists them.
        let passes = |m: &SeriesMeta| {
            narrow.iter().all(|n| match n {
                Narrowing::Equal(l, v) => m.labels.get(l) == Some(*v),
                Narrowing::Matching(l, accepts) => {
                    m.labels.get(l).is_some_and(|v| !v.is_empty() && accepts(v))
                }
            })
        };
        let (table, head, head_named) = self.source.series_where(names, &passes);
        let loaded = self.catalog(&table).await?;
        let by_name = loaded.by_label.get(NAME);
        let mut pos: Option<Vec<u32>> = names.map(|names| {
            let mut pos: Vec<u32> = names
                .iter()
                .flat_map(|n| {
                    by_name
                        .and_then(|b| b.get(n))
                        .into_iter()
                        .flatten()
                        .copied()
                })
                .collect();
            if names.len() > 1 {
                pos.sort_unstable();
                pos.dedup();
            }
            pos
        });
        let mut count = pos.as_ref().map_or(loaded.series.len(), Vec::len);
        for n in narrow {
            let picked = loaded.postings(n);
            pos = Some(match pos {
                None => picked,
                Some(p) => intersect(&p, &picked),
            });
        }
        let mut out: Vec<Arc<SeriesLabels>> = match pos {
            None => loaded.series.clone(),
            Some(pos) => pos
                .iter()
                .map(|p| loaded.series[*p as usize].clone())
                .collect(),
        };
        let wanted = |m: &SeriesMeta| {
            names.is_none_or(|n| n.iter().any(|x| x == m.labels.metric_name()))
                && !loaded.ids.contains(&(m.id as i64))
        };
        let extra: Vec<Arc<SeriesLabels>> = {
            let mut cache = self.head.lock();
            head.iter()
                .filter(|m| wanted(m))
                .map(|m| {
                    cache
                        .entry(m.id)
                        .or_insert_with(|| Arc::new(SeriesLabels::from_meta(m)))
                        .clone()
                })
                .collect()
        };
        // Head series of the names count as candidates whether or not they pass (what
        // the names alone pick decides whether a scan names its series).
        count += head_named;
        if !extra.is_empty() {
            out.extend(extra);
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            out.dedup_by_key(|s| s.series_id);
        }
        Ok((out, count))
    }

    /// The catalog as of `table`'s version, loading it if the version moved.
    async fn catalog(&self, table: &DeltaTable) -> crate::Result<Arc<Loaded>> {
        let version = table.version();
        let mut guard = self.loaded.lock().await;
        if guard.version == version && version.is_some() {
            return Ok(guard.clone());
        }
        let loaded = Arc::new(load(table, version).await?);
        // Series now in the catalog need no head copy any more.
        self.head
            .lock()
            .retain(|id, _| !loaded.ids.contains(&(*id as i64)));
        *guard = loaded.clone();
        Ok(loaded)
    }
}

impl Loaded {
    /// `series` sorted by labels, with their postings.
    fn indexed(mut series: Vec<Arc<SeriesLabels>>) -> Loaded {
        let mut loaded = Loaded::default();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        for (i, s) in series.iter().enumerate() {
            for (n, v) in &s.labels {
                loaded
                    .by_label
                    .entry(n.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default()
                    .push(i as u32);
            }
        }
        loaded.series = series;
        loaded
    }
    /// The positions of the series that pass `n`, ascending.
    fn postings(&self, n: &Narrowing<'_>) -> Vec<u32> {
        let label = match n {
            Narrowing::Equal(l, _) | Narrowing::Matching(l, _) => *l,
        };
        let Some(values) = self.by_label.get(label) else {
            return vec![];
        };
        match n {
            Narrowing::Equal(_, v) => values.get(*v).cloned().unwrap_or_default(),
            Narrowing::Matching(_, accepts) => {
                let mut out: Vec<u32> = values
                    .iter()
                    .filter(|(v, _)| accepts(v))
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect();
                out.sort_unstable();
                out
            }
        }
    }
}

/// The intersection of two ascending position lists.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, vec![]);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Reads the Delta `series` table (no head) into a [`Loaded`].
async fn load(table: &DeltaTable, version: Option<u64>) -> crate::Result<Loaded> {
    let mut loaded = Loaded {
        version,
        ..Loaded::default()
    };
    if version.is_none() {
        return Ok(loaded);
    }
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    let batches = ctx
        .read_table(provider)?
        .select_columns(&["series_id", "metric_name", "labels"])?
        .collect()
        .await?;
    let mut series = vec![];
    for b in &batches {
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| internal("series_id is not Int64"))?;
        let names =
            datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8).map_err(arrow)?;
        let names = names.as_string::<i32>();
        let maps = b
            .column(2)
            .as_any()
            .downcast_ref::<MapArray>()
            .ok_or_else(|| internal("labels is not a map"))?;
        for i in 0..b.num_rows() {
            if !loaded.ids.insert(ids.value(i)) {
                continue;
            }
            let mut labels = vec![(NAME.to_string(), names.value(i).to_string())];
            if maps.is_valid(i) {
                let entries = maps.value(i);
                let k = datafusion::arrow::compute::cast(entries.column(0), &DataType::Utf8)
                    .map_err(arrow)?;
                let v = datafusion::arrow::compute::cast(entries.column(1), &DataType::Utf8)
                    .map_err(arrow)?;
                let (k, v) = (k.as_string::<i32>(), v.as_string::<i32>());
                for j in 0..k.len() {
                    if v.is_valid(j) && !v.value(j).is_empty() {
                        labels.push((k.value(j).to_string(), v.value(j).to_string()));
                    }
                }
            }
            labels.sort();
            series.push(Arc::new(SeriesLabels {
                series_id: ids.value(i),
                labels,
            }));
        }
    }
    Ok(Loaded {
        version,
        ids: loaded.ids,
        ..Loaded::indexed(series)
    })
}

fn internal(msg: &str) -> crate::EngineError {
    crate::EngineError::DataFusion(datafusion::error::DataFusionError::Internal(msg.into()))
}

fn arrow(e: datafusion::arrow::error::ArrowError) -> crate::EngineError {
    crate::EngineError::DataFusion(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: i64, pairs: &[(&str, &str)]) -> Arc<SeriesLabels> {
        let mut labels: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        labels.sort();
        Arc::new(SeriesLabels {
            series_id: id,
            labels,
        })
    }

    fn ids(l: &Loaded, pos: &[u32]) -> Vec<i64> {
        pos.iter()
            .map(|p| l.series[*p as usize].series_id)
            .collect()
    }

    #[test]
    fn postings_pick_series_by_label_pair_and_by_value_predicate() {
        let l = Loaded::indexed(vec![
            s(1, &[("__name__", "up"), ("job", "api"), ("env", "prod")]),
            s(2, &[("__name__", "up"), ("job", "db")]),
            s(3, &[("__name__", "cpu"), ("job", "api"), ("env", "dev")]),
        ]);
        // Sorted by labels: `__name__` cpu first, then up{env=prod}, then up{job=db}.
        assert_eq!(ids(&l, &[0, 1, 2]), vec![3, 1, 2]);
        let api = l.postings(&Narrowing::Equal("job", "api"));
        assert_eq!(ids(&l, &api), vec![3, 1]);
        assert_eq!(
            l.postings(&Narrowing::Equal("job", "web")),
            Vec::<u32>::new()
        );
        assert_eq!(
            l.postings(&Narrowing::Equal("zone", "a")),
            Vec::<u32>::new()
        );
        let has_env = |v: &str| v == "prod" || v == "dev";
        let env = l.postings(&Narrowing::Matching("env", &has_env));
        assert_eq!(ids(&l, &env), vec![3, 1]);
        let up = l.postings(&Narrowing::Equal("__name__", "up"));
        assert_eq!(ids(&l, &intersect(&api, &up)), vec![1]);
        assert_eq!(intersect(&[0, 2, 5, 7], &[1, 2, 7, 9]), vec![2, 7]);
    }
}
