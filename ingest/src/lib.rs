//! Strata's write path.
//!
//! Where a sample goes: a protocol module of [`receive`] turns a request into series
//! (remote write 1.0 and 2.0, JSON, Influx line protocol, OTLP, StatsD, scrapes) ->
//! [`validate`] checks names and limits -> [`ingester::Ingester::write`] applies the
//! [`policy`] steps (relabeling, sampling, cardinality limits), logs it to the [`wal`]
//! (synced, group commit) and applies it to the in-memory [`head`] -> acknowledged.
//! Metric metadata goes to [`metadata`]. In the background
//! [`ingester::Ingester::persist`] writes the head into the Delta tables of [`storage`] and
//! truncates the WAL. Samples written into time the rollup tiers already built are
//! marked [`late`], durably, so that the tiers build it again.
//!
//! Not here: queries (the `strata-engine` crate reads the head and the tables through
//! [`ingester::Ingester::read_samples`]) and HTTP (the `strata` binary).

pub mod compaction;
pub mod error;
pub mod head;
pub mod ingester;
pub mod late;
pub mod metadata;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod receive;
pub mod sketch;
pub mod storage;
pub mod validate;
pub mod wal;

pub use error::{IngestError, Result};
pub use ingester::{Ingester, PersistConfig, PersistReport, WriteOutcome};
pub use model::{Labels, RawLabels, Sample, SeriesSamples};
pub use validate::Limits;
