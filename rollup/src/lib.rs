//! Strata's rollup tiers.
//!
//! Where a tier is built: [`bucket`] turns one series' raw samples into per-bucket
//! aggregates and merges a finer tier's buckets into coarser ones.
pub mod bucket;
