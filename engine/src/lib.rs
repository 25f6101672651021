//! Strata's query engine: a DataFusion session whose catalog shows Strata's data.
//!
//! Where a query is planned: [`Engine::context`] is a DataFusion `SessionContext` with
//! catalog `strata`, schema `public`, holding
//! - `samples` ([`tables::HeadDeltaTable`]): every sample, the Delta `samples` table and the
//!   in-memory head together, so a sample is visible as soon as its write is acknowledged;
//! - `series` (the same provider): the series catalog (Delta table + the head's new
//!   series);
//! - `metrics`: a view joining the two, `metric_name, labels, timestamp, value, series_id`,
//!   so that SQL can filter and group by labels: `labels['instance']`;
//!
//! and, as session config extensions, the [`series_index::SeriesIndex`]: the catalog in
//! memory, where PromQL selectors find their series; and [`tables::PruningSamples`], the
//! `samples` provider PromQL scans read through (filters prune files, row groups and pages
//! but are not evaluated per row; it reads Strata's own tables through a per-version
//! [`files::FileList`] rather than delta-rs's scan planning, and the rows of a few series
//! by the files' [`runs::SeriesRuns`], through caches of whole files
//! ([`file_cache`]) and of decoded series runs ([`sample_cache`])).
//!
//! Not here: the write path (`strata-ingest`), PromQL (`promql-to-sql`), the wire protocols.
//! Data enters through a [`Source`] and leaves as Arrow record batches.

pub mod file_cache;
pub mod files;
pub mod runs;
pub mod sample_cache;
pub mod series_index;
pub mod source;
pub mod tables;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::execution::context::SessionConfig;
use datafusion::prelude::SessionContext;

pub use source::{Source, StaticSource};

/// The catalog name Strata's tables live in.
pub const CATALOG: &str = "strata";
/// The schema name Strata's tables live in.
pub const SCHEMA: &str = "public";

/// The longest `series_id IN (...)` list Parquet row-group pruning evaluates (a PromQL
/// selector of up to this many series names them in its scan).
pub const MAX_SERIES_IN_LIST: usize = 1000;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Planning or executing a query failed (bad SQL gives a planning error naming it).
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Opening the tables failed.
    #[error(transparent)]
    Ingest(#[from] strata_ingest::IngestError),
    /// Reading a Delta table failed.
    #[error(transparent)]
    Delta(#[from] deltalake::DeltaTableError),
}

/// Result alias for this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The sizes of the caches PromQL's scans of the `samples` table read through (bytes;
/// 0 turns a cache off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    /// Whole Parquet files in memory ([`file_cache`]); default
    /// [`file_cache::FILE_CACHE_BYTES`].
    pub file_bytes: usize,
    /// Decoded samples of series runs ([`sample_cache`]); default
    /// [`sample_cache::SAMPLE_CACHE_BYTES`].
    pub sample_bytes: usize,
}

impl Default for CacheSizes {
    fn default() -> Self {
        CacheSizes {
            file_bytes: file_cache::FILE_CACHE_BYTES,
            sample_bytes: sample_cache::SAMPLE_CACHE_BYTES,
        }
    }
}

/// The query engine over a [`Source`].
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    source: Arc<dyn Source>,
}

impl Engine {
    /// Builds the session and registers the tables and views over `source`, with PromQL's
    /// caches at their default sizes ([`CacheSizes::default`]).
    ///
    /// # Errors
    /// DataFusion errors registering the view (a broken invariant).
    pub async fn new(source: Arc<dyn Source>) -> Result<Engine> {
        Engine::with_caches(source, CacheSizes::default()).await
    }

    /// As [`Engine::new`], with PromQL's caches of the `samples` table's files and decoded
    /// samples at `caches`' sizes.
    ///
    /// # Errors
    /// DataFusion errors registering the view (a broken invariant).
    pub async fn with_caches(source: Arc<dyn Source>, caches: CacheSizes) -> Result<Engine> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            // PromQL selectors name their series (`series_id IN (...)`, up to
            // `MAX_SERIES_IN_LIST`): let row-group pruning use lists that long (DataFusion's
            // default stops at 20). Page pruning ignores this setting in DataFusion 55;
            // `tables::PruningSamples` rewrites its lists as `OR`s for that.
            .set_usize(
                "datafusion.execution.parquet.max_in_list_size",
                MAX_SERIES_IN_LIST,
            )
            .with_extension(Arc::new(series_index::SeriesIndex::new(source.clone())))
            .with_extension(Arc::new(tables::PruningSamples(Arc::new(
                tables::HeadDeltaTable::pruning_samples(source.clone(), caches)?,
            ))));
        let ctx = SessionContext::new_with_config(config);
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let schema = Arc::new(MemorySchemaProvider::new());
        use datafusion::catalog::{CatalogProvider, SchemaProvider};
        catalog.register_schema(SCHEMA, schema.clone())?;
        ctx.register_catalog(CATALOG, catalog);
        schema.register_table(
            "samples".into(),
            Arc::new(tables::HeadDeltaTable::new(
                source.clone(),
                tables::Kind::Samples,
            )?),
        )?;
        schema.register_table(
            "series".into(),
            Arc::new(tables::HeadDeltaTable::new(
                source.clone(),
                tables::Kind::Series,
            )?),
        )?;
        ctx.sql(
            "CREATE VIEW metrics AS \
             SELECT s.metric_name, r.labels, s.timestamp, s.value, s.series_id \
             FROM samples s JOIN series r ON s.series_id = r.series_id",
        )
        .await?;
        Ok(Engine { ctx, source })
    }

    /// The data the tables read: a consistent view of the Delta tables and the head per
    /// call (for readers that take a series' samples as they are, such as the rollup
    /// jobs, without Arrow rows).
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// The DataFusion session (cheap to clone; shares the catalog).
    pub fn context(&self) -> SessionContext {
        self.ctx.clone()
    }

    /// Runs one SQL statement and collects its result.
    ///
    /// # Errors
    /// Planning errors (unknown table or column, syntax) and execution errors.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.ctx.sql(query).await?.collect().await?)
    }
}
