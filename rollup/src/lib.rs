//! Strata's rollup tiers: per-series aggregates over fixed buckets (by default 1m, 1h and
//! 1d), kept as Delta tables beside `samples` (`docs/rollups.md`).
//!
//! Where a tier is built: [`job::Rollups::build`] reads a time range of the source (the
//! engine's `samples` table, the Delta table and the head, for the first tier; the tier
//! before for the others), [`bucket`] aggregates each series' samples into buckets or
//! merges the finer buckets, and [`table`] writes them as the tier table's rows, replacing
//! that range in one Delta commit with the tier's watermark.
//!
//! Data enters as Arrow batches from the engine and leaves as Delta commits; the tables
//! are registered in the engine's catalog (`rollup_1m`, ...) for SQL, and [`catalog`]
//! tells PromQL's planner which tier holds what; [`read`] reads a tier's buckets for it.
//!
//! Not here: the server's scheduling of the jobs and the HTTP endpoints (the `strata`
//! binary).

pub mod bucket;
pub mod catalog;
pub mod error;
pub mod job;
pub mod read;
pub mod schedule;
pub mod sketch;
pub mod source;
pub mod sql;
pub mod table;
pub mod tier;

pub use catalog::{TierCatalog, TierView};
pub use error::{Result, RollupError};
pub use job::{BuildReport, Expired, Rollups};
pub use schedule::{RollupMetrics, ScheduleConfig};
pub use tier::{Tier, default_tiers};
