//! An OTLP metrics body (`POST /v1/metrics`, the gRPC `MetricsService`) as protobuf and
//! as JSON: decoding, translation, delta running totals.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_fuzz::otlp(data));
