//! The `strata` binary's library: configuration, the server that ties the crates together,
//! the SQL client and the load bench. Each capability lives in its crate: the write path in
//! `strata-ingest`, queries in `strata-engine`, Flight SQL in `strata-flight`.

pub mod background;
pub mod baselines;
pub mod bench;
pub mod config;
pub mod deltas;
pub mod notifier;
pub mod otlp;
pub mod prom_api;
pub mod promqltest;
pub mod rollup_api;
pub mod ruler;
pub mod rules_api;
pub mod rules_test;
pub mod server;
pub mod sql_client;
pub mod statsd;
pub mod tenants;
