//! A JSON push body (`POST /api/v1/metrics`): parsing and validation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_fuzz::json_push(data));
