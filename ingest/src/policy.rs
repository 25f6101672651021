//! The write-path policies: what of the samples that arrived is kept, and how. They run in
//! [`crate::ingester::Ingester::write`] after a receiver ([`crate::receive`]) has turned a
//! request into validated series, in this order: [`relabel`] (rewrite or drop series),
//! [`sampling`] (thin samples, weight delta points), [`cardinality`] (refuse new series
//! past the limits), [`ingestion_rate`] (a tenant's samples per second). `docs/ingest.md` documents each for users.

pub mod cardinality;
pub mod ingestion_rate;
pub mod relabel;
pub mod sampling;
