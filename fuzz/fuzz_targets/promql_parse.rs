//! A PromQL query as `/api/v1/query` and `/api/v1/query_range` run it: parsed, planned and
//! run on a small engine (a few series, half in Delta and half in the head). The HTTP API
//! only takes UTF-8 text; other inputs are skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = std::str::from_utf8(data) {
        strata_fuzz::promql(q);
    }
});
