//! Strata's integration tests: one binary, one module per area.

mod alerting;
mod anomaly;
mod common;
mod crash;
mod fuzz;
mod governance;
mod hardening;
mod ingest_http;
mod otlp;
mod prom_api;
mod prom_query;
mod promqltest;
mod remote_write;
mod rollup;
mod rules;
mod scrape;
mod slt;
mod statsd;
mod tenants;
