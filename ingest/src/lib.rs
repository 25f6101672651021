//! Strata's write path.
//!
//! Where a sample goes: a protocol module turns a request into series
//! ([`remote_write`], [`json`], [`scrape`] with [`exposition`]) -> [`validate`] checks names
//! and limits -> [`ingester::Ingester::write`] logs it to the [`wal`] (synced, group commit)
//! and applies it to the in-memory [`head`] -> acknowledged. In the background
//! [`ingester::Ingester::persist`] writes the head into the Delta tables of [`storage`] and
//! truncates the WAL. Samples written into time the rollup tiers already built are
//! marked [`late`], durably, so that the tiers build it again.
//!
//! Not here: queries (the `strata-engine` crate reads the head and the tables through
//! [`ingester::Ingester::read_samples`]) and HTTP (the `strata` binary).

pub mod compaction;
pub mod error;
pub mod exposition;
pub mod head;
pub mod ingester;
pub mod json;
pub mod late;
pub mod metrics;
pub mod model;
pub mod remote_write;
pub mod scrape;
pub mod storage;
pub mod validate;
pub mod wal;

pub use error::{IngestError, Result};
pub use ingester::{Ingester, PersistConfig, PersistReport, WriteOutcome};
pub use model::{Labels, RawLabels, Sample, SeriesSamples};
pub use validate::Limits;
