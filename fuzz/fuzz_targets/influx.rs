//! An InfluxDB line protocol body (`POST /write`, `/api/v2/write`): parsing and
//! validation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_fuzz::influx(data));
